"""Refresh a word-embedding model from new partitions and publish it as a new version.

    python -m jobs.refresh --input data/sample --store models            # local Ray, local folders
    python -m jobs.refresh --input s3://corpus/events --store s3://models/w2v --workers 16 --json

The runbook, in order (each step is one small module):

1. resolve the config (:mod:`jobs.config`) and open the store (:mod:`jobs.storage`); read the pointer once;
   complete the config from what defines the lineage (:mod:`jobs.lineage.settings`: tokenizer, architecture,
   vocabulary upkeep), refusing a flag that would change it without ``--allow-setting-change``;
2. discover partitions (:mod:`jobs.plan`) and keep those the lineage has not consumed (:mod:`jobs.lineage.ledger`)
   nor found bad as they are (:mod:`jobs.lineage.rejections`); ``--dry-run`` stops here and says what a run
   would do, having started no Ray and written nothing;
3. name the parent in the new version's first file, so that gc keeps it while the run lasts
   (:mod:`jobs.storage.lease`); tokenize the partitions in parallel on Ray workers and stream them to the
   training actor (:mod:`jobs.tokenize`, deciding by :mod:`jobs.scheduling`; the actor placed by
   :mod:`jobs.cluster`), which meanwhile fetches, loads and measures the parent (:mod:`jobs.training.parent`);
4. update the vocabulary, train, save and upload the version's files (:mod:`jobs.training.trainer`,
   :mod:`jobs.training.model`);
5. commit: report and manifest, then, if the quality gate passed (:mod:`jobs.training.gate`), one conditional
   write of the pointer (:mod:`jobs.storage.publish`);
6. report (:mod:`jobs.report`).

Exit status: 0 when a version was published or there was nothing new; otherwise a message naming what failed
and what to do, so ``ray job submit`` reports FAILED, and a status that tells a scheduler whether to retry
(:func:`jobs.errors.exit_status`): 3 when the data, the quality gate or the store's content said no, 75 when
the infrastructure failed and a rerun is safe, 2 for a usage error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs import changes, cluster, logs, metrics, plan, report, runs, tokenize
from jobs.config import GateConfig, RefreshConfig, from_args, to_dict
from jobs.errors import (
    BadPartitionsError,
    ConfigError,
    IntegrityError,
    QualityGateError,
    RefreshError,
    StoppedError,
    exit_status,
)
from jobs.ingest import IngestResult
from jobs.lineage import ledger, rejections, tables
from jobs.lineage import settings as lineage_settings
from jobs.storage import Store, lease, open_store, signed
from jobs.storage.base import Pointer
from jobs.storage.publish import Draft, Manifest, current, load_manifest, model_files, new_version
from jobs.training import gate
from jobs.training.parent import ParentRequest
from jobs.training.spool import Split, split_evenly
from jobs.training.trainer import Candidate, TrainRequest
from jobs.vectors import cache_root

log = logging.getLogger("jobs.refresh")


@dataclass(frozen=True)
class Hooks:
    """Seams for tests: gensim callbacks run inside training (e.g. one that raises mid-training), how the
    spool's batches are shared among the training threads (e.g. a split that misses a range), and the
    filesystem the input is read through (e.g. one whose reads of some files are slow), over local paths."""

    training_callbacks: tuple[Any, ...] = ()
    training_split: Split = split_evenly
    filesystem: Any = None  # a pyarrow FileSystem over the local --input folder, instead of the local one


def run(config: RefreshConfig, hooks: Hooks = Hooks()) -> report.Summary:
    """Run one refresh. Raises RefreshError (or a subclass) on failure. The pointer then never moved; the store
    is unchanged, except after a failed quality gate or a conflict, which leave the new version, complete and
    unpromoted, for inspection, the run's record (:mod:`jobs.runs`), written however the run ends, and the
    partitions it found bad (:mod:`jobs.lineage.rejections`). With ``--dry-run``: :func:`dry_run`."""
    if config.dry_run:
        return dry_run(config, hooks)
    # Connected once, for the whole run (a no-op when the caller is connected already), so that the run's last
    # metrics, recorded after the trainer is gone, still reach Ray's agent.
    with cluster.connected(config.ray_address, config.log_format):
        return _recorded(config, hooks)


def _recorded(config: RefreshConfig, hooks: Hooks) -> report.Summary:
    """The refresh, and its record (:mod:`jobs.runs`) written however it ends."""
    record = runs.RunRecord.begin(config.input)
    logs.run(record.run)
    logs.enter("store")
    store = open_store(config.store, signed.load(config.signing, cache_root()))
    try:
        summary = refresh(config, store, record, hooks)
    except KeyboardInterrupt:  # SIGTERM (or Ctrl-C) inside ray.get, which Ray turns into this
        stopped = StoppedError()
        record.failed(stopped)
        raise stopped from None
    except BaseException as exc:
        if cluster.STOPPING.is_set() and not isinstance(exc, RefreshError):
            # SIGTERM's StoppedError as a Ray call re-raised it (a SystemError): stopped, not a bug
            stopped = StoppedError()
            record.failed(stopped)
            raise stopped from exc
        record.failed(exc)
        raise
    else:
        record.end("published" if summary.published else "nothing new", 0)
    finally:
        if not record.published:  # the next run builds on the same parent: it must know what this one found bad
            rejections.record_pending(store, record.parent, record.rejected_partitions)
        runs.write(store, record)
        metrics.finished(store.uri, record.outcome, record.exit_status if record.exit_status is not None else 1)
    return summary


def dry_run(config: RefreshConfig, hooks: Hooks = Hooks()) -> report.Summary:
    """Steps 1 and 2 alone (``--dry-run``): the lineage's settings resolved (a flag that would be refused is
    refused here too), the input listed, the ledger, readiness and the lineage's rejections applied, and the
    rejections that can be told without reading the data predicted. Starts no Ray, connects to no trainer and
    writes nothing to the store (no version, no ledger, no run record). The summary's ``plan`` holds the
    classes (:func:`jobs.plan.preview`)."""
    started = time.perf_counter()
    logs.enter("store")
    store = open_store(config.store, signed.load(config.signing, cache_root()))
    read_eval_files(config.gate)  # a run would fail on a missing one: so does its dry run
    basis = begin(config, store, current(store))
    logs.enter("discover")
    found = plan.discover(basis.config, store, basis.version, basis.parent, hooks.filesystem, time.time())
    preview = {
        **plan.preview(found, basis.config),
        "parent": basis.version,
        "settings_changed": basis.settings.changed,
        "notes": list(basis.settings.notes),
    }
    return report.Summary(
        version=None,
        parent=basis.version,
        published=False,
        store=store.uri,
        seconds=time.perf_counter() - started,
        message=f"dry run: would consume {len(preview['consume'])} partition(s) under {config.input}",
        plan=preview,
    )


@dataclass(frozen=True)
class Basis:
    """What a run builds on: the pointer it read (the one the final conditional write must still find), the
    parent's manifest, and the config completed from the lineage (vocabulary upkeep, tokenizer, architecture)."""

    config: RefreshConfig
    pointer: Pointer | None
    parent: Manifest | None
    settings: lineage_settings.Resolved
    architecture: dict[str, Any]  # the parent's model's, as its lineage records it (empty: a new lineage)

    @property
    def version(self) -> str | None:
        return self.pointer.version if self.pointer else None


