"""Reading a user's own model file for import: tell what it really is, load it with gensim, and validate it.

A model trained elsewhere becomes the first version of a lineage (``python -m jobs.versions import``). Three
kinds of file are understood:

- ``gensim``: a full ``Word2Vec`` or ``FastText`` model written by ``save()``, by gensim 4 or by an older
  gensim that gensim 4 can still upgrade on load. **Loading it unpickles it**, exactly as gensim's own
  ``load()`` does, so it must be a file the user trusts: a pickle can run any code. It is read only when the
  user says so (``kind="gensim"``, or ``allow_pickle``), never because the file's bytes look like a pickle.
- ``facebook``: a ``.bin`` file of Facebook's fastText, read by ``load_facebook_model`` (not a pickle), which
  keeps the output layer, so the model stays trainable; gzipped too (the ``.bin.gz`` files fasttext.cc serves).
- ``word2vec``: vectors only, in the word2vec C text or binary format, gzipped or not (or, with
  ``kind="gensim"``, a gensim ``KeyedVectors`` file). They have no output layer and no counts, so gensim cannot
  continue training them; they are refused unless the user asks to *adopt* them (:func:`adopt_vectors`), which
  builds a trainable Word2Vec initialised from the vectors, with an output layer of zeros and counts from a
  file (or one per word until refreshes add theirs).

With ``kind="auto"`` the kind is the file's real format, whatever its name (:func:`inspect`): fastText's magic
number and header, a word2vec header line, the first bytes of a pickle; a gzip or bzip2 file is looked into
(its first 64 KiB decompressed) the same way, and a fastText or word2vec file inside is decompressed to a
scratch file, bounded (:data:`MAX_DECOMPRESSED`), then read as such. A pickle, compressed or not, is refused
with the flag that would read it.

Every check runs before anything is written, and every refusal (:class:`~jobs.errors.ImportRefused`) names
the file and the cause:

    source = read(Path("cc.en.300.bin.gz"))                           # doctest: +SKIP
    source = read(Path("pretrained.model"), "gensim")                 # unpickles: a file you trust
    source.model, source.kind, source.imported_from["sha256"]         # doctest: +SKIP
"""

from __future__ import annotations

import bz2
import gzip
import logging
import re
import struct
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gensim
import numpy as np
from gensim import utils
from gensim.models import Doc2Vec, FastText, KeyedVectors, Word2Vec
from gensim.models.fasttext import load_facebook_model

from jobs.config import TrainingConfig
from jobs.errors import ImportRefused
from jobs.storage.publish import sha256_file
from jobs.training import model as gmodel

log = logging.getLogger(__name__)

FACEBOOK_MAGIC = 793712314  # first int32 of every fastText .bin (gensim.models._fasttext_bin)
_FACEBOOK_LOSSES = {1: "hs", 2: "ns", 3: "softmax", 4: "one-vs-all"}
_FACEBOOK_FIELDS = ("dim", "ws", "epoch", "min_count", "neg", "word_ngrams", "loss", "model", "bucket", "minn", "maxn")
_PICKLE = re.compile(rb"\x80[\x02-\x05]")  # the PROTO opcode of pickle protocols 2-5 (what gensim has written)
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bz2"}  # gzip's magic number, bzip2's
#: the most a compressed model file may decompress to (cc.en.300.bin, the largest fastText model, is 7.2 GB),
#: and no more than ``_RATIO`` times its compressed size: float arrays shrink under 2x, word2vec text about 3x
MAX_DECOMPRESSED = 64 << 30
_RATIO = 32
_BLOCK = 8 << 20
TRUST = (
    "importing {path} unpickles it, as gensim's load() does: a pickle can run any code, so import only a file you trust"
)
_WORD2VEC_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*\n")
_ROWS = 1 << 16  # rows per block when locating a non-finite value


@dataclass
class Source:
    """A model read from a user's file, validated and ready to be saved as a version."""

    model: Word2Vec
    kind: str  # "word2vec" or "fasttext": what the lineage trains
    imported_from: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what import changed or implies, for the manifest


