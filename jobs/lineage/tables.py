"""Where a lineage stands in each table it reads: one number per table, carried from version to version.

A lineage reading files keeps a ledger of them (:mod:`jobs.lineage.ledger`); reading a Delta Lake or Iceberg
table, it keeps the version (snapshot) it consumed, keyed by the table's own id (Delta's ``metaData.id``,
Iceberg's ``table-uuid``), so the position survives the table being moved or renamed. The positions live in
every version's manifest (``tables``), next to the version's account of the table's commits
(``table_changes``), so the pointer's one conditional write publishes the model and advances the position
together: a failed run advances nothing, and of two refreshes racing on one store only the one whose pointer
write wins has consumed the commits.

    consumed = positions(parent_manifest)                     # {table id: Position}
    changes = discover(config, consumed, ledger_rows=seen.rows, parent_version="2026…")
    manifest |= manifest_section(parent_manifest, changes)   # the positions, advanced, and the account
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from jobs.config import RefreshConfig
from jobs.errors import ConfigError, IntegrityError
from shards.tables import Changes, Options, Position, is_table, read_changes

log = logging.getLogger(__name__)

POSITIONS = "tables"
ACCOUNT = "table_changes"


def reads_table(config: RefreshConfig) -> bool:
    """Whether this run's ``--input`` is a table rather than a folder of partitions."""
    return is_table(config.input, config.input_format)


def positions(manifest: Mapping[str, Any] | None) -> dict[str, Position]:
    """The positions a version recorded, by table id (none for no version). Raises IntegrityError for a
    malformed section."""
    recorded = (manifest or {}).get(POSITIONS) or {}
    try:
        return {str(table_id): Position.from_dict(entry) for table_id, entry in recorded.items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise IntegrityError(
            f"version {(manifest or {}).get('version')} records malformed table positions ({POSITIONS!r})"
        ) from None


def discover(
    config: RefreshConfig, consumed: dict[str, Position], ledger_rows: int, parent_version: str | None
) -> Changes:
    """The table's rows the lineage has not consumed. A lineage that consumed other input (files, other tables)
    and has no position in this table refuses it unless ``--allow-new-input``, as a wrong ``--input`` of files
    is refused (:func:`jobs.lineage.ledger.ensure_related`). Raises ConfigError and TableError."""
    options = Options(max_commits=config.max_partitions, where=config.where, resume_expired=config.resume_expired_table)
    changes = read_changes(config.input, consumed, options, config.input_format)
    if changes.start is None and (consumed or ledger_rows) and not config.allow_new_input:
        raise ConfigError(
            f"the lineage of version {parent_version} has consumed {len(consumed)} table(s) and {ledger_rows:,} "
            f"partition file(s), but never the {changes.format} table {config.input} (id {changes.table_id}); "
            "check --input. If this really is a new source, rerun with --allow-new-input: every row it holds now "
            "will be trained"
        )
    account = changes.report()
    log.info(
        "%s table %s: version %s to %s, %d commit(s) (%d changing data, %d rewrites), %d file(s) of new rows "
        "(%d read as appended before a compaction, %d left out by --where); consumed rows deleted %d, rewritten "
        "%d, rows not trained %d",
        changes.format,
        changes.uri,
        account["from"],
        account["to"],
        account["commits"],
        account["data_commits"],
        account["rewrites"],
        account["files"],
        account["read_from_originals"],
        account["filtered_files"],
        account["deleted_rows"],
        account["rewritten_rows"],
        account["untrained_rows"],
    )
    if changes.window.deleted or changes.window.rewritten or changes.window.untrained:
        log.warning(
            "%s table %s: commits after the consumed version deleted %d and rewrote %d of the rows already trained, "
            "and wrote %d rows that cannot be told apart from them; a model cannot untrain rows: see the report",
            changes.format,
            changes.uri,
            changes.window.deleted,
            changes.window.rewritten,
            changes.window.untrained,
        )
    if changes.gap:
        log.warning(
            "%s table %s: history the lineage needed was gone; skipped %s", changes.format, changes.uri, changes.gap
        )
    return changes


def manifest_section(
    parent: Mapping[str, Any] | None, changes: Changes | None, version: str | None = None
) -> dict[str, Any]:
    """The manifest's ``tables`` (the parent's positions, this run's table advanced to where it consumed) and
    ``table_changes`` (this run's account of the table's commits); the parent's positions unchanged when this
    run read files."""
    recorded = dict((parent or {}).get(POSITIONS) or {})
    if changes is None:
        return {POSITIONS: recorded} if recorded else {}
    recorded[changes.table_id] = {**changes.end.as_dict(), "table": changes.uri, "consumed_in": version}
    return {POSITIONS: recorded, ACCOUNT: changes.report()}


def nothing_new(changes: Changes) -> str:
    """The summary's message for a run that found no new rows in the table."""
    window = changes.window
    at = f"version {changes.end.version}" if changes.format == "delta" else f"snapshot {changes.end.version}"
    return (
        f"no new rows in the {changes.format} table {changes.uri} at {at} ({window.commits} commit(s) since the "
        f"consumed one: {window.data_commits} changing data, {window.rewrites} rewrites; consumed rows deleted "
        f"{window.deleted}, rewritten {window.rewritten}; {changes.filtered} new file(s) left out by --where)"
    )
