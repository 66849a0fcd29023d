"""A small increment tokenized inside the training actor: no tokenizing task, and exactly what the tasks give.

The same partitions (split into pieces, with a bad one among them) streamed both ways on a real local Ray must
leave the same spool byte for byte, the same counts, the same answers and the same ledger rows; every file of
the in-trainer run is opened by the actor's own process. A read that fails on the way to the data is read
again from the start of its piece, as Ray retries a task, and the spool is as if it had never failed.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from jobs import cluster, scheduling, tokenize
from jobs.config import RefreshConfig, TrainingConfig, from_args
from jobs.lineage import ledger
from jobs.training.trainer import Trainer
from shards.errors import PartitionReadError
from shards.partitions import Partition, discover
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions
from tests.support.corpora import clustered
from tests.support.counting_fs import CountingFileSystem
from tests.support.files import write_parquet
from tests.support.split import corrupt_row_group, documents, write_jsonl, write_row_groups, write_text

KiB = 1 << 10


class WatchedFileSystem(CountingFileSystem):
    """The local filesystem, noting in ``log`` the process that opens each file (one line per open); the
    ``fail_at``-th read of the file named ``flaky`` (counted over all its opens) fails, as a connection reset
    would."""

    def __init__(self, log: Path, flaky: str = "", fail_at: int = 0) -> None:
        super().__init__()
        self.log, self.flaky, self.fail_at = str(log), flaky, fail_at
        self.reads = 0

    def _note(self, path: str) -> None:
        with open(self.log, "a") as out:
            out.write(f"{os.getpid()} {path}\n")

    def open_input_file(self, path: str) -> Any:
        self._note(path)
        if self.flaky and path.endswith(self.flaky):
            with open(path, "rb") as source:
                return pa.PythonFile(Flaky(source.read(), self), mode="r")
        return self.local.open_input_file(path)

    def open_input_stream(self, path: str) -> Any:
        self._note(path)
        return self.local.open_input_stream(path)

    def get_type_name(self) -> str:
        return "watched"


class Flaky(io.BytesIO):
    """A file whose ``fs.fail_at``-th read (counted in ``fs.reads``) fails with a connection reset."""

    def __init__(self, data: bytes, fs: WatchedFileSystem) -> None:
        super().__init__(data)
        self.fs = fs

    def read(self, size: int | None = -1) -> bytes:
        self.fs.reads += 1
        if self.fs.reads == self.fs.fail_at:
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
        return super().read(size)


def watched(handler: WatchedFileSystem) -> pafs.FileSystem:
    return pafs.PyFileSystem(handler)


def openers(log: Path) -> set[int]:
    return {int(line.split(" ", 1)[0]) for line in log.read_text().splitlines()} if log.exists() else set()


def increment(root: Path) -> None:
    """Parquet of many row groups, text of many pieces, a JSON Lines file, and a partition with a bad piece."""
    write_row_groups(root / "dt=1" / "events.parquet", documents(600, seed=5), rows=100)
    write_text(root / "dt=2" / "dump.txt", documents(900, seed=6))
    write_jsonl(root / "dt=3" / "small.jsonl", clustered(40, seed=7))
    bad = write_row_groups(root / "dt=4" / "bad.parquet", documents(400, seed=9, prefix="zzbad "), rows=100)
    corrupt_row_group(bad, 2)
    write_parquet(root / "dt=5" / "last.parquet", clustered(60, seed=8))


def streamed(config: RefreshConfig, fs: pafs.FileSystem, partitions: list[Partition], spool: Path) -> dict[str, Any]:
    """What one stream left in the trainer (read before it removes it): spool bytes, counts, the outcome."""
    spool.mkdir()
    config = dataclasses.replace(config, spool_dir=str(spool))
    with cluster.trainer_actor(config) as trainer:
        outcome = tokenize.stream(config, fs, partitions, trainer)
        [corpus] = spool.glob("*/corpus.txt")
        counts = cluster.result(trainer.actor.__ray_call__.remote(lambda t: t._merged_counts()), "counts")
        pid = cluster.result(trainer.actor.__ray_call__.remote(lambda t: os.getpid()), "pid")
        return {"spool": corpus.read_bytes(), "counts": counts, "outcome": outcome, "pid": pid}


@pytest.mark.usefixtures("ray_session")
def test_a_small_increment_is_tokenized_in_the_trainer_exactly_as_tasks_tokenize_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    increment(data)
    read = ReadOptions(piece_bytes=16 * KiB)
    config = RefreshConfig(input=str(data), store=str(tmp_path / "models"), read=read, max_in_flight=3)
    config = dataclasses.replace(config, training=TrainingConfig(workers=1))
    partitions = discover(pafs.LocalFileSystem(), str(data))
    assert scheduling.in_trainer(config, partitions)  # the default threshold: this increment is small
    tasks_log, trainer_log = tmp_path / "tasks.log", tmp_path / "trainer.log"
    by_tasks = dataclasses.replace(config, tokenize_in_trainer_below=0)

    tasks = streamed(by_tasks, watched(WatchedFileSystem(tasks_log)), partitions, tmp_path / "t")
    inside = streamed(config, watched(WatchedFileSystem(trainer_log)), partitions, tmp_path / "i")

    a, b = tasks["outcome"], inside["outcome"]
    assert (a.in_trainer, b.in_trainer) == (False, True)
    assert openers(trainer_log) == {inside["pid"]}  # every read in the actor: no task ran
    assert inside["pid"] not in openers(tasks_log) and openers(tasks_log)
    assert inside["spool"] == tasks["spool"] and len(inside["spool"]) > 100 * KiB  # byte for byte
    assert inside["counts"] == tasks["counts"] and sum(inside["counts"].values()) == b.tokens > 10_000
    assert list(inside["counts"]) == list(tasks["counts"])  # the order new words join the vocabulary in
    assert (
        [p.uri for p in b.consumed] == [p.uri for p in a.consumed] == [p.uri for p in partitions if "bad" not in p.uri]
    )
    assert [(e.uri, e.cause) for e in b.rejected] == [(e.uri, e.cause) for e in a.rejected]
    assert [e.cause.split(":")[0] for e in b.rejected] == ["piece 3/3 (row groups 2-3 of 4)"]
    fields = ("documents", "sentences", "tokens", "pieces", "bytes", "rejected_bytes")
    assert [getattr(b, f) for f in fields] == [getattr(a, f) for f in fields]
    assert b.pieces > 2 * len(partitions)  # the files were split
    root = str(data)
    assert ledger.extend(ledger.empty(), b.consumed, "v", root) == ledger.extend(ledger.empty(), a.consumed, "v", root)


@pytest.mark.component
def test_a_failed_read_is_read_again_from_the_start_of_its_piece(tmp_path: Path) -> None:
    path = write_text(tmp_path / "in" / "dump.txt", documents(20_000, seed=11))  # 1.7 MB
    read = ReadOptions(piece_bytes=512 * KiB)  # 3 pieces of 128 KiB blocks, a batch every other block
    [partition] = discover(pafs.LocalFileSystem(), str(tmp_path / "in"))

    def spooled(filesystem: pafs.FileSystem, retries: int, folder: str) -> tuple[Any, bytes, dict[str, int]]:
        trainer = Trainer(str(tmp_path / folder))
        try:
            answer = trainer.tokenize(filesystem, partition, read, TokenizerConfig(), retries)
            return answer, trainer.corpus_path.read_bytes(), trainer._merged_counts()
        finally:
            trainer.close()

    for folder in ("clean", "flaky", "spent"):
        (tmp_path / folder).mkdir()
    counted = WatchedFileSystem(tmp_path / "clean.log", flaky="dump.txt")
    clean = spooled(watched(counted), 0, "clean")
    answer, pieces, size = clean[0]
    assert pieces == 3 and size == path.stat().st_size and answer[2] == sum(clean[2].values())

    # Piece 1 takes 6 reads (finding its end, 5 blocks); piece 2 finds its start and end, reads 2 blocks (its
    # first batch, spooled), and its third block fails: what it spooled is taken back and it is read again.
    flaky = WatchedFileSystem(tmp_path / "flaky.log", flaky="dump.txt", fail_at=6 + 2 + 2 + 1)
    assert spooled(watched(flaky), 1, "flaky") == clean
    assert flaky.reads == counted.reads + 5  # the 4 reads before the failure, and the failed one, again
    assert len((tmp_path / "flaky.log").read_text().splitlines()) == pieces + 1  # piece 2 opened twice

    spent = WatchedFileSystem(tmp_path / "spent.log", flaky="dump.txt", fail_at=6 + 2 + 2 + 1)
    with pytest.raises(PartitionReadError, match="connection reset"):
        spooled(watched(spent), 0, "spent")


@pytest.mark.unit
def test_the_increment_goes_to_the_trainer_below_the_threshold_of_its_estimated_text() -> None:
    def part(name: str, size: int, fmt: Any, compression: Any = None) -> Partition:
        return Partition(uri=name, path=name, key=name, size=size, mtime_ns=0, format=fmt, compression=compression)

    config = RefreshConfig(input="in", store="out", tokenize_in_trainer_below=12 << 20)
    assert scheduling.in_trainer(config, [part("a.parquet", 3 << 20, "parquet"), part("b.txt", 2 << 20, "text")])
    assert not scheduling.in_trainer(config, [part("a.parquet", 4 << 20, "parquet")])  # 12 MiB of text: not below
    assert not scheduling.in_trainer(config, [part("a.txt.gz", 3 << 20, "text", "gzip")])
    assert scheduling.in_trainer(config, [part("a.txt", (12 << 20) - 1, "text")])
    assert not scheduling.in_trainer(
        dataclasses.replace(config, tokenize_in_trainer_below=0), [part("e.txt", 1, "text")]
    )
    flag = ["--input", "i", "--store", "s", "--tokenize-in-trainer-below", "1MiB"]
    assert from_args(flag).tokenize_in_trainer_below == 1 << 20
