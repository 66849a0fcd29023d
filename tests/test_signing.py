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
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs import models, retention
from jobs.config import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, GateConfig, SigningConfig, from_args, to_dict
from jobs.errors import ConfigError, SignatureError, VersionNotFound, exit_status
from jobs.refresh import run
from jobs.storage import Signing, Store, open_store, signed, signing
from jobs.storage.base import parse_pointer, pointer_body
from jobs.storage.publish import current, fetch_verified, publish, read_manifest
from jobs.training import parent
from jobs.vectors import load_vectors
from tests.conftest import write_parquet
from tests.corpora import clustered
from tests.s3server import DUMMY_ENV, MotoServer
from tests.test_vectors import SMALL, digest, saved_model

MANIFEST_KEY = "versions/{}/manifest.json"
FAST = ["--workers", "2", "--vector-size", "16", "--epochs", "2", "--min-count", "1", "--max-in-flight", "3"]


@dataclass(frozen=True)
class Key:
    """A key pair on disk: the private key's file, its public key's file, its id."""

    private: str
    public: str
    id: str


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    """k1 and k2: the owner's (old and new); k3: a key the attacker made."""
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name in ("k1", "k2", "k3"):
        key = signing.generate(folder / f"{name}.pem")
        made[name] = Key(str(folder / f"{name}.pem"), str(folder / f"{name}.pem.pub"), key.key_id)
    return made


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


def opened(uri: str, tmp_path: Path, key: Key | None = None, trusted: tuple[Key, ...] = (), **options: Any) -> Store:
    """The store as one host sees it: signing with ``key``, trusting ``trusted``; ``seen``: the host's name."""
    config = SigningConfig(
        signing_key=key.private if key else None,
        trusted_keys=tuple(k.public for k in trusted),
        allow_rollback=options.get("rollback", False),
        seen_dir=str(tmp_path / "hosts" / options.get("seen", "reader")),
    )
    return open_store(uri, signed.load(config, tmp_path))


def version(store: Store, tmp_path: Path, name: str) -> dict[str, Any]:
    """Publish a small version ``name`` (the files a reader fetches) and move the pointer to it."""
    folder = tmp_path / "out" / name
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "params.json").write_text(json.dumps({"version": name}))
    (folder / "model" / "vectors.npy").write_bytes(name.encode() * 1000)
    return publish(store, name, folder, {"parent": None}, expected=current(store))


def refused(call: Callable[[], Any], place: Place, *fragments: str) -> None:
    """``call`` raises SignatureError whose message holds each fragment, and leaves the store as it was."""
    before = place.snapshot()
    with pytest.raises(SignatureError) as caught:
        call()
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))
    assert place.snapshot() == before


@pytest.mark.component
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
    refused(lambda: read_manifest(reader, "v2"), place, where, "is not signed", "jobs.models sign v2")
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


@pytest.mark.component
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
    refused(lambda: models.promote(writer, "v2"), place, replay)  # the writer saw v2 too: no promote over it
    rolled = opened(place.uri, tmp_path, trusted=(k1,), seen="reader", rollback=True)
    assert read_manifest(rolled, "latest")["version"] == "v1"  # accepted on request, and remembered:
    assert read_manifest(reader, "latest")["version"] == "v1"

    seen = ["--seen-dir", str(tmp_path / "hosts" / "writer")]
    cli = ["--store", place.uri, "--signing-key", k1.private, "--trusted-key", k1.public, *seen]
    assert models.main(["promote", "v2", "--rollback", *cli]) == 0  # moves on, above every generation seen
    moved = json.loads(place.get("CURRENT"))
    assert moved["version"] == "v2" and moved["generation"] > newest and moved["signature"]["key_id"] == k1.id
    assert read_manifest(reader, "latest")["version"] == "v2"

    place.delete("CURRENT")  # a store that looks empty must not start a new lineage under readers that saw one
    refused(lambda: current(reader), place, f"{place.uri}/CURRENT is gone", "version v2", "--rollback")
    with pytest.raises(VersionNotFound):
        read_manifest(rolled, "latest")


