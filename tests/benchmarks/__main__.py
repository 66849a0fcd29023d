"""The benchmark suite: the refresh job against plain gensim, as one table measured in one run.

    python -m tests.benchmarks                          # ~20M tokens; prints the table, writes .bench/bench-*.json
    python -m tests.benchmarks --tokens 2000000 --skip-memory                   # a quick look
    python -m tests.benchmarks --sections large-model --vocab 250000           # a big model, a small increment
    python -m tests.benchmarks --sections refresh --tokens 12000000 --base-tokens 4000000 --skip-memory
                                                                  # a small model, a big increment (8M new tokens)

Steps, in order:

1. make (or find cached) the synthetic corpus (:mod:`tests.benchmarks.corpus`), and the 1x corpus of the
   memory rows;
2. tokenizer throughput on one core (row 1);
3. the job on a local Ray: a first model from the first partition (or the oldest holding ``--base-tokens``),
   then the timed update on the rest;
4. gensim on the same data: ``build_vocab(update=True)`` + ``train()`` in ``corpus_file`` and iterable mode on
   the corpus tokenized as the actor spools it (row 2, and ``train()`` alone for row 3), then the one-process
   recipe straight from Parquet (row 3). Steps 3 and 4 repeat ``--rounds`` times, interleaved, and each row
   takes its best time: on a shared machine a burst of load then costs one attempt, not a whole row;
5. peak memory of the training actor and the driver at 1x and 4x the data, each in a process of its own,
   then of the actor again on corpora whose vocabulary is complete at 1x (row 4; ``--skip-memory`` leaves
   it out);
6. the large-model section (:mod:`tests.benchmarks.large_model`): a cached model of ``--vocab`` words
   refreshed with ``--increment-tokens`` new tokens, for Word2Vec and FastText;
7. print the table and write it, with the parameters, the machine and the raw timings, as JSON under ``--out``.

``--sections`` picks the parts: ``refresh`` (steps 1-5) and ``large-model`` (step 6), both by default.

Exit status 1 when a row misses its target. Time grows with ``--tokens`` x ``--epochs`` x ``--rounds``: on a
2-core VM, 4M tokens take about 10 minutes and the default 20M about 50. It is kept out of CI: it needs the
whole machine, and its targets are about this code against gensim, not about correctness. Run it on an
otherwise idle machine; the table prints the load average, and row 2's note the CPU seconds of training,
which load from other processes distorts least.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Ray reads its authentication mode once, when it is imported: set it before anything imports Ray. Token
# authentication, as a local Ray defaults to, but said explicitly so Ray neither warns nor guesses; the probe
# processes inherit it.
os.environ.setdefault("RAY_AUTH_MODE", "token")

from tests.benchmarks import corpus, large_model
from tests.benchmarks import refresh as bench

log = logging.getLogger("tests.benchmarks")

FIXED_VOCABULARY = 10_000  # pseudo-words in the corpora of the fixed-vocabulary memory row


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=20_000_000, help="words in the corpus (default 20M)")
    p.add_argument("--out", type=Path, default=Path(".bench"), help="folder for the JSON result and scratch files")
    p.add_argument("--cache", type=Path, help="folder of cached corpora (default: OUT/corpora)")
    p.add_argument("--skip-memory", action="store_true", help="leave out the peak-memory rows")
    p.add_argument(
        "--memory-tokens",
        type=int,
        help="words in the 1x corpus of the memory rows (default: a quarter of --tokens, so 4x is it)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="times the update and its baselines are measured, interleaved; rows take the best (default 2)",
    )
    p.add_argument(
        "--tokenizer-partitions",
        type=int,
        default=20,
        help="partitions the tokenizer row reads (default 20, ~10M words)",
    )
    p.add_argument(
        "--base-tokens",
        type=int,
        default=0,
        help="tokens of the parent model of the update rows: the oldest partitions holding them (default: one)",
    )
    p.add_argument("--epochs", type=int, default=bench.Params.epochs)
    p.add_argument("--vector-size", type=int, default=bench.Params.vector_size)
    p.add_argument("--window", type=int, default=bench.Params.window)
    p.add_argument("--min-count", type=int, default=bench.Params.min_count)
    p.add_argument("--workers", type=int, default=2, help="training threads, and the CPUs of the local Ray")
    p.add_argument(
        "--sections",
        nargs="+",
        choices=["refresh", "large-model"],
        default=["refresh", "large-model"],
        help="which parts to run (default both)",
    )
    large = p.add_argument_group("large-model section")
    large_model.add_arguments(large)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("gensim").setLevel(logging.WARNING)
    a = parse(argv)
    started = time.perf_counter()
    params = bench.Params(
        epochs=a.epochs, vector_size=a.vector_size, window=a.window, min_count=a.min_count, workers=a.workers
    )
    # One partition size for every corpus: the 4x corpus has 4x the partitions, as a growing dataset would.
    partition_tokens = min(500_000, max(10_000, (a.memory_tokens or a.tokens // 4) // 4))
    spec = corpus.CorpusSpec(tokens=a.tokens, partition_tokens=partition_tokens)
    cache = a.cache or a.out / "corpora"
    a.out.mkdir(parents=True, exist_ok=True)

    rows: list[bench.Row] = []
    details: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="run-", dir=a.out)).resolve()  # Ray workers do not share our cwd
    try:
        if "refresh" in a.sections:
            refresh_section(a, spec, params, cache, work, rows, details)
        if "large-model" in a.sections:
            large_rows, details["large_model"] = large_model.section(
                a.kinds, large_model.spec_of(a), params, (a.out / "large").resolve(), work, a.large_rounds
            )
            rows.extend(large_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # 7. Report.
    header = describe(spec, params)
    print(table(rows, header))
    result = {
        "header": header,
        "rows": [dataclasses.asdict(r) for r in rows],
        "details": details,
        "corpus": dataclasses.asdict(spec),
        "params": dataclasses.asdict(params),
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python -m tests.benchmarks", *(argv if argv is not None else sys.argv[1:])]),
    }
    path = a.out / time.strftime("bench-%Y%m%dT%H%M%S.json")
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwritten to {path} ({result['seconds']:.0f}s in all)")
    return 0 if all(r.passed for r in rows) else 1


def refresh_section(
    a: argparse.Namespace,
    spec: corpus.CorpusSpec,
    params: bench.Params,
    cache: Path,
    work: Path,
    rows: list[bench.Row],
    details: dict[str, Any],
) -> None:
    """Steps 1-5: the tokenizer, the update against gensim, and peak memory, on the synthetic corpus."""
    memory_tokens = a.memory_tokens or a.tokens // 4
    partition_tokens = spec.partition_tokens
    # 1. Corpora.
    root = corpus.ensure(spec, cache)
    partitions = bench.partitions_of(root)
    if len(partitions) < 2:
        raise SystemExit("the corpus needs at least 2 partitions (one for the first model): raise --tokens")

    # 2. Tokenizer, one core.
    rows.append(bench.tokenizer_row(root, a.tokenizer_partitions))
    log.info("row: %s", rows[-1])

    # 3-4. The job's update and gensim's on the same data, interleaved, best of --rounds.
    base = max(1, -(-a.base_tokens // partition_tokens))  # the partitions of the parent model
    update = bench.measure_update(root, params, work, a.rounds, base)
    details["update"] = dataclasses.asdict(update)
    rows.append(bench.training_row(update, params))
    rows.extend(bench.end_to_end_rows(update))
    update.spool.path.unlink()

    # 5. Memory, 1x and 4x, each in its own process.
    if not a.skip_memory:
        small = corpus.ensure(dataclasses.replace(spec, tokens=memory_tokens), cache)
        large = corpus.ensure(dataclasses.replace(spec, tokens=4 * memory_tokens), cache)
        note = (
            f"1x = {memory_tokens:,} words, 4x = {4 * memory_tokens:,}, in {partition_tokens:,}-word "
            "partitions; 1 epoch (peak memory does not depend on epochs); each run updates a model of "
            "its first partition; VmHWM of the actor process and of the driver process"
        )
        memory, details["memory"] = bench.memory_rows(small, large, dataclasses.replace(params, epochs=1), work, note)
        rows.extend(memory)
        # The same with a vocabulary every word of which reaches min_count at 1x: what remains is what
        # the actor keeps of the corpus itself, apart from a model that grows with its vocabulary.
        fixed = dataclasses.replace(spec, tokens=memory_tokens, vocabulary=FIXED_VOCABULARY)
        small = corpus.ensure(fixed, cache)
        large = corpus.ensure(dataclasses.replace(fixed, tokens=4 * memory_tokens), cache)
        memory, details["memory_fixed_vocabulary"] = bench.memory_rows(
            small,
            large,
            dataclasses.replace(params, epochs=1),
            work,
            note,
            who=("actor",),
            qualifier=f"vocabulary fixed at {FIXED_VOCABULARY:,} words",
        )
        rows.extend(memory)


def describe(spec: corpus.CorpusSpec, params: bench.Params) -> list[str]:
    m = machine()
    return [
        f"corpus: {spec.tokens:,} words in {spec.partitions} Parquet partitions of {spec.partition_tokens:,}, "
        f"Zipf {spec.zipf} over {spec.vocabulary:,} pseudo-words, seed {spec.seed}",
        f"params (job and every baseline): word2vec CBOW, negative sampling, {params.describe()}",
        f"machine: {m['cpus']} CPUs, {m['memory_gb']} GiB, Python {m['python']}, gensim {m['gensim']}, "
        f"ray {m['ray']}, pyarrow {m['pyarrow']}; load average {m['load_average_1m']:.1f} at the end "
        "(anything else running skews the ratios)",
    ]


def machine() -> dict[str, Any]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(memory / (1 << 30)),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{name: version(name) for name in ("gensim", "ray", "pyarrow", "numpy")},
    }


def _value(value: float, unit: str) -> str:
    if unit in ("tokens/s", "words/s"):
        return f"{value / 1e6:.2f}M {unit}"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:.1f} {unit}"


def table(rows: list[bench.Row], header: list[str]) -> str:
    """The rows as a fixed-width table, with the notes numbered below it."""
    cells = [["#", "measurement", "job", "baseline", "ratio", "target", "result"]]
    for i, r in enumerate(rows, 1):
        cells.append(
            [
                str(i),
                r.name,
                _value(r.measured, r.unit),
                _value(r.baseline, r.unit),
                f"{r.ratio:.2f}x",
                r.target,
                "pass" if r.passed else "FAIL",
            ]
        )
    widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
    lines = [*header, ""]
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(f"{i}. {r.note}" for i, r in enumerate(rows, 1) if r.note)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
