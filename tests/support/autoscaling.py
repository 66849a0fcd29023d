"""An autoscaling cluster for tests: Ray's fake multi-node provider started from ``infra/local/autoscaling.yaml``,
and a refresh run on it whose node kinds are recorded."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs.storage import open_store
from tests.support.clusters import REPO, RayHead, runtime_env
from tests.support.corpora import clustered
from tests.support.files import write_parquet
from tests.support.flags import fast

CONFIG = REPO / "infra" / "local" / "autoscaling.yaml"


FAST = fast(workers=None, tokenize_in_trainer_below=0)  # tokenizing tasks, however small: they drive the autoscaler


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
