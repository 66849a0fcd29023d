"""Removing words from a trainable gensim model, consistently and without per-word Python loops.

gensim can add words to a trained model but not remove them. :func:`remove` does, from every per-word
structure gensim keeps, so the result trains, saves, loads and answers ``most_similar`` as a model that never
had those words:

- the key maps (``index_to_key``, ``key_to_index``, ``next_index``) and the cached norms;
- the per-word attributes (``count``, ``sample_int``); down-sampling is recomputed from the surviving counts
  (the total changed), as a model built from scratch on them would have it;
- ``vectors``, ``syn1neg`` and the negative-sampling table ``cum_table`` (vectorized, equal to gensim's
  ``make_cum_table``);
- for FastText, ``vectors_vocab`` and each word's n-gram buckets; the shared n-gram matrix stays.

Surviving words keep their relative order, so the parent's words stay in front of the words an update
appended, and the rows of every array stay aligned with ``index_to_key``.

    >>> removed = remove(model, keep=standing >= threshold)       # doctest: +SKIP
"""

from __future__ import annotations

from itertools import compress
from typing import Any

import numpy as np

from jobs.errors import TrainingError
from jobs.training import model as gmodel
from jobs.training.vocabulary import cum_table


def remove(model: Any, keep: np.ndarray) -> list[str]:
    """Remove the words whose ``keep`` entry is False (``keep`` is aligned with ``index_to_key``); return them
    in index order. Raises TrainingError for a model with hierarchical softmax (its trees would need a
    rebuild, which invalidates the output layer) or a mask of the wrong length."""
    wv = model.wv
    keep = np.asarray(keep, dtype=bool)
    if len(keep) != len(wv.index_to_key):
        raise TrainingError(f"pruning mask covers {len(keep)} words, the model has {len(wv.index_to_key)}")
    if keep.all():
        return []
    if model.hs:
        raise TrainingError("cannot prune a model with hierarchical softmax; updates use negative sampling only")
    rows = np.flatnonzero(keep)
    removed = list(compress(wv.index_to_key, ~keep))

    wv.index_to_key = list(compress(wv.index_to_key, keep))
    wv.key_to_index = dict(zip(wv.index_to_key, range(len(rows)), strict=True))
    wv.next_index = len(rows)
    wv.norms = None
    wv.vectors = wv.vectors[rows]
    wv.expandos = {name: values[rows] for name, values in wv.expandos.items()}
    if len(getattr(wv, "vectors_lockf", ())) > 1:
        wv.vectors_lockf = wv.vectors_lockf[rows]
    if getattr(model, "syn1neg", None) is not None and len(model.syn1neg):
        model.syn1neg = model.syn1neg[rows]
    if hasattr(wv, "vectors_vocab"):  # FastText: the words' own rows; vectors_ngrams is shared and stays
        wv.vectors_vocab = wv.vectors_vocab[rows]
        if len(getattr(wv, "vectors_vocab_lockf", ())) > 1:
            wv.vectors_vocab_lockf = wv.vectors_vocab_lockf[rows]
        if wv.buckets_word is not None:
            wv.buckets_word = list(compress(wv.buckets_word, keep))

    gmodel.resample(model)
    if model.negative:
        model.cum_table = cum_table(wv.expandos["count"], model.ns_exponent)
    return removed
