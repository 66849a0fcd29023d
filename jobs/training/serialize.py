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

    >>> save(model, Path("out/model"))                       # the trainer
    >>> model = load(Path("out/model"))                       # trainable, equal to gensim's save()/load()
    >>> wv = load_keyed_vectors(Path("out/model"))            # readers: KeyedVectors, memory-mapped

Loading validates before gensim sees anything: exact dtypes, C order, shapes consistent with the vocabulary
and the parameters (gensim's Cython loops index these arrays without bounds checks, so a forged shape would
be a memory-safety problem, not just a wrong answer), unique words, and parameters of the expected types.
Any violation raises :class:`~jobs.errors.IntegrityError` naming the file.

Nothing is allocated for what a file claims before the claim is checked against what the files hold: an
``.npy`` header's shape times its item size must be exactly the bytes after the header (a header claiming
terabytes in a small file is refused, not allocated), the vocabulary must have exactly as many rows as
``vectors.npy`` (checked against its size) and a bounded size in its Parquet metadata, and its words are read
dictionary-encoded, so a word repeated a million times is refused before it is copied a million times.

Cost: no Python loop over the vocabulary. ``cum_table`` is stored because rebuilding it exactly needs
Python's own ``pow`` per word (numpy's differs in the last bit for a few percent of counts); FastText's n-gram
buckets are computed vectorized (:func:`ngram_buckets`, equal to gensim's ``ft_ngram_hashes``); FastText's
composed ``vectors`` are stored, as ``vectors.bin`` stored them before, so readers memory-map them.

Without this project, a few lines of gensim and numpy rebuild a model (see the README, "Reading a version
without this tool"). :func:`unpickle_legacy` reads the previous, pickled format, and only commands that the
user runs with an option naming the risk call it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, BinaryIO

import gensim
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from gensim.models import FastText, KeyedVectors, Word2Vec
from gensim.models.fasttext import FastTextKeyedVectors

from jobs.errors import IntegrityError, TrainingError

log = logging.getLogger(__name__)

FORMAT = "embedding-refresh-npy"
FORMAT_VERSION = 1
PARAMS = "params.json"
VOCAB = "vocab.parquet"
LEGACY_FILE = "embedding.model"  # gensim's save(), the previous format: a pickle

_CLASSES: dict[str, type[Word2Vec]] = {"word2vec": Word2Vec, "fasttext": FastText}
_FLOAT = np.dtype(np.float32)

# gensim's scalar attributes, all that is kept of a model besides its arrays. Anything else found on a model
# is refused at save time rather than silently dropped.
_MODEL_PARAMS = tuple(
    """alpha batch_words cbow_mean comment compute_loss corpus_count corpus_total_words effective_min_count epochs
    hs layer1_size max_final_vocab max_vocab_size min_alpha min_alpha_yet_reached min_count negative ns_exponent
    null_word running_training_loss sample seed sg shrink_windows sorted_vocab total_train_time train_count
    vector_size window workers""".split()
)
_FASTTEXT_PARAMS = ("word_ngrams",)
_WV_PARAMS = ("vector_size", "next_index")
_FASTTEXT_WV_PARAMS = ("bucket", "min_n", "max_n", "compatible_hash")
_FASTTEXT_ARRAYS = ("vectors_vocab", "vectors_ngrams", "vectors_vocab_lockf", "vectors_ngrams_lockf")
# Attributes handled explicitly (arrays, the random state) or derived again on load.
_MODEL_HANDLED = {"wv", "syn1neg", "cum_table", "random", "hashfxn", "lifecycle_events", "raw_vocab", "load"}
_FASTTEXT_HANDLED = {"callbacks", "load_fasttext_format"}
_WV_HANDLED = {"vectors", "vectors_lockf", "index_to_key", "key_to_index", "expandos", "norms", "mapfile_path"}
_FASTTEXT_WV_HANDLED = {*_FASTTEXT_ARRAYS, "buckets_word"}
_EXPANDOS = {"count": np.dtype(np.int64), "sample_int": np.dtype(np.uint32)}
_Scalar = (bool, int, float, str, type(None))
_MAX_WINDOW = 10_000
# A vocabulary's Parquet may hold this many bytes per word uncompressed, on average (a real one: 10 to 30)
_VOCAB_BYTES_PER_WORD = 1024
_VOCAB_SLACK = 1 << 20
# The encodings a Parquet writer uses for the words; the others can expand a few bytes into long strings
_VOCAB_ENCODINGS = frozenset({"PLAIN", "RLE", "RLE_DICTIONARY", "PLAIN_DICTIONARY", "BIT_PACKED"})
_MAX_NGRAM = 100


def kind_of(model: Word2Vec) -> str:
    return "fasttext" if isinstance(model, FastText) else "word2vec"


# --------------------------------------------------------------------------------------------------- saving


def save(model: Word2Vec, folder: Path) -> None:
    """Write ``model`` into ``folder`` in this format. Raises TrainingError for a model it cannot represent
    (hierarchical softmax, attributes it does not know)."""
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
        arrays |= {name: getattr(wv, name) for name in _FASTTEXT_ARRAYS}
    for name, array in arrays.items():
        expected = np.dtype(np.uint32) if name in ("sample_int", "cum_table") else _FLOAT
        if array.dtype != expected:  # what load() insists on; refused here rather than in the next run
            raise TrainingError(f"cannot save {name}: dtype {array.dtype}, the format stores {expected}")
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    vocabulary = pa.table(
        {
            "word": pa.array(wv.index_to_key, pa.string()),
            "count": pa.array(np.asarray(wv.expandos["count"], dtype=np.int64)),
        }
    )
    pq.write_table(vocabulary, folder / VOCAB, compression="zstd")
    params = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "gensim": gensim.__version__,
        "model": {n: _plain(getattr(model, n)) for n in _MODEL_PARAMS + (_FASTTEXT_PARAMS if fasttext else ())},
        "keyed_vectors": {n: _plain(getattr(wv, n)) for n in _WV_PARAMS + (_FASTTEXT_WV_PARAMS if fasttext else ())},
        "random": _random_state(model.random),
        "lifecycle_events": model.lifecycle_events or [],
        "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in arrays.items()},
    }
    try:
        body = json.dumps(params, indent=1, sort_keys=True, allow_nan=False, default=_event_value)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"cannot save the model's parameters as JSON: {exc}") from exc
    (folder / PARAMS).write_text(body + "\n")


