"""The refresh job's exceptions. The whole tree::

    RefreshError                 anything the refresh reports as a failure                         exit
    ├── ConfigError              a flag, option or config file is invalid                             2
    ├── PartitionError           one partition cannot be read or tokenized (names the shard and the cause)  3
    ├── PartitionReadError       reading a partition failed outside its bytes (store, network); retried 75
    ├── BadPartitionsError       several partitions are bad; lists every one (a PartitionError) with its cause  3
    ├── TableError               a table uses a feature the reader cannot honour, or its history the lineage  3
    │                            needs was vacuumed or expired (names the table and how to resume)
    ├── StoreError               the model store cannot be read or written (an outage)               75
    │   ├── IntegrityError       a file's size or SHA-256 differs from its manifest, a file is missing, or a  3
    │   │   │                    model file is not the plain data its format allows (refused, never unpickled)
    │   │   └── SignatureError   with trusted keys configured: a manifest or pointer is unsigned, signed by  3
    │   │                        an untrusted key, changed after signing, or older than one already seen
    │   ├── PickledModelError    the version's model is a pickle (the previous format); read only on request  3
    │   ├── VersionNotFound      a version, or the pointer, does not exist                            3
    │   ├── VersionRemoved       the version the run builds on was removed mid-run (the pointer      75
    │   │                        had moved off it, then gc collected it); a rerun builds on the current one
    │   ├── ConflictError        another refresh moved the pointer first; this version stays unpromoted  75
    │   └── CacheError           the host's version cache cannot be used (its disk is full or unwritable)  75
    ├── TrainingError            training failed: gensim raised, the spool's disk failed, a count     3
    │                            did not add up
    ├── ClusterError             Ray failed under the run: a worker crashed past its retries, memory  75
    │                            ran out, results were lost with their node, a node died, a runtime
    │                            environment could not be set up, the training actor or its node died,
    │                            no node could host the training actor within --trainer-start-timeout
    ├── QualityGateError         the candidate is worse than its parent; uploaded, not promoted       3
    ├── ImportRefused            a model file cannot be imported (names the file and the cause)       3
    └── StoppedError             the run was stopped (SIGTERM: ``ray job stop``, an eviction)      143

The exit status (:func:`exit_status`) tells a scheduler what to do: 3, the data, the gate or the store's
content said no and a rerun fails the same way until someone acts; 75 (``EX_TEMPFAIL``), the infrastructure
failed and a rerun is safe (nothing was published, the ledger picks up the same partitions); 2, a usage
error; 143, stopped from outside (nothing was published, a rerun is safe); 1, an unexpected error (a bug: it
comes with a traceback). ``python -m jobs.versions`` exits by the same table, and ``infra/submit.sh`` passes the
job's own status on to the scheduler (``docs/operating.md``).

The first six live in :mod:`shards.errors` (``shards`` may not import ``jobs``) and are re-exported here, so
callers import every error from this module.
"""

from __future__ import annotations

from shards.errors import (
    BadPartitionsError,
    ConfigError,
    PartitionError,
    PartitionReadError,
    RefreshError,
    TableError,
)

__all__ = [
    "EXIT_REFUSED",
    "EXIT_RETRYABLE",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "RERUN",
    "BadPartitionsError",
    "CacheError",
    "ClusterError",
    "ConfigError",
    "ConflictError",
    "ImportRefused",
    "IntegrityError",
    "PartitionError",
    "PartitionReadError",
    "PickledModelError",
    "QualityGateError",
    "RefreshError",
    "SignatureError",
    "StoppedError",
    "StoreError",
    "TableError",
    "TrainingError",
    "VersionNotFound",
    "VersionRemoved",
    "exit_status",
]

EXIT_USAGE = 2  # as argparse exits on a bad flag
EXIT_REFUSED = 3  # the data, the quality gate or the store's content said no: rerunning fails the same way
EXIT_RETRYABLE = 75  # EX_TEMPFAIL: the infrastructure failed; nothing was published and a rerun is safe
EXIT_STOPPED = 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM ended


class StoreError(RefreshError):
    """The model store cannot be read or written."""


class IntegrityError(StoreError):
    """A version's file is missing, or its size or SHA-256 differs from the manifest. Nothing was loaded."""


class SignatureError(IntegrityError):
    """With trusted keys configured, a manifest or the pointer is not signed by one of them, was changed after
    it was signed, or the pointer is older than one this host has already seen (a replay). The message names
    the store, the version and the key id it found (docs/signing.md)."""


class PickledModelError(StoreError):
    """The version stores its model with gensim's save(), a pickle that can run code when loaded."""


class VersionNotFound(StoreError):
    """A version, or the pointer to the current one, does not exist."""


class VersionRemoved(StoreError):
    """A version this run had started reading (its manifest was read) is gone: its manifest no longer exists and
    the pointer no longer names it. A rollback moved the pointer off it and ``jobs.versions gc`` collected it, so
    this run could not have published anyway (its conditional pointer write would conflict): retryable."""


class ConflictError(StoreError):
    """Another refresh moved the pointer between this run's start and its publish."""

    def __init__(self, ours: str, theirs: str | None, expected: str | None) -> None:
        super().__init__(
            f"conflict: the pointer moved to {theirs or 'nothing'} while this run was working from "
            f"{expected or 'an empty store'}; version {ours} was uploaded but NOT promoted. "
            f"Rerun the refresh to build on {theirs}, or promote {ours} explicitly."
        )
        self.ours, self.theirs, self.expected = ours, theirs, expected

    def __reduce__(self) -> tuple[type, tuple[str, str | None, str | None]]:
        return (type(self), (self.ours, self.theirs, self.expected))


class CacheError(StoreError):
    """The host's version cache (:mod:`jobs.storage.cache`) cannot be used: its folder cannot be created or
    written, or its disk is full. The store is fine; a trainer downloads without the cache."""


class TrainingError(RefreshError):
    """Training failed on the trainer's node: gensim raised, the spool's disk failed, a count did not add up."""


class ClusterError(RefreshError):
    """Ray failed under the run (a worker, a node, memory, lost results, a runtime environment, the training
    actor), or the cluster had no room for the training actor in time (a capacity problem, not the data's).
    The message names the stage and the partition; a rerun is safe."""


#: how every ClusterError's message ends: the infrastructure failed, not the data
RERUN = "Nothing was published; a rerun is safe."


class StoppedError(RefreshError):
    """The run was stopped from outside (SIGTERM); what it had started was cleaned up and nothing published."""

    def __init__(
        self,
        message: str = "stopped by a signal (ray job stop, a deadline, an eviction); nothing was published and a "
        "rerun is safe",
    ) -> None:
        super().__init__(message)


class QualityGateError(RefreshError):
    """The candidate failed the quality gate; it was uploaded but not promoted."""


def exit_status(error: RefreshError) -> int:
    """The process exit status for ``error`` (see the module docstring)."""
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    if isinstance(error, StoppedError):
        return EXIT_STOPPED
    if isinstance(error, (IntegrityError, VersionNotFound, PickledModelError)):
        return EXIT_REFUSED
    if isinstance(error, (ClusterError, StoreError, PartitionReadError)):
        return EXIT_RETRYABLE
    return EXIT_REFUSED


class ImportRefused(RefreshError):
    """A user's model file cannot become the first version of a lineage; the message names the file and why.
    Raised before anything is written to the store."""
