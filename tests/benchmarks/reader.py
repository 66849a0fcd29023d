"""What a service pays to read a version: the install's size, and ``import jobs.vectors`` plus the first load.

    python -m tests.benchmarks.reader [--words 1000000] [--dims 100] [--baseline /path/to/an/older/checkout]

Builds (once, under ``.bench/reader``) a store holding one version of ``--words`` words, and two virtual
environments: the reader's (``pip install embedding-refresh``: numpy, pyarrow, boto3) and the job's
(``pip install 'embedding-refresh[job]'``: what installing the project pulled in before the reader had its own
install). Then, in fresh processes with empty caches, it times ``import jobs.vectors`` and the first
``load_vectors`` (memory-mapped, and read into memory), and the first ``most_similar``. With ``--baseline``,
the same load runs in the job's environment with an older checkout's code on ``PYTHONPATH`` (gensim's
``KeyedVectors``, as ``load_vectors`` returned them before), for the comparison. Sizes are ``du`` of each
environment's site-packages (installed with ``--no-compile``: no ``.pyc`` files in either).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.support import REPO

WORK = REPO / ".bench" / "reader"

LOAD = """
import json, sys, time
start = time.perf_counter()
from jobs.vectors import load_vectors
imported = time.perf_counter()
vectors, version = load_vectors(sys.argv[1], cache_dir=sys.argv[2], mmap=None if sys.argv[3] == "memory" else "r")
loaded = time.perf_counter()
vectors.most_similar(vectors.index_to_key[1000], topn=10)
queried = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"ray", "gensim", "scipy", "cryptography"})
print(json.dumps({"import": imported - start, "load": loaded - imported, "query": queried - loaded,
                  "type": type(vectors).__name__, "heavy": heavy}))
"""


def store(words: int, dims: int) -> str:
    """A local store with one version of ``words`` x ``dims`` (random vectors; no training needed)."""
    from gensim.models import Word2Vec

    from jobs.storage import open_store
    from jobs.storage.publish import new_version, publish
    from jobs.training import model as gmodel

    folder = WORK / f"store-{words}x{dims}"
    if not (folder / "CURRENT").exists():
        shutil.rmtree(folder, ignore_errors=True)
        model = Word2Vec(vector_size=dims, min_count=1, workers=1, seed=1)
        model.build_vocab_from_freq({f"w{i:07d}": words - i + 5 for i in range(words)})
        out = WORK / "out"
        shutil.rmtree(out, ignore_errors=True)
        gmodel.save(model, out)
        target = open_store(str(folder))
        publish(target, new_version(), out, {"model": "word2vec"}, expected=None)
        shutil.rmtree(out)
    return str(folder)


def environment(name: str, requirement: str) -> Path:
    """A virtual environment holding ``requirement`` of this checkout (built once), and its Python."""
    venv = WORK / name
    python = venv / "bin" / "python"
    if not python.exists():
        wheels = WORK / "wheel"
        shutil.rmtree(wheels, ignore_errors=True)
        pip = [sys.executable, "-m", "pip"]
        source = WORK / "source"  # a copy: the build writes beside its sources
        shutil.rmtree(source, ignore_errors=True)
        for part in ("jobs", "shards"):
            shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(REPO / name, source / name)
        subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, source], check=True)
        (wheel,) = wheels.glob("*.whl")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        target = f"embedding-refresh{requirement} @ {wheel.as_uri()}"
        subprocess.run([*pip, "--python", python, "install", "-q", "--no-compile", target], check=True)
    return python


def site_packages_mb(python: Path) -> float:
    (site,) = (python.parents[1] / "lib").glob("python3*/site-packages")
    done = subprocess.run(["du", "-sb", site], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0]) / 1e6


def first_load(python: Path, uri: str, mode: str, pythonpath: str | None = None) -> dict[str, float]:
    cache = WORK / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [str(python), "-c", LOAD, uri, str(cache), mode],
        capture_output=True,
        text=True,
        env=env,
        cwd=WORK,  # never this checkout: each environment imports its own copy of jobs
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=100)
    parser.add_argument("--baseline", type=Path, help="an older checkout, run in the job's environment")
    parser.add_argument("--repeat", type=int, default=3)
    a = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    uri = store(a.words, a.dims)
    reader, job = environment("reader-venv", ""), environment("job-venv", "[job]")
    print(f"{a.words:,} words x {a.dims}: {sum(p.stat().st_size for p in Path(uri).rglob('*.npy')) / 1e6:,.0f} MB")
    print(f"site-packages: reader {site_packages_mb(reader):,.0f} MB, with [job] {site_packages_mb(job):,.0f} MB")
    runs = [("reader install", reader, None), ("[job] install", job, None)]
    if a.baseline:
        runs.append(("[job] install, the baseline's code", job, str(a.baseline.resolve())))
    for label, python, path in runs:
        for mode in ("mmap", "memory"):
            times = [first_load(python, uri, mode, path) for _ in range(a.repeat)]
            best = {k: float(np.median([t[k] for t in times])) for k in ("import", "load", "query")}
            print(
                f"{label:<36} {mode:<6} import {best['import']:5.2f} s  first load {best['load']:5.2f} s  "
                f"import+load {best['import'] + best['load']:5.2f} s  most_similar {best['query']:5.2f} s  "
                f"({times[0]['type']}; imported {', '.join(times[0]['heavy']) or 'no gensim, Ray'})"
            )
    print(time.strftime("%Y-%m-%d %H:%M"), "median of", a.repeat)


if __name__ == "__main__":
    main()
