"""The quality gate: is the candidate at least as good as its parent?

Three checks, each against the parent, on the trainer's node before anything is committed:

- **neighbourhood overlap** (built in, needs no file): for the parent's most frequent words, the share of
  their nearest neighbours the candidate keeps. A refresh should refine neighbourhoods, not scramble them.
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

from jobs.config import GateConfig


def neighbourhoods(parent: Any, candidate: Any, config: GateConfig) -> tuple[float, list[dict[str, Any]]]:
    """Mean overlap of top-n neighbours for the parent's most frequent words, and the most changed words."""
    probes = [w for w in parent.index_to_key[: config.probe_words] if w in candidate.key_to_index]
    if not probes:
        return 1.0, []
    rows = []
    for word, before, after in zip(
        probes, nearest(parent, probes, config.topn), nearest(candidate, probes, config.topn), strict=True
    ):
        rows.append(
            {
                "word": word,
                "overlap": len(set(before) & set(after)) / config.topn,
                "before": before[:5],
                "after": after[:5],
            }
        )
    mean = sum(r["overlap"] for r in rows) / len(rows)
    changed = sorted(rows, key=lambda r: (r["overlap"], r["word"]))[:10]
    return round(mean, 4), changed


def nearest(vectors: Any, words: list[str], topn: int, block: int = 64) -> list[list[str]]:
    """The ``topn`` nearest neighbours (cosine) of each word, a block of words per matrix product rather than
    one ``most_similar`` call each; memory stays at ``block`` x vocabulary floats."""
    normed = vectors.get_normed_vectors()
    out: list[list[str]] = []
    for start in range(0, len(words), block):
        rows = np.array([vectors.key_to_index[w] for w in words[start : start + block]])
        sims = normed[rows] @ normed.T
        sims[np.arange(len(rows)), rows] = -np.inf  # a word is not its own neighbour
        k = min(topn, sims.shape[1] - 1)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(rows), 0), dtype=int)
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        ranked = np.take_along_axis(top, order, axis=1)
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
