"""Partitions split into pieces: every document read once, the same spool as unsplit, exact counts, a bad piece
rejecting its whole partition, a retried piece counted once, and a worker's memory that follows the piece."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from jobs import cluster, tokenize
from jobs.config import RefreshConfig, TrainingConfig, from_args
from jobs.errors import BadPartitionsError
from jobs.ingest import IngestResult
from jobs.refresh import run
from jobs.training import model as gmodel
from shards.partitions import discover, open_filesystem
from shards.tokenized import ReadOptions
from tests.support.corpora import clustered
from tests.support.files import snapshot
from tests.support.flags import fast
from tests.support.refreshes import kill_first, load_latest, reference, run_while
from tests.support.split import KiB, corrupt_row_group, documents, write_jsonl, write_row_groups, write_text

FAST = fast(workers=1, epochs=1, max_in_flight=4, tokenize_in_trainer_below=0)  # pieces as tasks, however small


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
        outcome = tokenize.stream(config, fs, discover(fs, root), trainer)
        [corpus] = spool.glob("*/corpus.txt")
        return corpus.read_bytes(), outcome


@pytest.mark.usefixtures("ray_session")
def test_a_split_run_spools_what_an_unsplit_run_spools_and_counts_exactly(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    expected = mixed_input(data)
    base = RefreshConfig(
        input=str(data),
        store=str(store),
        training=TrainingConfig(workers=1),
        max_in_flight=3,
        tokenize_in_trainer_below=0,
    )
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
