"""The quality gate: is the candidate at least as good as its parent?

Three checks, each against the parent, on the trainer's node before anything is committed:

- **neighbourhood overlap** (built in, needs no file): for the parent's most frequent words (by cumulative
  count), the share of their nearest neighbours among the parent's words that the candidate keeps, beyond
  what chance keeps. A refresh should refine neighbourhoods, not scramble them.
- **word-pair similarity** on user files in the WordSim-353 TSV format (``word1<TAB>word2<TAB>score``):
  Spearman correlation, which may not drop by more than ``max_drop``.
- **analogies** on user files in the ``questions-words.txt`` format: accuracy, same rule.

The parent's side is measured once, from the loaded parent before its vocabulary grows (:func:`baseline`),
and the candidate's after training, so the parent is loaded once, for training:

    >>> before = baseline(model.wv, GateConfig(min_overlap=0.2), files={})     # the parent, as loaded
    >>> ...                                                                      # grow the vocabulary, train
    >>> result = evaluate(before, model.wv, GateConfig(min_overlap=0.2), files={})
    >>> result["passed"], result["reasons"]

(``evaluate(parent_wv, candidate_wv, ...)`` on two loaded models does both steps.) Neighbours come from blocked
matrix products of the raw vectors, divided by their norms as ``most_similar`` divides them, so no
normalized copy of a whole matrix is made. The same pass also finds the words whose neighbourhoods changed
most, for the refresh report. Works on gensim ``KeyedVectors`` objects; gensim itself is imported only by
:mod:`jobs.training.model` and :mod:`jobs.training.vocabulary`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.config import GateConfig

Scorer = Callable[[Any, Path], "float | None"]
_BLOCK_BYTES = 64 * 2**20  # similarities computed at once by nearest_scored
_MIN_CHUNK = 32_768  # rows of the matrix per product at least (top_k needs 1,024 per neighbour)
_DEPTH = 2  # the parent's neighbour lists hold this many times topn: words the candidate lacks are skipped


@dataclass(frozen=True)
class Baseline:
    """The parent's side of the gate, measured before anything changes the parent's model."""

    words: list[str]  # the parent's vocabulary in index order (a copy: an update extends the model's list)
    probes: list[str]
    neighbours: list[list[str]]  # each probe's nearest among the parent's words, _DEPTH x topn deep
    scores: dict[str, float | None] = field(default_factory=dict)  # evaluation file -> the parent's score


def baseline(parent: Any, config: GateConfig, files: dict[str, bytes]) -> Baseline:
    """Measure the parent (its ``KeyedVectors``, before the vocabulary update) for :func:`evaluate`."""
    probes = probe_words(parent, config.probe_words)
    depth = min(_DEPTH * config.topn, len(parent.index_to_key) - 1)
    with _files(config, files) as scored:
        scores = {name: score(parent, path) for name, score, path in scored}
    return Baseline(list(parent.index_to_key), probes, nearest(parent, probes, depth) if depth > 0 else [], scores)


def probe_words(vectors: Any, n: int) -> list[str]:
    """The ``n`` most frequent words by cumulative count (ties in vocabulary order).

    Not ``index_to_key[:n]``: gensim sorts by count only when it creates a vocabulary and appends on every
    update, so after the first update the head of the index is the first model's top words forever.
    Vectors without counts (a plain word2vec file) fall back to vocabulary order.
    """
    counts = getattr(vectors, "expandos", {}).get("count")
    if counts is None or len(counts) != len(vectors.index_to_key):
        return list(vectors.index_to_key[:n])
    counts = np.asarray(counts, dtype=np.int64)
    n = min(n, len(counts))
    if n <= 0:
        return []
    top = np.argpartition(-counts, n - 1)[:n] if n < len(counts) else np.arange(len(counts))
    top = top[np.lexsort((top, -counts[top]))]
    return [vectors.index_to_key[int(i)] for i in top]


def shared_rows(words: list[str], candidate: Any) -> tuple[Any, Any]:
    """Rows of the parent's ``words`` the candidate holds, as (parent rows, candidate rows) in the parent's order.

    An update appends its new words after the parent's, so usually the candidate's first ``len(parent)``
    rows are the parent's words and both are plain slices (checked: one list comparison in C). Otherwise
    (a vocabulary that dropped or reordered words) the rows are looked up in one vectorized pass.
    """
    n = len(words)
    if candidate.index_to_key[:n] == words:
        return slice(0, n), slice(0, n)
    index = pc.index_in(pa.array(words, pa.string()), value_set=pa.array(candidate.index_to_key))
    present = pc.is_valid(index).to_numpy(zero_copy_only=False)
    return np.flatnonzero(present), index.drop_null().to_numpy().astype(np.int64)


def neighbourhoods(parent: Baseline | Any, candidate: Any, config: GateConfig) -> tuple[float, list[dict[str, Any]]]:
    """How much of the parent's neighbourhoods (its :func:`baseline`, or its vectors) the candidate keeps, and
    the words that changed most.

    For the parent's ``probe_words`` most frequent words, the share of their ``topn`` nearest neighbours
    that the candidate keeps, both searched only among the words both models hold (a new word cannot be in
    the parent's list, so letting it into the candidate's would count an influx of new words as drift).
    The mean is corrected for chance: a random vector keeps ``topn / (words - 1)`` of a list by luck, which
    on a small vocabulary is more than any sensible threshold. 0 is what scrambled vectors keep, 1 is all.
    """
    overlap = _overlap(parent, candidate, config)
    return overlap.corrected, overlap.changed


@dataclass(frozen=True)
class _Overlap:
    corrected: float  # beyond chance: what the gate compares with --min-overlap
    kept: float  # the plain share of neighbours kept, for the drift figures
    changed: list[dict[str, Any]]  # the words whose neighbourhoods changed most


def _overlap(parent: Baseline | Any, candidate: Any, config: GateConfig) -> _Overlap:
    before = parent if isinstance(parent, Baseline) else baseline(parent, config, {})
    parent_rows, candidate_rows = shared_rows(before.words, candidate)
    shared = len(np.arange(len(before.words))[parent_rows])
    k = min(config.topn, shared - 1)
    if k < 1:
        return _Overlap(1.0, 1.0, [])
    held = candidate.key_to_index
    probes = [(w, deep) for w, deep in zip(before.probes, before.neighbours, strict=True) if w in held]
    if not probes:
        return _Overlap(1.0, 1.0, [])
    rows: list[dict[str, Any]] = []
    found = nearest(candidate, [w for w, _ in probes], k, among=candidate_rows)
    for (word, deep), after in zip(probes, found, strict=True):
        kept = [w for w in deep if w in held][:k]  # the parent's nearest among the words both hold
        if not kept:  # every word of its list is gone: nothing to compare
            continue
        # the parent's list is short only when pruning took more than its depth's spare words: its words
        # are then the head of the parent's top k among the shared words, and are compared as such
        share = len(set(kept) & set(after)) / len(kept)
        rows.append({"word": word, "overlap": share, "before": kept[:5], "after": after[:5]})
    if not rows:
        return _Overlap(1.0, 1.0, [])
    chance = k / (shared - 1)
    mean = sum(r["overlap"] for r in rows) / len(rows)
    corrected = max(0.0, (mean - chance) / (1 - chance)) if chance < 1 else 1.0
    changed = sorted(rows, key=lambda r: (r["overlap"], r["word"]))[:10]
    return _Overlap(round(corrected, 4), round(mean, 4), changed)


def nearest(vectors: Any, words: list[str], topn: int, among: Any = None, chunk: int | None = None) -> list[list[str]]:
    """The ``topn`` nearest neighbours (cosine) of each word, searched among the rows ``among`` (a slice or
    an index array; default all), as ``most_similar`` ranks them (``restrict_vocab=n`` is ``among=slice(0, n)``)."""
    return [found for found, _ in nearest_scored(vectors, words, topn, among, chunk)]


def nearest_scored(
    vectors: Any, words: list[str], topn: int, among: Any = None, chunk: int | None = None
) -> list[tuple[list[str], list[float]]]:
    """:func:`nearest`, with each neighbour's cosine similarity.

    One pass over the matrix for all the words at once: ``chunk`` rows of it at a time (by default as many as
    keep the similarities within 64 MiB) are multiplied with every word's vector, and each word's best
    ``topn`` so far are merged with the chunk's. The raw vectors are multiplied and the products divided by
    the norms, as ``most_similar`` computes them, so no normalized copy of the matrix is made, and ties go to
    the lower row, as a stable sort would have them.
    """
    matrix = vectors.vectors
    norms = fill_norms(vectors)
    pool_rows = np.arange(len(matrix))[slice(None) if among is None else among]
    k = min(topn, len(pool_rows) - 1)
    rows = np.array([vectors.key_to_index[w] for w in words], dtype=np.int64)
    if k < 1 or len(rows) == 0:
        return [([], []) for _ in words]
    if (isinstance(among, slice) and among.step in (None, 1)) or among is None:
        low, high, outside = int(pool_rows[0]), int(pool_rows[-1]) + 1, None
    else:  # scattered rows: the whole matrix, the others masked
        low, high = 0, len(matrix)
        outside = np.ones(len(matrix), dtype=bool)
        outside[pool_rows] = False
    chunk = chunk or max(_MIN_CHUNK, _BLOCK_BYTES // (4 * len(rows)))
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero vector has no direction, as in gensim
        queries = matrix[rows] / norms[rows, None]
    best = np.zeros((len(rows), 0), dtype=np.float32)
    columns = np.zeros((len(rows), 0), dtype=np.int64)
    everyone = np.arange(len(rows))
    for start in range(low, high, chunk):
        stop = min(start + chunk, high)
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = queries @ matrix[start:stop].T
            sims /= norms[start:stop][None, :]
        if outside is not None:
            sims[:, outside[start:stop]] = -np.inf
        mine = (rows >= start) & (rows < stop)
        sims[everyone[mine], rows[mine] - start] = -np.inf  # a word is not its own neighbour
        top = top_k(sims, min(k, stop - start))
        values = np.concatenate([best, np.take_along_axis(sims, top, axis=1)], axis=1)
        found = np.concatenate([columns, top + start], axis=1)
        order = np.lexsort((found, -values), axis=1)[:, :k]  # by value descending, then the lower row
        best, columns = np.take_along_axis(values, order, axis=1), np.take_along_axis(found, order, axis=1)
    return [
        ([vectors.index_to_key[j] for j in row], [float(x) for x in scores])
        for row, scores in zip(columns, best, strict=True)
    ]


def fill_norms(vectors: Any, block: int = 65_536) -> np.ndarray:
    """gensim's ``fill_norms()``, the same values, computed a block of rows at a time: gensim's
    ``np.linalg.norm(vectors, axis=1)`` squares the whole matrix into a temporary as large as the matrix."""
    if vectors.norms is None or len(vectors.norms) != len(vectors.vectors):
        matrix = vectors.vectors
        norms = np.empty(len(matrix), dtype=matrix.dtype)
        for start in range(0, len(matrix), block):
            norms[start : start + block] = np.linalg.norm(matrix[start : start + block], axis=1)
        vectors.norms = norms
    return vectors.norms


def top_k(sims: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """The columns of each row's ``k`` largest values, largest first (ties: the lower column first).

    Rather than ``argpartition`` over every value (an index per value), a lower bound of each row's k-th
    largest value comes from the maxima of ``chunk``-wide slices (at least k values reach the k-th largest
    maximum), and only the few values above it are sorted: about ten times faster on a vocabulary-wide row.
    """
    rows, width = sims.shape
    k = max(0, min(k, width))
    slices = width // chunk
    if slices >= k > 0:
        maxima = np.maximum.reduceat(sims, np.arange(0, slices * chunk, chunk), axis=1)  # the last takes the tail
        bound = np.partition(maxima, slices - k, axis=1)[:, slices - k]
        # only the slices whose maximum reaches the bound can hold a value that does: gather those alone
        reaching, piece = np.nonzero(maxima >= bound[:, None])
        row, column = _columns(reaching, piece, slices, chunk, width)
        value = sims[row, column]
        keep = value >= bound[row]
        row, column, value = row[keep], column[keep], value[keep]
    if k == 0 or slices < k or np.bincount(row, minlength=rows).min() < k:  # small rows, or NaN in a row
        return np.argsort(-sims, axis=1, kind="stable")[:, :k].astype(np.int64)
    order = np.lexsort((column, -value, row))  # by row, then value descending, then column
    row, column = row[order], column[order]
    first = np.searchsorted(row, np.arange(rows))
    return column[first[:, None] + np.arange(k)[None, :]]


def _columns(row: np.ndarray, piece: np.ndarray, slices: int, chunk: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, column) of the given (row, slice) pairs; the last slice runs to the end of the row."""
    start = piece * chunk
    lengths = np.where(piece == slices - 1, width, start + chunk) - start
    offsets = np.cumsum(lengths) - lengths
    column = np.arange(int(lengths.sum())) + np.repeat(start - offsets, lengths)
    return np.repeat(row, lengths), column


