"""Deciding what a run takes, without Ray: the date window and the oldest-first limit, the lineage's rejected
partitions, and the lineage's settings an update inherits or is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jobs import plan
from jobs.config import from_args
from jobs.errors import ConfigError, IntegrityError, PartitionError
from jobs.lineage import rejections, settings
from jobs.storage import open_store
from jobs.storage.publish import put_recorded
from shards.partitions import list_input, open_filesystem, partitions_of
from tests.support.files import write_parquet

DAY = 86_400


def discovered(data: Path, store: Path, *flags: str) -> plan.Discovery:
    config = from_args(["--input", str(data), "--store", str(store), *flags])
    return plan.discover(config, open_store(str(store)), None, None)


def keys(partitions: list) -> list[str]:  # type: ignore[type-arg]
    return [p.key for p in partitions]


def test_until_and_since_bound_the_dates_and_max_partitions_takes_the_oldest(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    for day in ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"):
        write_parquet(data / f"dt={day}" / "part-0.parquet", ["x"])
    # by path, eu comes first; by date, us does
    write_parquet(data / "region=eu" / "dt=2026-11-03" / "a.parquet", ["x"])
    write_parquet(data / "region=us" / "dt=2026-10-30" / "b.parquet", ["x"])
    # no date folder: their modification time dates them (and orders them, to the nanosecond)
    for name, when in (("loose/z.parquet", 1_790_000_000), ("loose/y.parquet", 1_790_000_000 + 10 * DAY)):
        os.utime(write_parquet(data / name, ["x"]), (when, when))  # 2026-09-21 and 2026-10-01

    found = discovered(data, store, "--since", "2026-11-02", "--until", "2026-11-03")
    assert keys(found.todo) == [
        "dt=2026-11-02/part-0.parquet",
        "dt=2026-11-03/part-0.parquet",
        "region=eu/dt=2026-11-03/a.parquet",
    ]
    assert found.listing.pruned == 3 and found.listed is None  # 11-01 and 11-04 and us/10-30 were never listed
    assert keys(discovered(data, store, "--until", "2026-10-01").todo) == ["loose/y.parquet", "loose/z.parquet"]

    found = discovered(data, store, "--max-partitions", "3")
    assert keys(found.todo) == ["loose/y.parquet", "loose/z.parquet", "region=us/dt=2026-10-30/b.parquet"]  # path order
    assert keys(found.deferred) == [
        "dt=2026-11-01/part-0.parquet",
        "dt=2026-11-02/part-0.parquet",
        "dt=2026-11-03/part-0.parquet",
        "dt=2026-11-04/part-0.parquet",
        "region=eu/dt=2026-11-03/a.parquet",
    ]
    found = discovered(data, store, "--max-partitions", "3", "--since", "2026-11-01")  # a tie on 11-03: by path
    assert keys(found.todo) == [
        "dt=2026-11-01/part-0.parquet",
        "dt=2026-11-02/part-0.parquet",
        "dt=2026-11-03/part-0.parquet",
    ]
    assert keys(found.deferred) == ["dt=2026-11-04/part-0.parquet", "region=eu/dt=2026-11-03/a.parquet"]
    with pytest.raises(ConfigError, match="--until 2026-11-01 is before --since 2026-11-02"):
        from_args(["--input", "in", "--store", "out", "--since", "2026-11-02", "--until", "2026-11-01"])


def test_a_rejection_holds_until_the_partition_or_the_read_settings_change(tmp_path: Path) -> None:
    data, store_path = tmp_path / "data", tmp_path / "models"
    for name in ("a.parquet", "b.parquet", "c.parquet"):
        write_parquet(data / name, ["x"])
    fs, root = open_filesystem(str(data))
    a, b, c = partitions_of(fs, list_input(fs, root))
    config = from_args(["--input", str(data), "--store", str(store_path)])
    settings_now = rejections.reading(config)
    found = rejections.found(
        [PartitionError(a.uri, "bad bytes"), PartitionError(b.uri, "no column")], [a, b, c], settings_now, "run-1"
    )

    # a failed run records them beside the version it built on; the next run reads them with the manifest's
    store = open_store(str(store_path))
    rejections.record_pending(store, "v1", found[:1])
    rejections.record_pending(store, "v1", found[1:])  # merged, not replaced
    manifest = {"rejections": rejections.section([found[0]])}
    known = rejections.read(store, "v1", manifest)
    assert sorted(known) == ["a.parquet", "b.parquet"] and known["b.parquet"].cause == "no column"
    assert rejections.read(store, "v2", None) == {}

    fresh, skipped = rejections.split([a, b, c], known, settings_now, retry=False)
    assert keys(fresh) == ["c.parquet"] and [(p.key, r.cause) for p, r in skipped] == [
        ("a.parquet", "bad bytes"),
        ("b.parquet", "no column"),
    ]
    assert keys(rejections.split([a, b, c], known, settings_now, retry=True)[0]) == [
        "a.parquet",
        "b.parquet",
        "c.parquet",
    ]
    other_column = rejections.reading(from_args(["--input", "i", "--store", "s", "--text-column", "body"]))
    assert keys(rejections.split([a, b, c], known, other_column, retry=False)[0]) == [
        "a.parquet",
        "b.parquet",
        "c.parquet",
    ]
    os.utime(data / "a.parquet", (1, 1))  # rewritten: read again
    a_now = partitions_of(fs, list_input(fs, root))[0]
    assert keys(rejections.split([a_now, b, c], known, settings_now, retry=False)[0]) == ["a.parquet", "c.parquet"]

    # a partition consumed or gone (from a complete listing) leaves the list; one found bad again replaces its entry
    again = rejections.found([PartitionError(b.uri, "still no column")], [b], settings_now, "run-2")
    assert [(r.key, r.cause) for r in rejections.after(known, again, [a_now], {"a.parquet", "b.parquet"})] == [
        ("b.parquet", "still no column")
    ]
    assert [r.key for r in rejections.after(known, [], [], {"b.parquet"})] == ["b.parquet"]
    assert [r.key for r in rejections.after(known, [], [], None)] == ["a.parquet", "b.parquet"]  # a pruned listing
    # what the store holds is data: a malformed entry is ignored, not trusted
    (store_path / "rejected" / "v3.json").write_text(json.dumps({"partitions": [{"key": 1}, "x", found[0].__dict__]}))
    assert [r.key for r in rejections.pending(store, "v3")] == ["a.parquet"]


def record(tokenizer: dict | None, architecture: dict | None) -> settings.Recorded:  # type: ignore[type-arg]
    return settings.Recorded("v1", tokenizer, architecture)


TOKENIZER = {
    "lowercase": True,
    "deaccent": False,
    "token_pattern": r"[\p{L}\p{M}]+",
    "min_token_len": 2,
    "max_token_len": 40,
}
WORD2VEC = {
    "model": "word2vec",
    "vector_size": 50,
    "window": 8,
    "sg": 1,
    "negative": 5,
    "sample": 0.001,
    "min_count": 3,
}


def test_an_update_inherits_the_lineage_settings_and_refuses_a_change_without_the_users_word() -> None:
    def inherit(*flags: str) -> settings.Resolved:
        return settings.inherit(from_args(["--input", "i", "--store", "s", *flags]), record(TOKENIZER, WORD2VEC))

    resolved = inherit("--min-n", "2")  # n-grams are no part of a Word2Vec lineage: nothing to refuse
    assert resolved.config.training.vector_size == 50 and resolved.config.training.sg is True
    assert resolved.config.training.window == 8 and resolved.changed == [] and resolved.adjust == ()
    assert inherit("--window", "8", "--sg").changed == []  # the lineage's own values may be given

    with pytest.raises(ConfigError) as refused:
        inherit("--no-lowercase", "--window", "3", "--vector-size", "100", "--allow-setting-change", "window")
    message = str(refused.value)
    assert "--no-lowercase gives lowercase False; the lineage's is True" in message
    assert "--vector-size gives vector_size 100; the lineage's is 50" in message
    assert "--window" not in message.split("allow-setting-change")[0]  # allowed: not refused
    assert "--allow-setting-change lowercase" in message and "new lineage" in message

    resolved = inherit(
        "--no-lowercase", "--window", "3", "--allow-setting-change", "no-lowercase", "--allow-setting-change", "window"
    )
    assert resolved.changed == [
        {"setting": "lowercase", "from": True, "to": False},
        {"setting": "window", "from": 8, "to": 3},
    ]
    assert resolved.adjust == ("window",) and resolved.config.tokenizer.lowercase is False
    # unknown tokenizer settings (an imported model): this run's are kept
    unknown = settings.inherit(from_args(["--input", "i", "--store", "s", "--deaccent"]), record(None, WORD2VEC))
    assert unknown.config.tokenizer.deaccent is True
    assert settings.inherit(from_args(["--input", "i", "--store", "s", "--deaccent"]), None).changed == []
    with pytest.raises(ConfigError, match="--allow-setting-change vector-size: the vector size is fixed"):
        from_args(["--input", "i", "--store", "s", "--allow-setting-change", "vector-size"])


def test_an_older_version_s_settings_are_inferred_from_its_model_and_manifest(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    params = {
        "kind": "fasttext",
        "model": {"vector_size": 16, "window": 5, "sg": 0, "negative": 5, "sample": 0.001, "min_count": 1},
        "keyed_vectors": {"min_n": 3, "max_n": 4, "bucket": 2000},
    }
    files = {"model/params.json": put_recorded(store, "v1", "model/params.json", json.dumps(params).encode())}
    # what an old update recorded: this run's flags (word2vec/100), and the tokenizer it used
    manifest = {
        "version": "v1",
        "files": files,
        "training": {"model": "word2vec", "vector_size": 100},
        "tokenizer": TOKENIZER,
    }
    found = settings.recorded(store, manifest)
    assert found.architecture == {
        "model": "fasttext",
        "vector_size": 16,
        "window": 5,
        "sg": 0,
        "negative": 5,
        "sample": 0.001,
        "min_count": 1,
        "min_n": 3,
        "max_n": 4,
        "bucket": 2000,
    }
    assert found.tokenizer == TOKENIZER and found.notes == ()
    imported = settings.recorded(store, {**manifest, "tokenizer": None})
    assert imported.tokenizer is None and "records no tokenizer settings" in imported.notes[0]
    (tmp_path / "versions" / "v1" / "model" / "params.json").write_text(json.dumps({**params, "kind": "word2vec"}))
    with pytest.raises(IntegrityError, match="differs from its manifest"):
        settings.recorded(store, manifest)
