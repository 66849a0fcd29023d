"""Real local Ray clusters for the end-to-end tests, started and stopped by handle, never by name.

    >>> with RayHead(num_cpus=2) as head:                                   # doctest: +SKIP
    ...     head.ray("job", "submit", "--address", head.dashboard, "--", "python", "-c", "print(1)")
    ...     head.api("/api/jobs/")

Other Ray clusters may run on the same machine (other people's test runs), so a cluster started here:

* is ``ray start --head --block`` run as a child in a process group of its own. Ray's reaper process kills
  its whole process group when its parent dies; in the caller's group that would be the test runner.
  Stopping it signals the head, then what is left of that group, then any process still naming the
  cluster's temp dir: never ``ray stop``, which stops every cluster of the user;
* has a short private ``--temp-dir`` (unix socket paths must stay under ~107 bytes) and ``RAY_TMPDIR``, so
  the "current cluster" file and ``session_latest`` stay out of ``/tmp/ray``;
* uses ports picked free here (GCS, dashboard, client server, dashboard agent, ...), none of Ray's fixed
  defaults (6379, 8265, 10001, 52365); the dashboard and Jobs API listen on loopback only (the GCS and
  raylets bind the machine's address: Ray turns ``--node-ip-address 127.0.0.1`` into it);
* runs with token auth (``RAY_AUTH_MODE=token``) and a token of its own, in a private ``HOME``
  (``HOME/.ray/auth_token``), and every client gets the same ``HOME`` from :meth:`RayHead.env`, so the
  user's own ``~/.ray/auth_token`` is never read or written;
* pins ``--num-cpus`` and a small object store.

:func:`run_isolated` gives the same isolation to a child process that builds its clusters in-process with
``ray.cluster_utils.Cluster`` (:func:`in_process_cluster`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from tests.support.net import HOST, free_ports

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv the tests run in: its `ray` and `python` start the cluster
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
MiB = 1 << 20
# Declare a silent node dead after ~1.5 s instead of Ray's default ~15 s (5 missed checks, 3 s apart).
QUICK_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


def short_temp_dir(prefix: str) -> str:
    """A fresh private directory directly under /tmp (socket paths below it must stay short)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def private_home(token: str | None) -> str:
    """A ``HOME`` holding ``.ray/auth_token`` (mode 600) when ``token`` is given, else no token at all."""
    home = short_temp_dir("rh")
    if token is not None:
        (Path(home) / ".ray").mkdir(mode=0o700)
        path = Path(home) / ".ray" / "auth_token"
        path.write_text(token)
        path.chmod(0o600)
    return home


