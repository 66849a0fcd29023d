"""The ledger: which partitions a model's lineage has consumed, so each is trained on exactly once.

Every version stores ``ledger.parquet``: one row per partition its lineage consumed (``uri``, ``size``,
``mtime_ns``, ``version``), carried forward and extended by each refresh. One columnar file read per run,
however long the lineage, keeps selection fast for prefixes with hundreds of thousands of partitions.

    >>> plan = select(discovered, read(store, parent_version))
    >>> plan.new, plan.rewritten
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.errors import IntegrityError, VersionNotFound
from jobs.storage import Store
from jobs.storage.publish import version_key
from shards.partitions import Partition

LEDGER = "ledger.parquet"
SCHEMA = pa.schema([("uri", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("version", pa.string())])


@dataclass(frozen=True)
class Plan:
    """Discovered partitions split by what the lineage has seen."""

    new: list[Partition]
    rewritten: list[Partition]
    already: int


def empty() -> pa.Table:
    return SCHEMA.empty_table()


def read(store: Store, version: str | None) -> pa.Table:
    """The ledger of ``version`` (empty for no version)."""
    if version is None:
        return empty()
    try:
        data = store.get_bytes(version_key(version, LEDGER))
    except VersionNotFound:
        raise IntegrityError(f"version {version} in {store.uri} has no {LEDGER}") from None
    return pq.read_table(io.BytesIO(data)).cast(SCHEMA)


def select(partitions: list[Partition], ledger: pa.Table) -> Plan:
    """Partitions the ledger has not seen (new), and those seen with another size or mtime (rewritten)."""
    if ledger.num_rows == 0:
        return Plan(new=list(partitions), rewritten=[], already=0)
    uris = pa.array([p.uri for p in partitions], pa.string())
    index = pc.index_in(uris, value_set=ledger.column("uri")).to_numpy(zero_copy_only=False)
    sizes = ledger.column("size").to_numpy()
    mtimes = ledger.column("mtime_ns").to_numpy()
    new, rewritten, already = [], [], 0
    for partition, row in zip(partitions, index, strict=True):
        if row != row:  # NaN: not in the ledger
            new.append(partition)
        elif sizes[int(row)] != partition.size or mtimes[int(row)] != partition.mtime_ns:
            rewritten.append(partition)
        else:
            already += 1
    return Plan(new=new, rewritten=rewritten, already=already)


def extend(ledger: pa.Table, consumed: list[Partition], version: str) -> bytes:
    """The parent's ledger plus this run's partitions (a rewritten partition's row is replaced)."""
    if consumed:
        uris = pa.array([p.uri for p in consumed], pa.string())
        ledger = ledger.filter(pc.invert(pc.is_in(ledger.column("uri"), value_set=uris)))
    added = pa.table(
        {
            "uri": [p.uri for p in consumed],
            "size": [p.size for p in consumed],
            "mtime_ns": [p.mtime_ns for p in consumed],
            "version": [version] * len(consumed),
        },
        schema=SCHEMA,
    )
    sink = io.BytesIO()
    pq.write_table(pa.concat_tables([ledger, added]), sink, compression="zstd")
    return sink.getvalue()
