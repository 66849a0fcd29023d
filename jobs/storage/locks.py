"""The one file lock of this project: ``flock`` on a lock file, for processes of one host.

    with locked(root / ".lock"):                    # exclusive: one process at a time   # doctest: +SKIP
            write_something()
    with locked(root / ".lock", shared=True):       # many readers, no writer            # doctest: +SKIP
            read_something()
    owner = FileLock(spool / ".owner.lock")         # held for the life of the process   # doctest: +SKIP
    owner.acquire()                                 # (the kernel releases it however the process dies)
    FileLock(other / ".owner.lock").acquire(wait=False)   # False: a live process holds it   # doctest: +SKIP

Everything that serializes processes on one host uses it: the local store's pointer swap
(:mod:`jobs.storage.local`), the version cache of readers and trainers (:mod:`jobs.storage.cache`) and the
trainer's claim on its spool (:mod:`jobs.training.trainer`).

A lock file may sit in a folder that someone else can write (a shared store, a cache), so it is opened as
data, never followed: a symbolic link or a FIFO planted at its name is refused at once with
:class:`~jobs.errors.IntegrityError` (``O_NOFOLLOW``, and ``O_NONBLOCK`` so that opening a FIFO does not wait
for a writer), and anything that is not a regular file is refused. ``flock`` locks belong to the open file, so
a lock is released when its :class:`FileLock` is closed or its process dies, and never outlives either.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from jobs.errors import IntegrityError

# O_NONBLOCK and O_NOFOLLOW: a FIFO or a link planted at the lock's name is refused, not waited on or followed
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class FileLock:
    """An open lock file; :meth:`acquire` and :meth:`release` lock and unlock it, :meth:`close` does both.

    Raises IntegrityError when ``path`` is a link, a FIFO or anything but a regular file (``label``, else the
    path, names it in the message); OSError when it cannot be created."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        self.path = path
        refused = IntegrityError(f"{label or path} is not a regular file; refusing to use it")
        try:
            fd = os.open(path, _FLAGS, 0o666)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link (O_NOFOLLOW), a FIFO without a reader
                raise refused from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise refused
        self._fd: int | None = fd

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        """Lock the file, shared or exclusive (an exclusive lock held by this object becomes shared, and back,
        though not atomically: another process may take it in between). Without ``wait``, returns False at
        once when another process holds a conflicting lock."""
        if self._fd is None:
            raise ValueError(f"the lock {self.path} is closed")
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self._fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the lock and close the file (closing releases it anyway)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False, label: str | None = None) -> Iterator[FileLock]:
    """``path`` locked (exclusive unless ``shared``) for the ``with`` block; its folder is created if needed.
    Raises IntegrityError (see :class:`FileLock`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, label) as lock:
        lock.acquire(shared=shared)
        yield lock
