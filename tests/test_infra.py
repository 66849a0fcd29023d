"""Checks of ``infra/``, offline: the cluster launcher config against Ray's own schema, the Kubernetes manifests
strictly against the KubeRay v1.7.0 CRDs, the IAM policy's reach, and the shell wrappers run with a fake ``ray`` /
``aws`` first on PATH (the real ``ray job submit`` path is the e2e tests')."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
import yaml

from tests.s3server import MotoServer

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[1]
INFRA = ROOT / "infra"
CRDS = ROOT.parent / "shared" / "kuberay-crds-v1.7.0"
RAY_VERSION = "2.60.0"
IMAGE = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/embedding-refresh:ray-{RAY_VERSION}-py311"
INPUT_URI, INPUT_ARN = "s3://corpus-bucket/events/", "arn:aws:s3:::corpus-bucket/events/"
MODEL_URI, MODEL_ARN = "s3://models-bucket/word2vec/", "arn:aws:s3:::models-bucket/word2vec/"
ABORT = "s3:AbortMultipartUpload"
MOTO_KEYS = {"aws_access_key_id": "AKIATESTDUMMYKEY0001", "aws_secret_access_key": "dummy"}


def load(relative: str) -> Any:
    return yaml.safe_load((INFRA / relative).read_text())


def project_dependencies() -> list[str]:
    """``[project] dependencies`` of pyproject.toml (read without tomllib, which Python 3.10 lacks)."""
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.MULTILINE | re.DOTALL)
    assert block is not None
    return re.findall(r'"([^"]+)"', block.group(1))


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


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


def test_cluster_config_passes_rays_schema_and_validation(cluster: dict[str, Any]) -> None:
    ray_dir = Path(importlib.util.find_spec("ray").origin).parent  # type: ignore[union-attr,arg-type]
    jsonschema.validate(cluster, json.loads((ray_dir / "autoscaler" / "ray-schema.json").read_text()))
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cluster)))  # what `ray up` runs before touching AWS


def test_cluster_node_types(cluster: dict[str, Any]) -> None:
    types = cluster["available_node_types"]
    assert types[cluster["head_node_type"]]["resources"] == {"CPU": 0}
    assert [name for name, t in types.items() if t["resources"].get("trainer") == 1] == ["trainer"]
    assert "InstanceMarketOptions" not in types["trainer"]["node_config"], "the trainer must be on-demand"
    assert types["cpu_worker"]["min_workers"] == 0
    for name, node_type in types.items():
        config = node_type["node_config"]
        assert config["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
        # Without SecurityGroupIds Ray creates its own group, which opens SSH to 0.0.0.0/0.
        assert config["SecurityGroupIds"], name


def test_every_node_runs_the_pinned_image_and_installs_nothing(cluster: dict[str, Any]) -> None:
    assert not re.search(r"ray-wheels|nightly|\.dev0|:latest", json.dumps(cluster))  # comments aside
    assert cluster["docker"]["image"] == IMAGE
    commands = [c for key, value in cluster.items() if key.endswith("_commands") for c in value]
    assert not [c for c in commands if "pip " in c or "conda " in c]
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{RAY_VERSION}-py311\n" in dockerfile
    assert "pip install --no-cache-dir --constraint infra/constraints.txt ." in dockerfile
    assert f"assert ray.__version__ == '{RAY_VERSION}'" in dockerfile


def test_constraints_pin_every_dependency_inside_pyprojects_ranges() -> None:
    from packaging.requirements import Requirement

    pins = {}
    for line in (INFRA / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    declared = [Requirement(r) for r in project_dependencies()]
    for requirement in declared:
        if requirement.name == "ray":
            continue  # the base image's
        assert requirement.name in pins, requirement.name
        assert requirement.specifier.contains(pins[requirement.name]), (requirement, pins[requirement.name])


def test_token_auth_on_every_node(cluster: dict[str, Any]) -> None:
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cluster[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    setup = " ".join(cluster["setup_commands"])
    assert "secretsmanager" in setup and "~/.ray/auth_token" in setup  # fetched at boot, never inlined
    assert "RAY_AUTH_TOKEN=" not in (INFRA / "aws" / "cluster.yaml").read_text()


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


# --- Kubernetes -------------------------------------------------------------------------------------------
def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields rejected, as `kubectl apply` with strict field validation does."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def crd_validator(plural: str) -> jsonschema.Draft7Validator:
    if not CRDS.is_dir():
        pytest.skip(f"the KubeRay v1.7.0 CRDs are not at {CRDS}; manifests cannot be validated")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader where there is one: 25,000 lines
    crd = yaml.load((CRDS / f"ray.io_{plural}.yaml").read_text(), Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


MANIFESTS = {"raycluster.yaml": "rayclusters", "rayjob.yaml": "rayjobs", "raycronjob.yaml": "raycronjobs"}


@pytest.mark.parametrize(("name", "plural"), MANIFESTS.items())
def test_kuberay_manifest_matches_crd_strictly(name: str, plural: str) -> None:
    assert [e.message for e in crd_validator(plural).iter_errors(load(f"k8s/{name}"))] == []


@pytest.mark.parametrize(
    ("name", "path", "typo"),
    [
        ("raycluster.yaml", ["spec", "workerGroupSpecs", 1], "minReplica"),
        ("rayjob.yaml", ["spec"], "shutdownAfterJobFinish"),
        ("raycronjob.yaml", ["spec", "jobTemplate", "rayClusterSpec"], "enableInTreeAutoscalling"),
    ],
)
def test_misspelt_field_fails_validation(name: str, path: list[str | int], typo: str) -> None:
    document = copy.deepcopy(load(f"k8s/{name}"))
    node = document
    for key in path:
        node = node[key]
    node[typo] = True
    assert any(typo in e.message for e in crd_validator(MANIFESTS[name]).iter_errors(document))


def test_kuberay_cluster_and_jobs_are_shaped_for_the_refresh() -> None:
    from ray.autoscaler._private.kuberay.autoscaling_config import _get_custom_resources

    spec, job, cron = load("k8s/raycluster.yaml")["spec"], load("k8s/rayjob.yaml")["spec"], load("k8s/raycronjob.yaml")
    # The RayCronJob runs the RayJob, which makes the long-lived cluster's twin: one place to review.
    assert cron["spec"]["jobTemplate"] == job and job["rayClusterSpec"] == spec and cron["spec"]["schedule"]
    # Deleted when it ends (the head kept an hour after a failure), retried on failure (reruns are safe), failed
    # early when no node comes.
    rules = [(r["condition"], r["policy"]) for r in job["deletionStrategy"]["deletionRules"]]
    assert ({"jobStatus": "SUCCEEDED", "ttlSeconds": 0}, "DeleteCluster") in rules
    assert ({"jobStatus": "FAILED", "ttlSeconds": 0}, "DeleteWorkers") in rules
    assert ({"jobStatus": "FAILED", "ttlSeconds": 3600}, "DeleteCluster") in rules
    assert "shutdownAfterJobFinishes" not in job  # legacy cleanup, not to be mixed with deletionStrategy
    assert job["backoffLimit"] >= 1 and 0 < job["preRunningDeadlineSeconds"] < job["activeDeadlineSeconds"]
    argv = shlex.split(job["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.refresh"]
    assert argv[argv.index("--input") + 1] == INPUT_URI and argv[argv.index("--store") + 1] == MODEL_URI
    assert "--require-trainer-resource" in argv
    assert spec["rayVersion"] == RAY_VERSION and spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP" and not head.get("enableIngress")
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert groups["tokenize"]["minReplicas"] == 0
    trainer_params = groups["trainer"]["rayStartParams"]
    assert _get_custom_resources({}, trainer_params, "trainer") == {"trainer": 1}  # as the autoscaler reads it
    ray_start_flag = shlex.split(f"--resources={trainer_params['resources']}")  # as the pod's shell passes it
    assert json.loads(ray_start_flag[0].split("=", 1)[1]) == {"trainer": 1}
    for group in [head, *groups.values()]:
        pod = group["template"]["spec"]
        assert pod["serviceAccountName"] == "embedding-refresh"
        assert all(c["image"] == IMAGE for c in pod["containers"])
        # An explicit object store, well inside the pod's memory; metrics where Prometheus scrapes them.
        store = int(group["rayStartParams"]["object-store-memory"])
        memory = int(pod["containers"][0]["resources"]["limits"]["memory"].removesuffix("Gi")) << 30
        assert 0 < store <= memory // 4
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
    # `ray job stop` gives the driver time to clean up before SIGKILL.
    env = {e["name"]: e["value"] for e in head["template"]["spec"]["containers"][0]["env"]}
    assert int(env["RAY_JOB_STOP_WAIT_TIME_S"]) >= 30


def test_the_trainer_spools_to_a_volume_of_its_own() -> None:
    spec, job = load("k8s/raycluster.yaml")["spec"], load("k8s/rayjob.yaml")["spec"]
    trainer = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "trainer")["template"]["spec"]
    (container,) = trainer["containers"]
    assert "ephemeral-storage" not in json.dumps(container["resources"])  # the node's root disk is no place
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "spool"]
    argv = shlex.split(job["entrypoint"])
    assert argv[argv.index("--spool-dir") + 1] == mount["mountPath"]
    (volume,) = [v for v in trainer["volumes"] if v["name"] == "spool"]
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert int(claim["resources"]["requests"]["storage"].removesuffix("Gi")) >= 100


def test_capacity_selectors_work_with_managed_node_groups_and_karpenter() -> None:
    groups = {g["groupName"]: g["template"]["spec"] for g in load("k8s/raycluster.yaml")["spec"]["workerGroupSpecs"]}
    assert all("nodeSelector" not in pod for pod in groups.values())  # one label scheme only would be AND-ed
    terms = groups["trainer"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    required = [t["matchExpressions"] for t in terms["nodeSelectorTerms"]]  # alternatives: either scheme
    assert [{"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["ON_DEMAND"]}] in required
    assert [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}] in required
    preferred = groups["tokenize"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    labels = {e["key"]: e["values"] for p in preferred for e in p["preference"]["matchExpressions"]}
    assert labels == {"eks.amazonaws.com/capacityType": ["SPOT"], "karpenter.sh/capacity-type": ["spot"]}


def test_the_network_policy_admits_only_the_operator_the_submitter_and_prometheus() -> None:
    policy = load("k8s/raycluster.yaml")["spec"]["networkPolicy"]
    assert policy["mode"] == "DenyAllIngress"
    head_ports = {p["port"] for rule in policy["head"]["ingressRules"] for p in rule["ports"]}
    assert head_ports == {8265, 8080}
    submitters = [
        peer for rule in policy["head"]["ingressRules"] if rule["ports"][0]["port"] == 8265 for peer in rule["from"]
    ]
    submit_labels = load("k8s/cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert {"podSelector": {"matchLabels": submit_labels}} in submitters
    assert [p["port"] for rule in policy["worker"]["ingressRules"] for p in rule["ports"]] == [8080]


def test_no_exposed_dashboard_and_no_static_keys_in_kubernetes() -> None:
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        parsed = json.dumps(list(yaml.safe_load_all(path.read_text())))  # values only, comments aside
        exposed = r'"(LoadBalancer|NodePort|Ingress)"|"enableIngress": true|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY'
        assert not re.search(exposed, parsed), path.name
    account = load("k8s/serviceaccount.yaml")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_plain_cronjob_submits_through_the_wrapper() -> None:
    cronjob = load("k8s/cronjob.yaml")
    spec = cronjob["spec"]
    assert (cronjob["apiVersion"], cronjob["kind"]) == ("batch/v1", "CronJob")
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"][0] == "infra/submit.sh"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["RAY_AUTH_MODE"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]  # never an inline token
    head_service = f"http://{load('k8s/raycluster.yaml')['metadata']['name']}-head-svc:8265"
    assert (env["RAY_ADDRESS"], env["REFRESH_INPUT"], env["REFRESH_STORE"]) == (head_service, INPUT_URI, MODEL_URI)


# --- IAM --------------------------------------------------------------------------------------------------
def test_iam_policy_reaches_only_the_input_and_model_prefixes() -> None:
    policy = json.loads((INFRA / "aws" / "iam-policy.json").read_text())
    buckets = {INPUT_ARN.rsplit("/", 2)[0]: "events/", MODEL_ARN.rsplit("/", 2)[0]: "word2vec/"}
    granted = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and not {"NotAction", "NotResource"} & statement.keys()
        for action in as_list(statement["Action"]):
            assert action in {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", ABORT}, action
            for resource in as_list(statement["Resource"]):
                if action == "s3:ListBucket":  # a bucket ARN, only with a prefix condition inside its prefix
                    prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
                    assert all(p.startswith(buckets[resource]) for p in prefixes), statement
                    granted.add((action, resource + "/" + buckets[resource]))
                    continue
                prefix = next(p for p in (INPUT_ARN, MODEL_ARN) if resource.startswith(p))
                if action != "s3:GetObject":
                    assert prefix == MODEL_ARN, f"{action} outside the model prefix"
                granted.add((action, prefix))
    needed = {("s3:ListBucket", INPUT_ARN), ("s3:GetObject", INPUT_ARN), ("s3:ListBucket", MODEL_ARN)}
    needed |= {("s3:GetObject", MODEL_ARN), ("s3:PutObject", MODEL_ARN), ("s3:DeleteObject", MODEL_ARN)}
    needed |= {(ABORT, MODEL_ARN)}  # a failed multipart upload is aborted, not left to bill its parts
    assert granted == needed


def test_the_lifecycle_rule_aborts_incomplete_multipart_uploads_under_the_model_prefix(moto: MotoServer) -> None:
    rule_file = json.loads((INFRA / "aws" / "lifecycle.json").read_text())
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1", **MOTO_KEYS)
    s3.create_bucket(Bucket="models-bucket")
    s3.put_bucket_lifecycle_configuration(Bucket="models-bucket", LifecycleConfiguration=rule_file)
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket="models-bucket")["Rules"]
    assert rule["Status"] == "Enabled" and rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    assert MODEL_ARN.endswith(":::models-bucket/" + rule["Filter"]["Prefix"])
    assert "infra/aws/lifecycle.json" in (ROOT / "docs" / "s3.md").read_text()


# --- runtime_env.yaml and secrets -------------------------------------------------------------------------
def test_runtime_env_uploads_only_the_code(tmp_path: Path) -> None:
    from ray._private.runtime_env.packaging import _get_excludes  # the matcher `ray job submit` uses
    from ray.runtime_env import RuntimeEnv

    runtime_env = load("runtime_env.yaml")
    excluded = _get_excludes(tmp_path, runtime_env["excludes"])
    for path in [".venv", ".git", "data", "models", "demo", ".bench", "tests/data/a.jsonl", "jobs/__pycache__"]:
        assert excluded(tmp_path / path), path
    for path in ["jobs/models.py", "shards/data/__init__.py", "jobs/models/x.py", "infra/runtime_env.yaml", "tests"]:
        assert not excluded(tmp_path / path), path
    RuntimeEnv(**runtime_env)  # Ray's own field checks
    # No pip: the image has every dependency (RuntimeEnv ignores unknown, plugin, fields: none here).
    assert set(runtime_env) == {"env_vars", "excludes"}
    assert not re.search(r"SECRET|TOKEN|PASSWORD|KEY", " ".join(runtime_env.get("env_vars", {})), re.IGNORECASE)


def test_no_secrets_in_infra() -> None:
    looks_secret = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|-----BEGIN|RAY_AUTH_TOKEN=\S", re.IGNORECASE)
    for path in sorted(p for p in INFRA.rglob("*") if p.is_file()):
        assert not looks_secret.search(path.read_text()), path


# --- submit.sh --------------------------------------------------------------------------------------------

SUBMIT = INFRA / "submit.sh"
# Records every call; accepts a submission id once, then answers as Ray does for a duplicate id.
FAKE_RAY = r"""
echo "$*" >> "$HOME/calls"
id=$(sed -n 's/.*--submission-id \([^ ]*\).*/\1/p' <<< "$*")
if grep -qx "$id" "$HOME/accepted" 2>/dev/null; then
  echo "RuntimeError: Request failed with status code 500: Job with submission_id $id already exists." >&2
  exit 1
fi
echo "$id" >> "$HOME/accepted"
echo "Job '$id' submitted successfully"
exit "${FAKE_RAY_RC:-0}"
"""


Run = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def submit(tmp_path: Path) -> Run:
    """Runs infra/submit.sh for a UTC time `at` with the fake `ray` first on PATH, recording into tmp_path."""
    env = {"PATH": f"{fake_command(tmp_path, 'ray', FAKE_RAY)}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    env |= dict(RAY_ADDRESS="http://127.0.0.1:8265", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="test-token")
    env |= dict(REFRESH_INPUT=INPUT_URI, REFRESH_STORE=MODEL_URI)

    def run(at: str, *args: str, **overrides: str | None) -> subprocess.CompletedProcess[str]:
        merged = {k: v for k, v in {**env, "REFRESH_AT": at, **overrides}.items() if v is not None}
        return subprocess.run(["bash", str(SUBMIT), *args], env=merged, capture_output=True, text=True, timeout=30)

    return run


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
    calls = recorded(tmp_path, "calls")
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
    assert submit("2026-05-03T01:00:00Z", FAKE_RAY_RC="1").returncode == 1  # `ray job submit` saw it FAIL


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
