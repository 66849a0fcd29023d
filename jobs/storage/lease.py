"""What a version still being written tells the store: the version it builds on.

A refresh's version has no manifest until its last step, so until then nothing in the store says which
version it builds on; yet the run reads that parent for hours (its model on the trainer's node, its ledger
chain, the files a carried-forward version copies). So before anything else of its version, the refresh
writes ``versions/<version>/parent.json`` naming the parent, and ``jobs.versions gc`` keeps the parent of every
incomplete version younger than its grace period (:mod:`jobs.retention`):

    >>> claim(store, "20261201T020011Z-1a2b3c", parent="20261130T020011Z-9f8e7d")    # doctest: +SKIP
    >>> claimed(store, "20261201T020011Z-1a2b3c")                                    # doctest: +SKIP
    '20261130T020011Z-9f8e7d'

The file is scaffolding, not part of the version: the manifest does not list it, no reader reads it, and it
goes with the version's folder. Whoever can write the store can forge one, which can only make gc keep a
version longer (and only while the forged folder is younger than the grace).

Should the parent go anyway (a gc that ran before the claim, or one told to use a grace shorter than the
run), the run finds a file or the manifest missing. :func:`reading` tells that apart from a damaged version:
when the version's manifest is gone and the pointer no longer names it, the version was removed under the
run (:class:`~jobs.errors.VersionRemoved`, exit 75: the pointer moved, so this run could not have published
anyway, and a rerun builds on the current version); otherwise the error stays what it was (exit 3).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from jobs.errors import IntegrityError, StoreError, VersionNotFound, VersionRemoved
from jobs.storage.base import Store, version_key
from jobs.storage.names import MANIFEST, MANIFEST_LIMIT, POINTER_LIMIT, VERSION

NAME = "parent.json"


def claim(store: Store, version: str, parent: str) -> None:
    """Record, before anything else of ``version`` is written, that it builds on ``parent``."""
    store.put_bytes(version_key(version, NAME), (json.dumps({"parent": parent}) + "\n").encode())


def claimed(store: Store, version: str) -> str | None:
    """The parent an incomplete ``version`` recorded, or None (no record, or not one this module wrote)."""
    try:
        data = store.get_bytes(version_key(version, NAME), limit=POINTER_LIMIT)
    except (VersionNotFound, IntegrityError):  # none, or larger than this module ever writes
        return None
    try:
        parent = json.loads(data[:4096])["parent"]
    except (ValueError, KeyError, TypeError):
        return None
    return parent if isinstance(parent, str) and VERSION.fullmatch(parent) else None


def removed(store: Store, version: str) -> bool:
    """Whether ``version`` has been removed: its manifest is gone and the pointer names another version."""
    try:
        store.get_bytes(version_key(version, MANIFEST), limit=MANIFEST_LIMIT)
    except VersionNotFound:
        pointer = store.read_pointer()
        return pointer is None or pointer.version != version
    return False


@contextlib.contextmanager
def reading(store: Store, version: str | None) -> Iterator[None]:
    """Run the body, which reads ``version``'s files: a file or manifest found missing because the version was
    removed meanwhile is raised as VersionRemoved; any other error as it was."""
    try:
        yield
    except (IntegrityError, VersionNotFound) as exc:
        if version is None:
            raise
        try:
            gone = removed(store, version)
        except StoreError:
            gone = False  # the store cannot say: the error the run met stands
        if not gone:
            raise
        current = store.read_pointer()
        raise VersionRemoved(
            f"{version}, the version this run builds on, was removed from {store.uri} while the run read it "
            f"({exc}): the pointer moved off it (to {current.version if current else 'nothing'}) and gc removed "
            "it. Nothing was published; rerun to build on the current version"
        ) from exc
