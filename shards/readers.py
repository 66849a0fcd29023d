"""Reading one partition as batches of text, whatever its format.

    >>> from shards.readers import read_texts
    >>> for texts in read_texts(fs, partition, text_column="text", batch_rows=65_536):
    ...     ...                                               # each batch is a pyarrow StringArray

Parquet is read row group by row group (only the text column); JSON Lines through Arrow's streaming JSON
reader; plain text one document per line, in blocks. Whatever Arrow text type a column was written with
(``string``, ``large_string``, ``string_view``, UTF-8 binary), the batches are ``string``. gzip and zstd are
decompressed on the fly. Memory is bounded by the batch size, not the partition size. Anything unreadable raises
:class:`~shards.errors.PartitionError` naming the partition and the cause; nothing is ever executed or
unpickled.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from shards.errors import PartitionError, PartitionReadError
from shards.partitions import Partition

_TEXT_BLOCK = 16 << 20  # bytes of plain text decoded at once
_JSON_BLOCK = 8 << 20
_MAX_ARRAY_TEXT = 1 << 30  # bytes of text per array (a string array's 32-bit offsets address 2 GiB)


def read_texts(
    fs: pafs.FileSystem, partition: Partition, *, text_column: str = "text", batch_rows: int = 65_536
) -> Iterator[pa.Array]:
    """Yield the partition's documents as string arrays. Raises PartitionError for bad bytes, and
    PartitionReadError when reading failed on the way to them (see :func:`transient`)."""
    readers = {"parquet": _parquet, "jsonl": _jsonl, "text": _text}
    if partition.format not in readers:
        raise PartitionError(
            partition.uri, "unrecognized file type (expected .parquet, .jsonl or .txt; or pass --format)"
        )
    if partition.size == 0:
        raise PartitionError(partition.uri, "empty file (0 bytes)")
    try:
        yield from readers[partition.format](fs, partition, text_column, batch_rows)
    except PartitionError:
        raise
    except OSError as exc:
        if transient(exc):
            raise PartitionReadError(partition.uri, _first_line(exc)) from exc
        raise PartitionError(partition.uri, _cause(partition, exc)) from exc
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, EOFError) as exc:
        raise PartitionError(partition.uri, _cause(partition, exc)) from exc


#: what pyarrow's S3 client and the OS say when the way to the bytes failed, not the bytes themselves
_TRANSIENT_MARKS = ("aws error", "curlcode", "connection reset", "connection refused", "timed out", "timeout")
_TRANSIENT_ERRNOS = frozenset(
    {errno.EIO, errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN, errno.ENETUNREACH}
)


def transient(exc: OSError) -> bool:
    """Whether an I/O error came from reaching the data (an S3 error answer, a reset or refused connection, a
    timeout, EIO) rather than from its bytes (pyarrow also raises OSError for corrupt compressed streams and
    Parquet pages): worth retrying, and no reason to call the partition bad."""
    text = str(exc).lower()
    return exc.errno in _TRANSIENT_ERRNOS or any(mark in text for mark in _TRANSIENT_MARKS)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _cause(partition: Partition, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "UTF8" in text or "utf-8" in text.lower():
        return f"invalid UTF-8 ({text})"
    if partition.format == "parquet" and ("magic" in text.lower() or "parquet" in text.lower()):
        return f"not a readable Parquet file ({text})"
    if partition.format == "jsonl" and "JSON" in text:
        return f"malformed JSON line ({text})"
    if partition.compression and any(
        w in text.lower() for w in ("zstd", "gzip", "zlib", "inflate", "compress", "deflate", "corrupt")
    ):
        return f"unreadable {partition.compression} compression ({text})"
    return text


def _as_text(column: pa.ChunkedArray | pa.Array, partition: Partition, text_column: str) -> Iterator[pa.Array]:
    """The column as ``string`` arrays, whatever text type it was written with: ``string``, ``large_string``
    (Polars, pandas with Arrow strings), ``string_view``, UTF-8 ``binary`` of any width, or all nulls.

    One type downstream keeps the tokenizer's kernels and the count tables uniform; a ``large_string`` chunk
    holding more text than 32-bit offsets address is cut into row slices that fit."""
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        kind = chunk.type
        if pa.types.is_null(kind):
            yield pa.nulls(len(chunk), pa.string())
            continue
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
            try:
                chunk = chunk.cast(pa.large_string())
            except pa.ArrowInvalid as exc:
                raise PartitionError(partition.uri, f"invalid UTF-8 in column {text_column!r}") from exc
        elif pa.types.is_string_view(kind):
            chunk = chunk.cast(pa.large_string())
        elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise PartitionError(partition.uri, f"column {text_column!r} holds {kind}, not text")
        yield from _fitting_strings(chunk)


def _fitting_strings(texts: pa.Array) -> Iterator[pa.Array]:
    """``texts`` (``string`` or ``large_string``) as ``string`` arrays of at most ``_MAX_ARRAY_TEXT`` bytes each
    (a single longer document stays whole and fails the document limit instead)."""
    if pa.types.is_string(texts.type):
        yield texts
        return
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    start = 0
    while start < len(texts):
        limit = offsets[start] + _MAX_ARRAY_TEXT
        stop = max(start + 1, int(np.searchsorted(offsets, limit, side="right")) - 1)
        piece = texts.slice(start, stop - start)
        yield piece.cast(pa.string()) if offsets[stop] - offsets[start] < 1 << 31 else piece
        start = stop


def _parquet(fs: pafs.FileSystem, partition: Partition, column: str, batch_rows: int) -> Iterator[pa.Array]:
    with fs.open_input_file(partition.path) as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        if column not in names:
            raise PartitionError(partition.uri, f"no column {column!r} (columns: {', '.join(names) or 'none'})")
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=[column]):
            yield from _as_text(batch.column(0), partition, column)


def _open(fs: pafs.FileSystem, partition: Partition) -> pa.NativeFile:
    return fs.open_input_stream(partition.path, compression=partition.compression)


def _jsonl(fs: pafs.FileSystem, partition: Partition, column: str, batch_rows: int) -> Iterator[pa.Array]:
    options = pajson.ReadOptions(block_size=_JSON_BLOCK)
    with _open(fs, partition) as stream:
        reader = pajson.open_json(stream, read_options=options)
        seen = False
        for batch in reader:
            if column not in batch.schema.names:
                if batch.num_rows:
                    # Rows without the field are nulls; a block where no row has it is all-null.
                    yield pa.nulls(batch.num_rows, pa.string())
                continue
            seen = True
            for values in _as_text(batch.column(column), partition, column):
                for start in range(0, len(values), batch_rows):
                    yield values.slice(start, batch_rows)
        if not seen:
            raise PartitionError(partition.uri, f"no JSON line has the field {column!r}")


def _text(fs: pafs.FileSystem, partition: Partition, column: str, batch_rows: int) -> Iterator[pa.Array]:
    del column, batch_rows  # one document per line; blocks bound memory instead of row counts
    carry = b""
    with _open(fs, partition) as stream:
        while True:
            block = stream.read(_TEXT_BLOCK)
            if not block:
                break
            block = carry + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                carry = block
                continue
            carry = block[cut:]
            yield _lines(block[: cut - 1], partition)
    if carry:
        yield _lines(carry, partition)


def _lines(data: bytes, partition: Partition) -> pa.Array:
    try:
        whole = pa.array([data], pa.binary()).cast(pa.string())
    except pa.ArrowInvalid as exc:
        raise PartitionError(partition.uri, "invalid UTF-8") from exc
    lines = pc.list_flatten(pc.split_pattern(whole, pattern="\n"))
    return pc.utf8_rtrim(lines, characters="\r")
