"""The verified cache of versions on a host: readers (:mod:`jobs.vectors`) and the trainer's node
(:mod:`jobs.training.parent`) download a version once, and never load a file that differs from its manifest.

    cache = VersionCache(Path("~/.cache/embedding-refresh"), keep=2)
    with cache.use(store, manifest, names) as folder:     # readers: read (or memory-map) inside the block
            vectors = np.load(folder / "model/vectors.npy", mmap_mode="r")
    cache.fetch(store, manifest, names, Path("run/parent"))   # trainers: links that outlive an eviction
    cache.adopt(store, version, Path("out/"))                # a version just uploaded: the next run's parent

The rules, the same for every caller:

- **keys**: an entry per store URI and version (a SHA-256 of the two), holding any of the version's files;
  versions are immutable, so an entry only ever gains files. What the store names is data: every file name is
  checked (:mod:`jobs.storage.names`) before it names a path, and must stay inside the entry.
- **verification**: every use checks each requested file's size and SHA-256 against the manifest the caller
  has just read from the store, which stays the authority. A file that is missing is downloaded; one that
  differs (tampered with, truncated, stale) is logged, removed and downloaded again; a download is verified
  like any (:func:`jobs.storage.publish.fetch_files`) and only then moved into the entry. Files are hashed in
  parallel (hashlib releases the GIL) by as many threads as leave two of the process's CPUs to the work beside
  it (:func:`hash_threads`: on the trainer, gensim's import and the corpus streaming in), at most four.
- **eviction**: a use marks its entry as used; a download or an adoption then keeps the ``keep`` most
  recently used entries and removes the rest (and the cache folders of the format before this one).
- **locking**: one lock file per cache (:mod:`jobs.storage.locks`). Checking and reading hold it shared, so
  many processes read at once; downloading, adopting and evicting hold it exclusively, so ten processes that
  start together on a cold cache download a version once, and nothing is removed while another process checks
  or opens it. Files already opened or memory-mapped stay readable after an eviction, and :meth:`fetch` hands
  out hard links, so a trainer's copy survives another trainer's eviction.
- **errors**: a file of the store that fails its checksums raises :class:`~jobs.errors.IntegrityError` and
  is not cached; the store's own errors pass through; the cache's disk (full, unwritable) raises
  :class:`~jobs.errors.CacheError`, which a trainer answers by downloading without the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jobs.errors import CacheError
from jobs.storage.base import Store
from jobs.storage.locks import FileLock
from jobs.storage.names import check_file, check_version, inside
from jobs.storage.publish import fetch_files, sha256_file

log = logging.getLogger(__name__)

_ENTRY = "entry.json"  # in each entry: its store and version; its mtime is the entry's last use
_FILES = "files"
_LOCK = ".lock"
# Entries are named by 32 hex digits; 64 named the whole-folder entries of the readers' cache before this one
_ENTRY_NAME = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")


class VersionCache:
    """Verified local copies of recently used versions under ``root``, at most ``keep`` of them."""

    def __init__(self, root: Path, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"a version cache keeps at least one version, not {keep}")
        self.root, self.keep = Path(root), keep

    @contextlib.contextmanager
    def use(self, store: Store, manifest: Mapping[str, Any], names: list[str]) -> Iterator[Path]:
        """The entry's folder, holding ``names`` of the manifest's version, each verified (cached and intact, or
        downloaded), for the ``with`` block: read or memory-map them inside it; nothing is evicted meanwhile.
        Raises IntegrityError (a name that is not a file a version may hold, or leads outside the cache; a
        download that differs from the manifest), the store's errors, CacheError."""
        version = check_version(manifest["version"], f"a manifest of {store.uri}")
        entry = self._entry(store.uri, version)
        files = entry / _FILES
        label = f"{store.uri}, version {version}"
        for name in names:
            inside(files, check_file(name, store.uri, version), label)
        with self._lock() as lock:
            lock.acquire(shared=True)
            stale = self._stale(files, manifest, names, version)
            if stale:
                lock.acquire()  # exclusive (not atomically: another process may fetch or evict in between)
                stale = [n for n in names if n in stale or not (files / n).is_file()]
                stale = self._stale(files, manifest, stale, version, quiet=True)
            if stale:
                self._download(store, manifest, entry, stale)
                log.info(
                    "version %s of %s: %d of %d files downloaded to the cache %s",
                    version,
                    store.uri,
                    len(stale),
                    len(names),
                    files,
                )
            else:
                log.info("version %s of %s: %d files from the cache %s", version, store.uri, len(names), files)
            self._touch(entry, store.uri, version)
            if stale:
                self._evict(keep=entry)
            yield files

    def fetch(self, store: Store, manifest: Mapping[str, Any], names: list[str], into: Path) -> Path:
        """``into``, holding hard links to ``names`` of the manifest's version (copies across filesystems),
        verified as :meth:`use` verifies them; they stay valid whatever the cache evicts later. Raises what
        :meth:`use` raises, and IntegrityError for a name that would lead outside ``into``."""
        version = check_version(manifest["version"], f"a manifest of {store.uri}")
        for name in names:
            inside(into, check_file(name, store.uri, version), f"{store.uri}, version {version}")
        with self.use(store, manifest, names) as files:
            try:
                for name in names:
                    _link(files / name, into / name)
            except OSError as exc:
                raise CacheError(f"cannot link the cached files of {version} into {into}: {exc}") from exc
        return into

    def adopt(self, store: Store, version: str, folder: Path) -> None:
        """Move ``folder``, the files of ``version`` as just uploaded to ``store``, into the cache (the next use
        verifies them like any). Raises CacheError."""
        version = check_version(version, f"a version uploaded to {store.uri}")
        entry = self._entry(store.uri, version)
        with self._lock() as lock:
            lock.acquire()
            try:
                shutil.rmtree(entry, ignore_errors=True)
                entry.mkdir(parents=True)
                shutil.move(str(folder), str(entry / _FILES))
            except OSError as exc:
                raise CacheError(f"cannot keep {version} in the cache {self.root}: {exc}") from exc
            self._touch(entry, store.uri, version)
            self._evict(keep=entry)

    def _entry(self, uri: str, version: str) -> Path:
        return self.root / hashlib.sha256(f"{uri}\n{version}".encode()).hexdigest()[:32]

    def _lock(self) -> FileLock:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return FileLock(self.root / _LOCK)
        except OSError as exc:
            raise CacheError(f"the cache {self.root} cannot be used: {exc}") from exc

    @staticmethod
    def _stale(
        files: Path, manifest: Mapping[str, Any], names: list[str], version: str, quiet: bool = False
    ) -> list[str]:
        """Those of ``names`` that are missing under ``files`` or differ from the manifest (logged, unless
        ``quiet``)."""

        def differs(name: str) -> str | None:
            path, expected = files / name, manifest["files"][name]
            try:
                size = os.path.getsize(path)
                if size != expected["size"]:
                    return f"size {size} differs from the manifest's {expected['size']}"
                digest = sha256_file(path)
            except FileNotFoundError:
                return ""
            except OSError as exc:
                return str(exc)
            return None if digest == expected["sha256"] else f"SHA-256 {digest[:12]}… differs from the manifest's"

        if not names:
            return []
        with ThreadPoolExecutor(max_workers=min(hash_threads(), len(names)), thread_name_prefix="sha256") as pool:
            found = dict(zip(names, pool.map(differs, names), strict=True))
        for name, reason in found.items():
            if reason and not quiet:
                log.warning(
                    "cached %s/%s: %s, so the cached copy fails its checksums; fetching it again",
                    version,
                    name,
                    reason,
                )
        return [name for name, reason in found.items() if reason is not None]

    @staticmethod
    def _download(store: Store, manifest: Mapping[str, Any], entry: Path, names: list[str]) -> None:
        """Download ``names`` into a folder beside the entry's, verified, then move each into place."""
        files = entry / _FILES
        try:
            files.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=".fetch-", dir=entry))
        except OSError as exc:
            raise CacheError(f"the cache {entry.parent} cannot be written: {exc}") from exc
        try:
            for name in names:
                (files / name).unlink(missing_ok=True)
            fetch_files(store, manifest, partial, names)  # raises IntegrityError: nothing of it is cached
            for name in names:
                (files / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(partial / name, files / name)
        except OSError as exc:
            raise CacheError(f"the cache {entry.parent} cannot be written: {exc}") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    @staticmethod
    def _touch(entry: Path, uri: str, version: str) -> None:
        """Mark the entry as used now (its ``entry.json``'s mtime: atomic, so safe under the shared lock)."""
        record = entry / _ENTRY
        try:
            os.utime(record)
        except FileNotFoundError:
            with contextlib.suppress(OSError):  # a read-only cache still serves what it holds
                record.write_text(json.dumps({"store": uri, "version": version}))
        except OSError:
            pass

    def _evict(self, keep: Path) -> None:
        """Remove all but the ``keep`` most recently used entries (never ``keep``, the entry just used)."""
        try:
            entries = [p for p in self.root.iterdir() if _ENTRY_NAME.fullmatch(p.name) and p.is_dir() and p != keep]
        except OSError as exc:
            raise CacheError(f"the cache {self.root} cannot be read: {exc}") from exc
        entries.sort(key=_last_use, reverse=True)
        for stale in entries[self.keep - 1 :]:
            log.info("removing %s from the cache %s (more than %d versions)", stale.name, self.root, self.keep)
            shutil.rmtree(stale, ignore_errors=True)


def hash_threads(cpus: int | None = None) -> int:
    """Threads to hash a cached version's files with, on ``cpus`` CPUs (default: those this process may use):
    two fewer, at least one and at most four. The hashes run beside work that needs a core each (the trainer
    imports gensim and takes the corpus while its parent is verified); on two CPUs, two hashing threads beside
    them slowed that import from 1.5 s to 2.7 s and the whole start by 0.7 s."""
    if cpus is None:  # readers use the cache too, on systems without CPU affinity (macOS)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cpus - 2))


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(source, target)


def _last_use(entry: Path) -> float:
    try:
        return (entry / _ENTRY).stat().st_mtime
    except OSError:
        return 0.0  # an entry being written, or one of the previous format: the first to go
