"""Where the time goes between ``ray job submit`` and a published model, on real local clusters.

    python -m tests.benchmarks.cluster_timings                         # both clusters, one table
    python -m tests.benchmarks.cluster_timings --skip-autoscaling --partitions 16 --documents 5000
    python -m tests.benchmarks.cluster_timings --json                  # one JSON line instead

Two clusters, one after the other, each submitted the same refresh (``--partitions`` Parquet partitions of
``--documents`` documents on a local moto S3, a new model on S3, the fast training flags of the tests):

* **static**: ``ray start --head`` with ``--cpus`` CPUs (``tests/support/clusters.py``: token auth, private temp dir);
* **autoscaled**: the head of ``infra/local/autoscaling.yaml`` (no CPUs, Ray's fake multi-node provider), which
  has to add workers before the first partition can be tokenized.

The submission is ``ray job submit --no-wait`` as the e2e tests run it; a poller then watches the Jobs API
(every 50 ms), the ``CURRENT`` pointer on S3 (the moment the model is published) and the nodes. The rows:

* *submit command*: the ``ray job submit`` call (packages and uploads the working dir, creates the job);
* *queued*: submission until the job is RUNNING (runtime env set up, driver process started);
* *scale-up*: RUNNING until the first worker node is alive (autoscaled only);
* *driver start*: RUNNING until the refresh itself starts (Python, imports); the refresh's own clock starts
  there and its ``--json`` summary splits it: *tokenize* (streamed into the trainer), *load*, *vocabulary*,
  *train*, *evaluate*, *save*, *upload*, and *in-run rest* (discovery, connecting to Ray, starting the actor,
  report, manifest and pointer writes);
* *submit → published*: until ``CURRENT`` names the new version; *submit → SUCCEEDED*: until Ray says so;
* *scale-down*: job end until the head is alone again (autoscaled only).

Timings on a shared 2-core machine move by seconds from run to run: read them as where the time goes, not as
a benchmark of Ray. Not part of CI.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.support.clusters import REPO, RayHead, runtime_env
from tests.support.corpora import clustered
from tests.support.s3server import MotoServer

DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIABENCHDUMMYKEY001",
    "AWS_SECRET_ACCESS_KEY": "bench/dummy/secret/not/a/real/key/0001",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
FAST = ["--workers", "1", "--vector-size", "16", "--epochs", "2", "--min-count", "1"]
PHASES = ("tokenize", "load", "vocabulary", "train", "evaluate", "save", "upload")
HEAD_ID = "f" * 51 + "00000"  # the fake provider's fixed id for the head


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.cluster_timings", description=__doc__.splitlines()[0])
    p.add_argument("--partitions", type=int, default=8, help="Parquet partitions in the input (default 8)")
    p.add_argument("--documents", type=int, default=2000, help="documents per partition, 12 words each (default 2000)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the static head (default 2)")
    p.add_argument("--skip-static", action="store_true", help="leave out the static cluster")
    p.add_argument("--skip-autoscaling", action="store_true", help="leave out the autoscaled cluster")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    return p.parse_args(argv)


@contextmanager
def s3_corpus(partitions: int, documents: int) -> Iterator[tuple[MotoServer, Any, str]]:
    """A moto server holding the input partitions under s3://<bucket>/events; (server, client, bucket)."""
    with MotoServer() as moto:
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        for i in range(partitions):
            buffer = io.BytesIO()
            pq.write_table(pa.table({"text": pa.array(clustered(documents, seed=i), pa.string())}), buffer)
            s3.put_object(Bucket=bucket, Key=f"events/dt=2026-08-01/part-{i:03d}.parquet", Body=buffer.getvalue())
        yield moto, s3, bucket


def pointer_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError:
        return False
    return True


