"""A big model, a small increment: what a nightly refresh of a production model costs, phase by phase.

    python -m tests.benchmarks.large_model                          # 1M words x 100 dims, 1M new tokens
    python -m tests.benchmarks.large_model --vocab 250000 --kinds word2vec   # a quick look on a shared machine
    python -m tests.benchmarks --sections large-model --vocab 250000          # the same, from the suite

The workload the job exists for: a model of ``--vocab`` words refreshed with ``--increment-tokens`` new
tokens, nearly all of known words (plus ``--new-words`` words the model has not seen, each 10 times). For
each kind (Word2Vec, FastText with ``--bucket`` n-gram buckets):

1. the base model is built once and cached under ``--cache`` (``.bench/large``): gensim's own
   ``build_vocab_from_freq`` over Zipf counts, untrained weights (timings do not depend on their values),
   published to a local store by the job's own save and publish code, and saved beside it by plain gensim
   ``save()`` for the baselines; the increment is Parquet partitions of documents drawn from the same Zipf law;
2. the job, ``jobs.refresh.run`` on a warm local Ray, updates it ``--rounds`` times (the store is reset to the
   base between rounds), with the phases the trainer timed itself and the trainer's peak RSS;
3. plain gensim on the job's tokenized spool: ``load``, ``build_vocab(corpus_file=..., update=True)``, and
   ``train(corpus_file=...)`` timed alone; and the one-process seed recipe straight from Parquet (read,
   ``simple_preprocess``, ``load``, ``build_vocab(update=True)``, ``train``, ``save``);
4. the floor: copying the base version's files once (what reading, verifying and writing a model must cost).

Rows: end to end against the recipe (target <= 0.55x) and against ``train()`` alone (<= 2.0x, the goal
1.5x); the training step against ``train()`` alone (>= 0.95x); everything outside training against 3 s plus
twice the floor; the quality gate's seconds (<= 1.5 s); the trainer's peak RSS against the model's arrays
(<= 1.5x). The notes give every phase, the seconds outside training (the run less its training phase, as
the manifest's ``outside_training``) and their cost per vocabulary word. Rows take the best round; every
round's phases are in the JSON (``--out``), with the load average after each.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import inspect
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before anything imports Ray (see tests/benchmarks/__main__)

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from gensim.models import FastText, Word2Vec

from jobs.lineage import ledger
from jobs.refresh import run
from jobs.storage import open_store
from jobs.storage.publish import publish, read_manifest
from jobs.training import model as gmodel
from tests.benchmarks import refresh as bench

log = logging.getLogger(__name__)

GENERATOR = 1  # part of every cache key: raise it when a change here changes what a spec generates
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_CLASSES = {"word2vec": Word2Vec, "fasttext": FastText}


@dataclass(frozen=True)
class Spec:
    """What the base model and its increment are a pure function of (and cached by)."""

    kind: str = "word2vec"
    vocabulary: int = 1_000_000
    increment_tokens: int = 1_000_000
    new_words: int = 2_000
    partitions: int = 4
    vector_size: int = bench.DEFAULTS.vector_size
    bucket: int = bench.DEFAULTS.bucket
    zipf: float = 1.0
    seed: int = 7

    def key(self) -> str:
        # The job's save and load code is part of the key: a base saved in an older format is rebuilt.
        fmt = inspect.getsource(gmodel.save) + inspect.getsource(gmodel.load)
        blob = json.dumps({**dataclasses.asdict(self), "generator": GENERATOR, "format": fmt}, sort_keys=True)
        size = f"{self.vocabulary // 1000}k"
        return f"{self.kind}-{size}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"

    def arrays_bytes(self) -> int:
        """Bytes of the model's float arrays: vectors and syn1neg, and for FastText the word-only vectors
        and the n-gram buckets."""
        rows = 2 * self.vocabulary + (self.vocabulary + self.bucket if self.kind == "fasttext" else 0)
        return rows * self.vector_size * 4


@dataclass(frozen=True)
class Base:
    """A cached base model: the job's store holding it as its current version, and the gensim copy."""

    store: Path
    version: str
    gensim_file: Path
    increment: Path


