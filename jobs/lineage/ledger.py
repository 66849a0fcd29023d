"""The ledger: which partitions a model's lineage has consumed, so each is trained on exactly once.

Every version stores ``ledger.parquet``: one row per partition its lineage consumed (``key``, ``size``,
``mtime_ns``, ``version``), carried forward and extended by each refresh. A partition's key is its path
relative to ``--input``, so the history survives a move: the input mounted elsewhere, the bucket copied, or
``s3://`` swapped for a mounted path. The root the keys were last read under is recorded in the file's
metadata, for messages. One columnar file read per run, however long the lineage, keeps selection fast for
prefixes with hundreds of thousands of partitions.

    >>> seen = read(store, parent_version, input_root="s3://corpus/events")
    >>> plan = select(discovered, seen)
    >>> ensure_related(plan, seen, "s3://corpus/events", parent_version)  # a wrong --input fails here
    >>> plan.new, plan.rewritten

Ledgers written before keys were relative (a ``uri`` column of absolute paths or URIs) are migrated on read:
rows under the current input root, or under the input the parent version recorded in its ``config.json``,
get their relative key; any other row keeps its URI as key and never matches.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.errors import ConfigError, IntegrityError, VersionNotFound
from jobs.storage import Store
from jobs.storage.publish import version_key
from shards.partitions import Partition

log = logging.getLogger(__name__)

LEDGER = "ledger.parquet"
FORMAT = "2"
SCHEMA = pa.schema([("key", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("version", pa.string())])
_ROOT = b"embedding_refresh.root"
_FORMAT = b"embedding_refresh.ledger"


@dataclass(frozen=True)
class Ledger:
    """The partitions a lineage consumed, and the input root their keys were last read under."""

    table: pa.Table
    root: str | None = None

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)


@dataclass(frozen=True)
class Plan:
    """Discovered partitions split by what the lineage has seen."""

    new: list[Partition]
    rewritten: list[Partition]
    already: int


def empty() -> Ledger:
    return Ledger(SCHEMA.empty_table())


def read(store: Store, version: str | None, input_root: str | None = None) -> Ledger:
    """The ledger of ``version`` (empty for no version), migrated to relative keys if it predates them."""
    if version is None:
        return empty()
    try:
        data = store.get_bytes(version_key(version, LEDGER))
    except VersionNotFound:
        raise IntegrityError(f"version {version} in {store.uri} has no {LEDGER}") from None
    table = pq.read_table(io.BytesIO(data))
    if "key" in table.column_names:
        meta = table.schema.metadata or {}
        root = meta.get(_ROOT, b"").decode() or None
        return Ledger(table.select(SCHEMA.names).cast(SCHEMA), root)
    roots = [r for r in (input_root, _recorded_input(store, version)) if r]
    return migrate(table, roots, version)


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


def ensure_related(plan: Plan, ledger: Ledger, input_root: str, version: str | None) -> None:
    """Refuse to train when the lineage has consumed partitions but none of them is under ``input_root``.

    That is a wrong ``--input`` (a parent or child of the folder the lineage reads gives every partition
    another key) far more often than new data, and training would count the whole history twice.
    Raises ConfigError saying what to check.
    """
    if ledger.rows == 0 or not plan.new or plan.already or plan.rewritten:
        return
    raise ConfigError(
        f"none of the {len(plan.new)} partitions under {input_root} is in the ledger of version {version}, "
        f"which holds {ledger.rows:,} consumed partitions (keys relative to "
        f"{ledger.root or 'an unrecorded root'}). Check that --input names the same folder or prefix as before "
        "(keys are paths relative to it, so a parent or child folder matches nothing). If this really is new "
        "data, or the consumed partitions were all deleted, rerun with --allow-new-input."
    )


def extend(ledger: Ledger, consumed: list[Partition], version: str, input_root: str | None) -> bytes:
    """The parent's ledger plus this run's partitions (a rewritten partition's row is replaced)."""
    table = ledger.table
    if consumed:
        keys = pa.array([p.key for p in consumed], pa.string())
        table = table.filter(pc.invert(pc.is_in(table.column("key"), value_set=keys)))
    added = pa.table(
        {
            "key": [p.key for p in consumed],
            "size": [p.size for p in consumed],
            "mtime_ns": [p.mtime_ns for p in consumed],
            "version": [version] * len(consumed),
        },
        schema=SCHEMA,
    )
    meta = {_FORMAT: FORMAT.encode(), _ROOT: (input_root or ledger.root or "").encode()}
    merged = pa.concat_tables([table, added]).replace_schema_metadata(meta)
    sink = io.BytesIO()
    pq.write_table(merged, sink, compression="zstd")
    return sink.getvalue()
