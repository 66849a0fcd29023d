"""What trains a lineage: gensim's hyper-parameters (:class:`TrainingConfig`), how a long-lived lineage treats
its vocabulary (:class:`UpkeepConfig`), and which of these settings define the lineage.

Each field is declared with :func:`shards.options.option`, which gives its default, flag, help text and help
section at once; the command line (:mod:`jobs.config.flags`) and the config file (:mod:`jobs.config.file`)
are generated from those declarations, and ``__post_init__`` validates whichever way a config was built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from jobs.errors import ConfigError
from shards.options import option

ModelKind = Literal["word2vec", "fasttext"]


@dataclass(frozen=True)
class TrainingConfig:
    """gensim hyper-parameters. Architecture fields apply when a model is created; an update keeps the
    loaded model's architecture and uses this run's epochs and learning rates."""

    model: ModelKind = option("word2vec", "for a new model")
    vector_size: int = option(100, "dimensions of a new model's vectors")
    window: int = option(5, "largest distance between a word and a context word")
    min_count: int = option(5, "words seen fewer times are left out of the vocabulary")
    sg: bool = option(False, "skip-gram instead of CBOW")
    negative: int = option(5, "negative samples (hierarchical softmax is not used)")
    sample: float = option(1e-3, "down-sampling threshold")
    epochs: int = option(5, "passes over this run's corpus")
    alpha: float = option(0.025, "starting learning rate of a new model")
    # None: updates start at alpha, as new models do (README)
    update_alpha: float | None = option(
        None, "starting learning rate of an update (default: --alpha, as gensim does; see README)"
    )
    min_alpha: float = option(0.0001, "learning rate at the end of a run")
    # None: the CPUs of the training actor's node, resolved there
    workers: int | None = option(
        None,
        "training threads, and CPUs the training actor reserves (default: the CPUs of its node)",
        group="ray",
    )
    seed: int = option(1, "random seed of a new model's initial vectors")
    min_n: int = option(3, "FastText: shortest character n-gram")
    max_n: int = option(6, "FastText: longest character n-gram")
    bucket: int = option(2_000_000, "FastText: n-gram hash buckets")
    vocab_policy: Literal["remember", "gensim"] = option(
        "remember",
        "remember: counts of words below --min-count accumulate across runs until they qualify, and "
        "down-sampling uses cumulative counts; gensim: judge each run's counts alone",
    )
    pending_cap: int = option(1_000_000, "how many below-min-count words to remember (the rarest are pruned)")
    replay_fraction: float = option(
        0.0, "mix this many old sentences per new one into an update, from a stored reservoir"
    )
    replay_max_sentences: int = option(100_000, "size of the replay reservoir")

    def __post_init__(self) -> None:
        if not 0 <= self.replay_fraction <= 10:
            raise ConfigError(f"--replay-fraction must be between 0 and 10, got {self.replay_fraction}")
        if self.replay_max_sentences < 1:
            raise ConfigError(f"--replay-max-sentences must be at least 1, got {self.replay_max_sentences}")
        if self.vocab_policy not in ("remember", "gensim"):
            raise ConfigError(f"--vocab-policy must be remember or gensim, got {self.vocab_policy!r}")
        if self.pending_cap < 0:
            raise ConfigError(f"--pending-cap must not be negative, got {self.pending_cap}")
        if self.model not in ("word2vec", "fasttext"):
            raise ConfigError(f"--model must be word2vec or fasttext, got {self.model!r}")
        for name in ("vector_size", "window", "min_count", "epochs", "workers", "negative"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.min_alpha <= min(self.alpha, self.update_alpha or self.alpha):
            raise ConfigError(
                f"need 0 < --min-alpha ({self.min_alpha}) <= --alpha ({self.alpha}) and --update-alpha "
                f"({self.update_alpha or self.alpha})"
            )
        if self.model == "fasttext" and not 0 < self.min_n <= self.max_n:
            raise ConfigError(f"need 0 < --min-n ({self.min_n}) <= --max-n ({self.max_n})")

    def learning_rate(self, update: bool) -> dict[str, Any]:
        """The run's learning-rate schedule: where it starts, where it ends, and why it starts there."""
        if update and self.update_alpha is not None:
            return {"start": self.update_alpha, "end": self.min_alpha, "source": "--update-alpha"}
        return {"start": self.alpha, "end": self.min_alpha, "source": "--alpha"}


