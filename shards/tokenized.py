"""One partition read, tokenized and counted: the unit of work a Ray worker does.

    >>> from shards.tokenized import tokenize_partition
    >>> result = tokenize_partition(fs, partition, ReadOptions(), TokenizerConfig())
    >>> result.tokens, result.counts.num_rows, result.lines[:40]      # doctest: +SKIP

The result carries the sentences as ``LineSentence`` text (what the trainer spools to disk and gensim's
``corpus_file`` mode reads) and the partition's word counts (what the trainer merges into the vocabulary
without a second pass over the corpus). It is a plain function: Ray is applied to it elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from shards.errors import ConfigError, PartitionError
from shards.partitions import Partition
from shards.readers import read_texts
from shards.tokenize import TokenizerConfig, count_words, to_lines, tokenize


@dataclass(frozen=True)
class ReadOptions:
    """How partitions are read. Frozen and recorded with every model version."""

    text_column: str = "text"
    batch_rows: int = 65_536
    max_document_bytes: int = 64 << 20
    max_partition_bytes: int = 8 << 30

    def __post_init__(self) -> None:
        if self.max_partition_bytes < 1:
            raise ConfigError(f"max_partition_bytes must be positive, got {self.max_partition_bytes}")
        if self.batch_rows < 1:
            raise ConfigError(f"batch_rows must be positive, got {self.batch_rows}")
        if self.max_document_bytes < 1:
            raise ConfigError(f"max_document_bytes must be positive, got {self.max_document_bytes}")


@dataclass(frozen=True)
class TokenizedPartition:
    """What one partition contributes to a refresh."""

    uri: str
    lines: bytes
    counts: pa.Table
    documents: int
    sentences: int
    tokens: int


def tokenize_partition(
    fs: pafs.FileSystem, partition: Partition, read: ReadOptions, tokenizer: TokenizerConfig
) -> TokenizedPartition:
    """Read, tokenize and count one partition. Raises PartitionError naming it and the cause.

    The result is held in memory until the trainer spools it, so a partition's size is bounded by
    ``read.max_partition_bytes``.
    """
    if partition.size > read.max_partition_bytes:
        raise PartitionError(
            partition.uri,
            f"{partition.size:,} bytes exceeds the partition limit of {read.max_partition_bytes:,} "
            "(split it, or raise --max-partition-bytes on workers with the memory for it)",
        )
    chunks: list[bytes] = []
    counts: list[pa.Table] = []
    documents = sentences = tokens = 0
    for texts in read_texts(fs, partition, text_column=read.text_column, batch_rows=read.batch_rows):
        _check_sizes(texts, partition, read.max_document_bytes)
        documents += len(texts) - texts.null_count
        batch = tokenize(texts, tokenizer)
        if len(batch) == 0:
            continue
        sentences += len(batch)
        tokens += len(batch.values)
        chunks.append(to_lines(batch))
        counts.append(count_words(batch))
    merged = merge_counts(counts)
    return TokenizedPartition(partition.uri, b"".join(chunks), merged, documents, sentences, tokens)


def _check_sizes(texts: pa.Array, partition: Partition, limit: int) -> None:
    if len(texts) == 0 or texts.null_count == len(texts):
        return
    longest = pc.max(pc.binary_length(texts)).as_py()
    if longest is not None and longest > limit:
        raise PartitionError(
            partition.uri,
            f"a document of {longest:,} bytes exceeds the limit of {limit:,} (raise --max-document-bytes)",
        )


def merge_counts(tables: list[pa.Table]) -> pa.Table:
    """Sum several (word, count) tables into one."""
    if not tables:
        return pa.table({"word": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    if len(tables) == 1:
        return tables[0]
    summed = pa.concat_tables(tables).group_by("word").aggregate([("count", "sum")])
    return summed.rename_columns(["word", "count"])
