"""The model store on a local (or mounted) filesystem.

The local store writes every file to a temporary name, fsyncs it and renames it into place, and moves the
pointer under an exclusive lock with a compare-and-swap on the pointer's content hash (its "ETag").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jobs.errors import ConflictError, StoreError, VersionNotFound
from jobs.storage.base import POINTER, VERSIONS, Pointer, parse_pointer, pointer_body


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

    def probe(self) -> None:
        """Nothing to check: the pointer's compare-and-swap runs under this store's own lock."""

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
        self._atomic_write(target, source)

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

    def copy(self, source: str, key: str) -> None:
        """A hard link (files are immutable, so sharing their bytes is safe); a copy where links fail."""
        origin, target = self._path(source), self._path(key)
        if not origin.is_file():
            raise VersionNotFound(f"{self.uri}/{source} does not exist")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(origin, target)
        except OSError:  # another filesystem, or one without hard links
            self._atomic_write(target, origin)

    def list_versions(self) -> list[str]:
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())

    def list_incomplete(self) -> dict[str, float]:
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return {}
        found = {}
        for version in folder.iterdir():
            if version.is_dir() and not (version / "manifest.json").exists():
                times = [p.stat().st_mtime for p in version.rglob("*")]
                found[version.name] = max(times, default=version.stat().st_mtime)
        return found

    def list_keys(self, folder: str) -> list[str]:
        base = self._path(folder)
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot delete {path}: {exc.strerror or exc}") from None
        self._fsync_dir(path.parent)

    def delete_version(self, version: str) -> None:
        folder = self._path(f"{VERSIONS}/{version}")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / "manifest.json")  # first: from here on the version is no longer listed
                self._fsync_dir(folder)
            shutil.rmtree(folder)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(
                f"cannot delete {folder}: {exc.strerror or exc}; it is no longer listed, rerun the deletion"
            ) from None

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        dirfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)

    @staticmethod
    def _atomic_write(target: Path, data: bytes | Path) -> None:
        """Write ``data`` (bytes, or a file's contents, copied by the kernel where it can) to a temporary file
        beside ``target``, make it durable, then rename it into place."""
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            if isinstance(data, bytes):
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
            else:
                os.close(fd)
                shutil.copyfile(data, tmp)  # copy_file_range or sendfile: the bytes never cross into Python
                synced = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(synced)
                finally:
                    os.close(synced)
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
