"""The trainer's save phase for a big model with a small increment: the diff and the model's files, before/after.

    python -m tests.benchmarks.save                        # 1M words x 100, 50k moved, 2k added, 5k removed
    python -m tests.benchmarks.save --words 200000 --moved 10000 --skip-model      # a quick look

A parent of ``--words`` random vectors is saved as a version folder holds it (``vectors.npy``,
``vocab.parquet``); the candidate keeps its rows but ``--removed`` pruned ones, moves ``--moved`` of them far
(random directions) and nudges as many within the threshold, and adds ``--added`` words. Then, one after the
other in this process, each the best of ``--repeat`` runs, wall and CPU seconds (this process's, all threads):

- the diff as the trainer wrote it before: the words joined (``index_in``), the distances computed again from
  the parent's saved vectors (:func:`jobs.changes.compute`), all columns zstd with dictionaries;
- the diff as it writes it now (:func:`jobs.training.coordinates.write_diff` given the evaluate stage's
  :func:`jobs.training.drift.compare`, which the trainer runs anyway, so it is timed apart): both files equal
  but for the distances' rounding, checked;
- the diff's Parquet encodings side by side on the same table (seconds and bytes);
- unless ``--skip-model``: :func:`jobs.training.serialize.save` of a Word2Vec model of that many words
  (vocabulary by gensim's ``build_vocab_from_freq``, random arrays) against the previous save, kept here.

The machine may be shared: compare ratios within one run, and mind the CPU seconds beside the wall ones.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs import changes
from jobs.storage.publish import MODEL_DIR, sha256_file, write_recorded
from jobs.training import coordinates, drift

MB = 1e6


def best(repeat: int, action: Callable[[], Any]) -> tuple[float, float, Any]:
    """The least wall seconds of ``repeat`` runs and the CPU seconds of that run, and its result."""
    runs = []
    result = None
    for _ in range(repeat):
        result = None
        wall, cpu = time.perf_counter(), time.process_time()
        result = action()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall, cpu = min(runs)
    return wall, cpu, result


def make_case(words: int, dim: int, moved: int, added: int, removed: int, folder: Path) -> tuple[Any, np.ndarray]:
    """The parent's folder under ``folder`` and the candidate (a stand-in for a model: ``wv`` with its words,
    vectors and counts), and the parent's rows of the candidate's first words."""
    rng = np.random.default_rng(0)
    parent = rng.standard_normal((words, dim), dtype=np.float32)
    names = [f"w{i:07d}{chr(97 + i % 26)}" for i in range(words)]
    (folder / MODEL_DIR).mkdir(parents=True)
    np.save(folder / MODEL_DIR / "vectors.npy", parent)
    counts = np.maximum((5e8 / np.arange(1, words + 1) ** 1.05).astype(np.int64), 5)
    pq.write_table(pa.table({"word": names, "count": counts}), folder / MODEL_DIR / "vocab.parquet")
    keep = np.ones(words, dtype=bool)
    keep[rng.choice(words, size=removed, replace=False)] = False
    parent_rows = np.flatnonzero(keep)
    vectors = np.concatenate([parent[parent_rows], rng.standard_normal((added, dim), dtype=np.float32)])
    del parent
    picked = rng.choice(len(parent_rows), size=2 * moved, replace=False)
    vectors[picked[:moved]] = rng.standard_normal((moved, dim), dtype=np.float32)  # far: moved
    vectors[picked[moved:]] += np.float32(0.02) * rng.standard_normal((moved, dim), dtype=np.float32)  # not moved
    new_names = [names[i] for i in parent_rows] + [f"new{i:07d}" for i in range(added)]
    new_counts = np.concatenate([counts[parent_rows], np.full(added, 5, dtype=np.int64)])
    wv = SimpleNamespace(index_to_key=new_names, vectors=vectors, expandos={"count": new_counts})
    return SimpleNamespace(wv=wv), parent_rows


def previous_diff(model: Any, parent: Path, path: Path) -> dict[str, Any]:
    """The diff as the trainer wrote it before: joined, distances computed again, zstd everywhere."""
    words = pq.read_table(parent / MODEL_DIR / "vocab.parquet", columns=["word"]).column("word").combine_chunks()
    old = np.load(parent / MODEL_DIR / "vectors.npy", mmap_mode="r", allow_pickle=False)
    wv = model.wv
    table = changes.compute(
        words, old, pa.array(wv.index_to_key, pa.string()), wv.vectors, wv.expandos["count"], changes.DEFAULT_THRESHOLD
    )
    meta = {"from": "a", "to": "b", "threshold": changes.DEFAULT_THRESHOLD, **changes.summary(table)}
    schema = table.schema.with_metadata({b"embedding_refresh_diff": json.dumps(meta, sort_keys=True).encode()})
    pq.write_table(table.cast(schema), path, compression="zstd")
    return meta


ENCODINGS: dict[str, dict[str, Any]] = {
    "zstd, dictionaries (before)": {"compression": "zstd"},
    "none, dictionaries": {"compression": "none"},
    "zstd; vector: no dictionary": {"compression": "zstd", "use_dictionary": ["word", "change", "distance", "count"]},
    "zstd; dictionary for change only": {"compression": "zstd", "use_dictionary": ["change"]},
    "zstd; vector: none, no dictionary": {
        "compression": {"word": "zstd", "change": "zstd", "distance": "zstd", "count": "zstd", "vector": "none"},
        "use_dictionary": ["change"],
    },
    "zstd; vector: lz4, no dictionary": {
        "compression": {"word": "zstd", "change": "zstd", "distance": "zstd", "count": "zstd", "vector": "lz4"},
        "use_dictionary": ["change"],
    },
    "zstd; dict. for change; vector: no statistics": {
        "compression": "zstd",
        "use_dictionary": ["change"],
        "write_statistics": ["word", "change", "distance", "count"],
    },
    "zstd 1; floats byte-split, dict. for change": {
        "compression": "zstd",
        "compression_level": 1,
        "use_dictionary": ["change"],
        "column_encoding": {"vector": "BYTE_STREAM_SPLIT", "distance": "BYTE_STREAM_SPLIT"},
    },
    "(now) changes.write": {},
}


def time_diffs(model: Any, parent: Path, parent_rows: np.ndarray, work: Path, repeat: int) -> list[list[str]]:
    before_path, after_path = work / "before.parquet", work / "after.parquet"
    vectors = parent / MODEL_DIR / "vectors.npy"
    np.load(vectors, mmap_mode="r").sum()  # in the page cache, as the evaluate stage leaves it
    t_drift = best(repeat, lambda: drift.compare(vectors, model.wv, parent_rows))
    shared = t_drift[2]
    t_before = best(repeat, lambda: previous_diff(model, parent, before_path))
    t_after = best(repeat, lambda: coordinates.write_diff(model, parent, after_path, "a", "b", shared))
    before, after = pq.read_table(before_path), pq.read_table(after_path)
    assert before.drop(["distance"]).equals(after.drop(["distance"])), "the diffs differ"
    gap = pc.max(pc.abs(pc.subtract(before["distance"], after["distance"]))).as_py() or 0.0
    assert gap < 1e-5, gap
    assert changes.read_about(before_path) == changes.read_about(after_path)
    rows = [
        ["diff: before (join + distances + zstd write)", *cells(t_before, before_path), "1.00x"],
        ["diff: now (known rows + drift's distances)", *cells(t_after, after_path), f"{t_after[0] / t_before[0]:.2f}x"],
        ["  drift.compare (evaluate stage, both)", f"{t_drift[0]:.3f}", f"{t_drift[1]:.3f}", "", ""],
    ]
    summary = changes.summary(after)
    print(f"diff: {summary} rows, largest distance gap {gap:.1e}")
    table = after.cast(after.schema.with_metadata({}))
    base = None
    for name, options in ENCODINGS.items():
        timed = best(repeat, lambda options=options: encode(table, work / "encoded.parquet", options))
        base = base or timed[0]
        rows.append([f"  encoding: {name}", *cells(timed, work / "encoded.parquet"), f"{timed[0] / base:.2f}x"])
    return rows


def encode(table: pa.Table, path: Path, options: dict[str, Any]) -> None:
    """``table`` written with Parquet ``options``; with none, as :func:`jobs.changes.write` writes it."""
    if options:
        pq.write_table(table, path, **options)
    else:
        changes.write(table, path, {})


def cells(timed: tuple[float, float, Any], path: Path) -> list[str]:
    return [f"{timed[0]:.3f}", f"{timed[1]:.3f}", f"{path.stat().st_size / MB:.1f}"]


def previous_save_array(path: Path, array: np.ndarray) -> dict[str, Any]:
    """serialize's _save_array as it was: a contiguous copy when needed, then write_recorded."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return write_recorded(path, [header.getvalue(), array.reshape(-1)])


