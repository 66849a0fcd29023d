"""The model format of the store: a gensim Word2Vec or FastText model as plain data, loadable without pickle.

gensim's ``save()`` writes a pickle, and unpickling runs whatever code the file names, so anyone who can
write to a store could run code on every trainer and reader. This format holds only data that cannot carry
code: ``.npy`` arrays (read with ``allow_pickle=False``), the vocabulary as Parquet, and parameters as JSON.
A folder holds::

    params.json        format, kind, gensim's scalar parameters, the random state, lifecycle events, and the
                       shape and dtype of every array
    vocab.parquet      word (string) and count (int64), in index order
    vectors.npy        the word vectors (for FastText: composed with the n-grams, as gensim computes them)
    syn1neg.npy        the negative-sampling output layer
    sample_int.npy     down-sampling thresholds (uint32)
    cum_table.npy      the negative-sampling table, stored rather than rebuilt (see below)
    vectors_lockf.npy  gensim's per-word learning-rate factors (usually one 1.0)
    FastText only:     vectors_vocab.npy, vectors_ngrams.npy, vectors_vocab_lockf.npy, vectors_ngrams_lockf.npy

    save(model, Path("out/model"))                       # the trainer
    model = load(Path("out/model"))                       # trainable, equal to gensim's save()/load()
    wv = load_keyed_vectors(Path("out/model"))            # gensim's KeyedVectors, memory-mapped

Loading validates before gensim sees anything (:mod:`jobs.format.files`, which readers without gensim share):
exact dtypes, C order, shapes consistent with the vocabulary and the parameters, every ``.npy`` header and the
vocabulary's metadata bounded by the bytes the files hold, unique words, and parameters of the expected types.
Any violation raises :class:`~jobs.errors.IntegrityError` naming the file.

Cost: no Python loop over the vocabulary. ``cum_table`` is stored because rebuilding it exactly needs
Python's own ``pow`` per word (numpy's differs in the last bit for a few percent of counts); FastText's n-gram
buckets are computed vectorized (:func:`jobs.format.ngrams.ngram_buckets`, equal to gensim's
``ft_ngram_hashes``); FastText's composed ``vectors`` are stored, as ``vectors.bin`` stored them before, so
readers memory-map them.

Without this project, a few lines of gensim and numpy rebuild a model (see the README, "Reading a version
without this tool"). :func:`unpickle_legacy` reads the previous, pickled format, and only commands that the
user runs with an option naming the risk call it.
"""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gensim
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from gensim.models import FastText, KeyedVectors, Word2Vec
from gensim.models.fasttext import FastTextKeyedVectors

from jobs.errors import TrainingError
from jobs.format import trainable
from jobs.format.files import (
    FASTTEXT_ARRAYS,
    FASTTEXT_PARAMS,
    FASTTEXT_WV_PARAMS,
    FLOAT,
    FORMAT,
    FORMAT_VERSION,
    MODEL_PARAMS,
    PARAMS,
    SCALAR,
    VOCAB,
    WV_PARAMS,
)
from jobs.keyed import WordVectors
from jobs.storage.publish import write_recorded

log = logging.getLogger(__name__)

LEGACY_FILE = "embedding.model"  # gensim's save(), the previous format: a pickle

_CLASSES: dict[str, type[Word2Vec]] = {"word2vec": Word2Vec, "fasttext": FastText}

# Attributes handled explicitly (arrays, the random state) or derived again on load.
_MODEL_HANDLED = {"wv", "syn1neg", "cum_table", "random", "hashfxn", "lifecycle_events", "raw_vocab", "load"}
_FASTTEXT_HANDLED = {"callbacks", "load_fasttext_format"}
_WV_HANDLED = {"vectors", "vectors_lockf", "index_to_key", "key_to_index", "expandos", "norms", "mapfile_path"}
_FASTTEXT_WV_HANDLED = {*FASTTEXT_ARRAYS, "buckets_word"}
_EXPANDOS = {"count": np.dtype(np.int64), "sample_int": np.dtype(np.uint32)}


def kind_of(model: Word2Vec) -> str:
    return "fasttext" if isinstance(model, FastText) else "word2vec"


# --------------------------------------------------------------------------------------------------- saving


