"""The quality gate's neighbourhood check on hand-built vectors: which words it probes and what it compares."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors

from jobs.config import GateConfig
from jobs.training.evaluate import baseline, evaluate, fill_norms, nearest, neighbourhoods, probe_words, top_k
from jobs.training.gate import carried, collapse_check, history_of, norm_check, overlap_floor


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
    # no history (a first update): the floor is what chance reaches, 4 of its standard deviations above 0
    [check] = [c for c in result["checks"] if c["name"] == "neighbourhood overlap"]
    assert check["floor"]["bound"] == "chance" and check["threshold"] == check["floor"]["chance"] > 0.05
    assert check["candidate"] < check["threshold"]
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["neighbourhood overlap"]


def test_a_big_vocabulary_is_searched_among_its_most_frequent_words() -> None:
    # 900 words, the 300 most frequent scattered through the index: the gate on the whole model, searching
    # among those 300, measures exactly what it measures on a model of those 300 words alone
    rng = np.random.default_rng(6)
    words = [f"w{i}" for i in range(900)]
    counts = rng.permutation(np.arange(1, 901)).tolist()
    parent = vectors(words, rng.normal(size=(900, 16)), counts)
    moved = parent.vectors + rng.normal(scale=0.6, size=parent.vectors.shape).astype(np.float32)
    candidate = vectors(words, moved, counts)
    config = GateConfig(search_words=300, probe_words=50)
    before = baseline(parent, config, {})
    head = sorted(range(900), key=lambda i: (-counts[i], i))[:300]
    assert before.pool is not None and before.pool.tolist() == sorted(head)
    assert all(w in {words[i] for i in head} for deep in before.neighbours for w in deep)
    rows = sorted(head)
    parent_alone, candidate_alone = (
        vectors([words[i] for i in rows], m.vectors[rows], [counts[i] for i in rows]) for m in (parent, candidate)
    )
    whole = evaluate(before, candidate, config, {})
    alone_result = evaluate(parent_alone, candidate_alone, GateConfig(probe_words=50), {})
    [check] = [c for c in whole["checks"] if c["name"] == "neighbourhood overlap"]
    [same] = [c for c in alone_result["checks"] if c["name"] == "neighbourhood overlap"]
    assert 0 < check["candidate"] < 1 and check["candidate"] == same["candidate"]
    assert check["chance"] == same["chance"] == round(10 / 299, 6)
    assert whole["changed"] == alone_result["changed"]
    # the rare tail is not searched: scrambling it alone changes nothing the gate measures; the head fails
    tail = np.setdiff1d(np.arange(900), head)
    shuffled = parent.vectors.copy()
    shuffled[tail] = rng.permutation(shuffled[tail])
    assert neighbourhoods(before, vectors(words, shuffled, counts), config)[0] == 1.0
    shuffled = parent.vectors.copy()
    shuffled[rows] = rng.permutation(shuffled[rows])
    assert evaluate(before, vectors(words, shuffled, counts), config, {})["passed"] is False
    # a vocabulary no larger than search_words is searched whole, as before
    assert baseline(parent, GateConfig(search_words=900), {}).pool is None


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


def unit_rows(n: int, seed: int) -> np.ndarray:
    """Unit vectors whose every cosine is exact in float32 (entries 0 or ±0.5, four of them), drawn from 1,120
    distinct vectors: ``n`` rows hold many exact duplicates, so similarities tie exactly."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, 8), dtype=np.float32)
    for row in rows:
        row[rng.choice(8, size=4, replace=False)] = rng.choice([-0.5, 0.5], size=4)
    return rows


@pytest.mark.parametrize("chunk", [7, 64, 1000, None])
def test_the_search_by_chunks_ranks_exactly_as_a_stable_sort_of_all_similarities(chunk: int | None) -> None:
    # after its first chunk a word takes only what beats its k-th best: exact ties across chunks stay with
    # the lower row, as one stable sort of every similarity ranks them
    matrix = unit_rows(3000, seed=5)
    kv = vectors([f"w{i}" for i in range(3000)], matrix)
    queries = [0, 5, 999, 1000, 2999]
    sims = matrix[queries].astype(np.float64) @ matrix.T.astype(np.float64)
    sims[np.arange(len(queries)), queries] = -np.inf
    expected = [[f"w{j}" for j in row] for row in np.argsort(-sims, axis=1, kind="stable")[:, :12]]
    assert nearest(kv, [f"w{q}" for q in queries], 12, chunk=chunk) == expected
    pool = np.sort(np.random.default_rng(1).choice(3000, size=1700, replace=False))  # a pruned vocabulary
    outside = np.setdiff1d(np.arange(3000), pool)
    sims[:, outside] = -np.inf
    expected = [[f"w{j}" for j in row] for row in np.argsort(-sims, axis=1, kind="stable")[:, :12]]
    assert nearest(kv, [f"w{q}" for q in queries], 12, among=pool, chunk=chunk) == expected


