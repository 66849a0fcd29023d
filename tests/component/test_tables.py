"""Tables found on S3 and local disk, and an Iceberg table behind a real REST catalog server process, without Ray.
Refreshes from Delta and Iceberg tables on the session's Ray cluster are in
``tests/integration/test_tables.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs.errors import ConfigError, TableError
from shards.tables import Options, Position, read_changes
from tests.support.iceberg_rest import RestCatalogServer
from tests.support.s3server import DUMMY_ENV, MotoServer
from tests.support.tables import iceberg_env, new_table, rows


def test_table_discovery_on_s3_and_local_disk(
    moto: MotoServer, lake_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Ray: what discovery reads of an Iceberg warehouse on S3 and of a Delta table on disk, exactly."""
    from deltalake import DeltaTable, write_deltalake
    from pyiceberg.catalog import load_catalog

    for key, value in {**DUMMY_ENV, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(key, value)
    properties = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/catalog.db",
        "warehouse": f"s3://{lake_bucket}/wh",
        "s3.endpoint": moto.endpoint,
        "s3.region": "us-east-1",
    }
    for key, value in iceberg_env("s3lake", **properties).items():
        monkeypatch.setenv(key, value)
    table = new_table(load_catalog("s3lake", **properties), "docs")
    table.append(rows(range(0, 10)))
    changes = read_changes("iceberg://s3lake/corpus.docs", {})
    assert [p.uri.startswith(f"s3://{lake_bucket}/wh/corpus/docs/data/dt=2026-11-01/") for p in changes.partitions] == [
        True
    ]
    consumed = {changes.table_id: changes.end}
    table.append(rows(range(10, 20)))
    table.delete("id >= 15")  # copy-on-write: the new file's survivors replace it; nothing consumed is touched
    changes = read_changes("iceberg://s3lake/corpus.docs", consumed)
    assert sum(f.rows or 0 for f in changes.window.read) == 5 and changes.window.deleted == 0
    assert (changes.window.data_commits, len(changes.partitions)) == (2, 1)

    # Delta on disk: rows appended, then compacted with consumed ones and vacuumed away before the run read them
    path = str(tmp_path / "delta")
    write_deltalake(path, rows(range(0, 10)))
    consumed = {(c := read_changes(path, {})).table_id: c.end}
    write_deltalake(path, rows(range(10, 12)), mode="append")
    DeltaTable(path).optimize.compact()
    assert [f.rows for f in read_changes(path, consumed).window.originals] == [2]
    DeltaTable(path).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    with pytest.raises(TableError, match=r"removed by VACUUM before this run read them.*--resume-expired-table"):
        read_changes(path, consumed)
    resumed = read_changes(path, consumed, Options(resume_expired=True))
    assert (resumed.partitions, resumed.gap) == ([], {"vacuumed_files": 1, "rows": 2})
    with pytest.raises(ConfigError, match="no Delta table"):
        read_changes(str(tmp_path / "missing"), {}, forced_format="delta")
    assert read_changes(path, {consumed[c.table_id].table_id: Position("delta", c.table_id, 2)}).partitions == []


def test_an_iceberg_table_behind_a_rest_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Ray (the refresh's read path is read_changes): a table created, appended to and read over HTTP."""
    from pyiceberg.catalog import load_catalog

    with RestCatalogServer(tmp_path / "rest.db", f"file://{tmp_path}/wh", env={**os.environ}) as server:
        for key, value in iceberg_env("served", type="rest", uri=server.uri).items():
            monkeypatch.setenv(key, value)
        table = new_table(load_catalog("served", type="rest", uri=server.uri), "docs")
        first, second = rows(range(0, 20)), rows(range(20, 30), "2026-11-02")
        table.append(first)
        changes = read_changes("iceberg://served/corpus.docs", {})
        assert [
            (p.key.split("/")[:2], f.rows) for p, f in zip(changes.partitions, changes.window.read, strict=True)
        ] == [(["data", "dt=2026-11-01"], 20)]
        table.append(second)
        table.delete("id < 5")  # consumed rows: deleted, reported
        later = read_changes("iceberg://served/corpus.docs", {changes.table_id: changes.end})
        assert [f.rows for f in later.window.read] == [10] and later.end.sequence == 3
        assert (later.window.deleted, later.window.rewritten) == (5, 15)
        assert later.table_id == str(table.metadata.table_uuid)