@pytest.mark.unit
def test_keys_rotate_without_a_version_becoming_unreadable_and_an_unsigned_store_is_signed_once(
    keys: dict[str, Key], tmp_path: Path
) -> None:
    k1, k2 = keys["k1"], keys["k2"]
    uri = str(tmp_path / "store")

    def signer(name: str) -> str:
        return str(json.loads((Path(uri) / MANIFEST_KEY.format(name)).with_suffix(".json.sig").read_bytes())["key_id"])

    version(opened(uri, tmp_path), tmp_path, "v0")  # before signing
    old_reader = opened(uri, tmp_path, trusted=(k1,), seen="old")
    with pytest.raises(SignatureError, match="is not signed"):
        read_manifest(old_reader, "latest")
    assert models.main(["sign", "latest", "--store", uri, "--signing-key", k1.private]) == 0  # vouch for it once
    assert read_manifest(old_reader, "latest")["version"] == "v0"

    version(opened(uri, tmp_path, k1, (k1,), seen="w1"), tmp_path, "v1")
    both = (k1, k2)  # rotation, 1: readers trust the new key too; 2: the trainer signs with it
    version(opened(uri, tmp_path, k2, both, seen="w2"), tmp_path, "v2")
    reader = opened(uri, tmp_path, trusted=both, seen="both")
    assert [read_manifest(reader, v)["version"] for v in ("v0", "v1", "v2", "latest")] == ["v0", "v1", "v2", "v2"]
    new_only = opened(uri, tmp_path, trusted=(k2,), seen="new")
    assert read_manifest(new_only, "latest")["version"] == "v2"
    with pytest.raises(SignatureError, match=f"version v1 in {uri} is signed by key {k1.id}, which is not trusted"):
        read_manifest(new_only, "v1")

    # 3: sign what must stay readable with the new key, while the old one is still trusted; 4: drop the old key
    message = models.sign(opened(uri, tmp_path, k2, both, seen="w2"), ["v1", "v0"])
    assert message == f"signed v1, v0 with key {k2.id}"
    assert [read_manifest(new_only, v)["version"] for v in ("v0", "v1")] == ["v0", "v1"]
    assert signer("v1") == k2.id and json.loads(models.show(new_only, "v1"))["signed_by"] == k2.id

    with pytest.raises(ConfigError, match=f"the signing key {k1.id} is not among the trusted keys"):
        opened(uri, tmp_path, k1, (k2,))
    edited = Path(uri) / MANIFEST_KEY.format("v2")
    edited.write_bytes(edited.read_bytes().replace(b'"parent": null', b'"parent": "v0"'))
    signature = edited.with_suffix(".json.sig").read_bytes()
    assert models.main(["sign", "v2", "--store", uri, "--signing-key", k2.private, "--trusted-key", k2.public]) == 3
    assert edited.with_suffix(".json.sig").read_bytes() == signature  # sign checks before it vouches


