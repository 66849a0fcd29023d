"""Splitting a partition into pieces: the units of work that are read and tokenized independently.

    >>> from shards.pieces import plan
    >>> pieces = plan(fs, partition, piece_bytes=128 << 20)            # doctest: +SKIP
    >>> [p.label for p in pieces]                                        # doctest: +SKIP
    ['row groups 0-3 of 12', 'row groups 4-7 of 12', 'row groups 8-11 of 12']

How each format splits, so that every document lands in exactly one piece and is read once:

- **Parquet** by row groups: consecutive row groups are packed into a piece until it holds about
  ``piece_bytes`` of the file. A row group is never cut, so a file of one huge row group is one piece.
- **Uncompressed text and JSON Lines** by byte ranges ``[start, end)`` of about ``piece_bytes``. A document (a
  line) belongs to the piece in which its first byte lies: a reader skips the line it starts in the middle of
  (the previous piece reads it to its end) and reads past ``end`` to finish its last line. Which range a line
  belongs to depends only on the file, so pieces never overlap and never leave a gap.
- **gzip and zstd** files are not split: a gzip stream can only be decompressed from its start, and a zstd
  file written as one frame (what ``zstd`` and most writers produce) likewise.

A file no larger than ``piece_bytes`` is one piece without any I/O; only a Parquet file that is larger has
its footer read, to learn its row groups. Pieces are plain values, sent to the workers that read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from shards.errors import ConfigError, PartitionError
from shards.partitions import Partition

DEFAULT_PIECE_BYTES = 128 << 20


@dataclass(frozen=True)
class Piece:
    """One unit of work: a range of a partition, rows ``[start, stop)`` of its row groups (Parquet) or bytes
    ``[start, stop)`` of its file (text, JSON Lines), or the whole file (``stop`` is ``None``)."""

    partition: Partition
    index: int
    count: int
    start: int = 0
    stop: int | None = None
    row_groups: int = 0  # how many the whole file has (Parquet only)
    size: int = 0  # bytes of the file this piece stands for, for budgets and progress

    @property
    def whole(self) -> bool:
        return self.stop is None

    @property
    def label(self) -> str:
        """What the piece is, for messages: ``piece 2/5 (bytes 268,435,456-402,653,184)``."""
        if self.stop is None:
            return "the whole file"
        if self.row_groups:
            return f"piece {self.index + 1}/{self.count} (row groups {self.start}-{self.stop - 1} of {self.row_groups})"
        return f"piece {self.index + 1}/{self.count} (bytes {self.start:,}-{self.stop:,})"

    def error(self, cause: str) -> PartitionError:
        """A PartitionError for the whole partition that names this piece."""
        return PartitionError(self.partition.uri, cause if self.whole else f"{self.label}: {cause}")


def whole(partition: Partition) -> Piece:
    """The partition as one piece."""
    return Piece(partition, 0, 1, size=partition.size)


def plan(fs: pafs.FileSystem, partition: Partition, piece_bytes: int = DEFAULT_PIECE_BYTES) -> list[Piece]:
    """The pieces of ``partition``, in file order. Raises PartitionError when a Parquet footer is unreadable."""
    if piece_bytes < 1:
        raise ConfigError(f"piece_bytes must be positive, got {piece_bytes}")
    if partition.size <= piece_bytes or partition.compression is not None or partition.format is None:
        return [whole(partition)]
    if partition.format == "parquet":
        return _row_group_pieces(fs, partition, piece_bytes)
    return _byte_pieces(partition, piece_bytes)


def _byte_pieces(partition: Partition, piece_bytes: int) -> list[Piece]:
    count = -(-partition.size // piece_bytes)
    step = -(-partition.size // count)  # equal pieces rather than a small last one
    bounds = [min(i * step, partition.size) for i in range(count + 1)]
    return [
        Piece(partition, i, count, start=bounds[i], stop=bounds[i + 1], size=bounds[i + 1] - bounds[i])
        for i in range(count)
    ]


def _row_group_pieces(fs: pafs.FileSystem, partition: Partition, piece_bytes: int) -> list[Piece]:
    try:
        with fs.open_input_file(partition.path) as handle:
            metadata = pq.ParquetFile(handle).metadata
    except (pa.ArrowInvalid, OSError) as exc:
        raise PartitionError(partition.uri, f"not a readable Parquet file ({str(exc).strip()})") from exc
    groups = metadata.num_row_groups
    sizes = [
        sum(metadata.row_group(g).column(c).total_compressed_size for c in range(metadata.num_columns))
        for g in range(groups)
    ]
    ranges: list[tuple[int, int, int]] = []  # (first row group, stop, bytes)
    first, held = 0, 0
    for group, size in enumerate(sizes):
        if held and held + size > piece_bytes:
            ranges.append((first, group, held))
            first, held = group, 0
        held += size
    if groups:
        ranges.append((first, groups, held))
    if len(ranges) <= 1:
        return [whole(partition)]
    # the footer and header count with the last piece, so the pieces' sizes add up to the file's
    first_bytes = sum(size for _, _, size in ranges[:-1])
    ranges[-1] = (ranges[-1][0], ranges[-1][1], partition.size - first_bytes)
    return [
        Piece(partition, i, len(ranges), start=a, stop=b, row_groups=groups, size=size)
        for i, (a, b, size) in enumerate(ranges)
    ]
