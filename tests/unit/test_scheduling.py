"""The tokenizing stream's decisions (:mod:`jobs.scheduling`), without Ray: made-up pieces, a made-up clock,
strings for batches. What is submitted, where, in what order, within which budgets, and when tasks that wait
for CPUs that never come move into the trainer's reservation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobs.config import RefreshConfig
from jobs.errors import ClusterError, PartitionError
from jobs.scheduling import (
    Budgets,
    Capacity,
    Planned,
    Reject,
    Scheduler,
    Send,
    Share,
    Submit,
    Task,
    memory_hint,
    output_estimate,
)
from shards.partitions import Partition
from shards.pieces import Piece

MiB = 1 << 20


def partition(name: str, size: int, fmt: str = "text", compression: str | None = None) -> Partition:
    return Partition(f"mem://{name}", name, size, 0, fmt, compression)  # type: ignore[arg-type]


def pieces(part: Partition, count: int) -> list[Piece]:
    size = part.size // count
    return [Piece(part, i, count, i * size, (i + 1) * size if count > 1 else None, size=size) for i in range(count)]


def planned(*items: Piece | PartitionError) -> Iterator[Planned]:
    """Items in plan order, each piece under its partition's index (by first appearance), as the stream plans."""
    index: dict[str, int] = {}
    for item in items:
        uri = item.partition.uri if isinstance(item, Piece) else item.uri
        yield Planned(index.setdefault(uri, len(index)), item)


def config(**overrides: object) -> RefreshConfig:
    return RefreshConfig(input="in", store="out", **overrides)  # type: ignore[arg-type]


def submit_all(scheduler: Scheduler[str]) -> list[Submit[str] | Reject]:
    decisions = []
    while (decision := scheduler.next()) is not None:
        decisions.append(decision)
    return decisions


def tasks(decisions: list[Submit[str] | Reject]) -> list[Task[str]]:
    return [d.task for d in decisions if isinstance(d, Submit)]


def test_budgets_bound_tasks_and_bytes_in_flight_and_free_them_at_the_right_moment() -> None:
    # the defaults follow the cluster: two tasks per CPU (at least 4), half the object store (at least 64 MiB)
    assert Budgets.of(config(), Capacity(cpus=1, object_store=10 * MiB)) == Budgets(4, 64 * MiB)
    assert Budgets.of(config(), Capacity(cpus=8, object_store=1024 * MiB)) == Budgets(16, 512 * MiB)
    assert Budgets.of(config(max_in_flight=3, max_in_flight_bytes=5), Capacity(8, 1024 * MiB)) == Budgets(3, 5)

    # the task budget: 2 yielding at once; a finished task's place is free at once
    small = [p for i in range(5) for p in pieces(partition(f"s{i}", 1000), 1)]
    scheduler: Scheduler[str] = Scheduler(config(max_in_flight=2), planned(*small), Share(0, False), Capacity(4, 0))
    first = tasks(submit_all(scheduler))
    assert [t.piece for t in first] == small[:2]
    scheduler.finished(first[1])
    assert [t.piece for t in tasks(submit_all(scheduler))] == [small[2]]

    # the byte budget: 3 MiB of text (1 byte of tokens per byte); a piece that would exceed it waits until
    # the trainer spooled an earlier one (finishing is not enough: its batches may still wait in the store)
    big = pieces(partition("big", 6 * MiB), 3)  # 2 MiB each
    scheduler = Scheduler(config(max_in_flight_bytes=3 * MiB), planned(*big), Share(0, False), Capacity(4, 0))
    [one] = tasks(submit_all(scheduler))
    assert scheduler.held == 2 * MiB
    scheduler.finished(one)
    assert scheduler.next() is None
    scheduler.spooled(one)
    assert [t.piece for t in tasks(submit_all(scheduler))] == [big[1]]
    # the first piece always goes, however large, so a piece over the budget cannot stall the run
    huge = pieces(partition("huge", 10 * MiB), 1)
    scheduler = Scheduler(config(max_in_flight_bytes=MiB), planned(*huge), Share(0, False), Capacity(4, 0))
    assert [t.estimate for t in tasks(submit_all(scheduler))] == [10 * MiB]


