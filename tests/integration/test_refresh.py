"""The refresh end to end on a real local Ray cluster, with real gensim training and a local store."""

from __future__ import annotations

import collections
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from gensim.models.callbacks import CallbackAny2Vec

from jobs.config import from_args
from jobs.errors import EXIT_RETRYABLE, BadPartitionsError, ClusterError, TrainingError, exit_status
from jobs.lineage.counts import read_counts
from jobs.refresh import Hooks, main, run
from jobs.storage import open_store
from jobs.storage.publish import read_manifest
from jobs.training import model as gmodel
from tests.support.corpora import cluster_words, clustered
from tests.support.files import snapshot, write_parquet
from tests.support.flags import fast
from tests.support.refreshes import load_latest, miss_the_last_batch

FAST = fast(vector_size=24, epochs=3, max_in_flight=3)


def args(data: Path, store: Path, *extra: str) -> list[str]:
    return ["--input", str(data), "--store", str(store), *FAST, *extra]


def reference_counts(docs: list[str | None]) -> collections.Counter[str]:
    """Single-process, per-document reference count with the default tokenizer's semantics."""
    counts: collections.Counter[str] = collections.Counter()
    for doc in docs:
        counts.update(t for t in re.findall(r"[^\W\d_]+", (doc or "").lower()) if 2 <= len(t) <= 40)
    return counts


