"""Refreshes under faults: a reference run, runs killed or stopped mid-way, the latest version loaded back."""

from __future__ import annotations

import collections
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from jobs.config import from_args
from jobs.refresh import run
from jobs.storage import open_store
from jobs.storage.publish import fetch_verified, model_files, read_manifest
from jobs.training import model as gmodel
from jobs.training.epochs import split_evenly
from jobs.training.spool import Layout


def load_latest(store: Path):  # type: ignore[no-untyped-def]
    s = open_store(str(store))
    manifest = read_manifest(s, "latest")
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_verified(s, "latest", Path(tmp), model_files(manifest))
        return gmodel.load(folder / gmodel.MODEL_DIR), manifest


def miss_the_last_batch(layout: Layout, threads: int) -> list[range]:
    """A fault seam: the threads' runs of batches leave the spool's last batch to no thread."""
    return [range(r.start, r.stop - (r.stop == layout.batches)) for r in split_evenly(layout, threads)]


def reference(docs: list[str | None]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for doc in docs:
        counts.update(t for t in re.findall(r"[^\W\d_]+", (doc or "").lower()) if 2 <= len(t) <= 40)
    return counts


def own_ray_processes(title: str) -> list[psutil.Process]:
    """Processes of this test session's Ray (descendants of this process) whose title starts with ``title``."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if " ".join(proc.cmdline()).startswith(title):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run_while(action: Callable[[], bool], argv: list[str], timeout: float = 120) -> tuple[Any, BaseException | None]:
    """Run a refresh in a thread and call ``action`` until it returns True (it does the damage)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["summary"] = run(from_args(argv))
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + timeout
    acted = False
    while thread.is_alive() and time.monotonic() < deadline:
        if not acted and action():
            acted = True
        time.sleep(0.02)
    thread.join(timeout=max(1.0, deadline - time.monotonic()))
    assert acted, "the fault was never injected"
    return outcome.get("summary"), outcome.get("error")


def kill_first(title: str) -> Callable[[], bool]:
    def action() -> bool:
        victims = own_ray_processes(title)
        if victims:
            os.kill(victims[0].pid, signal.SIGKILL)
        return bool(victims)

    return action
