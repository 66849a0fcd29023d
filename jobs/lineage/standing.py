"""The standing of the model's words: their counts, decayed refresh by refresh, carried with each version.

Pruning (``--max-vocab``) removes the words with the least standing. With ``--count-half-life 0`` a word's
standing is its lifetime count, which gensim already keeps in the model, so nothing is stored. Otherwise every
refresh multiplies the standing of every word by ``0.5 ** (1 / half_life)`` before adding the new counts, so a
word popular years ago loses to today's; the values are stored as ``standing.parquet`` (``word``, ``standing``,
in the model's index order) and read back aligned with the parent's vocabulary. Only a capped lineage keeps
them (nothing else reads them); a cap turned on later starts from the lifetime counts.

    write(path, model.wv.index_to_key, standing)              # doctest: +SKIP
    standing = read(path, parent.wv.index_to_key)              # None if it does not match
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

STANDING = "standing.parquet"


def write(path: Path, words: list[str], standing: np.ndarray) -> None:
    table = pa.table({"word": pa.array(words, pa.string()), "standing": pa.array(standing, pa.float64())})
    pq.write_table(table, path, compression="zstd")


def read(path: Path, words: list[str]) -> np.ndarray | None:
    """The stored standing, row-aligned with ``words`` (the parent's ``index_to_key``); None (with a warning)
    when the file was written for another vocabulary, and the lifetime counts then stand in."""
    table = pq.read_table(path)
    if not table.column("word").combine_chunks().equals(pa.array(words, pa.string())):
        log.warning("%s does not match the model's vocabulary; starting from lifetime counts", path.name)
        return None
    return table.column("standing").to_numpy().astype(np.float64)
