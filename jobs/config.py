"""The refresh's configuration: typed, frozen, validated once, and saved with every version.

Everything comes from command-line flags, parsed in exactly one place (:func:`from_args`). Nothing is read
from the environment or the disk at import time; ``RAY_ADDRESS`` is consulted only when Ray is started, and
the signing keys' environment variables (:data:`SIGNING_KEY_ENV`, :data:`TRUSTED_KEYS_ENV`) when the flags
are parsed, for the flags not given.

    >>> config = from_args(["--input", "data/sample", "--store", "models", "--model", "fasttext"])
    >>> config.training.model, config.tokenizer.lowercase
    ('fasttext', True)
    >>> to_dict(config)["training"]["vector_size"]
    100
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from jobs.errors import ConfigError
from shards.partitions import MARKER_MODES, Readiness
from shards.s3settings import parse_size
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions

ModelKind = Literal["word2vec", "fasttext"]

T = TypeVar("T")


@dataclass(frozen=True)
class TrainingConfig:
    """gensim hyper-parameters. Architecture fields apply when a model is created; an update keeps the
    loaded model's architecture and uses this run's epochs and learning rates."""

    model: ModelKind = "word2vec"
    vector_size: int = 100
    window: int = 5
    min_count: int = 5
    sg: bool = False
    negative: int = 5
    sample: float = 1e-3
    epochs: int = 5
    alpha: float = 0.025
    update_alpha: float | None = None  # None: updates start at alpha, as new models do (README)
    min_alpha: float = 0.0001
    workers: int | None = None  # None: the CPUs of the training actor's node, resolved there
    seed: int = 1
    min_n: int = 3
    max_n: int = 6
    bucket: int = 2_000_000
    vocab_policy: Literal["remember", "gensim"] = "remember"
    pending_cap: int = 1_000_000
    replay_fraction: float = 0.0
    replay_max_sentences: int = 100_000

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

    max_vocab: int | None = None  # words the model may hold after an update (0: no cap)
    count_half_life: float | None = None  # refreshes after which a count weighs half (0: never decays)
    freeze_known_words: bool | None = None  # the parent's words keep their vectors bit for bit
    align: bool | None = None  # each version rotated onto its parent's coordinates (jobs.training.align)

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
    """Thresholds of the quality gate (:mod:`jobs.training.gate`). ``files`` maps a file name to its kind
    (``similarity``/``analogy``).

    The neighbourhood check is judged against the lineage's own history: the overlaps of its last ``history``
    versions (a band ``sigmas`` robust standard deviations wide, never above ``keep`` times their median), and
    against what chance alone reaches in this run. ``min_overlap`` is an absolute floor on top of that, off
    unless given. The other checks need no history: non-finite values, the frequent words' norms against the
    parent's (``max_norm_ratio``), their spread of directions against the parent's (``min_spread``), and the
    evaluation files' scores (``max_drop``). A parent that has barely left its initial values (``trained_norm``)
    is no reference for the checks against it.
    """

    min_overlap: float | None = None  # an absolute floor; None: the lineage's band and chance decide
    max_drop: float = 0.05
    probe_words: int = 200
    topn: int = 10
    history: int = 10  # versions of the lineage's overlap history judged; fewer: a young lineage, a looser floor
    keep: float = 0.5  # the overlap floor is at most this share of the lineage's median overlap
    sigmas: float = 4.0  # robust standard deviations (of the history, of this run's noise and of chance)
    max_norm_ratio: float = 10.0  # the moved frequent words' median norm may grow or shrink at most this many times
    min_spread: float = 0.1  # the frequent words' spread of directions keeps at least this share of the parent's
    trained_norm: float = 4.0  # a parent whose frequent words' median norm is under this many times gensim's
    # initial norm (1/sqrt(3 dims)) has barely trained: its neighbourhoods, norms and directions are no reference
    force: bool = False
    similarity_files: tuple[str, ...] = ()
    analogy_files: tuple[str, ...] = ()

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

    signing_key: str | None = None
    trusted_keys: tuple[str, ...] = ()
    allow_rollback: bool = False
    seen_dir: str | None = None

    def __post_init__(self) -> None:
        if self.signing_key == "":
            raise ConfigError("--signing-key names a file; got an empty path")


def signing_config(namespace: argparse.Namespace, environ: Mapping[str, str]) -> SigningConfig:
    """The signing flags parsed by :func:`add_signing_arguments`, each one not given taken from its environment
    variable (:data:`SIGNING_KEY_ENV`, :data:`TRUSTED_KEYS_ENV`)."""
    names = [f.name for f in dataclasses.fields(SigningConfig)]
    values = {name: getattr(namespace, name) for name in names if hasattr(namespace, name)}
    if "signing_key" not in values and environ.get(SIGNING_KEY_ENV):
        values["signing_key"] = environ[SIGNING_KEY_ENV]
    values["trusted_keys"] = tuple(values.get("trusted_keys") or trusted_keys_from(environ))
    return SigningConfig(**values)


def trusted_keys_from(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The trusted key files :data:`TRUSTED_KEYS_ENV` names."""
    return tuple(path for path in environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if path)


