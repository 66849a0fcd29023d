"""Publishing a version as a commit, and loading one back only after verifying it.

Publishing, for any :class:`~jobs.storage.Store`:

1. upload every file of the version under ``versions/<version>/`` (immutable; never overwritten);
2. write ``versions/<version>/manifest.json`` with the size and SHA-256 of every file;
3. move the pointer with one conditional write (the pointer read at the start of the run must still be there).

With a signing key the manifest is signed as it is written and the pointer carries its own signature; with
trusted keys every manifest and pointer read is checked first (:mod:`jobs.storage.signed`).

A run that dies before step 3 leaves readers on the previous version; its files are an unpromoted version
that ``jobs.versions`` lists and can promote or collect. Loading resolves pointer → manifest → files and checks
every size and SHA-256 before anything is read. Model files are plain data (:mod:`jobs.training.serialize`);
:func:`model_files` refuses a version whose model is a pickle (the previous format) unless the caller passes
``allow_pickle``, which only commands the user runs with ``--allow-pickle`` do.

Every version is made through a :class:`Draft` (refresh, import, convert, a carried-forward version), and
every manifest is read as a typed :class:`~jobs.storage.manifest.Manifest` (:func:`load_manifest`):

    with Draft(store, version, parent=pointer.version) as draft:   # parent.json first; removed on a failure
        draft.upload(Path("out/"))
    manifest = draft.commit(fields, expected=pointer)               # the manifest (+ signature), then the pointer
    path = fetch_verified(store, "latest", Path("cache/"), model_files(manifest))   # verified
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jobs.errors import IntegrityError, PickledModelError, StoreError, VersionNotFound
from jobs.storage import lease, signed
from jobs.storage.base import Pointer, Store, version_key
from jobs.storage.manifest import MANIFEST_FORMAT, MODEL_PARAMS, Manifest
from jobs.storage.names import MANIFEST, MANIFEST_LIMIT, MODEL_DIR, check_file, check_version, inside

log = logging.getLogger(__name__)


def new_version() -> str:
    """A sortable, unique version name: UTC time plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


_CHUNK = 8 << 20  # bytes hashed (and written) at once


def sha256_file(path: Path, mapped: bool = False) -> str:
    """The SHA-256 of the file at ``path``. ``mapped``: read through a memory map, a window at a time, each
    window's pages let go once hashed (no copy into Python, and no growth of the resident set), for files that
    nothing truncates meanwhile (this process's own copies: one that shrinks under a map kills the process);
    any other file, or one that cannot be mapped, is read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if mapped and size:
            try:
                view = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # not a regular file, or one that cannot be mapped
                view = None
            if view is not None:
                with view, memoryview(view) as bytes_:
                    for start in range(0, size, _WINDOW):
                        digest.update(bytes_[start : start + _WINDOW])
                        view.madvise(mmap.MADV_DONTNEED, start, min(_WINDOW, size - start))
                return digest.hexdigest()
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


_WINDOW = 64 << 20  # bytes of a mapped file hashed before their pages are let go


def write_recorded(path: Path, parts: Iterable[Any], durable: bool = False) -> dict[str, Any]:
    """Write ``parts`` (bytes-like objects, in order) as a new file at ``path``, hashing the bytes as they are
    written, so they are passed over once; return the file's manifest entry (size and SHA-256), as
    :func:`upload_version` would record it. The hash runs in a second thread, a chunk behind the writes
    (hashlib and file writes both release the GIL). ``durable``: on disk when this returns (fsync), for a
    store that takes the file where it is (:attr:`Store.takes_files_in_place`)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as out, ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
        hashed: Future[None] | None = None
        for part in parts:
            with memoryview(part) as whole, whole.cast("B") as data:
                for start in range(0, len(data), _CHUNK):
                    chunk = data[start : start + _CHUNK]
                    if hashed is not None:
                        hashed.result()
                    hashed = hasher.submit(digest.update, chunk)
                    out.write(chunk)
                    size += len(chunk)
                if hashed is not None:
                    hashed.result()  # before the views of this part are released
                    hashed = None
        if durable:
            out.flush()
            os.fsync(out.fileno())
    return {"size": size, "sha256": digest.hexdigest()}


