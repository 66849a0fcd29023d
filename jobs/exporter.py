"""Freshness and outcome of the refresh for Prometheus, read from the model stores, so they outlive every run.

    python -m jobs.versions exporter --store s3://models-bucket/word2vec/ [--store s3://…/fasttext/] --port 9108
    curl -s localhost:9108/metrics | grep embedding_refresh_

Ray's own gauges (:mod:`jobs.metrics`) vanish about 20 s after the driver exits, and a RayJob deletes its
cluster with the job, so nothing that lives inside a run can say "no new version for 26 hours". This small
long-running process can: when Prometheus scrapes it, it reads what every run leaves in each store (the
pointer, the current version's manifest, the newest run records of :mod:`jobs.runs`) and serves, with the
label ``store`` (the store's URI):

    embedding_refresh_store_up                           1 when the last read of the store succeeded, else 0
    embedding_refresh_current_version_info{version}      1, naming the current version
    embedding_refresh_current_version_timestamp_seconds  when the current version was created
    embedding_refresh_current_version_age_seconds        seconds since then, at the scrape
    embedding_refresh_last_run_timestamp_seconds         when the newest recorded run ended
    embedding_refresh_last_run_exit_code                 its exit status (0, 2, 3, 75, 143 or 1: jobs.errors)
    embedding_refresh_last_run_outcome{outcome}          1 for its outcome, 0 for the others (published,
                                                         nothing_new, failed, stopped)
    embedding_refresh_last_run_gate_passed               1 or 0; absent when that run evaluated no candidate
    embedding_refresh_last_run_partitions{state}         its partitions consumed, rejected and waiting
    embedding_refresh_last_run_duration_seconds          how long it ran
    embedding_refresh_last_success_timestamp_seconds     when the newest run that exited 0 ended (looked for
                                                         among the newest RECORDS_SCANNED records)

A store's reads are cached for ``--cache-seconds`` (30), so several Prometheus replicas cost one read. A
manifest and a run record never change once written, so each is read once: a scrape after the first costs a
GET of the pointer and one LIST of the newest run records' keys, however long the store's history. A store
that cannot be read reports ``store_up 0`` and its last values (the age keeps growing); the process itself
never exits for it. ``infra/monitoring/`` holds the alert rules and the dashboard built on these names,
``docs/operating.md`` says how to run it and why it is an exporter and not a Pushgateway.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from jobs import runs
from jobs.errors import ConfigError, IntegrityError, RefreshError, VersionNotFound
from jobs.storage import Store, open_store
from jobs.storage.publish import Manifest, load_manifest

if TYPE_CHECKING:  # prometheus_client is imported when serving (the [exporter] extra): other commands run without it
    from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger("jobs.exporter")

PREFIX = "embedding_refresh_"
OUTCOMES = ("published", "nothing_new", "failed", "stopped")  # a run record's outcome, spaces as underscores
PARTITION_STATES = {"consumed": "partitions", "rejected": "rejected", "waiting": "waiting"}  # label -> field
RECORDS_SCANNED = 25  # the newest run records read to find the last success: a month of nightly runs


@dataclass(frozen=True)
class ExporterConfig:
    """What ``python -m jobs.versions exporter`` serves, and where."""

    stores: tuple[str, ...]
    port: int = 9108
    address: str = "0.0.0.0"  # inside a pod, where Prometheus reaches it; --address 127.0.0.1 on a laptop
    cache_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.stores:
            raise ConfigError("the exporter needs at least one --store")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}")
        if self.cache_seconds < 0:
            raise ConfigError(f"--cache-seconds must not be negative, got {self.cache_seconds:g}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The exporter's flags. A flag not given is left out, so the dataclass's default applies (and is shown)."""

    def default(name: str) -> Any:
        return ExporterConfig.__dataclass_fields__[name].default

    p.add_argument(
        "--store",
        dest="stores",
        action="append",
        required=True,
        metavar="URI",
        help="a folder or s3://bucket/prefix to watch (repeat for several stores)",
    )
    p.add_argument(
        "--port", type=int, default=argparse.SUPPRESS, help=f"port to serve /metrics on (default {default('port')})"
    )
    p.add_argument("--address", default=argparse.SUPPRESS, help=f"address to listen on (default {default('address')})")
    p.add_argument(
        "--cache-seconds",
        type=float,
        default=argparse.SUPPRESS,
        help=f"serve a store's values this long before reading it again (default {default('cache_seconds'):g})",
    )


