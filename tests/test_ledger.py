"""The ledger's partition identity: keys relative to the input, old ledgers migrated, a wrong input refused."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.errors import ConfigError
from jobs.lineage import ledger
from jobs.storage import LocalStore
from shards.partitions import discover, open_filesystem, root_uri
from tests.conftest import write_parquet

pytestmark = pytest.mark.unit


def landed(root: Path) -> list[str]:
    for day in (1, 2):
        for part in (0, 1):
            write_parquet(root / f"dt={day}" / f"part-{part}.parquet", [f"day {day} part {part}"])
    return ["dt=1/part-0.parquet", "dt=1/part-1.parquet", "dt=2/part-0.parquet", "dt=2/part-1.parquet"]


def found(root: Path) -> list:  # type: ignore[type-arg]
    return discover(*open_filesystem(str(root)))


def test_keys_are_relative_to_the_input_and_survive_a_move(tmp_path: Path) -> None:
    keys = landed(tmp_path / "mnt-a" / "events")
    before = found(tmp_path / "mnt-a" / "events")
    assert [p.key for p in before] == keys
    assert root_uri(before) == str(tmp_path / "mnt-a" / "events")
    table = pq.read_table(io.BytesIO(ledger.extend(ledger.empty(), before, "v1", root_uri(before))))
    assert table.column("key").to_pylist() == keys
    assert table.schema.metadata[b"embedding_refresh.root"] == str(tmp_path / "mnt-a" / "events").encode()

    shutil.copytree(tmp_path / "mnt-a", tmp_path / "mnt-b", copy_function=shutil.copy2)  # keeps mtimes
    seen = ledger.Ledger(table.cast(ledger.SCHEMA), str(tmp_path / "mnt-a" / "events"))
    plan = ledger.select(found(tmp_path / "mnt-b" / "events"), seen)
    assert (plan.new, plan.rewritten, plan.already) == ([], [], 4)


def old_format_version(store: LocalStore, version: str, uris: list[str], recorded_input: str) -> None:
    table = pa.table({"uri": uris, "size": [1] * len(uris), "mtime_ns": [2] * len(uris), "version": ["v0"] * len(uris)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    store.put_bytes(f"versions/{version}/ledger.parquet", sink.getvalue())
    store.put_bytes(f"versions/{version}/config.json", json.dumps({"input": recorded_input}).encode())


def test_an_absolute_ledger_is_migrated_on_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    old_format_version(
        store,
        "v1",
        ["/mnt/a/events/dt=1/p.parquet", "/data/events/dt=2/p.parquet", "s3://elsewhere/x.parquet"],
        recorded_input="/mnt/a/events/",
    )
    seen = ledger.read(store, "v1", input_root="/data/events")
    # one row under the current root, one under the root the parent recorded, one under neither (kept as is)
    assert seen.table.column("key").to_pylist() == ["dt=1/p.parquet", "dt=2/p.parquet", "s3://elsewhere/x.parquet"]
    assert seen.table.column("version").to_pylist() == ["v0"] * 3
    rewritten = pq.read_table(io.BytesIO(ledger.extend(seen, [], "v2", "/data/events")))
    assert rewritten.column_names == ["key", "size", "mtime_ns", "version"]


def test_a_ledger_that_matches_nothing_found_is_refused(tmp_path: Path) -> None:
    landed(tmp_path / "events")
    everything = found(tmp_path / "events")
    seen = ledger.Ledger(
        pq.read_table(io.BytesIO(ledger.extend(ledger.empty(), everything, "v1", str(tmp_path / "events")))),
        str(tmp_path / "events"),
    )
    child = found(tmp_path / "events" / "dt=1")  # --input one level too deep: every key differs
    assert [p.key for p in child] == ["part-0.parquet", "part-1.parquet"]
    with pytest.raises(ConfigError, match="--allow-new-input") as info:
        ledger.ensure_related(ledger.select(child, seen), seen, root_uri(child) or "", "v1")
    assert "none of the 2 partitions" in str(info.value) and str(tmp_path / "events") in str(info.value)
    ledger.ensure_related(ledger.select(everything, seen), seen, str(tmp_path / "events"), "v1")  # related: fine
    ledger.ensure_related(ledger.select(child, ledger.empty()), ledger.empty(), "x", None)  # a first model: fine
