"""The shell wrappers of ``infra/`` run for real with fakes (``ray``, ``aws``, ``crane``) first on PATH, and the
configs a moto server can check (the bucket's lifecycle rule). The offline checks of the files themselves are in
``tests/unit/test_infra.py``; the real ``ray job submit`` path is the e2e tests'.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.infra import (
    INFRA,
    INPUT_URI,
    MODEL_ARN,
    MODEL_URI,
    RAY_VERSION,
    REPOSITORY,
    RETRY,
    ROOT,
    SUBMIT,
    Run,
    fake_command,
)
from tests.support.s3server import MotoServer

MOTO_KEYS = {"aws_access_key_id": "AKIATESTDUMMYKEY0001", "aws_secret_access_key": "dummy"}


def test_no_ray_port_open_to_the_world(cluster: dict[str, Any], tmp_path: Path) -> None:
    # Every node is in the group below (test_cluster_node_types), so Ray adds no rules of its own.
    assert "security_group" not in cluster["provider"]
    assert "--dashboard-host=127.0.0.1" in " ".join(cluster["head_start_ray_commands"])
    # That group: all traffic between members, SSH from the configured range, nothing from anywhere else.
    fake_aws = 'echo "$*" >> "$HOME/calls"; if [[ $2 == create-security-group ]]; then echo sg-1; fi'
    env = {"PATH": f"{fake_command(tmp_path, 'aws', fake_aws)}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    script = ["bash", str(INFRA / "aws" / "security-group.sh")]
    done = subprocess.run(script, env={**env, "VPC_ID": "v", "SSH_CIDR": "203.0.113.0/24"}, capture_output=True)
    assert done.returncode == 0 and done.stdout == b"sg-1\n"
    ingress = [c for c in (tmp_path / "calls").read_text().splitlines() if "authorize-security-group-ingress" in c]
    assert [c.split("--group-id sg-1 ")[1] for c in ingress] == [
        "--ip-permissions IpProtocol=-1,UserIdGroupPairs=[{GroupId=sg-1}]",
        "--protocol tcp --port 22 --cidr 203.0.113.0/24",
    ]
    refused = subprocess.run(script, env={**env, "VPC_ID": "v", "SSH_CIDR": "0.0.0.0/0"}, capture_output=True)
    assert refused.returncode == 2 and b"refusing" in refused.stderr


def test_pin_images_writes_one_digest_everywhere(tmp_path: Path) -> None:
    infra = tmp_path / "infra"
    shutil.copytree(INFRA, infra)
    pushed, digest = f"{REPOSITORY}:ray-{RAY_VERSION}-py311-20261207", "sha256:" + "ab" * 32
    fake_crane = f'echo "$*" >> "$HOME/calls"; echo "${{FAKE_DIGEST:-{digest}}}"'
    env = {"PATH": f"{fake_command(tmp_path, 'crane', fake_crane)}:{os.environ['PATH']}", "HOME": str(tmp_path)}

    def pin(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        script = ["bash", str(infra / "pin-images.sh"), *args]
        return subprocess.run(script, env={**env, **extra}, capture_output=True, text=True, timeout=30)

    assert pin("base").returncode == 0 and pin("app", pushed).returncode == 0
    assert recorded(tmp_path, "calls") == [f"digest rayproject/ray:{RAY_VERSION}-py311", f"digest {pushed}"]
    assert f"\nFROM rayproject/ray:{RAY_VERSION}-py311@{digest}\n" in (infra / "Dockerfile").read_text()
    texts = [p.read_text() for p in [*sorted((infra / "k8s").glob("*.yaml")), infra / "aws" / "cluster.yaml"]]
    references = [ref for text in texts for ref in re.findall(rf"{re.escape(REPOSITORY)}\S*", text)]
    assert len(references) == 12 and set(references) == {f"{pushed}@{digest}"}  # 11 in manifests, 1 on AWS
    # Nothing is written without a digest; an image given by digest is not a tag to resolve.
    before = {p: p.read_bytes() for p in infra.rglob("*") if p.is_file()}
    assert pin("app", pushed, FAKE_DIGEST="MANIFEST_UNKNOWN").returncode == 1
    assert pin("app", f"{pushed}@{digest}").returncode == 2
    assert {p: p.read_bytes() for p in infra.rglob("*") if p.is_file()} == before


def test_retry_sh_reruns_75_and_143_only_and_never_after_a_stop(tmp_path: Path) -> None:
    # A refresh that exits with the statuses in $CODES, one per run, counting its runs.
    fake = tmp_path / "refresh.sh"
    fake.write_text('#!/usr/bin/env bash\necho run >> "$RUNS"\nset -- $CODES\nn=$(wc -l < "$RUNS")\nexit "${!n}"\n')
    fake.chmod(0o755)

    def run(codes: str, attempts: str = "3") -> tuple[int, int, str]:
        runs = tmp_path / f"runs-{codes.replace(' ', '-')}-{attempts}"
        env = {**os.environ, "CODES": codes, "RUNS": str(runs), "RETRY_DELAY_S": "0"}
        done = subprocess.run(["bash", str(RETRY), attempts, str(fake)], env=env, capture_output=True, text=True)
        return done.returncode, len(recorded(tmp_path, runs.name)), done.stderr

    assert run("0")[:2] == (0, 1)
    assert run("75 0")[:2] == (0, 2)
    assert run("143 75 0")[:2] == (0, 3)
    status, runs, stderr = run("75 75 75 0")
    assert (status, runs) == (75, 3) and "run 3 of 3 exited 75; no attempts left" in stderr
    for refused in ("2", "3", "1", "137"):  # usage error, data or gate, bug, SIGKILL: never rerun
        assert run(f"{refused} 0")[:2] == (int(refused), 1), refused
    assert run("75 3 0")[:2] == (3, 2)
    assert run("75 0", attempts="1")[:2] == (75, 1)
    assert run("0", attempts="0")[0] == 2  # a usage error of the wrapper itself

    # `ray job stop` signals the whole process tree: the run exits 143 and is not run again.
    import psutil

    stopping = tmp_path / "stopping.sh"  # its trap is set before it marks its run: a stop never beats the trap
    stopping.write_text(
        '#!/usr/bin/env bash\ntrap "exit 143" TERM\necho run >> "$RUNS"\nwhile :; do sleep 0.05; done\n'
    )
    stopping.chmod(0o755)
    runs = tmp_path / "runs-stopped"
    env = {**os.environ, "RUNS": str(runs), "RETRY_DELAY_S": "0"}
    wrapper = subprocess.Popen(["bash", str(RETRY), "3", str(stopping)], env=env, stderr=subprocess.PIPE, text=True)
    while not runs.exists():
        time.sleep(0.02)
    for process in [psutil.Process(wrapper.pid), *psutil.Process(wrapper.pid).children(recursive=True)]:
        process.send_signal(signal.SIGTERM)
    _, stderr = wrapper.communicate(timeout=10)
    assert wrapper.returncode == 143 and runs.read_text() == "run\n" and "stopped; not running again" in stderr
    # A stop while waiting to run again ends the wait: the failed run's status, no second run.
    runs = tmp_path / "runs-stopped-waiting"
    env = {**os.environ, "CODES": "75 0", "RUNS": str(runs), "RETRY_DELAY_S": "30"}
    wrapper = subprocess.Popen(["bash", str(RETRY), "3", str(fake)], env=env, stderr=subprocess.PIPE, text=True)
    while "running again in 30s" not in (line := wrapper.stderr.readline() if wrapper.stderr else ""):
        assert line, "retry.sh ended before waiting"
    started = time.monotonic()
    wrapper.send_signal(signal.SIGTERM)
    _, stderr = wrapper.communicate(timeout=10)
    assert (wrapper.returncode, runs.read_text()) == (75, "run\n") and time.monotonic() - started < 5
    assert "stopped while waiting" in stderr


def test_the_lifecycle_rule_aborts_incomplete_multipart_uploads_under_the_model_prefix(moto: MotoServer) -> None:
    rule_file = json.loads((INFRA / "aws" / "lifecycle.json").read_text())
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1", **MOTO_KEYS)
    s3.create_bucket(Bucket="models-bucket")
    s3.put_bucket_lifecycle_configuration(Bucket="models-bucket", LifecycleConfiguration=rule_file)
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket="models-bucket")["Rules"]
    assert rule["Status"] == "Enabled" and rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    assert MODEL_ARN.endswith(":::models-bucket/" + rule["Filter"]["Prefix"])
    assert "infra/aws/lifecycle.json" in (ROOT / "docs" / "s3.md").read_text()


def recorded(tmp_path: Path, name: str) -> list[str]:
    return (tmp_path / name).read_text().splitlines() if (tmp_path / name).exists() else []


def test_submit_sh_is_valid_strict_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SUBMIT)], capture_output=True).returncode == 0
    assert "set -euo pipefail" in SUBMIT.read_text()


def test_same_window_submits_once(submit: Run, tmp_path: Path) -> None:
    first = submit("2026-05-01T01:00:00Z", "--model", "fasttext", "--json")
    second = submit("2026-05-01T23:59:00Z", "--model", "fasttext", "--json")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0 and "already ran in this window" in second.stderr
    calls = recorded(tmp_path, "calls")  # the job's status comes from the submission's own report
    assert calls == [calls[0]] * 2 and recorded(tmp_path, "accepted") == ["refresh-word2vec-20260501T0000Z"]
    assert calls[0] == (
        "job submit --submission-id refresh-word2vec-20260501T0000Z --address http://127.0.0.1:8265 --working-dir . "
        f"--runtime-env infra/runtime_env.yaml -- python -m jobs.refresh --input {INPUT_URI} --store {MODEL_URI} "
        "--model fasttext --json"
    )


def test_other_windows_get_other_ids_and_a_failed_job_fails(submit: Run, tmp_path: Path) -> None:
    assert submit("2026-05-01T13:45:00Z").returncode == 0
    assert submit("2026-05-02T13:45:00Z").returncode == 0
    assert submit("2026-05-02T13:45:00Z", REFRESH_WINDOW="hourly").returncode == 0
    assert submit("2026-05-02T14:05:00Z", REFRESH_WINDOW="hourly").returncode == 0
    days, hours = ["20260501T0000Z", "20260502T0000Z"], ["20260502T1300Z", "20260502T1400Z"]
    assert recorded(tmp_path, "accepted") == [f"refresh-word2vec-{window}" for window in days + hours]
    assert submit("2026-05-03T01:00:00Z", FAKE_RAY_STATUS="failed:1").returncode == 1  # the driver's own 1


@pytest.mark.parametrize(
    ("env", "status"),
    [
        ({"FAKE_RAY_STATUS": "failed:3"}, 3),  # the data or the gate: do not retry
        ({"FAKE_RAY_STATUS": "failed:75"}, 75),  # the infrastructure: retry
        ({"FAKE_RAY_STATUS": "failed:2"}, 2),
        ({"FAKE_RAY_STATUS": "failed:143"}, 143),
        ({"FAKE_RAY_STATUS": "failed:-15"}, 143),  # SIGTERM before the driver's handler
        ({"FAKE_RAY_STATUS": "failed:-9"}, 75),  # the OOM killer
        ({"FAKE_RAY_STATUS": "failed:"}, 75),  # the runtime env could not be set up
        ({"FAKE_RAY_STATUS": "failed:42"}, 1),
        ({"FAKE_RAY_STATUS": "stopped"}, 143),  # `ray job submit` itself exits 0 here
        ({"FAKE_RAY_STATUS": "lost", "FAKE_RAY_LATER": "failed:3"}, 3),  # waits for the job, then its status
        ({"FAKE_RAY_STATUS": "lost", "FAKE_RAY_LATER": "stopped"}, 143),
        ({"FAKE_RAY_REFUSE": "AuthenticationError: Unauthorized: Missing authentication token"}, 2),
        ({"FAKE_RAY_REFUSE": "ConnectionError: Failed to connect to Ray at address: http://127.0.0.1:8265"}, 75),
    ],
)
def test_submit_sh_exits_with_the_jobs_own_status(
    submit: Run, tmp_path: Path, env: dict[str, str], status: int
) -> None:
    done = submit("2026-05-01T01:00:00Z", **env)
    assert done.returncode == status, done.stderr
    polls = [c for c in recorded(tmp_path, "calls") if c.startswith("job status")]
    assert polls == (
        ["job status --address http://127.0.0.1:8265 refresh-word2vec-20260501T0000Z"] * 2
        if "FAKE_RAY_LATER" in env
        else []
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAY_AUTH_MODE": None}, "RAY_AUTH_MODE=token is required"),
        ({"RAY_AUTH_TOKEN": None}, "no Ray auth token"),
    ],
)
def test_missing_auth_fails_clearly(submit: Run, tmp_path: Path, env: dict[str, str | None], message: str) -> None:
    done = submit("2026-05-01T01:00:00Z", **env)
    assert done.returncode == 2 and message in done.stderr
    assert recorded(tmp_path, "calls") == []
