"""How far the words a candidate shares with its parent moved: figures for every refresh report.

For the words both versions hold (the parent's words that were not pruned), row-aligned by the caller:

- ``mean_distance`` and ``p99_distance``: the mean and the 99th percentile of the cosine distance between a
  word's vector in the parent and in the candidate;
- ``changed``: how many of those vectors differ at all (bit for bit), which ``--freeze-known-words`` must
  keep at 0;
- ``neighbours_kept``: for the parent's most frequent shared words, the share of their top-n neighbours
  among the shared words that the candidate keeps. Neighbours are taken among shared words only, so new and
  pruned words do not count as drift: frozen vectors keep exactly 1.0.

Vectors are read in blocks, so memory stays at a block of rows whatever the vocabulary.

    >>> figures = measure(parent.wv, candidate.wv, parent_rows, parent_counts, GateConfig())   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jobs.config import GateConfig
from jobs.training.evaluate import top_k

_BLOCK = 65_536


def measure(parent: Any, candidate: Any, parent_rows: np.ndarray, gate: GateConfig) -> dict[str, Any]:
    """Drift of the shared words: the candidate's rows ``0..len(parent_rows)-1`` hold the words of the
    parent's rows ``parent_rows`` (ascending)."""
    shared = len(parent_rows)
    figures: dict[str, Any] = {"shared_words": shared}
    if shared == 0:
        return {**figures, "changed": 0, "mean_distance": 0.0, "p99_distance": 0.0, "neighbours_kept": 1.0}
    distance = np.empty(shared, dtype=np.float64)
    changed = 0
    for start in range(0, shared, _BLOCK):
        before = np.asarray(parent.vectors[parent_rows[start : start + _BLOCK]], dtype=np.float64)
        after = np.asarray(candidate.vectors[start : start + len(before)], dtype=np.float64)
        changed += int(np.count_nonzero((before != after).any(axis=1)))
        norms = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
        cosine = np.divide((before * after).sum(axis=1), norms, out=np.ones(len(before)), where=norms > 0)
        # identical vectors are at distance 0 exactly, not at a rounding error of it
        distance[start : start + len(before)] = np.where(
            (before == after).all(axis=1), 0.0, np.clip(1.0 - cosine, 0.0, 2.0)
        )
    figures.update(
        changed=changed,
        mean_distance=round(float(distance.mean()), 6),
        p99_distance=round(float(np.percentile(distance, 99)), 6),
        neighbours_kept=_neighbours_kept(parent, candidate, parent_rows, gate),
    )
    return figures


def _neighbours_kept(parent: Any, candidate: Any, parent_rows: np.ndarray, gate: GateConfig) -> float:
    shared = len(parent_rows)
    topn = min(gate.topn, shared - 1)
    if topn < 1:
        return 1.0
    counts = np.asarray(parent.expandos["count"])[parent_rows]
    probes = np.sort(np.argsort(-counts, kind="stable")[: gate.probe_words])  # positions among shared words
    before = _nearest(parent.vectors, parent_rows, probes, topn)
    after = _nearest(candidate.vectors, np.arange(shared), probes, topn)
    kept = [len(np.intersect1d(b, a)) for b, a in zip(before, after, strict=True)]
    return round(float(np.mean(kept)) / topn, 4)


def _nearest(vectors: Any, rows: np.ndarray, probes: np.ndarray, topn: int, block: int = 64) -> np.ndarray:
    """Top-``topn`` cosine neighbours of ``rows[probes]`` among ``rows``, as positions in ``rows``. The matrix is
    used in place (memory-mapped, say) with the other rows masked, rather than copied."""
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    outside = np.ones(len(norms), dtype=bool)
    outside[rows] = False
    out = []
    for start in range(0, len(probes), block):
        chunk = rows[probes[start : start + block]]
        sims = (vectors[chunk] @ vectors.T) / (norms[chunk, None] * norms[None, :])
        sims[:, outside] = -np.inf
        sims[np.arange(len(chunk)), chunk] = -np.inf  # a word is not its own neighbour
        top = top_k(sims, topn)
        out.append(np.searchsorted(rows, top))
    return np.concatenate(out)
