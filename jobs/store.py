"""Where model versions live: the ``Store`` interface and its local-filesystem implementation.

A store holds immutable files under ``versions/<version>/`` and one small pointer object, ``CURRENT``,
naming the current version. It offers only primitives; the publish protocol (files, then manifest, then one
conditional pointer write) and verified loading live once, in :mod:`jobs.publish`, for every store.

    >>> store = open_store("./models")                  # or "s3://bucket/prefix" (see jobs.s3store)
    >>> pointer = store.read_pointer()                   # None for an empty store
    >>> store.swap_pointer("20261124T020000Z-ab12cd", expected=pointer)

The local store writes every file to a temporary name, fsyncs it and renames it into place, and moves the
pointer under an exclusive lock with a compare-and-swap on the pointer's content hash (its "ETag").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jobs.errors import ConfigError, ConflictError, StoreError, VersionNotFound

POINTER = "CURRENT"
VERSIONS = "versions"


@dataclass(frozen=True)
class Pointer:
    """The current version and an opaque token (an ETag) that a conditional write must match."""

    version: str
    token: str


class Store(Protocol):
    """Primitives every model store offers. Keys are ``/``-separated, relative to the store root."""

    uri: str

    def read_pointer(self) -> Pointer | None: ...

    def swap_pointer(self, version: str, expected: Pointer | None) -> None:
        """Point at ``version`` if the pointer is still ``expected``; raise ConflictError otherwise."""
        ...

    def put_file(self, key: str, source: Path) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; raises VersionNotFound when it does not exist."""
        ...

    def get_file(self, key: str, destination: Path) -> None: ...

    def list_versions(self) -> list[str]: ...

    def delete_version(self, version: str) -> None: ...


def open_store(uri: str) -> Store:
    """The store for a local path or an ``s3://bucket/prefix`` URI."""
    if uri.startswith("s3://"):
        from jobs.s3store import S3Store  # boto3 is imported only when an S3 store is used

        return S3Store.from_uri(uri)
    if "://" in uri:
        raise ConfigError(f"unsupported store {uri!r}: use a local path or s3://bucket/prefix")
    return LocalStore(uri)


def pointer_body(version: str) -> bytes:
    """The pointer object's content, shared by every store so readers parse one format."""
    return (json.dumps({"version": version, "manifest": f"{VERSIONS}/{version}/manifest.json"}) + "\n").encode()


def parse_pointer(data: bytes, where: str) -> str:
    try:
        return str(json.loads(data)["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"the pointer {where} is not valid JSON with a 'version' field") from exc


class LocalStore:
    """A store in a local (or shared, POSIX) directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.uri = str(self.root)

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.uri,))

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise StoreError(f"key {key!r} escapes the store {self.uri}")
        return path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_pointer(self) -> Pointer | None:
        try:
            data = (self.root / POINTER).read_bytes()
        except FileNotFoundError:
            return None
        version = parse_pointer(data, f"{self.uri}/{POINTER}")
        return Pointer(version, hashlib.sha256(data).hexdigest())

    def swap_pointer(self, version: str, expected: Pointer | None) -> None:
        with self._locked():
            current = self.read_pointer()
            if current != expected:
                raise ConflictError(
                    version, current.version if current else None, expected.version if expected else None
                )
            self._atomic_write(self.root / POINTER, pointer_body(version))

    def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as reader:
            self._atomic_write(target, reader)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._atomic_write(target, data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise VersionNotFound(f"{self.uri}/{key} does not exist") from None

    def get_file(self, key: str, destination: Path) -> None:
        try:
            shutil.copyfile(self._path(key), destination)
        except FileNotFoundError:
            raise VersionNotFound(f"{self.uri}/{key} does not exist") from None

    def list_versions(self) -> list[str]:
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())

    def delete_version(self, version: str) -> None:
        shutil.rmtree(self._path(f"{VERSIONS}/{version}"), ignore_errors=True)

    @staticmethod
    def _atomic_write(target: Path, data: bytes | object) -> None:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes):
                    out.write(data)
                else:
                    shutil.copyfileobj(data, out, 8 << 20)  # type: ignore[arg-type,type-var]
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
            dirfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