def options(namespace: argparse.Namespace) -> ExporterConfig:
    """The validated ExporterConfig for flags parsed by :func:`add_arguments`. Raises ConfigError."""
    given = {f.name: getattr(namespace, f.name) for f in fields(ExporterConfig) if hasattr(namespace, f.name)}
    return ExporterConfig(**{**given, "stores": tuple(dict.fromkeys(namespace.stores))})


# --- what a store says ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What one read of a store found: plain data, turned into metrics by :func:`families`."""

    store: str
    up: bool
    version: str | None = None
    version_created: float | None = None
    last_run: dict[str, Any] | None = None
    last_success: float | None = None


@dataclass
class Reader:
    """Reads one store, remembering what never changes: manifests by version, run records by key."""

    store: Store
    scanned: int = RECORDS_SCANNED
    manifests: dict[str, Manifest] = field(default_factory=dict)
    records: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: unreadable, skipped

    def read(self) -> Snapshot:
        """The store's current version and newest runs. Raises StoreError (an outage) or IntegrityError."""
        pointer = self.store.read_pointer()
        version = pointer.version if pointer else None
        created = None
        if version is not None:
            if version not in self.manifests:
                self.manifests = {version: load_manifest(self.store, version)}  # only the current one is kept
            created = _epoch(self.manifests[version].created_at) or _version_time(version)
        keys = [k for k in self.store.list_keys(runs.FOLDER, limit=self.scanned) if k.endswith(".json")]
        self.records = {key: self.records[key] if key in self.records else self._record(key) for key in keys}
        newest = [r for r in (self.records[k] for k in keys) if r is not None]
        success = next((r for r in newest if r.get("exit_status") == 0), None)
        return Snapshot(
            store=self.store.uri,
            up=True,
            version=version,
            version_created=created,
            last_run=newest[0] if newest else None,
            last_success=_epoch(success.get("finished")) if success else None,
        )

    def _record(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.store.get_bytes(key, limit=runs.RECORD_LIMIT))
        except VersionNotFound:  # removed (gc --keep-runs) since it was listed
            return None
        except (IntegrityError, ValueError) as exc:  # larger than any record, or not JSON
            log.warning("skipping unreadable run record %s in %s: %s", key, self.store.uri, exc)
            return None
        return record if isinstance(record, dict) else None


