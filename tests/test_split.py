"""Partitions split into pieces: every document read once, the same spool as unsplit, exact counts, a bad piece
rejecting its whole partition, a retried piece counted once, and a worker's memory that follows the piece."""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import cluster
from jobs.config import RefreshConfig, TrainingConfig, from_args
from jobs.errors import BadPartitionsError
from jobs.ingest import IngestResult
from jobs.refresh import run
from jobs.training import model as gmodel
from jobs.training.trainer import Trainer
from shards.counts import RunningCounts
from shards.errors import PartitionError
from shards.partitions import Partition, discover, open_filesystem
from shards.pieces import plan
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions, TokenizedBatch, tokenize_partition, tokenize_piece
from tests.conftest import REPO, snapshot
from tests.corpora import clustered
from tests.test_faults import kill_first, reference, run_while
from tests.test_refresh import load_latest

KiB, MiB = 1 << 10, 1 << 20
FAST = ["--workers", "1", "--vector-size", "16", "--epochs", "1", "--min-count", "1", "--max-in-flight", "4"]


def documents(n: int, seed: int, prefix: str = "") -> list[str]:
    """Documents of varied lengths: empty ones, one far longer than a piece, scripts beyond ASCII."""
    rng = random.Random(seed)
    docs = [prefix + d for d in clustered(n, seed=seed)]
    for i in range(0, n, 97):
        docs[i] = ""
    docs[n // 3] = " ".join(rng.choice(["épée", "日本語", "Привет", "naïve"]) for _ in range(9000))  # ~90 KB
    return docs


def write_text(path: Path, docs: list[str], newline: str = "\n", final: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(docs) + (newline if final else "")).encode())
    return path


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(json.dumps({"text": d, "n": i}) + "\n" for i, d in enumerate(docs)).encode())
    return path


def write_row_groups(path: Path, docs: list[str], rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": docs}), path, row_group_size=rows)
    return path


def partition_of(path: Path) -> Partition:
    fs, root = open_filesystem(str(path))
    [partition] = discover(fs, root)
    return partition


def piecewise(partition: Partition, read: ReadOptions) -> tuple[bytes, collections.Counter[str], int, int]:
    """Each piece tokenized on its own, in order: the spooled text, the summed counts, documents, pieces."""
    fs = open_filesystem(partition.path)[0]
    lines, counts, docs = [], collections.Counter[str](), 0
    pieces = plan(fs, partition, read.piece_bytes)
    for piece in pieces:
        for batch in tokenize_piece(fs, piece, read, TokenizerConfig()):
            lines += [chunk.tobytes() for chunk in batch.lines]
            docs += batch.documents
            if batch.counts is not None:
                counts.update(dict(zip(*batch.counts.to_pydict().values(), strict=True)))
    return b"".join(lines), counts, docs, len(pieces)


# --- unit: planning and reading pieces, no Ray -------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "newline", "final"), [("a.txt", "\n", True), ("b.txt", "\r\n", False), ("c.jsonl", "\n", True)]
)
@pytest.mark.parametrize("piece_bytes", [3000, 16 * KiB + 3])
def test_line_aligned_pieces_read_every_document_once(
    tmp_path: Path, name: str, newline: str, final: bool, piece_bytes: int
) -> None:
    docs = documents(1500, seed=1)
    path = tmp_path / name
    write_jsonl(path, docs) if name.endswith(".jsonl") else write_text(path, docs, newline, final)
    partition = partition_of(path)
    whole = tokenize_partition(open_filesystem(str(path))[0], partition, ReadOptions(), TokenizerConfig())
    lines, counts, docs_read, pieces = piecewise(partition, ReadOptions(piece_bytes=piece_bytes))
    assert pieces == -(-partition.size // piece_bytes) > 3
    assert lines == whole.lines  # no document cut, lost or read twice; the order kept
    assert counts == reference(docs)
    assert docs_read == whole.documents == len(docs)  # empty lines are documents without tokens


@pytest.mark.unit
def test_parquet_pieces_are_runs_of_whole_row_groups(tmp_path: Path) -> None:
    docs = documents(2000, seed=2)
    path = write_row_groups(tmp_path / "p.parquet", docs, rows=200)
    partition = partition_of(path)
    fs = open_filesystem(str(path))[0]
    group = pq.ParquetFile(path).metadata.row_group(1).column(0).total_compressed_size
    pieces = plan(fs, partition, piece_bytes=3 * group)
    assert 3 <= len(pieces) <= 5
    assert [(p.start, p.stop) for p in pieces] == list(
        zip([0, *(p.stop for p in pieces[:-1])], [p.stop for p in pieces], strict=True)
    )
    assert pieces[-1].stop == 10 and all(p.row_groups == 10 for p in pieces)
    assert "row groups 0-" in pieces[0].label and f"piece 1/{len(pieces)}" in pieces[0].label
    whole = tokenize_partition(fs, partition, ReadOptions(), TokenizerConfig())
    lines, counts, docs_read, _ = piecewise(partition, ReadOptions(piece_bytes=3 * group))
    assert lines == whole.lines and counts == reference(docs) and docs_read == whole.documents


@pytest.mark.unit
def test_small_and_compressed_files_are_one_piece(tmp_path: Path) -> None:
    import gzip

    small = partition_of(write_text(tmp_path / "s" / "small.txt", ["one line"]))
    assert [p.whole for p in plan(None, small, piece_bytes=1 << 20)] == [True]  # type: ignore[arg-type]  # no I/O
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "big.txt.gz").write_bytes(gzip.compress("\n".join(documents(500, seed=3)).encode()))
    packed = partition_of(tmp_path / "g" / "big.txt.gz")
    assert packed.size > 1000 and [p.whole for p in plan(None, packed, piece_bytes=1000)] == [True]  # type: ignore[arg-type]


