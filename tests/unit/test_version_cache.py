"""The trainer node's version cache: hits verified against the store's manifest, misses downloaded, eviction."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from jobs.errors import IntegrityError
from jobs.storage import LocalStore
from jobs.storage.cache import VersionCache, hash_threads
from jobs.storage.locks import FileLock
from jobs.storage.publish import publish, read_manifest
from tests.support.stores import CountingStore

NAMES = ["model/weights.npy", "pending.parquet"]


def version(tmp_path: Path, store: LocalStore, name: str, payload: bytes) -> Path:
    out = tmp_path / f"out-{name}"
    (out / "model").mkdir(parents=True)
    (out / "model" / "weights.npy").write_bytes(payload * 100)
    (out / "pending.parquet").write_bytes(payload)
    publish(store, name, out, {}, expected=store.read_pointer())
    return out


def test_a_second_fetch_downloads_nothing_and_returns_the_same_bytes(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    version(tmp_path, store, "v1", b"one")
    cache = VersionCache(tmp_path / "cache", keep=2)
    first = cache.fetch(store, read_manifest(store, "v1"), NAMES, tmp_path / "run-1")
    assert sorted(store.downloads) == ["pending.parquet", "weights.npy"]
    store.downloads.clear()
    again = cache.fetch(store, read_manifest(store, "v1"), NAMES, tmp_path / "run-2")
    assert store.downloads == [] and (first / "pending.parquet").samefile(again / "pending.parquet")
    assert (again / "model" / "weights.npy").read_bytes() == b"one" * 100


def test_a_damaged_cached_file_is_fetched_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CountingStore(tmp_path / "store")
    version(tmp_path, store, "v1", b"one")
    cache = VersionCache(tmp_path / "cache", keep=2)
    folder = cache.fetch(store, read_manifest(store, "v1"), NAMES, tmp_path / "run-3")
    weights = folder / "model" / "weights.npy"
    weights.write_bytes(b"X" + weights.read_bytes()[1:])  # same size, other bytes
    store.downloads.clear()
    with caplog.at_level(logging.WARNING, logger="jobs.storage.cache"):
        folder = cache.fetch(store, read_manifest(store, "v1"), NAMES, tmp_path / "run-3")
    assert store.downloads == ["weights.npy"]  # only the damaged file
    assert weights.read_bytes() == b"one" * 100
    assert "SHA-256" in caplog.text


def test_a_download_that_fails_verification_is_refused_and_not_cached(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    version(tmp_path, store, "v1", b"one")
    stored = tmp_path / "store" / "versions" / "v1" / "pending.parquet"
    stored.write_bytes(b"two")
    cache = VersionCache(tmp_path / "cache", keep=2)
    with pytest.raises(IntegrityError, match="SHA-256"):
        cache.fetch(store, read_manifest(store, "v1"), NAMES, tmp_path / "run-5")
    assert not [p for p in (tmp_path / "cache").rglob("pending.parquet")]


def test_an_adopted_version_is_the_next_fetch_and_the_least_recent_are_evicted(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    cache = VersionCache(tmp_path / "cache", keep=2)
    for name, payload in (("v1", b"one"), ("v2", b"two"), ("v3", b"three")):
        cache.adopt(store, name, version(tmp_path, store, name, payload))
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2
    folder = cache.fetch(store, read_manifest(store, "v3"), NAMES, tmp_path / "run-6")
    assert store.downloads == [] and (folder / "pending.parquet").read_bytes() == b"three"
    cache.fetch(store, read_manifest(store, "v1"), NAMES, tmp_path / "run-7")  # evicted: downloaded again
    assert sorted(store.downloads) == ["pending.parquet", "weights.npy"]
    store.downloads.clear()
    cache.fetch(store, read_manifest(store, "v3"), NAMES, tmp_path / "run-8")  # still cached: v2 was the least recent
    assert store.downloads == []


def test_a_version_of_another_store_is_another_entry(tmp_path: Path) -> None:
    one, other = CountingStore(tmp_path / "a"), CountingStore(tmp_path / "b")
    version(tmp_path / "x", one, "v1", b"one")
    version(tmp_path / "y", other, "v1", b"other")
    cache = VersionCache(tmp_path / "cache", keep=2)
    cache.fetch(one, read_manifest(one, "v1"), NAMES, tmp_path / "run-9")
    folder = cache.fetch(other, read_manifest(other, "v1"), NAMES, tmp_path / "run-10")
    assert (folder / "pending.parquet").read_bytes() == b"other" and len(other.downloads) == 2


def test_a_folder_in_use_survives_the_eviction_of_its_entry(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    for name, payload in (("v1", b"one"), ("v2", b"two"), ("v3", b"three")):
        version(tmp_path, store, name, payload)
    cache = VersionCache(tmp_path / "cache", keep=1)
    in_use = cache.fetch(store, read_manifest(store, "v1"), NAMES, tmp_path / "trainer-a")
    cache.fetch(store, read_manifest(store, "v2"), NAMES, tmp_path / "trainer-b")  # another trainer evicts v1
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1
    assert (in_use / "model" / "weights.npy").read_bytes() == b"one" * 100
    assert (in_use / "pending.parquet").read_bytes() == b"one"


class SlowStore(CountingStore):
    """A store whose downloads take a while, so that loaders starting together overlap."""

    def get_file(self, key: str, destination: Path) -> None:
        time.sleep(0.2)
        super().get_file(key, destination)


def test_loaders_starting_together_download_once_and_eviction_spares_what_is_not_an_entry(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "store")
    version(tmp_path, store, "v1", b"one")
    manifest = read_manifest(store, "v1")
    root = tmp_path / "cache"
    (root / "seen").mkdir(parents=True)  # another user of the folder (signing's remembered pointers)
    (root / ("ab" * 32)).mkdir()  # an entry of the readers' previous cache layout: the first to go
    results: list[bytes] = []

    def load() -> None:
        with VersionCache(root, keep=1).use(store, manifest, NAMES) as folder:
            results.append((folder / "model" / "weights.npy").read_bytes())

    threads = [threading.Thread(target=load) for _ in range(4)]  # flock: each use opens the lock anew
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [b"one" * 100] * 4
    assert sorted(store.downloads) == ["pending.parquet", "weights.npy"]  # once, for the four
    entry = VersionCache(root, 1)._entry(store.uri, "v1").name
    assert sorted(p.name for p in root.iterdir()) == sorted([".lock", "seen", entry])


def test_the_lock_is_a_regular_file_and_a_held_lock_is_reported_busy(tmp_path: Path) -> None:
    held = FileLock(tmp_path / "owner.lock")
    assert held.acquire(wait=False)
    other = FileLock(tmp_path / "owner.lock")
    assert not other.acquire(wait=False) and not other.acquire(shared=True, wait=False)
    held.close()
    assert other.acquire(wait=False)
    other.close()
    (tmp_path / "cache").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "cache" / ".lock")
    with pytest.raises(IntegrityError, match=r"cache/\.lock is not a regular file; refusing to use it"):
        VersionCache(tmp_path / "cache", keep=1).adopt(CountingStore(tmp_path / "store"), "v1", tmp_path)
    assert not (tmp_path / "elsewhere").exists()  # the link was not followed


def test_a_use_hashes_with_two_cpus_left_to_the_work_beside_it() -> None:
    assert [hash_threads(cpus) for cpus in (1, 2, 3, 4, 6, 16)] == [1, 1, 1, 2, 4, 4]
