"""The root of the project's exception hierarchy, and the errors raised while reading partitions.

The whole tree (the rest lives in :mod:`jobs.errors`, which builds on this module)::

    RefreshError                 anything the refresh reports as a failure (exit status 1)
    ├── ConfigError              a flag, option or config file is invalid
    ├── PartitionError           one partition cannot be read or tokenized (names the shard and the cause)
    │   └── BadPartitionsError   several partitions are bad; lists every one with its cause
    ├── StoreError               the model store cannot be read or written
    │   ├── IntegrityError       a file's size or SHA-256 differs from its manifest, or a file is missing
    │   ├── VersionNotFound      a version, or the pointer, does not exist
    │   └── ConflictError        another refresh moved the pointer first; this version stays unpromoted
    ├── TrainingError            the training actor failed (it died, or gensim raised)
    └── QualityGateError         the candidate is worse than its parent; uploaded, not promoted

``shards`` raises only the errors defined here; ``jobs`` defines the rest.
"""

from __future__ import annotations


class RefreshError(Exception):
    """Base class of every error the refresh job reports to its user."""


class ConfigError(RefreshError, ValueError):
    """A flag, option or config value is invalid; the message says which and why."""


class PartitionError(RefreshError):
    """One partition cannot be read or tokenized."""

    def __init__(self, uri: str, cause: str) -> None:
        super().__init__(f"{uri}: {cause}")
        self.uri = uri
        self.cause = cause

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # survive pickling across Ray workers
        return (type(self), (self.uri, self.cause))


class BadPartitionsError(RefreshError):
    """Several partitions are bad. ``errors`` lists each with its cause, in partition order."""

    def __init__(self, errors: list[PartitionError]) -> None:
        lines = "\n".join(f"  - {e.uri}: {e.cause}" for e in errors)
        super().__init__(
            f"{len(errors)} bad partition(s); nothing was published:\n{lines}\n"
            "Repair or remove them, or rerun with --skip-bad-partitions to train on the rest."
        )
        self.errors = errors

    def __reduce__(self) -> tuple[type, tuple[list[PartitionError]]]:
        return (type(self), (self.errors,))