def local_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as sorted relative ``/`` paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def upload_version(
    store: Store,
    version: str,
    folder: Path,
    progress: Callable[[str], None] | None = None,
    recorded: dict[str, dict[str, Any]] | None = None,
    final: bool = False,
) -> dict[str, dict[str, Any]]:
    """Upload every file of ``folder`` as ``version``; return the manifest's ``files`` section.

    Files whose entries the caller ``recorded`` as it wrote them (:func:`write_recorded`) are not read
    again to hash them; every other file is hashed while it is uploaded (hashlib releases the GIL), so it
    costs the longer of the two passes over its bytes rather than their sum. ``final``: the caller never
    changes the files again, so a store may take them as they are rather than copy their bytes
    (:meth:`Store.put_file`'s ``final``: on the local store, on the same filesystem, a hard link).
    """
    recorded = recorded or {}
    files: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
        for name in local_files(folder):
            if name == MANIFEST:
                continue
            path = folder / name
            size = path.stat().st_size
            known = recorded.get(name)
            digest = None if known and known["size"] == size else hasher.submit(sha256_file, path, True)
            store.put_file(version_key(version, name), path, final=final)
            files[name] = {"size": size, "sha256": digest.result() if digest else known["sha256"]}  # type: ignore[index]
            if progress:
                progress(name)
    return files