def refuse(path: Path, cause: str) -> ImportRefused:
    return ImportRefused(f"cannot import {path}: {cause}")


@dataclass(frozen=True)
class Format:
    """What a file really is, read from its first bytes without running anything."""

    kind: str | None  # "facebook", "word2vec", "pickle", or None: none of them
    compression: str | None  # "gzip", "bz2", or None
    head: bytes  # its first bytes, decompressed


def inspect(path: Path) -> Format:
    """The real format of ``path`` (looking inside gzip and bzip2), whatever its name. Raises ImportRefused for
    an empty or unreadable file."""
    head = _head(path)
    if not head:
        raise refuse(path, "the file is empty")
    compression = next((name for magic, name in _COMPRESSED.items() if head.startswith(magic)), None)
    if compression:
        try:
            with _opened(path, compression) as inner:
                head = inner.read(1 << 16)
        except (OSError, EOFError, ValueError) as exc:
            raise refuse(path, f"it starts like a {compression} file but cannot be decompressed ({exc})") from None
        if not head:
            raise refuse(path, f"the file is empty once decompressed ({compression})")
    return Format(sniff(head), compression, head)


def _opened(path: Path, compression: str) -> gzip.GzipFile | bz2.BZ2File:
    return gzip.open(path, "rb") if compression == "gzip" else bz2.open(path, "rb")


def sniff(head: bytes) -> str | None:
    """``facebook``, ``pickle`` or ``word2vec`` for a file starting with ``head``; None when it is none of them."""
    if facebook_header(head) is not None:
        return "facebook"
    if _PICKLE.match(head):
        return "pickle"
    if _WORD2VEC_HEADER.match(head):
        return "word2vec"
    return None


def choose(path: Path, kind: str, found: Format, allow_pickle: bool) -> str:
    """The kind to read ``path`` as: the user's, or (``auto``) the file's real format. The bytes never choose
    the unpickler: a pickle on ``auto`` is refused unless ``allow_pickle``. Raises ImportRefused."""
    wrapped = f" ({found.compression}-compressed)" if found.compression else ""
    if kind != "auto":
        if found.kind not in (None, "pickle" if kind == "gensim" else kind):
            log.warning("%s looks like a %s file%s; reading it as %s, as asked", path, found.kind, wrapped, kind)
        return kind
    if found.kind is None:
        raise refuse(
            path,
            "not a gensim model (a pickle), a Facebook fastText .bin or a word2vec file: it starts with "
            f"{found.head[:8]!r}{wrapped}",
        )
    if found.kind == "pickle":
        if not allow_pickle:
            raise refuse(
                path,
                f"it is a pickle{wrapped} (what gensim's save() writes), and unpickling runs any code the file "
                "names, so import never unpickles a file because of what it holds. If you trust this file, "
                "import it with --kind gensim (or --allow-pickle)",
            )
        return "gensim"
    return found.kind


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(1 << 16)
    except OSError as exc:
        raise refuse(path, exc.strerror or str(exc)) from None


