"""The numpy vocabulary update against gensim's own ``build_vocab_from_freq(update=True)``, on real models, and
the vectorized word2vec export against gensim's ``save_word2vec_format``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gensim.models import FastText, KeyedVectors, Word2Vec
from gensim.models.keyedvectors import prep_vectors

from jobs.format import word2vec as word2vec_format
from jobs.training import model as gmodel
from jobs.training import serialize, vocabulary

SENTENCES = [[f"w{(i * 7 + j * 3) % 60}x" for j in range(12)] + [f"new{i % 9}"] for i in range(80)]


def base(cls: type[Word2Vec], words: int, vector_size: int, **extra: Any) -> Word2Vec:
    rng = np.random.default_rng(0)
    model = cls(vector_size=vector_size, min_count=5, seed=3, sample=1e-2, workers=1, **extra)
    model.build_vocab_from_freq({f"w{i}x": int(c) for i, c in enumerate(rng.integers(5, 1000, words))})
    return model


def batch(known: int, new: int, tag: str = "new") -> dict[str, int]:
    """Known words above and below min_count, unknown words above and below it, in no particular order."""
    rng = np.random.default_rng(len(tag))
    counts = {
        f"w{i}x": int(c) for i, c in zip(rng.permutation(2 * known)[:known], rng.integers(1, 50, known), strict=True)
    }
    counts.update({f"{tag}{i}": int(c) for i, c in enumerate(rng.integers(1, 20, new))})
    return counts


def assert_same(ours: Word2Vec, theirs: Word2Vec) -> None:
    assert ours.wv.index_to_key == theirs.wv.index_to_key
    assert ours.wv.key_to_index == theirs.wv.key_to_index
    assert ours.wv.expandos.keys() == theirs.wv.expandos.keys()
    for name, array in theirs.wv.expandos.items():
        assert ours.wv.expandos[name].dtype == array.dtype, name
        np.testing.assert_array_equal(ours.wv.expandos[name], array, err_msg=name)
    np.testing.assert_array_equal(ours.cum_table, theirs.cum_table)
    np.testing.assert_array_equal(ours.wv.vectors, theirs.wv.vectors)
    np.testing.assert_array_equal(ours.syn1neg, theirs.syn1neg)
    assert ours.corpus_count == theirs.corpus_count
    if isinstance(theirs, FastText):
        np.testing.assert_array_equal(ours.wv.vectors_vocab, theirs.wv.vectors_vocab)
        np.testing.assert_array_equal(ours.wv.vectors_ngrams, theirs.wv.vectors_ngrams)
        assert len(ours.wv.buckets_word) == len(theirs.wv.buckets_word)
        for a, b in zip(ours.wv.buckets_word, theirs.wv.buckets_word, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


KINDS = [
    pytest.param(Word2Vec, {}, id="word2vec"),
    pytest.param(FastText, {"bucket": 5000}, id="fasttext"),
    pytest.param(FastText, {"bucket": 0}, id="fasttext-no-ngrams"),
]


@pytest.mark.parametrize(("cls", "extra"), KINDS)
@pytest.mark.parametrize(("words", "vector_size"), [(101, 7), (100, 8), (1500, 33)])
def test_two_updates_leave_the_same_arrays_as_gensims(
    cls: type[Word2Vec], extra: dict[str, Any], words: int, vector_size: int
) -> None:
    ours = base(cls, words, vector_size, **extra)
    theirs = copy.deepcopy(ours)
    for step, tag in enumerate(("new", "later")):
        counts = batch(words // 2, 40, tag)
        theirs.build_vocab_from_freq(counts, corpus_count=11 + step, update=True)
        change = vocabulary.grow(ours, counts, 11 + step)
        assert change.new_words == theirs.wv.index_to_key[change.before :]
        assert change.new_words and all(w.startswith(tag) for w in change.new_words)
        assert_same(ours, theirs)


@pytest.mark.parametrize(("cls", "extra"), KINDS[:2])
def test_trained_after_the_update_the_vectors_equal_gensims(cls: type[Word2Vec], extra: dict[str, Any]) -> None:
    ours = base(cls, 60, 16, **extra)
    theirs = copy.deepcopy(ours)
    counts: dict[str, int] = {}
    for sentence in SENTENCES:
        for word in sentence:
            counts[word] = counts.get(word, 0) + 1
    theirs.build_vocab_from_freq(counts, corpus_count=len(SENTENCES), update=True)
    vocabulary.grow(ours, counts, len(SENTENCES))
    for model in (ours, theirs):
        model.train(SENTENCES, total_examples=len(SENTENCES), epochs=2)
    assert_same(ours, theirs)
    untrained = base(cls, 60, 16, **extra)
    assert not np.array_equal(ours.wv.vectors[: len(untrained.wv)], untrained.wv.vectors)  # training moved them


def test_the_model_module_uses_it_with_gensims_policy() -> None:
    ours = base(Word2Vec, 200, 8)
    theirs = copy.deepcopy(ours)
    counts = batch(100, 30)
    change = gmodel.grow_vocabulary(ours, counts, sentences=5, pending=None)
    theirs.build_vocab_from_freq(counts, corpus_count=5, update=True)
    assert change.after == len(theirs.wv) > change.before == 200
    assert_same(ours, theirs)


def test_a_capped_final_vocabulary_raises_min_count_as_gensim_does() -> None:
    ours = base(Word2Vec, 50, 4)
    ours.max_final_vocab = 20
    theirs = copy.deepcopy(ours)
    counts = batch(30, 30)
    theirs.build_vocab_from_freq(counts, corpus_count=3, update=True)
    vocabulary.grow(ours, counts, 3)
    assert ours.effective_min_count == theirs.effective_min_count > 5
    assert_same(ours, theirs)


@pytest.mark.parametrize("exponent", [0.75, 0.5, 1.0, -0.5])
def test_cum_table_equals_gensims_for_large_and_small_counts(exponent: float) -> None:
    rng = np.random.default_rng(5)
    counts = np.concatenate([rng.integers(5, 10**9, 20_000), rng.integers(1, 100, 1_000)])
    model = Word2Vec(vector_size=4, min_count=1, ns_exponent=exponent)
    model.build_vocab_from_freq({f"w{i}": int(c) for i, c in enumerate(counts)})
    np.testing.assert_array_equal(vocabulary.cum_table(model.wv.expandos["count"], exponent), model.cum_table)


@pytest.mark.parametrize(("start", "stop", "size"), [(0, 5, 4), (10, 15, 7), (11, 20, 3), (1000, 1003, 100)])
def test_new_rows_are_the_rows_gensim_draws_for_the_whole_matrix(start: int, stop: int, size: int) -> None:
    whole = prep_vectors((stop, size), prior_vectors=np.zeros((start, size), dtype=np.float32), seed=3)
    np.testing.assert_array_equal(vocabulary.initial_rows(3, start, stop, size), whole[start:])


def test_composed_fasttext_vectors_equal_adjust_vectors() -> None:
    model = base(FastText, 3000, 20, bucket=20_000, min_n=2, max_n=5)
    model.wv.vectors_ngrams += np.random.default_rng(1).random(model.wv.vectors_ngrams.shape, dtype=np.float32)
    model.wv.adjust_vectors()
    np.testing.assert_array_equal(vocabulary.compose_vectors(model.wv), model.wv.vectors)
    rows = np.array([5, 0, 2999])
    np.testing.assert_array_equal(vocabulary.compose_vectors(model.wv, rows), model.wv.vectors[rows])


def test_training_fasttext_composes_the_same_vectors_without_gensims_loop() -> None:
    ours = base(FastText, 60, 16, bucket=5000)
    counts: dict[str, int] = {}
    for sentence in SENTENCES:
        for word in sentence:
            counts[word] = counts.get(word, 0) + 1
    vocabulary.grow(ours, counts, len(SENTENCES))
    theirs = copy.deepcopy(ours)
    theirs.train(SENTENCES, total_examples=len(SENTENCES), epochs=2)
    with vocabulary.composed_after(ours):
        ours.train(SENTENCES, total_examples=len(SENTENCES), epochs=2)
    assert "adjust_vectors" not in vars(ours.wv)  # nothing left behind for save() to meet
    assert_same(ours, theirs)


@pytest.mark.parametrize("words", [1, 7, 3000])
def test_the_binary_export_writes_gensims_bytes(tmp_path: Path, words: int) -> None:
    rng = np.random.default_rng(words)
    keys = [f"w{i}" + ("é" if i % 7 == 0 else "") + ("日本" if i % 11 == 0 else "") for i in range(words)]
    kv = KeyedVectors(13)
    kv.add_vectors(keys, rng.random((words, 13), dtype=np.float32))
    kv.expandos["count"] = rng.integers(1, 5, words)  # ties: gensim's stable order by descending count
    kv.save_word2vec_format(str(tmp_path / "gensim.bin"), binary=True)
    word2vec_format.write_binary(kv, tmp_path / "ours.bin")
    assert (tmp_path / "ours.bin").read_bytes() == (tmp_path / "gensim.bin").read_bytes()
    back = KeyedVectors.load_word2vec_format(str(tmp_path / "ours.bin"), binary=True)
    np.testing.assert_array_equal(back[keys], kv[keys])


@pytest.mark.parametrize(("cls", "extra"), KINDS[:2])
def test_a_model_loaded_from_the_store_format_grows_as_gensims_does(
    tmp_path: Path, cls: type[Word2Vec], extra: dict[str, Any]
) -> None:
    model = base(cls, 300, 9, **extra)
    serialize.save(model, tmp_path / "model")
    ours, theirs = serialize.load(tmp_path / "model"), copy.deepcopy(model)
    counts = batch(150, 40)
    theirs.build_vocab_from_freq(counts, corpus_count=7, update=True)
    vocabulary.grow(ours, counts, 7)
    assert_same(ours, theirs)


@pytest.mark.parametrize(("cls", "extra"), KINDS[:2])
def test_a_model_loaded_with_spare_rows_grows_in_place_and_as_gensims_does(
    tmp_path: Path, cls: type[Word2Vec], extra: dict[str, Any]
) -> None:
    model = base(cls, 300, 9, **extra)
    serialize.save(model, tmp_path / "model")
    counts = batch(150, 40)
    ours, theirs = serialize.load(tmp_path / "model", spare_rows=len(counts)), copy.deepcopy(model)
    matrices = {"syn1neg": ours.syn1neg, "vectors": ours.wv.vectors}
    if cls is FastText:
        matrices["vectors_vocab"] = ours.wv.vectors_vocab
    theirs.build_vocab_from_freq(counts, corpus_count=7, update=True)
    vocabulary.grow(ours, counts, 7)
    assert_same(ours, theirs)
    grown = {
        "syn1neg": ours.syn1neg,
        "vectors": ours.wv.vectors,
        "vectors_vocab": getattr(ours.wv, "vectors_vocab", None),
    }
    for name, before in matrices.items():
        after = grown[name]
        assert len(after) == len(theirs.wv) > 300 and after.ctypes.data == before.ctypes.data, (
            name
        )  # appended where it was
        assert np.shares_memory(before, after)
    # a second update with more words than the room left is copied, and still right
    more = batch(10, 400, tag="more")
    theirs.build_vocab_from_freq(more, corpus_count=3, update=True)
    vocabulary.grow(ours, more, 3)
    assert_same(ours, theirs)
    assert not np.shares_memory(matrices["vectors"], ours.wv.vectors)


def test_appended_copies_an_array_without_room() -> None:
    buffer = np.empty((6, 2), dtype=np.float32)
    buffer[:] = np.arange(12).reshape(6, 2)
    head = buffer[:3]
    grown = vocabulary.appended(head, np.full((2, 2), -1, dtype=np.float32))
    assert grown.base is buffer and grown.tolist() == [[0, 1], [2, 3], [4, 5], [-1, -1], [-1, -1]]
    middle = buffer[1:3]  # not the head of its buffer: the rows after it are not spare
    copied = vocabulary.appended(middle, np.zeros((1, 2), dtype=np.float32))
    assert not np.shares_memory(copied, buffer) and buffer[3].tolist() == [-1, -1]
    plain = np.ones((2, 2), dtype=np.float32)
    assert vocabulary.appended(plain, np.zeros((4, 2), dtype=np.float32)).shape == (6, 2)
