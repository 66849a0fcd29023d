"""Which partitions a run reads, and why it leaves the others: decided once, for a run and for a dry run alike.

    found = discover(config, store, parent_version, parent_manifest, now=time.time())
    found.todo                                   # what the run reads, in path order
    print(json.dumps(preview(found, config)))    # --dry-run: every class, with the rejections it can tell

Discovery lists the input where the filters can match (:mod:`shards.listing`: ``--since``, ``--until``,
``--where``, ``--relist-days``), keeps the partitions the filters select, splits them by the lineage's ledger
(:mod:`jobs.lineage.ledger`: new, rewritten since consumed, already consumed), holds back files still being
written (:func:`shards.partitions.hold_back`), leaves alone the partitions the lineage recorded as bad
(:mod:`jobs.lineage.rejections`), and with ``--max-partitions N`` takes the N oldest (by date folder, else
modification time; then path: :func:`shards.partitions.oldest_first`) and defers the rest to a later run.

A Delta Lake or Iceberg table says itself what is new (:mod:`jobs.lineage.tables`: the commits after the
version the lineage consumed); the lineage's rejections apply to its files as to a folder's.

A dry run (:func:`preview`) reports the same classes, and predicts the rejections it can tell without reading
the data: an unknown file type, an empty file, a file over ``--max-partition-bytes``, and a Parquet file
whose footer is unreadable (one small read at the end of each Parquet file it would consume, 8 at a time).
A file that passes can still be rejected by a run that reads it (a bad row group, a missing text column).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from pyarrow.fs import FileSystem, FileType

from jobs.config import RefreshConfig
from jobs.lineage import ledger, rejections, tables
from jobs.lineage.rejections import Rejection
from jobs.storage import Store, lease
from shards.checks import at_sight, footer
from shards.listing import Bounds, list_bounded
from shards.partitions import (
    Listing,
    Partition,
    hold_back,
    input_uri,
    oldest_first,
    open_filesystem,
    partitions_of,
    select,
)
from shards.tables import Changes

log = logging.getLogger(__name__)

FOOTER_READS = 8  # footers a dry run reads at once


@dataclass(frozen=True)
class Discovery:
    """What a run found under its input, by what it does with each partition."""

    fs: FileSystem  # what the input is read through
    input_root: str  # the URI the partitions' keys are relative to
    seen: ledger.Ledger  # the parent's ledger
    known: dict[str, Rejection]  # the partitions the lineage found bad, by key
    listing: Listing | None  # None for a table
    found: list[Partition]  # selected by the filters
    new: list[Partition]  # never consumed, completely written
    rewritten: list[Partition]  # consumed, rewritten since (another size or mtime), completely written
    already: int  # consumed as they are
    waiting: list[tuple[Partition, str]]  # still being written, with the reason
    skipped: list[tuple[Partition, Rejection]]  # recorded as bad as they are now: left alone
    todo: list[Partition]  # what the run reads, in path order
    deferred: list[Partition]  # left for a later run by --max-partitions
    listed: set[str] | None  # every key under the input, when the listing left no folder out
    table: Changes | None = None  # a table's commits since the lineage's position

    @property
    def not_retrained(self) -> list[Partition]:
        """Rewritten partitions the run leaves as they were consumed (no ``--reprocess-rewritten``)."""
        taken = {p.key for p in self.todo} | {p.key for p in self.deferred} | {p.key for p, _ in self.skipped}
        return [p for p in self.rewritten if p.key not in taken]


def bounds(config: RefreshConfig, seen: ledger.Ledger) -> Bounds:
    """The folders discovery may leave out: date folders before ``--since`` or, with ``--relist-days``,
    before that many days ahead of the newest the lineage consumed (the later of the two), date folders after
    ``--until``, and hive folders ``--where`` rules out."""
    since = max(filter(None, [config.since, ledger.relist_since(seen, config.relist_days)]), default=None)
    return Bounds(since=since, until=config.until, where=config.where)


def discover(
    config: RefreshConfig,
    store: Store,
    version: str | None,
    manifest: Mapping[str, Any] | None,
    filesystem: FileSystem | None = None,
    now: float | None = None,
) -> Discovery:
    """Every partition under ``--input`` sorted by what a run building on ``version`` (its ``manifest``) does
    with it, read through ``filesystem`` if given (over a local input), at time ``now``. Only reads: the store
    (the ledger, the lineage's rejections) and the input. Raises ConfigError when the input does not exist,
    or when none of the partitions found is in a lineage's ledger (a wrong ``--input``; see
    :func:`jobs.lineage.ledger.ensure_related`); IntegrityError for an altered ledger."""
    settings, known = rejections.reading(config), rejections.read(store, version, manifest)
    if tables.reads_table(config):
        with lease.reading(store, version):  # a parent collected under the run: retryable
            seen = ledger.read(store, version, config.input, manifest)
        table = tables.discover(config, tables.positions(manifest), seen.rows, version)
        todo, skipped = rejections.split(table.partitions, known, settings, config.retry_rejected)
        return Discovery(
            table.fs,
            config.input,
            seen,
            known,
            None,
            table.partitions,
            table.partitions,
            [],
            0,
            [],
            skipped,
            todo,
            [],
            None,
            table,
        )
    fs, root = open_filesystem(config.input)
    fs = filesystem or fs
    input_root = input_uri(fs, root)
    with lease.reading(store, version):  # a parent collected under the run: retryable
        seen = ledger.read(store, version, input_root, manifest)
    listing = list_bounded(fs, root, bounds(config, seen), follow_symlinks=config.read.follow_symlinks)
    for link, why in listing.left_out:
        log.warning("left out %s: %s", link, why)
    log.info(
        "listed %s: %d listing(s), %d entries, %d folder(s) left out",
        listing.uri,
        listing.calls,
        listing.entries,
        listing.pruned,
    )
    listed = partitions_of(fs, listing, forced_format=config.input_format)
    if not config.allow_new_input:
        present = partial(_exists, fs, listing.base) if listing.pruned else None
        ledger.ensure_related(ledger.select(listed, seen), seen, input_root, version, present)
    found = select(listed, since=config.since, until=config.until, where=config.where, glob=config.glob)
    split = ledger.select(found, seen)
    ready, waiting = hold_back(
        listing, split.new + split.rewritten, config.readiness, time.time() if now is None else now
    )
    keys = {p.key for p in ready}
    new, rewritten = [p for p in split.new if p.key in keys], [p for p in split.rewritten if p.key in keys]
    candidates = new + (rewritten if config.reprocess_rewritten else [])
    candidates, skipped = rejections.split(candidates, known, settings, config.retry_rejected)
    todo, deferred = oldest(candidates, config.max_partitions)
    return Discovery(
        fs=fs,
        input_root=input_root,
        seen=seen,
        known=known,
        listing=listing,
        found=found,
        new=new,
        rewritten=rewritten,
        already=split.already,
        waiting=waiting,
        skipped=skipped,
        todo=todo,
        deferred=deferred,
        # a listing that left folders out, or of a single file, does not tell that a partition is gone
        listed=None if listing.pruned or _exists(fs, root, "") else {p.key for p in listed},
    )


def oldest(partitions: list[Partition], most: int | None) -> tuple[list[Partition], list[Partition]]:
    """The ``most`` oldest partitions (all without a limit), kept in path order, and the rest."""
    if most is None or len(partitions) <= most:
        return list(partitions), []
    chosen = {p.key for p in oldest_first(partitions)[:most]}
    return [p for p in partitions if p.key in chosen], [p for p in partitions if p.key not in chosen]


def _exists(fs: FileSystem, base: str, key: str) -> bool:
    """Whether ``key`` below ``base`` is a file (``base`` itself, for an empty key)."""
    return bool(fs.get_file_info(f"{base}/{key}" if key else base).type == FileType.File)


def predicted(fs: FileSystem, partitions: list[Partition], config: RefreshConfig) -> dict[str, str]:
    """The partitions a run would reject that can be told without reading their data, by key, with the cause:
    what :func:`shards.checks.at_sight` tells, then unreadable Parquet footers (read :data:`FOOTER_READS` at a
    time)."""
    causes = {p.key: cause for p in partitions if (cause := at_sight(p, config.read)) is not None}
    rest = [p for p in partitions if p.key not in causes]
    with ThreadPoolExecutor(max_workers=FOOTER_READS, thread_name_prefix="footer") as pool:
        for p, cause in zip(rest, pool.map(partial(footer, fs), rest), strict=True):
            if cause is not None:
                causes[p.key] = cause
    return causes


def preview(found: Discovery, config: RefreshConfig) -> dict[str, Any]:
    """What a run would do with each partition, as plain data (``--dry-run``): ``consume`` (it would read and
    train on them), ``rewritten`` (consumed, rewritten since, not retrained without ``--reprocess-rewritten``),
    ``waiting`` (still being written, with the reason), ``rejected`` (recorded as bad by the lineage, or
    predicted: each with its cause), ``deferred`` (beyond ``--max-partitions``), and counts."""
    bad = predicted(found.fs, found.todo, config)
    rejected = [{"uri": p.uri, "cause": entry.cause, "recorded": True} for p, entry in found.skipped]
    rejected += [{"uri": p.uri, "cause": bad[p.key], "recorded": False} for p in found.todo if p.key in bad]
    return {
        "input": found.listing.uri if found.listing else config.input,
        "consume": [p.uri for p in found.todo if p.key not in bad],
        "rewritten": [p.uri for p in found.not_retrained],
        "waiting": [{"uri": p.uri, "reason": reason} for p, reason in found.waiting],
        "rejected": sorted(rejected, key=lambda r: str(r["uri"])),
        "deferred": [p.uri for p in found.deferred],
        "found": len(found.found),
        "already_consumed": found.already,
        **({"table": found.table.report()} if found.table else {}),
    }


def announce(found: Discovery, config: RefreshConfig) -> None:
    """Log what discovery decided: the files that wait and why, the partitions the lineage found bad and
    leaves alone, those rewritten since they were consumed, those left for a later run by --max-partitions, and
    how many are left to train on."""
    _log_waiting(found.waiting)
    _log_skipped(found.skipped)
    for partition in found.rewritten:
        log.warning(
            "partition rewritten since it was consumed (%s): %s",
            "retraining" if config.reprocess_rewritten else "not retrained; see --reprocess-rewritten",
            partition.uri,
        )
    if found.deferred:
        log.info("%d partition(s) left for a later run by --max-partitions", len(found.deferred))
    log.info(
        "%d partitions found, %d already consumed, %d to train on", len(found.found), found.already, len(found.todo)
    )


def _log_skipped(skipped: list[tuple[Partition, rejections.Rejection]]) -> None:
    """One warning for the partitions the lineage found bad and this run leaves alone, with a few named."""
    if not skipped:
        return
    named = "; ".join(f"{p.uri} ({entry.cause})" for p, entry in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    log.warning(
        "%d partition(s) rejected by an earlier run are left alone until they change (rewrite them, or pass "
        "--retry-rejected): %s%s",
        len(skipped),
        named,
        more,
    )


def _log_waiting(waiting: list[tuple[Partition, str]]) -> None:
    """One line per reason files wait for a later run, with a few of them named."""
    by_reason: dict[str, list[str]] = {}
    for partition, reason in waiting:
        by_reason.setdefault(reason, []).append(partition.uri)
    for reason, uris in by_reason.items():
        more = f" and {len(uris) - 3} more" if len(uris) > 3 else ""
        log.info(
            "%d file(s) still being written, left for a later run (%s): %s%s",
            len(uris),
            reason,
            ", ".join(uris[:3]),
            more,
        )
