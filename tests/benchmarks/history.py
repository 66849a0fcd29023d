"""Metadata that grows with history: discovery and the ledger of a nightly run over years of partitions.

    python -m tests.benchmarks.history                       # 100,000 partitions, about a minute
    python -m tests.benchmarks.history --days 400 --per-day 25 --baseline 76257cf

Lays out ``--days`` × ``--per-day`` empty partition files in a Hive date layout (``dt=YYYY-MM-DD/``, one
``_SUCCESS`` a day) on a local folder, and a lineage that has consumed all but the last day's. Then a nightly
run's metadata work is measured twice, each side in a process of its own:

- *before*: the functions of the baseline commit (``--baseline``, checked out with ``git worktree``): one
  recursive listing, every file a ``Partition``, then ``--since``; the parent's whole ledger read, and the
  whole ledger written into the new version;
- *after*: this tree's: only the date folders on or after ``--since`` listed (and, in a second row, those
  within ``--relist-days 1`` of the newest consumed, without ``--since``); the parent's ledger read from its
  chain (the longest after which a delta is still written: a whole ledger and K − 2 deltas), and a delta of
  this run's rows written (and, every K-th version, the compacted whole ledger, amortized in its own rows).

Each stage's time is the best of ``--rounds``. Memory is measured over a whole nightly pass (discovery, then
the ledger; after: with ``--relist-days 1``), before any other work in the process: the peak resident memory
above the process's at the start, then, in a second pass, the peak of the Python heap (tracemalloc). Bytes
are those a version stores: the ledger file and the manifest's sections that grow with the partitions
(``partitions``, ``consumed``, ``ledger``), for a nightly version and for one that consumes every partition
(a first run, a backfill). Prints one table with ratios (after / before) measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMPACT_EVERY = 10  # jobs.config.RefreshConfig's default, checked against it in setup()


def days(first: datetime.date, count: int) -> list[str]:
    return [(first + datetime.timedelta(days=i)).isoformat() for i in range(count)]


def lay_out(root: Path, dates: list[str], per_day: int) -> None:
    for day in dates:
        folder = root / f"dt={day}"
        folder.mkdir(parents=True)
        for part in range(per_day):
            (folder / f"part-{part:05d}.parquet").touch()
        (folder / "_SUCCESS").touch()


def setup(root: Path, stores: Path, dates: list[str], per_day: int) -> dict[str, Any]:
    """The input, and two stores whose current version has consumed everything but the last day: one as the
    baseline wrote it (a whole ledger), one as this tree writes it (a chain of K files)."""
    from jobs.config import RefreshConfig
    from jobs.lineage import ledger
    from jobs.storage import LocalStore
    from jobs.storage.publish import put_recorded, write_manifest
    from shards.partitions import discover, open_filesystem

    assert RefreshConfig("x", "y").ledger_compact_every == COMPACT_EVERY
    lay_out(root, dates, per_day)
    fs, path = open_filesystem(str(root))
    consumed = [p for p in discover(fs, path) if not p.key.startswith(f"dt={dates[-1]}/")]
    old = LocalStore(stores / "before")
    data = ledger.extend(ledger.empty(), consumed, "v0", str(root))
    write_manifest(old, "v0", {"version": "v0", "files": {ledger.LEDGER: put_recorded(old, "v0", ledger.LEDGER, data)}})
    new = LocalStore(stores / "after")
    seen, runs = ledger.empty(), COMPACT_EVERY - 1  # the base and K - 2 deltas: the next run writes a delta
    cut = len(consumed) - (runs - 1) * per_day
    batches = [consumed[:cut]] + [consumed[cut + i * per_day : cut + (i + 1) * per_day] for i in range(runs - 1)]
    for i, batch in enumerate(batches):
        version = f"v{i}"
        written = ledger.write(seen, batch, version, str(root), COMPACT_EVERY)
        files = {written.name: put_recorded(new, version, written.name, written.data)}
        manifest = {"version": version, "files": files, "ledger": written.section}
        write_manifest(new, version, manifest)
        seen = ledger.read(new, version, str(root), manifest)
    return {"parent": f"v{runs - 1}", "partitions": len(consumed) + per_day, "consumed": len(consumed)}


def best(rounds: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def side(which: str, root: str, store_root: str, parent: str, since: str, rounds: int) -> dict[str, Any]:
    """One side's measurements (run in a process whose ``shards``/``jobs`` are that side's)."""
    from jobs.lineage import ledger
    from jobs.storage import LocalStore
    from shards.partitions import Readiness, hold_back, list_input, open_filesystem, partitions_of, select

    fs, path = open_filesystem(root)
    store = LocalStore(store_root)
    out: dict[str, Any] = {}

    def discovery(bounds: Any = None, selected: str | None = since) -> tuple[list[Any], list[Any], int]:
        """As a refresh discovers: list, every listed file a Partition, the filters, readiness."""
        if bounds is None:
            listing = list_input(fs, path)
        else:
            from shards.listing import list_bounded

            listing = list_bounded(fs, path, bounds)
        listed = partitions_of(fs, listing)
        ready, _ = hold_back(listing, select(listed, since=selected), Readiness(), time.time())
        return listed, ready, getattr(listing, "entries", len(listing.infos))  # the baseline's: all it listed

    if which == "before":
        scenarios: dict[str, Callable[[], Any]] = {"since": discovery}
        read = lambda: ledger.read(store, parent, root)  # noqa: E731
    else:
        from jobs.storage.publish import read_manifest
        from shards.listing import Bounds

        manifest = read_manifest(store, parent)
        seen0 = ledger.read(store, parent, root, manifest)
        relisted = ledger.relist_since(seen0, 1)
        scenarios = {
            "since": lambda: discovery(Bounds(since=since)),
            "relist": lambda: discovery(Bounds(since=relisted), selected=None),
        }
        read = lambda: ledger.read(store, parent, root, manifest)  # noqa: E731

    def nightly() -> None:
        """A whole nightly run's metadata work, for the memory passes."""
        listed, ready, _ = scenarios["relist" if which == "after" else "since"]()
        seen = read()
        ledger.select(listed, seen)
        plan = ledger.select(ready, seen)
        if which == "before":
            ledger.extend(seen, plan.new, "v-new", root)
        else:
            ledger.write(seen, plan.new, "v-new", root, COMPACT_EVERY)

    resident = rss()
    nightly()  # first, so the process's high-water mark is this pass's
    out["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - resident
    tracemalloc.start()
    nightly()
    out["python_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    for name, fn in scenarios.items():
        seconds, (_, ready, entries) = best(rounds, fn)
        out[f"discovery_{name}"] = {"seconds": seconds, "entries": entries, "new": len(ready)}
    out["read"], seen = best(rounds, read)
    out["read_files"] = len(getattr(seen, "chain", ())) or 1
    out["rows"] = seen.rows
    listed, ready, _ = scenarios["since"]()

    def both() -> Any:  # as a refresh selects: every listed file (the check against a wrong --input), then new
        ledger.select(listed, seen)
        return ledger.select(ready, seen)

    out["select"], plan = best(rounds, both)
    out["new"] = len(plan.new)
    if which == "before":
        out["write"], data = best(rounds, lambda: ledger.extend(seen, plan.new, "v-new", root))
        out["ledger_bytes"] = len(data)
        section: dict[str, Any] = {}
    else:
        out["write"], written = best(rounds, lambda: ledger.write(seen, plan.new, "v-new", root, COMPACT_EVERY))
        out["ledger_bytes"], section = len(written.data), written.section
        out["compact"], full = best(rounds, lambda: ledger.write(seen, plan.new, "v-new", root, 1))
        out["compact_bytes"] = len(full.data)
    everything = partitions_of(fs, list_input(fs, path))  # a first run, or a backfill, consuming all of them
    if which == "before":  # the baseline's manifest_fields: every partition the version consumed
        named = lambda batch: {  # noqa: E731
            "partitions": [{"key": p.key, "uri": p.uri, "size": p.size, "mtime_ns": p.mtime_ns} for p in batch]
        }
    else:
        from jobs.report import consumed_fields as named
    out["manifest_bytes"] = len(json.dumps({**named(plan.new), **({"ledger": section} if section else {})}))
    out["manifest_all_bytes"] = len(json.dumps(named(everything)))

    return out


def rss() -> int:
    """The process's resident memory now, in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_side(which: str, tree: Path, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--side", which, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {which} side failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def baseline_tree(commit: str, where: Path) -> Path:
    tree = where / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True, capture_output=True
    )
    return tree


def table(before: dict[str, Any], after: dict[str, Any], meta: dict[str, Any]) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.3g}×" if b else "-"

    mib = 1 << 20
    k = COMPACT_EVERY
    amortized = ((k - 1) * after["ledger_bytes"] + after["compact_bytes"]) / k
    amortized_write = ((k - 1) * after["write"] + after["compact"]) / k
    rows = [
        (
            "discovery, `--since` the last day (s)",
            before["discovery_since"]["seconds"],
            after["discovery_since"]["seconds"],
        ),
        (
            "discovery, `--relist-days 1`, no `--since` (s)",
            before["discovery_since"]["seconds"],
            after["discovery_relist"]["seconds"],
        ),
        (
            "entries the listings returned, `--since`",
            before["discovery_since"]["entries"],
            after["discovery_since"]["entries"],
        ),
        (
            "entries the listings returned, `--relist-days 1`",
            before["discovery_since"]["entries"],
            after["discovery_relist"]["entries"],
        ),
        (f"ledger read (s; files: {before['read_files']} vs {after['read_files']})", before["read"], after["read"]),
        ("ledger select, listed and new (s)", before["select"], after["select"]),
        ("ledger write, a delta version (s)", before["write"], after["write"]),
        (f"ledger write, amortized over {k} versions (s)", before["write"], amortized_write),
        ("ledger bytes, a delta version", before["ledger_bytes"], after["ledger_bytes"]),
        (f"ledger bytes, amortized over {k} versions", before["ledger_bytes"], amortized),
        (
            "manifest `partitions` + `ledger` bytes, a nightly version",
            before["manifest_bytes"],
            after["manifest_bytes"],
        ),
        (
            f"manifest `partitions` bytes, a version consuming all {meta['partitions']:,}",
            before["manifest_all_bytes"],
            after["manifest_all_bytes"],
        ),
        ("driver peak, Python heap (MiB)", before["python_peak"] / mib, after["python_peak"] / mib),
        ("driver peak resident memory above the start (MiB)", before["rss_peak"] / mib, after["rss_peak"] / mib),
    ]
    lines = [
        f"{meta['partitions']:,} partitions over {meta['days']:,} days; the lineage consumed {meta['consumed']:,}; "
        f"new: before {before['new']}, after {after['new']}; ledger rows {before['rows']:,} / {after['rows']:,}",
        "",
        "| measurement | before | after | after / before |",
        "| --- | --- | --- | --- |",
    ]
    for name, b, a in rows:
        lines.append(f"| {name} | {number(b)} | {number(a)} | {ratio(a, b)} |")
    return "\n".join(lines)


def number(value: float) -> str:
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=4000, help="date folders (4,000: about eleven years)")
    p.add_argument("--per-day", type=int, default=25, help="partition files a day")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline", default="76257cf", help="the commit the before side runs")
    p.add_argument("--side", choices=["before", "after"], help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--parent", help=argparse.SUPPRESS)
    p.add_argument("--since", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.side:
        print(json.dumps(side(a.side, a.root, a.store, a.parent, a.since, a.rounds)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        where = Path(tmp)
        dates = days(datetime.date(2016, 1, 1), a.days)
        started = time.perf_counter()
        meta = {**setup(where / "input", where / "stores", dates, a.per_day), "days": a.days}
        print(f"laid out in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        tree = baseline_tree(a.baseline, where)
        try:
            common = ["--root", str(where / "input"), "--since", dates[-1], "--rounds", str(a.rounds)]
            before = run_side("before", tree, [*common, "--store", str(where / "stores" / "before"), "--parent", "v0"])
            after = run_side(
                "after", REPO, [*common, "--store", str(where / "stores" / "after"), "--parent", meta["parent"]]
            )
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    print(table(before, after, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
