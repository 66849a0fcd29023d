"""Exact multi-threaded epochs over the spool: every spooled token trained once per epoch, at the right rate.

gensim's own ``corpus_file`` training starts thread *k* of *W* at byte ``size·k/W`` and stops it after
``total_words/W`` words, so wherever words per byte vary along the file threads overlap or leave ranges
untrained, and each thread's learning rate falls only ``1/W`` of the way per epoch. This module drives the
same per-thread C loops (``train_epoch_cbow``/``train_epoch_sg`` of ``word2vec_corpusfile`` and
``fasttext_corpusfile``, which release the GIL and read the file themselves) with ranges it chose:

- the spool is written in whole batches of exactly ``BATCH_RAW_WORDS`` raw words (:mod:`jobs.training.spool`),
  so a reader started at a batch's first byte and stopped after *n* batches' raw words trains exactly those
  *n* batches;
- thread *k* gets a contiguous run of batches, the runs covering the spool once with equal numbers of batches
  (so equal work, to one batch);
- each call is told its own range's size, so gensim's per-thread progress, and with it the learning rate, is
  right: the rate falls linearly over each thread's share of every epoch, from the run's start rate to its
  end rate over the run; each range is trained in segments of ``SEGMENT_BATCHES`` batches, each with its
  slice of that line, so progress can be logged between them;
- the vocabulary is converted for the C loops (``CythonVocab``, a Python loop over its words) once per run, not
  once per epoch, and only for the words the spool holds when they are the smaller part of it: the loops skip a
  token missing from that map before drawing any random number, as they skip an unknown word, so a map of the
  spool's own words trains exactly as the whole vocabulary's would, and a small increment to a model of
  millions of words pays for its own words, not for the model's.

    outcome = train(model, layout, threads=8, epochs=5, start_alpha=0.025, end_alpha=0.0001)
    outcome.trained == [layout.tokens] * 5
    True

Each call reports the raw words it read; the padding a range holds is known, so the words trained per epoch
are counted, not assumed, and :func:`train` raises :class:`~jobs.errors.TrainingError` (the run then fails
before publishing) when an epoch trained more or fewer words than the spool holds.

What is relied on in gensim (checked by :func:`check_gensim`, and by ``tests/component/test_epochs.py`` against the
installed version): the functions' signatures; that they read ``alpha``, ``min_alpha``, ``epochs`` and
``workers`` from the model object passed in, start at ``offset`` and stop once they read more than
``expected_words / workers`` raw words; and ``next_batch``'s and ``prepare_c_structures_for_batch``'s
batch rules described in :mod:`jobs.training.spool`. pyproject allows the gensim versions this was checked on.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gensim
import numpy as np
from gensim.models import FastText, Word2Vec, fasttext_corpusfile, word2vec_corpusfile
from gensim.models.callbacks import CallbackAny2Vec

from jobs.errors import TrainingError
from jobs.training.spool import BATCH_RAW_WORDS, Layout, Split, split_evenly

log = logging.getLogger(__name__)

#: Batches one call trains (about 640,000 words): progress is logged between calls.
SEGMENT_BATCHES = 64
#: The loops' map is built for the spool's own words when they are fewer than this share of the vocabulary;
#: above it, selecting them costs more than the words left out save (1M words: the whole map 1.6 s; 200,000
#: of them 0.3 s, selection included; all of them selected 2.0 s).
SPOOLED_WORDS_SHARE = 0.5
#: gensim versions whose per-thread loops behave as described above.
GENSIM_VERSIONS = ("4.4.",)
_WORD2VEC_ARGS = (
    "model",
    "corpus_file",
    "offset",
    "_cython_vocab",
    "_cur_epoch",
    "_expected_examples",
    "_expected_words",
    "_work",
    "_neu1",
    "compute_loss",
)
_FASTTEXT_ARGS = (*_WORD2VEC_ARGS[:8], "_l1")
_FASTTEXT_CBOW_ARGS = _WORD2VEC_ARGS[:9]


def check_gensim() -> None:
    """Fail loudly if the installed gensim is not one whose per-thread loops this module was checked against."""
    if not gensim.__version__.startswith(GENSIM_VERSIONS):
        raise TrainingError(f"gensim {gensim.__version__} is not supported (exact training needs {GENSIM_VERSIONS})")
    expected = {
        word2vec_corpusfile.train_epoch_cbow: _WORD2VEC_ARGS,
        word2vec_corpusfile.train_epoch_sg: _WORD2VEC_ARGS,
        fasttext_corpusfile.train_epoch_cbow: _FASTTEXT_CBOW_ARGS,
        fasttext_corpusfile.train_epoch_sg: _FASTTEXT_ARGS,
    }
    for function, names in expected.items():
        found = tuple(inspect.signature(function).parameters)
        if found != names:
            raise TrainingError(f"gensim's {function.__qualname__}{found} changed; exact training expects {names}")
    if getattr(word2vec_corpusfile, "CORPUSFILE_VERSION", None) != 1:
        raise TrainingError("gensim's corpus_file reader changed (CORPUSFILE_VERSION); exact training needs 1")


@dataclass(frozen=True)
class Schedule:
    """The learning rate falling linearly from ``start`` to ``end`` over a thread's share of the whole run."""

    start: float
    end: float

    def at(self, progress: float) -> float:
        return self.start - (self.start - self.end) * progress


