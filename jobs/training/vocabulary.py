"""Growing a trained model's vocabulary at the cost of the batch, not of the model: gensim's update, in numpy.

gensim's ``build_vocab_from_freq(..., update=True)`` loops in Python over every word of the vocabulary: to add
counts, in ``make_cum_table``, in ``prep_vectors`` (which draws random values for the whole matrix and then
overwrites the old rows) and, for FastText, in ``recalc_char_ngram_buckets`` and ``adjust_vectors``. At a
million words that is tens of seconds before a token is trained. :func:`grow` makes the same update with
Python work only for the words of the batch, and whole-array numpy for the rest:

    change = grow(model, {"known": 3, "fresh": 7}, sentences=2)        # doctest: +SKIP
    change.new_words
    ['fresh']

It leaves the model exactly as gensim's update would (tested against it): the same words in the same order,
counts, ``sample_int``, ``cum_table``, ``syn1neg``, and the same random initial vectors for new words,
drawn from the same seeded generator by skipping the values gensim would have drawn for the old rows. For
FastText the n-gram buckets are hashed and the composed vectors computed for the new words only. Models
with hierarchical softmax or a null word take gensim's own path (the refresh never creates them).

:func:`cum_table` and :func:`compose_vectors` (gensim's ``adjust_vectors``, to the bit) serve loading and
training as well.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import numpy as np
from gensim.models.fasttext import FastText

from jobs.format.ngrams import ngram_buckets

REAL = np.float32
_DOMAIN = 2**31 - 1  # gensim's cum_table domain
_BLOCK = 4096  # words composed at once by compose_vectors: a block of vectors stays in cache


@dataclass(frozen=True)
class VocabularyChange:
    """What a vocabulary update did."""

    before: int
    after: int
    new_words: list[str]
    #: each offered word's row after the update, in the order the counts were given (-1: not in the vocabulary),
    #: so that the steps after need not look the words up again; None where the update did not say
    rows: np.ndarray | None = field(default=None, compare=False, repr=False)

    def rows_of(self, wv: Any, counted: Iterable[str]) -> np.ndarray:
        """The rows of the ``counted`` words (the offered ones, in their order): as the update gave them, or
        looked up."""
        if self.rows is not None:
            return self.rows
        index = wv.key_to_index
        return np.fromiter((index.get(w, -1) for w in counted), dtype=np.int64)


def spooled_rows(wv: Any, counted: Iterable[str], rows: np.ndarray, others: Iterable[str] = ()) -> dict[str, int]:
    """The vocabulary's rows of the words a spool holds: the ``counted`` words' from their ``rows`` (-1: not in
    the vocabulary), and the ``others`` (e.g. replayed sentences' words) looked up."""
    found = rows >= 0
    spooled = dict(zip(compress(counted, found.tolist()), rows[found].tolist(), strict=True))
    index = wv.key_to_index
    for word in others:
        if word not in spooled and (row := index.get(word)) is not None:
            spooled[word] = row
    return spooled


def grow(model: Any, counts: dict[str, int], sentences: int) -> VocabularyChange:
    """Add a batch of word ``counts`` to a model that has a vocabulary, as gensim's
    ``build_vocab_from_freq(counts, corpus_count=sentences, update=True)`` does.

    Words at or above the model's ``min_count`` in this batch join, in the batch's order; every batch word
    the model knows has its count increased; ``sample_int`` is recomputed for the retained batch words from
    their batch counts (gensim's rule); ``cum_table`` from all counts. Raises ValueError on a model without
    a vocabulary (build that with gensim).
    """
    wv = model.wv
    before = len(wv)
    if before == 0:
        raise ValueError("grow() updates a vocabulary; build the first one with build_vocab_from_freq")
    if model.hs or model.null_word:
        model.build_vocab_from_freq(counts, corpus_count=sentences, update=True)
        return VocabularyChange(before, len(wv), list(wv.index_to_key[before:]))

    words = list(counts)
    batch = np.fromiter(counts.values(), dtype=np.int64, count=len(words))
    index = np.fromiter((wv.key_to_index.get(w, -1) for w in words), dtype=np.int64, count=len(words))
    keep = batch >= _effective_min_count(model, batch)
    fresh = np.flatnonzero(keep & (index < 0))
    new_words = [words[i] for i in fresh]
    index[fresh] = np.arange(before, before + len(fresh))
    wv.index_to_key.extend(new_words)
    wv.key_to_index.update(zip(new_words, range(before, before + len(fresh)), strict=True))

    for attr, kind in (("count", np.int64), ("sample_int", np.uint32)):
        if attr not in wv.expandos:
            wv.expandos[attr] = np.zeros(before, dtype=kind)
    wv.allocate_vecattrs()  # every per-word attribute grows to the new size, zero-filled
    known = index >= 0
    wv.expandos["count"][index[known]] += batch[known]
    retained = batch[keep]
    if len(retained):
        wv.expandos["sample_int"][index[keep]] = sample_ints(retained, model.sample, int(retained.sum()))
    if model.negative:
        model.cum_table = cum_table(wv.expandos["count"], model.ns_exponent)

    _append_weights(model, before, new_words)
    model.corpus_count = sentences or 0
    model.raw_vocab = defaultdict(int)
    model.add_lifecycle_event(
        "prepare_vocab",
        msg=(
            f"added {len(new_words)} new unique words and increased the count of "
            f"{int(np.count_nonzero(keep)) - len(new_words)} pre-existing words (numpy update)"
        ),
    )
    return VocabularyChange(before, len(wv), new_words, rows=index)


def _effective_min_count(model: Any, batch: np.ndarray) -> int:
    """``min_count``, raised as gensim raises it when ``max_final_vocab`` caps the batch's words."""
    min_count = int(model.min_count)
    cap = getattr(model, "max_final_vocab", None)
    if cap is not None and cap < len(batch):
        min_count = max(min_count, int(np.sort(batch)[::-1][cap]) + 1)
    model.effective_min_count = min_count
    return min_count


def sample_ints(counts: np.ndarray, sample: float, total: float) -> np.ndarray:
    """gensim's down-sampling thresholds (``sample_int``) of words with ``counts``, ``total`` the count the
    ``sample`` rate is taken of."""
    if not sample:
        threshold = float(total)
    elif sample < 1.0:
        threshold = sample * total
    else:
        threshold = float(int(sample * (3 + np.sqrt(5)) / 2))
    values = np.asarray(counts, dtype=np.float64)
    probability = np.minimum((np.sqrt(values / threshold) + 1) * (threshold / values), 1.0)
    return (probability * (2**32 - 1)).astype(np.uint32)


def cum_table(counts: np.ndarray, ns_exponent: float, domain: int = _DOMAIN) -> np.ndarray:
    """gensim's negative-sampling table (``make_cum_table``) for ``counts``, equal to it to the bit: gensim
    raises each count (a numpy int64) with numpy's own power, then sums in order in float64, the total being
    the last of the sums; the same operations, vectorized."""
    if len(counts) == 0:
        return np.zeros(0, dtype=np.uint32)
    cumulative = np.cumsum(np.asarray(counts, dtype=np.float64) ** float(ns_exponent))
    return np.round(cumulative / cumulative[-1] * domain).astype(np.uint32)


def initial_rows(seed: int, start: int, stop: int, vector_size: int) -> np.ndarray:
    """Rows ``start:stop`` of the matrix gensim's ``prep_vectors`` would draw for ``seed``, without drawing
    the ``start`` rows before them: the generator (PCG64, one float32 per 32 bits) is advanced past them."""
    rng = np.random.default_rng(seed=seed)
    skip = start * vector_size
    rng.bit_generator.advance(skip // 2)  # type: ignore[attr-defined]  # PCG64's, as default_rng makes
    if skip % 2:
        rng.random(1, dtype=REAL)  # the first half of a 64-bit draw; its other half starts our rows
    rows = rng.random((stop - start, vector_size), dtype=REAL)
    rows *= 2.0
    rows -= 1.0
    rows /= vector_size
    return rows


def _append_weights(model: Any, before: int, new_words: list[str]) -> None:
    """New rows for the new words: random input vectors, zero output weights, FastText buckets."""
    wv = model.wv
    wv.norms = None
    if not new_words:
        return
    after = before + len(new_words)
    rows = initial_rows(model.seed, before, after, wv.vector_size)
    if isinstance(model, FastText):
        wv.vectors_vocab = appended(wv.vectors_vocab, rows)
        if wv.bucket == 0:
            wv.buckets_word = list(wv.buckets_word) + [np.array([], dtype=np.uint32)] * len(new_words)
            wv.vectors = wv.vectors_vocab
        else:
            wv.buckets_word = list(wv.buckets_word) + ngram_buckets(new_words, wv.min_n, wv.max_n, wv.bucket)
            wv.vectors = appended(wv.vectors, compose_vectors(wv, np.arange(before, after)))
    else:
        wv.vectors = appended(wv.vectors, rows)
    if model.negative:
        model.syn1neg = appended(model.syn1neg, np.zeros((len(new_words), model.layer1_size), dtype=REAL))


def appended(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array`` with ``rows`` after its own: in place when ``array`` is the head of a larger buffer with room
    for them (as :func:`jobs.training.serialize.load` reads a model's matrices), else a copy. In place, the
    matrix is never held twice; the rows already there are neither moved nor rewritten."""
    n, extra = len(array), len(rows)
    buffer = array.base
    if (
        isinstance(buffer, np.ndarray)
        and buffer.ndim == array.ndim
        and buffer.shape[1:] == array.shape[1:]
        and buffer.dtype == array.dtype
        and buffer.flags.c_contiguous
        and array.flags.c_contiguous
        and array.ctypes.data == buffer.ctypes.data
        and len(buffer) >= n + extra
    ):
        grown = buffer[: n + extra]
        grown[n:] = rows
        return grown
    return np.concatenate([array, rows])


def compose_vectors(wv: Any, rows: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """FastText's composed vectors of ``rows`` (default: every word): the word's own vector plus its n-gram
    vectors, divided by their number, as gensim's ``adjust_vectors`` computes them, to the bit (the same
    float32 additions in the same order).

    A block of words at a time, sorted by their number of n-grams, so that the words that still have an
    n-gram at position ``j`` are a prefix of the block: one gather and one in-place add per position. The
    result is written into ``out`` when given (``wv.vectors`` itself may be: it is not read).
    """
    buckets = wv.buckets_word if rows is None else [wv.buckets_word[i] for i in rows]
    rows = np.arange(len(wv)) if rows is None else np.asarray(rows)
    if out is None:
        out = np.empty((len(rows), wv.vector_size), dtype=REAL)
    for start in range(0, len(rows), _BLOCK):
        part = buckets[start : start + _BLOCK]
        lengths = np.fromiter(map(len, part), dtype=np.int64, count=len(part))
        flat = np.concatenate(part) if len(part) else np.zeros(0, dtype=np.uint32)
        order = np.argsort(-lengths, kind="stable")
        lengths, offsets = lengths[order], (np.cumsum(lengths) - lengths)[order]
        block = wv.vectors_vocab[rows[start : start + _BLOCK][order]]
        for position in range(int(lengths.max(initial=0))):
            active = int(np.count_nonzero(lengths > position))  # a prefix: lengths descend
            block[:active] += wv.vectors_ngrams[flat[offsets[:active] + position]]
        block /= (lengths + 1).astype(REAL)[:, None]
        out[start + order] = block
    return out


@contextmanager
def composed_after(model: Any) -> Iterator[None]:
    """Around gensim's ``train()`` of a FastText model: compose the word vectors once at the end with
    :func:`compose_vectors` instead of ``adjust_vectors``' Python loop over every word, which ``train()`` runs
    when it finishes. The same vectors, to the bit; Word2Vec models pass through untouched."""
    if not isinstance(model, FastText) or model.wv.bucket == 0:
        yield
        return
    wv = model.wv
    wv.adjust_vectors = lambda: None  # an instance attribute, shadowing the method for this call only
    try:
        yield
    finally:
        del wv.adjust_vectors
    if wv.vectors is wv.vectors_vocab or wv.vectors.shape != wv.vectors_vocab.shape or not wv.vectors.flags.writeable:
        wv.vectors = compose_vectors(wv)
    else:
        compose_vectors(wv, out=wv.vectors)  # in place: the matrix is not held twice
    wv.norms = None
