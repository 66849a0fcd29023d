"""Whether the Ray workers' memory stays flat as one plain-text partition grows: the largest worker's peak RSS.

    python -m tests.benchmarks.partition_memory                       # one partition of 300 MB, then 1,200 MB
    python -m tests.benchmarks.partition_memory --sizes 30 120        # the same ratio, a quick look

For each size, in a fresh process with a fresh local Ray (``--cpus``, 2 by default), one plain-text partition
of that many MB (lines of 20 pseudo-words drawn from a Zipf law over ``--vocab`` words: a vocabulary complete
long before the smaller size, so the counts do not grow with the file) is tokenized into a training actor
exactly as a refresh does it (``jobs.tokenize.stream`` with the job's default pieces, blocks and in-flight
budget), with no training after it: training's memory is the model's, not the partition's. Every process of
that Ray (the tokenizing workers, the training actor, the raylet, ...) and the driver are sampled every 50 ms;
each one's peak is its ``VmHWM`` (which counts the object store's shared pages it wrote), and its
largest ``RssAnon`` (its own memory) is given beside it. The row: the largest Ray worker's peak at the larger
size against the smaller one's, target 1.2x + 64 MB. Kept out of CI (minutes of tokenizing, a file of the
size on disk); run by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before anything imports Ray (see tests/benchmarks/__main__)

import numpy as np
import pyarrow.fs as pafs

from tests.benchmarks import large_model
from tests.benchmarks import refresh as bench

MB = 1 << 20
_BLOCK = 8 * MB  # the file is this block of generated text, written again and again


def write_partition(path: Path, size_mb: int, vocab: int, seed: int) -> int:
    """A plain-text partition of ``size_mb`` MB at ``path``: one block of Zipf text repeated; its bytes."""
    rng = np.random.default_rng(seed)
    words = np.array(large_model.words(np.arange(vocab)), dtype=object)  # lowercase letters: tokens as they are
    weights = 1.0 / (np.arange(vocab) + 2.7)
    drawn = words[rng.choice(vocab, size=(_BLOCK // 100, 20), p=weights / weights.sum())]
    lines = [" ".join(row) + "\n" for row in drawn]
    block = "".join(lines).encode()[:_BLOCK]
    block = block[: block.rindex(b"\n") + 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("wb") as f:
        while written < size_mb * MB:
            f.write(block)
            written += len(block)
    return written


def one(size_mb: int, vocab: int, cpus: int, work: Path, flags: list[str]) -> dict[str, Any]:
    """Tokenize one partition of ``size_mb`` MB into a training actor; every process's peak RSS."""
    from jobs import cluster, tokenize
    from jobs.config import from_args
    from shards.partitions import discover

    data = work / "data"
    written = write_partition(data / "dt=2026-06-01" / "part-00000.txt", size_mb, vocab, seed=3)
    peaks: dict[int, tuple[str, int]] = {}
    private: dict[int, int] = {}  # the largest RssAnon seen: memory of its own, not the object store's pages
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid, title in bench.descendants().items():
                hwm = bench._status(pid, "VmHWM")
                if hwm > peaks.get(pid, ("", 0))[1]:  # the title it had when it grew (an idle worker's changes)
                    peaks[pid] = (title[:80], hwm)
                private[pid] = max(private.get(pid, 0), bench._status(pid, "RssAnon"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    with bench.local_ray(cpus):
        config = from_args(
            ["--input", str(data), "--store", str(work / "store"), "--workers", "1", "--spool-dir", str(work), *flags]
        )
        fs = pafs.LocalFileSystem()
        partitions = discover(fs, str(data))
        watcher.start()
        start = time.perf_counter()
        with cluster.trainer_actor(config) as trainer:
            outcome = tokenize.stream(config, fs, partitions, trainer)
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
    workers = {pid: p for pid, p in peaks.items() if p[0].startswith("ray::")}
    largest = max(workers.values(), key=lambda p: p[1]) if workers else ("", 0)
    own = max(((workers[pid][0], private.get(pid, 0)) for pid in workers), key=lambda p: p[1], default=("", 0))
    return {
        "size_mb": round(written / MB),
        "tokens": outcome.tokens,
        "pieces": outcome.pieces,
        "seconds": round(seconds, 1),
        "largest_worker": {"title": largest[0], "peak_mb": round(largest[1] / MB, 1)},
        "largest_worker_private": {"title": own[0], "peak_mb": round(own[1] / MB, 1)},
        "driver_peak_mb": round(bench._status(os.getpid(), "VmHWM") / MB, 1),
        "workers": sorted(
            (
                {"title": t, "peak_mb": round(h / MB, 1), "private_peak_mb": round(private.get(pid, 0) / MB, 1)}
                for pid, (t, h) in workers.items()
            ),
            key=str,
        ),
        "others": sorted(
            ({"title": t, "peak_mb": round(h / MB, 1)} for pid, (t, h) in peaks.items() if pid not in workers),
            key=lambda p: -p["peak_mb"],
        )[:5],
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.partition_memory", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs=2, default=[300, 1200], metavar="MB", help="the two partition sizes")
    p.add_argument("--vocab", type=int, default=50_000, help="distinct words in the text")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--out", type=Path, default=Path(".bench"), help="folder for the JSON result and scratch files")
    p.add_argument(
        "--piece-bytes",
        help="the job's --piece-bytes (default: its own, 128MiB); scale it with --sizes for a quick look that "
        "splits as the full sizes do (e.g. --sizes 24 96 --piece-bytes 10MiB)",
    )
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a single size, in this process (the child)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="partition-memory-", dir=a.out)).resolve()
    try:
        if a.one is not None:
            flags = ["--piece-bytes", a.piece_bytes] if a.piece_bytes else []
            print(json.dumps(one(a.one, a.vocab, a.cpus, work, flags)))
            return 0
        results = []
        for size in a.sizes:  # each in a process of its own: its peaks are its own
            child = [sys.executable, "-m", "tests.benchmarks.partition_memory", "--one", str(size)]
            child += ["--vocab", str(a.vocab), "--cpus", str(a.cpus), "--out", str(work)]
            child += ["--piece-bytes", a.piece_bytes] if a.piece_bytes else []
            out = subprocess.run(child, check=True, stdout=subprocess.PIPE, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            logging.info("%s MB: %s", size, json.dumps(results[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    small, large = (r["largest_worker"]["peak_mb"] for r in results)
    limit = 1.2 * small + 64
    pieces = a.piece_bytes or "128MiB (the default)"
    print(f"partition memory: one plain-text partition, {a.cpus} CPUs, {a.vocab:,} words, pieces of {pieces}")
    for r in results:
        print(
            f"  {r['size_mb']:>6} MB: {r['tokens']:>12,} tokens, {r['pieces']} pieces, {r['seconds']}s; largest Ray "
            f"worker {r['largest_worker']['peak_mb']:,.0f} MB ({r['largest_worker']['title']}); driver "
            f"{r['driver_peak_mb']:,.0f} MB; largest private (RssAnon) "
            f"{r['largest_worker_private']['peak_mb']:,.0f} MB "
            f"({r['largest_worker_private']['title']})"
        )
    verdict = "ok" if large <= limit else "MISSED"
    print(f"  largest worker: {large:,.0f} MB vs {small:,.0f} MB (limit 1.2x + 64 = {limit:,.0f} MB): {verdict}")
    path = a.out / time.strftime("partition-memory-%Y%m%dT%H%M%S.json")
    path.write_text(json.dumps({"sizes": a.sizes, "results": results, "limit_mb": limit}, indent=2))
    print(f"written to {path}")
    return 0 if large <= limit else 1


if __name__ == "__main__":
    sys.exit(main())
