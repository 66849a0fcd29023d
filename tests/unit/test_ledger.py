"""The ledger: keys relative to the input, old ledgers migrated, a wrong input refused, deltas and compaction
through a lineage, gc keeping chains, and what a manifest records of the partitions a version consumed."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import report
from jobs.errors import ConfigError, IntegrityError
from jobs.lineage import ledger
from jobs.storage import LocalStore
from jobs.storage.publish import put_recorded, read_manifest, write_manifest
from jobs.versions import consumed as consumed_count
from jobs.versions import gc, promote
from shards.partitions import Partition, discover, open_filesystem, root_uri
from tests.support.files import write_parquet


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
    """A version as written before keys were relative and before deltas: a full ``uri`` ledger, no section."""
    table = pa.table({"uri": uris, "size": [1] * len(uris), "mtime_ns": [2] * len(uris), "version": ["v0"] * len(uris)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    files = {
        "ledger.parquet": put_recorded(store, version, "ledger.parquet", sink.getvalue()),
        "config.json": put_recorded(store, version, "config.json", json.dumps({"input": recorded_input}).encode()),
    }
    write_manifest(store, version, {"version": version, "parent": None, "files": files})


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


def refresh_ledger(store: LocalStore, root: Path, version: str, compact_every: int, reprocess: bool = False) -> list:  # type: ignore[type-arg]
    """What a refresh does with the ledger, without training: read the current version's ledger, consume what
    it has not seen (and, with ``reprocess``, what was rewritten), store this version's file and manifest."""
    pointer = store.read_pointer()
    parent = read_manifest(store, pointer.version) if pointer else None
    seen = ledger.read(store, pointer.version if pointer else None, str(root), parent)
    plan = ledger.select(found(root), seen)
    consumed = plan.new + (plan.rewritten if reprocess else [])
    written = ledger.write(seen, consumed, version, str(root), compact_every)
    files = {written.name: put_recorded(store, version, written.name, written.data)}
    write_manifest(
        store,
        version,
        {"version": version, "parent": parent and parent["version"], "files": files, "ledger": written.section},
    )
    store.swap_pointer(version, pointer)
    return consumed


def land(root: Path, day: int) -> list[str]:
    names = [f"dt=2026-11-{day:02d}/part-{i}.parquet" for i in range(2)]
    for name in names:
        write_parquet(root / name, [name])
    return names


def keys_of(store: LocalStore, version: str) -> dict[str, str]:
    table = ledger.read(store, version).table
    return dict(zip(table.column("key").to_pylist(), table.column("version").to_pylist(), strict=True))


def test_a_lineage_of_deltas_and_compactions_consumes_every_partition_once(tmp_path: Path) -> None:
    root, store = tmp_path / "events", LocalStore(tmp_path / "store")
    consumed: dict[str, list[str]] = {}
    for day in range(1, 8):
        landed_today = land(root, day)
        consumed[f"v{day}"] = [p.key for p in refresh_ledger(store, root, f"v{day}", compact_every=3)]
        assert consumed[f"v{day}"] == landed_today  # exactly the new partitions, nothing again
    kinds = [read_manifest(store, f"v{d}")["ledger"]["kind"] for d in range(1, 8)]
    assert kinds == ["full", "delta", "delta", "full", "delta", "delta", "full"]
    chains = [ledger.chain_of(read_manifest(store, f"v{d}")) for d in range(1, 8)]
    assert [[link["version"] for link in chain] for chain in chains] == [
        ["v1"],
        ["v1", "v2"],
        ["v1", "v2", "v3"],
        ["v4"],
        ["v4", "v5"],
        ["v4", "v5", "v6"],
        ["v7"],
    ]
    delta = pq.read_table(tmp_path / "store" / "versions" / "v6" / ledger.DELTA)
    assert delta.column("key").to_pylist() == consumed["v6"]  # a delta holds its own rows only
    every = {key: v for v, keys in consumed.items() for key in keys}
    assert len(every) == sum(len(keys) for keys in consumed.values()) == 14
    for day in range(1, 8):  # each version's ledger: exactly what was consumed up to it, by whom
        assert keys_of(store, f"v{day}") == {k: v for k, v in every.items() if int(v[1:]) <= day}
    assert read_manifest(store, "v6")["ledger"] == {"kind": "delta", "chain": chains[4], "rows": 12, "added": 2}

    rewritten = root / consumed["v2"][0]
    write_parquet(rewritten, ["rewritten in place", "with more rows"])
    assert refresh_ledger(store, root, "v8", compact_every=3) == []  # reported as rewritten, not retrained
    again = refresh_ledger(store, root, "v9", compact_every=3, reprocess=True)
    assert [p.key for p in again] == [consumed["v2"][0]]
    assert read_manifest(store, "v9")["ledger"]["kind"] == "delta"
    assert keys_of(store, "v9") == {**every, consumed["v2"][0]: "v9"}  # its row replaced, not added
    assert refresh_ledger(store, root, "v10", compact_every=3) == []  # compacted, and still nothing again
    assert read_manifest(store, "v10")["ledger"]["kind"] == "full"
    assert keys_of(store, "v10") == keys_of(store, "v9")
    assert ledger.select(found(root), ledger.read(store, "v10")).already == 14


