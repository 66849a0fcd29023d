"""What a store keeps, and which version is current: ``jobs.versions gc`` and ``jobs.versions promote``.

    python -m jobs.versions gc --keep 5 --store models       # and incomplete versions older than 24 h
    python -m jobs.versions promote 20261124T020000Z-ab12cd --store models

``gc`` keeps

- the ``--keep`` newest versions;
- every version the pointer named when gc looked (it reads the pointer again before each deletion), and
  its parent;
- the parent of every version still being written: an incomplete version younger than
  ``--incomplete-grace`` names it in its ``parent.json`` (:mod:`jobs.storage.lease`);
- every version the ledger of one of those is read from (its chain: :mod:`jobs.lineage.ledger`);

and removes the other versions, newest first, then the incomplete versions older than the grace.

gc and promote cannot race into a pointer that names a removed version. gc removes a version in two steps:
it deletes the manifest (the version is now invisible, and a promote of it fails), reads the pointer again,
and puts the manifest back if the pointer has moved onto the version, or onto one whose parent or ledger
chain it is; only then are the files deleted. promote, after moving the pointer, checks that the version and
every version its ledger is read from still have their manifests, and moves the pointer back if gc hid one
meanwhile. In whatever order their steps land, the pointer ends on a version whose manifest and files exist;
only a reader that resolves the pointer within those few milliseconds may see VersionNotFound, once.

Newest first: a refresh whose parent gc removes (one that began before the parent was rolled away from, and
before it wrote its ``parent.json``) then finds the parent's manifest gone before any older version its
ledger is read from, and fails as retryable (:class:`~jobs.errors.VersionRemoved`, exit 75), not as a
damaged ledger (exit 3).

The grace must outlast the longest run: a run writes its ``parent.json`` when it starts, so one that tokenizes
for hours before uploading anything looks idle all that time. gc refuses a grace under
:data:`MIN_GRACE_HOURS`, the ``activeDeadlineSeconds`` after which the job definitions in ``infra/k8s`` stop a
run, unless ``--allow-short-grace`` says that no run is in progress (or that runs are bounded shorter).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

from jobs.errors import ConfigError, ConflictError, SignatureError, StoreError, VersionNotFound
from jobs.lineage import ledger
from jobs.storage import Pointer, Store, lease, signed
from jobs.storage.names import MANIFEST_LIMIT, check_version
from jobs.storage.publish import MANIFEST, Manifest, current, load_manifest, move_pointer, version_key

log = logging.getLogger(__name__)

#: an incomplete version younger than this may belong to a run still working; a day leaves a wide margin
INCOMPLETE_GRACE_HOURS = 24.0
#: no shorter grace without --allow-short-grace: infra/k8s stops a run after 6 h (activeDeadlineSeconds: 21600)
MIN_GRACE_HOURS = 6.0


class Kept:
    """The versions gc must not remove; it only grows during one gc."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.direct: set[str] = set()  # kept in their own right
        self.chains: set[str] = set()  # read from by a kept version's ledger
        self.currents: list[str] = []  # every version the pointer named when gc looked
        self.manifests: dict[str, Manifest] = {}  # each keeps the bytes read, to be put back as they were

    def __contains__(self, version: object) -> bool:
        return version in self.direct or version in self.chains

    def keep(self, version: str, parent: bool = False) -> None:
        """Keep ``version``, the versions its ledger is read from, and (``parent``) its parent."""
        self.direct.add(version)
        manifest = self.manifest(version)
        if manifest is None:
            return
        # what a kept version links to steers gc: with trusted keys, a forged parent or chain link stops it (a
        # version to be removed is not checked, so unsigned versions from before signing can still be collected)
        signed.check_manifest(self.store, version, manifest.data)
        self.chains |= ledger.chain_versions(manifest)
        if parent and manifest.parent:
            self.keep(manifest.parent)

    def look(self) -> Pointer | None:
        """Read the pointer; a version it names for the first time is kept with its parent."""
        pointer = current(self.store)  # with trusted keys, a forged pointer stops gc before it deletes anything
        if pointer is not None and pointer.version not in self.currents:
            self.currents.append(pointer.version)
            if self.manifest(pointer.version) is None:
                raise StoreError(
                    f"the current version {pointer.version} has no manifest in {self.store.uri}, so gc cannot tell "
                    "what it needs and stops; promote a complete version (python -m jobs.versions list)"
                )
            self.keep(pointer.version, parent=True)
        return pointer

    def manifest(self, version: str) -> Manifest | None:
        """The version's manifest (read once), None when it has none."""
        if version not in self.manifests:
            check_version(version, f"a manifest that gc read in {self.store.uri}")  # a parent, a ledger chain link
            try:
                data = self.store.get_bytes(version_key(version, MANIFEST), limit=MANIFEST_LIMIT)
            except VersionNotFound:
                return None
            self.manifests[version] = Manifest.parse(data, self.store.uri, version)
        return self.manifests[version]