def neighbours(vectors: Any, words: list[str], topn: int = 5) -> dict[str, list[tuple[str, float]]]:
    """Each word's ``topn`` nearest neighbours with their cosine similarity (rounded), for the report."""
    known = [w for w in words if w in vectors.key_to_index]
    return {
        word: [(w, round(x, 4)) for w, x in zip(found, scores, strict=True)]
        for word, (found, scores) in zip(known, nearest_scored(vectors, known, topn), strict=True)
    }


def _similarity(vectors: Any, path: Path) -> float | None:
    _, spearman, _ = vectors.evaluate_word_pairs(str(path), dummy4unknown=False)
    value = float(spearman[0]) if hasattr(spearman, "__getitem__") else float(spearman.correlation)
    return None if math.isnan(value) else round(value, 4)


def _analogy(vectors: Any, path: Path) -> float | None:
    score, sections = vectors.evaluate_word_analogies(str(path))
    attempted = sum(len(s["correct"]) + len(s["incorrect"]) for s in sections if s["section"] == "Total accuracy")
    return round(float(score), 4) if attempted else None


@contextmanager
def _files(config: GateConfig, files: dict[str, bytes]) -> Iterator[list[tuple[str, Scorer, Path]]]:
    """Each evaluation file as (name, scoring function, path of a temporary copy on this node)."""
    with tempfile.TemporaryDirectory(prefix="embedding-eval-") as tmp:
        out: list[tuple[str, Scorer, Path]] = []
        scorers: tuple[tuple[tuple[str, ...], Scorer], ...] = (
            (config.similarity_files, _similarity),
            (config.analogy_files, _analogy),
        )
        for names, score in scorers:
            for name in names:
                path = Path(tmp) / Path(name).name
                path.write_bytes(files[name])
                out.append((name, score, path))
        yield out