def test_pieces_go_in_plan_order_and_reach_the_trainer_in_it_however_the_tasks_finish() -> None:
    a, b = pieces(partition("a", 3000), 2), pieces(partition("b", 3000), 1)
    bad = PartitionError("mem://c", "not a Parquet file")
    scheduler: Scheduler[str] = Scheduler(config(), planned(*a, bad, *b), Share(0, False), Capacity(4, 0))
    decisions = submit_all(scheduler)
    assert [type(d) for d in decisions] == [Submit, Submit, Reject, Submit]
    assert decisions[2] == Reject(1, bad)  # the partition's index: rejections are reported in input order
    a0, a1, b0 = tasks(decisions)
    assert [(t.index, t.piece.index) for t in (a0, a1, b0)] == [(0, 0), (0, 1), (2, 0)]
    assert scheduler.held == 1500 + 1500 + 3000  # a text piece is budgeted at its own size

    # the later pieces finish first: nothing of theirs is forwarded before a's first piece is wholly sent
    scheduler.yielded(b0, "b0-1")
    scheduler.finished(b0)
    scheduler.yielded(a1, "a1-1")
    scheduler.yielded(a0, "a0-1")
    assert list(scheduler.forward()) == [Send(a0, ["a0-1"], final=False, end=False)]
    scheduler.yielded(a0, "a0-2")
    scheduler.finished(a0)
    scheduler.yielded(a1, "a1-2")
    # a0's rest and its final call (not the partition's end: a has a second piece), then a1's batches so far
    assert list(scheduler.forward()) == [
        Send(a0, ["a0-2"], final=True, end=False),
        Send(a1, ["a1-1", "a1-2"], final=False, end=False),
    ]
    scheduler.finished(a1)
    assert list(scheduler.forward()) == [Send(a1, [], final=True, end=True), Send(b0, ["b0-1"], final=True, end=True)]
    assert scheduler.idle and list(scheduler.forward()) == []


def test_the_share_fills_the_trainers_reservation_first_and_leaves_demand_outside_it() -> None:
    def placement(share: Share, cpus: int, count: int = 5) -> list[bool]:
        items = [p for i in range(count) for p in pieces(partition(f"p{i}", 1000), 1)]
        scheduler: Scheduler[str] = Scheduler(config(max_in_flight=count), planned(*items), share, Capacity(cpus, 0))
        return [t.in_bundle for t in tasks(submit_all(scheduler))]

    # two reserved CPUs on a cluster with more: two tasks there, the rest outside
    assert placement(Share(2, autoscaling=False), cpus=6) == [True, True, False, False, False]
    # a fixed cluster whose only CPUs are the trainer's: every task there (nothing else would ever run them)
    assert placement(Share(2, autoscaling=False), cpus=2) == [True] * 5
    # an autoscaling cluster starting from the trainer's node alone: the rest wait outside, as demand for nodes
    assert placement(Share(2, autoscaling=True), cpus=2) == [True, True, False, False, False]
    # a trainer that reserves no CPU: nothing in its bundle
    assert placement(Share(0, autoscaling=False), cpus=0) == [False] * 5

    # a bundle task that finished frees its CPU for the next task
    items = [p for i in range(4) for p in pieces(partition(f"q{i}", 1000), 1)]
    scheduler: Scheduler[str] = Scheduler(config(max_in_flight=2), planned(*items), Share(1, False), Capacity(3, 0))
    inside, outside = tasks(submit_all(scheduler))
    assert (inside.in_bundle, outside.in_bundle) == (True, False)
    scheduler.finished(outside)
    [third] = tasks(submit_all(scheduler))
    assert not third.in_bundle  # the bundle's CPU is still taken
    scheduler.finished(inside)
    [fourth] = tasks(submit_all(scheduler))
    assert fourth.in_bundle


