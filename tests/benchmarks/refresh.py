"""Measurements of the refresh job against plain gensim, one function per row of the benchmark table.

    >>> params = Params(epochs=5, workers=2)
    >>> update = measure_update(root, params, work, rounds=2)                       # doctest: +SKIP
    >>> rows = [training_row(update, params), *end_to_end_rows(update)]             # doctest: +SKIP

Every row compares the job's code path with what a careful engineer would do with gensim alone, on the same
data, with the same hyper-parameters and threads, measured in the same run:

1. :func:`tokenizer_row`: ``shards.tokenize`` (tokenize, count, serialize, as a worker does) against a loop of
   gensim's ``simple_preprocess``, both pinned to one core in a fresh process;
2. :func:`training_row`: the trainer's vocabulary and training phases, as the actor timed them during the
   measured update, against gensim's ``build_vocab(update=True)`` + ``train()`` on the same tokenized corpus
   in ``corpus_file`` and in iterable mode; the faster mode is the baseline;
3. :func:`end_to_end_rows`: that same ``jobs.refresh.run`` update on a running local Ray, against gensim's
   ``train()`` alone and against the one-process incremental recipe;
4. :func:`memory_rows`: the peak RSS (VmHWM) of the training actor and of the driver, at 1x and 4x the data,
   with the actor's private and shared (object store) memory apart in the note.

Rows that need a process of their own (the pinned tokenizer, each memory probe) run this module as a script:
``python -m tests.benchmarks.refresh tokenizer|memory ...`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from gensim.models import Word2Vec
from gensim.models.callbacks import CallbackAny2Vec
from gensim.models.word2vec import LineSentence
from gensim.utils import simple_preprocess

from jobs.config import RefreshConfig, TrainingConfig, from_args, parser
from jobs.refresh import Hooks, run
from jobs.training import model as gmodel
from shards.partitions import Partition, discover
from shards.readers import read_texts
from shards.tokenize import TokenizerConfig, count_words, to_lines, tokenize
from shards.tokenized import ReadOptions, tokenize_partition

log = logging.getLogger(__name__)

MB = 1 << 20


@dataclass
class Row:
    """One line of the table: the job's number, its baseline's, their ratio and whether it meets the target."""

    name: str
    unit: str
    measured: float
    baseline: float
    ratio: float
    target: str
    passed: bool
    note: str = ""


def _row(
    name: str, unit: str, measured: float, baseline: float, ratio: float, op: str, goal: float, note: str = ""
) -> Row:
    passed = ratio >= goal if op == ">=" else ratio <= goal
    return Row(name, unit, measured, baseline, ratio, f"{op} {goal:g}x", passed, note)


DEFAULTS = TrainingConfig()  # the job's own defaults: every baseline uses the same values


@dataclass(frozen=True)
class Params:
    """Hyper-parameters shared by the job and every baseline (the job's defaults, but for ``workers``)."""

    epochs: int = DEFAULTS.epochs
    vector_size: int = DEFAULTS.vector_size
    window: int = DEFAULTS.window
    min_count: int = DEFAULTS.min_count
    negative: int = DEFAULTS.negative
    sample: float = DEFAULTS.sample
    workers: int = 2

    def flags(self) -> list[str]:
        """The same settings as ``python -m jobs.refresh`` flags."""
        return [
            "--epochs",
            str(self.epochs),
            "--vector-size",
            str(self.vector_size),
            "--window",
            str(self.window),
            "--min-count",
            str(self.min_count),
            "--negative",
            str(self.negative),
            "--sample",
            str(self.sample),
            "--workers",
            str(self.workers),
        ]

    def gensim(self) -> dict[str, Any]:
        """The same settings as gensim keyword arguments (negative sampling, as the job always uses)."""
        return dict(
            vector_size=self.vector_size,
            window=self.window,
            min_count=self.min_count,
            sg=0,
            hs=0,
            negative=self.negative,
            sample=self.sample,
            epochs=self.epochs,
            workers=self.workers,
            alpha=DEFAULTS.alpha,
            min_alpha=DEFAULTS.min_alpha,
            seed=DEFAULTS.seed,
        )

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())


