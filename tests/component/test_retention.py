"""gc and promote against each other, and against refreshes in progress, on the local store and on S3 (moto).

The races are made deterministic through a seam: gc (or promote) works through :class:`Hooked`, a real store
that lets "another process" (a promote, a gc, a refresh, working on the same real store) act at an exact
moment of its caller: just before or just after one call with a given key. Afterwards the pointer must name a
version whose manifest and every file verify.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs.errors import ConfigError, VersionNotFound
from jobs.retention import gc, promote
from jobs.storage import Store, lease, open_store
from jobs.storage.publish import put_recorded, read_manifest, version_key, write_manifest
from jobs.versions import main as versions_main
from tests.support.s3server import DUMMY_ENV, MotoServer


class Hooked:
    """A real store through which one caller works; ``on(when, method, key, action)`` runs ``action`` once,
    ``before`` or ``after`` the call of ``method`` whose first argument is ``key``."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.uri = inner, inner.uri
        self.hooks: list[tuple[str, str, str, Callable[[], Any]]] = []
        self.fired: list[str] = []

    def on(self, when: str, method: str, key: str, action: Callable[[], Any]) -> None:
        self.hooks.append((when, method, key, action))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._fire("before", name, args)
            result = attribute(*args, **kwargs)
            self._fire("after", name, args)
            return result

        return call

    def _fire(self, when: str, method: str, args: tuple[Any, ...]) -> None:
        for hook in list(self.hooks):
            if hook[:2] == (when, method) and args and args[0] == hook[2]:
                self.hooks.remove(hook)
                self.fired.append(f"{when} {method} {hook[2]}")
                hook[3]()


