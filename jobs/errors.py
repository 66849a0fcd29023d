"""The refresh job's exceptions. The whole tree::

    RefreshError                 anything the refresh reports as a failure (exit status 1)
    ├── ConfigError              a flag, option or config file is invalid
    ├── PartitionError           one partition cannot be read or tokenized (names the shard and the cause)
    ├── PartitionReadError       reading a partition failed outside its bytes (store, network); retried
    ├── BadPartitionsError       several partitions are bad; lists every one (a PartitionError) with its cause
    ├── StoreError               the model store cannot be read or written
    │   ├── IntegrityError       a file's size or SHA-256 differs from its manifest, a file is missing, or a
    │   │                        model file is not the plain data its format allows (refused, never unpickled)
    │   ├── PickledModelError    the version's model is a pickle (the previous format); read only on request
    │   ├── VersionNotFound      a version, or the pointer, does not exist
    │   └── ConflictError        another refresh moved the pointer first; this version stays unpromoted
    ├── TrainingError            the training actor failed (it died, or gensim raised)
    ├── QualityGateError         the candidate is worse than its parent; uploaded, not promoted
    └── ImportRefused            a model file cannot be imported (names the file and the cause)

The first five live in :mod:`shards.errors` (``shards`` may not import ``jobs``) and are re-exported here, so
callers import every error from this module.
"""

from __future__ import annotations

from shards.errors import BadPartitionsError, ConfigError, PartitionError, PartitionReadError, RefreshError

__all__ = [
    "BadPartitionsError",
    "ConfigError",
    "ConflictError",
    "ImportRefused",
    "IntegrityError",
    "PartitionError",
    "PartitionReadError",
    "PickledModelError",
    "QualityGateError",
    "RefreshError",
    "StoreError",
    "TrainingError",
    "VersionNotFound",
]


class StoreError(RefreshError):
    """The model store cannot be read or written."""


class IntegrityError(StoreError):
    """A version's file is missing, or its size or SHA-256 differs from the manifest. Nothing was loaded."""


class PickledModelError(StoreError):
    """The version stores its model with gensim's save(), a pickle that can run code when loaded."""


class VersionNotFound(StoreError):
    """A version, or the pointer to the current one, does not exist."""


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


class TrainingError(RefreshError):
    """The training actor failed: gensim raised, or the actor or its node died."""


class QualityGateError(RefreshError):
    """The candidate failed the quality gate; it was uploaded but not promoted."""


class ImportRefused(RefreshError):
    """A user's model file cannot become the first version of a lineage; the message names the file and why.
    Raised before anything is written to the store."""
