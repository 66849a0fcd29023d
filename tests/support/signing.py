"""What the signing tests share: the manifest's key, key pairs, a store's keys and opened versions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobs.config import SigningConfig
from jobs.storage import Store, open_store, signed, signing
from jobs.storage.publish import current, publish

MANIFEST_KEY = "versions/{}/manifest.json"


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