def _epoch(text: Any) -> float | None:
    """Epoch seconds of an ISO 8601 UTC time as the project writes them (with or without milliseconds)."""
    if not isinstance(text, str):
        return None
    for form in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(text, form).replace(tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def _version_time(version: str) -> float | None:
    """A version name starts with its UTC creation time (``20261124T020000Z-ab12cd``)."""
    try:
        stamp = datetime.datetime.strptime(version.split("-", 1)[0], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()


# --- metrics -------------------------------------------------------------------------------------------------


def families(snapshots: list[Snapshot], now: float) -> list[Metric]:
    """The metric families for these stores' snapshots at time ``now`` (see the module docstring)."""
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name: str, help_text: str, *labels: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(PREFIX + name, help_text, labels=["store", *labels])

    up = gauge("store_up", "1 when the last read of the store succeeded, else 0 (the values are its last read)")
    info = gauge("current_version_info", "1, naming the store's current version", "version")
    created = gauge("current_version_timestamp_seconds", "Unix time the current version was created")
    age = gauge("current_version_age_seconds", "seconds since the current version was created")
    ended = gauge("last_run_timestamp_seconds", "Unix time the newest recorded run ended")
    code = gauge("last_run_exit_code", "exit status of the newest recorded run: 0, 2, 3, 75, 143 or 1")
    outcome = gauge("last_run_outcome", "1 for the newest recorded run's outcome, 0 for the others", "outcome")
    gate = gauge("last_run_gate_passed", "1 when the newest run's candidate passed the quality gate, 0 if not")
    partitions = gauge("last_run_partitions", "partitions the newest run consumed, rejected, left waiting", "state")
    duration = gauge("last_run_duration_seconds", "how long the newest recorded run ran")
    success = gauge("last_success_timestamp_seconds", "Unix time the newest run that exited 0 ended")
    for s in snapshots:
        up.add_metric([s.store], 1.0 if s.up else 0.0)
        if s.version is not None:
            info.add_metric([s.store, s.version], 1.0)
        if s.version_created is not None:
            created.add_metric([s.store], s.version_created)
            age.add_metric([s.store], max(0.0, now - s.version_created))
        if s.last_success is not None:
            success.add_metric([s.store], s.last_success)
        run = s.last_run
        if run is None:
            continue
        finished = _epoch(run.get("finished"))
        if finished is not None:
            ended.add_metric([s.store], finished)
        if isinstance(run.get("exit_status"), int):
            code.add_metric([s.store], float(run["exit_status"]))
        latest = str(run.get("outcome", "")).replace(" ", "_")
        for name in OUTCOMES:
            outcome.add_metric([s.store, name], 1.0 if latest == name else 0.0)
        if isinstance(run.get("gate_passed"), bool):
            gate.add_metric([s.store], 1.0 if run["gate_passed"] else 0.0)
        for state, key in PARTITION_STATES.items():
            partitions.add_metric([s.store, state], float(run.get(key) or 0))
        if isinstance(run.get("seconds"), int | float):
            duration.add_metric([s.store], float(run["seconds"]))
    return [up, info, created, age, ended, code, outcome, gate, partitions, duration, success]


class StoreCollector:
    """A Prometheus collector over several stores: each read at most once per ``cache_seconds``, under a lock,
    so concurrent scrapes share one read."""

    def __init__(self, stores: list[Store], cache_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.readers = [Reader(store) for store in stores]
        self.cache_seconds, self.clock = cache_seconds, clock
        self.snapshots: dict[str, Snapshot] = {}
        self.read_at: dict[str, float] = {}
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            for reader in self.readers:
                uri = reader.store.uri
                if self.clock() - self.read_at.get(uri, -float("inf")) >= self.cache_seconds:
                    self.read_at[uri] = self.clock()
                    self.snapshots[uri] = self._read(reader)
            snapshots = [self.snapshots[r.store.uri] for r in self.readers]
        yield from families(snapshots, self.clock())  # ages as of now, after the reads (seconds, on S3)

    def _read(self, reader: Reader) -> Snapshot:
        try:
            return reader.read()
        except (RefreshError, OSError) as exc:
            log.warning("cannot read the store %s: %s", reader.store.uri, exc)
            return replace(self.snapshots.get(reader.store.uri) or Snapshot(store=reader.store.uri, up=False), up=False)


def serve(config: ExporterConfig) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` for ``config.stores`` from a daemon thread; (the HTTP server, its thread). Raises
    ConfigError when the address cannot be listened on (a port in use), or without prometheus-client."""
    try:
        from prometheus_client.exposition import start_http_server
        from prometheus_client.registry import CollectorRegistry
    except ImportError as exc:
        raise ConfigError(
            f"the exporter needs prometheus-client ({exc}): pip install 'embedding-refresh[exporter]'"
        ) from exc
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector([open_store(uri) for uri in config.stores], config.cache_seconds))
    try:
        server, thread = start_http_server(config.port, config.address, registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {config.address}:{config.port}: {exc.strerror or exc}") from None
    log.info(
        "serving %d store(s) on http://%s:%d/metrics: %s",
        len(config.stores),
        config.address,
        server.server_port,
        ", ".join(config.stores),
    )
    return server, thread


def serve_forever(config: ExporterConfig) -> None:
    """:func:`serve` until SIGTERM (a pod's stop) or SIGINT; then stop serving and return."""
    logging.getLogger("jobs").setLevel(logging.INFO)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server, _ = serve(config)
    stop.wait()
    server.shutdown()
