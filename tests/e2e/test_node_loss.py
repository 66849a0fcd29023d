"""Losing nodes in the middle of a refresh, on a real multi-node Ray cluster (``ray.cluster_utils.Cluster``).

The cluster: a head with no CPUs, two 1-CPU workers that tokenize, and a 1-CPU node offering ``trainer: 1``
where the training actor goes. Every node is a separate raylet on this machine; "losing" one kills all of
its processes at once (SIGKILL, no graceful drain), as a spot reclaim or a kernel panic would.

(a) A tokenizing worker dies once the first partitions have reached the trainer; a replacement joins. Ray
    retries the lost tasks (``max_retries``) and rebuilds lost results from lineage; the published
    vocabulary must equal a single-process count of the input: no partition lost, none counted twice.
(b) The trainer's node dies mid-run: the run fails with :class:`~jobs.errors.ClusterError` saying the
    training actor died, the store is byte-for-byte as it was, and a rerun on a new trainer node succeeds.

"Once the first partitions have reached the trainer" is observed, not guessed: the runs spool to a folder
given with ``--spool-dir`` and a watcher kills the node when the spooled corpus first grows.

The cluster and the driver live in a child process (``python -m tests.e2e.test_node_loss WORKDIR``, started by
:func:`tests.support.clusters.run_isolated`): a driver connection of their own, Ray's temp dir, token and HOME of
their own, and nothing left behind for the session's in-process ``ray_session`` or other modules to trip
on. The child writes what happened to ``WORKDIR/result.json``; the tests here read it and the store.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.storage import open_store
from jobs.storage.publish import fetch_verified, model_files, read_manifest
from jobs.training import model as gmodel
from tests.support.clusters import QUICK_FAILURE_DETECTION, descendants, in_process_cluster, run_isolated
from tests.support.corpora import clustered
from tests.support.files import snapshot, write_parquet
from tests.support.flags import fast

MiB = 1 << 20
# At most about four tokenized partitions wait for the trainer at once, so tokenizing goes on while the trainer
# spools (with a larger budget these tiny partitions would all be tokenized before the trainer first answers).
FAST = fast(workers=1, max_in_flight=4)
FAST += ["--max-in-flight-bytes", "100KiB", "--tokenize-in-trainer-below", "0"]  # tasks, to lose their node
PARTITIONS_A, PARTITIONS_B, DOCUMENTS = 40, 20, 300


def corpus(seed: int) -> list[str | None]:
    return [*clustered(DOCUMENTS, seed=seed), None, f"Mixed CASE, punctuation! Partition {seed}"]


def reference_counts(docs: list[str | None]) -> collections.Counter[str]:
    """Single-process count with the default tokenizer's semantics (letters only, lowercased, 2-40 long)."""
    counts: collections.Counter[str] = collections.Counter()
    for doc in docs:
        counts.update(t for t in re.findall(r"[^\W\d_]+", (doc or "").lower()) if 2 <= len(t) <= 40)
    return counts


def write_input(folder: Path, partitions: int, first_seed: int, month: int) -> collections.Counter[str]:
    """``partitions`` Parquet partitions under ``folder`` in ``month``'s day folders; their reference word counts."""
    expected: collections.Counter[str] = collections.Counter()
    for i in range(partitions):
        docs = corpus(first_seed + i)
        write_parquet(folder / f"dt=2026-{month:02d}-{1 + i // 10:02d}" / f"part-{i:03d}.parquet", docs)
        expected.update(reference_counts(docs))
    return expected


# --- the child process: cluster, driver, node kills ----------------------------------------------------------


