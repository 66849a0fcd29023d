"""A lineage over several nights on a real local Ray cluster: a bad partition fails one night and is then left
alone until it changes; a dry run says what a run would do and writes nothing; an update keeps the lineage's
tokenizer and architecture, refuses a change without the user's word, and records the change it was allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobs import refresh
from jobs.config import from_args
from jobs.lineage import rejections
from jobs.refresh import main, run
from jobs.storage import open_store
from jobs.storage.publish import read_manifest, read_recorded, version_key, write_manifest
from tests.support import REPO
from tests.support.corpora import clustered
from tests.support.files import snapshot, write_parquet
from tests.support.flags import fast

FAST = fast(min_count=2, max_in_flight=3)


def consumed(manifest: dict[str, Any]) -> list[str]:
    return [p["key"] for p in manifest["partitions"]]


def recorded(manifest: dict[str, Any]) -> list[str]:
    return [r["key"] for r in manifest["rejections"]["partitions"]]


def last_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def test_a_bad_partition_fails_one_night_then_waits_for_a_change_and_a_dry_run_tells_every_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    day1 = data / "dt=2026-11-01"
    write_parquet(day1 / "good.parquet", clustered(60, seed=1))
    (day1 / "broken.parquet").write_bytes(b"PAR1 truncated")
    (day1 / "bad.jsonl").write_bytes(b'{"text": "fine"}\n{oops\n')
    argv = ["--input", str(data), "--store", str(store), *FAST]
    s = open_store(str(store))

    # Night 1 fails loudly and publishes nothing, but records what it found bad beside the (absent) parent.
    assert main(argv) == 3
    assert s.read_pointer() is None
    assert [r.key for r in rejections.pending(s, None)] == ["dt=2026-11-01/bad.jsonl", "dt=2026-11-01/broken.parquet"]

    # Night 2, without --skip-bad-partitions: new data and night 1's good partition; the bad ones are left alone.
    write_parquet(data / "dt=2026-11-02" / "part-0.parquet", clustered(60, seed=2))
    assert main([*argv, "--json"]) == 0
    line = last_json(capsys)
    assert line["published"] and line["rejected"] == []
    assert [r["uri"] for r in line["rejected_before"]] == [str(day1 / "bad.jsonl"), str(day1 / "broken.parquet")]
    assert "Parquet magic bytes not found" in line["rejected_before"][1]["cause"]
    manifest = read_manifest(s, "latest")
    assert consumed(manifest) == ["dt=2026-11-01/good.parquet", "dt=2026-11-02/part-0.parquet"]
    assert recorded(manifest) == ["dt=2026-11-01/bad.jsonl", "dt=2026-11-01/broken.parquet"]
    assert manifest["lineage"]["architecture"]["window"] == 5

    # Night 3 reads the list from its parent's manifest; the rewritten partition is read again, consumed, and off
    # the list. (With a change of window the user allowed: applied to the loaded model, and recorded.)
    write_parquet(data / "dt=2026-11-03" / "part-0.parquet", clustered(60, seed=3))
    write_parquet(day1 / "broken.parquet", clustered(40, seed=4))
    assert main([*argv, "--window", "3", "--allow-setting-change", "window"]) == 0
    manifest = read_manifest(s, "latest")
    assert consumed(manifest) == ["dt=2026-11-01/broken.parquet", "dt=2026-11-03/part-0.parquet"]
    assert recorded(manifest) == ["dt=2026-11-01/bad.jsonl"] and manifest["rejected"] == []
    assert manifest["lineage"]["changed"] == [{"setting": "window", "from": 5, "to": 3}]
    assert json.loads(read_recorded(s, manifest, "model/params.json"))["model"]["window"] == 3

    # A dry run over every class, in a process of its own pointed at no Ray cluster: it must start none.
    write_parquet(day1 / "good.parquet", clustered(61, seed=1))  # consumed on night 2, rewritten since
    write_parquet(data / "dt=2026-11-04" / "part-0.parquet", clustered(20, seed=5))  # new
    (data / "dt=2026-11-04" / "cut.parquet").write_bytes(b"PAR1 cut short")  # new, and its footer is unreadable
    (data / "dt=2026-11-04" / "notes.csv").write_bytes(b"a,b\n")  # new, of no known type
    write_parquet(data / "dt=2026-11-05" / "part-0.parquet", clustered(20, seed=6))  # a committer is writing
    (data / "dt=2026-11-05" / "_temporary" / "0").mkdir(parents=True)
    before, runs_before = snapshot(store), sorted((store / "runs").iterdir())
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "jobs.refresh", *argv, "--dry-run", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout.strip().splitlines()[-1])
    assert plan["dry_run"] is True and plan["parent"] == manifest["version"]
    assert plan["consume"] == [str(data / "dt=2026-11-04" / "part-0.parquet")]
    assert plan["rewritten"] == [str(day1 / "good.parquet")]
    assert [w["uri"] for w in plan["waiting"]] == [str(data / "dt=2026-11-05" / "part-0.parquet")]
    assert "dt=2026-11-05/ holds a staging folder" in plan["waiting"][0]["reason"]
    assert [(r["uri"], r["recorded"]) for r in plan["rejected"]] == [
        (str(day1 / "bad.jsonl"), True),
        (str(data / "dt=2026-11-04" / "cut.parquet"), False),
        (str(data / "dt=2026-11-04" / "notes.csv"), False),
    ]
    assert "not a readable Parquet file" in plan["rejected"][1]["cause"]
    assert "unrecognized file type" in plan["rejected"][2]["cause"]
    assert plan["deferred"] == [] and plan["already_consumed"] == 3 and plan["found"] == 9
    assert "would consume 1:" in done.stdout
    assert snapshot(store) == before and sorted((store / "runs").iterdir()) == runs_before  # not even a record


def test_a_lineage_keeps_its_tokenizer_and_architecture_unless_a_change_is_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    argv = ["--input", str(data), "--store", str(store), *FAST]
    s = open_store(str(store))

    def day(n: int) -> None:
        write_parquet(data / f"dt=2026-11-0{n}" / "part-0.parquet", clustered(80, seed=n))

    day(1)
    first = run(from_args([*argv, "--model", "fasttext", "--min-n", "3", "--max-n", "4", "--bucket", "2000"]))

    # A change without the user's word is refused before anything is read or written.
    day(2)
    before = snapshot(store)
    assert main([*argv, "--deaccent", "--vector-size", "32", "--allow-setting-change", "window"]) == 2
    message = capsys.readouterr().err
    assert "--deaccent gives deaccent True; the lineage's is False" in message
    assert "--vector-size gives vector_size 32; the lineage's is 16" in message
    assert "--allow-setting-change deaccent" in message and "new lineage" in message
    assert snapshot(store) == before

    # As a version written before the lineage record: no record, and the training section an update wrote then
    # (its own flags, not the model's). Its architecture is read from the model, its tokenizer from the manifest.
    old = read_manifest(s, "latest")
    assert old["lineage"]["architecture"]["model"] == "fasttext"
    del old["lineage"]
    write_manifest(s, str(first.version), {**old, "training": {"model": "word2vec", "vector_size": 100}})

    # An update with no architecture flag, and a tokenizer change the user allowed.
    run(from_args([*argv, "--deaccent", "--allow-setting-change", "deaccent"]))
    manifest = read_manifest(s, "latest")
    architecture = {
        "model": "fasttext",
        "vector_size": 16,
        "window": 5,
        "sg": 0,
        "negative": 5,
        "sample": 0.001,
        "min_count": 2,
        "cbow_mean": 1,
        "ns_exponent": 0.75,
        "min_n": 3,
        "max_n": 4,
        "bucket": 2000,
    }
    assert manifest["model"] == "fasttext" and manifest["lineage"]["architecture"] == architecture
    assert {k: manifest["training"][k] for k in architecture} == architecture
    assert manifest["lineage"]["changed"] == [{"setting": "deaccent", "from": False, "to": True}]
    assert manifest["lineage"]["tokenizer"]["deaccent"] is True and manifest["tokenizer"]["deaccent"] is True
    config = json.loads(s.get_bytes(version_key(manifest["version"], "config.json")))
    assert config["training"]["model"] == "fasttext" and config["training"]["bucket"] == 2000
    assert config["allow_setting_change"] == ["deaccent"]
    params = json.loads(read_recorded(s, manifest, "model/params.json"))
    assert params["lifecycle_events"][-1]["settings_changed"] == manifest["lineage"]["changed"]

    # The next run inherits all of it.
    inherited = refresh.begin(from_args(argv), s, s.read_pointer()).config
    assert inherited.tokenizer.deaccent is True and inherited.training.model == "fasttext"
    assert (inherited.training.vector_size, inherited.training.bucket, inherited.training.max_n) == (16, 2000, 4)
