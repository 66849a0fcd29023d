"""Split partitions in the trainer and the tokenizer without a cluster: a bad partition rolled back out of the
spool, a split JSON Lines file bad only when no piece has the text field, a worker's memory that follows the
piece. The same through Ray, with retries and kills, is in ``tests/integration/test_split.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobs.training.trainer import Trainer
from shards.errors import PartitionError
from shards.partitions import open_filesystem
from shards.pieces import plan
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions, TokenizedBatch, tokenize_piece
from tests.support import REPO
from tests.support.corpora import clustered
from tests.support.split import KiB, MiB, batch, partition_of, write_text


class Broken:
    """A piece whose task failed: fetching it raises, as fetching a failed task's batch does on a cluster."""

    def __init__(self, uri: str) -> None:
        self.uri = uri


def fetch(item: TokenizedBatch | Broken) -> TokenizedBatch:
    if isinstance(item, Broken):
        raise PartitionError(item.uri, "piece 2/3 (bytes 10-20): invalid UTF-8")
    return item


def test_the_trainer_rolls_a_bad_partition_back_out_of_the_spool_and_the_counts(tmp_path: Path) -> None:
    trainer = Trainer(str(tmp_path), fetch=fetch)
    assert trainer.ingest("a", [batch("aa bb\n"), batch("bb\n", {"aa": 1, "bb": 2})], end=True) == (2, 2, 3)
    assert trainer.ingest("b", [batch("zz zz\n", {"zz": 2})], end=False) is None
    assert trainer.ingest("b", [batch("yy\n"), Broken("b"), batch("xx\n")], end=False) is None
    rejected = trainer.ingest("b", [batch("ww\n", {"ww": 1})], end=True)
    assert isinstance(rejected, PartitionError) and "piece 2/3" in str(rejected)
    assert trainer.ingest("c", [batch("cc\n", {"cc": 1})], end=True) == (1, 1, 1)
    assert trainer.corpus_path.read_bytes() == b"aa bb\nbb\ncc\n"
    assert trainer.spooled == len(b"aa bb\nbb\ncc\n")
    assert (trainer.sentences, trainer.tokens) == (3, 4)
    assert trainer._merged_counts() == {"aa": 1, "bb": 2, "cc": 1}
    trainer.close()


def test_a_split_json_lines_file_is_bad_only_when_no_piece_has_the_text_field(tmp_path: Path) -> None:
    docs = clustered(600, seed=12)
    lines = [json.dumps({"body": d}) for d in docs[:300]] + [json.dumps({"text": d}) for d in docs[300:]]
    (tmp_path / "some").mkdir()
    (tmp_path / "some" / "half.jsonl").write_text("\n".join(lines) + "\n")  # the field only in the later pieces
    write_text(tmp_path / "none" / "none.jsonl", [json.dumps({"body": d}) for d in docs])
    read = ReadOptions(piece_bytes=4 * KiB)
    trainer = Trainer(str(tmp_path))
    for folder, expected in (("some", (300, 300, 3600)), ("none", None)):
        partition = partition_of(tmp_path / folder)
        fs = open_filesystem(partition.path)[0]
        pieces = plan(fs, partition, read.piece_bytes)
        assert len(pieces) > 4
        for piece in pieces:
            answer = trainer.ingest(
                partition.uri, tokenize_piece(fs, piece, read, TokenizerConfig()), end=piece.index == len(pieces) - 1
            )
        if expected:
            assert answer == expected
        else:
            assert isinstance(answer, PartitionError) and answer.cause == "no JSON line has the field 'text'"
    assert trainer.corpus_path.read_bytes() == b"".join(
        chunk.tobytes()
        for batch in tokenize_piece(fs, plan(fs, partition_of(tmp_path / "some"), 1 << 30)[0], read, TokenizerConfig())
        for chunk in batch.lines
    )
    trainer.close()


WORKER = textwrap.dedent(
    """
    import sys
    from shards.partitions import discover, open_filesystem
    from shards.pieces import plan
    from shards.tokenize import TokenizerConfig
    from shards.tokenized import ReadOptions, tokenize_piece

    small, big, piece_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    read, config = ReadOptions(piece_bytes=piece_bytes), TokenizerConfig()

    def tokenize(path):
        fs, root = open_filesystem(path)
        [partition] = discover(fs, root)
        pieces = plan(fs, partition, read.piece_bytes)
        total = 0
        for piece in pieces:
            for batch in tokenize_piece(fs, piece, read, config):  # each batch leaves, as into Ray's store
                total += batch.nbytes
        return len(pieces), total

    tokenize(small)  # the one-off costs: imports, compiled kernels, regex caches, allocator arenas
    print("ready", flush=True)
    sys.stdin.readline()
    print(*tokenize(big), flush=True)
    sys.stdin.readline()
    """
)


def peak_rss(pid: int) -> int:
    """The kernel's high-water mark of the process's resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * KiB
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_workers_peak_memory_follows_the_piece_not_the_file(tmp_path: Path) -> None:
    docs = clustered(25_000, seed=30)
    small = write_text(tmp_path / "small" / "small.txt", docs * 2)  # ~ 3.6 MB
    big = write_text(tmp_path / "big" / "big.txt", docs * 10)  # ~ 18 MB
    piece_bytes = 512 * KiB
    size = big.stat().st_size
    assert size > 32 * piece_bytes
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(small), str(big), str(piece_bytes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        before = peak_rss(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        pieces, spooled_bytes = map(int, child.stdout.readline().split())
        after = peak_rss(child.pid)
        child.stdin.write("exit\n")
        child.stdin.flush()
    finally:
        child.wait(timeout=60)
    assert pieces > 32 and spooled_bytes > size * 0.9  # it did tokenize the whole file, piece by piece
    assert after - before < size / 4, f"peak grew by {(after - before) / MiB:.1f} MiB on a {size / MiB:.0f} MiB file"
