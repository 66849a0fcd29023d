"""An imported model grows like one the job trained: imported, then refreshed through the job on a real local
Ray cluster, with real gensim."""

from __future__ import annotations

import collections
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import gensim
import numpy as np
import pytest
from gensim.models import FastText, Word2Vec

from jobs.config import from_args
from jobs.lineage import ledger
from jobs.refresh import run
from jobs.storage import open_store
from jobs.storage.publish import fetch_verified, model_files, read_manifest
from jobs.training import model as gmodel
from jobs.versions import main as versions_main
from tests.support.corpora import cluster_words, clustered
from tests.support.files import write_parquet
from tests.support.flags import fast

GENSIM_DATA = Path(gensim.__file__).parent / "test" / "test_data"
FAST = fast(vector_size=None, epochs=3, min_count=None, max_in_flight=3)


def refresh(data: Path, store: Path, *extra: str) -> Any:
    return run(from_args(["--input", str(data), "--store", str(store), *FAST, *extra]))


def load(store: Path, version: str) -> tuple[Word2Vec, dict[str, Any]]:
    s = open_store(str(store))
    manifest = read_manifest(s, version)
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_verified(s, version, Path(tmp), model_files(manifest))
        return gmodel.load(folder / gmodel.MODEL_DIR), manifest


def counts(docs: list[str]) -> collections.Counter[str]:
    return collections.Counter(w for doc in docs for w in doc.split())


def own_vectors(model: Word2Vec) -> Any:
    """The per-word trained array: ``vectors`` for Word2Vec, ``vectors_vocab`` for FastText (whose ``vectors``
    also sum n-grams shared with other words)."""
    return model.wv.vectors_vocab if isinstance(model, FastText) else model.wv.vectors


ARCHITECTURES = {
    "cbow": lambda docs: Word2Vec(docs, vector_size=24, min_count=1, epochs=5, workers=1, seed=1),
    "skip-gram": lambda docs: Word2Vec(docs, vector_size=24, min_count=1, sg=1, epochs=5, workers=1, seed=1),
    "fasttext": lambda docs: FastText(docs, vector_size=24, min_count=1, epochs=5, bucket=5000, workers=1, seed=1),
}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_an_imported_model_is_refreshed_twice(architecture: str, tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store"
    history = clustered(300, seed=1)  # what the model was trained on, before the job existed
    write_parquet(data / "dt=2026-10-01" / "part-0.parquet", history)
    original = ARCHITECTURES[architecture]([d.split() for d in history])
    original.save(str(tmp_path / "pretrained.model"))
    argv = ["--mark-consumed", str(data), "--consumed-before", "2026-11-01"]
    assert (
        versions_main(["import", str(tmp_path / "pretrained.model"), "--store", str(store), "--kind", "gensim", *argv])
        == 0
    )
    imported, imported_manifest = load(store, "latest")
    before = {w: int(imported.wv.get_vecattr(w, "count")) for w in imported.wv.index_to_key}
    assert before == counts(history)

    # Day 2 speaks only of clusters 0 and 1, and brings new words like them.
    day2 = clustered(300, clusters=2, seed=2, extra={0: ["novelaa", "novelab"], 1: ["novelba"]})
    write_parquet(data / "dt=2026-11-02" / "part-0.parquet", day2)
    first = refresh(data, store, "--epochs", "8")
    assert first.published and first.parent == imported_manifest["version"] and first.partitions == 1

    model, manifest = load(store, "latest")
    assert manifest["parent"] == imported_manifest["version"]
    assert manifest["evaluation"]["passed"] and manifest["evaluation"]["checks"]  # gated against the import
    assert "## Quality gate: passed" in (store / "versions" / first.version / "report.md").read_text()
    assert [Path(p["uri"]).parent.name for p in manifest["partitions"]] == ["dt=2026-11-02"]
    assert set(manifest["new_words_sample"]) == {"novelaa", "novelab", "novelba"}
    seen = counts(day2)
    for word, count in before.items():
        assert model.wv.get_vecattr(word, "count") == count + seen[word], word
    old, new = own_vectors(imported), own_vectors(model)
    untouched = cluster_words(2) + cluster_words(3)  # absent from day 2: exactly as imported
    for word in untouched:
        np.testing.assert_array_equal(new[model.wv.key_to_index[word]], old[imported.wv.key_to_index[word]])
    for word in cluster_words(0) + cluster_words(1):  # in day 2: trained further
        assert not np.array_equal(new[model.wv.key_to_index[word]], old[imported.wv.key_to_index[word]]), word
    for word in ("novelaa", "novelab"):
        mates = set(cluster_words(0)) | {w for w in model.wv.key_to_index if w.startswith("kaq")}
        near = [w for w, _ in model.wv.most_similar(word, topn=5) if not w.startswith("novel")]
        assert sum(w in mates for w in near) >= len(near) - 1, (word, near)

    day3 = clustered(200, clusters=2, seed=3, extra={1: ["novelbb"]})
    write_parquet(data / "dt=2026-11-03" / "part-0.parquet", day3)
    second = refresh(data, store)
    assert second.parent == first.version and second.partitions == 1

    model, manifest = load(store, "latest")
    assert open_store(str(store)).read_pointer().version == second.version  # type: ignore[union-attr]
    for word, count in before.items():
        assert model.wv.get_vecattr(word, "count") == count + seen[word] + counts(day3)[word], word
    assert "novelbb" in model.wv.key_to_index
    rows = ledger.read(open_store(str(store)), second.version).table.to_pylist()
    assert sorted((Path(r["key"]).parent.name, r["version"]) for r in rows) == [
        ("dt=2026-10-01", imported_manifest["version"]),
        ("dt=2026-11-02", first.version),
        ("dt=2026-11-03", second.version),
    ]
    lineage = [second.version, first.version, imported_manifest["version"]]
    parents = [read_manifest(open_store(str(store)), v)["parent"] for v in lineage]
    assert parents == [first.version, imported_manifest["version"], None]


# One refresh of each kind of shipped model gensim 4 still reads: gensim 3.x, the oldest it upgrades, one trained
# with both hierarchical softmax and negative sampling, Facebook fastText CBOW and skip-gram (old header).
SHIPPED = [
    "word2vec_old",
    "old_w2v_models/w2v_0.13.4.mdl",
    "model-from-gensim-3.8.0.w2v",
    "toy-model.bin",
    "lee_fasttext.bin",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_gensim_s_shipped_models_are_imported_and_refreshed(name: str, tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store"
    kind = "auto" if name.endswith(".bin") else "gensim"  # a gensim save() is unpickled only when asked
    assert versions_main(["import", str(GENSIM_DATA / name), "--store", str(store), "--kind", kind]) == 0
    imported, manifest = load(store, "latest")
    words = [w for w in imported.wv.index_to_key if re.fullmatch(r"[a-z]{2,40}", w)][:50]
    rng = random.Random(5)
    docs = [" ".join(rng.choice([*words, "shippedaa", "shippedab"]) for _ in range(10)) for _ in range(200)]
    write_parquet(data / "dt=1" / "part-0.parquet", docs)

    summary = refresh(data, store)

    model, after = load(store, "latest")
    assert summary.published and after["parent"] == manifest["version"]
    assert {"shippedaa", "shippedab"} <= set(model.wv.key_to_index)
    seen = counts(docs)
    for word in words:
        assert model.wv.get_vecattr(word, "count") == imported.wv.get_vecattr(word, "count") + seen[word]
    assert model.negative > 0 and not model.hs