LOG_FORMATS: tuple[str, ...] = ("text", "json")


@dataclass(frozen=True)
class RefreshConfig:
    """One refresh: where data comes from, where models go, and how everything in between behaves."""

    input: str
    store: str
    input_format: str = "auto"
    glob: str | None = None
    since: str | None = None
    until: str | None = None
    where: tuple[tuple[str, str], ...] = ()
    relist_days: int | None = None
    reprocess_rewritten: bool = False
    allow_new_input: bool = False
    ledger_compact_every: int = 10
    readiness: Readiness = Readiness()
    read: ReadOptions = ReadOptions()
    tokenizer: TokenizerConfig = TokenizerConfig()
    training: TrainingConfig = TrainingConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    gate: GateConfig = GateConfig()
    signing: SigningConfig = SigningConfig()
    skip_bad_partitions: bool = False
    resume_expired_table: bool = False
    retry_rejected: bool = False
    max_partitions: int | None = None
    max_in_flight: int | None = None
    max_in_flight_bytes: int | None = None
    ray_address: str | None = None
    trainer_resource: str = "trainer"
    require_trainer_resource: bool = False
    trainer_start_timeout: float = 900.0
    tokenizer_wait: float = 600.0
    spool_dir: str | None = None
    parent_cache: str | None = None
    parent_cache_versions: int = 2
    json: bool = False
    log_format: str = "text"
    dry_run: bool = False
    allow_setting_change: tuple[str, ...] = ()  # lineage settings this run may change (TOKENIZER_SETTINGS, ...)
    # The lineage settings given on the command line (a flag not given is absent from argparse's namespace, as
    # the lifecycle's None defaults rely on), so an update keeps the lineage's value of every other one.
    explicit: tuple[str, ...] = ()

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

    path: str
    store: str
    kind: str = "auto"
    allow_pickle: bool = False  # with auto: a pickle may be unpickled (--kind gensim says the same)
    adopt_vectors: bool = False
    counts: str | None = None
    new_lineage: bool = False
    mark_consumed: str | None = None
    consumed_before: str | None = None
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


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``jobs.models import``; their defaults come from :class:`ImportConfig` (SUPPRESS)."""
    p.add_argument("path", help="the model file to import (a gensim save() file, a fastText .bin, word2vec)")
    p.add_argument(
        "--kind",
        choices=IMPORT_KINDS,
        default=argparse.SUPPRESS,
        help="gensim: a save() file, UNPICKLED on load (import only files you trust); facebook: a fastText "
        ".bin (or .bin.gz); word2vec: vectors in the word2vec text or binary format (or gzipped); auto: the file's "
        "real format, read without unpickling; a pickle is refused unless --kind gensim or --allow-pickle",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        default=argparse.SUPPRESS,
        help="with --kind auto: a file that is a pickle (gensim's save(), gzipped or not) is UNPICKLED, which runs "
        "any code it names; only for a file you trust",
    )
    p.add_argument(
        "--adopt-vectors",
        action="store_true",
        default=argparse.SUPPRESS,
        help="accept a vectors-only file: build a trainable Word2Vec from it (output layer starts at zero)",
    )
    p.add_argument("--counts", default=argparse.SUPPRESS, metavar="FILE", help="word<TAB>count lines")
    p.add_argument(
        "--new-lineage",
        action="store_true",
        default=argparse.SUPPRESS,
        help="import into a store that already has a current version: the import becomes current",
    )
    p.add_argument(
        "--mark-consumed",
        default=argparse.SUPPRESS,
        metavar="INPUT",
        help="record the partitions under INPUT (the refresh's --input) as consumed by the imported model",
    )
    p.add_argument(
        "--consumed-before",
        default=argparse.SUPPRESS,
        metavar="DATE",
        help="with --mark-consumed: only partitions whose dt/date/day/ds folder (else mtime) is before DATE",
    )
    m = p.add_argument_group("architecture of a model adopted from vectors")
    for flag, kind in (("--window", int), ("--min-count", int), ("--negative", int), ("--sample", float)):
        m.add_argument(flag, type=kind, default=argparse.SUPPRESS)
    m.add_argument("--sg", action="store_true", default=argparse.SUPPRESS, help="skip-gram instead of CBOW")
    _show_defaults(p)


def add_signing_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`SigningConfig` (defaults from the dataclass and the environment: SUPPRESS)."""
    s = p.add_argument_group("signed versions (docs/signing.md)")
    s.add_argument(
        "--signing-key",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"sign each manifest and pointer written with the Ed25519 private key in FILE (default: the file "
        f"${SIGNING_KEY_ENV} names)",
    )
    s.add_argument(
        "--trusted-key",
        dest="trusted_keys",
        action="append",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="read only manifests and pointers signed by a public key in FILE; repeatable (default: the files "
        f"${TRUSTED_KEYS_ENV} names, separated by '{os.pathsep}'; none: nothing is verified)",
    )
    s.add_argument(
        "--allow-rollback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="accept a pointer older than one this host has already seen (a store restored on purpose)",
    )
    s.add_argument(
        "--seen-dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where the newest pointer seen of each store is remembered (default: seen/ in the reader's cache)",
    )


