"""The store's name and size rules on local disk: every name a version may hold accepted and every path refused,
sizes checked before anything is allocated, a FIFO never waited on. The hostile-store scenarios on local disk and
S3 are in ``tests/component/test_store_names.py``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gensim.models import Word2Vec

from jobs import versions
from jobs.errors import IntegrityError
from jobs.keyed import WordVectors
from jobs.lineage import counts, ledger, replay, standing
from jobs.storage import LocalStore
from jobs.storage import names as store_names
from jobs.storage.names import check_file, check_manifest, check_version
from jobs.storage.publish import new_version, read_manifest
from jobs.training import serialize
from tests.support.store_names import legit, refused


def test_the_local_store_reads_only_regular_files_and_never_waits_on_a_fifo(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    legit(tmp_path, store, "v1")
    outside = tmp_path / "secret"
    outside.write_bytes(b"not the store's")
    os.unlink(store.root / "CURRENT")
    os.mkfifo(store.root / "CURRENT")  # a reader that opened it plainly would wait for a writer forever
    result: list[BaseException | None] = []
    started = time.monotonic()
    reader = threading.Thread(target=lambda: result.append(_raised(store.read_pointer)), daemon=True)
    reader.start()
    reader.join(5)
    assert time.monotonic() - started < 1.0 and len(result) == 1
    assert isinstance(result[0], IntegrityError)
    assert str(result[0]) == f"{store.uri}/CURRENT is not a regular file (a FIFO); refusing to read it"

    os.unlink(store.root / ".lock")
    os.mkfifo(store.root / ".lock")  # a writer's lock: refused at once too, not waited on
    refused(lambda: store.swap_pointer("v1", None), f"{store.uri}/.lock is not a regular file; refusing to use it")

    os.unlink(store.root / "CURRENT")
    os.symlink(outside, store.root / "CURRENT")
    refused(store.read_pointer, f"{store.uri}/CURRENT is not a regular file in the store (a symbolic link")
    weights = store.root / "versions" / "v1" / "model" / "weights.npy"
    weights.unlink()
    os.symlink(outside, weights)
    refused(
        lambda: store.get_file("versions/v1/model/weights.npy", tmp_path / "got"),
        f"{store.uri}/versions/v1/model/weights.npy is not a regular file in the store (a symbolic link",
    )
    refused(lambda: store.copy("versions/v1/model/weights.npy", "versions/v9/model/weights.npy"), "symbolic link")
    os.symlink(tmp_path / "elsewhere", store.root / "versions" / "v2")  # a whole version elsewhere
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "manifest.json").write_text(json.dumps(read_manifest(store, "v1") | {"version": "v2"}))
    refused(lambda: read_manifest(store, "v2"), f"{store.uri}/versions/v2/manifest.json is not a regular file")
    assert not (tmp_path / "got").exists() and not (store.root / "versions" / "v9").exists()


def _raised(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except BaseException as exc:
        return exc
    return None


def test_every_name_a_version_holds_is_accepted_and_every_path_is_refused() -> None:
    real = [
        *ledger.NAMES,
        counts.PENDING,
        standing.STANDING,
        replay.RESERVOIR,
        "config.json",
        "report.json",
        "report.md",
        versions.LEGACY_VECTORS,
        *(f"model/{n}" for n in (serialize.PARAMS, serialize.VOCAB, "vectors_ngrams_lockf.npy")),
        f"model/{serialize.LEGACY_FILE}",
        f"model/{serialize.LEGACY_FILE}.wv.vectors_ngrams.npy",
    ]
    assert [check_file(name, "s", "v") for name in real] == real
    for version in (new_version(), "v1", "v0-died", "20261124T020000Z-ab12cd"):
        assert check_version(version, "here") == version
    for name in ("", ".", "..", "/etc/x", "model/", "model/../x", "model/a/b", "model/.hidden", "x/y", "manifest.json"):
        refused(
            lambda name=name: check_file(name, "s3://b/p", "v1"),
            f"the manifest of v1 in s3://b/p names the file {name!r}",
        )
    long = "model/" + "a" * 500
    refused(lambda: check_file(long, "s", "v"), f"names the file '{long[:78]}…, which is not")
    for version in ("", ".", "..", "../x", "a/b", "/abs", "-x", "v1\n", 12, None):
        refused(lambda version=version: check_version(version, "the pointer p"), f"names the version {version!r}")
    good = {"version": "v1", "files": {"config.json": {"size": 2, "sha256": "0" * 64}}}
    assert check_manifest(good, "s", "v1") is good
    for broken, message in [
        ([], "is not a JSON object"),
        ({**good, "parent": "../v0"}, "the manifest of v1 in s, as its parent, names the version '../v0'"),
        ({**good, "files": {"config.json": {"size": "2", "sha256": "0" * 64}}}, "is not a size and a SHA-256"),
        ({**good, "ledger": {"chain": [{"version": "../v0", "file": "ledger.parquet"}]}}, "names the version '../v0'"),
        ({**good, "ledger": {"chain": [{"version": "v0", "file": "config.json"}]}}, "the ledger file 'config.json'"),
        ({**good, "ledger": {"chain": [{"version": "v0", "file": "ledger.parquet", "size": -1}]}}, "no size and SHA"),
    ]:
        refused(lambda broken=broken: check_manifest(broken, "s", "v1"), message)
    assert set(ledger.NAMES) <= store_names.VERSION_FILES


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    sentences = [["alpha", "beta", "gamma", "delta"], ["beta", "gamma", "epsilon"]] * 20
    serialize.save(Word2Vec(sentences, vector_size=8, min_count=1, epochs=1, workers=1, seed=1), folder)
    return folder


def copy(folder: Path, into: Path) -> Path:
    into.mkdir()
    for path in folder.iterdir():
        (into / path.name).write_bytes(path.read_bytes())
    return into


def npy_claiming(path: Path, dtype: str, shape: tuple[int, ...]) -> None:
    """An .npy file whose header claims ``shape`` of ``dtype``, followed by 64 bytes."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(b"\0" * 64)


