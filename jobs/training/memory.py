"""The training actor's memory, phase by phase: the peak resident set of each phase, for the report.

Each phase starts by handing memory freed so far back to the system (pyarrow's pool and glibc's heap keep
freed blocks for reuse), so the next phase's peak does not stand on the last one's leftovers.

Linux keeps a process's peak resident set (``VmHWM`` in ``/proc/self/status``) and resets it when ``5`` is
written to ``/proc/self/clear_refs``, so each phase's own peak can be read at its end and the counter reset
for the next. Elsewhere (or where ``/proc`` is not writable) the figures are simply absent.

    >>> peaks = PhasePeaks()
    >>> with peaks.phase("load"):
    ...     model = load(...)                                                  # doctest: +SKIP
    >>> peaks.megabytes                                                         # doctest: +SKIP
    {'load': 912.4}
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def peak_bytes() -> int | None:
    """This process's peak resident set since the last reset, in bytes (None where unknown)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _malloc_trim() -> Any:
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own C library: glibc only
    except OSError:
        return None


_TRIM = _malloc_trim()


def release() -> None:
    """Return freed memory to the system: pyarrow's pool, then glibc's heap (where there is one)."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)


def reset_peak() -> bool:
    """Start a new peak at the current resident set. False where the kernel does not allow it."""
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


@dataclass
class PhasePeaks:
    """Seconds and peak resident set of named phases (a phase entered twice adds its time, keeps its max)."""

    seconds: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        release()
        resettable = reset_peak()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            peak = peak_bytes() if resettable else None
            if peak is not None:
                self.peaks[name] = max(self.peaks.get(name, 0), peak)

    def merge(self, other: PhasePeaks) -> None:
        """Add the phases of ``other`` (run elsewhere, e.g. in another thread) to these."""
        for name, seconds in other.seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        for name, peak in other.peaks.items():
            self.peaks[name] = max(self.peaks.get(name, 0), peak)

    @property
    def megabytes(self) -> dict[str, float]:
        return {name: round(peak / 2**20, 1) for name, peak in self.peaks.items()}
