"""What a platform team watches: Prometheus metrics scraped from a real node's metrics endpoint, and the run
records the store keeps for every run, failed ones included."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from jobs import versions
from jobs.config import from_args
from jobs.errors import EXIT_REFUSED, BadPartitionsError
from jobs.refresh import run
from jobs.storage import open_store
from jobs.storage.publish import read_manifest
from tests.support.corpora import clustered
from tests.support.files import write_parquet
from tests.support.flags import fast

FAST = fast(workers=1, max_in_flight=4)


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the (only) node's metrics agent serves: (name, labels without Ray's own) -> value."""
    [node] = [n for n in ray.nodes() if n["Alive"]]
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    ours = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ray_embedding_refresh_"):
                labels = tuple(
                    sorted(
                        (k, v) for k, v in sample.labels.items() if k in ("store", "outcome", "stage", "check", "exit")
                    )
                )
                ours[(sample.name, labels)] = sample.value
    return ours


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return samples.get((f"ray_embedding_refresh_{name}", tuple(sorted(labels.items()))))


def test_a_refresh_exports_its_metrics_to_the_nodes_endpoint(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    for part in range(3):
        write_parquet(data / "dt=1" / f"p{part}.parquet", clustered(100, seed=part))
    (data / "dt=1" / "bad.parquet").write_bytes(b"not parquet")
    before = time.time()
    summary = run(from_args(["--input", str(data), "--store", str(store), *FAST, "--skip-bad-partitions"]))
    uri = open_store(str(store)).uri
    manifest = read_manifest(open_store(str(store)), str(summary.version))
    # Ray exports every 10 s: wait for this run's last values.
    deadline, samples = time.monotonic() + 40, {}
    while time.monotonic() < deadline:
        samples = scrape()
        if value(samples, "runs_total", store=uri, outcome="published", exit="0") is not None:
            break
        time.sleep(1)
    assert value(samples, "partitions_total", store=uri, outcome="consumed") == 3
    assert value(samples, "partitions_total", store=uri, outcome="rejected") == 1
    assert value(samples, "bytes_total", store=uri, outcome="rejected") == len(b"not parquet")
    assert value(samples, "tokens_total", store=uri) == manifest["tokens"] == summary.tokens
    assert value(samples, "vocab_size", store=uri) == manifest["vocab_size"]
    assert value(samples, "gate_passed", store=uri) == 1.0
    train = value(samples, "stage_seconds", store=uri, stage="train")
    assert train is not None and round(train, 3) == manifest["timings"]["train"]
    words_per_second = value(samples, "training_words_per_second", store=uri)
    assert words_per_second is not None and words_per_second * train == pytest.approx(2 * summary.tokens)  # 2 epochs
    published = value(samples, "last_publish_timestamp_seconds", store=uri)
    assert published is not None and before < published < time.time()
    assert value(samples, "runs_total", store=uri, outcome="published", exit="0") == 1


def test_every_run_leaves_a_record_in_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    write_parquet(data / "dt=1" / "p.parquet", clustered(60, seed=1))
    argv = ["--input", str(data), "--store", str(store), *FAST]
    published = run(from_args(argv))
    run(from_args(argv))  # nothing new
    (data / "dt=2").mkdir()
    (data / "dt=2" / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(BadPartitionsError):
        run(from_args(argv))

    assert versions.main(["runs", "--store", str(store), "--json"]) == 0
    records: list[dict[str, Any]] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["outcome"], r["exit_status"], r["exit_class"]) for r in records] == [
        ("failed", EXIT_REFUSED, "refused"),
        ("nothing new", 0, "ok"),
        ("published", 0, "ok"),
    ]
    failed, nothing, first = records
    assert first["version"] == published.version and first["published"] and first["partitions"] == 1
    assert first["tokens"] == published.tokens and set(first["timings"]) >= {"tokenize", "train", "upload"}
    assert nothing["version"] is None and nothing["parent"] == published.version
    assert failed["published"] is False and "bad.parquet" in failed["error"] and failed["rejected"] == 1
    assert all(r["run"].startswith("local-") and r["finished"] >= r["started"] for r in records)
    assert versions.main(["runs", "--store", str(store), "--last", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 and "failed" in table[1] and "1 bad partition(s)" in table[1]
    assert (first["gate_passed"], nothing["gate_passed"], failed["gate_passed"]) == (True, None, None)

    # Retention: gc keeps the N newest records, the failed run's here.
    keys = open_store(str(store)).list_keys("runs")
    assert versions.main(["gc", "--keep", "5", "--keep-runs", "1", "--store", str(store)]) == 0
    assert "removed 2 run record(s), kept the 1 newest" in capsys.readouterr().out
    assert open_store(str(store)).list_keys("runs") == keys[:1] and len(keys) == 3
