"""Benchmark: summing the word counts of many pieces, as the training actor does while it ingests.

    python -m tests.benchmarks.counts                                  # ~0.8M words over 10,000 partitions
    python -m tests.benchmarks.counts --words 200000 --partitions 2000 # a quick look

The baseline is the former rule: keep the tables in a list and re-group the whole list every 32 partitions,
which costs the running table's size (up to the vocabulary) each time. The job's :class:`RunningCounts`
merges tables of similar size only (a binary counter). Each partition holds a Zipf-distributed sample of
the vocabulary's frequent words plus a run of rare words of its own, so the running table grows to the
whole vocabulary. Both results are checked equal. Prints one table; the ratio is baseline over job.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shards.counts import RunningCounts, merge_counts


def tables(words: int, partitions: int, frequent: int, seed: int) -> list[pa.Table]:
    """``partitions`` (word, count) tables whose union is ``words`` words."""
    rng = np.random.default_rng(seed)
    vocabulary = pa.array([f"w{i:07d}" for i in range(words)], pa.string())
    head = words // 2  # frequent words come from the first half, by a Zipf law
    rare = (words - head) // partitions  # each partition's own rare words cover the second half
    out = []
    for p in range(partitions):
        ranks = np.unique(np.minimum(rng.zipf(1.3, frequent), head) - 1)
        own = np.arange(head + p * rare, head + (p + 1) * rare)
        index = np.concatenate([ranks, own])
        counts = rng.integers(1, 50, len(index))
        out.append(pa.table({"word": vocabulary.take(pa.array(index)), "count": pa.array(counts, pa.int64())}))
    return out


def every_32(parts: list[pa.Table]) -> pa.Table:
    held: list[pa.Table] = []
    for table in parts:
        held.append(table)
        if len(held) >= 32:
            held = [merge_counts(held)]
    return merge_counts(held)


def running(parts: list[pa.Table]) -> pa.Table:
    counts = RunningCounts()
    for table in parts:
        counts.add(table)
    return counts.table()


def timed(fn: object, parts: list[pa.Table]) -> tuple[float, pa.Table]:
    start = time.perf_counter()
    result = fn(parts)  # type: ignore[operator]
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.counts")
    p.add_argument("--words", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=10_000)
    p.add_argument("--frequent", type=int, default=3_000, help="Zipf draws of frequent words per partition")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    parts = tables(a.words, a.partitions, a.frequent, a.seed)
    rows = sum(t.num_rows for t in parts)
    ours_s, ours = timed(running, parts)
    theirs_s, theirs = timed(every_32, parts)
    assert ours.num_rows == theirs.num_rows, (ours.num_rows, theirs.num_rows)
    order = pc.sort_indices(ours, [("word", "ascending")])
    other = pc.sort_indices(theirs, [("word", "ascending")])
    assert ours.take(order).equals(theirs.take(other)), "the two sums differ"
    print(f"{a.partitions:,} partitions, {rows:,} count rows in, {ours.num_rows:,} words out")
    print("| measurement | job | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    print(
        f"| summing the counts (RunningCounts vs re-group every 32) | {ours_s:.2f} s | {theirs_s:.2f} s | "
        f"{theirs_s / ours_s:.1f}x faster |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