def read(
    path: Path,
    kind: str = "auto",
    *,
    allow_pickle: bool = False,
    adopt: bool = False,
    counts_file: Path | None = None,
    training: TrainingConfig | None = None,
) -> Source:
    """Load and validate ``path`` as ``kind`` (``auto``: its real format, :func:`choose`; a pickle only with
    ``allow_pickle``). A vectors-only file is refused unless ``adopt``; then :func:`adopt_vectors` builds the
    model from ``training``'s architecture and the counts in ``counts_file``. Raises ImportRefused."""
    found = inspect(path)
    chosen = choose(path, kind, found, allow_pickle)
    origin: dict[str, Any] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "format": chosen,
    }
    model: Word2Vec | None = None
    vectors: KeyedVectors | None = None
    if chosen == "gensim":
        origin["companions"] = {p.name: sha256_file(p) for p in sorted(path.parent.glob(f"{path.name}.*.npy"))}
        log.warning(TRUST.format(path=path))
        loaded = _unpickle(path)
        origin["written_by"] = _writer(loaded)
        if isinstance(loaded, KeyedVectors):
            vectors = loaded
        else:
            model = _full_model(path, loaded)
    else:
        with tempfile.TemporaryDirectory(prefix="embedding-import-") as scratch:
            data = path
            if found.compression:
                data = decompress(path, found.compression, Path(scratch) / "decompressed")
                origin["compression"] = found.compression
            if chosen == "facebook":
                model = _load_facebook(data, path)
                origin["written_by"] = "Facebook fastText"
            else:
                vectors = _load_word2vec(data, path)
                origin["written_by"] = "unknown (word2vec format)"
    notes: list[str] = []
    if model is None:
        assert vectors is not None
        if not adopt:
            raise refuse(path, VECTORS_ONLY)
        counts = read_counts(counts_file, vectors) if counts_file else None
        model = adopt_vectors(vectors, counts, training)
        origin["adopted_vectors"] = True
        notes += [
            "adopted from vectors only: the output layer started at zero, so the first refresh trains it and "
            "moves the vectors more than later refreshes do",
            f"counts from {counts_file.name}"
            if counts_file
            else "no counts: 1 per word until refreshes add theirs (negative sampling and down-sampling "
            "follow the refreshes' counts)",
        ]
    notes += _drop_hierarchical_softmax(path, model)
    origin["dropped"] = drop_leftovers(model)
    origin["defaults_filled"] = fill_defaults(model)
    origin.update(validate(path, model))
    origin["architecture"] = gmodel.architecture(model)
    return Source(model=model, kind=gmodel.kind(model), imported_from=origin, notes=notes)


VECTORS_ONLY = (
    "it holds vectors only: no output layer and no word counts, so gensim cannot continue training it. "
    "Import the full model written by gensim's save() (the Word2Vec or FastText object, not its .wv) or the "
    "fastText .bin; or pass --adopt-vectors to build a trainable model initialised from these vectors (its "
    "output layer starts at zero; counts come from --counts FILE or from the refreshes)"
)