@dataclass(frozen=True)
class Outcome:
    """What the epochs trained, counted from what gensim's loops report."""

    threads: int
    expected: int  # spooled tokens: what each epoch must train
    trained: list[int]  # raw spooled words trained, per epoch
    effective: list[int]  # words that reached the network (known, not down-sampled), per epoch
    alpha: dict[str, Any]
    seconds: float

    def summary(self) -> str:
        per_epoch = sorted(set(self.trained))
        trained = f"{per_epoch[0]:,}" if len(per_epoch) == 1 else "/".join(f"{n:,}" for n in self.trained)
        return f"trained {trained} of {self.expected:,} tokens per epoch"


class _SpooledWords:
    """What gensim's ``CythonVocab`` reads of a model's vectors (``key_to_index``, ``get_index``, ``expandos``,
    FastText's ``buckets_word``), for the ``spooled`` words only, at their rows with their down-sampling
    thresholds."""

    def __init__(self, wv: Any, spooled: Mapping[str, int]) -> None:
        self.key_to_index = spooled
        self.get_index = spooled.__getitem__
        rows = np.fromiter(spooled.values(), dtype=np.int64, count=len(spooled))
        self.expandos = {
            **wv.expandos,
            "sample_int": dict(zip(rows.tolist(), wv.expandos["sample_int"][rows].tolist(), strict=True)),
        }
        self.buckets_word = getattr(wv, "buckets_word", None)


def loop_vocabulary(model: Word2Vec, fasttext: bool, spooled: Mapping[str, int] | None = None) -> Any:
    """gensim's vocabulary for its C loops: for the ``spooled`` words alone (the rows of the words the spool
    holds; more words do no harm) when they are fewer than :data:`SPOOLED_WORDS_SHARE` of the model's, else for
    all of them."""
    wv = model.wv
    if spooled is not None and len(spooled) < SPOOLED_WORDS_SHARE * len(wv):
        log.info("the training loops' vocabulary: the spool's %s of %s words", f"{len(spooled):,}", f"{len(wv):,}")
        wv = _SpooledWords(wv, spooled)
    return word2vec_corpusfile.CythonVocab(wv, hs=model.hs, fasttext=fasttext)


class _Call:
    """The model as one call of gensim's loop sees it: its own rates, and ``workers=1`` so that it stops after
    exactly the raw words it is given (gensim divides them by ``workers``). Everything else is the model's."""

    def __init__(self, model: Word2Vec, alpha: float, min_alpha: float) -> None:
        self._model = model
        self.alpha, self.min_alpha, self.epochs, self.workers = alpha, min_alpha, 1, 1
        self.running_training_loss = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@dataclass
class _Thread:
    runs: range
    raw: int = 0  # raw words read this epoch (padding included)
    effective: int = 0
    loss: float = 0.0
    error: BaseException | None = None
    first_alpha: float | None = None
    last_alpha: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


