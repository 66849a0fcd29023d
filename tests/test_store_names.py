"""A writer of the store plants names and sizes instead of models: nothing it writes becomes a path, a hang or
an allocation.

The attacker writes raw objects (a local folder, or a bucket on a real moto server, never through the tool):
a manifest whose file names climb out of the version (``model/../../../x/sitecustomize.py``, an absolute
name, a deep ``version`` field), a pointer naming ``../../etc``, a cached version's manifest edited to name a
file outside the cache, a FIFO at ``CURRENT``, symbolic links inside a version, ``.npy`` headers claiming
terabytes, a vocabulary of millions of rows in a few KiB, an oversized manifest and pointer. Every reader
refuses with IntegrityError naming the store, the version and the offending name, and nothing is written,
deleted or read outside the store, the spool and the cache: the whole temporary tree is listed before and
after.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gensim.models import Word2Vec

from jobs import models
from jobs.config import GateConfig
from jobs.errors import IntegrityError
from jobs.keyed import WordVectors
from jobs.lineage import counts, ledger, replay, standing
from jobs.storage import LocalStore, Store, open_store
from jobs.storage import names as store_names
from jobs.storage.cache import VersionCache
from jobs.storage.names import MANIFEST_LIMIT, POINTER_LIMIT, check_file, check_manifest, check_version
from jobs.storage.publish import fetch_files, model_files, new_version, publish, read_manifest
from jobs.training import parent, serialize
from tests.s3server import DUMMY_ENV, MotoServer

TRAVERSAL = "model/../../../x/sitecustomize.py"  # from <tmp>/run/parent: <tmp>/x/sitecustomize.py
PAYLOAD = b"import os; os.system('touch /tmp/pwned')\n"


@dataclass
class Target:
    """A store, and the raw write access an attacker has to it."""

    store: Store
    put: Callable[[str, bytes], None]


@pytest.fixture(params=[pytest.param("local", marks=pytest.mark.unit), pytest.param("s3", marks=pytest.mark.component)])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Target:
    if request.param == "local":
        root = tmp_path / "store"

        def put_local(key: str, data: bytes) -> None:
            path = Path(os.path.normpath(root / key))  # what a writer's own tools would do with the name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        return Target(LocalStore(root), put_local)
    moto: MotoServer = request.getfixturevalue("moto")
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {**DUMMY_ENV, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(name, value)
    bucket = f"names-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=moto.endpoint)
    s3.create_bucket(Bucket=bucket)
    return Target(
        open_store(f"s3://{bucket}/models"),
        lambda key, data: s3.put_object(Bucket=bucket, Key=f"models/{key}", Body=data),
    )


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (the test's whole temporary folder), with its size for files."""
    return sorted(f"{p.relative_to(root)}:{p.stat().st_size if p.is_file() else 'dir'}" for p in root.rglob("*"))


def legit(tmp_path: Path, store: Store, version: str) -> dict[str, Any]:
    out = tmp_path / f"out-{version}"
    (out / "model").mkdir(parents=True)
    (out / "model" / "params.json").write_bytes(b"{}")
    (out / "model" / "weights.npy").write_bytes(b"w" * 1000)
    (out / "pending.parquet").write_bytes(b"p")
    return publish(store, version, out, {}, expected=store.read_pointer())


