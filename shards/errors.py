"""The root of the project's exception hierarchy, and the errors raised while reading partitions.

``shards`` may not import ``jobs``, so the root (:class:`RefreshError`) and the errors ``shards`` raises live
here; :mod:`jobs.errors` defines the rest and draws the whole tree.
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


class PartitionReadError(RefreshError):
    """Reading a partition failed for a reason outside its bytes (the network, the object store, the disk).

    Not a :class:`PartitionError`: the partition is not bad. The tokenizing task is retried, as when a worker
    dies; an error that persists fails the run, and the partition is not consumed, so a rerun reads it.
    """

    def __init__(self, uri: str, cause: str) -> None:
        super().__init__(
            f"reading {uri} failed: {cause}. This is the store or the network, not the data: the read was "
            "retried; rerun when the input is reachable (the partition was not consumed)"
        )
        self.uri = uri
        self.cause = cause

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.uri, self.cause))


class FieldMissing(PartitionError):
    """No line of one piece of a split JSON Lines file has the text field. The partition is bad only when no
    piece has it, which only the pieces together can tell."""


class TableError(RefreshError):
    """A table (Delta Lake, Apache Iceberg) cannot be read incrementally as it is: it uses a feature the reader
    cannot honour, or the history the lineage needs was vacuumed or expired. The message names the table, what
    happened, and what the user can do."""


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
