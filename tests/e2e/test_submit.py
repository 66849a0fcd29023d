"""The refresh as it runs in production: ``ray job submit`` to a real ``ray start --head``, data and models on S3.

One head for the module (``tests/support/clusters.py``: token auth, private temp dir and HOME, loopback dashboard,
2 CPUs) and one ``moto_server`` standing in for S3. Each submission uploads the repository as its working dir,
with the ``excludes`` of ``infra/runtime_env.yaml``; its ``pip`` section is left out, because the head was
started from this venv, which already has every dependency (Ray would otherwise clone the whole venv to
install into it). The S3 endpoint and dummy keys reach the job through the runtime env's ``env_vars``.
``infra/submit.sh`` runs for real against the same head, from a copy of the repository whose runtime env
differs only in those two ways; its refusals, failures and stop run side by side (the head counts 4 logical
CPUs so that three training actors and their tokenizing tasks can all be placed at once), and the store
exporter (``python -m jobs.versions exporter``) reads what they left. The last test checks that stopping a head
stops nothing but that cluster.

Run with ``python -m pytest tests/e2e/test_submit.py -q`` (under two minutes on 2 cores).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clusters import REPO, RayHead, group_members, processes_naming, runtime_env, wait_until
from tests.support.corpora import clustered
from tests.support.flags import fast
from tests.support.net import free_ports
from tests.support.s3server import DUMMY_ENV, MotoServer

FAST = fast(workers=1)
DUMMY_AWS = DUMMY_ENV


@pytest.fixture(scope="module")
def s3(moto: MotoServer) -> Any:
    """A plain boto3 client to moto, to write partitions and read the store behind the job's back."""
    return boto3.client(
        "s3",
        endpoint_url=moto.endpoint,
        aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    # A stopped job's driver gets SIGTERM, then SIGKILL this many seconds later (Ray's default: 3), as in infra/.
    with RayHead(num_cpus=4, extra_env={"RAY_JOB_STOP_WAIT_TIME_S": "60"}) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def job_env(moto: MotoServer) -> dict[str, Any]:
    """The runtime env of every submission here: the real excludes, S3 settings as env vars, no pip."""
    return runtime_env(**DUMMY_AWS, AWS_ENDPOINT_URL=moto.endpoint)


def put_partitions(
    s3: Any, bucket: str, prefix: str, days: int, parts: int, seed: int = 0, first: int = 0, sentences: int = 60
) -> None:
    """``days`` x ``parts`` small Parquet partitions of ``sentences`` each under
    s3://bucket/prefix/dt=.../part-N.parquet, the days from 2026-05-0``first + 1`` on."""
    for day in range(first, first + days):
        for part in range(parts):
            buffer = io.BytesIO()
            table = pa.table({"text": pa.array(clustered(sentences, seed=seed + 10 * day + part), pa.string())})
            pq.write_table(table, buffer)
            s3.put_object(
                Bucket=bucket, Key=f"{prefix}/dt=2026-05-0{day + 1}/part-{part}.parquet", Body=buffer.getvalue()
            )


def new_bucket(s3: Any, name: str) -> str:
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return bucket


def keys(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def read_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def submit(
    head: RayHead, submission_id: str, env: dict[str, Any], *refresh_args: str, wait: bool = True
) -> subprocess.CompletedProcess[str]:
    """``ray job submit`` of one refresh, exactly as a user types it."""
    submit = ["job", "submit", "--address", head.dashboard, "--submission-id", submission_id]
    upload = ["--working-dir", str(REPO), "--runtime-env-json", json.dumps(env), *([] if wait else ["--no-wait"])]
    return head.ray(*submit, *upload, "--", "python", "-m", "jobs.refresh", *refresh_args, *FAST, "--json")


def summary_line(logs: str) -> dict[str, Any]:
    """The refresh's ``--json`` summary: the last log line that is a JSON object with a version."""
    for line in reversed(logs.splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            if "version" in data:
                return dict(data)
    raise AssertionError(f"no JSON summary line in the job's logs:\n{logs[-3000:]}")


def test_a_submitted_refresh_succeeds_and_publishes_to_s3(head: RayHead, s3: Any, job_env: dict[str, Any]) -> None:
    corpus, models = new_bucket(s3, "corpus"), new_bucket(s3, "models")
    put_partitions(s3, corpus, "events", days=2, parts=2)

    done = submit(
        head, "refresh-e2e-first", job_env, "--input", f"s3://{corpus}/events", "--store", f"s3://{models}/w2v"
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert head.job("refresh-e2e-first")["status"] == "SUCCEEDED"
    logs = head.ray("job", "logs", "--address", head.dashboard, "refresh-e2e-first")
    summary = summary_line(logs.stdout)
    assert summary["published"] and summary["partitions"] == 4 and summary["parent"] is None
    pointer = read_json(s3, models, "w2v/CURRENT")
    assert pointer["version"] == summary["version"]
    manifest = read_json(s3, models, f"w2v/{pointer['manifest']}")
    assert manifest["version"] == summary["version"] and manifest["tokens"] == summary["tokens"] > 0
    assert summary["trained"] == manifest["trained"]["summary"] and summary["removed_words"] == 0
    assert summary["trained"].startswith(f"trained {summary['tokens']:,} of {summary['tokens']:,} tokens per epoch")
    assert sorted(p["uri"] for p in manifest["partitions"]) == [
        f"s3://{corpus}/events/dt=2026-05-0{d}/part-{p}.parquet" for d in (1, 2) for p in (0, 1)
    ]
    stored = set(keys(s3, models))
    for name, entry in manifest["files"].items():
        key = f"w2v/versions/{summary['version']}/{name}"
        assert key in stored and s3.head_object(Bucket=models, Key=key)["ContentLength"] == entry["size"]

    # The same submission id again is refused by Ray: nothing runs, nothing is published.
    again = submit(
        head, "refresh-e2e-first", job_env, "--input", f"s3://{corpus}/events", "--store", f"s3://{models}/w2v"
    )
    assert again.returncode != 0
    assert "Job with submission_id refresh-e2e-first already exists" in again.stdout + again.stderr
    assert [j["submission_id"] for j in head.jobs()].count("refresh-e2e-first") == 1
    assert set(keys(s3, models)) == stored
    assert read_json(s3, models, "w2v/CURRENT") == pointer


def test_a_failing_refresh_is_reported_failed_with_its_message(head: RayHead, s3: Any, job_env: dict[str, Any]) -> None:
    corpus = new_bucket(s3, "corpus")
    put_partitions(s3, corpus, "events", days=1, parts=1)
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"

    done = submit(
        head, "refresh-e2e-missing-store", job_env, "--input", f"s3://{corpus}/events", "--store", f"s3://{missing}/w2v"
    )

    assert done.returncode == 1  # `ray job submit` saw the job fail
    info = head.job("refresh-e2e-missing-store")
    assert info["status"] == "FAILED" and "exit code 75" in info["message"].lower()  # the store: a rerun is safe
    logs = head.ray("job", "logs", "--address", head.dashboard, "refresh-e2e-missing-store").stdout
    # the store is probed for conditional writes before anything else touches it
    assert "refresh failed: cannot check conditional writes on" in logs and f"s3://{missing}/w2v/probes/" in logs
    assert "NoSuchBucket (HTTP 404)" in logs and "create the bucket or fix the store URI" in logs
    assert "Traceback" not in logs  # a RefreshError is reported as one line, not a stack trace
    assert DUMMY_AWS["AWS_SECRET_ACCESS_KEY"] not in logs


def test_ray_job_stop_cleans_up_and_leaves_the_store_as_it_was(
    head: RayHead, s3: Any, job_env: dict[str, Any], tmp_path: Path
) -> None:
    corpus, models = new_bucket(s3, "corpus"), new_bucket(s3, "models")
    put_partitions(s3, corpus, "events", days=1, parts=2)
    spool = tmp_path / "spool"
    spool.mkdir()
    job = "refresh-e2e-stopped"
    submit = ["job", "submit", "--address", head.dashboard, "--submission-id", job, "--no-wait"]
    upload = ["--working-dir", str(REPO), "--runtime-env-json", json.dumps(job_env)]
    refresh = ["python", "-m", "jobs.refresh", "--input", f"s3://{corpus}/events", "--store", f"s3://{models}/w2v"]
    slow = [
        "--workers",
        "1",
        "--vector-size",
        "16",
        "--min-count",
        "1",
        "--epochs",
        "100000",
        "--spool-dir",
        str(spool),
    ]
    assert head.ray(*submit, *upload, "--", *refresh, *slow).returncode == 0

    def training() -> bool:  # the actor is busy in gensim's train(), the hardest moment to stop it
        logs = head.ray("job", "logs", "--address", head.dashboard, job).stdout
        return "vocabulary 0 ->" in logs and any(spool.iterdir())

    wait_until(training, timeout=180, what="training to start")
    stopped_at = time.monotonic()
    assert head.ray("job", "stop", "--address", head.dashboard, job).returncode == 0
    info = head.wait_job(job, timeout=90)
    took = time.monotonic() - stopped_at
    logs = head.ray("job", "logs", "--address", head.dashboard, job).stdout
    assert info["status"] == "STOPPED"
    assert took < 60, "\n".join(line for line in logs.splitlines() if "EPOCH" not in line)[-6000:]  # before SIGKILL
    assert "refresh failed: stopped by a signal" in logs and "Traceback" not in logs
    assert list(spool.iterdir()) == []  # the killed actor's spool was removed on its node
    status, groups = head.api("/api/v0/placement_groups?limit=1000&detail=true")
    assert status == 200, groups
    ours = [g for g in groups["data"]["result"]["result"] if g["name"].startswith("trainer ")]
    assert ours and all(g["state"] == "REMOVED" for g in ours)
    [record_key] = keys(s3, models)  # no version, no pointer: only the run's record
    assert re.fullmatch(rf"w2v/runs/\d{{13}}-{job}\.json", record_key)
    record = read_json(s3, models, record_key)
    assert (record["outcome"], record["exit_status"], record["published"]) == ("stopped", 143, False)


def test_a_client_without_the_token_is_refused(head: RayHead, s3: Any, job_env: dict[str, Any]) -> None:
    before = head.jobs()
    assert head.api("/api/jobs/", token=None)[0] == 401
    assert head.api("/api/jobs/", token="0" * 64)[0] == 403

    submit = ["job", "submit", "--address", head.dashboard, "--submission-id", "refresh-e2e-no-token", "--"]
    refresh = ["python", "-m", "jobs.refresh", "--input", "s3://corpus/events", "--store", "s3://models/w2v"]
    no_token = head.ray(*submit, *refresh, token=False, env={"RAY_AUTH_MODE": "disabled"})
    wrong = head.ray(*submit, *refresh, env={"RAY_AUTH_TOKEN": "0" * 64})

    # the server's own answers (the client raises them as AuthenticationError)
    assert no_token.returncode != 0 and "Unauthorized: Missing authentication token" in no_token.stderr
    assert wrong.returncode != 0 and "Forbidden: Invalid authentication token" in wrong.stderr
    assert head.jobs() == before


# --- infra/submit.sh, for real --------------------------------------------------------------------------------


@pytest.fixture
def deployed(tmp_path: Path, job_env: dict[str, Any]) -> Path:
    """The repository as ``submit.sh`` uploads it, with the runtime env it names adapted to this machine.

    The copy's ``infra/runtime_env.yaml`` keeps its excludes and env vars, adds the S3 endpoint and dummy
    keys (what the instance profile and AWS's endpoint give on a real cluster) and drops ``pip``.
    """
    spec = runtime_env(**job_env["env_vars"])
    ignore = shutil.ignore_patterns(*(p.lstrip("/") for p in spec["excludes"]), "tests")
    root = tmp_path / "repo"
    shutil.copytree(REPO, root, ignore=ignore)
    (root / "infra" / "runtime_env.yaml").write_text(json.dumps(spec))
    return root


def test_submit_sh_runs_once_per_window_and_exits_with_the_jobs_own_status(
    head: RayHead, s3: Any, deployed: Path, moto: MotoServer
) -> None:
    corpus, models = new_bucket(s3, "corpus"), new_bucket(s3, "models")
    # enough text that the first version trains: the gate judges nothing against a parent that barely did
    put_partitions(s3, corpus, "events", days=1, parts=2, seed=100, sentences=600)

    def trigger(at: str, store: str, *extra: str, input: str = f"s3://{corpus}/events/") -> subprocess.Popen[str]:
        env = head.env(RAY_ADDRESS=head.dashboard, REFRESH_INPUT=input, REFRESH_STORE=store, REFRESH_AT=at)
        return subprocess.Popen(
            ["bash", str(deployed / "infra" / "submit.sh"), *FAST, "--json", *extra],
            env={**env, "REFRESH_STATUS_POLL": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )

    def done(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
        out, err = process.communicate(timeout=300)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    # The exporter outlives the runs: it starts with the first and answers for every store below once their
    # drivers have exited.
    exporter = Exporter(moto, [f"s3://{models}/{name}" for name in ("nightly", "bad", "unplaced", "stopped")])
    try:
        first = done(trigger("2026-05-01T01:00:00Z", f"s3://{models}/nightly/"))
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
        assert head.job("refresh-nightly-20260501T0000Z")["status"] == "SUCCEEDED"
        published = set(keys(s3, models))
        pointer = read_json(s3, models, "nightly/CURRENT")

        scraped = time.time()
        after_publish = exporter.scrape()
        nightly = f"s3://{models}/nightly"
        assert after_publish[("last_run_exit_code", nightly)] == 0
        assert after_publish[("last_run_outcome", nightly, "published")] == 1
        assert after_publish[("current_version_info", nightly, pointer["version"])] == 1
        created = after_publish[("current_version_timestamp_seconds", nightly)]
        manifest = read_json(s3, models, f"nightly/{pointer['manifest']}")
        assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)) == manifest["created_at"]
        assert scraped - created <= after_publish[("current_version_age_seconds", nightly)] <= time.time() - created

        second = done(trigger("2026-05-01T23:59:00Z", f"s3://{models}/nightly/"))  # the same daily window
        assert second.returncode == 0
        assert "refresh-nightly-20260501T0000Z already ran in this window" in second.stderr
        assert [j["submission_id"] for j in head.jobs()].count("refresh-nightly-20260501T0000Z") == 1
        assert set(keys(s3, models)) == published and read_json(s3, models, "nightly/CURRENT") == pointer

        # Side by side: a store that does not exist, a gate that cannot pass, a bad partition, a trainer no node
        # can host, a run stopped while it works.
        put_partitions(s3, corpus, "events", days=1, parts=1, seed=200, first=1)
        bad_corpus = new_bucket(s3, "corpus")
        s3.put_object(Bucket=bad_corpus, Key="events/dt=2026-05-01/part-0.parquet", Body=b"not parquet")
        missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
        runs = {
            "missing": trigger("2026-05-02T01:00:00Z", f"s3://{missing}/nightly/"),
            "gate": trigger("2026-05-03T01:00:00Z", f"s3://{models}/nightly/", "--gate-min-overlap", "1"),
            "bad": trigger("2026-05-03T01:00:00Z", f"s3://{models}/bad/", input=f"s3://{bad_corpus}/events/"),
            "unplaced": trigger(
                "2026-05-03T01:00:00Z",
                f"s3://{models}/unplaced/",
                *("--require-trainer-resource", "--trainer-resource", "nowhere", "--trainer-start-timeout", "1"),
            ),
            "stopped": trigger("2026-05-03T01:00:00Z", f"s3://{models}/stopped/", "--epochs", "100000"),
        }
        stopped = "refresh-stopped-20260503T0000Z"

        def working() -> bool:  # the driver is at work (SIGTERM is its to handle) and will leave its record
            status, logs = head.api(f"/api/jobs/{stopped}/logs")
            return status == 200 and "jobs.refresh: store s3://" in logs.get("logs", "")

        wait_until(working, timeout=120, what="the run to be stopped to start working")
        assert head.ray("job", "stop", "--address", head.dashboard, stopped).returncode == 0
        finished = {name: done(process) for name, process in runs.items()}

        exits = {name: run.returncode for name, run in finished.items()}
        assert exits == {"missing": 75, "gate": 3, "bad": 3, "unplaced": 75, "stopped": 143}, {
            name: run.stderr[-3000:] for name, run in finished.items()
        }
        assert head.job("refresh-nightly-20260502T0000Z")["status"] == "FAILED"  # the store: a rerun is safe
        assert head.job("refresh-nightly-20260503T0000Z")["driver_exit_code"] == 3  # the gate: do not retry
        assert head.job(stopped)["status"] == "STOPPED"
        assert (
            "refresh-unplaced-20260503T0000Z ended FAILED (driver exit code 75): exit 75" in finished["unplaced"].stderr
        )
        assert read_json(s3, models, "nightly/CURRENT") == pointer  # the gate kept the pointer

        # What the exporter says now that every driver has exited, from the run records alone.
        scraped = time.time()
        after = exporter.scrape()
        assert after[("current_version_info", nightly, pointer["version"])] == 1  # still the first version
        assert after[("current_version_timestamp_seconds", nightly)] == created
        assert scraped - created <= after[("current_version_age_seconds", nightly)] <= time.time() - created
        assert after[("last_run_outcome", nightly, "failed")] == 1
        assert after[("last_run_outcome", nightly, "published")] == 0
        assert after[("last_run_gate_passed", nightly)] == 0
        assert (
            after[("last_success_timestamp_seconds", nightly)] == after_publish[("last_run_timestamp_seconds", nightly)]
        )
        stores = ("nightly", "bad", "unplaced", "stopped")
        codes = {name: after[("last_run_exit_code", f"s3://{models}/{name}")] for name in stores}
        assert codes == {"nightly": 3, "bad": 3, "unplaced": 75, "stopped": 143}  # as submit.sh said
        bad = f"s3://{models}/bad"
        assert after[("last_run_partitions", bad, "rejected")] == 1
        assert not any(key[0].startswith("current_version") and key[1] == bad for key in after)  # none published
        assert ("last_run_gate_passed", bad) not in after and after[("store_up", bad)] == 1
    finally:
        exporter.stop()


class Exporter:
    """``python -m jobs.versions exporter`` over some stores on the moto server, scraped over HTTP."""

    def __init__(self, moto: MotoServer, stores: list[str]) -> None:
        [self.port] = free_ports(1)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
        env |= {**DUMMY_AWS, "AWS_ENDPOINT_URL": moto.endpoint, "AWS_CONFIG_FILE": os.devnull}
        env |= {"AWS_SHARED_CREDENTIALS_FILE": os.devnull, "PYTHONPATH": str(REPO)}
        serve = ["--address", "127.0.0.1", "--port", str(self.port), "--cache-seconds", "0"]
        watch = [arg for store in stores for arg in ("--store", store)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobs.versions", "exporter", *watch, *serve],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def scrape(self) -> dict[tuple[str, ...], float]:
        """Every ``embedding_refresh_`` sample: (name without the prefix, store, other label values) -> value."""

        def get() -> str | None:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
                    return str(response.read().decode())
            except OSError:
                return None

        text = wait_until(get, timeout=60, poll=0.2, what="the exporter to answer")
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                assert sample.name.startswith("embedding_refresh_"), sample.name
                labels = [sample.labels["store"]] + [v for k, v in sorted(sample.labels.items()) if k != "store"]
                samples[(sample.name.removeprefix("embedding_refresh_"), *labels)] = sample.value
        return samples

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def test_stopping_a_head_leaves_other_clusters_alone(head: RayHead) -> None:
    other = RayHead(num_cpus=1).start()
    group, temp_dir = other._process.pid, other.temp_dir  # type: ignore[union-attr]
    assert group_members(group) and processes_naming(temp_dir)

    other.stop()

    assert not group_members(group) and not processes_naming(temp_dir)
    assert not Path(temp_dir).exists() and not Path(other.home).exists()
    assert head.api("/api/version")[0] == 200 and len(head.alive_nodes()) == 1  # the module's head is untouched
    assert processes_naming(head.temp_dir)
