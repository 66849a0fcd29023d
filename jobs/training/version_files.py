"""The new version's files on the trainer's node: written into one folder, uploaded, then kept in the node's cache.

The last two stages of :meth:`jobs.training.trainer.Trainer.finish`:

    >>> saving = pool.submit(save_model, model, out)        # the model's files, in a thread  # doctest: +SKIP
    >>> written = write(model, out, "v2", saving.result, parent=("v1", parent_folder), pending={})  # doctest: +SKIP
    >>> files = upload(store, "v2", written, cache)  # the manifest's ``files`` section   # doctest: +SKIP

The folder holds every file of the version the trainer makes: the model (:mod:`jobs.training.serialize`'s
format, hashed as it is written), its diff from the parent (:mod:`jobs.training.coordinates`), what the lineage
carries to the next version (the remembered counts, the standing of a capped lineage, the replay reservoir:
:mod:`jobs.lineage`), and the files the driver made (``extra_files``: the ledger, the config). Nothing writes
them again once uploaded, so a local store links them and the node's cache takes the folder as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.errors import CacheError
from jobs.lineage import replay, standing
from jobs.lineage.counts import PENDING, write_counts
from jobs.storage import Store
from jobs.storage.cache import VersionCache
from jobs.storage.publish import upload_version
from jobs.training import coordinates
from jobs.training import model as gmodel
from jobs.training.drift import Shared

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """The version's folder, and what the manifest needs of the model it holds."""

    folder: Path
    recorded: dict[str, dict[str, Any]]  # the model files' manifest entries, hashed as written
    model_kind: str
    architecture: dict[str, Any]  # the model's own (:func:`jobs.training.model.architecture`)
    diff: dict[str, Any]  # the diff's metadata; empty without a parent
    seconds: float = 0.0  # spent writing them, the model's files and the others (written side by side)


@dataclass(frozen=True)
class Saved:
    """The model's files as :func:`save_model` wrote them, and the seconds it took."""

    recorded: dict[str, dict[str, Any]]
    seconds: float


def save_model(model: Any, out: Path, durable: bool = False) -> Saved:
    """Write the model into ``out`` (hashed as written: the upload does not read it again), timed. It only reads
    the model, so the evaluate stage may read it meanwhile (:meth:`jobs.training.trainer.Trainer.finish`).
    ``durable``: each file on disk once written, while the next is (for a store that takes the files where
    they are, whose upload then finds them durable)."""
    started = time.perf_counter()
    recorded = gmodel.save(model, out, durable)
    return Saved(recorded, time.perf_counter() - started)


def write(
    model: Any,
    out: Path,
    version: str,
    model_files: Callable[[], Saved],
    *,
    parent: tuple[str, Path] | None = None,
    pending: dict[str, float],
    standing_of_words: np.ndarray | None = None,
    reservoir: replay.Reservoir | None = None,
    extra_files: dict[str, bytes] | None = None,
    shared: Shared | None = None,
) -> Written:
    """Complete ``version``'s folder ``out`` around the model, which :func:`save_model` writes into it meanwhile
    (``model_files`` waits for that, and is called last): with a ``parent`` (its version and its verified
    folder), the diff from it; the ``pending`` counts; the ``standing_of_words`` (aligned with the model's
    index) and the ``reservoir`` when the lineage keeps them; and the ``extra_files``. ``shared``: the evaluate
    stage's comparison with the parent (:func:`jobs.training.drift.compare`), from which the diff takes its
    rows and distances."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    diff = (
        coordinates.write_diff(model, parent[1], out / coordinates.DIFF, parent[0], version, shared) if parent else {}
    )
    write_counts(out / PENDING, pending)
    if standing_of_words is not None:
        standing.write(out / standing.STANDING, model.wv.index_to_key, standing_of_words)
    if reservoir is not None:
        replay.save(reservoir, out / replay.RESERVOIR)
    for name, data in (extra_files or {}).items():
        (out / name).write_bytes(data)
    seconds = time.perf_counter() - started
    saved = model_files()
    return Written(out, saved.recorded, gmodel.kind(model), gmodel.architecture(model), diff, saved.seconds + seconds)


def upload(store: Store, version: str, written: Written, cache: VersionCache | None) -> dict[str, dict[str, Any]]:
    """Upload the folder as ``version``'s files and return the manifest's ``files`` section; then move the
    folder into the node's ``cache`` (when on), where the next run most likely finds its parent. A cache that
    cannot take it is logged and left: the version is uploaded all the same."""
    # final: nothing writes these files again (the node's cache takes them as they are), so a local store links
    # rather than copies them
    files = upload_version(store, version, written.folder, recorded=written.recorded, final=True)
    if cache:
        try:
            cache.adopt(store, version, written.folder)  # most likely the next run's parent
        except CacheError as exc:
            log.warning("could not keep %s in the node's cache: %s", version, exc)
    return files
