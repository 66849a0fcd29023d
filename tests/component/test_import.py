"""Importing a model trained elsewhere: what is accepted, what is refused and why, and what the version holds.

Real gensim, real files, a local store; no Ray (the refreshes that follow an import are in
``test_import_refresh``).
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
from pathlib import Path

import gensim
import numpy as np
import pyarrow.parquet as pq
import pytest
from gensim.models import FastText, KeyedVectors, Word2Vec

from jobs.errors import ImportRefused
from jobs.storage import open_store
from jobs.storage.publish import read_manifest, sha256_file
from jobs.training import adopt, serialize
from jobs.vectors import load_vectors
from jobs.versions import main as versions_main
from tests.support.corpora import clustered
from tests.support.files import snapshot, write_parquet
from tests.support.forgery import planted_pickle

GENSIM_DATA = Path(gensim.__file__).parent / "test" / "test_data"
SENTENCES = [doc.split() for doc in clustered(200, seed=3)]

# gensim's own test models: imported (the kind the lineage trains), or refused (what the message says).
# docs/import.md's table lists the same files with the same reasons.
IMPORTED = {
    "word2vec_old": "word2vec",  # gensim 3.x Word2Vec, upgraded on load
    "word2vec_old_sep": "word2vec",  # the same with its arrays in separate .npy files
    "word2vec_3.3": "word2vec",
    **{f"old_w2v_models/w2v_{v}.mdl": "word2vec" for v in ("0.13.4", "1.0.0", "1.0.1", "2.0.0", "2.1.0", "2.2.0")},
    **{f"old_w2v_models/w2v_{v}.mdl": "word2vec" for v in ("2.3.0", "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0")},
    "model-from-gensim-3.8.0.w2v": "word2vec",  # hs=1 and negative=5: the hs layer is dropped
    "toy-model.bin": "fasttext",  # Facebook fastText, CBOW
    "lee_fasttext_new.bin": "fasttext",  # Facebook fastText, skip-gram, with the magic number
    "lee_fasttext.bin": "fasttext",  # the older .bin header without it
    "cp852_fasttext.bin": "fasttext",
}
REFUSED = {
    **{f"old_w2v_models/w2v_0.{v}.mdl": "older than 0.13.4" for v in ("12.0", "12.1", "12.2", "12.3", "12.4")},
    **{f"old_w2v_models/w2v_0.{v}.mdl": "older than 0.13.4" for v in ("13.0", "13.1", "13.2", "13.3")},
    "w2v-lee-v0.12.0": "older than 0.13.4",
    **{f"word2vec_pre_kv_{v}": "older than 0.13.4" for v in ("py2", "py3", "py3_4", "sep_py2", "sep_py3", "sep_py3_4")},
    **{n: "gensim 3 wrapper around Facebook fastText" for n in ("fasttext_old", "fasttext_old_sep", "ft_model_2.3.0")},
    "lee_fasttext": "gensim 3 wrapper around Facebook fastText",
    "ft_kv_3.6.0.model.gz": "nonstandard hashing",
    "compatible-hash-true.model": "vectors_ngrams has 85 rows for 100 buckets",
    "pang_lee_polarity_fasttext.bin": "supervised (classification) fastText model",
    "old_keyedvectors_320.dat": "vectors only",
    "word2vec_pre_kv_c": "vectors only",
    "lee_fasttext.vec": "vectors only",
    "euclidean_vectors.bin": "vectors only",
    "d2v-lee-v0.13.0": "cannot upgrade this model",
    "lda_3_0_1_model": "holds a LdaModel, not a Word2Vec or FastText model",
}


def import_(path: Path, store: Path, *extra: str) -> int:
    return versions_main(["import", str(path), "--store", str(store), *extra])


def kind_of(path: Path) -> str:
    """The --kind to import ``path`` with: ``gensim`` for a pickle (plain or gzipped), which import unpickles only
    when told to, else ``auto``."""
    with open(path, "rb") as handle:
        start = handle.read(2)
    return "gensim" if start[:1] == b"\x80" or start == b"\x1f\x8b" else "auto"


def refused(path: Path, store: Path, *extra: str, kind: str | None = None) -> str:
    """Run the import, expect a refusal that names the file, and an untouched store; return the message."""
    from jobs.config import ImportConfig
    from jobs.importer import run

    flags = {"adopt_vectors": "--adopt-vectors" in extra, "new_lineage": "--new-lineage" in extra}
    before = snapshot(store)
    with pytest.raises(ImportRefused) as info:
        run(ImportConfig(path=str(path), store=str(store), kind=kind or kind_of(path), **flags))
    assert str(path) in str(info.value)
    assert snapshot(store) == before
    return str(info.value)


def current(store: Path) -> dict:  # type: ignore[type-arg]
    return read_manifest(open_store(str(store)), "latest")


@pytest.mark.parametrize("name", sorted(IMPORTED))
def test_gensim_s_own_test_models_that_can_be_imported(name: str, tmp_path: Path) -> None:
    source = GENSIM_DATA / name
    assert import_(source, tmp_path / "store", "--kind", kind_of(source)) == 0
    manifest = current(tmp_path / "store")
    origin = manifest["imported_from"]
    assert manifest["parent"] is None and manifest["model"] == IMPORTED[name]
    assert origin["file"] == source.name and origin["sha256"] == sha256_file(source)
    assert origin["architecture"]["negative"] > 0
    if name.endswith(".bin"):
        from gensim.models.fasttext import load_facebook_model

        reference = load_facebook_model(str(source)).wv
    else:
        reference = Word2Vec.load(str(source)).wv
    vectors, version = load_vectors(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    assert version == manifest["version"] and vectors.index_to_key == reference.index_to_key
    np.testing.assert_array_equal(vectors.vectors, reference.vectors)
    if name == "model-from-gensim-3.8.0.w2v":
        assert any("hierarchical-softmax layer was dropped" in note for note in manifest["import_notes"])
    # What import hands to the save path is a model as gensim 4 makes it: the pickle-free format holds it too.
    model = adopt.read(source, kind_of(source)).model
    serialize.save(model, tmp_path / "npy")
    np.testing.assert_array_equal(serialize.load(tmp_path / "npy").syn1neg, model.syn1neg)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_gensim_s_own_test_models_that_are_refused_say_why(name: str, tmp_path: Path) -> None:
    assert REFUSED[name] in refused(GENSIM_DATA / name, tmp_path / "store")


def train_word2vec(**params: object) -> Word2Vec:
    base: dict[str, object] = dict(vector_size=12, min_count=1, epochs=2, workers=1, seed=1)
    return Word2Vec(SENTENCES, **{**base, **params})


def test_a_plain_gensim_model_becomes_the_first_version(tmp_path: Path) -> None:
    model = train_word2vec(sg=1)
    model.save(str(tmp_path / "w2v.model"))
    store = tmp_path / "store"

    assert import_(tmp_path / "w2v.model", store, "--kind", "gensim") == 0

    s = open_store(str(store))
    manifest = current(store)
    assert s.read_pointer().version == manifest["version"]  # type: ignore[union-attr]
    assert manifest["parent"] is None and manifest["partitions"] == [] and manifest["vocab_size"] == len(model.wv)
    origin = manifest["imported_from"]
    assert origin["sha256"] == sha256_file(tmp_path / "w2v.model")
    assert origin["written_by"] == f"gensim {gensim.__version__}"
    assert origin["architecture"] == {
        "model": "word2vec",
        "vector_size": 12,
        "window": 5,
        "sg": 1,
        "negative": 5,
        "sample": 0.001,
        "min_count": 1,
        "cbow_mean": 1,
        "ns_exponent": 0.75,
    }
    assert origin["count_total"] == sum(len(s) for s in SENTENCES)
    for name, entry in manifest["files"].items():  # every file checksummed
        assert sha256_file(store / "versions" / manifest["version"] / name) == entry["sha256"]
    stored = serialize.load(store / "versions" / manifest["version"] / "model")
    np.testing.assert_array_equal(stored.syn1neg, model.syn1neg)
    assert [e["event"] for e in stored.lifecycle_events][-1] == "imported"
    assert pq.read_table(store / "versions" / manifest["version"] / "ledger.parquet").num_rows == 0


def test_a_store_that_already_has_a_current_version_is_refused_unless_a_new_lineage_is_asked_for(
    tmp_path: Path,
) -> None:
    train_word2vec().save(str(tmp_path / "a.model"))
    FastText(SENTENCES, vector_size=8, min_count=1, epochs=1, bucket=1000, workers=1).save(str(tmp_path / "b.model"))
    store = tmp_path / "store"
    assert import_(tmp_path / "a.model", store, "--kind", "gensim") == 0
    first = current(store)["version"]

    message = refused(tmp_path / "b.model", store)
    assert f"already has a current version ({first})" in message and "--new-lineage" in message

    assert import_(tmp_path / "b.model", store, "--new-lineage", "--kind", "gensim") == 0
    second = current(store)
    assert second["version"] != first and second["parent"] is None and second["model"] == "fasttext"
    assert open_store(str(store)).list_versions() == sorted([first, second["version"]])


def test_refusals_name_the_file_and_the_cause(tmp_path: Path) -> None:
    store = tmp_path / "store"
    train_word2vec(hs=1, negative=0).save(str(tmp_path / "hs.model"))
    assert "hierarchical softmax only" in refused(tmp_path / "hs.model", store)

    model = train_word2vec()
    model.wv.save_word2vec_format(str(tmp_path / "vectors.txt"))
    model.wv.save_word2vec_format(str(tmp_path / "vectors.bin"), binary=True)
    model.wv.save(str(tmp_path / "vectors.kv"))
    for name in ("vectors.txt", "vectors.bin", "vectors.kv"):
        message = refused(tmp_path / name, store)
        assert "vectors only: no output layer and no word counts" in message and "--adopt-vectors" in message

    model.save(str(tmp_path / "whole.model"))
    data = (tmp_path / "whole.model").read_bytes()
    (tmp_path / "truncated.model").write_bytes(data[: len(data) // 2])
    assert "is it truncated" in refused(tmp_path / "truncated.model", store)

    (tmp_path / "random.bin").write_bytes(np.random.default_rng(7).bytes(4096))
    assert "not a gensim model (a pickle), a Facebook fastText .bin or a word2vec file" in refused(
        tmp_path / "random.bin", store
    )
    (tmp_path / "empty.model").write_bytes(b"")
    assert "the file is empty" in refused(tmp_path / "empty.model", store)

    broken = train_word2vec()
    row = broken.wv.key_to_index[broken.wv.index_to_key[5]]
    broken.wv.vectors[row, 3] = np.nan
    broken.save(str(tmp_path / "nan.model"))
    assert f"vectors holds NaN or inf values (first at row {row}, word {broken.wv.index_to_key[5]!r})" in refused(
        tmp_path / "nan.model", store
    )
    broken = train_word2vec()
    broken.syn1neg[0, 0] = np.inf
    broken.save(str(tmp_path / "inf.model"))
    assert "syn1neg holds NaN or inf values (first at row 0" in refused(tmp_path / "inf.model", store)
    assert snapshot(store) == {}


def test_vectors_only_are_adopted_on_request_with_counts_from_a_file(tmp_path: Path) -> None:
    model = train_word2vec()
    model.wv.save_word2vec_format(str(tmp_path / "vectors.bin"), binary=True)
    counts = {w: int(model.wv.get_vecattr(w, "count")) for w in model.wv.index_to_key}
    (tmp_path / "counts.tsv").write_text("".join(f"{w}\t{c}\n" for w, c in counts.items()))
    store = tmp_path / "store"

    argv = ["--adopt-vectors", "--counts", str(tmp_path / "counts.tsv"), "--min-count", "3", "--sg"]
    assert import_(tmp_path / "vectors.bin", store, *argv) == 0

    manifest = current(store)
    assert manifest["imported_from"]["adopted_vectors"] is True
    assert any("output layer started at zero" in note for note in manifest["import_notes"])
    assert manifest["training"]["sg"] == 1 and manifest["training"]["min_count"] == 3
    adopted = serialize.load(store / "versions" / manifest["version"] / "model")
    assert {w: int(adopted.wv.get_vecattr(w, "count")) for w in adopted.wv.index_to_key} == counts
    assert not adopted.syn1neg.any()
    for word in counts:
        np.testing.assert_allclose(adopted.wv[word], model.wv[word], rtol=1e-6)

    (tmp_path / "short.tsv").write_text("".join(f"{w}\t{c}\n" for w, c in list(counts.items())[:-2]))
    from jobs.config import ImportConfig
    from jobs.importer import run

    with pytest.raises(ImportRefused, match=r"short.tsv: 2 words of the vectors have no positive count"):
        run(ImportConfig(str(tmp_path / "vectors.bin"), str(tmp_path / "other"), adopt_vectors=True,
                         counts=str(tmp_path / "short.tsv")))  # fmt: skip


def test_without_counts_adopted_vectors_start_at_one_per_word(tmp_path: Path) -> None:
    KeyedVectors.save_word2vec_format(train_word2vec().wv, str(tmp_path / "vectors.txt"))
    assert import_(tmp_path / "vectors.txt", tmp_path / "store", "--adopt-vectors") == 0
    manifest = current(tmp_path / "store")
    assert manifest["imported_from"]["count_total"] == manifest["vocab_size"]
    assert any("no counts: 1 per word" in note for note in manifest["import_notes"])


def test_the_ledger_is_seeded_with_the_partitions_before_a_date(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for day in ("2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"):
        write_parquet(data / f"dt={day}" / "part-0.parquet", ["some text"])
        if day != "2026-11-02":  # still being written: its job has not left _SUCCESS yet
            (data / f"dt={day}" / "_SUCCESS").touch()
    train_word2vec().save(str(tmp_path / "w2v.model"))
    store = tmp_path / "store"

    argv = ["--mark-consumed", str(data), "--consumed-before", "2026-11-01"]
    assert import_(tmp_path / "w2v.model", store, *argv, "--kind", "gensim") == 0

    manifest = current(store)
    ledger = pq.read_table(store / "versions" / manifest["version"] / "ledger.parquet").to_pylist()
    consumed = sorted(Path(row["key"]).parent.name for row in ledger)
    assert consumed == ["dt=2026-10-30", "dt=2026-10-31"]
    assert {row["version"] for row in ledger} == {manifest["version"]}
    assert manifest["ledger_seeded"] == {"input": str(data), "before": "2026-11-01", "partitions": 2}

    assert (
        import_(tmp_path / "w2v.model", store, "--new-lineage", "--mark-consumed", str(data), "--kind", "gensim") == 0
    )
    assert current(store)["ledger_seeded"]["partitions"] == 3  # all but the one still being written


def test_the_command_says_that_importing_unpickles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train_word2vec().save(str(tmp_path / "w2v.model"))
    assert import_(tmp_path / "w2v.model", tmp_path / "store", "--kind", "gensim") == 0
    assert any("unpickles it" in r.getMessage() and "only a file you trust" in r.getMessage() for r in caplog.records)
    help_text = json.dumps(
        [a.help for a in _import_parser()._actions if a.help]  # the --kind help repeats it
    )
    assert "UNPICKLED" in help_text
    assert os.path.exists(tmp_path / "store" / "CURRENT")


def _import_parser():  # type: ignore[no-untyped-def]
    from jobs.versions import parser

    sub = next(a for a in parser()._actions if a.dest == "command")
    return sub.choices["import"]  # type: ignore[attr-defined]


def test_import_flags_that_do_not_fit_together_are_refused() -> None:
    from jobs.config import ImportConfig
    from jobs.errors import ConfigError

    with pytest.raises(ConfigError, match="--counts only applies with --adopt-vectors"):
        ImportConfig("m", "store", counts="c.tsv")
    with pytest.raises(ConfigError, match="--consumed-before needs --mark-consumed"):
        ImportConfig("m", "store", consumed_before="2026-11-01")
    with pytest.raises(ConfigError, match="--consumed-before takes a date"):
        ImportConfig("m", "store", mark_consumed="data", consumed_before="yesterday")
    with pytest.raises(ConfigError, match="--store may not carry credentials"):
        ImportConfig("m", "s3://KEY:SECRET@bucket/models")


def test_export_writes_word2vec_text_and_binary_and_keyed_vectors(tmp_path: Path) -> None:
    model = train_word2vec()
    model.save(str(tmp_path / "w2v.model"))
    store = str(tmp_path / "store")
    assert import_(tmp_path / "w2v.model", tmp_path / "store", "--kind", "gensim") == 0
    readers = {
        "word2vec-text": lambda p: KeyedVectors.load_word2vec_format(p, binary=False),
        "word2vec-binary": lambda p: KeyedVectors.load_word2vec_format(p, binary=True),
        "keyedvectors": KeyedVectors.load,
    }
    for fmt, read in readers.items():
        out = tmp_path / f"out-{fmt}"
        assert versions_main(["export", "latest", "--store", store, "--output", str(out), "--format", fmt]) == 0
        exported = read(str(out))
        assert exported.index_to_key == model.wv.index_to_key, fmt
        np.testing.assert_allclose(exported.vectors, model.wv.vectors, rtol=1e-5, atol=1e-6)


def test_auto_reads_the_real_format_and_never_unpickles_whatever_the_name(tmp_path: Path) -> None:
    store, canary = tmp_path / "store", tmp_path / "the-payload-ran"
    payload = planted_pickle(canary)  # creates the canary file if anything unpickles it
    disguised = {
        "cc.en.300.bin": payload,
        "cc.en.300.bin.gz": gzip.compress(payload),
        "cc.en.300.vec.bz2": bz2.compress(payload),
    }
    for name, data in disguised.items():
        (tmp_path / name).write_bytes(data)
        message = refused(tmp_path / name, store, kind="auto")
        assert "it is a pickle" in message and "--kind gensim (or --allow-pickle)" in message, name
        assert not canary.exists(), name
    for kind, cause in (("facebook", "not a fastText .bin file"), ("word2vec", "not a readable word2vec")):
        assert cause in refused(tmp_path / "cc.en.300.bin", store, kind=kind)
        assert not canary.exists(), kind

    train_word2vec().save(str(tmp_path / "w2v.model"))  # a genuine save(): still only on the user's word
    assert "import it with --kind gensim" in refused(tmp_path / "w2v.model", store, kind="auto")
    assert import_(tmp_path / "w2v.model", store, "--allow-pickle") == 0
    assert current(store)["imported_from"]["format"] == "gensim"


def test_fasttext_bin_gz_and_word2vec_vec_gz_are_decompressed_and_read(tmp_path: Path) -> None:
    from gensim.models.fasttext import load_facebook_model

    store = tmp_path / "store"
    source = GENSIM_DATA / "lee_fasttext_new.bin"
    (tmp_path / "lee.bin.gz").write_bytes(gzip.compress(source.read_bytes()))
    assert import_(tmp_path / "lee.bin.gz", store) == 0
    manifest = current(store)
    origin = manifest["imported_from"]
    assert manifest["model"] == "fasttext" and (origin["format"], origin["compression"]) == ("facebook", "gzip")
    assert origin["file"] == "lee.bin.gz" and origin["sha256"] == sha256_file(tmp_path / "lee.bin.gz")
    vectors, _ = load_vectors(str(store), cache_dir=tmp_path / "cache")
    reference = load_facebook_model(str(source)).wv
    assert vectors.index_to_key == reference.index_to_key
    np.testing.assert_array_equal(vectors.vectors, reference.vectors)

    text = GENSIM_DATA / "lee_fasttext.vec"
    (tmp_path / "lee.vec.gz").write_bytes(gzip.compress(text.read_bytes()))
    assert "vectors only" in refused(tmp_path / "lee.vec.gz", store, "--new-lineage", kind="auto")
    assert import_(tmp_path / "lee.vec.gz", store, "--new-lineage", "--adopt-vectors") == 0
    adopted = serialize.load(store / "versions" / current(store)["version"] / "model")
    reference = KeyedVectors.load_word2vec_format(str(text))
    assert set(adopted.wv.index_to_key) == set(reference.index_to_key)
    word = reference.index_to_key[7]
    np.testing.assert_allclose(adopted.wv[word], reference[word], rtol=1e-6)

    # A decompression bomb: a word2vec header and 80 MiB of zeros (80 gzip members of 1 MiB, 80 KB in all) is
    # refused at the bound.
    mebibyte = gzip.compress(bytes(1 << 20))
    (tmp_path / "bomb.vec.gz").write_bytes(gzip.compress(b"1000 300\n") + mebibyte * 80)
    message = refused(tmp_path / "bomb.vec.gz", store, "--new-lineage", kind="auto")
    assert "decompresses (gzip) to more than 64 MiB" in message
