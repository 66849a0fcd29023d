"""The store's pickle-free model format against gensim's own save()/load(): time and size, same run.

    python -m tests.benchmarks.model_format                                   # 1M words x 100 dims, both kinds
    python -m tests.benchmarks.model_format --words 200000 --kinds word2vec   # a quick look

For each kind, a model of ``--words`` words with Zipf counts is built once (its vocabulary by gensim's
``build_vocab_from_freq``, its arrays filled with random values: training would not change what is measured),
then, one after the other in this process:

- save: gensim's ``save()`` alone; the previous version's model files (``save()`` plus ``vectors.bin`` in
  word2vec binary format, what every version stored); :func:`jobs.training.serialize.save`;
- load, trainable: gensim's ``load()`` against :func:`~jobs.training.serialize.load` (both equal, checked);
- load for readers: gensim's ``load(mmap="r").wv`` against :func:`~jobs.training.serialize.load_keyed_vectors`
  (memory-mapped);
- size on disk of each.

Each timing is the best of ``--repeat`` runs, the baseline measured next to the candidate; the files are in
the page cache for both (a cold read from disk or S3 costs both formats the same bytes). FastText's 2M-bucket
n-gram array alone is 800 MB at 100 dimensions; ``--bucket`` makes it smaller where memory is short.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gensim.models import FastText, Word2Vec

from jobs.config import TrainingConfig
from jobs.training import model as gmodel
from jobs.training import serialize
from jobs.training.vocabulary import compose_vectors

log = logging.getLogger(__name__)
MB = 1 << 20


def build(kind: str, words: int, dim: int, bucket: int) -> Word2Vec:
    """A model of ``words`` words with Zipf counts and random arrays, as training would leave it."""
    config = TrainingConfig(model=kind, vector_size=dim, min_count=1, bucket=bucket, workers=1)  # type: ignore[arg-type]
    model = gmodel.create(config)
    counts = np.maximum((5e8 / np.arange(1, words + 1) ** 1.05).astype(np.int64), 5)
    vocabulary = {f"w{i:07d}{chr(97 + i % 26)}": int(c) for i, c in enumerate(counts)}
    model.build_vocab_from_freq(vocabulary, corpus_count=words)
    rng = np.random.default_rng(0)
    model.syn1neg[:] = rng.standard_normal(model.syn1neg.shape, dtype=np.float32)
    if isinstance(model, FastText):
        model.wv.vectors_ngrams[:] = rng.standard_normal(model.wv.vectors_ngrams.shape, dtype=np.float32) / 10
        model.wv.vectors = compose_vectors(model.wv)  # gensim's adjust_vectors(), to the bit, without its loop
    return model


def best(repeat: int, action: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        result = None  # the previous result's memory is released before the next run
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return min(times), result


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def time_saves(model: Word2Vec, work: Path, repeat: int) -> dict[str, float]:
    """Seconds to save with gensim, as the previous version did (plus ``vectors.bin``), and in this format."""

    def gensim_save(folder: Path, with_vectors: bool) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        model.save(str(folder / "embedding.model"))
        if with_vectors:
            model.wv.save_word2vec_format(str(folder / "vectors.bin"), binary=True)

    def ours_save() -> None:
        shutil.rmtree(work / "ours", ignore_errors=True)
        serialize.save(model, work / "ours")

    return {
        "gensim": best(repeat, lambda: gensim_save(work / "gensim", False))[0],
        "previous": best(1, lambda: gensim_save(work / "previous", True))[0],
        "ours": best(repeat, ours_save)[0],
    }


def measure(kind: str, words: int, dim: int, bucket: int, repeat: int, work: Path) -> list[tuple[str, str, str]]:
    cls = FastText if kind == "fasttext" else Word2Vec
    start = time.perf_counter()
    model = build(kind, words, dim, bucket)
    log.info("%s: built %d words x %d in %.1fs", kind, len(model.wv), dim, time.perf_counter() - start)
    saved = time_saves(model, work, repeat)
    reference = model.wv.vectors.copy()
    del model
    gensim_file, ours_dir = str(work / "gensim" / "embedding.model"), work / "ours"

    t_gensim_load, theirs = best(repeat, lambda: cls.load(gensim_file))
    theirs_vectors = theirs.wv.vectors.copy()
    del theirs
    t_ours_load, ours = best(repeat, lambda: serialize.load(ours_dir))
    assert np.array_equal(ours.wv.vectors, theirs_vectors) and np.array_equal(ours.wv.vectors, reference)
    del ours, theirs_vectors
    t_gensim_read, _ = best(repeat, lambda: cls.load(gensim_file, mmap="r").wv)
    t_ours_read, wv = best(repeat, lambda: serialize.load_keyed_vectors(ours_dir))
    assert np.array_equal(wv.vectors, reference)
    del wv

    sizes = {name: size(work / name) / MB for name in ("gensim", "previous", "ours")}
    for name in sizes:
        shutil.rmtree(work / name)
    label = f"{kind} {words:,} x {dim}" + (f", {bucket:,} buckets" if kind == "fasttext" else "")

    def row(what: str, ours: float, base: float, baseline: str, unit: str = "s") -> tuple[str, str, str]:
        return (f"{label}: {what}", f"{ours:,.2f} {unit} vs {baseline} {base:,.2f} {unit}", f"{ours / base:.2f}x")

    return [
        row("save", saved["ours"], saved["gensim"], "gensim save()"),
        row("save", saved["ours"], saved["previous"], "previous version's (save() + vectors.bin)"),
        row("load, trainable", t_ours_load, t_gensim_load, "gensim load()"),
        row("load for readers (mmap)", t_ours_read, t_gensim_read, "load(mmap='r').wv"),
        row("size", sizes["ours"], sizes["gensim"], "gensim save()", "MB"),
        row("size", sizes["ours"], sizes["previous"], "previous version's", "MB"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.model_format", description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--bucket", type=int, default=TrainingConfig.bucket)
    p.add_argument("--kinds", nargs="+", default=["word2vec", "fasttext"], choices=["word2vec", "fasttext"])
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-format-") as tmp:
        for kind in a.kinds:
            rows += measure(kind, a.words, a.dim, a.bucket, a.repeat, Path(tmp))
    width = max(len(r[0]) for r in rows)
    print(f"\nload average {os.getloadavg()[0]:.1f}; ratio = ours / baseline (lower is better)")
    print(f"| {'measurement':<{width}} | ours vs baseline | ratio |\n| {'-' * width} | --- | --- |")
    for name, values, ratio in rows:
        print(f"| {name:<{width}} | {values} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
