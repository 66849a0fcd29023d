"""While the corpus streams in, the training actor hands the GIL over within 0.5 ms, and only then: the
interval is Python's own again after every call, whether it succeeded or raised."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from jobs.training.trainer import STREAMING_SWITCH_INTERVAL, Trainer
from shards.errors import PartitionReadError
from shards.partitions import discover
from shards.pieces import whole
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions, TokenizedBatch, tokenize_piece
from tests.support.counting_fs import CountingFileSystem
from tests.support.files import write_parquet


class SwitchWatching(CountingFileSystem):
    """The local filesystem, noting the GIL switch interval whenever a file is opened; ``broken`` opens fail
    as a reset connection does."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken
        self.intervals: list[float] = []

    def open_input_file(self, path: str) -> Any:
        self.intervals.append(sys.getswitchinterval())
        if self.broken:
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
        return super().open_input_file(path)


def test_the_trainer_hands_the_gil_over_promptly_while_it_takes_the_corpus_and_only_then(tmp_path: Path) -> None:
    write_parquet(tmp_path / "in" / "dt=1" / "a.parquet", ["Hello world", None, "another document, here"])
    [partition] = discover(pafs.LocalFileSystem(), str(tmp_path / "in"))
    read, tokenizer = ReadOptions(), TokenizerConfig()
    before = sys.getswitchinterval()
    assert before > STREAMING_SWITCH_INTERVAL  # Python's default, 5 ms
    trainer = Trainer(str(tmp_path))
    try:
        watching = SwitchWatching()
        answer, pieces, _ = trainer.tokenize(pafs.PyFileSystem(watching), partition, read, tokenizer, 0)
        assert (answer, pieces) == ((2, 2, 5), 1)
        assert watching.intervals and set(watching.intervals) == {STREAMING_SWITCH_INTERVAL}
        assert sys.getswitchinterval() == before

        seen: list[float] = []

        def batches() -> Iterator[TokenizedBatch]:
            seen.append(sys.getswitchinterval())
            yield from tokenize_piece(pafs.LocalFileSystem(), whole(partition), read, tokenizer)

        assert trainer.ingest("again", batches(), end=True) == (2, 2, 5)
        assert seen == [STREAMING_SWITCH_INTERVAL] and sys.getswitchinterval() == before

        broken = SwitchWatching(broken=True)
        with pytest.raises(PartitionReadError, match="connection reset"):
            trainer.tokenize(pafs.PyFileSystem(broken), partition, read, tokenizer, 1)  # read twice, then raised
        assert broken.intervals == [STREAMING_SWITCH_INTERVAL] * 2 and sys.getswitchinterval() == before
    finally:
        trainer.close()
