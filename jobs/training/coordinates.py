"""A version's coordinates against its parent's: the optional rotation onto them (``--align``), and the diff of
words added, removed and moved that the refresh writes beside every version with a parent.

Two steps of :meth:`jobs.training.trainer.Trainer.finish`, between training and saving:

    >>> figures = align_to_parent(model, parent_folder, step.parent_rows)   # doctest: +SKIP
    >>> summary = write_diff(model, parent_folder, out / DIFF, parent, version)   # doctest: +SKIP

Both read the parent's vectors from its saved (verified) files, in blocks or memory-mapped, so neither holds a
second copy of the model. The arithmetic is in :mod:`jobs.training.align` and :mod:`jobs.changes`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs import changes
from jobs.storage.publish import MODEL_DIR
from jobs.training import align, serialize

DIFF = changes.DIFF


def align_to_parent(model: Any, parent: Path, parent_rows: np.ndarray) -> dict[str, Any]:
    """Rotate ``model`` (every matrix its dot products use) onto the parent's coordinates, fitted on the words
    they share (the model's first ``len(parent_rows)`` rows); return the manifest's figures."""
    started = time.perf_counter()
    rotation = align.fit(parent / MODEL_DIR / "vectors.npy", model.wv.vectors, parent_rows)
    rotated = align.rotate(model, rotation.matrix)
    return {**rotation.record(), "matrices": rotated, "seconds": round(time.perf_counter() - started, 3)}


def write_diff(model: Any, parent: Path, path: Path, parent_version: str, version: str) -> dict[str, Any]:
    """Write the diff from the parent (its saved files) to ``model`` at ``path``; return its metadata."""
    words = pq.read_table(parent / MODEL_DIR / serialize.VOCAB, columns=["word"]).column("word").combine_chunks()
    old = np.load(parent / MODEL_DIR / "vectors.npy", mmap_mode="r", allow_pickle=False)
    wv = model.wv
    table = changes.compute(
        words, old, pa.array(wv.index_to_key, pa.string()), wv.vectors, wv.expandos["count"], changes.DEFAULT_THRESHOLD
    )
    return changes.write(table, path, {"from": parent_version, "to": version, "threshold": changes.DEFAULT_THRESHOLD})
