"""Ray at the edge: connecting once per run, placing the training actor, waiting for what Ray returns.

The Ray calls the other modules make go through here: :func:`connected` joins (or starts) Ray for the run,
:func:`trainer_actor` places the training actor and cleans up after it however the run ends, :func:`result`
and :func:`wait` are ``ray.get`` and ``ray.wait`` as the driver makes them (a SIGTERM still stops the run;
Ray's failures become one error naming the stage and the partition, :mod:`jobs.failures`), and :func:`capacity`
reads what the cluster offers now for the scheduler (:mod:`jobs.scheduling`). Tokenizing itself, the
streaming tasks and what they feed the trainer, is :mod:`jobs.tokenize`::

    with cluster.connected(config.ray_address, config.log_format):
        with cluster.trainer_actor(config, version) as trainer:
            ingest = tokenize.stream(config, fs, partitions, trainer)
            candidate = cluster.result(trainer.actor.finish.remote(store, request), "training", actor=True)

The actor's CPUs are reserved as a placement-group bundle that it occupies with 0 CPUs: until training
starts, tokenize tasks run there, and gensim's threads get those CPUs to themselves afterwards. The actor and
its placement group are named ``trainer <version>``, so the dashboard reads like the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import (
    GetTimeoutError,
    RayError,
    RayTaskError,
)
from ray.util.placement_group import (
    PlacementGroup,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from jobs import logs
from jobs.config import RefreshConfig
from jobs.errors import (
    RefreshError,
    StoppedError,
)
from jobs.failures import explain, first_line
from jobs.scheduling import TOKENIZE_RETRIES, Capacity
from jobs.training.trainer import Trainer, spool_path
from shards.partitions import Partition
from shards.tokenized import TokenizedBatch

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
STOPPING = threading.Event()  # set by the driver's SIGTERM handler


@contextmanager
def connected(address: str | None, log_format: str = "text") -> Iterator[None]:
    """Join ``address`` (or ``$RAY_ADDRESS``), else start a local Ray in this process for the duration; a
    no-op when this process is connected already. A SIGTERM handler the caller installed stays in place.

    With ``log_format="json"`` the job's workers and actors log JSON lines (Ray's ``LoggingConfig``), kept in
    the nodes' log files rather than echoed into the driver's stream (:mod:`jobs.logs`). Tasks
    killed by Ray's memory monitor are retried as often as those whose worker died (Ray's own default,
    ``RAY_task_oom_retries=-1``, retries them forever, so a piece too large for its node would hang the run);
    the owner of the tasks, this driver, reads the setting when it connects, and an explicit one is kept.
    """
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_task_oom_retries", str(TOKENIZE_RETRIES))
    as_json = log_format == "json"
    job = ray.job_config.JobConfig()
    if as_json:
        # the job's config rather than ray.init's logging_config=, which would also give this driver's loggers
        # Ray's handler and format (jobs.logs formats the driver's lines)
        job.set_py_logging_config(ray.LoggingConfig(encoding="JSON", log_level="INFO"))
    previous = signal.getsignal(signal.SIGTERM)
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=not as_json,  # JSON lines stay in the nodes' log files, not echoed with a prefix
        configure_logging=False,
        job_config=job,
    )
    if callable(previous) and threading.current_thread() is threading.main_thread():
        # ray.init puts its own SIGTERM handler (sys.exit) in place of the caller's: the driver's stops the run
        # cleanly (jobs.refresh._stop)
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        logs.adopt_ray_loggers()
    try:
        yield
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class TrainerHandle:
    """The training actor and the CPUs reserved for it (at least one): a placement-group bundle it occupies
    with 0 CPUs, so tokenizing tasks can use those CPUs while the actor waits for them, and gensim's threads
    get them after."""

    actor: Any
    placement: PlacementGroup
    cpus: int
    node: Any = None  # the actor's node id, once it started (an object reference)

    def bundle(self) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=0)


@contextmanager
def trainer_actor(config: RefreshConfig, version: str | None = None) -> Iterator[TrainerHandle]:
    """The training actor for one run; its spool is removed, the actor stopped and its CPUs released however
    the run ends.

    When the run is stopped (:class:`~jobs.errors.StoppedError`: ``ray job stop``, a pod's eviction) the actor
    may be busy training for hours, so it is killed at once and its spool removed by a task on its node.
    """
    version = version or f"unnamed-{secrets.token_hex(4)}"  # names the actor, its placement and its spool
    trainer = start_trainer(config, version)
    try:
        yield trainer
    except (StoppedError, KeyboardInterrupt):  # Ray raises the latter when a signal interrupts ray.get
        ray.kill(trainer.actor)
        _remove_spool(trainer, config.spool_dir, version)
        raise
    finally:
        placed = placement_group_table(trainer.placement).get("state") == "CREATED"
        with contextlib.suppress(Exception):  # a dead (or never placed) actor has nothing left to clean
            if placed:
                ray.get(trainer.actor.close.remote(), timeout=60)
        ray.kill(trainer.actor)
        remove_placement_group(trainer.placement)


def _remove_spool(trainer: TrainerHandle, spool_dir: str | None, version: str) -> None:
    """Remove the spool of a killed actor, from a task on the node it ran on (if it ever started)."""
    try:
        node = ray.get(trainer.node, timeout=1)
    except (RayError, TimeoutError):
        return  # never started: no spool
    remove = ray.remote(_remove_tree).options(
        num_cpus=0,
        name=f"remove spool {version}",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    )
    try:
        ray.get(remove.remote(str(spool_path(spool_dir, version))), timeout=20)
    except (RayError, TimeoutError) as exc:
        log.warning("could not remove the spool of %s on node %s: %s", version, node, first_line(exc))


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def result(
    ref: Any, stage: str, partition: Partition | None = None, timeout: float | None = None, actor: bool = False
) -> Any:
    """``ray.get`` that re-raises the project's own error raised remotely (not Ray's wrapper around it), and
    turns every failure of Ray's into one error naming ``stage`` and ``partition`` (:func:`jobs.failures.explain`);
    ``actor``: ``ref`` is a call to the training actor, so a failure that is not its method's own is the
    actor's. Raises GetTimeoutError after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        # Short waits, not one blocking ray.get: Python runs a signal handler (SIGTERM from `ray job stop`)
        # only between them, and a ray.get that waits for hours of training would hold it off until SIGKILL.
        while not _ready(ref):
            if deadline is not None and time.monotonic() > deadline:
                raise GetTimeoutError(f"not ready within {timeout:g} s")
        return ray.get(ref)
    except GetTimeoutError:
        raise
    except RayError as exc:
        raise explain(exc, stage, partition, actor) from None


