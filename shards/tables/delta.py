"""Delta Lake tables read by commit, through delta-rs's Python package ``deltalake`` (``pip install .[delta]``).

    from shards.tables.delta import read_changes
    changes = read_changes("s3://lake/events", consumed={})       # every row of the current version
    changes.end.version, [p.key for p in changes.partitions]        # doctest: +SKIP

The table's transaction log is read by ``deltalake``, never by hand: a snapshot (``DeltaTable(uri, version=v)``)
lists the files live at version ``v`` with their row counts and partition values, and ``history()`` names each
commit's operation. The files live at the consumed version and at the newest are compared first: when no file
of the consumed version is gone, every other live file holds only new rows (appends, and rewrites of rows that
were themselves new), which costs two snapshots whatever the number of commits. Otherwise the commits are
walked one by one (:func:`shards.tables.changes.new_rows` decides), each commit's files being the difference of
two consecutive snapshots; ``OPTIMIZE`` and ``REORG`` (compaction, Z-order, purge) are the rewrites that change
no data.

Refused, naming the feature: column mapping (Parquet columns renamed by id or name) and deletion vectors
(rows deleted by a bitmap beside the file rather than by rewriting it), which a file-by-file Parquet read cannot
honour. A consumed version whose log was cleaned up (``delta.logRetentionDuration``), and files of new rows a
VACUUM removed before this run read them, fail with :class:`~shards.errors.TableError` unless the run resumes
from the oldest version still there.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from shards.errors import ConfigError, TableError
from shards.s3settings import S3Settings
from shards.tables import Changes, Options, Position, filesystem_path, matches, missing, partition_of
from shards.tables.changes import Commit, DataFile, Window, appended, new_rows

log = logging.getLogger(__name__)

#: operations that move rows without changing them (Spark, Databricks, delta-rs); every other commit that
#: adds or removes files changes data
REWRITES = frozenset({"OPTIMIZE", "REORG", "ZORDER", "CLUSTER"})
_HINT = (
    "rerun with --resume-expired-table to continue from the oldest version still in the table, with the gap reported"
)


def _deltalake() -> Any:
    try:
        import deltalake
    except ImportError:
        raise ConfigError(
            "reading a Delta Lake table needs the deltalake package: pip install 'embedding-refresh[delta]'"
        ) from None
    return deltalake


def storage_options(uri: str) -> dict[str, str]:
    """deltalake's options for ``uri``: on S3 the endpoint, region and addressing the job's other S3 clients use
    (:class:`~shards.s3settings.S3Settings`); credentials come from the environment's AWS chain."""
    if not uri.startswith("s3://"):
        return {}
    settings = S3Settings.from_env()
    options: dict[str, str] = {}
    if settings.endpoint_url:
        options["AWS_ENDPOINT_URL"] = settings.endpoint_url
        if settings.endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if settings.region:
        options["AWS_REGION"] = settings.region
    if settings.addressing_style == "virtual":
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "true"
    return options


def _open(uri: str, version: int | None = None) -> Any:
    deltalake = _deltalake()
    try:
        return deltalake.DeltaTable(uri, version=version, storage_options=storage_options(uri) or None)
    except deltalake.exceptions.TableNotFoundError as exc:
        raise ConfigError(f"no Delta table at {uri}: {str(exc).splitlines()[0]}") from None


def _files(table: Any, version: int) -> dict[str, DataFile]:
    """The files live in ``table``'s loaded snapshot, by their path in the log."""
    actions = pa.table(table.get_add_actions(flatten=True))
    parts = [name for name in actions.column_names if name.startswith("partition.")]
    columns = {
        name: actions.column(name).to_pylist()
        for name in ["path", "size_bytes", "modification_time", "num_records", *parts]
    }
    files = {}
    for i, path in enumerate(columns["path"]):
        values = tuple(
            (name[len("partition.") :], "" if columns[name][i] is None else str(columns[name][i])) for name in parts
        )
        files[path] = DataFile(
            path=path,
            rows=columns["num_records"][i],
            size=int(columns["size_bytes"][i] or 0),
            mtime_ns=int(columns["modification_time"][i] or 0) * 1_000_000,
            partition=values,
            version=version,
        )
    return files


def _refuse_unsupported(table: Any, uri: str) -> None:
    protocol, config = table.protocol(), table.metadata().configuration or {}
    # the mode decides: a table that enabled the feature but keeps mode none names Parquet columns plainly
    features = set(protocol.reader_features or [])
    mode = config.get("delta.columnMapping.mode", "none")
    if mode != "none":
        raise TableError(
            f"Delta table {uri} uses column mapping (delta.columnMapping.mode={mode}): its Parquet files name columns "
            "by physical ids, which this reader does not follow. Read a copy without column mapping, or the files "
            "as plain Parquet partitions"
        )
    if "deletionVectors" in features:
        deleted = sum(batch.num_rows for batch in table.deletion_vectors())
        if deleted:
            raise TableError(
                f"Delta table {uri} has deletion vectors on {deleted} file(s): rows deleted by a bitmap beside their "
                "file, which this reader does not apply. Purge them (REORG TABLE … APPLY (PURGE)) or disable them "
                "(delta.enableDeletionVectors=false) and rewrite the affected files"
            )


def _history(table: Any, start: int, end: int) -> dict[int, str]:
    """The operation of each version in ``(start, end]``."""
    return {
        int(h["version"]): str(h.get("operation", ""))
        for h in table.history(limit=end - start)
        if start < int(h["version"]) <= end
    }


