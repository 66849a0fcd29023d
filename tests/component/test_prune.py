"""Removing words from real gensim models: the result equals a model that never had them."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gensim.models import KeyedVectors
from gensim.models.fasttext import ft_ngram_hashes

from jobs.config import TrainingConfig
from jobs.errors import TrainingError
from jobs.training import model as gmodel
from jobs.training import prune, vocabulary
from jobs.training.spool import Layout, Spool
from tests.support.corpora import clustered


def config(kind: str) -> TrainingConfig:
    return TrainingConfig(model=kind, min_count=1, vector_size=12, workers=1, epochs=2, bucket=500, sample=1e-2)  # type: ignore[arg-type]


def spool(path: Path, docs: list[str]) -> tuple[Layout, dict[str, int]]:
    writer = Spool(path)
    writer.write(("\n".join(docs) + "\n").encode(), path.name)
    counts = collections.Counter(t for d in docs for t in d.split())
    return writer.close(), dict(counts)


def trained(kind: str, tmp: Path) -> Any:
    """A model trained on one day, then updated with a second day that brings new words."""
    cfg = config(kind)
    model = gmodel.create(cfg)
    for day, docs in enumerate([clustered(120, seed=1), clustered(80, seed=2, extra={1: ["newone", "newtwo"]})]):
        corpus, counts = spool(tmp / f"day{day}.txt", docs)
        gmodel.grow_vocabulary(model, counts, len(docs), pending={})
        gmodel.train(model, corpus, cfg, 1, update=day > 0)
    return model


@pytest.mark.parametrize("kind", ["word2vec", "fasttext"])
def test_a_pruned_model_equals_one_built_from_scratch_on_the_surviving_words(kind: str, tmp_path: Path) -> None:
    model = trained(kind, tmp_path)
    words = list(model.wv.index_to_key)
    assert words[-2:] == ["newone", "newtwo"]  # appended by the update
    before = {
        "vectors": {w: model.wv.vectors[i].copy() for i, w in enumerate(words)},
        "syn1neg": {w: model.syn1neg[i].copy() for i, w in enumerate(words)},
        "count": {w: int(model.wv.get_vecattr(w, "count")) for w in words},
    }
    if kind == "fasttext":
        before["vocab"] = {w: model.wv.vectors_vocab[i].copy() for i, w in enumerate(words)}
        ngrams = model.wv.vectors_ngrams.copy()
    keep = np.ones(len(words), dtype=bool)
    keep[::3] = False
    keep[-1] = False  # one of the new words

    removed = prune.remove(model, keep)

    survivors = [w for w, k in zip(words, keep, strict=True) if k]
    assert removed == [w for w, k in zip(words, keep, strict=True) if not k]
    assert model.wv.index_to_key == survivors and "newone" in survivors and "newtwo" in removed
    assert model.wv.key_to_index == {w: i for i, w in enumerate(survivors)}
    assert model.wv.vectors.shape == model.syn1neg.shape == (len(survivors), 12)
    for i, w in enumerate(survivors):
        assert np.array_equal(model.wv.vectors[i], before["vectors"][w])
        assert np.array_equal(model.syn1neg[i], before["syn1neg"][w])
    # a model built from scratch with the surviving counts has the same counts and sampling thresholds
    scratch = gmodel.create(config(kind))
    scratch.build_vocab_from_freq({w: before["count"][w] for w in survivors})
    for attr in ("count", "sample_int"):
        assert {w: model.wv.get_vecattr(w, attr) for w in survivors} == {
            w: scratch.wv.get_vecattr(w, attr) for w in survivors
        }
    table = model.cum_table.copy()
    model.make_cum_table()  # gensim's own, word by word
    assert np.array_equal(table, model.cum_table)
    if kind == "fasttext":
        assert np.array_equal(model.wv.vectors_ngrams, ngrams)  # the shared n-gram matrix stays
        for i, w in enumerate(survivors):
            assert np.array_equal(model.wv.vectors_vocab[i], before["vocab"][w])
            expected = ft_ngram_hashes(w, model.wv.min_n, model.wv.max_n, model.wv.bucket)
            assert model.wv.buckets_word[i].tolist() == list(expected)

    # most_similar answers exactly as plain gensim vectors holding only the survivors
    plain = KeyedVectors(12)
    plain.add_vectors(survivors, np.array([before["vectors"][w] for w in survivors]))
    for w in [*survivors[:5], "newone"]:
        assert model.wv.most_similar(w, topn=5) == plain.most_similar(w, topn=5)

    # it saves, loads and trains on as any model
    gmodel.save(model, tmp_path / "out")
    loaded = gmodel.load(tmp_path / "out" / gmodel.MODEL_DIR)
    assert loaded.wv.index_to_key == survivors
    assert np.array_equal(loaded.wv.vectors, model.wv.vectors)
    assert np.array_equal(loaded.cum_table, model.cum_table)
    assert np.array_equal(loaded.wv.expandos["sample_int"], model.wv.expandos["sample_int"])
    corpus, counts = spool(tmp_path / "day2.txt", clustered(60, seed=3, extra={1: ["newone"]}))
    gmodel.grow_vocabulary(loaded, counts, 60, pending={})
    gmodel.train(loaded, corpus, config(kind), 1, update=True)
    assert not np.array_equal(loaded.wv["newone"], before["vectors"]["newone"])
    assert len(loaded.wv.most_similar("newone", topn=3)) == 3


def test_cum_table_equals_gensims_on_many_counts() -> None:
    model = gmodel.create(TrainingConfig(min_count=1, vector_size=4, workers=1))
    rng = np.random.default_rng(0)
    model.build_vocab_from_freq({f"w{i}": int(c) for i, c in enumerate(rng.zipf(1.3, 5000) % 100_000 + 1)})
    assert np.array_equal(vocabulary.cum_table(model.wv.expandos["count"], model.ns_exponent), model.cum_table)


def test_pruning_refuses_a_mask_of_the_wrong_length(tmp_path: Path) -> None:
    model = trained("word2vec", tmp_path)
    with pytest.raises(TrainingError, match="covers 3 words"):
        prune.remove(model, np.ones(3, dtype=bool))