@pytest.mark.unit
def test_running_counts_sum_many_tables_exactly_and_stay_shallow() -> None:
    rng = random.Random(4)
    running, expected = RunningCounts(buffer_rows=500), collections.Counter[str]()
    for _ in range(600):
        words = [f"w{rng.paretovariate(1.2):.0f}" for _ in range(rng.randint(0, 300))]
        table = collections.Counter(words)
        expected.update(table)
        running.add(pa.table({"word": list(table), "count": pa.array(list(table.values()), pa.int64())}))
        assert running.depth <= 12  # tables in the stack: O(log n)
    merged = running.table().to_pydict()
    assert dict(zip(merged["word"], merged["count"], strict=True)) == dict(expected)


def batch(text: str, counts: dict[str, int] | None = None) -> TokenizedBatch:
    table = None
    if counts is not None:
        table = pa.table({"word": list(counts), "count": pa.array(list(counts.values()), pa.int64())})
    lines = [np.frombuffer(text.encode(), np.uint8)]
    return TokenizedBatch(lines, 1, text.count("\n"), len(text.split()), table)


class Broken:
    """A piece whose task failed: fetching it raises, as fetching a failed task's batch does on a cluster."""

    def __init__(self, uri: str) -> None:
        self.uri = uri


def fetch(item: TokenizedBatch | Broken) -> TokenizedBatch:
    if isinstance(item, Broken):
        raise PartitionError(item.uri, "piece 2/3 (bytes 10-20): invalid UTF-8")
    return item


@pytest.mark.component
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


@pytest.mark.component
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


# --- integration: pieces on a real local Ray ---------------------------------------------------------------


def mixed_input(root: Path) -> collections.Counter[str]:
    """A Parquet file of many row groups, a text file of many blocks, and a small JSON Lines file."""
    a, b, c = documents(3000, seed=5), documents(4000, seed=6), clustered(50, seed=7)
    write_row_groups(root / "dt=1" / "events.parquet", a, rows=250)
    write_text(root / "dt=2" / "dump.txt", b)
    write_jsonl(root / "dt=3" / "small.jsonl", c)
    return reference(a) + reference(b) + reference(c)


