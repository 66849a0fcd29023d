"""Exports users join on or continue from: Parquet rows round-trip through pyarrow; the gensim export is a
trainable model that plain gensim loads and trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gensim.models import FastText, Word2Vec

from jobs.vectors import load_vectors
from jobs.versions import main as versions_main
from tests.support.corpora import clustered


@pytest.mark.parametrize("cls", [Word2Vec, FastText])
def test_parquet_and_trainable_gensim_exports(cls: type[Word2Vec], tmp_path: Path) -> None:
    sentences = [d.split() for d in clustered(150, seed=4)]
    options = {"bucket": 3_000, "min_n": 3, "max_n": 4} if cls is FastText else {}
    original = cls(sentences, vector_size=10, min_count=2, workers=1, seed=1, epochs=2, **options)
    original.save(str(tmp_path / "pretrained.model"))
    store = str(tmp_path / "store")
    assert versions_main(["import", str(tmp_path / "pretrained.model"), "--store", store, "--kind", "gensim"]) == 0
    stored, _ = load_vectors(store, cache_dir=tmp_path / "cache")

    parquet = tmp_path / "vectors.parquet"
    assert versions_main(["export", "latest", "--store", store, "--output", str(parquet), "--format", "parquet"]) == 0
    table = pq.read_table(parquet)
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 10)
    assert table.schema.field("count").type == pa.int64() and table.num_rows == len(original.wv)
    assert table.column("word").to_pylist() == original.wv.index_to_key
    assert table.column("count").to_pylist() == [original.wv.get_vecattr(w, "count") for w in original.wv.index_to_key]
    flat = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, 10)
    assert np.array_equal(flat, stored.vectors)

    out = tmp_path / "trainable.model"
    assert versions_main(["export", "latest", "--store", store, "--output", str(out), "--format", "gensim"]) == 0
    again = cls.load(str(out))  # plain gensim
    assert again.wv.index_to_key == original.wv.index_to_key
    assert np.array_equal(again.syn1neg, original.syn1neg)
    before = again.wv.vectors.copy()
    more = [d.split() for d in clustered(60, seed=5)]
    again.build_vocab(more, update=True)
    again.train(more, total_examples=len(more), epochs=1)
    assert not np.array_equal(again.wv.vectors[: len(before)], before)  # it trained
