"""The local store and the publish protocol: atomic files, a conditional pointer, verified loads, rollback."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

from jobs.errors import ConflictError, IntegrityError, StoreError, VersionNotFound
from jobs.storage import LocalStore, open_store
from jobs.storage.publish import fetch_verified, publish, read_manifest
from jobs.versions import gc, promote


def folder(tmp_path: Path, name: str, payload: bytes = b"weights") -> Path:
    out = tmp_path / f"out-{name}"
    (out / "model").mkdir(parents=True)
    (out / "model" / "embedding.model").write_bytes(payload)
    (out / "model" / "embedding.model.wv.vectors.npy").write_bytes(payload * 3)
    (out / "ledger.parquet").write_bytes(b"ledger")
    return out


def test_publish_then_fetch_verified_round_trips(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    assert store.read_pointer() is None and store.list_versions() == []
    manifest = publish(store, "v1", folder(tmp_path, "a"), {"parent": None}, expected=None)
    assert store.read_pointer().version == "v1"  # type: ignore[union-attr]
    assert set(manifest["files"]) == {"model/embedding.model", "model/embedding.model.wv.vectors.npy", "ledger.parquet"}
    assert manifest["files"]["ledger.parquet"]["size"] == 6
    got = fetch_verified(store, "latest", tmp_path / "got")
    assert (got / "model" / "embedding.model.wv.vectors.npy").read_bytes() == b"weights" * 3
    assert json.loads((tmp_path / "store" / "CURRENT").read_text())["manifest"] == "versions/v1/manifest.json"
    assert not list((tmp_path / "store").rglob("*.tmp"))


def test_a_stale_pointer_is_a_conflict_and_the_pointer_stays(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    publish(store, "v1", folder(tmp_path, "a"), {}, expected=None)
    start = store.read_pointer()
    publish(store, "v2", folder(tmp_path, "b"), {}, expected=start)
    with pytest.raises(ConflictError, match="moved to v2 while this run was working from v1") as info:
        publish(store, "v3", folder(tmp_path, "c"), {}, expected=start)
    assert (info.value.ours, info.value.theirs) == ("v3", "v2")
    assert store.read_pointer().version == "v2"  # type: ignore[union-attr]
    assert store.list_versions() == ["v1", "v2", "v3"]  # the loser is kept, unpromoted
    with pytest.raises(ConflictError):
        publish(store, "v4", folder(tmp_path, "d"), {}, expected=None)


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_a_damaged_version_is_refused_before_loading(tmp_path: Path, damage: str) -> None:
    store = LocalStore(tmp_path / "store")
    publish(store, "v1", folder(tmp_path, "a"), {}, expected=None)
    target = tmp_path / "store" / "versions" / "v1" / "model" / "embedding.model.wv.vectors.npy"
    if damage == "corrupt":
        target.write_bytes(b"X" + target.read_bytes()[1:])
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-1])
    else:
        target.unlink()
    message = {"corrupt": "SHA-256", "truncate": "size", "delete": "missing"}[damage]
    with pytest.raises(IntegrityError, match=message):
        fetch_verified(store, "v1", tmp_path / "got")


def test_promote_rolls_back_and_forward_and_gc_keeps_current_and_parent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    pointer = None
    for i, version in enumerate(["v1", "v2", "v3", "v4"]):
        publish(store, version, folder(tmp_path, version), {"parent": f"v{i}" if i else None}, expected=pointer)
        pointer = store.read_pointer()
    assert promote(store, "v2") == "current version: v2 (was v4)"
    assert read_manifest(store, "latest")["version"] == "v2"
    promote(store, "v4")
    assert store.read_pointer().version == "v4"  # type: ignore[union-attr]
    with pytest.raises(VersionNotFound):
        promote(store, "v9")
    promote(store, "v2")
    assert gc(store, keep=1).startswith("removed 1 version(s); kept 3;")
    assert store.list_versions() == ["v1", "v2", "v4"]  # v4 is the newest, v2 current, v1 its parent


def test_store_uris(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    with pytest.raises(StoreError):
        LocalStore(tmp_path).get_bytes("../escape")
    from jobs.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported store"):
        open_store("gs://bucket/x")


def test_copy_links_or_copies_an_immutable_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("versions/v1/model/a.npy", b"weights")
    store.copy("versions/v1/model/a.npy", "versions/v2/model/a.npy")
    assert store.get_bytes("versions/v2/model/a.npy") == b"weights"
    with pytest.raises(VersionNotFound):
        store.copy("versions/v1/missing", "versions/v2/missing")


def test_gc_removes_incomplete_versions_older_than_the_grace_period(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    publish(store, "v1", folder(tmp_path, "v1"), {"parent": None}, expected=None)
    for version in ("v0-died", "v2-uploading"):
        store.put_bytes(f"versions/{version}/model/embedding.model", b"partial")
    day_ago = time.time() - 25 * 3600
    for path in (tmp_path / "store" / "versions" / "v0-died").rglob("*"):
        os.utime(path, (day_ago, day_ago))
    assert store.list_versions() == ["v1"]  # incomplete versions are invisible to readers
    assert set(store.list_incomplete()) == {"v0-died", "v2-uploading"}

    assert gc(store, keep=5).endswith("removed 1 incomplete version(s) older than 24 h, left 1 younger")
    assert set(store.list_incomplete()) == {"v2-uploading"}  # it may still be uploading
    assert not (tmp_path / "store" / "versions" / "v0-died").exists()
    assert store.list_versions() == ["v1"]


def test_an_interrupted_delete_never_leaves_a_listed_version_without_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "store")
    publish(store, "v1", folder(tmp_path, "v1"), {"parent": None}, expected=None)

    def interrupted(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        os.unlink(Path(path) / "model" / "embedding.model")  # one file gone, then the deletion stops
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("jobs.storage.local.shutil.rmtree", interrupted)
    with pytest.raises(StoreError, match="rerun the deletion"):
        store.delete_version("v1")
    assert store.list_versions() == []  # the manifest went first
    monkeypatch.undo()
    store.delete_version("v1")
    assert not (tmp_path / "store" / "versions" / "v1").exists()