def _check_savable(model: Word2Vec, fasttext: bool) -> None:
    if model.hs or getattr(model, "syn1", None) is not None:
        raise TrainingError("hierarchical softmax models cannot be saved in the store's format; use negative sampling")
    if not model.negative or model.syn1neg is None or model.cum_table is None:
        raise TrainingError("only trained negative-sampling models can be saved (no syn1neg or cum_table)")
    if model.hashfxn is not hash:
        raise TrainingError("a model with a custom hashfxn cannot be saved in the store's format")
    if model.raw_vocab:
        raise TrainingError("the model holds a raw vocabulary not yet applied (build_vocab with keep_raw_vocab)")
    known = set(_MODEL_PARAMS) | _MODEL_HANDLED | (set(_FASTTEXT_PARAMS) | _FASTTEXT_HANDLED if fasttext else set())
    known_wv = set(_WV_PARAMS) | _WV_HANDLED | (set(_FASTTEXT_WV_PARAMS) | _FASTTEXT_WV_HANDLED if fasttext else set())
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
    if not isinstance(value, _Scalar):
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


def load(folder: Path, spare_rows: int | None = 0) -> Word2Vec:
    """A trainable Word2Vec or FastText rebuilt from ``folder``, never unpickling anything.

    The per-word matrices (``vectors``, ``syn1neg``, FastText's ``vectors_vocab``) are read into buffers with
    room for ``spare_rows`` more words after their rows, so a vocabulary update that adds up to that many
    words appends in place rather than copying each matrix (which would hold it twice at once). Untouched,
    the spare rows cost address space, not memory; ``None`` leaves room for as many words as the model
    holds. Raises IntegrityError when a file is missing, malformed
    or inconsistent.
    """
    params = read_params(folder)
    fasttext = params["kind"] == "fasttext"
    mp, kp = params["model"], params["keyed_vectors"]
    dim = kp["vector_size"]
    words, counts = _read_vocabulary(folder, _vocabulary_rows(folder, dim), dim)
    size = len(words)
    spare_rows = size if spare_rows is None else spare_rows
    if mp["vector_size"] != dim or mp["layer1_size"] != dim or mp["hs"] != 0 or mp["negative"] < 1:
        raise IntegrityError(f"{folder / PARAMS}: inconsistent architecture (vector_size, layer1_size, hs, negative)")
    if not 1 <= mp["window"] <= _MAX_WINDOW:  # gensim's sentences hold at most 10,000 words
        raise IntegrityError(f"{folder / PARAMS}: window must be between 1 and {_MAX_WINDOW}")
    arrays = {
        "vectors": _read_rows(folder, "vectors", (size, dim), spare_rows),
        "syn1neg": _read_rows(folder, "syn1neg", (size, dim), spare_rows),
        "sample_int": _read_array(folder, "sample_int", np.dtype(np.uint32), (size,), None),
        "cum_table": _read_array(folder, "cum_table", np.dtype(np.uint32), (size,), None),
        "vectors_lockf": _read_lockf(folder, "vectors_lockf", size, None),
    }
    if size and (np.any(np.diff(arrays["cum_table"].astype(np.int64)) < 0) or arrays["cum_table"][-1] == 0):
        raise IntegrityError(f"{folder / 'cum_table.npy'}: not a cumulative table")
    if fasttext:
        bucket = kp["bucket"]
        if not (1 <= kp["min_n"] <= kp["max_n"] <= _MAX_NGRAM) or kp["compatible_hash"] is not True:
            raise IntegrityError(f"{folder / PARAMS}: invalid FastText n-gram parameters")
        arrays |= {
            "vectors_vocab": _read_rows(folder, "vectors_vocab", (size, dim), spare_rows),
            "vectors_ngrams": _read_rows(folder, "vectors_ngrams", (bucket, dim)),
            "vectors_vocab_lockf": _read_lockf(folder, "vectors_vocab_lockf", size, None),
            "vectors_ngrams_lockf": _read_lockf(folder, "vectors_ngrams_lockf", bucket, None),
        }
    model = _CLASSES[params["kind"]](
        vector_size=dim,
        **({"min_n": kp["min_n"], "max_n": kp["max_n"], "bucket": kp["bucket"]} if fasttext else {}),
    )
    for name in _MODEL_PARAMS + (_FASTTEXT_PARAMS if fasttext else ()):
        setattr(model, name, mp[name])
    model.random = _restore_random(params["random"], folder)
    model.lifecycle_events = params["lifecycle_events"]
    model.raw_vocab = defaultdict(int)
    model.syn1neg, model.cum_table = arrays["syn1neg"], arrays["cum_table"]
    wv = model.wv
    _fill_keyed_vectors(wv, params, words, counts, arrays)
    wv.vectors_lockf = arrays["vectors_lockf"]
    if fasttext:
        for name in _FASTTEXT_ARRAYS:
            setattr(wv, name, arrays[name])
        wv.buckets_word = ngram_buckets(words, wv.min_n, wv.max_n, wv.bucket)
    return model