def forged_vocabulary(path: Path, rows: int, word: str = "w" * 64) -> None:
    """One word repeated ``rows`` times: a few KiB on disk, run-length encoded indices into one dictionary."""
    indices = pa.array(np.zeros(rows, dtype=np.int32))
    words = pa.DictionaryArray.from_arrays(indices, pa.array([word])).cast(pa.string())
    pq.write_table(pa.table({"word": words, "count": pa.array(np.ones(rows, np.int64))}), path, compression="zstd")


TIB4 = 1 << 42


@pytest.mark.parametrize(
    ("forge", "loader", "message"),
    [
        (
            lambda f: npy_claiming(f / "vectors.npy", "<f4", (TIB4 // 32, 8)),
            WordVectors.read,
            r"vectors\.npy is truncated: its header claims float32\[137438953472, 8\], 4,398,046,511,104 bytes, and 64",
        ),
        (
            lambda f: npy_claiming(f / "syn1neg.npy", "<f4", (TIB4 // 32, 8)),
            serialize.load,
            r"syn1neg\.npy is truncated: its header claims float32\[137438953472, 8\], 4,398,046,511,104 bytes",
        ),
        (
            lambda f: npy_claiming(f / "sample_int.npy", "<u4", (TIB4 // 4,)),
            WordVectors.read,
            r"sample_int\.npy is truncated: its header claims uint32\[1099511627776\], 4,398,046,511,104 bytes",
        ),
        (
            lambda f: npy_claiming(f / "cum_table.npy", "<u4", (4,)),
            serialize.load,
            r"cum_table\.npy: 64 bytes follow a header claiming uint32\[4\], 16",
        ),
        (
            lambda f: forged_vocabulary(f / "vocab.parquet", 300_000),
            WordVectors.read,
            r"vectors\.npy: float32\[5, 8\] where float32\[300000, 8\] was expected for the 300,000 words of "
            r".*vocab\.parquet; refusing",
        ),
        (
            lambda f: forged_vocabulary(f / "vocab.parquet", 5, "w" * 4000),
            serialize.load,
            r"vocab\.parquet: the vocabulary repeats words",
        ),
        (
            lambda f: pq.write_table(
                pa.table({"word": [f"{'w' * 2000}{i}" for i in range(5)], "count": pa.array([1] * 5, pa.int64())}),
                f / "vocab.parquet",
                use_dictionary=False,
                column_encoding={"word": "DELTA_BYTE_ARRAY"},
            ),
            WordVectors.read,
            r"vocab\.parquet: the words are encoded as DELTA_BYTE_ARRAY",
        ),
    ],
    ids=["vectors-4TiB", "syn1neg-4TiB", "sample_int-4TiB", "cum_table-longer", "vocab-rows", "vocab-repeat", "delta"],
)
def test_sizes_a_model_file_claims_are_checked_before_anything_is_allocated(
    saved: Path, tmp_path: Path, forge: Callable[[Path], None], loader: Callable[[Path], Any], message: str
) -> None:
    folder = copy(saved, tmp_path / "model")
    forge(folder)
    with pytest.raises(IntegrityError, match=message):
        loader(folder)