def entry(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        call()
    assert message in str(caught.value), str(caught.value)


def test_names_that_climb_out_are_refused_by_every_reader_and_nothing_is_written(
    target: Target, tmp_path: Path
) -> None:
    store, uri = target.store, target.store.uri
    good = legit(tmp_path, store, "v1")
    forged = {**good, "version": "v2", "files": {**good["files"], TRAVERSAL: entry(PAYLOAD)}}
    target.put(f"versions/v2/{TRAVERSAL}", PAYLOAD)
    target.put("versions/v2/manifest.json", json.dumps(forged).encode())
    absolute = {**good, "version": "v3", "files": {"/tmp/x/sitecustomize.py": entry(PAYLOAD)}}
    target.put("versions/v3/manifest.json", json.dumps(absolute).encode())
    deep = {**good, "version": "../../../../x"}  # the manifest of v4 claims to be another version
    target.put("versions/v4/manifest.json", json.dumps(deep).encode())
    target.put("CURRENT", json.dumps({"version": "../../etc", "manifest": "x"}).encode())
    (tmp_path / "run").mkdir()
    before = tree(tmp_path)

    climbing = f"the manifest of v2 in {uri} names the file {TRAVERSAL!r}, which is not a file a version may hold"
    refused(lambda: read_manifest(store, "v2"), climbing)
    refused(
        lambda: read_manifest(store, "v3"),
        f"the manifest of v3 in {uri} names the file '/tmp/x/sitecustomize.py', which is not a file",
    )
    refused(
        lambda: read_manifest(store, "v4"),
        f"the manifest of v4 in {uri} names the version '../../../../x', not v4; refusing",
    )
    # Callers that hold a manifest already (read elsewhere, or before this check existed) refuse it too.
    spool = tmp_path / "run" / "parent"
    refused(lambda: fetch_files(store, forged, spool), f"the manifest of v2 in {uri} names the file {TRAVERSAL!r}")
    refused(lambda: model_files(forged), f"names the file {TRAVERSAL!r}")
    cache = VersionCache(tmp_path / "run" / "cache", keep=2)
    refused(lambda: cache.fetch(store, forged, [TRAVERSAL], spool), climbing)
    reader = VersionCache(tmp_path / "run" / "vectors", keep=2)  # the readers' use of the same cache
    refused(lambda: reader.use(store, forged, [TRAVERSAL]).__enter__(), climbing)
    request = parent.ParentRequest("v2", GateConfig(), cache=str(tmp_path / "run" / "cache"), cache_versions=2)
    refused(lambda: parent.fetch(store, request, tmp_path / "run"), climbing)
    refused(lambda: parent.fetch(store, parent.ParentRequest("v3", GateConfig()), tmp_path / "run"), "'/tmp/x/")

    # A pointer naming a path, and version arguments that are paths, never reach the store.
    pointer = f"the pointer {uri}/CURRENT names the version '../../etc', which is not a version id"
    refused(store.read_pointer, pointer)
    refused(lambda: read_manifest(store, "latest"), pointer)
    refused(lambda: read_manifest(store, "../v1"), f"a request to {uri} names the version '../v1'")
    assert models.main(["show", "/etc/passwd", "--store", uri]) == 3  # refused: IntegrityError (jobs.errors)
    assert tree(tmp_path) == before
    assert not (tmp_path / "x").exists()


def test_a_cached_version_whose_manifest_is_edited_deletes_nothing_outside_the_cache(
    target: Target, tmp_path: Path
) -> None:
    store = target.store
    good = legit(tmp_path, store, "v1")
    cache = VersionCache(tmp_path / "cache", keep=2)
    cache.fetch(store, read_manifest(store, "v1"), model_files(good), tmp_path / "run-1")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    name = "model/../../../../victim"  # from <cache>/<entry>/files: <tmp>/victim
    edited = {**good, "files": {**good["files"], name: entry(b"other")}}  # verifying it fails: it would be unlinked
    target.put("versions/v1/manifest.json", json.dumps(edited).encode())
    before = tree(tmp_path)
    message = f"the manifest of v1 in {store.uri} names the file {name!r}, which is not a file a version may hold"
    refused(lambda: read_manifest(store, "v1"), message)
    refused(lambda: cache.fetch(store, edited, [*model_files(good), name], tmp_path / "run-2"), message)
    refused(lambda: VersionCache(tmp_path / "cache-2", keep=2).use(store, edited, [name]).__enter__(), message)
    assert victim.read_bytes() == b"precious" and tree(tmp_path) == before


@pytest.mark.unit
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


def test_an_oversized_manifest_or_pointer_is_refused_before_it_is_read(target: Target, tmp_path: Path) -> None:
    store = target.store
    target.put("CURRENT", b" " * POINTER_LIMIT + b'{"version": "v1"}')
    refused(store.read_pointer, f"{store.uri}/CURRENT holds {POINTER_LIMIT + 17:,} bytes, more than the 4,096")
    if isinstance(store, LocalStore):  # a sparse file: the size a reader sees, without writing 64 MiB
        manifest = store.root / "versions" / "v1" / "manifest.json"
        manifest.parent.mkdir(parents=True)
        with open(manifest, "wb") as f:
            f.truncate(MANIFEST_LIMIT + 1)
    else:  # the same refusal from S3's Content-Length, on a smaller limit (the one read_manifest passes is 64 MiB)
        target.put("versions/v1/manifest.json", b"{}" * 600)
        refused(lambda: store.get_bytes("versions/v1/manifest.json", limit=1000), "holds 1,200 bytes, more than")
        target.put("versions/v1/manifest.json", b" " * (MANIFEST_LIMIT + 1))
    where = f"{store.uri}/versions/v1/manifest.json"
    refused(lambda: read_manifest(store, "v1"), f"{where} holds {MANIFEST_LIMIT + 1:,} bytes, more than the 67,108,864")


@pytest.mark.unit
def test_every_name_a_version_holds_is_accepted_and_every_path_is_refused() -> None:
    real = [
        *ledger.NAMES,
        counts.PENDING,
        standing.STANDING,
        replay.RESERVOIR,
        "config.json",
        "report.json",
        "report.md",
        models.LEGACY_VECTORS,
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


# ------------------------------------------------------------------------------------ sizes inside a model


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


@pytest.mark.unit
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