def load_keyed_vectors(folder: Path, mmap: str | None = "r") -> KeyedVectors:
    """The model's KeyedVectors (FastTextKeyedVectors for FastText, which also embed unknown words), for
    readers: arrays memory-mapped read-only by default, never unpickling anything. Raises IntegrityError.

    FastText's per-word n-gram cache (``buckets_word``), which only training uses, is not built.
    """
    params = read_params(folder)
    kp = params["keyed_vectors"]
    dim = kp["vector_size"]
    words, counts = _read_vocabulary(folder, _vocabulary_rows(folder, dim), dim)
    size = len(words)
    arrays = {
        "vectors": _read_array(folder, "vectors", _FLOAT, (size, dim), mmap),
        "sample_int": _read_array(folder, "sample_int", np.dtype(np.uint32), (size,), None),
    }
    if params["kind"] == "fasttext":
        if not (1 <= kp["min_n"] <= kp["max_n"] <= _MAX_NGRAM):
            raise IntegrityError(f"{folder / PARAMS}: invalid FastText n-gram parameters")
        wv: KeyedVectors = FastTextKeyedVectors(dim, kp["min_n"], kp["max_n"], kp["bucket"])
        wv.vectors_vocab = _read_array(folder, "vectors_vocab", _FLOAT, (size, dim), mmap)
        wv.vectors_ngrams = _read_array(folder, "vectors_ngrams", _FLOAT, (kp["bucket"], dim), mmap)
    else:
        wv = KeyedVectors(dim)
    _fill_keyed_vectors(wv, params, words, counts, arrays)
    return wv


