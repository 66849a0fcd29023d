"""Signed versions: what a holder of write access to the store can no longer make a reader accept.

The attacker writes to the store directly (a local folder, or a bucket of a real moto server through its own
boto3 client): edits a signed manifest, signs one with a key of its own, removes signatures, writes its own
pointer, replays an old signed pointer, deletes the pointer. Readers with trusted keys refuse each, naming the
store, the version and the key id, and leave the store as it was; readers without trusted keys read old,
unsigned stores as before. Keys rotate without a version becoming unreadable.
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs import retention, versions
from jobs.config import TRUSTED_KEYS_ENV, GateConfig
from jobs.errors import SignatureError, VersionNotFound
from jobs.storage import signed
from jobs.storage.base import parse_pointer, pointer_body
from jobs.storage.publish import current, fetch_verified, read_manifest
from jobs.training import parent
from jobs.vectors import load_vectors
from tests.support.models import SMALL, digest, saved_model
from tests.support.s3server import DUMMY_ENV, MotoServer
from tests.support.signing import MANIFEST_KEY, Key, opened, version


@dataclass
class Place:
    """A store's URI and an attacker's raw access to it (none of the tool's code)."""

    uri: str
    put: Callable[[str, bytes], None]
    get: Callable[[str], bytes]
    delete: Callable[[str], None]
    snapshot: Callable[[], dict[str, Any]]  # every object, by its bytes (local) or its ETag (S3)


@pytest.fixture(params=["local", "s3"])
def place(
    request: pytest.FixtureRequest, tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Place]:
    for name in [n for n in os.environ if n.startswith(("AWS_", "EMBEDDING_REFRESH_"))]:
        monkeypatch.delenv(name)
    if request.param == "local":
        root = tmp_path / "store"

        def put_local(key: str, data: bytes) -> None:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)

        def files() -> dict[str, bytes]:
            return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

        yield Place(str(root), put_local, lambda k: (root / k).read_bytes(), lambda k: (root / k).unlink(), files)
        return
    for name, value in {**DUMMY_ENV, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(name, value)
    s3, bucket = boto3.client("s3", endpoint_url=moto.endpoint), f"signed-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)

    def objects() -> dict[str, Any]:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="models/").get("Contents", [])
        return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listing}

    yield Place(
        f"s3://{bucket}/models",
        lambda k, data: s3.put_object(Bucket=bucket, Key=f"models/{k}", Body=data),
        lambda k: s3.get_object(Bucket=bucket, Key=f"models/{k}")["Body"].read(),
        lambda k: s3.delete_object(Bucket=bucket, Key=f"models/{k}"),
        objects,
    )


def refused(call: Callable[[], Any], place: Place, *fragments: str) -> None:
    """``call`` raises SignatureError whose message holds each fragment, and leaves the store as it was."""
    before = place.snapshot()
    with pytest.raises(SignatureError) as caught:
        call()
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))
    assert place.snapshot() == before


def test_signed_versions_load_and_every_forgery_is_refused_naming_the_key(
    place: Place, keys: dict[str, Key], tmp_path: Path
) -> None:
    k1, k3 = keys["k1"], keys["k3"]
    writer = opened(place.uri, tmp_path, k1, (k1,), seen="writer")
    version(writer, tmp_path, "v1")
    version(writer, tmp_path, "v2")
    pointer = json.loads(place.get("CURRENT"))
    assert pointer["version"] == "v2" and pointer["signature"]["key_id"] == k1.id
    assert pointer["manifest_sha256"] and pointer["generation"] > 0
    assert parse_pointer(place.get("CURRENT"), "old reader") == "v2"  # what readers from before signing read
    assert json.loads(place.get(MANIFEST_KEY.format("v2") + ".sig"))["key_id"] == k1.id

    reader = opened(place.uri, tmp_path, trusted=(k1,))
    folder = fetch_verified(reader, "latest", tmp_path / "loaded")
    assert (folder / "model" / "vectors.npy").read_bytes() == b"v2" * 1000
    where = f"version v2 in {place.uri}"

    manifest, signature = place.get(MANIFEST_KEY.format("v2")), place.get(MANIFEST_KEY.format("v2") + ".sig")
    place.put(MANIFEST_KEY.format("v2"), manifest.replace(b'"parent": null', b'"parent": "v1"'))  # edited
    refused(lambda: read_manifest(reader, "latest"), place, where, f"signature by key {k1.id} does not match")
    forger = opened(place.uri, tmp_path, k3, seen="attacker")  # signs, checks nothing
    signed.resign_manifest(forger, "v2")  # the edited manifest, signed with the attacker's own key
    refused(lambda: read_manifest(reader, "v2"), place, where, f"signed by key {k3.id}, which is not trusted")
    place.delete(MANIFEST_KEY.format("v2") + ".sig")
    refused(lambda: read_manifest(reader, "v2"), place, where, "is not signed", "jobs.versions sign v2")
    place.put(MANIFEST_KEY.format("v2"), manifest)
    place.put(MANIFEST_KEY.format("v2") + ".sig", signature)
    assert read_manifest(reader, "latest")["version"] == "v2"

    genuine = place.get("CURRENT")
    place.put("CURRENT", pointer_body("v1"))  # a pointer as every writer wrote it before signing
    refused(lambda: read_manifest(reader, "latest"), place, f"{place.uri}/CURRENT (version v1", "is not signed")
    place.put("CURRENT", signed.new_pointer(forger, "v1", place.get(MANIFEST_KEY.format("v1")), None))
    refused(lambda: fetch_verified(reader, "latest", tmp_path / "x"), place, "(version v1", f"by key {k3.id}")
    # gc steered by the forged pointer to v1 would remove v2, the real current version: it stops, deleting nothing
    refused(lambda: retention.gc(reader, keep=1), place, "(version v1", f"by key {k3.id}")
    place.put("CURRENT", genuine.replace(b'"version": "v2"', b'"version": "v1"'))  # k1's signature, other version
    refused(lambda: current(reader), place, "(version v1", f"signature by key {k1.id} does not match")
    assert not (tmp_path / "x").exists()

    place.put("CURRENT", genuine)
    place.delete(MANIFEST_KEY.format("v2") + ".sig")
    assert read_manifest(forger, "latest")["version"] == "v2"  # no trusted key: read as before signing