def words(ranks: np.ndarray) -> list[str]:
    """Distinct lowercase pseudo-words for ``ranks`` (bijective base 26, at least 2 letters): frequent ranks
    get short words, and every word is a token for the job's tokenizer and for ``simple_preprocess``."""
    n = np.asarray(ranks, dtype=np.int64) + 27  # bijective base 26: 1..26 are "a".."z", 27 is "aa"
    letters = []
    while (n > 0).any():
        active, n = n > 0, n - 1
        letters.append(np.where(active, _LETTERS[n % 26], 0).astype(np.uint8))
        n = np.where(active, n // 26, 0)
    grid = np.stack(letters[::-1], axis=1)
    return [row.tobytes().lstrip(b"\0").decode() for row in grid]


def zipf_counts(spec: Spec, min_count: int) -> np.ndarray:
    """Counts of the base vocabulary by rank, a Zipf law over a billion tokens, none under ``min_count``."""
    weights = 1.0 / (np.arange(spec.vocabulary) + 2.7) ** spec.zipf
    return np.maximum((weights / weights.sum() * 1e9).astype(np.int64), min_count)


def ensure(spec: Spec, params: bench.Params, cache: Path) -> Base:
    """The cached base model and increment for ``spec``, built (a few seconds to a few minutes) if missing."""
    folder = cache / spec.key()
    done = folder / "base.json"
    if done.exists():
        info = json.loads(done.read_text())
        return Base(folder / "store", info["version"], folder / "gensim" / "base.model", folder / "increment")
    shutil.rmtree(folder, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
    started = time.perf_counter()
    log.info("building the %s base model of %s words (cached in %s)", spec.kind, f"{spec.vocabulary:,}", folder)
    vocabulary = words(np.arange(spec.vocabulary))
    counts = zipf_counts(spec, params.min_count)
    kwargs = params.gensim()
    if spec.kind == "fasttext":
        kwargs.update(min_n=bench.DEFAULTS.min_n, max_n=bench.DEFAULTS.max_n, bucket=spec.bucket)
    model = _CLASSES[spec.kind](**kwargs)
    model.build_vocab_from_freq(dict(zip(vocabulary, counts.tolist(), strict=True)), corpus_count=1_000_000)
    (tmp / "gensim").mkdir()
    model.save(str(tmp / "gensim" / "base.model"))

    version = "00000000T000000Z-base00"
    out = tmp / "version"
    gmodel.save(model, out)
    (out / ledger.LEDGER).write_bytes(ledger.extend(ledger.empty(), [], version, None))
    del model
    fields = {"model": spec.kind, "parent": None, "vocab_size": spec.vocabulary, "new_words_sample": []}
    publish(open_store(str(tmp / "store")), version, out, fields, expected=None)
    shutil.rmtree(out)
    write_increment(spec, tmp / "increment")
    (tmp / "base.json").write_text(json.dumps({"version": version, "spec": dataclasses.asdict(spec)}))
    os.replace(tmp, folder)
    log.info("base model built in %.0fs", time.perf_counter() - started)
    return ensure(spec, params, cache)


def write_increment(spec: Spec, root: Path) -> None:
    """``spec.increment_tokens`` tokens of ~20-word documents over the base vocabulary's Zipf law, with
    ``spec.new_words`` unseen words 10 times each, in ``spec.partitions`` Parquet partitions."""
    rng = np.random.default_rng(spec.seed)
    weights = 1.0 / (np.arange(spec.vocabulary) + 2.7) ** spec.zipf
    new = 10 * spec.new_words
    tokens = rng.choice(spec.vocabulary, size=spec.increment_tokens - new, p=weights / weights.sum())
    tokens = np.concatenate([tokens, np.repeat(np.arange(spec.vocabulary, spec.vocabulary + spec.new_words), 10)])
    rng.shuffle(tokens)
    unique, inverse = np.unique(tokens, return_inverse=True)
    table = np.array(words(unique), dtype=object)[inverse]
    per_partition = -(-len(table) // spec.partitions)
    for p in range(spec.partitions):
        chunk = table[p * per_partition : (p + 1) * per_partition]
        docs = [" ".join(chunk[i : i + 20]) for i in range(0, len(chunk), 20)]
        path = root / f"dt=2026-06-{p + 1:02d}" / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": pa.array(docs, pa.string())}), path)


# -- measurements -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def peak_rss(title: str) -> Iterator[dict[str, int]]:
    """The peak RSS (VmHWM) of this process's descendant whose command line starts with ``title``."""
    peak = {"hwm": 0}
    done = threading.Event()

    def watch() -> None:
        pid = None
        while not done.is_set():
            pid = pid or bench._descendant(title)
            if pid:
                peak["hwm"] = max(peak["hwm"], bench._status(pid, "VmHWM"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield peak
    finally:
        done.set()
        watcher.join()


def reset(store_path: Path, base: str) -> None:
    """Put the store back to the base version alone (the next round updates the same parent)."""
    store = open_store(str(store_path))
    for version in store.list_versions():
        if version != base:
            store.delete_version(version)
    pointer = store.read_pointer()
    if pointer is None or pointer.version != base:
        store.swap_pointer(base, pointer)


def job_round(base: Base, params: bench.Params, work: Path) -> dict[str, Any]:
    """One update of the base by the increment through ``jobs.refresh.run``."""
    reset(base.store, base.version)
    work.mkdir(parents=True, exist_ok=True)
    with peak_rss("ray::Trainer") as peak:
        start = time.perf_counter()
        summary = run(bench.config(base.increment, base.store, params, work))
        seconds = time.perf_counter() - start
    manifest = read_manifest(open_store(str(base.store)), summary.version)
    phase_peaks = manifest.get("peak_memory_mb", {})
    reset(base.store, base.version)
    timings = dict(summary.timings)
    log.info(
        "job: %.1fs, %.1fs outside training (%s); load average %.1f",
        seconds,
        seconds - timings.get("train", 0.0),
        ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()),
        os.getloadavg()[0],
    )
    log.info("trainer peak memory by phase: %s", ", ".join(f"{k} {v:,.0f} MB" for k, v in phase_peaks.items()))
    return {
        "seconds": seconds,
        "timings": timings,
        "peak_rss": peak["hwm"],
        "phase_peaks_mb": phase_peaks,
        "tokens": summary.tokens,
        "outside_training": manifest.get("outside_training"),  # up to the commit, as the manifest records it
        "tokenized_in_trainer": manifest.get("tokenized_in_trainer"),
        "load_average": os.getloadavg()[0],
    }


def gensim_round(base: Base, kind: str, spool: bench.Spool, params: bench.Params) -> dict[str, float]:
    """Plain gensim on the job's spool: load, ``build_vocab(update=True)``, then ``train()`` timed alone."""
    start = time.perf_counter()
    model = _CLASSES[kind].load(str(base.gensim_file))
    load = time.perf_counter() - start
    model.workers = params.workers
    start = time.perf_counter()
    model.build_vocab(corpus_file=str(spool.path), update=True)
    vocabulary = time.perf_counter() - start
    start = time.perf_counter()
    model.train(
        corpus_file=str(spool.path),
        total_examples=model.corpus_count,
        total_words=model.corpus_total_words,
        epochs=params.epochs,
    )
    return {"load": load, "vocabulary": vocabulary, "train": time.perf_counter() - start}


def recipe_round(base: Base, kind: str, params: bench.Params, out: Path) -> float:
    """The seed recipe as one process: read and ``simple_preprocess`` Parquet, load, update, train, save."""
    start = time.perf_counter()
    corpus = [
        sentence
        for sentence in bench.ParquetSentences([p.path for p in bench.partitions_of(base.increment)])
        if sentence
    ]
    model = _CLASSES[kind].load(str(base.gensim_file))
    model.workers = params.workers
    model.build_vocab(corpus, update=True)
    model.train(corpus, total_examples=model.corpus_count, epochs=params.epochs)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "model"))
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def floor_seconds(base: Base, work: Path) -> float:
    """Copying the base version's files once: the least that reading, verifying and writing it can cost."""
    source = base.store / "versions" / base.version
    target = work / "floor"
    start = time.perf_counter()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    seconds = time.perf_counter() - start
    shutil.rmtree(target)
    return seconds


def warm_up(base: Base, params: bench.Params, work: Path) -> None:
    """Start Ray's workers with a small first model, so each measured run finds the cluster warm."""
    glob = bench.slice_glob(base.increment, bench.partitions_of(base.increment))
    bench.first_model(base.increment, work / "warm-up-store", params, work, glob)
    shutil.rmtree(work / "warm-up-store")


def measure(spec: Spec, params: bench.Params, cache: Path, work: Path, rounds: int) -> tuple[list[bench.Row], dict]:
    """The rows for one kind, every baseline measured in this run, interleaved with the job's rounds."""
    base = ensure(spec, params, cache)
    spool = bench.tokenize_to_spool(bench.partitions_of(base.increment), work / f"spool-{spec.kind}.txt")
    jobs, plain, recipes, floors = [], [], [], []
    for i in range(rounds):
        jobs.append(job_round(base, params, work / f"job-{spec.kind}-{i}"))
        plain.append(gensim_round(base, spec.kind, spool, params))
        log.info("gensim: %s", ", ".join(f"{k} {v:.1f}s" for k, v in plain[-1].items()))
        recipes.append(recipe_round(base, spec.kind, params, work / "recipe"))
        log.info("one-process recipe: %.1fs", recipes[-1])
        floors.append(floor_seconds(base, work))
    spool.path.unlink()
    return rows(spec, params, jobs, plain, recipes, floors), {
        "spec": dataclasses.asdict(spec),
        "jobs": jobs,
        "gensim": plain,
        "recipe": recipes,
        "floor": floors,
    }


def base_rss() -> int:
    """The resident set of a Python process that has imported what the training actor imports (Ray, gensim,
    pyarrow, the job), before any model: the part of the actor's peak that does not depend on the model."""
    code = (
        "import ray, jobs.cluster, jobs.training.trainer\n"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) * 1024


RECIPE_TARGET = 0.55  # the job, end to end, against the one-process recipe
TRAIN_TARGET, TRAIN_GOAL = 2.0, 1.5  # the job, end to end, against gensim's train() alone
GATE_SECONDS = 1.5  # the quality gate at a million words


def rows(
    spec: Spec,
    params: bench.Params,
    jobs: list[dict[str, Any]],
    plain: list[dict[str, float]],
    recipes: list[float],
    floors: list[float],
) -> list[bench.Row]:
    job = min(jobs, key=lambda j: j["seconds"])
    train_alone = min(t["train"] for t in plain)
    recipe, floor = min(recipes), min(floors)
    train = job["timings"]["train"]
    outside = job["seconds"] - train
    arrays = spec.arrays_bytes()
    per_word = outside / spec.vocabulary * 1e6
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in job["timings"].items())
    gensim_phases = ", ".join(f"{k} {v:.1f}s" for k, v in min(plain, key=lambda t: t["train"]).items())
    what = (
        f"{spec.kind}, {spec.vocabulary:,} words x {spec.vector_size}"
        + (f", {spec.bucket:,} buckets" if spec.kind == "fasttext" else "")
        + f"; {job['tokens']:,} new tokens ({spec.new_words:,} new words); best of {len(jobs)}"
    )
    label = f"{spec.kind} {spec.vocabulary // 1000}k"
    return [
        bench._row(
            f"{label}: end to end vs one-process recipe",
            "s",
            job["seconds"],
            recipe,
            job["seconds"] / recipe,
            "<=",
            RECIPE_TARGET,
            f"{what}; job phases: {phases}; outside training {outside:.1f}s; recipe: read Parquet, "
            "simple_preprocess, load, build_vocab(update=True), train, save",
        ),
        bench._row(
            f"{label}: end to end vs gensim train() alone",
            "s",
            job["seconds"],
            train_alone,
            job["seconds"] / train_alone,
            "<=",
            TRAIN_TARGET,
            f"goal {TRAIN_GOAL:g}x; gensim on the job's spool: {gensim_phases} (corpus_file mode)",
        ),
        bench._row(
            f"{label}: training step vs gensim train() alone",
            "s",
            train,
            train_alone,
            train_alone / train,
            ">=",
            0.95,
            f"{job['tokens']:,} tokens x {params.epochs} epochs, {params.workers} threads",
        ),
        bench._row(
            f"{label}: outside training vs 3 s + 2 x floor",
            "s",
            outside,
            3 + 2 * floor,
            outside / (3 + 2 * floor),
            "<=",
            1.0,
            f"floor: copying the parent version's files once, {floor:.2f}s; outside training "
            f"{per_word:.1f} us per vocabulary word",
        ),
        bench._row(
            f"{label}: quality gate seconds vs {GATE_SECONDS:g} s",
            "s",
            job["timings"].get("evaluate", 0.0),
            GATE_SECONDS,
            job["timings"].get("evaluate", 0.0) / GATE_SECONDS,
            "<=",
            1.0,
            "the trainer's evaluate phase: the parent's side (measured while the corpus streams in) and the "
            "candidate's, with the drift of known words",
        ),
        bench._row(
            f"{label}: trainer peak RSS vs model arrays",
            "MB",
            job["peak_rss"] / bench.MB,
            arrays / bench.MB,
            job["peak_rss"] / arrays,
            "<=",
            1.5,
            "VmHWM of the training actor; arrays: vectors and syn1neg"
            + (", vectors_vocab and vectors_ngrams" if spec.kind == "fasttext" else "")
            + "; peak by phase: "
            + ", ".join(f"{k} {v:,.0f} MB" for k, v in job.get("phase_peaks_mb", {}).items())
            + f"; a Ray worker with the trainer's modules imported holds {base_rss() / bench.MB:,.0f} MB",
        ),
    ]


def section(
    kinds: list[str], spec: Spec, params: bench.Params, cache: Path, work: Path, rounds: int
) -> tuple[list[bench.Row], dict]:
    """Every kind's rows, on one warm local Ray."""
    rows_: list[bench.Row] = []
    details: dict[str, Any] = {}
    with bench.local_ray(params.workers):
        for kind in kinds:
            kind_spec = dataclasses.replace(spec, kind=kind)
            base = ensure(kind_spec, params, cache)
            if not details:
                warm_up(base, params, work)
            measured, details[kind] = measure(kind_spec, params, cache, work, rounds)
            rows_.extend(measured)
            log.info("%s done", kind)
    return rows_, details


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The section's flags, shared with ``python -m tests.benchmarks``."""
    p.add_argument("--vocab", type=int, default=Spec.vocabulary, help="words in the base model (default 1M)")
    p.add_argument("--increment-tokens", type=int, default=Spec.increment_tokens, help="new tokens (default 1M)")
    p.add_argument("--new-words", type=int, default=Spec.new_words, help="unseen words in the increment")
    p.add_argument("--bucket", type=int, default=Spec.bucket, help="FastText n-gram buckets (default 2M)")
    p.add_argument(
        "--kinds", nargs="+", choices=["word2vec", "fasttext"], default=["word2vec", "fasttext"], help="models"
    )
    p.add_argument("--large-rounds", type=int, default=2, help="job rounds per kind; rows take the best")


def spec_of(a: argparse.Namespace) -> Spec:
    return Spec(vocabulary=a.vocab, increment_tokens=a.increment_tokens, new_words=a.new_words, bucket=a.bucket)


def main(argv: list[str] | None = None) -> int:
    from tests.benchmarks.__main__ import machine, table

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("gensim").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.large_model", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--out", type=Path, default=Path(".bench"), help="folder for the JSON result and scratch files")
    p.add_argument("--cache", type=Path, help="folder of cached base models (default: OUT/large)")
    p.add_argument("--workers", type=int, default=2, help="training threads, and the CPUs of the local Ray")
    a = p.parse_args(argv)
    params = bench.Params(workers=a.workers)
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="large-", dir=a.out)).resolve()
    started = time.perf_counter()
    try:
        measured, details = section(
            a.kinds, spec_of(a), params, (a.cache or a.out / "large").resolve(), work, a.large_rounds
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = machine()
    header = [
        f"large model: params {params.describe()}",
        f"machine: {m['cpus']} CPUs, {m['memory_gb']} GiB, gensim {m['gensim']}, load average "
        f"{m['load_average_1m']:.1f} at the end",
    ]
    print(table(measured, header))
    path = a.out / time.strftime("large-%Y%m%dT%H%M%S.json")
    result = {
        "rows": [dataclasses.asdict(r) for r in measured],
        "details": details,
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python -m tests.benchmarks.large_model", *(argv if argv is not None else sys.argv[1:])]),
    }
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwritten to {path} ({result['seconds']:.0f}s in all)")
    return 0 if all(r.passed for r in measured) else 1


if __name__ == "__main__":
    sys.exit(main())
