"""``load_vectors``, the readers' entry point: verified loads, a cache that downloads a version once per host,
and a tampered cache detected and fetched again. Loads run in fresh processes, as services start."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from jobs.errors import IntegrityError, VersionNotFound
from jobs.storage import open_store
from jobs.storage.publish import read_manifest
from jobs.vectors import load_vectors, reader_files
from jobs.versions import main as versions_main
from tests.support import REPO
from tests.support.models import SMALL, digest, saved_model
from tests.support.s3server import DUMMY_ENV, FaultProxy, MotoServer

# Two sizes of model; in the store's format every array is its own .npy file, memory-mapped at any size.
BIG = (32_768, 320)  # 10,485,760 elements

LOAD = """
import json, logging, sys, hashlib
import numpy as np
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
from jobs.vectors import load_vectors
vectors, version = load_vectors(sys.argv[1], cache_dir=sys.argv[2], mmap="r")
print(json.dumps({"version": version, "words": len(vectors), "mmap": isinstance(vectors.vectors, np.memmap),
                  "digest": hashlib.sha256(np.ascontiguousarray(vectors.vectors).tobytes()).hexdigest()}))
"""


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return saved_model(tmp_path_factory.mktemp("big"), *BIG)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return saved_model(tmp_path_factory.mktemp("small"), *SMALL)


def load_in_new_process(store: str, cache: Path, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, store, str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def cached_files(cache: Path) -> dict[str, tuple[int, int]]:
    """Each cached file with its inode and mtime: a download writes new files."""
    return {
        p.relative_to(cache).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in cache.rglob("*")
        if p.is_file() and p.name not in (".lock", "entry.json")  # the lock, and the entry's last use
    }


def tamper(cache: Path) -> Path:
    """Flip one byte in the middle of the largest cached file (same size, other content)."""
    victim = max((p for p in cache.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    return victim


def load_here(store: str, cache: Path) -> dict[str, Any]:
    """:func:`load_vectors` in this process, reported as the subprocess reports it."""
    vectors, version = load_vectors(store, cache_dir=cache, mmap="r")
    return {"version": version, "words": len(vectors), "mmap": isinstance(vectors.vectors, np.memmap),
            "digest": digest(vectors.vectors)}  # fmt: skip


def test_local_store_second_load_comes_from_the_cache_and_tampering_is_caught(
    big_model: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, expected = big_model
    store, cache = tmp_path / "store", tmp_path / "cache"
    assert versions_main(["import", str(path), "--store", str(store), "--kind", "gensim"]) == 0
    version = read_manifest(open_store(str(store)), "latest")["version"]

    caplog.set_level(logging.INFO, logger="jobs.storage.cache")
    first = load_here(str(store), cache)
    assert first == {"version": version, "words": BIG[0], "mmap": True, "digest": expected}
    assert "downloaded to the cache" in caplog.text
    files = cached_files(cache)
    assert any(name.endswith(".npy") for name in files)

    second, log = load_in_new_process(str(store), cache)
    assert second == first and "from the cache" in log and "downloaded" not in log
    assert cached_files(cache) == files  # nothing was written again

    victim = tamper(cache)
    caplog.clear()
    assert load_here(str(store), cache) == first
    assert "fails its checksums; fetching it again" in caplog.text and "differs from the manifest" in caplog.text
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == next(
        entry["sha256"]
        for name, entry in read_manifest(open_store(str(store)), version)["files"].items()
        if name.endswith(victim.name)
    )


def test_in_process_load_returns_vectors_and_version_and_refuses_a_bad_store(
    big_model: tuple[Path, str], tmp_path: Path
) -> None:
    path, expected = big_model
    store = tmp_path / "store"
    with pytest.raises(VersionNotFound, match="has no current version"):
        load_vectors(str(store), cache_dir=tmp_path / "cache")
    assert versions_main(["import", str(path), "--store", str(store), "--kind", "gensim"]) == 0
    vectors, version = load_vectors(str(store), cache_dir=tmp_path / "cache")  # mmap=None: in memory
    assert not isinstance(vectors.vectors, np.memmap) and digest(vectors.vectors) == expected
    assert load_vectors(str(store), version, cache_dir=tmp_path / "cache").version == version

    stored = next((store / "versions" / version / "model").glob("*vectors.npy"))
    stored.write_bytes(stored.read_bytes()[:-8] + b"\x00" * 8)  # the store's own copy damaged
    with pytest.raises(IntegrityError, match="differs from the manifest"):
        load_vectors(str(store), cache_dir=tmp_path / "fresh-cache")


@pytest.fixture
def s3_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FaultProxy]]:
    """A bucket on moto, reached through a proxy that records every request; the environment points at it."""
    for name in [n for n in os.environ if n.startswith(("AWS_", "EMBEDDING_REFRESH_S3_"))]:
        monkeypatch.delenv(name)
    for name, value in {**DUMMY_ENV, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        monkeypatch.setenv(name, value)
    bucket = f"vectors-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket=bucket)
    with FaultProxy(moto.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        yield f"s3://{bucket}/models", proxy


def gets(proxy: FaultProxy, part: str) -> int:
    return sum(1 for s in list(proxy.seen) if s.method == "GET" and part in s.path)


def test_s3_store_downloads_once_per_host(
    small_model: tuple[Path, str], s3_env: tuple[str, FaultProxy], tmp_path: Path
) -> None:
    store, proxy = s3_env
    path, expected = small_model
    assert versions_main(["import", str(path), "--store", store, "--kind", "gensim"]) == 0
    manifest = read_manifest(open_store(store), "latest")
    model_keys = reader_files(manifest)  # a reader needs no output layer nor training tables
    assert len(model_keys) == 4 < len([name for name in manifest["files"] if name.startswith("model/")])

    proxy.seen.clear()
    first = load_here(store, tmp_path / "cache")
    assert first == {"version": manifest["version"], "words": SMALL[0], "mmap": True, "digest": expected}
    assert gets(proxy, "/model/") == len(model_keys)

    proxy.seen.clear()
    second, _ = load_in_new_process(store, tmp_path / "cache")
    assert second == first
    assert gets(proxy, "/model/") == 0  # served from the cache
    assert gets(proxy, "/CURRENT") == 1 and gets(proxy, "/manifest.json") == 1

    victim = tamper(tmp_path / "cache")
    proxy.seen.clear()
    assert load_here(store, tmp_path / "cache") == first
    assert [s.path.rsplit("/", 1)[1] for s in list(proxy.seen) if s.method == "GET" and "/model/" in s.path] == [
        victim.name
    ]  # only the damaged file is fetched again

    # Two processes starting together on a cold cache: one downloads, the other waits for it.
    proxy.seen.clear()
    script = [sys.executable, "-c", LOAD, store, str(tmp_path / "shared")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    running = [subprocess.Popen(script, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in running]
    assert all(p.returncode == 0 for p in running), [err[-2000:] for _, err in outputs]
    assert {json.loads(out.splitlines()[-1])["digest"] for out, _ in outputs} == {expected}
    assert gets(proxy, "/model/") == len(model_keys)


def test_the_cache_keeps_the_most_recently_used_versions(small_model: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = small_model
    store, cache = str(tmp_path / "store"), tmp_path / "cache"
    versions = []
    for flags in ([], ["--new-lineage"], ["--new-lineage"]):
        assert versions_main(["import", str(path), "--store", store, "--kind", "gensim", *flags]) == 0
        versions.append(load_vectors(store, cache_dir=cache, keep=2).version)
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(set(versions)) == 3 and len(entries) == 2
    assert load_vectors(store, versions[1], cache_dir=cache, keep=2).version == versions[1]  # still cached
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2
