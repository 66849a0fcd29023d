"""Reading a version's vectors from Python: the supported way for services to consume the store.

    >>> from jobs.vectors import load_vectors
    >>> vectors, version = load_vectors("s3://models/w2v")                  # doctest: +SKIP
    >>> vectors.most_similar("king", topn=5)                                 # doctest: +SKIP
    >>> vectors, _ = load_vectors("models", "20261124T020000Z-ab12cd", mmap="r")   # doctest: +SKIP

:func:`load_vectors` resolves the pointer (for ``latest``) and the version's manifest, downloads the model's
files into a local cache, verifies each size and SHA-256 against the manifest, and only then hands them to
gensim, which returns ``KeyedVectors``. With ``mmap="r"`` the arrays are memory-mapped from the cache, so
several processes on a host share one copy in the page cache.

The cache is keyed by checksum: a folder per set of files, named by a SHA-256 over their names and checksums,
under ``cache_dir`` (default ``$EMBEDDING_REFRESH_CACHE``, else ``~/.cache/embedding-refresh``). A process
that restarts, or ten processes starting together (a file lock lets one download while the others wait),
download a version once. Every load verifies the cached files again before gensim reads them; a cached file
that no longer matches (tampered with, or damaged) is logged, removed and fetched again. The cache keeps the
``keep`` most recently used versions (two by default). Each load still
reads the pointer and the manifest (two small requests); the model files come from the cache.

With trusted keys (``trusted_keys=[...]``, else the files ``$EMBEDDING_REFRESH_TRUSTED_KEYS`` names) the
pointer and the manifest must be signed by one of them, and the pointer must not be older than the newest
this host has seen (remembered under ``cache_dir/seen``; ``allow_rollback=True`` accepts an older one):
see docs/signing.md. Without them nothing is checked beyond the checksums, as for a store from before signing.
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
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from jobs.config import SigningConfig, trusted_keys_from
from jobs.errors import ConfigError, IntegrityError
from jobs.storage import Store, open_store, signed
from jobs.storage.names import check_file, check_version, inside
from jobs.storage.publish import fetch_files, model_files, read_manifest, verify_file
from jobs.training import model as gmodel
from jobs.training import serialize

log = logging.getLogger(__name__)

CACHE_ENV = "EMBEDDING_REFRESH_CACHE"
KEEP = 2  # versions kept in the cache: the current one and the one before (a rollback, or a slow restart)
MMAP_MODES = (None, "r", "r+", "c")


class Vectors(NamedTuple):
    """What :func:`load_vectors` returns: gensim ``KeyedVectors`` and the version they belong to."""

    vectors: Any  # gensim.models.KeyedVectors (gensim is imported only inside jobs.training)
    version: str


def load_vectors(
    store_uri: str,
    version: str = "latest",
    *,
    mmap: str | None = None,
    cache_dir: str | Path | None = None,
    keep: int = KEEP,
    trusted_keys: Sequence[str | os.PathLike[str]] | None = None,
    allow_rollback: bool = False,
) -> Vectors:
    """The KeyedVectors of ``version`` (``latest``: the current one) in the store at ``store_uri``.

    The cache keeps the ``keep`` most recently loaded versions; older ones are removed when a new one is
    downloaded (a process that still maps their files keeps reading them). ``trusted_keys``: public key files
    (default: ``$EMBEDDING_REFRESH_TRUSTED_KEYS``'s); with any, only signed versions are read.

    Raises VersionNotFound (no such version, or no current one), IntegrityError (a file in the store differs
    from its manifest; nothing is loaded), SignatureError (an IntegrityError: with trusted keys, an unsigned,
    wrongly signed or replayed pointer or manifest), StoreError (the store cannot be read), ConfigError (bad
    arguments, an unreadable key file).
    """
    if mmap not in MMAP_MODES:
        raise ConfigError(f"mmap must be one of {MMAP_MODES}, got {mmap!r}")
    if keep < 1:
        raise ConfigError(f"the cache keeps at least one version, not {keep}")
    root = cache_root(cache_dir)
    keys = tuple(map(str, trusted_keys)) if trusted_keys is not None else trusted_keys_from(os.environ)
    trust = signed.load(SigningConfig(trusted_keys=keys, allow_rollback=allow_rollback), root)
    store = open_store(store_uri, trust)
    manifest = read_manifest(store, version)
    folder = cached(store, manifest, reader_files(manifest), root, keep)
    return Vectors(_read(folder, manifest, mmap), manifest["version"])


# The two functions below are the only ones here that know the model format (:mod:`jobs.training.serialize`),
# read without unpickling; a version in the previous, pickled format is refused (``model_files``).
_READER_ARRAYS = ("vectors", "sample_int", "vectors_vocab", "vectors_ngrams")  # what KeyedVectors need


def reader_files(manifest: dict[str, Any]) -> list[str]:
    """The files of the version that a reader needs (not the output layer when the format lets it skip it)."""
    names = model_files(manifest)  # raises PickledModelError for the previous, pickled format
    wanted = {serialize.PARAMS, serialize.VOCAB, *(f"{a}.npy" for a in _READER_ARRAYS)}
    return [name for name in names if name.removeprefix("model/") in wanted]


def _read(folder: Path, manifest: dict[str, Any], mmap: str | None) -> Any:
    """Hand verified files to gensim, as plain data."""
    return gmodel.load_vectors(folder / gmodel.MODEL_DIR, mmap=mmap)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where cached versions live: ``cache_dir``, else ``$EMBEDDING_REFRESH_CACHE``, else the user's cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedding-refresh"


def cache_key(manifest: dict[str, Any], names: list[str]) -> str:
    """A SHA-256 over the names, sizes and checksums of ``names``: equal files share one cache entry."""
    entries = [[n, manifest["files"][n]["size"], manifest["files"][n]["sha256"]] for n in sorted(names)]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def cached(store: Store, manifest: dict[str, Any], names: list[str], root: Path, keep: int = KEEP) -> Path:
    """The folder under ``root`` holding ``names`` of the manifest's version, verified; downloaded (once per
    host, under a lock) when missing or when a cached file fails its checksum. Each use marks the entry as
    used; a download evicts all but the ``keep`` most recently used entries. Raises IntegrityError for a name
    that is not a file a version may hold (:mod:`jobs.storage.names`), before the cache is touched."""
    version = check_version(manifest["version"], f"a manifest of {store.uri}")
    key = cache_key(manifest, names)
    folder = root / key
    for name in names:
        inside(folder, check_file(name, store.uri, version), f"{store.uri}, version {version}")
    if intact(folder, manifest, names):
        os.utime(folder)  # the entry's last use, for eviction
        log.info("version %s from the cache %s", manifest["version"], folder)
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        if intact(folder, manifest, names):  # another process fetched it while this one waited
            return folder
        if folder.exists():
            log.warning(
                "the cached copy of %s in %s fails its checksums; fetching it again", manifest["version"], folder
            )
            shutil.rmtree(folder)
        partial = Path(tempfile.mkdtemp(dir=root, prefix=f".{key[:16]}-"))
        try:
            fetch_files(store, manifest, partial, names)
            os.replace(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _evict(root, keep)
    log.info("version %s downloaded to the cache %s", manifest["version"], folder)
    return folder


def _evict(root: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used entries (partial downloads, dot-named, are not entries)."""
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for stale in sorted(entries, key=lambda p: p.stat().st_mtime, reverse=True)[keep:]:
        log.info("removing %s from the cache (more than %d versions)", stale, keep)
        shutil.rmtree(stale, ignore_errors=True)


def intact(folder: Path, manifest: dict[str, Any], names: list[str]) -> bool:
    """Whether ``folder`` holds every one of ``names`` with the manifest's size and SHA-256. The files are
    hashed in parallel (hashlib releases the GIL): a warm load costs the largest file's hash, not their sum."""
    if not folder.is_dir():
        return False

    def check(name: str) -> None:
        verify_file(folder / name, manifest["files"][name], f"cached {manifest['version']}/{name}")

    try:
        with ThreadPoolExecutor(max_workers=min(4, len(names)) or 1, thread_name_prefix="sha256") as pool:
            for done in [pool.submit(check, name) for name in names]:
                done.result()
    except (IntegrityError, OSError) as exc:
        log.warning("%s", exc)
        return False
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
