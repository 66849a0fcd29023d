"""A writer of the store forges a version: nothing the tool reads from a store runs code.

The attacker holds write access (a local folder, or an S3 bucket through a real moto server), replaces every
model file of the current version with a pickle that creates a file when unpickled, and rewrites the manifest's
checksums to match. ``jobs.versions export``, the readers' load and a refresh must refuse, and the file must never
appear. A version really written in the previous format (gensim's ``save()``) is refused the same way, read
only with ``--allow-pickle``, and converted once by ``jobs.versions convert``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pytest
from gensim.models import KeyedVectors

from jobs import versions
from jobs.config import from_args
from jobs.errors import ConfigError, IntegrityError, PickledModelError, RefreshError
from jobs.refresh import run
from jobs.storage import Store, open_store
from jobs.storage.publish import (
    MANIFEST,
    MODEL_DIR,
    fetch_verified,
    model_files,
    publish,
    read_manifest,
    version_key,
)
from jobs.training import model as gmodel
from jobs.training import serialize
from tests.support.corpora import clustered
from tests.support.files import write_parquet
from tests.support.flags import fast
from tests.support.forgery import planted_pickle
from tests.support.s3server import MotoServer

FAST = fast(max_in_flight=3)


@dataclass
class Target:
    """A store and the raw write access an attacker has to it (no use of the tool's own code)."""

    uri: str
    data: str
    put: Callable[[str, bytes], None]
    land: Callable[[str, list[str]], None]

    @property
    def store(self) -> Store:
        return open_store(self.uri)


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path, moto: MotoServer) -> Iterator[Target]:
    if request.param == "local":
        root = tmp_path / "models"

        def put_local(key: str, data: bytes) -> None:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)

        def land_local(key: str, docs: list[str]) -> None:
            write_parquet(tmp_path / "data" / key, docs)

        yield Target(str(root), str(tmp_path / "data"), put_local, land_local)
        return
    bucket = f"forged-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=moto.endpoint)
    s3.create_bucket(Bucket=bucket)

    def put_s3(key: str, data: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=f"models/{key}", Body=data)

    def land_s3(key: str, docs: list[str]) -> None:
        local = tmp_path / "staging" / key
        write_parquet(local, docs)
        s3.put_object(Bucket=bucket, Key=f"corpus/{key}", Body=local.read_bytes())

    yield Target(f"s3://{bucket}/models", f"s3://{bucket}/corpus", put_s3, land_s3)


def forge(target: Target, version: str, canary: Path, legacy: bool = False) -> list[str]:
    """Replace every model file of ``version`` with the planted pickle (or, with ``legacy``, make the version
    look like the previous format: one pickled ``embedding.model``), then rewrite the manifest to match."""
    manifest = read_manifest(target.store, version)
    evil = planted_pickle(canary)
    entry = {"size": len(evil), "sha256": hashlib.sha256(evil).hexdigest()}
    names = [n for n in manifest["files"] if n.startswith(f"{MODEL_DIR}/")]
    if legacy:
        for name in names:
            del manifest["files"][name]
        names = [f"{MODEL_DIR}/{serialize.LEGACY_FILE}"]
    for name in names:
        target.put(version_key(version, name), evil)
        manifest["files"][name] = entry
    target.put(version_key(version, MANIFEST), json.dumps(manifest).encode())
    return names


def read_like_a_service(store: Store) -> KeyedVectors:
    """What a service that consumes the vectors does: pointer → manifest → verified files → KeyedVectors."""
    manifest = read_manifest(store, "latest")
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_verified(store, "latest", Path(tmp), model_files(manifest))
        return serialize.load_keyed_vectors(folder / MODEL_DIR, mmap=None)


