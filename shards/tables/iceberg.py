"""Apache Iceberg tables read by snapshot, through ``pyiceberg`` (``pip install .[iceberg]``).

    from shards.tables.iceberg import read_changes
    changes = read_changes("iceberg://prod/corpus.docs", consumed={})  # every row of the current snapshot
    changes.end.version, changes.end.sequence                            # doctest: +SKIP

``--input iceberg://CATALOG/NAMESPACE.TABLE`` names a table in a catalog configured as pyiceberg users already
configure it (``~/.pyiceberg.yaml``, ``$PYICEBERG_HOME/.pyiceberg.yaml``, or ``PYICEBERG_CATALOG__<NAME>__<KEY>``
variables): the SQL catalog, the REST catalog, Glue, Hive, whatever pyiceberg loads. Nothing else is read
than what the table's metadata names: the snapshots from the consumed one to the current one (its ancestors
only), and of each the manifests it wrote, whose entries say which data files it added and deleted
(:func:`shards.tables.changes.new_rows` decides which rows are new). A ``replace`` snapshot
(``rewrite_data_files``, compaction) changes no data; ``append``, ``overwrite`` and ``delete`` do.

Refused, naming the feature: delete files (position deletes and equality deletes, written by merge-on-read
deletes, updates and Flink upserts), which a file-by-file Parquet read does not apply, and data files in
another format than Parquet. A consumed snapshot that was expired, or one that is no longer an ancestor of the
current snapshot (a rollback), fails with :class:`~shards.errors.TableError` unless the run resumes from the
oldest snapshot still there.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from shards.errors import ConfigError, TableError
from shards.tables import ICEBERG_SCHEME, Changes, Options, Position, filesystem_path, matches, missing, partition_of
from shards.tables.changes import Commit, DataFile, Window, appended, new_rows

log = logging.getLogger(__name__)

_HINT = (
    "rerun with --resume-expired-table to continue from the oldest snapshot still in the table, with the gap reported"
)


def parse(uri: str) -> tuple[str, str]:
    """``iceberg://CATALOG/NAMESPACE.TABLE`` as the catalog's name and the table's identifier. Raises ConfigError."""
    rest = uri[len(ICEBERG_SCHEME) :] if uri.startswith(ICEBERG_SCHEME) else ""
    catalog, _, identifier = rest.partition("/")
    if not catalog or "." not in identifier.strip("."):
        raise ConfigError(f"--input {uri!r}: an Iceberg table is named iceberg://CATALOG/NAMESPACE.TABLE")
    return catalog, identifier


def load_table(uri: str) -> Any:
    """The table ``uri`` names, through its catalog's pyiceberg configuration. Raises ConfigError."""
    name, identifier = parse(uri)
    try:
        from pyiceberg.catalog import load_catalog
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
    except ImportError:
        raise ConfigError(
            "reading an Iceberg table needs the pyiceberg package: pip install 'embedding-refresh[iceberg]'"
        ) from None
    try:
        # read now, not when pyiceberg was first imported (it reads the environment once, at import)
        from pyiceberg.utils.config import Config

        properties: Any = Config().get_catalog_config(name) or {}  # nested for keys like s3.endpoint
        catalog = load_catalog(name, **properties)
    except (ValueError, ImportError) as exc:
        raise ConfigError(
            f"cannot load the Iceberg catalog {name!r} ({str(exc).splitlines()[0]}); configure it in .pyiceberg.yaml "
            f"or with PYICEBERG_CATALOG__{name.upper()}__TYPE, __URI and so on"
        ) from None
    try:
        return catalog.load_table(identifier)
    except (NoSuchTableError, NoSuchNamespaceError) as exc:
        raise ConfigError(f"no Iceberg table {identifier} in catalog {name}: {str(exc).splitlines()[0]}") from None