def config(root: Path, store: Path, params: Params, spool_dir: Path, *extra: str) -> RefreshConfig:
    """The job's config for ``root`` -> ``store``, built from flags exactly as the command line would.

    The quality gate, where the job has one, is told to promote anyway: a synthetic corpus has no meaning
    for it to keep, and the run must publish for its time to count.
    """
    known = parser()._option_string_actions  # argparse's table of the flags it accepts
    force = ["--force"] if "--force" in known else []
    return from_args(
        ["--input", str(root), "--store", str(store), "--spool-dir", str(spool_dir), *params.flags(), *force, *extra]
    )


def partitions_of(root: Path) -> list[Partition]:
    return discover(pafs.LocalFileSystem(), str(root.resolve()))


def slice_glob(root: Path, partitions: list[Partition]) -> str:
    """The ``--glob`` selecting the first partition: the small slice the first model is trained on."""
    return partitions[0].path[len(str(root.resolve())) + 1 :]


# -- the tokenized corpus, for the gensim baselines ----------------------------------------------------------


@dataclass
class Spool:
    """A corpus tokenized by the job's tokenizer, as the trainer spools it: LineSentence text plus counts."""

    path: Path
    sentences: int = 0
    tokens: int = 0


def tokenize_to_spool(partitions: list[Partition], path: Path) -> Spool:
    """Tokenize ``partitions`` with the job's worker function into the spool file the trainer would write."""
    fs = pafs.LocalFileSystem()
    spool = Spool(path)
    with open(path, "wb") as out:
        for partition in partitions:
            part = tokenize_partition(fs, partition, ReadOptions(), TokenizerConfig())
            out.write(part.lines)
            spool.sentences += part.sentences
            spool.tokens += part.tokens
    return spool


# -- 1. tokenizer -------------------------------------------------------------------------------------------


def tokenizer_row(root: Path, partitions: int, repeats: int = 2) -> Row:
    """Row 1: the job's tokenizer against ``simple_preprocess`` on the first ``partitions`` partitions, in a
    fresh process pinned to one core."""
    cpu = min(os.sched_getaffinity(0))
    out = _probe("tokenizer", [str(root), str(partitions), str(repeats)], cpu=cpu)
    ours, theirs = out["tokens"] / out["ours_s"], out["tokens"] / out["simple_preprocess_s"]
    note = (
        f"{out['documents']:,} documents, {out['tokens']:,} tokens (simple_preprocess: "
        f"{out['simple_preprocess_tokens']:,}); best of {repeats}, one core"
    )
    return _row(
        "tokenizer throughput (1 core) vs simple_preprocess loop",
        "tokens/s",
        ours,
        theirs,
        ours / theirs,
        ">=",
        3.0,
        note,
    )


def _tokenizer_probe(root: Path, partitions: int, repeats: int) -> dict[str, Any]:
    fs = pafs.LocalFileSystem()
    batches = [
        texts
        for partition in partitions_of(root)[:partitions]
        for texts in read_texts(fs, partition, batch_rows=ReadOptions().batch_rows)
    ]
    documents = [batch.to_pylist() for batch in batches]
    config = TokenizerConfig()

    def ours() -> int:
        tokens = 0
        for texts in batches:
            sentences = tokenize(texts, config)
            count_words(sentences)
            to_lines(sentences)
            tokens += len(sentences.values)
        return tokens

    def theirs() -> int:
        return sum(len(simple_preprocess(doc)) for docs in documents for doc in docs if doc is not None)

    ours_s, tokens = _best(ours, repeats)
    theirs_s, their_tokens = _best(theirs, repeats)
    return {
        "documents": sum(len(d) for d in documents),
        "tokens": tokens,
        "ours_s": ours_s,
        "simple_preprocess_tokens": their_tokens,
        "simple_preprocess_s": theirs_s,
    }


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


