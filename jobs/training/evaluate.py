"""The quality gate's measurements: the candidate against its parent, on the trainer's node, before anything
is committed. :mod:`jobs.training.gate` turns them into checks that pass or fail.

- **finite values** of every vector, and for an update, over the parent's most frequent words (by cumulative
  count): the **median norm ratio** (candidate over parent) and the **spread of directions**
  (``1 - mean pairwise cosine``) of both versions;
- **neighbourhood overlap**: for the parent's ``probe_words`` most frequent words, the share of their nearest
  neighbours among the parent's ``search_words`` most frequent words (all of a smaller vocabulary, as
  ``most_similar(restrict_vocab=...)`` searches) that the candidate keeps, beyond what chance keeps, with this run's
  noise (the standard error over the probes) and the spread chance alone gives; judged against the
  lineage's history (:attr:`Baseline.history`, read from the parent's manifest);
- **word-pair similarity** on user files in the WordSim-353 TSV format (``word1<TAB>word2<TAB>score``):
  Spearman correlation, and **analogies** on user files in the ``questions-words.txt`` format: accuracy.

The parent's side is measured once, from the loaded parent before its vocabulary grows (:func:`baseline`),
and the candidate's after training, so the parent is loaded once, for training:

    before = baseline(model.wv, GateConfig(), files={}, history=[0.21, 0.18])   # the parent, as loaded
                                                                                 # grow the vocabulary, train
    result = evaluate(before, model.wv, GateConfig(), files={})
    result["passed"], result["reasons"], result["checks"]

(``evaluate(parent_wv, candidate_wv, ...)`` on two loaded models does both steps.) Neighbours come from blocked
float32 matrix products of the raw vectors with the probes', divided by their norms as ``most_similar``
divides them, so no normalized copy of a whole matrix is made; after the first block only the similarities
above each probe's k-th best so far are looked at. The same pass also finds the words whose neighbourhoods
changed most, for the refresh report. Works on gensim ``KeyedVectors`` objects; gensim itself is imported only
by :mod:`jobs.training.model` and :mod:`jobs.training.vocabulary`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.config import GateConfig
from jobs.training import gate

if TYPE_CHECKING:
    from jobs.training.drift import Shared

Scorer = Callable[[Any, Path], "float | None"]
_BLOCK_BYTES = 64 * 2**20  # similarities computed at once by nearest_scored
_MIN_CHUNK = 32_768  # rows of the matrix per product at least (top_k needs 1,024 per neighbour)
_DEPTH = 2  # the parent's neighbour lists hold this many times topn: words the candidate lacks are skipped
FREQUENT = 2_000  # the parent's most frequent words whose norms and directions are compared


@dataclass(frozen=True)
class Baseline:
    """The parent's side of the gate, measured before anything changes the parent's model."""

    words: list[str]  # the parent's vocabulary in index order (a copy: an update extends the model's list)
    probes: list[str]
    neighbours: list[list[str]]  # each probe's nearest among the parent's words, _DEPTH x topn deep
    scores: dict[str, float | None] = field(default_factory=dict)  # evaluation file -> the parent's score
    frequent: list[str] = field(default_factory=list)  # the FREQUENT most frequent words
    frequent_vectors: np.ndarray | None = None  # their vectors (a copy: training moves the model's)
    history: tuple[float, ...] = ()  # the lineage's overlaps, oldest first (gate.history_of)
    pool: np.ndarray | None = None  # the parent's rows searched for neighbours (search_pool); None: all


def baseline(
    parent: Any, config: GateConfig, files: dict[str, bytes] | None, history: Sequence[float] = ()
) -> Baseline:
    """Measure the parent (its ``KeyedVectors``, before the vocabulary update) for :func:`evaluate`;
    ``history`` is the lineage's, from the parent's manifest (:func:`jobs.training.gate.history_of`). With
    ``files`` None, the evaluation files are left to :func:`scored` (they need gensim's own vectors, and the
    rest does not: the trainer measures the parent's files as read, while gensim is still being imported)."""
    frequent = probe_words(parent, max(FREQUENT, config.probe_words))
    probes = frequent[: config.probe_words]
    pool = search_pool(parent, config.search_words)
    depth = min(_DEPTH * config.topn, (len(parent.index_to_key) if pool is None else len(pool)) - 1)
    scores = {} if files is None else _scores(parent, config, files)
    rows = np.array([parent.key_to_index[w] for w in frequent], dtype=np.int64)
    return Baseline(
        list(parent.index_to_key),
        probes,
        nearest(parent, probes, depth, among=pool) if depth > 0 else [],
        scores,
        frequent,
        np.array(parent.vectors[rows], dtype=np.float32),
        tuple(history),
        pool,
    )


def scored(before: Baseline, parent: Any, config: GateConfig, files: dict[str, bytes]) -> Baseline:
    """``before`` with the parent's scores on the evaluation files (``parent``: its ``KeyedVectors``)."""
    return replace(before, scores=_scores(parent, config, files))


def _scores(parent: Any, config: GateConfig, files: dict[str, bytes]) -> dict[str, float | None]:
    with _files(config, files) as found:
        return {name: score(parent, path) for name, score, path in found}


def probe_words(vectors: Any, n: int) -> list[str]:
    """The ``n`` most frequent words by cumulative count (ties in vocabulary order).

    Not ``index_to_key[:n]``: gensim sorts by count only when it creates a vocabulary and appends on every
    update, so after the first update the head of the index is the first model's top words forever.
    Vectors without counts (a plain word2vec file) fall back to vocabulary order.
    """
    return [vectors.index_to_key[int(i)] for i in frequent_rows(vectors, n)]


def frequent_rows(vectors: Any, n: int) -> np.ndarray:
    """The rows of :func:`probe_words`, most frequent first."""
    counts = getattr(vectors, "expandos", {}).get("count")
    total = len(vectors.index_to_key)
    n = max(0, min(n, total))
    if counts is None or len(counts) != total:
        return np.arange(n, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-counts, n - 1)[:n] if n < total else np.arange(total)
    return top[np.lexsort((top, -counts[top]))].astype(np.int64)


def search_pool(vectors: Any, n: int) -> np.ndarray | None:
    """The rows (ascending) of the ``n`` most frequent words, among which the gate searches neighbours, as
    ``most_similar(restrict_vocab=...)`` searches the head of a sorted vocabulary; None: every row (a
    vocabulary of ``n`` words or fewer). The rare tail of a big vocabulary is where vectors are noise, and
    searching it would make the gate's cost follow the vocabulary rather than what it measures."""
    if n >= len(vectors.index_to_key):
        return None
    return np.sort(frequent_rows(vectors, n))


def shared_rows(words: list[str], candidate: Any) -> tuple[Any, Any]:
    """Rows of the parent's ``words`` the candidate holds, as (parent rows, candidate rows) in the parent's order.

    An update appends its new words after the parent's, so usually the candidate's first ``len(parent)``
    rows are the parent's words and both are plain slices (checked: one list comparison in C). Otherwise
    (a vocabulary that dropped or reordered words) the rows are looked up in one vectorized pass.
    """
    n = len(words)
    if candidate.index_to_key[:n] == words:
        return slice(0, n), slice(0, n)
    index = pc.index_in(pa.array(words, pa.string()), value_set=pa.array(candidate.index_to_key))
    present = pc.is_valid(index).to_numpy(zero_copy_only=False)
    return np.flatnonzero(present), index.drop_null().to_numpy().astype(np.int64)


def neighbourhoods(parent: Baseline | Any, candidate: Any, config: GateConfig) -> tuple[float, list[dict[str, Any]]]:
    """How much of the parent's neighbourhoods (its :func:`baseline`, or its vectors) the candidate keeps, and
    the words that changed most.

    For the parent's ``probe_words`` most frequent words, the share of their ``topn`` nearest neighbours
    that the candidate keeps, both searched only among the words both models hold (a new word cannot be in
    the parent's list, so letting it into the candidate's would count an influx of new words as drift).
    The mean is corrected for chance: a random vector keeps ``topn / (words - 1)`` of a list by luck, which
    on a small vocabulary is more than any sensible threshold. 0 is what scrambled vectors keep, 1 is all.
    """
    overlap = _overlap(parent, candidate, config)
    return overlap.corrected, overlap.changed


@dataclass(frozen=True)
class _Overlap:
    corrected: float  # beyond chance: what the gate judges
    kept: float  # the plain share of neighbours kept, for the drift figures
    changed: list[dict[str, Any]]  # the words whose neighbourhoods changed most
    noise: float = 0.0  # the standard error of ``corrected`` over the probes: what another probe set would move
    chance_sd: float = 0.0  # the standard deviation of ``corrected`` for random vectors, around 0
    chance: float = 1.0  # the plain share a random vector keeps, topn / (shared words - 1)
    probes: int = 0

    def evidence(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "chance": round(self.chance, 6),
            "chance_sd": round(self.chance_sd, 6),
            "noise": round(self.noise, 6),
            "probes": self.probes,
        }


def _overlap(parent: Baseline | Any, candidate: Any, config: GateConfig, pairs: Any = None) -> _Overlap:
    before = parent if isinstance(parent, Baseline) else baseline(parent, config, {})
    parent_rows, candidate_rows = pairs or shared_rows(before.words, candidate)
    if before.pool is not None:  # the words both hold, within the parent's rows searched
        parent_rows, candidate_rows = _within(before.pool, len(before.words), parent_rows, candidate_rows)
    shared = len(np.arange(len(before.words))[parent_rows])
    k = min(config.topn, shared - 1)
    if k < 1:
        return _Overlap(1.0, 1.0, [])
    held = candidate.key_to_index
    probes = [(w, deep) for w, deep in zip(before.probes, before.neighbours, strict=True) if w in held]
    if not probes:
        return _Overlap(1.0, 1.0, [])
    rows: list[dict[str, Any]] = []
    lengths: list[int] = []
    found = nearest(candidate, [w for w, _ in probes], k, among=candidate_rows)
    for (word, deep), after in zip(probes, found, strict=True):
        kept = [w for w in deep if w in held][:k]  # the parent's nearest among the words both hold
        if not kept:  # every word of its list is gone: nothing to compare
            continue
        # the parent's list is short only when pruning took more than its depth's spare words: its words
        # are then the head of the parent's top k among the shared words, and are compared as such
        share = len(set(kept) & set(after)) / len(kept)
        rows.append({"word": word, "overlap": share, "before": kept[:5], "after": after[:5]})
        lengths.append(len(kept))
    if not rows:
        return _Overlap(1.0, 1.0, [])
    chance = k / (shared - 1)
    shares = np.array([r["overlap"] for r in rows])
    mean = float(shares.mean())
    changed = sorted(rows, key=lambda r: (r["overlap"], r["word"]))[:10]
    if chance >= 1:  # every shared word is in every list: nothing to tell apart
        return _Overlap(1.0, round(mean, 4), changed, chance=1.0, probes=len(rows))
    corrected = max(0.0, (mean - chance) / (1 - chance))
    # a probe keeps a list of L words by chance as a hypergeometric draw: variance about c(1 - c)/L
    chance_sd = math.sqrt(chance * (1 - chance) / float(np.mean(lengths)) / len(rows)) / (1 - chance)
    noise = float(shares.std(ddof=1)) / math.sqrt(len(rows)) / (1 - chance) if len(rows) > 1 else chance_sd
    return _Overlap(round(corrected, 4), round(mean, 4), changed, noise, chance_sd, chance, len(rows))


def _within(pool: np.ndarray, words: int, parent_rows: Any, candidate_rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of :func:`shared_rows` whose parent row is in ``pool`` (of a parent of ``words`` words)."""
    positions = np.arange(words)[parent_rows]
    searched = np.zeros(words, dtype=bool)
    searched[pool] = True
    keep = searched[positions]
    candidate = np.arange(candidate_rows.stop)[candidate_rows] if isinstance(candidate_rows, slice) else candidate_rows
    return positions[keep], candidate[keep]


def nearest(vectors: Any, words: list[str], topn: int, among: Any = None, chunk: int | None = None) -> list[list[str]]:
    """The ``topn`` nearest neighbours (cosine) of each word, searched among the rows ``among`` (a slice or
    an index array; default all), as ``most_similar`` ranks them (``restrict_vocab=n`` is ``among=slice(0, n)``)."""
    return [found for found, _ in nearest_scored(vectors, words, topn, among, chunk)]


def nearest_scored(
    vectors: Any, words: list[str], topn: int, among: Any = None, chunk: int | None = None
) -> list[tuple[list[str], list[float]]]:
    """:func:`nearest`, with each neighbour's cosine similarity.

    One pass over the rows searched for all the words at once: ``chunk`` of them at a time (by default as many
    as keep the similarities within 64 MiB) are multiplied with every word's vector in one float32 BLAS
    product, and each word's best ``topn`` so far are merged with the chunk's. Once a word has ``topn``, a
    chunk's similarities matter only where they beat its ``topn``-th best, and only those few are gathered and
    sorted (:func:`_merge_above`), so after the first chunk the pass costs about the product alone. Scattered
    rows (an index array ``among``) are gathered a chunk at a time, so the cost follows how many are searched,
    not the matrix. The raw vectors are multiplied and the products divided by the norms, as ``most_similar``
    computes them, so no normalized copy of the matrix is made, and ties go to the lower row, as a stable sort
    would have them.
    """
    matrix = vectors.vectors
    if among is None or (isinstance(among, slice) and among.step in (None, 1)):
        first, last, _ = (among or slice(None)).indices(len(matrix))
        pool = np.arange(first, max(first, last), dtype=np.int64)
        norms = fill_norms(vectors)

        def take(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            return matrix[first + a : first + b], norms[first + a : first + b]

        def norms_of(rows: np.ndarray, block: np.ndarray | None = None) -> np.ndarray:
            return norms[rows]
    else:  # scattered rows: each chunk of them gathered, in ascending order (ties go to the lower row)
        pool = np.unique(np.arange(len(matrix))[among])
        filled = vectors.norms if vectors.norms is not None and len(vectors.norms) == len(matrix) else None

        def norms_of(rows: np.ndarray, block: np.ndarray | None = None) -> np.ndarray:
            """Those rows' norms: gensim's values, computed row by row for the rows searched alone."""
            if filled is not None:
                return filled[rows]
            return np.linalg.norm(matrix[rows] if block is None else block, axis=1)

        def take(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            block = matrix[pool[a:b]]
            return block, norms_of(pool[a:b], block)

    k = min(topn, len(pool) - 1)
    rows = np.array([vectors.key_to_index[w] for w in words], dtype=np.int64)
    if k < 1 or len(rows) == 0:
        return [([], []) for _ in words]
    chunk = chunk or max(_MIN_CHUNK, _BLOCK_BYTES // (4 * len(rows)))
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero vector has no direction, as in gensim
        queries = matrix[rows] / norms_of(rows)[:, None]
    best = np.zeros((len(rows), 0), dtype=np.float32)
    columns = np.zeros((len(rows), 0), dtype=np.int64)  # positions in ``pool``
    everyone = np.arange(len(rows))
    for start in range(0, len(pool), chunk):
        stop = min(start + chunk, len(pool))
        block, block_norms = take(start, stop)
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = queries @ block.T
            sims /= block_norms[None, :]
        at = np.searchsorted(pool[start:stop], rows)  # a word is not its own neighbour
        mine = at < stop - start
        mine[mine] = pool[start + at[mine]] == rows[mine]
        sims[everyone[mine], at[mine]] = -np.inf
        if best.shape[1] == k and np.isfinite(best[:, -1]).all():
            _merge_above(best, columns, sims, start)
            continue
        top = top_k(sims, min(k, stop - start))
        values = np.concatenate([best, np.take_along_axis(sims, top, axis=1)], axis=1)
        found = np.concatenate([columns, top + start], axis=1)
        order = np.lexsort((found, -values), axis=1)[:, :k]  # by value descending, then the lower row
        best, columns = np.take_along_axis(values, order, axis=1), np.take_along_axis(found, order, axis=1)
    return [
        ([vectors.index_to_key[j] for j in pool[row]], [float(x) for x in scores])
        for row, scores in zip(columns, best, strict=True)
    ]


def _merge_above(best: np.ndarray, columns: np.ndarray, sims: np.ndarray, start: int) -> None:
    """Merge into each row's ``k`` best (``best``, ``columns``, in place) the similarities of a later chunk
    that beat its ``k``-th best. Strictly beat: an equal value comes from a higher row, which ranks after
    (NaN beats nothing)."""
    k = best.shape[1]
    flat = np.flatnonzero(sims > best[:, -1:])  # 1-D: several times faster than a 2-D nonzero
    if not len(flat):
        return
    row, column = np.divmod(flat, sims.shape[1])
    hit = np.unique(row)  # the rows that change; each keeps k old values and gains at least one
    all_rows = np.concatenate([np.repeat(hit, k), row])
    all_values = np.concatenate([best[hit].ravel(), sims[row, column]])
    all_columns = np.concatenate([columns[hit].ravel(), column + start])
    order = np.lexsort((all_columns, -all_values, all_rows))  # by row, value descending, then the lower row
    first = np.searchsorted(all_rows[order], hit)
    take = order[first[:, None] + np.arange(k)[None, :]]
    best[hit], columns[hit] = all_values[take], all_columns[take]


def fill_norms(vectors: Any, block: int = 65_536, force: bool = False) -> np.ndarray:
    """gensim's ``fill_norms()``, the same values, computed a block of rows at a time: gensim's
    ``np.linalg.norm(vectors, axis=1)`` squares the whole matrix into a temporary as large as the matrix.
    ``force`` recomputes norms that are present (vectors changed in place keep gensim's stale ones)."""
    if force or vectors.norms is None or len(vectors.norms) != len(vectors.vectors):
        matrix = vectors.vectors
        norms = np.empty(len(matrix), dtype=matrix.dtype)
        for start in range(0, len(matrix), block):
            norms[start : start + block] = np.linalg.norm(matrix[start : start + block], axis=1)
        vectors.norms = norms
    return vectors.norms


def top_k(sims: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """The columns of each row's ``k`` largest values, largest first (ties: the lower column first).

    Rather than ``argpartition`` over every value (an index per value), a lower bound of each row's k-th
    largest value comes from the maxima of ``chunk``-wide slices (at least k values reach the k-th largest
    maximum), and only the few values above it are sorted: about ten times faster on a vocabulary-wide row.
    """
    rows, width = sims.shape
    k = max(0, min(k, width))
    slices = width // chunk
    if slices >= k > 0:
        maxima = np.maximum.reduceat(sims, np.arange(0, slices * chunk, chunk), axis=1)  # the last takes the tail
        bound = np.partition(maxima, slices - k, axis=1)[:, slices - k]
        # only the slices whose maximum reaches the bound can hold a value that does: gather those alone
        reaching, piece = np.nonzero(maxima >= bound[:, None])
        row, column = _columns(reaching, piece, slices, chunk, width)
        value = sims[row, column]
        keep = value >= bound[row]
        row, column, value = row[keep], column[keep], value[keep]
    if k == 0 or slices < k or np.bincount(row, minlength=rows).min() < k:  # small rows, or NaN in a row
        return np.argsort(-sims, axis=1, kind="stable")[:, :k].astype(np.int64)
    order = np.lexsort((column, -value, row))  # by row, then value descending, then column
    row, column = row[order], column[order]
    first = np.searchsorted(row, np.arange(rows))
    return column[first[:, None] + np.arange(k)[None, :]]


def _columns(row: np.ndarray, piece: np.ndarray, slices: int, chunk: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, column) of the given (row, slice) pairs; the last slice runs to the end of the row."""
    start = piece * chunk
    lengths = np.where(piece == slices - 1, width, start + chunk) - start
    offsets = np.cumsum(lengths) - lengths
    column = np.arange(int(lengths.sum())) + np.repeat(start - offsets, lengths)
    return np.repeat(row, lengths), column


def neighbours(vectors: Any, words: list[str], topn: int = 5) -> dict[str, list[tuple[str, float]]]:
    """Each word's ``topn`` nearest neighbours with their cosine similarity (rounded), for the report."""
    known = [w for w in words if w in vectors.key_to_index]
    return {
        word: [(w, round(x, 4)) for w, x in zip(found, scores, strict=True)]
        for word, (found, scores) in zip(known, nearest_scored(vectors, known, topn), strict=True)
    }


def _similarity(vectors: Any, path: Path) -> float | None:
    _, spearman, _ = vectors.evaluate_word_pairs(str(path), dummy4unknown=False)
    value = float(spearman[0]) if hasattr(spearman, "__getitem__") else float(spearman.correlation)
    return None if math.isnan(value) else round(value, 4)


def _analogy(vectors: Any, path: Path) -> float | None:
    score, sections = vectors.evaluate_word_analogies(str(path))
    attempted = sum(len(s["correct"]) + len(s["incorrect"]) for s in sections if s["section"] == "Total accuracy")
    return round(float(score), 4) if attempted else None


@contextmanager
def _files(config: GateConfig, files: dict[str, bytes]) -> Iterator[list[tuple[str, Scorer, Path]]]:
    """Each evaluation file as (name, scoring function, path of a temporary copy on this node)."""
    with tempfile.TemporaryDirectory(prefix="embedding-eval-") as tmp:
        out: list[tuple[str, Scorer, Path]] = []
        scorers: tuple[tuple[tuple[str, ...], Scorer], ...] = (
            (config.similarity_files, _similarity),
            (config.analogy_files, _analogy),
        )
        for names, score in scorers:
            for name in names:
                path = Path(tmp) / Path(name).name
                path.write_bytes(files[name])
                out.append((name, score, path))
        yield out


def evaluate(
    parent: Baseline | Any | None,
    candidate: Any,
    config: GateConfig,
    files: dict[str, bytes],
    pairs: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Measure the candidate against the parent (its :func:`baseline`, or its vectors; None for a first model)
    and decide whether the gate passes (:mod:`jobs.training.gate`). Decides nothing else.

    Returns ``passed``, ``reasons`` (one per failed check), ``checks`` (each with its value, threshold or
    band, and why), ``changed`` (the probe words whose neighbourhoods changed most) and ``neighbours_kept``
    (the plain share, for the drift figures). Vectors that are not finite fail at once and skip the
    neighbour search, whose ranks they would make meaningless. ``pairs`` pairs the parent's rows with the
    candidate's rows of the same words, as :func:`shared_rows` would, when the caller knows them."""
    before = parent if parent is None or isinstance(parent, Baseline) else baseline(parent, config, files)
    bad, example = non_finite(candidate)
    result: dict[str, Any] = {"changed": [], "neighbours_kept": 1.0}
    checks = []
    if before is not None:
        untrained = gate.untrained(parent_norm(before), candidate.vector_size, config)
        if bad:
            checks.append(gate.skipped_overlap(before.history, "the candidate holds non-finite vectors"))
        else:
            measured = _overlap(before, candidate, config, pairs)
            result["changed"], result["neighbours_kept"] = measured.changed, measured.kept
            evidence = measured.evidence()
            checks.append(gate.overlap_check(measured.corrected, evidence, before.history, config, untrained))
        frequent = compare_frequent(before, candidate)
        checks.append(gate.norm_check(frequent.norm_ratio, frequent.words, config, untrained))
        cosines = (frequent.parent_cosine, frequent.cosine)
        checks.append(gate.collapse_check(*cosines, frequent.words, config, untrained))
    checks.append(gate.finite_check(bad, len(candidate.vectors), example))
    with _files(config, files) as scored:
        for name, score, path in scored:
            kind = "similarity" if score is _similarity else "analogy"
            was = before.scores.get(name) if before is not None else None
            checks.append(gate.score_check(kind, Path(name).name, was, score(candidate, path), config))
    result["passed"], result["reasons"] = gate.verdict(checks)
    result["checks"] = checks
    return result


def parent_norm(before: Baseline) -> float | None:
    """The median norm of the parent's most frequent words (None: it has none), to tell whether it trained."""
    if before.frequent_vectors is None or not len(before.frequent_vectors):
        return None
    norms = np.linalg.norm(before.frequent_vectors.astype(np.float64), axis=1)
    finite = norms[np.isfinite(norms)]
    return float(np.median(finite)) if len(finite) else None


def non_finite(vectors: Any) -> tuple[int, str | None]:
    """How many of the vectors hold NaN or ±inf, and the first such word; the norms are computed afresh
    (and kept for the neighbour search), a NaN or an infinity making a row's norm one too."""
    norms = fill_norms(vectors, force=True)
    bad = ~np.isfinite(norms)
    count = int(np.count_nonzero(bad))
    return count, (vectors.index_to_key[int(np.argmax(bad))] if count else None)


@dataclass(frozen=True)
class Frequent:
    """The parent's most frequent words that the update moved, compared in both versions (those the candidate
    holds, with finite, non-zero norms in both, and a vector that changed: a word the update did not touch
    says nothing about it, and in a lineage whose topics come and go that is most of them)."""

    words: int
    norm_ratio: float | None  # the median of each word's norm in the candidate over its norm in the parent
    parent_cosine: float | None  # mean pairwise cosine among them, in the parent
    cosine: float | None  # and in the candidate


def compare_frequent(before: Baseline, candidate: Any) -> Frequent:
    """Norms and directions of the parent's :data:`FREQUENT` most frequent words that the update moved, in
    both versions: the words updates train most, so what a broken update does shows there first."""
    held = candidate.key_to_index
    present = [i for i, w in enumerate(before.frequent) if w in held]
    if before.frequent_vectors is None or not present:
        return Frequent(0, None, None, None)
    old = before.frequent_vectors[present]
    new = np.asarray(candidate.vectors[[held[before.frequent[i]] for i in present]])
    moved = ~(old == new).all(axis=1)
    old, new = old[moved].astype(np.float64), new[moved].astype(np.float64)
    old_norms, new_norms = np.linalg.norm(old, axis=1), np.linalg.norm(new, axis=1)
    usable = np.isfinite(old_norms) & np.isfinite(new_norms) & (old_norms > 0)  # a zeroed vector: ratio 0
    words = int(np.count_nonzero(usable))
    if not words:
        return Frequent(0, None, None, None)
    ratio = float(np.median(new_norms[usable] / old_norms[usable]))
    directed = usable & (new_norms > 0)  # a zero vector has no direction
    return Frequent(
        words,
        ratio,
        mean_cosine(old[directed] / old_norms[directed, None]),
        mean_cosine(new[directed] / new_norms[directed, None]),
    )


def mean_cosine(unit: np.ndarray) -> float | None:
    """The mean cosine over all pairs of distinct rows of ``unit`` (unit vectors): from their sum, since
    ``|sum|^2`` is the sum of every pair's cosine, each row's with itself included."""
    n = len(unit)
    if n < 2:
        return None
    total = unit.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


@dataclass(frozen=True)
class Evaluated:
    """The trainer's evaluate stage's findings (:func:`evaluate_candidate`)."""

    evaluation: dict[str, Any]  # :func:`evaluate`'s
    drift: dict[str, Any]  # :func:`jobs.training.drift.figures`; empty for a new model
    new_words: list[str]  # most frequent in this run first
    neighbours: dict[str, list[tuple[str, float]]]  # of the 20 most frequent new words
    shared: Shared | None = None  # each shared word's distance, which the diff takes; None for a new model


def evaluate_candidate(
    before: Baseline | None,
    candidate: Any,
    config: GateConfig,
    files: dict[str, bytes],
    *,
    parent_vectors: Path | None,
    parent_rows: np.ndarray,
    frozen: bool,
    new_words: list[str],
    counts: dict[str, int],
) -> Evaluated:
    """The trainer's evaluate stage: the gate's measurements (:func:`evaluate`), how far the parent's words
    moved (read in blocks from its saved ``parent_vectors``; the candidate's first ``len(parent_rows)`` words
    are the parent's rows ``parent_rows``), and the neighbours of the new words this run saw most (``counts``).
    Raises TrainingError when ``frozen`` words moved (:func:`jobs.training.freeze.check`)."""
    # the trainer's own steps after training, imported when it trains (see trainer._TRAINING_MODULES)
    from jobs.training import drift, freeze

    # the candidate's first rows are the parent's rows ``parent_rows``: no need to match the vocabularies again
    evaluation = evaluate(before, candidate, config, files, (parent_rows, slice(0, len(parent_rows))))
    shared = drift.compare(parent_vectors, candidate, parent_rows) if parent_vectors else None
    moved = drift.figures(shared, evaluation["neighbours_kept"]) if shared is not None else {}
    if frozen:
        freeze.check(moved, len(parent_rows))
    ranked = sorted(new_words, key=lambda w: -counts[w])
    return Evaluated(evaluation, moved, ranked, neighbours(candidate, ranked[:20]), shared)