def begin(config: RefreshConfig, store: Store, pointer: Pointer | None) -> Basis:
    """Step 1 once the store is open and its ``pointer`` read: the parent's manifest, and this run's config with
    the lineage's settings. Raises ConfigError for a flag that would change the lineage without the user's
    word, PickledModelError for a parent in the pickled format, before any work."""
    parent_version = pointer.version if pointer else None
    with lease.reading(store, parent_version):  # a parent rolled away from and collected just now: retryable
        parent = load_manifest(store, pointer.version, pointer) if pointer else None
    if parent:
        model_files(parent)  # a parent in the pickled format is refused here, before any work
    log.info("store %s: current version %s", store.uri, pointer.version if pointer else "none (first model)")
    config = inherit_upkeep(config, parent)
    with lease.reading(store, parent_version):
        recorded = lineage_settings.recorded(store, parent) if parent else None
    resolved = lineage_settings.inherit(config, recorded)
    for note in resolved.notes:
        log.info("lineage settings: %s", note)
    for change in resolved.changed:
        log.warning(
            "lineage setting changed (--allow-setting-change): %s from %r to %r, recorded in the manifest",
            change["setting"],
            change["from"],
            change["to"],
        )
    architecture = dict(recorded.architecture or {}) if recorded else {}
    return Basis(resolved.config, pointer, parent, resolved, architecture)


