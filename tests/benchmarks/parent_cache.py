"""The trainer's parent from S3 against a hit in the node's verified cache, at the size of a 1M-word model.

    python -m tests.benchmarks.parent_cache                     # 1M words x 100 dims, a local moto server
    python -m tests.benchmarks.parent_cache --words 250000 --endpoint http://minio:9000 --bucket bench

A version holding the files a 1M-word Word2Vec version holds, of their real sizes (random bytes: the cost of
moving and hashing them does not depend on their values), is published to an S3 store (a local moto server
unless ``--endpoint``). The trainer's node cache (:class:`jobs.storage.cache.VersionCache`) then fetches the
parent twice, as two nightly runs on a node that keeps its cache (a persistent volume, an EBS-backed path):
cold (downloaded, every file verified against the manifest) and warm (nothing downloaded: every cached file
verified against the manifest again, then linked into the run's folder). Each is repeated ``--repeat`` times
with a fresh cache for the cold rows; the table shows the best.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import numpy as np

from jobs.storage import open_store
from jobs.storage.cache import VersionCache
from jobs.storage.publish import publish, read_manifest
from tests.support.s3server import DUMMY_ENV, MotoServer


def model_files(folder: Path, words: int, dims: int) -> int:
    """Files of a version's model folder, each of its real size; returns the bytes written."""
    rng = np.random.default_rng(0)
    sizes = {
        "vectors.npy": words * dims * 4,
        "syn1neg.npy": words * dims * 4,
        "cum_table.npy": words * 4,
        "sample_int.npy": words * 4,
        "vectors_lockf.npy": 4,
        "vocab.parquet": words * 12,
        "params.json": 4_000,
    }
    (folder / "model").mkdir(parents=True)
    for name, size in sizes.items():
        with open(folder / "model" / name, "wb") as f:
            for start in range(0, size, 64 << 20):
                f.write(rng.bytes(min(64 << 20, size - start)))
    return sum(sizes.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.parent_cache", description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, default=100)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--endpoint", help="an S3 endpoint (default: a local moto server)")
    p.add_argument("--bucket", default=f"bench-{uuid.uuid4().hex[:8]}")
    a = p.parse_args(argv)
    server = None
    if a.endpoint is None:
        server = MotoServer().start()
        os.environ.update({**DUMMY_ENV, "AWS_ENDPOINT_URL": server.endpoint})
        a.endpoint = server.endpoint
    try:
        boto3.client("s3", endpoint_url=a.endpoint).create_bucket(Bucket=a.bucket)
        store = open_store(f"s3://{a.bucket}/models")
        with tempfile.TemporaryDirectory(prefix="parent-cache-") as tmp:
            work = Path(tmp)
            size = model_files(work / "out", a.words, a.dims)
            publish(store, "v1", work / "out", {"parent": None}, expected=None)
            manifest = read_manifest(store, "v1")
            names = sorted(manifest["files"])
            cold, warm = [], []
            for i in range(a.repeat):
                cache = VersionCache(work / f"cache-{i}", keep=2)
                started = time.perf_counter()
                cache.fetch(store, manifest, names, work / f"run-{i}-a")
                cold.append(time.perf_counter() - started)
                started = time.perf_counter()
                cache.fetch(store, manifest, names, work / f"run-{i}-b")
                warm.append(time.perf_counter() - started)
                shutil.rmtree(work / f"cache-{i}")
            mib = size / (1 << 20)
            print(f"parent of {a.words:,} words x {a.dims} ({mib:,.0f} MiB in {len(names)} files), {a.endpoint}")
            print("| fetch | seconds | MiB/s | / download |")
            print("| --- | --- | --- | --- |")
            print(f"| download from S3, verified (cold cache) | {min(cold):.2f} | {mib / min(cold):,.0f} | 1.00 |")
            print(
                f"| node cache hit, verified | {min(warm):.2f} | {mib / min(warm):,.0f} | {min(warm) / min(cold):.2f} |"
            )
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
