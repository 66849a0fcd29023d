"""What can be told about a partition before its data is read: the checks a reader makes first, and a dry run's.

    from shards.checks import at_sight, footer
    at_sight(partition, read)          # None, or why the partition will be rejected: no I/O at all
    footer(fs, partition)              # None, or why a Parquet file's footer is unreadable: one small read

:func:`at_sight` is what :func:`shards.readers.read_texts` and :func:`shards.tokenized.tokenize_piece` check
before they read a byte (an unknown file type, an empty file, a file over ``--max-partition-bytes``), so a dry
run predicts those rejections with the very messages a run gives. :func:`footer` reads a Parquet file's
footer, as splitting a large file does; a file whose footer is readable can still hold bad row groups or lack
the text column, which only reading tells.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from shards.errors import PartitionReadError
from shards.partitions import Partition

if TYPE_CHECKING:
    from shards.tokenized import ReadOptions


def unreadable(partition: Partition) -> str | None:
    """Why no reader can read the file, from its listing alone (its name and size), or None."""
    if partition.format is None:
        return "unrecognized file type (expected .parquet, .jsonl or .txt; or pass --format)"
    if partition.size == 0:
        return "empty file (0 bytes)"
    return None


def too_large(partition: Partition, max_partition_bytes: int | None) -> str | None:
    """Why the file is over ``--max-partition-bytes``, or None."""
    if max_partition_bytes is not None and partition.size > max_partition_bytes:
        return (
            f"{partition.size:,} bytes exceeds the partition limit of {max_partition_bytes:,} "
            "(raise or drop --max-partition-bytes)"
        )
    return None


def at_sight(partition: Partition, read: ReadOptions) -> str | None:
    """Why the partition will be rejected, told from its listing alone (no I/O), or None."""
    return too_large(partition, read.max_partition_bytes) or unreadable(partition)


def footer(fs: pafs.FileSystem, partition: Partition) -> str | None:
    """Why a Parquet file's footer cannot be read (one small read at its end), or None; None for other formats
    and for compressed files, which have no footer to check.

    Raises PartitionReadError when the read failed on the way to the bytes (the store, the network)."""
    from shards.readers import transient  # readers imports this module

    if partition.format != "parquet" or partition.compression is not None or unreadable(partition):
        return None
    try:
        with fs.open_input_file(partition.path) as handle:
            pq.ParquetFile(handle).metadata  # noqa: B018 - reading the footer is the check
    except OSError as exc:
        if transient(exc):
            raise PartitionReadError(partition.uri, str(exc).strip().splitlines()[0]) from exc
        return f"not a readable Parquet file ({str(exc).strip()})"
    except pa.ArrowInvalid as exc:
        return f"not a readable Parquet file ({str(exc).strip()})"
    return None