def time_model_save(words: int, dim: int, work: Path, repeat: int) -> list[list[str]]:
    from jobs.training import serialize
    from tests.benchmarks.model_format import build

    model = build("word2vec", words, dim, 0)
    folder = work / "model"

    def save() -> dict[str, Any]:
        shutil.rmtree(folder, ignore_errors=True)
        return serialize.save(model, folder)

    def hashed_again() -> None:
        for name in ("vectors.npy", "syn1neg.npy"):
            sha256_file(folder / name)

    t_save = best(repeat, save)
    size = sum(p.stat().st_size for p in folder.iterdir())
    t_hash = best(repeat, hashed_again)
    t_write = best(repeat, lambda: previous_save_array(work / "plain.npy", model.wv.vectors))
    return [
        ["serialize.save (1 pass: write + hash)", f"{t_save[0]:.3f}", f"{t_save[1]:.3f}", f"{size / MB:.1f}", ""],
        ["  sha256 of vectors + syn1neg alone", f"{t_hash[0]:.3f}", f"{t_hash[1]:.3f}", "", ""],
        ["  one array (vectors) written + hashed", f"{t_write[0]:.3f}", f"{t_write[1]:.3f}", "", ""],
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.save", description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--moved", type=int, default=50_000)
    p.add_argument("--added", type=int, default=2_000)
    p.add_argument("--removed", type=int, default=5_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-model", action="store_true", help="leave out serialize.save")
    a = p.parse_args(argv)
    print(f"{a.words:,} words x {a.dim}, {a.moved:,} moved, {a.added:,} added, {a.removed:,} removed", end="")
    print(f"; {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="save-bench-") as tmp:
        work = Path(tmp)
        model, parent_rows = make_case(a.words, a.dim, a.moved, a.added, a.removed, work / "parent")
        rows = time_diffs(model, work / "parent", parent_rows, work, a.repeat)
        del model
        if not a.skip_model:
            rows += time_model_save(a.words, a.dim, work, a.repeat)
    header = ["step", "wall s", "cpu s", "MB", "wall vs first"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