def check_grace(grace_hours: float, allow_short_grace: bool) -> None:
    """Raise ConfigError for a grace that a run in progress could outlast."""
    if grace_hours < 0:
        raise ConfigError("--incomplete-grace must not be negative")
    if grace_hours < MIN_GRACE_HOURS and not allow_short_grace:
        raise ConfigError(
            f"--incomplete-grace {grace_hours:g} is shorter than the longest run ({MIN_GRACE_HOURS:g} h, the "
            "deadline after which infra/k8s stops a run): gc would remove the version a refresh is still "
            "writing, and the parent it builds on. Pass --allow-short-grace if no refresh is running (or yours "
            "are stopped sooner)"
        )


def gc(
    store: Store,
    keep: int,
    grace_hours: float = INCOMPLETE_GRACE_HOURS,
    now: float | None = None,
    allow_short_grace: bool = False,
) -> str:
    """Remove the versions nothing needs, and incomplete versions older than ``grace_hours`` (see the module's
    docstring); return a summary. Raises ConfigError (the arguments), VersionNotFound (no current version) or
    StoreError."""
    if keep < 1:
        raise ConfigError("--keep must be at least 1")
    check_grace(grace_hours, allow_short_grace)
    kept = Kept(store)
    if kept.look() is None:
        raise VersionNotFound(f"the store {store.uri} has no current version yet")
    versions = store.list_versions()
    incomplete = store.list_incomplete()
    cutoff = (time.time() if now is None else now) - grace_hours * 3600
    for version in versions[max(0, len(versions) - keep) :]:
        kept.keep(version)
    for_runs = set()
    for version in sorted(v for v, written in incomplete.items() if written >= cutoff):
        parent = lease.claimed(store, version)
        if parent in versions and parent not in kept:
            for_runs.add(parent)
            kept.keep(parent)
    outcomes: dict[str, list[str]] = {"removed": [], "needed": [], "gone": []}
    for version in reversed(versions):
        if version not in kept:
            outcomes[remove(store, version, kept)].append(version)
    removed = outcomes["removed"]
    orphans = sorted(v for v, written in incomplete.items() if written < cutoff)
    for version in orphans:
        kept.look()
        if version not in kept and kept.manifest(version) is None:  # not completed meanwhile (by a run > grace)
            store.delete_version(version)
    notes = [f"{len((kept.chains - kept.direct) & set(versions))} that kept versions' ledgers are read from"]
    notes += [f"{len(for_runs)} that refreshes in progress build on"]
    notes += [f"{len(outcomes['needed'])} that a promote during gc made current or needed"]
    said = [note for note in notes if not note.startswith("0 ")]
    return (
        f"removed {len(removed)} version(s); kept {len(versions) - len(removed)}"
        + (f" ({', '.join(said)})" if said else "")
        + f"; removed {len(orphans)} incomplete "
        f"version(s) older than {grace_hours:g} h, left {len(incomplete) - len(orphans)} younger"
    )


