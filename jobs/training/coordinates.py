"""A version's coordinates against its parent's: the optional rotation onto them (``--align``), and the diff of
words added, removed and moved that the refresh writes beside every version with a parent.

Two steps of :meth:`jobs.training.trainer.Trainer.finish`, between training and saving:

    >>> figures = align_to_parent(model, parent_folder, step.parent_rows)   # doctest: +SKIP
    >>> summary = write_diff(model, parent_folder, out / DIFF, parent, version, evaluated.shared)   # doctest: +SKIP

The rotation reads the parent's vectors from its saved (verified) file in blocks, so it holds no second copy of
the model. The diff takes the row mapping and each shared word's distance from the evaluate stage's drift
comparison (:func:`jobs.training.drift.compare`, after the rotation), so it reads only the parent's words and
the rows that changed. The arithmetic is in :mod:`jobs.training.align` and :mod:`jobs.changes`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs import changes
from jobs.storage.publish import MODEL_DIR
from jobs.training import align, serialize
from jobs.training.drift import Shared

log = logging.getLogger(__name__)

DIFF = changes.DIFF


def align_to_parent(model: Any, parent: Path, parent_rows: np.ndarray) -> dict[str, Any]:
    """Rotate ``model`` (every matrix its dot products use) onto the parent's coordinates, fitted on the words
    they share (the model's first ``len(parent_rows)`` rows); return the manifest's figures."""
    started = time.perf_counter()
    rotation = align.fit(parent / MODEL_DIR / "vectors.npy", model.wv.vectors, parent_rows)
    rotated = align.rotate(model, rotation.matrix)
    return {**rotation.record(), "matrices": rotated, "seconds": round(time.perf_counter() - started, 3)}


def write_diff(
    model: Any, parent: Path, path: Path, parent_version: str, version: str, shared: Shared | None = None
) -> dict[str, Any]:
    """Write the diff from the parent (its saved files) to ``model`` at ``path``; return its metadata. With
    ``shared`` (the evaluate stage's :func:`jobs.training.drift.compare` of this model against this parent), the
    rows are mapped and the distances taken from it (:func:`jobs.changes.from_rows`): the parent's vectors are
    not read again. Without it, or when its mapping does not hold, the words are joined and the distances
    computed here (:func:`jobs.changes.compute`)."""
    words = pq.read_table(parent / MODEL_DIR / serialize.VOCAB, columns=["word"]).column("word").combine_chunks()
    wv = model.wv
    threshold = changes.DEFAULT_THRESHOLD
    if shared is not None and changes.rows_match(words, shared.parent_rows, wv.index_to_key):
        table = changes.from_rows(
            words, shared.parent_rows, wv.index_to_key, wv.vectors, wv.expandos["count"], shared.distance, threshold
        )
    else:
        if shared is not None:
            log.warning("the model's rows are not the parent's rows the trainer recorded: the diff joins the words")
        old = np.load(parent / MODEL_DIR / "vectors.npy", mmap_mode="r", allow_pickle=False)
        new_words = pa.array(wv.index_to_key, pa.string())
        table = changes.compute(words, old, new_words, wv.vectors, wv.expandos["count"], threshold)
    return changes.write(table, path, {"from": parent_version, "to": version, "threshold": threshold})
