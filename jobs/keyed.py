"""Word vectors for services: the everyday surface of gensim's ``KeyedVectors``, with numpy and pyarrow alone.

What :func:`jobs.vectors.load_vectors` returns. A service that looks words up and asks for neighbours needs
neither gensim nor Ray installed (``pip install embedding-refresh``):

    >>> vectors, version = load_vectors("s3://models/w2v", mmap="r")          # doctest: +SKIP
    >>> vectors["king"].shape, vectors[["king", "queen"]].shape               # doctest: +SKIP
    ((100,), (2, 100))
    >>> "king" in vectors, len(vectors), vectors.get_vecattr("king", "count")  # doctest: +SKIP
    (True, 1000000, 5321)
    >>> vectors.most_similar("king", topn=3)                                  # doctest: +SKIP
    [('queen', 0.81), ('prince', 0.77), ('monarch', 0.74)]
    >>> vectors.most_similar(positive=["king", "woman"], negative=["man"])    # doctest: +SKIP
    >>> vectors.similarity("king", "queen")                                   # doctest: +SKIP
    >>> vectors.to_gensim()       # a real gensim KeyedVectors, with embedding-refresh[gensim]   # doctest: +SKIP

The answers are gensim's on the same data: ``most_similar`` averages the normalized query vectors with
weights 1 (positive) and -1 (negative), normalizes the mean, ranks every word by cosine similarity
(float32, as gensim computes it) and leaves out the query words; ``similarity`` is the cosine of two words.
A FastText model (:attr:`kind` ``"fasttext"``) composes a word it has never seen from its character n-gram
buckets (:mod:`jobs.format.ngrams`, equal to gensim's hashing), as gensim's ``FastTextKeyedVectors`` do, and
``in`` is True for any word when the model has buckets.

Memory: with ``mmap="r"`` the matrix stays in the page cache, shared by every process of the host; the
similarity search reads it in blocks of rows (``_BLOCK``), so it allocates one block's products and one norm
per word, never a normalized copy of the matrix. Not here (use :meth:`to_gensim`): training, ``add_vector``,
``restrict_vocab``, approximate indexers, ``evaluate_word_analogies`` and the other rarer methods.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from jobs.errors import ConfigError, IntegrityError
from jobs.format import files
from jobs.format.files import FLOAT, MAX_NGRAM, PARAMS
from jobs.format.ngrams import ngram_hashes

log = logging.getLogger(__name__)

_BLOCK = 65_536  # rows of the matrix multiplied at once: 25 MiB of float32 at 100 dimensions
_KEY = (str, int, np.integer)
Key: TypeAlias = str | int | np.integer
Query: TypeAlias = Key | np.ndarray | tuple[Key, float]
GENSIM_EXTRA = "pip install 'embedding-refresh[gensim]'"


class WordVectors:
    """A model's word vectors, read from its folder in the store's format (:meth:`read`)."""

    def __init__(
        self,
        params: dict[str, Any],
        index_to_key: list[str],
        vectors: np.ndarray,
        counts: np.ndarray,
        sample_int: np.ndarray,
        ngrams: dict[str, np.ndarray] | None = None,
        key_to_index: dict[str, int] | None = None,
    ) -> None:
        """``key_to_index``: each word's row, when the caller has it (:meth:`read`); built otherwise."""
        self.params = params
        self.kind: str = params["kind"]
        self.index_to_key = index_to_key
        self.key_to_index = (
            key_to_index if key_to_index is not None else dict(zip(index_to_key, range(len(index_to_key)), strict=True))
        )
        self.vectors = vectors
        self.vector_size: int = vectors.shape[1]
        self.expandos = {"count": counts, "sample_int": sample_int}
        self.norms: np.ndarray | None = None  # per-word L2 norms, computed on the first similarity query
        settings = params["keyed_vectors"]
        self.min_n, self.max_n, self.bucket = (settings.get(k, 0) for k in ("min_n", "max_n", "bucket"))
        self.vectors_vocab = (ngrams or {}).get("vectors_vocab")
        self.vectors_ngrams = (ngrams or {}).get("vectors_ngrams")

    @classmethod
    def read(cls, folder: Path, mmap: str | None = "r") -> WordVectors:
        """The vectors of the model in ``folder``, every file checked (:mod:`jobs.format.files`), the large
        arrays memory-mapped with ``mmap`` (None: read into memory). Raises IntegrityError."""
        params = files.read_params(folder)
        settings = params["keyed_vectors"]
        dim = settings["vector_size"]
        vocabulary = files.read_vocabulary(folder, files.vocabulary_rows(folder, dim), dim)
        words, counts = vocabulary.words, vocabulary.counts
        size = len(words)
        vectors = files.read_array(folder, "vectors", FLOAT, (size, dim), mmap)
        sample_int = files.read_array(folder, "sample_int", np.dtype(np.uint32), (size,), None)
        ngrams = None
        if params["kind"] == "fasttext":
            if not (1 <= settings["min_n"] <= settings["max_n"] <= MAX_NGRAM):
                raise IntegrityError(f"{folder / PARAMS}: invalid FastText n-gram parameters")
            ngrams = {
                "vectors_vocab": files.read_array(folder, "vectors_vocab", FLOAT, (size, dim), mmap),
                "vectors_ngrams": files.read_array(folder, "vectors_ngrams", FLOAT, (settings["bucket"], dim), mmap),
            }
        return cls(params, words, vectors, counts, sample_int, ngrams, vocabulary.index)

    # ------------------------------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, key: object) -> bool:
        """Whether a vector exists for ``key``: a known word, or for FastText with buckets any word at all."""
        if self.kind == "fasttext" and self.bucket:
            return True
        return self.has_index_for(key)

    def __getitem__(self, keys: Key | Iterable[Key]) -> np.ndarray:
        """The vector of one word (1-D) or of a list of words (2-D, one row each). Raises KeyError."""
        if isinstance(keys, _KEY):
            return self.get_vector(keys)
        return np.vstack([self.get_vector(key) for key in keys])

    def has_index_for(self, key: object) -> bool:
        """Whether ``key`` is a word of the vocabulary (FastText's composed words are not)."""
        try:
            return self.get_index(key) >= 0  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False

    def get_index(self, key: Key) -> int:
        """The row of ``key`` (a word, or a row number as gensim accepts). Raises KeyError."""
        index = self.key_to_index.get(key, -1) if isinstance(key, str) else -1
        if index >= 0:
            return index
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= key < len(self.index_to_key):
            return int(key)
        raise KeyError(f"Key '{key}' not present")

    def get_vector(self, key: Key, norm: bool = False) -> np.ndarray:
        """The vector of ``key`` (unit length with ``norm``). A FastText model composes an unknown word from its
        n-gram buckets, as gensim does. Raises KeyError."""
        if self.kind == "fasttext" and not self.has_index_for(key):
            return self._compose(key, norm)
        index = self.get_index(key)
        if norm:
            return self.vectors[index] / self._norms()[index]
        return self.vectors[index]

    def get_vecattr(self, key: Key, attr: str) -> Any:
        """A per-word attribute: ``count`` (the word's cumulative count) or ``sample_int``. Raises KeyError."""
        return self.expandos[attr][self.get_index(key)]

    def _compose(self, key: Key, norm: bool) -> np.ndarray:
        """gensim's ``FastTextKeyedVectors.get_vector`` for a word outside the vocabulary: the mean of its
        n-gram buckets' vectors (the origin when it has none)."""
        if not self.bucket or self.vectors_ngrams is None:
            raise KeyError("cannot calculate vector for OOV word without ngrams")
        vector = np.zeros(self.vector_size, dtype=FLOAT)
        buckets, _ = ngram_hashes([str(key)], self.min_n, self.max_n, self.bucket)
        if len(buckets) == 0:
            log.warning("could not extract any ngrams from %r, returning origin vector", key)
            return vector
        for bucket in buckets:  # in gensim's order, one row at a time: the same float32 sums
            vector += self.vectors_ngrams[bucket]
        return vector / np.linalg.norm(vector) if norm else vector / len(buckets)

    # ------------------------------------------------------------------------------------------ similarity

    def similarity(self, first: Key, second: Key) -> np.floating[Any]:
        """The cosine similarity of two words. Raises KeyError."""
        return np.dot(_unit(self[first]), _unit(self[second]))

    def most_similar(
        self,
        positive: Query | Sequence[Query] | None = None,
        negative: Query | Sequence[Query] | None = None,
        topn: int | None = 10,
    ) -> Any:
        """The ``topn`` words most similar to the weighted mean of ``positive`` (weight 1) and ``negative``
        (weight -1) words or vectors (a ``(word, weight)`` pair sets its own weight), as ``(word, cosine)``
        pairs, most similar first, without the query words; with ``topn`` None or 0, the cosine of every word
        (an array). Raises KeyError for a word without a vector."""
        queries = _as_list(positive) + _as_list(negative)
        weights = [1.0] * len(_as_list(positive)) + [-1.0] * len(_as_list(negative))
        keys: list[Any] = []
        for at, query in enumerate(queries):
            if isinstance(query, tuple) and not isinstance(query, np.ndarray):
                query, weights[at] = query
            keys.append(query)
        mean = np.zeros(self.vector_size, dtype=FLOAT)
        total = 0.0
        for key, weight in zip(keys, weights, strict=True):
            if isinstance(key, np.ndarray):
                mean += weight * key
            elif key in self:
                mean += weight * self.get_vector(key, norm=True)
            else:
                raise KeyError(f"Key '{key}' not present in vocabulary")
            total += abs(weight)
        averaged: np.ndarray = mean / np.float64(total) if total > 0 else mean  # in float64, as gensim's weights are
        mean = _unit(averaged).astype(FLOAT)
        exclude = {self.get_index(k) for k in keys if isinstance(k, _KEY) and self.has_index_for(k)}
        cosines = self._cosines(mean)
        if not topn:
            return cosines
        best = _top(cosines, topn + len(exclude))
        return [(self.index_to_key[i], float(cosines[i])) for i in best if i not in exclude][:topn]

    def _norms(self) -> np.ndarray:
        if self.norms is None:
            norms = np.empty(len(self), dtype=FLOAT)
            for start in range(0, len(self), _BLOCK):
                norms[start : start + _BLOCK] = np.linalg.norm(self.vectors[start : start + _BLOCK], axis=1)
            self.norms = norms
        return self.norms

    def _cosines(self, unit: np.ndarray) -> np.ndarray:
        """The cosine of ``unit`` with every word, a block of rows at a time."""
        norms = self._norms()
        cosines = np.empty(len(self), dtype=FLOAT)
        for start in range(0, len(self), _BLOCK):
            block = slice(start, start + _BLOCK)
            np.divide(np.dot(self.vectors[block], unit), norms[block], out=cosines[block])
        return cosines

    # ------------------------------------------------------------------------------------------ gensim

    def to_gensim(self) -> Any:
        """These vectors as gensim's ``KeyedVectors`` (``FastTextKeyedVectors`` for FastText), sharing the
        arrays and the vocabulary (change one of the two, not both). Needs gensim: raises ConfigError naming
        the extra that installs it when it is missing."""
        return needs_gensim("to_gensim()").keyed_vectors(self)