def test_tasks_starved_of_outside_cpus_move_into_the_reservation_after_the_wait() -> None:
    items = [p for i in range(6) for p in pieces(partition(f"p{i}", 1000), 1)]
    share = Share(2, autoscaling=True)
    scheduler: Scheduler[str] = Scheduler(
        config(max_in_flight=4, tokenizer_wait=5), planned(*items), share, Capacity(2, 0)
    )
    submitted = tasks(submit_all(scheduler))
    assert [t.in_bundle for t in submitted] == [True, True, False, False]
    scheduler.yielded(submitted[2], "started")  # found a CPU after all: not moved, it would count twice
    assert scheduler.starved(now=100.0) is None  # the wait starts
    assert scheduler.starved(now=104.9) is None
    # a CPU outside appears: the wait is over; when it is gone again, the wait starts afresh
    scheduler.resize(Capacity(3, 0))
    assert scheduler.starved(now=106.0) is None and scheduler.starving_since is None
    scheduler.resize(Capacity(2, 0))
    assert scheduler.starved(now=107.0) is None
    assert scheduler.starved(now=111.9) is None
    fallback = scheduler.starved(now=112.0)
    assert fallback is not None and fallback.tasks == [submitted[3]] and submitted[3].in_bundle
    assert fallback.reason == (
        "no node with a CPU outside the trainer's reservation started within --tokenizer-wait 5 s: "
        "tokenizing ran on the trainer's 2 reserved CPU(s)"
    )
    assert scheduler.starved(now=200.0) is None  # once only
    # the rest follow them there, past the reservation's CPUs
    for task in submitted:
        scheduler.finished(task)
    assert [t.in_bundle for t in tasks(submit_all(scheduler))] == [True, True]
    # a fixed cluster's tasks just wait for its CPUs: no move
    fixed: Scheduler[str] = Scheduler(config(tokenizer_wait=5), planned(*items), Share(1, False), Capacity(1, 0))
    submit_all(fixed)
    assert fixed.starved(now=0.0) is None and fixed.starved(now=1000.0) is None

    # a trainer that reserves no CPU leaves nowhere to move them: the run fails, retryable
    none: Scheduler[str] = Scheduler(config(tokenizer_wait=5), planned(*items), Share(0, True), Capacity(0, 0))
    submit_all(none)
    assert none.starved(now=0.0) is None
    with pytest.raises(ClusterError) as info:
        none.starved(now=5.0)
    assert str(info.value) == (
        "tokenizing: no CPU for 4 tokenizing task(s) within --tokenizer-wait 5 s, and the training actor reserves "
        "none; check the cluster's tokenizer node type and its limits (max_workers, quotas). Nothing was "
        "published; a rerun is safe."
    )


def test_estimates_and_memory_requests_follow_the_format_and_the_piece() -> None:
    read = config().read  # 128 MiB pieces, 16 MiB text blocks
    text, gz, parquet = partition("t", 512 * MiB), partition("g", 64 * MiB, compression="gzip"), partition("p", 0)
    assert output_estimate(Piece(text, 0, 4, size=128 * MiB)) == 128 * MiB
    assert output_estimate(Piece(gz, 0, 1, size=64 * MiB)) == 256 * MiB
    assert output_estimate(Piece(partition("p", 10, "parquet"), 0, 1, size=10)) == 30
    # text: a block at a time, six times over, on top of the worker's own 128 MiB
    assert memory_hint(Piece(text, 0, 4, size=128 * MiB), read) == 128 * MiB + 6 * 16 * MiB
    # Parquet: up to the piece's text
    assert (
        memory_hint(Piece(partition("p", 40 * MiB, "parquet"), 0, 1, size=40 * MiB), read) == 128 * MiB + 6 * 120 * MiB
    )
    # a small piece asks for nothing (a reservation every node type would have to declare)
    assert memory_hint(Piece(parquet, 0, 1, size=MiB), read) is None
    # in the reservation: never a memory request; outside: the hint
    items = [Piece(text, i, 4, size=128 * MiB) for i in range(4)]
    scheduler: Scheduler[str] = Scheduler(config(), planned(*items), Share(1, False), Capacity(4, 1 << 40))
    decisions = [d for d in submit_all(scheduler) if isinstance(d, Submit)]
    assert [d.memory for d in decisions] == [None] + [128 * MiB + 6 * 16 * MiB] * 3
