"""The parent version on the trainer's node: fetched, verified, loaded and measured while the corpus streams in.

Nothing about the parent depends on the new data, so the training actor starts on it as soon as it exists
(:meth:`jobs.training.trainer.Trainer.prepare`), in a thread beside the ingest calls: the files come from the
node's verified cache or the store, the model is read with room for new words, the remembered state is read,
and the gate measures the parent's side (:func:`jobs.training.evaluate.baseline`, with the lineage's history
of overlaps from the parent's manifest) before anything changes it. :meth:`Trainer.finish` then waits for
what is left of it, so on a cluster the parent's cost hides behind tokenizing instead of following it.

    loading = ParentLoad.start(store, ParentRequest("v1", GateConfig()), spool)   # doctest: +SKIP
    parent = loading.result()                                                       # waits, re-raises

The model's matrices are read with room for as many new words as the parent has words (address space that
costs memory only once rows are written; where the system refuses the reservation they are read at their
size, see :func:`jobs.training.serialize.load`), so a vocabulary update appends rather than copies.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobs.config import GateConfig, TrainingConfig
from jobs.errors import CacheError, StoppedError
from jobs.format import mapped, trainable
from jobs.lineage import replay, standing
from jobs.lineage.counts import PENDING, read_counts
from jobs.storage import Store, lease
from jobs.storage.cache import VersionCache
from jobs.storage.publish import MODEL_DIR, fetch_verified, model_files, read_manifest
from jobs.training import evaluate, gate
from jobs.training.memory import PhasePeaks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParentRequest:
    """What loading the parent needs: the version, the gate's settings and files, the node's cache."""

    version: str
    gate: GateConfig
    eval_files: dict[str, bytes] = field(default_factory=dict)
    cache: str | None = None  # default: beside the spool
    cache_versions: int = 0  # 0: no cache, the parent is downloaded into the spool and removed with it

    def version_cache(self, spool: Path) -> VersionCache | None:
        """The node's cache of versions (None when off); by default beside the run's ``spool`` folder."""
        if self.cache_versions < 1:
            return None
        return VersionCache(
            Path(self.cache) if self.cache else spool.parent / "embedding-refresh-cache", self.cache_versions
        )


@dataclass
class Parent:
    """The parent as the trainer uses it."""

    folder: Path  # its verified files on this node
    model: Any
    pending: dict[str, float]
    standing: np.ndarray | None
    reservoir: Any
    baseline: evaluate.Baseline


@dataclass(frozen=True)
class Start:
    """What an update starts from: the parent's model and remembered state, or a new model and nothing."""

    model: Any
    folder: Path | None  # the parent's verified files on this node; None for a new model
    baseline: evaluate.Baseline | None  # the parent's side of the gate
    pending: dict[str, float]
    standing: np.ndarray | None
    reservoir: replay.Reservoir

    @property
    def vectors(self) -> Path | None:
        """The parent's saved word vectors (read in blocks, never held beside the candidate's)."""
        return self.folder / MODEL_DIR / "vectors.npy" if self.folder is not None else None


def begin(parent: Parent | None, config: TrainingConfig, adjust: tuple[str, ...] = ()) -> Start:
    """The model to train: the loaded ``parent`` with the settings in ``adjust`` given ``config``'s values (the
    changes the user allowed), or, without a parent, a new model with ``config``'s architecture."""
    from jobs.training import model as gmodel  # gensim: see load()

    if parent is None:
        return Start(gmodel.create(config), None, None, {}, None, replay.empty())
    gmodel.adjust(parent.model, config, adjust)
    return Start(parent.model, parent.folder, parent.baseline, parent.pending, parent.standing, parent.reservoir)


def populate_matrices(model: Any, tokens: int, epochs: int) -> threading.Thread | None:
    """Start copying the parent's mapped matrices into the actor's memory (:func:`jobs.format.mapped.populate`)
    in a thread, when the run trains at least as many tokens, over its epochs, as the model has words: its
    epochs then write most pages of them anyway (each trained word's rows, and ``negative`` rows drawn for
    each), and a page copied ahead costs less than the same page faulted in by a training thread. The caller
    joins the thread before training; None when the run is too small for it to pay."""
    if tokens * epochs < len(model.wv):
        return None
    matrices = [model.wv.vectors, model.syn1neg]
    if hasattr(model.wv, "vectors_ngrams"):  # FastText
        matrices += [model.wv.vectors_vocab, model.wv.vectors_ngrams]

    def run() -> None:
        started = time.perf_counter()
        done = [mapped.populate(matrix) for matrix in matrices]
        log.info(
            "the parent's matrices paged in ahead of training: %s MB in %.2f s",
            f"{sum(m.nbytes for m, ok in zip(matrices, done, strict=True) if ok) / 2**20:,.0f}",
            time.perf_counter() - started,
        )

    thread = threading.Thread(target=run, name="page in the parent", daemon=True)
    thread.start()
    return thread


