"""``--workers`` by default: the CPUs of the training actor's node, not of the driver's.

A real two-node ``ray.cluster_utils.Cluster`` whose nodes have different CPU counts (and neither has the
driver machine's): a 1-CPU head and a 3-CPU node offering ``trainer: 1``. A refresh without ``--workers``
must reserve and train with the trainer node's 3 CPUs. The cluster and the driver live in a child process
(``python -m tests.e2e.test_workers WORKDIR``, started by :func:`tests.support.clusters.run_isolated`), which
writes what happened to ``WORKDIR/result.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.clusters import in_process_cluster, run_isolated
from tests.support.corpora import clustered
from tests.support.files import write_parquet

MiB = 1 << 20
HEAD_CPUS, TRAINER_CPUS = 1, 3


def scenario(work: Path) -> dict[str, Any]:
    import ray

    from jobs.config import from_args
    from jobs.refresh import run
    from jobs.storage import open_store
    from jobs.storage.publish import read_manifest

    small = {"object_store_memory": 100 * MiB}
    cluster = in_process_cluster(HEAD_CPUS, **small)
    try:
        cluster.add_node(num_cpus=TRAINER_CPUS, resources={"trainer": 1}, **small)
        cluster.wait_for_nodes()
        store = work / "store"
        args = ["--input", str(work / "data"), "--store", str(store), "--vector-size", "8", "--epochs", "1"]
        summary = run(from_args([*args, "--min-count", "1", "--ray-address", cluster.address]))
        manifest = read_manifest(open_store(str(store)), str(summary.version))
        return {"trained": manifest["trained"], "workers": manifest["training"]["workers"]}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_workers_default_to_the_cpus_of_the_trainers_node() -> None:
    assert os.cpu_count() not in (HEAD_CPUS, TRAINER_CPUS), "pick CPU counts that differ from this machine's"
    with tempfile.TemporaryDirectory(prefix="workers-") as tmp:
        work = Path(tmp)
        for i in range(3):
            write_parquet(work / "data" / f"part-{i}.parquet", clustered(900, seed=i))
        status, output = run_isolated([sys.executable, "-m", "tests.e2e.test_workers", str(work)], timeout=300)
        assert status == 0 and (work / "result.json").exists(), output[-6000:]
        result = json.loads((work / "result.json").read_text())
    assert result["workers"] is None  # not given: resolved on the trainer's node
    assert result["trained"]["threads"] == TRAINER_CPUS
    assert "reserves trainer=1, CPU=3" in output
    tokens = result["trained"]["tokens_per_epoch"]
    assert result["trained"]["summary"] == f"trained {tokens:,} of {tokens:,} tokens per epoch"


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    work = Path(sys.argv[1])
    (work / "result.json").write_text(json.dumps(scenario(work), indent=2))