def put_recorded(store: Store, version: str, name: str, data: bytes) -> dict[str, Any]:
    """Write one file of ``version`` from memory; return its manifest entry (size and SHA-256)."""
    store.put_bytes(version_key(version, name), data)
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def copy_recorded(store: Store, source: Manifest, version: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """Copy ``names`` of the version whose manifest is ``source`` into ``version``, inside the store; return
    their manifest entries, which are the source's (the bytes are the same)."""
    files = {}
    for name in names:
        store.copy(version_key(source.version, name), version_key(version, name))
        files[name] = source.files[name].to_json()
    return files


def write_manifest(store: Store, version: str, manifest: Manifest | Mapping[str, Any]) -> None:
    """Write the manifest (its signature first, when the store signs: a complete version is never unsigned):
    a :class:`Manifest`'s own bytes, or those :meth:`Manifest.create` makes of plain fields."""
    body = manifest.data if isinstance(manifest, Manifest) else _encoded(manifest)
    signed.sign_manifest(store, version, body)
    store.put_bytes(version_key(version, MANIFEST), body)


def _encoded(fields: Mapping[str, Any]) -> bytes:
    """The bytes of a manifest of ``fields``, unchecked (tests write malformed ones on purpose)."""
    return json.dumps({"format": MANIFEST_FORMAT, **fields}, indent=2, sort_keys=True).encode()


def current(store: Store) -> Pointer | None:
    """The pointer (None for an empty store), checked when the store has trusted keys: signed by one of them,
    not older than one this host has seen. Raises SignatureError."""
    return signed.check_pointer(store, store.read_pointer())


def move_pointer(store: Store, version: str, expected: Pointer | None) -> None:
    """Point at ``version`` with one conditional write if the pointer is still ``expected``; the new pointer
    records a higher generation and the manifest's SHA-256, signed when the store signs. Raises ConflictError,
    VersionNotFound (no manifest)."""
    manifest = store.get_bytes(version_key(version, MANIFEST), limit=MANIFEST_LIMIT)
    body = signed.new_pointer(store, version, manifest, expected)
    store.swap_pointer(version, expected, body)
    signed.remember(store, body)


class Draft:
    """A version being made, and the one way every version is made: its files, then its manifest, then the
    pointer (refresh, import, convert, and a version that carries its parent's model forward).

        >>> with Draft(store, new_version(), parent=pointer.version) as draft:      # doctest: +SKIP
        ...     draft.upload(folder)                 # or put(name, data), copy(manifest, names), add(entries)
        >>> manifest = draft.commit(fields, expected=pointer)                       # doctest: +SKIP

    Entering the ``with`` block names ``parent`` in the version's first file (:mod:`jobs.storage.lease`), so
    gc keeps the parent while the version is written; leaving it with an exception, before the manifest is
    written, removes what was uploaded (:func:`discard`: readers never saw it). :meth:`commit` writes the
    manifest (signed when the store signs) and then, unless told not to (a failed quality gate), moves the
    pointer with one conditional write: a version whose pointer write fails stays complete and unpromoted.
    """

    def __init__(self, store: Store, version: str, parent: str | None = None) -> None:
        self.store, self.version, self.parent = store, version, parent
        self.files: dict[str, dict[str, Any]] = {}
        self.manifest: Manifest | None = None  # once committed

    def __enter__(self) -> Draft:
        if self.parent is not None:
            try:
                lease.claim(self.store, self.version, self.parent)
            except BaseException:
                self.discard()
                raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if kind is not None and self.manifest is None:
            self.discard()  # a no-op if nothing was uploaded, or if the manifest was written after all

    def upload(self, folder: Path, progress: Callable[[str], None] | None = None) -> None:
        """Upload every file under ``folder`` (hashed while it is uploaded)."""
        self.files |= upload_version(self.store, self.version, folder, progress)

    def put(self, name: str, data: bytes) -> None:
        """Write one file from memory."""
        self.files[name] = put_recorded(self.store, self.version, name, data)

    def copy(self, source: Manifest, names: list[str]) -> None:
        """Copy ``names`` of the version ``source`` into this one, inside the store (the same bytes)."""
        self.files |= copy_recorded(self.store, source, self.version, names)

    def add(self, files: Mapping[str, Mapping[str, Any]]) -> None:
        """Files uploaded elsewhere (by the trainer, on its node), with their manifest entries."""
        self.files |= {name: dict(entry) for name, entry in files.items()}

    def commit(self, fields: Mapping[str, Any], expected: Pointer | None, promote: bool = True) -> Manifest:
        """Write the manifest of ``fields`` and the files added, then (``promote``) point at the version if the
        pointer is still ``expected``. Returns the manifest. Raises ConflictError when the pointer moved (the
        version stays, complete and unpromoted), StoreError."""
        manifest = Manifest.create({**fields, "version": self.version, "files": self.files})
        write_manifest(self.store, self.version, manifest)
        self.manifest = manifest
        if promote:
            move_pointer(self.store, self.version, expected)
            log.info("published %s to %s", self.version, self.store.uri)
        return manifest

    def discard(self) -> None:
        """Remove what was uploaded, unless the manifest was written (:func:`discard`)."""
        discard(self.store, self.version)


def publish(store: Store, version: str, folder: Path, fields: Mapping[str, Any], expected: Pointer | None) -> Manifest:
    """Upload ``folder`` as ``version``, write its manifest, then move the pointer. Returns the manifest.

    Raises ConflictError when the pointer is no longer ``expected`` (the version stays, unpromoted).
    """
    draft = Draft(store, version)
    draft.upload(folder, lambda name: log.info("uploaded %s/%s", version, name))
    return draft.commit(fields, expected)


def resolve(store: Store, version: str) -> str:
    """Turn ``latest`` (or ``current``) into the version the pointer names. Raises IntegrityError for a name
    that is not a version id (:mod:`jobs.storage.names`), VersionNotFound for an empty store."""
    if version not in ("latest", "current"):
        return check_version(version, f"a request to {store.uri}")
    return _required_pointer(store).version


def _required_pointer(store: Store) -> Pointer:
    pointer = current(store)
    if pointer is None:
        raise VersionNotFound(f"the store {store.uri} has no current version yet")
    return pointer


def load_manifest(store: Store, version: str, pointer: Pointer | None = None) -> Manifest:
    """The manifest of ``version`` (``latest``: the one the pointer names), at most ``MANIFEST_LIMIT`` bytes,
    checked against the trusted keys when the store has some (and against ``pointer`` when it was reached
    through one), then every file and version it names and the type of every field
    (:meth:`Manifest.parse`). Raises IntegrityError (SignatureError), VersionNotFound."""
    if version in ("latest", "current"):
        pointer = _required_pointer(store)
        version = pointer.version
    version = check_version(version, f"a request to {store.uri}")
    try:
        data = store.get_bytes(version_key(version, MANIFEST), limit=MANIFEST_LIMIT)
    except VersionNotFound:
        raise VersionNotFound(f"version {version} has no manifest in {store.uri}") from None
    signed.check_manifest(store, version, data, pointer)
    return Manifest.parse(data, store.uri, version)


def read_manifest(store: Store, version: str, pointer: Pointer | None = None) -> dict[str, Any]:
    """:func:`load_manifest` as a plain dict the caller may change (every key, as written)."""
    return load_manifest(store, version, pointer).to_dict()


def fetch_verified(store: Store, version: str, destination: Path, names: list[str] | None = None) -> Path:
    """Download a version's files (or only ``names``) into ``destination`` and verify each against the
    manifest. Returns ``destination``. Raises IntegrityError on a missing file or a size/SHA-256 mismatch.

    A file is verified while the next one downloads, so the two passes overlap.
    """
    return fetch_files(store, load_manifest(store, version), destination, names)


def fetch_files(store: Store, manifest: Mapping[str, Any], destination: Path, names: list[str] | None = None) -> Path:
    """:func:`fetch_verified` for a manifest already read. Every name is checked again (it is written as a
    path under ``destination``), and must stay inside ``destination``."""
    version = check_version(manifest["version"], f"a manifest of {store.uri}")
    wanted = manifest["files"] if names is None else {n: manifest["files"][n] for n in names}
    label = f"{store.uri}, version {version}"
    targets = {name: inside(destination, check_file(name, store.uri, version), label) for name in wanted}
    destination.mkdir(parents=True, exist_ok=True)
    checks: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as verifier:
        try:
            for name, expected in sorted(wanted.items()):
                target = targets[name]
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    store.get_file(version_key(version, name), target)
                except VersionNotFound:
                    raise IntegrityError(f"version {version} is missing {name} (listed in its manifest)") from None
                checks.append(verifier.submit(verify_file, target, expected, f"{version}/{name}"))
        finally:
            for check in checks:
                check.result()  # the first mismatch raises; a missing file after it is reported as missing
    return destination


def read_recorded(store: Store, manifest: Mapping[str, Any], name: str) -> bytes:
    """One small file of a version, in memory, verified against its manifest. Raises IntegrityError when it is
    missing or differs from its recorded size or SHA-256."""
    version, expected = manifest["version"], manifest["files"][name]
    try:
        data = store.get_bytes(version_key(version, name), limit=int(expected["size"]))
    except VersionNotFound:
        raise IntegrityError(f"version {version} is missing {name} (listed in its manifest)") from None
    if len(data) != expected["size"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise IntegrityError(f"{version}/{name} differs from its manifest's size or SHA-256; refusing to read it")
    return data


def verify_file(path: Path, expected: Mapping[str, Any], label: str) -> None:
    size = os.path.getsize(path)
    if size != expected["size"]:
        raise IntegrityError(f"{label}: size {size} differs from the manifest's {expected['size']}; refusing to load")
    digest = sha256_file(path, mapped=True)  # this process's own copy: downloaded, or linked from its cache
    if digest != expected["sha256"]:
        raise IntegrityError(f"{label}: SHA-256 {digest[:12]}… differs from the manifest's; refusing to load")


def model_files(manifest: Mapping[str, Any], allow_pickle: bool = False) -> list[str]:
    """The model's files (everything under ``model/``).

    Raises PickledModelError for a version in the previous format (gensim's ``save()``, a pickle), unless
    ``allow_pickle``: anyone who could write to the store could have made that file run code.
    """
    version = manifest.get("version", "?")
    names = [name for name in manifest["files"] if name.startswith(f"{MODEL_DIR}/")]
    for name in names:
        check_file(name, "the store", str(version))
    if MODEL_PARAMS not in names and not allow_pickle:
        raise PickledModelError(
            f"version {version} stores its model as a pickle (gensim's save(), the previous format), which runs "
            f"code when loaded; refusing it. If you trust everyone who can write to this store, convert it once "
            f"with `python -m jobs.versions convert {version} --store STORE --allow-pickle`"
        )
    return names


def pickled(manifest: Mapping[str, Any]) -> bool:
    """Whether the version's model is in the previous, pickled format."""
    return MODEL_PARAMS not in manifest["files"]


def discard(store: Store, version: str) -> None:
    """Remove what a failed run uploaded before its manifest (readers never saw it). Best effort: during an
    outage the leftovers stay, invisible to readers (no manifest), and ``jobs.versions gc`` can remove them."""
    try:
        store.get_bytes(version_key(version, MANIFEST))
    except VersionNotFound:
        try:
            store.delete_version(version)
        except StoreError as exc:
            log.warning("could not remove the incomplete version %s: %s", version, exc)
    except StoreError:
        log.warning("could not check the incomplete version %s; left for gc", version)
