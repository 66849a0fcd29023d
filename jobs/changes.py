"""What changed between two versions of a lineage: the words added, removed and moved, as one Parquet file.

Vector databases and nearest-neighbour indexes (faiss, hnswlib, the managed ones) are kept current by upserts
and deletes. An indexer that reads the diff of each new version against the one it indexed touches only the
words that changed, instead of re-indexing the whole vocabulary every night:

    >>> table = compute(old_words, old_vectors, new_words, new_vectors, new_counts, threshold=0.05)  # doctest: +SKIP
    >>> write(table, Path("diff.parquet"), {"from": parent, "to": version})                          # doctest: +SKIP

One row per changed word:

=========  =====================================================================================
column     meaning
=========  =====================================================================================
word       the word (string)
change     ``added`` (only in the new version), ``removed`` (only in the old one), ``moved`` (in
           both, and its cosine distance to its old vector exceeds the threshold)
distance   the cosine distance between its new and old vectors (float32; null when added or removed)
count      its count in the new version (int64; null when removed)
vector     its new vector (fixed-size list of float32; null when removed)
=========  =====================================================================================

Rows are ordered added, moved, removed, each in the new (else old) version's index order. The file's metadata
holds both versions, the threshold and the counts of each kind, so a reader can check it is the diff it wants
before reading a row. The work is vectorized: one hash join of the two vocabularies (Arrow's ``index_in``) and
the distances in blocks of rows (float64 ``1 - cos``), so the only temporaries are a block's rows; nothing loops
over words in Python. Only numpy and pyarrow are needed, as for every reader of the store.

The trainer knows both already: which parent row each of its words is (the parent's words first, in order,
then the added ones) and every shared word's distance, from its drift measurement (float32, as half the
squared distance of the unit vectors: :func:`jobs.training.drift.compare`). :func:`from_rows` takes them and
reads only the rows that changed; its file equals :func:`compute`'s but for the distances' last bits (within
about 1e-6), with unchanged vectors at 0 exactly in both.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.errors import ConfigError
from jobs.format import files
from jobs.storage.publish import MODEL_DIR, fetch_verified, load_manifest

DIFF = "diff.parquet"  # beside each version that has a parent
DEFAULT_THRESHOLD = 0.05  # cosine distance beyond which a known word counts as moved
KINDS = ("added", "moved", "removed")
_BLOCK = 65_536
# The vectors are most of the file, and zstd saves only about a tenth of their bytes (the mantissas do not
# compress) for more than half again the time of writing them plain (tests.benchmarks.save: 400k moved words,
# 0.53 s and 164 MB plain against 0.82 s and 150 MB zstd); nor do unique words and random floats gain from
# dictionaries, nor anyone from min/max statistics of vector components. The other columns are small.
_ENCODING: dict[str, Any] = {
    "compression": {"word": "zstd", "change": "zstd", "distance": "zstd", "count": "zstd", "vector": "none"},
    "use_dictionary": ["change"],
    "write_statistics": ["word", "change", "distance", "count"],
}


def compute(
    old_words: pa.Array | list[str],
    old_vectors: np.ndarray,
    new_words: pa.Array | list[str],
    new_vectors: np.ndarray,
    new_counts: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
) -> pa.Table:
    """The diff from the old version to the new one (see the module's table), for any two versions: the words
    joined by a hash join, each shared word's distance computed here."""
    old = pa.array(old_words, pa.string()) if isinstance(old_words, list) else old_words
    new = pa.array(new_words, pa.string()) if isinstance(new_words, list) else new_words
    where = pc.index_in(new, value_set=old)  # for each new word, its row in the old version (null: added)
    found = where.is_valid().to_numpy(zero_copy_only=False)
    new_rows = np.flatnonzero(found)
    old_rows = where.filter(where.is_valid()).to_numpy().astype(np.int64)
    distance = _distances(old_vectors, old_rows, new_vectors, new_rows)
    moved = distance > threshold
    kept = np.zeros(len(old), dtype=bool)
    kept[old_rows] = True
    added_rows, moved_rows = np.flatnonzero(~found), new_rows[moved]
    return _table(
        (new.take(pa.array(added_rows, pa.int64())), added_rows),
        (new.take(pa.array(moved_rows, pa.int64())), moved_rows, distance[moved]),
        old.take(pa.array(np.flatnonzero(~kept), pa.int64())),
        new_vectors,
        new_counts,
    )


def from_rows(
    old_words: pa.Array,
    parent_rows: np.ndarray,
    new_words: Sequence[str],
    new_vectors: np.ndarray,
    new_counts: np.ndarray,
    distance: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
) -> pa.Table:
    """:func:`compute`'s table when the caller knows how the versions' rows map and how far each shared word
    moved, as the trainer does: the new version's rows ``0..len(parent_rows)-1`` are the old version's rows
    ``parent_rows`` (ascending; the old rows absent from it were removed), its later rows are words the old
    version lacks, and ``distance[i]`` is new row ``i``'s cosine distance to its old vector. No join, and no
    pass over the vectors: only the added and moved rows are read. A word moved when its distance, as the file
    stores it (float32), exceeds ``threshold``: :func:`compute`'s rule."""
    known = len(parent_rows)
    if len(distance) != known or known > len(new_words) or (known and parent_rows[-1] >= len(old_words)):
        raise ValueError(
            f"{known} shared rows, {len(distance)} distances, {len(old_words)} old and {len(new_words)} new words"
        )
    stored = np.asarray(distance, dtype=np.float32)
    moved_rows = np.flatnonzero(stored > threshold)
    added_rows = np.arange(known, len(new_words))
    kept = np.zeros(len(old_words), dtype=bool)
    kept[parent_rows] = True
    return _table(
        (_picked(new_words, added_rows), added_rows),
        # a moved word is the old word at its mapped row: taken in Arrow, not picked word by word in Python
        (old_words.take(pa.array(parent_rows[moved_rows], pa.int64())), moved_rows, stored[moved_rows]),
        old_words.take(pa.array(np.flatnonzero(~kept), pa.int64())),
        new_vectors,
        new_counts,
    )


def rows_match(old_words: pa.Array, parent_rows: np.ndarray, new_words: Sequence[str], sample: int = 4_096) -> bool:
    """Whether the new words at evenly spaced rows (the first and the last shared among them) are the old words
    that ``parent_rows`` says they are: a check of :func:`from_rows`'s premise that costs a few milliseconds
    whatever the vocabulary (a mapping off by a row somewhere fails it at once)."""
    known = len(parent_rows)
    if known > len(new_words) or (known and (parent_rows[-1] >= len(old_words) or parent_rows[0] < 0)):
        return False
    if not known:
        return True
    at = np.unique(np.linspace(0, known - 1, min(sample, known)).astype(np.int64))
    return bool(old_words.take(pa.array(parent_rows[at], pa.int64())).to_pylist() == _picked(new_words, at).to_pylist())


def _picked(words: Sequence[str], rows: np.ndarray) -> pa.Array:
    return pa.array([words[i] for i in rows.tolist()], pa.string())


def _table(
    added: tuple[pa.Array, np.ndarray],
    moved: tuple[pa.Array, np.ndarray, np.ndarray],
    removed: pa.Array,
    new_vectors: np.ndarray,
    new_counts: np.ndarray,
) -> pa.Table:
    """The diff's rows, added, moved, removed: each added and moved word (its new row) with its new vector and
    count, each removed word with nulls."""
    dim = new_vectors.shape[1]

    def rows(words: pa.Array, picked: np.ndarray | None, dist: np.ndarray | None, kind: str) -> pa.Table:
        n = len(words)
        if picked is not None:
            flat = pa.array(np.ascontiguousarray(new_vectors[picked], dtype=np.float32).reshape(-1))
            vectors = pa.FixedSizeListArray.from_arrays(flat, dim)
            counts = pa.array(np.asarray(new_counts)[picked], pa.int64())
        else:
            vectors = pa.nulls(n, pa.list_(pa.float32(), dim))
            counts = pa.nulls(n, pa.int64())
        return pa.table(
            {
                "word": words,
                "change": pa.repeat(pa.scalar(kind, pa.string()), n),
                "distance": pa.array(dist, pa.float32()) if dist is not None else pa.nulls(n, pa.float32()),
                "count": counts,
                "vector": vectors,
            }
        )

    return pa.concat_tables(
        [
            rows(added[0], added[1], None, "added"),
            rows(moved[0], moved[1], moved[2], "moved"),
            rows(removed, None, None, "removed"),
        ]
    )


def between(store: Any, older: str, newer: str, output: Path, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Write the diff from version ``older`` to version ``newer`` of ``store`` (B a descendant of A, through
    the manifests' ``parent`` links) at ``output``; return its metadata. Each version's vocabulary and vectors
    are fetched and verified against its manifest first. Raises ConfigError for versions of different
    lineages (or in the wrong order), and the store's errors."""

    old, new = load_manifest(store, older), load_manifest(store, newer)
    chain, seen = new, 0
    while chain.version != old.version:
        link = chain.parent or chain.converted_from
        seen += 1
        if not link or seen > 100_000:
            raise ConfigError(
                f"{new.version} does not descend from {old.version} in {store.uri}: a diff compares two "
                f"versions of one lineage (give the older one first)"
            )
        chain = load_manifest(store, link)
    names = [f"{MODEL_DIR}/{files.PARAMS}", f"{MODEL_DIR}/{files.VOCAB}", f"{MODEL_DIR}/vectors.npy"]
    with tempfile.TemporaryDirectory(prefix="embedding-diff-") as tmp:
        a = _words_and_vectors(fetch_verified(store, old.version, Path(tmp) / "a", names) / MODEL_DIR)
        b = _words_and_vectors(fetch_verified(store, new.version, Path(tmp) / "b", names) / MODEL_DIR)
        table = compute(a[0], a[1], b[0], b[1], b[2], threshold)
        return write(table, output, {"from": old.version, "to": new.version, "threshold": threshold})


def _words_and_vectors(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A verified model folder's words, vectors (memory-mapped) and counts, every file checked and bounded
    (:mod:`jobs.format.files`) before anything is allocated for it."""

    dim = files.read_params(folder)["keyed_vectors"]["vector_size"]
    vocabulary = files.read_vocabulary(folder, files.vocabulary_rows(folder, dim), dim)
    words = vocabulary.words
    return words, files.read_array(folder, "vectors", np.dtype(np.float32), (len(words), dim), "r"), vocabulary.counts


def _distances(old: np.ndarray, old_rows: np.ndarray, new: np.ndarray, new_rows: np.ndarray) -> np.ndarray:
    """Cosine distance between ``new[new_rows[i]]`` and ``old[old_rows[i]]``, in blocks of rows."""
    out = np.empty(len(new_rows), dtype=np.float32)
    for start in range(0, len(new_rows), _BLOCK):
        a = np.asarray(new[new_rows[start : start + _BLOCK]], dtype=np.float64)
        b = np.asarray(old[old_rows[start : start + _BLOCK]], dtype=np.float64)
        same = (a == b).all(axis=1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosine = np.divide(np.einsum("ij,ij->i", a, b), norms, out=np.ones(len(a)), where=norms > 0)
        # an unchanged vector is at distance 0 exactly, not at a rounding error of it
        out[start : start + len(a)] = np.where(same, 0.0, np.clip(1.0 - cosine, 0.0, 2.0))
    return out


def empty(dim: int) -> pa.Table:
    """The diff of a version whose model is its parent's (nothing trained)."""
    none = np.zeros((0, dim), dtype=np.float32)
    return compute([], none, [], none, np.zeros(0, dtype=np.int64))


def summary(table: pa.Table) -> dict[str, int]:
    """How many words of each kind the diff holds."""
    counted = {item["values"]: item["counts"] for item in pc.value_counts(table.column("change")).to_pylist()}
    return {kind: int(counted.get(kind, 0)) for kind in KINDS}


def write(table: pa.Table, where: Path | pa.NativeFile, about: dict[str, Any]) -> dict[str, Any]:
    """Write the diff as Parquet (to a path or a buffer) with ``about`` (the versions, the threshold) and the
    counts in its metadata; return that metadata."""
    meta = {**about, **summary(table)}
    schema = table.schema.with_metadata({b"embedding_refresh_diff": json.dumps(meta, sort_keys=True).encode()})
    pq.write_table(table.cast(schema), where, **_ENCODING)
    return meta


def encoded(table: pa.Table, about: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """:func:`write` into memory: the file's bytes and its metadata."""
    sink = pa.BufferOutputStream()
    meta = write(table, sink, about)
    return sink.getvalue().to_pybytes(), meta


def read_about(path: Path) -> dict[str, Any]:
    """The metadata :func:`write` recorded (the versions, the threshold, the counts)."""
    raw = pq.read_schema(path).metadata or {}
    return dict(json.loads(raw.get(b"embedding_refresh_diff", b"{}")))