def evaluate(
    parent: Baseline | Any | None, candidate: Any, config: GateConfig, files: dict[str, bytes]
) -> dict[str, Any]:
    """Score the candidate against the parent (its :func:`baseline`, or its vectors; None for a first model)
    and decide whether the gate passes. Pure: decides nothing else."""
    result: dict[str, Any] = {"checks": [], "changed": [], "passed": True, "reasons": [], "neighbours_kept": 1.0}
    before = parent if parent is None or isinstance(parent, Baseline) else baseline(parent, config, files)
    if before is not None:
        measured = _overlap(before, candidate, config)
        overlap, result["changed"], result["neighbours_kept"] = measured.corrected, measured.changed, measured.kept
        ok = overlap >= config.min_overlap
        result["checks"].append(
            {"name": "neighbourhood overlap", "candidate": overlap, "threshold": config.min_overlap, "passed": ok}
        )
        if not ok:
            result["reasons"].append(f"neighbourhood overlap {overlap:.3f} < {config.min_overlap}")
    with _files(config, files) as scored:
        for name, score, path in scored:
            kind = "similarity" if score is _similarity else "analogy"
            after = score(candidate, path)
            was = before.scores.get(name) if before is not None else None
            ok = was is None or after is None or after >= was - config.max_drop
            result["checks"].append(
                {
                    "name": f"{kind} {Path(name).name}",
                    "parent": was,
                    "candidate": after,
                    "threshold": config.max_drop,
                    "passed": ok,
                }
            )
            if not ok:
                result["reasons"].append(
                    f"{kind} on {Path(name).name} fell from {was} to {after} (allowed drop {config.max_drop})"
                )
    result["passed"] = not result["reasons"]
    return result
