"""Vocabulary upkeep: one refresh's vocabulary step for a lineage that runs for years: decay, grow, then cap.

:func:`decay_grow_cap` is what the trainer calls instead of growing the vocabulary alone, with the lineage's
:class:`~jobs.config.UpkeepConfig` (recorded as the manifest's ``lifecycle`` section, a name kept for stored
versions):

1. with ``--count-half-life``, the remembered counts of words under ``min_count`` and (with a cap, the only
   user of it) the standing of the model's words are multiplied by ``0.5 ** (1 / half_life)`` (see
   :mod:`jobs.lineage.standing`);
2. the vocabulary grows from this run's counts (:func:`jobs.training.model.grow_vocabulary`), and the words
   still under ``min_count`` are remembered;
3. with ``--max-vocab N``, when the model holds more than N words, those with the least standing (ties: the
   newest first) are removed from the model (:mod:`jobs.training.prune`) and go back to the remembered
   counts with their standing, so a word that returns can enter again.

Down-sampling and the negative-sampling table follow the model's lifetime counts, which decay never
changes: they stay what gensim would compute for a model built from scratch with the same counts. Decay only
decides which words are kept and which remembered words enter.

    >>> step = decay_grow_cap(model, counts, sentences, pending, standing, training, upkeep)  # doctest: +SKIP
    >>> step.removed, step.known                                   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, cast

import numpy as np

from jobs.config import TrainingConfig, UpkeepConfig
from jobs.lineage.counts import below_min_count, capped
from jobs.training import model as gmodel
from jobs.training import prune

log = logging.getLogger(__name__)

REPORTED_REMOVED = 20  # the most frequent removed words listed in the report


@dataclass(frozen=True)
class Step:
    """What one refresh did to the vocabulary."""

    change: gmodel.VocabularyChange  # ``after`` and ``new_words`` as they are after pruning
    pending: dict[str, float]  # the remembered counts to store with the version
    standing: np.ndarray  # aligned with the model's index (after pruning)
    parent_rows: np.ndarray  # the parent's rows of the model's first ``known`` words
    removed: int = 0
    most_frequent_removed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def known(self) -> int:
        """How many words at the front of the model the parent already had."""
        return len(self.parent_rows)


def decay_grow_cap(
    model: Any,
    counts: dict[str, int],
    sentences: int,
    pending: dict[str, float],
    standing: np.ndarray | None,
    training: TrainingConfig,
    upkeep: UpkeepConfig,
) -> Step:
    """Decay, grow and cap the vocabulary of ``model`` for one refresh. ``standing`` is the parent's (aligned
    with its index), or None for the lifetime counts."""
    decay = upkeep.decay
    remember = training.vocab_policy == "remember"
    before = len(model.wv)
    if decay != 1.0:
        pending = {w: c * decay for w, c in pending.items()}
    # undecayed, the remembered counts are the integers they were stored as
    offered = {w: round(c) for w, c in pending.items()} if decay != 1.0 else cast("dict[str, int]", pending)
    change = gmodel.grow_vocabulary(model, counts, sentences, offered if remember else None)
    rows = change.rows_of(model.wv, counts)  # each counted word's row, or -1: looked up once, for every step
    remembered = below_min_count(model, counts, pending, training.pending_cap, rows) if remember else {}
    lifetime = np.asarray(model.wv.expandos["count"], dtype=np.float64)
    current = _decayed(model, counts, rows, before, standing, decay) if upkeep.keeps_standing else lifetime

    if not upkeep.max_vocab or len(model.wv) <= upkeep.max_vocab:
        return Step(dataclasses.replace(change, rows=rows), remembered, current, np.arange(before))
    excess = len(model.wv) - upkeep.max_vocab
    order = np.lexsort((-np.arange(len(current)), current))  # least standing first; among ties the newest
    keep = np.ones(len(current), dtype=bool)
    keep[order[:excess]] = False
    gone_counts, gone_standing = lifetime[~keep], current[~keep]
    gone = prune.remove(model, keep)
    if remember:
        values = gone_standing.tolist() if decay != 1.0 else gone_counts.astype(np.int64).tolist()
        remembered = capped({**remembered, **dict(zip(gone, values, strict=True))}, training.pending_cap)
    top = np.argsort(-gone_counts, kind="stable")[:REPORTED_REMOVED]
    log.info("pruned %d words to keep the vocabulary at %d (--max-vocab)", len(gone), upkeep.max_vocab)
    return Step(
        change=gmodel.VocabularyChange(
            before=change.before,
            after=len(model.wv),
            new_words=list(compress(change.new_words, keep[before:])),
        ),
        pending=remembered,
        standing=current[keep],
        parent_rows=np.flatnonzero(keep[:before]),
        removed=len(gone),
        most_frequent_removed=[
            {"word": gone[i], "count": int(gone_counts[i]), "standing": round(float(gone_standing[i]), 3)} for i in top
        ],
    )


def _decayed(
    model: Any, counts: dict[str, int], rows: np.ndarray, before: int, standing: np.ndarray | None, decay: float
) -> np.ndarray:
    """The standing after this run: the parent's, decayed, plus this run's counts (``rows``: theirs, -1 for a
    word not in the vocabulary); a new word starts at its count (this run's plus what was remembered of it)."""
    lifetime = np.asarray(model.wv.expandos["count"], dtype=np.float64)
    fresh = np.zeros(len(lifetime))
    found = rows >= 0
    fresh[rows[found]] = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))[found]
    base = standing if standing is not None and len(standing) == before else lifetime[:before] - fresh[:before]
    return np.concatenate([base * decay + fresh[:before], lifetime[before:]])
