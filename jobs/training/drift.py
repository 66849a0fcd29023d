"""How far the words a candidate shares with its parent moved: figures for every refresh report.

For the words both versions hold (the parent's words that were not pruned), row-aligned by the caller:

- ``mean_distance`` and ``p99_distance``: the mean and the 99th percentile of the cosine distance between a
  word's vector in the parent and in the candidate;
- ``changed``: how many of those vectors differ at all (bit for bit), which ``--freeze-known-words`` must
  keep at 0;
- ``neighbours_kept``: for the parent's most frequent shared words, the share of their top-n neighbours
  among the shared words that the candidate keeps, as the quality gate measured it (not corrected for
  chance; see :func:`jobs.training.evaluate.neighbourhoods`). Frozen vectors keep exactly 1.0.

The parent's vectors are read from its saved file in blocks of rows, so neither the parent's matrix nor a
copy of it is held beside the candidate's: memory stays at a block of rows whatever the vocabulary.

    >>> shared = compare(parent_file, candidate.wv, parent_rows)       # doctest: +SKIP
    >>> report = figures(shared, evaluation["neighbours_kept"])          # doctest: +SKIP

:func:`compare` keeps every shared word's distance (:class:`Shared`), which the version's diff takes as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.errors import IntegrityError
from jobs.format.files import npy_header

_BLOCK = 8_192  # rows compared at once: a few float32 temporaries of this many rows


@dataclass(frozen=True)
class Shared:
    """Each shared word's move: the candidate's rows ``0..len(parent_rows)-1`` against the parent's rows
    ``parent_rows`` (ascending). The refresh's diff (:func:`jobs.changes.from_rows`) takes it as it is, so the
    model's bytes are compared with the parent's once per refresh."""

    parent_rows: np.ndarray
    distance: np.ndarray  # float64, one per shared word: :func:`_distances`'s
    changed: int  # how many of the shared words' vectors differ at all (bit for bit)


def compare(parent: Path | np.ndarray, candidate: Any, parent_rows: np.ndarray) -> Shared:
    """How far each shared word moved: the candidate's rows ``0..len(parent_rows)-1`` hold the words of the
    parent's rows ``parent_rows`` (ascending). ``parent`` is the parent's saved ``vectors.npy`` (read in
    blocks) or its vectors as an array."""
    distance = np.zeros(len(parent_rows), dtype=np.float64)
    changed = 0
    if not len(parent_rows):
        return Shared(parent_rows, distance, changed)
    for start, before in parent_blocks(parent, parent_rows):
        after = np.asarray(candidate.vectors[start : start + len(before)])
        same = (before == after).all(axis=1)
        changed += int(len(same) - np.count_nonzero(same))
        distance[start : start + len(before)] = _distances(before, after, same)
    return Shared(parent_rows, distance, changed)


def figures(shared: Shared, neighbours_kept: float) -> dict[str, Any]:
    """The report's drift figures (see the module's docstring) of what :func:`compare` found."""
    count = len(shared.parent_rows)
    if count == 0:
        return {"shared_words": 0, "changed": 0, "mean_distance": 0.0, "p99_distance": 0.0, "neighbours_kept": 1.0}
    return {
        "shared_words": count,
        "changed": shared.changed,
        "mean_distance": round(float(shared.distance.mean()), 6),
        "p99_distance": round(float(np.percentile(shared.distance, 99)), 6),
        "neighbours_kept": round(float(neighbours_kept), 4),
    }


def measure(
    parent: Path | np.ndarray, candidate: Any, parent_rows: np.ndarray, neighbours_kept: float
) -> dict[str, Any]:
    """:func:`compare`, then its :func:`figures`."""
    return figures(compare(parent, candidate, parent_rows), neighbours_kept)


def _distances(before: np.ndarray, after: np.ndarray, same: np.ndarray) -> np.ndarray:
    """The cosine distance of each row pair, as half the squared distance of the unit vectors: in the
    vectors' float32 without the cancellation of ``1 - cos`` (within about 1e-9 of float64's ``1 - cos``,
    where float32's would be off by 1e-7), 0 exactly for identical rows (``same``), and 0 for a zero or
    non-finite vector, which has no direction."""
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = before / np.sqrt(np.einsum("ij,ij->i", before, before))[:, None]
        unit -= after / np.sqrt(np.einsum("ij,ij->i", after, after))[:, None]
    half = 0.5 * np.einsum("ij,ij->i", unit, unit).astype(np.float64)
    return np.where(same | ~np.isfinite(half), 0.0, np.clip(half, 0.0, 2.0))


def parent_blocks(parent: Path | np.ndarray, parent_rows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(position among the shared words, the parent's vectors of the next block of them), in order."""
    if not isinstance(parent, Path):
        for start in range(0, len(parent_rows), _BLOCK):
            yield start, np.asarray(parent[parent_rows[start : start + _BLOCK]])
        return
    with parent.open("rb") as f:
        shape, fortran, dtype = npy_header(f)
        if fortran or len(shape) != 2 or (len(parent_rows) and parent_rows[-1] >= shape[0]):
            raise IntegrityError(f"{parent}: not the parent's vectors ({dtype}{list(shape)})")
        offset, width = f.tell(), shape[1] * dtype.itemsize
        done = 0
        for first in range(0, shape[0], _BLOCK):  # the parent's rows in blocks; pruned rows are skipped
            last = min(first + _BLOCK, shape[0])
            stop = int(np.searchsorted(parent_rows, last))
            if stop == done:
                continue
            f.seek(offset + first * width)
            block = np.frombuffer(f.read((last - first) * width), dtype=dtype).reshape(-1, shape[1])
            if len(block) != last - first:
                raise IntegrityError(f"{parent} is truncated")
            yield done, block[parent_rows[done:stop] - first]
            done = stop
