"""A real Iceberg REST catalog for tests: pyiceberg's SQL catalog served behind the Iceberg REST spec.

    >>> with RestCatalogServer(tmp_path / "catalog.db", "file:///tmp/warehouse") as server:   # doctest: +SKIP
    ...     catalog = load_catalog("rest", type="rest", uri=server.uri)

No Python-installable REST catalog server is mature enough to start inside a test (the reference fixture and
Polaris, Nessie, Gravitino are Java; Lakekeeper is Rust), so this one serves the spec's routes that pyiceberg's
``RestCatalog`` uses to create, load and commit to tables (``/v1/config``, namespaces, ``…/tables``, and the
``CommitTableRequest`` of ``POST …/tables/{table}``), decoding the spec's JSON with pyiceberg's own request and
response models and keeping the tables in a SQLite SQL catalog. It runs in its own process
(``python -m tests.support.iceberg_rest``), so clients reach it over HTTP as they reach any REST catalog, and the
refresh reads through pyiceberg's ``RestCatalog`` code, unmodified.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.net import HOST, free_port


class RestCatalogServer:
    """``python -m tests.support.iceberg_rest`` on a free loopback port; ``uri`` is what a RestCatalog connects to."""

    def __init__(self, database: Path, warehouse: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.uri = f"http://{HOST}:{self.port}"
        self.args = ["--port", str(self.port), "--database", str(database), "--warehouse", warehouse]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RestCatalogServer:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.support.iceberg_rest", *self.args], env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/v1/config", timeout=1):
                    return self
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None:
                    raise RuntimeError(f"the REST catalog exited with {self.process.returncode}") from None
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("the REST catalog did not answer within 30 s")

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def serve(port: int, database: str, warehouse: str) -> None:
    from pyiceberg.catalog.rest import CreateTableRequest, TableResponse
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError, NoSuchTableError
    from pyiceberg.table import CommitTableRequest

    catalog = SqlCatalog("served", uri=f"sqlite:///{database}", warehouse=warehouse)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests read the clients' errors

        def answer(self, status: int, body: str | dict[str, Any] = "") -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def error(self, status: int, kind: str, message: str) -> None:
            self.answer(status, {"error": {"message": message, "type": kind, "code": status}})

        def route(self) -> list[str]:
            return [urllib.request.unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]

        def body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def table(self, namespace: str, name: str) -> str:
            loaded = catalog.load_table((namespace, name))
            response = TableResponse(metadata_location=loaded.metadata_location, metadata=loaded.metadata, config={})
            return response.model_dump_json(by_alias=True)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            parts = self.route()
            try:
                if parts == ["v1", "config"]:
                    self.answer(200, {"defaults": {}, "overrides": {}})
                elif parts == ["v1", "namespaces"]:
                    self.answer(200, {"namespaces": [list(n) for n in catalog.list_namespaces()]})
                elif len(parts) == 3 and parts[1] == "namespaces":
                    properties = catalog.load_namespace_properties(parts[2])
                    self.answer(200, {"namespace": [parts[2]], "properties": properties})
                elif len(parts) == 5 and parts[3] == "tables":
                    self.answer(200, self.table(parts[2], parts[4]))
                else:
                    self.error(404, "NotFoundException", self.path)
            except NoSuchNamespaceError as exc:
                self.error(404, "NoSuchNamespaceException", str(exc))
            except NoSuchTableError as exc:
                self.error(404, "NoSuchTableException", str(exc))

        def do_POST(self) -> None:
            parts, data = self.route(), self.body()
            try:
                if parts == ["v1", "namespaces"]:
                    request = json.loads(data)
                    catalog.create_namespace(tuple(request["namespace"]), request.get("properties") or {})
                    self.answer(200, {"namespace": request["namespace"], "properties": request.get("properties") or {}})
                elif len(parts) == 4 and parts[3] == "tables":
                    payload = json.loads(data)  # the spec makes these optional; pyiceberg's model wants each key
                    for optional in ("location", "partition-spec", "write-order"):
                        payload.setdefault(optional, None)
                    create = CreateTableRequest.model_validate(payload)
                    catalog.create_table(
                        (parts[2], create.name),
                        schema=create.table_schema,
                        location=create.location,
                        properties=create.properties,
                        **({"partition_spec": create.partition_spec} if create.partition_spec else {}),
                    )
                    self.answer(200, self.table(parts[2], create.name))
                elif len(parts) == 5 and parts[3] == "tables":
                    commit = CommitTableRequest.model_validate_json(data)
                    loaded = catalog.load_table((parts[2], parts[4]))
                    response = catalog.commit_table(loaded, commit.requirements, commit.updates)
                    self.answer(200, response.model_dump_json(by_alias=True))
                else:
                    self.error(404, "NotFoundException", self.path)
            except NoSuchTableError as exc:
                self.error(404, "NoSuchTableException", str(exc))
            except CommitFailedException as exc:
                self.error(409, "CommitFailedException", str(exc))

    ThreadingHTTPServer((HOST, port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--warehouse", required=True)
    options = parser.parse_args()
    serve(options.port, options.database, options.warehouse)
