"""Frozen coordinates: the parent's words keep their vectors bit for bit while new words learn.

gensim's training kernels scale every update of an input vector by a per-row lock factor
(``wv.vectors_lockf`` for Word2Vec; ``vectors_vocab_lockf`` and ``vectors_ngrams_lockf`` for FastText), in
iterable and ``corpus_file`` mode alike. gensim keeps them as one-element arrays of 1.0 (no lock) and calls the
feature experimental, and locks have been reported not to hold (gensim #3100). So :func:`lock` sizes them for
the run, :func:`unlock` restores gensim's defaults before the model is saved, and the trainer does not trust
either: it compares every frozen row with the parent's, bit for bit, and fails the run if one moved.

- Word2Vec: lock factor 0 for the parent's words, 1 for new ones.
- FastText: a word's vector is the mean of its own row and its n-gram buckets, which new words share. The
  parent's words' rows and every bucket one of them uses are locked; new words learn through their own
  rows and the buckets no known word uses.

The output layer (``syn1neg``) keeps learning: it is the context new words are fitted against, and
consumers read only the input vectors.

    >>> lock(model, known=len(parent_words))                       # doctest: +SKIP
    >>> train(...); unlock(model)                                  # doctest: +SKIP
    >>> check(drift.measure(...), known=len(parent_words))         # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jobs.errors import TrainingError

_REAL = np.float32


def lock(model: Any, known: int) -> None:
    """Lock the first ``known`` words (the parent's, which an update and a prune keep in front)."""
    wv = model.wv
    words = np.ones(len(wv.index_to_key), dtype=_REAL)
    words[:known] = 0.0
    if hasattr(wv, "vectors_vocab"):
        wv.vectors_vocab_lockf = words
        ngrams = np.ones(wv.bucket, dtype=_REAL)
        if known and wv.bucket:
            ngrams[np.concatenate([np.zeros(0, np.uint32), *wv.buckets_word[:known]])] = 0.0
        wv.vectors_ngrams_lockf = ngrams
    else:
        wv.vectors_lockf = words


def unlock(model: Any) -> None:
    """gensim's own no-op lock factors again (one element of 1.0), as a saved model has them."""
    wv = model.wv
    if hasattr(wv, "vectors_vocab"):
        wv.vectors_vocab_lockf = np.ones(1, dtype=_REAL)
        wv.vectors_ngrams_lockf = np.ones(1, dtype=_REAL)
    else:
        wv.vectors_lockf = np.ones(1, dtype=_REAL)


def check(drift: dict[str, Any], known: int) -> None:
    """Raise TrainingError when any of the ``known`` frozen words' vectors changed (``drift["changed"]``, counted
    bit for bit against the parent's files by :func:`jobs.training.drift.measure`)."""
    if drift["changed"]:
        raise TrainingError(
            f"--freeze-known-words did not hold: {drift['changed']} of {known} known words' "
            f"vectors changed in training; nothing was published"
        )
