"""The store's model format, read without gensim: ``params.json``, the ``.npy`` arrays and the vocabulary, every
claim a file makes checked before anything is allocated for it.

Both sides of the store read through here: :mod:`jobs.training.serialize` (the trainer, which rebuilds a
trainable gensim model) and :mod:`jobs.keyed` (readers, which need numpy and pyarrow alone).

    >>> params = read_params(folder)                                     # validated parameters   # doctest: +SKIP
    >>> rows = vocabulary_rows(folder, params["keyed_vectors"]["vector_size"])                    # doctest: +SKIP
    >>> vocabulary = read_vocabulary(folder, rows, dim)                  # bounded, unique words  # doctest: +SKIP
    >>> vectors = read_array(folder, "vectors", FLOAT, (rows, dim), mmap="r")                     # doctest: +SKIP

What is checked (any violation raises :class:`~jobs.errors.IntegrityError` naming the file):

- ``params.json``: the format and its version, a known kind, exactly the expected parameters, each a JSON
  scalar, the structural ones non-negative integers, lifecycle events a list of objects;
- every ``.npy`` array: read without unpickling, a header (a Python literal, never evaluated) whose shape
  times its item size is exactly the bytes after it, so a header claiming terabytes in a small file is
  refused, not allocated; then the exact dtype, C order and shape the parameters and the vocabulary imply
  (gensim's Cython loops index these arrays without bounds checks, so a forged shape would be a
  memory-safety problem, not just a wrong answer);
- ``vocab.parquet``: exactly as many rows as ``vectors.npy`` (checked against its size), the words in the
  encodings a writer uses and at most ``_VOCAB_BYTES_PER_WORD`` bytes a word uncompressed (checked in the
  metadata before any data is read), read dictionary-encoded so that a word repeated a million times is
  refused before it is copied a million times, unique words, non-negative counts.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.errors import IntegrityError
from jobs.format.mapped import rows_of as mapped_rows

log = logging.getLogger(__name__)

FORMAT = "embedding-refresh-npy"
FORMAT_VERSION = 1
PARAMS = "params.json"
VOCAB = "vocab.parquet"
KINDS = ("word2vec", "fasttext")
FLOAT = np.dtype(np.float32)

# gensim's scalar attributes, all that is kept of a model besides its arrays (jobs.training.serialize refuses
# to save a model holding anything else)
MODEL_PARAMS = tuple(
    """alpha batch_words cbow_mean comment compute_loss corpus_count corpus_total_words effective_min_count epochs
    hs layer1_size max_final_vocab max_vocab_size min_alpha min_alpha_yet_reached min_count negative ns_exponent
    null_word running_training_loss sample seed sg shrink_windows sorted_vocab total_train_time train_count
    vector_size window workers""".split()
)
FASTTEXT_PARAMS = ("word_ngrams",)
WV_PARAMS = ("vector_size", "next_index")
FASTTEXT_WV_PARAMS = ("bucket", "min_n", "max_n", "compatible_hash")
FASTTEXT_ARRAYS = ("vectors_vocab", "vectors_ngrams", "vectors_vocab_lockf", "vectors_ngrams_lockf")
SCALAR = (bool, int, float, str, type(None))
MAX_WINDOW = 10_000
MAX_NGRAM = 100
# A vocabulary's Parquet may hold this many bytes per word uncompressed, on average (a real one: 10 to 30)
_VOCAB_BYTES_PER_WORD = 1024
_VOCAB_SLACK = 1 << 20
# The encodings a Parquet writer uses for the words; the others can expand a few bytes into long strings
_VOCAB_ENCODINGS = frozenset({"PLAIN", "RLE", "RLE_DICTIONARY", "PLAIN_DICTIONARY", "BIT_PACKED"})


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
    if kind not in KINDS:
        raise IntegrityError(f"{path}: unknown model kind {kind!r}")
    fasttext = kind == "fasttext"
    for section, names in (
        ("model", MODEL_PARAMS + (FASTTEXT_PARAMS if fasttext else ())),
        ("keyed_vectors", WV_PARAMS + (FASTTEXT_WV_PARAMS if fasttext else ())),
    ):
        values = params.get(section)
        if not isinstance(values, dict) or set(values) != set(names):
            raise IntegrityError(f"{path}: section {section!r} must hold exactly {', '.join(sorted(names))}")
        for name, value in values.items():
            if not isinstance(value, SCALAR):
                raise IntegrityError(f"{path}: {section}.{name} is not a JSON scalar")
    integers = [("model", n) for n in ("vector_size", "layer1_size", "hs", "negative", "window", "sg", "cbow_mean")]
    integers += [("keyed_vectors", n) for n in (*WV_PARAMS, *(("bucket", "min_n", "max_n") if fasttext else ()))]
    for section, name in integers:
        value = params[section][name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise IntegrityError(f"{path}: {section}.{name} must be a non-negative integer, not {value!r}")
    events = params.get("lifecycle_events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise IntegrityError(f"{path}: lifecycle_events must be a list of objects")
    return params


def vocabulary_rows(folder: Path, dim: int) -> int:
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
    if dtype != FLOAT or len(shape) != 2 or shape[1] != dim or fortran:
        raise IntegrityError(
            f"{path}: {dtype}{list(shape)} where {FLOAT}[words, {dim}] (C order) was expected; refusing"
        )
    return shape[0]


@dataclass(frozen=True)
class Vocabulary:
    """A model's words in their row order, each word's row, and their counts."""

    words: list[str]
    index: dict[str, int]  # each word's row: built once, and the check that no word repeats
    counts: np.ndarray


def read_vocabulary(folder: Path, rows: int, dim: int) -> Vocabulary:
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
                    f"{folder / 'vectors.npy'}: {FLOAT}{[rows, dim]} where {FLOAT}{[words, dim]} was expected for "
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
    words, index = _unique_words(word, path)
    counts = np.array(count.to_numpy(), dtype=np.int64)  # a writable copy: vocabulary updates add to it in place
    if len(counts) and counts.min() < 0:
        raise IntegrityError(f"{path}: negative counts")
    return Vocabulary(words, index, counts)


def _unique_words(word: pa.ChunkedArray, path: Path) -> tuple[list[str], dict[str, int]]:
    """The words of a dictionary-encoded column (each distinct word held once, an index per row) and each one's
    row, refused when a word repeats. Strings are made per row only once no index repeats within a chunk (so
    they hold no more than the dictionaries) and their total length is bounded; words repeated across chunks
    are found last, as the index holds fewer words than the rows."""
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
    index = dict(zip(words, range(len(words)), strict=True))
    if len(index) != len(words):
        raise IntegrityError(f"{path}: the vocabulary repeats words")
    return words, index


def read_array(
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


def read_rows(folder: Path, name: str, shape: tuple[int, int], spare_rows: int = 0, mapped: bool = False) -> np.ndarray:
    """A float32 matrix of exactly ``shape``, with room for ``spare_rows`` more rows: the result is the first
    ``shape[0]`` rows of a larger buffer (see :func:`jobs.training.vocabulary.appended`). Only the ``.npy``
    header is parsed (a literal, never unpickled); then, ``mapped``, the file is mapped copy-on-write
    (:mod:`jobs.format.mapped`: nothing is read until touched), else the rows are read straight into the
    buffer, with no intermediate copy."""
    path = folder / f"{name}.npy"
    try:
        with path.open("rb") as f:
            found, fortran, dtype = npy_header(f)
            if dtype != FLOAT or found != shape or fortran:
                raise IntegrityError(
                    f"{path}: {dtype}{list(found)} where {FLOAT}{list(shape)} (C order) was expected; refusing"
                )
            if mapped and (array := mapped_rows(path, f.tell(), shape, spare_rows)) is not None:
                return array
            try:
                buffer = np.empty((shape[0] + spare_rows, shape[1]), dtype=FLOAT)
            except MemoryError:  # the system refuses to reserve the room: the update will copy instead
                log.info("%s: no room reserved for %d new rows", path, spare_rows)
                buffer = np.empty(shape, dtype=FLOAT)
            array = buffer[: shape[0]]
            read = f.readinto(array.data.cast("B")) if array.nbytes else 0
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing") from None
    except (ValueError, OSError, EOFError) as exc:
        raise IntegrityError(f"{path} is not a plain .npy array ({exc}); refusing to load") from exc
    if read != array.nbytes:
        raise IntegrityError(f"{path} is truncated: {read:,} of {array.nbytes:,} bytes of rows")
    return array


def read_lockf(folder: Path, name: str, rows: int, mmap: str | None) -> np.ndarray:
    """gensim's lock factors: one value for all rows (the default), or one per row."""
    return read_array(folder, name, FLOAT, (1,), mmap, alternative=(rows,))
