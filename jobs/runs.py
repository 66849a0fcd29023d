"""A durable record of every refresh attempt, failed ones included: ``runs/<newest first>-<run id>.json`` in the
model store.

A RayJob's cluster, logs and status go when its TTL deletes it, and a failed nightly run would be forgotten;
the store keeps one small JSON file per attempt, written when the attempt ends however it ends (``finally``):

    {"run": "refresh-20261201T020000Z", "outcome": "failed", "exit_status": 75, "exit_class": "retryable",
     "error": "tokenizing s3://…/part-7.parquet: its node died. …", "started": "2026-12-01T02:00:04.512Z",
     "seconds": 311.2, "version": null, "parent": "20261130T020011Z-1a2b3c", "partitions": 0, ...}

The run id is the Ray job's submission id when the refresh runs as a submitted job (``infra/submit.sh`` and
KubeRay give each a stable one), else a fresh ``local-…`` id. An attempt's key starts with its start time
counted down from the year 2286 in milliseconds (:func:`record_key`), so a second attempt under the same
submission id gets a record of its own, and the keys list newest first: ``python -m jobs.versions runs --last N``
lists N keys and reads N records however long the history (on S3, one request), and retention
(``jobs.versions gc --keep-runs N``, :func:`prune`) deletes everything after the first N keys. It is not the
refresh's: a run's driver may write records but not delete them (``infra/aws/iam-head.json``), so a failure's
record cannot be erased by the runs that follow it. Records written before this scheme (``runs/<run id>.json``)
sort after every newer one, as the oldest. Writing a record is best effort: a store that cannot be written
(the outage that failed the run, say) costs the record, never the run's own outcome or error.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.errors import (
    EXIT_REFUSED,
    EXIT_RETRYABLE,
    EXIT_STOPPED,
    EXIT_USAGE,
    ConfigError,
    RefreshError,
    StoppedError,
    StoreError,
    exit_status,
)

if TYPE_CHECKING:
    from jobs.ingest import IngestResult
    from jobs.lineage.rejections import Rejection
    from jobs.training.trainer import Candidate

log = logging.getLogger(__name__)

FOLDER = "runs"
_LAST_MS = 10**13 - 1  # 2286-11-20 in milliseconds since 1970: keys count down from here, 13 digits wide
RECORD_LIMIT = 1 << 20  # a record is a few KiB (its error is cut at 4,000 characters); a larger one is refused
EXIT_CLASSES = {
    0: "ok",
    EXIT_USAGE: "usage",
    EXIT_REFUSED: "refused",
    EXIT_RETRYABLE: "retryable",
    EXIT_STOPPED: "stopped",
    1: "unexpected",
}


def run_id() -> str:
    """The submission id of the Ray job this driver runs as, else a fresh local id."""
    with_job = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray's job supervisor for its driver
    if with_job:
        try:
            submission = json.loads(with_job)["metadata"]["job_submission_id"]
            if isinstance(submission, str) and submission.replace("-", "").replace("_", "").isalnum():
                return submission
        except (ValueError, KeyError, TypeError):
            pass
    return "local-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def record_key(run: str, started: float) -> str:
    """``runs/<milliseconds before 2286>-<run>.json`` for an attempt of ``run`` started at ``started`` (epoch
    seconds): the later the start, the smaller the number, so a plain listing comes newest first."""
    return f"{FOLDER}/{_LAST_MS - int(started * 1000):013d}-{run}.json"


def _utc(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds, so records sort by time even when runs start within a second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


@dataclass
class RunRecord:
    """What one run did, filled in as it goes."""

    run: str
    input: str
    started: str
    outcome: str = "running"
    exit_status: int | None = None
    exit_class: str | None = None
    error: str | None = None
    version: str | None = None
    parent: str | None = None
    published: bool = False
    partitions: int = 0
    rejected: int = 0
    waiting: int = 0  # partitions left for a later run: still being written
    gate_passed: bool | None = None  # None: no candidate was evaluated
    tokens: int = 0
    vocab_size: int = 0
    seconds: float = 0.0
    finished: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the run worked around (a tokenizing fallback)
    rejected_partitions: list[Rejection] = field(default_factory=list)  # found bad (jobs.lineage.rejections)
    _clock: float = field(default=0.0, repr=False)
    _key: str = field(default="", repr=False)

    @classmethod
    def begin(cls, input_uri: str, run: str | None = None, now: float | None = None) -> RunRecord:
        """A record for an attempt starting ``now`` (default: now) of ``run`` (default: :func:`run_id`)."""
        now = time.time() if now is None else now
        run = run or run_id()
        return cls(run=run, input=input_uri, started=_utc(now), _clock=time.perf_counter(), _key=record_key(run, now))

    def __post_init__(self) -> None:
        self._key = self._key or record_key(self.run, time.time())

    @property
    def key(self) -> str:
        """Where this attempt's record is stored."""
        return self._key

    def end(self, outcome: str, status: int, error: BaseException | None = None) -> None:
        self.outcome, self.exit_status = outcome, status
        self.exit_class = EXIT_CLASSES.get(status, "unexpected")
        if error is not None:
            # The project's messages name what failed and hold no secret; anything else is a bug, named by type.
            text = str(error) if isinstance(error, RefreshError) else f"{type(error).__name__}: {error}"
            self.error = text[:4000]
        self.seconds = round(time.perf_counter() - self._clock, 3)
        self.finished = _utc(time.time())

    def ingested(self, ingest: IngestResult) -> None:
        self.partitions, self.rejected, self.tokens = len(ingest.consumed), len(ingest.rejected), ingest.tokens
        self.timings["tokenize"] = round(ingest.seconds, 3)
        if ingest.fallback:
            self.warnings.append(ingest.fallback)

    def trained(self, candidate: Candidate) -> None:
        self.vocab_size = candidate.vocab_size
        self.gate_passed = bool(candidate.evaluation["passed"])
        self.timings.update({k: round(v, 3) for k, v in candidate.timings.items()})

    def failed(self, error: BaseException) -> None:
        status = exit_status(error) if isinstance(error, RefreshError) else 1
        self.end("stopped" if isinstance(error, StoppedError) else "failed", status, error)

    def as_json(self) -> bytes:
        record = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def write(store: Any, record: RunRecord) -> None:
    """Store ``record`` under :attr:`RunRecord.key`; a failure to do so is logged, never raised."""
    try:
        store.put_bytes(record.key, record.as_json())
    except (StoreError, OSError) as exc:
        log.warning("could not write the run record %s: %s", record.key, exc)


