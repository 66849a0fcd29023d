"""What the splitting tests share: partitions written as text, JSON Lines and row groups, and their documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shards.partitions import Partition, discover, open_filesystem
from shards.tokenized import TokenizedBatch
from tests.support.corpora import clustered

KiB, MiB = 1 << 10, 1 << 20


def documents(n: int, seed: int, prefix: str = "") -> list[str]:
    """Documents of varied lengths: empty ones, one far longer than a piece, scripts beyond ASCII."""
    rng = random.Random(seed)
    docs = [prefix + d for d in clustered(n, seed=seed)]
    for i in range(0, n, 97):
        docs[i] = ""
    docs[n // 3] = " ".join(rng.choice(["épée", "日本語", "Привет", "naïve"]) for _ in range(9000))  # ~90 KB
    return docs


def write_text(path: Path, docs: list[str], newline: str = "\n", final: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(docs) + (newline if final else "")).encode())
    return path


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(json.dumps({"text": d, "n": i}) + "\n" for i, d in enumerate(docs)).encode())
    return path


def write_row_groups(path: Path, docs: list[str], rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": docs}), path, row_group_size=rows)
    return path


def partition_of(path: Path) -> Partition:
    fs, root = open_filesystem(str(path))
    [partition] = discover(fs, root)
    return partition


def batch(text: str, counts: dict[str, int] | None = None) -> TokenizedBatch:
    table = None
    if counts is not None:
        table = pa.table({"word": list(counts), "count": pa.array(list(counts.values()), pa.int64())})
    lines = [np.frombuffer(text.encode(), np.uint8)]
    return TokenizedBatch(lines, 1, text.count("\n"), len(text.split()), table)


def corrupt_row_group(path: Path, group: int) -> None:
    """Overwrite the middle of one row group's compressed text with zeros (its pages no longer decompress)."""
    column = pq.ParquetFile(path).metadata.row_group(group).column(0)
    data = bytearray(path.read_bytes())
    start = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
    middle = start + column.total_compressed_size // 2
    data[middle : middle + 256] = bytes(256)
    path.write_bytes(bytes(data))
