"""Partitions a lineage found bad: acted on once, then left alone until they change.

A partition that cannot be read or tokenized fails the run that first finds it (exit 3, unless
``--skip-bad-partitions``), because someone should look at it: a scheduler marks the run failed and the
message names the file and the cause. It should not fail every night after that, nor make
``--skip-bad-partitions`` a permanent setting. So the run that finds it records it, keyed by its path below
``--input``, its size and its modification time, with the cause and the read settings that judged it:

- in the manifest of the version it publishes (``rejections``), which every later version carries forward;
- when it publishes nothing (the failing night), in ``rejected/<parent version>.json`` in the store (the
  partitions that runs building on that version found bad; ``rejected/none.json`` before the first version).
  The pointer does not move; the next run builds on the same parent and reads the file.

A later run leaves a recorded partition alone (not read, not consumed: listed as "rejected earlier" in its
summary and dry run, and counted by the ``rejected_partitions`` gauge) unless

- it changed (another size or modification time): it is read again;
- the read settings that decide what is bad changed (``--format``, ``--text-column``,
  ``--max-document-bytes``, ``--max-partition-bytes``, ``--max-decompression-ratio``): it is read again, so
  fixing a wrong ``--text-column`` does not leave every partition it rejected behind;
- the run is given ``--retry-rejected``.

A recorded partition read again and consumed leaves the list; one rejected again gets a new entry; one that a
complete listing (no ``--since``, ``--until``, ``--where`` or ``--relist-days`` pruning) no longer finds leaves
the list too.

    known = read(store, parent_version, parent_manifest)
    fresh, skipped = split(candidates, known, reading(config), retry=config.retry_rejected)
    entries = after(known, found_bad, consumed, listed_keys, reading(config), run_id)
    manifest["rejections"] = section(entries)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from jobs.config import RefreshConfig
from jobs.errors import PartitionError, StoreError, VersionNotFound
from jobs.storage import Store
from shards.partitions import Partition

log = logging.getLogger(__name__)

FOLDER = "rejected"
SECTION = "rejections"
PENDING_LIMIT = 64 << 20  # bytes of a rejected/<version>.json read at most (a few hundred thousand entries)


@dataclass(frozen=True)
class Rejection:
    """One partition the lineage found bad, and under which read settings."""

    key: str
    uri: str
    size: int
    mtime_ns: int
    cause: str
    reading: dict[str, Any]
    run: str = ""
    at: str = ""  # when it was found, UTC

    def matches(self, partition: Partition) -> bool:
        """Whether ``partition`` is the file this entry judged (same key, size and modification time)."""
        return (self.key, self.size, self.mtime_ns) == (partition.key, partition.size, partition.mtime_ns)

    @classmethod
    def parse(cls, entry: Any) -> Rejection | None:
        """An entry read from the store, or None (logged) for one of the wrong shape: data, checked."""
        try:
            fields = {
                "key": entry["key"],
                "uri": entry["uri"],
                "size": entry["size"],
                "mtime_ns": entry["mtime_ns"],
                "cause": entry["cause"],
                "reading": entry["reading"],
                "run": entry.get("run", ""),
                "at": entry.get("at", ""),
            }
        except (TypeError, KeyError):
            log.warning("ignoring a malformed rejection entry: %.200r", entry)
            return None
        types = {
            "key": str,
            "uri": str,
            "size": int,
            "mtime_ns": int,
            "cause": str,
            "reading": dict,
            "run": str,
            "at": str,
        }
        if any(not isinstance(fields[k], t) or isinstance(fields[k], bool) for k, t in types.items()):
            log.warning("ignoring a malformed rejection entry: %.200r", entry)
            return None
        return cls(**fields)


def reading(config: RefreshConfig) -> dict[str, Any]:
    """The settings that decide whether a partition is bad; a rejection holds only while they are the same."""
    return {
        "format": config.input_format,
        "text_column": config.read.text_column,
        "max_document_bytes": config.read.max_document_bytes,
        "max_partition_bytes": config.read.max_partition_bytes,
        "max_decompression_ratio": config.read.max_decompression_ratio,
    }


def pending_key(version: str | None) -> str:
    return f"{FOLDER}/{version or 'none'}.json"


def pending(store: Store, version: str | None) -> list[Rejection]:
    """What runs building on ``version`` found bad without publishing (``rejected/<version>.json``)."""
    try:
        data = json.loads(store.get_bytes(pending_key(version), limit=PENDING_LIMIT))
    except VersionNotFound:
        return []
    except ValueError:
        log.warning("%s in %s is not valid JSON; ignoring it", pending_key(version), store.uri)
        return []
    entries = data.get("partitions") if isinstance(data, dict) else None
    return [r for r in map(Rejection.parse, entries if isinstance(entries, list) else []) if r is not None]


def read(store: Store, version: str | None, manifest: Mapping[str, Any] | None) -> dict[str, Rejection]:
    """The lineage's rejected partitions by key: those ``manifest`` carries, then those runs building on
    ``version`` recorded without publishing (a later entry for a key replaces an earlier one)."""
    section = (manifest or {}).get(SECTION)
    entries = section.get("partitions", []) if isinstance(section, dict) else []
    carried = [r for r in map(Rejection.parse, entries if isinstance(entries, list) else []) if r is not None]
    return {r.key: r for r in [*carried, *pending(store, version)]}


def split(
    partitions: list[Partition], known: dict[str, Rejection], settings: dict[str, Any], retry: bool
) -> tuple[list[Partition], list[tuple[Partition, Rejection]]]:
    """The partitions to read, and those left alone because the lineage found them bad as they are now
    (unless ``retry``)."""
    fresh, skipped = [], []
    for partition in partitions:
        entry = known.get(partition.key)
        if entry is not None and not retry and entry.matches(partition) and entry.reading == settings:
            skipped.append((partition, entry))
        else:
            fresh.append(partition)
    return fresh, skipped


def found(
    errors: list[PartitionError], partitions: list[Partition], settings: dict[str, Any], run: str
) -> list[Rejection]:
    """Entries for the partitions a run found bad (``errors`` name them by URI)."""
    by_uri = {p.uri: p for p in partitions}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries = []
    for error in errors:
        p = by_uri.get(error.uri)
        if p is not None:
            entries.append(Rejection(p.key, p.uri, p.size, p.mtime_ns, error.cause, settings, run, now))
    return entries


def after(
    known: dict[str, Rejection], new: list[Rejection], consumed: list[Partition], listed: set[str] | None
) -> list[Rejection]:
    """The lineage's list once a run is done: the known entries, less the partitions it consumed and those a
    complete listing (``listed``: every key under the input; None when the listing was pruned) no longer
    finds, with the entries it found bad replacing any of the same key. Sorted by key."""
    taken = {p.key for p in consumed}
    kept = {k: r for k, r in known.items() if k not in taken and (listed is None or k in listed)}
    kept.update((r.key, r) for r in new)
    return [kept[k] for k in sorted(kept)]


def section(entries: list[Rejection]) -> dict[str, Any]:
    """The manifest's ``rejections`` section."""
    return {"count": len(entries), "partitions": [asdict(r) for r in entries]}


def record_pending(store: Store, version: str | None, entries: list[Rejection]) -> None:
    """Add ``entries`` to what runs building on ``version`` found bad, for the next run to read (the run that
    found them publishes nothing). A store that cannot be written costs the record, logged, never the run's
    own error: the next run then reads those partitions again and fails as this one did."""
    if not entries:
        return
    try:
        merged = {r.key: r for r in pending(store, version)}
        merged.update((r.key, r) for r in entries)
        body = {"parent": version, "partitions": [asdict(merged[k]) for k in sorted(merged)]}
        store.put_bytes(pending_key(version), (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
    except (StoreError, OSError) as exc:
        log.warning("could not record the rejected partitions in %s: %s", pending_key(version), exc)
        return
    log.warning(
        "recorded %d rejected partition(s) in %s/%s: later runs leave them alone until they change "
        "(or --retry-rejected)",
        len(entries),
        store.uri,
        pending_key(version),
    )