def _partition(table: Any, data_file: Any) -> tuple[tuple[str, str], ...]:
    """A data file's partition values, by partition field name, as the table would print them."""
    spec = table.specs().get(data_file.spec_id)
    if spec is None or not spec.fields:
        return ()
    types = spec.partition_type(table.schema()).fields
    values = []
    for i, (pfield, ptype) in enumerate(zip(spec.fields, types, strict=True)):
        value = data_file.partition[i]
        text = "" if value is None else pfield.transform.to_human_string(ptype.field_type, value)
        values.append((pfield.name, str(text)))
    return tuple(values)


def _data_file(table: Any, data_file: Any, sequence: int) -> DataFile:
    return DataFile(
        path=str(data_file.file_path),
        rows=int(data_file.record_count),
        size=int(data_file.file_size_in_bytes),
        mtime_ns=0,
        partition=_partition(table, data_file),
        version=sequence,
    )


def _refuse_format(uri: str, data_file: Any) -> None:
    fmt = str(getattr(data_file.file_format, "value", data_file.file_format)).lower()
    if fmt != "parquet":
        raise TableError(
            f"Iceberg table {uri} has {fmt.upper()} data files ({data_file.file_path}); only Parquet is read"
        )


def _refuse_deletes(uri: str, data_file: Any, snapshot: Any) -> None:
    from pyiceberg.manifest import DataFileContent

    kind = "equality delete" if data_file.content == DataFileContent.EQUALITY_DELETES else "position delete"
    raise TableError(
        f"Iceberg table {uri} has {kind} files (snapshot {snapshot.snapshot_id}, sequence {snapshot.sequence_number}: "
        f"{data_file.file_path}), written by merge-on-read deletes, updates or upserts; this reader does not apply "
        "delete files. Compact them away (rewrite_data_files with delete-file-threshold, "
        "rewrite_position_delete_files) or write the table copy-on-write (write.delete.mode=copy-on-write)"
    )