def import_config(namespace: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> ImportConfig:
    """The validated ImportConfig for flags parsed by :func:`add_import_arguments`. Raises ConfigError."""
    return _pick(
        ImportConfig, namespace, training=_pick(TrainingConfig, namespace), signing=signing_config(namespace, environ)
    )


def to_dict(config: RefreshConfig | ImportConfig) -> dict[str, Any]:
    """The resolved config (a RefreshConfig or ImportConfig) as plain JSON-able data, as recorded with each
    version (``config.json``): the signing key's file is recorded only as given or not, since the store is
    readable by many more than the trainer's host."""
    resolved = dataclasses.asdict(config)
    if "signing" in resolved:
        resolved["signing"]["signing_key"] = "given" if config.signing.signing_key else None
    return resolved


def parser() -> argparse.ArgumentParser:
    # Defaults live in the dataclasses alone: a flag not given is absent from the namespace (SUPPRESS), so the
    # dataclass supplies it, and --help shows the dataclass's value. No abbreviations: a later flag must not
    # change what an old cron line means.
    p = argparse.ArgumentParser(
        prog="python -m jobs.refresh",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
        description="Refresh a gensim embedding model from new partitions and publish it as a new version.",
    )
    p.add_argument("--input", required=True, help="folder or s3://bucket/prefix holding the partitions")
    p.add_argument("--store", required=True, help="model store: a folder or s3://bucket/prefix")
    p.add_argument("--json", action="store_true", help="also print one JSON summary line at the end")
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="json: the driver's log lines and the workers' (through Ray's LoggingConfig) as JSON lines",
    )

    g = p.add_argument_group("partitions")
    g.add_argument(
        "--format",
        dest="input_format",
        choices=["auto", "parquet", "jsonl", "text", "delta", "iceberg"],
        help="partition format (auto: by extension; .gz/.zst compression is always detected); delta: --input is a "
        "Delta Lake table (auto when it holds _delta_log/); iceberg: iceberg://CATALOG/NAMESPACE.TABLE (auto)",
    )
    g.add_argument("--text-column", help="Parquet column / JSON field holding the text")
    g.add_argument("--glob", help="only partitions whose path below --input matches, e.g. 'dt=2026-11-*/*'")
    g.add_argument(
        "--since",
        metavar="DATE",
        help="only partitions whose dt/date/day folder (else modification time) is on or after DATE",
    )
    g.add_argument(
        "--until",
        metavar="DATE",
        help="only partitions whose dt/date/day folder (else modification time) is on or before DATE; with "
        "--since, a backfill's window, or a scheduler's logical date (--since D --until D: that day alone)",
    )
    g.add_argument(
        "--where",
        action="append",
        metavar="KEY=GLOB",
        help="only partitions whose hive folder KEY matches GLOB, e.g. --where region=eu-*; repeatable",
    )
    g.add_argument(
        "--relist-days",
        type=int,
        metavar="N",
        help="list only the date folders (dt/date/day/ds) at most N days older than the newest one the "
        "lineage consumed; a file landing in an older folder is then found only by a run without it",
    )
    g.add_argument(
        "--ledger-compact-every",
        type=int,
        metavar="K",
        help="a version stores only the ledger rows it added while its ledger is read from at most K files; "
        "then one full ledger again (1: a full ledger in every version)",
    )
    g.add_argument(
        "--reprocess-rewritten",
        action="store_true",
        help="train again on partitions rewritten (new size or mtime) since they were consumed",
    )
    g.add_argument(
        "--require-success-marker",
        dest="success_marker",
        nargs="?",
        const="always",
        choices=MARKER_MODES,
        help="read a folder only once its _SUCCESS marker (or one above it) exists: auto (wherever the input "
        "has any marker), always (alone: always) or never; folders holding _temporary/ wait unless never",
    )
    g.add_argument(
        "--min-file-age",
        type=float,
        metavar="SECONDS",
        help="leave files modified fewer seconds ago for a later run (writers that leave no marker)",
    )
    g.add_argument(
        "--allow-new-input",
        action="store_true",
        help="train even though none of the partitions found is in the lineage's ledger (a new source, or "
        "the consumed partitions were deleted); without it such a run fails, as a wrong --input would",
    )
    g.add_argument(
        "--max-partitions",
        type=int,
        help="consume at most this many new partitions, the oldest first (by date folder, else modification "
        "time; then path), the rest waiting for a later run; of a table, this many data-changing commits",
    )
    g.add_argument(
        "--resume-expired-table",
        action="store_true",
        help="when a table's history the lineage needs was vacuumed or expired, continue from the oldest version "
        "still there (the rows in between are not trained; the gap is reported)",
    )
    g.add_argument(
        "--skip-bad-partitions",
        action="store_true",
        help="train on the readable partitions and record the bad ones instead of failing",
    )
    g.add_argument(
        "--retry-rejected",
        action="store_true",
        help="read again the partitions the lineage recorded as bad (otherwise left alone until they change)",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="only say what a run would consume, skip, wait for and reject; start no Ray, write nothing",
    )
    g.add_argument("--batch-rows", type=int, help="rows read and tokenized at once")
    g.add_argument(
        "--max-document-bytes",
        type=_size,
        help="a partition holding a longer document (a longer line) is bad; refused while it is read",
    )
    g.add_argument(
        "--piece-bytes",
        type=_size,
        help="split larger files into pieces of about this size (Parquet by row groups, uncompressed text and "
        "JSON Lines by lines), each tokenized by its own task; a worker's memory follows it, e.g. 256MiB",
    )
    g.add_argument(
        "--max-partition-bytes",
        type=_size,
        help="reject partition files larger than this, or that decompress to more (off by default; it no "
        "longer bounds memory)",
    )
    g.add_argument(
        "--max-decompression-ratio",
        type=float,
        metavar="RATIO",
        help="a compressed partition decompressing to more than RATIO times the bytes read for it (checked past "
        "its first 16 MiB) is bad: a decompression bomb; 0 turns it off",
    )
    g.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="read files and folders under a local --input that are symbolic links to places outside it "
        "(without it they are left out, with a warning)",
    )

    t = p.add_argument_group("tokenizer")
    t.add_argument("--no-lowercase", dest="lowercase", action="store_false", help="keep case")
    t.add_argument("--deaccent", action="store_true", help="fold accents (NFKD, drop combining marks)")
    t.add_argument("--token-pattern", help="RE2 regex of one token")
    t.add_argument("--min-token-len", type=int)
    t.add_argument("--max-token-len", type=int)

    m = p.add_argument_group("model")
    m.add_argument("--model", choices=["word2vec", "fasttext"], help="for a new model")
    m.add_argument("--vector-size", type=int)
    m.add_argument("--window", type=int)
    m.add_argument("--min-count", type=int)
    m.add_argument("--sg", action="store_true", help="skip-gram instead of CBOW")
    m.add_argument("--negative", type=int, help="negative samples (hierarchical softmax is not used)")
    m.add_argument("--sample", type=float, help="down-sampling threshold")
    m.add_argument("--epochs", type=int)
    m.add_argument("--alpha", type=float, help="starting learning rate of a new model")
    m.add_argument(
        "--update-alpha",
        type=float,
        help="starting learning rate of an update (default: --alpha, as gensim does; see README)",
    )
    m.add_argument("--min-alpha", type=float)
    m.add_argument("--seed", type=int)
    m.add_argument("--min-n", type=int, help="FastText: shortest character n-gram")
    m.add_argument("--max-n", type=int, help="FastText: longest character n-gram")
    m.add_argument("--bucket", type=int, help="FastText: n-gram hash buckets")
    m.add_argument(
        "--vocab-policy",
        choices=["remember", "gensim"],
        help="remember: counts of words below --min-count accumulate across runs until they qualify, "
        "and down-sampling uses cumulative counts; gensim: judge each run's counts alone",
    )
    m.add_argument(
        "--pending-cap",
        type=int,
        help="how many below-min-count words to remember (the rarest are pruned)",
    )
    m.add_argument(
        "--replay-fraction",
        type=float,
        help="mix this many old sentences per new one into an update, from a stored reservoir",
    )
    m.add_argument("--replay-max-sentences", type=int, help="size of the replay reservoir")

    m.add_argument(
        "--allow-setting-change",
        action="append",
        type=_setting,
        metavar="NAME",
        help="let this run change a setting the lineage recorded (a tokenizer setting, or window, sg, negative, "
        "sample, min-count), e.g. deaccent; recorded in the manifest; repeatable",
    )

    life = p.add_argument_group(
        "lifecycle (kept from the parent version unless given; a new lineage: "
        + ", ".join(
            f"{f.name.replace('_', '-')} {getattr(NEW_LINEAGE, f.name)}" for f in dataclasses.fields(NEW_LINEAGE)
        )
        + ")"
    )
    life.add_argument(
        "--max-vocab",
        type=int,
        metavar="N",
        help="after each update, remove the words with the least standing beyond N (0: no cap)",
    )
    life.add_argument(
        "--count-half-life",
        type=float,
        metavar="REFRESHES",
        help="standing and remembered counts halve over this many refreshes (0: no decay)",
    )
    life.add_argument(
        "--freeze-known-words",
        action=argparse.BooleanOptionalAction,
        help="keep the vectors of words the parent has bit for bit; only new words learn",
    )
    life.add_argument(
        "--align",
        action=argparse.BooleanOptionalAction,
        help="rotate each new version onto its parent's coordinates (similarities unchanged; the lineage's; new: off)",
    )

    q = p.add_argument_group("quality gate")
    q.add_argument(
        "--eval-similarity",
        dest="similarity_files",
        action="append",
        metavar="TSV",
        help="word-pair similarity file (WordSim-353 format); repeatable",
    )
    q.add_argument(
        "--eval-analogies",
        dest="analogy_files",
        action="append",
        metavar="TXT",
        help="analogy file (questions-words.txt format); repeatable",
    )
    q.add_argument(
        "--gate-min-overlap",
        dest="min_overlap",
        type=float,
        help="an absolute floor on the share of nearest neighbours of frequent old words the candidate keeps, "
        "beyond chance, on top of the lineage's own band (default: none; before the band existed it was 0.1)",
    )
    q.add_argument(
        "--gate-history",
        dest="history",
        type=int,
        metavar="K",
        help="versions of the lineage's overlap history the band is drawn from; a lineage with fewer is young "
        "and its floor looser",
    )
    q.add_argument(
        "--gate-keep",
        dest="keep",
        type=float,
        help="the neighbourhood overlap may fall to this share of the lineage's median before the gate fails",
    )
    q.add_argument(
        "--gate-sigmas",
        dest="sigmas",
        type=float,
        help="width of the lineage's band and of the chance floor, in robust standard deviations",
    )
    q.add_argument(
        "--gate-max-norm-ratio",
        dest="max_norm_ratio",
        type=float,
        help="the frequent words' median vector norm may grow or shrink at most this many times against the parent",
    )
    q.add_argument(
        "--gate-min-spread",
        dest="min_spread",
        type=float,
        help="fail as collapsed when the frequent words' spread of directions (1 - mean pairwise cosine) falls "
        "under this share of the parent's",
    )
    q.add_argument(
        "--gate-max-drop",
        dest="max_drop",
        type=float,
        help="largest allowed drop of a similarity or analogy score against the parent",
    )
    q.add_argument("--force", action="store_true", help="promote the candidate even if the gate fails")

    r = p.add_argument_group("ray")
    r.add_argument(
        "--workers",
        type=int,
        help="training threads, and CPUs the training actor reserves (default: the CPUs of its node)",
    )
    r.add_argument("--max-in-flight", type=int, help="pieces tokenized at once (default: 2 per cluster CPU)")
    r.add_argument(
        "--max-in-flight-bytes",
        type=_size,
        help="tokenized bytes held for the trainer at once (default: half the cluster's object store)",
    )
    r.add_argument("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    r.add_argument(
        "--trainer-resource",
        help="custom resource of the node the training actor should run on, when a node offers it",
    )
    r.add_argument(
        "--require-trainer-resource",
        action="store_true",
        help="always ask for --trainer-resource, even if no node offers it yet (autoscaling clusters); needs --workers",
    )
    r.add_argument(
        "--trainer-start-timeout",
        type=float,
        help="seconds to wait for the first partition to reach the training actor (a trainer node to start)",
    )
    r.add_argument(
        "--tokenizer-wait",
        type=float,
        metavar="SECONDS",
        help="on an autoscaling cluster, how long tokenizing tasks may wait for a CPU outside the trainer's "
        "reservation while the cluster has none; then they run in the reservation, with a warning",
    )
    r.add_argument("--spool-dir", help="local folder on the trainer's node for the spooled corpus")
    r.add_argument(
        "--parent-cache",
        metavar="DIR",
        help="folder on the trainer's node keeping recent versions, verified on use, so the next run does not "
        "download its parent again (default: embedding-refresh-cache beside the spool)",
    )
    r.add_argument(
        "--parent-cache-versions",
        type=int,
        metavar="N",
        help="versions the trainer's node keeps in its cache, the least recently used evicted; 0 turns it off",
    )
    add_signing_arguments(p)
    _show_defaults(p)
    return p


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