def test_gc_keeps_the_versions_a_kept_ledger_is_read_from(tmp_path: Path) -> None:
    root, store = tmp_path / "events", LocalStore(tmp_path / "store")
    for day in range(1, 5):
        land(root, day)
        refresh_ledger(store, root, f"v{day}", compact_every=4)
    assert gc(store, keep=1).startswith("removed 0 version(s); kept 4 (2 that kept versions' ledgers are read from)")
    assert len(keys_of(store, "v4")) == 8
    for day in range(5, 7):  # v5 compacts; v6 is a delta on it
        land(root, day)
        refresh_ledger(store, root, f"v{day}", compact_every=4)
    assert gc(store, keep=1).startswith("removed 4 version(s); kept 2;")
    assert store.list_versions() == ["v5", "v6"]
    assert len(keys_of(store, "v6")) == 12
    promote(store, "v5")  # a rollback, then a refresh from it: still exact
    land(root, 7)
    assert len(refresh_ledger(store, root, "v7", compact_every=4)) == 4  # v6's and day 7's
    assert len(keys_of(store, "v7")) == 14


def test_a_lineage_goes_on_from_an_old_full_ledger(tmp_path: Path) -> None:
    root, store = tmp_path / "events", LocalStore(tmp_path / "store")
    first = land(root, 1)
    # a version as written before deltas: a whole ledger.parquet, no ledger section in its manifest
    data = ledger.extend(ledger.empty(), found(root), "v1", str(root))
    write_manifest(
        store, "v1", {"version": "v1", "files": {"ledger.parquet": put_recorded(store, "v1", "ledger.parquet", data)}}
    )
    store.swap_pointer("v1", None)
    second = land(root, 2)
    assert [p.key for p in refresh_ledger(store, root, "v2", compact_every=5)] == second
    assert read_manifest(store, "v2")["ledger"]["kind"] == "delta"
    assert [link["version"] for link in read_manifest(store, "v2")["ledger"]["chain"]] == ["v1"]
    assert keys_of(store, "v2") == {**dict.fromkeys(first, "v1"), **dict.fromkeys(second, "v2")}


def test_an_absolute_ledger_is_migrated_once_into_a_whole_ledger(tmp_path: Path) -> None:
    root, store = tmp_path / "events", LocalStore(tmp_path / "store")
    first = land(root, 1)
    old_format_version(store, "v1", [f"{root}/{key}" for key in first], recorded_input=str(root))
    store.swap_pointer("v1", None)
    second = land(root, 2)
    # the old ledger's sizes and mtimes are not the files': its partitions count as rewritten, not new
    assert [p.key for p in refresh_ledger(store, root, "v2", compact_every=5)] == second
    assert read_manifest(store, "v2")["ledger"]["kind"] == "full"  # the migrated keys, stored once
    assert keys_of(store, "v2") == {**dict.fromkeys(first, "v0"), **dict.fromkeys(second, "v2")}
    land(root, 3)
    refresh_ledger(store, root, "v3", compact_every=5)
    assert [link["version"] for link in ledger.chain_of(read_manifest(store, "v3"))] == ["v2", "v3"]


def test_an_altered_or_missing_ledger_file_is_refused(tmp_path: Path) -> None:
    root, store = tmp_path / "events", LocalStore(tmp_path / "store")
    for day in range(1, 3):
        land(root, day)
        refresh_ledger(store, root, f"v{day}", compact_every=5)
    base = tmp_path / "store" / "versions" / "v1" / ledger.LEDGER
    data = base.read_bytes()
    base.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IntegrityError, match=r"v1/ledger\.parquet .* differs"):
        ledger.read(store, "v2")
    base.unlink()
    with pytest.raises(IntegrityError, match=r"v1/ledger\.parquet is missing"):
        ledger.read(store, "v2")