class KillWhenSpooling(threading.Thread):
    """Calls ``kill`` once the spooled corpus under ``spool`` first holds data (and ``also()`` holds, or
    ``patience`` seconds later), and tracks how large the spool grows."""

    def __init__(
        self, spool: Path, kill: Callable[[], None], also: Callable[[], bool] = lambda: True, patience: float = 10
    ) -> None:
        super().__init__(daemon=True)
        self.spool, self.kill, self.also, self.patience = spool, kill, also, patience
        self.waited = 0.0
        self.size_at_kill: int | None = None
        self.largest = 0
        self.error = ""
        self.stopped = threading.Event()

    def size(self) -> int:
        total = 0
        for path in self.spool.glob("*/corpus.txt"):
            with contextlib.suppress(FileNotFoundError):  # the trainer removes its spool when the run ends
                total += path.stat().st_size
        return total

    def run(self) -> None:
        killer, spooling = None, 0.0
        while not self.stopped.is_set():
            size = self.size()
            self.largest = max(self.largest, size)
            spooling = spooling or (time.monotonic() if size else 0.0)
            if killer is None and spooling and (self.also() or time.monotonic() - spooling > self.patience):
                self.size_at_kill, self.waited = size, time.monotonic() - spooling
                # in a thread of its own: the spool keeps being measured while nodes go and come
                killer = threading.Thread(target=self._kill, daemon=True)
                killer.start()
            time.sleep(0.01)
        if killer is not None:
            killer.join(timeout=60)

    def _kill(self) -> None:
        try:
            self.kill()
        except Exception as exc:  # reported to the test, which fails on it
            self.error = f"{type(exc).__name__}: {exc}"

    def report(self) -> dict[str, Any]:
        self.stopped.set()
        self.join(timeout=90)
        return {"size_at_kill": self.size_at_kill, "largest": self.largest, "waited": self.waited, "error": self.error}


def raylet_pid(node: Any) -> int:
    from ray._private import ray_constants

    return int(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)


def running(node: Any, task: str) -> bool:
    """Whether one of the node's workers is executing ``task`` now (Ray titles it ``ray::<task>``; idle ones
    are ``ray::IDLE``)."""
    for pid in descendants(raylet_pid(node)):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(f"ray::{task}".encode()):
                return True
    return False


