"""Everything gensim: creating, loading, growing the vocabulary of, training and saving a model.

With :mod:`jobs.training.vocabulary` and :mod:`jobs.training.epochs`, the modules that import gensim. The
refresh updates a model in three calls:

    model = create(TrainingConfig(min_count=1))           # or load(folder / MODEL_DIR)
    change = grow_vocabulary(model, {"new": 3, "words": 2}, sentences=1)
    outcome = train(model, spool.close(), TrainingConfig(), threads=8)
    outcome.summary()
    'trained 5 of 5 tokens per epoch'

The vocabulary grows from word counts merged by the Ray workers, so the corpus is read once, by training; an
update does per-word work only for the batch's words (:mod:`jobs.training.vocabulary`: gensim's update, in
numpy). Training runs gensim's per-thread C loops over the spooled file, each thread on its own equal share of
it (:mod:`jobs.training.epochs`): no GIL-bound Python iterator or job queue as in iterable mode, which is what
lets training scale with cores, and, unlike gensim's ``corpus_file`` mode, every spooled token trained exactly
once per epoch. Incremental runs always use negative sampling: hierarchical-softmax trees would be rebuilt,
invalidating the trained output layer, on every vocabulary update.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gensim.models import FastText, Word2Vec
from gensim.models.callbacks import CallbackAny2Vec

from jobs.config import TrainingConfig
from jobs.errors import TrainingError
from jobs.format import trainable
from jobs.storage.publish import MODEL_DIR
from jobs.training import epochs, freeze, serialize, vocabulary
from jobs.training.spool import Layout
from jobs.training.vocabulary import VocabularyChange

log = logging.getLogger(__name__)


def create(config: TrainingConfig) -> Word2Vec:
    """A new, untrained model with ``config``'s architecture."""
    common: dict[str, Any] = dict(
        vector_size=config.vector_size,
        window=config.window,
        min_count=config.min_count,
        sg=int(config.sg),
        hs=0,
        negative=config.negative,
        sample=config.sample,
        alpha=config.alpha,
        min_alpha=config.min_alpha,
        workers=config.workers or 1,  # train() sets the threads it trains with
        seed=config.seed,
        epochs=config.epochs,
    )
    if config.model == "fasttext":
        return FastText(min_n=config.min_n, max_n=config.max_n, bucket=config.bucket, **common)
    return Word2Vec(**common)


def kind(model: Word2Vec) -> str:
    return "fasttext" if isinstance(model, FastText) else "word2vec"


def architecture(model: Word2Vec) -> dict[str, Any]:
    """The hyper-parameters a lineage keeps from its first model, read from the model itself (what a
    manifest's ``lineage`` section records; :func:`jobs.lineage.settings.architecture_of` reads the same
    from a saved model's parameters)."""
    arch: dict[str, Any] = {
        "model": kind(model),
        "vector_size": model.vector_size,
        "window": model.window,
        "sg": int(model.sg),
        "negative": model.negative,
        "sample": model.sample,
        "min_count": model.min_count,
        "cbow_mean": int(model.cbow_mean),
        "ns_exponent": float(getattr(model, "ns_exponent", 0.75)),
    }
    if isinstance(model, FastText):
        arch.update(min_n=model.wv.min_n, max_n=model.wv.max_n, bucket=model.wv.bucket)
    return arch


#: what :func:`adjust` may change on a loaded model: gensim reads them at each train() and vocabulary update
ADJUSTABLE = ("window", "sg", "negative", "sample", "min_count")


def adjust(model: Word2Vec, config: TrainingConfig, names: tuple[str, ...]) -> None:
    """Give a loaded model ``config``'s value of each setting in ``names`` (a change the user allowed with
    ``--allow-setting-change``); a new ``sample`` recomputes every word's down-sampling threshold."""
    for name in names:
        if name not in ADJUSTABLE:
            raise TrainingError(f"{name} cannot change on a trained model")
        value = getattr(config, name)
        setattr(model, name, int(value) if name == "sg" else value)
        log.info("%s is now %s (--allow-setting-change)", name, value)
    if "sample" in names:
        resample(model)


