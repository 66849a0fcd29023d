"""Run records in the store: one per attempt, listed newest first at a cost independent of the history, and
removed past ``jobs.versions gc --keep-runs``. A real local store, counted through the ``CountingStore`` seam;
no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import runs
from jobs.errors import ConfigError
from jobs.versions import main
from tests.support.stores import CountingStore

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SUBMISSION = "refresh-nightly-20270115T0000Z"


def attempt(store: CountingStore, run: str, started: float, status: int = 0) -> runs.RunRecord:
    record = runs.RunRecord.begin("s3://corpus/events", run=run, now=started)
    record.end("published" if status == 0 else "failed", status)
    runs.write(store, record)
    return record


def test_each_attempt_has_its_own_record_and_the_newest_are_read_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CountingStore(tmp_path / "store")
    # Two attempts under one submission id (a retried RayJob, a resubmitted window): as Ray names the driver's job.
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"metadata": {"job_submission_id": SUBMISSION}}))
    for started, status in ((T0, 75), (T0 + 600, 0)):
        record = runs.RunRecord.begin("s3://corpus/events", now=started)
        record.end("failed" if status else "published", status)
        runs.write(store, record)
    retry, first = store.list_keys("runs")  # newest first: milliseconds counted down from 2286
    assert (retry, first) == (f"runs/8199999399999-{SUBMISSION}.json", f"runs/8199999999999-{SUBMISSION}.json")
    assert [json.loads(store.get_bytes(k))["exit_status"] for k in (retry, first)] == [0, 75]

    for day in range(1, 31):  # a month of nightly runs
        attempt(store, f"refresh-nightly-day{day}", T0 + day * 86_400, status=3 if day == 30 else 0)
    store.reads.clear()
    store.listings.clear()

    newest = runs.recent(store, 2)

    assert [(r["run"], r["exit_status"]) for r in newest] == [
        ("refresh-nightly-day30", 3),
        ("refresh-nightly-day29", 0),
    ]
    assert store.listings == [("runs", 2)] and len(store.reads) == 2  # 2 of 32 records read
    assert [r["run"] for r in runs.recent(store, 40)][-2:] == [SUBMISSION, SUBMISSION]
    assert runs.table(newest).splitlines()[1].split()[1:4] == ["refresh-nightly-day30", "failed", "3"]


def test_pruning_removes_the_oldest_records_beyond_n_and_reads_none(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    store.put_bytes("runs/refresh-before-keys-sorted-by-time.json", b'{"run": "old"}')  # a record of the old scheme
    written = [attempt(store, f"run-{i}", T0 + i).key for i in range(5)]
    assert len(store.list_keys("runs")) == 6
    store.reads.clear()

    assert runs.prune(store, 3) == [*reversed(written[:2]), "runs/refresh-before-keys-sorted-by-time.json"]
    assert store.list_keys("runs") == sorted(written[2:]) and store.reads == []  # listing only, nothing read
    assert runs.prune(store, 3) == []
    with pytest.raises(ConfigError, match="--keep-runs must be at least 1, got 0"):
        runs.prune(store, 0)
    assert main(["runs", "--store", str(store.root), "--last", "0"]) == 2  # a usage error


def test_a_record_that_cannot_be_written_never_fails_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Full(CountingStore):
        def put_bytes(self, key: str, data: bytes) -> None:
            raise OSError(28, "No space left on device")

    store = Full(tmp_path / "store")
    record = attempt(store, "run-0", T0, status=75)
    assert store.list_keys("runs") == [] and f"could not write the run record {record.key}" in caplog.text

    # Whoever can write the store could leave a huge "record": it is refused by its size, before it is read.
    huge = CountingStore(tmp_path / "huge")
    attempt(huge, "run-1", T0)
    huge.put_bytes("runs/0000000000000-huge.json", b" " * (runs.RECORD_LIMIT + 1))
    assert [r["run"] for r in runs.recent(huge, 2)] == ["run-1"]
    assert "skipping unreadable run record runs/0000000000000-huge.json" in caplog.text
