"""Benchmark: a small increment read, tokenized, counted and spooled inside the training actor.

    python -m tests.benchmarks.in_trainer                              # 1M tokens in 4 Parquet partitions
    python -m tests.benchmarks.in_trainer --against /tmp/old-checkout  # the same, old code against this code
    python -m tests.benchmarks.in_trainer --row-group-rows 500         # partitions of many small row groups

The phase :meth:`jobs.training.trainer.Trainer.tokenize` runs when an increment is below
``--tokenize-in-trainer-below``, alone: a plain ``Trainer`` (no Ray) tokenizes each partition of the increment
(:func:`tests.benchmarks.large_model.write_increment`: ~20-word documents of Zipf-distributed words) as
:mod:`jobs.tokenize` asks it to, one call per partition, then merges the run's counts as ``finish`` does. In
the job the actor imports gensim and loads the parent model on other threads meanwhile, so every return from
a call that let go of the GIL waits for it again. Three settings: ``quiet`` (the phase alone), ``busy`` (a
pure-Python thread runs beside it all along; its own CPU is left out of the CPU column) and ``import`` (the
actor's own import of gensim's training modules runs beside a process's first round, as in the job: its
rounds after the first are quiet, so only its ``first`` columns say something, and they count its CPU).

Each side runs in fresh processes (``--repeats`` of them, interleaved with the other side's), ``--rounds``
rounds each; ``first`` is a process's first round (the actor's case: it tokenizes once), ``best`` the best
round. With ``--against``, a checkout of other code (``git worktree add`` or ``git archive | tar -x``) is
measured the same way, and both sides' spools, counts and totals must be identical. Prints one table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve()
_REPO = _HERE.parents[2]


def make_increment(root: Path, tokens: int, partitions: int, group_rows: int | None) -> Path:
    """The large-model benchmark's increment of ``tokens`` tokens in ``partitions`` Parquet partitions, written
    again in row groups of ``group_rows`` rows if given (as a stream of small writes leaves them)."""
    import pyarrow.parquet as pq

    from tests.benchmarks.large_model import Spec, write_increment  # gensim and Ray: not in measuring processes

    if not (root / "done").exists():
        write_increment(Spec(increment_tokens=tokens, partitions=partitions), root / "data")
        for path in (root / "data").glob("*/*.parquet") if group_rows else ():
            pq.write_table(pq.read_table(path), path, row_group_size=group_rows)
        (root / "done").write_text("")
    return root / "data"


SETTINGS = ("quiet", "busy", "import")


class Busy(threading.Thread):
    """A thread running Python code (it holds the GIL but for the interpreter's switch interval)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.cpu = 0.0

    def run(self) -> None:
        start = time.thread_time()
        while not self.stop.is_set():
            sum(i * i for i in range(2_000))
        self.cpu = time.thread_time() - start


class Importing(threading.Thread):
    """The actor's import of gensim's training modules (:meth:`Trainer.prepare` starts it as the corpus comes)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()  # the import runs to its end: nothing to stop
        self.cpu = 0.0  # counted with the phase's: it competes for the same two cores, as in the actor

    def run(self) -> None:
        from jobs.training import trainer

        trainer._import_training_modules()


def one_round(root: Path, setting: str) -> dict[str, Any]:
    """Tokenize every partition under ``root`` in a fresh ``Trainer``, as the job does; the seconds, and
    digests of what it left."""
    import pyarrow.fs as pafs

    from jobs.training.trainer import Trainer
    from shards.partitions import discover
    from shards.tokenize import TokenizerConfig
    from shards.tokenized import ReadOptions

    fs = pafs.LocalFileSystem()
    partitions = discover(fs, str(root))
    read, tokenizer = ReadOptions(), TokenizerConfig()
    with tempfile.TemporaryDirectory() as spool_dir:
        trainer = Trainer(spool_dir=spool_dir)
        hog: Busy | Importing | None = Busy() if setting == "busy" else Importing() if setting == "import" else None
        if hog is not None:
            hog.start()
            time.sleep(0.05 if setting == "busy" else 0.0)  # the import starts with the corpus, as in the actor
        wall, cpu = time.perf_counter(), time.process_time()
        answers = [trainer.tokenize(fs, p, read, tokenizer, 2)[0] for p in partitions]
        counts = trainer._merged_counts()  # what finish() takes first
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if hog is not None:
            hog.stop.set()
            hog.join()
            cpu -= hog.cpu  # about: its CPU before and after the measured span is left in
        trainer.spool.flush()
        spool = hashlib.sha256(trainer.corpus_path.read_bytes()).hexdigest()
        trainer.close()
    return {
        "wall": wall,
        "cpu": cpu,
        "spool": spool,
        "counts": hashlib.sha256(json.dumps(sorted(counts.items())).encode()).hexdigest(),
        "order": hashlib.sha256(json.dumps(list(counts)).encode()).hexdigest(),  # new words join in this order
        "words": len(counts),
        "answers": [list(a) if isinstance(a, tuple) else str(a) for a in answers],
    }


def measure(root: Path, rounds: int, setting: str) -> list[dict[str, Any]]:
    return [one_round(root, setting) for _ in range(rounds)]


def child(tree: Path, root: Path, rounds: int, setting: str) -> list[dict[str, Any]]:
    """``measure`` in a fresh process importing ``jobs`` and ``shards`` from ``tree``."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import runpy; "
        "m = runpy.run_path(sys.argv[2]); "
        "print(json.dumps(m['measure'](m['Path'](sys.argv[3]), int(sys.argv[4]), sys.argv[5])))"
    )
    args = [sys.executable, "-c", code, str(tree), str(_HERE), str(root), str(rounds), setting]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.in_trainer")
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3, help="rounds in each process (the first is cold)")
    p.add_argument("--repeats", type=int, default=2, help="processes per side and setting, interleaved")
    p.add_argument("--against", type=Path, help="a checkout of other code to measure the same way (the baseline)")
    p.add_argument("--row-group-rows", type=int, help="write the partitions in row groups of this many rows")
    p.add_argument("--cache", type=Path, default=_REPO / ".bench" / "in_trainer")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    key = f"{a.tokens}-{a.partitions}" + (f"-{a.row_group_rows}" if a.row_group_rows else "")
    root = make_increment(a.cache / key, a.tokens, a.partitions, a.row_group_rows)
    sides = {"baseline": a.against.resolve(), "this": _REPO} if a.against else {"this": _REPO}
    runs: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
    for setting in SETTINGS:
        for _ in range(a.repeats):
            for name, tree in sides.items():
                runs.setdefault((name, setting), []).append(child(tree, root, a.rounds, setting))
    every = [r for rounds in runs.values() for process in rounds for r in process]
    for key in ("spool", "counts", "answers", "words"):
        values = {json.dumps(r[key]) for r in every}
        assert len(values) == 1, f"the runs differ in {key}: {values}"
    first = every[0]
    assert all(isinstance(answer, list) for answer in first["answers"]), first["answers"]
    tokens = sum(answer[2] for answer in first["answers"])
    load = os.getloadavg()[0]
    print(f"{len(first['answers'])} partitions, {tokens:,} tokens, {first['words']:,} words; load {load:.1f}")
    print("| code | setting | first wall s | first CPU s | best wall s | best CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, setting), processes in runs.items():
        firsts = [process[0] for process in processes]
        rounds = [r for process in processes for r in process]
        row = (
            min(r["wall"] for r in firsts),
            min(r["cpu"] for r in firsts),
            min(r["wall"] for r in rounds),
            min(r["cpu"] for r in rounds),
        )
        print(f"| {name} | {setting} | " + " | ".join(f"{x:.3f}" for x in row) + " |")
    print("spools, counts and answers identical across every run")
    for name in sides:
        orders = {r["order"] for (side, _), processes in runs.items() if side == name for p in processes for r in p}
        print(f"{name}: the counts' word order is {'the same in' if len(orders) == 1 else 'different across'} its runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