@pytest.mark.unit
def test_key_files_flags_and_what_never_leaves_the_process(
    keys: dict[str, Key], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "new.pem"
    assert models.main(["keygen", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(Path(f"{out}.pub").stat().st_mode) == 0o644
    private = out.read_bytes()
    assert models.main(["keygen", "--out", str(out)]) == 2 and out.read_bytes() == private  # never overwritten

    key = signing.load_signing_key(keys["k1"].private)
    assert key.key_id == keys["k1"].id and keys["k1"].id not in private.decode()
    raw = tmp_path / "raw"
    raw.write_bytes(key.public)
    both = tmp_path / "both.pub"
    both.write_bytes(Path(keys["k1"].public).read_bytes() + Path(keys["k2"].public).read_bytes())
    assert signing.load_trusted_keys([raw]).ids == [keys["k1"].id]
    assert signing.load_trusted_keys([both]).ids == sorted([keys["k1"].id, keys["k2"].id])
    with pytest.raises(ConfigError, match="holds a PRIVATE key"):
        signing.load_trusted_keys([keys["k1"].private])
    with pytest.raises(ConfigError, match=f"the signing key {both} is not an unencrypted PEM Ed25519 private key"):
        signing.load_signing_key(both)
    pasted = Path(keys["k1"].private).read_text()  # the key itself where its file's path belongs: never echoed
    with pytest.raises(ConfigError, match=r"must be given as the path of a file; the value given is not one") as e:
        signing.load_signing_key(pasted)
    assert "PRIVATE" not in str(e.value)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a key")
    with pytest.raises(ConfigError, match=f"the trusted key file {garbage} holds no PEM public key"):
        signing.load_trusted_keys([garbage])

    store = opened(str(tmp_path / "store"), tmp_path, keys["k1"], (keys["k1"],))
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(store.signing.key)
    shipped = pickle.loads(pickle.dumps(store))  # as the store travels to the trainer's node
    assert shipped.signing == Signing(None, store.signing.trusted, store.signing.seen, False)
    assert repr(store.signing.key) == f"SigningKey(key_id='{keys['k1'].id}')"

    environ = {SIGNING_KEY_ENV: keys["k1"].private, TRUSTED_KEYS_ENV: f"{keys['k1'].public}:{keys['k2'].public}"}
    config = from_args(["--input", "in", "--store", "models"], environ)
    assert config.signing == SigningConfig(keys["k1"].private, (keys["k1"].public, keys["k2"].public))
    config = from_args(["--input", "in", "--store", "m", "--trusted-key", "a.pub", "--allow-rollback"], environ)
    assert (config.signing.trusted_keys, config.signing.allow_rollback) == (("a.pub",), True)
    recorded = json.dumps(to_dict(config))
    assert keys["k1"].private not in recorded and '"signing_key": "given"' in recorded


@pytest.mark.component
def test_import_signs_and_load_vectors_export_and_the_parent_load_verify(
    keys: dict[str, Key], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k1, k2 = keys["k1"], keys["k2"]
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    path, expected = saved_model(tmp_path, *SMALL)
    uri, cache = str(tmp_path / "store"), tmp_path / "cache"
    flags = ["--signing-key", k1.private, "--trusted-key", k1.public, "--seen-dir", str(tmp_path / "seen")]
    assert models.main(["import", str(path), "--kind", "gensim", "--store", uri, *flags]) == 0
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
    assert models.main(["export", "latest", "--store", uri, "--output", str(out)]) == 3 and not out.exists()
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


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
def test_a_signing_refresh_builds_only_on_a_parent_signed_by_a_trusted_key_and_signs_what_it_publishes(
    keys: dict[str, Key], tmp_path: Path
) -> None:
    k1, k2 = keys["k1"], keys["k2"]
    data, store = tmp_path / "data", tmp_path / "models"
    seen = ["--seen-dir", str(tmp_path / "seen")]
    write_parquet(data / "dt=1" / "part-0.parquet", clustered(100, seed=1))
    path, _ = saved_model(tmp_path, *SMALL)
    imported = ["import", str(path), "--kind", "gensim", "--store", str(store), "--mark-consumed", str(data), *seen]
    assert models.main([*imported, "--signing-key", k1.private]) == 0  # signed, parent of the refresh
    parent_version = json.loads((store / "CURRENT").read_bytes())["version"]
    write_parquet(data / "dt=2" / "part-0.parquet", clustered(100, seed=2))

    argv = ["--input", str(data), "--store", str(store), *FAST, *seen]
    manifest = store / MANIFEST_KEY.format(parent_version)
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b'"tokens": 0', b'"tokens": 1'))  # the parent, edited after signing
    before = sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if "runs" not in p.parts)
    with pytest.raises(SignatureError, match=f"version {parent_version} in {store}: the signature by key {k1.id}"):
        run(from_args([*argv, "--trusted-key", k1.public]))  # refused in its first step, before any work
    manifest.write_bytes(original)
    with pytest.raises(SignatureError, match=f"signed by key {k1.id}, which is not trusted here") as refusal:
        run(from_args([*argv, "--signing-key", k2.private, "--trusted-key", k2.public]))
    assert exit_status(refusal.value) == 3
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if "runs" not in p.parts) == before

    # The parent is checked on the driver, then again on the trainer's node, which receives the store without
    # the private key; the driver signs the new version and the pointer.
    published = run(from_args([*argv, "--signing-key", k1.private, "--trusted-key", k1.public]))
    pointer = json.loads((store / "CURRENT").read_bytes())
    assert (pointer["version"], pointer["signature"]["key_id"]) == (published.version, k1.id)
    reader = opened(str(store), tmp_path, trusted=(k1,))
    assert read_manifest(reader, "latest")["parent"] == parent_version
    assert signed.signer(reader, str(published.version)) == k1.id
