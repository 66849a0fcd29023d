"""The lifecycle end to end on a real local Ray cluster: the cap, decay and freeze are recorded in the manifest,
kept by later runs, changed (and logged) by a flag; the report shows pruning and drift."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gensim.models.callbacks import CallbackAny2Vec

from jobs.config import from_args
from jobs.errors import TrainingError
from jobs.refresh import Hooks, run
from jobs.storage import open_store
from jobs.storage.publish import fetch_verified, model_files, read_manifest, version_key
from jobs.training import model as gmodel
from jobs.versions import main as versions_main
from tests.support.corpora import LETTERS, clustered, word
from tests.support.files import snapshot, write_parquet
from tests.support.flags import fast

FAST = fast(min_count=2, max_in_flight=3)


def latest(store: Path):  # type: ignore[no-untyped-def]
    s = open_store(str(store))
    manifest = read_manifest(s, "latest")
    report = json.loads(s.get_bytes(version_key(manifest["version"], "report.json")))
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_verified(s, "latest", Path(tmp), model_files(manifest))
        return gmodel.load(folder / gmodel.MODEL_DIR), manifest, report


def diff_sets(store: Path, version: str) -> dict[str, set[str]]:
    """The words of each kind in the version's diff.parquet."""
    table = pq.read_table(pa.BufferReader(open_store(str(store)).get_bytes(version_key(version, "diff.parquet"))))
    return {
        kind: {w for w, c in zip(table["word"].to_pylist(), table["change"].to_pylist(), strict=True) if c == kind}
        for kind in ("added", "moved", "removed")
    }


def expected_diff(parent: Any, model: Any, threshold: float = 0.05) -> dict[str, set[str]]:
    moved = set()
    for w in set(parent.index_to_key) & set(model.wv.index_to_key):
        a, b = parent[w].astype(np.float64), model.wv[w].astype(np.float64)
        if not np.array_equal(a, b) and 1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b) > threshold:
            moved.add(w)
    return {
        "added": set(model.wv.index_to_key) - set(parent.index_to_key),
        "moved": moved,
        "removed": set(parent.index_to_key) - set(model.wv.index_to_key),
    }


def test_lifecycle_settings_are_recorded_inherited_and_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, store = tmp_path / "data", tmp_path / "models"

    def day(n: int, *flags: str):  # type: ignore[no-untyped-def]
        fresh = [word(f"f{LETTERS[n]}w", i) for i in range(10)]
        docs = clustered(80, seed=n) + [f"{w} {w} {w}" for w in fresh]
        write_parquet(data / f"dt=2026-11-0{n + 1}" / "part-0.parquet", docs)
        summary = run(from_args(["--input", str(data), "--store", str(store), *FAST, *flags]))
        assert summary.published
        found = latest(store)
        assert summary.removed_words == found[1]["lifecycle"]["removed"]  # the --json summary says it too
        assert summary.trained == found[1]["trained"]["summary"]
        return found

    model, manifest, report = day(0, "--max-vocab", "50", "--count-half-life", "4", "--freeze-known-words")
    first, first_words = manifest["version"], model.wv
    settings = {"max_vocab": 50, "count_half_life": 4.0, "freeze_known_words": True}
    assert {k: manifest["lifecycle"][k] for k in settings} == settings
    assert len(model.wv) == 50 and manifest["lifecycle"]["removed"] == 56 + 10 - 50
    assert report["lifecycle"]["most_frequent_removed"]
    parent = model.wv

    with caplog.at_level(logging.WARNING, logger="jobs.refresh"):
        model, manifest, report = day(1)  # no flags: the lineage keeps its settings
    assert not [r for r in caplog.records if "lifecycle setting changed" in r.message]
    assert {k: manifest["lifecycle"][k] for k in settings} == settings
    assert len(model.wv) == 50 and "standing.parquet" in manifest["files"]
    known = manifest["lifecycle"]["known_words"]
    assert known > 0 and model.wv.index_to_key[:known] == [w for w in parent.index_to_key if w in model.wv]
    rows = [parent.key_to_index[w] for w in model.wv.index_to_key[:known]]
    assert np.array_equal(model.wv.vectors[:known], parent.vectors[rows])
    assert report["lifecycle"]["drift"] == {
        "shared_words": known,
        "changed": 0,
        "mean_distance": 0.0,
        "p99_distance": 0.0,
        "neighbours_kept": 1.0,
    }
    diff = diff_sets(store, manifest["version"])  # frozen: words came and went, none moved
    assert diff == expected_diff(parent, model) and diff["moved"] == set() and diff["added"] and diff["removed"]
    assert manifest["diff"] == {
        "from": manifest["parent"],
        "to": manifest["version"],
        "threshold": 0.05,
        **{k: len(v) for k, v in diff.items()},
    }
    parent = model.wv

    with caplog.at_level(logging.WARNING, logger="jobs.refresh"):
        model, manifest, report = day(2, "--no-freeze-known-words", "--max-vocab", "0", "--align")
    changes = [r.message for r in caplog.records if "lifecycle setting changed" in r.message]
    assert len(changes) == 3 and any("--freeze-known-words changes from True" in c for c in changes)
    alignment = manifest["lifecycle"]["alignment"]
    assert manifest["lifecycle"]["align"] is True and alignment["words"] == manifest["lifecycle"]["known_words"]
    assert alignment["residual_after"] <= alignment["residual_before"]
    assert alignment["matrices"] == ["wv.vectors", "syn1neg"]
    diff = diff_sets(store, manifest["version"])  # the stored (aligned) vectors against the parent's
    assert diff == expected_diff(parent, model) and diff["added"]

    out = tmp_path / "two-days.parquet"  # across two versions, on demand
    assert versions_main(["diff", first, "latest", "--store", str(store), "--output", str(out)]) == 0
    table = pq.read_table(out)
    kinds = table["change"].to_pylist()
    assert {k: {w for w, c in zip(table["word"].to_pylist(), kinds, strict=True) if c == k} for k in diff} == (
        expected_diff(first_words, model)
    )
    backwards = tmp_path / "backwards.parquet"
    assert versions_main(["diff", "latest", first, "--store", str(store), "--output", str(backwards)]) != 0
    assert not backwards.exists()
    assert manifest["lifecycle"]["freeze_known_words"] is False and manifest["lifecycle"]["count_half_life"] == 4.0
    assert manifest["lifecycle"]["removed"] == 0 and len(model.wv) > 50
    assert report["lifecycle"]["drift"]["changed"] > 0 and report["lifecycle"]["drift"]["mean_distance"] > 0


class NudgeAKnownWord(CallbackAny2Vec):  # type: ignore[misc]
    """A fault seam: moves one known word inside training, as a lock factor that failed to hold would."""

    def on_epoch_end(self, model: Any) -> None:
        model.wv.vectors[0] += 1e-3


def test_a_frozen_word_that_moves_fails_the_run_and_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=2026-11-01" / "part-0.parquet", clustered(80, seed=0))
    flags = ["--input", str(data), "--store", str(store), *FAST, "--freeze-known-words"]
    assert run(from_args(flags)).published
    write_parquet(data / "dt=2026-11-02" / "part-0.parquet", clustered(80, seed=1))
    before = snapshot(store)
    with pytest.raises(TrainingError, match=r"--freeze-known-words did not hold: 1 of \d+ known words"):
        run(from_args(flags), Hooks(training_callbacks=(NudgeAKnownWord(),)))
    assert snapshot(store) == before
