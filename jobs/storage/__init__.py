"""Where model versions live, and how a version is published and read back.

- ``base``: the ``Store`` protocol and the pointer format every store shares
- ``local``: a folder (or a mounted filesystem)
- ``s3``: S3 and S3-compatible object stores (the only module that imports boto3; imported lazily)
- ``manifest``: the typed manifest, parsed and checked in one place, kept byte for byte as read
- ``publish``: the publish protocol (one ``Draft`` per version): files, manifest with checksums, one conditional
  pointer write
- ``lease``: what a version still being written records first (its parent), so gc keeps that parent
- ``signing``, ``signed``: Ed25519 keys, and the signed manifests and pointers they make (docs/signing.md)

    >>> store = open_store("./models")                  # or "s3://bucket/prefix"
    >>> store = open_store("./models", signed.load(config.signing, cache))   # signs and verifies   # doctest: +SKIP
"""

from __future__ import annotations

from jobs.errors import ConfigError
from jobs.storage.base import Pointer, Store
from jobs.storage.local import LocalStore
from jobs.storage.signed import Signing

__all__ = ["LocalStore", "Pointer", "Signing", "Store", "open_store"]


def open_store(uri: str, signing: Signing = Signing()) -> Store:
    """The store for a local path or an ``s3://bucket/prefix`` URI; ``signing``: what this process signs its
    writes with and what it trusts (default: nothing signed, nothing checked)."""
    if uri.startswith("s3://"):
        from jobs.storage.s3 import S3Store  # boto3 is imported only when an S3 store is used

        return S3Store.from_uri(uri, signing=signing)
    if "://" in uri:
        raise ConfigError(f"unsupported store {uri!r}: use a local path or s3://bucket/prefix")
    return LocalStore(uri, signing)
