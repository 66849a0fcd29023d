"""One piece of a partition read, tokenized and counted: the unit of work a Ray worker does.

    >>> from shards.pieces import plan
    >>> from shards.tokenized import tokenize_piece
    >>> for batch in tokenize_piece(fs, plan(fs, partition)[0], ReadOptions(), TokenizerConfig()):
    ...     spool.write(batch.lines)                                  # doctest: +SKIP

A piece's tokens leave the worker as a stream of :class:`TokenizedBatch` es of about ``block_bytes`` of
``LineSentence`` text each (what the trainer spools to disk and gensim's ``corpus_file`` mode reads), so a
worker holds one block and its tokens, never the piece's or the partition's whole text. The last batch of a
piece also carries the piece's word counts (what the trainer merges into the vocabulary without a second
pass over the corpus). These are plain functions: Ray is applied to them elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from shards.checks import too_large
from shards.counts import RunningCounts
from shards.errors import ConfigError, FieldMissing, PartitionError
from shards.limits import MAX_DECOMPRESSION_RATIO, MAX_DOCUMENT_BYTES, Limits
from shards.options import option
from shards.partitions import Partition
from shards.pieces import DEFAULT_PIECE_BYTES, Piece, whole
from shards.readers import TEXT_BLOCK, read_texts
from shards.s3settings import parse_size
from shards.tokenize import TokenizerConfig, count_words, line_view, tokenize

_MIN_BLOCK = 64 << 10


def _size(text: str) -> int:
    """A size flag's (or config file string's) bytes: ``256MiB`` or ``1048576``. Raises ConfigError."""
    return parse_size(text, "size")


@dataclass(frozen=True)
class ReadOptions:
    """How partitions are read and split. Frozen and recorded with every model version.

    ``piece_bytes`` is how much of a file one task reads (files are split by row groups or line-aligned byte
    ranges, see :mod:`shards.pieces`); a worker's memory follows it, not the file's size.
    ``max_partition_bytes``, when set, rejects larger files, and pieces that decompress to more, outright (a
    guard against a misplaced dump, not a memory bound). ``max_document_bytes`` and
    ``max_decompression_ratio`` bound what one hostile file can make a worker hold (:mod:`shards.limits`).
    ``follow_symlinks`` lets a local input's symbolic links lead out of it (:mod:`shards.links`).
    """

    text_column: str = option("text", "Parquet column / JSON field holding the text")
    batch_rows: int = option(65_536, "rows read and tokenized at once")
    max_document_bytes: int = option(
        MAX_DOCUMENT_BYTES,
        "a partition holding a longer document (a longer line) is bad; refused while it is read",
        parse=_size,
    )
    piece_bytes: int = option(
        DEFAULT_PIECE_BYTES,
        "split larger files into pieces of about this size (Parquet by row groups, uncompressed text and JSON "
        "Lines by lines), each tokenized by its own task; a worker's memory follows it, e.g. 256MiB",
        parse=_size,
    )
    max_partition_bytes: int | None = option(
        None,
        "reject partition files larger than this, or that decompress to more (off by default; it no longer "
        "bounds memory)",
        parse=_size,
    )
    max_decompression_ratio: float = option(
        MAX_DECOMPRESSION_RATIO,
        "a compressed partition decompressing to more than RATIO times the bytes read for it (checked past its "
        "first 16 MiB) is bad: a decompression bomb; 0 turns it off",
        metavar="RATIO",
    )
    follow_symlinks: bool = option(
        False,
        "read files and folders under a local --input that are symbolic links to places outside it (without it "
        "they are left out, with a warning)",
    )

    def __post_init__(self) -> None:
        _ = self.limits  # a limit out of range raises here, when the config is built
        if self.piece_bytes < 1:
            raise ConfigError(f"piece_bytes must be positive, got {self.piece_bytes}")
        if self.batch_rows < 1:
            raise ConfigError(f"batch_rows must be positive, got {self.batch_rows}")

    @property
    def limits(self) -> Limits:
        """What reading one piece may cost. Raises ConfigError for a limit out of range."""
        return Limits(self.max_document_bytes, self.max_partition_bytes, self.max_decompression_ratio)

    @property
    def block_bytes(self) -> int:
        """Bytes of text decoded at once, and of LineSentence text per batch sent to the trainer."""
        return max(_MIN_BLOCK, min(TEXT_BLOCK, self.piece_bytes // 4))


@dataclass(frozen=True)
class TokenizedBatch:
    """A run of one piece's sentences. ``lines`` are views of Arrow buffers (LineSentence text, in order);
    ``counts`` is set on the piece's last batch only, and holds the word counts of the whole piece."""

    lines: list[np.ndarray]
    documents: int
    sentences: int
    tokens: int
    counts: pa.Table | None = None
    missing: str | None = None  # on the last batch: the text field is in no line of this piece (JSON Lines)

    @property
    def nbytes(self) -> int:
        return sum(len(chunk) for chunk in self.lines)


