"""A saved model's files read and checked for training, without gensim: what
:func:`jobs.training.serialize.build` makes gensim's trainable model of.

The trainer reads its parent's files with this while gensim is still being imported in another thread (a
second or more), so only building gensim's objects waits for the import:

    >>> files = read(folder / "model", spare_rows=None, mapped=True)             # doctest: +SKIP
    >>> model = serialize.build(files)                                          # doctest: +SKIP

Everything is checked here, before anything is built: exact dtypes, C order, shapes consistent with the
vocabulary and the parameters, headers bounded by the bytes the files hold (:mod:`jobs.format.files`), the
architecture gensim can train, a cumulative negative-sampling table, FastText's n-gram parameters, and the
random state. Nothing loops over the vocabulary in Python but the word index (one ``dict``), and FastText's
n-gram buckets are computed vectorized (:func:`jobs.format.ngrams.ngram_buckets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.errors import IntegrityError
from jobs.format import files
from jobs.format.files import MAX_NGRAM, MAX_WINDOW, PARAMS, read_params
from jobs.format.ngrams import ngram_buckets


@dataclass(frozen=True)
class Trainable:
    """A saved model's contents, checked: its parameters, vocabulary and arrays, and what gensim derives from
    them (the word index, FastText's n-gram buckets of every word)."""

    params: dict[str, Any]
    words: list[str]
    counts: np.ndarray
    key_to_index: dict[str, int]
    arrays: dict[str, np.ndarray]
    random: Any  # numpy's RandomState or Generator, as the model had it
    buckets_word: Any = None  # FastText only

    @property
    def fasttext(self) -> bool:
        return bool(self.params["kind"] == "fasttext")

    def keyed(self) -> Keyed:
        """The word vectors as the quality gate reads them (:mod:`jobs.training.evaluate` takes gensim's
        ``KeyedVectors`` or this), over the same arrays: nothing is copied."""
        dim = int(self.params["keyed_vectors"]["vector_size"])
        return Keyed(self.words, self.key_to_index, self.arrays["vectors"], {"count": self.counts}, dim)


@dataclass
class Keyed:
    """What the gate reads of gensim's ``KeyedVectors``, without gensim; ``norms`` as gensim fills them."""

    index_to_key: list[str]
    key_to_index: dict[str, int]
    vectors: np.ndarray
    expandos: dict[str, np.ndarray]
    vector_size: int
    norms: np.ndarray | None = None


def read(folder: Path, spare_rows: int | None = 0, mapped: bool = False) -> Trainable:
    """Read and check the model saved in ``folder``.

    The per-word matrices (``vectors``, ``syn1neg``, FastText's ``vectors_vocab``) are read into buffers with
    room for ``spare_rows`` more words after their rows, so a vocabulary update that adds up to that many
    words appends in place rather than copying each matrix (which would hold it twice at once). Untouched,
    the spare rows cost address space, not memory; ``None`` leaves room for as many words as the model
    holds. ``mapped``: the matrices (FastText's n-gram buckets too) are mapped copy-on-write from their files
    rather than read (:mod:`jobs.format.mapped`), for a caller whose files stay in place and unchanged while
    the model lives (the trainer's verified copy of its parent). Raises IntegrityError when a file is missing,
    malformed or inconsistent.
    """
    params = read_params(folder)
    fasttext = params["kind"] == "fasttext"
    mp, kp = params["model"], params["keyed_vectors"]
    dim = kp["vector_size"]
    vocabulary = files.read_vocabulary(folder, files.vocabulary_rows(folder, dim), dim)
    words, counts = vocabulary.words, vocabulary.counts
    size = len(words)
    spare_rows = size if spare_rows is None else spare_rows
    if mp["vector_size"] != dim or mp["layer1_size"] != dim or mp["hs"] != 0 or mp["negative"] < 1:
        raise IntegrityError(f"{folder / PARAMS}: inconsistent architecture (vector_size, layer1_size, hs, negative)")
    if not 1 <= mp["window"] <= MAX_WINDOW:  # gensim's sentences hold at most 10,000 words
        raise IntegrityError(f"{folder / PARAMS}: window must be between 1 and {MAX_WINDOW}")
    arrays = {
        "vectors": files.read_rows(folder, "vectors", (size, dim), spare_rows, mapped),
        "syn1neg": files.read_rows(folder, "syn1neg", (size, dim), spare_rows, mapped),
        "sample_int": files.read_array(folder, "sample_int", np.dtype(np.uint32), (size,), None),
        "cum_table": files.read_array(folder, "cum_table", np.dtype(np.uint32), (size,), None),
        "vectors_lockf": files.read_lockf(folder, "vectors_lockf", size, None),
    }
    if size and (np.any(np.diff(arrays["cum_table"].astype(np.int64)) < 0) or arrays["cum_table"][-1] == 0):
        raise IntegrityError(f"{folder / 'cum_table.npy'}: not a cumulative table")
    buckets = None
    if fasttext:
        bucket = kp["bucket"]
        if not (1 <= kp["min_n"] <= kp["max_n"] <= MAX_NGRAM) or kp["compatible_hash"] is not True:
            raise IntegrityError(f"{folder / PARAMS}: invalid FastText n-gram parameters")
        arrays |= {
            "vectors_vocab": files.read_rows(folder, "vectors_vocab", (size, dim), spare_rows, mapped),
            "vectors_ngrams": files.read_rows(folder, "vectors_ngrams", (bucket, dim), 0, mapped),
            "vectors_vocab_lockf": files.read_lockf(folder, "vectors_vocab_lockf", size, None),
            "vectors_ngrams_lockf": files.read_lockf(folder, "vectors_ngrams_lockf", bucket, None),
        }
        buckets = ngram_buckets(words, kp["min_n"], kp["max_n"], bucket)
    return Trainable(
        params, words, counts, vocabulary.index, arrays, _restore_random(params["random"], folder), buckets
    )


def _restore_random(state: Any, folder: Path) -> Any:
    try:
        if state["type"] == "RandomState":
            key = np.array(state["key"], dtype=np.uint32)
            if key.shape != (624,):
                raise ValueError("MT19937 key must have 624 words")
            random = np.random.RandomState()
            random.set_state(("MT19937", key, int(state["pos"]), int(state["has_gauss"]), float(state["gauss"])))
            return random
        if state["type"] == "Generator":
            generator = np.random.default_rng()
            if state["state"].get("bit_generator") != type(generator.bit_generator).__name__:
                raise ValueError("unknown bit generator")
            generator.bit_generator.state = state["state"]
            return generator
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise IntegrityError(f"{folder / PARAMS}: invalid random state ({exc})") from exc
    raise IntegrityError(f"{folder / PARAMS}: unknown random generator {state.get('type')!r}")