def test_a_forged_version_is_refused_everywhere_and_its_pickle_never_runs(
    target: Target, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = ["--input", target.data, "--store", target.uri, *FAST]
    target.land("dt=1/part-0.parquet", clustered(200, seed=1))
    first = run(from_args(args))
    canary = tmp_path / "planted-code-ran"
    forged = forge(target, first.version, canary)
    assert len(forged) >= 6 and f"{MODEL_DIR}/vectors.npy" in forged
    out = tmp_path / "vectors.txt"

    for flags in ([], ["--allow-pickle"]):  # the option cannot make a pickle-free version unpickle anything
        # IntegrityError: refused, exit 3 as in jobs/errors.py (this CLI exited 1 for every refusal before)
        assert versions.main(["export", "latest", "--store", target.uri, "--output", str(out), *flags]) == 3
        assert "refusing to load" in caplog.text and not out.exists()
    with pytest.raises(IntegrityError, match="refusing"):
        read_like_a_service(target.store)
    target.land("dt=2/part-0.parquet", clustered(50, seed=2))
    with pytest.raises(RefreshError, match="refusing"):
        run(from_args(args))
    assert target.store.read_pointer().version == first.version  # type: ignore[union-attr]
    assert target.store.list_versions() == [first.version]

    forge(target, first.version, canary, legacy=True)  # the forger makes it look like the previous format
    caplog.clear()
    assert versions.main(["export", "latest", "--store", target.uri, "--output", str(out)]) == 3
    assert "stores its model as a pickle" in caplog.text and "--allow-pickle" in caplog.text
    with pytest.raises(PickledModelError):
        read_like_a_service(target.store)
    with pytest.raises(PickledModelError, match="convert it once"):
        run(from_args(args))
    assert versions.main(["convert", "latest", "--store", target.uri]) == 2  # ConfigError: --allow-pickle is missing
    assert not canary.exists()


def write_legacy_version(store: Store, tmp_path: Path, parent: str) -> str:
    """A version as the previous release wrote it: gensim's save() and vectors.bin, next to the lineage's
    files (copied from ``parent``)."""
    manifest = read_manifest(store, parent)
    folder = fetch_verified(store, parent, tmp_path / "parent")
    model = gmodel.load(folder / MODEL_DIR)
    legacy = tmp_path / "legacy"
    (legacy / MODEL_DIR).mkdir(parents=True)
    model.save(str(legacy / MODEL_DIR / serialize.LEGACY_FILE), sep_limit=100)  # large arrays beside it, as .npy
    model.wv.save_word2vec_format(str(legacy / versions.LEGACY_VECTORS), binary=True)
    for name in manifest["files"]:
        if not name.startswith(f"{MODEL_DIR}/"):
            (legacy / name).write_bytes((folder / name).read_bytes())
    version = "20200101T000000Z-legacy"
    fields = {k: v for k, v in manifest.items() if k not in ("format", "version", "files")}
    publish(store, version, legacy, fields, expected=store.read_pointer())
    return version


def test_a_version_in_the_previous_format_is_read_only_on_request_and_converted_once(tmp_path: Path) -> None:
    data, uri = tmp_path / "data", str(tmp_path / "models")
    args = ["--input", str(data), "--store", uri, *FAST]
    write_parquet(data / "dt=1" / "part-0.parquet", clustered(200, seed=1))
    first = run(from_args(args))
    store = open_store(uri)
    legacy = write_legacy_version(store, tmp_path, first.version)
    assert any(name.endswith(".npy") and "embedding.model" in name for name in read_manifest(store, legacy)["files"])
    original = gmodel.load(fetch_verified(store, first.version, tmp_path / "original") / MODEL_DIR)

    out = tmp_path / "vectors.txt"
    assert versions.main(["export", legacy, "--store", uri, "--output", str(out)]) == 3 and not out.exists()
    write_parquet(data / "dt=2" / "part-0.parquet", clustered(50, seed=2, extra={1: ["novelaa"]}))
    with pytest.raises(PickledModelError, match=f"jobs.versions convert {legacy}"):
        run(from_args(args))
    with pytest.raises(ConfigError, match="--allow-pickle"):
        versions.convert(store, legacy, allow_pickle=False)

    assert versions.main(["export", legacy, "--store", uri, "--output", str(out), "--allow-pickle"]) == 0
    exported = KeyedVectors.load_word2vec_format(str(out))
    assert exported.index_to_key == original.wv.index_to_key
    assert np.allclose(exported.vectors, original.wv.vectors, atol=1e-6)

    message = versions.convert(store, legacy, allow_pickle=True)
    converted = store.read_pointer().version  # type: ignore[union-attr]
    assert converted not in (legacy, first.version) and "now the current version" in message
    manifest = read_manifest(store, converted)
    assert (manifest["parent"], manifest["converted_from"]) == (legacy, legacy)
    assert {"ledger.parquet", "config.json", f"{MODEL_DIR}/{serialize.PARAMS}"} <= set(manifest["files"])
    assert serialize.LEGACY_FILE not in " ".join(manifest["files"]) and versions.LEGACY_VECTORS not in manifest["files"]
    folder = fetch_verified(store, converted, tmp_path / "converted", model_files(manifest))
    model = gmodel.load(folder / MODEL_DIR)
    for name in ("vectors", "syn1neg", "cum_table"):
        array = getattr(model.wv, name, None) if name == "vectors" else getattr(model, name)
        reference = original.wv.vectors if name == "vectors" else getattr(original, name)
        assert np.array_equal(array, reference), name
    assert np.array_equal(model.wv.expandos["count"], original.wv.expandos["count"])

    second = run(from_args(args))  # the lineage carries on from the converted version
    assert (second.parent, second.partitions) == (converted, 1)
    assert "novelaa" in gmodel.load(fetch_verified(store, "latest", tmp_path / "second") / MODEL_DIR).wv.key_to_index
