"""Delta Lake and Apache Iceberg tables as input: refreshed by commit, with real deltalake and pyiceberg tables.

Tables are written by the real libraries (deltalake locally and on the moto S3 server; pyiceberg through its
SQL catalog with a warehouse on local disk and on moto, and through a real REST catalog server process), and
the refresh reads them on the session's Ray cluster. Every check counts exactly: the tokens trained are those
of the rows a table appended since the consumed version, nothing else.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.config import from_args
from jobs.errors import ConfigError, TableError, TrainingError
from jobs.refresh import Hooks, run
from jobs.storage import open_store
from jobs.storage.publish import read_manifest
from shards.tables import Options, Position, read_changes
from shards.tables.changes import Commit, DataFile, new_rows
from tests.conftest import snapshot
from tests.corpora import clustered
from tests.iceberg_rest import RestCatalogServer
from tests.s3server import DUMMY_ENV, MotoServer
from tests.test_faults import reference
from tests.test_refresh import miss_the_last_batch

FAST = ["--workers", "2", "--vector-size", "8", "--epochs", "1", "--min-count", "1", "--max-in-flight", "4"]


def rows(ids: range, day: str = "2026-11-01") -> pa.Table:
    """Rows ``ids`` of a corpus whose every row differs (each id seeds its own sentence)."""
    return pa.table({"id": list(ids), "text": [clustered(1, seed=i)[0] for i in ids], "dt": [day] * len(ids)})


def tokens(*tables: pa.Table) -> int:
    return sum(sum(reference(t.column("text").to_pylist()).values()) for t in tables)


def manifest(store: str) -> dict[str, Any]:
    return read_manifest(open_store(store), "latest")


@pytest.mark.unit
def test_new_rows_follow_appends_rewrites_and_deletes() -> None:
    old, a, b = DataFile("old", rows=10), DataFile("a", rows=4, version=5), DataFile("b", rows=3, version=6)
    merged, survivors = DataFile("merged", rows=14, version=7), DataFile("b2", rows=2, version=8)
    window = new_rows(
        [
            Commit(5, "WRITE", True, added=(a,)),
            Commit(6, "WRITE", True, added=(b,)),
            Commit(7, "OPTIMIZE", False, added=(merged,), removed=(old, a)),  # consumed and new rows merged
            Commit(8, "DELETE", True, added=(survivors,), removed=(b,)),  # a row of b deleted before it was read
            Commit(9, "DELETE", True, added=(DataFile("m2", rows=11),), removed=(merged,)),  # 3 rows of merged
        ]
    )
    assert [f.path for f in window.read] == ["a", "b2"]  # a as it was appended, b's survivors
    assert [f.path for f in window.originals] == ["a"]
    assert (window.deleted, window.rewritten, window.untrained) == (3, 11, 0)
    assert (window.commits, window.data_commits, window.rewrites) == (5, 4, 1)
    # a rewrite of new rows only replaces them; a merge that writes more than it rewrote leaves rows untrained
    compacted = DataFile("ab", rows=7, version=7)
    assert [
        f.path
        for f in new_rows([Commit(5, "WRITE", True, (a, b)), Commit(7, "OPTIMIZE", False, (compacted,), (a, b))]).read
    ] == ["ab"]
    merge = new_rows([Commit(5, "MERGE", True, added=(DataFile("o2", rows=13),), removed=(old,))])
    assert (merge.read, merge.deleted, merge.rewritten, merge.untrained) == ([], 0, 10, 3)


@pytest.fixture
def bucket(moto: MotoServer) -> Iterator[str]:
    name = f"tables-{uuid.uuid4().hex[:12]}"
    credentials = {
        "aws_access_key_id": DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
    }
    boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1", **credentials).create_bucket(Bucket=name)
    yield name


def delta_options(moto: MotoServer) -> dict[str, str]:
    """deltalake's options for writing to moto: the endpoint over HTTP, and S3's conditional put for the log's
    commits (moto honours If-None-Match), so no locking provider is needed."""
    return {
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
        "conditional_put": "etag",
    }


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
def test_a_delta_table_on_s3_is_refreshed_by_commit(moto: MotoServer, bucket: str, tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    table, options = f"s3://{bucket}/lake/docs", delta_options(moto)
    store = str(tmp_path / "models")
    common = ["--input", table, "--store", store, *FAST]
    first, second = rows(range(0, 40)), rows(range(40, 80))
    write_deltalake(table, first, partition_by=["dt"], storage_options=options)
    write_deltalake(table, second, mode="append", storage_options=options)
    summary = run(from_args(common))
    assert summary.tokens == tokens(first, second)
    table_id = str(DeltaTable(table, storage_options=options).metadata().id)
    assert manifest(store)["tables"][table_id]["version"] == 1
    assert manifest(store)["ledger"]["rows"] == 0  # the table's files are not the ledger's: one number instead

    # Then: a compaction of the consumed rows (v2), a third append (v3), a fourth (v4) whose rows 105-109 are
    # deleted with consumed rows 0-2 before any run read them (v5), and a writer that died before its commit
    # (its file lies in the table's folder, named by no commit).
    DeltaTable(table, storage_options=options).optimize.compact()
    third, fourth = rows(range(80, 100), "2026-11-02"), rows(range(100, 110), "2026-11-03")
    write_deltalake(table, third, mode="append", storage_options=options)
    write_deltalake(table, fourth, mode="append", storage_options=options)
    DeltaTable(table, storage_options=options).delete("id >= 105 OR id < 3")
    sink = pa.BufferOutputStream()
    pq.write_table(rows(range(500, 600)), sink)
    key = "lake/docs/dt=2026-11-02/part-aborted.parquet"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())

    # A training fault fails the first try: the table's position does not move, and the retry consumes the
    # same commits, once: only the new rows that survived, none of the compaction's, none of the aborted write's.
    before = snapshot(tmp_path / "models")
    with pytest.raises(TrainingError):
        run(from_args(common), Hooks(training_split=miss_the_last_batch))
    assert snapshot(tmp_path / "models") == before
    summary = run(from_args(common))
    assert summary.tokens == tokens(third, fourth.slice(0, 5)) and summary.partitions == 2
    account = manifest(store)["table_changes"]
    assert (account["from"], account["to"], account["commits"], account["rewrites"]) == (1, 5, 4, 1)
    assert (account["deleted_rows"], account["rewritten_rows"], account["untrained_rows"]) == (3, 77, 0)
    assert manifest(store)["tables"][table_id]["version"] == 5
    assert "consumed rows deleted 3, rewritten 77" in _human(summary)
    assert run(from_args(common)).published is False  # nothing new: no version


def _human(summary: Any) -> str:
    from jobs.report import human

    return human(summary)


def iceberg_env(name: str, **properties: str) -> dict[str, str]:
    """A catalog configured the way pyiceberg users configure one: ``PYICEBERG_CATALOG__<NAME>__<KEY>``."""
    return {
        f"PYICEBERG_CATALOG__{name.upper()}__{key.replace('.', '__').replace('-', '_').upper()}": value
        for key, value in properties.items()
    }


def compact(table: Any) -> None:
    """What Spark's ``rewrite_data_files`` commits: every data file rewritten into one per partition, as a
    ``replace`` snapshot (pyiceberg writes the files and the manifests; it only lacks the summary of a replace,
    which is an overwrite's with the other operation)."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files
    from pyiceberg.table.snapshots import Operation, Summary
    from pyiceberg.table.update.snapshot import _OverwriteFiles

    class Rewrite(_OverwriteFiles):
        def _summary(self, snapshot_properties: Any = None) -> Summary:
            self._operation = Operation.OVERWRITE
            counted = super()._summary(snapshot_properties or {})
            self._operation = Operation.REPLACE
            return Summary(Operation.REPLACE, **counted.additional_properties)

    live = table.scan().to_arrow()
    tasks = list(table.scan().plan_files())
    with table.transaction() as tx:
        producer = Rewrite(operation=Operation.REPLACE, transaction=tx, io=table.io)
        for task in tasks:
            producer.delete_data_file(task.file)
        for data_file in _dataframe_to_data_files(tx.table_metadata, live, table.io):
            producer.append_data_file(data_file)
        producer.commit()


def new_table(catalog: Any, name: str) -> Any:
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField, StringType

    schema = Schema(
        NestedField(1, "id", LongType()), NestedField(2, "text", StringType()), NestedField(3, "dt", StringType())
    )
    spec = PartitionSpec(PartitionField(3, 1000, IdentityTransform(), "dt"))
    catalog.create_namespace_if_not_exists("corpus")
    return catalog.create_table(f"corpus.{name}", schema=schema, partition_spec=spec)


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
def test_an_iceberg_table_is_refreshed_by_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyiceberg.catalog import load_catalog

    properties = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/wh"}
    for key, value in iceberg_env("lake", **properties).items():
        monkeypatch.setenv(key, value)  # how the refresh finds the catalog
    table = new_table(load_catalog("lake", **properties), "docs")
    store = str(tmp_path / "models")
    common = ["--input", "iceberg://lake/corpus.docs", "--store", store, *FAST, "--where", "dt=2026-11-0[12]"]
    first, second, elsewhere = rows(range(0, 30)), rows(range(30, 60), "2026-11-02"), rows(range(60, 90), "2026-12-01")
    table.append(first)
    table.append(pa.concat_tables([second, elsewhere]))
    summary = run(from_args(common))
    assert summary.tokens == tokens(first, second)  # --where on the partition column: December left out
    assert summary.table["filtered_files"] == 1

    compact(table)
    third = rows(range(90, 100), "2026-11-02")
    table.append(third)
    aborted = Path(table.location().removeprefix("file://")) / "data" / "dt=2026-11-02" / "aborted-write.parquet"
    pq.write_table(rows(range(500, 600), "2026-11-02"), aborted)  # a writer that died before its commit
    summary = run(from_args(common))
    assert summary.tokens == tokens(third) and (summary.table["rewrites"], summary.table["data_commits"]) == (1, 1)
    consumed = manifest(store)["tables"][str(table.metadata.table_uuid)]
    assert consumed["sequence"] == 4 and consumed["version"] == table.current_snapshot().snapshot_id

    # The consumed snapshot expires before the next run: a clear error, then a resume that reports the gap.
    table.append(rows(range(100, 110), "2026-11-02"))
    table.maintenance.expire_snapshots().by_id(consumed["version"]).commit()
    last = rows(range(110, 120), "2026-11-02")
    table.append(last)
    position = {consumed["table_id"]: Position.from_dict(consumed)}
    with pytest.raises(
        TableError, match=r"snapshot \d+ \(sequence 4\) the lineage consumed was expired.*--resume-expired"
    ):
        read_changes("iceberg://lake/corpus.docs", position)
    resumed = read_changes("iceberg://lake/corpus.docs", position, Options(resume_expired=True))
    assert [f.rows for f in resumed.window.read] == [10] and resumed.end.sequence == 6
    assert resumed.gap == {"from": 4, "to": 5, "reason": "was expired (expire_snapshots)"}


@pytest.mark.component
def test_table_discovery_on_s3_and_local_disk(
    moto: MotoServer, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Ray: what discovery reads of an Iceberg warehouse on S3 and of a Delta table on disk, exactly."""
    from deltalake import DeltaTable, write_deltalake
    from pyiceberg.catalog import load_catalog

    for key, value in {**DUMMY_ENV, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(key, value)
    properties = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/catalog.db",
        "warehouse": f"s3://{bucket}/wh",
        "s3.endpoint": moto.endpoint,
        "s3.region": "us-east-1",
    }
    for key, value in iceberg_env("s3lake", **properties).items():
        monkeypatch.setenv(key, value)
    table = new_table(load_catalog("s3lake", **properties), "docs")
    table.append(rows(range(0, 10)))
    changes = read_changes("iceberg://s3lake/corpus.docs", {})
    assert [p.uri.startswith(f"s3://{bucket}/wh/corpus/docs/data/dt=2026-11-01/") for p in changes.partitions] == [True]
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


@pytest.mark.component
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
