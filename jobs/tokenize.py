"""Tokenize on Ray workers, streaming into the training actor: step 3 of the runbook.

:func:`stream` carries out what :mod:`jobs.scheduling` decides. The flow, for N partitions split into pieces
(:mod:`shards.pieces`: row groups of Parquet, line-aligned byte ranges of text and JSON Lines)::

    driver ──submit (≤ max_in_flight pieces, ≤ max_in_flight_bytes)──▶ streaming task per piece (1 CPU)
       │                                                               │ yields batches of ~block_bytes
       └── trainer.ingest.remote(uri, [batch refs], end) ◀──────────────┘ (references, never the data)

    with cluster.connected(address), cluster.trainer_actor(config, version) as trainer:
        ingest = tokenize.stream(config, fs, partitions, trainer)

The driver never pulls tokenized data into its own process. It takes the tasks' batches in completion order
and hands their object references to the training actor in partition and piece order (the actor's calls run
in submission order), so the spooled corpus is the same for the same input, however the pieces were timed
and wherever they ran. A piece's batches wait in the object store only while an earlier piece is still
being read; the bytes so held are budgeted. The actor commits a partition when its last piece ends, or
rolls it back when one of its pieces is bad. Until training starts, as many tokenize tasks as the trainer
reserves CPUs run in its reservation (:class:`jobs.scheduling.Share`); every other task runs outside it, so
on an autoscaling cluster the tasks waiting there are the demand that starts tokenizing nodes. A task that
fails because its worker died is retried by Ray (a retried streaming task resumes its stream without
repeating a batch); a task that fails because its piece is bad fails once, with a
:class:`~jobs.errors.PartitionError` naming the partition and the piece. Every other failure Ray reports
becomes one error naming the stage and the partition (:func:`jobs.failures.explain`).

A small increment, whose text is below ``--tokenize-in-trainer-below``, skips the tasks: the training actor
reads and tokenizes it itself, a partition per call, with the same code and into the same spool.

Tasks are named ``tokenize <file>``, so the dashboard reads like the run.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import ObjectRef, ObjectRefGenerator
from ray.exceptions import GetTimeoutError

from jobs import cluster
from jobs.config import RefreshConfig
from jobs.errors import RERUN, ClusterError, PartitionError, PartitionReadError
from jobs.ingest import IngestResult
from jobs.scheduling import TOKENIZE_RETRIES, Planned, Reject, Scheduler, Share, Task, in_trainer
from shards.partitions import Partition
from shards.pieces import Piece, plan
from shards.tokenized import TokenizedBatch, tokenize_piece

log = logging.getLogger(__name__)

Batch = ObjectRef[TokenizedBatch]
Answer = tuple[int, int, int] | PartitionError  # what the trainer's ingest returns at a partition's end

_OPTIONS: dict[str, Any] = {
    "num_cpus": 1,
    "max_retries": TOKENIZE_RETRIES,
    # a lost worker and a failed read (the store, the network) are retried; a bad piece fails once
    "retry_exceptions": [PartitionReadError],
    "num_returns": "streaming",
}


def stream(
    config: RefreshConfig,
    fs: pafs.FileSystem,
    partitions: list[Partition],
    trainer: cluster.TrainerHandle,
) -> IngestResult:
    """Tokenize every partition's pieces on Ray workers and feed their batches to ``trainer``, bounded in
    flight by pieces and by bytes.

    Results are taken in completion order, so one slow piece does not stall the others' CPUs; they reach the
    trainer in partition and piece order, so the spool is the same for the same input whatever the timing.
    A share of the tasks (the trainer's reserved CPUs over all CPUs) runs inside the trainer's reservation,
    which would otherwise sit idle until training starts.
    Raises ClusterError if the actor dies, or if no batch reaches it within ``--trainer-start-timeout`` (no
    node can host it). Bad partitions are collected in the result, not raised.

    A small increment (:func:`jobs.scheduling.in_trainer`) is instead read and tokenized by the training actor
    itself, a partition per call, in order (:class:`_InTrainer`): the same spool, counts and answers, with no
    task.
    """
    if in_trainer(config, partitions):
        return _InTrainer(config, fs, partitions, trainer).run()
    return _Stream(config, fs, partitions, trainer).run()


_CALLS_AHEAD = 16  # partitions queued at the actor ahead of the one being answered


class _InTrainer:
    """The training actor reads the partitions itself: one call per partition, queued in partition order
    (the actor runs its calls in submission order), each answering as :meth:`Trainer.ingest` does at a
    partition's end. The driver waits for the answers in order, with the same start timeout and progress."""

    def __init__(
        self, config: RefreshConfig, fs: pafs.FileSystem, partitions: list[Partition], trainer: cluster.TrainerHandle
    ) -> None:
        self.config, self.partitions, self.trainer = config, partitions, trainer
        self.fs_ref = ray.put(fs)
        self.outcome = IngestResult(in_trainer=True)
        self.rejected: list[PartitionError] = []
        self.answered = False
        self.progress = _Progress(partitions)

    def run(self) -> IngestResult:
        config, actor = self.config, self.trainer.actor
        log.info(
            "tokenizing %d partition(s) (%s) in the training actor: below --tokenize-in-trainer-below %s",
            len(self.partitions),
            _size(self.progress.total_bytes),
            _size(config.tokenize_in_trainer_below),
        )
        waiting: deque[tuple[Partition, ObjectRef[tuple[Answer, int, int]]]] = deque()  # answers due, in order
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
                answer, pieces, size = cluster.result(ref, "tokenizing", partition, timeout=timeout, actor=True)
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
            self.progress.log(self.outcome, len(self.rejected), force=not waiting)
        self.outcome.rejected = self.rejected
        self.outcome.seconds = self.progress.seconds()
        return self.outcome


@dataclass(frozen=True)
class _Call:
    """A call to the trainer's ``ingest``, answered in the order made (see :class:`jobs.scheduling.Send`)."""

    task: Task[Batch]
    answer: ObjectRef[Answer | None]
    final: bool
    end: bool


class _Stream:
    def __init__(
        self, config: RefreshConfig, fs: pafs.FileSystem, partitions: list[Partition], trainer: cluster.TrainerHandle
    ) -> None:
        self.config, self.partitions, self.trainer = config, partitions, trainer
        self.remote = ray.remote(tokenize_piece)
        self.fs_ref = ray.put(fs)
        share = Share(trainer.cpus, cluster.cluster_autoscales())
        planned = _planned(fs, partitions, config.read.piece_bytes)
        self.scheduler: Scheduler[Batch] = Scheduler(config, planned, share, cluster.capacity())
        self.sized_at = time.monotonic()
        self.running: dict[ObjectRefGenerator, Task[Batch]] = {}  # tasks still yielding, by their generator
        self.calls: deque[_Call] = deque()
        self.outcome = IngestResult()
        self.rejected: list[Reject] = []
        self.watch = _TrainerWatch(config, trainer)
        self.progress = _Progress(partitions)

    def run(self) -> IngestResult:
        while True:
            self.submit()
            if self.scheduler.idle and not self.calls:
                break
            self.wait()
            self.forward()
            self.settle()
            if time.monotonic() - self.sized_at > 1:  # an autoscaling cluster grows while the run goes on
                self.scheduler.resize(cluster.capacity())
                self.sized_at = time.monotonic()
                self.starved()
        outcome = self.outcome
        outcome.rejected = [reject.error for reject in sorted(self.rejected, key=lambda reject: reject.index)]
        outcome.seconds = self.progress.seconds()
        self.progress.log(outcome, len(self.rejected), force=True)
        return outcome

    def submit(self) -> None:
        while (decision := self.scheduler.next()) is not None:
            if isinstance(decision, Reject):
                self.reject(decision.index, decision.error)
                continue
            task = decision.task
            self.running[self.launch(task.piece, task.in_bundle, decision.memory)] = task
            self.watch.submitted()

    def launch(self, piece: Piece, in_bundle: bool, memory: int | None) -> ObjectRefGenerator:
        """Submit the streaming task that tokenizes ``piece``, in the trainer's bundle or outside it."""
        options: dict[str, Any] = {**_OPTIONS, "name": f"tokenize {piece.partition.name}"}
        if in_bundle:
            options["scheduling_strategy"] = self.trainer.bundle()
        elif memory is not None:
            options["memory"] = memory
        batches: ObjectRefGenerator = self.remote.options(**options).remote(
            self.fs_ref, piece, self.config.read, self.config.tokenizer
        )
        return batches

    def starved(self) -> None:
        """Resubmit in the trainer's bundle the tasks that waited outside it for nothing (see
        :meth:`jobs.scheduling.Scheduler.starved`), cancelling them where they waited."""
        fallback = self.scheduler.starved(time.monotonic())
        if fallback is None:
            return
        self.outcome.fallback = fallback.reason
        log.warning(
            "%s; %d waiting task(s) moved there. Check the cluster's tokenizer node type and its limits "
            "(max_workers, quotas, capacity), or raise --tokenizer-wait",
            fallback.reason,
            len(fallback.tasks),
        )
        generators = {id(task): generator for generator, task in self.running.items()}
        for task in fallback.tasks:
            generator = generators[id(task)]
            ray.cancel(generator)
            del self.running[generator]
            self.running[self.launch(task.piece, in_bundle=True, memory=None)] = task

    def wait(self) -> None:
        """Block until a task yielded a batch or the trainer answered, then take every batch that is ready."""
        tasks = list(self.running)
        probe = self.watch.probe() if self.watch.answered and not self.calls else None
        front = [self.calls[0].answer] if self.calls else [probe] if probe is not None else []
        if tasks or front:
            cluster.wait([*tasks, *front], num_returns=1, timeout=1.0, fetch_local=False)
        self.watch.check_started()
        if not tasks:
            return
        ready, _ = cluster.wait(tasks, num_returns=len(tasks), timeout=0, fetch_local=False)
        for generator in ready:
            task = self.running[generator]
            try:
                self.scheduler.yielded(task, next(generator))
            except StopIteration:
                self.scheduler.finished(task)
                del self.running[generator]

    def forward(self) -> None:
        """Hand the trainer every batch that is next in partition and piece order."""
        for send in self.scheduler.forward():
            answer = self.trainer.actor.ingest.remote(send.task.piece.partition.uri, send.batches, send.end)
            self.calls.append(_Call(send.task, answer, send.final, send.end))

    def settle(self) -> None:
        """Take the trainer's answers, in order: a piece's budget is freed once its last batch is spooled."""
        if not self.calls:
            return
        answers = [call.answer for call in self.calls]
        ready = set(cluster.wait(answers, num_returns=len(answers), timeout=0)[0])
        while self.calls and self.calls[0].answer in ready:
            call = self.calls.popleft()
            answer = cluster.result(call.answer, "tokenizing", call.task.piece.partition, actor=True)
            self.watch.answered = True
            if call.final:
                self.scheduler.spooled(call.task)
                self.outcome.pieces += 1
                self.outcome.bytes += call.task.piece.size
            if call.end:
                self.ended(call.task, answer)
        self.progress.log(self.outcome, len(self.rejected))

    def ended(self, task: Task[Batch], answer: Answer) -> None:
        if isinstance(answer, PartitionError):
            self.reject(task.index, answer)
            return
        documents, sentences, tokens = answer
        self.outcome.consumed.append(task.piece.partition)
        self.outcome.documents += documents
        self.outcome.sentences += sentences
        self.outcome.tokens += tokens

    def reject(self, index: int, error: PartitionError) -> None:
        log.warning("bad partition %s", error)
        self.rejected.append(Reject(index, error))
        self.outcome.rejected_bytes += self.partitions[index].size


class _TrainerWatch:
    """Whether the training actor answers: its first batch within ``--trainer-start-timeout``, and a probe while
    none of ours is due there (its death would otherwise go unnoticed while the driver waits on tasks that can
    no longer finish: those in its lost reservation)."""

    def __init__(self, config: RefreshConfig, trainer: cluster.TrainerHandle) -> None:
        self.config, self.trainer = config, trainer
        self.first_submit: float | None = None
        self.answered = False  # the trainer has answered an ingest call
        self.probing: ObjectRef[None] | None = None  # the probe in flight
        self.probed = 0.0

    def submitted(self) -> None:
        self.first_submit = self.first_submit or time.monotonic()

    def check_started(self) -> None:
        """Raises ClusterError once the first batch has waited ``--trainer-start-timeout`` for the trainer."""
        timeout = self.config.trainer_start_timeout
        if not self.answered and self.first_submit and time.monotonic() - self.first_submit > timeout:
            # Capacity, not the data: the same run succeeds once a node can host the actor (exit 75).
            raise ClusterError(_no_trainer(self.config, self.trainer))

    def probe(self) -> ObjectRef[None] | None:
        """A cheap call to the trainer, at most one a second; raises ClusterError if the actor died."""
        if self.probing is None and time.monotonic() - self.probed > 1:
            self.probing = self.trainer.actor.__ray_ready__.remote()
        if self.probing is not None and cluster.wait([self.probing], timeout=0)[0]:
            cluster.result(self.probing, "tokenizing", actor=True)
            self.probing, self.probed = None, time.monotonic()
        return self.probing


def _no_trainer(config: RefreshConfig, trainer: cluster.TrainerHandle) -> str:
    return (
        f"no partition reached the training actor within {config.trainer_start_timeout:g} s: no node "
        f"may offer what it reserves ({trainer.cpus} CPUs, resource {config.trainer_resource!r} "
        f"if required); check the cluster's trainer node type, or raise --trainer-start-timeout. {RERUN}"
    )


class _Progress:
    """A progress line every 5 seconds, and one at the end."""

    def __init__(self, partitions: list[Partition]) -> None:
        self.partitions, self.total_bytes = len(partitions), sum(p.size for p in partitions)
        self.start = self.last_log = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def log(self, outcome: IngestResult, rejected: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_log < 5:
            return
        self.last_log = now
        log.info(
            "tokenized %d/%d partitions (%d pieces), %s of %s, %s tokens (%s tokens/s)",
            len(outcome.consumed) + rejected,
            self.partitions,
            outcome.pieces,
            _size(outcome.bytes),
            _size(self.total_bytes),
            f"{outcome.tokens:,}",
            f"{outcome.tokens / max(now - self.start, 1e-9):,.0f}",
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def _planned(fs: pafs.FileSystem, partitions: list[Partition], piece_bytes: int) -> Iterator[Planned]:
    """Each partition's pieces in order, planned just before they are needed (a big Parquet file's footer is
    read then), or the error that makes the partition unreadable."""
    for index, partition in enumerate(partitions):
        try:
            pieces = plan(fs, partition, piece_bytes)
        except PartitionError as exc:
            yield Planned(index, exc)
            continue
        for piece in pieces:
            yield Planned(index, piece)