def test_the_overlap_floor_follows_the_lineage() -> None:
    config = GateConfig()
    # no history: what chance reaches, sigmas of its spread above 0
    first = overlap_floor([], noise=0.01, chance_sd=0.002, config=config)
    assert (first.value, first.bound, first.versions) == (0.008, "chance", 0)
    # a young lineage: half its median, scaled by how much of its history it has
    young = overlap_floor([0.06, 0.05, 0.07, 0.04], noise=0.004, chance_sd=0.0001, config=config)
    assert (young.value, young.bound, young.median) == (round(0.5 * 0.055 * 4 / 10, 4), "young lineage", 0.055)
    # an established, steady lineage: at most half its median; a candidate at 0.045 passes where 0.1 failed
    steady = [0.065, 0.06, 0.07, 0.062, 0.068, 0.064, 0.066, 0.061, 0.069, 0.063, 0.067]
    band = overlap_floor(steady, noise=0.004, chance_sd=0.0001, config=config)
    assert (band.value, band.bound, band.versions) == (0.0325, "lineage band", 11)
    assert band.value < 0.045
    # a volatile lineage: the band widens to sigmas robust standard deviations (1.4826 x MAD 0.01) of its history
    volatile = [0.10, 0.12, 0.08, 0.11, 0.09, 0.10, 0.13, 0.07, 0.10, 0.11]
    wide = overlap_floor(volatile, noise=0.004, chance_sd=0.0001, config=config)
    assert (wide.value, wide.bound, wide.spread) == (round(0.10 - 4 * 1.4826 * 0.01, 4), "lineage band", 0.0148)
    # this run's noise widens a band narrower than it
    noisy = overlap_floor([0.04] * 10, noise=0.009, chance_sd=0.0001, config=config)
    assert noisy.value == round(0.04 - 4 * 0.009, 4) and noisy.spread == 0.009
    # --gate-min-overlap is a floor on top
    forced = overlap_floor(steady, noise=0.004, chance_sd=0.0001, config=GateConfig(min_overlap=0.1))
    assert (forced.value, forced.bound) == (0.1, "--gate-min-overlap")


def test_the_history_travels_in_the_manifests() -> None:
    def manifest(*checks: dict[str, object]) -> dict[str, object]:
        return {"evaluation": {"passed": True, "reasons": [], "checks": list(checks)}}

    assert history_of(None, 10) == [] and history_of(manifest(), 10) == []  # a first model, an import
    # a manifest written before the band: its overlap alone
    assert history_of(manifest({"name": "neighbourhood overlap", "candidate": 0.3, "threshold": 0.1}), 10) == [0.3]
    parent = manifest({"name": "neighbourhood overlap", "candidate": 0.25, "history": [0.1 * i for i in range(1, 11)]})
    assert history_of(parent, 10) == [pytest.approx(0.1 * i) for i in range(2, 11)] + [0.25]
    assert history_of(parent, 3) == [pytest.approx(0.9), pytest.approx(1.0), 0.25]
    # a version that reused its parent's files, and one whose overlap could not be measured, pass it on
    assert history_of({"evaluation": carried(parent)}, 10) == history_of(parent, 10)
    skipped = manifest({"name": "neighbourhood overlap", "candidate": None, "history": [0.2, 0.3]})
    assert history_of(skipped, 10) == [0.2, 0.3]
    assert carried(manifest())["checks"] == []


def test_norm_and_collapse_checks_hold_the_band() -> None:
    config = GateConfig()
    assert [norm_check(r, 100, config)["passed"] for r in (0.0, 0.09, 0.1, 1.9, 10.0, 10.1)] == [0, 0, 1, 1, 1, 0]
    assert "learning rate far too high" in norm_check(120.0, 100, config)["why"]
    assert "reset or zeroed" in norm_check(0.01, 100, config)["why"]
    assert norm_check(None, 0, config)["passed"]
    # spread 1 - cosine: 0.5 -> 0.06 keeps 12% of it, 0.5 -> 0.04 keeps 8%
    assert collapse_check(0.5, 0.94, 200, config)["passed"]
    failed = collapse_check(0.5, 0.96, 200, config)
    assert not failed["passed"] and failed["threshold"] == 0.95 and "collapsed" in failed["why"]
    assert collapse_check(1.0, 1.0, 200, config)["passed"]  # the parent already pointed one way
    assert collapse_check(None, None, 1, config)["passed"]