def _ready(ref: Any) -> bool:
    return bool(wait([ref], timeout=_POLL_SECONDS, fetch_local=False)[0])


def wait(refs: list[Any], **options: Any) -> tuple[list[Any], list[Any]]:
    """``ray.wait``, every one the driver makes: SIGTERM's StoppedError, raised by its handler while Ray's C code
    waits, comes out of it as a SystemError, and is turned back into itself (exit 143, not a bug's 1)."""
    try:
        ready, rest = ray.wait(refs, **options)
    except SystemError:  # what an exception raised by a signal handler during the wait becomes
        if STOPPING.is_set():
            raise StoppedError() from None
        raise
    return ready, rest


def capacity() -> Capacity:
    """What the cluster offers now: its CPUs and its object store (an autoscaling cluster's grow)."""
    resources = ray.cluster_resources()
    return Capacity(cpus=int(resources.get("CPU", 0)), object_store=int(resources.get("object_store_memory", 0)))


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


def start_trainer(config: RefreshConfig, version: str) -> TrainerHandle:
    """Start the training actor on the node offering ``config.trainer_resource``, else on any node with CPUs.

    The actor reserves the CPUs it trains with (``--workers``; by default the CPUs of the node it will run
    on: the largest offering the trainer resource, else the largest). Without the trainer resource it
    reserves at least one CPU, so it never lands on a head that offers ``CPU: 0``, and never all of the
    cluster's CPUs when the cluster has more than one, so tokenizing tasks outside its reservation still find
    one. Without ``--workers`` the actor trains with as many threads as its node has CPUs (:func:`node_cpus`),
    which it learns only once placed: on an autoscaling cluster its node may not exist yet. For the same
    reason the actor sizes its own BLAS and OpenMP thread pools once placed (the gate's and the neighbour
    search's matrix products; see :class:`jobs.training.trainer.Trainer`), rather than being started with
    thread variables in its environment: an actor with an environment of its own cannot take one of Ray's
    idle workers, and waits for a new process (about half a second).
    """
    resources = ray.cluster_resources()
    workers = config.training.workers
    if config.require_trainer_resource or resources.get(config.trainer_resource, 0) >= 1:
        # On an autoscaling cluster the trainer node may not exist yet: asking for the resource launches it.
        cpus = workers if workers is not None else _largest_node_cpus(config.trainer_resource)
        bundle = {config.trainer_resource: 1.0}
    else:
        wanted = workers if workers is not None else _largest_node_cpus(None)
        cpus, bundle = max(1, min(wanted, int(resources.get("CPU", 0)) - 1)), {}
        log.warning(
            "no node offers the resource %r: the training actor reserves %d CPU(s) on any node that has them. "
            "On a cluster whose trainer node starts on demand, pass --require-trainer-resource; to train on "
            "another node type, name its resource with --trainer-resource",
            config.trainer_resource,
            cpus,
        )
    if cpus:
        bundle["CPU"] = float(cpus)
    placement = placement_group([bundle], strategy="STRICT_PACK", name=f"trainer {version}")
    options: dict[str, Any] = {
        "num_cpus": 0,
        "max_restarts": 0,
        "max_concurrency": 1,
        "name": f"trainer {version}",
        "scheduling_strategy": PlacementGroupSchedulingStrategy(placement, placement_group_bundle_index=0),
    }
    log.info("training actor: reserves %s", ", ".join(f"{k}={v:g}" for k, v in bundle.items()))
    actor: Any = ray.remote(Trainer).options(**options).remote(config.spool_dir, node_cpus, _fetch, version)
    node = actor.__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id())  # runs first, once placed
    return TrainerHandle(actor=actor, placement=placement, cpus=cpus, node=node)


def cluster_autoscales() -> bool:
    """Whether an autoscaler watches this cluster: tasks waiting for CPUs then make it add nodes.

    Ray has no public call for this; its autoscaler (v1) publishes its status in the GCS's key-value store,
    which is what ``ray status`` reads, and v2 marks itself there.
    """
    try:
        from ray._private import ray_constants
        from ray.autoscaler.v2.utils import is_autoscaler_v2
        from ray.experimental.internal_kv import _internal_kv_get

        return _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS) is not None or is_autoscaler_v2(
            fetch_from_server=True
        )
    except Exception:  # an older or newer Ray without these: assume a fixed cluster, the safe side
        return False


def _fetch(ref: Any) -> TokenizedBatch:
    """In the training actor: the batch an object reference names (a bad piece raises its PartitionError).
    Ray's own failures pass as they are, for the driver to explain with the partition
    (:func:`jobs.failures.explain`)."""
    try:
        batch: TokenizedBatch = ray.get(ref)
    except RayTaskError as exc:
        if isinstance(exc.cause, RefreshError):
            raise exc.cause from None
        raise
    return batch
