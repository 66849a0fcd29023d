"""The model store on a local (or mounted) filesystem.

The local store writes every file to a temporary name, fsyncs it and renames it into place, and moves the
pointer under an exclusive lock with a compare-and-swap on the pointer's content hash (its "ETag").

It reads only regular files, reached one path part at a time without following a symbolic link below the
store's root (the root itself may be one) and without blocking on a FIFO: whoever can write to the folder
cannot make a reader read another file of the machine, or hang it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from jobs.errors import ConflictError, IntegrityError, StoreError, VersionNotFound
from jobs.storage.base import POINTER, VERSIONS, Pointer, parse_pointer, pointer_body, too_large
from jobs.storage.locks import locked
from jobs.storage.names import MANIFEST, POINTER_LIMIT
from jobs.storage.signed import Signing

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO opens without a writer


class LocalStore:
    """A store in a local (or shared, POSIX) directory."""

    takes_files_in_place = True  # put_file(final=True) links a file on the same filesystem

    def __init__(self, root: str | os.PathLike[str], signing: Signing = Signing()) -> None:
        self.root = Path(root).absolute()
        self.uri = str(self.root)
        self.signing = signing

    def __reduce__(self) -> tuple[type, tuple[str, Signing]]:
        return (type(self), (self.uri, self.signing))

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise StoreError(f"key {key!r} escapes the store {self.uri}")
        return path

    def _open(self, key: str) -> tuple[int, int]:
        """A read-only descriptor of the regular file at ``key`` and its size. Each folder below the root is
        opened without following a symbolic link, then the file itself, non-blocking. Raises VersionNotFound
        (no such file), IntegrityError (a symbolic link, a FIFO or anything but a regular file), StoreError."""
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise StoreError(f"invalid key {key!r} in the store {self.uri}")
        where = f"{self.uri}/{key}"
        fd = -1
        try:
            folder = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for part in parts[:-1]:
                    inner = os.open(part, _DIRECTORY, dir_fd=folder)
                    os.close(folder)
                    folder = inner
                fd = os.open(parts[-1], _FILE, dir_fd=folder)
            finally:
                os.close(folder)
            status = os.fstat(fd)
        except FileNotFoundError:
            raise VersionNotFound(f"{where} does not exist") from None
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
                raise IntegrityError(
                    f"{where} is not a regular file in the store (a symbolic link, a socket, or under one that is "
                    "not a folder); refusing to read it"
                ) from None
            raise StoreError(f"cannot read {where}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(status.st_mode):
            os.close(fd)
            raise IntegrityError(f"{where} is not a regular file ({_kind(status.st_mode)}); refusing to read it")
        return fd, status.st_size

    def _read(self, key: str, limit: int | None) -> bytes:
        fd, size = self._open(key)
        with os.fdopen(fd, "rb") as handle:
            if limit is not None and size > limit:
                raise too_large(f"{self.uri}/{key}", size, limit)
            data = handle.read() if limit is None else handle.read(limit + 1)
        if limit is not None and len(data) > limit:  # it grew since fstat
            raise too_large(f"{self.uri}/{key}", len(data), limit)
        return data

    def _locked(self) -> contextlib.AbstractContextManager[Any]:
        # the one file lock (jobs.storage.locks): a FIFO or a link planted at .lock is refused, not waited on
        return locked(self.root / ".lock", label=f"{self.uri}/.lock")

    def read_pointer(self) -> Pointer | None:
        try:
            data = self._read(POINTER, POINTER_LIMIT)
        except VersionNotFound:
            return None
        version = parse_pointer(data, f"{self.uri}/{POINTER}")
        return Pointer(version, hashlib.sha256(data).hexdigest(), data)

    def probe(self) -> None:
        """Nothing to check: the pointer's compare-and-swap runs under this store's own lock."""

    def swap_pointer(self, version: str, expected: Pointer | None, body: bytes | None = None) -> None:
        with self._locked():
            current = self.read_pointer()
            if current != expected:
                raise ConflictError(
                    version, current.version if current else None, expected.version if expected else None
                )
            self._atomic_write(self.root / POINTER, pointer_body(version) if body is None else body)

    def put_file(self, key: str, source: Path, final: bool = False) -> None:
        """Copy ``source`` in (by the kernel), or with ``final`` (the caller never writes that file again) link
        it in where it is on the same filesystem: its bytes are then written once, by whoever wrote them first,
        and made durable here as a copy would be. Either way the store's file is read-only to others (0600)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._atomic_write(target, source, link=final)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._atomic_write(target, data)

    def get_bytes(self, key: str, limit: int | None = None) -> bytes:
        return self._read(key, limit)

    def get_file(self, key: str, destination: Path) -> None:
        fd, _ = self._open(key)
        with os.fdopen(fd, "rb") as source:
            # O_NOFOLLOW: a link planted at the destination is replaced by nothing, never written through
            out = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            with os.fdopen(out, "wb") as target:
                _copy(source, target)

    def copy(self, source: str, key: str) -> None:
        """A hard link (files are immutable, so sharing their bytes is safe); a copy where links fail. Only a
        regular file is linked or copied (:meth:`_open`)."""
        os.close(self._open(source)[0])
        origin, target = self._path(source), self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(origin, target, follow_symlinks=False)
        except OSError:  # another filesystem, or one without hard links
            self._atomic_write(target, origin)

    def list_versions(self) -> list[str]:
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / MANIFEST).is_file())

    def list_incomplete(self) -> dict[str, float]:
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return {}
        found = {}
        for version in folder.iterdir():
            if version.is_dir() and not (version / MANIFEST).exists():
                times = [p.stat().st_mtime for p in version.rglob("*")]
                found[version.name] = max(times, default=version.stat().st_mtime)
        return found

    def list_keys(self, folder: str, limit: int | None = None) -> list[str]:
        """A folder's names are listed whole (a directory has no order to stop early in); only ``limit`` are
        returned, so the callers read only those."""
        base = self._path(folder)
        if not base.is_dir():
            return []
        keys = sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        return keys if limit is None else keys[:limit]

    def delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            try:
                os.unlink(self._path(key))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot delete {self.uri}/{key}: {exc.strerror or exc}") from None

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
                os.unlink(folder / MANIFEST)  # first: from here on the version is no longer listed
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
    def _atomic_write(target: Path, data: bytes | Path, link: bool = False) -> None:
        """Write ``data`` (bytes, or a file's contents, copied by the kernel where it can, or with ``link`` a
        hard link to the file where it is on the same filesystem) to a temporary name beside ``target``, make
        it durable, then rename it into place."""
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            if isinstance(data, bytes):
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
            else:
                os.close(fd)
                if not (link and _linked(data, tmp)):
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


def _linked(source: Path, tmp: str) -> bool:
    """Replace the temporary file ``tmp`` by a hard link to the regular file ``source``, made 0600 as the
    store's own files are; False where the filesystem cannot link it there (``tmp`` is then as it was, for
    the caller to copy into). The link is made beside it first, so ``tmp`` is never a free name."""
    staged = f"{tmp}.link"
    try:
        os.link(source, staged, follow_symlinks=False)
    except OSError:
        return False
    try:
        fd = os.open(staged, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{source} is not a regular file")
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        os.replace(staged, tmp)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        return False
    return True


def _copy(source: BinaryIO, target: BinaryIO) -> None:
    """Copy an open file to another by the kernel (sendfile), in Python where the kernel cannot."""
    offset = 0
    try:
        while sent := os.sendfile(target.fileno(), source.fileno(), offset, 1 << 30):
            offset += sent
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) or offset:
            raise
        shutil.copyfileobj(source, target, 8 << 20)


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a device or special file")
