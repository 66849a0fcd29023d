"""The config dataclasses: every setting once, with its default, its flag, its help text and its section.

Each field is declared with :func:`shards.options.option` (or :func:`~shards.options.derived`, for the few
that are no setting), and the command line (:mod:`jobs.config.flags`) and the config file
(:mod:`jobs.config.file`) are generated from those declarations. Validation lives in each dataclass's
``__post_init__``, so a config is checked the same way whichever way it was built.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jobs.errors import ConfigError
from shards.options import derived, option
from shards.partitions import Readiness
from shards.s3settings import parse_size
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions

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
    epochs: int = option(5, "passes over the run's new sentences")
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
class LifecycleConfig:
    """How a long-lived lineage treats its vocabulary: a cap, forgetting, and frozen coordinates.

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

    def inherit(self, recorded: dict[str, Any] | None) -> tuple[LifecycleConfig, list[str]]:
        """These settings completed from the parent's ``recorded`` ones (else :data:`NEW_LINEAGE`), and a line
        for each given flag that changes what the parent recorded."""
        resolved, changes = {}, []
        for f in dataclasses.fields(self):
            given, before = getattr(self, f.name), (recorded or {}).get(f.name)
            fallback = getattr(NEW_LINEAGE, f.name) if before is None else before
            resolved[f.name] = fallback if given is None else given
            if recorded is not None and given is not None and before is not None and given != before:
                changes.append(f"--{f.name.replace('_', '-')} changes from {before} (the parent's) to {given}")
        return LifecycleConfig(**resolved), changes

    @property
    def keeps_standing(self) -> bool:
        """Whether the words' decayed counts are kept: only pruning uses them, and only when counts decay."""
        return bool(self.max_vocab) and self.decay != 1.0

    @property
    def decay(self) -> float:
        """The factor every remembered count is multiplied by at each refresh (1.0: no decay)."""
        return 0.5 ** (1.0 / self.count_half_life) if self.count_half_life else 1.0


#: What defines a lineage besides its lifecycle: recorded in every manifest (``lineage``) and inherited by
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
NEW_LINEAGE = LifecycleConfig(max_vocab=0, count_half_life=180.0, freeze_known_words=False, align=False)


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
    nearest neighbours.
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


SIGNING_KEY_ENV = "EMBEDDING_REFRESH_SIGNING_KEY"  # the FILE holding the private key, never the key
TRUSTED_KEYS_ENV = "EMBEDDING_REFRESH_TRUSTED_KEYS"  # public key FILES, separated like PATH (os.pathsep)


@dataclass(frozen=True)
class SigningConfig:
    """Signed versions (docs/signing.md): the FILE holding the key that signs what this process writes, the
    files of the public keys it trusts (none: nothing is verified), whether a pointer older than one already
    seen is accepted, and where the newest pointer seen of each store is remembered (None: the cache's)."""

    signing_key: str | None = option(
        None,
        "sign each manifest and pointer written with the Ed25519 private key in FILE (default: the file "
        f"${SIGNING_KEY_ENV} names)",
        metavar="FILE",
    )
    trusted_keys: tuple[str, ...] = option(
        (),
        "read only manifests and pointers signed by a public key in FILE; repeatable (default: the files "
        f"${TRUSTED_KEYS_ENV} names, separated by '{os.pathsep}'; none: nothing is verified)",
        flag="--trusted-key",
        metavar="FILE",
    )
    allow_rollback: bool = option(
        False, "accept a pointer older than one this host has already seen (a store restored on purpose)"
    )
    seen_dir: str | None = option(
        None,
        "where the newest pointer seen of each store is remembered (default: seen/ in the reader's cache)",
        metavar="DIR",
    )

    def __post_init__(self) -> None:
        if self.signing_key == "":
            raise ConfigError("--signing-key names a file; got an empty path")


