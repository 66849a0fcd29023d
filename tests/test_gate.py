"""The quality gate's neighbourhood check on hand-built vectors: which words it probes and what it compares."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors

from jobs.config import GateConfig
from jobs.training.evaluate import evaluate, fill_norms, nearest, neighbourhoods, probe_words, top_k

pytestmark = pytest.mark.unit


def vectors(words: list[str], matrix: np.ndarray, counts: list[int] | None = None) -> KeyedVectors:
    kv = KeyedVectors(matrix.shape[1])
    kv.add_vectors(words, matrix.astype(np.float32))
    for word, count in zip(words, counts or [1] * len(words), strict=True):
        kv.set_vecattr(word, "count", count)
    return kv


def random_model(n: int, dims: int = 16, seed: int = 0) -> KeyedVectors:
    rng = np.random.default_rng(seed)
    return vectors([f"w{i}" for i in range(n)], rng.normal(size=(n, dims)), list(range(n, 0, -1)))


def with_new_words(parent: KeyedVectors, n: int, seed: int = 1) -> KeyedVectors:
    """The parent's vectors unchanged, plus ``n`` new words appended, each a near-copy of an old one."""
    rng = np.random.default_rng(seed)
    old = parent.vectors
    new = old[rng.integers(0, len(old), n)] + rng.normal(scale=1e-3, size=(n, old.shape[1]))
    return vectors([*parent.index_to_key, *(f"new{i}" for i in range(n))], np.vstack([old, new]))


def test_neighbour_lists_equal_gensims_most_similar() -> None:
    parent = random_model(300)
    candidate = with_new_words(parent, 200)
    words = parent.index_to_key[:40]
    assert nearest(parent, words, 10) == [[w for w, _ in parent.most_similar(x, topn=10)] for x in words]
    assert nearest(candidate, words, 10) == [[w for w, _ in candidate.most_similar(x, topn=10)] for x in words]
    within = nearest(candidate, words, 10, among=slice(0, len(parent)))
    assert within == [[w for w, _ in candidate.most_similar(x, topn=10, restrict_vocab=len(parent))] for x in words]


def test_probes_are_the_most_frequent_words_by_cumulative_count() -> None:
    # after updates, the head of the index holds the first model's words, not the most frequent ones
    rng = np.random.default_rng(3)
    words = [f"old{i}" for i in range(200)] + [f"big{i}" for i in range(400)]
    counts = [5] * 200 + list(range(1000, 1400))
    kv = vectors(words, rng.normal(size=(600, 8)), counts)
    assert probe_words(kv, 3) == ["big399", "big398", "big397"]
    assert set(probe_words(kv, 200)) == {f"big{i}" for i in range(200, 400)}
    plain = KeyedVectors(8)
    plain.add_vectors(["a", "b"], rng.normal(size=(2, 8)).astype(np.float32))
    assert probe_words(plain, 5) == ["a", "b"]


def test_the_gate_probes_frequent_words_not_the_head_of_the_index() -> None:
    # Two groups in orthogonal subspaces, so neither group's neighbours lie in the other. The frequent words
    # (indexed after the first model's words) are scrambled: the gate must see it.
    rng = np.random.default_rng(4)
    head = np.hstack([rng.normal(size=(200, 8)), np.zeros((200, 8))])
    tail = np.hstack([np.zeros((400, 8)), rng.normal(size=(400, 8))])
    words = [f"old{i}" for i in range(200)] + [f"big{i}" for i in range(400)]
    counts = [5] * 200 + list(range(1000, 1400))
    parent = vectors(words, np.vstack([head, tail]), counts)
    candidate = vectors(words, np.vstack([head, rng.permutation(tail)]), counts)
    overlap, changed = neighbourhoods(parent, candidate, GateConfig())
    assert overlap < 0.1
    assert all(row["word"].startswith("big") for row in changed)


def test_new_words_do_not_count_as_drift() -> None:
    parent = random_model(400)
    candidate = with_new_words(parent, 2000)  # each old word now has near-copies among the new words
    overlap, changed = neighbourhoods(parent, candidate, GateConfig())
    assert overlap == 1.0
    assert all(row["overlap"] == 1.0 for row in changed)
    assert evaluate(parent, candidate, GateConfig(), {})["passed"]


def test_scrambled_vectors_fail_the_gate_at_default_thresholds() -> None:
    parent = random_model(60)  # small: a random list keeps 10/59 of the neighbours by chance, above 0.1
    scrambled = vectors(parent.index_to_key, np.random.default_rng(9).permutation(parent.vectors))
    result = evaluate(parent, scrambled, GateConfig(), {})
    assert result["passed"] is False
    assert "neighbourhood overlap" in result["reasons"][0]
    [check] = result["checks"]
    assert check["candidate"] < GateConfig().min_overlap


@pytest.mark.parametrize(("shape", "k"), [((5, 3000), 10), ((3, 50), 10), ((4, 20_000), 7), ((2, 10_240), 10)])
def test_top_k_equals_a_full_stable_sort(shape: tuple[int, int], k: int) -> None:
    rng = np.random.default_rng(k)
    for sims in (rng.random(shape, dtype=np.float32), np.round(rng.random(shape, dtype=np.float32), 2)):  # ties
        sims[0, 5] = -np.inf
        np.testing.assert_array_equal(top_k(sims, k), np.argsort(-sims, axis=1, kind="stable")[:, :k])


def test_norms_are_gensims_computed_a_block_at_a_time() -> None:
    parent = random_model(1000)
    ours = fill_norms(parent, block=64).copy()
    parent.norms = None
    parent.fill_norms()
    np.testing.assert_array_equal(ours, parent.norms)


def test_top_k_finds_values_crowded_into_one_slice_or_the_tail() -> None:
    rng = np.random.default_rng(3)
    sims = rng.random((4, 5_000), dtype=np.float32)
    sims[0, -300:] += 1  # every top value in the tail after the last whole slice
    sims[1, 1024:1100] += 1  # all in one slice
    sims[2, :4096] = -np.inf  # masked columns, as nearest() masks words outside the pool
    np.testing.assert_array_equal(top_k(sims, 40), np.argsort(-sims, axis=1, kind="stable")[:, :40])
