"""Where model versions live, and how a version is published and read back.

- ``base``: the ``Store`` protocol and the pointer format every store shares
- ``local``: a folder (or a mounted filesystem)
- ``s3``: S3 and S3-compatible object stores (the only module that imports boto3; imported lazily)
- ``publish``: the publish protocol: files, manifest with checksums, one conditional pointer write
- ``lease``: what a version still being written records first (its parent), so gc keeps that parent

    >>> store = open_store("./models")                  # or "s3://bucket/prefix"
"""

from __future__ import annotations

from jobs.errors import ConfigError
from jobs.storage.base import Pointer, Store
from jobs.storage.local import LocalStore

__all__ = ["LocalStore", "Pointer", "Store", "open_store"]


def open_store(uri: str) -> Store:
    """The store for a local path or an ``s3://bucket/prefix`` URI."""
    if uri.startswith("s3://"):
        from jobs.storage.s3 import S3Store  # boto3 is imported only when an S3 store is used

        return S3Store.from_uri(uri)
    if "://" in uri:
        raise ConfigError(f"unsupported store {uri!r}: use a local path or s3://bucket/prefix")
    return LocalStore(uri)
