"""Aligned coordinates: the rotation changes no similarity, undoes a planted rotation, rotates every matrix the
dot products use (FastText's composed vectors for unknown words too), and keeps the model trainable."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from gensim.models import FastText, Word2Vec

from jobs.training import align
from tests.support.corpora import clustered


def sentences(n: int, seed: int, extra: dict[int, list[str]] | None = None) -> list[list[str]]:
    return [d.split() for d in clustered(n, seed=seed, extra=extra)]


def cosines(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(1 - np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


@pytest.mark.parametrize("cls", [Word2Vec, FastText])
def test_a_planted_rotation_is_undone_and_no_similarity_changes(cls: type[Word2Vec]) -> None:
    options = {"bucket": 4_000, "min_n": 3, "max_n": 4} if cls is FastText else {}
    model = cls(sentences(200, 0), vector_size=12, min_count=1, workers=1, seed=3, epochs=3, **options)
    parent = model.wv.vectors.copy()
    day = sentences(200, 1, {0: ["novelword", "otherword"]})
    model.build_vocab(day, update=True)
    model.train(day, total_examples=len(day), epochs=3)
    known = len(parent)
    trained_distance = mean_distance(model.wv.vectors[:known], parent)
    q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(12, 12)))
    align.rotate(model, q.astype(np.float32))  # as if training had turned the whole space
    assert mean_distance(model.wv.vectors[:known], parent) > 0.3
    before = cosines(model.wv.vectors)
    unknown = model.wv["zzqqvvxx"].copy() if cls is FastText else None

    rotation = align.fit(parent, model.wv.vectors, np.arange(known))
    rotated = align.rotate(model, rotation.matrix)

    assert np.abs(cosines(model.wv.vectors) - before).max() <= 1e-5
    assert mean_distance(model.wv.vectors[:known], parent) == pytest.approx(trained_distance, abs=2e-3)
    assert rotation.residual_after < rotation.residual_before and rotation.words == known
    expected = ["wv.vectors", "syn1neg"] + (["wv.vectors_vocab", "wv.vectors_ngrams"] if cls is FastText else [])
    assert rotated == expected
    if cls is FastText:  # a vector composed from n-grams alone turns with the rest
        assert np.abs(model.wv["zzqqvvxx"] - unknown @ rotation.matrix).max() <= 1e-5


def test_training_after_an_aligned_update_equals_training_the_rotated_model() -> None:
    model = Word2Vec(sentences(200, 0), vector_size=12, min_count=1, workers=1, seed=3, epochs=3)
    parent = model.wv.vectors.copy()
    day1 = sentences(200, 1, {1: ["novelword"]})
    model.build_vocab(day1, update=True)
    model.train(day1, total_examples=len(day1), epochs=3)
    unaligned = copy.deepcopy(model)
    rotation = align.fit(parent, model.wv.vectors, np.arange(len(parent)))
    align.rotate(model, rotation.matrix)

    day2 = sentences(150, 2)
    for m in (model, unaligned):  # one thread and the same random state: the same updates
        m.build_vocab(day2, update=True)
        m.train(day2, total_examples=len(day2), epochs=2)

    expected = unaligned.wv.vectors @ rotation.matrix
    assert not np.allclose(model.wv.vectors, unaligned.wv.vectors, atol=1e-3)  # the rotation is not trivial
    assert np.abs(model.wv.vectors - expected).max() <= 1e-3 * np.abs(expected).max()
    assert np.abs(model.syn1neg - unaligned.syn1neg @ rotation.matrix).max() <= 1e-3 * np.abs(model.syn1neg).max()