def spooled(config: RefreshConfig, spool: Path) -> tuple[bytes, IngestResult]:
    """What the trainer spooled for ``config`` (read before the trainer removes it), and the stream's result."""
    fs, root = open_filesystem(config.input)
    spool.mkdir()
    with cluster.trainer_actor(config) as trainer:
        outcome = cluster.stream(config, fs, discover(fs, root), trainer)
        [corpus] = spool.glob("*/corpus.txt")
        return corpus.read_bytes(), outcome


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
def test_a_split_run_spools_what_an_unsplit_run_spools_and_counts_exactly(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    expected = mixed_input(data)
    base = RefreshConfig(input=str(data), store=str(store), training=TrainingConfig(workers=1), max_in_flight=3)
    unsplit = RefreshConfig(
        **{**base.__dict__, "read": ReadOptions(piece_bytes=1 << 30), "spool_dir": str(tmp_path / "u")}
    )
    split = RefreshConfig(
        **{**base.__dict__, "read": ReadOptions(piece_bytes=16 * KiB), "spool_dir": str(tmp_path / "s")}
    )
    whole_spool, whole = spooled(unsplit, tmp_path / "u")
    split_spool, pieces = spooled(split, tmp_path / "s")
    assert whole.pieces == 3 and pieces.pieces > 20
    assert split_spool == whole_spool  # byte for byte: the order of partitions and of their pieces kept
    assert (pieces.documents, pieces.sentences, pieces.tokens) == (whole.documents, whole.sentences, whole.tokens)
    assert pieces.tokens == sum(expected.values()) and pieces.bytes == whole.bytes == sum(
        p.stat().st_size for p in data.rglob("*.*")
    )

    summary = run(from_args(["--input", str(data), "--store", str(store), *FAST, "--piece-bytes", "16KiB"]))
    model, manifest = load_latest(store)
    assert gmodel.counts_of(model) == dict(expected)
    assert summary.tokens == manifest["tokens"] == sum(expected.values())
    assert sorted(p["uri"] for p in manifest["partitions"]) == sorted(str(p) for p in data.rglob("*.*"))


def corrupt_row_group(path: Path, group: int) -> None:
    """Overwrite the middle of one row group's compressed text with zeros (its pages no longer decompress)."""
    column = pq.ParquetFile(path).metadata.row_group(group).column(0)
    data = bytearray(path.read_bytes())
    start = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
    middle = start + column.total_compressed_size // 2
    data[middle : middle + 256] = bytes(256)
    path.write_bytes(bytes(data))


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
def test_a_corrupt_row_group_rejects_its_whole_partition_naming_the_piece(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    good = clustered(200, seed=8)
    write_row_groups(data / "dt=1" / "good.parquet", good, rows=50)
    bad = write_row_groups(data / "dt=1" / "bad.parquet", documents(800, seed=9, prefix="zzbad "), rows=200)
    corrupt_row_group(bad, 2)
    common = ["--input", str(data), "--store", str(store), *FAST, "--piece-bytes", "4KiB"]

    with pytest.raises(BadPartitionsError) as info:
        run(from_args(common))
    [error] = info.value.errors
    assert error.uri == str(bad) and "piece 3/4 (row groups 2-2 of 4)" in error.cause
    assert "snappy" in error.cause.lower()
    assert snapshot(store).keys() == {"rejected/none.json"}  # no version: only what the run found bad

    common += ["--retry-rejected"]  # the lineage recorded it as bad: read it again
    run(from_args([*common, "--skip-bad-partitions"]))
    model, manifest = load_latest(store)
    assert gmodel.counts_of(model) == dict(reference(good))  # nothing of bad.parquet, not even its good pieces
    assert [p["uri"] for p in manifest["partitions"]] == [str(data / "dt=1" / "good.parquet")]
    assert [r["uri"] for r in manifest["rejected"]] == [str(bad)]
    with pytest.raises(BadPartitionsError):  # not consumed: a run with --retry-rejected tries it again
        run(from_args([*common, "--skip-bad-partitions"]))


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
def test_a_worker_killed_inside_a_piece_is_retried_and_counted_once(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    docs = [d for i in range(10) for d in clustered(4000, seed=20 + i)]  # ~3.4 MB: 7 pieces of 4 batches each
    write_text(data / "dt=1" / "day.txt", docs)
    argv = ["--input", str(data), "--store", str(store), *FAST, "--piece-bytes", "512KiB"]

    summary, error = run_while(kill_first("ray::tokenize "), argv)  # the first worker seen reading a piece

    assert error is None, error
    model, manifest = load_latest(store)
    assert gmodel.counts_of(model) == dict(reference(docs))  # the retried piece's batches spooled once
    assert summary.tokens == manifest["tokens"] == sum(reference(docs).values())
    assert [p["uri"] for p in manifest["partitions"]] == [str(data / "dt=1" / "day.txt")]


# --- a worker's peak memory, measured from outside ---------------------------------------------------------

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


@pytest.mark.component
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