def train(
    model: Word2Vec,
    layout: Layout,
    threads: int,
    epochs: int,
    start_alpha: float,
    end_alpha: float,
    callbacks: Sequence[CallbackAny2Vec] = (),
    split: Split = split_evenly,
    spooled: Mapping[str, int] | None = None,
) -> Outcome:
    """Train ``epochs`` epochs over the spool with ``threads`` threads. ``spooled``: the rows of the words the
    spool holds, when known (:func:`loop_vocabulary`). Raises TrainingError on a miscount."""
    check_gensim()
    if layout.batches == 0:
        raise TrainingError("the spool holds no sentence; nothing to train")
    fasttext = isinstance(model, FastText)
    module = fasttext_corpusfile if fasttext else word2vec_corpusfile
    loop = module.train_epoch_sg if model.sg else module.train_epoch_cbow
    vocab = loop_vocabulary(model, fasttext, spooled)
    runs = list(split(layout, threads))
    schedule = Schedule(start_alpha, end_alpha)
    path = str(layout.path)
    padding = BATCH_RAW_WORDS - layout.words
    model.alpha, model.min_alpha, model.epochs = start_alpha, end_alpha, epochs
    model.running_training_loss = 0.0
    model.add_lifecycle_event(
        "train",
        msg=f"exact epochs: {len(runs)} threads over {layout.batches} batches, {layout.tokens:,} tokens, "
        f"{len(model.wv)} words, alpha {start_alpha:g} to {end_alpha:g}",
    )

    def run(state: _Thread, epoch: int) -> None:
        try:
            work, neu1 = model._get_thread_working_mem()
            size = len(state.runs)
            for first in range(state.runs.start, state.runs.stop, SEGMENT_BATCHES):
                last = min(state.runs.stop, first + SEGMENT_BATCHES)
                done = epoch * size + first - state.runs.start
                call = _Call(
                    model,
                    schedule.at(done / (epochs * size)),
                    schedule.at((done + last - first) / (epochs * size)),
                )
                raw = (last - first) * BATCH_RAW_WORDS
                args = [call, path, int(layout.offsets[first]), vocab, 0, None, raw - 1, work, neu1]
                if not fasttext:
                    args.append(model.compute_loss)
                _, effective, read = loop(*args)
                state.raw += read - int(padding[first:last].sum())
                state.effective += effective
                state.loss += call.running_training_loss
                if state.first_alpha is None:
                    state.first_alpha = call.alpha
                # gensim's rate for the segment's last batch: the line's value one batch before its end.
                state.last_alpha = call.alpha - (call.alpha - call.min_alpha) * (raw - BATCH_RAW_WORDS) / (raw - 1)
        except BaseException as exc:  # re-raised by the driver thread
            state.error = exc

    trained: list[int] = []
    effective: list[int] = []
    states = [_Thread(r) for r in runs]
    start = last_log = time.perf_counter()
    for callback in callbacks:
        callback.on_train_begin(model)
    for epoch in range(epochs):
        for callback in callbacks:
            callback.on_epoch_begin(model)
        for state in states:
            state.raw = state.effective = 0
            state.thread = threading.Thread(target=run, args=(state, epoch), daemon=True)
            state.thread.start()
        for state in states:
            assert state.thread is not None
            while state.thread.is_alive():
                state.thread.join(timeout=1.0)
                if time.perf_counter() - last_log > 10:
                    last_log = time.perf_counter()
                    done = sum(s.raw for s in states)
                    log.info(
                        "epoch %d/%d: %.0f%% of %s tokens, %s words/s",
                        epoch + 1,
                        epochs,
                        100 * done / layout.tokens,
                        f"{layout.tokens:,}",
                        f"{(epoch * layout.tokens + done) / (last_log - start):,.0f}",
                    )
        for state in states:
            if state.error is not None:
                raise state.error
        trained.append(sum(s.raw for s in states))
        effective.append(sum(s.effective for s in states))
        if trained[-1] != layout.tokens:
            raise TrainingError(
                f"epoch {epoch + 1} trained {trained[-1]:,} of {layout.tokens:,} spooled tokens; the trainer's "
                "reading of the spool does not match what was spooled, so nothing is published"
            )
        for callback in callbacks:
            callback.on_epoch_end(model)
    seconds = time.perf_counter() - start
    model.running_training_loss = sum(s.loss for s in states)
    model.train_count += 1
    model._clear_post_train()
    for callback in callbacks:
        callback.on_train_end(model)
    alpha = {
        "start": start_alpha,
        "end": end_alpha,
        "first": max(s.first_alpha or start_alpha for s in states),
        "last": min(s.last_alpha or end_alpha for s in states),
        "decay": "linear over each thread's equal share of every epoch",
    }
    outcome = Outcome(len(runs), layout.tokens, trained, effective, alpha, seconds)
    log.info(
        "%s with %d threads in %.1f s (%s words/s); alpha %g to %g",
        outcome.summary(),
        len(runs),
        seconds,
        f"{epochs * layout.tokens / max(seconds, 1e-9):,.0f}",
        alpha["first"],
        alpha["last"],
    )
    return outcome
