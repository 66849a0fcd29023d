"""The vocabulary that remembers: real gensim models, updated from word counts."""

from __future__ import annotations

import numpy as np

from jobs.config import TrainingConfig
from jobs.lineage.counts import below_min_count
from jobs.training import model as gmodel
from jobs.training import vocabulary

CONFIG = TrainingConfig(min_count=5, vector_size=8, workers=1, sample=1e-2)


def first_model() -> tuple[object, dict[str, int]]:
    model = gmodel.create(CONFIG)
    batch = {"common": 500, "usual": 80, "rare": 3, "once": 1}
    change = gmodel.grow_vocabulary(model, batch, sentences=10, pending={})
    assert change.new_words == ["common", "usual"]
    return model, below_min_count(model, batch, {}, cap=100)


def test_a_word_under_min_count_in_each_run_enters_once_its_total_reaches_it() -> None:
    model, pending = first_model()
    assert pending == {"rare": 3, "once": 1}
    batch = {"common": 400, "rare": 3, "fresh": 2}
    change = gmodel.grow_vocabulary(model, batch, sentences=10, pending=pending)
    assert change.new_words == ["rare"]
    assert model.wv.get_vecattr("rare", "count") == 6
    assert model.wv.get_vecattr("common", "count") == 900
    assert model.wv.get_vecattr("usual", "count") == 80  # absent this run, kept
    assert below_min_count(model, batch, pending, cap=100) == {"once": 1, "fresh": 2}
    # the update's own rows (-1: still outside) serve the steps after it as the lookups would
    index = model.wv.key_to_index
    assert change.rows is not None and change.rows.tolist() == [index["common"], index["rare"], -1]
    assert below_min_count(model, batch, pending, cap=100, rows=change.rows) == {"once": 1, "fresh": 2}
    assert vocabulary.spooled_rows(model.wv, batch, change.rows, ["usual", "nowhere"]) == {
        "common": index["common"],
        "rare": index["rare"],
        "usual": index["usual"],
    }


def test_gensim_policy_forgets_words_under_min_count() -> None:
    model, _ = first_model()
    change = gmodel.grow_vocabulary(model, {"common": 400, "rare": 3}, sentences=10, pending=None)
    assert change.new_words == []
    assert "rare" not in model.wv.key_to_index


def test_downsampling_uses_cumulative_counts() -> None:
    model, pending = first_model()
    gmodel.grow_vocabulary(model, {"usual": 4, "rare": 3}, sentences=2, pending=pending)
    counts = np.array([model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key], dtype=np.float64)
    threshold = CONFIG.sample * counts.sum()
    expected = np.minimum((np.sqrt(counts / threshold) + 1) * (threshold / counts), 1.0) * (2**32 - 1)
    actual = np.array([model.wv.get_vecattr(w, "sample_int") for w in model.wv.index_to_key], dtype=np.float64)
    np.testing.assert_allclose(actual, expected, rtol=1e-6)
    # gensim alone would judge "usual" (4 this run, 84 in total) as rare and never down-sample it
    assert model.wv.get_vecattr("common", "sample_int") < model.wv.get_vecattr("usual", "sample_int")


def test_the_remembered_words_are_capped_keeping_the_most_frequent() -> None:
    model, _ = first_model()
    pending = below_min_count(model, {"a": 1, "b": 4, "c": 2, "d": 4, "common": 1}, {"e": 3}, cap=3)
    assert pending == {"b": 4, "d": 4, "e": 3}