def prune(store: Any, keep: int) -> list[str]:
    """Delete every run record but the ``keep`` newest; the deleted keys, oldest last. Lists the keys (1,000 a
    request on S3) and reads none."""
    if keep < 1:
        raise ConfigError(f"--keep-runs must be at least 1, got {keep}")
    doomed = [key for key in store.list_keys(FOLDER) if key.endswith(".json")][keep:]
    if doomed:
        store.delete_keys(doomed)
    return doomed


def recent(store: Any, last: int) -> list[dict[str, Any]]:
    """The ``last`` run records, newest first: ``last`` keys listed and ``last`` records read, however many the
    store holds."""
    if last < 1:
        raise ConfigError(f"--last must be at least 1, got {last}")
    records = []
    for key in store.list_keys(FOLDER, limit=last):
        if key.endswith(".json"):
            try:
                records.append(json.loads(store.get_bytes(key, limit=RECORD_LIMIT)))
            except (StoreError, ValueError) as exc:
                log.warning("skipping unreadable run record %s: %s", key, exc)
    return records


def table(records: list[dict[str, Any]]) -> str:
    """The records as a table for ``jobs.versions runs``."""
    if not records:
        return "no runs recorded"
    rows = [f"{'started':<25}{'run':<34}{'outcome':<12}{'exit':>5} {'version':<26}{'parts':>7}{'seconds':>9}  error"]
    for r in records:
        error = (r.get("error") or "").splitlines()[0][:80] if r.get("error") else ""
        rows.append(
            f"{r.get('started', ''):<25}{r.get('run', ''):<34}{r.get('outcome', ''):<12}"
            f"{r.get('exit_status') if r.get('exit_status') is not None else '-':>5} {r.get('version') or '-':<26}"
            f"{r.get('partitions', 0):>7}{r.get('seconds', 0):>9.1f}  {error}"
        )
    return "\n".join(rows)
