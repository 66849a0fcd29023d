"""Ray at the edges: connecting, placing the training actor, and streaming partitions through it.

All Ray decorators and ``.options(...)`` calls live here. The flow, for N partitions:

    driver ──submit (≤ max_in_flight)──▶ tokenize task per partition (1 CPU each, retried if a worker dies)
       │                                        │ result stays in the object store
       └── trainer.ingest.remote(ref) ◀─────────┘ (the driver passes references, never the data)

The driver never pulls tokenized data into its own process; it hands each task's object reference to the
training actor, whose calls run in submission order, so the spooled corpus is in partition order. The actor's
CPUs are reserved as a placement-group bundle that it occupies with 0 CPUs: until training starts, a share of
the tokenize tasks runs there, and gensim's threads get those CPUs to themselves afterwards. A task that
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
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import (
    PlacementGroup,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from jobs.config import RefreshConfig
from jobs.errors import PartitionError, PartitionReadError, RefreshError, TrainingError
from jobs.training.trainer import Trainer
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


@dataclass(frozen=True)
class TrainerHandle:
    """The training actor and the CPUs reserved for it: a placement-group bundle it occupies with 0 CPUs, so
    tokenizing tasks can use those CPUs while the actor waits for them, and gensim's threads get them after."""

    actor: Any
    placement: PlacementGroup | None
    cpus: int

    def bundle(self) -> PlacementGroupSchedulingStrategy | None:
        if self.placement is None:
            return None
        return PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=0)


@contextmanager
def trainer_actor(config: RefreshConfig) -> Iterator[TrainerHandle]:
    """The training actor for one run; its spool is removed, the actor stopped and its CPUs released however
    the run ends."""
    trainer = start_trainer(config)
    try:
        yield trainer
    finally:
        placed = trainer.placement is None or placement_group_table(trainer.placement).get("state") == "CREATED"
        with contextlib.suppress(Exception):  # a dead (or never placed) actor has nothing left to clean
            if placed:
                ray.get(trainer.actor.close.remote(), timeout=60)
        ray.kill(trainer.actor)
        if trainer.placement is not None:
            remove_placement_group(trainer.placement)


def result(ref: Any, timeout: float | None = None) -> Any:
    """``ray.get`` that re-raises the project's own error raised remotely (not Ray's wrapper around it), and
    turns the training actor's death into a TrainingError."""
    try:
        return ray.get(ref, timeout=timeout)
    except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
        raise TrainingError(f"the training actor died (its node may have been lost): {_first_line(exc)}") from None
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, RefreshError):
            raise cause from None
        raise TrainingError(f"a remote task failed: {type(cause).__name__}: {_first_line(cause)}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def node_cpus() -> int:
    """The CPUs Ray counts on the node this process runs on (the default number of training threads)."""
    node = ray.get_runtime_context().get_node_id()
    found = [n for n in ray.nodes() if n["NodeID"] == node]
    return max(1, int(found[0]["Resources"].get("CPU", 0)) if found else os.cpu_count() or 1)


def _largest_node_cpus(resource: str | None) -> int:
    """The CPUs of the largest live node (offering ``resource``, if given); 0 if there is none yet."""
    return max(
        (
            int(n["Resources"].get("CPU", 0))
            for n in ray.nodes()
            if n["Alive"] and (resource is None or n["Resources"].get(resource, 0) >= 1)
        ),
        default=0,
    )


def start_trainer(config: RefreshConfig) -> TrainerHandle:
    """Start the training actor on the node offering ``config.trainer_resource``, else on any node.

    The actor reserves the CPUs it trains with (``--workers``; by default the CPUs of the node it will run
    on: the largest offering the trainer resource, else the largest), but on a node without the trainer
    resource never all of the cluster's CPUs: the tokenizing tasks outside its reservation must still find
    one. Without ``--workers`` the actor trains with as many threads as its node has CPUs (:func:`node_cpus`),
    which it learns only once placed: on an autoscaling cluster its node may not exist yet.
    """
    resources = ray.cluster_resources()
    workers = config.training.workers
    if config.require_trainer_resource or resources.get(config.trainer_resource, 0) >= 1:
        # On an autoscaling cluster the trainer node may not exist yet: asking for the resource launches it.
        cpus = workers if workers is not None else _largest_node_cpus(config.trainer_resource)
        bundle = {config.trainer_resource: 1.0}
    else:
        wanted = workers if workers is not None else _largest_node_cpus(None)
        cpus, bundle = max(0, min(wanted, int(resources.get("CPU", 1)) - 1)), {}
    if cpus:
        bundle["CPU"] = float(cpus)
    placement = placement_group([bundle], strategy="STRICT_PACK") if bundle else None
    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0, "max_concurrency": 1}
    if placement is not None:
        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(placement, placement_group_bundle_index=0)
    log.info("training actor: reserves %s", ", ".join(f"{k}={v:g}" for k, v in bundle.items()) or "nothing")
    actor = ray.remote(Trainer).options(**options).remote(config.spool_dir, node_cpus)
    return TrainerHandle(actor=actor, placement=placement, cpus=cpus)


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
    trainer: TrainerHandle,
) -> IngestResult:
    """Tokenize every partition on Ray workers and feed each result to ``trainer``, bounded in flight.

    A share of the tasks (the trainer's reserved CPUs over all CPUs) runs inside the trainer's reservation,
    which would otherwise sit idle until training starts.
    Raises TrainingError if the actor dies. Bad partitions are collected in the result, not raised.
    """
    remote = ray.remote(tokenize_partition)
    # A lost worker and a failed read (the store, the network) are retried; a bad partition fails once.
    common: dict[str, Any] = {
        "num_cpus": 1,
        "max_retries": TOKENIZE_RETRIES,
        "retry_exceptions": [PartitionReadError],
    }
    task = remote.options(**common)
    in_bundle = remote.options(**common, scheduling_strategy=trainer.bundle()) if trainer.cpus else task
    limit, sized_at = in_flight_limit(config), time.monotonic()
    total_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    submitted = bundled = 0
    outcome = IngestResult()
    start = last_log = time.perf_counter()
    fs_ref = ray.put(fs)
    pending: deque[tuple[Partition, Any]] = deque()
    queue = iter(partitions)

    def drain_one() -> None:
        partition, ingest_ref = pending.popleft()
        first = not outcome.consumed and not outcome.rejected
        try:
            documents, sentences, tokens = result(ingest_ref, config.trainer_start_timeout if first else None)
        except GetTimeoutError:
            raise TrainingError(
                f"no partition reached the training actor within {config.trainer_start_timeout:g} s: no node may "
                f"offer what it reserves ({trainer.cpus} CPUs, resource {config.trainer_resource!r} if required); "
                "check the cluster's trainer node type, or raise --trainer-start-timeout"
            ) from None
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
        # Keep the bundle's share of the tasks at its share of the cluster's CPUs.
        share = trainer.cpus > 0 and bundled * total_cpus <= trainer.cpus * submitted
        runner = in_bundle if share else task
        bundled, submitted = bundled + share, submitted + 1
        token_ref = runner.remote(fs_ref, partition, config.read, config.tokenizer)
        pending.append((partition, trainer.actor.ingest.remote(token_ref)))
        if time.monotonic() - sized_at > 1:  # an autoscaling cluster grows while the run goes on
            limit, sized_at = in_flight_limit(config), time.monotonic()
            total_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if len(pending) >= limit:
            drain_one()
    while pending:
        drain_one()
    outcome.seconds = time.perf_counter() - start
    return outcome