def load(folder: Path, spare_rows: int | None = 0, mapped: bool = False) -> Word2Vec:
    """Load a saved model (its ``MODEL_DIR`` folder), trainable, without unpickling (:mod:`.serialize`), with
    room to add up to ``spare_rows`` words without copying its matrices (None: as many as it holds);
    ``mapped``: its matrices mapped copy-on-write from the files, which must stay unchanged meanwhile."""
    return serialize.load(folder, spare_rows=spare_rows, mapped=mapped)


def build(read: trainable.Trainable) -> Word2Vec:
    """The trainable model over files already read and checked (:func:`jobs.format.trainable.read`, which needs
    no gensim): :func:`load` in two steps, for a caller that reads while gensim is still being imported."""
    return serialize.build(read)


def vectors_file(folder: Path) -> Path:
    """The file of a saved model's word vectors (the composed ones, for FastText), as a plain ``.npy``."""
    return folder / "vectors.npy"


def grow_vocabulary(
    model: Word2Vec, counts: dict[str, int], sentences: int, pending: dict[str, int] | None = None
) -> VocabularyChange:
    """Add this run's word ``counts`` to the model's vocabulary; the first call builds it.

    With ``pending`` (counts of words that never reached ``min_count``, remembered across runs) a word is
    admitted once its cumulative count reaches ``min_count``, and down-sampling is recomputed from the
    cumulative counts of the whole vocabulary. With ``pending=None`` this is gensim's own behaviour:
    ``min_count`` and down-sampling are judged on this run's counts alone.
    """
    before = len(model.wv)
    known = model.wv.key_to_index
    offered = dict(counts)
    if pending is not None:
        for word, count in pending.items():
            if word in offered and word not in known:
                offered[word] += count
    if before:
        change = vocabulary.grow(model, offered, sentences)
    else:
        try:
            model.build_vocab_from_freq(offered, corpus_count=sentences)
        except RuntimeError as exc:
            raise TrainingError(f"vocabulary update failed: {exc}") from exc
        change = VocabularyChange(before=0, after=len(model.wv), new_words=list(model.wv.index_to_key))
    if pending is not None:
        resample(model)
    return change


def resample(model: Word2Vec) -> None:
    """Recompute every word's down-sampling threshold from its cumulative count (gensim's formula), rather
    than from the latest batch alone as ``build_vocab(update=True)`` does (gensim issue #2951)."""
    if len(model.wv) == 0:
        return
    counts = model.wv.expandos["count"]
    model.wv.expandos["sample_int"] = vocabulary.sample_ints(counts, model.sample, float(counts.sum()))


def train(
    model: Word2Vec,
    layout: Layout,
    config: TrainingConfig,
    threads: int,
    callbacks: tuple[CallbackAny2Vec, ...] = (),
    update: bool = False,
    split: epochs.Split = epochs.split_evenly,
    spooled: Mapping[str, int] | None = None,
) -> epochs.Outcome:
    """Train ``config.epochs`` exact epochs over the spool with ``threads`` threads (:mod:`jobs.training.epochs`).

    The rate falls linearly from :meth:`TrainingConfig.learning_rate`'s start (``--alpha``, or for an update
    ``--update-alpha`` when given) to ``config.min_alpha``. ``spooled``: the rows of the words the spool holds,
    when known (the C loops then map only those, :func:`jobs.training.epochs.loop_vocabulary`). Raises TrainingError
    when an epoch did not train exactly the spooled tokens.
    """
    if len(model.wv) == 0:
        raise TrainingError(
            f"no word reaches min_count={model.min_count}; nothing to train (lower --min-count or add data)"
        )
    model.workers = threads
    alpha = config.learning_rate(update)["start"]
    with vocabulary.composed_after(model):
        return epochs.train(model, layout, threads, config.epochs, alpha, config.min_alpha, callbacks, split, spooled)


