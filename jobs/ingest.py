"""What tokenizing the partitions produced: plain data, no Ray.

:func:`jobs.tokenize.stream` fills an :class:`IngestResult` as the training actor answers; the runbook
(:mod:`jobs.refresh`) reads it to decide what to train and publish, and the run's record (:mod:`jobs.runs`),
its report (:mod:`jobs.report`) and its metrics (:mod:`jobs.metrics`) read it without importing Ray::

    ingest = tokenize.stream(config, fs, partitions, trainer)
    if ingest.rejected and not config.skip_bad_partitions:
        raise BadPartitionsError(ingest.rejected)
    log.info("%d partitions, %d tokens", len(ingest.consumed), ingest.tokens)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.errors import PartitionError
from shards.partitions import Partition


@dataclass
class IngestResult:
    """What streaming the partitions through the trainer produced."""

    consumed: list[Partition] = field(default_factory=list)
    rejected: list[PartitionError] = field(default_factory=list)
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    pieces: int = 0
    bytes: int = 0
    rejected_bytes: int = 0
    seconds: float = 0.0
    fallback: str | None = None  # why tokenizing moved into the trainer's reservation, if it did
    in_trainer: bool = False  # a small increment: the training actor tokenized it, with no task
