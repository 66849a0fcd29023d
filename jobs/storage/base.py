"""What every model store is: the ``Store`` protocol and the pointer format that all stores share.

A store holds immutable files under ``versions/<version>/`` and one small pointer object, ``CURRENT``,
naming the current version. It offers only primitives; the publish protocol (files, then manifest, then one
conditional pointer write) and verified loading live once, in :mod:`jobs.storage.publish`, for every store.

    store = open_store("./models")                  # or "s3://bucket/prefix" (jobs.storage.s3)
    pointer = store.read_pointer()                   # None for an empty store
    store.swap_pointer("20261124T020000Z-ab12cd", expected=pointer)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jobs.errors import IntegrityError
from jobs.storage.names import MANIFEST, POINTER_LIMIT, check_version

if TYPE_CHECKING:
    from jobs.storage.signed import Signing

POINTER = "CURRENT"
VERSIONS = "versions"


@dataclass(frozen=True)
class Pointer:
    """The current version and an opaque token (an ETag) that a conditional write must match, and the pointer
    object's bytes (checked by :mod:`jobs.storage.signed`)."""

    version: str
    token: str
    data: bytes = field(default=b"", compare=False, repr=False)


class Store(Protocol):
    """Primitives every model store offers. Keys are ``/``-separated, relative to the store root."""

    uri: str
    signing: Signing  # what this process signs with and trusts; applied by jobs.storage.publish
    #: whether :meth:`put_file` with ``final`` can take a file where it is (the local store links it, then makes
    #: it durable): a writer that expects to put its files so may make each durable as it finishes it, while
    #: it writes the next, and the put then finds the work done
    takes_files_in_place: bool

    def read_pointer(self) -> Pointer | None: ...

    def probe(self) -> None:
        """Check, once, that the store can publish safely (its conditional writes are honoured); raise
        StoreError naming the store and the fix otherwise."""
        ...

    def swap_pointer(self, version: str, expected: Pointer | None, body: bytes | None = None) -> None:
        """Point at ``version`` if the pointer is still ``expected``; raise ConflictError otherwise. ``body`` is
        the pointer object (default: :func:`pointer_body` of ``version``; a signed one: jobs.storage.signed)."""
        ...

    def put_file(self, key: str, source: Path, final: bool = False) -> None:
        """Store the file at ``source`` as ``key``. ``final``: the caller never changes or writes that file
        again, so the store may take it as it is (the local store links it where it can) rather than copy it."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str, limit: int | None = None) -> bytes:
        """The object's bytes; raises VersionNotFound when it does not exist, IntegrityError when it is larger
        than ``limit`` bytes (checked before it is read)."""
        ...

    def get_file(self, key: str, destination: Path) -> None: ...

    def copy(self, source: str, key: str) -> None:
        """Copy the object ``source`` to ``key`` inside the store, without the bytes passing through this
        process where the store allows (a hard link, a server-side copy). Raises VersionNotFound."""
        ...

    def list_versions(self) -> list[str]: ...

    def list_keys(self, folder: str, limit: int | None = None) -> list[str]:
        """Every key below ``folder`` (e.g. ``runs``), sorted; with ``limit``, only the first ``limit``, and
        the listing stops there (on S3, a request per 1,000 keys returned, not per 1,000 stored)."""
        ...

    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects (missing ones are no error). Raises StoreError when one could not be deleted."""
        ...

    def list_incomplete(self) -> dict[str, float]:
        """Versions without a manifest (uploads a run left behind, or one still uploading), each with the
        time (epoch seconds) its newest file was written."""
        ...

    def delete(self, key: str) -> None:
        """Delete one object; one that does not exist is not an error. (``gc`` hides a version by deleting its
        manifest first, and puts the manifest back if the pointer moved onto the version meanwhile.)"""
        ...

    def delete_version(self, version: str) -> None:
        """Delete every file of ``version``, its manifest first, so an interrupted deletion never leaves a
        listed version without its files. Raises StoreError when something could not be deleted."""
        ...


def version_key(version: str, name: str) -> str:
    """The key of the file ``name`` of ``version``."""
    return f"{VERSIONS}/{version}/{name}"


def pointer_body(version: str, fields: dict[str, Any] | None = None) -> bytes:
    """The pointer object's content, shared by every store so readers parse one format. ``fields`` (a
    generation, the manifest's SHA-256, a signature: :mod:`jobs.storage.signed`) follow ``version``, which is
    all that readers from before signing read."""
    body = {"version": version, "manifest": f"{VERSIONS}/{version}/{MANIFEST}", **(fields or {})}
    return (json.dumps(body) + "\n").encode()


def parse_pointer(data: bytes, where: str) -> str:
    """The version the pointer's content names, checked to be a version id (stores read at most
    ``POINTER_LIMIT`` + 1 bytes of it). Raises IntegrityError."""
    if len(data) > POINTER_LIMIT:
        raise IntegrityError(f"the pointer {where} is larger than {POINTER_LIMIT:,} bytes; refusing to read it")
    try:
        version = json.loads(data)["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"the pointer {where} is not valid JSON with a 'version' field") from exc
    return check_version(version, f"the pointer {where}")


def too_large(where: str, size: int, limit: int) -> IntegrityError:
    """The refusal of an object larger than a reader accepts, raised before its bytes are read."""
    return IntegrityError(
        f"{where} holds {size:,} bytes, more than the {limit:,} a reader accepts; refusing to read it"
    )