def load(
    store: Store, request: ParentRequest, into: Path, phases: PhasePeaks, stop: threading.Event | None = None
) -> Parent:
    """Fetch the parent into the run's spool folder ``into`` (or the node's cache), load and measure it (see
    the module's docstring). ``stop`` ends it between steps."""

    def check() -> None:
        if stop is not None and stop.is_set():
            raise StoppedError(f"loading the parent {request.version} was stopped")

    with phases.phase("load"), lease.reading(store, request.version):  # removed under the run: retryable
        manifest = read_manifest(store, request.version)
        folder = fetch(store, request, into, manifest)
        check()
        # mapped, not read: training touches a small part of the matrices, saving reads the rest once; the files
        # are this run's verified copies (its spool, or links into the node's cache, replaced only by renames).
        # Read and checked before gensim is needed, while it is still being imported (Trainer.prepare).
        read = trainable.read(folder / MODEL_DIR, spare_rows=None, mapped=True)  # room for as many new words
    check()
    history = gate.history_of(manifest, request.gate.history)
    with phases.phase("evaluate"):
        # The parent's side of the gate, from its files as read (gensim may still be importing), before the
        # model changes: an update only appends rows, and this spares loading the parent a second time.
        before = evaluate.baseline(read.keyed(), request.gate, None, history)
    check()
    with phases.phase("load"):
        # gensim, here and not at the top: the training actor imports this module as it starts, without gensim,
        # and imports gensim in a thread of its own while this one fetches (Trainer.prepare); here it waits for
        # it (the same modules in the same order, so the two imports cannot deadlock)
        from jobs.training import model as gmodel

        model = gmodel.build(read)
        check()
        pending = read_counts(folder / PENDING) if (folder / PENDING).exists() else {}
        kept = (
            standing.read(folder / standing.STANDING, model.wv.index_to_key)
            if (folder / standing.STANDING).exists()
            else None
        )
        reservoir = replay.load(folder / replay.RESERVOIR)
    if request.gate.similarity_files or request.gate.analogy_files:
        with phases.phase("evaluate"):  # scored by gensim's own evaluation code
            before = evaluate.scored(before, model.wv, request.gate, request.eval_files)
    return Parent(folder, model, pending, kept, reservoir, before)


def fetch(store: Store, request: ParentRequest, into: Path, manifest: dict[str, Any] | None = None) -> Path:
    """The parent's model files (and its remembered state, when it has one), verified: from the node's cache
    where they are intact, else downloaded. ``manifest``: the parent's, when the caller has read it."""
    manifest = manifest or read_manifest(store, request.version)
    lineage = (PENDING, standing.STANDING, replay.RESERVOIR)
    names = model_files(manifest) + [n for n in lineage if n in manifest["files"]]
    cache = request.version_cache(into)
    if cache:
        try:
            return cache.fetch(store, manifest, names, into / "parent")
        except CacheError as exc:  # the cache's disk, not the store: download as without a cache
            log.warning("the node's version cache is unusable (%s); downloading %s", exc, request.version)
    return fetch_verified(store, request.version, into / "parent", names)


class ParentLoad:
    """:func:`load` in a thread of its own; :meth:`result` waits for it and raises what it raised."""

    def __init__(self, request: ParentRequest) -> None:
        self.request = request
        self.phases = PhasePeaks()  # the load's own phases, for the trainer's timings
        self._future: Future[Parent] = Future()
        self._stop = threading.Event()

    @classmethod
    def start(cls, store: Store, request: ParentRequest, into: Path) -> ParentLoad:
        loading = cls(request)
        thread = threading.Thread(
            target=loading._run, args=(store, into), name=f"load parent {request.version}", daemon=True
        )
        thread.start()
        return loading

    def _run(self, store: Store, into: Path) -> None:
        if not self._future.set_running_or_notify_cancel():
            return
        try:
            self._future.set_result(load(store, self.request, into, self.phases, self._stop))
        except BaseException as exc:  # handed to whoever waits
            self._future.set_exception(exc)

    def result(self) -> Parent:
        return self._future.result()

    def stop(self, wait: float) -> None:
        """Ask the load to end at its next step, and wait up to ``wait`` seconds for it."""
        self._stop.set()
        try:
            self._future.exception(timeout=wait)
        except TimeoutError:
            log.warning("the parent %s was still loading when the run ended", self.request.version)
