"""Reading one partition, or one piece of it, as batches of text, whatever its format.

    >>> from shards.readers import read_texts
    >>> for texts in read_texts(fs, piece, text_column="text", batch_rows=65_536):
    ...     ...                                               # each batch is a pyarrow StringArray

Parquet is read row group by row group (only the text column, only the piece's row groups); JSON Lines
through Arrow's streaming JSON reader; plain text one document per line, in blocks. A piece of a text or
JSON Lines file is its line-aligned byte range (see :mod:`shards.pieces`). Whatever Arrow text type a column
was written with (``string``, ``large_string``, ``string_view``, UTF-8 binary), the batches are ``string``.
gzip and zstd are decompressed on the fly. Memory is bounded by the batch and block sizes, not the partition
size. Anything unreadable raises :class:`~shards.errors.PartitionError` naming the partition, the piece and
the cause; nothing is ever executed or unpickled.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from shards.errors import FieldMissing, PartitionError, PartitionReadError
from shards.partitions import Partition
from shards.pieces import Piece, whole

TEXT_BLOCK = 16 << 20  # bytes of plain text decoded at once (at most)
_JSON_BLOCK = 8 << 20
_MAX_ARRAY_TEXT = 1 << 30  # bytes of text per array (a string array's 32-bit offsets address 2 GiB)
_SCAN = 64 << 10  # bytes read at once while looking for the end of a line


def read_texts(
    fs: pafs.FileSystem,
    source: Partition | Piece,
    *,
    text_column: str = "text",
    batch_rows: int = 65_536,
    block_bytes: int = TEXT_BLOCK,
) -> Iterator[pa.Array]:
    """Yield the documents of a partition (or of one piece of it) as string arrays; text is decoded
    ``block_bytes`` at a time. Raises PartitionError for bad bytes, naming the piece, and PartitionReadError
    when reading failed on the way to them (see :func:`transient`)."""
    piece = source if isinstance(source, Piece) else whole(source)
    partition = piece.partition
    readers = {"parquet": _parquet, "jsonl": _jsonl, "text": _text}
    if partition.format not in readers:
        raise PartitionError(
            partition.uri, "unrecognized file type (expected .parquet, .jsonl or .txt; or pass --format)"
        )
    if partition.size == 0:
        raise PartitionError(partition.uri, "empty file (0 bytes)")
    try:
        yield from readers[partition.format](fs, piece, text_column, batch_rows, max(1, block_bytes))
    except PartitionError as exc:
        if piece.whole or isinstance(exc, FieldMissing):
            raise
        raise piece.error(exc.cause) from exc
    except OSError as exc:
        if transient(exc):
            raise PartitionReadError(partition.uri, _first_line(exc)) from exc
        raise piece.error(_cause(partition, exc)) from exc
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, EOFError) as exc:
        raise piece.error(_cause(partition, exc)) from exc


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


def _parquet(fs: pafs.FileSystem, piece: Piece, column: str, batch_rows: int, block: int) -> Iterator[pa.Array]:
    del block  # Parquet pages are decoded batch_rows rows at a time
    partition = piece.partition
    with fs.open_input_file(partition.path) as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        if column not in names:
            raise PartitionError(partition.uri, f"no column {column!r} (columns: {', '.join(names) or 'none'})")
        groups = None if piece.whole else range(piece.start, piece.stop)  # type: ignore[arg-type]
        for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups, columns=[column]):
            yield from _as_text(batch.column(0), partition, column)


def _open(fs: pafs.FileSystem, piece: Piece) -> pa.NativeFile | LineRange:
    if piece.whole:
        return fs.open_input_stream(piece.partition.path, compression=piece.partition.compression)
    return LineRange(fs.open_input_file(piece.partition.path), piece.start, piece.stop)  # type: ignore[arg-type]


class LineRange:
    """The lines of an uncompressed file that start in bytes ``[start, stop)``, as a readable stream.

    It skips the line that ``start`` falls inside (unless a line starts exactly there) and reads on past
    ``stop`` to the end of the line in progress, so consecutive ranges read every line exactly once.
    """

    def __init__(self, handle: pa.NativeFile, start: int, stop: int) -> None:
        self.handle = handle
        self.size = handle.size()
        self.pos = 0 if start == 0 else self._line_start(start - 1)
        self.stop = self._line_start(stop - 1) if stop < self.size else self.size
        self.closed = False

    def _line_start(self, offset: int) -> int:
        """The first line start after ``offset`` (just past the first newline at or after it)."""
        while offset < self.size:
            chunk = self.handle.read_at(min(_SCAN, self.size - offset), offset)
            found = chunk.find(b"\n")
            if found >= 0:
                return offset + found + 1
            offset += len(chunk)
        return self.size

    def read(self, nbytes: int = -1) -> bytes:
        left = max(0, self.stop - self.pos)
        nbytes = left if nbytes is None or nbytes < 0 else min(nbytes, left)
        if nbytes == 0:
            return b""
        data = self.handle.read_at(nbytes, self.pos)
        self.pos += len(data)
        return bytes(data)

    def close(self) -> None:
        self.closed = True
        self.handle.close()

    def __enter__(self) -> LineRange:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _jsonl(fs: pafs.FileSystem, piece: Piece, column: str, batch_rows: int, block: int) -> Iterator[pa.Array]:
    partition = piece.partition
    del block  # a JSON block must hold its longest line: kept at the reader's own size
    options = pajson.ReadOptions(block_size=_JSON_BLOCK)
    with _open(fs, piece) as stream:
        if not piece.whole and stream.pos >= stream.stop:  # type: ignore[union-attr]
            return  # no line starts in this piece: one long line began in an earlier one
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
            # a piece of a larger file may lack the field that another piece has: the pieces decide together
            kind = PartitionError if piece.whole else FieldMissing
            raise kind(partition.uri, f"no JSON line has the field {column!r}")


def _text(fs: pafs.FileSystem, piece: Piece, column: str, batch_rows: int, block: int) -> Iterator[pa.Array]:
    del column, batch_rows  # one document per line; blocks bound memory instead of row counts
    partition = piece.partition
    carry = b""
    with _open(fs, piece) as stream:
        while True:
            data = stream.read(block)
            if not data:
                break
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            yield _lines(data[: cut - 1], partition)
    if carry:
        yield _lines(carry, partition)


def _lines(data: bytes, partition: Partition) -> pa.Array:
    try:
        whole = pa.array([data], pa.binary()).cast(pa.string())
    except pa.ArrowInvalid as exc:
        raise PartitionError(partition.uri, "invalid UTF-8") from exc
    lines = pc.list_flatten(pc.split_pattern(whole, pattern="\n"))
    return pc.utf8_rtrim(lines, characters="\r")
