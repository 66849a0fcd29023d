"""An autoscaling cluster on which no tokenizing node can ever start: the refresh must not wait forever.

The cluster is ``infra/local/autoscaling.yaml`` without its tokenizing node type: the autoscaler (Ray's fake
multi-node provider, as in ``tests/e2e/test_autoscaling.py``) can start the trainer's node and nothing else, so
the tokenizing tasks the job places outside the trainer's reservation (the demand that would add tokenizing
nodes) wait for a CPU that never comes. After ``--tokenizer-wait`` seconds they move into the reservation:
the run succeeds, every partition tokenized once on the trainer's node, and the warning is in the driver's
log, the manifest (``tokenizing_fallback``) and the run record (``warnings``).

Run with ``python -m pytest tests/e2e/test_tokenizer_wait.py -q`` (about a minute on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobs.storage import open_store
from jobs.storage.publish import read_manifest
from tests.support.autoscaling import Record, autoscaling_config, fake_cluster, run_autoscaled_refresh, write_days

WAIT = 5


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Record, Path]:
    data, store = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("models") / "w2v"
    write_days(data, 1, 4)
    config: dict[str, Any] = autoscaling_config()
    del config["available_node_types"]["cpu_worker"]  # no node type that tokenizing tasks could start
    config["max_workers"] = 1
    with fake_cluster(config) as head:
        flags = ["--workers", "2", "--require-trainer-resource", "--tokenizer-wait", str(WAIT), "--max-in-flight", "4"]
        record = run_autoscaled_refresh(head, data, store, "refresh-no-tokenizers", flags, timeout=300)
    return record, store


def test_tasks_that_no_node_can_take_fall_back_to_the_trainers_reservation(run: tuple[Record, Path]) -> None:
    record, store = run
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