def trusted_keys_from(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The trusted key files :data:`TRUSTED_KEYS_ENV` names."""
    return tuple(path for path in environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if path)


LOG_FORMATS: tuple[str, ...] = ("text", "json")
INPUT_FORMATS: tuple[str, ...] = ("auto", "parquet", "jsonl", "text", "delta", "iceberg")


def _size(text: str) -> int:
    return parse_size(text, "size")


def _setting(text: str) -> str:
    """A lineage setting's name as its field is spelled: ``token-pattern`` or ``--no-lowercase`` alike."""
    name = text.strip().lstrip("-").replace("-", "_")
    return name.removeprefix("no_")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--where takes KEY=GLOB, got {text!r}")
    return key, value


@dataclass(frozen=True)
class RefreshConfig:
    """One refresh: where data comes from, where models go, and how everything in between behaves."""

    input: str = option(help="folder or s3://bucket/prefix holding the partitions")
    store: str = option(help="model store: a folder or s3://bucket/prefix")
    json: bool = option(False, "also print one JSON summary line at the end")
    log_format: str = option(
        "text",
        "json: the driver's log lines and the workers' (through Ray's LoggingConfig) as JSON lines",
        choices=LOG_FORMATS,
    )
    input_format: str = option(
        "auto",
        "partition format (auto: by extension; .gz/.zst compression is always detected); delta: --input is a "
        "Delta Lake table (auto when it holds _delta_log/); iceberg: iceberg://CATALOG/NAMESPACE.TABLE (auto)",
        flag="--format",
        choices=INPUT_FORMATS,
        group="partitions",
    )
    glob: str | None = option(
        None, "only partitions whose path below --input matches, e.g. 'dt=2026-11-*/*'", group="partitions"
    )
    since: str | None = option(
        None,
        "only partitions whose dt/date/day folder (else modification time) is on or after DATE",
        metavar="DATE",
        group="partitions",
    )
    until: str | None = option(
        None,
        "only partitions whose dt/date/day folder (else modification time) is on or before DATE; with --since, a "
        "backfill's window, or a scheduler's logical date (--since D --until D: that day alone)",
        metavar="DATE",
        group="partitions",
    )
    where: tuple[tuple[str, str], ...] = option(
        (),
        "only partitions whose hive folder KEY matches GLOB, e.g. --where region=eu-*; repeatable",
        metavar="KEY=GLOB",
        parse=_key_value,
        group="partitions",
    )
    relist_days: int | None = option(
        None,
        "list only the date folders (dt/date/day/ds) at most N days older than the newest one the lineage "
        "consumed; a file landing in an older folder is then found only by a run without it",
        metavar="N",
        group="partitions",
    )
    ledger_compact_every: int = option(
        10,
        "a version stores only the ledger rows it added while its ledger is read from at most K files; then one "
        "full ledger again (1: a full ledger in every version)",
        metavar="K",
        group="partitions",
    )
    reprocess_rewritten: bool = option(
        False,
        "train again on partitions rewritten (new size or mtime) since they were consumed",
        group="partitions",
    )
    readiness: Readiness = Readiness()
    allow_new_input: bool = option(
        False,
        "train even though none of the partitions found is in the lineage's ledger (a new source, or the consumed "
        "partitions were deleted); without it such a run fails, as a wrong --input would",
        group="partitions",
    )
    max_partitions: int | None = option(
        None,
        "consume at most this many new partitions, the oldest first (by date folder, else modification time; "
        "then path), the rest waiting for a later run; of a table, this many data-changing commits",
        group="partitions",
    )
    resume_expired_table: bool = option(
        False,
        "when a table's history the lineage needs was vacuumed or expired, continue from the oldest version still "
        "there (the rows in between are not trained; the gap is reported)",
        group="partitions",
    )
    skip_bad_partitions: bool = option(
        False, "train on the readable partitions and record the bad ones instead of failing", group="partitions"
    )
    retry_rejected: bool = option(
        False,
        "read again the partitions the lineage recorded as bad (otherwise left alone until they change)",
        group="partitions",
    )
    dry_run: bool = option(
        False,
        "only say what a run would consume, skip, wait for and reject; start no Ray, write nothing",
        group="partitions",
    )
    read: ReadOptions = ReadOptions()
    tokenizer: TokenizerConfig = TokenizerConfig()
    training: TrainingConfig = TrainingConfig()
    # lineage settings this run may change (TOKENIZER_SETTINGS, ...)
    allow_setting_change: tuple[str, ...] = option(
        (),
        "let this run change a setting the lineage recorded (a tokenizer setting, or window, sg, negative, "
        "sample, min-count), e.g. deaccent; recorded in the manifest; repeatable",
        metavar="NAME",
        parse=_setting,
        unique=True,
        group="model",
    )
    lifecycle: LifecycleConfig = LifecycleConfig()
    gate: GateConfig = GateConfig()
    max_in_flight: int | None = option(None, "pieces tokenized at once (default: 2 per cluster CPU)", group="ray")
    max_in_flight_bytes: int | None = option(
        None,
        "tokenized bytes held for the trainer at once (default: half the cluster's object store)",
        parse=_size,
        group="ray",
    )
    ray_address: str | None = option(None, "Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)", group="ray")
    trainer_resource: str = option(
        "trainer",
        "custom resource of the node the training actor should run on, when a node offers it",
        group="ray",
    )
    require_trainer_resource: bool = option(
        False,
        "always ask for --trainer-resource, even if no node offers it yet (autoscaling clusters); needs --workers",
        group="ray",
    )
    trainer_start_timeout: float = option(
        900.0,
        "seconds to wait for the first partition to reach the training actor (a trainer node to start)",
        group="ray",
    )
    tokenizer_wait: float = option(
        600.0,
        "on an autoscaling cluster, how long tokenizing tasks may wait for a CPU outside the trainer's "
        "reservation while the cluster has none; then they run in the reservation, with a warning",
        metavar="SECONDS",
        group="ray",
    )
    spool_dir: str | None = option(None, "local folder on the trainer's node for the spooled corpus", group="ray")
    parent_cache: str | None = option(
        None,
        "folder on the trainer's node keeping recent versions, verified on use, so the next run does not download "
        "its parent again (default: embedding-refresh-cache beside the spool)",
        metavar="DIR",
        group="ray",
    )
    parent_cache_versions: int = option(
        2,
        "versions the trainer's node keeps in its cache, the least recently used evicted; 0 turns it off",
        metavar="N",
        group="ray",
    )
    signing: SigningConfig = SigningConfig()
    # The lineage settings given (a flag or a config file key; one not given is absent, as the lifecycle's None
    # defaults rely on), so an update keeps the lineage's value of every other one.
    explicit: tuple[str, ...] = derived((), "the lineage settings this run was given, worked out from the others")

    def __post_init__(self) -> None:
        for flag, uri in (("--input", self.input), ("--store", self.store)):
            no_credentials(flag, uri)
        for flag, day in (("--since", self.since), ("--until", self.until)):
            if day is not None:
                check_date(flag, day)
        if self.since is not None and self.until is not None and self.until[: len(self.since)] < self.since:
            raise ConfigError(f"--until {self.until} is before --since {self.since}: no partition could match")
        for name in self.allow_setting_change:
            if name in FIXED_ARCHITECTURE:
                raise ConfigError(
                    f"--allow-setting-change {name.replace('_', '-')}: the {name.replace('_', ' ')} is fixed by the "
                    "model's matrices and cannot change on an update; start a new lineage (another --store, or "
                    "`jobs.models import --new-lineage`)"
                )
            if name not in TOKENIZER_SETTINGS + ADJUSTABLE_ARCHITECTURE:
                raise ConfigError(
                    f"--allow-setting-change takes one of "
                    f"{', '.join(n.replace('_', '-') for n in TOKENIZER_SETTINGS + ADJUSTABLE_ARCHITECTURE)}, "
                    f"got {name.replace('_', '-')!r}"
                )
        if self.relist_days is not None and self.relist_days < 0:
            raise ConfigError(f"--relist-days must not be negative, got {self.relist_days}")
        if self.ledger_compact_every < 1:
            raise ConfigError(f"--ledger-compact-every must be at least 1, got {self.ledger_compact_every}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigError(f"--max-in-flight must be at least 1, got {self.max_in_flight}")
        if self.parent_cache_versions < 0:
            raise ConfigError(f"--parent-cache-versions must not be negative, got {self.parent_cache_versions}")
        if self.max_in_flight_bytes is not None and self.max_in_flight_bytes < 1:
            raise ConfigError(f"--max-in-flight-bytes must be positive, got {self.max_in_flight_bytes}")
        if self.max_partitions is not None and self.max_partitions < 1:
            raise ConfigError(f"--max-partitions must be at least 1, got {self.max_partitions}")
        if self.tokenizer_wait <= 0:
            raise ConfigError(f"--tokenizer-wait must be positive, got {self.tokenizer_wait:g}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"--log-format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.require_trainer_resource and self.training.workers is None:
            # Before the trainer node exists nothing says how many CPUs it has: the actor would reserve none,
            # and the autoscaler would size nothing for its threads.
            raise ConfigError(
                "--require-trainer-resource needs --workers N, the CPUs of the trainer node type (e.g. 32 on an "
                "r7i.8xlarge): the trainer node may not exist yet, so the training actor cannot learn how many "
                "CPUs to reserve from it"
            )


IMPORT_KINDS: tuple[str, ...] = ("auto", "gensim", "facebook", "word2vec")


@dataclass(frozen=True)
class ImportConfig:
    """Importing a model file as the first version of a lineage (``python -m jobs.models import``).

    ``training`` gives the architecture of a model adopted from vectors only (window, sg, negative, sample,
    min_count); a full model keeps its own.
    """

    path: str = option(help="the model file to import (a gensim save() file, a fastText .bin, word2vec)", flag="path")
    store: str = option(help="a folder or s3://bucket/prefix")
    kind: str = option(
        "auto",
        "gensim: a save() file, UNPICKLED on load (import only files you trust); facebook: a fastText .bin (or "
        ".bin.gz); word2vec: vectors in the word2vec text or binary format (or gzipped); auto: the file's real "
        "format, read without unpickling; a pickle is refused unless --kind gensim or --allow-pickle",
        choices=IMPORT_KINDS,
    )
    # with auto: a pickle may be unpickled (--kind gensim says the same)
    allow_pickle: bool = option(
        False,
        "with --kind auto: a file that is a pickle (gensim's save(), gzipped or not) is UNPICKLED, which runs any "
        "code it names; only for a file you trust",
    )
    adopt_vectors: bool = option(
        False, "accept a vectors-only file: build a trainable Word2Vec from it (output layer starts at zero)"
    )
    counts: str | None = option(None, "word<TAB>count lines", metavar="FILE")
    new_lineage: bool = option(
        False, "import into a store that already has a current version: the import becomes current"
    )
    mark_consumed: str | None = option(
        None,
        "record the partitions under INPUT (the refresh's --input) as consumed by the imported model",
        metavar="INPUT",
    )
    consumed_before: str | None = option(
        None,
        "with --mark-consumed: only partitions whose dt/date/day/ds folder (else mtime) is before DATE",
        metavar="DATE",
    )
    training: TrainingConfig = TrainingConfig()
    signing: SigningConfig = SigningConfig()

    def __post_init__(self) -> None:
        if self.kind not in IMPORT_KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(IMPORT_KINDS)}, got {self.kind!r}")
        if self.counts is not None and not self.adopt_vectors:
            raise ConfigError("--counts only applies with --adopt-vectors (a full model brings its own counts)")
        if self.consumed_before is not None:
            if self.mark_consumed is None:
                raise ConfigError("--consumed-before needs --mark-consumed INPUT (the partitions to mark)")
            check_date("--consumed-before", self.consumed_before)
        for flag, uri in (("--mark-consumed", self.mark_consumed or ""), ("--store", self.store)):
            no_credentials(flag, uri)


def no_credentials(flag: str, uri: str) -> None:
    """Refuse a URI with credentials in it: pyarrow accepts s3://KEY:SECRET@bucket, and such a URI would end up
    in logs and manifests."""
    if "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]:
        raise ConfigError(f"{flag} may not carry credentials; use the AWS credential chain instead")


def check_date(flag: str, text: str) -> None:
    try:
        datetime.date.fromisoformat(text[:10])
    except ValueError:
        raise ConfigError(f"{flag} takes a date like 2026-11-24, got {text!r}") from None


def to_dict(config: RefreshConfig | ImportConfig) -> dict[str, Any]:
    """The resolved config (a RefreshConfig or ImportConfig) as plain JSON-able data, as recorded with each
    version (``config.json``): the signing key's file is recorded only as given or not, since the store is
    readable by many more than the trainer's host."""
    resolved = dataclasses.asdict(config)
    if "signing" in resolved:
        resolved["signing"]["signing_key"] = "given" if config.signing.signing_key else None
    return resolved