def test_a_replayed_pointer_is_refused_once_a_newer_one_was_seen_unless_a_rollback_is_asked_for(
    place: Place, keys: dict[str, Key], tmp_path: Path
) -> None:
    k1 = keys["k1"]
    writer = opened(place.uri, tmp_path, k1, (k1,), seen="writer")
    version(writer, tmp_path, "v1")
    old = place.get("CURRENT")
    version(writer, tmp_path, "v2")
    newest = json.loads(place.get("CURRENT"))["generation"]
    reader = opened(place.uri, tmp_path, trusted=(k1,), seen="reader")
    assert read_manifest(reader, "latest")["version"] == "v2"

    place.put("CURRENT", old)  # the attacker replays v1's pointer, legitimately signed by k1
    replay = f"signed by key {k1.id}, is older than the pointer this host has already seen of the store (generation"
    refused(lambda: read_manifest(reader, "latest"), place, f"{place.uri}/CURRENT (version v1", f"{replay} {newest}")
    refused(lambda: versions.promote(writer, "v2"), place, replay)  # the writer saw v2 too: no promote over it
    rolled = opened(place.uri, tmp_path, trusted=(k1,), seen="reader", rollback=True)
    assert read_manifest(rolled, "latest")["version"] == "v1"  # accepted on request, and remembered:
    assert read_manifest(reader, "latest")["version"] == "v1"

    seen = ["--seen-dir", str(tmp_path / "hosts" / "writer")]
    cli = ["--store", place.uri, "--signing-key", k1.private, "--trusted-key", k1.public, *seen]
    assert versions.main(["promote", "v2", "--rollback", *cli]) == 0  # moves on, above every generation seen
    moved = json.loads(place.get("CURRENT"))
    assert moved["version"] == "v2" and moved["generation"] > newest and moved["signature"]["key_id"] == k1.id
    assert read_manifest(reader, "latest")["version"] == "v2"

    place.delete("CURRENT")  # a store that looks empty must not start a new lineage under readers that saw one
    refused(lambda: current(reader), place, f"{place.uri}/CURRENT is gone", "version v2", "--rollback")
    with pytest.raises(VersionNotFound):
        read_manifest(rolled, "latest")


def test_import_signs_and_load_vectors_export_and_the_parent_load_verify(
    keys: dict[str, Key], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k1, k2 = keys["k1"], keys["k2"]
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    path, expected = saved_model(tmp_path, *SMALL)
    uri, cache = str(tmp_path / "store"), tmp_path / "cache"
    flags = ["--signing-key", k1.private, "--trusted-key", k1.public, "--seen-dir", str(tmp_path / "seen")]
    assert versions.main(["import", str(path), "--kind", "gensim", "--store", uri, *flags]) == 0
    version = json.loads((Path(uri) / "CURRENT").read_bytes())["version"]
    assert (
        json.loads((Path(uri) / MANIFEST_KEY.format(version)).with_suffix(".json.sig").read_bytes())["key_id"] == k1.id
    )
    recorded = (Path(uri) / "versions" / version / "config.json").read_text()
    assert f'"{k1.private}"' not in recorded and '"signing_key": "given"' in recorded

    vectors, loaded = load_vectors(uri, cache_dir=cache, trusted_keys=[k1.public])
    assert (loaded, len(vectors), digest(vectors.vectors)) == (version, SMALL[0], expected)
    del vectors
    before = sorted(p.relative_to(uri) for p in Path(uri).rglob("*"))
    monkeypatch.setenv(TRUSTED_KEYS_ENV, k2.public)  # a service that trusts only another key
    with pytest.raises(SignatureError, match=f"signed by key {k1.id}, which is not trusted here \\(trusted: {k2.id}"):
        load_vectors(uri, cache_dir=cache)
    out = tmp_path / "vectors.txt"
    assert versions.main(["export", "latest", "--store", uri, "--output", str(out)]) == 3 and not out.exists()
    assert sorted(p.relative_to(uri) for p in Path(uri).rglob("*")) == before

    # The trainer's parent load, on the node the store is sent to: it verifies, and cannot sign.
    trainer_side = pickle.loads(pickle.dumps(opened(uri, tmp_path, k2, (k1, k2), seen="driver")))
    assert trainer_side.signing.key is None
    folder = parent.fetch(trainer_side, parent.ParentRequest(version, GateConfig()), tmp_path / "spool")
    assert (folder / "model" / "vectors.npy").is_file()
    new_only = pickle.loads(pickle.dumps(opened(uri, tmp_path, k2, (k2,), seen="driver")))
    with pytest.raises(SignatureError, match=f"the manifest of version {version} in {uri} is signed by key {k1.id}"):
        parent.fetch(new_only, parent.ParentRequest(version, GateConfig()), tmp_path / "spool-2")
    assert not (tmp_path / "spool-2").exists()
