"""Exact epochs against gensim's own ``corpus_file`` mode: coverage on a spool whose words per byte vary, and
training-step throughput on uniform data.

    python -m tests.benchmarks.exact                       # about 3 minutes on a 2-core VM
    python -m tests.benchmarks.exact --tokens 1000000 --rounds 1 --threads 2

Two tables, every number measured in this run:

1. **Coverage** on the mixed-density spool (the first half of its bytes 2-letter words, the second half
   12-letter words, each word occurring in one stretch of the text only; ``sample=0``, one epoch), at 2, 4
   and 8 threads: the raw words each mode trained (gensim's own count) of those spooled, and how many of the
   vocabulary's words kept their initial vectors (never trained). gensim starts thread *k* at byte
   ``size·k/W`` but stops it after ``words/W`` words, so its threads overlap in one half and leave the other
   partly untrained.
2. **Throughput** on uniform data (Zipf-distributed words of one length, CBOW, 100 dimensions, window 5,
   negative 5, ``--epochs``): words per second of the training step, the job's exact epochs against
   ``Word2Vec.train(corpus_file=...)`` on the same sentences with the same model and threads, best of
   ``--rounds`` interleaved attempts. Words per second count the spooled tokens times the epochs, for both
   (gensim trains a few fewer: it drops the end of every batch). Target: ≥ 0.97×. The cost of writing the
   spool in whole batches, against writing the same bytes plainly, is printed beside it.

It is run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from gensim.models import Word2Vec

from jobs.training import epochs
from jobs.training.spool import Layout, Spool

LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def vocabulary(n: int, length: int, rng: np.random.Generator) -> list[bytes]:
    return sorted({bytes(rng.choice(LETTERS, length)) for _ in range(n)})


def lines_of(
    words: list[bytes], tokens: int, sentence: int, rng: np.random.Generator, zipf: float = 0.0, local: int = 0
) -> bytes:
    """``tokens`` words in sentences of ``sentence`` words: Zipf draws with exponent ``zipf``, or, with
    ``local``, uniform draws from a window of ``local`` words that slides through the vocabulary along the
    text (so each word occurs in one stretch of it only), else uniform draws."""
    if zipf:
        p = 1.0 / (np.arange(len(words)) + 2.7) ** zipf
        ids = rng.choice(len(words), tokens, p=p / p.sum())
    elif local:
        ids = np.arange(tokens) * (len(words) - local) // tokens + rng.integers(0, local, tokens)
    else:
        ids = rng.integers(0, len(words), tokens)
    out = bytearray()
    for start in range(0, tokens, sentence):
        out += b" ".join(words[i] for i in ids[start : start + sentence]) + b"\n"
    return bytes(out)


def model(counts: dict[str, int], threads: int, epochs_: int, sample: float) -> Word2Vec:
    m = Word2Vec(vector_size=100, window=5, negative=5, min_count=1, sample=sample, workers=threads, seed=1)
    m.epochs = epochs_
    m.build_vocab_from_freq(counts)
    return m


def counts_of(data: bytes) -> dict[str, int]:
    words, counts = np.unique(np.array(data.split()), return_counts=True)
    return {w.decode(): int(c) for w, c in zip(words, counts, strict=True)}


def spool(data: bytes, path: Path) -> tuple[Layout, float]:
    start = time.perf_counter()
    writer = Spool(path)
    writer.write(data, "benchmark")
    layout = writer.close()
    return layout, time.perf_counter() - start


def coverage(folder: Path, threads: list[int]) -> list[str]:
    rng = np.random.default_rng(0)
    short, long_ = vocabulary(5000, 2, rng), vocabulary(3000, 12, rng)  # all 676 two-letter words
    first = lines_of(short, 400_000, 20, rng, local=20)
    second = lines_of(long_, len(first) // 13, 20, rng, local=40)  # about as many bytes as the first half
    data = first + second
    plain = folder / "mixed.txt"
    plain.write_bytes(data)
    layout, _ = spool(data, folder / "mixed.spool")
    counts = counts_of(data)
    tokens = sum(counts.values())
    rows = [
        f"mixed-density spool: {tokens:,} tokens, {len(data):,} bytes, {len(counts):,} words; one epoch, sample=0",
        "| threads | gensim corpus_file: trained | words never trained | job: trained | words never trained |",
        "| --- | --- | --- | --- | --- |",
    ]
    for w in threads:
        theirs = model(counts, w, 1, 0.0)
        initial = theirs.wv.vectors.copy()
        _, raw = theirs.train(corpus_file=str(plain), total_examples=data.count(b"\n"), total_words=tokens, epochs=1)
        theirs_unmoved = int((theirs.wv.vectors == initial).all(axis=1).sum())
        ours = model(counts, w, 1, 0.0)
        outcome = epochs.train(ours, layout, w, 1, ours.alpha, ours.min_alpha)
        ours_unmoved = int((ours.wv.vectors == initial).all(axis=1).sum())
        rows.append(
            f"| {w} | {raw:,} ({raw / tokens:.1%}) | {theirs_unmoved:,} | {outcome.trained[0]:,} "
            f"({outcome.trained[0] / tokens:.1%}) | {ours_unmoved:,} |"
        )
    return rows


def throughput(folder: Path, tokens: int, threads: int, n_epochs: int, rounds: int) -> list[str]:
    rng = np.random.default_rng(1)
    data = lines_of(vocabulary(20_000, 6, rng), tokens, 20, rng, zipf=1.05)
    plain = folder / "uniform.txt"
    start = time.perf_counter()
    plain.write_bytes(data)
    plain_write = time.perf_counter() - start
    layout, spool_write = spool(data, folder / "uniform.spool")
    counts = counts_of(data)
    words = sum(counts.values()) * n_epochs
    best = {"gensim": float("inf"), "job": float("inf")}
    cpu = dict(best)
    for _ in range(rounds):
        theirs = model(counts, threads, n_epochs, 1e-3)
        start, cpu_start = time.perf_counter(), time.process_time()
        theirs.train(
            corpus_file=str(plain), total_examples=data.count(b"\n"), total_words=layout.tokens, epochs=n_epochs
        )
        best["gensim"] = min(best["gensim"], time.perf_counter() - start)
        cpu["gensim"] = min(cpu["gensim"], time.process_time() - cpu_start)
        ours = model(counts, threads, n_epochs, 1e-3)
        start, cpu_start = time.perf_counter(), time.process_time()
        epochs.train(ours, layout, threads, n_epochs, ours.alpha, ours.min_alpha)
        best["job"] = min(best["job"], time.perf_counter() - start)
        cpu["job"] = min(cpu["job"], time.process_time() - cpu_start)
    rate = {k: words / v for k, v in best.items()}
    cpu_rate = {k: words / v for k, v in cpu.items()}
    return [
        f"uniform data: {layout.tokens:,} tokens, {n_epochs} epochs, {threads} threads, CBOW 100-d, best of {rounds}",
        "| measurement | job | gensim corpus_file | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| training step | {rate['job'] / 1e6:.3f}M words/s | {rate['gensim'] / 1e6:.3f}M words/s | "
        f"{rate['job'] / rate['gensim']:.3f}× | ≥ 0.97× |",
        f"| training step, per CPU second | {cpu_rate['job'] / 1e6:.3f}M words | {cpu_rate['gensim'] / 1e6:.3f}M words "
        f"| {cpu_rate['job'] / cpu_rate['gensim']:.3f}× | (load from other processes distorts it least) |",
        f"| writing the spool | {spool_write:.2f} s (whole batches) | {plain_write:.2f} s (plain) | "
        f"{spool_write / max(plain_write, 1e-9):.1f}× | {spool_write / best['job']:.1%} of the training step |",
    ]


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.exact", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=3_000_000, help="tokens of the uniform corpus")
    p.add_argument("--threads", type=int, default=2, help="threads of the throughput row")
    p.add_argument("--coverage-threads", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-coverage", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-exact-") as tmp:
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        if not a.skip_coverage:
            print("\n".join(coverage(Path(tmp), a.coverage_threads)), "\n", flush=True)
        print("\n".join(throughput(Path(tmp), a.tokens, a.threads, a.epochs, a.rounds)))


if __name__ == "__main__":
    main()
