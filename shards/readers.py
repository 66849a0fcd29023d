"""Reading one partition, or one piece of it, as batches of text, whatever its format.

    from shards.readers import read_texts
    for texts in read_texts(fs, piece, text_column="text", batch_rows=65_536, limits=Limits()):
            ...                                               # each batch is a pyarrow StringArray

Parquet is read row group by row group (only the text column, only the piece's row groups); JSON Lines
through Arrow's streaming JSON reader; plain text one document per line, in blocks. A piece of a text or
JSON Lines file is its line-aligned byte range (see :mod:`shards.pieces`). Whatever Arrow text type a column
was written with (``string``, ``large_string``, ``string_view``, UTF-8 binary, a dictionary of them), the
batches are ``string``. gzip and zstd are decompressed on the fly.

Memory is bounded by the batch and block sizes and by ``limits`` (:mod:`shards.limits`), not by the
partition, whatever its bytes: a line longer than ``max_document_bytes`` is refused while it is read (its
bytes are kept as a list of blocks, joined once, and each byte is searched for a newline once), decompressed
bytes count against ``max_partition_bytes`` and ``max_decompression_ratio``, and a Parquet row group is read
in batches sized from its footer and its dictionary so that one batch decodes to about one block. Anything
unreadable or over a limit raises :class:`~shards.errors.PartitionError` naming the partition, the piece and
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

from shards.checks import unreadable
from shards.errors import FieldMissing, PartitionError, PartitionReadError
from shards.limits import RATIO_FLOOR, Counted, Limits, Lines, Meter
from shards.links import check_inside
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
    limits: Limits = Limits(),
    follow_symlinks: bool = False,
) -> Iterator[pa.Array]:
    """Yield the documents of a partition (or of one piece of it) as string arrays; text is decoded
    ``block_bytes`` at a time. Raises PartitionError for bad bytes or bytes over ``limits``, naming the piece,
    and PartitionReadError when reading failed on the way to them (see :func:`transient`). A local partition
    that has become a symbolic link out of its input is bad unless ``follow_symlinks``."""
    piece = source if isinstance(source, Piece) else whole(source)
    partition = piece.partition
    if not follow_symlinks:
        check_inside(fs, partition.uri, partition.path, partition.key)
    meter = Meter(limits, partition.uri, compressed=partition.compression is not None or partition.format == "parquet")
    readers = {"parquet": _parquet, "jsonl": _jsonl, "text": _text}
    cause = unreadable(partition)
    if cause is not None or partition.format not in readers:
        raise PartitionError(partition.uri, cause or f"unknown format {partition.format!r}")
    try:
        yield from readers[partition.format](fs, piece, text_column, batch_rows, max(1, block_bytes), meter)
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
    if partition.format == "jsonl" and "straddl" in text:
        return f"a JSON line longer than the JSON reader's block of {_JSON_BLOCK:,} bytes ({text})"
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
        if pa.types.is_dictionary(chunk.type):  # Parquet written from categoricals: batches sized to decode
            chunk = chunk.dictionary_decode()
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


def _parquet(
    fs: pafs.FileSystem, piece: Piece, column: str, batch_rows: int, block: int, meter: Meter
) -> Iterator[pa.Array]:
    partition = piece.partition
    with fs.open_input_file(partition.path) as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        if column not in names:
            raise PartitionError(partition.uri, f"no column {column!r} (columns: {', '.join(names) or 'none'})")
        metadata = parquet.metadata
        leaf = next((i for i in range(metadata.num_columns) if metadata.schema.column(i).path == column), None)
        groups = range(metadata.num_row_groups) if piece.whole else range(piece.start, piece.stop)  # type: ignore[arg-type]
        if leaf is not None:
            _check_column(metadata, leaf, column, meter)
        dictionaries = None
        for group in groups:
            rows = batch_rows
            if leaf is not None:
                chunk = metadata.row_group(group).column(leaf)
                rows = _rows_per_batch(chunk, group, column, batch_rows, block, meter)
                if chunk.has_dictionary_page and chunk.physical_type == "BYTE_ARRAY":
                    dictionaries = dictionaries or pq.ParquetFile(
                        handle, metadata=metadata, read_dictionary=[column], buffer_size=_PROBE_BUFFER, pre_buffer=False
                    )
                    longest = _longest_in_dictionary(dictionaries, group, column)
                    if longest > meter.limits.max_document_bytes:
                        raise PartitionError(
                            partition.uri,
                            f"row group {group}: a value of {longest:,} bytes in the dictionary of column "
                            f"{column!r} exceeds the limit of {meter.limits.max_document_bytes:,} "
                            "(raise --max-document-bytes)",
                        )
                    rows = min(rows, max(1, block // max(1, longest)))
            for batch in parquet.iter_batches(batch_size=rows, row_groups=[group], columns=[column]):
                for texts in _as_text(batch.column(0), partition, column):
                    meter.decoded(_text_bytes(texts))
                    yield texts


def _check_column(metadata: pq.FileMetaData, leaf: int, column: str, meter: Meter) -> None:
    """Refuse a file whose footer says its text column decompresses past ``max_partition_bytes``."""
    cap = meter.limits.max_partition_bytes
    size = sum(metadata.row_group(g).column(leaf).total_uncompressed_size for g in range(metadata.num_row_groups))
    if cap is not None and size > cap:
        raise PartitionError(
            meter.uri,
            f"column {column!r} holds {size:,} bytes uncompressed, over the partition limit of {cap:,} "
            "(raise or drop --max-partition-bytes)",
        )


def _rows_per_batch(
    chunk: pq.ColumnChunkMetaData, group: int, column: str, batch_rows: int, block: int, meter: Meter
) -> int:
    """Rows read at once from one row group, so that a batch holds about ``block`` bytes of text, after the
    footer's checks: the chunk's compression ratio, and a mean value size over the document limit (one value
    at least is that long). Counts the chunk's compressed bytes into ``meter``."""
    size, packed, values = chunk.total_uncompressed_size, chunk.total_compressed_size, max(1, chunk.num_values)
    meter.compressed = (meter.compressed or 0) + packed
    ratio, limit = meter.limits.max_decompression_ratio, meter.limits.max_document_bytes
    if ratio and size > RATIO_FLOOR and size > ratio * max(1, packed):
        raise PartitionError(
            meter.uri,
            f"row group {group}: column {column!r} holds {size:,} bytes compressed into {packed:,}, a ratio over "
            f"{ratio:g} (a decompression bomb? raise --max-decompression-ratio, or 0 to turn it off)",
        )
    # Levels, length prefixes, dictionary indices and page headers are generously allowed for: what is left is
    # value bytes, and the longest value is at least their mean.
    mean = (size - _VALUE_OVERHEAD * values - _CHUNK_OVERHEAD) // values
    if mean > limit:
        raise PartitionError(
            meter.uri,
            f"row group {group}: column {column!r} holds {size:,} bytes in {values:,} value(s), so a value "
            f"exceeds the limit of {limit:,} (raise --max-document-bytes)",
        )
    return min(batch_rows, max(1, block * values // max(1, size)))


_VALUE_OVERHEAD = 32  # bytes per value of a column chunk that need not be text
#: bytes read at once while reading a dictionary and a first row, through a buffer and not pre-buffered: a MiB or
#: two, where pyarrow's defaults read the whole column chunk (a second download of it from S3)
_PROBE_BUFFER = 1 << 20
_CHUNK_OVERHEAD = 1 << 20  # bytes per column chunk that need not be text


def _longest_in_dictionary(parquet: pq.ParquetFile, group: int, column: str) -> int:
    """The longest value of the dictionary of ``column`` in row group ``group``, read with its first row
    (a dictionary page lets a few bytes stand for any number of copies of its longest value)."""
    first = next(parquet.iter_batches(batch_size=1, row_groups=[group], columns=[column]), None)
    if first is None or not isinstance(first.column(0), pa.DictionaryArray):
        return 0
    longest = pc.max(pc.binary_length(first.column(0).dictionary)).as_py()
    return int(longest or 0)


def _text_bytes(texts: pa.Array) -> int:
    """Bytes of text in a ``string`` or ``large_string`` array (its values, not its offsets)."""
    if len(texts) == 0 or texts.null_count == len(texts) or texts.buffers()[1] is None:
        return 0
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(texts.buffers()[1], dtype=width)
    return int(offsets[texts.offset + len(texts)] - offsets[texts.offset])


def _open(fs: pafs.FileSystem, piece: Piece, meter: Meter) -> Lines:
    """The piece's bytes (decompressed) as :class:`~shards.limits.Lines`, counted into ``meter``."""
    partition = piece.partition
    if not piece.whole:
        lines = LineRange(fs.open_input_file(partition.path), piece.start, piece.stop)  # type: ignore[arg-type]
        return Lines(lines, meter, start=lines.pos)
    if partition.compression is None:
        return Lines(fs.open_input_stream(partition.path, compression=None), meter)
    raw = Counted(fs.open_input_stream(partition.path, compression=None), meter)
    return Lines(pa.CompressedInputStream(raw, partition.compression), meter, raw=raw)


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


def _jsonl(
    fs: pafs.FileSystem, piece: Piece, column: str, batch_rows: int, block: int, meter: Meter
) -> Iterator[pa.Array]:
    partition = piece.partition
    del block  # a JSON block must hold its longest line: kept at the reader's own size
    options = pajson.ReadOptions(block_size=_JSON_BLOCK)
    with _open(fs, piece, meter) as stream:
        if isinstance(stream.stream, LineRange) and stream.stream.pos >= stream.stream.stop:
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


def _text(
    fs: pafs.FileSystem, piece: Piece, column: str, batch_rows: int, block: int, meter: Meter
) -> Iterator[pa.Array]:
    del column, batch_rows  # one document per line; blocks bound memory instead of row counts
    with _open(fs, piece, meter) as stream:
        held: list[bytes] = []  # the line in progress, block by block: joined once, when its newline comes
        start = stream.pos  # where the held bytes start
        while data := stream.read(block):
            cut = data.rfind(b"\n")
            if cut < 0:
                held.append(data)
                continue
            text = memoryview(data)[:cut]
            if held:
                text = memoryview(b"".join([*held, text]))
            yield _lines(text, start, stream)
            start += len(text) + 1
            held = [data[cut + 1 :]] if cut + 1 < len(data) else []
        if held:
            yield _lines(memoryview(b"".join(held)), start, stream)


def _lines(data: memoryview, start: int, stream: Lines) -> pa.Array:
    """The lines of ``data`` (which starts at offset ``start`` of the stream, and is not copied), each checked
    against the document limit."""
    offsets = pa.array([0, len(data)], pa.int64()).buffers()[1]
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        text = whole.cast(pa.large_string())
    except pa.ArrowInvalid as exc:
        raise PartitionError(stream.meter.uri, "invalid UTF-8") from exc
    lines = pc.list_flatten(pc.split_pattern(text, pattern="\n")).cast(pa.string())
    if len(data) > stream.meter.limits.max_document_bytes:  # else no line can be too long
        ends = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
        lengths = np.diff(ends)
        over = np.flatnonzero(lengths > stream.meter.limits.max_document_bytes)
        if len(over):
            first = int(over[0])  # each line before it lost its newline to the split
            raise stream.too_long(start + int(ends[first] - ends[0]) + first, int(lengths[first]))
    crlf = pc.any(pc.ends_with(lines, pattern="\r")).as_py()
    return pc.utf8_rtrim(lines, characters="\r") if crlf else lines
