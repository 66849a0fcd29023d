"""The store's model format: equal to gensim's own save()/load() round trip, and never unpickling anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gensim.models import FastText, Word2Vec
from gensim.models.fasttext import ft_ngram_hashes

from jobs.config import GateConfig
from jobs.errors import IntegrityError, TrainingError
from jobs.format import trainable
from jobs.format.ngrams import ngram_buckets
from jobs.training import serialize
from jobs.training.evaluate import baseline
from tests.support import REPO
from tests.support.forgery import planted_pickle
from tests.support.models import MORE, SENTENCES, assert_same


def trained(cls: type[Word2Vec], sg: int) -> Word2Vec:
    extra: dict[str, Any] = {"bucket": 3000, "min_n": 2, "max_n": 5} if cls is FastText else {}
    return cls(SENTENCES, vector_size=12, min_count=2, sg=sg, workers=1, seed=7, epochs=2, **extra)


def continue_training(model: Word2Vec) -> None:
    """An update with known words only (arrays changed in place), then one that adds words (arrays grow)."""
    for corpus in (SENTENCES[:50], MORE):
        model.build_vocab(corpus, update=True)
        model.train(corpus, total_examples=len(corpus), epochs=2)


@pytest.mark.parametrize("cls", [Word2Vec, FastText], ids=["word2vec", "fasttext"])
@pytest.mark.parametrize("sg", [0, 1], ids=["cbow", "skipgram"])
def test_the_round_trip_equals_gensims_and_so_does_further_training(
    cls: type[Word2Vec], sg: int, tmp_path: Path
) -> None:
    model = trained(cls, sg)
    serialize.save(model, tmp_path / "ours")
    model.save(str(tmp_path / "gensim.model"))
    ours, theirs = serialize.load(tmp_path / "ours"), cls.load(str(tmp_path / "gensim.model"))

    assert type(ours) is cls and type(ours.wv) is type(theirs.wv)
    assert_same(ours, theirs, "model")
    assert_same(ours.wv, theirs.wv, "wv")
    assert ours.random.get_state()[1].tolist() == theirs.random.get_state()[1].tolist()
    assert ours.wv.index_to_key == model.wv.index_to_key and len(ours.wv) > 40

    before = ours.wv.vectors.copy()
    continue_training(ours)
    continue_training(theirs)
    assert "novel" in ours.wv.key_to_index and len(ours.wv) == len(theirs.wv) > len(before)
    assert not np.array_equal(ours.wv.vectors[: len(before)], before)  # it really trained
    for name in ("vectors", *(("vectors_vocab", "vectors_ngrams") if cls is FastText else ())):
        assert np.array_equal(getattr(ours.wv, name), getattr(theirs.wv, name)), name
    assert np.array_equal(ours.syn1neg, theirs.syn1neg)


def test_the_gate_measures_the_files_as_read_as_it_measures_gensims_vectors(tmp_path: Path) -> None:
    # the trainer measures its parent's side of the gate before gensim is imported, on the files as read
    serialize.save(trained(FastText, 1), tmp_path / "model")
    read = trainable.read(tmp_path / "model", spare_rows=None, mapped=True)
    config = GateConfig(probe_words=20, search_words=30, topn=5)
    keyed = read.keyed()
    light, full = baseline(keyed, config, None), baseline(serialize.build(read).wv, config, {})
    assert light.probes == full.probes and len(light.probes) == 20
    assert light.neighbours == full.neighbours and light.pool is not None and len(light.pool) == 30
    assert light.pool.tolist() == full.pool.tolist() and light.words == full.words
    assert np.array_equal(light.frequent_vectors, full.frequent_vectors)
    assert keyed.vectors is read.arrays["vectors"]  # nothing copied


@pytest.mark.parametrize("cls", [Word2Vec, FastText], ids=["word2vec", "fasttext"])
def test_readers_get_memory_mapped_keyed_vectors_that_answer_like_gensims(cls: type[Word2Vec], tmp_path: Path) -> None:
    model = trained(cls, 0)
    serialize.save(model, tmp_path)
    wv = serialize.load_keyed_vectors(tmp_path)
    assert type(wv) is type(model.wv)
    assert isinstance(wv.vectors, np.memmap) and not wv.vectors.flags.writeable
    assert wv.index_to_key == model.wv.index_to_key
    assert np.array_equal(wv.expandos["count"], model.wv.expandos["count"])
    probe = model.wv.index_to_key[5]
    assert wv.most_similar(probe, topn=5) == model.wv.most_similar(probe, topn=5)
    if cls is FastText:
        assert np.array_equal(wv.get_vector("unseenword"), model.wv.get_vector("unseenword"))


WORDS = ["hello", "wörld", "日本語", "a", "ab", "emoji😀x", "éèê", "naïve", "x" * 40, "ßß", "ж"]


@pytest.mark.parametrize(
    ("min_n", "max_n", "bucket"), [(3, 6, 2_000_000), (1, 3, 1000), (2, 5, 7), (4, 4, 10), (1, 1, 5)]
)
def test_ngram_buckets_equal_gensims_hashes(min_n: int, max_n: int, bucket: int) -> None:
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyzäöüßéñ日本語😀ж")
    words = WORDS + ["".join(rng.choice(alphabet, rng.integers(1, 12))) for _ in range(500)]
    got = ngram_buckets(words, min_n, max_n, bucket)
    expected = [np.array(ft_ngram_hashes(w, min_n, max_n, bucket), dtype=np.uint32) for w in words]
    in_blocks = ngram_buckets(words, min_n, max_n, bucket, block=37)  # blocks that end mid-list
    assert [b.tolist() for b in in_blocks] == [b.tolist() for b in got]
    assert len(got) == len(expected)
    for word, ours, theirs in zip(words, got, expected, strict=True):
        assert ours.dtype == np.uint32 and np.array_equal(ours, theirs), word
    assert sum(map(len, got)) > len(words)


@pytest.fixture(scope="module")
def saved_fasttext(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fasttext")
    serialize.save(trained(FastText, 0), folder)
    return folder


def model_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


ARRAYS = "vectors syn1neg sample_int cum_table vectors_lockf".split()
FASTTEXT_ARRAYS = "vectors_vocab vectors_ngrams vectors_vocab_lockf vectors_ngrams_lockf".split()
FILES = [serialize.PARAMS, serialize.VOCAB, *(f"{n}.npy" for n in ARRAYS + FASTTEXT_ARRAYS)]
ONLY_TRAINING = {f"{n}.npy" for n in ("syn1neg", "cum_table", "vectors_lockf", *FASTTEXT_ARRAYS[2:])}


def test_the_folder_holds_only_data(saved_fasttext: Path) -> None:
    assert model_files(saved_fasttext) == sorted(FILES)
    for path in saved_fasttext.glob("*.npy"):
        assert np.load(path, allow_pickle=False).dtype.kind in "fu"


def copy(folder: Path, target: Path) -> Path:
    target.mkdir()
    for path in folder.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("victim", FILES)
@pytest.mark.parametrize("loader", [serialize.load, serialize.load_keyed_vectors], ids=["load", "keyed_vectors"])
def test_a_planted_pickle_is_refused_and_never_runs(
    saved_fasttext: Path, tmp_path: Path, victim: str, loader: Callable[[Path], Any]
) -> None:
    folder = copy(saved_fasttext, tmp_path / "model")
    canary = tmp_path / "pwned"
    (folder / victim).write_bytes(planted_pickle(canary))
    if loader is serialize.load_keyed_vectors and victim in ONLY_TRAINING:
        loader(folder)  # readers never open the output layer or the training tables
    else:
        with pytest.raises(IntegrityError, match=victim.replace(".", r"\.")):
            loader(folder)
    assert not canary.exists()


def rewrite_params(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    params = json.loads((folder / serialize.PARAMS).read_text())
    change(params)
    (folder / serialize.PARAMS).write_text(json.dumps(params))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-8])


def repeat_a_word(path: Path) -> None:
    """The vocabulary with as many rows as the model, its second word replaced by its first."""
    table = pq.read_table(path)
    words = table.column("word").to_pylist()
    words[1] = words[0]
    pq.write_table(table.set_column(0, "word", pa.array(words)), path)


def npz_as(path: Path) -> None:
    np.savez(path.with_suffix(".npz"), np.zeros(3))
    path.with_suffix(".npz").replace(path)


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (lambda f: np.save(f / "vectors.npy", np.zeros((3, 12), np.float32)), r"vectors\.npy: float32\[3, 12\]"),
        (lambda f: np.save(f / "syn1neg.npy", np.zeros((1, 1), np.float64)), r"syn1neg\.npy: float64"),
        (lambda f: np.save(f / "cum_table.npy", np.zeros(5, np.uint32)), r"cum_table\.npy"),
        (
            lambda f: np.save(f / "vectors_ngrams.npy", np.asfortranarray(np.load(f / "vectors_ngrams.npy"))),
            r"C order",
        ),
        (lambda f: truncate(f / "syn1neg.npy"), r"syn1neg\.npy is truncated"),
        (lambda f: npz_as(f / "vectors.npy"), r"vectors\.npy is not a (single|plain) \.npy array"),
        (lambda f: np.save(f / "vectors.npy", np.array([{"a": 1}], dtype=object)), r"vectors\.npy: object"),
        (lambda f: rewrite_params(f, lambda p: p["keyed_vectors"].update(bucket=10)), r"vectors_ngrams\.npy"),
        (lambda f: rewrite_params(f, lambda p: p["model"].update(layer1_size=24)), r"inconsistent architecture"),
        (lambda f: rewrite_params(f, lambda p: p["model"].update(window=[1])), r"not a JSON scalar"),
        (lambda f: rewrite_params(f, lambda p: p["model"].update(extra=1)), r"must hold exactly"),
        (lambda f: rewrite_params(f, lambda p: p.update(kind="doc2vec")), r"unknown model kind"),
        (lambda f: rewrite_params(f, lambda p: p["random"].update(key=[1, 2])), r"invalid random state"),
        (lambda f: repeat_a_word(f / "vocab.parquet"), "repeats"),
        (lambda f: (f / "vocab.parquet").write_bytes(b"PAR1 not really"), r"vocab\.parquet is not a vocabulary"),
        (lambda f: (f / "params.json").unlink(), r"params\.json is missing"),
    ],
)
def test_malformed_files_are_refused_naming_the_file(
    saved_fasttext: Path, tmp_path: Path, forge: Callable[[Path], Any], message: str
) -> None:
    folder = copy(saved_fasttext, tmp_path / "model")
    forge(folder)
    with pytest.raises(IntegrityError, match=message):
        serialize.load(folder)


def test_the_documented_plain_gensim_lines_read_a_version(saved_fasttext: Path) -> None:
    readme = (REPO / "docs" / "store-format.md").read_text()
    block = next(b for b in readme.split("```python")[1:] if "with gensim and numpy alone" in b.split("```")[0])
    scope: dict[str, Any] = {"folder": saved_fasttext}
    exec(block.split("```")[0], scope)
    wv, ours = scope["wv"], serialize.load_keyed_vectors(saved_fasttext)
    assert wv.index_to_key == ours.index_to_key and np.array_equal(wv.vectors, ours.vectors)
    probe = ours.index_to_key[3]
    assert wv.most_similar(probe, topn=3) == ours.most_similar(probe, topn=3)


def test_hierarchical_softmax_is_refused_at_save(tmp_path: Path) -> None:
    model = Word2Vec(SENTENCES, vector_size=8, min_count=2, hs=1, negative=0, workers=1, epochs=1)
    with pytest.raises(TrainingError, match="hierarchical softmax"):
        serialize.save(model, tmp_path)


def test_an_attribute_the_format_does_not_know_is_refused_not_dropped(tmp_path: Path) -> None:
    model = trained(Word2Vec, 0)
    model.something_new = 3
    with pytest.raises(TrainingError, match="something_new"):
        serialize.save(model, tmp_path)
