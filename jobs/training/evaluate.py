"""The quality gate: is the candidate at least as good as its parent?

Three checks, each against the parent, on the trainer's node before anything is committed:

- **neighbourhood overlap** (built in, needs no file): for the parent's most frequent words (by cumulative
  count), the share of their nearest neighbours among the parent's words that the candidate keeps, beyond
  what chance keeps. A refresh should refine neighbourhoods, not scramble them.
- **word-pair similarity** on user files in the WordSim-353 TSV format (``word1<TAB>word2<TAB>score``):
  Spearman correlation, which may not drop by more than ``max_drop``.
- **analogies** on user files in the ``questions-words.txt`` format: accuracy, same rule.

    >>> result = evaluate(parent_wv, candidate_wv, GateConfig(min_overlap=0.2), files={})
    >>> result["passed"], result["reasons"]

The same pass also finds the words whose neighbourhoods changed most, for the refresh report. Works on
gensim ``KeyedVectors`` objects; gensim itself is imported only by :mod:`jobs.training.model`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.config import GateConfig


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


def shared_rows(parent: Any, candidate: Any) -> tuple[Any, Any]:
    """Rows of the words both models hold, as (parent rows, candidate rows) in the parent's order.

    An update appends its new words after the parent's, so usually the candidate's first ``len(parent)``
    rows are the parent's words and both are plain slices (checked: one list comparison in C). Otherwise
    (a vocabulary that dropped or reordered words) the rows are looked up in one vectorized pass.
    """
    n = len(parent.index_to_key)
    if candidate.index_to_key[:n] == parent.index_to_key:
        return slice(0, n), slice(0, n)
    index = pc.index_in(pa.array(parent.index_to_key, pa.string()), value_set=pa.array(candidate.index_to_key))
    present = pc.is_valid(index).to_numpy(zero_copy_only=False)
    return np.flatnonzero(present), index.drop_null().to_numpy().astype(np.int64)


def neighbourhoods(parent: Any, candidate: Any, config: GateConfig) -> tuple[float, list[dict[str, Any]]]:
    """How much of the parent's neighbourhoods the candidate keeps, and the words that changed most.

    For the parent's ``probe_words`` most frequent words, the share of their ``topn`` nearest neighbours
    that the candidate keeps, both searched only among the words both models hold (a new word cannot be in
    the parent's list, so letting it into the candidate's would count an influx of new words as drift).
    The mean is corrected for chance: a random vector keeps ``topn / (words - 1)`` of a list by luck, which
    on a small vocabulary is more than any sensible threshold. 0 is what scrambled vectors keep, 1 is all.
    """
    parent_rows, candidate_rows = shared_rows(parent, candidate)
    shared = len(np.arange(len(parent.index_to_key))[parent_rows])
    k = min(config.topn, shared - 1)
    if k < 1:
        return 1.0, []
    probes = [w for w in probe_words(parent, config.probe_words) if w in candidate.key_to_index]
    if not probes:
        return 1.0, []
    rows: list[dict[str, Any]] = []
    for word, before, after in zip(
        probes,
        nearest(parent, probes, k, among=parent_rows),
        nearest(candidate, probes, k, among=candidate_rows),
        strict=True,
    ):
        rows.append(
            {"word": word, "overlap": len(set(before) & set(after)) / k, "before": before[:5], "after": after[:5]}
        )
    chance = k / (shared - 1)
    mean = sum(r["overlap"] for r in rows) / len(rows)
    corrected = max(0.0, (mean - chance) / (1 - chance)) if chance < 1 else 1.0
    changed = sorted(rows, key=lambda r: (r["overlap"], r["word"]))[:10]
    return round(corrected, 4), changed


def nearest(vectors: Any, words: list[str], topn: int, among: Any = None, block: int = 64) -> list[list[str]]:
    """The ``topn`` nearest neighbours (cosine) of each word, searched among the rows ``among`` (a slice or
    an index array; default all), as ``most_similar`` ranks them (``restrict_vocab=n`` is ``among=slice(0, n)``).

    A block of words per matrix product rather than one ``most_similar`` call each; memory stays at
    ``block`` x vocabulary floats.
    """
    normed = vectors.get_normed_vectors()
    pool_rows = np.arange(len(normed))[slice(None) if among is None else among]
    pool = normed[slice(None) if among is None else among]
    position = np.full(len(normed), -1, dtype=np.int64)
    position[pool_rows] = np.arange(len(pool_rows))
    out: list[list[str]] = []
    for start in range(0, len(words), block):
        rows = np.array([vectors.key_to_index[w] for w in words[start : start + block]], dtype=np.int64)
        sims = normed[rows] @ pool.T
        mine = position[rows]
        sims[np.flatnonzero(mine >= 0), mine[mine >= 0]] = -np.inf  # a word is not its own neighbour
        k = min(topn, sims.shape[1] - 1)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(rows), 0), dtype=int)
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        ranked = pool_rows[np.take_along_axis(top, order, axis=1)]
        out += [[vectors.index_to_key[j] for j in row] for row in ranked]
    return out


def _similarity(vectors: Any, path: Path) -> float | None:
    _, spearman, _ = vectors.evaluate_word_pairs(str(path), dummy4unknown=False)
    value = float(spearman[0]) if hasattr(spearman, "__getitem__") else float(spearman.correlation)
    return None if math.isnan(value) else round(value, 4)


def _analogy(vectors: Any, path: Path) -> float | None:
    score, sections = vectors.evaluate_word_analogies(str(path))
    attempted = sum(len(s["correct"]) + len(s["incorrect"]) for s in sections if s["section"] == "Total accuracy")
    return round(float(score), 4) if attempted else None


def evaluate(parent: Any | None, candidate: Any, config: GateConfig, files: dict[str, bytes]) -> dict[str, Any]:
    """Score the candidate (and the parent) and decide whether the gate passes. Pure: decides nothing else."""
    result: dict[str, Any] = {"checks": [], "changed": [], "passed": True, "reasons": []}
    if parent is not None:
        overlap, changed = neighbourhoods(parent, candidate, config)
        result["changed"] = changed
        ok = overlap >= config.min_overlap
        result["checks"].append(
            {"name": "neighbourhood overlap", "candidate": overlap, "threshold": config.min_overlap, "passed": ok}
        )
        if not ok:
            result["reasons"].append(f"neighbourhood overlap {overlap:.3f} < {config.min_overlap}")
    with tempfile.TemporaryDirectory(prefix="embedding-eval-") as tmp:
        for kind, names, score in (
            ("similarity", config.similarity_files, _similarity),
            ("analogy", config.analogy_files, _analogy),
        ):
            for name in names:
                path = Path(tmp) / Path(name).name
                path.write_bytes(files[name])
                after = score(candidate, path)
                before = score(parent, path) if parent is not None else None
                ok = before is None or after is None or after >= before - config.max_drop
                result["checks"].append(
                    {
                        "name": f"{kind} {Path(name).name}",
                        "parent": before,
                        "candidate": after,
                        "threshold": config.max_drop,
                        "passed": ok,
                    }
                )
                if not ok:
                    result["reasons"].append(
                        f"{kind} on {Path(name).name} fell from {before} to {after} (allowed drop {config.max_drop})"
                    )
    result["passed"] = not result["reasons"]
    return result