def remove(store: Store, version: str, kept: Kept) -> str:
    """Remove ``version`` unless the pointer has moved onto it, or onto a version that needs it: hide it (delete
    its manifest), look at the pointer again, then delete its files or put the manifest back. Returns
    ``removed``, ``needed`` (kept after all) or ``gone`` (someone else removed it first)."""
    kept.look()
    if version in kept:
        return "needed"
    if kept.manifest(version) is None:
        return "gone"
    key, body = version_key(version, MANIFEST), kept.manifests[version].data
    store.delete(key)  # from here on a promote of it fails
    try:
        kept.look()
    except BaseException:
        _restore(store, key, body)
        raise
    if version in kept:
        _restore(store, key, body)
        log.warning("%s was promoted (or a version that needs it was) while gc removed it; it is kept", version)
        return "needed"
    store.delete_version(version)
    return "removed"


def _restore(store: Store, key: str, body: bytes) -> None:
    """Put a hidden manifest back; if the store refuses, keep a local copy and say where, then raise."""
    try:
        store.put_bytes(key, body)
    except StoreError as exc:
        fd, copy = tempfile.mkstemp(prefix="gc-manifest-", suffix=".json")
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        log.error("could not put back %s/%s (%s); its bytes are in %s: copy them back", store.uri, key, exc, copy)
        raise


def promote(store: Store, version: str) -> str:
    """Make ``version`` current (a rollback, or a roll forward). Raises VersionNotFound when it, or a version
    its ledger is read from, has no manifest, before or (a gc removing it meanwhile) after the pointer moved;
    the pointer is then moved back."""
    manifest = load_manifest(store, version)  # only a complete version can become current
    target = manifest.version
    missing = absent(store, manifest, include_self=False)
    if missing:
        raise VersionNotFound(
            f"cannot promote {target}: its ledger is read from {missing[0]}, which has no manifest in {store.uri} "
            "(removed); promote a version whose ledger is complete"
        )
    pointer = _replaced(store)
    move_pointer(store, target, pointer)  # signed when the store signs (jobs.storage.signed)
    missing = absent(store, manifest, include_self=True)
    if missing:
        raise VersionNotFound(
            f"{missing[0]} was removed (a gc is running) while {target} was being promoted; "
            f"{_move_back(store, target, pointer)}. Promote it again once gc is done, if it is still listed"
        )
    return f"current version: {target} (was {pointer.version if pointer else 'none'})"


def _replaced(store: Store) -> Pointer | None:
    """The pointer a promote replaces, checked against the trusted keys, if any. With ``--rollback`` (the
    store's Signing allows it) one that went back below a pointer this host has seen, or fails its check (a
    forged one), is replaced all the same: the new pointer is signed and above every generation seen."""
    try:
        return current(store)
    except SignatureError as exc:
        if not store.signing.allow_rollback:
            raise
        log.warning("replacing the current pointer, which fails its check: %s", exc)
        return store.read_pointer()


def absent(store: Store, manifest: Manifest, include_self: bool) -> list[str]:
    """The versions among ``manifest``'s own (if ``include_self``) and its ledger chain's that have no manifest."""
    target = manifest.version
    wanted = ([target] if include_self else []) + sorted(ledger.chain_versions(manifest) - {target})
    gone = []
    for version in wanted:
        try:
            store.get_bytes(version_key(version, MANIFEST))
        except VersionNotFound:
            gone.append(version)
    return gone


def _move_back(store: Store, target: str, previous: Pointer | None) -> str:
    """Point back at ``previous`` if the pointer still names ``target``; say what happened."""
    now = store.read_pointer()
    if now is None or now.version != target:
        return f"the pointer has moved on since, to {now.version if now else 'nothing'}"
    if previous is None:
        return f"the pointer names {target} and there was no version to move it back to; promote another version"
    try:
        move_pointer(store, previous.version, now)
    except ConflictError as exc:
        return f"the pointer has moved on since, to {exc.theirs or 'nothing'}"
    except VersionNotFound:
        return f"{previous.version} has no manifest any more, so the pointer stays on {target}"
    return f"the pointer is back on {previous.version}"