@dataclass(frozen=True)
class UpkeepConfig:
    """How a long-lived lineage keeps its vocabulary in shape from version to version: a cap, forgetting,
    frozen known words and alignment (:mod:`jobs.training.upkeep`, :mod:`jobs.training.freeze`,
    :mod:`jobs.training.align`).

    Stored and user-facing names keep the older word "lifecycle": the ``[lifecycle]`` config file section and
    the ``lifecycle`` record of ``config.json`` and of every manifest (the RefreshConfig field holding this),
    so versions published before are read unchanged.

    ``None`` means "as the lineage says": a refresh keeps the settings recorded in its parent's manifest
    (:meth:`inherit`), and a new lineage starts from :data:`NEW_LINEAGE`. A flag that is given wins, and a
    change against the parent is logged.
    """

    max_vocab: int | None = option(
        None, "after each update, remove the words with the least standing beyond N (0: no cap)", metavar="N"
    )
    count_half_life: float | None = option(
        None, "standing and remembered counts halve over this many refreshes (0: no decay)", metavar="REFRESHES"
    )
    freeze_known_words: bool | None = option(
        None, "keep the vectors of words the parent has bit for bit; only new words learn"
    )
    # each version rotated onto its parent's coordinates (jobs.training.align)
    align: bool | None = option(
        None,
        "rotate each new version onto its parent's coordinates (similarities unchanged; the lineage's; new: off)",
    )

    def __post_init__(self) -> None:
        if self.max_vocab is not None and self.max_vocab < 0:
            raise ConfigError(f"--max-vocab must not be negative (0: no cap), got {self.max_vocab}")
        if self.count_half_life is not None and self.count_half_life < 0:
            raise ConfigError(f"--count-half-life must not be negative (0: no decay), got {self.count_half_life}")
        if self.freeze_known_words and self.align:
            # the rotation would move the frozen vectors, which must stay bit for bit: neither can win silently
            raise ConfigError(
                "--align and --freeze-known-words cannot both be on: frozen known words already keep their "
                "coordinates, and rotating the model would move them; turn one off (--no-align or "
                "--no-freeze-known-words)"
            )

    def inherit(self, recorded: dict[str, Any] | None) -> tuple[UpkeepConfig, list[str]]:
        """These settings completed from the parent's ``recorded`` ones (else :data:`NEW_LINEAGE`), and a line
        for each given flag that changes what the parent recorded."""
        resolved, changes = {}, []
        for f in dataclasses.fields(self):
            given, before = getattr(self, f.name), (recorded or {}).get(f.name)
            fallback = getattr(NEW_LINEAGE, f.name) if before is None else before
            resolved[f.name] = fallback if given is None else given
            if recorded is not None and given is not None and before is not None and given != before:
                changes.append(f"--{f.name.replace('_', '-')} changes from {before} (the parent's) to {given}")
        return UpkeepConfig(**resolved), changes

    @property
    def keeps_standing(self) -> bool:
        """Whether the words' decayed counts are kept: only pruning uses them, and only when counts decay."""
        return bool(self.max_vocab) and self.decay != 1.0

    @property
    def decay(self) -> float:
        """The factor every remembered count is multiplied by at each refresh (1.0: no decay)."""
        return 0.5 ** (1.0 / self.count_half_life) if self.count_half_life else 1.0


#: What defines a lineage besides its upkeep: recorded in every manifest (``lineage``) and inherited by
#: every update (:mod:`jobs.lineage.settings`). A flag given with another value than the lineage's is refused
#: unless ``--allow-setting-change NAME`` names it. The tokenizer's settings (a change splits the vocabulary:
#: old and new spellings of a word are counted apart) and the architecture that gensim applies to a loaded model
#: can change that way; the rest of the architecture is the model's matrices and needs a new lineage.
TOKENIZER_SETTINGS = ("lowercase", "deaccent", "token_pattern", "min_token_len", "max_token_len")
ADJUSTABLE_ARCHITECTURE = ("window", "sg", "negative", "sample", "min_count")
FIXED_ARCHITECTURE = ("model", "vector_size", "min_n", "max_n", "bucket")


# count_half_life: measured over a month of refreshes with churn (python -m tests.benchmarks.lifecycle, see the
# README): 180 kept more of the rarely used core words than lifetime counts, 7 and 30 kept fewer.
# align: off for new lineages. Over 30 daily updates of the drift benchmark's stream (python -m
# tests.benchmarks.align, docs/how-it-works.md) the rotation removed no drift: gensim's update keeps the output
# layer, which anchors the coordinates, so what moves is the words themselves, and a day-0 index lost recall.
NEW_LINEAGE = UpkeepConfig(max_vocab=0, count_half_life=180.0, freeze_known_words=False, align=False)