@dataclass(frozen=True)
class Trained:
    """What one refresh's training did, as the manifest reports it."""

    outcome: epochs.Outcome
    threads: int
    update: bool  # a parent's model, trained further
    frozen: bool  # the parent's words locked (--freeze-known-words)

    def learning_rate(self, config: TrainingConfig) -> dict[str, Any]:
        """The rate asked for and the one the first and last batches trained at."""
        alpha = self.outcome.alpha
        return {
            **config.learning_rate(self.update),
            "first_batch": alpha["first"],
            "last_batch": alpha["last"],
            "decay": alpha["decay"],
        }

    def figures(self) -> dict[str, Any]:
        """Threads, epochs and the tokens each epoch was to train and trained."""
        outcome = self.outcome
        return {
            "threads": self.threads,
            "epochs": len(outcome.trained),
            "tokens_per_epoch": outcome.expected,
            "trained_per_epoch": outcome.trained,
            "effective_per_epoch": outcome.effective,
            "summary": outcome.summary(),
        }


def train_and_record(
    model: Word2Vec,
    layout: Layout,
    config: TrainingConfig,
    threads: int,
    *,
    update: bool,
    frozen: int | None = None,
    callbacks: tuple[CallbackAny2Vec, ...] = (),
    split: epochs.Split = epochs.split_evenly,
    event: dict[str, Any] | None = None,
    spooled: Mapping[str, int] | None = None,
) -> Trained:
    """One refresh's training: :func:`train`, with the first ``frozen`` words (the parent's) locked when
    given (:mod:`jobs.training.freeze`; whether they held is checked against the parent's files afterwards),
    then the refresh ``event`` recorded in the model (:func:`record`). Raises as :func:`train`."""
    if frozen is not None:
        freeze.lock(model, frozen)
    outcome = train(model, layout, config, threads, callbacks, update=update, split=split, spooled=spooled)
    freeze.unlock(model)  # gensim's own lock factors, as a saved model has them
    record(model, **(event or {}))
    return Trained(outcome, threads, update, frozen is not None)


def record(model: Word2Vec, **event: Any) -> None:
    """Record a refresh as a gensim lifecycle event, kept inside the saved model."""
    model.add_lifecycle_event("refresh", **event)


def imported(model: Word2Vec, **event: Any) -> None:
    """Record an import (the file it came from) as a gensim lifecycle event, kept inside the saved model."""
    model.add_lifecycle_event("imported", **event)


def save(model: Word2Vec, folder: Path, durable: bool = False) -> dict[str, dict[str, Any]]:
    """Save the model into ``folder / MODEL_DIR`` in the store's pickle-free format (:mod:`.serialize`); return
    each file's manifest entry by its name under ``folder``, hashed as it was written; ``durable``: each file
    on disk once written."""
    saved = serialize.save(model, folder / MODEL_DIR, durable)
    return {f"{MODEL_DIR}/{name}": entry for name, entry in saved.items()}


def export_model(model: Word2Vec, output: Path) -> None:
    """The whole trainable model as gensim's own ``save()`` file (a pickle, with large arrays beside it as
    ``.npy``), for users who continue in plain gensim: ``Word2Vec.load(output)`` (or ``FastText.load``)."""
    model.save(str(output))


def neighbours(model: Word2Vec, word: str, topn: int = 5) -> list[tuple[str, float]]:
    if word not in model.wv.key_to_index:
        return []
    return [(w, round(float(s), 4)) for w, s in model.wv.most_similar(word, topn=topn)]


def counts_of(model: Word2Vec) -> dict[str, int]:
    """The vocabulary with each word's cumulative count."""
    return {w: int(model.wv.get_vecattr(w, "count")) for w in model.wv.index_to_key}