def clean_env(home: str, **extra: str) -> dict[str, str]:
    """The environment of a Ray process or client of one cluster: nothing inherited that names another.

    ``RAY_*`` (an address, a token, a mode), ``AWS_*`` and ``PYTHONPATH`` are dropped; the venv's ``bin``
    comes first on ``PATH``, so a job's ``python`` is the interpreter that has this project's dependencies.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_")) and k != "PYTHONPATH"}
    env.update(
        HOME=home,
        RAY_AUTH_MODE="token",
        RAY_USAGE_STATS_ENABLED="0",
        PATH=os.pathsep.join(filter(None, [str(BIN), env.get("PATH")])),
    )
    env.update(extra)
    return env


class _Proc(NamedTuple):
    pid: int
    ppid: int
    pgid: int


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    return [p.pid for p in _processes() if p.pgid == pgid]


def descendants(pid: int) -> list[int]:
    """Live processes below ``pid`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for p in _processes():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = [], list(children.get(pid, []))
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def processes_naming(path: str) -> list[int]:
    """Live processes whose command line names ``path`` or a file below it (a private temp dir: only our
    own processes can)."""
    found = []
    for p in _processes():
        with contextlib.suppress(OSError):
            words = Path(f"/proc/{p.pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split()
            if any(w == path or w.startswith(path + "/") or w.endswith("=" + path) or f"={path}/" in w for w in words):
                found.append(p.pid)
    return found


def _processes() -> Iterator[_Proc]:
    """Every live, non-zombie process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        state, ppid, pgid = stat[stat.rindex(")") + 2 :].split()[:3]  # the name may hold spaces and parentheses
        if state != "Z":
            yield _Proc(int(entry.name), int(ppid), int(pgid))


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    """Signal process group ``pgid`` if it still has members (an empty group's number may be reused)."""
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)


def _kill(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class RayHead:
    """``ray start --head --block`` with token auth, private temp dir and HOME, explicit loopback ports."""

    def __init__(
        self,
        *,
        num_cpus: int,
        resources: Mapping[str, float] | None = None,
        object_store_memory: int = 150 * MiB,
        autoscaling_config: Mapping[str, Any] | None = None,
        system_config: Mapping[str, Any] | None = None,
        extra_env: Mapping[str, str] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self.object_store_memory = object_store_memory
        self.autoscaling_config = autoscaling_config
        self.system_config = dict(system_config or {})
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(32)
        self.home = self.temp_dir = self._tokenless_home = ""
        self.gcs_port = self.dashboard_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = ""

    @property
    def address(self) -> str:
        """The GCS address, for ``ray.init(address=...)`` and ``ray start --address``."""
        return f"{HOST}:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        """The dashboard (and Jobs API) URL, for ``ray job submit --address``."""
        return f"http://{HOST}:{self.dashboard_port}"

    def env(self, *, token: bool = True, **extra: str) -> dict[str, str]:
        """A client environment for this cluster; ``token=False`` gives one with no token anywhere."""
        return clean_env(self.home if token else self._tokenless_home, **extra)

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> RayHead:
        self.temp_dir = short_temp_dir("rt")
        self.home = private_home(self.token)
        self._tokenless_home = private_home(None)
        (gcs, dashboard, client, agent_http, agent_grpc, runtime_env_agent, metrics, node_manager, object_manager) = (
            free_ports(9)
        )
        self.gcs_port, self.dashboard_port = gcs, dashboard
        command = [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--disable-usage-stats",
            "--node-ip-address",
            HOST,
            "--port",
            str(gcs),
            "--temp-dir",
            self.temp_dir,
            "--include-dashboard",
            "true",
            "--dashboard-host",
            HOST,
            "--dashboard-port",
            str(dashboard),
            "--ray-client-server-port",
            str(client),
            "--dashboard-agent-listen-port",
            str(agent_http),
            "--dashboard-agent-grpc-port",
            str(agent_grpc),
            "--runtime-env-agent-port",
            str(runtime_env_agent),
            "--metrics-export-port",
            str(metrics),
            "--node-manager-port",
            str(node_manager),
            "--object-manager-port",
            str(object_manager),
            "--min-worker-port",
            "0",
            "--max-worker-port",
            "0",
            "--num-cpus",
            str(self.num_cpus),
            "--object-store-memory",
            str(self.object_store_memory),
        ]
        if self.resources:
            command += ["--resources", json.dumps(self.resources)]
        if self.system_config:
            command += ["--system-config", json.dumps(self.system_config)]
        if self.autoscaling_config is not None:
            config = json.loads(json.dumps(self.autoscaling_config))  # a deep copy
            if config["provider"]["type"] == "fake_multinode":
                # where the fake provider's nodes join (else this machine's IP, port 6379: someone else's?)
                config["provider"]["gcs_address"] = self.address
            path = Path(self.temp_dir) / "autoscaling.yaml"
            path.write_text(yaml.safe_dump(config))
            command += ["--autoscaling-config", str(path)]
        handle, self._log_path = tempfile.mkstemp(prefix="ray-head-", suffix=".log", dir=self.temp_dir)
        self._process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.temp_dir,
            env=clean_env(self.home, RAY_TMPDIR=self.temp_dir, **self.extra_env),
            start_new_session=True,  # its own process group: see the module docstring
        )
        os.close(handle)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self._process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                status, _ = self.api("/api/version", timeout=2)
                if status == 200 and self.alive_nodes():
                    return
            time.sleep(0.25)
        raise RuntimeError(f"the Ray head did not come up within {self.startup_timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the head (it shuts its services down in a few seconds), then SIGKILL what is left of its
        process group or still names its temp dir."""
        process, self._process = self._process, None
        if process is not None:
            pgid = process.pid  # start_new_session: the group is the head's pid
            with contextlib.suppress(ProcessLookupError):
                # the head alone: signalling the whole group at once leaves the GCS waiting for raylets
                # that are already gone, for tens of seconds
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and group_members(pgid):
                time.sleep(0.2)
            _kill_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        if self.temp_dir:
            # a process that left the group (a worker started with setsid, say) still names our temp dir
            for sig in (signal.SIGTERM, signal.SIGKILL):
                _kill(processes_naming(self.temp_dir), sig)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and processes_naming(self.temp_dir):
                    time.sleep(0.2)
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        for home in (self.home, self._tokenless_home):
            if home:
                shutil.rmtree(home, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "".join(Path(self._log_path).read_text(errors="replace").splitlines(keepends=True)[-lines:])
        except OSError:
            return ""

    def session_logs(self) -> Path:
        return Path(self.temp_dir) / "session_latest" / "logs"

    def __enter__(self) -> RayHead:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients ------------------------------------------------------------------------------------------

    def ray(
        self,
        *args: str,
        token: bool = True,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``ray`` CLI as a client of this cluster (output captured, never raises on failure)."""
        return subprocess.run(
            [str(BIN / "ray"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env(token=token), **(env or {})},
            cwd=cwd or REPO,
        )

    def api(
        self, path: str, *, method: str = "GET", body: Any = None, token: str | None = "", timeout: float = 10
    ) -> tuple[int, Any]:
        """One dashboard HTTP request; ``token=None`` sends no ``Authorization`` header. (status, JSON or text)."""
        headers = {"Content-Type": "application/json"}
        token = self.token if token == "" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.dashboard + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def job(self, submission_id: str) -> dict[str, Any] | None:
        status, info = self.api(f"/api/jobs/{submission_id}")
        return info if status == 200 else None

    def jobs(self) -> list[dict[str, Any]]:
        status, info = self.api("/api/jobs/")
        assert status == 200, info
        return list(info)

    def wait_job(
        self, submission_id: str, timeout: float = 300, states: frozenset[str] = TERMINAL, poll: float = 0.2
    ) -> dict[str, Any]:
        """Poll the Jobs API until the job is in one of ``states``; its info."""
        deadline = time.monotonic() + timeout
        info = None
        while time.monotonic() < deadline:
            info = self.job(submission_id)
            if info is not None and info["status"] in states:
                return info
            time.sleep(poll)
        raise TimeoutError(f"job {submission_id} not in {sorted(states)} after {timeout}s: {info}")

    def nodes(self) -> list[dict[str, Any]]:
        """Every node the GCS knows (state API through the dashboard): node_id, state, resources_total, ..."""
        status, info = self.api("/api/v0/nodes?limit=1000&detail=true", timeout=20)
        if status != 200 or not isinstance(info, dict):
            raise OSError(f"listing nodes failed: {status} {info}")
        return list(info["data"]["result"]["result"])

    def alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes() if n["state"] == "ALIVE"]


def runtime_env(**env_vars: str) -> dict[str, Any]:
    """``infra/runtime_env.yaml`` without its ``pip`` section (the cluster's Python already has everything),
    plus ``env_vars``: its ``excludes`` and ``env_vars`` are the ones a real submission uses."""
    spec = yaml.safe_load((REPO / "infra" / "runtime_env.yaml").read_text())
    return {"excludes": list(spec["excludes"]), "env_vars": {**spec.get("env_vars", {}), **env_vars}}


def wait_until(predicate: Any, timeout: float, poll: float = 0.5, what: str = "condition") -> Any:
    """Call ``predicate`` until it returns something truthy (returned), or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(poll)


def run_isolated(args: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Run a command that starts Ray clusters of its own in-process (``ray.cluster_utils.Cluster``), isolated
    as :class:`RayHead` is: a process group of its own, a private ``RAY_TMPDIR`` (Ray's default temp dir, its
    "current cluster" file included) and ``HOME`` with a fresh token, token auth, this repository importable
    by every worker. Whatever it leaves running is killed afterwards. Returns (exit status, output)."""
    temp, home = short_temp_dir("rt"), private_home(secrets.token_hex(32))
    process = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=clean_env(home, RAY_TMPDIR=temp, PYTHONPATH=str(REPO), **(env or {})),
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        status = process.returncode
    except subprocess.TimeoutExpired:
        _kill_group(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        status = -signal.SIGKILL
        output += f"\n[killed after {timeout}s]"
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            _kill_group(process.pid, sig)
            _kill(processes_naming(temp), sig)
            time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return status, output


def in_process_cluster(
    head_cpus: int, object_store_memory: int = 100 * MiB, system_config: Mapping[str, Any] | None = None
) -> Any:
    """A ``ray.cluster_utils.Cluster`` whose head has ``head_cpus`` CPUs, a small object store, no dashboard
    and a free agent port, for a child process started by :func:`run_isolated`; add nodes with ``add_node``.

    No exit hooks: they install signal handlers, which only the main thread may, and tests add nodes from
    threads of their own. The caller shuts the cluster down; :func:`run_isolated` sweeps up after a crash.
    """
    from ray.cluster_utils import Cluster

    head: dict[str, Any] = {
        "num_cpus": head_cpus,
        "object_store_memory": object_store_memory,
        "include_dashboard": False,
        "dashboard_agent_listen_port": free_ports(1)[0],
    }
    if system_config:
        head["_system_config"] = dict(system_config)
    return Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args=head)


def report(pytestconfig: Any, line: str) -> None:
    """Write ``line`` to the terminal of this pytest run, past its output capture (a measurement a test
    makes for the reader, shown even when the tests pass)."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        with pytestconfig.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
            reporter.write_line(line)
