"""Hostile input and faults: exact rejections, exact counts from the good data, and a store left as it was."""

from __future__ import annotations

import collections
import gzip
import io
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.config import from_args
from jobs.errors import BadPartitionsError, ClusterError, TrainingError
from jobs.refresh import run
from jobs.training import model as gmodel
from tests.support.corpora import clustered
from tests.support.files import snapshot, write_parquet
from tests.support.flags import fast
from tests.support.refreshes import kill_first, load_latest, reference, run_while

FAST = fast(max_in_flight=4, tokenize_in_trainer_below=0)  # tokenizing tasks: their faults are the point

ODD_BUT_LEGAL = [
    None,
    "",
    "   \t  ",
    "\n\n",
    "Привет мир, как дела",
    "مرحبا بالعالم",
    "日本語のテキスト 中文",
    "emoji 😀🎉 party 👍🏽 time",
    "cafe\u0301 na\u0131ve déjà vu",  # a combining accent, a dotless i, precomposed
    "token " + "x" * 500 + " after",  # one absurdly long token: dropped by the cap
    " ".join(["long"] * 12_000),  # longer than gensim's sentence limit
]
#: what the tokenizer must make of ODD_BUT_LEGAL (letters and their combining marks, lowercased, 2..40 long)
ODD_COUNTS = collections.Counter(
    "привет мир как дела مرحبا بالعالم 日本語のテキスト 中文 emoji party time "
    "cafe\u0301 na\u0131ve déjà vu token after".split()
) + collections.Counter({"long": 12_000})


