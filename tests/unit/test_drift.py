"""The drift figures: the parent's vectors read in blocks from its saved file equal those of the array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jobs.errors import IntegrityError
from jobs.training import drift


class Candidate:
    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors


def test_the_file_read_in_blocks_gives_the_figures_of_the_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    parent = rng.normal(size=(20_000, 6)).astype(np.float32)  # more than two blocks
    np.save(tmp_path / "vectors.npy", parent)
    kept = np.flatnonzero(rng.random(20_000) > 0.3)  # pruning took about 30% of the parent's rows
    candidate = parent[kept].copy()
    moved = rng.choice(len(kept), size=250, replace=False)
    candidate[moved] += 0.5
    from_file = drift.measure(tmp_path / "vectors.npy", Candidate(candidate), kept, 0.75)
    from_array = drift.measure(parent, Candidate(candidate), kept, 0.75)
    assert from_file == from_array
    assert from_file["shared_words"] == len(kept) and from_file["changed"] == 250
    distance = 1 - np.sum(parent[kept[moved]] * candidate[moved], axis=1) / (
        np.linalg.norm(parent[kept[moved]], axis=1) * np.linalg.norm(candidate[moved], axis=1)
    )
    assert from_file["mean_distance"] == pytest.approx(distance.sum() / len(kept), abs=1e-6)
    assert from_file["neighbours_kept"] == 0.75


def test_unchanged_vectors_are_at_distance_zero_exactly(tmp_path: Path) -> None:
    parent = np.random.default_rng(2).normal(size=(100, 4)).astype(np.float32)
    np.save(tmp_path / "vectors.npy", parent)
    rows = np.arange(100)
    figures = drift.measure(tmp_path / "vectors.npy", Candidate(parent.copy()), rows, 1.0)
    assert figures == {
        "shared_words": 100,
        "changed": 0,
        "mean_distance": 0.0,
        "p99_distance": 0.0,
        "neighbours_kept": 1.0,
    }


def test_rows_beyond_the_parents_file_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "vectors.npy", np.zeros((10, 3), dtype=np.float32))
    with pytest.raises(IntegrityError, match="not the parent's vectors"):
        drift.measure(tmp_path / "vectors.npy", Candidate(np.zeros((11, 3), dtype=np.float32)), np.arange(11), 1.0)
