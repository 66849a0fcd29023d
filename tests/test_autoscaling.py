"""The refresh on an autoscaling cluster that starts with no workers: Ray's fake multi-node provider, locally.

``infra/local/autoscaling.yaml`` describes the cluster as ``infra/aws/cluster.yaml`` does (a head with
``CPU: 0``, 1-CPU tokenizing workers from 0 to 2, one 2-CPU node offering ``trainer: 1``); the head is started
with ``RAY_FAKE_CLUSTER=1`` and that config, and every "node" the autoscaler launches is one more raylet on
this machine. A refresh is submitted with ``ray job submit`` while a poller records the nodes every half
second; once the cluster is back to the head alone, a second one without ``--require-trainer-resource``. The
tests below read those records, and the state API's record of where each tokenizing task ran.

Run with ``python -m pytest tests/test_autoscaling.py -q`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.storage import open_store
from jobs.storage.publish import read_manifest
from tests.clusters import REPO, RayHead, report, runtime_env
from tests.conftest import write_parquet
from tests.corpora import clustered

pytestmark = pytest.mark.e2e

CONFIG = REPO / "infra" / "local" / "autoscaling.yaml"
FAST = ["--vector-size", "16", "--epochs", "2", "--min-count", "1"]
HEAD_ID = "f" * 51 + "00000"  # the fake provider's fixed id for the head


def autoscaling_config() -> dict[str, Any]:
    return dict(yaml.safe_load(CONFIG.read_text()))


def fake_cluster(config: dict[str, Any]) -> RayHead:
    """A head running the autoscaler with the fake multi-node provider, checking every second (default 5)."""
    return RayHead(
        num_cpus=0, autoscaling_config=config, extra_env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    )


@dataclass
class Record:
    """What one autoscaled refresh did, as seen from outside."""

    workers_at_start: list[dict[str, Any]]
    submitted: float
    running: float | None = None
    finished: float | None = None
    first_worker: float | None = None
    all_idle: float | None = None
    job: dict[str, Any] = field(default_factory=dict)
    logs: str = ""
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # node id -> resources, every worker seen
    most_workers: int = 0
    actors: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)  # every tokenizing task attempt that finished

    def placement(self) -> dict[str, int]:
        """Finished tokenizing tasks per kind of node they ran on."""
        kinds = ["trainer" if "trainer" in self.seen.get(t["node_id"], {}) else "tokenizer" for t in self.tasks]
        return {kind: kinds.count(kind) for kind in ("trainer", "tokenizer")}

    def scale_up_seconds(self) -> float:
        assert self.first_worker is not None and self.running is not None
        return self.first_worker - self.running


def workers(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in nodes if n["node_id"] != HEAD_ID]


def run_autoscaled_refresh(
    head: RayHead,
    data: Path,
    store: Path,
    submission_id: str,
    flags: list[str],
    timeout: float = 420,
    scale_down_timeout: float = 120,
) -> Record:
    """Submit one refresh and watch the cluster grow, finish the job and shrink back to the head."""
    record = Record(workers_at_start=workers(head.alive_nodes()), submitted=time.monotonic())
    submit = ["job", "submit", "--address", head.dashboard, "--submission-id", submission_id, "--no-wait"]
    upload = ["--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env())]
    refresh = ["python", "-m", "jobs.refresh", "--input", str(data), "--store", str(store), *FAST, *flags, "--json"]
    done = head.ray(*submit, *upload, "--", *refresh)
    assert done.returncode == 0, done.stderr[-3000:]
    deadline = time.monotonic() + timeout
    while record.finished is None or record.all_idle is None:
        assert time.monotonic() < deadline, f"autoscaled refresh not over after {timeout}s: {record}"
        now = time.monotonic()
        info = head.job(submission_id) or {}
        alive = workers(head.alive_nodes())
        for node in alive:
            record.seen.setdefault(node["node_id"], node["resources_total"])
        record.most_workers = max(record.most_workers, len(alive))
        if record.running is None and info.get("status") in ("RUNNING", "SUCCEEDED", "FAILED"):
            record.running = now
        if record.first_worker is None and alive:
            record.first_worker = now
        if record.finished is None and info.get("status") in ("SUCCEEDED", "FAILED", "STOPPED"):
            record.finished, record.job = now, info
            deadline = min(deadline, now + scale_down_timeout)
        if record.finished is not None and not alive:
            record.all_idle = now
        time.sleep(0.5)
    record.logs = str(head.api(f"/api/jobs/{submission_id}/logs")[1].get("logs", ""))
    status, actors = head.api("/api/v0/actors?limit=1000&detail=true")
    assert status == 200, actors
    pointer = open_store(str(store)).read_pointer()
    name = f"trainer {pointer.version if pointer else '?'}"
    record.actors = [a for a in actors["data"]["result"]["result"] if a.get("name") == name]
    job_id = record.job.get("job_id")
    status, tasks = head.api("/api/v0/tasks?limit=1000&detail=true")
    assert status == 200, tasks
    record.tasks = [
        t
        for t in tasks["data"]["result"]["result"]
        if t["func_or_class_name"] == "tokenize_piece" and t["state"] == "FINISHED" and t["job_id"] == job_id
    ]
    return record


def write_days(data: Path, days: int, parts: int) -> None:
    for day in range(days):
        for part in range(parts):
            write_parquet(
                data / f"dt=2026-06-0{day + 1}" / f"part-{part}.parquet", clustered(200, seed=10 * day + part)
            )


@dataclass
class Runs:
    scaled: Record  # --workers 2 --require-trainer-resource: the shipped configs' way
    default: Record  # no trainer flag: the actor must still find a node with CPUs, never the CPU:0 head


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Runs]:
    data, store = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("models") / "w2v"
    other_data, other_store = tmp_path_factory.mktemp("other"), tmp_path_factory.mktemp("models") / "default"
    write_days(data, 2, 4)
    write_days(other_data, 1, 2)
    with fake_cluster(autoscaling_config()) as head:
        record = run_autoscaled_refresh(
            head, data, store, "refresh-autoscaled", ["--workers", "2", "--require-trainer-resource"]
        )
        default = run_autoscaled_refresh(head, other_data, other_store, "refresh-default", ["--workers", "1"])
    record.job["store"] = str(store)
    if record.first_worker is not None:
        report(
            pytestconfig,
            f"\nautoscaling: first worker node {record.scale_up_seconds():.1f}s after the job started RUNNING; "
            f"job {record.finished - record.submitted:.1f}s from submission; "  # type: ignore[operator]
            f"{record.most_workers} workers at most; back to the head alone "
            f"{record.all_idle - record.finished:.1f}s after the job ended; tokenizing tasks per node kind: "
            f"{record.placement()}",
        )  # type: ignore[operator]
    yield Runs(record, default)


@pytest.fixture(scope="module")
def run(runs: Runs) -> Record:
    return runs.scaled


def test_the_config_passes_rays_schema_and_validation() -> None:
    from ray.autoscaler._private.util import validate_config  # what the autoscaler's config reader runs

    config = autoscaling_config()
    validate_config(config)
    assert config["provider"]["type"] == "fake_multinode"
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert config["available_node_types"]["trainer"]["resources"]["trainer"] == 1


def test_the_cluster_starts_with_no_worker_nodes(run: Record) -> None:
    assert run.workers_at_start == []


def test_waiting_tokenize_tasks_make_the_autoscaler_add_workers(run: Record) -> None:
    assert run.first_worker is not None and run.running is not None
    assert run.first_worker < run.finished  # type: ignore[operator]
    assert 2 <= run.most_workers <= 3  # the trainer and at least one of the 2 tokenizers
    assert all(r["CPU"] == (2 if "trainer" in r else 1) for r in run.seen.values())


def test_tokenizing_tasks_run_on_tokenizer_nodes_as_well_as_in_the_trainers_reservation(run: Record) -> None:
    placement = run.placement()
    assert sum(placement.values()) == 8  # every partition tokenized once, none lost, none run twice
    assert placement["tokenizer"] >= 1
    assert placement["trainer"] >= 1  # the reserved CPUs work while the actor waits for them


def test_the_refresh_completes_and_publishes(run: Record) -> None:
    assert run.job["status"] == "SUCCEEDED", run.logs[-3000:]
    store = open_store(run.job["store"])
    pointer = store.read_pointer()
    assert pointer is not None
    manifest = read_manifest(store, pointer.version)
    assert len(manifest["partitions"]) == 8 and manifest["tokens"] == 8 * 200 * 12


def test_idle_workers_are_removed(run: Record) -> None:
    assert run.all_idle is not None  # no worker left within the bounded wait after the job ended


def test_the_training_actor_runs_on_the_trainer_node_with_its_threads(run: Record) -> None:
    trainers = [a for a in run.actors if a.get("class_name") == "Trainer"]
    assert len(trainers) == 1
    assert "trainer" in run.seen.get(trainers[0]["node_id"], {})
    assert "2 BLAS/OpenMP threads" in run.logs  # Ray alone would give an actor asking for 0 CPUs one


def test_without_the_trainer_flag_the_actor_never_lands_on_the_cpu_less_head(runs: Runs) -> None:
    default = runs.default
    assert default.job["status"] == "SUCCEEDED", default.logs[-3000:]
    assert "pass --require-trainer-resource" in default.logs  # says what to change
    trainers = [a for a in default.actors if a.get("class_name") == "Trainer"]
    assert len(trainers) == 1 and trainers[0]["node_id"] != HEAD_ID
    assert default.seen[trainers[0]["node_id"]]["CPU"] >= 1
