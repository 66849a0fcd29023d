"""The ledger: which partitions a model's lineage has consumed, so each is trained on exactly once.

A version's ledger is one row per partition its lineage consumed (``key``, ``size``, ``mtime_ns``,
``version``). A partition's key is its path relative to ``--input``, so the history survives a move: the
input mounted elsewhere, the bucket copied, or ``s3://`` swapped for a mounted path. The root the keys were
last read under is recorded in each file's metadata, for messages.

A version stores either the whole ledger (``ledger.parquet``, a *full* ledger) or only the rows it added
(``ledger-delta.parquet``, a *delta*), and then its manifest's ``ledger`` section names the chain of files
the rest is read from: a full ledger of an older version and the deltas of the versions after it, each with
its size and SHA-256. Once a chain would exceed ``--ledger-compact-every`` files, the version stores a full
ledger again (compaction), so reading costs at most that many files and writing costs this run's rows, except
on every K-th version. Later rows win: a rewritten partition consumed again replaces its older row.
``jobs.versions gc`` keeps every version a kept version's chain reads from. Versions written before deltas
existed hold a full ``ledger.parquet`` and are read as such.

    seen = read(store, parent_version, input_root="s3://corpus/events", manifest=parent_manifest)
    plan = select(discovered, seen)
    ensure_related(plan, seen, "s3://corpus/events", parent_version)  # a wrong --input fails here
    written = write(seen, consumed, version, "s3://corpus/events", compact_every=10)
    written.name, written.section                        # the file to store, the manifest's section

Ledgers written before keys were relative (a ``uri`` column of absolute paths or URIs) are migrated on read:
rows under the current input root, or under the input the parent version recorded in its ``config.json``,
get their relative key; any other row keeps its URI as key and never matches.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.errors import ConfigError, IntegrityError, VersionNotFound
from jobs.storage import Store
from jobs.storage.publish import load_manifest, version_key
from shards.partitions import DATE_KEYS, Partition

log = logging.getLogger(__name__)

LEDGER = "ledger.parquet"  # the whole ledger
DELTA = "ledger-delta.parquet"  # only the rows its version added; the rest from the manifest's chain
NAMES = (LEDGER, DELTA)
FORMAT = "2"
SCHEMA = pa.schema([("key", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("version", pa.string())])
_ROOT = b"embedding_refresh.root"
_FORMAT = b"embedding_refresh.ledger"


@dataclass(frozen=True)
class Ledger:
    """The partitions a lineage consumed, the input root their keys were last read under, and the files they
    were read from (oldest first: a full ledger, then deltas), each ``{version, file, size, sha256}``."""

    table: pa.Table
    root: str | None = None
    chain: tuple[dict[str, Any], ...] = field(default=())

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)


@dataclass(frozen=True)
class Written:
    """A version's ledger file and the ``ledger`` section of its manifest."""

    name: str
    data: bytes
    section: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """Discovered partitions split by what the lineage has seen."""

    new: list[Partition]
    rewritten: list[Partition]
    already: int


def empty() -> Ledger:
    return Ledger(SCHEMA.empty_table())


