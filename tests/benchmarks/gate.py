"""What the quality gate costs the trainer at a large vocabulary, phase by phase, and what it decides.

    python -m tests.benchmarks.gate                             # 1M words x 100 dims; ~1 minute on 2 cores
    python -m tests.benchmarks.gate --vocab 250000 --rounds 3
    PYTHONPATH=/path/to/other/checkout python -m tests.benchmarks.gate    # the same phases of another checkout

The parent is a random-ish model with neighbourhoods worth keeping: ``--vocab`` words in groups of 50 around
random centres, Zipf counts. The candidate is what an update leaves in the trainer: the same object, its
``--moved`` most frequent words moved a little (``--step`` of their norm, in random directions) and
``--new-words`` words appended. The phases are those of the trainer's ``evaluate`` phase, in its order:

* ``baseline``: the parent's side (on the trainer, before the vocabulary grows, in the parent-loading thread);
* ``evaluate``: the candidate's side and the decision;
* ``drift``: the drift figures, the parent's vectors read in blocks from its saved file;
* ``neighbours``: the nearest neighbours of 20 new words, for the report.

Each is timed in wall-clock and CPU seconds (all threads; robust to other load on a shared machine, which the
wall clock is not); each row takes the best of ``--rounds``. It calls only functions every checkout since the
one-pass neighbour search has (``baseline``, ``evaluate``, ``drift.measure``, ``neighbours``), so running it
against another checkout (``PYTHONPATH``) gives that checkout's numbers for the same command. Not collected
by pytest.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gensim.models import KeyedVectors

from jobs.config import GateConfig
from jobs.training import drift
from jobs.training import evaluate as gate


def parent_model(vocab: int, dims: int, seed: int) -> KeyedVectors:
    """``vocab`` words in groups of 50 around random centres (so each has 49 close neighbours), Zipf counts."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(-(-vocab // 50), dims)).astype(np.float32)
    matrix = centres[np.arange(vocab) // 50] + 0.5 * rng.normal(size=(vocab, dims)).astype(np.float32)
    kv = KeyedVectors(dims)
    kv.add_vectors([f"w{i}" for i in range(vocab)], matrix[rng.permutation(vocab)])
    kv.expandos["count"] = (1e9 / (np.arange(vocab) + 2.7)).astype(np.int64)
    return kv


def update(kv: KeyedVectors, moved: int, step: float, new_words: int, seed: int) -> list[str]:
    """Move the ``moved`` most frequent words by ``step`` of their norm and append ``new_words`` words, in place."""
    rng = np.random.default_rng(seed + 1)
    noise = rng.normal(size=(moved, kv.vector_size)).astype(np.float32)
    noise *= step * np.linalg.norm(kv.vectors[:moved], axis=1, keepdims=True) / np.linalg.norm(noise, axis=1)[:, None]
    kv.vectors[:moved] += noise
    new = [f"new{i}" for i in range(new_words)]
    near = kv.vectors[rng.integers(0, len(kv), new_words)]
    kv.add_vectors(new, near + 0.1 * rng.normal(size=near.shape).astype(np.float32))
    kv.expandos["count"] = np.concatenate([kv.expandos["count"][: len(kv) - new_words], np.full(new_words, 10)])
    kv.norms = None  # the vectors changed in place, as training changes them
    return new


def timed(phases: dict[str, list[tuple[float, float]]], name: str, work: Callable[[], Any]) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    phases.setdefault(name, []).append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def one_round(args: argparse.Namespace, folder: Path, phases: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    kv = parent_model(args.vocab, args.dims, args.seed)
    np.save(folder / "vectors.npy", kv.vectors)
    config = GateConfig()
    before = timed(phases, "baseline", lambda: gate.baseline(kv, config, {}))
    new = update(kv, args.moved, args.step, args.new_words, args.seed)
    result = timed(phases, "evaluate", lambda: gate.evaluate(before, kv, config, {}))
    rows = np.arange(args.vocab)
    timed(phases, "drift", lambda: drift.measure(folder / "vectors.npy", kv, rows, result["neighbours_kept"]))
    timed(phases, "neighbours", lambda: gate.neighbours(kv, new[:20]))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.gate", description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, default=100)
    p.add_argument("--moved", type=int, default=50_000, help="most frequent words the update moves")
    p.add_argument("--step", type=float, default=0.2, help="how far each moves, as a share of its norm")
    p.add_argument("--new-words", type=int, default=2_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = p.parse_args(argv)
    phases: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        for _ in range(args.rounds):
            result = one_round(args, Path(tmp), phases)
    best = {name: (min(w for w, _ in runs), min(c for _, c in runs)) for name, runs in phases.items()}
    print(f"gate at {args.vocab:,} words x {args.dims} dims (best of {args.rounds}; wall s / CPU s)")
    for name, (wall, cpu) in best.items():
        print(f"  {name:<11} {wall:6.2f} / {cpu:6.2f}")
    total = [sum(v[i] for v in best.values()) for i in (0, 1)]
    print(f"  {'total':<11} {total[0]:6.2f} / {total[1]:6.2f}")
    print("decision:", "passed" if result["passed"] else "FAILED", result["reasons"])
    for check in result["checks"]:
        print(f"  {check['name']}: {check.get('candidate')} ({'ok' if check['passed'] else 'fail'})")
    if args.out:
        args.out.write_text(
            json.dumps({"args": vars(args) | {"out": str(args.out)}, "best": best, **result}, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