def needs_gensim(what: str, module: str = "jobs.training.serialize") -> Any:
    """``module`` (one that imports gensim) for ``what`` the user asked for, or ConfigError saying how to
    install gensim where it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{what} needs gensim, which this installation lacks ({exc}): {GENSIM_EXTRA} (or "
            "'embedding-refresh[job]', which also installs the refresh job)"
        ) from exc


def _as_list(value: Any) -> list[Any]:
    """gensim's reading of a query: one word or vector, a matrix of vectors, or a list of them."""
    if value is None:
        return []
    if isinstance(value, _KEY) or (isinstance(value, np.ndarray) and value.ndim == 1):
        return [value]
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return list(value)
    return list(value)


def _unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to unit length (unchanged if it is zero), in its own dtype, as gensim's ``unitvec``."""
    length = np.linalg.norm(vector)
    if length > 0:
        return (vector * (1.0 / length)).astype(vector.dtype)
    return vector


def _top(values: np.ndarray, count: int) -> np.ndarray:
    """The indices of the ``count`` largest ``values``, largest first: gensim's ``matutils.argsort`` (the same
    partial sort, so ties come out in the same order)."""
    x = -values
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if count >= x.size:
        return np.argsort(x)[:count]
    extreme = np.argpartition(x, count)[:count]
    return extreme.take(np.argsort(x.take(extreme)))
