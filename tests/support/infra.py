"""What the offline checks of ``infra/`` share: the repository's paths, the parsed configs, fake commands first on
PATH (``ray``, ``aws``, ``crane``) and a runner for the shell wrappers."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

ROOT = REPO


INFRA = ROOT / "infra"


RAY_VERSION = "2.60.0"


REPOSITORY = "123456789012.dkr.ecr.us-west-2.amazonaws.com/embedding-refresh"


INPUT_URI, INPUT_ARN = "s3://corpus-bucket/events/", "arn:aws:s3:::corpus-bucket/events/"


MODEL_URI, MODEL_ARN = "s3://models-bucket/word2vec/", "arn:aws:s3:::models-bucket/word2vec/"


@functools.cache
def parsed(relative: str) -> list[Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return list(yaml.load_all((INFRA / relative).read_text(), Loader=loader))


def load(relative: str) -> Any:
    """The file's (first) document: a copy of it, for the caller to change if it likes."""
    return copy.deepcopy(parsed(relative)[0])


def fake_command(tmp_path: Path, name: str, body: str) -> Path:
    """An executable `name` in tmp_path/bin running `body`: put the folder first on PATH to stand in for a tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
    (bin_dir / name).chmod(0o755)
    return bin_dir


# --- AWS cluster launcher ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return load("aws/cluster.yaml")


# --- retries ------------------------------------------------------------------------------------------------
RETRY = INFRA / "retry.sh"


SUBMIT = INFRA / "submit.sh"


# Records every call; accepts a submission id once, then answers as Ray does for a duplicate id. A submission
# ends with the report `ray job submit` prints after the job's logs (log-prefixed and coloured as Ray's CLI
# does): FAKE_RAY_STATUS is succeeded (default), stopped, failed:<driver exit code>, failed: (no driver: Ray
# could not start it), or lost (no report: the client lost the dashboard; `ray job status` then answers
# FAKE_RAY_LATER after one RUNNING).
FAKE_RAY = r"""
echo "$*" >> "$HOME/calls"
cli() { printf '2026-05-01 02:00:00,000\t%s cli.py:75 -- \033[31m%s\033[39m\n' "$1" "$2"; }
report() {
  case "$1" in
    succeeded) cli SUCC "Job '$id' succeeded" ;;
    stopped) cli WARN "Job '$id' was stopped" ;;
    failed:) cli ERR "Job '$id' failed"; cli INFO "Status message: runtime_env setup failed: no such package" ;;
    failed:*) cli ERR "Job '$id' failed"
      cli INFO "Status message: Job entrypoint command failed with exit code ${1#failed:}, last available logs:"
      echo "Status message: Job entrypoint command failed with exit code 0, a log line" ;;
    running) cli INFO "Status for job '$id': RUNNING"; cli INFO "Status message: Job is currently running." ;;
  esac
}
if [[ "$1 $2" == "job status" ]]; then
  id=${*: -1}
  if [[ -e "$HOME/polled" ]]; then report "${FAKE_RAY_LATER:-succeeded}"; else touch "$HOME/polled"; report running; fi
  exit 0
fi
id=$(sed -n 's/.*--submission-id \([^ ]*\).*/\1/p' <<< "$*")
if [[ -n "${FAKE_RAY_REFUSE:-}" ]]; then
  echo "$FAKE_RAY_REFUSE" >&2
  exit 1
fi
if grep -qx "$id" "$HOME/accepted" 2>/dev/null; then
  echo "RuntimeError: Request failed with status code 500: Job with submission_id $id already exists." >&2
  exit 1
fi
echo "$id" >> "$HOME/accepted"
cli SUCC "Job '$id' submitted successfully"
echo "a log line of the job: Job '$id' succeeded"
status=${FAKE_RAY_STATUS:-succeeded}
[[ "$status" == lost ]] && exit 1
report "$status"
[[ "$status" == failed* ]] && exit 1
exit 0
"""


Run = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def submit(tmp_path: Path) -> Run:
    """Runs infra/submit.sh for a UTC time `at` with the fake `ray` first on PATH, recording into tmp_path."""
    env = {"PATH": f"{fake_command(tmp_path, 'ray', FAKE_RAY)}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    env |= dict(RAY_ADDRESS="http://127.0.0.1:8265", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="test-token")
    env |= dict(REFRESH_INPUT=INPUT_URI, REFRESH_STORE=MODEL_URI, REFRESH_STATUS_POLL="0")

    def run(at: str, *args: str, **overrides: str | None) -> subprocess.CompletedProcess[str]:
        merged = {k: v for k, v in {**env, "REFRESH_AT": at, **overrides}.items() if v is not None}
        return subprocess.run(["bash", str(SUBMIT), *args], env=merged, capture_output=True, text=True, timeout=30)

    return run
