"""Aligned coordinates: each new version rotated onto its parent's, so that known words keep their place.

An update moves every known word a little (negative sampling pulls the whole space), and the moves add up
over a lineage's life: a classifier, a clustering or a nearest-neighbour index built on last month's
coordinates slowly stops matching. Most of that motion is a rotation of the whole space, which carries no
meaning: similarities inside a model do not change when every vector is multiplied by one orthogonal matrix.
:func:`fit` finds the orthogonal ``R`` (the orthogonal Procrustes solution, Schönemann 1966) that maps the
candidate's known words closest to the parent's vectors, ``min ||W^½ (C R − P)||`` over orthogonal ``R``
(rows scaled to unit length, so directions are matched and a vector that only grew longer has not moved):
with ``M = Cᵀ W P = U S Vᵀ``, ``R = U Vᵀ``. :func:`rotate` multiplies every matrix that takes part in the
model's dot products by ``R``:

- the word vectors (``wv.vectors``), and the output layer (``syn1neg``): training scores ``v_in · v_out``,
  and ``(v_in R) · (v_out R) = v_in · v_out``, so the rotated model trains on exactly as it would have;
- for FastText, the words' own rows (``vectors_vocab``) and the n-gram buckets (``vectors_ngrams``): a
  composed vector is a mean of those rows, so the vector composed for any word, known or not, is the
  rotated one.

Nothing else moves: counts, the vocabulary, the negative-sampling table and the learning rates are
untouched. The fit reads the parent's vectors in blocks of rows from its saved file
(:func:`jobs.training.drift.parent_blocks`) and accumulates the small ``dim × dim`` matrix ``M``, so it costs
one pass over the known words and one matrix product per block; applying it costs one pass over each
rotated matrix, in place.

    >>> rotation = fit(parent_vectors_file, model.wv.vectors, parent_rows, weights)    # doctest: +SKIP
    >>> rotate(model, rotation.matrix)                                                  # doctest: +SKIP
    >>> rotation.residual_before, rotation.residual_after                               # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.training.drift import parent_blocks

_BLOCK = 65_536  # rows multiplied at once: one float32 block of this many rows is the only temporary


@dataclass(frozen=True)
class Rotation:
    """An orthogonal ``dim × dim`` matrix and how well it maps the candidate's known words onto the parent's.

    The residuals are relative, ``||W^½ (C R − P)|| / ||W^½ P||`` (before: with ``R`` the identity), so 0
    means the known words sit exactly where they were and 1 that they are as far off as the vectors are long.
    """

    matrix: np.ndarray
    residual_before: float
    residual_after: float
    words: int

    def record(self) -> dict[str, Any]:
        """The manifest's figures (the matrix itself stays out: it is in the model's vectors)."""
        return {
            "words": self.words,
            "residual_before": round(self.residual_before, 6),
            "residual_after": round(self.residual_after, 6),
        }


def fit(
    parent: Path | np.ndarray,
    candidate: np.ndarray,
    parent_rows: np.ndarray,
    weights: np.ndarray | None = None,
) -> Rotation:
    """The rotation that best maps the candidate's first ``len(parent_rows)`` rows (the known words, in the
    parent's order) onto the parent's rows ``parent_rows`` (ascending), weighted by ``weights`` (one per known
    word; None: all equal). ``parent`` is the parent's saved ``vectors.npy`` (read in blocks) or an array."""
    dim = candidate.shape[1]
    known = len(parent_rows)
    if known == 0:
        return Rotation(np.eye(dim, dtype=np.float32), 0.0, 0.0, 0)
    m = np.zeros((dim, dim), dtype=np.float64)
    parent_norm = candidate_norm = 0.0
    for start, before in parent_blocks(parent, parent_rows):
        p, p_len = _unit(np.asarray(before, dtype=np.float32))
        c, c_len = _unit(np.asarray(candidate[start : start + len(p)], dtype=np.float32))
        w = np.ones(len(p)) if weights is None else np.asarray(weights[start : start + len(p)], dtype=np.float64)
        if weights is not None:
            root = np.sqrt(w).astype(np.float32)[:, None]
            p, c = p * root, c * root
        m += (c.T @ p).astype(np.float64)  # one float32 matrix product per block (BLAS)
        parent_norm += float(w[p_len > 0].sum())  # each unit row adds its weight to the squared norm
        candidate_norm += float(w[c_len > 0].sum())
    u, s, vt = np.linalg.svd(m)
    rotation = u @ vt
    # ||C R − P||² = ||C||² + ||P||² − 2 tr(Rᵀ Cᵀ P): tr(Cᵀ P) = tr(M) before, the singular values' sum after
    scale = max(parent_norm, np.finfo(np.float64).tiny)
    before_sq = max(candidate_norm + parent_norm - 2 * float(np.trace(m)), 0.0)
    after_sq = max(candidate_norm + parent_norm - 2 * float(s.sum()), 0.0)
    return Rotation(
        rotation.astype(np.float32),
        float(np.sqrt(before_sq / scale)),
        float(np.sqrt(after_sq / scale)),
        known,
    )


def _unit(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to length 1 (zero rows stay zero), and their lengths: the fit matches directions, which is
    what cosine similarity, and every consumer of it, sees; a word whose vector only grew longer has not moved."""
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return np.divide(rows, norms[:, None], out=np.zeros_like(rows), where=norms[:, None] > 0), norms


def rotate(model: Any, matrix: np.ndarray) -> list[str]:
    """Multiply, in place, every matrix of ``model`` that takes part in its dot products by ``matrix``;
    return their names. ``model`` is a gensim Word2Vec or FastText (anything with their attributes)."""
    wv = model.wv
    targets = [("wv.vectors", wv.vectors)]
    if getattr(model, "syn1neg", None) is not None and len(model.syn1neg):
        targets.append(("syn1neg", model.syn1neg))
    for name in ("vectors_vocab", "vectors_ngrams"):
        array = getattr(wv, name, None)
        if array is not None and len(array):
            targets.append((f"wv.{name}", array))
    for _, array in targets:
        rotate_rows(array, matrix)
    if hasattr(wv, "norms"):
        wv.norms = None  # gensim caches the norms; rotation keeps them, but a stale cache is never right
    return [name for name, _ in targets]


def rotate_rows(array: np.ndarray, matrix: np.ndarray) -> None:
    """``array[:] = array @ matrix`` in blocks of rows, so the only temporary is one block."""
    for start in range(0, len(array), _BLOCK):
        block = array[start : start + _BLOCK]
        block[...] = block @ matrix.astype(block.dtype, copy=False)
