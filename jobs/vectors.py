"""Reading a version's vectors from Python: the supported way for services to consume the store.

    >>> from jobs.vectors import load_vectors
    >>> vectors, version = load_vectors("s3://models/w2v")                  # doctest: +SKIP
    >>> vectors.most_similar("king", topn=5)                                 # doctest: +SKIP
    >>> vectors, _ = load_vectors("models", "20261124T020000Z-ab12cd", mmap="r")   # doctest: +SKIP

:func:`load_vectors` resolves the pointer (for ``latest``) and the version's manifest, brings the model's
files into the host's verified cache (:mod:`jobs.storage.cache`: downloaded once, every size and SHA-256
checked against the manifest on every load) and reads them as plain data, never unpickling
(:mod:`jobs.format.files`). It returns :class:`jobs.keyed.WordVectors`, gensim's everyday ``KeyedVectors``
surface (lookups, ``most_similar``, ``similarity``, counts) with numpy and pyarrow alone;
``vectors.to_gensim()`` hands the same arrays to gensim where it is installed. With ``mmap="r"`` the arrays
are memory-mapped from the cache, so several processes on a host share one copy in the page cache.

Importing this module imports neither gensim nor Ray: ``pip install embedding-refresh`` is all a reader needs
(docs/reading.md).

The cache lives under ``cache_dir`` (default ``$EMBEDDING_REFRESH_CACHE``, else ``~/.cache/embedding-refresh``).
A process that restarts, or ten processes starting together (they share a file lock: one downloads while the
others wait), download a version once. A cached file that no longer matches (tampered with, or damaged) is
logged, removed and fetched again. The cache keeps the ``keep`` most recently used versions (two by default).
Each load still reads the pointer and the manifest (two small requests); the model files come from the cache.

With trusted keys (``trusted_keys=[...]``, else the files ``$EMBEDDING_REFRESH_TRUSTED_KEYS`` names) the
pointer and the manifest must be signed by one of them, and the pointer must not be older than the newest
this host has seen (remembered under ``cache_dir/seen``; ``allow_rollback=True`` accepts an older one):
see docs/signing.md. Without them nothing is checked beyond the checksums, as for a store from before signing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from jobs.config import SigningConfig, trusted_keys_from
from jobs.errors import ConfigError
from jobs.format import files
from jobs.keyed import WordVectors
from jobs.storage import open_store, signed
from jobs.storage.cache import VersionCache
from jobs.storage.names import MODEL_DIR
from jobs.storage.publish import load_manifest, model_files

CACHE_ENV = "EMBEDDING_REFRESH_CACHE"
KEEP = 2  # versions kept in the cache: the current one and the one before (a rollback, or a slow restart)
MMAP_MODES = (None, "r", "r+", "c")


class Vectors(NamedTuple):
    """What :func:`load_vectors` returns: the vectors and the version they belong to."""

    vectors: WordVectors
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
    """The vectors of ``version`` (``latest``: the current one) in the store at ``store_uri``.

    The cache keeps the ``keep`` most recently loaded versions; older ones are removed when a new one is
    downloaded (a process that still maps their files keeps reading them). ``trusted_keys``: public key files
    (default: ``$EMBEDDING_REFRESH_TRUSTED_KEYS``'s); with any, only signed versions are read.

    Raises VersionNotFound (no such version, or no current one), IntegrityError (a file in the store differs
    from its manifest; nothing is loaded), SignatureError (an IntegrityError: with trusted keys, an unsigned,
    wrongly signed or replayed pointer or manifest), StoreError (the store cannot be read), CacheError (a
    StoreError: the cache folder cannot be written), ConfigError (bad arguments, an unreadable key file).
    """
    if mmap not in MMAP_MODES:
        raise ConfigError(f"mmap must be one of {MMAP_MODES}, got {mmap!r}")
    if keep < 1:
        raise ConfigError(f"the cache keeps at least one version, not {keep}")
    root = cache_root(cache_dir)
    keys = tuple(map(str, trusted_keys)) if trusted_keys is not None else trusted_keys_from(os.environ)
    trust = signed.load(SigningConfig(trusted_keys=keys, allow_rollback=allow_rollback), root)
    store = open_store(store_uri, trust)
    manifest = load_manifest(store, version)
    with VersionCache(root, keep).use(store, manifest, reader_files(manifest)) as folder:
        vectors = WordVectors.read(folder / MODEL_DIR, mmap)  # mapped or read while nothing can evict them
    return Vectors(vectors, manifest.version)


# The only function here that knows which files of the model format (:mod:`jobs.format.files`) a reader
# reads; a version in the previous, pickled format is refused (``model_files``).
_READER_ARRAYS = ("vectors", "sample_int", "vectors_vocab", "vectors_ngrams")  # what WordVectors.read reads


def reader_files(manifest: Mapping[str, Any]) -> list[str]:
    """The files of the version that a reader needs (not the output layer when the format lets it skip it)."""
    names = model_files(manifest)  # raises PickledModelError for the previous, pickled format
    wanted = {files.PARAMS, files.VOCAB, *(f"{a}.npy" for a in _READER_ARRAYS)}
    return [name for name in names if name.removeprefix(f"{MODEL_DIR}/") in wanted]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where cached versions live: ``cache_dir``, else ``$EMBEDDING_REFRESH_CACHE``, else the user's cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedding-refresh"