def save(model: Word2Vec, folder: Path, durable: bool = False) -> dict[str, dict[str, Any]]:
    """Write ``model`` into ``folder`` in this format; return each file's manifest entry (size and SHA-256, by
    name), hashed as it was written: the bytes are passed over once. The files are written by
    :data:`SAVE_THREADS` threads, the largest first (writing and hashing release the GIL); ``durable``: each on
    disk once written (:func:`jobs.storage.publish.write_recorded`). Raises TrainingError for a model it
    cannot represent (hierarchical softmax, attributes it does not know)."""
    kind = kind_of(model)
    fasttext = kind == "fasttext"
    wv = model.wv
    _check_savable(model, fasttext)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "vectors": wv.vectors,
        "syn1neg": model.syn1neg,
        "sample_int": wv.expandos["sample_int"],
        "cum_table": model.cum_table,
        "vectors_lockf": wv.vectors_lockf,
    }
    if fasttext:
        arrays |= {name: getattr(wv, name) for name in FASTTEXT_ARRAYS}
    for name, array in arrays.items():
        expected = np.dtype(np.uint32) if name in ("sample_int", "cum_table") else FLOAT
        if array.dtype != expected:  # what load() insists on; refused here rather than in the next run
            raise TrainingError(f"cannot save {name}: dtype {array.dtype}, the format stores {expected}")
    params = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "gensim": gensim.__version__,
        "model": {n: _plain(getattr(model, n)) for n in MODEL_PARAMS + (FASTTEXT_PARAMS if fasttext else ())},
        "keyed_vectors": {n: _plain(getattr(wv, n)) for n in WV_PARAMS + (FASTTEXT_WV_PARAMS if fasttext else ())},
        "random": _random_state(model.random),
        "lifecycle_events": model.lifecycle_events or [],
        "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in arrays.items()},
    }
    try:
        body = json.dumps(params, indent=1, sort_keys=True, allow_nan=False, default=_event_value)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"cannot save the model's parameters as JSON: {exc}") from exc
    largest_first = sorted(arrays, key=lambda name: -arrays[name].nbytes)
    with ThreadPoolExecutor(SAVE_THREADS, thread_name_prefix="save") as pool:
        writing = {
            f"{name}.npy": pool.submit(_save_array, folder / f"{name}.npy", arrays[name], durable)
            for name in largest_first
        }
        writing[VOCAB] = pool.submit(_save_vocabulary, wv, folder / VOCAB, durable)
        writing[PARAMS] = pool.submit(write_recorded, folder / PARAMS, [(body + "\n").encode()], durable)
        written = {name: future.result() for name, future in writing.items()}
    return {name: written[name] for name in (*(f"{name}.npy" for name in arrays), PARAMS, VOCAB)}


#: Threads writing a model's files: its two largest matrices side by side.
SAVE_THREADS = 2


