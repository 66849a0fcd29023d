"""The refresh with partitions and models on S3 (a real moto server over HTTP), on a real local Ray cluster."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from gensim.models.callbacks import CallbackAny2Vec

from jobs.config import from_args
from jobs.errors import ConflictError, StoreError
from jobs.refresh import Hooks, run
from jobs.storage import open_store
from jobs.storage.publish import fetch_verified, model_files, read_manifest
from jobs.training import model as gmodel
from jobs.versions import promote
from tests.support import REPO
from tests.support.corpora import clustered
from tests.support.flags import fast
from tests.support.s3server import FaultProxy, MotoServer

FAST = fast(max_in_flight=4)


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    name = f"refresh-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket=name)
    return name


def land(bucket: str, key: str, docs: list[str]) -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"text": docs}), sink)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


def pointer(bucket: str) -> str | None:
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key="models/CURRENT")["Body"].read()
    except boto3.client("s3").exceptions.NoSuchKey:
        return None
    return str(json.loads(body)["version"])


def keys(bucket: str, prefix: str = "models/") -> list[str]:
    """The store's keys, its run records (one more per run, whatever its outcome) left out."""
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []) if "/runs/" not in item["Key"])


def test_s3_to_s3_then_an_update_that_loads_it_back(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_REFRESH_S3_MULTIPART_THRESHOLD", "8MiB")
    monkeypatch.setenv("EMBEDDING_REFRESH_S3_MULTIPART_CHUNKSIZE", "8MiB")
    land(bucket, "corpus/dt=2026-11-23/part-0.parquet", clustered(400, seed=1))
    boto3.client("s3").put_object(Bucket=bucket, Key="corpus/dt=2026-11-23/_SUCCESS", Body=b"")
    # FastText with 110k buckets x 100 dims: gensim saves arrays over 10M elements (here the 44 MB n-gram
    # array) as separate .npy files
    common = [
        "--input",
        f"s3://{bucket}/corpus",
        "--store",
        f"s3://{bucket}/models",
        *FAST,
        "--model",
        "fasttext",
        "--bucket",
        "110000",
        "--vector-size",
        "100",
    ]
    first = run(from_args(common))
    assert pointer(bucket) == first.version
    s3 = boto3.client("s3")
    npy = [k for k in keys(bucket) if k.endswith(".npy")]
    assert f"models/versions/{first.version}/model/vectors_ngrams.npy" in npy
    big = s3.head_object(Bucket=bucket, Key=f"models/versions/{first.version}/model/vectors_ngrams.npy")
    assert big["ETag"].strip('"').endswith("-6")  # uploaded in six 8 MiB parts

    land(bucket, "corpus/dt=2026-11-24/part-0.parquet", clustered(400, seed=2, extra={0: ["novelaa"]}))
    boto3.client("s3").put_object(Bucket=bucket, Key="corpus/dt=2026-11-24/_SUCCESS", Body=b"")
    second = run(from_args(common))
    assert (second.parent, second.partitions, pointer(bucket)) == (first.version, 1, second.version)
    store = open_store(f"s3://{bucket}/models")
    manifest = read_manifest(store, "latest")
    assert manifest["partitions"][0]["uri"] == f"s3://{bucket}/corpus/dt=2026-11-24/part-0.parquet"
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_verified(store, "latest", Path(tmp), model_files(manifest))
        model = gmodel.load(folder / gmodel.MODEL_DIR)
    assert "novelaa" in model.wv.key_to_index and model.wv.get_vecattr("caxaa", "count") > 0
    assert run(from_args(common)).published is False


class MovePointerDuringTraining(CallbackAny2Vec):  # type: ignore[misc]
    """A seam: while this run trains, another writer rolls the pointer back."""

    def __init__(self, store_uri: str, version: str) -> None:
        self.store_uri, self.version, self.done = store_uri, version, False

    def on_train_begin(self, model: object) -> None:
        if not self.done:
            promote(open_store(self.store_uri), self.version)
            self.done = True


def test_a_run_whose_pointer_moved_meanwhile_reports_a_conflict(bucket: str) -> None:
    common = ["--input", f"s3://{bucket}/corpus", "--store", f"s3://{bucket}/models", *FAST]
    land(bucket, "corpus/dt=1/p.parquet", clustered(100, seed=1))
    first = run(from_args(common))
    land(bucket, "corpus/dt=2/p.parquet", clustered(100, seed=2))
    second = run(from_args(common))
    land(bucket, "corpus/dt=3/p.parquet", clustered(100, seed=3))
    hook = Hooks(training_callbacks=(MovePointerDuringTraining(f"s3://{bucket}/models", first.version),))
    with pytest.raises(ConflictError) as info:
        run(from_args(common), hook)
    assert (info.value.theirs, info.value.expected) == (first.version, second.version)
    assert pointer(bucket) == first.version
    assert info.value.ours in open_store(f"s3://{bucket}/models").list_versions()  # kept, unpromoted


def test_an_outage_during_publish_leaves_the_pointer(
    bucket: str, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = ["--input", f"s3://{bucket}/corpus", "--store", f"s3://{bucket}/models", *FAST]
    land(bucket, "corpus/dt=1/p.parquet", clustered(100, seed=1))
    first = run(from_args(common))
    land(bucket, "corpus/dt=2/p.parquet", clustered(100, seed=2))
    before = keys(bucket)
    with FaultProxy(moto.endpoint) as proxy:
        # the model's files (the run records its parent first, outside the outage, so the upload is what fails)
        proxy.fail("503", float("inf"), method="PUT", path_contains="/model/")
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)  # the store's endpoint travels with it
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        with pytest.raises(StoreError, match="cannot upload"):
            run(from_args(common))
        assert proxy.injected()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    assert pointer(bucket) == first.version
    assert keys(bucket) == before


def test_a_flaky_read_while_tokenizing_is_retried_not_called_a_bad_partition(
    bucket: str, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = clustered(100, seed=1)
    land(bucket, "corpus/dt=1/p.parquet", docs)
    with FaultProxy(moto.endpoint) as flaky:
        # more 503s than S3 clients retry inside one read, so the tokenizing task itself fails and is retried
        flaky.fail("503", times=6, method="GET", path_contains="/p.parquet")  # "=" is sent as %3D
        monkeypatch.setenv("AWS_ENDPOINT_URL", flaky.endpoint)
        summary = run(from_args(["--input", f"s3://{bucket}/corpus", "--store", f"s3://{bucket}/models", *FAST]))
        assert flaky.pending() == 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    assert summary.published and summary.partitions == 1 and summary.rejected == []
    assert summary.tokens == sum(len(d.split()) for d in docs)


def test_a_store_that_ignores_conditional_writes_is_refused_before_training(
    bucket: str, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(bucket, "corpus/dt=1/p.parquet", clustered(100, seed=1))
    before = keys(bucket, prefix="")
    with FaultProxy(moto.endpoint, strip_headers=("If-Match", "If-None-Match")) as blind:
        monkeypatch.setenv("AWS_ENDPOINT_URL", blind.endpoint)
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"s3://{bucket}/models ignores conditional writes") as info:
            run(from_args(["--input", f"s3://{bucket}/corpus", "--store", f"s3://{bucket}/models", *FAST]))
        assert "Nothing was published" in str(info.value) and time.monotonic() - started < 30
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    assert keys(bucket, prefix="") == before and pointer(bucket) is None


def test_a_publisher_killed_before_the_pointer_moves_leaves_readers_on_the_previous_version(
    bucket: str, moto: MotoServer
) -> None:
    common = ["--input", f"s3://{bucket}/corpus", "--store", f"s3://{bucket}/models", *FAST]
    land(bucket, "corpus/dt=1/p.parquet", clustered(100, seed=1))
    first = run(from_args(common))
    land(bucket, "corpus/dt=2/p.parquet", clustered(100, seed=2))
    with FaultProxy(moto.endpoint) as proxy:
        # The manifest write hangs in retries: files are uploaded, the pointer not yet moved. Kill it there.
        proxy.fail("drop", float("inf"), method="PUT", path_contains="/manifest.json")
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": proxy.endpoint,
            "AWS_MAX_ATTEMPTS": "20",
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "PYTHONPATH": str(REPO),
        }
        job = subprocess.Popen(
            [sys.executable, "-m", "jobs.refresh", *common],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while not proxy.injected() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        assert proxy.injected(), job.stderr.read().decode()[-2000:] if job.stderr else ""
    store = open_store(f"s3://{bucket}/models")
    assert pointer(bucket) == first.version
    assert store.list_versions() == [first.version]  # the killed version has files but no manifest
    uploaded = [k for k in keys(bucket) if "/versions/" in k and first.version not in k]
    assert any(k.endswith("model/vectors.npy") for k in uploaded)
    with tempfile.TemporaryDirectory() as tmp:
        fetch_verified(store, "latest", Path(tmp), model_files(read_manifest(store, "latest")))


def test_partition_reads_on_workers_follow_aws_max_attempts(
    bucket: str, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shards.partitions import discover, open_filesystem
    from shards.tokenize import TokenizerConfig
    from shards.tokenized import ReadOptions, tokenize_partition

    land(bucket, "corpus/dt=1/p.parquet", clustered(50, seed=1))
    with FaultProxy(moto.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "6")  # the driver's setting; pyarrow's own default is 3
        fs, root = open_filesystem(f"s3://{bucket}/corpus")
        [partition] = discover(fs, root)
        proxy.fail("503", times=4, method="GET", path_contains="/p.parquet")
        task = ray.remote(tokenize_partition).options(max_retries=0)
        result = ray.get(task.remote(fs, partition, ReadOptions(), TokenizerConfig()))
        assert len(proxy.injected()) == 4 and proxy.pending() == 0
    assert result.documents == 50
