"""Pieces of a partition, without Ray: line-aligned text pieces read every document once, Parquet pieces are runs
of whole row groups, small and compressed files are one piece, and running counts sum exactly.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shards.counts import RunningCounts, merge_counts
from shards.partitions import Partition, open_filesystem
from shards.pieces import plan
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions, tokenize_partition, tokenize_piece
from tests.support.refreshes import reference
from tests.support.split import KiB, documents, partition_of, write_jsonl, write_row_groups, write_text


def piecewise(partition: Partition, read: ReadOptions) -> tuple[bytes, collections.Counter[str], int, int]:
    """Each piece tokenized on its own, in order: the spooled text, the summed counts, documents, pieces."""
    fs = open_filesystem(partition.path)[0]
    lines, counts, docs = [], collections.Counter[str](), 0
    pieces = plan(fs, partition, read.piece_bytes)
    for piece in pieces:
        for batch in tokenize_piece(fs, piece, read, TokenizerConfig()):
            lines += [chunk.tobytes() for chunk in batch.lines]
            docs += batch.documents
            if batch.counts is not None:
                counts.update(dict(zip(*batch.counts.to_pydict().values(), strict=True)))
    return b"".join(lines), counts, docs, len(pieces)


@pytest.mark.parametrize(
    ("name", "newline", "final"), [("a.txt", "\n", True), ("b.txt", "\r\n", False), ("c.jsonl", "\n", True)]
)
@pytest.mark.parametrize("piece_bytes", [3000, 16 * KiB + 3])
def test_line_aligned_pieces_read_every_document_once(
    tmp_path: Path, name: str, newline: str, final: bool, piece_bytes: int
) -> None:
    docs = documents(1500, seed=1)
    path = tmp_path / name
    write_jsonl(path, docs) if name.endswith(".jsonl") else write_text(path, docs, newline, final)
    partition = partition_of(path)
    whole = tokenize_partition(open_filesystem(str(path))[0], partition, ReadOptions(), TokenizerConfig())
    lines, counts, docs_read, pieces = piecewise(partition, ReadOptions(piece_bytes=piece_bytes))
    assert pieces == -(-partition.size // piece_bytes) > 3
    assert lines == whole.lines  # no document cut, lost or read twice; the order kept
    assert counts == reference(docs)
    assert docs_read == whole.documents == len(docs)  # empty lines are documents without tokens


def test_parquet_pieces_are_runs_of_whole_row_groups(tmp_path: Path) -> None:
    docs = documents(2000, seed=2)
    path = write_row_groups(tmp_path / "p.parquet", docs, rows=200)
    partition = partition_of(path)
    fs = open_filesystem(str(path))[0]
    group = pq.ParquetFile(path).metadata.row_group(1).column(0).total_compressed_size
    pieces = plan(fs, partition, piece_bytes=3 * group)
    assert 3 <= len(pieces) <= 5
    assert [(p.start, p.stop) for p in pieces] == list(
        zip([0, *(p.stop for p in pieces[:-1])], [p.stop for p in pieces], strict=True)
    )
    assert pieces[-1].stop == 10 and all(p.row_groups == 10 for p in pieces)
    assert "row groups 0-" in pieces[0].label and f"piece 1/{len(pieces)}" in pieces[0].label
    whole = tokenize_partition(fs, partition, ReadOptions(), TokenizerConfig())
    lines, counts, docs_read, _ = piecewise(partition, ReadOptions(piece_bytes=3 * group))
    assert lines == whole.lines and counts == reference(docs) and docs_read == whole.documents


def test_small_and_compressed_files_are_one_piece(tmp_path: Path) -> None:
    import gzip

    small = partition_of(write_text(tmp_path / "s" / "small.txt", ["one line"]))
    assert [p.whole for p in plan(None, small, piece_bytes=1 << 20)] == [True]  # type: ignore[arg-type]  # no I/O
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "big.txt.gz").write_bytes(gzip.compress("\n".join(documents(500, seed=3)).encode()))
    packed = partition_of(tmp_path / "g" / "big.txt.gz")
    assert packed.size > 1000 and [p.whole for p in plan(None, packed, piece_bytes=1000)] == [True]  # type: ignore[arg-type]


def test_running_counts_sum_many_tables_exactly_and_stay_shallow() -> None:
    rng = random.Random(4)
    running, expected = RunningCounts(buffer_rows=500), collections.Counter[str]()
    for _ in range(600):
        words = [f"w{rng.paretovariate(1.2):.0f}" for _ in range(rng.randint(0, 300))]
        table = collections.Counter(words)
        expected.update(table)
        running.add(pa.table({"word": list(table), "count": pa.array(list(table.values()), pa.int64())}))
        assert running.depth <= 12  # tables in the stack: O(log n)
    merged = running.table().to_pydict()
    assert dict(zip(merged["word"], merged["count"], strict=True)) == dict(expected)


def test_merged_counts_come_out_in_the_same_order_every_time() -> None:
    # A model's new words join its vocabulary in the order of the run's counts: the same data must give the same
    # order (a multi-threaded grouping gave a different one from run to run, on tables of this size).
    rng = np.random.default_rng(3)
    vocabulary = np.array([f"w{i}" for i in range(200_000)], dtype=object)
    tables = []
    for _ in range(4):
        words = pa.array(vocabulary[np.minimum(rng.zipf(1.1, 100_000), len(vocabulary)) - 1], pa.string())
        counted = pc.value_counts(words)
        tables.append(pa.table({"word": counted.field("values"), "count": counted.field("counts")}))
    first = merge_counts(tables)
    assert all(merge_counts(tables).equals(first) for _ in range(5))
    expected = collections.Counter[str]()
    for table in tables:
        expected.update(dict(zip(table["word"].to_pylist(), table["count"].to_pylist(), strict=True)))
    assert dict(zip(first["word"].to_pylist(), first["count"].to_pylist(), strict=True)) == dict(expected)
