"""Upload and download throughput of a model's files through the S3 store, against plain boto3, same run.

    python -m tests.benchmarks.s3_transfer --size-mb 200
    python -m tests.benchmarks.s3_transfer --size-mb 1000 --endpoint http://minio:9000 --bucket bench

Without ``--endpoint`` a local ``moto_server`` is started (dummy credentials; the numbers then measure the
client side plus moto, a single Python process, so treat them as relative). With ``--endpoint`` (or the
standard AWS environment and ``--bucket``) it runs against that store. Files shaped like a saved gensim model
(a small pickle, one large and one medium ``.npy`` of random bytes) are made once. Each of ``--repeat``
passes runs the three paths below, one after the other, each uploading, downloading, checking the bytes and
deleting its objects before the next starts; every pass starts with a different path.

* **boto3**: ``client.upload_file`` / ``download_file`` with boto3's default ``TransferConfig``: the baseline;
* **S3Store put/get**: ``S3Store.put_file`` / ``get_file`` per file (its transfer settings, its checksums);
* **publish / fetch_verified**: the job's path: SHA-256 of every file, upload, manifest, conditional pointer
  write; and pointer → manifest → download → SHA-256 verification.

The table shows MB/s (MiB of file data per second, best of the repeats) and each row's ratio to boto3's.
``--json`` prints one JSON line with the same numbers instead. Store settings come from the environment as
the job reads them (``EMBEDDING_REFRESH_S3_*``, see :mod:`jobs.storage.s3`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np

from jobs.storage.publish import fetch_verified, local_files, publish, sha256_file
from jobs.storage.s3 import S3Store
from tests.support.s3server import MotoServer

MiB = 1 << 20


def make_model_files(folder: Path, size_mb: int, seed: int = 0) -> list[str]:
    """Random files adding up to ``size_mb`` MiB, split as a Word2Vec model's are (vectors, syn1neg, pickle)."""
    rng = np.random.default_rng(seed)
    total = size_mb * MiB
    sizes = {
        "model/model": max(total // 100, 1024),
        "model/model.wv.vectors.npy": total * 6 // 10,
        "model/model.syn1neg.npy": total - total * 6 // 10 - max(total // 100, 1024),
    }
    for name, size in sizes.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            for start in range(0, size, 64 * MiB):
                out.write(rng.bytes(min(64 * MiB, size - start)))
    return local_files(folder)


def timed(action: Callable[..., None], *args: Any) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def clear_prefix(client: Any, bucket: str, prefix: str) -> None:
    """Delete what a pass left, so the server's memory does not grow across repeats."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


class Paths:
    """The three ways to move the same files, each an (upload, download) pair over its own key prefix."""

    def __init__(self, client: Any, bucket: str, source: Path, names: list[str]) -> None:
        self.client, self.bucket, self.source, self.names = client, bucket, source, names

    def boto3_upload(self, prefix: str) -> None:
        for name in self.names:
            self.client.upload_file(str(self.source / name), self.bucket, f"{prefix}/{name}")

    def boto3_download(self, prefix: str, target: Path) -> None:
        for name in self.names:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.bucket, f"{prefix}/{name}", str(target / name))

    def store_put(self, prefix: str) -> None:
        store = S3Store.from_uri(f"s3://{self.bucket}/{prefix}")
        for name in self.names:
            store.put_file(name, self.source / name)

    def store_get(self, prefix: str, target: Path) -> None:
        store = S3Store.from_uri(f"s3://{self.bucket}/{prefix}")
        for name in self.names:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            store.get_file(name, target / name)

    def publish(self, prefix: str) -> None:
        store = S3Store.from_uri(f"s3://{self.bucket}/{prefix}")
        publish(store, "v1", self.source, {}, expected=store.read_pointer())

    def fetch_verified(self, prefix: str, target: Path) -> None:
        fetch_verified(S3Store.from_uri(f"s3://{self.bucket}/{prefix}"), "latest", target)

    def rows(self) -> list[tuple[str, str, Callable[[str], None], Callable[[str, Path], None]]]:
        return [
            ("boto3 upload_file", "boto3 download_file", self.boto3_upload, self.boto3_download),
            ("S3Store put_file", "S3Store get_file", self.store_put, self.store_get),
            ("publish", "fetch_verified", self.publish, self.fetch_verified),
        ]


def one_pass(paths: Paths, work: Path, rotate: int) -> dict[str, float]:
    """Seconds for each measurement. Each path uploads, downloads, checks and deletes before the next starts
    (so none pays for objects another left on the server); ``rotate`` changes which path goes first.
    """
    rows = paths.rows()
    rows = rows[rotate % len(rows) :] + rows[: rotate % len(rows)]
    seconds: dict[str, float] = {}
    for up_name, down_name, upload, download in rows:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        target = work / prefix
        seconds[up_name] = timed(upload, prefix)
        seconds[down_name] = timed(download, prefix, target)
        for name in paths.names:  # a benchmark that moved the wrong bytes measured nothing
            if sha256_file(target / name) != sha256_file(paths.source / name):
                raise AssertionError(f"{down_name} returned different bytes for {name}")
        shutil.rmtree(target)
        clear_prefix(paths.client, paths.bucket, f"{prefix}/")
    return seconds


@contextlib.contextmanager
def endpoint_for(args: argparse.Namespace) -> Iterator[str | None]:
    """The endpoint to use: the one given, or a local moto server with dummy credentials for the run."""
    if args.endpoint or args.bucket:
        yield args.endpoint
        return
    with MotoServer() as moto:
        os.environ.update(AWS_ACCESS_KEY_ID="benchmark", AWS_SECRET_ACCESS_KEY="benchmark", AWS_REGION="us-east-1")
        yield moto.endpoint


def table(best: dict[str, float], size_mb: float) -> str:
    pairs = [
        ("upload", "boto3 upload_file", ("boto3 upload_file", "S3Store put_file", "publish")),
        ("download", "boto3 download_file", ("boto3 download_file", "S3Store get_file", "fetch_verified")),
    ]
    lines = [f"{'direction':<10} {'path':<22} {'seconds':>8} {'MB/s':>8} {'vs boto3':>9}"]
    for direction, baseline, rows in pairs:
        for row in rows:
            rate = size_mb / best[row]
            ratio = best[baseline] / best[row]
            lines.append(f"{direction:<10} {row:<22} {best[row]:>8.2f} {rate:>8.1f} {ratio:>8.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=200, help="MiB of model files in all (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="passes, each starting with another path; best kept")
    parser.add_argument("--endpoint", help="an S3-compatible endpoint URL (default: a local moto server)")
    parser.add_argument("--bucket", default=None, help="an existing bucket (default: a new one on moto)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = parser.parse_args(argv)

    with endpoint_for(args) as endpoint, tempfile.TemporaryDirectory(prefix="s3-bench-") as tmp:
        if endpoint:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
        client = boto3.client("s3", endpoint_url=endpoint)
        bucket = args.bucket or f"bench-{uuid.uuid4().hex[:12]}"
        if args.bucket is None:
            client.create_bucket(Bucket=bucket)
        source = Path(tmp) / "model"
        names = make_model_files(source, args.size_mb)
        size = sum((source / n).stat().st_size for n in names) / MiB
        paths = Paths(client, bucket, source, names)
        passes = [one_pass(paths, Path(tmp), rotate) for rotate in range(args.repeat)]
        best = {row: min(p[row] for p in passes) for row in passes[0]}

    if args.json:
        print(json.dumps({"size_mb": round(size, 1), "repeat": args.repeat, "seconds": best}))
    else:
        where = endpoint or "the configured S3 endpoint"
        print(f"{size:.0f} MiB in {len(names)} files, {where}, best of {args.repeat}")
        print(table(best, size))


if __name__ == "__main__":
    main()
