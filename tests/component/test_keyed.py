"""The reader's vectors (:class:`jobs.keyed.WordVectors`) against gensim's ``KeyedVectors`` on the same files:
the same neighbours and scores, lookups, counts and FastText's vectors for unknown words; and a reader that
imports neither gensim nor Ray, and names the extra it needs when asked for gensim's objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from gensim.models import FastText, KeyedVectors, Word2Vec
from gensim.models.fasttext import FastTextKeyedVectors

from jobs import keyed
from jobs.keyed import WordVectors
from jobs.training import serialize
from jobs.versions import main as versions_main
from tests.support import REPO
from tests.support.corpora import word

OOV = ["unseenword", "kax", "ñandú", "日本語テキスト", "a", "xy"]  # "a": too short for any 3-gram but <a>


def corpus(seed: int = 0) -> list[list[str]]:
    """601 sentences over 300 words, a few much more frequent than the rest (as in text)."""
    rng = np.random.default_rng(seed)
    words = [word("w", i) for i in range(300)]
    weights = 1 / np.arange(1, 301)
    picks = rng.choice(300, size=(600, 10), p=weights / weights.sum())
    return [[words[i] for i in row] for row in picks] + [words]  # every word at least once


def trained(kind: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Word2Vec]:
    """A trained model of ``kind``, saved in the store's format."""
    options = {"min_n": 3, "max_n": 5, "bucket": 5_000} if kind == "fasttext" else {}
    cls = FastText if kind == "fasttext" else Word2Vec
    done = cls(corpus(), vector_size=24, min_count=1, workers=1, seed=7, epochs=2, **options)
    folder = tmp_path_factory.mktemp(kind) / "model"
    serialize.save(done, folder)
    return folder, done


@pytest.fixture(scope="module")
def word2vec(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Word2Vec]:
    return trained("word2vec", tmp_path_factory)


@pytest.fixture(scope="module")
def fasttext(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Word2Vec]:
    return trained("fasttext", tmp_path_factory)


@pytest.fixture(params=["word2vec", "fasttext"])
def model(request: pytest.FixtureRequest) -> tuple[Path, Word2Vec]:
    return request.getfixturevalue(request.param)


def test_the_readers_answers_are_gensims(model: tuple[Path, Word2Vec], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, trained_model = model
    monkeypatch.setattr(keyed, "_BLOCK", 37)  # several blocks, the last one short
    ours, theirs = WordVectors.read(folder, mmap="r"), trained_model.wv
    assert isinstance(ours.vectors, np.memmap)
    assert len(ours) == len(theirs) == 300 and ours.index_to_key == theirs.index_to_key
    assert ours.key_to_index == theirs.key_to_index
    frequent, rare = theirs.index_to_key[0], theirs.index_to_key[-1]
    assert ours.get_vecattr(frequent, "count") == theirs.get_vecattr(frequent, "count") > 100
    assert ours.get_vecattr(rare, "count") == theirs.get_vecattr(rare, "count")
    assert frequent in ours and rare in ours and (("nope" in ours) is (ours.kind == "fasttext"))
    assert np.array_equal(ours[frequent], theirs[frequent])
    assert np.array_equal(ours[[frequent, rare, frequent]], theirs[[frequent, rare, frequent]])

    queries = [
        {"positive": frequent},
        {"positive": [rare], "topn": 25},
        {"positive": [frequent, theirs.index_to_key[5]], "negative": [theirs.index_to_key[9]], "topn": 12},
        {"positive": [theirs[rare], (frequent, 0.5)]},  # a vector and a weighted word
    ]
    for query in queries:
        expected = theirs.most_similar(**query)
        got = ours.most_similar(**query)
        assert [w for w, _ in got] == [w for w, _ in expected], query
        assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-5, rtol=0), query
    assert frequent not in [w for w, _ in ours.most_similar(frequent, topn=300)]  # the query word is left out
    assert np.allclose(ours.most_similar(rare, topn=None), theirs.most_similar(rare, topn=None), atol=1e-6)
    assert abs(ours.similarity(frequent, rare) - theirs.similarity(frequent, rare)) < 1e-6
    assert abs(ours.similarity(frequent, frequent) - 1) < 1e-6

    back = ours.to_gensim()
    assert type(back) is type(theirs) and back.most_similar(rare) == theirs.most_similar(rare)
    if ours.kind == "word2vec":
        with pytest.raises(KeyError, match="Key 'nope' not present"):
            ours["nope"]
        with pytest.raises(KeyError, match="Key 'nope' not present in vocabulary"):
            ours.most_similar(["nope"])
        assert isinstance(back, KeyedVectors) and not isinstance(back, FastTextKeyedVectors)