def timed_refresh(
    head: RayHead, moto: MotoServer, s3: Any, bucket: str, name: str, watch_nodes: bool
) -> dict[str, Any]:
    """Submit one refresh and time its stages from outside (Jobs API, S3, nodes) and inside (its summary)."""
    submission_id, store = f"bench-{name}-{uuid.uuid4().hex[:6]}", f"models/{name}"
    env = runtime_env(**DUMMY_AWS, AWS_ENDPOINT_URL=moto.endpoint)
    marks: dict[str, float] = {"submitted": time.monotonic()}
    done = head.ray(
        "job", "submit", "--address", head.dashboard, "--submission-id", submission_id, "--no-wait",
        "--working-dir", str(REPO), "--runtime-env-json", json.dumps(env),
        "--", "python", "-m", "jobs.refresh", "--input", f"s3://{bucket}/events", "--store", f"s3://{bucket}/{store}",
        *FAST, "--json",
    )  # fmt: skip
    marks["accepted"] = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"ray job submit failed:\n{done.stderr[-3000:]}")
    most_workers, next_nodes_poll = 0, 0.0
    while "all_idle" not in marks:
        now = time.monotonic()
        if now - marks["submitted"] > 900:
            raise TimeoutError(f"{submission_id} not done after 900 s: {marks}")
        status = (head.job(submission_id) or {}).get("status")
        if "running" not in marks and status in ("RUNNING", "SUCCEEDED", "FAILED"):
            marks["running"] = now
        if "published" not in marks and pointer_exists(s3, bucket, f"{store}/CURRENT"):
            marks["published"] = now
        if "ended" not in marks and status in ("SUCCEEDED", "FAILED", "STOPPED"):
            marks["ended"], marks["status"] = now, 1.0 if status == "SUCCEEDED" else 0.0
        if watch_nodes and now >= next_nodes_poll:
            workers = [n for n in head.alive_nodes() if n["node_id"] != HEAD_ID]
            most_workers = max(most_workers, len(workers))
            if workers and "first_worker" not in marks:
                marks["first_worker"] = now
            if "ended" in marks and not workers:
                marks["all_idle"] = now
            next_nodes_poll = now + 0.25
        elif not watch_nodes and "ended" in marks:
            marks["all_idle"] = marks["ended"]
        time.sleep(0.05)
    logs = str(head.api(f"/api/jobs/{submission_id}/logs")[1].get("logs", ""))
    if not marks["status"]:
        raise RuntimeError(f"{submission_id} failed:\n{logs[-3000:]}")
    summary = next(json.loads(line) for line in reversed(logs.splitlines()) if line.startswith('{"'))
    return {"marks": marks, "summary": summary, "most_workers": most_workers}


def rows(result: dict[str, Any]) -> dict[str, float | None]:
    """The table's rows for one cluster, in seconds."""
    m, s = result["marks"], result["summary"]
    phases = {k: float(s["timings"].get(k, 0.0)) for k in PHASES}
    driver_start = m["ended"] - m["running"] - s["seconds"]  # the driver's Python start-up and Ray shutdown too
    return {
        "submit command": m["accepted"] - m["submitted"],
        "queued (submit → RUNNING)": m["running"] - m["submitted"],
        "scale-up (RUNNING → first worker)": m["first_worker"] - m["running"] if "first_worker" in m else None,
        "driver start + exit": driver_start,
        **phases,
        "in-run rest (discover, connect, actor, commit)": s["seconds"] - sum(phases.values()),
        "refresh total (its own clock)": float(s["seconds"]),
        "submit → published (CURRENT on S3)": m["published"] - m["submitted"],
        "submit → SUCCEEDED": m["ended"] - m["submitted"],
        "scale-down (end → head alone)": m["all_idle"] - m["ended"] if "first_worker" in m else None,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    per = {name: rows(r) for name, r in results.items()}
    width = max(len(row) for row in next(iter(per.values())))
    lines = [f"{'seconds':<{width}}" + "".join(f"{n:>14}" for n in names)]
    for row in next(iter(per.values())):
        cells = [per[n][row] for n in names]
        lines.append(f"{row:<{width}}" + "".join(f"{'-' if c is None else f'{c:.2f}':>14}" for c in cells))
    lines.append(f"{'worker nodes at most':<{width}}" + "".join(f"{results[n]['most_workers']:>14}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        moto, s3, bucket = stack.enter_context(s3_corpus(args.partitions, args.documents))
        if not args.skip_static:
            with RayHead(num_cpus=args.cpus) as head:
                results["static"] = timed_refresh(head, moto, s3, bucket, "static", watch_nodes=False)
        if not args.skip_autoscaling:
            config = yaml.safe_load((REPO / "infra" / "local" / "autoscaling.yaml").read_text())
            env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
            with RayHead(num_cpus=0, autoscaling_config=config, extra_env=env) as head:
                results["autoscaled"] = timed_refresh(head, moto, s3, bucket, "autoscaled", watch_nodes=True)
    if args.json:
        print(json.dumps({"parameters": vars(args), "rows": {n: rows(r) for n, r in results.items()}}))
    else:
        tokens = next(iter(results.values()))["summary"]["tokens"] if results else 0
        print(f"{args.partitions} partitions x {args.documents} documents ({tokens:,} tokens), flags {' '.join(FAST)}")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
