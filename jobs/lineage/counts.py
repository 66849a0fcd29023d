"""The remembered vocabulary: counts of words still under ``min_count``, carried from version to version.

gensim forgets every word under ``min_count`` after each batch. With ``--vocab-policy remember`` their
cumulative counts are stored with each version as ``pending.parquet`` (at most ``--pending-cap`` words, the
rarest pruned), and a word joins the model once its cumulative count reaches ``min_count``. With
``--count-half-life`` the remembered counts decay, so they are stored as floats.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PENDING = "pending.parquet"  # words below min_count, remembered across runs


def write_counts(path: Path, counts: dict[str, float]) -> None:
    values = list(counts.values())
    kind = pa.int64() if all(isinstance(v, int) for v in values) else pa.float64()
    table = pa.table({"word": pa.array(list(counts), pa.string()), "count": pa.array(values, kind)})
    pq.write_table(table, path, compression="zstd")


def read_counts(path: Path) -> dict[str, float]:
    table = pq.read_table(path)
    return dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist(), strict=True))


def below_min_count(
    model: Any, counts: dict[str, int], pending: dict[str, float], cap: int, rows: np.ndarray | None = None
) -> dict[str, float]:
    """Cumulative counts of the words still below ``min_count`` after an update, the rarest pruned to ``cap``.
    ``rows``: the counted words' rows after the update, in their order (-1: not in the vocabulary), when known;
    else each word is looked up."""
    known = model.wv.key_to_index
    remembered = {w: c for w, c in pending.items() if w not in known}
    if rows is None:
        outside: Iterable[tuple[str, int]] = ((w, c) for w, c in counts.items() if w not in known)
    else:
        outside = compress(counts.items(), (rows < 0).tolist())
    for word, count in outside:
        remembered[word] = remembered.get(word, 0) + count
    return capped(remembered, cap)


def capped(remembered: dict[str, float], cap: int) -> dict[str, float]:
    """The ``cap`` most frequent of the remembered words (ties: alphabetical)."""
    if len(remembered) <= cap:
        return remembered
    return dict(sorted(remembered.items(), key=lambda item: (-item[1], item[0]))[:cap])