def refresh(config: RefreshConfig, store: Store, record: runs.RunRecord, hooks: Hooks) -> report.Summary:
    """The runbook's steps, in order; ``record`` is filled in as they go."""
    started = time.perf_counter()

    # 1. Config and store. The pointer read here is the one the final conditional write must still find; an
    # update keeps what defines its lineage (tokenizer, architecture, vocabulary upkeep) unless the user says otherwise.
    store.probe()  # a store that ignores conditional writes is refused now, not after hours of training
    eval_files = read_eval_files(config.gate)
    pointer = current(store)  # with trusted keys: signed, and not older than one seen (jobs.storage.signed)
    record.parent = pointer.version if pointer else None
    basis = begin(config, store, pointer)
    config, parent, parent_version = basis.config, basis.parent, basis.version

    logs.enter("discover")
    # 2. Discover partitions and keep the ones this lineage has not consumed (jobs.plan: what waits, what was
    # rewritten, what the lineage found bad, what a table says is new).
    found = plan.discover(config, store, parent_version, parent, hooks.filesystem, time.time())
    record.waiting = len(found.waiting)
    plan.announce(found, config)
    if not found.todo:
        metrics.rejections(store.uri, len(found.known))
        return nothing_new(config, store, found, parent_version, time.perf_counter() - started)

    # 3. Tokenize on Ray workers, streaming into the training actor.
    logs.enter("tokenize")
    version = record.version = new_version()
    # first, parent.json: from now on gc keeps the parent for this run (jobs.storage.lease); a failure before the
    # manifest removes what was uploaded, once the actor is gone, so nothing uploads any more
    with Draft(store, version, parent=parent_version) as draft, cluster.trainer_actor(config, version) as trainer:
        if parent_version:  # the actor fetches, loads and measures the parent while the corpus streams in
            trainer.actor.prepare.remote(
                store,
                ParentRequest(
                    parent_version, config.gate, eval_files, config.parent_cache, config.parent_cache_versions
                ),
            )
        ingest, standing = ingested(config, store, found, trainer, record)

        # 4. Vocabulary, training, evaluation, save, upload (all on the trainer's node). Partitions that are
        # legal but hold no token (numbers only, empty documents) leave nothing to train: the lineage moves
        # past them with a version that reuses the parent's model files, so they do not fail every night.
        # a table's files are not the ledger's: its position (the manifest's ``tables``) says what was consumed
        consumed = ingest.consumed if found.table is None else []
        written = ledger.write(found.seen, consumed, version, found.input_root, config.ledger_compact_every)
        extra_files = {
            written.name: written.data,
            "config.json": json.dumps(to_dict(config), indent=2, sort_keys=True).encode(),
        }
        logs.enter("train")
        if ingest.tokens == 0 and parent is not None:
            candidate = carry_forward(draft, parent, extra_files, basis.architecture)
        else:
            request = train_request(config, basis, version, ingest, eval_files, extra_files, hooks)
            trainer.actor.ready_to_train.remote()  # before finish's request, which may hold gensim's classes
            candidate = cluster.result(trainer.actor.finish.remote(store, request), f"training {version}", actor=True)
        draft.add(candidate.files)  # uploaded on the trainer's node
    record.trained(candidate)
    metrics.trained(store.uri, candidate, ingest.tokens * config.training.epochs)

    logs.enter("publish")
    # 5. Commit: report, manifest, then the pointer (conditional on what step 1 read) if the gate passed.
    elapsed = time.perf_counter() - started  # what is left (a few small writes) takes milliseconds
    details = report.details(config, ingest, candidate, parent, elapsed)
    details["table"] = found.table.report() if found.table else {}
    put_report(draft, details)
    fields = report.manifest_fields(config, ingest, candidate, parent, elapsed)
    positions = tables.manifest_section(parent, found.table, version)
    commit(config, draft, basis, candidate, {**fields, "ledger": written.section, **positions}, standing)
    record.published = True
    metrics.published(store.uri)

    logs.enter("report")
    # 6. Report.
    summary = report.summary(store.uri, ingest, candidate, parent, found.rewritten, time.perf_counter() - started)
    summary.waiting = report.waiting(found.waiting)
    summary.rejected_before = report.skipped(found.skipped)
    summary.table = found.table.report() if found.table else {}
    metrics.table_changes(store.uri, summary.table)
    log.info("refresh report:\n%s", report.markdown(details))
    return summary