def _fill_keyed_vectors(
    wv: KeyedVectors, params: dict[str, Any], words: list[str], counts: np.ndarray, arrays: dict[str, np.ndarray]
) -> None:
    wv.index_to_key = words
    wv.key_to_index = dict(zip(words, range(len(words)), strict=True))
    wv.vectors = arrays["vectors"]
    wv.expandos = {"count": counts, "sample_int": arrays["sample_int"]}
    wv.next_index = params["keyed_vectors"]["next_index"]
    wv.norms = None


def read_params(folder: Path) -> dict[str, Any]:
    """``params.json``, validated: format, kind, and every parameter present with a JSON scalar type."""
    path = folder / PARAMS
    try:
        params = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing: not a model in the store's format") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path} is not valid JSON; refusing to load") from exc
    if not isinstance(params, dict) or params.get("format") != FORMAT:
        raise IntegrityError(f"{path} is not a {FORMAT} parameters file; refusing to load")
    if params.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(f"{path}: format version {params.get('format_version')!r} is not {FORMAT_VERSION}")
    kind = params.get("kind")
    if kind not in _CLASSES:
        raise IntegrityError(f"{path}: unknown model kind {kind!r}")
    fasttext = kind == "fasttext"
    for section, names in (
        ("model", _MODEL_PARAMS + (_FASTTEXT_PARAMS if fasttext else ())),
        ("keyed_vectors", _WV_PARAMS + (_FASTTEXT_WV_PARAMS if fasttext else ())),
    ):
        values = params.get(section)
        if not isinstance(values, dict) or set(values) != set(names):
            raise IntegrityError(f"{path}: section {section!r} must hold exactly {', '.join(sorted(names))}")
        for name, value in values.items():
            if not isinstance(value, _Scalar):
                raise IntegrityError(f"{path}: {section}.{name} is not a JSON scalar")
    integers = [("model", n) for n in ("vector_size", "layer1_size", "hs", "negative", "window", "sg", "cbow_mean")]
    integers += [("keyed_vectors", n) for n in (*_WV_PARAMS, *(("bucket", "min_n", "max_n") if fasttext else ()))]
    for section, name in integers:
        value = params[section][name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise IntegrityError(f"{path}: {section}.{name} must be a non-negative integer, not {value!r}")
    events = params.get("lifecycle_events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise IntegrityError(f"{path}: lifecycle_events must be a list of objects")
    return params


def _vocabulary_rows(folder: Path, dim: int) -> int:
    """How many words the model has: the rows of ``vectors.npy``, whose header is checked against its size."""
    path = folder / "vectors.npy"
    if dim < 1:
        raise IntegrityError(f"{folder / PARAMS}: vector_size must be at least 1")
    try:
        with path.open("rb") as f:
            shape, fortran, dtype = npy_header(f)
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing") from None
    except (ValueError, OSError, EOFError) as exc:
        raise IntegrityError(f"{path} is not a plain .npy array ({exc}); refusing to load") from exc
    if dtype != _FLOAT or len(shape) != 2 or shape[1] != dim or fortran:
        raise IntegrityError(
            f"{path}: {dtype}{list(shape)} where {_FLOAT}[words, {dim}] (C order) was expected; refusing"
        )
    return shape[0]


def _read_vocabulary(folder: Path, rows: int, dim: int) -> tuple[list[str], np.ndarray]:
    """The words and counts of ``vocab.parquet``, which must hold exactly ``rows`` unique words (the rows of
    ``vectors.npy``, of ``dim`` columns).

    Its metadata is checked before any data is read: ``rows`` rows, the words in the encodings a writer uses
    (``_VOCAB_ENCODINGS``), and at most ``_VOCAB_BYTES_PER_WORD`` a word uncompressed. The words are read
    dictionary-encoded (each distinct word once, an index per row), and made into one string per row only when
    no index repeats and their total length is bounded: a word repeated a million times by a few bytes of
    run-length encoding is refused before it is copied a million times.
    """
    path = folder / VOCAB
    try:
        with pq.ParquetFile(path, read_dictionary=["word"]) as parquet:
            meta = parquet.metadata
            grouped = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
            if meta.num_rows != rows or grouped != rows:
                words = max(meta.num_rows, grouped)
                raise IntegrityError(
                    f"{folder / 'vectors.npy'}: {_FLOAT}{[rows, dim]} where {_FLOAT}{[words, dim]} was expected for "
                    f"the {words:,} words of {path}; refusing"
                )
            chunks = [meta.row_group(i).column(j) for i in range(meta.num_row_groups) for j in range(meta.num_columns)]
            encodings = {e for c in chunks if c.path_in_schema == "word" for e in c.encodings}
            if encodings - _VOCAB_ENCODINGS:  # e.g. DELTA_BYTE_ARRAY: a long prefix shared by every word
                raise IntegrityError(
                    f"{path}: the words are encoded as {', '.join(sorted(encodings - _VOCAB_ENCODINGS))}, not "
                    f"{', '.join(sorted(_VOCAB_ENCODINGS))}; refusing"
                )
            declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if declared > rows * _VOCAB_BYTES_PER_WORD + _VOCAB_SLACK:
                raise IntegrityError(
                    f"{path}: {declared:,} bytes uncompressed for {rows:,} words, more than "
                    f"{_VOCAB_BYTES_PER_WORD:,} per word; refusing"
                )
            table = parquet.read(columns=["word", "count"])
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing") from None
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise IntegrityError(f"{path} is not a vocabulary table: {exc}") from exc
    word, count = table.column("word"), table.column("count")
    if (
        not pa.types.is_dictionary(word.type)
        or not pa.types.is_string(word.type.value_type)
        or count.type != pa.int64()
        or word.null_count
        or count.null_count
        or len(word) != rows
    ):
        raise IntegrityError(f"{path}: expected {rows:,} non-null words (string) and counts (int64)")
    words = _unique_words(word, path)
    counts = np.array(count.to_numpy(), dtype=np.int64)  # a writable copy: vocabulary updates add to it in place
    if len(counts) and counts.min() < 0:
        raise IntegrityError(f"{path}: negative counts")
    return words, counts


def _unique_words(word: pa.ChunkedArray, path: Path) -> list[str]:
    """The words of a dictionary-encoded column (each distinct word held once, an index per row), refused when a
    word repeats. Strings are made per row only once no index repeats within a chunk (so they hold no more than
    the dictionaries) and their total length is bounded; words repeated across chunks are found last."""
    total = 0
    for chunk in word.chunks:
        indices = chunk.indices.to_numpy(zero_copy_only=False)
        if len(indices) and np.bincount(indices).max() > 1:
            raise IntegrityError(f"{path}: the vocabulary repeats words")
        total += pc.sum(pc.binary_length(chunk.dictionary).take(chunk.indices)).as_py() or 0
    if total > len(word) * _VOCAB_BYTES_PER_WORD + _VOCAB_SLACK:
        raise IntegrityError(
            f"{path}: its {len(word):,} words add up to {total:,} bytes, more than {_VOCAB_BYTES_PER_WORD:,} a word; "
            "refusing"
        )
    words: list[str] = word.cast(pa.string()).to_pylist()
    if len(set(words)) != len(words):
        raise IntegrityError(f"{path}: the vocabulary repeats words")
    return words


def _read_array(
    folder: Path, name: str, dtype: np.dtype, shape: tuple[int, ...], mmap: Any, alternative: tuple[int, ...] = ()
) -> np.ndarray:
    """One ``.npy`` array, never unpickled, of exactly ``dtype`` and ``shape`` (or ``alternative``), C-ordered.
    Its header is checked against the file's size first, so nothing is allocated for a shape it does not hold."""
    path = folder / f"{name}.npy"
    try:
        with path.open("rb") as f:
            npy_header(f)
        array = np.load(path, mmap_mode=mmap, allow_pickle=False)
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing") from None
    except (ValueError, OSError, EOFError) as exc:
        raise IntegrityError(f"{path} is not a plain .npy array ({exc}); refusing to load") from exc
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise IntegrityError(f"{path} is not a single .npy array; refusing to load")
    if array.dtype != dtype or array.shape not in (shape, alternative) or not array.flags.c_contiguous:
        raise IntegrityError(
            f"{path}: {array.dtype}{list(array.shape)} where {dtype}{list(shape)} (C order) was expected; refusing"
        )
    return array


def npy_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The shape, Fortran order and dtype of the ``.npy`` file open at its start as ``f``, which is left at
    its first data byte. Only the header is read: a Python literal (numpy bounds its length), parsed without
    evaluating or unpickling anything. The data it describes must be exactly the bytes after it, so whoever
    reads on can allocate for the shape. Raises ValueError for a file that is not an ``.npy`` array,
    IntegrityError for one whose header does not match its size, or that holds Python objects."""
    version = np.lib.format.read_magic(f)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = header(f)
    name = getattr(f, "name", "the .npy file")
    if dtype.hasobject:
        raise IntegrityError(f"{name}: {dtype}{list(shape)} holds Python objects (a pickle); refusing to load")
    claimed = math.prod(shape) * dtype.itemsize  # Python integers: a forged shape cannot overflow
    held = os.fstat(f.fileno()).st_size - f.tell()
    if claimed > held:
        raise IntegrityError(
            f"{name} is truncated: its header claims {dtype}{list(shape)}, {claimed:,} bytes, and {held:,} follow it"
        )
    if claimed < held:
        raise IntegrityError(f"{name}: {held:,} bytes follow a header claiming {dtype}{list(shape)}, {claimed:,}")
    return shape, fortran, dtype


def _read_rows(folder: Path, name: str, shape: tuple[int, int], spare_rows: int = 0) -> np.ndarray:
    """A float32 matrix of exactly ``shape``, read into memory with room for ``spare_rows`` more rows: the
    result is the first ``shape[0]`` rows of a larger buffer (see :func:`jobs.training.vocabulary.appended`).
    Only the ``.npy`` header is parsed (a literal, never unpickled), then the rows are read straight into
    the buffer, with no intermediate copy."""
    path = folder / f"{name}.npy"
    try:
        with path.open("rb") as f:
            found, fortran, dtype = npy_header(f)
            if dtype != _FLOAT or found != shape or fortran:
                raise IntegrityError(
                    f"{path}: {dtype}{list(found)} where {_FLOAT}{list(shape)} (C order) was expected; refusing"
                )
            try:
                buffer = np.empty((shape[0] + spare_rows, shape[1]), dtype=_FLOAT)
            except MemoryError:  # the system refuses to reserve the room: the update will copy instead
                log.info("%s: no room reserved for %d new rows", path, spare_rows)
                buffer = np.empty(shape, dtype=_FLOAT)
            array = buffer[: shape[0]]
            read = f.readinto(array.data.cast("B")) if array.nbytes else 0
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing") from None
    except (ValueError, OSError, EOFError) as exc:
        raise IntegrityError(f"{path} is not a plain .npy array ({exc}); refusing to load") from exc
    if read != array.nbytes:
        raise IntegrityError(f"{path} is truncated: {read:,} of {array.nbytes:,} bytes of rows")
    return array


def _read_lockf(folder: Path, name: str, rows: int, mmap: str | None) -> np.ndarray:
    """gensim's lock factors: one value for all rows (the default), or one per row."""
    return _read_array(folder, name, _FLOAT, (1,), mmap, alternative=(rows,))


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


# ------------------------------------------------------------------------------------- FastText n-gram buckets


def ngram_buckets(
    words: list[str] | pa.Array, min_n: int, max_n: int, bucket: int, block: int = 65_536
) -> list[np.ndarray]:
    """Each word's character n-gram buckets, exactly as gensim's ``ft_ngram_hashes`` (Facebook's FNV-1a hash
    with its signed-char quirk over the UTF-8 bytes of ``<word>``), but vectorized, ``block`` words at a time
    (the per-character temporaries of a whole vocabulary would be several times its buckets).

    Returns one uint32 array per word (views of a buffer per block), the layout of
    ``FastTextKeyedVectors.buckets_word``.
    """
    out: list[np.ndarray] = []
    for first in range(0, len(words), block):
        flat, per_word = ngram_hashes(words[first : first + block], min_n, max_n, bucket)
        ends = np.cumsum(per_word).tolist()
        out += [flat[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    return out


def ngram_hashes(words: list[str] | pa.Array, min_n: int, max_n: int, bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram buckets of every word, concatenated in gensim's order (by start character, then length),
    and how many each word has."""
    text = pa.array(words, pa.large_string()) if not isinstance(words, pa.Array) else words.cast(pa.large_string())
    n_words = len(text)
    if n_words == 0 or bucket == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(n_words, dtype=np.int64)
    lt, gt, sep = (pa.scalar(s, pa.large_string()) for s in ("<", ">", ""))
    ext = pc.binary_join_element_wise(lt, text, gt, sep)
    offsets = np.frombuffer(ext.buffers()[1], dtype=np.int64, count=n_words + 1, offset=ext.offset * 8)
    data = np.frombuffer(ext.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    starts = np.flatnonzero((data & 0xC0) != 0x80)  # the first byte of every character
    n_chars = len(starts)
    chars = pc.utf8_length(text).to_numpy().astype(np.int64) + 2  # with '<' and '>'
    last = np.cumsum(chars)
    first = last - chars
    remaining = np.repeat(last, chars) - np.arange(n_chars)  # characters from this one to its word's end
    signed = data.view(np.int8).astype(np.uint32)  # Facebook's hash sign-extends each byte
    char_len = np.diff(np.append(starts, len(data)))
    # planes[b]: byte b of every character (0 where it has fewer bytes), padded so that shifted views fit
    planes: list[tuple[np.ndarray, Any]] = []
    for b in range(int(char_len.max())):
        plane = np.zeros(n_chars + max_n, dtype=np.uint32)
        if b == 0:
            plane[:n_chars] = signed[starts]
            planes.append((plane, None))
        else:
            multi = np.flatnonzero(char_len > b)
            plane[multi] = signed[starts[multi] + b]
            mask = np.zeros(n_chars + max_n, dtype=bool)
            mask[multi] = True
            planes.append((plane, mask))
    emitted = np.clip(remaining - min_n + 1, 0, max_n - min_n + 1)  # n-grams starting at each character
    skip = np.zeros(n_chars, dtype=bool)  # gensim emits no 1-gram for '<' and '>'
    if min_n == 1:
        skip[first] = skip[last - 1] = True
        emitted -= skip
    base = np.cumsum(emitted) - emitted
    flat = np.empty(int(emitted.sum()), dtype=np.uint32)
    h = np.full(n_chars, 2166136261, dtype=np.uint32)
    scratch = np.empty(n_chars, dtype=np.uint32)
    prime, modulus = np.uint32(16777619), np.uint32(bucket)
    for n in range(1, max_n + 1):
        window = slice(n - 1, n - 1 + n_chars)  # the n-th character of the n-gram starting at each character
        for plane, mask in planes:
            if mask is None:
                np.bitwise_xor(h, plane[window], out=h)
                np.multiply(h, prime, out=h)
            else:
                np.bitwise_xor(h, plane[window], out=scratch)
                np.multiply(scratch, prime, out=scratch)
                np.copyto(h, scratch, where=mask[window])
        if n >= min_n:
            keep = remaining >= n
            if n == 1:
                keep &= ~skip
            at = base + (n - min_n) - (skip if min_n == 1 and n > 1 else 0)
            flat[at[keep]] = h[keep] % modulus
    return flat, np.add.reduceat(emitted, first)


# ------------------------------------------------------------------------------------------ the old format


def unpickle_legacy(folder: Path, kind: str) -> Word2Vec:
    """Load a model saved by gensim's ``save()`` (the previous format): this UNPICKLES, which runs any code
    the file names. Only for files the user trusts, on a command the user ran with an option naming the risk."""
    log.warning("unpickling %s: this runs any code its writer put there", folder / LEGACY_FILE)
    return _CLASSES[kind].load(str(folder / LEGACY_FILE))