def _pick(cls: type[T], namespace: argparse.Namespace, **extra: Any) -> T:
    """Build a config dataclass from the parsed flags named like its fields (argparse ``dest`` = field)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {name: getattr(namespace, name) for name in names if hasattr(namespace, name)}
    return cls(**{**values, **extra})


_SECTIONS: tuple[type, ...] = (
    RefreshConfig,
    Readiness,
    ReadOptions,
    TokenizerConfig,
    TrainingConfig,
    LifecycleConfig,
    GateConfig,
    ImportConfig,
    SigningConfig,
)


def _defaults() -> dict[str, Any]:
    """Every config field's default, by field name (the names argparse uses as ``dest``)."""
    values: dict[str, Any] = {}
    for cls in _SECTIONS:
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                values.setdefault(f.name, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                values.setdefault(f.name, f.default_factory())
    return values


def _show_defaults(p: argparse.ArgumentParser) -> None:
    """Append each flag's dataclass default to its help text."""
    defaults = _defaults()
    for action in p._actions:
        default = defaults.get(action.dest)
        if action.nargs == 0 or default in (None, (), ""):
            continue
        action.help = f"{action.help} (default: {default})" if action.help else f"default: {default}"


def from_args(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> RefreshConfig:
    """Parse flags (and, for signing flags not given, ``environ``) into a validated RefreshConfig. Raises
    ConfigError; exits on --help."""
    a = parser().parse_args(argv)
    return _pick(
        RefreshConfig,
        a,
        where=tuple(_key_value(w) for w in getattr(a, "where", [])),
        allow_setting_change=tuple(dict.fromkeys(getattr(a, "allow_setting_change", []))),
        explicit=tuple(sorted(set(vars(a)) & {*TOKENIZER_SETTINGS, *ADJUSTABLE_ARCHITECTURE, *FIXED_ARCHITECTURE})),
        readiness=_pick(Readiness, a),
        read=_pick(ReadOptions, a),
        tokenizer=_pick(TokenizerConfig, a),
        training=_pick(TrainingConfig, a),
        lifecycle=_pick(LifecycleConfig, a),
        gate=_pick(
            GateConfig,
            a,
            similarity_files=tuple(getattr(a, "similarity_files", [])),
            analogy_files=tuple(getattr(a, "analogy_files", [])),
        ),
        signing=signing_config(a, environ),
    )