def nothing_new(
    config: RefreshConfig, store: Store, found: plan.Discovery, parent_version: str | None, seconds: float
) -> report.Summary:
    """Step 2's end when nothing is left to train: what was found, and why none of it is for this run."""
    table = found.table
    return report.Summary(
        version=None,
        parent=parent_version,
        published=False,
        store=store.uri,
        seconds=seconds,
        outside_training=seconds,
        rewritten=[p.uri for p in found.rewritten],
        waiting=report.waiting(found.waiting),
        rejected_before=report.skipped(found.skipped),
        table=table.report() if table else {},
        message=tables.nothing_new(table)
        if table
        else f"no new partitions under {config.input} ({len(found.found)} found: {found.already} consumed, "
        f"{len(found.waiting)} still being written, {len(found.skipped)} rejected earlier)",
    )


def ingested(
    config: RefreshConfig, store: Store, found: plan.Discovery, trainer: cluster.TrainerHandle, record: runs.RunRecord
) -> tuple[IngestResult, list[rejections.Rejection]]:
    """Step 3: the partitions to train on tokenized into the trainer, and the lineage's rejections after it.
    What it finds bad is recorded in the manifest, or, if none is published, for the next run (run()); a bad
    partition fails the run unless --skip-bad-partitions (and something else was consumed)."""
    ingest = tokenize.stream(config, found.fs, found.todo, trainer)
    record.ingested(ingest)
    metrics.ingested(store.uri, ingest)
    bad = record.rejected_partitions = rejections.found(
        ingest.rejected, found.todo, rejections.reading(config), record.run
    )
    standing = rejections.after(found.known, bad, ingest.consumed, found.listed)
    metrics.rejections(store.uri, len(standing))
    if ingest.rejected and (not config.skip_bad_partitions or not ingest.consumed):
        raise BadPartitionsError(ingest.rejected)
    return ingest, standing


def train_request(
    config: RefreshConfig,
    basis: Basis,
    version: str,
    ingest: IngestResult,
    eval_files: dict[str, bytes],
    extra_files: dict[str, bytes],
    hooks: Hooks,
) -> TrainRequest:
    """Step 4's request to the training actor: the settings, the files the version carries, the event gensim
    records, and the seams tests use."""
    changed = basis.settings.changed
    return TrainRequest(
        version=version,
        parent=basis.version,
        training=config.training,
        gate=config.gate,
        upkeep=config.lifecycle,
        eval_files=eval_files,
        extra_files=extra_files,
        event={
            "partitions": len(ingest.consumed),
            "tokens": ingest.tokens,
            **({"settings_changed": changed} if changed else {}),
        },
        callbacks=hooks.training_callbacks,
        parent_cache=config.parent_cache,
        parent_cache_versions=config.parent_cache_versions,
        split=hooks.training_split,
        adjust=basis.settings.adjust,
    )


def commit(
    config: RefreshConfig,
    draft: Draft,
    basis: Basis,
    candidate: Candidate,
    fields: dict[str, Any],
    standing: list[rejections.Rejection],
) -> None:
    """Step 5: the manifest (``fields``: the run's, its ledger and table positions), then the pointer
    (conditional on what step 1 read) if the gate passed or --force. The manifest records what defines the
    lineage (from the trained model) and the partitions the lineage found bad. A failed gate leaves the version
    complete but not promoted."""
    version, parent_version = draft.version, basis.version
    carried = {"carried_from": parent_version} if candidate.carried else {}
    lineage = {
        lineage_settings.SECTION: lineage_settings.section(config, candidate.architecture, basis.settings.changed),
        rejections.SECTION: rejections.section(standing),
    }
    gate = candidate.evaluation
    passed = gate["passed"] or config.gate.force
    draft.commit({**fields, **carried, **lineage}, basis.pointer, passed)
    if not passed:
        raise QualityGateError(
            f"version {version} failed the quality gate ({'; '.join(gate['reasons'])}); it was uploaded but "
            f"NOT promoted; the current version stays {parent_version or 'none'}. "
            f"Inspect it with `python -m jobs.versions show {version}`; promote it or rerun with --force."
        )


