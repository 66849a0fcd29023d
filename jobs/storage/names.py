"""What a name read from a store may be: version ids, the pointer's content, a manifest's file names.

Anyone who can write to a store writes these names, so they are data to check, never paths to follow. Every
reader checks them here, when they are read, before they name anything on disk or in the store:

    >>> check_version("20261124T020000Z-ab12cd", "the pointer s3://models/w2v/CURRENT")
    '20261124T020000Z-ab12cd'
    >>> check_file("model/vectors.npy", "s3://models/w2v", "20261124T020000Z-ab12cd")
    'model/vectors.npy'
    >>> check_file("model/../../x/sitecustomize.py", "models", "v1")     # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    jobs.errors.IntegrityError: the manifest of v1 in models names the file 'model/../../x/sitecustomize.py' ...

- a version id is one path part of letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit
  (:func:`jobs.storage.publish.new_version` makes ``YYYYmmddTHHMMSSZ-<hex>``; ids typed by hand and in older
  stores, such as ``v1``, fit too);
- a file of a version is one of the files the format defines (:data:`VERSION_FILES`), or one file directly
  under ``model/`` named like a version id (the pickle-free format's ``params.json``, ``vocab.parquet`` and
  ``*.npy``, and the previous format's ``embedding.model`` and ``embedding.model.*.npy``);
- a manifest names the version it was read as, and lists its files with an integer size and a hex SHA-256;
  its parent (if any) is a version id, and the ledger chain it names holds only version ids and ledger files.

Anything else raises :class:`~jobs.errors.IntegrityError` naming the store, the version and the offending
name (its ``repr``, truncated). :func:`inside` is the second line of defence: a path built from a checked
name must still resolve inside the folder it was built under.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jobs.errors import IntegrityError

MANIFEST = "manifest.json"
MODEL_DIR = "model"

#: the size of the largest manifest and pointer a reader accepts, checked before either is read
MANIFEST_LIMIT = 64 << 20
POINTER_LIMIT = 4 << 10

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
VERSION = re.compile(_PART)
MODEL_FILE = re.compile(rf"{MODEL_DIR}/{_PART}")
#: every file outside ``model/`` that a version may hold (jobs.lineage, jobs.refresh, the previous format)
LEDGER_FILES = frozenset({"ledger.parquet", "ledger-delta.parquet"})
VERSION_FILES = LEDGER_FILES | {
    "pending.parquet",
    "standing.parquet",
    "replay.parquet",
    "config.json",
    "report.json",
    "report.md",
    "diff.parquet",  # the words added, moved and removed against the parent (jobs.changes)
    "vectors.bin",  # the word2vec copy that versions of the previous format carried
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHOWN = 80  # characters of an offending name quoted in a message


def shown(value: object) -> str:
    """``repr(value)``, cut to a length a log line can carry."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def check_version(version: object, where: str) -> str:
    """``version`` if it is a version id; raises IntegrityError naming ``where`` it was read from."""
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise IntegrityError(
            f"{where} names the version {shown(version)}, which is not a version id (one name of letters, "
            "digits, '.', '_' and '-'); refusing to read it"
        )
    return version


def check_file(name: object, store: str, version: str) -> str:
    """``name`` if a version may hold a file of that name; raises IntegrityError naming the store, the version
    and the name."""
    if not isinstance(name, str) or not (name in VERSION_FILES or MODEL_FILE.fullmatch(name)):
        raise IntegrityError(
            f"the manifest of {version} in {store} names the file {shown(name)}, which is not a file a version "
            f"may hold ({', '.join(sorted(VERSION_FILES))} or {MODEL_DIR}/<name>); refusing to read it"
        )
    return name


def check_manifest(manifest: object, store: str, version: str) -> dict[str, Any]:
    """``manifest``, read as ``version`` of ``store``, if everything in it that names a file or a version is
    well formed: its own version, its files (each with a size and a SHA-256) and its ledger chain. Raises
    IntegrityError."""
    where = f"the manifest of {version} in {store}"
    if not isinstance(manifest, dict):
        raise IntegrityError(f"{where} is not a JSON object; refusing to read it")
    if manifest.get("version") != version:
        raise IntegrityError(
            f"{where} names the version {shown(manifest.get('version'))}, not {version}; refusing to read it"
        )
    if manifest.get("parent") is not None:  # gc reads the parent's manifest
        check_version(manifest["parent"], f"{where}, as its parent,")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise IntegrityError(f"{where} lists no files; refusing to read it")
    for name, entry in files.items():
        check_file(name, store, version)
        if not _recorded(entry):
            raise IntegrityError(f"{where}: the entry of {name} is not a size and a SHA-256; refusing to read it")
    section = manifest.get("ledger")
    chain = section.get("chain", []) if isinstance(section, dict) else []
    if not isinstance(chain, list):
        raise IntegrityError(f"{where}: its ledger chain is not a list; refusing to read it")
    for link in chain:
        if not isinstance(link, dict):
            raise IntegrityError(f"{where}: a link of its ledger chain is not an object; refusing to read it")
        check_version(link.get("version"), f"{where}, in its ledger chain,")
        if link.get("file") not in LEDGER_FILES:
            raise IntegrityError(
                f"{where} names the ledger file {shown(link.get('file'))} in its chain, which is not "
                f"{' or '.join(sorted(LEDGER_FILES))}; refusing to read it"
            )
        if not _recorded(link):
            raise IntegrityError(f"{where}: a link of its ledger chain has no size and SHA-256; refusing to read it")
    return manifest


def _recorded(entry: object) -> bool:
    """Whether ``entry`` records a file's size (a non-negative integer) and SHA-256 (64 lowercase hex digits)."""
    return (
        isinstance(entry, dict)
        and type(entry.get("size")) is int
        and entry["size"] >= 0
        and isinstance(entry.get("sha256"), str)
        and _SHA256.fullmatch(entry["sha256"]) is not None
    )


def inside(folder: Path, name: str, label: str) -> Path:
    """``folder / name``, if it resolves inside ``folder`` (symbolic links followed); raises IntegrityError
    naming ``label`` (the store and version the name came from) otherwise."""
    path = folder / name
    root, resolved = folder.resolve(), path.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise IntegrityError(f"{label}: the file {shown(name)} would be written outside {folder}; refusing")
    return path
