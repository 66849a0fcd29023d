"""A signing refresh on the session's Ray cluster: it builds only on a parent signed by a trusted key, and signs
what it publishes. What a forger can no longer make a reader accept is in ``tests/component/test_signing.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import versions
from jobs.config import from_args
from jobs.errors import SignatureError, exit_status
from jobs.refresh import run
from jobs.storage import signed
from jobs.storage.publish import read_manifest
from tests.support.corpora import clustered
from tests.support.files import write_parquet
from tests.support.flags import fast
from tests.support.models import SMALL, saved_model
from tests.support.signing import MANIFEST_KEY, Key, opened

FAST = fast(max_in_flight=3)


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
    assert versions.main([*imported, "--signing-key", k1.private]) == 0  # signed, parent of the refresh
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
