"""Which tokenizing task to submit next, and where: the stream's decisions, as plain code over plain data.

No Ray here. :mod:`jobs.tokenize` carries the decisions out (it submits the tasks, takes their batches and
hands them to the training actor); this module decides, so every rule is tested in milliseconds with made-up
pieces (``tests/unit/test_scheduling.py``)::

    scheduler = Scheduler(config, planned, Share(slots=trainer.cpus, autoscaling=False), Capacity(cpus, store))
    while (decision := scheduler.next()) is not None:    # Submit a task, or Reject a partition its plan found bad
        ...
    scheduler.yielded(task, batch)                       # a task yielded a batch (it found a CPU)
    scheduler.finished(task)                             # ... and its last one
    for send in scheduler.forward():                     # batches due at the trainer, in partition and piece order
        ...
    scheduler.spooled(task)                              # the trainer spooled a piece's last batch: its bytes free

The rules:

* **Budgets** (:class:`Budgets`): at most ``--max-in-flight`` tasks still yielding (two per CPU the cluster
  has now, at least 4), and at most ``--max-in-flight-bytes`` of estimated tokenized text between submission
  and the trainer's spool (half the object store): a slow piece at the head of the order holds the batches
  behind it, and the bytes so held are bounded. The first piece always goes, however large.
* **Order**: pieces are submitted in the plan's order (partition, then piece) and their batches forwarded in
  that order, whatever order the tasks yield in, so the spool is the same for the same input.
* **Share** (:class:`Share`): a task runs in the trainer's reserved CPUs while one is free there, else outside.
* **Starvation** (:meth:`Scheduler.starved`): on an autoscaling cluster whose outside CPUs never come, the
  waiting tasks move into the reservation after ``--tokenizer-wait`` seconds.
* **Memory** (:func:`memory_hint`): a task outside the reservation asks for the memory its piece needs.
* **No tasks at all** (:func:`in_trainer`): a small increment is tokenized by the training actor itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from jobs.config import RefreshConfig
from jobs.errors import RERUN, ClusterError, PartitionError
from shards.partitions import Partition
from shards.pieces import Piece
from shards.tokenized import ReadOptions

TOKENIZE_RETRIES = 3  # Ray's retries of a tokenizing task whose worker died or was killed for its memory
B = TypeVar("B")  # what a task yields: an object reference on Ray, anything in a test


@dataclass(frozen=True)
class Capacity:
    """What the cluster offers now (Ray's ``cluster_resources()``); an autoscaling cluster's grows."""

    cpus: int
    object_store: int  # bytes


@dataclass(frozen=True)
class Budgets:
    """How much work may be in flight at once."""

    tasks: int  # pieces whose tasks are still yielding
    bytes: int  # estimated tokenized bytes between submission and the trainer's spool

    @classmethod
    def of(cls, config: RefreshConfig, capacity: Capacity) -> Budgets:
        """--max-in-flight, else two tasks per CPU (at least 4, so an autoscaler that starts from no workers
        sees enough pending work to add several); --max-in-flight-bytes, else half the object store (at least
        64 MiB)."""
        return cls(
            tasks=config.max_in_flight or max(4, 2 * capacity.cpus),
            bytes=config.max_in_flight_bytes or max(64 << 20, capacity.object_store // 2),
        )


@dataclass
class Share:
    """Where the next tokenizing task runs: in the trainer's bundle while it has a free CPU, else outside it.

    Outside tasks run on the cluster's other CPUs, or wait for them: on an autoscaling cluster the waiting
    tasks are the demand that adds tokenizing nodes (a rule that kept every task in the bundle whenever the
    trainer reserves all the CPUs there are, as it does on a cluster starting from zero, would never let it).
    On a fixed cluster with no CPU outside the bundle every task runs in the bundle. On an autoscaling cluster
    that still has no CPU outside the bundle after ``--tokenizer-wait`` seconds of waiting tasks (no node type
    can start, the cloud has no capacity, a quota), the waiting tasks move into the bundle and the rest follow
    them there (:meth:`Scheduler.starved`): the run is slower, never stuck.
    """

    slots: int  # the CPUs the trainer reserves
    autoscaling: bool
    outside_cpus: int = 0  # the cluster's CPUs outside the bundle, as last read
    gave_up: bool = False  # no CPU outside the bundle came within --tokenizer-wait

    def resize(self, capacity: Capacity) -> None:
        self.outside_cpus = max(0, capacity.cpus - self.slots)

    def in_bundle(self, running_there: int) -> bool:
        """Whether the next task runs in the bundle, where ``running_there`` tasks are still yielding."""
        if not self.slots:
            return False
        return running_there < self.slots or not (self.outside_cpus or (self.autoscaling and not self.gave_up))


@dataclass(eq=False)
class Task(Generic[B]):
    """One piece on its way: submitted, yielding batches, forwarded to the trainer in order."""

    index: int  # its partition's position in the run's list
    piece: Piece
    estimate: int  # bytes of tokenized text it is budgeted at (:func:`output_estimate`)
    in_bundle: bool  # placed in the trainer's reservation
    batches: list[B] = field(default_factory=list)  # yielded and not yet forwarded
    started: bool = False  # it yielded a batch (so it found a CPU)
    done: bool = False  # it yielded its last batch

    @property
    def last(self) -> bool:
        """Whether this is its partition's last piece."""
        return self.piece.index == self.piece.count - 1


@dataclass(frozen=True)
class Planned:
    """One step of the run's plan, in order: a piece of partition ``index``, or the error that makes that
    partition unreadable before any task reads it."""

    index: int  # the partition's position in the run's list
    item: Piece | PartitionError


@dataclass(frozen=True)
class Submit(Generic[B]):
    """Submit ``task``: in the trainer's bundle, or outside it asking for ``memory`` bytes (None: no request)."""

    task: Task[B]
    memory: int | None


@dataclass(frozen=True)
class Reject:
    """The plan found partition ``index`` unreadable before any task read it."""

    index: int
    error: PartitionError


@dataclass(frozen=True)
class Send(Generic[B]):
    """Hand ``batches`` of ``task`` to the trainer. ``final``: the task's last call (its budget is freed once
    the trainer answers it); ``end``: it also ends the partition (its last piece), so the trainer commits it."""

    task: Task[B]
    batches: list[B]
    final: bool
    end: bool


@dataclass(frozen=True)
class Fallback(Generic[B]):
    """Tokenizing moves into the trainer's reservation: ``tasks`` waited there for nothing, and ``reason``
    says why (for the log, the manifest and the run record)."""

    tasks: list[Task[B]]
    reason: str


class Scheduler(Generic[B]):
    """The tokenizing stream's decisions: what to submit next, where, and what to forward to the trainer."""

    def __init__(
        self,
        config: RefreshConfig,
        planned: Iterator[Planned],
        share: Share,
        capacity: Capacity,
    ) -> None:
        """``planned``: each partition's pieces in order, or its plan's error."""
        self.config, self.planned, self.share = config, planned, share
        self.lookahead = next(planned, None)
        self.window: deque[Task[B]] = deque()  # submitted, not yet wholly forwarded, in order
        self.running: list[Task[B]] = []  # still yielding
        self.held = 0  # estimated bytes between submission and the trainer's spool
        self.starving_since: float | None = None  # since when tasks wait with no CPU outside the bundle
        self.resize(capacity)

    @property
    def idle(self) -> bool:
        """Nothing left to submit and nothing in flight."""
        return self.lookahead is None and not self.window

    def resize(self, capacity: Capacity) -> None:
        """Size the budgets and the share to what the cluster offers now (an autoscaling cluster grows)."""
        self.budgets = Budgets.of(self.config, capacity)
        self.share.resize(capacity)

    def next(self) -> Submit[B] | Reject | None:
        """The next thing to do: submit a task, reject a partition, or nothing (no work left or no budget)."""
        if self.lookahead is None or len(self.running) >= self.budgets.tasks:
            return None
        index, item = self.lookahead.index, self.lookahead.item
        if isinstance(item, PartitionError):
            self.lookahead = next(self.planned, None)
            return Reject(index, item)
        estimate = output_estimate(item)
        if self.held and self.held + estimate > self.budgets.bytes:
            return None
        in_bundle = self.share.in_bundle(sum(task.in_bundle for task in self.running))
        task: Task[B] = Task(index, item, estimate, in_bundle)
        self.window.append(task)
        self.running.append(task)
        self.held += estimate
        self.lookahead = next(self.planned, None)
        # the bundle reserves CPUs only: a memory request could never fit it (the trainer's node is the large
        # one, and its tasks there are as many as its CPUs)
        return Submit(task, None if in_bundle else memory_hint(item, self.config.read))

    def yielded(self, task: Task[B], batch: B) -> None:
        """``task`` yielded ``batch``."""
        task.batches.append(batch)
        task.started = True

    def finished(self, task: Task[B]) -> None:
        """``task`` yielded its last batch: its place in flight is free."""
        task.done = True
        self.running.remove(task)

    def forward(self) -> Iterator[Send[B]]:
        """Every batch that is next in partition and piece order: the front task's batches as they come, and
        once it is done, its last call; then the next task's."""
        while self.window:
            task = self.window[0]
            if task.batches and not task.done:
                yield Send(task, self._take(task), final=False, end=False)
            if not task.done:
                return
            yield Send(task, self._take(task), final=True, end=task.last)
            self.window.popleft()

    @staticmethod
    def _take(task: Task[B]) -> list[B]:
        batches, task.batches = task.batches, []
        return batches

    def spooled(self, task: Task[B]) -> None:
        """The trainer answered ``task``'s final call: its bytes leave the budget."""
        self.held -= task.estimate

    def starved(self, now: float) -> Fallback[B] | None:
        """Move tasks that wait for a CPU outside the trainer's bundle into it, once the cluster has had none
        there for ``--tokenizer-wait`` seconds while they waited (an autoscaler that cannot or does not add a
        node for them). The caller resubmits the returned tasks in the bundle: none has yielded anything, so
        nothing is counted twice, and the spool's order is the window's, unchanged. ``now``: monotonic seconds.

        Raises ClusterError if the trainer reserves no CPU to move them to.
        """
        share, wait = self.share, self.config.tokenizer_wait
        waiting = [task for task in self.running if not task.in_bundle and not task.started]
        if share.gave_up or share.outside_cpus or not waiting or not share.autoscaling:
            self.starving_since = None
            return None
        if self.starving_since is None:
            self.starving_since = now
        if now - self.starving_since < wait:
            return None
        if not share.slots:
            raise ClusterError(
                f"tokenizing: no CPU for {len(waiting)} tokenizing task(s) within --tokenizer-wait {wait:g} s, and "
                "the training actor reserves none; check the cluster's tokenizer node type and its limits "
                f"(max_workers, quotas). {RERUN}"
            )
        share.gave_up = True
        for task in waiting:
            task.in_bundle = True
        return Fallback(
            waiting,
            f"no node with a CPU outside the trainer's reservation started within --tokenizer-wait {wait:g} s: "
            f"tokenizing ran on the trainer's {share.slots} reserved CPU(s)",
        )


# Tokenized text over input bytes, roughly: Parquet and compressed files expand, plain text shrinks a little.
_EXPANSION = {"parquet": 3, "compressed": 4, "text": 1}
_WORKER_BASE = 128 << 20  # a worker's own footprint (Python, pyarrow), beyond the piece it reads
_SMALL_TASK = 32 << 20  # needs below this fit in any worker's ordinary headroom: no reservation is asked for


def in_trainer(config: RefreshConfig, partitions: list[Partition]) -> bool:
    """Whether the increment is small enough to tokenize inside the training actor: its text, estimated from
    the files' sizes (:func:`text_estimate`), is below ``--tokenize-in-trainer-below``. Below that, one core
    that is there already does the work in about a second, while tasks cost the cluster worker processes to
    start (a new job's workers import pyarrow and the tokenizer) and a round trip through the object store
    for every batch."""
    return sum(text_estimate(p) for p in partitions) < config.tokenize_in_trainer_below


def output_estimate(piece: Piece) -> int:
    """About how many bytes of tokenized text ``piece`` yields: what in-flight work is budgeted in."""
    return piece.size * _expansion(piece.partition)


def text_estimate(partition: Partition) -> int:
    """About how many bytes of text ``partition`` holds (its size times :data:`_EXPANSION`)."""
    return partition.size * _expansion(partition)


def _expansion(partition: Partition) -> int:
    kind = "compressed" if partition.compression else "parquet" if partition.format == "parquet" else "text"
    return _EXPANSION[kind]


def memory_hint(piece: Piece, read: ReadOptions) -> int | None:
    """The ``memory=`` a tokenizing task asks for: text is decoded a block at a time, Parquet a batch of rows
    at a time (at most the piece's text); the decoded text, its tokens and their lines take a few times that.
    None for a small piece: a memory request is a logical reservation that every node type must declare for
    the autoscaler to place it, which buys nothing for a task that needs a few megabytes."""
    partition = piece.partition
    unit = min(output_estimate(piece), read.piece_bytes)
    if partition.format != "parquet":
        unit = min(unit, read.block_bytes)
    need = 6 * unit
    return _WORKER_BASE + need if need >= _SMALL_TASK else None
