"""Ray at the edges: connecting, placing the training actor, and streaming partitions through it.

All Ray decorators and ``.options(...)`` calls live here. The flow, for N partitions:

    driver ──submit (≤ max_in_flight)──▶ tokenize task per partition (1 CPU each, retried if a worker dies)
       │                                        │ result stays in the object store
       └── trainer.ingest.remote(ref) ◀─────────┘ (the driver passes references, never the data)

The driver never pulls tokenized data into its own process; it hands each task's object reference to the
training actor, whose calls run in submission order, so the spooled corpus is in partition order. A task that
fails because its worker died is retried by Ray; a task that fails because the partition is bad fails once,
with a :class:`~jobs.errors.PartitionError` naming it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

from jobs.config import RefreshConfig
from jobs.errors import PartitionError, RefreshError, TrainingError
from jobs.trainer import Trainer
from shards.partitions import Partition
from shards.tokenized import tokenize_partition

log = logging.getLogger(__name__)

TOKENIZE_RETRIES = 3


@contextmanager
def connected(address: str | None) -> Iterator[None]:
    """Join ``address`` (or ``$RAY_ADDRESS``), else start a local Ray in this process for the duration."""
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=True,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def trainer_actor(config: RefreshConfig) -> Iterator[Any]:
    """The training actor for one run; its spool is removed and the actor stopped however the run ends."""
    trainer = start_trainer(config)
    try:
        yield trainer
    finally:
        with contextlib.suppress(Exception):  # a dead actor has nothing left to clean
            ray.get(trainer.close.remote(), timeout=60)
        ray.kill(trainer)


def result(ref: Any) -> Any:
    """``ray.get`` that re-raises the project's own error raised remotely (not Ray's wrapper around it), and
    turns the training actor's death into a TrainingError."""
    try:
        return ray.get(ref)
    except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
        raise TrainingError(f"the training actor died (its node may have been lost): {_first_line(exc)}") from None
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, RefreshError):
            raise cause from None
        raise TrainingError(f"a remote task failed: {type(cause).__name__}: {_first_line(cause)}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def start_trainer(config: RefreshConfig) -> Any:
    """Start the training actor on the node offering ``config.trainer_resource``, else on any node.

    The actor reserves the CPUs it trains with, but never all of a cluster's CPUs: on a small machine the
    tokenizing tasks it waits for must still find a CPU, or the run would deadlock.
    """
    resources = ray.cluster_resources()
    total_cpus = int(resources.get("CPU", 1))
    options: dict[str, Any] = {"max_restarts": 0, "max_concurrency": 1}
    if config.require_trainer_resource or resources.get(config.trainer_resource, 0) >= 1:
        # On an autoscaling cluster the trainer node may not exist yet: asking for the resource launches it.
        options["resources"] = {config.trainer_resource: 1}
        options["num_cpus"] = config.training.workers
    else:
        options["num_cpus"] = max(0, min(config.training.workers, total_cpus - 1))
    log.info("training actor: %s", ", ".join(f"{k}={v}" for k, v in options.items()))
    return ray.remote(Trainer).options(**options).remote(config.spool_dir)


@dataclass
class IngestResult:
    """What streaming the partitions through the trainer produced."""

    consumed: list[Partition] = field(default_factory=list)
    rejected: list[PartitionError] = field(default_factory=list)
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    seconds: float = 0.0


def in_flight_limit(config: RefreshConfig) -> int:
    """Partitions tokenized at once: --max-in-flight, else two per CPU the cluster has now (at least 4, so an
    autoscaler that starts from no workers sees enough pending work to add several)."""
    return config.max_in_flight or max(4, 2 * int(ray.cluster_resources().get("CPU", 0)))


def stream(
    config: RefreshConfig,
    fs: pafs.FileSystem,
    partitions: list[Partition],
    trainer: Any,
) -> IngestResult:
    """Tokenize every partition on Ray workers and feed each result to ``trainer``, bounded in flight.

    Raises TrainingError if the actor dies. Bad partitions are collected in the result, not raised.
    """
    task = ray.remote(tokenize_partition).options(num_cpus=1, max_retries=TOKENIZE_RETRIES, retry_exceptions=False)
    limit, sized_at = in_flight_limit(config), time.monotonic()
    outcome = IngestResult()
    start = last_log = time.perf_counter()
    fs_ref = ray.put(fs)
    pending: deque[tuple[Partition, Any]] = deque()
    queue = iter(partitions)

    def drain_one() -> None:
        partition, ingest_ref = pending.popleft()
        try:
            documents, sentences, tokens = result(ingest_ref)
        except PartitionError as exc:
            log.warning("bad partition %s", exc)
            outcome.rejected.append(exc)
            return
        nonlocal last_log
        outcome.consumed.append(partition)
        outcome.documents += documents
        outcome.sentences += sentences
        outcome.tokens += tokens
        done = len(outcome.consumed) + len(outcome.rejected)
        if time.perf_counter() - last_log > 5 or done == len(partitions):
            last_log = time.perf_counter()
            rate = outcome.tokens / max(last_log - start, 1e-9)
            log.info(
                "tokenized %d/%d partitions, %s tokens (%s tokens/s)",
                done,
                len(partitions),
                f"{outcome.tokens:,}",
                f"{rate:,.0f}",
            )

    for partition in queue:
        token_ref = task.remote(fs_ref, partition, config.read, config.tokenizer)
        pending.append((partition, trainer.ingest.remote(token_ref)))
        if time.monotonic() - sized_at > 1:  # an autoscaling cluster grows while the run goes on
            limit, sized_at = in_flight_limit(config), time.monotonic()
        if len(pending) >= limit:
            drain_one()
    while pending:
        drain_one()
    outcome.seconds = time.perf_counter() - start
    return outcome
