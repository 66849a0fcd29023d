"""The diff between two versions: each word in exactly the right set, with the right distance and vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import changes
from jobs.training import drift


class Candidate:
    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors


def test_a_planted_update_gives_exactly_the_planted_sets(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    old_words = [f"w{i}" for i in range(200_000)]  # several blocks of rows
    old = rng.normal(size=(len(old_words), 8)).astype(np.float32)
    removed = {f"w{i}" for i in range(0, 200_000, 997)}
    survivors = [w for w in old_words if w not in removed]
    new_words = [*survivors, "fresh", "brand", "novel"]
    new = np.concatenate([old[[int(w[1:]) for w in survivors]], rng.normal(size=(3, 8)).astype(np.float32)])
    moved_rows = rng.choice(len(survivors), size=500, replace=False)
    new[moved_rows] = rng.normal(size=(500, 8)).astype(np.float32)  # far from where they were
    nudged = np.setdiff1d(np.arange(len(survivors)), moved_rows)[:300]
    new[nudged] *= 1.5  # longer, same direction: not moved
    new[nudged[:10]] += 1e-4  # a hair's breadth: below any sensible threshold
    counts = np.arange(len(new_words), dtype=np.int64) + 5

    table = changes.compute(old_words, old, new_words, new, counts, threshold=0.05)

    by_kind = {k: set(table.filter(pa.compute.equal(table["change"], k))["word"].to_pylist()) for k in changes.KINDS}
    really_moved = {
        survivors[r]
        for r in moved_rows
        if 1 - new[r] @ old[int(survivors[r][1:])] / np.linalg.norm(new[r]) / np.linalg.norm(old[int(survivors[r][1:])])
        > 0.05
    }
    assert by_kind == {"added": {"fresh", "brand", "novel"}, "removed": removed, "moved": really_moved}
    assert len(really_moved) > 450  # random directions in 8 dimensions are almost never within 0.05
    assert changes.summary(table) == {"added": 3, "moved": len(really_moved), "removed": len(removed)}

    fresh = table.filter(pa.compute.equal(table["word"], "fresh")).to_pylist()[0]
    assert fresh["distance"] is None and fresh["count"] == counts[new_words.index("fresh")]
    assert np.array_equal(np.array(fresh["vector"], dtype=np.float32), new[new_words.index("fresh")])
    gone = table.filter(pa.compute.equal(table["change"], "removed")).to_pylist()[0]
    assert gone["vector"] is None and gone["count"] is None and gone["distance"] is None
    one = table.filter(pa.compute.equal(table["change"], "moved")).to_pylist()[0]
    r = survivors.index(one["word"])
    o = old[int(one["word"][1:])]
    assert one["distance"] == pytest.approx(1 - new[r] @ o / np.linalg.norm(new[r]) / np.linalg.norm(o), abs=1e-6)

    path = tmp_path / changes.DIFF
    changes.write(table, path, {"from": "a", "to": "b", "threshold": 0.05})
    read = pq.read_table(path)
    assert read.num_rows == table.num_rows and read.schema.field("vector").type == pa.list_(pa.float32(), 8)
    columns = pq.ParquetFile(path).metadata.row_group(0)
    encoding = {columns.column(i).path_in_schema: columns.column(i) for i in range(columns.num_columns)}
    assert {name: c.compression for name, c in encoding.items()} == {
        "word": "ZSTD",
        "change": "ZSTD",
        "distance": "ZSTD",
        "count": "ZSTD",
        "vector.list.element": "UNCOMPRESSED",  # incompressible mantissas: not worth zstd's time
    }
    assert not encoding["vector.list.element"].is_stats_set and encoding["word"].is_stats_set
    assert changes.read_about(path) == {
        "from": "a",
        "to": "b",
        "threshold": 0.05,
        "added": 3,
        "moved": len(really_moved),
        "removed": len(removed),
    }


def test_identical_versions_have_an_empty_diff() -> None:
    vectors = np.eye(4, dtype=np.float32)
    table = changes.compute(["a", "b", "c", "d"], vectors, ["a", "b", "c", "d"], vectors.copy(), np.ones(4), 0.0)
    assert table.num_rows == 0 and table.schema.names == ["word", "change", "distance", "count", "vector"]


def test_the_trainers_known_rows_and_drift_distances_give_the_joined_diff() -> None:
    rng = np.random.default_rng(3)
    old_words = [f"w{i}" for i in range(12)]
    old = rng.normal(size=(12, 6)).astype(np.float32)
    old[11] = 0.0  # no direction: at distance 0 whatever it becomes
    parent_rows = np.array([0, 1, 2, 4, 5, 7, 8, 10, 11])  # rows 3, 6 and 9 pruned
    new_words = [old_words[r] for r in parent_rows] + ["fresh", "novel"]
    new = np.concatenate([old[parent_rows], rng.normal(size=(2, 6)).astype(np.float32)])
    new[1] = rng.normal(size=6)  # w1: far away
    new[4] = -old[5]  # w5: opposite, distance 2
    new[2] = old[2] + np.float32(0.01) * rng.normal(size=6).astype(np.float32)  # w2: nudged, below the threshold
    new[6] = old[8] * np.float32(3.0)  # w8: longer, same direction: not moved
    new[8] = rng.normal(size=6)  # w11: was zero
    counts = np.arange(len(new_words), dtype=np.int64) * 7 + 1

    shared = drift.compare(old, Candidate(new), parent_rows)
    fast = changes.from_rows(pa.array(old_words), parent_rows, new_words, new, counts, shared.distance, 0.05)
    joined = changes.compute(old_words, old, new_words, new, counts, 0.05)

    assert fast.schema == joined.schema
    assert fast.drop(["distance"]).equals(joined.drop(["distance"]))
    assert fast["word"].to_pylist() == ["fresh", "novel", "w1", "w5", "w3", "w6", "w9"]
    assert fast["change"].to_pylist() == ["added"] * 2 + ["moved"] * 2 + ["removed"] * 3
    np.testing.assert_allclose(
        np.array(fast["distance"].to_pylist()[2:4]), np.array(joined["distance"].to_pylist()[2:4]), atol=1e-6
    )
    assert fast["distance"].to_pylist()[3] == pytest.approx(2.0, abs=1e-6)
    # the words that did not move, as each computation measured them: unchanged ones at 0 exactly in both
    unchanged = np.setdiff1d(np.arange(len(parent_rows)), [1, 2, 4, 6, 8])
    assert np.all(shared.distance[unchanged] == 0.0) and shared.changed == 5
    assert 0 < shared.distance[2] < 0.05 and shared.distance[6] < 1e-6 and shared.distance[8] == 0.0
    assert changes.rows_match(pa.array(old_words), parent_rows, new_words)
    assert not changes.rows_match(pa.array(old_words), parent_rows + 1, new_words)
    assert not changes.rows_match(pa.array(old_words), np.arange(9), new_words)
    with pytest.raises(ValueError, match="9 shared rows, 8 distances"):
        changes.from_rows(pa.array(old_words), parent_rows, new_words, new, counts, shared.distance[:8])