# -- the job, on a local Ray --------------------------------------------------------------------------------


@contextlib.contextmanager
def local_ray(num_cpus: int, object_store_mb: int = 512) -> Iterator[None]:
    """A local Ray for this process only: pinned CPUs, a small object store, its own short temp dir."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="rb-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        ray.init(
            num_cpus=num_cpus,
            object_store_memory=object_store_mb * MB,
            include_dashboard=False,
            _temp_dir=temp_dir,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def first_model(root: Path, store: Path, params: Params, work: Path, glob: str, base: int = 1) -> str:
    """Publish the first model from the slice ``glob`` selects (``base`` > 1: from the oldest ``base``
    partitions instead), so the measured run is an update."""
    select = ["--glob", glob] if base == 1 else ["--max-partitions", str(base)]
    summary = run(config(root, store, params, work, *select))
    if summary.partitions != base:
        raise RuntimeError(f"the first model of {root} consumed {summary.partitions} partitions, not {base}")
    if not summary.version:
        raise RuntimeError(f"no first model from {root}/{glob}: {summary.message}")
    return summary.version


class TrainingProbe(CallbackAny2Vec):
    """A training callback that reports from inside the training actor, through a JSON file on this machine:
    its process id, and its CPU time and memory high-water mark when training begins and ends (CPU seconds
    are what load from other processes distorts least)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def _write(self, **fields: Any) -> None:
        state = json.loads(Path(self.path).read_text()) if os.path.exists(self.path) else {}
        Path(self.path).write_text(json.dumps({**state, **fields}))

    def on_train_begin(self, model: Any) -> None:
        self._write(pid=os.getpid(), cpu_begin=time.process_time(), hwm_begin=_status("self", "VmHWM"))

    def on_train_end(self, model: Any) -> None:
        self._write(cpu_end=time.process_time(), hwm_end=_status("self", "VmHWM"))

    def read(self) -> dict[str, Any]:
        return json.loads(Path(self.path).read_text()) if os.path.exists(self.path) else {}


@dataclass
class JobRun:
    """The measured update: wall-clock seconds around ``run()`` and the phases the job timed itself."""

    seconds: float
    tokens: int
    vocab_size: int
    timings: dict[str, float]
    parent_model: Path
    train_cpu: float  # CPU seconds of the actor's process during train()


