"""A version's vectors written out for other tools (``python -m jobs.versions export``).

    >>> export(vectors, Path("vectors.txt"), "word2vec-text")     # doctest: +SKIP

``word2vec-text``, ``word2vec-binary`` (gensim's ``save_word2vec_format`` bytes, :mod:`jobs.format.word2vec`)
and ``parquet`` (word, count, vector: for Spark, DuckDB and pandas) need only the vectors, so they work with
the reader's install (numpy, pyarrow). ``keyedvectors`` is gensim's own ``KeyedVectors.save`` file and needs
gensim; ``gensim`` (the whole trainable model, :func:`jobs.training.model.export_model`) needs the model, not
only its vectors, and gensim too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.format import word2vec

EXPORT_FORMATS = ("word2vec-text", "word2vec-binary", "keyedvectors", "parquet", "gensim")
NEEDS_GENSIM = frozenset({"keyedvectors", "gensim"})
_PARQUET_ROWS = 65_536  # rows per row group of a Parquet export: one block of vectors in memory at a time


def export(vectors: Any, output: Path, fmt: str) -> None:
    """Write ``vectors`` (:class:`jobs.keyed.WordVectors`, or gensim's ``KeyedVectors``) to ``output`` as
    ``fmt``, one of :data:`EXPORT_FORMATS` but ``gensim``. Raises ConfigError for ``keyedvectors`` without
    gensim installed (:meth:`jobs.keyed.WordVectors.to_gensim`)."""
    if fmt == "parquet":
        export_parquet(vectors.index_to_key, vectors.expandos["count"], vectors.vectors, output)
    elif fmt == "keyedvectors":
        gensim_vectors = vectors.to_gensim() if hasattr(vectors, "to_gensim") else vectors
        gensim_vectors.save(str(output))
    elif fmt == "word2vec-binary":
        word2vec.write_binary(vectors, output)
    elif fmt == "word2vec-text":
        word2vec.write_text(vectors, output)
    else:
        raise ValueError(f"{fmt!r} is not a format of the vectors alone")


def export_parquet(words: list[str], counts: Any, vectors: Any, output: Path) -> None:
    """One row per word, in the model's index order: ``word`` (string), ``count`` (int64) and ``vector`` (a
    fixed-size list of float32), written a row group at a time, so memory holds one block of rows."""
    dim = vectors.shape[1]
    schema = pa.schema([("word", pa.string()), ("count", pa.int64()), ("vector", pa.list_(pa.float32(), dim))])
    with pq.ParquetWriter(output, schema, compression="zstd") as writer:
        for start in range(0, len(words), _PARQUET_ROWS):
            stop = min(start + _PARQUET_ROWS, len(words))
            block = np.ascontiguousarray(vectors[start:stop], dtype=np.float32)
            writer.write_table(
                pa.table(
                    {
                        "word": pa.array(words[start:stop], pa.string()),
                        "count": pa.array(np.asarray(counts[start:stop], dtype=np.int64)),
                        "vector": pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), dim),
                    },
                    schema=schema,
                )
            )
