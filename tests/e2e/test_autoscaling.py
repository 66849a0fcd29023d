"""The refresh on an autoscaling cluster that starts with no workers: Ray's fake multi-node provider, locally.

``infra/local/autoscaling.yaml`` describes the cluster as ``infra/aws/cluster.yaml`` does (a head with
``CPU: 0``, 1-CPU tokenizing workers from 0 to 2, one 2-CPU node offering ``trainer: 1``); the head is started
with ``RAY_FAKE_CLUSTER=1`` and that config, and every "node" the autoscaler launches is one more raylet on
this machine. A refresh is submitted with ``ray job submit`` while a poller records the nodes every half
second; once the cluster is back to the head alone, a second one without ``--require-trainer-resource``. The
tests below read those records, and the state API's record of where each tokenizing task ran.

Last, the same cluster without its tokenizing node type: the autoscaler can start the trainer's node and
nothing else, so the tokenizing tasks placed outside the trainer's reservation wait for a CPU that never
comes. After ``--tokenizer-wait`` seconds they move into the reservation: the run succeeds, every partition
tokenized once on the trainer's node, and the warning is in the driver's log, the manifest
(``tokenizing_fallback``) and the run record (``warnings``).

The fake clusters live in this one module, so they never run side by side (the fake provider gives every
cluster's nodes the same ids), whatever the test processes.

Run with ``python -m pytest tests/e2e/test_autoscaling.py -q`` (about three minutes on 2 cores).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobs.storage import open_store
from jobs.storage.publish import read_manifest
from tests.support.autoscaling import (
    HEAD_ID,
    Record,
    autoscaling_config,
    fake_cluster,
    run_autoscaled_refresh,
    write_days,
)
from tests.support.clusters import report


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


# --- no tokenizing node can ever start ---------------------------------------------------------------------
WAIT = 5


@pytest.fixture(scope="module")
def no_tokenizers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Record, Path]:
    data, store = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("models") / "w2v"
    write_days(data, 1, 4)
    config: dict[str, Any] = autoscaling_config()
    del config["available_node_types"]["cpu_worker"]  # no node type that tokenizing tasks could start
    config["max_workers"] = 1
    with fake_cluster(config) as head:
        flags = ["--workers", "2", "--require-trainer-resource", "--tokenizer-wait", str(WAIT), "--max-in-flight", "4"]
        record = run_autoscaled_refresh(head, data, store, "refresh-no-tokenizers", flags, timeout=300)
    return record, store


def test_tasks_that_no_node_can_take_fall_back_to_the_trainers_reservation(
    no_tokenizers: tuple[Record, Path],
) -> None:
    record, store = no_tokenizers
    assert record.job["status"] == "SUCCEEDED", record.logs[-3000:]
    assert all("trainer" in resources for resources in record.seen.values())  # no tokenizing node ever came
    assert record.placement() == {"trainer": 4, "tokenizer": 0}  # each partition tokenized once, all there
    reason = (
        f"no node with a CPU outside the trainer's reservation started within --tokenizer-wait {WAIT} s: "
        "tokenizing ran on the trainer's 2 reserved CPU(s)"
    )
    assert f"{reason}; 2 waiting task(s) moved there" in record.logs
    s = open_store(str(store))
    pointer = s.read_pointer()
    assert pointer is not None
    manifest = read_manifest(s, pointer.version)
    assert manifest["tokenizing_fallback"] == reason
    assert len(manifest["partitions"]) == 4 and manifest["tokens"] == 4 * 200 * 12
    [record_key] = s.list_keys("runs")  # runs/<newest first>-<run id>.json
    assert record_key.endswith("-refresh-no-tokenizers.json")
    run_record = json.loads(s.get_bytes(record_key))
    assert run_record["outcome"] == "published" and run_record["warnings"] == [reason]
