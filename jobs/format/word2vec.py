"""The word2vec formats, written without gensim: the same bytes as gensim's ``save_word2vec_format``.

gensim writes one record per word from Python (encode the word, concatenate its vector's bytes, write),
which at a million words takes seconds. Here a block of binary records is assembled with numpy: the words'
UTF-8 bytes come from one Arrow array, the vectors' bytes from the matrix, and both are scattered into one
buffer per block, written at once. The text format prints every float as numpy prints a float32 (the
shortest text that reads back as the same float32), as gensim does, one value at a time: as slow as gensim's.

    >>> write_binary(vectors, Path("vectors.bin"))      # jobs.keyed.WordVectors, or gensim's   # doctest: +SKIP
    >>> write_text(vectors, Path("vectors.txt"))          # doctest: +SKIP
    >>> KeyedVectors.load_word2vec_format("vectors.bin", binary=True)   # doctest: +SKIP

Records are in gensim's order: by descending count (stable, so ties keep the index order), or the index
order for vectors without counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

_BLOCK = 16_384  # records assembled at once
_SPACE = ord(" ")


def _order(vectors: Any) -> np.ndarray:
    """gensim's record order: by descending count, stable, or the index order for vectors without counts."""
    counts = vectors.expandos.get("count") if hasattr(vectors, "expandos") else None
    if counts is None:
        return np.arange(len(vectors.index_to_key))
    return np.argsort(-np.asarray(counts), kind="stable")


def write_text(vectors: Any, path: Path) -> None:
    """Write ``vectors`` (:class:`jobs.keyed.WordVectors` or gensim ``KeyedVectors``: ``index_to_key``,
    ``vectors``, ``expandos``) to ``path`` in the word2vec text format."""
    size, dim = len(vectors.index_to_key), vectors.vectors.shape[1]
    order = _order(vectors)
    words = vectors.index_to_key
    with open(path, "wb") as out:
        out.write(f"{size} {dim}\n".encode())
        for start in range(0, size, _BLOCK):
            rows = np.asarray(vectors.vectors[order[start : start + _BLOCK]], dtype=np.float32)
            lines = [
                f"{words[i]} {' '.join(str(value) for value in row)}\n"
                for i, row in zip(order[start : start + _BLOCK].tolist(), rows, strict=True)
            ]
            out.write("".join(lines).encode())


def write_binary(vectors: Any, path: Path) -> None:
    """Write ``vectors`` (:class:`jobs.keyed.WordVectors` or gensim ``KeyedVectors``) to ``path`` in the
    word2vec binary format."""
    size, dim = len(vectors.index_to_key), vectors.vectors.shape[1]
    order = _order(vectors)
    keys = pa.array(vectors.index_to_key, pa.large_string()).take(pa.array(order))
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int64, count=size + 1, offset=keys.offset * 8)
    data = np.frombuffer(keys.buffers()[2], dtype=np.uint8) if size else np.zeros(0, dtype=np.uint8)
    width = 4 * dim
    with open(path, "wb") as out:
        out.write(f"{size} {dim}\n".encode())
        for start in range(0, size, _BLOCK):
            stop = min(size, start + _BLOCK)
            lengths = np.diff(offsets[start : stop + 1])
            record = lengths + 1 + width
            begins = np.cumsum(record) - record
            # the word and its space take the first lengths + 1 bytes of each record, the vector the rest
            key_bytes = data[offsets[start] : offsets[stop]]
            owner = np.repeat(np.arange(stop - start), lengths)
            within = np.arange(len(key_bytes)) - (offsets[start:stop] - offsets[start])[owner]
            heads = np.empty(len(key_bytes) + stop - start, dtype=np.uint8)
            at = (offsets[start:stop] - offsets[start]) + np.arange(stop - start)  # each word's start in heads
            heads[at[owner] + within] = key_bytes
            heads[at + lengths] = _SPACE
            is_head = np.zeros(int(record.sum()), dtype=bool)
            is_head[np.repeat(begins - at, lengths + 1) + np.arange(len(heads))] = True
            buffer = np.empty(len(is_head), dtype=np.uint8)
            buffer[is_head] = heads
            rows = np.ascontiguousarray(vectors.vectors[order[start:stop]], dtype=np.float32)
            buffer[~is_head] = rows.view(np.uint8).ravel()
            out.write(buffer.data)