@pytest.fixture(params=["local", "s3"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], Store]:
    """Fresh, empty stores of one kind: a folder, or a prefix of a new bucket on moto."""
    if request.param == "local":
        return lambda name: open_store(str(tmp_path / name))
    for variable in [n for n in os.environ if n.startswith(("AWS_", "EMBEDDING_REFRESH_S3_"))]:
        monkeypatch.delenv(variable)
    env = {**DUMMY_ENV, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    for variable, value in {**env, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(variable, value)
    bucket = f"retention-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket=bucket)
    return lambda name: open_store(f"s3://{bucket}/{name}")


def lineage(store: Store, count: int) -> None:
    """v1 … v<count>, each the parent of the next, published in turn (files, manifest, pointer): the last is
    current. Files are written from memory (``put_recorded``), as a refresh writes its report."""
    for i in range(1, count + 1):
        version = f"v{i}"
        files = {name: put_recorded(store, version, name, data) for name, data in files_of(i).items()}
        write_manifest(store, version, {"version": version, "parent": f"v{i - 1}" if i > 1 else None, "files": files})
        store.swap_pointer(version, store.read_pointer())


def files_of(i: int) -> dict[str, bytes]:
    return {"model/vectors.npy": b"v%d" % i * 100}


def intact(store: Store, version: str = "latest") -> str:
    """The version (the current one by default), once its manifest and every file it lists have verified."""
    manifest = read_manifest(store, version)
    for name, entry in manifest["files"].items():
        data = store.get_bytes(version_key(manifest["version"], name))
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"]), name
    return str(manifest["version"])


def test_promotes_landing_mid_gc_leave_the_pointer_on_a_complete_version(
    stores: Callable[[str], Store], tmp_path: Path
) -> None:
    # 1. gc removes newest first (v3, v2, v1: v5 is current, v4 its parent). Just after gc hides v3, a promote
    #    of v3 fails (no manifest); just before it hides v2 (after its last look at the pointer), a rollback to
    #    v2 lands: gc sees it once v2 is hidden, puts v2's manifest back, and keeps v1, v2's parent, too.
    store = stores("rollback")
    lineage(store, 5)
    hooked, refused = Hooked(store), []

    def promote_the_hidden_one() -> None:
        with pytest.raises(VersionNotFound, match="v3 has no manifest"):
            promote(store, "v3")
        refused.append("v3")

    hooked.on("after", "delete", "versions/v3/manifest.json", promote_the_hidden_one)
    hooked.on("before", "delete", "versions/v2/manifest.json", lambda: promote(store, "v2"))
    summary = gc(hooked, keep=1)  # type: ignore[arg-type]
    assert hooked.fired == ["after delete versions/v3/manifest.json", "before delete versions/v2/manifest.json"]
    assert refused == ["v3"]
    assert summary.startswith("removed 1 version(s); kept 4 (1 that a promote during gc made current or needed);")
    assert store.list_versions() == ["v1", "v2", "v4", "v5"] and store.list_incomplete() == {}
    assert intact(store) == "v2" and intact(store, "v1") == "v1"

    # 2. A rollback to v3 lands just after gc hid v2, v3's parent: v2 comes back; v1 goes.
    store = stores("parent")
    lineage(store, 4)
    hooked = Hooked(store)
    hooked.on("after", "delete", "versions/v2/manifest.json", lambda: store.swap_pointer("v3", store.read_pointer()))
    assert gc(hooked, keep=1).startswith("removed 1 version(s); kept 3 (1 that a promote")  # type: ignore[arg-type]
    assert store.list_versions() == ["v2", "v3", "v4"] and store.list_incomplete() == {}
    assert intact(store) == "v3" and intact(store, "v2") == "v2"

    # 3. promote read v1's manifest, then gc hid v1 (its look still saw v2) before promote moved the pointer:
    #    promote finds v1 gone after its swap and moves the pointer back; gc then deletes v1's files.
    store = stores("promote")
    lineage(store, 2)
    hooked = Hooked(store)
    hooked.on("before", "swap_pointer", "v1", lambda: store.delete("versions/v1/manifest.json"))
    with pytest.raises(
        VersionNotFound,
        match=r"v1 was removed \(a gc is running\) while v1 was being promoted; the pointer is back on v2",
    ):
        promote(hooked, "v1")  # type: ignore[arg-type]
    store.delete_version("v1")
    assert intact(store) == "v2"

    # 4. A version whose ledger is read from a version that is gone is refused before the pointer moves.
    chain = [{"version": "v1", "file": "ledger-delta.parquet", "size": 1, "sha256": "0" * 64}]
    delta = {"ledger-delta.parquet": {"size": 1, "sha256": "0" * 64}}
    write_manifest(store, "v3", {"version": "v3", "parent": "v2", "files": delta, "ledger": {"chain": chain}})
    with pytest.raises(VersionNotFound, match="cannot promote v3: its ledger is read from v1, which has no manifest"):
        promote(store, "v3")
    assert intact(store) == "v2"


def test_gc_keeps_what_a_refresh_in_progress_needs_and_refuses_a_grace_a_run_outlasts(
    stores: Callable[[str], Store], tmp_path: Path
) -> None:
    store = stores("uploading")
    lineage(store, 5)
    # A refresh building on v2 (current when it started), still uploading v6: its parent.json came first.
    lease.claim(store, "v6", "v2")
    store.put_bytes("versions/v6/model/vectors.npy", b"half of the model")
    listed, incomplete = store.list_versions(), set(store.list_incomplete())

    for grace in ("0", "5.9"):
        assert versions_main(["gc", "--store", store.uri, "--keep", "1", "--incomplete-grace", grace]) == 2
    with pytest.raises(ConfigError, match=r"--incomplete-grace 0 is shorter than the longest run \(6 h"):
        gc(store, keep=1, grace_hours=0)
    assert (store.list_versions(), set(store.list_incomplete())) == (listed, incomplete)

    assert gc(store, keep=1) == (
        "removed 2 version(s); kept 3 (1 that refreshes in progress build on); "
        "removed 0 incomplete version(s) older than 24 h, left 1 younger"
    )
    assert store.list_versions() == ["v2", "v4", "v5"] and set(store.list_incomplete()) == {"v6"}
    assert store.get_bytes("versions/v6/model/vectors.npy") == b"half of the model"
    assert intact(store, "v2") == "v2" and lease.claimed(store, "v6") == "v2"

    # Told that nothing is running, a grace of 0 takes the upload, and with it what kept v2.
    assert gc(store, keep=1, grace_hours=0, allow_short_grace=True) == (
        "removed 1 version(s); kept 2; removed 1 incomplete version(s) older than 0 h, left 0 younger"
    )
    assert store.list_versions() == ["v4", "v5"] and store.list_incomplete() == {}
    assert intact(store) == "v5"