def hostile_folder(root: Path) -> tuple[dict[str, str], collections.Counter[str]]:
    """Good and bad partitions side by side. Returns {bad file name: expected cause} and the good counts."""
    good = clustered(80, seed=11)
    write_parquet(root / "dt=1" / "good.parquet", good)
    write_parquet(root / "dt=1" / "odd.parquet", ODD_BUT_LEGAL)
    (root / "dt=1" / "good.jsonl.gz").write_bytes(gzip.compress(b'{"text": "json lines fine"}\n{"text": null}\n'))
    (root / "dt=1" / "_SUCCESS").touch()

    sink = io.BytesIO()
    pq.write_table(pa.table({"text": clustered(50, seed=3)}), sink)
    bad = {
        "truncated.parquet": (sink.getvalue()[: len(sink.getvalue()) // 2], "not a readable Parquet file"),
        "notparquet.parquet": (b"<html>403 Forbidden</html>", "not a readable Parquet file"),
        "empty.parquet": (b"", "empty file"),
        "badutf8.txt": (b"good line\n\xc3\x28 invalid\n", "invalid UTF-8"),
        "malformed.jsonl": (b'{"text": "ok"}\n{"text": "unterminated\n', "malformed JSON line"),
        "garbage.jsonl.gz": (b"\x1f\x8b\x08\x00 not really gzip", "gzip"),
        "garbage.txt.zst": (b"\x28\xb5\x2f\xfd not really zstd", "zstd"),
        "nofield.jsonl": (b'{"body": "no text field"}\n', "no JSON line has the field 'text'"),
    }
    for name, (data, _) in bad.items():
        (root / "dt=2" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "dt=2" / name).write_bytes(data)
    pq.write_table(pa.table({"body": ["missing text column"]}), root / "dt=2" / "nocolumn.parquet")
    pq.write_table(pa.table({"text": [1, 2, 3]}), root / "dt=2" / "numbers.parquet")
    (root / "dt=2" / "_SUCCESS").touch()  # complete: bad, not still being written
    write_parquet(root / "dt=2" / "huge-doc.parquet", ["word " * 300_000])
    causes = {name: cause for name, (_, cause) in bad.items()}
    causes |= {
        "nocolumn.parquet": "no column 'text'",
        "numbers.parquet": "holds int64, not text",
        "huge-doc.parquet": "exceeds the limit of 1,000,000",
    }
    return causes, reference(good) + ODD_COUNTS + collections.Counter("json lines fine".split())


def test_bad_partitions_both_ways(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    causes, expected = hostile_folder(data)
    common = ["--input", str(data), "--store", str(store), *FAST, "--max-document-bytes", "1000000"]

    with pytest.raises(BadPartitionsError) as info:
        run(from_args(common))
    assert {e.uri.rsplit("/", 1)[1]: e.cause for e in info.value.errors}.keys() == causes.keys()
    for error in info.value.errors:
        assert causes[error.uri.rsplit("/", 1)[1]] in error.cause, error
    assert "--skip-bad-partitions" in str(info.value)
    assert snapshot(store).keys() == {"rejected/none.json"}  # no version: only what the run found bad

    # the lineage recorded them as bad; --retry-rejected reads them again
    common += ["--retry-rejected"]
    summary = run(from_args([*common, "--skip-bad-partitions"]))
    model, manifest = load_latest(store)
    assert gmodel.counts_of(model) == dict(expected)
    assert {r["uri"].rsplit("/", 1)[1] for r in manifest["rejected"]} == causes.keys()
    assert {p["uri"].rsplit("/", 1)[1] for p in manifest["partitions"]} == {
        "good.parquet",
        "odd.parquet",
        "good.jsonl.gz",
    }
    assert summary.tokens == sum(expected.values())

    before = snapshot(store)
    with pytest.raises(BadPartitionsError) as again:  # only the bad ones are left: retried, still bad, reported
        run(from_args([*common, "--skip-bad-partitions"]))
    assert len(again.value.errors) == len(causes)
    after = snapshot(store)  # unchanged, but for the record of what the failed run found bad
    assert set(after) - set(before) == {f"rejected/{manifest['version']}.json"}
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_tokenizing_worker_killed_mid_partition_is_retried(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    docs = {i: clustered(4000, seed=i) for i in range(6)}
    for i, part in docs.items():
        write_parquet(data / f"dt={i}" / "p.parquet", part)
    summary, error = run_while(kill_first("ray::tokenize "), ["--input", str(data), "--store", str(store), *FAST])
    assert error is None, error
    model, _ = load_latest(store)
    expected = sum((reference(d) for d in docs.values()), collections.Counter())
    assert gmodel.counts_of(model) == dict(expected)
    assert summary.partitions == 6


def test_the_training_actor_dying_fails_the_run_and_a_rerun_succeeds(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "p.parquet", clustered(3000, seed=1))
    argv = ["--input", str(data), "--store", str(store), *FAST]
    run(from_args(argv))
    write_parquet(data / "dt=2" / "p.parquet", clustered(20000, seed=2))
    before = snapshot(store)
    _, error = run_while(kill_first("ray::Trainer.finish"), [*argv, "--epochs", "30"])
    assert isinstance(error, ClusterError) and "training actor died" in str(error)
    assert snapshot(store) == before
    assert run(from_args(argv)).partitions == 1


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_spool_disk_fails_the_run_cleanly(tmp_path: Path, tiny_disk: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "p.parquet", clustered(2000, seed=1))
    with pytest.raises(TrainingError, match=r"No space left on device.*--spool-dir"):
        run(from_args(["--input", str(data), "--store", str(store), *FAST, "--spool-dir", str(tiny_disk)]))
    assert snapshot(store) == {}
    assert list(tiny_disk.iterdir()) == []


def test_a_worker_that_crashes_on_every_try_fails_the_run_naming_the_stage_and_partition(tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    from jobs import cluster, tokenize
    from jobs.errors import EXIT_RETRYABLE, exit_status
    from shards.partitions import discover
    from tests.support.crashing_fs import CrashingFileSystem

    data = tmp_path / "data"
    write_parquet(data / "dt=1" / "a-good.parquet", clustered(20, seed=1))
    write_parquet(data / "dt=1" / "crash.parquet", clustered(20, seed=2))
    config = from_args(["--input", str(data), "--store", str(tmp_path / "models"), *FAST])
    fs = pafs.PyFileSystem(CrashingFileSystem())
    with cluster.trainer_actor(config, "crash-test") as trainer, pytest.raises(ClusterError) as info:
        tokenize.stream(config, fs, discover(fs, str(data)), trainer)
    message = str(info.value)
    assert message.startswith(f"tokenizing {data}/dt=1/crash.parquet: its worker crashed 4 times")
    assert "a rerun is safe" in message and "Traceback" not in message
    assert exit_status(info.value) == EXIT_RETRYABLE
