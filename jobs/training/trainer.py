"""The training actor: spools the token stream to local disk, then grows, trains, saves and uploads the model.

One ``Trainer`` runs per refresh, on the node that will train (see :mod:`jobs.cluster` for placement). The
driver forwards the tokenized batches of each partition's pieces to :meth:`Trainer.ingest` in partition and
piece order; the actor appends their sentences to a spool file (memory does not grow with the corpus;
:mod:`jobs.training.spool` lays it out in whole training batches) and keeps their word counts. A partition is
committed when its last batch arrives: a piece that failed rolls the spool and the counts back to where the
partition began, so a bad partition leaves no trace. :meth:`finish` then merges the counts, updates the
vocabulary of the parent model without a second pass over the corpus, trains exact epochs over the spool
(:mod:`jobs.training.epochs`), checks that every epoch trained every spooled token, saves, and uploads the new
version's files. On the way it applies the lineage's vocabulary upkeep (:mod:`jobs.training.upkeep`: decayed
standing, the ``--max-vocab`` cap, frozen known words) and measures how far the known words drifted
(:mod:`jobs.training.drift`). The pointer is moved by the driver, never here.

It is a plain class; Ray's decorator is applied in :mod:`jobs.cluster`, so tests can drive it directly.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from jobs.config import GateConfig, TrainingConfig, UpkeepConfig
from jobs.errors import IntegrityError, RefreshError, TrainingError
from jobs.lineage import replay
from jobs.storage import Store
from jobs.storage.locks import FileLock
from jobs.training import evaluate, spool
from jobs.training.memory import PhasePeaks
from jobs.training.parent import Parent, ParentLoad, ParentRequest, begin, populate_matrices
from jobs.training.parent import load as load_parent
from jobs.training.spool import Split, split_evenly
from shards.counts import RunningCounts
from shards.errors import PartitionError, PartitionReadError
from shards.partitions import Partition
from shards.pieces import plan
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions, TokenizedBatch, tokenize_piece

if TYPE_CHECKING:  # built on gensim: imported by finish() alone (see _TRAINING_MODULES)
    from jobs.training.model import Trained
    from jobs.training.upkeep import Step
    from jobs.training.version_files import Written

log = logging.getLogger(__name__)


@dataclass
class _Open:
    """The partition being received: where it began in the spool, and what it brought so far."""

    uri: str
    mark: spool.Mark
    spooled: int
    lines: int
    counts: RunningCounts = field(default_factory=RunningCounts)
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    error: PartitionError | None = None
    pieces: int = 0
    missing: list[str] = field(default_factory=list)  # pieces without the text field (JSON Lines)


@dataclass(frozen=True)
class Candidate:
    """The trained version, uploaded but not yet committed."""

    version: str
    files: dict[str, dict[str, Any]]
    model_kind: str
    vocab_before: int
    vocab_size: int
    new_words: list[str]
    neighbours: dict[str, list[tuple[str, float]]]
    evaluation: dict[str, Any]
    spooled_bytes: int
    learning_rate: dict[str, Any] = field(default_factory=dict)
    trained: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: dict[str, float] = field(default_factory=dict)  # the actor's peak resident set per phase
    upkeep: dict[str, Any] = field(default_factory=dict)  # settings, pruning and drift of known words
    diff: dict[str, Any] = field(default_factory=dict)  # the words added, moved and removed against the parent
    carried: bool = False  # nothing to train: the parent's model files, reused
    architecture: dict[str, Any] = field(default_factory=dict)  # the trained model's own (gmodel.architecture)

    @classmethod
    def from_stages(
        cls,
        request: TrainRequest,
        files: dict[str, dict[str, Any]],
        written: Written,
        step: Step,
        trained: Trained,
        evaluated: evaluate.Evaluated,
        aligned: dict[str, Any],
        phases: PhasePeaks,
        spooled: int,
    ) -> Candidate:
        """The candidate :meth:`Trainer.finish`'s stages made, from what each of them returned."""
        return cls(
            version=request.version,
            files=files,
            model_kind=written.model_kind,
            vocab_before=step.change.before,
            vocab_size=step.change.after,
            new_words=evaluated.new_words,
            neighbours=evaluated.neighbours,
            evaluation=evaluated.evaluation,
            spooled_bytes=spooled,
            learning_rate=trained.learning_rate(request.training),
            trained=trained.figures(),
            timings=phases.seconds,
            peak_memory_mb=phases.megabytes,
            upkeep={
                "removed": step.removed,
                "most_frequent_removed": step.most_frequent_removed,
                "known_words": step.known,
                "frozen": trained.frozen,
                "drift": evaluated.drift,
                **({"alignment": aligned} if aligned else {}),
            },
            diff=written.diff,
            architecture=written.architecture,
        )


