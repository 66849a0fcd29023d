"""Ray at the edges: connecting, placing the training actor, and streaming partitions through it.

All Ray decorators and ``.options(...)`` calls live here. The flow, for N partitions split into pieces
(:mod:`shards.pieces`: row groups of Parquet, line-aligned byte ranges of text and JSON Lines):

    driver ──submit (≤ max_in_flight pieces, ≤ max_in_flight_bytes)──▶ streaming task per piece (1 CPU)
       │                                                               │ yields batches of ~block_bytes
       └── trainer.ingest.remote(uri, [batch refs], end) ◀──────────────┘ (references, never the data)

The driver never pulls tokenized data into its own process. It takes the tasks' batches in completion order
and hands their object references to the training actor in partition and piece order (the actor's calls run
in submission order), so the spooled corpus is the same for the same input, however the pieces were timed
and wherever they ran. A piece's batches wait in the object store only while an earlier piece is still
being read; the bytes so held are budgeted. The actor commits a partition when its last piece ends, or
rolls it back when one of its pieces is bad. The actor's CPUs are reserved as a placement-group bundle that
it occupies with 0 CPUs: until training starts, as many tokenize tasks as the bundle has CPUs run there, and
gensim's threads get those CPUs to themselves afterwards. Every other task runs outside the bundle, so on an
autoscaling cluster the tasks waiting there are the demand that starts tokenizing nodes. A task that fails
because its worker died is retried by Ray (a retried streaming task resumes its stream without repeating a
batch); a task that fails because its piece is bad fails once, with a :class:`~jobs.errors.PartitionError`
naming the partition and the piece. Every other failure Ray reports becomes one error naming the stage and the
partition (:func:`explain`).

Tasks are named ``tokenize <file>`` and the actor and its placement group ``trainer <version>``, so the
dashboard reads like the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import ObjectRefGenerator
from ray.exceptions import (
    ActorUnschedulableError,
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    RayActorError,
    RayError,
    RayTaskError,
    RuntimeEnvSetupError,
    WorkerCrashedError,
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
    RERUN,
    ClusterError,
    PartitionError,
    PartitionReadError,
    RefreshError,
    StoppedError,
    TrainingError,
)
from jobs.ingest import IngestResult
from jobs.scheduling import memory_hint, output_estimate, text_estimate
from jobs.training.trainer import Trainer, spool_path
from shards.partitions import Partition
from shards.pieces import Piece, plan
from shards.tokenized import TokenizedBatch, tokenize_piece

log = logging.getLogger(__name__)

TOKENIZE_RETRIES = 3
_POLL_SECONDS = 0.5
STOPPING = threading.Event()  # set by the driver's SIGTERM handler


@contextmanager
def connected(address: str | None, log_format: str = "text") -> Iterator[None]:
    """Join ``address`` (or ``$RAY_ADDRESS``), else start a local Ray in this process for the duration.

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
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=not as_json,  # JSON lines stay in the nodes' log files, not echoed with a prefix
        configure_logging=False,
        job_config=job,
    )
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
        log.warning("could not remove the spool of %s on node %s: %s", version, node, _first_line(exc))


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def result(
    ref: Any, stage: str, partition: Partition | None = None, timeout: float | None = None, actor: bool = False
) -> Any:
    """``ray.get`` that re-raises the project's own error raised remotely (not Ray's wrapper around it), and
    turns every failure of Ray's into one error naming ``stage`` and ``partition`` (:func:`explain`);
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
    return bool(_wait([ref], timeout=_POLL_SECONDS, fetch_local=False)[0])


def _wait(refs: list[Any], **options: Any) -> tuple[list[Any], list[Any]]:
    """``ray.wait``, every one the driver makes: SIGTERM's StoppedError, raised by its handler while Ray's C code
    waits, comes out of it as a SystemError, and is turned back into itself (exit 143, not a bug's 1)."""
    try:
        ready, rest = ray.wait(refs, **options)
    except SystemError:  # what an exception raised by a signal handler during the wait becomes
        if STOPPING.is_set():
            raise StoppedError() from None
        raise
    return ready, rest


def explain(exc: RayError, stage: str, partition: Partition | None = None, actor: bool = False) -> RefreshError:
    """One clear line for a failure Ray reports: what failed, where, and what to do; never a traceback.

    A partition's own error comes back as raised (a bad partition fails once and is not retried); an
    exception inside the training actor becomes a TrainingError; everything else is the infrastructure's,
    a :class:`~jobs.errors.ClusterError` (exit status 75, a rerun is safe). ``actor``: the failure came from a
    call to the training actor; unless the call itself raised (a partition's batch that Ray could not deliver
    to it), it is the actor that failed, and the message says so rather than naming a partition.

    What Ray 2.x raises, and what the message says (``ray.exceptions``, as ``ray.get`` returns them):

    * ``OutOfMemoryError``: Ray's memory monitor killed the worker (``RAY_memory_usage_threshold``), on each
      of its tries; names the node and its memory use.
    * ``RuntimeEnvSetupError``: the runtime environment (pip, conda, working_dir, ...) failed to set up on a
      node, for a task or the actor; names the node and the last line of the agent's traceback.
    * ``NodeDiedError``: the node running the task died (preempted, a raylet crash) on its last try.
    * ``WorkerCrashedError``: the worker process died (a segfault, a kill) on every try.
    * ``ObjectLostError`` and its kinds (``ObjectReconstructionFailedError`` and its subclasses,
      ``ObjectFetchTimedOutError``, ``OwnerDiedError``, ``ObjectFreedError``): a tokenized batch was lost with
      the node holding it and could not be rebuilt from lineage.
    * ``RayActorError`` (``ActorDiedError``, ``ActorUnavailableError``), ``ActorUnschedulableError``: the
      training actor died, or cannot be placed.
    """
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        if isinstance(cause, RefreshError):
            return cause
        if not isinstance(cause, RayError):
            where = f"{stage} {partition.uri}" if partition is not None else stage
            return TrainingError(f"{where} failed: {type(cause).__name__}: {_first_line(cause)}")
        exc, actor = cause, False  # a Ray failure that the actor's call met: the partition's batch
    who = "the training actor" if actor else "its worker"
    where = f"{stage} {partition.uri}" if partition is not None and not actor else stage
    if isinstance(exc, OutOfMemoryError):
        node, memory = _match(r"\(IP: ([^,)]+)", str(exc)), _match(r"was (\S+ used / \S+ limit)", str(exc))
        tries = "" if actor else f" on each of its {TOKENIZE_RETRIES + 1} tries"
        what = (
            f"{who} ran out of memory and Ray's memory monitor killed it{tries} (node {node or '?'}: "
            f"{memory or 'memory use over RAY_memory_usage_threshold'}); give the nodes more memory, or lower "
            "--max-in-flight or --piece-bytes"
        )
    elif isinstance(exc, RuntimeEnvSetupError):
        text = exc.error_message or ""
        node = _match(r"\[Node ([^]]+)\]", text)
        what = (
            f"the runtime environment of {who} could not be set up on node {node or '?'} "
            f"({_last_line(text) or 'no reason given'}); check the job's runtime_env (pip, conda, working_dir) "
            "against the nodes' image"
        )
    elif isinstance(exc, (RayActorError, ActorUnschedulableError)):
        what = f"the training actor died (its node may have been lost): {_last_line(str(exc))}"
    elif isinstance(exc, NodeDiedError):
        node = _match(r"Node IP: ([^,]+)", str(exc))
        what = (
            f"its node ({node or '?'}) died (preempted, a hardware failure, a raylet crash) and Ray's "
            f"{TOKENIZE_RETRIES} retries are spent"
        )
    elif isinstance(exc, WorkerCrashedError):
        what = f"its worker crashed {TOKENIZE_RETRIES + 1} times, so Ray's retries are spent"
    elif isinstance(exc, ObjectLostError):
        # a reconstruction failure says why ("... cannot be reconstructed because the maximum number of task
        # retries has been exceeded"); the other kinds are named by their type
        why = _match(r"cannot be reconstructed because ([^.]+)", str(exc)) or type(exc).__name__
        what = (
            f"its result was lost with the node that held it and could not be rebuilt ({why}); the nodes may be "
            "going away faster than Ray can rebuild their results"
        )
    else:
        what = f"{type(exc).__name__}: {_first_line(exc)}"
    return ClusterError(f"{where}: {what.rstrip('.')}. {RERUN}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _last_line(text: str) -> str:
    """The last non-empty line of ``text`` (the exception line of a traceback), stripped."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _match(pattern: str, text: str) -> str | None:
    found = re.search(pattern, text)
    return found.group(1) if found else None


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
    which it learns only once placed: on an autoscaling cluster its node may not exist yet. Its BLAS and
    OpenMP thread pools (the gate's and the neighbour search's matrix products) get the reserved CPUs: Ray
    would give an actor asking for 0 CPUs one thread.
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
        # (with the CPUs unknown until the trainer node exists, its threads are known only there, too late)
        "runtime_env": {"env_vars": dict.fromkeys(_THREAD_VARIABLES, str(cpus))} if cpus else {},
        "scheduling_strategy": PlacementGroupSchedulingStrategy(placement, placement_group_bundle_index=0),
    }
    log.info("training actor: reserves %s", ", ".join(f"{k}={v:g}" for k, v in bundle.items()))
    actor: Any = ray.remote(Trainer).options(**options).remote(config.spool_dir, node_cpus, _fetch, version)
    node = actor.__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id())  # runs first, once placed
    return TrainerHandle(actor=actor, placement=placement, cpus=cpus, node=node)


# Thread pools sized by the environment at import: OpenMP (gensim's BLAS calls), OpenBLAS and MKL (numpy's).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


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


class Share:
    """Where the next tokenizing task runs: in the trainer's bundle while it has a free CPU, else outside it.

    Outside tasks run on the cluster's other CPUs, or wait for them: on an autoscaling cluster the waiting
    tasks are the demand that adds tokenizing nodes (a rule that kept every task in the bundle whenever the
    trainer reserves all the CPUs there are, as it does on a cluster starting from zero, would never let it).
    On a fixed cluster with no CPU outside the bundle every task runs in the bundle. On an autoscaling cluster
    that still has no CPU outside the bundle after ``--tokenizer-wait`` seconds of waiting tasks (no node type
    can start, the cloud has no capacity, a quota), the waiting tasks move into the bundle and the rest follow
    them there (:meth:`_Stream.starved`): the run is slower, never stuck.
    """

    def __init__(self, trainer: TrainerHandle, autoscaling: bool) -> None:
        self.slots, self.autoscaling = trainer.cpus, autoscaling
        self.outside_cpus = 0
        self.running: list[Any] = []  # work placed in the bundle, not yet done (each has a ``done`` flag)
        self.gave_up = False  # no CPU outside the bundle came within --tokenizer-wait
        self.resize()

    def resize(self) -> None:
        """Re-read the cluster's CPUs (an autoscaling cluster grows while the run goes on)."""
        self.outside_cpus = max(0, int(ray.cluster_resources().get("CPU", 0)) - self.slots)

    def in_bundle(self) -> bool:
        if not self.slots:
            return False
        self.running = [work for work in self.running if not work.done]
        return len(self.running) < self.slots or not (self.outside_cpus or (self.autoscaling and not self.gave_up))

    def placed(self, work: Any, in_bundle: bool) -> None:
        work.in_bundle = in_bundle
        if in_bundle:
            self.running.append(work)


def in_flight_limit(config: RefreshConfig) -> int:
    """Pieces tokenized at once: --max-in-flight, else two per CPU the cluster has now (at least 4, so an
    autoscaler that starts from no workers sees enough pending work to add several)."""
    return config.max_in_flight or max(4, 2 * int(ray.cluster_resources().get("CPU", 0)))


def in_flight_bytes(config: RefreshConfig) -> int:
    """Tokenized bytes held between the workers and the trainer at once: --max-in-flight-bytes, else half of
    the cluster's object store (what a slow piece at the head of the order lets pile up behind it)."""
    return config.max_in_flight_bytes or max(64 << 20, int(ray.cluster_resources().get("object_store_memory", 0) / 2))


def _fetch(ref: Any) -> TokenizedBatch:
    """In the training actor: the batch an object reference names (a bad piece raises its PartitionError).
    Ray's own failures pass as they are, for the driver to explain with the partition (:func:`explain`)."""
    try:
        batch: TokenizedBatch = ray.get(ref)
    except RayTaskError as exc:
        if isinstance(exc.cause, RefreshError):
            raise exc.cause from None
        raise
    return batch


def _planned(
    fs: pafs.FileSystem, partitions: list[Partition], piece_bytes: int
) -> Iterator[tuple[int, Piece | PartitionError]]:
    """Each partition's pieces in order, planned just before they are needed (a big Parquet file's footer is
    read then), or the error that makes the partition unreadable."""
    for index, partition in enumerate(partitions):
        try:
            pieces = plan(fs, partition, piece_bytes)
        except PartitionError as exc:
            yield index, exc
            continue
        for piece in pieces:
            yield index, piece


@dataclass(eq=False)
class _Work:
    """One piece on its way: submitted as a streaming task, its batches forwarded to the trainer in order."""

    index: int
    piece: Piece
    estimate: int
    batches: ObjectRefGenerator
    refs: list[Any] = field(default_factory=list)  # batches yielded and not yet forwarded
    done: bool = False  # the task yielded its last batch
    started: bool = False  # the task yielded a batch (so it found a CPU)
    in_bundle: bool = False  # placed in the trainer's reservation

    @property
    def last(self) -> bool:
        return self.piece.index == self.piece.count - 1


def stream(
    config: RefreshConfig,
    fs: pafs.FileSystem,
    partitions: list[Partition],
    trainer: TrainerHandle,
) -> IngestResult:
    """Tokenize every partition's pieces on Ray workers and feed their batches to ``trainer``, bounded in
    flight by pieces and by bytes.

    Results are taken in completion order, so one slow piece does not stall the others' CPUs; they reach the
    trainer in partition and piece order, so the spool is the same for the same input whatever the timing.
    A share of the tasks (the trainer's reserved CPUs over all CPUs) runs inside the trainer's reservation,
    which would otherwise sit idle until training starts.
    Raises ClusterError if the actor dies, or if no batch reaches it within ``--trainer-start-timeout`` (no
    node can host it). Bad partitions are collected in the result, not raised.

    A small increment (:func:`in_trainer`) is instead read and tokenized by the training actor itself, a
    partition per call, in order (:class:`_InTrainer`): the same spool, counts and answers, with no task.
    """
    if in_trainer(config, partitions):
        return _InTrainer(config, fs, partitions, trainer).run()
    return _Stream(config, fs, partitions, trainer).run()


def in_trainer(config: RefreshConfig, partitions: list[Partition]) -> bool:
    """Whether the increment is small enough to tokenize inside the training actor: its text, estimated from
    the files' sizes (:func:`text_estimate`), is below ``--tokenize-in-trainer-below``. Below that, one core
    that is there already does the work in about a second, while tasks cost the cluster worker processes to
    start (a new job's workers import pyarrow and the tokenizer) and a round trip through the object store
    for every batch."""
    return sum(text_estimate(p) for p in partitions) < config.tokenize_in_trainer_below


_CALLS_AHEAD = 16  # partitions queued at the actor ahead of the one being answered


class _InTrainer:
    """The training actor reads the partitions itself: one call per partition, queued in partition order
    (the actor runs its calls in submission order), each answering as :meth:`Trainer.ingest` does at a
    partition's end. The driver waits for the answers in order, with the same start timeout and progress."""

    def __init__(
        self, config: RefreshConfig, fs: pafs.FileSystem, partitions: list[Partition], trainer: TrainerHandle
    ) -> None:
        self.config, self.partitions, self.trainer = config, partitions, trainer
        self.fs_ref = ray.put(fs)
        self.outcome = IngestResult(in_trainer=True)
        self.rejected: list[PartitionError] = []
        self.total_bytes = sum(p.size for p in partitions)
        self.answered = False
        self.start = self.last_log = time.perf_counter()

    def run(self) -> IngestResult:
        config, actor = self.config, self.trainer.actor
        log.info(
            "tokenizing %d partition(s) (%s) in the training actor: below --tokenize-in-trainer-below %s",
            len(self.partitions),
            _size(self.total_bytes),
            _size(config.tokenize_in_trainer_below),
        )
        waiting: deque[tuple[Partition, Any]] = deque()  # calls made, answers not yet taken, in order
        upcoming = iter(self.partitions)
        while True:
            while len(waiting) < _CALLS_AHEAD and (partition := next(upcoming, None)) is not None:
                ref = actor.tokenize.remote(self.fs_ref, partition, config.read, config.tokenizer, TOKENIZE_RETRIES)
                waiting.append((partition, ref))
            if not waiting:
                break
            partition, ref = waiting.popleft()
            try:
                # the first answer also says that the actor was placed and started, as the first batch does
                timeout = None if self.answered else config.trainer_start_timeout
                answer, pieces, size = result(ref, "tokenizing", partition, timeout=timeout, actor=True)
            except GetTimeoutError:  # capacity, not the data: the same run succeeds once a node can host it
                raise ClusterError(_no_trainer(config, self.trainer)) from None
            self.answered = True
            self.outcome.pieces += pieces
            self.outcome.bytes += size
            if isinstance(answer, PartitionError):
                log.warning("bad partition %s", answer)
                self.rejected.append(answer)
                self.outcome.rejected_bytes += partition.size
            else:
                documents, sentences, tokens = answer
                self.outcome.consumed.append(partition)
                self.outcome.documents += documents
                self.outcome.sentences += sentences
                self.outcome.tokens += tokens
            self.log_progress(force=not waiting)
        self.outcome.rejected = self.rejected
        self.outcome.seconds = time.perf_counter() - self.start
        return self.outcome

    def log_progress(self, force: bool) -> None:
        now = time.perf_counter()
        if force or now - self.last_log >= 5:
            self.last_log = now
            _log_progress(self.outcome, len(self.rejected), len(self.partitions), self.total_bytes, now - self.start)


def _no_trainer(config: RefreshConfig, trainer: TrainerHandle) -> str:
    return (
        f"no partition reached the training actor within {config.trainer_start_timeout:g} s: no node "
        f"may offer what it reserves ({trainer.cpus} CPUs, resource {config.trainer_resource!r} "
        f"if required); check the cluster's trainer node type, or raise --trainer-start-timeout. {RERUN}"
    )


class _Stream:
    def __init__(
        self, config: RefreshConfig, fs: pafs.FileSystem, partitions: list[Partition], trainer: TrainerHandle
    ) -> None:
        self.config, self.partitions, self.trainer = config, partitions, trainer
        self.remote = ray.remote(tokenize_piece)
        self.common: dict[str, Any] = {
            "num_cpus": 1,
            "max_retries": TOKENIZE_RETRIES,
            # a lost worker and a failed read (the store, the network) are retried; a bad piece fails once
            "retry_exceptions": [PartitionReadError],
            "num_returns": "streaming",
        }
        self.fs_ref = ray.put(fs)
        self.plan = _planned(fs, partitions, config.read.piece_bytes)
        self.lookahead: tuple[int, Piece | PartitionError] | None = next(self.plan, None)
        self.window: deque[_Work] = deque()  # submitted, not yet wholly forwarded, in order
        self.running: dict[ObjectRefGenerator, _Work] = {}  # tasks still yielding, by their generator
        self.calls: deque[tuple[_Work, Any, bool, bool]] = deque()  # ingest calls: (work, ref, final, end)
        self.held = 0  # estimated bytes between submission and the trainer's spool
        self.outcome = IngestResult()
        self.rejected: list[tuple[int, PartitionError]] = []
        self.total_bytes = sum(p.size for p in partitions)
        self.planned = 0
        self.share = Share(trainer, cluster_autoscales())
        self.first_submit: float | None = None
        self.answered = False  # the trainer has answered an ingest call
        self.probing: Any = None  # a call checking that the trainer is alive, while none of ours is due
        self.probed = 0.0
        self.starving_since: float | None = None  # since when tasks wait with no CPU outside the bundle
        self.resize()
        self.start = self.last_log = time.perf_counter()

    def resize(self) -> None:
        # an autoscaling cluster grows while the run goes on
        self.limit, self.budget = in_flight_limit(self.config), in_flight_bytes(self.config)
        self.sized_at = time.monotonic()
        if hasattr(self, "share"):
            self.share.resize()

    def run(self) -> IngestResult:
        while True:
            self.submit()
            if not self.window and not self.calls:
                break
            self.wait()
            self.forward()
            self.settle()
            if time.monotonic() - self.sized_at > 1:
                self.resize()
                self.starved()
        outcome = self.outcome
        outcome.rejected = [error for _, error in sorted(self.rejected, key=lambda item: item[0])]
        outcome.seconds = time.perf_counter() - self.start
        self.log_progress(force=True)
        return outcome

    def submit(self) -> None:
        while self.lookahead is not None and len(self.running) < self.limit:
            index, item = self.lookahead
            if isinstance(item, PartitionError):
                log.warning("bad partition %s", item)
                self.rejected.append((index, item))
                self.outcome.rejected_bytes += self.partitions[index].size
                self.lookahead = next(self.plan, None)
                continue
            estimate = output_estimate(item)
            if self.held and self.held + estimate > self.budget:
                return
            share = self.share.in_bundle()
            work = _Work(index, item, estimate, self.launch(item, share))
            self.share.placed(work, share)
            self.window.append(work)
            self.running[work.batches] = work
            self.held += estimate
            self.planned += 1
            self.first_submit = self.first_submit or time.monotonic()
            self.lookahead = next(self.plan, None)

    def launch(self, piece: Piece, in_bundle: bool) -> ObjectRefGenerator:
        """Submit the streaming task that tokenizes ``piece``, in the trainer's bundle or outside it."""
        options: dict[str, Any] = {**self.common, "name": f"tokenize {piece.partition.name}"}
        if in_bundle:
            # the bundle reserves CPUs only: a memory request could never fit it (the trainer's node is the
            # large one, and its tasks there are as many as its CPUs)
            options["scheduling_strategy"] = self.trainer.bundle()
        elif (memory := memory_hint(piece, self.config.read)) is not None:
            options["memory"] = memory
        batches: ObjectRefGenerator = self.remote.options(**options).remote(
            self.fs_ref, piece, self.config.read, self.config.tokenizer
        )
        return batches

    def starved(self) -> None:
        """Move tasks that wait for a CPU outside the trainer's bundle into it, once the cluster has had none
        there for ``--tokenizer-wait`` seconds while they waited (an autoscaler that cannot or does not add a
        node for them). A task that has yielded nothing is cancelled and submitted again in the bundle: none of
        its batches was taken, so nothing is counted twice, and the spool's order is the window's, unchanged."""
        share = self.share
        waiting = [w for w in self.running.values() if not w.in_bundle and not w.started]
        if share.gave_up or share.outside_cpus or not waiting or not share.autoscaling:
            self.starving_since = None
            return
        now = time.monotonic()
        self.starving_since = self.starving_since or now
        if now - self.starving_since < self.config.tokenizer_wait:
            return
        if not share.slots:
            raise ClusterError(
                f"tokenizing: no CPU for {len(waiting)} tokenizing task(s) within --tokenizer-wait "
                f"{self.config.tokenizer_wait:g} s, and the training actor reserves none; check the cluster's "
                f"tokenizer node type and its limits (max_workers, quotas). {RERUN}"
            )
        share.gave_up = True
        self.outcome.fallback = (
            f"no node with a CPU outside the trainer's reservation started within --tokenizer-wait "
            f"{self.config.tokenizer_wait:g} s: tokenizing ran on the trainer's {share.slots} reserved CPU(s)"
        )
        log.warning(
            "%s; %d waiting task(s) moved there. Check the cluster's tokenizer node type and its limits "
            "(max_workers, quotas, capacity), or raise --tokenizer-wait",
            self.outcome.fallback,
            len(waiting),
        )
        for work in waiting:
            ray.cancel(work.batches)
            del self.running[work.batches]
            work.batches = self.launch(work.piece, in_bundle=True)
            share.placed(work, True)
            self.running[work.batches] = work

    def wait(self) -> None:
        """Block until a task yielded a batch or the trainer answered, then take every batch that is ready."""
        tasks = list(self.running)
        probe = self.probe() if self.answered and not self.calls else None
        front = [self.calls[0][1]] if self.calls else [probe] if probe is not None else []
        if tasks or front:
            _wait(tasks + front, num_returns=1, timeout=1.0, fetch_local=False)
        if (
            not self.answered
            and self.first_submit
            and time.monotonic() - self.first_submit > self.config.trainer_start_timeout
        ):
            # Capacity, not the data: the same run succeeds once a node can host the actor (exit 75).
            raise ClusterError(_no_trainer(self.config, self.trainer))
        if not tasks:
            return
        ready, _ = _wait(tasks, num_returns=len(tasks), timeout=0, fetch_local=False)
        for key in ready:
            work = self.running[key]  # type: ignore[index]  # ray.wait returns the generators it was given
            try:
                work.refs.append(next(work.batches))
                work.started = True
            except StopIteration:
                work.done = True
                del self.running[work.batches]

    def probe(self) -> Any:
        """A cheap call to the trainer, at most one a second, while no batch of ours is due there: the trainer's
        death would otherwise go unnoticed while the driver waits on tasks that can no longer finish (those in
        its lost reservation)."""
        if self.probing is None and time.monotonic() - self.probed > 1:
            self.probing = self.trainer.actor.__ray_ready__.remote()
        if self.probing is not None and _wait([self.probing], timeout=0)[0]:
            result(self.probing, "tokenizing", actor=True)  # raises ClusterError if the actor died
            self.probing, self.probed = None, time.monotonic()
        return self.probing

    def forward(self) -> None:
        """Hand the trainer every batch that is next in partition and piece order."""
        while self.window:
            work = self.window[0]
            if work.refs and not work.done:
                self.send(work, final=False)
            if not work.done:
                return
            self.send(work, final=True)  # its remaining batches; after a partition's last piece, its end
            self.window.popleft()

    def send(self, work: _Work, final: bool) -> None:
        end = final and work.last
        ref = self.trainer.actor.ingest.remote(work.piece.partition.uri, work.refs, end)
        work.refs = []
        self.calls.append((work, ref, final, end))

    def settle(self) -> None:
        """Take the trainer's answers, in order: a piece's budget is freed once its last batch is spooled."""
        if not self.calls:
            return
        refs = [call[1] for call in self.calls]
        ready = set(_wait(refs, num_returns=len(refs), timeout=0)[0])
        while self.calls and self.calls[0][1] in ready:
            work, ref, final, end = self.calls.popleft()
            answer = result(ref, "tokenizing", work.piece.partition, actor=True)
            self.answered = True
            if final:
                self.held -= work.estimate
                self.outcome.pieces += 1
                self.outcome.bytes += work.piece.size
            if end:
                self.ended(work, answer)
        self.log_progress()

    def ended(self, work: _Work, answer: tuple[int, int, int] | PartitionError) -> None:
        if isinstance(answer, PartitionError):
            log.warning("bad partition %s", answer)
            self.rejected.append((work.index, answer))
            self.outcome.rejected_bytes += work.piece.partition.size
            return
        documents, sentences, tokens = answer
        self.outcome.consumed.append(work.piece.partition)
        self.outcome.documents += documents
        self.outcome.sentences += sentences
        self.outcome.tokens += tokens

    def log_progress(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_log < 5:
            return
        self.last_log = now
        _log_progress(self.outcome, len(self.rejected), len(self.partitions), self.total_bytes, now - self.start)


def _log_progress(outcome: IngestResult, rejected: int, partitions: int, total_bytes: int, seconds: float) -> None:
    log.info(
        "tokenized %d/%d partitions (%d pieces), %s of %s, %s tokens (%s tokens/s)",
        len(outcome.consumed) + rejected,
        partitions,
        outcome.pieces,
        _size(outcome.bytes),
        _size(total_bytes),
        f"{outcome.tokens:,}",
        f"{outcome.tokens / max(seconds, 1e-9):,.0f}",
    )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"