def test_fasttext_composes_unknown_words_as_gensim_does(fasttext: tuple[Path, Word2Vec]) -> None:
    folder, model = fasttext
    ours, theirs = WordVectors.read(folder, mmap=None), model.wv
    assert not isinstance(ours.vectors, np.memmap)
    for unknown in OOV:
        assert unknown in ours and not ours.has_index_for(unknown)
        assert np.allclose(ours[unknown], theirs[unknown], atol=1e-6, rtol=0), unknown
        assert np.abs(ours[unknown]).sum() > 0, unknown
        assert np.allclose(ours.get_vector(unknown, norm=True), theirs.get_vector(unknown, norm=True), atol=1e-6)
    got, expected = ours.most_similar("unseenword", topn=8), theirs.most_similar("unseenword", topn=8)
    assert [w for w, _ in got] == [w for w, _ in expected]
    assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)
    known = theirs.index_to_key[0]
    assert abs(ours.similarity("unseenword", known) - theirs.similarity("unseenword", known)) < 1e-6
    assert np.allclose(ours[["ñandú", theirs.index_to_key[3]]], theirs[["ñandú", theirs.index_to_key[3]]], atol=1e-6)


READER = """
import json, sys
import jobs.vectors, jobs.versions
heavy = {"ray", "gensim", "scipy", "cryptography", "boto3", "prometheus_client"}
heavy = sorted({m.split(".")[0] for m in sys.modules} & heavy)
sys.modules["gensim"] = None  # as if gensim were not installed: importing it raises ImportError
from jobs.errors import ConfigError
from jobs.keyed import WordVectors
vectors = WordVectors.read(__import__("pathlib").Path(sys.argv[1]))
try:
    vectors.to_gensim()
    refused = None
except ConfigError as exc:
    refused = str(exc)
codes = {fmt: jobs.versions.main(["export", "latest", "--store", sys.argv[2], "--output", sys.argv[3] + "." + fmt,
                                "--format", fmt, "--cache-dir", sys.argv[3] + ".cache"])
         for fmt in ("word2vec-text", "word2vec-binary", "parquet", "keyedvectors")}
print(json.dumps({"heavy": heavy, "refused": refused, "codes": codes, "words": len(vectors)}))
"""


def test_the_reader_imports_neither_gensim_nor_ray_and_exports_without_gensim(
    word2vec: tuple[Path, Word2Vec], tmp_path: Path
) -> None:
    folder, model = word2vec
    store = tmp_path / "store"
    model.save(str(tmp_path / "pretrained.model"))
    assert versions_main(["import", str(tmp_path / "pretrained.model"), "--store", str(store), "--kind", "gensim"]) == 0
    out = tmp_path / "vectors"
    done = subprocess.run(
        [sys.executable, "-c", READER, str(folder), str(store), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["heavy"] == [] and report["words"] == 300
    assert (
        "to_gensim() needs gensim" in report["refused"]
        and "pip install 'embedding-refresh[gensim]'" in report["refused"]
    )
    assert report["codes"] == {"word2vec-text": 0, "word2vec-binary": 0, "parquet": 0, "keyedvectors": 2}
    assert "export --format keyedvectors" not in done.stderr and "embedding-refresh[gensim]" in done.stderr
    # gensim's own bytes, and rows that read back
    model.wv.save_word2vec_format(str(tmp_path / "gensim.txt"))
    model.wv.save_word2vec_format(str(tmp_path / "gensim.bin"), binary=True)
    assert Path(f"{out}.word2vec-text").read_bytes() == (tmp_path / "gensim.txt").read_bytes()
    assert Path(f"{out}.word2vec-binary").read_bytes() == (tmp_path / "gensim.bin").read_bytes()
    assert pq.read_table(f"{out}.parquet").column("word").to_pylist() == model.wv.index_to_key