@dataclass(frozen=True)
class TrainRequest:
    """Everything :meth:`Trainer.finish` needs besides the spooled corpus."""

    version: str
    parent: str | None
    training: TrainingConfig
    gate: GateConfig
    upkeep: UpkeepConfig = UpkeepConfig()
    eval_files: dict[str, bytes] = field(default_factory=dict)
    extra_files: dict[str, bytes] = field(default_factory=dict)
    event: dict[str, Any] = field(default_factory=dict)
    callbacks: tuple[Any, ...] = ()
    parent_cache: str | None = None  # default: beside the spool
    parent_cache_versions: int = 0  # 0: no cache, the parent is downloaded into the spool and removed with it
    split: Split = split_evenly  # how the spool's batches are shared among the threads (a seam for tests)
    adjust: tuple[str, ...] = ()  # architecture settings of ``training`` given to the loaded parent (allowed changes)

    def loading(self) -> ParentRequest:
        """What loading the parent needs, as :meth:`Trainer.prepare` is told it."""
        return ParentRequest(
            self.parent or "", self.gate, self.eval_files, self.parent_cache, self.parent_cache_versions
        )


def _same(batch: TokenizedBatch) -> TokenizedBatch:
    return batch


def _show_progress() -> None:
    """Let gensim's training progress (one line a second) and this module's steps reach the driver's console,
    which Ray forwards from the actor's stderr."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in (
        "gensim.models.word2vec",
        "gensim.models.fasttext",
        "jobs.training.epochs",
        "jobs.training.parent",
        __name__,
    ):
        logging.getLogger(name).setLevel(logging.INFO)


#: What the actor needs only to train, all of it built on gensim (a second or two of imports): this module
#: leaves it out, so that the actor is placed, started and taking the corpus sooner (see :meth:`Trainer.prepare`).
_TRAINING_MODULES = (
    "jobs.training.upkeep",
    "jobs.training.drift",
    "jobs.training.coordinates",
    "jobs.training.version_files",
)


def _import_training_modules() -> None:
    """Import :data:`_TRAINING_MODULES` (a no-op once done); an error is raised again where one is used."""
    for name in _TRAINING_MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            return


#: The GIL switch interval while the corpus streams in (Python's default is 5 ms). Reading, tokenizing and
#: spooling are a few hundred calls that each let go of the GIL to work in Arrow or numpy, and each must then
#: take it back from gensim's import, which runs Python code all the while: at the default interval every
#: return waits up to 5 ms, longer than many of the calls themselves take.
STREAMING_SWITCH_INTERVAL = 0.0005


@contextlib.contextmanager
def _prompt_gil() -> Iterator[None]:
    """Run the block with the GIL handed over within :data:`STREAMING_SWITCH_INTERVAL` (restored after; the
    actor takes one call at a time)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, STREAMING_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def blas_threads(threads: int) -> int:
    """Size this process's BLAS and OpenMP thread pools (numpy's, and gensim's through scipy) to ``threads``, now:
    the training actor learns its node's CPUs only once placed, after those libraries read their environment."""
    threadpool_limits(limits=threads)
    return threads