def run_job(root: Path, params: Params, work: Path, base: int = 1) -> JobRun:
    """On a fresh local Ray, publish a first model from the first partition, then time the update on the rest.

    The first run also starts Ray's worker processes, so the timed one finds the cluster as ``ray job submit``
    would: up and warm.
    """
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    with local_ray(params.workers):
        parent = first_model(root, store, params, work, slice_glob(root, partitions_of(root)), base)
        probe = TrainingProbe(work / "training.json")
        start = time.perf_counter()
        summary = run(config(root, store, params, work), Hooks(training_callbacks=(probe,)))
        seconds = time.perf_counter() - start
    log.info("job: %.1fs (%s)", seconds, ", ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items()))
    inside = probe.read()
    return JobRun(
        seconds,
        summary.tokens,
        summary.vocab_size,
        dict(summary.timings),
        store / "versions" / parent / gmodel.MODEL_DIR,
        inside["cpu_end"] - inside["cpu_begin"],
    )


def gensim_update(parent_model: Path, spool: Spool, params: Params, mode: str) -> dict[str, float]:
    """Plain gensim's update on the job's tokenized corpus: ``build_vocab(update=True)``, then ``train()``."""
    model = gmodel.load(parent_model)
    model.workers = params.workers
    corpus: dict[str, Any] = {"corpus_file": str(spool.path)}
    if mode == "iterable":
        corpus = {"corpus_iterable": LineSentence(str(spool.path))}
    start = time.perf_counter()
    model.build_vocab(**corpus, update=True)
    vocabulary = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    effective, raw = model.train(
        **corpus, total_examples=model.corpus_count, total_words=model.corpus_total_words, epochs=params.epochs
    )
    return {
        "vocabulary": vocabulary,
        "train": time.perf_counter() - start,
        "train_cpu": time.process_time() - cpu,
        "vocab_size": len(model.wv),
        "effective_words": effective,
        "raw_words": raw,
    }


class ParquetSentences:
    """gensim's memory-friendly corpus pattern over Parquet files: re-read and ``simple_preprocess`` each pass."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __iter__(self) -> Iterator[list[str]]:
        for path in self.paths:
            for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
                for doc in batch.column(0).to_pylist():
                    if doc:
                        yield simple_preprocess(doc)


def one_process_recipe(parent_model: Path, paths: list[str], params: Params, out: Path) -> float:
    """The standard incremental recipe: load, ``build_vocab(update=True)``, ``train()``, ``save()``, all with
    gensim's own ``save()`` format (the parent is first re-saved that way, untimed)."""
    recipe_parent = out / "parent.model"
    out.mkdir(parents=True, exist_ok=True)
    gmodel.load(parent_model).save(str(recipe_parent))
    start = time.perf_counter()
    model = Word2Vec.load(str(recipe_parent))
    model.workers = params.workers
    corpus = ParquetSentences(paths)
    model.build_vocab(corpus, update=True)
    model.train(corpus, total_examples=model.corpus_count, epochs=params.epochs)
    model.save(str(out / "model"))
    return time.perf_counter() - start


@dataclass
class Update:
    """Every timing of one update of the same parent by the same partitions: the job's and gensim's."""

    jobs: list[JobRun]
    gensim: dict[str, list[dict[str, float]]]  # mode -> one timing per round
    recipe: list[float]
    spool: Spool
    partitions: int
    load: list[float]  # the 1-minute load average at the end of each round

    def best_mode(self) -> str:
        return min(self.gensim, key=lambda m: min(t["vocabulary"] + t["train"] for t in self.gensim[m]))


def measure_update(root: Path, params: Params, work: Path, rounds: int, base: int = 1) -> Update:
    """Time the job's update and each baseline ``rounds`` times, interleaved, so that a burst of load from
    anything else on the machine hits one attempt of each rather than all attempts of one; rows take the best.
    The parent is a model of the oldest ``base`` partitions; the update consumes the rest."""
    partitions = partitions_of(root)
    if not 1 <= base < len(partitions):
        raise SystemExit(f"the parent needs 1 to {len(partitions) - 1} of the {len(partitions)} partitions, not {base}")
    rest = partitions[base:]
    spool = tokenize_to_spool(rest, work / "rest.txt")
    update = Update([], {"corpus_file": [], "iterable": []}, [], spool, len(rest), [])
    for i in range(rounds):
        update.jobs.append(run_job(root, params, work / f"job-{i}", base))
        parent = update.jobs[0].parent_model  # every round updates the same parent
        for mode, times in update.gensim.items():
            times.append(gensim_update(parent, spool, params, mode))
            log.info("gensim %s: vocabulary %.1fs, train %.1fs", mode, times[-1]["vocabulary"], times[-1]["train"])
        update.recipe.append(one_process_recipe(parent, [p.path for p in rest], params, work / "recipe"))
        log.info("one-process recipe: %.1fs", update.recipe[-1])
        update.load.append(os.getloadavg()[0])
    return update


# -- 2. training --------------------------------------------------------------------------------------------


def training_row(update: Update, params: Params) -> Row:
    """Row 2: the job's vocabulary + training phases (timed inside the actor) against gensim's faster mode."""
    job = min(update.jobs, key=lambda j: j.timings["vocabulary"] + j.timings["train"])
    job_s = job.timings["vocabulary"] + job.timings["train"]
    mode = update.best_mode()
    base = min(update.gensim[mode], key=lambda t: t["vocabulary"] + t["train"])
    base_s = base["vocabulary"] + base["train"]
    words = update.spool.tokens * params.epochs
    modes = ", ".join(
        f"{m} {t['vocabulary']:.1f}s + {t['train']:.1f}s"
        for m, times in update.gensim.items()
        for t in [min(times, key=lambda t: t["vocabulary"] + t["train"])]
    )
    job_cpu = min(j.train_cpu for j in update.jobs)
    base_cpu = min(t["train_cpu"] for t in update.gensim[mode])
    load = ", ".join(f"{x:.1f}" for x in update.load)
    note = (
        f"train() CPU seconds, which other load distorts least: job {job_cpu:.1f}, gensim {base_cpu:.1f} "
        f"({base_cpu / job_cpu:.2f}x); load average after each round: {load}; "
        f"job: vocabulary {job.timings['vocabulary']:.1f}s + train {job.timings['train']:.1f}s, timed in the "
        f"actor; gensim build_vocab(update=True) + train(): {modes}; {update.spool.tokens:,} tokens x "
        f"{params.epochs} epochs, {params.workers} threads; best of {len(update.jobs)}"
    )
    return _row(
        f"training step vs gensim update ({mode}, the faster)",
        "words/s",
        words / job_s,
        words / base_s,
        base_s / job_s,
        ">=",
        0.95,
        note,
    )


# -- 3. end to end ------------------------------------------------------------------------------------------


def end_to_end_rows(update: Update) -> list[Row]:
    """Row 3: partitions in, model published, against gensim's ``train()`` alone and the one-process recipe."""
    job = min(update.jobs, key=lambda j: j.seconds)
    mode = update.best_mode()
    train_alone = min(t["train"] for t in update.gensim[mode])
    recipe = min(update.recipe)
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in job.timings.items())
    common = (
        f"{update.partitions} partitions, {job.tokens:,} tokens, updating a model of the partitions before them; "
        f"best of {len(update.jobs)}; outside training {job.seconds - job.timings.get('train', 0.0):.1f}s"
    )
    return [
        _row(
            "end to end (run) vs gensim train() alone",
            "s",
            job.seconds,
            train_alone,
            job.seconds / train_alone,
            "<=",
            1.15,
            f"{common}; job phases: {phases}; baseline: train() in {mode} mode on the job's "
            "tokenized corpus, vocabulary already updated",
        ),
        _row(
            "end to end (run) vs one-process gensim recipe",
            "s",
            job.seconds,
            recipe,
            job.seconds / recipe,
            "<=",
            0.85,
            f"{common}; recipe: load, build_vocab(update=True), train, save, streaming Parquet "
            "through simple_preprocess on every pass (gensim's memory-friendly corpus)",
        ),
    ]