def test_a_bounded_listing_of_only_new_folders_is_related_when_consumed_partitions_exist(tmp_path: Path) -> None:
    root = tmp_path / "events"
    first = land(root, 1)
    seen = ledger.Ledger(pq.read_table(io.BytesIO(ledger.extend(ledger.empty(), found(root), "v1", str(root)))))
    land(root, 2)
    only_new = [p for p in found(root) if p.key not in first]  # what --since 2026-11-02 lists
    plan = ledger.select(only_new, seen)
    asked: list[str] = []

    def present(key: str) -> bool:
        asked.append(key)
        return (root / key).is_file()

    ledger.ensure_related(plan, seen, str(root), "v1", present)  # the consumed partitions are there: fine
    assert asked == [first[0]]
    with pytest.raises(ConfigError, match="--allow-new-input"):  # under another root they are not
        ledger.ensure_related(plan, seen, str(root), "v1", lambda key: (tmp_path / key).is_file())


def test_the_manifest_names_a_bounded_number_of_a_versions_partitions(tmp_path: Path) -> None:
    consumed = [
        Partition(
            uri=f"/in/dt=1/p-{i:05d}.txt",
            path=f"/in/dt=1/p-{i:05d}.txt",
            size=i,
            mtime_ns=1,
            format="text",
            key=f"dt=1/p-{i:05d}.txt",
        )
        for i in range(report.MANIFEST_PARTITIONS + 5)
    ]
    fields = report.consumed_fields(consumed)
    assert [p["key"] for p in fields["partitions"]] == [p.key for p in consumed[: report.MANIFEST_PARTITIONS]]
    assert fields["consumed"] == {
        "partitions": report.MANIFEST_PARTITIONS + 5,
        "bytes": sum(range(report.MANIFEST_PARTITIONS + 5)),
        "named": report.MANIFEST_PARTITIONS,
    }
    assert consumed_count({"version": "v1", **fields}) == report.MANIFEST_PARTITIONS + 5
    assert consumed_count({"version": "v0", "partitions": [{}, {}]}) == 2  # a manifest before the summary
    written = ledger.write(ledger.empty(), consumed, "v1", "/in", compact_every=10)  # the ledger holds them all
    assert pq.read_table(io.BytesIO(written.data)).column("key").to_pylist() == [p.key for p in consumed]


class RolledBackWhileRead(LocalStore):
    """A store where, as the run starts reading its parent v3's ledger chain, a rollback moves the pointer to v2
    and gc removes v3 (the seam: another process acting at that moment on the same real store)."""

    def get_bytes(self, key: str, limit: int | None = None) -> bytes:
        if key == "versions/v1/ledger.parquet" and "v3" in self.list_versions():
            self.swap_pointer("v2", self.read_pointer())
            self.delete_version("v3")
        return super().get_bytes(key, limit)


def test_a_refresh_whose_parent_is_removed_while_it_reads_the_ledger_exits_75(tmp_path: Path) -> None:
    from jobs.config import TOKENIZER_SETTINGS, from_args, to_dict
    from jobs.errors import EXIT_RETRYABLE, VersionRemoved, exit_status
    from jobs.refresh import Hooks, refresh
    from jobs.runs import RunRecord

    root, store = tmp_path / "events", RolledBackWhileRead(tmp_path / "store")
    for day in range(1, 4):  # v1 a whole ledger, v2 and v3 deltas on it
        land(root, day)
        refresh_ledger(store, root, f"v{day}", compact_every=4)
    parent = read_manifest(store, "v3")
    parent["files"]["model/params.json"] = {"size": 2, "sha256": "0" * 64}  # the pickle-free format, as listed
    config = from_args(["--input", str(root), "--store", str(store.root)])
    recorded = to_dict(config)["tokenizer"]  # the lineage's record, so its settings need no model file
    parent["lineage"] = {"tokenizer": {name: recorded[name] for name in TOKENIZER_SETTINGS}, "architecture": None}
    write_manifest(store, "v3", {k: v for k, v in parent.items() if k != "format"})
    land(root, 4)

    with pytest.raises(VersionRemoved, match=r"v3, the version this run builds on, was removed .* \(to v2\)") as info:
        refresh(config, store, RunRecord.begin(str(root)), Hooks())
    assert exit_status(info.value) == EXIT_RETRYABLE
    assert store.read_pointer().version == "v2" and store.list_incomplete() == {}  # type: ignore[union-attr]