def spool_path(spool_dir: str | None, run: str) -> Path:
    """Where the trainer of ``run`` spools on its node: a name the driver knows too, so that it can remove the
    spool of an actor it had to kill."""
    return Path(spool_dir or tempfile.gettempdir()) / f"{SPOOL_PREFIX}{run}"


class Trainer:
    """Receives tokenized partitions, then produces and uploads one new model version."""

    def __init__(
        self,
        spool_dir: str | None = None,
        node_cpus: Callable[[], int] | None = None,
        fetch: Callable[[Any], TokenizedBatch] | None = None,
        run: str | None = None,
    ) -> None:
        """``node_cpus`` says how many CPUs this process's node offers (default: what the OS lets it use);
        it sets the training threads when the config leaves ``workers`` unset. ``fetch`` turns what the driver
        passes to :meth:`ingest` into a batch (on a cluster: an object reference into the batch it names); by
        default the batches are passed themselves. ``run`` names the spool folder (:func:`spool_path`), so that
        the driver can remove it should it have to kill the actor."""
        _show_progress()
        if run is None:
            self.dir = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=spool_dir))
        else:
            self.dir = spool_path(spool_dir, run)
            self.dir.mkdir(mode=0o700)
        self._lock = claim(self.dir)
        remove_stale_spools(self.dir.parent, keep=self.dir)
        self.corpus_path = self.dir / "corpus.txt"
        self.spool = spool.Spool(self.corpus_path)
        self.node_cpus = node_cpus or (lambda: len(os.sched_getaffinity(0)))
        threads = blas_threads(self.node_cpus())
        self._fetch = fetch or _same
        self._counts = RunningCounts()
        self._open: _Open | None = None
        self._loading: ParentLoad | None = None
        self._importing: threading.Thread | None = None  # gensim, imported while the corpus streams in
        self.sentences = self.tokens = self.spooled = self.lines = 0
        log.info("training actor: spool in %s, %d BLAS/OpenMP threads", self.dir, threads)

    def ingest(self, uri: str, batches: Iterable[Any], end: bool) -> tuple[int, int, int] | PartitionError | None:
        """Append the next batches of partition ``uri`` to the spool; ``end`` marks its last call.

        Iterating ``batches`` raises PartitionError when a piece of the partition is bad: the partition is
        then rolled back, and its later batches are ignored. At ``end``, returns the partition's (documents,
        sentences, tokens), or the PartitionError that rejected it; otherwise None. The driver never fetches
        the data itself.
        """
        with _prompt_gil():
            return self._receive(uri, (self._fetch(item) for item in batches), end)

    def tokenize(
        self, fs: Any, partition: Partition, read: ReadOptions, tokenizer: TokenizerConfig, retries: int
    ) -> tuple[tuple[int, int, int] | PartitionError, int, int]:
        """Read, tokenize and spool one whole partition here, piece by piece as tokenizing tasks would, with no
        task and no object store in between (a small increment; see :func:`jobs.tokenize.stream`). The spool,
        the counts and the answer are those of :meth:`ingest` given the same pieces' batches.

        A piece whose read fails for a reason outside its bytes (PartitionReadError) is read again from its
        start, up to ``retries`` more times, as Ray retries a task; then the error is raised. Returns the
        partition's answer (as :meth:`ingest` at its end), and how many pieces and bytes it was planned in."""
        with _prompt_gil():
            return self._tokenize(fs, partition, read, tokenizer, retries)

    def _tokenize(
        self, fs: Any, partition: Partition, read: ReadOptions, tokenizer: TokenizerConfig, retries: int
    ) -> tuple[tuple[int, int, int] | PartitionError, int, int]:
        try:
            pieces = plan(fs, partition, read.piece_bytes)
        except PartitionError as exc:
            return exc, 0, 0
        uri = partition.uri
        for piece in pieces:
            for attempt in range(retries + 1):
                part = self._opened(uri)
                if part.error is not None:
                    break  # an earlier piece was bad: the partition is rejected, its other pieces are not read
                mark = self.spool.mark(), self.spooled, self.lines, part.documents, part.sentences, part.tokens
                try:
                    self._receive(uri, tokenize_piece(fs, piece, read, tokenizer), end=False)
                except PartitionReadError:
                    if attempt == retries:
                        raise
                    log.warning(
                        "reading %s of %s failed; reading it again (%d of %d)", piece.label, uri, attempt + 1, retries
                    )
                    self.spool.rewind(mark[0])  # the piece's batches spooled so far, taken back
                    self.spooled, self.lines, part.documents, part.sentences, part.tokens = mark[1:]
                    continue
                break
        answer = self._receive(uri, (), end=True)
        assert answer is not None  # the end of a partition always answers
        return answer, len(pieces), sum(piece.size for piece in pieces)

    def _opened(self, uri: str) -> _Open:
        """The open partition ``uri``, opened now if another (or none) is open."""
        part = self._open
        if part is None or part.uri != uri:
            if part is not None:
                self._roll_back(part)  # the driver moved on without ending it: keep nothing of it
            part = self._open = _Open(uri, self.spool.mark(), self.spooled, self.lines)
        return part

    def _receive(
        self, uri: str, batches: Iterable[TokenizedBatch], end: bool
    ) -> tuple[int, int, int] | PartitionError | None:
        part = self._opened(uri)
        if part.error is None:
            try:
                for batch in batches:
                    self._append(uri, batch, part)
            except PartitionError as exc:
                part.error = exc
                self._roll_back(part)
            self.spool.flush()
        if not end:
            return None
        self._open = None
        if part.error is None and part.pieces and len(part.missing) == part.pieces:
            part.error = PartitionError(uri, part.missing[0])  # the field is in no piece, so in no line
            self._roll_back(part)
        if part.error is not None:
            return part.error
        self._counts.add(part.counts.table())
        self.sentences += part.sentences
        self.tokens += part.tokens
        return part.documents, part.sentences, part.tokens

    def _append(self, uri: str, batch: TokenizedBatch, part: _Open) -> None:
        lines = tokens = 0
        for chunk in batch.lines:
            more_lines, more_tokens = self.spool.write(chunk.tobytes(), uri)
            lines, tokens = lines + more_lines, tokens + more_tokens
        if tokens != batch.tokens:
            raise TrainingError(
                f"{uri}: the tokenizer counted {batch.tokens:,} tokens but gensim would read {tokens:,} from "
                "its sentences; nothing is published"
            )
        self.spooled += batch.nbytes
        self.lines += lines
        if batch.counts is not None:  # a piece's last batch
            part.counts.add(batch.counts)
            part.pieces += 1
            if batch.missing is not None:
                part.missing.append(batch.missing)
        part.documents += batch.documents
        part.sentences += batch.sentences
        part.tokens += batch.tokens

    def _roll_back(self, part: _Open) -> None:
        """Cut the spool back to where ``part`` began and forget what it brought."""
        self.spool.rewind(part.mark)
        self.spooled, self.lines = part.spooled, part.lines
        part.counts, part.documents, part.sentences, part.tokens = RunningCounts(), 0, 0, 0

    def finish(self, store: Store, request: TrainRequest) -> Candidate:
        """Update the parent (or a new model) with the spooled corpus, evaluate, save and upload it: each stage
        one function of the module that owns it, timed as a phase (the manifest's timings and peak memory).

        Raises the store's and the vocabulary's own errors (RefreshError) as they are, and TrainingError naming
        the version for anything else. The spool is removed whatever happens."""
        # gensim and the stages built on it: imported since prepare() when there is a parent (ready_to_train)
        self.ready_to_train()
        from jobs.training import coordinates, upkeep, version_files, vocabulary
        from jobs.training import model as gmodel

        phases, config, version = PhasePeaks(), request.training, request.version
        cache = request.loading().version_cache(self.dir)
        try:
            # 1. The parent prepare() started on, adjusted as the user allowed, or a new model.
            self._drop_open()  # a partition never ended is not trained on
            start = begin(self._parent(store, request, phases) if request.parent else None, config, request.adjust)
            # the parent's mapped matrices copied in while the vocabulary is updated, when training will write
            # most of their pages anyway
            paging = populate_matrices(start.model, self.tokens, config.epochs) if start.folder is not None else None
            # 2. The vocabulary: decayed, grown from this run's merged counts, capped (jobs.training.upkeep).
            with phases.phase("vocabulary"):
                counts = self._merged_counts()
                step = upkeep.decay_grow_cap(
                    start.model, counts, self.sentences, start.pending, start.standing, config, request.upkeep
                )
            log.info(
                "vocabulary %d -> %d words (%d new)", step.change.before, step.change.after, len(step.change.new_words)
            )
            # 3. The replay sample joins the spool, which is closed holding exactly the tokens spooled.
            replayed = replay.sample_for(start.reservoir, self.sentences, config)
            layout = self.spool.seal(self.tokens, replayed)
            # 4. Exact epochs over the spool, the parent's words frozen on request; recorded in the model.
            frozen = step.known if request.upkeep.freeze_known_words and start.folder is not None else None
            threads = blas_threads(config.workers or self.node_cpus())  # the matrix products after training, too
            if paging is not None:
                with phases.phase("page_in"):  # what is left of the copy, waited for
                    paging.join()
            with phases.phase("train"):
                trained = gmodel.train_and_record(
                    start.model,
                    layout,
                    config,
                    threads,
                    update=start.folder is not None,
                    frozen=frozen,
                    callbacks=request.callbacks,
                    split=request.split,
                    spooled=vocabulary.spooled_rows(
                        start.model.wv, counts, step.change.rows_of(start.model.wv, counts), spool.words_of(replayed)
                    ),
                    event=dict(
                        version=version, parent=request.parent, new_words=len(step.change.new_words), **request.event
                    ),
                )
            phases.seconds["train"] = trained.outcome.seconds
            # 5. Onto the parent's coordinates (--align), before the gate and drift, which then see the result.
            aligned: dict[str, Any] = {}
            if request.upkeep.align and start.folder is not None:
                with phases.phase("align"):
                    aligned = coordinates.align_to_parent(start.model, start.folder, step.parent_rows)
            # 6. The gate's measurements, the drift of the parent's words (frozen ones checked), neighbours: alone,
            # so that its seconds are its own.
            with phases.phase("evaluate"):
                evaluated = evaluate.evaluate_candidate(
                    start.baseline,
                    start.model.wv,
                    request.gate,
                    request.eval_files,
                    parent_vectors=start.vectors,
                    parent_rows=step.parent_rows,
                    frozen=frozen is not None,
                    new_words=step.change.new_words,
                    counts=counts,
                )
            # 7. The model's files are written while (8) the version's other files are: saving only reads the
            # model, as they do, and each spends most of its time outside the GIL (writing and hashing bytes).
            out = self.dir / "version"
            with ThreadPoolExecutor(1, thread_name_prefix="save model") as saving:
                # an error: the block waits
                saved = saving.submit(version_files.save_model, start.model, out, store.takes_files_in_place)
                # 8. The version's other files: the diff, what the lineage carries on, the driver's files.
                with phases.phase("save"):
                    written = version_files.write(
                        start.model,
                        out,
                        version,
                        saved.result,
                        parent=(request.parent or "", start.folder) if start.folder is not None else None,
                        pending=step.pending,
                        standing_of_words=step.standing if request.upkeep.keeps_standing else None,
                        reservoir=replay.carried(
                            start.reservoir, spool.sentences(self.corpus_path, self.lines), config
                        ),
                        extra_files=request.extra_files,
                        shared=evaluated.shared,
                    )
            # the save phase counts the writing's own seconds, the model's and the other files', which overlap (as
            # the parent's load overlaps tokenizing)
            phases.seconds["save"] = written.seconds
            del start  # the model: not held while uploading
            # 9. Upload, then keep the folder in the node's cache.
            with phases.phase("upload"):
                files = version_files.upload(store, version, written, cache)
        except RefreshError:
            raise  # the store's and the vocabulary's own errors already say what failed
        except Exception as exc:
            raise TrainingError(f"training {version} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self.close()
        return Candidate.from_stages(request, files, written, step, trained, evaluated, aligned, phases, self.spooled)

    def _drop_open(self) -> None:
        """Roll back the partition still open, if one is."""
        if self._open is not None:
            self._roll_back(self._open)
            self._open = None

    def _merged_counts(self) -> dict[str, int]:
        counts = self._counts.table()
        self._counts = RunningCounts()
        words = counts.column("word").to_numpy(zero_copy_only=False).tolist()  # faster than to_pylist
        return dict(zip(words, counts.column("count").to_numpy().tolist(), strict=True))

    def prepare(self, store: Store, request: ParentRequest) -> None:
        """Start on the parent now, while the corpus streams in (see :mod:`jobs.training.parent`), and import
        gensim meanwhile in a thread of its own: the parent's fetch and checks need none, and the corpus is
        taken meanwhile. Whoever needs gensim before the import is done waits for it there; the driver calls
        :meth:`ready_to_train` before :meth:`finish`, whose request may hold gensim's classes (callbacks)."""
        if self._loading is None:
            self._loading = ParentLoad.start(store, request, self.dir)
        if self._importing is None:
            self._importing = threading.Thread(target=_import_training_modules, name="import gensim", daemon=True)
            self._importing.start()

    def ready_to_train(self) -> None:
        """Return once gensim is imported (:meth:`prepare`). Called on its own before :meth:`finish`: Ray
        unpickles a call's arguments before the call, and a callback's class imports gensim, which two threads
        must not import at once (gensim's packages import each other: from two ends, the imports deadlock)."""
        if self._importing is not None:
            self._importing.join()

    def _parent(self, store: Store, request: TrainRequest, phases: PhasePeaks) -> Parent:
        """The parent :meth:`prepare` started on, once it is ready (the wait is timed as ``parent_wait``);
        loaded now if it was not prepared, or was prepared for other settings."""
        wanted = request.loading()
        loading, self._loading = self._loading, None
        if loading is not None and loading.request == wanted:
            with phases.phase("parent_wait"):
                parent = loading.result()
            phases.merge(loading.phases)
            return parent
        if loading is not None:
            loading.stop(wait=60)
        return load_parent(store, wanted, self.dir, phases)

    def close(self) -> None:
        """Remove the spool (the actor's node keeps nothing once the run ends)."""
        if self._loading is not None:
            self._loading.stop(wait=30)  # a parent still loading is not left writing into the spool
        self.spool.discard()
        shutil.rmtree(self.dir, ignore_errors=True)
        self._lock.close()


SPOOL_PREFIX = "embedding-refresh-"
_OWNER = ".owner.lock"  # held (flock) by the live trainer that owns the spool folder


def claim(folder: Path) -> FileLock:
    """Hold an exclusive lock on ``folder``'s owner file for the life of this process (the kernel releases it
    when the process dies, however it dies), so other trainers can tell a live spool from a stale one."""
    lock = FileLock(folder / _OWNER)
    lock.acquire()
    return lock


def remove_stale_spools(parent: Path, keep: Path) -> list[Path]:
    """Remove spool folders under ``parent`` whose owner is dead: a training actor killed mid-run leaves its
    spool, parent copy and output behind. A folder counts only if it carries an owner file, and is removed
    only while this process holds that file's lock, which no live owner would let it take."""
    removed = []
    for folder in parent.glob(f"{SPOOL_PREFIX}*"):
        owner = folder / _OWNER
        if folder == keep or not owner.is_file():
            continue
        try:
            with FileLock(owner) as lock:
                if not lock.acquire(wait=False):  # a live trainer owns it
                    continue
                shutil.rmtree(folder, ignore_errors=True)
        except (OSError, IntegrityError):  # it vanished meanwhile, or its owner file is not a file
            continue
        log.info("removed the stale spool %s (its training actor is gone)", folder)
        removed.append(folder)
    return removed
