"""A verified cache of versions on the trainer's node: a node that produced or fetched the parent last time
does not download it again.

    >>> cache = VersionCache(Path("/mnt/spool/embedding-refresh-cache"), keep=2)
    >>> folder = cache.fetch(store, manifest, names, Path("run/parent"))   # verified: cached ones, the rest downloaded
    >>> cache.adopt(store, version, Path("out/"))          # a version just uploaded: the next run's parent

The store stays the authority. Every use verifies each cached file's size and SHA-256 against the manifest
the run has just read from the store, so a stale, truncated or tampered file is never loaded: it is fetched
again (and verified like any download). Versions are immutable, so a file that verifies is the version's
file. Entries are keyed by store URI and version; eviction keeps the ``keep`` most recently used versions on
the node, whatever their store. One lock file serializes the trainers of one node, and a trainer gets its own
hard links to the files it uses, so another trainer's eviction never pulls a file from under a running load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs.errors import IntegrityError
from jobs.storage.base import Store
from jobs.storage.names import check_file, check_version, inside
from jobs.storage.publish import fetch_verified, verify_file

log = logging.getLogger(__name__)

_ENTRY = "entry.json"  # in each entry: its store, version and last use
_FILES = "files"


class VersionCache:
    """Verified local copies of recently used versions, at most ``keep`` of them."""

    def __init__(self, root: Path, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"a version cache keeps at least one version, not {keep}")
        self.root, self.keep = root, keep

    def fetch(self, store: Store, manifest: dict[str, Any], names: list[str], into: Path) -> Path:
        """``into``, holding ``names`` of the manifest's version, every file verified against the manifest:
        those cached and intact are used as they are, the others downloaded. ``into`` gets links to the cached
        files (copies across filesystems), which stay valid whatever the cache evicts later. Raises
        IntegrityError, also for a name that is not a file a version may hold (:mod:`jobs.storage.names`), or
        that would lead outside the cache or ``into``, before anything is touched."""
        version = check_version(manifest["version"], f"a manifest of {store.uri}")
        entry = self._entry(store.uri, version)
        files = entry / _FILES
        label = f"{store.uri}, version {version}"
        for name in names:
            check_file(name, store.uri, version)
            inside(files, name, label)
            inside(into, name, label)
        with self._locked():
            missing = []
            for name in names:
                path = files / name
                if not path.is_file():
                    missing.append(name)
                    continue
                try:
                    verify_file(path, manifest["files"][name], f"cached {version}/{name}")
                except IntegrityError as exc:
                    log.warning("%s; fetching it again", exc)
                    path.unlink()
                    missing.append(name)
            if missing:
                with tempfile.TemporaryDirectory(prefix=".fetch-", dir=self._mkdir(entry)) as tmp:
                    fetch_verified(store, version, Path(tmp), missing)
                    for name in missing:
                        (files / name).parent.mkdir(parents=True, exist_ok=True)
                        os.replace(Path(tmp) / name, files / name)
            log.info(
                "parent %s: %d of %d files from the node's cache, %d downloaded",
                version,
                len(names) - len(missing),
                len(names),
                len(missing),
            )
            for name in names:
                _link(files / name, into / name)
            self._touch(entry, store.uri, version)
            self._evict()
        return into

    def adopt(self, store: Store, version: str, folder: Path) -> None:
        """Move ``folder``, the files of ``version`` as just uploaded to ``store``, into the cache."""
        entry = self._entry(store.uri, version)
        with self._locked():
            shutil.rmtree(entry, ignore_errors=True)
            self._mkdir(entry)
            shutil.move(str(folder), str(entry / _FILES))
            self._touch(entry, store.uri, version)
            self._evict()

    def _entry(self, uri: str, version: str) -> Path:
        return self.root / hashlib.sha256(f"{uri}\n{version}".encode()).hexdigest()[:32]

    @staticmethod
    def _mkdir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._mkdir(self.root) / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _touch(entry: Path, uri: str, version: str) -> None:
        (entry / _ENTRY).write_text(json.dumps({"store": uri, "version": version, "used": time.time()}))

    def _evict(self) -> None:
        """Remove all but the ``keep`` most recently used entries."""
        entries = [p for p in self.root.iterdir() if p.is_dir()]
        used = {p: _last_use(p) for p in entries}
        for stale in sorted(entries, key=lambda p: used[p], reverse=True)[self.keep :]:
            log.info("evicting %s from the node's version cache", stale.name)
            shutil.rmtree(stale, ignore_errors=True)


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(source, target)


def _last_use(entry: Path) -> float:
    try:
        return float(json.loads((entry / _ENTRY).read_text())["used"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0  # an entry being written, or a broken one: the first to go
