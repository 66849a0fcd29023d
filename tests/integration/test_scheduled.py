"""Scheduled refreshes: exactly-once partitions, a vocabulary that remembers, the quality gate, the report."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from gensim.models.callbacks import CallbackAny2Vec

from jobs.config import from_args
from jobs.errors import ConfigError, QualityGateError
from jobs.lineage import ledger
from jobs.refresh import Hooks, run
from jobs.storage import lease, open_store
from jobs.storage.publish import read_manifest, version_key
from jobs.training.gate import OVERLAP
from tests.support.corpora import cluster_words, clustered
from tests.support.files import snapshot, write_parquet
from tests.support.flags import fast

FAST = fast(vector_size=24, epochs=3, min_count=None, max_in_flight=3)


def args(data: Path, store: Path, *extra: str) -> list[str]:
    return ["--input", str(data), "--store", str(store), *FAST, *extra]


def test_three_scheduled_runs_consume_each_partition_exactly_once(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    landed: list[list[str]] = []
    for day in range(3):
        paths = [
            write_parquet(data / f"dt=2026-11-2{day}" / f"part-{i}.parquet", clustered(60, seed=day * 5 + i))
            for i in range(2)
        ]
        landed.append(sorted(str(p) for p in paths))
        summary = run(from_args(args(data, store, "--min-count", "1")))
        assert summary.published and summary.partitions == 2
        manifest = read_manifest(open_store(str(store)), "latest")
        assert sorted(p["uri"] for p in manifest["partitions"]) == landed[-1]

    s = open_store(str(store))
    table = ledger.read(s, s.read_pointer().version).table  # type: ignore[union-attr]
    keys = table.column("key").to_pylist()
    assert sorted(f"{data}/{k}" for k in keys) == sorted(u for day in landed for u in day)
    assert len(set(keys)) == len(keys) == 6
    assert len(set(table.column("version").to_pylist())) == 3

    before = snapshot(store)
    assert run(from_args(args(data, store))).published is False
    assert snapshot(store) == before

    rewritten = Path(landed[0][0])
    write_parquet(rewritten, clustered(61, seed=99))
    os.utime(rewritten, ns=(1, 1))
    quiet = run(from_args(args(data, store)))
    assert (quiet.published, quiet.rewritten) == (False, [str(rewritten)])
    again = run(from_args(args(data, store, "--min-count", "1", "--reprocess-rewritten")))
    assert again.published and again.partitions == 1 and again.rewritten == [str(rewritten)]


def test_a_moved_input_is_recognised_and_a_wrong_one_refused(tmp_path: Path) -> None:
    data, store = tmp_path / "mnt-a" / "events", tmp_path / "models"
    for day in (1, 2):
        write_parquet(data / f"dt={day}" / "p.parquet", clustered(60, seed=day))
    first = run(from_args(args(data, store, "--min-count", "1")))
    assert first.published and first.partitions == 2

    # the same data, mounted elsewhere (a copy that keeps sizes and mtimes): nothing is new
    shutil.copytree(tmp_path / "mnt-a", tmp_path / "mnt-b", copy_function=shutil.copy2)
    moved = tmp_path / "mnt-b" / "events"
    write_parquet(moved / "dt=3" / "p.parquet", clustered(60, seed=3))
    second = run(from_args(args(moved, store, "--min-count", "1")))
    assert second.published and second.partitions == 1
    manifest = read_manifest(open_store(str(store)), "latest")
    assert [p["key"] for p in manifest["partitions"]] == ["dt=3/p.parquet"]

    # one folder too deep: every key differs, so the run refuses rather than retraining the history
    before = snapshot(store)
    with pytest.raises(ConfigError, match="--allow-new-input"):
        run(from_args(args(moved / "dt=1", store, "--min-count", "1")))
    assert snapshot(store) == before
    forced = run(from_args(args(moved / "dt=1", store, "--min-count", "1", "--allow-new-input")))
    assert forced.published and forced.partitions == 1


def test_a_folder_still_being_written_waits_for_its_success_marker(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "part-0.parquet", clustered(60, seed=1))
    (data / "dt=1" / "_SUCCESS").touch()
    write_parquet(data / "dt=2" / "part-0.parquet", clustered(60, seed=2))  # the job is still writing dt=2
    (data / "dt=2" / "part-1.jsonl.inprogress").write_bytes(b'{"text": "half a li')
    first = run(from_args(args(data, store, "--min-count", "1")))
    assert first.published and first.partitions == 1
    assert sorted(w["uri"].rsplit("/", 1)[1] for w in first.waiting) == ["part-0.parquet", "part-1.jsonl.inprogress"]

    before = snapshot(store)
    quiet = run(from_args(args(data, store, "--min-count", "1")))
    assert not quiet.published and len(quiet.waiting) == 2 and snapshot(store) == before

    (data / "dt=2" / "_SUCCESS").touch()  # the job finished (and renamed its file)
    (data / "dt=2" / "part-1.jsonl.inprogress").rename(data / "dt=2" / "part-1.jsonl")
    (data / "dt=2" / "part-1.jsonl").write_bytes(b'{"text": "caxaa kaqaa the whole line"}\n')
    second = run(from_args(args(data, store, "--min-count", "1")))
    assert second.published and second.partitions == 2 and second.waiting == []
    manifest = read_manifest(open_store(str(store)), "latest")
    assert sorted(p["key"] for p in manifest["partitions"]) == ["dt=2/part-0.parquet", "dt=2/part-1.jsonl"]


def test_partitions_without_tokens_move_the_lineage_past_them_without_training(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "p.parquet", clustered(100, seed=1))
    first = run(from_args(args(data, store, "--min-count", "1")))
    write_parquet(data / "dt=2" / "numbers.parquet", ["123 456", "", None, "  7 "])
    (data / "dt=2" / "ids.txt").write_text("1\n22\n333\n")

    empty = run(from_args(args(data, store, "--min-count", "1")))
    assert (empty.published, empty.partitions, empty.tokens, empty.parent) == (True, 2, 0, first.version)
    s = open_store(str(store))
    assert s.read_pointer().version == empty.version
    parent, carried = read_manifest(s, first.version), read_manifest(s, empty.version)
    assert carried["carried_from"] == first.version and carried["vocab_size"] == parent["vocab_size"]
    own = (*ledger.NAMES, "config.json", "report.md", "report.json")
    model_files = [n for n in parent["files"] if n not in own]
    assert model_files and all(carried["files"][n] == parent["files"][n] for n in model_files)
    assert set(carried["files"]) & set(ledger.NAMES) == {ledger.DELTA}  # not the parent's full ledger too
    consumed = ledger.read(s, empty.version).table.column("key").to_pylist()
    assert sorted(consumed) == ["dt=1/p.parquet", "dt=2/ids.txt", "dt=2/numbers.parquet"]
    assert "held no tokens" in s.get_bytes(version_key(empty.version, "report.md")).decode()

    assert run(from_args(args(data, store, "--min-count", "1"))).published is False  # not retried every night
    write_parquet(data / "dt=3" / "p.parquet", clustered(100, seed=3, extra={2: ["novelaa"]}))
    later = run(from_args(args(data, store, "--min-count", "1")))
    assert later.published and later.parent == empty.version and later.partitions == 1 and later.new_words == 1
    # each run named its parent before writing anything else of its version (what gc keeps for a run in progress)
    claimed = [lease.claimed(s, v) for v in (first.version, empty.version, later.version)]
    assert claimed == [None, first.version, empty.version]
    assert lease.NAME not in carried["files"]  # scaffolding, not part of the version


def test_filters_pick_partitions_by_date_and_hive_key(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    for day in ("2026-11-20", "2026-11-24"):
        for region in ("eu", "us"):
            write_parquet(data / f"dt={day}" / f"region={region}" / "p.parquet", clustered(30, seed=len(region)))
    summary = run(from_args(args(data, store, "--min-count", "1", "--since", "2026-11-21", "--where", "region=e*")))
    manifest = read_manifest(open_store(str(store)), "latest")
    assert summary.partitions == 1
    assert manifest["partitions"][0]["uri"] == str(data / "dt=2026-11-24" / "region=eu" / "p.parquet")


@pytest.mark.parametrize(("policy", "enters"), [("remember", True), ("gensim", False)])
def test_a_word_under_min_count_in_each_run_but_over_it_in_total(tmp_path: Path, policy: str, enters: bool) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    base = clustered(200, seed=1)
    write_parquet(data / "dt=1" / "p.parquet", [*base, "slowword appears", "slowword again", "slowword thrice"])
    run(from_args(args(data, store, "--min-count", "5", "--vocab-policy", policy)))
    write_parquet(data / "dt=2" / "p.parquet", [*clustered(200, seed=2), "slowword one", "slowword two", "slowword x"])
    summary = run(from_args(args(data, store, "--min-count", "5", "--vocab-policy", policy)))
    manifest = read_manifest(open_store(str(store)), "latest")
    assert ("slowword" in manifest["new_words_sample"]) is enters
    assert summary.new_words == (1 if enters else 0)  # only slowword can be new


class Scramble(CallbackAny2Vec):  # type: ignore[misc]
    """Permute the trained vectors among the words: what a diverged update looks like to the gate."""

    def on_train_end(self, model: object) -> None:
        vectors = model.wv.vectors  # type: ignore[attr-defined]
        vectors[:] = np.random.default_rng(5).permutation(vectors)


def test_an_update_passes_the_gate_at_default_thresholds_and_learns_new_words(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    # 14,400 tokens a partition: trained exactly three times, fewer would not reliably show the clusters.
    write_parquet(data / "dt=1" / "p.parquet", clustered(1200, seed=1))
    run(from_args(args(data, store, "--min-count", "1")))
    write_parquet(data / "dt=2" / "p.parquet", clustered(1200, seed=2, extra={1: ["novelaa"]}))
    pairs = tmp_path / "pairs.tsv"
    words = cluster_words(0) + cluster_words(3)
    pairs.write_text(
        "# word1\tword2\tscore\n"
        + "".join(
            f"{a}\t{b}\t{10.0 if (a in cluster_words(0)) == (b in cluster_words(0)) else 0.0}\n"
            for a in words[::3]
            for b in words[1::3]
        )
    )
    update = run(from_args(args(data, store, "--min-count", "1", "--eval-similarity", str(pairs))))
    s = open_store(str(store))
    assert s.read_pointer().version == update.version
    manifest = read_manifest(s, update.version)
    assert manifest["evaluation"]["passed"] is True
    [overlap] = [c for c in manifest["evaluation"]["checks"] if c["name"] == "neighbourhood overlap"]
    # the first update of a lineage: no history yet, so the floor is what random vectors reach by chance
    assert overlap["candidate"] >= overlap["threshold"] == overlap["floor"]["chance"] > 0
    assert (overlap["floor"]["bound"], overlap["history"]) == ("chance", [])
    [similarity] = [c for c in manifest["evaluation"]["checks"] if c["name"] == "similarity pairs.tsv"]
    assert similarity["candidate"] > 0.5 and isinstance(similarity["parent"], float)  # clusters are learnt
    report = s.get_bytes(version_key(update.version, "report.md")).decode()
    near = report.split("**novelaa**: ")[1].splitlines()[0]
    assert sum(w in near for w in cluster_words(1)) >= 2, near


def test_gate_failure_keeps_the_pointer_and_force_promotes(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    # enough tokens that the first model trains (one that barely did is no reference: see test_gate_lineage)
    write_parquet(data / "dt=1" / "p.parquet", clustered(1200, seed=1))
    first = run(from_args(args(data, store, "--min-count", "1")))
    write_parquet(data / "dt=2" / "p.parquet", clustered(1200, seed=2))
    scrambled = Hooks(training_callbacks=(Scramble(),))

    with pytest.raises(QualityGateError, match=r"NOT promoted") as failure:
        run(from_args(args(data, store, "--min-count", "1")), scrambled)  # default thresholds
    assert "(neighbourhood overlap: 0." in str(failure.value)  # the message names the check that caught it
    s = open_store(str(store))
    assert s.read_pointer().version == first.version
    [failed] = [v for v in s.list_versions() if v != first.version]
    manifest = read_manifest(s, failed)
    assert manifest["evaluation"]["passed"] is False
    assert manifest["evaluation"]["reasons"][0].startswith("neighbourhood overlap: ")
    checks = {c["name"]: c for c in manifest["evaluation"]["checks"]}
    assert set(checks) == {OVERLAP, "vector norms", "collapse", "finite values"}
    overlap = checks[OVERLAP]
    assert overlap["passed"] is False and overlap["candidate"] < overlap["threshold"] and "<" in overlap["why"]
    assert (overlap["floor"]["bound"], overlap["history"]) == ("chance", [])  # the lineage's first update
    assert checks["finite values"]["passed"] and checks["collapse"]["passed"]

    forced = run(from_args(args(data, store, "--min-count", "1", "--force")), scrambled)
    assert s.read_pointer().version == forced.version
    report = s.get_bytes(version_key(forced.version, "report.md")).decode()
    assert "Quality gate: FAILED" in report and "- neighbourhood overlap: candidate" in report


def test_nightly_runs_through_compaction_and_a_relist_window_consume_every_partition_once(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    sentences: dict[str, int] = {}

    def land(key: str) -> None:
        sentences[key] = 10 + len(sentences)  # a distinct token count per partition: 12 tokens a sentence
        write_parquet(data / key, clustered(sentences[key], seed=len(sentences)))

    nightly = ("--min-count", "1", "--relist-days", "1", "--ledger-compact-every", "2")
    consumed: list[list[str]] = []

    def refresh(*flags: str) -> None:
        summary = run(from_args(args(data, store, *flags)))
        manifest = read_manifest(open_store(str(store)), "latest")
        keys = sorted(p["key"] for p in manifest["partitions"])
        assert summary.published and summary.tokens == manifest["tokens"] == 12 * sum(sentences[k] for k in keys)
        assert manifest["consumed"] == {
            "partitions": len(keys),
            "bytes": sum((data / k).stat().st_size for k in keys),
            "named": len(keys),
        }
        consumed.append(keys)

    land("dt=2026-11-01/a.parquet")
    land("dt=2026-11-02/a.parquet")
    refresh(*nightly)
    land("dt=2026-11-03/a.parquet")
    land("dt=2026-11-02/late.parquet")  # late, in a folder within a day of the newest consumed
    refresh(*nightly)
    land("dt=2026-11-04/a.parquet")
    land("dt=2026-11-01/late.parquet")  # late, two days before the newest consumed: outside the window
    refresh(*nightly)
    refresh("--min-count", "1", "--ledger-compact-every", "2")  # a run without the window finds it
    assert consumed == [
        ["dt=2026-11-01/a.parquet", "dt=2026-11-02/a.parquet"],
        ["dt=2026-11-02/late.parquet", "dt=2026-11-03/a.parquet"],
        ["dt=2026-11-04/a.parquet"],
        ["dt=2026-11-01/late.parquet"],
    ]
    s = open_store(str(store))
    versions = s.list_versions()
    assert [read_manifest(s, v)["ledger"]["kind"] for v in versions] == ["full", "delta", "full", "delta"]
    table = ledger.read(s, versions[-1]).table
    assert sorted(table.column("key").to_pylist()) == sorted(sentences)  # each once, none twice
    assert read_manifest(s, versions[-1])["ledger"]["rows"] == len(sentences) == 6
    assert run(from_args(args(data, store, "--min-count", "1"))).published is False