@dataclass(frozen=True)
class TokenizedPartition:
    """What one partition contributes to a refresh, held in memory (for tests and benchmarks)."""

    uri: str
    lines: bytes
    counts: pa.Table
    documents: int
    sentences: int
    tokens: int


def tokenize_piece(
    fs: pafs.FileSystem, piece: Piece, read: ReadOptions, tokenizer: TokenizerConfig
) -> Iterator[TokenizedBatch]:
    """Read, tokenize and count one piece, yielding its sentences in order, about ``read.block_bytes`` at a
    time; the last batch carries the piece's counts. Raises PartitionError naming the partition and piece."""
    partition = piece.partition
    oversize = too_large(partition, read.max_partition_bytes)
    if oversize is not None:
        raise PartitionError(partition.uri, oversize)
    counts = RunningCounts()
    held: list[np.ndarray] = []
    pending: list[pa.Array] = []  # read, not yet tokenized: small batches (small row groups) are tokenized together
    size = waiting = documents = sentences = tokens = 0
    texts_of = read_texts(
        fs,
        piece,
        text_column=read.text_column,
        batch_rows=read.batch_rows,
        block_bytes=read.block_bytes,
        limits=read.limits,
        follow_symlinks=read.follow_symlinks,
    )
    missing = None
    while True:
        try:
            texts = next(texts_of, None)
        except FieldMissing as exc:
            texts, missing = None, exc.cause
        if texts is not None:
            _check_sizes(texts, piece, read.max_document_bytes)
            pending.append(texts)
            waiting += texts.nbytes
            if size + waiting < read.block_bytes:
                continue  # held and waiting text together stay within one block, as one batch did
        if pending:
            done = _tokenized(pending, tokenizer)
            pending, waiting = [], 0
            documents, sentences, tokens = documents + done.documents, sentences + done.sentences, tokens + done.tokens
            if done.counts is not None:
                held.extend(done.lines)
                size += done.nbytes
                counts.add(done.counts)
        if texts is None:
            break
        if size >= read.block_bytes:
            yield TokenizedBatch(held, documents, sentences, tokens)
            held, size, documents, sentences, tokens = [], 0, 0, 0, 0
    yield TokenizedBatch(held, documents, sentences, tokens, counts.table(), missing)


def _tokenized(texts: list[pa.Array], tokenizer: TokenizerConfig) -> TokenizedBatch:
    """Documents tokenized at once, as one array (a kernel called on a chunked array starts again, its regex
    compiled again, for every chunk): their lines and counts (no lines and no counts when no document holds a
    token)."""
    documents = sum(len(t) - t.null_count for t in texts)
    if len({t.type for t in texts}) > 1:  # string, and large_string for a document 32-bit offsets cannot hold
        texts = [t.cast(pa.large_string()) for t in texts]
    batch = tokenize(texts[0] if len(texts) == 1 else pa.concat_arrays(texts), tokenizer)
    if len(batch) == 0:
        return TokenizedBatch([], documents, 0, 0)
    return TokenizedBatch([line_view(batch)], documents, len(batch), len(batch.values), count_words(batch))


def tokenize_partition(
    fs: pafs.FileSystem, partition: Partition, read: ReadOptions, tokenizer: TokenizerConfig
) -> TokenizedPartition:
    """The whole partition as one piece, collected in memory. Raises PartitionError."""
    chunks: list[bytes] = []
    counts = RunningCounts()
    documents = sentences = tokens = 0
    for batch in tokenize_piece(fs, whole(partition), read, tokenizer):
        chunks.extend(chunk.tobytes() for chunk in batch.lines)
        documents, sentences, tokens = documents + batch.documents, sentences + batch.sentences, tokens + batch.tokens
        if batch.counts is not None:
            counts.add(batch.counts)
    return TokenizedPartition(partition.uri, b"".join(chunks), counts.table(), documents, sentences, tokens)


def _check_sizes(texts: pa.Array, piece: Piece, limit: int) -> None:
    if len(texts) == 0 or texts.null_count == len(texts):
        return
    longest = pc.max(pc.binary_length(texts)).as_py()
    if longest is not None and longest > limit:
        raise piece.error(
            f"a document of {longest:,} bytes exceeds the limit of {limit:,} (raise --max-document-bytes)"
        )