def _commit(table: Any, uri: str, snapshot: Any) -> Commit:
    """What ``snapshot`` changed: the data files its own manifests added and deleted."""
    from pyiceberg.manifest import DataFileContent, ManifestEntryStatus

    io, added, removed = table.io, [], []
    for manifest in snapshot.manifests(io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue  # carried over from an earlier snapshot
        for entry in manifest.fetch_manifest_entry(io, discard_deleted=False):
            if entry.snapshot_id != snapshot.snapshot_id or entry.status == ManifestEntryStatus.EXISTING:
                continue
            if entry.data_file.content != DataFileContent.DATA:
                if entry.status == ManifestEntryStatus.ADDED:
                    _refuse_deletes(uri, entry.data_file, snapshot)
                continue
            if entry.status == ManifestEntryStatus.ADDED:
                _refuse_format(uri, entry.data_file)
                added.append(_data_file(table, entry.data_file, snapshot.sequence_number))
            else:
                removed.append(_data_file(table, entry.data_file, snapshot.sequence_number))
    operation = (
        str(getattr(snapshot.summary.operation, "value", snapshot.summary.operation)) if snapshot.summary else ""
    )
    return Commit(int(snapshot.sequence_number), operation, operation != "replace", tuple(added), tuple(removed))


def _current_files(table: Any, uri: str, snapshot: Any) -> list[DataFile]:
    """Every live data file of ``snapshot`` (pyiceberg's scan planning), refusing delete files."""
    files = []
    for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files():
        if task.delete_files:
            _refuse_deletes(uri, next(iter(task.delete_files)), snapshot)
        _refuse_format(uri, task.file)
        files.append(_data_file(table, task.file, snapshot.sequence_number))
    return files


def _chain(table: Any, uri: str, current: Any, start: Position, resume: bool) -> tuple[list[Any], dict[str, Any]]:
    """The snapshots after ``start`` up to ``current``, oldest first, and the gap when ``start`` is gone."""
    chain = []
    snapshot = current
    while snapshot is not None and snapshot.snapshot_id != start.version:
        chain.append(snapshot)
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    if snapshot is not None:
        return list(reversed(chain)), {}
    expired = table.snapshot_by_id(start.version) is None
    what = (
        "was expired (expire_snapshots)"
        if expired
        else "is no longer an ancestor of the current snapshot (a rollback, or a branch replaced main)"
    )
    if not resume or not chain:
        raise TableError(
            f"Iceberg table {uri}: the snapshot {start.version} (sequence {start.sequence}) the lineage consumed "
            f"{what}; {_HINT}"
        )
    oldest = chain[-1]  # the oldest ancestor still there counts as consumed: what it held before is the gap
    gap = {"from": start.sequence, "to": int(oldest.sequence_number), "reason": what}
    log.warning("Iceberg table %s: the consumed snapshot %s; resuming after snapshot %d", uri, what, oldest.snapshot_id)
    return list(reversed(chain[:-1])), gap


def read_changes(uri: str, consumed: Mapping[str, Position], options: Options = Options()) -> Changes:
    """The rows of the Iceberg table ``uri`` that the lineage has not consumed (``consumed``: its positions, by
    table id), as files. Raises ConfigError (no pyiceberg, no catalog or table) and TableError (see the module
    docstring)."""
    table = load_table(uri)
    table_id = str(table.metadata.table_uuid)
    start = consumed.get(table_id)
    current = table.current_snapshot()
    fs, _ = filesystem_path(table.location())
    gap: dict[str, Any] = {}
    if current is None:  # a table with no snapshot yet holds nothing
        end = start or Position("iceberg", table_id, -1, 0)
        return Changes("iceberg", uri, table_id, fs, start, end, Window(), [])
    if start is None:
        window = new_rows([appended(_current_files(table, uri, current), int(current.sequence_number))])
        chosen = current
    else:
        chain, gap = _chain(table, uri, current, start, options.resume_expired)
        if options.max_commits:
            chain = _limited(chain, options.max_commits)
        chosen = chain[-1] if chain else table.snapshot_by_id(start.version) or current
        window = new_rows([_commit(table, uri, s) for s in chain])
    reads = [f for f in window.read if matches(f.partition, options.where)]
    originals = {f.path for f in window.originals}
    partitions = [partition_of(fs, filesystem_path(f.path)[1], f, _key(table, f.path)) for f in reads]
    gone = missing(fs, [p for p, f in zip(partitions, reads, strict=True) if f.path in originals])
    if gone:
        if not options.resume_expired:
            raise TableError(
                f"Iceberg table {uri}: {len(gone)} file(s) of rows appended after the consumed snapshot and compacted "
                f"since are gone from storage (e.g. {gone[0].uri}: removed with an expired snapshot, or as an orphan); "
                + _HINT
            )
        lost = {p.key for p in gone}
        gap = {
            **gap,
            "expired_files": len(gone),
            "rows": sum(int(f.rows or 0) for f in reads if _key(table, f.path) in lost),
        }
        partitions = [p for p in partitions if p.key not in lost]
    end = Position("iceberg", table_id, int(chosen.snapshot_id), int(chosen.sequence_number))
    return Changes("iceberg", uri, table_id, fs, start, end, window, partitions, gap, len(window.read) - len(reads))


def _limited(chain: list[Any], most: int) -> list[Any]:
    """The snapshots up to the ``most``-th that changes data (all of them when there are fewer)."""
    seen = 0
    for i, snapshot in enumerate(chain):
        operation = str(getattr(snapshot.summary.operation, "value", "")) if snapshot.summary else ""
        seen += operation != "replace"
        if seen == most:
            return chain[: i + 1]
    return chain


def _key(table: Any, path: str) -> str:
    """A data file's path below the table's location (for messages and the report)."""
    location = table.location().rstrip("/") + "/"
    return urllib.parse.unquote(path[len(location) :] if path.startswith(location) else path)
