"""A month of nightly refreshes with churn: vocabulary size, trainer memory and refresh time, with and without
``--max-vocab``, and what ``--count-half-life`` keeps.

    python -m tests.benchmarks.lifecycle                    # 30 days, 5 lineages; ~25 minutes on 2 cores
    python -m tests.benchmarks.lifecycle --days 10 --only uncapped,capped

Every day brings ``day_tokens`` tokens: a stable core vocabulary (Zipf frequencies, so its tail is used only
every few days), ``churn`` strings never seen before and never seen again (names, typos, hashtags), each 5 to
8 times, so each one reaches ``min_count``, and ``trends``: topic words used heavily for one week only (a new
set each week). Each lineage runs the same 30 days through the real training actor (:class:`Trainer`: spool,
vocabulary step, ``corpus_file`` training, gate, save, upload to a local store), without Ray, each refresh in
a fresh process as each run gets a fresh actor. Per day it records the vocabulary size, the refresh's seconds
(the actor's work from the first partition to the uploaded version, with its phases) and the peak private
memory of the process during it (RssAnon, sampled at 50 Hz; ``model_mb`` is the part above what the process
held before the refresh). At the end it scores what each lineage kept: the share of the core words used about
daily, and of those used every few days, and the share of the first and of the last week's trend words.

The table's ratios compare each lineage with the uncapped one on the same day. It is not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.config import GateConfig, TrainingConfig, UpkeepConfig
from jobs.lineage.standing import STANDING
from jobs.storage import LocalStore
from jobs.storage.publish import fetch_verified, model_files, read_manifest, write_manifest
from jobs.training import model as gmodel
from jobs.training.trainer import Trainer, TrainRequest
from shards.partitions import discover
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions, tokenize_partition

log = logging.getLogger("tests.benchmarks.lifecycle")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MB = 1 << 20


@dataclass(frozen=True)
class Spec:
    days: int = 30
    core: int = 12_000  # stable vocabulary, Zipf (exponent 1.3): its tail is used about once in five days
    day_tokens: int = 100_000
    churn: int = 1_000  # new strings a day, each 5-8 times
    trends: int = 40  # topic words of the week
    trend_per_day: int = 60  # uses of each trend word a day, during its week
    sentence: int = 20
    seed: int = 0


LINEAGES: dict[str, UpkeepConfig] = {
    "uncapped": UpkeepConfig(max_vocab=0, count_half_life=0),
    "capped": UpkeepConfig(max_vocab=15_000, count_half_life=0),
    "capped half-life 7": UpkeepConfig(max_vocab=15_000, count_half_life=7),
    "capped half-life 30": UpkeepConfig(max_vocab=15_000, count_half_life=30),
    "capped half-life 180": UpkeepConfig(max_vocab=15_000, count_half_life=180),
}
TRAINING = TrainingConfig(vector_size=50, epochs=2, workers=2, min_count=5, pending_cap=200_000)


def name(prefix: str, i: int) -> str:
    out = ""
    while True:
        out, i = LETTERS[i % 26] + out, i // 26
        if not i:
            return prefix + out


def core_probabilities(spec: Spec) -> np.ndarray:
    weights = 1.0 / (np.arange(spec.core) + 2.7) ** 1.3
    return weights / weights.sum()


def day_documents(spec: Spec, day: int) -> list[str]:
    """One day's documents: core words, the day's churn strings and the week's trend words, shuffled."""
    rng = np.random.default_rng(spec.seed * 1000 + day)
    core = [name("c", i) for i in range(spec.core)]
    tokens = list(rng.choice(core, size=spec.day_tokens, p=core_probabilities(spec)))
    extra = [name(f"x{LETTERS[day % 26]}{LETTERS[day // 26]}", i) for i in range(spec.churn)]
    extra = [w for w in extra for _ in range(int(rng.integers(5, 9)))]
    week = day // 7
    extra += [name(f"t{LETTERS[week]}", i) for i in range(spec.trends)] * spec.trend_per_day
    tokens = list(rng.permutation(np.array(tokens + extra, dtype=object)))
    return [" ".join(tokens[i : i + spec.sentence]) for i in range(0, len(tokens), spec.sentence)]


class PeakMemory:
    """The peak private resident memory (RssAnon) of this process while the block runs."""

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = self.read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.read())

    @staticmethod
    def read() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0


def refresh_day(spec: Spec, upkeep: UpkeepConfig, data: Path, work: Path, day: int) -> dict[str, Any]:
    """One nightly refresh through the training actor, on the version the previous day published."""
    store = LocalStore(work / "store")
    fs = pafs.LocalFileSystem()
    pointer = store.read_pointer()
    (partition,) = discover(fs, str(data / f"day={day:02d}"))
    version = f"v{day:02d}"
    with PeakMemory() as memory:
        start = time.perf_counter()
        trainer = Trainer(str(work))
        trainer.ingest(tokenize_partition(fs, partition, ReadOptions(), TokenizerConfig()))
        parent = pointer.version if pointer else None
        request = TrainRequest(version, parent, "word2vec", TRAINING, GateConfig(), upkeep=upkeep)
        candidate = trainer.finish(store, request)
        seconds = time.perf_counter() - start
    write_manifest(store, version, {"version": version, "model": "word2vec", "files": candidate.files})
    store.swap_pointer(version, pointer)
    return {
        "day": day,
        "vocab": candidate.vocab_size,
        "removed": candidate.upkeep["removed"],
        "seconds": round(seconds, 3),
        "timings": {k: round(v, 3) for k, v in candidate.timings.items()},
        "peak_mb": round(memory.peak / MB, 1),
        "model_mb": round((memory.peak - memory.start) / MB, 1),
        "standing_file": STANDING in candidate.files,
    }


