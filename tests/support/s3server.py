"""A real local S3 endpoint for tests and benchmarks: a ``moto_server`` process, and a fault-injecting proxy.

    >>> with MotoServer() as moto, FaultProxy(moto.endpoint) as proxy:      # doctest: +SKIP
    ...     proxy.fail("503", times=2, method="PUT", path_contains="partNumber=")
    ...     proxy.fail("lose_response", method="PUT", path_contains="/CURRENT")
    ...     ...  # point AWS_ENDPOINT_URL at proxy.endpoint; requests reach moto unless a fault matches

Both listen on 127.0.0.1 only, on a free port, and stop when their ``with`` block (or fixture) ends.

The proxy forwards requests byte for byte (headers in order, ``If-Match``/``ETag`` included, bodies framed by
``Content-Length`` or ``Transfer-Encoding: chunked`` with trailers) on one upstream connection per client
connection. A fault answers a matching request instead of forwarding it:

* ``"403"`` / ``"500"`` / ``"503"``: an S3-style XML error (``AccessDenied`` / ``InternalError`` / ``SlowDown``)
  after reading the body;
* ``"drop"``: read the request, then close the connection without answering;
* ``"lose_response"``: forward the request (the server acts on it), then close without answering, as when
  a response is lost on the way back, which is what makes a retried conditional write ambiguous.

``strip_headers`` drops request headers before forwarding, as a gateway in front of a store might, or as
a store that ignores them behaves: ``FaultProxy(url, strip_headers=("If-Match", "If-None-Match"))``.

botocore sends checksum trailers (``aws-chunked``) only over HTTPS; over the plain HTTP used here it puts
checksums in headers, so uploads arrive with a ``Content-Length``. Chunked bodies are passed through anyway.
"""

from __future__ import annotations

import collections
import http.client
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal

from tests.support.net import HOST, free_port

log = logging.getLogger(__name__)


#: Dummy credentials for a local S3 endpoint (moto accepts any); tests check they never leak.
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIATESTDUMMYKEY0001",
    "AWS_SECRET_ACCESS_KEY": "test/dummy/secret/never-logged-0001",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
Action = Literal["403", "500", "503", "drop", "lose_response"]
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "expect", "upgrade", "te"})
_ERROR_CODES = {
    "403": ("AccessDenied", "Forbidden"),  # what S3 answers for a missing key to a caller without ListBucket
    "500": ("InternalError", "Internal Server Error"),
    "503": ("SlowDown", "Slow Down"),
}


class MotoServer:
    """``python -m moto.server`` on a free loopback port; ``endpoint`` is its URL once started."""

    def __init__(self, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = ""

    def start(self) -> MotoServer:
        handle, self._log_path = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
        os.close(handle)  # the child holds its own copy
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer within {self.startup_timeout}s:\n{self.log_tail()}")

    def reset(self) -> None:
        """Forget every bucket and object."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def log_tail(self, lines: int = 30) -> str:
        if not self._log_path:
            return ""
        with open(self._log_path, errors="replace") as handle:
            return "".join(collections.deque(handle, maxlen=lines))

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._log_path:
            os.unlink(self._log_path)
            self._log_path = ""

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Fault:
    action: Action
    remaining: float  # requests still to fail; math.inf for all
    matches: Callable[[str, str], bool]  # (method, path with query) -> bool


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and what it did with it (``forwarded`` or the fault's action)."""

    method: str
    path: str
    headers: dict[str, str]
    outcome: str


class FaultProxy:
    """A loopback HTTP proxy in front of ``upstream`` that fails chosen requests. Thread-safe."""

    def __init__(
        self, upstream: str, timeout: float = 30.0, max_seen: int = 100_000, strip_headers: tuple[str, ...] = ()
    ) -> None:
        scheme, _, address = upstream.partition("://")
        if scheme != "http" or not address:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        host, _, port = address.rstrip("/").partition(":")
        self.upstream = (host, int(port or 80))
        self.timeout = timeout
        self.strip = frozenset(name.lower() for name in strip_headers)  # dropped before forwarding
        self.seen: collections.deque[Seen] = collections.deque(maxlen=max_seen)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    def fail(
        self,
        action: Action,
        times: float = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        when: Callable[[str, str], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` requests that match (every given condition) with ``action``."""

        def matches(request_method: str, path: str) -> bool:
            return (
                (method is None or request_method == method)
                and (path_contains is None or path_contains in path)
                and (when is None or when(request_method, path))
            )

        with self._lock:
            self._faults.append(Fault(action, times, matches))

    def fail_everything(self, action: Action = "503") -> None:
        self.fail(action, math.inf)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> int:
        """How many limited faults have not fired yet (0 once every planned failure happened)."""
        with self._lock:
            return int(sum(f.remaining for f in self._faults if f.remaining != math.inf))

    def injected(self) -> list[Seen]:
        return [s for s in list(self.seen) if s.outcome != "forwarded"]

    def _decide(self, method: str, path: str) -> Action | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    return fault.action
        return None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy
            timeout = proxy.timeout

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # idle keep-alive connections must not hold up stop()
        self.endpoint = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class _ProxyHandler(BaseHTTPRequestHandler):
    """One client connection: reads each request, fails it or forwards it on one upstream connection."""

    protocol_version = "HTTP/1.1"  # keep-alive, and Expect: 100-continue answered by the base class
    owner: FaultProxy
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:
        log.debug("fault proxy: " + format, *args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        super().finish()

    def _handle(self) -> None:
        body = self._read_body()
        action = self.owner._decide(self.command, self.path)
        self.owner.seen.append(Seen(self.command, self.path, dict(self.headers.items()), action or "forwarded"))
        if action is not None and action in _ERROR_CODES:
            self._send_error(int(action), *_ERROR_CODES[action])
            return
        if action == "drop":
            self.close_connection = True
            return
        status, reason, response_headers, payload = self._forward(body)
        if action == "lose_response":
            self.close_connection = True
            return
        self.send_response_only(status, reason)
        for name, value in response_headers:
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def _read_body(self) -> bytes:
        """The request body exactly as framed on the wire (chunk sizes, extensions and trailers kept)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = bytearray()
            while True:
                line = self.rfile.readline(65537)
                raw += line
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    break
                raw += self.rfile.read(size + 2)  # data and its CRLF
            while True:  # trailers, then the empty line
                line = self.rfile.readline(65537)
                raw += line
                if line in (b"\r\n", b"\n", b""):
                    return bytes(raw)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed by the server
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(*self.owner.upstream, timeout=self.owner.timeout)
            try:
                self._upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP and name.lower() not in self.owner.strip:
                        self._upstream.putheader(name, value)
                self._upstream.endheaders()
                if body:
                    self._upstream.send(body)
                response = self._upstream.getresponse()
                payload = response.read()
            except (http.client.HTTPException, ConnectionError):
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
                continue
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            if any(k.lower() == "transfer-encoding" for k, _ in headers):
                # http.client de-chunked the body; send it back framed by length instead
                headers = [(k, v) for k, v in headers if k.lower() not in ("transfer-encoding", "content-length")]
                headers.append(("Content-Length", str(len(payload))))
            if response.will_close:
                self._upstream.close()
                self._upstream = None
            return response.status, response.reason, headers, payload
        raise AssertionError("unreachable")

    def _send_error(self, status: int, code: str, reason: str) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>fault injected by the test proxy</Message></Error>"
        ).encode()
        self.send_response_only(status, reason)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
