"""Tables as input: Delta Lake and Apache Iceberg, read incrementally by commit rather than by listing files.

    from shards.tables import Position, is_table, read_changes
    is_table("s3://lake/events")                                   # a Delta table: it has _delta_log/
    changes = read_changes("iceberg://prod/corpus.docs", {"…uuid…": Position("iceberg", "…uuid…", 8123456789, 41)})
    changes.partitions, changes.end.version, changes.window.deleted  # doctest: +SKIP

A table already says exactly what is new: the commits since the version a model consumed. The model's
lineage records one :class:`Position` per table (its id, the version or snapshot consumed); a run reads the
commits after it (:mod:`shards.tables.changes` decides which rows are new), and its new data files become
ordinary :class:`~shards.partitions.Partition` s, cut into row-group pieces and tokenized like any Parquet
file. Only what the table's log names is read: files of an aborted or uncommitted write, the table's own
metadata and logs are never listed.

The readers live in :mod:`shards.tables.delta` (through delta-rs's ``deltalake``) and
:mod:`shards.tables.iceberg` (through ``pyiceberg``), optional extras (``pip install embedding-refresh[delta]``,
``[iceberg]``), imported only when a table is read.
"""

from __future__ import annotations

import fnmatch
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from shards.errors import ConfigError
from shards.partitions import Partition
from shards.tables.changes import DataFile, Window

ICEBERG_SCHEME = "iceberg://"
FORMATS = ("delta", "iceberg")


@dataclass(frozen=True)
class Position:
    """Where a lineage stands in one table: the version (Delta) or snapshot id (Iceberg) it consumed, and for
    Iceberg the snapshot's sequence number (for messages: ids are random, sequence numbers ordered)."""

    format: str
    table_id: str
    version: int
    sequence: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "table_id": self.table_id, "version": self.version, "sequence": self.sequence}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        sequence = data.get("sequence")
        return cls(
            str(data["format"]),
            str(data["table_id"]),
            int(data["version"]),
            None if sequence is None else int(sequence),
        )


@dataclass(frozen=True)
class Options:
    """How a table is read: ``max_commits`` data-changing commits at most (oldest first; the run's
    ``--max-partitions``), ``where`` on partition columns, and ``resume_expired``: when history the lineage
    needs was vacuumed or expired, continue from the oldest version still there and report the gap."""

    max_commits: int | None = None
    where: tuple[tuple[str, str], ...] = ()
    resume_expired: bool = False


@dataclass
class Changes:
    """What a table holds that the lineage has not consumed.

    ``partitions``: the new rows' data files, oldest commit first; ``fs``: what they are read through; ``end``:
    the position a version that consumes them records; ``window``: the commits' account (deleted, rewritten,
    untrained rows); ``gap``: versions the lineage skipped because their history was gone (``--resume-expired-table``),
    with the rows known lost; ``filtered``: new files ``--where`` left out."""

    format: str
    uri: str
    table_id: str
    fs: pafs.FileSystem
    start: Position | None
    end: Position
    window: Window
    partitions: list[Partition]
    gap: dict[str, Any] = field(default_factory=dict)
    filtered: int = 0

    def report(self) -> dict[str, Any]:
        """The run's account of the table, as plain data (the manifest, the summary, the metrics)."""
        window = self.window
        return {
            "format": self.format,
            "table": self.uri,
            "table_id": self.table_id,
            "from": self.start.version if self.start else None,
            "to": self.end.version,
            "sequence": self.end.sequence,  # Iceberg: the consumed snapshot's sequence number (ids are random)
            "commits": window.commits,
            "data_commits": window.data_commits,
            "rewrites": window.rewrites,
            "files": len(self.partitions),
            "rows": sum(int(f.rows or 0) for f in window.read),
            "read_from_originals": len(window.originals),
            "deleted_rows": window.deleted,
            "rewritten_rows": window.rewritten,
            "untrained_rows": window.untrained,
            "filtered_files": self.filtered,
            **({"gap": self.gap} if self.gap else {}),
        }


def is_table(uri: str, forced_format: str = "auto") -> bool:
    """Whether ``--input`` names a table: ``iceberg://…``, ``--format delta`` or ``iceberg``, or a folder (local or
    ``s3://``) holding ``_delta_log/``."""
    if uri.startswith(ICEBERG_SCHEME) or forced_format in FORMATS:
        return True
    if forced_format != "auto":
        return False
    from shards.partitions import open_filesystem

    fs, root = open_filesystem(uri)
    return bool(fs.get_file_info(f"{root.rstrip('/')}/_delta_log").type == pafs.FileType.Directory)


def table_format(uri: str, forced_format: str = "auto") -> str:
    return "iceberg" if uri.startswith(ICEBERG_SCHEME) or forced_format == "iceberg" else "delta"


def read_changes(
    uri: str, consumed: Mapping[str, Position], options: Options = Options(), forced_format: str = "auto"
) -> Changes:
    """The table's commits after the position ``consumed`` holds for it (by the table's id; all of its rows
    when it holds none) as files to read. Raises ConfigError (the extra is not installed, the table or catalog
    cannot be opened) and TableError (a feature the reader cannot honour; history the lineage needs is gone)."""
    if table_format(uri, forced_format) == "iceberg":
        from shards.tables import iceberg

        return iceberg.read_changes(uri, consumed, options)
    from shards.tables import delta

    return delta.read_changes(uri, consumed, options)


def matches(partition: tuple[tuple[str, str], ...], where: tuple[tuple[str, str], ...]) -> bool:
    """Whether a file's partition values match every ``--where KEY=GLOB`` (a file without KEY does not)."""
    values = dict(partition)
    return all(key in values and fnmatch.fnmatch(values[key], pattern) for key, pattern in where)


def partition_of(fs: pafs.FileSystem, location: str, file: DataFile, key: str) -> Partition:
    """A table's data file as a Parquet partition: ``location`` is what ``fs`` opens, ``key`` its path in the
    table (for messages and the report)."""
    uri = f"s3://{location}" if fs.type_name == "s3" else location
    return Partition(
        uri=uri,
        path=location,
        size=file.size,
        mtime_ns=file.mtime_ns,
        format="parquet",
        hive=file.partition,
        key=key,
    )


def filesystem_path(location: str) -> tuple[pafs.FileSystem, str]:
    """A file or folder URI a table records (``s3://…``, ``file:///…``, a plain path) as a filesystem and the path
    inside it; S3 follows the same settings as every other read (:mod:`shards.s3settings`)."""
    from shards.partitions import open_filesystem

    if location.startswith(("s3://", "s3a://", "s3n://")):
        return open_filesystem("s3://" + location.split("://", 1)[1])
    if location.startswith("file:"):
        path = "/" + urllib.parse.unquote(location[len("file:") :]).lstrip("/")
        return pafs.LocalFileSystem(), os.path.normpath(path)
    if "://" in location:
        raise ConfigError(f"table files at {location!r}: only local paths and s3:// are supported")
    return pafs.LocalFileSystem(), os.path.abspath(location)


def missing(fs: pafs.FileSystem, partitions: list[Partition]) -> list[Partition]:
    """The partitions whose file is gone (vacuumed, expired)."""
    if not partitions:
        return []
    infos = fs.get_file_info([p.path for p in partitions])
    return [p for p, info in zip(partitions, infos, strict=True) if info.type != pafs.FileType.File]
