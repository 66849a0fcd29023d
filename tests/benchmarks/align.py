"""Do aligned coordinates keep downstream users working over a month of updates?

    python -m tests.benchmarks.align                    # 30 daily updates, aligned and not; ~2 minutes on 2 cores
    python -m tests.benchmarks.align --days 10 --scale 0.1

The stream is the drift benchmark's world (:mod:`tests.benchmarks.drift`): groups of member words with their
own context words, some groups silent after day 0, new words on days 1-3, some old words moving to another
group. A first Word2Vec model is trained on day 0, then updated once a day, as the job updates it (gensim's
``build_vocab(update=True)`` and ``train``), in two lineages that see the same days with the same seed: one
as it is, one rotated after each update onto its parent's coordinates (:mod:`jobs.training.align`,
unweighted, and, as a third lineage, weighted by the words' counts).

Each day, for each lineage:

* the mean cosine distance of the old words (those of day 0) to their day-0 vectors (accumulated drift) and
  to the parent's vectors (the nightly move a consumer sees);
* a downstream model trained once, on day 0's vectors: a logistic-regression probe that separates two
  groups' old words (half of each group's words to fit, the other half to score), scored on that day's
  vectors of the held-out words, as a classifier built last month and never retrained would be;
* a nearest-neighbour index built on day 0: the share of each old word's 10 nearest day-0 neighbours that a
  lookup with the word's current vector in the day-0 index still returns.

It is not collected by pytest: it takes minutes and measures quality, not correctness.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import numpy as np
from gensim.models import Word2Vec

from jobs.training import align
from tests.benchmarks.drift import CorpusSpec, day_texts, make_world

K = 10


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _probe(x: np.ndarray, y: np.ndarray, steps: int = 2_000, rate: float = 1.0) -> tuple[np.ndarray, float]:
    """Logistic regression by gradient descent (numpy only)."""
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w -= rate * x.T @ (p - y) / len(y)
        b -= rate * float(np.mean(p - y))
    return w, b


def run(days: int, scale: float, seed: int) -> dict[str, list[dict[str, float]]]:
    world = make_world(replace(CorpusSpec(seed=seed), scale=scale))
    base = [t.split() for t in day_texts(world, 0)]
    old = [w.text for w in world.words if w.kind == "old" and w.moved_to is None]
    groups = sorted({w.cluster for w in world.words if w.kind == "old" and w.cluster not in world.dormant})[:2]
    probe_words = [w for w in world.words if w.kind == "old" and w.moved_to is None and w.cluster in groups]
    fit_words, score_words = probe_words[0::2], probe_words[1::2]
    labels = {w.text: float(w.cluster == groups[1]) for w in probe_words}
    updates = [[t.split() for t in day_texts(world, day)] for day in range(1, days + 1)]
    results: dict[str, list[dict[str, float]]] = {}
    for lineage in ("as trained", "aligned", "aligned, count-weighted"):
        model = Word2Vec(base, vector_size=50, window=5, min_count=5, negative=5, hs=0, seed=seed, workers=2)
        day0 = {w: model.wv[w].copy() for w in old if w in model.wv.key_to_index}
        known = list(day0)
        v0 = _unit(np.array([day0[w] for w in known]))
        index = {w: set(np.argsort(-(v0 @ v0[i]))[1 : K + 1]) for i, w in enumerate(known)}
        fit_words = [x for x in fit_words if x.text in day0]
        score_words = [x for x in score_words if x.text in day0]
        w, b = _probe(_unit(np.array([day0[x.text] for x in fit_words])), np.array([labels[x.text] for x in fit_words]))
        rows = []
        for sentences in updates:
            parent = model.wv.vectors.copy()
            counts = np.array([model.wv.get_vecattr(x, "count") for x in model.wv.index_to_key], dtype=np.float64)
            model.build_vocab(sentences, update=True)
            model.train(sentences, total_examples=len(sentences), epochs=model.epochs)
            started = time.perf_counter()
            if lineage != "as trained":
                weights = counts if "count" in lineage else None
                rotation = align.fit(parent, model.wv.vectors, np.arange(len(parent)), weights)
                align.rotate(model, rotation.matrix)
            aligned_s = time.perf_counter() - started
            now = _unit(np.array([model.wv[x] for x in known]))
            before = _unit(parent[[model.wv.key_to_index[x] for x in known]])
            found = [set(np.argsort(-(v0 @ now[i]))[: K + 1]) - {i} for i in range(len(known))]
            score = _unit(np.array([model.wv[x.text] for x in score_words])) @ w + b
            rows.append(
                {
                    "drift_day0": float(np.mean(1 - np.sum(now * v0, axis=1))),
                    "drift_parent": float(np.mean(1 - np.sum(now * before, axis=1))),
                    "probe_accuracy": float(np.mean((score > 0) == np.array([labels[x.text] for x in score_words]))),
                    "index_recall": float(np.mean([len(f & index[x]) / K for f, x in zip(found, known, strict=True)])),
                    "align_seconds": aligned_s,
                }
            )
        results[lineage] = rows
    return results


def render(results: dict[str, list[dict[str, float]]]) -> str:
    days = len(next(iter(results.values())))
    shown = sorted({1, 2, 5, 10, 20, days} & set(range(1, days + 1)))
    lines = ["| day | lineage | drift vs day 0 | drift vs parent | day-0 probe accuracy | day-0 index recall@10 |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for day in shown:
        for lineage, rows in results.items():
            r = rows[day - 1]
            lines.append(
                f"| {day} | {lineage} | {r['drift_day0']:.4f} | {r['drift_parent']:.4f} | "
                f"{r['probe_accuracy']:.3f} | {r['index_recall']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results: dict[str, Any] = run(args.days, args.scale, args.seed)
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