def test_a_trainer_that_misses_a_range_fails_the_run_and_publishes_nothing(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    docs = clustered(2000, seed=4)  # 24,000 tokens: three batches
    write_parquet(data / "dt=1" / "part-0.parquet", docs)
    tokens = sum(reference_counts(docs).values())
    run(from_args(args(data, store)))
    _, manifest = load_latest(store)
    assert manifest["trained"]["summary"] == f"trained {tokens:,} of {tokens:,} tokens per epoch"
    assert manifest["trained"]["trained_per_epoch"] == [tokens] * 3 and manifest["trained"]["threads"] == 2
    assert manifest["learning_rate"]["first_batch"] == pytest.approx(manifest["learning_rate"]["start"], abs=1e-6)

    write_parquet(data / "dt=2" / "part-0.parquet", docs)
    before = snapshot(store)
    with pytest.raises(TrainingError, match=rf"epoch 1 trained [\d,]+ of {tokens:,} spooled tokens") as info:
        run(from_args(args(data, store)), Hooks(training_split=miss_the_last_batch))
    assert int(str(info.value).split(" trained ")[1].split(" of ")[0].replace(",", "")) < tokens
    assert snapshot(store) == before


def test_vocabulary_counts_equal_a_single_process_count(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    all_docs: list[str | None] = []
    for day in range(3):
        for part in range(3):
            docs = [*clustered(40, seed=day * 10 + part), None, "", f"Mixed CASE, punctuation! {day}{part}"]
            all_docs += docs
            write_parquet(data / f"dt=2026-11-2{day}" / f"part-{part:05d}.parquet", docs)
    for day in range(3):
        (data / f"dt=2026-11-2{day}" / "_SUCCESS").touch()  # writer leftovers are not partitions

    summary = run(from_args(args(data, store)))

    model, manifest = load_latest(store)
    expected = reference_counts(all_docs)
    assert gmodel.counts_of(model) == dict(expected)
    assert summary.tokens == manifest["tokens"] == sum(expected.values())
    assert summary.partitions == len(manifest["partitions"]) == 9
    assert sorted(p["uri"] for p in manifest["partitions"]) == sorted(str(p) for p in data.rglob("*.parquet"))


class ExplodeAtEpoch(CallbackAny2Vec):  # type: ignore[misc]
    """A fault seam: gensim calls it inside training."""

    def on_epoch_end(self, model: object) -> None:
        raise RuntimeError("injected failure inside training")


def test_first_update_and_nothing_new_then_a_failed_run_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "part-0.parquet", clustered(300, seed=1))

    first = run(from_args(args(data, store)))
    assert first.published and first.parent is None
    old_model, _ = load_latest(store)
    old_counts = gmodel.counts_of(old_model)

    newcomers = {0: ["novelaa", "novelab"], 2: ["novelba"]}
    write_parquet(data / "dt=2" / "part-0.parquet", clustered(300, seed=2, extra=newcomers))
    second = run(from_args(args(data, store, "--epochs", "8")))
    assert second.published and second.parent == first.version and second.partitions == 1

    model, manifest = load_latest(store)
    assert manifest["parent"] == first.version
    assert set(manifest["new_words_sample"]) == {"novelaa", "novelab", "novelba"}
    assert set(old_counts) < set(model.wv.key_to_index)
    second_counts = reference_counts(clustered(300, seed=2, extra=newcomers))
    for word, count in old_counts.items():
        assert model.wv.get_vecattr(word, "count") == count + second_counts[word]
    for new, cluster in (("novelaa", 0), ("novelab", 0), ("novelba", 2)):
        near = [w for w, _ in model.wv.most_similar(new, topn=5) if not w.startswith("novel")]
        mates = set(cluster_words(cluster)) | {w for w in model.wv.key_to_index if w.startswith(f"k{'abcd'[cluster]}q")}
        assert sum(w in mates for w in near) >= len(near) - 1, (new, near)

    before = snapshot(store)
    assert main(args(data, store)) == 0  # nothing new: exit 0, nothing published
    assert snapshot(store) == before

    write_parquet(data / "dt=3" / "part-0.parquet", clustered(50, seed=3))
    with pytest.raises(TrainingError, match="injected failure inside training"):
        run(from_args(args(data, store)), Hooks(training_callbacks=(ExplodeAtEpoch(),)))
    assert snapshot(store) == before


def test_words_past_the_sentence_limit_are_trained(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    filler = clustered(1000, seed=5)
    long_doc = " ".join(filler)[: 10_000 * 6]
    head = long_doc.split()[:10_000]
    tail = ["tailaa tailab tailac"] * 300
    write_parquet(data / "dt=1" / "part-0.parquet", [" ".join(head + " ".join(tail).split())])

    run(from_args(args(data, store, "--epochs", "5")))

    model, manifest = load_latest(store)
    assert manifest["sentences"] == 2 and manifest["tokens"] == 10_000 + 900
    init_bound = 0.5 / model.vector_size * np.sqrt(model.vector_size)  # gensim's largest initial norm
    for word in ("tailaa", "tailab", "tailac"):
        assert np.linalg.norm(model.wv[word]) > 3 * init_bound, word


def test_bad_partitions_fail_the_run_or_are_skipped_and_recorded(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "good.parquet", clustered(100, seed=7))
    (data / "dt=1" / "broken.parquet").write_bytes(b"PAR1 truncated")
    (data / "dt=1" / "bad.jsonl").write_bytes(b'{"text": "fine"}\n{oops\n')

    with pytest.raises(BadPartitionsError) as info:
        run(from_args(args(data, store)))
    assert [e.uri.rsplit("/", 1)[1] for e in info.value.errors] == ["bad.jsonl", "broken.parquet"]
    assert snapshot(store).keys() == {"rejected/none.json"}  # no version: only what the run found bad

    # read again (the lineage recorded them as bad: tests/unit/test_plan.py covers leaving them alone)
    summary = run(from_args(args(data, store, "--skip-bad-partitions", "--retry-rejected")))
    model, manifest = load_latest(store)
    assert [r["uri"].rsplit("/", 1)[1] for r in manifest["rejected"]] == ["bad.jsonl", "broken.parquet"]
    assert [p["uri"].rsplit("/", 1)[1] for p in manifest["partitions"]] == ["good.parquet"]
    assert gmodel.counts_of(model) == dict(reference_counts(clustered(100, seed=7)))
    assert summary.partitions == 1

    (data / "dt=1" / "bad.jsonl").write_bytes(b'{"text": "repaired partition"}\n')
    repaired = run(from_args(args(data, store, "--skip-bad-partitions", "--retry-rejected")))
    _, manifest = load_latest(store)
    assert [p["uri"].rsplit("/", 1)[1] for p in manifest["partitions"]] == ["bad.jsonl"]
    assert [r["uri"].rsplit("/", 1)[1] for r in manifest["rejected"]] == ["broken.parquet"]
    assert repaired.tokens == 2


def test_a_gzip_bomb_is_a_bad_partition_and_links_out_of_the_input_are_not_read(tmp_path: Path) -> None:
    data, store, home = tmp_path / "data", tmp_path / "models", tmp_path / "home"
    write_parquet(data / "dt=1" / "good.parquet", clustered(100, seed=7))
    (data / "dt=1" / "one-line.txt.gz").write_bytes(gzip.compress(b"a" * (1 << 20)) * 4)  # 4 MiB, no newline
    (home / "notes").mkdir(parents=True)
    (home / "auth_token").write_text("zqsecret\n")
    (home / "notes" / "n.txt").write_text("zqoutside\n")
    (data / "dt=1" / "token.txt").symlink_to(home / "auth_token")
    (data / "dt=2").symlink_to(home / "notes", target_is_directory=True)
    (data / "dt=3").mkdir()
    (data / "dt=3" / "words.txt").write_text("zqinside\n")
    (data / "dt=3" / "alias.txt").symlink_to("words.txt")  # a link inside the input is read
    hostile = [*args(data, store), "--max-document-bytes", "1MiB", "--min-count", "2"]

    def trained() -> tuple[list[str], dict[str, int], set[str]]:
        model, manifest = load_latest(store)
        [pending] = (store / "versions" / manifest["version"]).rglob("pending.parquet")
        keys = [p["uri"][len(str(data)) + 1 :] for p in manifest["partitions"]]
        return keys, gmodel.counts_of(model), set(read_counts(pending))

    assert main(hostile) == 3  # a bad partition, not an out-of-memory kill (75) of a worker
    assert snapshot(store).keys() == {"rejected/none.json"}  # no version: only what the run found bad

    run(from_args([*hostile, "--skip-bad-partitions", "--retry-rejected"]))  # read it again: still bad
    _, manifest = load_latest(store)
    assert manifest["rejected"] == [
        {
            "uri": str(data / "dt=1" / "one-line.txt.gz"),
            "cause": "a line of more than 1,048,576 bytes starting at byte 0 of the decompressed text exceeds the "
            "limit of 1,048,576 (raise --max-document-bytes)",
        }
    ]
    keys, counts, pending = trained()
    assert keys == ["dt=1/good.parquet", "dt=3/alias.txt", "dt=3/words.txt"]
    assert counts["zqinside"] == 2 and counts == {**dict(reference_counts(clustered(100, seed=7))), "zqinside": 2}
    assert not {"zqsecret", "zqoutside"} & (set(counts) | pending)

    run(from_args([*hostile, "--skip-bad-partitions", "--follow-symlinks"]))
    keys, counts, pending = trained()
    assert keys == ["dt=1/token.txt", "dt=2/n.txt"]
    assert {"zqsecret", "zqoutside"} <= pending  # once each: below --min-count 2, remembered


def test_cli_json_summary_and_models_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.versions import main as versions_main

    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "part-0.parquet", clustered(100, seed=9))
    assert main([*args(data, store), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    line = json.loads(out[-1])
    assert {"version", "parent", "published", "partitions", "tokens", "new_words", "vocab_size", "seconds"} <= set(line)
    assert line["published"] is True and line["parent"] is None and line["partitions"] == 1
    # the time beyond gensim's train(), for every user: the summary, the manifest and the report
    assert line["outside_training"] == pytest.approx(line["seconds"] - line["timings"]["train"], abs=2e-3)
    assert 0 < line["outside_training"] < line[
        "seconds"
    ] and f"(outside training {line['outside_training']:.1f}s)" in "\n".join(out)
    s = open_store(str(store))
    manifest = read_manifest(s, line["version"])
    report = json.loads(s.get_bytes(f"versions/{line['version']}/report.json"))
    assert manifest["tokenized_in_trainer"] is True  # a small increment: no tokenizing task
    for recorded in (manifest, report):  # the run's time up to its commit: within the whole run's
        assert 0 < recorded["outside_training"] <= line["outside_training"]
        assert recorded["timings"]["train"] == round(line["timings"]["train"], 3)
    assert report["seconds"] - report["outside_training"] == pytest.approx(report["timings"]["train"], abs=2e-3)
    report_md = s.get_bytes(f"versions/{line['version']}/report.md").decode()
    assert f"of which {report['outside_training']:.1f} s outside training" in report_md

    assert versions_main(["list", "--store", str(store)]) == 0
    assert f"* {line['version']}" in capsys.readouterr().out
    out = tmp_path / "vectors.txt"
    assert versions_main(["export", "latest", "--store", str(store), "--output", str(out)]) == 0
    header = out.read_text().splitlines()[0].split()
    assert header == [str(line["vocab_size"]), "24"]
    assert versions_main(["show", "nope", "--store", str(store)]) == 3  # VersionNotFound: refused, as errors.py says


def test_a_trainer_node_that_never_comes_fails_the_run_in_time(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "part-0.parquet", clustered(20, seed=1))
    argv = args(
        data,
        store,
        "--require-trainer-resource",
        "--workers",
        "1",
        "--trainer-resource",
        "nowhere",
        "--trainer-start-timeout",
        "3",
    )
    # a capacity problem, not the data's: retryable (it was a TrainingError, exit 3, before)
    with pytest.raises(ClusterError, match=r"no partition reached the training actor within 3 s.*'nowhere'") as info:
        run(from_args(argv))
    assert exit_status(info.value) == EXIT_RETRYABLE
    assert snapshot(store) == {}
    assert run(from_args(args(data, store))).published  # the reservation was released
