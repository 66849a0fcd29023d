"""Discovery over a table with many commits, against the same rows as that many plain files (run by hand).

    python -m tests.benchmarks.tables                          # 10,000 Delta commits; Iceberg 1,000 snapshots
    python -m tests.benchmarks.tables --commits 2000 --iceberg-snapshots 0

Lays out, on local disk, ``--commits`` Parquet files of ``--rows`` rows each three ways: a folder of plain
files (one ``dt=`` folder per 100), a Delta table written by one append per file (deltalake), and an Iceberg
table (pyiceberg's SQL catalog) with one snapshot per file for ``--iceberg-snapshots`` of them (each snapshot
rewrites the table's growing metadata file, so building 10,000 takes hours). Then it times what a run does
before reading any data (best of ``--rounds``):

- *files*: list the folder (one recursive listing) and split it by a ledger holding all but the last 100;
- *first*: a table's first run (every live file);
- *last 100*: a run whose lineage consumed all but the last 100 commits (Delta: two snapshots compared);
- *all*: a run whose lineage consumed only the first commit (every commit after it);
- *walk 100* (Delta): the last 100 commits after a compaction of everything consumed, which walks them one
  snapshot at a time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def best(rounds: int, action: Callable[[], Any]) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def batch(i: int, rows: int) -> pa.Table:
    return pa.table({"text": [f"row {i} {j} words here" for j in range(rows)], "dt": [f"2026-{i // 100:04d}"] * rows})


def files_side(root: Path, commits: int, rows: int, rounds: int) -> dict[str, float]:
    from jobs.lineage import ledger
    from shards.partitions import discover, open_filesystem

    for i in range(commits):
        folder = root / f"dt=2026-{i // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(batch(i, rows).select(["text"]), folder / f"part-{i:05d}.parquet")
    fs, path = open_filesystem(str(root))
    found = discover(fs, path)
    seen = ledger.Ledger(ledger._rows(found[:-100], "v1"))
    return {"files": best(rounds, lambda: ledger.select(discover(fs, path), seen))}


def delta_side(root: Path, commits: int, rows: int, rounds: int) -> dict[str, float]:
    from deltalake import DeltaTable, write_deltalake

    from shards.tables import Position, read_changes

    uri = str(root)
    started = time.perf_counter()
    for i in range(commits):
        write_deltalake(uri, batch(i, rows), mode="append", partition_by=["dt"])
    print(f"  wrote {commits} Delta commits in {time.perf_counter() - started:.0f} s")
    table_id = str(DeltaTable(uri).metadata().id)
    end = commits - 1
    timings = {
        "first": best(rounds, lambda: read_changes(uri, {})),
        "last 100": best(rounds, lambda: read_changes(uri, {table_id: Position("delta", table_id, end - 100)})),
        "all": best(rounds, lambda: read_changes(uri, {table_id: Position("delta", table_id, 0)})),
    }
    DeltaTable(uri).optimize.compact()  # version commits: everything consumed, compacted
    compacted = commits
    for i in range(100):
        write_deltalake(uri, batch(commits + i, rows), mode="append", partition_by=["dt"])
    before = Position("delta", table_id, compacted - 1)
    changes = read_changes(uri, {table_id: before})
    assert len(changes.partitions) == 100, len(changes.partitions)
    timings["walk 100"] = best(rounds, lambda: read_changes(uri, {table_id: before}))
    return timings


def iceberg_side(root: Path, snapshots: int, rows: int, rounds: int) -> dict[str, float]:
    import os

    from pyiceberg.catalog.sql import SqlCatalog

    from shards.tables import Position, read_changes

    root.mkdir(parents=True)
    properties = {"uri": f"sqlite:///{root}/catalog.db", "warehouse": f"file://{root}/wh"}
    catalog = SqlCatalog("bench", **properties)
    catalog.create_namespace("b")
    table = catalog.create_table("b.docs", schema=batch(0, 1).schema)
    started = time.perf_counter()
    for i in range(snapshots):
        table.append(batch(i, rows))
    print(f"  wrote {snapshots} Iceberg snapshots in {time.perf_counter() - started:.0f} s")
    for key, value in {"type": "sql", **properties}.items():
        os.environ[f"PYICEBERG_CATALOG__BENCH__{key.upper()}"] = value
    uri = "iceberg://bench/b.docs"
    table_id = str(table.metadata.table_uuid)
    chain = list(table.snapshots())
    back = chain[-101]
    return {
        "first": best(rounds, lambda: read_changes(uri, {})),
        "last 100": best(
            rounds,
            lambda: read_changes(
                uri, {table_id: Position("iceberg", table_id, back.snapshot_id, back.sequence_number)}
            ),
        ),
        "all": best(
            rounds,
            lambda: read_changes(uri, {table_id: Position("iceberg", table_id, chain[0].snapshot_id, 1)}),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--iceberg-snapshots", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tables-bench-") as tmp:
        base = Path(tmp)
        results[f"{options.commits:,} plain files"] = files_side(
            base / "files", options.commits, options.rows, options.rounds
        )
        results[f"Delta, {options.commits:,} commits"] = delta_side(
            base / "delta", options.commits, options.rows, options.rounds
        )
        if options.iceberg_snapshots:
            results[f"Iceberg, {options.iceberg_snapshots:,} snapshots"] = iceberg_side(
                base / "iceberg", options.iceberg_snapshots, options.rows, options.rounds
            )
    print("| input | discovery | seconds |")
    print("| --- | --- | --- |")
    for side, timings in results.items():
        for name, seconds in timings.items():
            print(f"| {side} | {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
