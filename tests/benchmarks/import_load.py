"""Importing a large model, and reading it back with ``load_vectors`` cold and warm, against plain gensim.

    python -m tests.benchmarks.import_load                      # 1M words x 300 dimensions (~9 GB of disk)
    python -m tests.benchmarks.import_load --words 200000 --dims 100     # a quick look

A Word2Vec of ``--words`` x ``--dims`` is built with gensim (``build_vocab_from_freq``, gensim's random initial
vectors; training does not change the sizes) and saved with ``save()``, its arrays beside it as ``.npy``.
Then, each row against its baseline measured in the same run:

* **import**: ``python -m jobs.versions import`` into an empty local store (unpickle and upgrade, validate,
  save through the trainer's save path with the word2vec export beside it, SHA-256 and copy every file into
  the store, manifest, pointer) against gensim's own ``Word2Vec.load()`` + ``save()`` of the same file;
* **load_vectors cold**: an empty cache (copy the files from the store, verify every SHA-256, let gensim
  read them memory-mapped) against gensim's ``Word2Vec.load(mmap="r").wv`` straight from the store's files;
* **load_vectors warm**: the same call again, served from the cache (the SHA-256 check of the cached files
  is most of it), against the same baseline; its ratio to the cold load is printed too.

The store is a local folder, so "cold" measures a copy, not a network download; against S3 the cold load
costs the download on top. The page cache is warm for every row after the first read of a file, as it is for
a service that restarts on the same host.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from gensim.models import Word2Vec

from jobs.vectors import load_vectors
from jobs.versions import main as versions_main


def build(folder: Path, words: int, dims: int) -> Path:
    model = Word2Vec(vector_size=dims, min_count=1, workers=1, seed=1)
    counts = np.random.default_rng(1).zipf(1.3, size=words).clip(1, 10**9)
    model.build_vocab_from_freq({f"w{i}": int(c) for i, c in enumerate(counts)})
    model.syn1neg[:] = np.random.default_rng(2).standard_normal(model.syn1neg.shape, dtype=np.float32) * 0.01
    path = folder / "pretrained.model"
    model.save(str(path))
    return path


def timed(label: str, action) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    logging.getLogger(__name__).info("%s: %.1f s", label, seconds)
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.import_load", description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, default=300)
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed at the end)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger(__name__).setLevel(logging.INFO)
    work = Path(tempfile.mkdtemp(prefix="bench-import-", dir=a.work))
    try:
        source = timed("build and save the model", lambda: build(work, a.words, a.dims))
        path = work / "pretrained.model"
        del source

        def gensim_round_trip() -> None:
            Word2Vec.load(str(path)).save(str(work / "resaved.model"))

        baseline_import = timed("gensim load + save", gensim_round_trip)
        store = work / "store"
        imported = timed(
            "jobs.versions import",
            lambda: versions_main(["import", str(path), "--store", str(store), "--kind", "gensim"]),
        )
        baseline_load = timed("gensim load(mmap='r').wv", lambda: Word2Vec.load(str(path), mmap="r").wv)
        cache = work / "cache"
        cold = timed("load_vectors cold", lambda: load_vectors(str(store), mmap="r", cache_dir=cache))
        warm = timed("load_vectors warm", lambda: load_vectors(str(store), mmap="r", cache_dir=cache))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("import", "gensim load() + save()", imported, baseline_import),
        ("load_vectors cold", "gensim load(mmap='r').wv", cold, baseline_load),
        ("load_vectors warm", "gensim load(mmap='r').wv", warm, baseline_load),
    ]
    print(f"{a.words:,} words x {a.dims} dimensions")
    print(f"| {'measurement':<18} | {'job':>8} | {'baseline':<26} | {'baseline s':>10} | {'ratio':>6} |")
    print(f"| {'-' * 18} | {'-' * 8} | {'-' * 26} | {'-' * 10} | {'-' * 6} |")
    for name, base, job, reference in rows:
        print(f"| {name:<18} | {job:>7.1f}s | {base:<26} | {reference:>9.1f}s | {job / reference:>5.2f}x |")
    print(f"load_vectors warm / cold: {warm / cold:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