def _vocabulary(store: LocalStore, version: str | None) -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        manifest = read_manifest(store, str(version))
        folder = fetch_verified(store, str(version), Path(tmp), model_files(manifest))
        return set(gmodel.load(folder / gmodel.MODEL_DIR).wv.index_to_key)


def kept_shares(spec: Spec, words: set[str]) -> dict[str, float]:
    daily_uses = core_probabilities(spec) * spec.day_tokens
    bands = {
        "core, used >= 2 a day": daily_uses >= 2,
        "core, used 0.5-2 a day": (daily_uses >= 0.5) & (daily_uses < 2),
        "core, used < 0.5 a day": daily_uses < 0.5,
    }
    shares = {
        band: round(float(np.mean([name("c", i) in words for i in np.flatnonzero(mask)])), 3)
        for band, mask in bands.items()
    }
    last_week = (spec.days - 1) // 7
    for label, week in (("trend words of the first week", 0), ("trend words of the last week", last_week)):
        shares[label] = round(float(np.mean([name(f"t{LETTERS[week]}", i) in words for i in range(spec.trends)])), 3)
    return shares


def _child(spec: Spec, key: str, data: Path, work: Path, day: int, out: Path) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    out.write_text(json.dumps(refresh_day(spec, LINEAGES[key], data, work, day)))


def run_lineage(spec: Spec, key: str, data: Path, work: Path) -> dict[str, Any]:
    """The days of one lineage, each refresh in a fresh process (as each run gets a fresh training actor), so
    each day's peak memory is its own."""
    work.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    days = []
    for day in range(spec.days):
        out = work / f"day{day}.json"
        child = context.Process(target=_child, args=(spec, key, data, work, day, out))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"lineage {key!r} failed on day {day} (exit {child.exitcode})")
        days.append(json.loads(out.read_text()))
        row = days[-1]
        log.info("%s day %d: %d words, %.1f s, %.0f MB", key, day, row["vocab"], row["seconds"], row["peak_mb"])
    store = LocalStore(work / "store")
    return {"days": days, "kept": kept_shares(spec, _vocabulary(store, f"v{spec.days - 1:02d}"))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.lifecycle", description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=Spec.days)
    p.add_argument("--only", default="", help="comma-separated lineages, of: " + ", ".join(LINEAGES))
    p.add_argument("--out", type=Path, default=Path(".bench/lifecycle.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    spec = Spec(days=args.days)
    keys = [k for k in LINEAGES if not args.only or k in args.only.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as tmp:
        data = Path(tmp) / "data"
        for day in range(spec.days):
            target = data / f"day={day:02d}" / "part-0.parquet"
            target.parent.mkdir(parents=True)
            pq.write_table(pa.table({"text": day_documents(spec, day)}), target)
        log.info("corpus written: %d days", spec.days)
        for key in keys:
            results[key] = run_lineage(spec, key, data, Path(tmp) / key.replace(" ", "_"))
    print(table(spec, results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"spec": asdict(spec), "training": asdict(TRAINING), "results": results}, indent=2))
    return 0


def table(spec: Spec, results: dict[str, Any]) -> str:
    base = results.get("uncapped")
    shown = sorted({0, 4, 9, 14, 19, 24, spec.days - 1} & set(range(spec.days)))
    lines = [
        "| lineage | day | vocabulary | refresh s | peak MB | vs uncapped: vocabulary, s, MB |",
        "|---|---|---|---|---|---|",
    ]
    for key, result in results.items():
        for d in shown:
            row = result["days"][d]
            ratio = ""
            if base and key != "uncapped":
                b = base["days"][d]
                shares = (row[k] / b[k] for k in ("vocab", "seconds", "peak_mb"))
                ratio = ", ".join(f"{x:.2f}" for x in shares)
            lines.append(
                f"| {key} | {d + 1} | {row['vocab']:,} | {row['seconds']:.2f} | {row['peak_mb']:.0f} | {ratio} |"
            )
    for key, result in results.items():
        first, last = result["days"][min(4, spec.days - 1)], result["days"][-1]
        lines.append(
            f"\n{key}: day {spec.days} vs day 5: vocabulary {last['vocab'] / first['vocab']:.2f}x, "
            f"time {last['seconds'] / first['seconds']:.2f}x, peak memory {last['peak_mb'] / first['peak_mb']:.2f}x"
        )
    lines.append("\n| lineage | " + " | ".join(next(iter(results.values()))["kept"]) + " |")
    lines.append("|---" * (1 + len(next(iter(results.values()))["kept"])) + "|")
    for key, result in results.items():
        lines.append(f"| {key} | " + " | ".join(f"{v:.2f}" for v in result["kept"].values()) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
