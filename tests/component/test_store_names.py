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
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs import versions
from jobs.config import GateConfig
from jobs.storage import LocalStore, Store, open_store
from jobs.storage.cache import VersionCache
from jobs.storage.names import MANIFEST_LIMIT, POINTER_LIMIT
from jobs.storage.publish import fetch_files, model_files, read_manifest
from jobs.training import parent
from tests.support.s3server import DUMMY_ENV, MotoServer
from tests.support.store_names import legit, refused

TRAVERSAL = "model/../../../x/sitecustomize.py"  # from <tmp>/run/parent: <tmp>/x/sitecustomize.py


PAYLOAD = b"import os; os.system('touch /tmp/pwned')\n"


@dataclass
class Target:
    """A store, and the raw write access an attacker has to it."""

    store: Store
    put: Callable[[str, bytes], None]


@pytest.fixture(params=["local", "s3"])
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


def entry(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


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
    assert versions.main(["show", "/etc/passwd", "--store", uri]) == 3  # refused: IntegrityError (jobs.errors)
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