def lose(cluster: Any, node: Any) -> None:
    """The node is gone at once, as when its machine is: its raylet's workers (the trainer actor, running
    tasks) are SIGKILLed first, then the raylet and the rest. ``remove_node`` alone kills only the raylet and
    its services; its workers would carry on for seconds, still answering the driver directly."""
    for pid in descendants(raylet_pid(node)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.remove_node(node, allow_graceful=False)


def scenario(work: Path) -> dict[str, Any]:
    """Run (a), then (b) and its rerun, on one cluster; what happened, as JSON-able data."""
    import ray

    from jobs.config import from_args
    from jobs.errors import RefreshError
    from jobs.refresh import run

    store = work / "store"

    def refresh(month: str, spool: Path) -> dict[str, Any]:
        spool.mkdir()
        args = ["--input", str(work / "data"), "--glob", f"dt=2026-{month}-*/*", "--store", str(store)]
        args += ["--spool-dir", str(spool), *FAST]
        summary = run(from_args([*args, "--ray-address", cluster.address]))
        return {
            "version": summary.version,
            "parent": summary.parent,
            "partitions": summary.partitions,
            "tokens": summary.tokens,
            "published": summary.published,
        }

    small = {"object_store_memory": 100 * MiB}
    cluster = in_process_cluster(0, system_config=QUICK_FAILURE_DETECTION, **small)
    result: dict[str, Any] = {}
    try:
        tokenizers = [cluster.add_node(num_cpus=1, **small) for _ in range(2)]
        trainer_node = cluster.add_node(num_cpus=1, resources={"trainer": 1}, **small)
        cluster.wait_for_nodes()

        # (a) a tokenizing worker dies after the first partitions reached the trainer; a replacement joins
        def lose_a_tokenizer() -> None:
            lose(cluster, tokenizers[0])
            cluster.add_node(num_cpus=1, **small)

        # ... while it is tokenizing a partition, so that a running task is lost, not an idle worker
        watcher = KillWhenSpooling(work / "spool-a", lose_a_tokenizer, also=lambda: running(tokenizers[0], "tokenize "))
        watcher.start()
        try:
            result["a"] = refresh("07", work / "spool-a")
        finally:
            result["a_kill"] = watcher.report()

        # (b) the trainer's node dies mid-run; then a rerun on a new trainer node
        before = snapshot(store)
        watcher = KillWhenSpooling(work / "spool-b", lambda: lose(cluster, trainer_node))
        watcher.start()
        try:
            result["b"] = refresh("08", work / "spool-b")
        except RefreshError as exc:
            result["b_error"] = {"type": type(exc).__name__, "message": str(exc)}
            print(f"(b) failed as expected: {type(exc).__name__}: {exc}", flush=True)
        finally:
            result["b_kill"] = watcher.report()
        result["b_store_unchanged"] = snapshot(store) == before
        result["b_pointer"] = open_store(str(store)).read_pointer().version  # type: ignore[union-attr]

        cluster.add_node(num_cpus=1, resources={"trainer": 1}, **small)
        cluster.wait_for_nodes()
        result["rerun"] = refresh("08", work / "spool-rerun")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    return result


def main(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    work = Path(argv[0])
    (work / "result.json").write_text(json.dumps(scenario(work), indent=2))
    return 0


# --- the tests ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outcome() -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="node-loss-") as tmp:
        work = Path(tmp)
        expected_a = write_input(work / "data", PARTITIONS_A, first_seed=0, month=7)
        expected_b = write_input(work / "data", PARTITIONS_B, first_seed=1000, month=8)
        status, output = run_isolated([sys.executable, "-m", "tests.e2e.test_node_loss", str(work)], timeout=480)
        assert status == 0 and (work / "result.json").exists(), output[-6000:]
        result = json.loads((work / "result.json").read_text())
        yield {**result, "work": work, "output": output, "expected_a": expected_a, "expected_b": expected_b}


def load(store: Path, version: str) -> tuple[dict[str, int], dict[str, Any]]:
    s = open_store(str(store))
    manifest = read_manifest(s, version)
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_verified(s, version, Path(tmp), model_files(manifest))
        return gmodel.counts_of(gmodel.load(folder / gmodel.MODEL_DIR)), manifest


def test_losing_a_tokenizing_worker_loses_no_partition_and_counts_none_twice(outcome: dict[str, Any]) -> None:
    kill = outcome["a_kill"]
    assert kill["error"] == "", outcome["output"][-4000:]
    assert kill["size_at_kill"] is not None and kill["size_at_kill"] < kill["largest"]  # killed mid-stream
    assert kill["waited"] < 10  # ... while the node was running a tokenize task, which Ray then retried:
    assert re.search(r"Task tokenize_piece failed\. There are \d+ retries remaining", outcome["output"])

    summary = outcome["a"]
    counts, manifest = load(outcome["work"] / "store", summary["version"])
    expected = outcome["expected_a"]
    assert counts == dict(expected)
    assert summary["tokens"] == manifest["tokens"] == sum(expected.values())
    uris = [p["uri"] for p in manifest["partitions"]]
    assert len(uris) == len(set(uris)) == PARTITIONS_A
    assert set(uris) == {str(p) for p in (outcome["work"] / "data").glob("dt=2026-07-*/*.parquet")}


def test_losing_the_trainers_node_fails_the_run_and_leaves_the_store_untouched(outcome: dict[str, Any]) -> None:
    kill = outcome["b_kill"]
    assert kill["error"] == "" and kill["size_at_kill"] is not None, outcome["output"][-4000:]
    assert "b" not in outcome, f"the run survived losing its trainer: {outcome.get('b')}"
    assert outcome["b_error"]["type"] == "ClusterError"
    assert "the training actor died" in outcome["b_error"]["message"]
    assert outcome["b_store_unchanged"]
    assert outcome["b_pointer"] == outcome["a"]["version"]


def test_a_rerun_on_a_new_trainer_node_succeeds(outcome: dict[str, Any]) -> None:
    rerun = outcome["rerun"]
    assert rerun["published"] and rerun["parent"] == outcome["a"]["version"]
    assert rerun["partitions"] == PARTITIONS_B and rerun["tokens"] == sum(outcome["expected_b"].values())
    counts, _ = load(outcome["work"] / "store", rerun["version"])
    assert counts == dict(outcome["expected_a"] + outcome["expected_b"])  # the lineage's cumulative counts
    assert open_store(str(outcome["work"] / "store")).read_pointer().version == rerun["version"]  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