# -- 4. memory ----------------------------------------------------------------------------------------------


def memory_rows(
    small: Path,
    large: Path,
    params: Params,
    work: Path,
    note: str,
    who: tuple[str, ...] = ("actor", "driver"),
    qualifier: str = "",
) -> tuple[list[Row], dict]:
    """Row 4: peak RSS of the training actor and the driver at 1x (``small``) and 4x (``large``) the data."""
    probes = {}
    for label, root in (("1x", small), ("4x", large)):
        folder = work / f"memory-{label}{qualifier and '-' + qualifier.split()[0]}"
        probes[label] = _probe("memory", [str(root), str(folder), json.dumps(asdict(params))])
        log.info(
            "memory %s: actor %.0f MB, driver %.0f MB, vocabulary %d",
            label,
            probes[label]["actor_hwm"] / MB,
            probes[label]["driver_hwm"] / MB,
            probes[label]["vocab_size"],
        )
    vocab = [probes[label]["vocab_size"] for label in ("1x", "4x")]
    weights = [2 * 4 * params.vector_size * v / MB for v in vocab]  # syn0 + syn1neg, float32
    one, four = probes["1x"], probes["4x"]
    note += (
        f"; vocabulary {vocab[0]:,} -> {vocab[1]:,} words (input + output weights {weights[0]:.0f} -> "
        f"{weights[1]:.0f} MB); of the actor's resident memory, private (RssAnon, sampled at 20 Hz) peaked at "
        f"{one['actor_private_peak'] / MB:.0f} -> {four['actor_private_peak'] / MB:.0f} MB and pages of Ray's "
        f"shared object store (RssShmem) at {one['actor_shared_peak'] / MB:.0f} -> "
        f"{four['actor_shared_peak'] / MB:.0f} MB"
    )
    rows = []
    for process in who:
        one, four = probes["1x"][f"{process}_hwm"] / MB, probes["4x"][f"{process}_hwm"] / MB
        name = "training actor" if process == "actor" else "driver"
        title = f"peak RSS of the {name}, 4x data vs 1x{qualifier and ' (' + qualifier + ')'}"
        rows.append(_row(title, "MB", four, one, four / one, "<=", 1.1, note))
    return rows, probes