def chain_of(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The files a version's ledger is read from, oldest first (its own file last). Raises IntegrityError
    when the manifest lists no ledger."""
    version, files = manifest["version"], manifest["files"]
    if LEDGER in files:
        return [{"version": version, "file": LEDGER, **_entry(files[LEDGER])}]
    if DELTA in files and isinstance(manifest.get("ledger"), dict):
        return [*manifest["ledger"]["chain"], {"version": version, "file": DELTA, **_entry(files[DELTA])}]
    raise IntegrityError(f"version {version} lists no {LEDGER} (nor a {DELTA} with its chain) in its manifest")


def chain_versions(manifest: Mapping[str, Any]) -> set[str]:
    """The other versions whose files this version's ledger is read from (``gc`` keeps them)."""
    section = manifest.get("ledger")
    if not isinstance(section, dict) or DELTA not in manifest.get("files", {}):
        return set()
    return {str(link["version"]) for link in section.get("chain", [])}


def _entry(recorded: dict[str, Any]) -> dict[str, Any]:
    return {"size": int(recorded["size"]), "sha256": str(recorded["sha256"])}


def read(
    store: Store, version: str | None, input_root: str | None = None, manifest: Mapping[str, Any] | None = None
) -> Ledger:
    """The ledger of ``version`` (empty for no version): its full ledger, or the chain of files its manifest
    names, each verified against its recorded size and SHA-256, later rows replacing earlier ones; a full
    ledger that predates relative keys is migrated. Raises IntegrityError (a missing or altered file)."""
    if version is None:
        return empty()
    chain = chain_of(manifest if manifest is not None else load_manifest(store, version))
    base = _table(store, chain[0])
    if "key" in base.column_names:
        meta = base.schema.metadata or {}
        ledger = Ledger(base.select(SCHEMA.names).cast(SCHEMA), meta.get(_ROOT, b"").decode() or None)
    else:
        roots = [r for r in (input_root, _recorded_input(store, chain[0]["version"])) if r]
        ledger = migrate(base, roots, chain[0]["version"])
        chain = []  # no chain to extend: the next version stores the migrated keys as a whole ledger, once
    deltas = [_table(store, link) for link in chain[1:]]
    roots = [(t.schema.metadata or {}).get(_ROOT, b"").decode() for t in deltas]
    root = next((r for r in reversed(roots) if r), ledger.root)
    return Ledger(_apply(ledger.table, [t.select(SCHEMA.names).cast(SCHEMA) for t in deltas]), root, tuple(chain))


def _table(store: Store, link: dict[str, Any]) -> pa.Table:
    """One file of a chain, verified against the size and SHA-256 recorded for it."""
    label = f"{link['version']}/{link['file']}"
    try:
        data = store.get_bytes(version_key(link["version"], link["file"]), limit=link["size"])  # larger: refused unread
    except VersionNotFound:
        raise IntegrityError(
            f"the ledger file {label} is missing from {store.uri} (a version the lineage's ledger is read from "
            "was deleted by hand?); promote a version whose ledger is complete"
        ) from None
    if len(data) != link["size"] or hashlib.sha256(data).hexdigest() != link["sha256"]:
        raise IntegrityError(f"{label} in {store.uri} differs from its recorded size or SHA-256; refusing to read it")
    return pq.read_table(io.BytesIO(data))


def _apply(base: pa.Table, deltas: list[pa.Table]) -> pa.Table:
    """``base`` with each delta's rows in order, a row replacing any earlier row of its key. Newest first, so
    each older table is filtered once against the (small) set of keys written after it."""
    if not deltas:
        return base
    kept: list[pa.Table] = []
    newer: list[pa.Array] = []
    for table in [*reversed(deltas), base]:
        if newer:
            written = pa.concat_arrays(newer)
            table = table.filter(pc.invert(pc.is_in(table.column("key"), value_set=written)))
        kept.append(table)
        if table is not base:
            newer.append(table.column("key").combine_chunks())
    return pa.concat_tables(list(reversed(kept)))


def _recorded_input(store: Store, version: str) -> str | None:
    """The ``--input`` that ``version`` was refreshed from, as its ``config.json`` recorded it."""
    try:
        recorded = json.loads(store.get_bytes(version_key(version, "config.json")))["input"]
    except (VersionNotFound, ValueError, KeyError, TypeError):
        return None
    text = str(recorded).rstrip("/")
    return text if "://" in text else os.path.abspath(text)


def migrate(table: pa.Table, roots: list[str], version: str = "?") -> Ledger:
    """A ledger keyed on absolute URIs (``uri`` column), re-keyed relative to the first of ``roots`` each row
    lies under. Rows under none keep their URI as key: they match nothing, and are kept."""
    uris = table.column("uri").cast(pa.string()).combine_chunks()
    keys = pa.nulls(len(uris), pa.string())
    for root in roots:
        prefix = root.rstrip("/") + "/"
        under = pc.and_(pc.is_null(keys), pc.starts_with(uris, prefix))
        keys = pc.if_else(under, pc.utf8_slice_codeunits(uris, len(prefix)), keys)
    matched = len(keys) - keys.null_count
    keys = pc.coalesce(keys, uris)
    log.info(
        "ledger of %s migrated to keys relative to the input: %d of %d partitions under %s",
        version,
        matched,
        len(uris),
        " or ".join(roots) or "no known root",
    )
    migrated = pa.table(
        {"key": keys, "size": table["size"], "mtime_ns": table["mtime_ns"], "version": table["version"]}
    ).cast(SCHEMA)
    return Ledger(migrated, roots[0].rstrip("/") if matched and roots else None)


def select(partitions: list[Partition], ledger: Ledger) -> Plan:
    """Partitions the ledger has not seen (new), and those seen with another size or mtime (rewritten)."""
    if ledger.rows == 0:
        return Plan(new=list(partitions), rewritten=[], already=0)
    keys = pa.array([p.key for p in partitions], pa.string())
    index = pc.index_in(keys, value_set=ledger.table.column("key")).to_numpy(zero_copy_only=False)
    sizes = ledger.table.column("size").to_numpy()
    mtimes = ledger.table.column("mtime_ns").to_numpy()
    new, rewritten, already = [], [], 0
    for partition, row in zip(partitions, index, strict=True):
        if row != row:  # NaN: not in the ledger
            new.append(partition)
        elif sizes[int(row)] != partition.size or mtimes[int(row)] != partition.mtime_ns:
            rewritten.append(partition)
        else:
            already += 1
    return Plan(new=new, rewritten=rewritten, already=already)


def ensure_related(
    plan: Plan, ledger: Ledger, input_root: str, version: str | None, present: Callable[[str], bool] | None = None
) -> None:
    """Refuse to train when the lineage has consumed partitions but none of them is under ``input_root``.

    That is a wrong ``--input`` (a parent or child of the folder the lineage reads gives every partition
    another key) far more often than new data, and training would count the whole history twice. When the
    listing left folders out, ``present`` (whether a key exists under the input) is asked about the newest
    consumed partitions before refusing. Raises ConfigError saying what to check.
    """
    if ledger.rows == 0 or not plan.new or plan.already or plan.rewritten:
        return
    if present is not None and any(present(key) for key in ledger.table.column("key")[-3:].to_pylist()):
        return
    raise ConfigError(
        f"none of the {len(plan.new)} partitions under {input_root} is in the ledger of version {version}, "
        f"which holds {ledger.rows:,} consumed partitions (keys relative to "
        f"{ledger.root or 'an unrecorded root'}). Check that --input names the same folder or prefix as before "
        "(keys are paths relative to it, so a parent or child folder matches nothing). If this really is new "
        "data, or the consumed partitions were all deleted, rerun with --allow-new-input."
    )


def newest_day(ledger: Ledger) -> str | None:
    """The latest value of a date folder (``dt``/``date``/``day``/``ds``) among the consumed partitions' keys."""
    pattern = rf"(?:^|/)(?:{'|'.join(DATE_KEYS)})=(?P<day>[^/]*)/"
    days = pc.struct_field(pc.extract_regex(ledger.table.column("key"), pattern), "day")
    newest = pc.max(days).as_py()
    return str(newest) if newest else None


def relist_since(ledger: Ledger, days: int | None) -> str | None:
    """The first day a listing with ``--relist-days days`` covers: ``days`` before the newest date folder the
    lineage consumed (None without the flag, without date folders, or with days that are not ISO dates)."""
    newest = newest_day(ledger) if days is not None else None
    if days is None or newest is None:
        return None
    try:
        day = datetime.date.fromisoformat(newest[:10])
    except ValueError:
        log.warning("--relist-days: the newest consumed date folder %r is not an ISO date; listing all of them", newest)
        return None
    return (day - datetime.timedelta(days=days)).isoformat()


def _rows(consumed: list[Partition], version: str) -> pa.Table:
    return pa.table(
        {
            "key": [p.key for p in consumed],
            "size": [p.size for p in consumed],
            "mtime_ns": [p.mtime_ns for p in consumed],
            "version": [version] * len(consumed),
        },
        schema=SCHEMA,
    )


def _parquet(table: pa.Table, root: str | None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(
        table.replace_schema_metadata({_FORMAT: FORMAT.encode(), _ROOT: (root or "").encode()}),
        sink,
        compression="zstd",
    )
    return sink.getvalue()


def extend(ledger: Ledger, consumed: list[Partition], version: str, input_root: str | None) -> bytes:
    """The parent's ledger plus this run's partitions (a rewritten partition's row is replaced), as a full
    ledger file."""
    return _parquet(_apply(ledger.table, [_rows(consumed, version)]), input_root or ledger.root)


def write(
    ledger: Ledger, consumed: list[Partition], version: str, input_root: str | None, compact_every: int
) -> Written:
    """This version's ledger file: a delta of this run's rows while the parent's chain plus this file stays
    within ``compact_every`` files, else (and for a lineage's first ledger) the full, compacted ledger."""
    added = _rows(consumed, version)
    in_ledger = pc.is_in(ledger.table.column("key"), value_set=added.column("key").combine_chunks())
    replaced = int(pc.sum(in_ledger).as_py() or 0)  # hashing this run's keys, not the lineage's
    root = input_root or ledger.root
    section: dict[str, Any] = {"rows": ledger.rows - replaced + added.num_rows, "added": added.num_rows}
    if not ledger.chain or len(ledger.chain) + 1 > compact_every:
        data = _parquet(_apply(ledger.table, [added]), root)
        return Written(LEDGER, data, {"kind": "full", "chain": [], **section})
    return Written(DELTA, _parquet(added, root), {"kind": "delta", "chain": list(ledger.chain), **section})
