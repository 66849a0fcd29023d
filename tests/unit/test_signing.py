"""Signing keys on local disk: rotation without a version becoming unreadable, an unsigned store signed once, key
files and flags, and no private key leaving the process. Forged stores on local disk and S3 are in
``tests/component/test_signing.py``; a signing refresh on Ray in ``tests/integration/test_signing.py``.
"""

from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path

import pytest

from jobs import versions
from jobs.config import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, SigningConfig, from_args, to_dict
from jobs.errors import ConfigError, SignatureError
from jobs.storage import Signing, signing
from jobs.storage.publish import read_manifest
from tests.support.signing import MANIFEST_KEY, Key, opened, version


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
    assert versions.main(["sign", "latest", "--store", uri, "--signing-key", k1.private]) == 0  # vouch for it once
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
    message = versions.sign(opened(uri, tmp_path, k2, both, seen="w2"), ["v1", "v0"])
    assert message == f"signed v1, v0 with key {k2.id}"
    assert [read_manifest(new_only, v)["version"] for v in ("v0", "v1")] == ["v0", "v1"]
    assert signer("v1") == k2.id and json.loads(versions.show(new_only, "v1"))["signed_by"] == k2.id

    with pytest.raises(ConfigError, match=f"the signing key {k1.id} is not among the trusted keys"):
        opened(uri, tmp_path, k1, (k2,))
    edited = Path(uri) / MANIFEST_KEY.format("v2")
    edited.write_bytes(edited.read_bytes().replace(b'"parent": null', b'"parent": "v0"'))
    signature = edited.with_suffix(".json.sig").read_bytes()
    assert versions.main(["sign", "v2", "--store", uri, "--signing-key", k2.private, "--trusted-key", k2.public]) == 3
    assert edited.with_suffix(".json.sig").read_bytes() == signature  # sign checks before it vouches


def test_key_files_flags_and_what_never_leaves_the_process(
    keys: dict[str, Key], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "new.pem"
    assert versions.main(["keygen", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(Path(f"{out}.pub").stat().st_mode) == 0o644
    private = out.read_bytes()
    assert versions.main(["keygen", "--out", str(out)]) == 2 and out.read_bytes() == private  # never overwritten

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