def _status(pid: int | str, field: str) -> int:
    """A memory figure (``VmHWM``, ``VmRSS``) of a process in bytes; 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants() -> dict[int, str]:
    """This process's descendants: pid -> command line (only our own tree: other Ray clusters may share the
    machine)."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    titles[int(entry)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    mine, found = {os.getpid()}, True
    while found:
        found = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                found = True
    return {pid: titles.get(pid, "") for pid in mine if pid != os.getpid()}


def _descendant(title: str) -> int | None:
    """The process id of a descendant of this process whose command line starts with ``title`` (Ray names
    an actor's process ``ray::<Class>``)."""
    return next((pid for pid, name in descendants().items() if name.startswith(title)), None)


def _memory_probe(root: Path, work: Path, params: Params) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    peak = {"VmHWM": 0, "RssAnon": 0, "RssShmem": 0}
    done = threading.Event()

    def watch() -> None:  # VmHWM only grows: the last reading before the actor exits is its peak
        pid = None
        while not done.is_set():
            pid = pid or _descendant("ray::Trainer")
            if pid:
                for field in peak:
                    peak[field] = max(peak[field], _status(pid, field))
            time.sleep(0.05)

    partitions = partitions_of(root)
    with local_ray(params.workers):
        first_model(root, store, params, work, slice_glob(root, partitions))
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        summary = run(config(root, store, params, work))
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
    return {
        "actor_hwm": peak["VmHWM"],
        "actor_private_peak": peak["RssAnon"],
        "actor_shared_peak": peak["RssShmem"],
        "driver_hwm": _status("self", "VmHWM"),
        "tokens": summary.tokens,
        "seconds": seconds,
        "vocab_size": summary.vocab_size,
        "timings": summary.timings,
    }


# -- probes: the rows that need a process of their own ------------------------------------------------------


def _probe(kind: str, args: list[str], cpu: int | None = None) -> dict[str, Any]:
    """Run this module as a script in a fresh process (pinned to ``cpu`` from its first instruction)."""
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.refresh", kind, *args],
        preexec_fn=pin,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.refresh", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="kind", required=True)
    t = sub.add_parser("tokenizer")
    t.add_argument("root", type=Path)
    t.add_argument("partitions", type=int)
    t.add_argument("repeats", type=int)
    m = sub.add_parser("memory")
    m.add_argument("root", type=Path)
    m.add_argument("work", type=Path)
    m.add_argument("params", type=json.loads)
    a = p.parse_args(argv)
    if a.kind == "tokenizer":
        out = _tokenizer_probe(a.root, a.partitions, a.repeats)
    else:
        out = _memory_probe(a.root, a.work, Params(**a.params))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