def _rewrite(operation: str) -> bool:
    return operation.split(" ")[0].upper() in REWRITES


def _oldest(uri: str, newest: Any) -> int:
    """The oldest version whose snapshot can still be loaded."""
    versions = sorted(int(h["version"]) for h in newest.history())
    for version in versions:
        try:
            _open(uri, version)
        except Exception:  # deltalake raises its own error for a version whose log is gone
            continue
        return version
    return int(newest.version())


def read_changes(uri: str, consumed: Mapping[str, Position], options: Options = Options()) -> Changes:
    """The rows of the Delta table at ``uri`` that the lineage has not consumed (``consumed``: its positions, by
    table id), as files. Raises ConfigError (no deltalake, no table) and TableError (see the module docstring)."""
    uri = uri.rstrip("/")
    table = _open(uri)
    end = int(table.version())
    table_id = str(table.metadata().id)
    start = consumed.get(table_id)
    _refuse_unsupported(table, uri)
    gap: dict[str, Any] = {}
    if start is not None and start.version > end:
        raise TableError(
            f"Delta table {uri} is at version {end}, before the version {start.version} the lineage consumed: "
            "it was re-created or restored. Refresh from it as a new table (--allow-new-input) into a new store"
        )
    begin = start.version if start else None
    if begin is not None and begin < end:
        try:
            _open(uri, begin)
        except ConfigError:
            raise
        except Exception as exc:
            if not options.resume_expired:
                raise TableError(
                    f"Delta table {uri}: the version {begin} the lineage consumed can no longer be loaded (its log "
                    f"was cleaned up: delta.logRetentionDuration is shorter than the time since the last refresh; "
                    f"{str(exc).splitlines()[0]}); {_HINT}"
                ) from None
            oldest = _oldest(uri, table)
            gap = {"from": begin, "to": oldest, "reason": "log cleaned up"}
            log.warning("Delta table %s: versions %d to %d are gone; resuming after %d", uri, begin + 1, oldest, oldest)
            begin = oldest
    if begin is not None and options.max_commits:
        end = _limit(table, begin, end, options.max_commits)
    window = _window(uri, table, begin, end) if begin is None or begin < end else Window()
    fs, root = filesystem_path(uri)
    reads = [f for f in window.read if matches(f.partition, options.where)]
    originals = {f.path for f in window.originals}
    partitions = [partition_of(fs, _location(root, f.path), f, _key(f.path)) for f in reads]
    gone = missing(fs, [p for p, f in zip(partitions, reads, strict=True) if f.path in originals])
    if gone:
        if not options.resume_expired:
            raise TableError(
                f"Delta table {uri}: {len(gone)} file(s) of rows appended after version {begin} and compacted since "
                f"were removed by VACUUM before this run read them (e.g. {gone[0].uri}); run VACUUM with a retention "
                f"longer than the time between refreshes, or {_HINT.replace('version', 'files')}"
            )
        lost = {p.key for p in gone}
        gap = {**gap, "vacuumed_files": len(gone), "rows": sum(int(f.rows or 0) for f in reads if _key(f.path) in lost)}
        partitions = [p for p in partitions if p.key not in lost]
    return Changes(
        format="delta",
        uri=uri,
        table_id=table_id,
        fs=fs,
        start=start,
        end=Position("delta", table_id, end),
        window=window,
        partitions=partitions,
        gap=gap,
        filtered=len(window.read) - len(reads),
    )


def _limit(table: Any, begin: int, end: int, most: int) -> int:
    """The version of the ``most``-th data-changing commit after ``begin`` (``end`` when there are fewer)."""
    data = [v for v, op in sorted(_history(table, begin, end).items()) if not _rewrite(op)]
    return data[most - 1] if len(data) >= most else end


def _window(uri: str, latest: Any, begin: int | None, end: int) -> Window:
    """The commits ``(begin, end]`` as a :class:`Window` (every live file as new for ``begin`` None);
    ``latest`` is the table at its newest version, whose history names every commit's operation."""
    table = _open(uri, end)
    newest = _files(table, end)
    if begin is None:
        return new_rows([appended(list(newest.values()), end)])
    history = _history(latest, begin, end)
    table.load_as_version(begin)
    before = _files(table, begin)
    if before.keys() <= newest.keys():
        # no consumed file is gone: every other live file holds new rows only (two snapshots, whatever the commits)
        window = new_rows([Commit(end, "appends", True, added=tuple(f for p, f in newest.items() if p not in before))])
        window.commits = end - begin
        window.data_commits = sum(1 for op in history.values() if not _rewrite(op))
        window.rewrites = window.commits - window.data_commits
        return window
    commits = []
    previous = before
    for version in range(begin + 1, end + 1):
        table.load_as_version(version)
        current = _files(table, version)
        added = tuple(f for p, f in current.items() if p not in previous)
        removed = tuple(f for p, f in previous.items() if p not in current)
        operation = history.get(version, "")
        commits.append(Commit(version, operation, not _rewrite(operation), added, removed))
        previous = current
    return new_rows(commits)


def _key(path: str) -> str:
    return urllib.parse.unquote(path)


def _location(root: str, path: str) -> str:
    """What the filesystem opens for a file the log names (relative to the table, URL-encoded; or absolute)."""
    if "://" in path:
        return filesystem_path(path)[1]
    return f"{root.rstrip('/')}/{urllib.parse.unquote(path)}"
