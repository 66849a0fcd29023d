"""Update quality for every architecture the job offers: the drift benchmark over Word2Vec and FastText, CBOW and
skip-gram, several seeds, one table.

    python -m tests.benchmarks.quality                                   # 4 architectures x 3 seeds, ~25 min
    python -m tests.benchmarks.quality --arch ft-cbow --seeds 0,1 --variant "ua=--update-alpha 0.025"

Each cell runs :mod:`tests.benchmarks.drift` (the planted corpus: a base day, then three days of updates with new,
rare and moved words) for one architecture and one seed, with the job's defaults, plain gensim's incremental
recipe (``build_vocab(update=True)`` + ``train()``) and a full retrain on all days, and reads back its JSON. The
table shows the mean over seeds of precision@10 for old words (retention), frequent new words (acquisition),
rare new words (with how many made it into the vocabulary) and moved words, and the job's ratios against the
plain update and the full retrain. The goal, per architecture: old and new words at least as good as the plain
update, and within 5% of the full retrain.

It is not collected by pytest: it takes minutes and measures quality, not correctness.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from statistics import mean
from typing import Any

from tests.benchmarks import drift

log = logging.getLogger("tests.benchmarks.quality")

GOAL = ("old", "new_frequent")


def cell(arch: str, seed: int, scale: float, variants: list[str], out: Path) -> list[dict[str, Any]]:
    """The drift benchmark's rows for one architecture and one seed."""
    target = out / f"{arch}-seed{seed}.json"
    argv = ["--arch", arch, "--seed", str(seed), "--scale", str(scale), "--only", "remember", "--out", str(target)]
    for spec in variants:
        argv += ["--variant", spec]
    drift.main(argv)
    rows: list[dict[str, Any]] = json.loads(target.read_text())["rows"]
    return rows


def summarize(rows_by_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean over seeds, per approach, of the scores and of the ratios against plain gensim and the retrain."""
    names = [r["approach"] for r in rows_by_seed[0]]
    summary = []
    for name in names:
        rows = [next(r for r in seed if r["approach"] == name) for seed in rows_by_seed]
        row: dict[str, Any] = {"approach": name}
        for key in ("old", "new_frequent", "new_rare", "moved", "new_rare_in_vocab", "seconds"):
            row[key] = mean(float(r[key]) for r in rows)
        for base in ("plain", "full"):
            for g in (*GOAL, "moved"):
                row[f"{g}_vs_{base}"] = mean(float(r[f"{g}_vs_{base}"]) for r in rows)
        row["meets_target"] = name.startswith("job") and all(
            row[f"{g}_vs_plain"] >= 1 and row[f"{g}_vs_full"] >= 0.95 for g in GOAL
        )
        summary.append(row)
    return summary


def render(table: dict[str, list[dict[str, Any]]], seeds: list[int]) -> str:
    head = (
        f"{'architecture':<19} {'approach':<28} {'old':>5} {'new':>5} {'rare':>5} {'(n)':>4} {'moved':>5} | "
        f"{'/plain old':>10} {'new':>5} | {'/full old':>9} {'new':>5} | goal"
    )
    lines = [
        f"P@10 within the planted group, mean over seeds {seeds}; old = retention, new = acquisition (frequent "
        "new words), rare = rare new words in the vocabulary (n of them), moved = words that changed group",
        head,
        "-" * len(head),
    ]
    for arch, rows in table.items():
        for r in rows:
            goal = ("met" if r["meets_target"] else "missed") if r["approach"].startswith("job") else "-"
            rare = f"{r['new_rare']:>5.3f}" if r["new_rare_in_vocab"] else "    -"
            lines.append(
                f"{arch:<19} {r['approach'][:28]:<28} {r['old']:>5.3f} {r['new_frequent']:>5.3f} {rare} "
                f"{r['new_rare_in_vocab']:>4.0f} {r['moved']:>5.3f} | {r['old_vs_plain']:>10.3f} "
                f"{r['new_frequent_vs_plain']:>5.3f} | {r['old_vs_full']:>9.3f} {r['new_frequent_vs_full']:>5.3f} | "
                f"{goal}"
            )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.quality", description=__doc__.splitlines()[0])
    p.add_argument(
        "--arch",
        action="append",
        choices=sorted(drift.ARCHITECTURES),
        help="architectures to measure (repeatable; default: all four)",
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated corpus seeds (default 0,1,2)")
    p.add_argument("--scale", type=float, default=0.5, help="size of the planted corpus (drift's --scale)")
    p.add_argument(
        "--variant", action="append", default=[], metavar="NAME=FLAGS", help="another job row (drift's --variant)"
    )
    p.add_argument("--out", type=Path, default=Path(".bench/quality"), help="folder for the per-cell JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    archs = args.arch or list(drift.ARCHITECTURES)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    table: dict[str, list[dict[str, Any]]] = {}
    for arch in archs:
        per_seed = [cell(arch, seed, args.scale, args.variant, args.out) for seed in seeds]
        label = drift.Params(**drift.ARCHITECTURES[arch]).arch
        table[label] = summarize(per_seed)
        log.info("%s done", label)
    text = render(table, seeds)
    print(text)
    (args.out / "quality.txt").write_text(text + "\n")
    (args.out / "quality.json").write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    sys.exit(main())