def carry_forward(
    draft: Draft, parent: Manifest, extra_files: dict[str, bytes], architecture: dict[str, Any]
) -> Candidate:
    """A version with the parent's model (every file its manifest lists, copied inside the store, whatever the
    model format) and this run's own files (the extended ledger, the config): nothing to train, no gate. Its
    files are the draft's."""
    started = time.perf_counter()
    version = draft.version
    # a delta's parent may hold a full ledger; its diff is against its own parent
    own = {*extra_files, *ledger.NAMES, "report.json", "report.md", changes.DIFF}
    with lease.reading(draft.store, parent.version):
        draft.copy(parent, [name for name in parent.files if name not in own])
    size = architecture["vector_size"] if architecture else parent.vector_size  # the model's, not old flags
    if size is None:
        raise IntegrityError(f"the manifest of {parent.version} records no vector size; cannot carry its model forward")
    diff, about = changes.encoded(
        changes.empty(int(size)), {"from": parent.version, "to": version, "threshold": changes.DEFAULT_THRESHOLD}
    )
    extra_files = {**extra_files, changes.DIFF: diff}  # nothing moved: an indexer still finds the file
    for name, data in extra_files.items():
        draft.put(name, data)
    log.info("no tokens in the new partitions: %s reuses the model files of %s", version, parent.version)
    vocab = parent.vocab_size
    return Candidate(
        version=version,
        files=dict(draft.files),
        model_kind=parent.model or "",
        vocab_before=vocab,
        vocab_size=vocab,
        new_words=[],
        neighbours={},
        evaluation=gate.carried(parent),  # nothing to judge; the lineage's gate history goes on
        spooled_bytes=0,
        learning_rate=dict(parent.learning_rate),
        timings={"copy": time.perf_counter() - started},
        diff=about,
        carried=True,
        architecture=architecture,
    )


def inherit_upkeep(config: RefreshConfig, parent: Manifest | None) -> RefreshConfig:
    """The cap, decay and freeze the parent's manifest recorded, unless this run's flags change them (logged)."""
    upkeep, changes = config.lifecycle.inherit(dict(parent.lifecycle) if parent else None)
    for change in changes:
        log.warning("lifecycle setting changed: %s", change)
    return dataclasses.replace(config, lifecycle=upkeep)


def read_eval_files(gate: GateConfig) -> dict[str, bytes]:
    """The user's evaluation files, read once by the driver and shipped to the trainer's node."""
    files = {}
    for name in (*gate.similarity_files, *gate.analogy_files):
        try:
            files[name] = Path(name).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read evaluation file {name}: {exc.strerror}") from None
    return files


def put_report(draft: Draft, details: dict[str, Any]) -> None:
    """Store the refresh report (Markdown and JSON) in the version."""
    draft.put("report.json", report.as_json(details).encode())
    draft.put("report.md", report.markdown(details).encode())


def main(argv: list[str] | None = None) -> int:
    logs.configure("text")
    config: RefreshConfig | None = None
    try:
        config = from_args(argv)
        logs.configure(config.log_format)
        signal.signal(signal.SIGTERM, _stop)  # kept through ray.init (cluster.connected)
        summary = run(config)
    except RefreshError as exc:
        log.error("refresh failed: %s", exc)
        return exit_status(exc)
    except Exception:
        if config is None or config.log_format != "json":
            raise  # a bug: Python's own traceback
        log.critical("refresh failed with an unexpected error (a bug)", exc_info=True)  # the traceback in a field
        return 1
    print(report.human(summary))
    if config.json:
        print(report.json_line(summary))
    return 0


def _stop(signum: int, frame: object) -> None:
    """SIGTERM (``ray job stop``, a pod's eviction): unwind, so every ``finally`` cleans up what the run
    started. ``ray job stop`` sends SIGKILL a few seconds later (``RAY_JOB_STOP_WAIT_TIME_S``, 3 by default;
    the configs in infra/ allow 60)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    cluster.STOPPING.set()  # for a wait inside Ray, where the exception below arrives as a SystemError
    raise StoppedError()


if __name__ == "__main__":
    sys.exit(main())
