"""What a refresh exports to Prometheus, through Ray's metrics (``ray.util.metrics``).

Ray's metrics agent on each node serves every process's metrics at ``http://<node>:<metrics-export-port>/
metrics`` with a ``ray_`` prefix, the port Ray's Prometheus service discovery (or a KubeRay PodMonitor)
already scrapes. The driver records, per run and tagged with the store:

    ray_embedding_refresh_partitions_total{outcome="consumed"|"rejected"}   partitions done and rejected
    ray_embedding_refresh_bytes_total{outcome=...}                         their input bytes
    ray_embedding_refresh_tokens_total                                     tokens streamed to the trainer
    ray_embedding_refresh_stage_seconds{stage="tokenize"|"load"|...}       the last run's time per stage
    ray_embedding_refresh_training_words_per_second                        effective words trained per second
    ray_embedding_refresh_vocab_size                                       the candidate's vocabulary
    ray_embedding_refresh_gate_passed                                      1 when the gate passed, else 0
    ray_embedding_refresh_gate_check{check=...}                            each gate check's measured value
    ray_embedding_refresh_last_publish_timestamp_seconds                   when the pointer last moved
    ray_embedding_refresh_rejected_partitions                              partitions the lineage holds as bad
    ray_embedding_refresh_runs_total{outcome="published"|"nothing new"|"failed", exit=...}
    ray_embedding_refresh_table_rows_total{kind="deleted"|"rewritten"|"untrained"|"gap"}  a table's consumed rows
                                                                           that commits deleted or rewrote, rows
                                                                           not trained, rows of a skipped gap
    ray_embedding_refresh_table_version{table=...}                         the table version the model consumed

Ray exports a process's values every ``metrics_report_interval_ms`` (10 s) and drops a gauge about 20 s after
its process ends, so a job's last values are seen by a scrape taken while it ran or just after. Alert on the
store exporter's ``embedding_refresh_*`` instead (:mod:`jobs.exporter`: freshness and the last run's outcome,
read from the store, so they outlive the run), and read the run records (``jobs.versions runs``) for what each
run did.
"""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING, Any

import ray
from ray.util import metrics

if TYPE_CHECKING:
    from jobs.ingest import IngestResult
    from jobs.training.trainer import Candidate

PREFIX = "embedding_refresh_"


@cache
def _counter(name: str, description: str, *tags: str) -> metrics.Counter:
    return metrics.Counter(PREFIX + name, description=description, tag_keys=("store", *tags))


@cache
def _gauge(name: str, description: str, *tags: str) -> metrics.Gauge:
    return metrics.Gauge(PREFIX + name, description=description, tag_keys=("store", *tags))


def ingested(store: str, ingest: IngestResult) -> None:
    """Partitions, bytes and tokens the run consumed and rejected."""
    if not ray.is_initialized():  # nowhere to export to
        return
    partitions = _counter("partitions", "partitions tokenized and streamed to the trainer, or rejected", "outcome")
    sizes = _counter("bytes", "input bytes of those partitions", "outcome")
    for outcome, count, size in (
        ("consumed", len(ingest.consumed), sum(p.size for p in ingest.consumed)),
        ("rejected", len(ingest.rejected), ingest.rejected_bytes),
    ):
        if count:
            partitions.inc(count, tags={"store": store, "outcome": outcome})
        if size:
            sizes.inc(size, tags={"store": store, "outcome": outcome})
    if ingest.tokens:
        _counter("tokens", "tokens streamed to the trainer").inc(ingest.tokens, tags={"store": store})
    _gauge("stage_seconds", "seconds the last run spent per stage", "stage").set(
        ingest.seconds, tags={"store": store, "stage": "tokenize"}
    )


def trained(store: str, candidate: Candidate, words_trained: int) -> None:
    """Stage timings, training speed, vocabulary size and the quality gate's results of a candidate."""
    if not ray.is_initialized():  # nowhere to export to
        return
    stages = _gauge("stage_seconds", "seconds the last run spent per stage", "stage")
    for stage, seconds in candidate.timings.items():
        stages.set(seconds, tags={"store": store, "stage": stage})
    train = candidate.timings.get("train", 0.0)
    if train > 0:
        _gauge("training_words_per_second", "effective words trained per second (all epochs)").set(
            words_trained / train, tags={"store": store}
        )
    _gauge("vocab_size", "words in the candidate's vocabulary").set(candidate.vocab_size, tags={"store": store})
    gate: dict[str, Any] = candidate.evaluation
    _gauge("gate_passed", "1 when the last candidate passed the quality gate").set(
        1.0 if gate["passed"] else 0.0, tags={"store": store}
    )
    checks = _gauge("gate_check", "the last quality-gate measurement per check", "check")
    for check in gate.get("checks", []):
        if isinstance(check.get("candidate"), int | float):
            checks.set(float(check["candidate"]), tags={"store": store, "check": str(check["name"])})


def table_changes(store: str, account: dict[str, Any]) -> None:
    """A published version's account of a table input (:meth:`shards.tables.Changes.report`): the rows the model
    could not follow (deleted, rewritten, not trained, lost to a gap) and the version it consumed."""
    if not ray.is_initialized() or not account:
        return
    rows = _counter("table_rows", "a table's rows a model cannot follow (deleted, rewritten, untrained, gap)", "kind")
    gap = int((account.get("gap") or {}).get("rows", 0))
    for kind, count in (
        ("deleted", account["deleted_rows"]),
        ("rewritten", account["rewritten_rows"]),
        ("untrained", account["untrained_rows"]),
        ("gap", gap),
    ):
        if count:
            rows.inc(count, tags={"store": store, "kind": kind})
    _gauge("table_version", "the table version (Delta) or snapshot sequence (Iceberg) consumed", "table").set(
        float(account["sequence"] if account.get("sequence") is not None else account["to"]),
        tags={"store": store, "table": str(account["table"])},
    )


def published(store: str) -> None:
    """The pointer moved now."""
    if not ray.is_initialized():  # nowhere to export to
        return
    _gauge("last_publish_timestamp_seconds", "Unix time the pointer last moved to a new version").set(
        time.time(), tags={"store": store}
    )


def finished(store: str, outcome: str, exit_status: int) -> None:
    """One run ended, with ``outcome`` and ``exit_status``."""
    if not ray.is_initialized():  # nowhere to export to
        return
    _counter("runs", "refresh runs by outcome and exit status", "outcome", "exit").inc(
        1, tags={"store": store, "outcome": outcome, "exit": str(exit_status)}
    )


def rejections(store: str, count: int) -> None:
    """How many partitions the lineage holds as bad (left alone until they change; see
    :mod:`jobs.lineage.rejections`)."""
    if not ray.is_initialized():  # nowhere to export to
        return
    _gauge("rejected_partitions", "partitions the lineage found bad and leaves alone until they change").set(
        float(count), tags={"store": store}
    )