def _unpickle(path: Path) -> Any:
    """gensim's own loader (unpickles, then upgrades what older gensim versions wrote)."""
    try:
        return utils.SaveLoad.load(str(path))
    except ModuleNotFoundError as exc:
        if "wrappers" in str(exc):
            raise refuse(
                path,
                "it is a gensim 3 wrapper around Facebook fastText, which gensim 4 cannot read; "
                "import the original fastText .bin file instead",
            ) from None
        raise refuse(path, f"it needs a Python module that is not installed ({exc.name})") from None
    except AttributeError as exc:
        hint = (
            "; it was probably written by a gensim older than 0.13.4: load and save it with gensim 3.8.3 first"
            if "attribute 'wv'" in str(exc)
            else ""
        )
        raise refuse(path, f"gensim {gensim.__version__} cannot upgrade this model ({exc}){hint}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, OSError, ImportError) as exc:
        raise refuse(path, f"gensim cannot load it ({type(exc).__name__}: {exc}); is it truncated?") from None
    except Exception as exc:  # pickle.UnpicklingError and whatever a damaged pickle raises
        raise refuse(
            path, f"not a readable pickle ({type(exc).__name__}: {exc}); is it truncated or corrupt?"
        ) from None


def _writer(loaded: Any) -> str:
    """The gensim version that saved the object, from its lifecycle log (gensim 4 records one)."""
    events = [e for e in getattr(loaded, "lifecycle_events", None) or [] if e.get("event") != "loaded"]
    for event in reversed(events):
        if event.get("gensim"):
            return f"gensim {event['gensim']}"
    return "gensim before 4.0 (it records no version)"


def _full_model(path: Path, loaded: Any) -> Word2Vec:
    if isinstance(loaded, Doc2Vec):
        raise refuse(path, "it is a Doc2Vec model; only Word2Vec and FastText models can be imported")
    if not isinstance(loaded, Word2Vec):
        raise refuse(path, f"it holds a {type(loaded).__name__}, not a Word2Vec or FastText model")
    return loaded


def facebook_header(head: bytes) -> dict[str, int] | None:
    """The arguments at the start of a fastText ``.bin`` (with the magic number of fastText 0.2+, or the older
    header without it), or None when ``head`` does not start like one."""
    offset = 8 if len(head) >= 4 and struct.unpack("<i", head[:4])[0] == FACEBOOK_MAGIC else 0
    size = 4 * (len(_FACEBOOK_FIELDS) + 1) + 8
    if len(head) < offset + size:
        return None
    values = struct.unpack("<12id", head[offset : offset + size])
    fields = dict(zip(_FACEBOOK_FIELDS, values, strict=False))
    plausible = (
        0 < fields["dim"] <= 100_000
        and 0 < fields["ws"] <= 10_000
        and fields["loss"] in _FACEBOOK_LOSSES
        and fields["model"] in (1, 2, 3)
        and 0 <= values[-1] < 1  # the down-sampling threshold t
    )
    return fields if plausible or offset else None


def decompress(path: Path, compression: str, target: Path) -> Path:
    """Stream ``path`` decompressed into ``target`` (a name without a compression suffix, so gensim reads it as
    it is), refusing it once it outgrows :data:`MAX_DECOMPRESSED` or ``_RATIO`` times its size."""
    limit = min(MAX_DECOMPRESSED, max(_RATIO * path.stat().st_size, 64 << 20))
    written = 0
    try:
        with _opened(path, compression) as source, open(target, "wb") as out:
            while block := source.read(_BLOCK):
                written += len(block)
                if written > limit:
                    raise refuse(
                        path,
                        f"it decompresses ({compression}) to more than {limit / 2**20:,.0f} MiB, more than a model "
                        f"file of its size holds; decompress it yourself if it is genuine",
                    )
                out.write(block)
    except (OSError, EOFError, ValueError) as exc:
        raise refuse(
            path,
            f"it cannot be decompressed ({compression}) into {target.parent}: {exc}; is it truncated, or is that "
            "disk full (set TMPDIR to a folder with room)?",
        ) from None
    log.info("%s: decompressed (%s) to %.1f MiB", path, compression, written / 2**20)
    return target


def _load_facebook(data: Path, path: Path) -> Word2Vec:
    """The fastText model in ``data`` (``path`` itself, or its decompressed copy); messages name ``path``."""
    with open(data, "rb") as handle:
        header = facebook_header(handle.read(64))
    if header is None:
        raise refuse(path, "not a fastText .bin file (its header is not fastText's)")
    if header["model"] == 3:
        raise refuse(path, "it is a supervised (classification) fastText model, not word vectors")
    if header["loss"] != 2:
        raise refuse(
            path,
            f"it was trained with loss {_FACEBOOK_LOSSES.get(header['loss'], header['loss'])!r}; incremental "
            "updates need negative sampling (fastText -loss ns), whose output layer gensim keeps training",
        )
    try:
        return load_facebook_model(str(data))
    except NotImplementedError as exc:
        raise refuse(path, str(exc)) from None
    except Exception as exc:
        raise refuse(path, f"not a readable fastText .bin ({type(exc).__name__}: {exc}); is it truncated?") from None


def _load_word2vec(data: Path, path: Path) -> KeyedVectors:
    """The vectors in ``data`` (``path`` itself, or its decompressed copy); messages name ``path``."""
    binary = _is_binary(data)
    try:
        return KeyedVectors.load_word2vec_format(str(data), binary=binary)
    except Exception as exc:
        form = "binary" if binary else "text"
        raise refuse(path, f"not a readable word2vec {form} file ({type(exc).__name__}: {exc})") from None


def _is_binary(path: Path) -> bool:
    """Whether a word2vec file (header ``count dims``) holds raw floats, rather than text, after each word."""
    head = _head(path)
    match = _WORD2VEC_HEADER.match(head)
    if not match:
        return False
    line = head[match.end() :].split(b"\n", 1)[0]
    try:
        values = [float(v) for v in line.decode("utf-8").split()[1:]]
    except (UnicodeDecodeError, ValueError):
        return True
    return len(values) != int(match.group(2))


def read_counts(path: Path, vectors: KeyedVectors) -> dict[str, int]:
    """Word counts from a ``word<TAB or space>count`` file, one word a line; every vector's word needs one."""
    counts: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                word, _, count = line.rstrip("\n").rpartition("\t" if "\t" in line else " ")
                try:
                    counts[word] = int(count)
                except ValueError:
                    raise refuse(path, f"line {number} is not 'word<TAB>count': {line[:80]!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise refuse(path, f"cannot read the counts ({exc})") from None
    missing = [w for w in vectors.index_to_key if counts.get(w, 0) < 1]
    if missing:
        raise refuse(path, f"{len(missing):,} words of the vectors have no positive count, e.g. {missing[:5]}")
    return counts


def adopt_vectors(vectors: KeyedVectors, counts: dict[str, int] | None, training: TrainingConfig | None) -> Word2Vec:
    """A trainable Word2Vec whose input vectors are ``vectors``: ``training``'s window, sg, negative and sample,
    an output layer of zeros (as gensim starts every model), and ``counts`` (1 per word without them)."""
    config = training or TrainingConfig()
    freq = {w: counts[w] for w in vectors.index_to_key} if counts else dict.fromkeys(vectors.index_to_key, 1)
    # min_count 1: every vector is kept; the lineage's min_count applies to the words refreshes add
    model = gmodel.create(replace(config, model="word2vec", vector_size=vectors.vector_size, min_count=1))
    model.build_vocab_from_freq(freq, corpus_count=0)
    order = [vectors.key_to_index[w] for w in model.wv.index_to_key]
    model.wv.vectors[:] = vectors.vectors[order]
    model.min_count = config.min_count
    return model


def _drop_hierarchical_softmax(path: Path, model: Word2Vec) -> list[str]:
    """Refuse a model without a negative-sampling layer; drop the hierarchical-softmax layer of one with both."""
    if not model.negative or getattr(model, "syn1neg", None) is None:
        mode = "hierarchical softmax only" if model.hs else "neither negative sampling nor hierarchical softmax"
        raise refuse(
            path,
            f"it was trained with {mode} (negative={model.negative}, no syn1neg output layer); incremental "
            "updates need a negative-sampling output layer (negative > 0), because gensim rebuilds the "
            "hierarchical-softmax tree on every vocabulary update and the trained layer no longer fits it",
        )
    if not model.hs:
        return []
    model.hs = 0
    if hasattr(model, "syn1"):
        del model.syn1
    return [
        "trained with hierarchical softmax and negative sampling: the hierarchical-softmax layer was dropped; "
        "refreshes train the negative-sampling layer"
    ]


# What older gensim versions (and load_facebook_model) leave on a model that gensim 4 neither uses nor creates:
# save()'s bookkeeping of which attributes it stored apart, gensim 3's aliases and caches, fastText's header
# counts, and the per-word index and hierarchical-softmax codes that gensim 4 keeps elsewhere or not at all.
_LEFTOVERS = (
    "__ignoreds __numpys __recursive_saveloads __scipys callbacks load_word2vec_format model_trimmed_post_training "
    "num_original_vectors nwords syn0_lockf syn0norm vocab_size"
).split()
_WV_LEFTOVERS = "__ignoreds __numpys __recursive_saveloads __scipys syn0norm".split()
_EXPANDO_LEFTOVERS = ("index", "code", "point")


def drop_leftovers(model: Word2Vec) -> list[str]:
    """Remove what gensim 4 would not have put on this model, so it is saved as one trained by the job would
    be; return the names removed."""
    dropped = [name for name in _LEFTOVERS if name in vars(model)]
    dropped += [f"wv.{name}" for name in _WV_LEFTOVERS if name in vars(model.wv)]
    dropped += [f"wv.expandos[{name!r}]" for name in _EXPANDO_LEFTOVERS if name in model.wv.expandos]
    for name in _LEFTOVERS:
        vars(model).pop(name, None)
    for name in _WV_LEFTOVERS:
        vars(model.wv).pop(name, None)
    for name in _EXPANDO_LEFTOVERS:
        model.wv.expandos.pop(name, None)
    if dropped:
        log.info("dropped what gensim 4 no longer uses: %s", ", ".join(dropped))
    return dropped


def fill_defaults(model: Word2Vec) -> list[str]:
    """Give a model written by an older gensim the scalar parameters gensim 4 added since (``comment``,
    ``shrink_windows``, ...), at gensim 4's defaults; return their names."""
    fresh = type(model)(vector_size=model.vector_size)
    _Scalar = (bool, int, float, str, type(None))
    filled = []
    for owner, reference, prefix in ((model, fresh, ""), (model.wv, fresh.wv, "wv.")):
        for name, value in vars(reference).items():
            if name not in vars(owner) and isinstance(value, _Scalar):
                setattr(owner, name, value)
                filled.append(prefix + name)
    if "effective_min_count" not in vars(model):  # set by build_vocab, which an old model never ran in gensim 4
        model.effective_min_count = model.min_count
        filled.append("effective_min_count")
    if filled:
        log.info("set what this model's gensim did not have, at gensim %s's defaults: %s", gensim.__version__, filled)
    return filled


def validate(path: Path, model: Word2Vec) -> dict[str, Any]:
    """Check what the trainer relies on; return the sizes recorded in the manifest. Raises ImportRefused."""
    wv = model.wv
    words = len(wv.index_to_key)
    if words == 0:
        raise refuse(path, "its vocabulary is empty")
    if len(wv.key_to_index) != words:
        raise refuse(path, f"its vocabulary lists {words:,} words but indexes {len(wv.key_to_index):,}")
    if not all(isinstance(w, str) for w in (wv.index_to_key[0], wv.index_to_key[-1])):
        raise refuse(path, "its vocabulary keys are not strings")
    dims = model.vector_size
    arrays: dict[str, np.ndarray] = {"vectors": wv.vectors, "syn1neg": model.syn1neg}
    if isinstance(model, FastText):
        arrays["vectors_vocab"] = wv.vectors_vocab
        arrays["vectors_ngrams"] = wv.vectors_ngrams
        if wv.vectors_ngrams.shape[0] != wv.bucket or wv.bucket < 1:
            raise refuse(path, f"vectors_ngrams has {wv.vectors_ngrams.shape[0]:,} rows for {wv.bucket:,} buckets")
    for name, array in arrays.items():
        expected_rows = wv.bucket if name == "vectors_ngrams" else words
        if array.ndim != 2 or array.shape != (expected_rows, dims):
            raise refuse(
                path, f"{name} has shape {array.shape}, expected ({expected_rows:,}, {dims}) for its vocabulary"
            )
        _finite(path, name, array, wv)
    counts = wv.expandos.get("count")
    if counts is None or len(counts) != words:
        raise refuse(path, "its vocabulary has no word counts")
    counts = np.asarray(counts)
    if counts.min() < 1:
        row = int(np.argmin(counts))
        raise refuse(path, f"word {wv.index_to_key[row]!r} has count {counts[row]}; every count must be positive")
    if "sample_int" not in wv.expandos or len(wv.expandos["sample_int"]) != words:
        gmodel.resample(model)
    total = int(sum(a.nbytes for a in arrays.values()))
    log.info(
        "%s: %d words x %d dims; the trainer needs about %.1f MiB for its arrays", path, words, dims, total / 2**20
    )
    return {"words": words, "vector_size": dims, "count_total": int(counts.sum()), "array_bytes": total}


def _finite(path: Path, name: str, array: np.ndarray, wv: KeyedVectors) -> None:
    """Refuse NaN or inf anywhere in ``array``: one summation (no temporary), then a blocked search to name it."""
    if np.isfinite(array.sum(dtype=np.float64)):
        return
    for start in range(0, array.shape[0], _ROWS):
        block = np.isfinite(array[start : start + _ROWS]).all(axis=1)
        if not block.all():
            row = start + int(np.argmin(block))
            what = f"word {wv.index_to_key[row]!r}" if name != "vectors_ngrams" else f"n-gram bucket {row}"
            raise refuse(path, f"{name} holds NaN or inf values (first at row {row}, {what})")
