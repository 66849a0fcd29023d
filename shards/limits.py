"""What reading one partition may cost, bounded while its bytes are read, whoever wrote them.

    >>> from shards.limits import Counted, Limits, Lines, Meter
    >>> meter = Meter(Limits(max_document_bytes=64 << 20), "data/dump.txt.gz", compressed=True)
    >>> raw = Counted(fs.open_input_stream(path, compression=None), meter)   # doctest: +SKIP
    >>> stream = Lines(pa.CompressedInputStream(raw, "gzip"), meter, raw=raw)  # doctest: +SKIP
    >>> stream.read(16 << 20)           # raises PartitionError past a limit    # doctest: +SKIP

A partition is data from outside: a gzip file of a quarter megabyte can hold gigabytes of one letter with no
newline, and a Parquet file of a few hundred bytes can decode to gigabytes through its dictionary. So the
readers (:mod:`shards.readers`) count what they decode and stop at three limits, each a
:class:`~shards.errors.PartitionError` (a bad partition: exit 3, or recorded and skipped with
``--skip-bad-partitions``), never an out-of-memory kill:

- ``max_document_bytes``: a line (plain text, JSON Lines) is refused as soon as that many bytes have come
  without a newline, naming the byte offset where it starts, so a reader holds at most one document and one
  block; a Parquet value as soon as the file's metadata or the batch holding it shows it;
- ``max_partition_bytes``: the decompressed (decoded) bytes of one piece, as well as the file's size;
- ``max_decompression_ratio``: decompressed bytes over the compressed bytes read for them, checked once
  :data:`RATIO_FLOOR` bytes have come out (a small file that compresses very well is no threat).

Every check costs a few comparisons per block read; the newline search looks at each byte once.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from shards.errors import ConfigError, PartitionError

#: the longest document read; longer ones make the partition bad (``--max-document-bytes``)
MAX_DOCUMENT_BYTES = 64 << 20
#: decompressed bytes per compressed byte at most (``--max-decompression-ratio``): text compresses 3-10x with
#: gzip and up to a few dozen times with zstd at high levels; a bomb of one repeated byte reaches 1,000 (gzip)
#: or far more (zstd, Parquet dictionaries)
MAX_DECOMPRESSION_RATIO = 200.0
#: bytes a piece may decompress before the ratio is checked: a tiny, very compressible file stays readable
RATIO_FLOOR = 16 << 20


@dataclass(frozen=True)
class Limits:
    """The bounds on reading one piece. ``max_partition_bytes`` None: no bound; ``max_decompression_ratio``
    0: no bound."""

    max_document_bytes: int = MAX_DOCUMENT_BYTES
    max_partition_bytes: int | None = None
    max_decompression_ratio: float = MAX_DECOMPRESSION_RATIO

    def __post_init__(self) -> None:
        if self.max_document_bytes < 1:
            raise ConfigError(f"max_document_bytes must be positive, got {self.max_document_bytes}")
        if self.max_partition_bytes is not None and self.max_partition_bytes < 1:
            raise ConfigError(f"max_partition_bytes must be positive, got {self.max_partition_bytes}")
        if self.max_decompression_ratio != 0 and not self.max_decompression_ratio >= 1:
            raise ConfigError(
                f"max_decompression_ratio must be 0 (off) or at least 1, got {self.max_decompression_ratio:g}"
            )


class Meter:
    """Counts the bytes one piece decodes (``out``) and the compressed bytes read for them (``compressed``),
    and raises PartitionError (naming ``uri``) once a limit is passed. ``compressed`` stays None where the
    bytes are not compressed: no ratio to check."""

    def __init__(self, limits: Limits, uri: str, *, compressed: bool = False) -> None:
        self.limits = limits
        self.uri = uri
        self.out = 0
        self.compressed: int | None = 0 if compressed else None

    def decoded(self, nbytes: int) -> None:
        """Count ``nbytes`` more decoded bytes. Raises PartitionError past a limit."""
        self.out += nbytes
        cap = self.limits.max_partition_bytes
        if cap is not None and self.out > cap:
            raise PartitionError(
                self.uri,
                f"more than {cap:,} bytes once decompressed, over the partition limit (raise or drop "
                "--max-partition-bytes)",
            )
        ratio = self.limits.max_decompression_ratio
        if ratio and self.compressed is not None and self.out > RATIO_FLOOR and self.out > ratio * self.compressed:
            raise PartitionError(
                self.uri,
                f"{self.out:,} bytes decompressed from {self.compressed:,}, a ratio over {ratio:g} "
                "(a decompression bomb? raise --max-decompression-ratio, or 0 to turn it off)",
            )


class Readable(Protocol):
    def read(self, nbytes: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class Counted:
    """A compressed stream that counts the bytes read from it into a :class:`Meter` (what a decompressor
    reads: the raw side of ``pyarrow.CompressedInputStream``)."""

    def __init__(self, raw: Readable, meter: Meter) -> None:
        self.raw = raw
        self.meter = meter
        self.closed = False

    def read(self, nbytes: int = -1) -> bytes:
        data = self.raw.read(nbytes)
        self.meter.compressed = (self.meter.compressed or 0) + len(data)
        return bytes(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.raw.close()


_READ = 16 << 20  # bytes read at once when asked for "everything"


class Lines:
    """A stream of lines (plain text, JSON Lines) read through ``meter``, refusing a line longer than
    ``max_document_bytes`` as soon as that many bytes have come without a newline.

    Each block is searched for a newline once, from each end: what lies between two newlines of one block is
    bounded by the block, and is checked whole by the reader. ``start`` is the offset of the stream's first
    byte (a piece starts inside its file), so a refused line is named by where it starts.
    """

    def __init__(self, stream: Readable, meter: Meter, *, start: int = 0, raw: Readable | None = None) -> None:
        self.stream = stream
        self.raw = raw
        self.meter = meter
        self.pos = start  # the offset of the next byte
        self.line_start = start  # the offset of the line in progress
        self.closed = False

    @property
    def where(self) -> str:
        return "of the decompressed text" if self.meter.compressed is not None else "of the file"

    def too_long(self, start: int, length: int | None) -> PartitionError:
        """The error for a line starting at ``start`` of ``length`` bytes (None: more than the limit)."""
        limit = self.meter.limits.max_document_bytes
        size = f"more than {limit:,}" if length is None else f"{length:,}"
        return PartitionError(
            self.meter.uri,
            f"a line of {size} bytes starting at byte {start:,} {self.where} exceeds the limit of {limit:,} "
            "(raise --max-document-bytes)",
        )

    def read(self, nbytes: int = -1) -> bytes:
        """Up to ``nbytes`` bytes. Raises PartitionError past a limit (before returning the bytes)."""
        data = self.stream.read(_READ if nbytes is None or nbytes < 0 else nbytes)
        if not data:
            return b""
        limit = self.meter.limits.max_document_bytes
        first = data.find(b"\n")
        if first < 0:
            if self.pos + len(data) - self.line_start > limit:
                raise self.too_long(self.line_start, None)
        else:
            if self.pos + first - self.line_start > limit:
                raise self.too_long(self.line_start, self.pos + first - self.line_start)
            self.line_start = self.pos + data.rfind(b"\n") + 1
        self.pos += len(data)
        self.meter.decoded(len(data))
        return bytes(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.stream.close()
            if self.raw is not None:
                self.raw.close()

    def __enter__(self) -> Lines:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
