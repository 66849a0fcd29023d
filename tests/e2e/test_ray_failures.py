"""Ray's failures, provoked on a real multi-node cluster (``ray.cluster_utils.Cluster``), each ending in one
line that names the stage and the partition, exit status 75, the store as it was, and a run record naming it.

The cluster: a head with no CPUs (the driver's node), a 1-CPU node offering ``trainer: 1`` whose CPU the
training actor reserves (``--workers 1``), and 1-CPU tokenizing nodes added as each scenario needs them. Every
node is a raylet of its own on this machine. In order, on the one cluster:

* ``json``: a refresh that succeeds, as ``python -m jobs.refresh --log-format json``: its driver's stderr is
  JSON lines only, the actor's lines in the nodes' log files are JSON, and no credential reaches either.
* ``runtime_env``: the job's runtime environment names a conda environment; this image has no conda, so its
  setup fails on every node, fast and offline (a pip package that cannot be installed fails the same way,
  after a download attempt). The training actor cannot start: :class:`~ray.exceptions.RuntimeEnvSetupError`.
* ``oom``: a tokenizing node whose raylet has ``RAY_memory_usage_threshold=0.01``: Ray's memory monitor
  kills every task there (the machine's memory is always above 1 %), on each try, until
  :class:`~ray.exceptions.OutOfMemoryError` (Ray itself would retry OOM kills forever; the driver bounds
  them, see :func:`jobs.cluster.connected`).
* ``node_died``: a partition whose reads take 30 s (the ``slow`` files of :mod:`tests.support.crashing_fs`, the input
  filesystem seam) runs on a tokenizing node that is killed (SIGKILL, no drain) while the task runs there,
  and replaced, until Ray's retries are spent: :class:`~ray.exceptions.NodeDiedError`.
* ``lost``: the same for three tries of a partition whose batches are large enough to live in its node's
  object store; its fourth try runs to its end, and its node is killed while the batches wait there behind
  a slower partition in the trainer's CPU. No retry is left to rebuild them:
  :class:`~ray.exceptions.ObjectReconstructionFailedError` when the trainer fetches them. The other kinds of
  lost object (``ObjectFetchTimedOutError``, a plain ``ObjectLostError``) are explained on Ray's own exception
  objects (``test_lost_objects_are_explained``).

The cluster and its drivers live in a child process (``python -m tests.e2e.test_ray_failures WORKDIR``, started by
:func:`tests.support.clusters.run_isolated`), which writes what happened to ``WORKDIR/result.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import EXIT_RETRYABLE
from tests.support.clusters import QUICK_FAILURE_DETECTION, in_process_cluster, report, run_isolated
from tests.support.corpora import clustered
from tests.support.files import snapshot, write_parquet
from tests.support.flags import fast

MiB = 1 << 20
FAST = fast(workers=1, vector_size=8, epochs=1, tokenize_in_trainer_below=0)  # tasks: their failures are the point
SECRET = "not-a-real-secret-7f3a9c"  # the driver's AWS_SECRET_ACCESS_KEY in the json scenario
NODE = r"\d+\.\d+\.\d+\.\d+"


# --- the child process --------------------------------------------------------------------------------------


def scenario(work: Path) -> dict[str, Any]:
    import ray

    small = {"object_store_memory": 80 * MiB}
    cluster = in_process_cluster(0, system_config=QUICK_FAILURE_DETECTION, **small)
    result: dict[str, Any] = {}
    try:
        cluster.add_node(num_cpus=1, resources={"trainer": 1}, **small)
        cluster.wait_for_nodes()
        result["json"] = json_run(work, cluster.address, cluster.head_node.get_session_dir_path())
        result["runtime_env"] = failing_run(
            work, "runtime_env", cluster.address, runtime_env={"conda": "embedding-refresh-no-such-env"}
        )
        oom = cluster.add_node(
            num_cpus=1, **small, env_vars={"RAY_memory_usage_threshold": "0.01", "RAY_memory_monitor_refresh_ms": "100"}
        )
        cluster.wait_for_nodes()
        result["oom"] = failing_run(work, "oom", cluster.address)
        cluster.remove_node(oom)
        result["node_died"] = killing_run(work, "node_died", cluster, "slow", running=None, after=False)
        result["lost"] = killing_run(work, "lost", cluster, "b-slow3", running=3, after=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    return result


def json_run(work: Path, address: str, session: str) -> dict[str, Any]:
    store = work / f"store-{SECRET}"  # a path that holds the secret: every line that names the store redacts it
    argv = ["--input", str(work / "json"), "--store", str(store), *FAST, "--ray-address", address]
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET}
    done = subprocess.run(
        [sys.executable, "-m", "jobs.refresh", *argv, "--log-format", "json", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    worker_lines = []
    for path in Path(session, "logs").glob("worker-*"):
        with contextlib.suppress(OSError):
            worker_lines += path.read_text(errors="replace").splitlines()
    return {"status": done.returncode, "stderr": done.stderr, "stdout": done.stdout, "worker_lines": worker_lines}


def failing_run(
    work: Path, name: str, address: str, runtime_env: dict[str, Any] | None = None, hooks: Any = None
) -> dict[str, Any]:
    """One refresh over ``work/name`` into ``work/name-store`` (its first version already published there by
    a run before the fault), reported as the error it raised."""
    import ray

    from jobs.config import from_args
    from jobs.errors import RefreshError, exit_status
    from jobs.refresh import Hooks, run
    from jobs.runs import recent
    from jobs.storage import open_store

    store = work / f"{name}-store"
    argv = ["--input", str(work / name), "--store", str(store), *FAST, "--ray-address", address]
    if runtime_env is not None:
        ray.init(address=address, runtime_env=runtime_env)  # as `ray job submit --runtime-env-json` would
    before = snapshot(store)
    error: RefreshError | None = None
    try:
        run(from_args(argv), hooks or Hooks())
    except RefreshError as exc:
        error = exc
    finally:
        if ray.is_initialized():
            ray.shutdown()
    [record] = recent(open_store(str(store)), 1)
    return {
        "type": type(error).__name__,
        "message": str(error),
        "exit": exit_status(error) if error else 0,
        "store_unchanged": snapshot(store) == before,
        "record": record,
    }


def killing_run(work: Path, name: str, cluster: Any, task: str, running: int | None, after: bool) -> dict[str, Any]:
    """Kill the tokenizing node (SIGKILL, no drain) each time the task titled ``task`` runs there, at most
    ``running`` times (None: as often as it does), then, if ``after``, once more once it has run to its end
    there (with its batches in that node's object store); a new node replaces each one lost."""
    import psutil
    import pyarrow.fs as pafs

    from jobs.refresh import Hooks
    from tests.support.crashing_fs import CrashingFileSystem

    kills: list[str] = []
    stop = threading.Event()
    node = cluster.add_node(num_cpus=1, object_store_memory=80 * MiB)

    def runs_there() -> bool:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(node.all_processes["raylet"][0].process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if " ".join(child.cmdline()).startswith(f"ray::tokenize {task}"):
                        return True
        return False

    def lose(when: str) -> None:
        nonlocal node
        cluster.remove_node(node, allow_graceful=False)
        kills.append(when)
        node = cluster.add_node(num_cpus=1, object_store_memory=80 * MiB)

    def killer() -> None:
        seen = False  # the last try ran there (not to be killed while running)
        while not stop.is_set():
            there = runs_there()
            if there and (running is None or len(kills) < running):
                time.sleep(0.5)  # inside its read
                lose("running")
            elif there:
                seen = True
            elif seen and after:
                lose("after")
                return
            time.sleep(0.1)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        outcome = failing_run(
            work, name, cluster.address, hooks=Hooks(filesystem=pafs.PyFileSystem(CrashingFileSystem()))
        )
    finally:
        stop.set()
        thread.join(timeout=30)
        cluster.remove_node(node)  # the next scenario's tokenizing node is its own
    return {**outcome, "kills": kills}


def prepare(work: Path) -> None:
    """Every scenario's input, and a first version in each failing scenario's store (so "untouched" means a
    store with a lineage, not an empty folder)."""
    from jobs.config import from_args
    from jobs.refresh import run

    write_parquet(work / "json" / "dt=1" / "p0.parquet", clustered(200, seed=1))
    for name in ("runtime_env", "oom", "node_died", "lost"):
        write_parquet(work / name / "dt=1" / "p0.parquet", clustered(50, seed=2))
        run(from_args(["--input", str(work / name), "--store", str(work / f"{name}-store"), *FAST]))
        write_parquet(work / name / "dt=2" / "a.parquet", clustered(30, seed=3))
    for i in (1, 2):
        write_parquet(work / "oom" / "dt=2" / f"b{i}.parquet", clustered(30, seed=3 + i))
    write_parquet(work / "node_died" / "dt=2" / "slow.parquet", clustered(30, seed=4))
    # in the trainer's CPU, a read that outlasts the other's four tries; the other's batches are large enough
    # (> 100 KiB) to live in its node's object store, not inline in the driver's memory
    write_parquet(work / "lost" / "dt=2" / "a-slow40.parquet", clustered(30, seed=5))
    write_parquet(work / "lost" / "dt=2" / "b-slow3.parquet", clustered(4000, seed=6))


def main(argv: list[str]) -> int:
    import logging

    import ray

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    work = Path(argv[0])
    ray.init(num_cpus=1, object_store_memory=80 * MiB, include_dashboard=False)  # the first versions, locally
    try:
        prepare(work)
    finally:
        ray.shutdown()
    (work / "result.json").write_text(json.dumps(scenario(work), indent=2))
    return 0


# --- the tests ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outcome(pytestconfig: pytest.Config) -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ray-failures-") as tmp:
        work = Path(tmp)
        status, output = run_isolated([sys.executable, "-m", "tests.e2e.test_ray_failures", str(work)], timeout=540)
        assert status == 0 and (work / "result.json").exists(), output[-6000:]
        result = json.loads((work / "result.json").read_text())
        seconds = {k: v["record"]["seconds"] for k, v in result.items() if isinstance(v, dict) and "record" in v}
        report(pytestconfig, f"\nRay failures: seconds from the run's start to its failure: {seconds}")
        yield {**result, "work": str(work), "output": output}


def assert_failed(result: dict[str, Any], message: str) -> None:
    """The run failed with exactly ``message`` (a regular expression, one line), exit 75, the store as it was,
    and a run record that names the failure."""
    assert result["type"] == "ClusterError", result
    assert re.fullmatch(message, result["message"]), result["message"]
    assert "\n" not in result["message"] and "Traceback" not in result["message"]
    assert result["exit"] == EXIT_RETRYABLE
    assert result["store_unchanged"]
    record = result["record"]
    assert (record["outcome"], record["exit_status"], record["exit_class"]) == ("failed", 75, "retryable")
    assert record["error"] == result["message"] and record["published"] is False


def test_a_runtime_environment_that_cannot_be_set_up(outcome: dict[str, Any]) -> None:
    assert_failed(
        outcome["runtime_env"],
        rf"tokenizing: the runtime environment of the training actor could not be set up on node {NODE} "
        r"\(ValueError: Could not find Conda executable at conda\.\); check the job's runtime_env "
        r"\(pip, conda, working_dir\) against the nodes' image\. Nothing was published; a rerun is safe\.",
    )


def test_a_tokenizing_node_out_of_memory(outcome: dict[str, Any]) -> None:
    uri = re.escape(f"{outcome['work']}/oom/dt=2/b1.parquet")  # the first partition outside the trainer's CPU
    assert_failed(
        outcome["oom"],
        rf"tokenizing {uri}: its worker ran out of memory and Ray's memory monitor killed it on each of its 4 "
        rf"tries \(node {NODE}: [\d.]+GB used / [\d.]+GB limit\); give the nodes more memory, or lower "
        r"--max-in-flight or --piece-bytes\. Nothing was published; a rerun is safe\.",
    )
    assert len(re.findall(r"Task tokenize_piece failed due to oom", outcome["output"])) >= 4


def test_a_tokenizing_node_that_dies_on_every_try(outcome: dict[str, Any]) -> None:
    uri = re.escape(f"{outcome['work']}/node_died/dt=2/slow.parquet")
    assert_failed(
        outcome["node_died"],
        rf"tokenizing {uri}: its node \({NODE}\) died \(preempted, a hardware failure, a raylet crash\) and Ray's "
        r"3 retries are spent\. Nothing was published; a rerun is safe\.",
    )
    assert outcome["node_died"]["kills"] == ["running"] * 4  # the first try and three retries


def test_a_result_lost_with_its_node_once_no_retry_is_left(outcome: dict[str, Any]) -> None:
    # the first try and two retries killed while running, the last one once it had yielded its batches
    assert outcome["lost"]["kills"] == ["running"] * 3 + ["after"]
    uri = re.escape(f"{outcome['work']}/lost/dt=2/b-slow3.parquet")
    assert_failed(
        outcome["lost"],
        rf"tokenizing {uri}: its result was lost with the node that held it and could not be rebuilt "
        r"\(the maximum number of task retries has been exceeded\); the nodes may be going away faster than Ray can "
        r"rebuild their results\. Nothing was published; a rerun is safe\.",
    )


def test_driver_logs_are_json_lines_naming_their_stage(outcome: dict[str, Any]) -> None:
    run = outcome["json"]
    assert run["status"] == 0, run["stderr"][-3000:]
    for line in run["stderr"].splitlines():
        assert line.startswith("{"), run["stderr"][-3000:]
    lines = [json.loads(line) for line in run["stderr"].splitlines()]  # every line is JSON
    assert lines and all({"time", "level", "logger", "stage", "message"} <= line.keys() for line in lines)
    runbook = ["", "store", "discover", "tokenize", "train", "publish", "report"]
    stages = [runbook.index(line["stage"]) for line in lines]
    assert stages == sorted(stages)  # in the runbook's order
    assert {"store", "discover", "tokenize", "report"} <= {line["stage"] for line in lines}  # the driver's steps
    assert all(line["run"].startswith("local-") for line in lines if line["stage"])
    assert any(line["stage"] == "tokenize" and line["message"].startswith("tokenized 1/1 partitions") for line in lines)
    assert any("store-***" in line["message"] for line in lines)  # the secret, redacted
    assert SECRET not in run["stderr"] and SECRET not in "\n".join(run["worker_lines"])
    summary = json.loads(run["stdout"].splitlines()[-1])  # --json: the summary line on stdout
    assert summary["published"] and summary["partitions"] == 1


def test_worker_logs_are_json_lines(outcome: dict[str, Any]) -> None:
    actor_lines = []
    for line in outcome["json"]["worker_lines"]:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("message", "").startswith("training actor: spool in"):
                actor_lines.append(record)
    assert len(actor_lines) == 1, outcome["json"]["worker_lines"][-20:]
    [line] = actor_lines
    assert line["levelname"] == "INFO" and line["actor_name"].startswith("trainer ") and line["job_id"]


def test_lost_objects_are_explained() -> None:
    from ray.core.generated.common_pb2 import ErrorType
    from ray.exceptions import ObjectFetchTimedOutError, ObjectLostError, ObjectReconstructionFailedError

    from jobs.errors import ClusterError, exit_status
    from jobs.failures import explain
    from shards.partitions import Partition

    uri = "s3://corpus/dt=1/part-7.parquet"
    partition = Partition(uri=uri, path=uri[5:], size=1, mtime_ns=0, format="parquet")
    exceeded = ErrorType.Value("OBJECT_UNRECONSTRUCTABLE_MAX_ATTEMPTS_EXCEEDED")
    for error, why in (
        (ObjectLostError("ab" * 14, b"", ""), "ObjectLostError"),
        (
            ObjectReconstructionFailedError("ab" * 14, reason=exceeded, owner_address=b"", call_site=""),
            "the maximum number of task retries has been exceeded",
        ),
        (ObjectFetchTimedOutError("ab" * 14, b"", ""), "ObjectFetchTimedOutError"),
    ):
        explained = explain(error, "tokenizing", partition)
        assert isinstance(explained, ClusterError) and exit_status(explained) == EXIT_RETRYABLE
        assert str(explained) == (
            "tokenizing s3://corpus/dt=1/part-7.parquet: its result was lost with the node that held it and could "
            f"not be rebuilt ({why}); the nodes may be going away faster than Ray can rebuild their results. "
            "Nothing was published; a rerun is safe."
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
