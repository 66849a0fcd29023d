"""A matrix in a file, mapped copy-on-write with room to grow: only the pages something touches are read.

The parent's matrices are most of a refresh's bytes (800 MB at a million words), and training writes a small
part of them: the rows of the increment's words and of their negative samples. Reading them into fresh
memory copies every byte and faults in every page before the first token trains. Mapped privately
(``MAP_PRIVATE``), a page costs nothing until it is touched: read, it is the operating system's cached copy
of the file, shared; written, it becomes this process's own copy, and the file never changes. Saving the new
version reads the untouched pages from the cache as it writes them.

The vocabulary update appends rows for new words in place (:func:`jobs.training.vocabulary.appended`), so the
mapping is placed at the front of a larger anonymous reservation: the rows after the file's are ordinary
memory, costing nothing until written.

    >>> matrix = rows_of(path, header=128, shape=(1_000_000, 100), spare_rows=1_000_000)   # doctest: +SKIP
    >>> grown = matrix.base[:1_000_500]      # the first 500 spare rows, in place          # doctest: +SKIP

Only on Linux (``MAP_FIXED`` over a reservation); elsewhere, or when the system refuses, :func:`rows_of`
returns None and the caller reads the file. A run that will write most pages anyway has them copied at once,
ahead of training, by :func:`populate`. The files mapped are the trainer's own copies (its spool, its
node's cache), which nothing rewrites in place: a page not yet written reads what the file holds.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_FLOAT = np.dtype(np.float32)
_MAP_FIXED = 0x10  # Linux's value; the mmap module does not export it


_MADV_POPULATE_WRITE = 23  # Linux 5.14 and later; the mmap module does not export it


def _libc(name: str, restype: Any, argtypes: list[Any]) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """A libc function, called with the GIL released (ctypes' CDLL); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.restype = restype
    function.argtypes = argtypes
    return function


_MMAP = _libc(
    "mmap", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
)
_MADVISE = _libc("madvise", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int])


def populate(array: np.ndarray) -> bool:
    """Make every page of ``array`` (rows mapped by :func:`rows_of`) this process's own copy now, in one system
    call that lets go of the GIL, rather than one page fault at a time as training first writes each page: on
    two training threads, the first epoch over a million-word model took twice the others, faulting. A page
    already copied (or ordinary memory) stays as it is. False where the system cannot (not Linux, a kernel
    before 5.14): the pages are then copied as they are first written, as before."""
    if _MADVISE is None or array.nbytes == 0:
        return False
    start, end = array.ctypes.data & ~(mmap.PAGESIZE - 1), array.ctypes.data + array.nbytes
    for at in range(start, end, _POPULATE_BYTES):  # the kernel holds the mapping's lock for each call
        if _MADVISE(at, min(_POPULATE_BYTES, end - at), _MADV_POPULATE_WRITE) != 0:
            return False
    return True


#: Bytes made the process's own per call of :func:`populate`: between calls, the other threads may map and
#: unmap memory (numpy's larger arrays), which waits for the mapping's lock the kernel holds while populating.
_POPULATE_BYTES = 16 << 20


def rows_of(path: Path, header: int, shape: tuple[int, int], spare_rows: int = 0) -> np.ndarray | None:
    """The float32 matrix of ``shape`` whose rows start at byte ``header`` of the file at ``path`` (which the
    caller checked holds exactly them), mapped copy-on-write, as the first ``shape[0]`` rows of a buffer with
    room for ``spare_rows`` more. None where mapping is not possible (not Linux, an empty matrix, the system
    refusing the reservation): the caller then reads the file."""
    rows, dim = shape
    length = header + rows * dim * _FLOAT.itemsize
    if _MMAP is None or rows * dim == 0:
        return None
    total = header + (rows + spare_rows) * dim * _FLOAT.itemsize
    try:
        region = mmap.mmap(
            -1,
            total,
            flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0),
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
        )
    except OSError as exc:
        log.info("%s: no room for %d new rows could be reserved (%s); reading it", path, spare_rows, exc)
        return None
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size != length:
                raise OSError(f"{path} changed size")
            anchor = ctypes.c_char.from_buffer(region)
            address = ctypes.addressof(anchor)
            del anchor  # the region's address is all that is needed; the export ends here
            # the file over the front of the reservation: the same addresses, now backed by the file's pages
            placed = _MMAP(
                address, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | _MAP_FIXED, file.fileno(), 0
            )
            if placed != address:
                raise OSError(ctypes.get_errno(), f"mapping {path} failed: {os.strerror(ctypes.get_errno())}")
    except OSError as exc:
        region.close()
        log.info("%s: not mapped (%s); reading it", path, exc)
        return None
    buffer = np.ndarray((rows + spare_rows, dim), dtype=_FLOAT, buffer=region, offset=header)
    return buffer[:rows]
