"""The quality gate's thresholds and evaluation files (:class:`GateConfig`), used by :mod:`jobs.training.gate`;
each field declared with its flag and help (:func:`shards.options.option`)."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.errors import ConfigError
from shards.options import option


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the quality gate (:mod:`jobs.training.gate`), and the evaluation files it scores
    (``similarity_files``: word-pair similarities, ``analogy_files``: analogies).

    The neighbourhood check is judged against the lineage's own history: the overlaps of its last ``history``
    versions (a band ``sigmas`` robust standard deviations wide, never above ``keep`` times their median), and
    against what chance alone reaches in this run. ``min_overlap`` is an absolute floor on top of that, off
    unless given. The other checks need no history: non-finite values, the frequent words' norms against the
    parent's (``max_norm_ratio``), their spread of directions against the parent's (``min_spread``), and the
    evaluation files' scores (``max_drop``). A parent that has barely left its initial values (``trained_norm``)
    is no reference for the checks against it. ``probe_words`` frequent words are probed, each for its ``topn``
    nearest neighbours among the ``search_words`` most frequent words.
    """

    # None: the lineage's band and chance decide
    min_overlap: float | None = option(
        None,
        "an absolute floor on the share of nearest neighbours of frequent old words the candidate keeps, beyond "
        "chance, on top of the lineage's own band (default: none; before the band existed it was 0.1)",
        flag="--gate-min-overlap",
    )
    max_drop: float = option(
        0.05, "largest allowed drop of a similarity or analogy score against the parent", flag="--gate-max-drop"
    )
    probe_words: int = option(
        200, "frequent words whose nearest neighbours the gate compares", flag="--gate-probe-words", metavar="N"
    )
    topn: int = option(10, "nearest neighbours compared of each probed word", flag="--gate-topn", metavar="N")
    # what most_similar(restrict_vocab=N) searches: the cost follows N, not the vocabulary
    search_words: int = option(
        100_000,
        "the probed words' neighbours are searched among the parent's N most frequent words (all of a smaller "
        "vocabulary)",
        flag="--gate-search-words",
        metavar="N",
    )
    history: int = option(
        10,
        "versions of the lineage's overlap history the band is drawn from; a lineage with fewer is young and its "
        "floor looser",
        flag="--gate-history",
        metavar="K",
    )
    keep: float = option(
        0.5,
        "the neighbourhood overlap may fall to this share of the lineage's median before the gate fails",
        flag="--gate-keep",
    )
    # robust standard deviations (of the history, of this run's noise and of chance)
    sigmas: float = option(
        4.0,
        "width of the lineage's band and of the chance floor, in robust standard deviations",
        flag="--gate-sigmas",
    )
    # the moved frequent words' median norm may grow or shrink at most this many times
    max_norm_ratio: float = option(
        10.0,
        "the frequent words' median vector norm may grow or shrink at most this many times against the parent",
        flag="--gate-max-norm-ratio",
    )
    min_spread: float = option(
        0.1,
        "fail as collapsed when the frequent words' spread of directions (1 - mean pairwise cosine) falls under "
        "this share of the parent's",
        flag="--gate-min-spread",
    )
    # gensim's initial norm is 1/sqrt(3 dims); a parent below this many times it has barely trained
    trained_norm: float = option(
        4.0,
        "a parent whose frequent words' median norm is under this many times gensim's initial norm has barely "
        "trained: no reference for the checks against it",
        flag="--gate-trained-norm",
    )
    force: bool = option(False, "promote the candidate even if the gate fails")
    similarity_files: tuple[str, ...] = option(
        (), "word-pair similarity file (WordSim-353 format); repeatable", flag="--eval-similarity", metavar="TSV"
    )
    analogy_files: tuple[str, ...] = option(
        (), "analogy file (questions-words.txt format); repeatable", flag="--eval-analogies", metavar="TXT"
    )

    def __post_init__(self) -> None:
        if self.min_overlap is not None and not 0 <= self.min_overlap <= 1:
            raise ConfigError(f"--gate-min-overlap must be between 0 and 1, got {self.min_overlap}")
        if self.max_drop < 0:
            raise ConfigError(f"--gate-max-drop must not be negative, got {self.max_drop}")
        if self.history < 1:
            raise ConfigError(f"--gate-history must be at least 1, got {self.history}")
        if not 0 < self.keep <= 1:
            raise ConfigError(f"--gate-keep must be in (0, 1], got {self.keep}")
        if self.sigmas <= 0:
            raise ConfigError(f"--gate-sigmas must be positive, got {self.sigmas}")
        if self.max_norm_ratio <= 1:
            raise ConfigError(f"--gate-max-norm-ratio must be above 1, got {self.max_norm_ratio}")
        if not 0 <= self.min_spread < 1:
            raise ConfigError(f"--gate-min-spread must be in [0, 1), got {self.min_spread}")
        if self.trained_norm < 0:
            raise ConfigError(f"the gate's trained_norm must not be negative, got {self.trained_norm}")
        if self.probe_words < 1 or self.topn < 1:
            raise ConfigError(f"the gate needs probe_words and topn of at least 1, got {self.probe_words}, {self.topn}")
        if self.search_words <= self.topn:
            raise ConfigError(f"--gate-search-words must be above --gate-topn ({self.topn}), got {self.search_words}")
