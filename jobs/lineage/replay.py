"""Replay: a bounded, uniform sample of every sentence the lineage has trained on, mixed into updates.

An incremental update trains only on new data, so old words that the new data rarely mentions drift as the
shared output layer moves. With ``--replay-fraction F`` the trainer appends ``F × new sentences`` sentences
drawn from this reservoir to the spooled corpus before training, and then folds the new sentences into the
reservoir (reservoir sampling, Algorithm R, so it stays a uniform sample of all history, at most
``--replay-max-sentences`` long). The reservoir is stored with each version as ``replay.parquet``.

    reservoir = load(parent_folder / RESERVOIR)
    spool.write(sample(reservoir, k=1000, seed=1), "the replay reservoir")   # or: sample_for(reservoir, n, config)
    save(update(reservoir, this_runs_sentences, config), out / RESERVOIR)
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.config import TrainingConfig

RESERVOIR = "replay.parquet"


@dataclass
class Reservoir:
    lines: list[bytes]
    seen: int


def empty() -> Reservoir:
    return Reservoir([], 0)


def load(path: Path) -> Reservoir:
    if not path.exists():
        return empty()
    table = pq.read_table(path)
    seen = int((table.schema.metadata or {}).get(b"seen", b"0"))
    return Reservoir(table.column("line").to_pylist(), seen)


def save(reservoir: Reservoir, path: Path) -> None:
    table = pa.table({"line": pa.array(reservoir.lines, pa.binary())})
    pq.write_table(table.replace_schema_metadata({"seen": str(reservoir.seen)}), path, compression="zstd")


def sample(reservoir: Reservoir, k: int, seed: int) -> bytes:
    """Up to ``k`` reservoir sentences, as LineSentence text to spool after this run's own."""
    if k <= 0 or not reservoir.lines:
        return b""
    chosen = random.Random(seed).sample(reservoir.lines, min(k, len(reservoir.lines)))
    return b"".join(line + b"\n" for line in chosen)


def sample_for(reservoir: Reservoir, sentences: int, config: TrainingConfig) -> bytes:
    """The sample to train beside this run's ``sentences`` new sentences: ``--replay-fraction`` of their number
    (nothing when it is 0), drawn with the run's seed."""
    if config.replay_fraction <= 0:
        return b""
    return sample(reservoir, round(config.replay_fraction * sentences), config.seed)


def update(reservoir: Reservoir, new_lines: Iterable[bytes], config: TrainingConfig) -> Reservoir:
    """Fold this run's sentences (without their newlines) into the reservoir."""
    rng = random.Random(config.seed + reservoir.seen)
    lines, seen, cap = list(reservoir.lines), reservoir.seen, config.replay_max_sentences
    for line in new_lines:
        seen += 1
        if len(lines) < cap:
            lines.append(line)
        else:
            slot = rng.randrange(seen)
            if slot < cap:
                lines[slot] = line
    return Reservoir(lines, seen)


def carried(reservoir: Reservoir, new_lines: Iterable[bytes], config: TrainingConfig) -> Reservoir | None:
    """The reservoir the new version carries, this run's sentences folded in (:func:`update`); None when the
    lineage keeps none (``--replay-fraction 0``), and then ``new_lines`` is not read."""
    return update(reservoir, new_lines, config) if config.replay_fraction > 0 else None
