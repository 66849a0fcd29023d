"""The store exporter on a real local store, read through the counting store seam, scraped over real HTTP;
and the alert rules and dashboard in ``infra/monitoring/`` against the names it really exports. No Ray."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from jobs import exporter, runs
from jobs.errors import StoreError
from jobs.storage import Pointer
from jobs.storage.publish import publish
from jobs.versions import main, parser
from tests.support import REPO
from tests.support.stores import CountingStore

MONITORING = REPO / "infra" / "monitoring"
CREATED = 1_800_000_000.0  # 2027-01-15T08:00:00Z, the version's created_at
VERSION = "20270115T080000Z-abc123"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Flaky(CountingStore):
    """The counting store whose pointer read fails while ``down`` (an S3 outage)."""

    down = False

    def read_pointer(self) -> Pointer | None:
        if self.down:
            raise StoreError(f"cannot read {self.uri}/CURRENT: 503 SlowDown; the store may be unreachable")
        return super().read_pointer()


def lineage(tmp_path: Path) -> Flaky:
    """A store with one published version and three runs: published, nothing new, a failed gate (exit 3)."""
    store = Flaky(tmp_path / "store")
    folder = tmp_path / "out"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "vectors.npy").write_bytes(b"\x93NUMPY")
    publish(store, VERSION, folder, {"created_at": "2027-01-15T08:00:00Z"}, expected=None)
    for i, (outcome, status) in enumerate([("published", 0), ("nothing new", 0), ("failed", 3)]):
        record = runs.RunRecord.begin("s3://corpus/events", run=f"refresh-{i}", now=CREATED + i * 86_400)
        record.partitions, record.rejected, record.waiting = 4, (2 if status else 0), 1
        record.gate_passed = None if outcome == "nothing new" else status == 0
        record.end(outcome, status)
        record.finished = f"2027-01-{15 + i}T08:05:00.250Z"
        record.seconds = 300.5
        runs.write(store, record)
    return store


def samples(collector: exporter.StoreCollector) -> dict[tuple[str, ...], float]:
    found = {}
    for family in collector.collect():
        for s in family.samples:
            labels = [s.labels["store"]] + [v for k, v in sorted(s.labels.items()) if k != "store"]
            found[(s.name.removeprefix(exporter.PREFIX), *labels)] = s.value
    return found


def test_a_scrape_reports_freshness_and_the_last_run_and_reads_each_record_once(tmp_path: Path) -> None:
    store = lineage(tmp_path)
    clock = Clock(CREATED + 2 * 86_400 + 3_600)  # an hour after the failed run started
    collector = exporter.StoreCollector([store], cache_seconds=30, clock=clock)
    store.reads.clear()
    uri = store.uri

    first = samples(collector)

    assert first[("store_up", uri)] == 1
    assert first[("current_version_info", uri, VERSION)] == 1
    assert first[("current_version_timestamp_seconds", uri)] == CREATED
    assert first[("current_version_age_seconds", uri)] == 2 * 86_400 + 3_600
    assert first[("last_run_exit_code", uri)] == 3
    assert {k[2]: v for k, v in first.items() if k[0] == "last_run_outcome"} == {
        "published": 0,
        "nothing_new": 0,
        "failed": 1,
        "stopped": 0,
    }
    assert first[("last_run_gate_passed", uri)] == 0
    assert {k[2]: v for k, v in first.items() if k[0] == "last_run_partitions"} == {
        "consumed": 4,
        "rejected": 2,
        "waiting": 1,
    }
    assert first[("last_run_timestamp_seconds", uri)] == CREATED + 2 * 86_400 + 300.25
    assert first[("last_success_timestamp_seconds", uri)] == CREATED + 86_400 + 300.25  # "nothing new" is a success
    assert first[("last_run_duration_seconds", uri)] == 300.5
    assert len(store.reads) == 4  # the manifest and three records

    clock.now += 29  # within the cache: nothing read
    store.reads.clear()
    store.listings.clear()
    pointer_reads = store.pointer_reads
    assert samples(collector)[("current_version_age_seconds", uri)] == 2 * 86_400 + 3_600 + 29
    assert (store.reads, store.listings, store.pointer_reads) == ([], [], pointer_reads)

    clock.now += 1  # stale: the pointer and one page of keys; the manifest and the records are known
    fresh = runs.RunRecord.begin("s3://corpus/events", run="refresh-3", now=clock.now)
    fresh.end("stopped", 143)
    runs.write(store, fresh)
    after = samples(collector)
    assert store.pointer_reads == pointer_reads + 1
    assert store.listings == [("runs", exporter.RECORDS_SCANNED)] and store.reads == [fresh.key]
    assert after[("last_run_exit_code", uri)] == 143 and after[("last_run_outcome", uri, "stopped")] == 1
    assert ("last_run_gate_passed", uri) not in after  # that run evaluated no candidate

    store.down = True  # an outage: the last values stay, marked, and the age keeps growing
    clock.now += 60
    down = samples(collector)
    assert down[("store_up", uri)] == 0 and down[("last_run_exit_code", uri)] == 143
    assert down[("current_version_age_seconds", uri)] == after[("current_version_age_seconds", uri)] + 60


def test_an_empty_store_and_the_command_line(tmp_path: Path) -> None:
    empty = CountingStore(tmp_path / "empty")
    found = samples(exporter.StoreCollector([empty], cache_seconds=0))
    assert found == {("store_up", empty.uri): 1.0}  # no version, no run: nothing else to say

    a = parser().parse_args(["exporter", "--store", "s3://models/w2v", "--store", "models", "--port", "0"])
    config = exporter.options(a)
    assert config == exporter.ExporterConfig(stores=("s3://models/w2v", "models"), port=0)
    assert (config.address, config.cache_seconds) == ("0.0.0.0", 30.0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["exporter", "--store", str(empty.root), "--address", "127.0.0.1", "--port", port]) == 2  # usage


def test_the_exporter_serves_prometheus_text_over_http(tmp_path: Path) -> None:
    store = lineage(tmp_path)
    server, _ = exporter.serve(exporter.ExporterConfig(stores=(store.uri,), port=0, address="127.0.0.1"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [code] = families["embedding_refresh_last_run_exit_code"].samples
    assert (code.labels, code.value) == ({"store": store.uri}, 3.0)
    assert families["embedding_refresh_current_version_timestamp_seconds"].samples[0].value == CREATED


# --- the alert rules and the dashboard --------------------------------------------------------------------

PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric identifiers a PromQL expression reads: not its functions, keywords, labels, strings, ranges."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings ($labels.store in a matcher, say)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery windows
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    names = set()
    for found in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr):
        if expr[found.end() :].lstrip().startswith("(") or found.group() in PROMQL_WORDS:
            continue  # a function call, or a keyword
        names.add(found.group())
    return names


def dashboard_queries(node: Any) -> list[str]:
    """Every PromQL expression in a Grafana dashboard: its panels' targets and its variables' queries."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        query = node.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if isinstance(query, str) and "label_values(" in query:  # a Grafana function around a metric
            found.append(re.sub(r"label_values\(\s*([^,]+),.*", r"\1", query))
        return found + [q for value in node.values() for q in dashboard_queries(value)]
    if isinstance(node, list):
        return [q for value in node for q in dashboard_queries(value)]
    return []


def test_the_alerts_and_the_dashboard_use_only_names_the_exporter_exports(tmp_path: Path) -> None:
    assert metric_names('max by (store) (rate(a_total{x="y"}[5m])) > on (store) group_left b unless c') == {
        "a_total",
        "b",
        "c",
    }
    store = lineage(tmp_path)
    exported = {family.name for family in exporter.StoreCollector([store], 0).collect() if family.samples}
    assert len(exported) == 11  # every family has samples for this store

    rules = {
        r["alert"]: r
        for g in yaml.safe_load((MONITORING / "alerts.yaml").read_text())["spec"]["groups"]
        for r in g["rules"]
    }
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    queries = [r["expr"] for r in rules.values()] + dashboard_queries(dashboard)
    used = set().union(*(metric_names(q) for q in queries))
    assert used <= exported, used - exported
    assert len(used) >= 9  # most of them are shown or alerted on

    # the four the operators asked for, on the right series
    assert rules["EmbeddingRefreshStale"]["expr"] == "embedding_refresh_current_version_age_seconds > 26 * 3600"
    assert rules["EmbeddingRefreshLastRunFailed"]["expr"] == "embedding_refresh_last_run_exit_code != 0"
    assert rules["EmbeddingRefreshGateFailed"]["expr"] == "embedding_refresh_last_run_gate_passed == 0"
    assert rules["EmbeddingRefreshPartitionsRejected"]["expr"] == (
        'embedding_refresh_last_run_partitions{state="rejected"} > 0'
    )
    assert all(set(r["annotations"]) == {"summary", "description"} and r["labels"]["severity"] for r in rules.values())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) and all(p["targets"] for p in panels)