def _save_vocabulary(wv: KeyedVectors, path: Path, durable: bool) -> dict[str, Any]:
    """The words in their index order with their counts, as Parquet (zstd)."""
    vocabulary = pa.table(
        {
            "word": pa.array(wv.index_to_key, pa.string()),
            "count": pa.array(np.asarray(wv.expandos["count"], dtype=np.int64)),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(vocabulary, sink, compression="zstd")
    return write_recorded(path, [sink.getvalue()], durable)


def _save_array(path: Path, array: np.ndarray, durable: bool = False) -> dict[str, Any]:
    """``array`` as ``np.save`` writes it (a version 1.0 header, then the C-ordered data), hashed as written;
    a matrix mapped from the parent's file pages its untouched rows in here, as they are copied."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return write_recorded(path, [header.getvalue(), array.reshape(-1)], durable)


def _check_savable(model: Word2Vec, fasttext: bool) -> None:
    if model.hs or getattr(model, "syn1", None) is not None:
        raise TrainingError("hierarchical softmax models cannot be saved in the store's format; use negative sampling")
    if not model.negative or model.syn1neg is None or model.cum_table is None:
        raise TrainingError("only trained negative-sampling models can be saved (no syn1neg or cum_table)")
    if model.hashfxn is not hash:
        raise TrainingError("a model with a custom hashfxn cannot be saved in the store's format")
    if model.raw_vocab:
        raise TrainingError("the model holds a raw vocabulary not yet applied (build_vocab with keep_raw_vocab)")
    known = set(MODEL_PARAMS) | _MODEL_HANDLED | (set(FASTTEXT_PARAMS) | _FASTTEXT_HANDLED if fasttext else set())
    known_wv = set(WV_PARAMS) | _WV_HANDLED | (set(FASTTEXT_WV_PARAMS) | _FASTTEXT_WV_HANDLED if fasttext else set())
    unknown = sorted(_attributes(model) - known) + [f"wv.{n}" for n in sorted(_attributes(model.wv) - known_wv)]
    unknown += [f"wv.expandos[{n!r}]" for n in sorted(set(model.wv.expandos) - set(_EXPANDOS))]
    if unknown:
        raise TrainingError(f"the store's format does not know the model attributes {', '.join(unknown)}")
    if fasttext and not model.wv.compatible_hash:
        raise TrainingError("FastText models with gensim's pre-3.8 n-gram hashing cannot be saved")


def _attributes(thing: Any) -> set[str]:
    """Instance attributes, less the bookkeeping that gensim's own load() adds (``__numpys`` and the like)."""
    return {name for name in vars(thing) if not name.startswith("__")}


def _plain(value: Any) -> Any:
    """A JSON scalar (numpy scalars become Python ones)."""
    value = value.item() if isinstance(value, np.generic) else value
    if not isinstance(value, SCALAR):
        raise TrainingError(f"a model parameter of type {type(value).__name__} cannot be saved as JSON")
    return value


def _event_value(value: Any) -> Any:
    """Lifecycle events are informational and hold what gensim put there (e.g. a frozenset): as JSON lists or
    strings."""
    if isinstance(value, (set, frozenset)):
        return sorted(map(str, value))
    return str(value)


def _random_state(random: Any) -> dict[str, Any]:
    """The model's random generator as JSON: training draws from it, so continuing needs its exact state."""
    if isinstance(random, np.random.RandomState):
        _, key, pos, has_gauss, cached = random.get_state(legacy=True)  # type: ignore[misc]
        return {
            "type": "RandomState",
            "key": np.asarray(key).tolist(),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": cached,
        }
    if isinstance(random, np.random.Generator):
        return {"type": "Generator", "state": random.bit_generator.state}
    raise TrainingError(f"the model's random generator ({type(random).__name__}) cannot be saved")


# -------------------------------------------------------------------------------------------------- loading


def load(folder: Path, spare_rows: int | None = 0, mapped: bool = False) -> Word2Vec:
    """A trainable Word2Vec or FastText rebuilt from ``folder``, never unpickling anything: the files read and
    checked (:func:`jobs.format.trainable.read`, where ``spare_rows`` and ``mapped`` are explained), then
    gensim's objects built over them (:func:`build`). Raises IntegrityError when a file is missing, malformed
    or inconsistent."""
    return build(trainable.read(folder, spare_rows, mapped))


def build(read: trainable.Trainable) -> Word2Vec:
    """gensim's trainable model over the arrays and vocabulary ``read`` holds (nothing is copied)."""
    params, arrays, fasttext = read.params, read.arrays, read.fasttext
    mp, kp = params["model"], params["keyed_vectors"]
    model = _CLASSES[params["kind"]](
        vector_size=kp["vector_size"],
        **({"min_n": kp["min_n"], "max_n": kp["max_n"], "bucket": kp["bucket"]} if fasttext else {}),
    )
    for name in MODEL_PARAMS + (FASTTEXT_PARAMS if fasttext else ()):
        setattr(model, name, mp[name])
    model.random = read.random
    model.lifecycle_events = params["lifecycle_events"]
    model.raw_vocab = defaultdict(int)
    model.syn1neg, model.cum_table = arrays["syn1neg"], arrays["cum_table"]
    wv = model.wv
    _fill_keyed_vectors(wv, params, read.words, read.counts, arrays, read.key_to_index)
    wv.vectors_lockf = arrays["vectors_lockf"]
    if fasttext:
        for name in FASTTEXT_ARRAYS:
            setattr(wv, name, arrays[name])
        wv.buckets_word = read.buckets_word
    return model


def load_keyed_vectors(folder: Path, mmap: str | None = "r") -> KeyedVectors:
    """The model's KeyedVectors (FastTextKeyedVectors for FastText, which also embed unknown words), for
    readers: arrays memory-mapped read-only by default, never unpickling anything. Raises IntegrityError.

    FastText's per-word n-gram cache (``buckets_word``), which only training uses, is not built.
    """
    return keyed_vectors(WordVectors.read(folder, mmap))


def keyed_vectors(light: WordVectors) -> KeyedVectors:
    """gensim's KeyedVectors (FastTextKeyedVectors) over the arrays and vocabulary of ``light``, as read by
    :meth:`jobs.keyed.WordVectors.read` (gensim's own object, for :meth:`~jobs.keyed.WordVectors.to_gensim`)."""
    dim = light.vector_size
    wv: KeyedVectors
    if light.kind == "fasttext":
        wv = FastTextKeyedVectors(dim, light.min_n, light.max_n, light.bucket)
        wv.vectors_vocab, wv.vectors_ngrams = light.vectors_vocab, light.vectors_ngrams
    else:
        wv = KeyedVectors(dim)
    arrays = {"vectors": light.vectors, "sample_int": light.expandos["sample_int"]}
    _fill_keyed_vectors(wv, light.params, light.index_to_key, light.expandos["count"], arrays, light.key_to_index)
    return wv


def _fill_keyed_vectors(
    wv: KeyedVectors,
    params: dict[str, Any],
    words: list[str],
    counts: np.ndarray,
    arrays: dict[str, np.ndarray],
    key_to_index: dict[str, int] | None = None,
) -> None:
    wv.index_to_key = words
    wv.key_to_index = key_to_index if key_to_index is not None else dict(zip(words, range(len(words)), strict=True))
    wv.vectors = arrays["vectors"]
    wv.expandos = {"count": counts, "sample_int": arrays["sample_int"]}
    wv.next_index = params["keyed_vectors"]["next_index"]
    wv.norms = None


# ------------------------------------------------------------------------------------------ the old format


def unpickle_legacy(folder: Path, kind: str) -> Word2Vec:
    """Load a model saved by gensim's ``save()`` (the previous format): this UNPICKLES, which runs any code
    the file names. Only for files the user trusts, on a command the user ran with an option naming the risk."""
    log.warning("unpickling %s: this runs any code its writer put there", folder / LEGACY_FILE)
    return _CLASSES[kind].load(str(folder / LEGACY_FILE))
