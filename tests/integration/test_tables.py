"""Delta Lake and Apache Iceberg tables as input: refreshed by commit, with real deltalake and pyiceberg tables.

Tables are written by the real libraries (deltalake locally and on the moto S3 server; pyiceberg through its
SQL catalog with a warehouse on local disk and on moto, and through a real REST catalog server process), and
the refresh reads them on the session's Ray cluster. Every check counts exactly: the tokens trained are those
of the rows a table appended since the consumed version, nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.config import from_args
from jobs.errors import TableError, TrainingError
from jobs.refresh import Hooks, run
from jobs.storage import open_store
from jobs.storage.publish import read_manifest
from shards.tables import Options, Position, read_changes
from tests.support.files import snapshot
from tests.support.flags import fast
from tests.support.refreshes import miss_the_last_batch, reference
from tests.support.s3server import DUMMY_ENV, MotoServer
from tests.support.tables import iceberg_env, new_table, rows

FAST = fast(vector_size=8, epochs=1, max_in_flight=4)


def tokens(*tables: pa.Table) -> int:
    return sum(sum(reference(t.column("text").to_pylist()).values()) for t in tables)


def manifest(store: str) -> dict[str, Any]:
    return read_manifest(open_store(store), "latest")


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


@pytest.mark.usefixtures("ray_session")
def test_a_delta_table_on_s3_is_refreshed_by_commit(moto: MotoServer, lake_bucket: str, tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    table, options = f"s3://{lake_bucket}/lake/docs", delta_options(moto)
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
    boto3.client("s3").put_object(Bucket=lake_bucket, Key=key, Body=sink.getvalue().to_pybytes())

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
