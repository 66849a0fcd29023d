"""Benchmark: one large text file tokenized by one task, against split into pieces over every core.

    python -m tests.benchmarks.split                         # a 1 GiB file, on a local Ray with all cores
    python -m tests.benchmarks.split --gib 0.25 --cpus 2     # a quick look

Each run streams the file through the real path (:func:`jobs.tokenize.stream`: streaming tasks, the training
actor spooling to disk) on a fresh local Ray, once with ``--piece-bytes`` above the file's size (one task)
and once with the default piece size (the file split into pieces). It reports the wall time and the peak
resident memory (the kernel's high-water mark, ``VmHWM``) of the busiest tokenizing worker, sampled from
``/proc`` while the run goes on. The spools of both runs are checked equal. Prints one table.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "token")

import psutil

from tests.support.corpora import clustered

MiB = 1 << 20


def make_file(path: Path, size: int) -> Path:
    """A text file of about ``size`` bytes: clustered documents, one a line (cached)."""
    if path.exists() and path.stat().st_size >= size:
        return path
    block = ("\n".join(clustered(20_000, seed=7)) + "\n").encode()
    with open(path, "wb") as out:
        written = 0
        while written < size:
            out.write(block)
            written += len(block)
    return path


class PeakWatcher(threading.Thread):
    """Samples the memory of every process of this Ray titled ``ray::tokenize ...``: the kernel's peak of
    resident memory (VmHWM, which also counts the object store's shared pages a worker wrote its batches into)
    and, sampled every 50 ms, the peak of its private memory (RssAnon: what the worker itself holds)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self.private: dict[int, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.stopped.is_set():
            for proc in me.children(recursive=True):
                with contextlib.suppress(psutil.Error, OSError, ValueError):
                    if " ".join(proc.cmdline()).startswith("ray::tokenize"):  # tasks are named "tokenize <file>"
                        hwm, anon = _status(proc.pid)
                        self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), hwm)
                        self.private[proc.pid] = max(self.private.get(proc.pid, 0), anon)
            time.sleep(0.05)

    def stop(self) -> tuple[int, int]:
        self.stopped.set()
        self.join(timeout=5)
        return max(self.peaks.values(), default=0), max(self.private.values(), default=0)


def _status(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) << 10, int(fields["RssAnon"].split()[0]) << 10


def one_run(data: Path, piece_bytes: int, cpus: int, work: Path) -> dict[str, Any]:
    import ray

    from jobs import cluster, tokenize
    from jobs.config import RefreshConfig, TrainingConfig
    from shards.partitions import discover, open_filesystem
    from shards.tokenized import ReadOptions

    spool = Path(tempfile.mkdtemp(dir=work))
    config = RefreshConfig(
        input=str(data),
        store=str(work / "store"),
        read=ReadOptions(piece_bytes=piece_bytes),
        training=TrainingConfig(workers=1),
        spool_dir=str(spool),
    )
    ray.init(
        num_cpus=cpus,
        object_store_memory=1 << 30,
        include_dashboard=False,
        _temp_dir=tempfile.mkdtemp(prefix="rb-", dir="/tmp"),
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    try:
        fs, root = open_filesystem(str(data))
        partitions = discover(fs, root)
        with cluster.trainer_actor(config) as trainer:
            ray.get(trainer.actor.__ray_ready__.remote())  # the actor's start-up is not tokenizing time
            watcher = PeakWatcher()
            watcher.start()
            start = time.perf_counter()
            outcome = tokenize.stream(config, fs, partitions, trainer)
            seconds = time.perf_counter() - start
            peak, private = watcher.stop()
            [corpus] = spool.glob("*/corpus.txt")
            digest = hashlib.sha256()
            with open(corpus, "rb") as spooled:
                for chunk in iter(lambda: spooled.read(16 * MiB), b""):
                    digest.update(chunk)
    finally:
        ray.shutdown()
    return {
        "seconds": seconds,
        "peak": peak,
        "private": private,
        "pieces": outcome.pieces,
        "tokens": outcome.tokens,
        "sha": digest.hexdigest(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.split")
    p.add_argument("--gib", type=float, default=1.0, help="size of the text file")
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    p.add_argument("--piece-mib", type=int, default=128)
    p.add_argument("--work", default=".bench/split", help="where the file and the spools go")
    a = p.parse_args(argv)
    work = Path(a.work)
    (work / "data").mkdir(parents=True, exist_ok=True)
    path = make_file(work / "data" / "big.txt", int(a.gib * (1 << 30)))
    size = path.stat().st_size
    whole = one_run(work / "data", 2 * size, a.cpus, work)
    split = one_run(work / "data", a.piece_mib * MiB, a.cpus, work)
    assert whole["sha"] == split["sha"] and whole["tokens"] == split["tokens"], "the spools differ"
    print(
        f"{size / (1 << 30):.2f} GiB of text, {whole['tokens']:,} tokens, {a.cpus} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print("| measurement | split | one task | ratio |")
    print("| --- | --- | --- | --- |")
    print(
        f"| wall time ({split['pieces']} pieces of {a.piece_mib} MiB vs 1) | {split['seconds']:.1f} s | "
        f"{whole['seconds']:.1f} s | {whole['seconds'] / split['seconds']:.2f}x faster |"
    )
    for key, name in (("private", "private (RssAnon, sampled)"), ("peak", "resident (VmHWM, with shared store pages)")):
        print(
            f"| peak worker memory, {name} | {split[key] / MiB:,.0f} MiB | {whole[key] / MiB:,.0f} MiB | "
            f"{split[key] / max(whole[key], 1):.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
