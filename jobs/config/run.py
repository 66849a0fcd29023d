"""A run's whole config: :class:`RefreshConfig` (``python -m jobs.refresh``) and :class:`ImportConfig`
(``python -m jobs.versions import``), each holding the section dataclasses, and the resolved config as recorded
with each version (:func:`to_dict`).

The run's own settings are declared here with their flags and help (:func:`shards.options.option`); the
sections' in :mod:`jobs.config.training`, :mod:`jobs.config.gate`, :mod:`jobs.config.signing` and ``shards``
(:class:`~shards.partitions.Readiness`, :class:`~shards.tokenized.ReadOptions`,
:class:`~shards.tokenize.TokenizerConfig`). Checks that span sections live in ``__post_init__`` here.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any

from jobs.config.gate import GateConfig
from jobs.config.signing import SigningConfig
from jobs.config.training import (
    ADJUSTABLE_ARCHITECTURE,
    FIXED_ARCHITECTURE,
    TOKENIZER_SETTINGS,
    TrainingConfig,
    UpkeepConfig,
)
from jobs.errors import ConfigError
from shards.options import derived, option
from shards.partitions import Readiness
from shards.s3settings import parse_size
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions

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
    # named "lifecycle" because the field's name is its [lifecycle] config file section and its config.json
    # and manifest record, which stores written before must still read
    lifecycle: UpkeepConfig = UpkeepConfig()
    gate: GateConfig = GateConfig()
    max_in_flight: int | None = option(None, "pieces tokenized at once (default: 2 per cluster CPU)", group="ray")
    max_in_flight_bytes: int | None = option(
        None,
        "tokenized bytes held for the trainer at once (default: half the cluster's object store)",
        parse=_size,
        group="ray",
    )
    # Below this, scattering pieces over Ray tasks costs more (worker start-up, object-store hops) than the work.
    tokenize_in_trainer_below: int = option(
        16 << 20,
        "tokenize an increment whose text is estimated below SIZE (input bytes; Parquet x3, gzip/zstd x4) "
        "inside the training actor, with no tokenizing tasks; 0 always uses tasks",
        metavar="SIZE",
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
    # The lineage settings given (a flag or a config file key; one not given is absent, as the upkeep's None
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
                    "`jobs.versions import --new-lineage`)"
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
        if self.tokenize_in_trainer_below < 0:
            raise ConfigError(f"--tokenize-in-trainer-below must not be negative, got {self.tokenize_in_trainer_below}")
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
    """Importing a model file as the first version of a lineage (``python -m jobs.versions import``).

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
