"""Checks of ``infra/``, offline: the cluster launcher config against Ray's own schema, the Kubernetes manifests
strictly against the KubeRay v1.7.0 CRDs, each role's IAM reach, the pods' restrictions and identities, digest
pins, retry policies, and the shell wrappers run with fakes (``ray``, ``aws``, ``crane``) first on PATH (the real
``ray job submit`` path is the e2e tests')."""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.util
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.infra import (
    INFRA,
    INPUT_ARN,
    INPUT_URI,
    MODEL_ARN,
    MODEL_URI,
    RAY_VERSION,
    REPOSITORY,
    RETRY,
    ROOT,
    load,
    parsed,
)

# Beside the checkout (/work/main -> /work/shared), or above a worktree's parent folder.
CRDS = next(
    (d / "shared" / "kuberay-crds-v1.7.0" for d in ROOT.parents if (d / "shared" / "kuberay-crds-v1.7.0").is_dir()),
    ROOT.parent / "shared" / "kuberay-crds-v1.7.0",
)


DIGEST = r"@sha256:[0-9a-f]{64}"


IMAGE = re.compile(rf"{re.escape(REPOSITORY)}:ray-{RAY_VERSION}-py311[A-Za-z0-9_.-]*{DIGEST}")


ABORT = "s3:AbortMultipartUpload"


def project_dependencies() -> list[str]:
    """What installing the job (``.[job]``, as infra/Dockerfile does) requires: ``[project] dependencies`` and
    the extras ``[job]`` names, itself included (read without tomllib, which Python 3.10 lacks)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    assert block is not None
    requirements = re.findall(r'"([^"]+)"', block.group(1))
    wanted, seen = ["job"], set()
    while wanted:
        extra = wanted.pop()
        seen.add(extra)
        found = re.search(rf"^{extra} = \[(.*?)\]$", text, re.MULTILINE | re.DOTALL)
        assert found is not None, extra
        for requirement in re.findall(r'"([^"]+)"', found.group(1)):
            if requirement.startswith("embedding-refresh["):  # the project's own extras
                wanted += [e for e in requirement[18:-1].split(",") if e not in seen]
            else:
                requirements.append(requirement)
    return requirements


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


# --- what every config is built from ----------------------------------------------------------------------
def load_all(relative: str) -> list[Any]:
    return copy.deepcopy(parsed(relative))


def ray_cluster_specs() -> dict[str, dict[str, Any]]:
    """The RayCluster spec of each KubeRay manifest (test_kuberay_cluster_and_jobs_are_shaped_for_the_refresh
    keeps the three identical, so each check below holds for all of them)."""
    job = load("k8s/rayjob.yaml")["spec"]
    cron = load("k8s/raycronjob.yaml")["spec"]["jobTemplate"]
    return {"raycluster.yaml": load("k8s/raycluster.yaml")["spec"], "rayjob.yaml": job["rayClusterSpec"]} | {
        "raycronjob.yaml": cron["rayClusterSpec"]
    }


def ray_pods(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pod spec of the head (``head``) and of each worker group (by name)."""
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    return pods | {g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]}


def submitter_pod() -> dict[str, Any]:
    pod: dict[str, Any] = load("k8s/cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def exporter_pod() -> dict[str, Any]:
    pod: dict[str, Any] = load("k8s/exporter.yaml")["spec"]["template"]["spec"]
    return pod


def all_pods() -> list[tuple[str, dict[str, Any]]]:
    """Every pod template the manifests ship: the Ray pods of each manifest, the CronJob's submitter and the
    store exporter."""
    pods = [
        (f"{name} {group}", pod) for name, spec in ray_cluster_specs().items() for group, pod in ray_pods(spec).items()
    ]
    return [*pods, ("cronjob.yaml submit", submitter_pod()), ("exporter.yaml", exporter_pod())]


def k8s_commands() -> dict[str, list[str]]:
    """The command each Kubernetes manifest runs."""
    cron = load("k8s/raycronjob.yaml")["spec"]["jobTemplate"]
    return {
        "rayjob.yaml": shlex.split(load("k8s/rayjob.yaml")["spec"]["entrypoint"]),
        "raycronjob.yaml": shlex.split(cron["entrypoint"]),
        "cronjob.yaml": submitter_pod()["containers"][0]["command"],
    }


def documented_commands() -> dict[str, list[str]]:
    """Each refresh command in a ``sh`` block of README.md and infra/README.md, continuation lines joined."""
    found = {}
    for doc in (ROOT / "README.md", INFRA / "README.md"):
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), re.DOTALL):
            for n, line in enumerate(block.replace("\\\n", " ").splitlines()):
                if "jobs.refresh" in line or "submit.sh" in line:
                    found[f"{doc.relative_to(ROOT)} {n}"] = shlex.split(line, comments=True)
    return found


def refresh_args(argv: list[str]) -> list[str]:
    """The arguments a command passes to `python -m jobs.refresh` (directly, or through submit.sh)."""
    if "jobs.refresh" in argv:
        return argv[argv.index("jobs.refresh") + 1 :]
    return argv[next(i for i, a in enumerate(argv) if a.endswith("submit.sh")) + 1 :]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def resolved(argv: list[str]) -> Any:
    """The RefreshConfig a shipped command runs with: its flags over the config file it names, read from this
    checkout (the image holds it under /home/ray/app; submit.sh's upload under the job's working directory).
    --input and --store come from submit.sh's environment when the command does not give them."""
    from jobs.config import from_args

    args = refresh_args(argv)
    if "--config" in args:
        at = args.index("--config") + 1
        args = [*args[:at], str(ROOT / args[at].removeprefix("/home/ray/app/")), *args[at + 1 :]]
    return from_args(args if "--input" in args else ["--input", INPUT_URI, "--store", MODEL_URI, *args], environ={})


TRAINER_CPUS = {"r7i.8xlarge": 32}  # vCPUs of the AWS trainer's instance type


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
    # One instance profile per role, each carrying the policy file of that name.
    profiles = {name: t["node_config"]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1] for name, t in types.items()}
    assert profiles == {
        "head": "embedding-refresh-head",
        "cpu_worker": "embedding-refresh-tokenizer",
        "trainer": "embedding-refresh-trainer",
    }
    for profile in profiles.values():
        assert (INFRA / "aws" / f"iam-{profile.removeprefix('embedding-refresh-')}.json").is_file(), profile


def test_every_node_runs_the_pinned_image_and_installs_nothing(cluster: dict[str, Any]) -> None:
    assert not re.search(r"ray-wheels|nightly|\.dev0|:latest", json.dumps(cluster))  # comments aside
    assert IMAGE.fullmatch(cluster["docker"]["image"]), cluster["docker"]["image"]
    assert not [t for t in cluster["available_node_types"].values() if "worker_image" in t.get("docker", {})]
    commands = [c for key, value in cluster.items() if key.endswith("_commands") for c in value]
    commands += [c for t in cluster["available_node_types"].values() for c in t.get("initialization_commands", [])]
    assert not [c for c in commands if "pip " in c or "conda " in c]
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{RAY_VERSION}-py311{DIGEST}\n", dockerfile, re.MULTILINE)
    assert "pip install --no-cache-dir --constraint infra/constraints.txt '.[job]'" in dockerfile
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
        if requirement.marker is not None and not requirement.marker.evaluate({"python_version": "3.11"}):
            continue  # not installed on the image's Python (tomli: tomllib's backport for 3.10)
        assert requirement.name in pins, requirement.name
        assert requirement.specifier.contains(pins[requirement.name]), (requirement, pins[requirement.name])


def test_token_auth_on_every_node(cluster: dict[str, Any]) -> None:
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cluster[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    setup = " ".join(cluster["setup_commands"])
    assert "secretsmanager" in setup and "~/.ray/auth_token" in setup  # fetched at boot, never inlined
    assert "RAY_AUTH_TOKEN=" not in (INFRA / "aws" / "cluster.yaml").read_text()


def test_the_aws_trainer_keeps_spool_and_parent_cache_on_its_disk_between_runs(cluster: dict[str, Any]) -> None:
    trainer = cluster["available_node_types"]["trainer"]
    # The host folder mounted into the trainer's container, owned by the image's user.
    (option,) = trainer["docker"]["worker_run_options"]
    host, container = option.removeprefix("--volume ").split(":")
    assert host == container
    setup = trainer["initialization_commands"]
    assert any(f"chown 1000:100 {host}" in c for c in setup)
    # A node type's list replaces the global one: the registry login must still be there.
    assert [c for c in setup if "docker login" in c] == cluster["initialization_commands"]
    # Stopped, not terminated, when idle: its disk (the cache) is there for the next night's run.
    assert cluster["provider"]["cache_stopped_nodes"] is True
    (submit,) = [argv for argv in documented_commands().values() if "--spool-dir" in refresh_args(argv)]
    args = refresh_args(submit)
    assert flag(args, "--spool-dir").startswith(container + "/") and flag(args, "--parent-cache").startswith(
        container + "/"
    )
    # The trainer's CPUs are reserved before its node exists, so they are given.
    assert int(flag(args, "--workers")) == TRAINER_CPUS[trainer["node_config"]["InstanceType"]]
    assert "--require-trainer-resource" in args


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
def crd_schema(plural: str) -> dict[str, Any]:
    # CI has them beside the checkout (../shared): a missing copy fails, so the manifests are always validated
    assert CRDS.is_dir(), f"the KubeRay v1.7.0 CRDs are not at {CRDS}; the manifests cannot be validated"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader where there is one: 25,000 lines
    crd = yaml.load((CRDS / f"ray.io_{plural}.yaml").read_text(), Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@functools.cache
def crd_validator(plural: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict(crd_schema(plural)))


MANIFESTS = {"raycluster.yaml": "rayclusters", "rayjob.yaml": "rayjobs", "raycronjob.yaml": "raycronjobs"}


@pytest.mark.parametrize(("name", "plural"), MANIFESTS.items())
def test_kuberay_manifest_matches_crd_strictly(name: str, plural: str) -> None:
    assert [e.message for e in crd_validator(plural).iter_errors(load(f"k8s/{name}"))] == []


def test_the_cronjobs_pod_template_matches_kubernetes_schema_strictly() -> None:
    # The CRDs embed Kubernetes' own PodTemplateSpec schema: the submitter's pod, checked field by field.
    head = crd_schema("rayclusters")["properties"]["spec"]["properties"]["headGroupSpec"]["properties"]
    validator = jsonschema.Draft7Validator(strict(head["template"]))
    template = load("k8s/cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]
    assert [e.message for e in validator.iter_errors(template)] == []
    template["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True  # a typo
    assert [e.message for e in validator.iter_errors(template)] != []


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
    # Deleted when it ends (the head kept an hour after a failure), failed early when no node comes.
    rules = [(r["condition"], r["policy"]) for r in job["deletionStrategy"]["deletionRules"]]
    assert ({"jobStatus": "SUCCEEDED", "ttlSeconds": 0}, "DeleteCluster") in rules
    assert ({"jobStatus": "FAILED", "ttlSeconds": 0}, "DeleteWorkers") in rules
    assert ({"jobStatus": "FAILED", "ttlSeconds": 3600}, "DeleteCluster") in rules
    assert "shutdownAfterJobFinishes" not in job  # legacy cleanup, not to be mixed with deletionStrategy
    # Retried by exit status in the entrypoint, not by KubeRay (test_rayjobs_retry_only_what_a_rerun_fixes).
    assert job["backoffLimit"] == 0 and 0 < job["preRunningDeadlineSeconds"] < job["activeDeadlineSeconds"]
    args = refresh_args(shlex.split(job["entrypoint"]))
    assert flag(args, "--input") == INPUT_URI and flag(args, "--store") == MODEL_URI
    assert resolved(shlex.split(job["entrypoint"])).require_trainer_resource
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
        assert all(IMAGE.fullmatch(c["image"]) for c in pod["containers"])
        # An explicit object store, well inside the pod's memory; metrics where Prometheus scrapes them.
        store = int(group["rayStartParams"]["object-store-memory"])
        memory = int(pod["containers"][0]["resources"]["limits"]["memory"].removesuffix("Gi")) << 30
        assert 0 < store <= memory // 4
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
    # `ray job stop` gives the driver time to clean up before SIGKILL.
    env = {e["name"]: e["value"] for e in head["template"]["spec"]["containers"][0]["env"]}
    assert int(env["RAY_JOB_STOP_WAIT_TIME_S"]) >= 30


def test_gc_s_shortest_grace_outlasts_every_run_the_deadlines_allow() -> None:
    from jobs.retention import MIN_GRACE_HOURS

    found = [re.findall(r"activeDeadlineSeconds: (\d+)", p.read_text()) for p in sorted((INFRA / "k8s").glob("*.yaml"))]
    deadlines = [int(seconds) for each in found for seconds in each]
    assert len(deadlines) == 3 and max(deadlines) <= MIN_GRACE_HOURS * 3600  # rayjob, raycronjob, cronjob


def test_the_trainer_spools_and_caches_on_volumes_of_its_own() -> None:
    trainer = ray_pods(load("k8s/raycluster.yaml")["spec"])["trainer"]
    (container,) = trainer["containers"]
    assert "ephemeral-storage" not in json.dumps(container["resources"])  # the node's root disk is no place
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in trainer["volumes"]}
    claim = load("k8s/parent-cache.yaml")
    assert (claim["kind"], claim["spec"]["accessModes"]) == ("PersistentVolumeClaim", ["ReadWriteOnce"])
    for where, argv in k8s_commands().items():  # the same trainer pod in every manifest (identical specs)
        config = resolved(argv)  # the flags over infra/k8s/refresh.toml
        # The spool: a volume claimed with the pod, gone with it.
        spool = volumes[mounts[config.spool_dir]]["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert int(spool["resources"]["requests"]["storage"].removesuffix("Gi")) >= 100, where
        # The parent cache: a claim that outlives the pod, so the next run (the next night's cluster) finds it.
        cache = volumes[mounts[config.parent_cache]]["persistentVolumeClaim"]
        assert cache["claimName"] == claim["metadata"]["name"], where
        # The trainer's CPUs, reserved before its pod exists.
        assert str(config.training.workers) == container["resources"]["limits"]["cpu"], where
        assert config.require_trainer_resource and config.json, where


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
    for account in load_all("k8s/serviceaccount.yaml"):
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
    # Each try (a new pod) submits under its own id; $(POD_NAME) is expanded by Kubernetes from the line above.
    names = [e["name"] for e in container["env"]]
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "$(POD_NAME)" in env["REFRESH_NAME"] and names.index("POD_NAME") < names.index("REFRESH_NAME")


# --- least privilege: pods ----------------------------------------------------------------------------------
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 100,
    "seccompProfile": {"type": "RuntimeDefault"},
}


CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 100,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_every_pod_and_container_runs_unprivileged_on_a_read_only_root() -> None:
    pods = all_pods()
    assert len(pods) == 11  # head and two worker groups in three manifests, the submitter and the exporter
    for where, pod in pods:
        assert POD_SECURITY.items() <= pod["securityContext"].items(), where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["securityContext"] == CONTAINER_SECURITY, (where, container["name"])
            # With the root read-only, /tmp (Ray's session folder, temporary files) is the pod's own scratch.
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert volumes[mounts["/tmp"]] == {"name": mounts["/tmp"], "emptyDir": {}}, where
    # The image's user, as the Dockerfile says.
    assert "user `ray` (uid 1000, gid 100)" in (INFRA / "Dockerfile").read_text()
    for where, spec in ray_cluster_specs().items():
        # The autoscaler sidecar KubeRay adds to the head pod: the same restrictions, the head's scratch volume.
        autoscaler = spec["autoscalerOptions"]
        assert autoscaler["securityContext"] == CONTAINER_SECURITY, where
        head_volumes = {v["name"]: v for v in ray_pods(spec)["head"]["volumes"]}
        (mount,) = autoscaler["volumeMounts"]
        assert mount["mountPath"] == "/tmp" and "emptyDir" in head_volumes[mount["name"]], where


def test_each_role_has_its_own_identity_and_workers_mount_no_api_token() -> None:
    accounts = {a["metadata"]["name"]: a for a in load_all("k8s/serviceaccount.yaml")}
    assert set(accounts) == {f"embedding-refresh-{r}" for r in ("head", "trainer", "tokenizer", "exporter")}
    for name, account in accounts.items():
        # IRSA: each account its own IAM role, carrying the policy file of the same role.
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
            f"arn:aws:iam::123456789012:role/{name}"
        )
        assert (INFRA / "aws" / f"iam-{name.removeprefix('embedding-refresh-')}.json").is_file()
    assert accounts["embedding-refresh-trainer"]["automountServiceAccountToken"] is False
    assert accounts["embedding-refresh-tokenizer"]["automountServiceAccountToken"] is False
    assert accounts["embedding-refresh-exporter"]["automountServiceAccountToken"] is False
    assert exporter_pod()["serviceAccountName"] == "embedding-refresh-exporter"
    assert exporter_pod()["automountServiceAccountToken"] is False
    for where, spec in ray_cluster_specs().items():
        pods = ray_pods(spec)
        # The head's account is KubeRay's autoscaler's (its Role is bound to it): the one pod with an API token.
        assert pods["head"]["serviceAccountName"] == "embedding-refresh-head", where
        assert pods["head"].get("automountServiceAccountToken", True) is True, where
        for group, role in (("tokenize", "tokenizer"), ("trainer", "trainer")):
            assert pods[group]["serviceAccountName"] == f"embedding-refresh-{role}", (where, group)
            assert pods[group]["automountServiceAccountToken"] is False, (where, group)
    # The submitter talks to Ray only: the namespace's default account, without its token, and no role.
    submitter = submitter_pod()
    assert "serviceAccountName" not in submitter and submitter["automountServiceAccountToken"] is False


def test_every_image_is_pinned_by_digest(cluster: dict[str, Any]) -> None:
    def images(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "image" and isinstance(v, str)] + [
                i for v in node.values() for i in images(v)
            ]
        return [i for v in node for i in images(v)] if isinstance(node, list) else []

    found = {p.name: images(list(yaml.safe_load_all(p.read_text()))) for p in sorted((INFRA / "k8s").glob("*.yaml"))}
    k8s = [image for pinned in found.values() for image in pinned]
    assert len(k8s) == 11 and all(IMAGE.fullmatch(image) for image in k8s), found
    # One image everywhere: every pod, every node, the submitter.
    assert set(k8s) == {cluster["docker"]["image"]}
    froms = re.findall(r"^FROM (\S+)", (INFRA / "Dockerfile").read_text(), re.MULTILINE)
    assert len(froms) == 1 and re.fullmatch(rf"rayproject/ray:{RAY_VERSION}-py311{DIGEST}", froms[0])


RETRYABLE = {75, 143}  # jobs.errors: the infrastructure failed; stopped from outside


def job_decision(spec: dict[str, Any], exit_code: int, disrupted: bool = False) -> str:
    """What a batch/v1 Job does with a pod that failed: Kubernetes' podFailurePolicy (the first matching rule
    decides; a pod no rule matches counts against backoffLimit) as its API reference describes it."""
    for rule in spec["podFailurePolicy"]["rules"]:
        if "onExitCodes" in rule:
            codes = rule["onExitCodes"]
            matched = (exit_code in codes["values"]) == (codes["operator"] == "In")
        else:
            conditions = rule["onPodConditions"]
            matched = disrupted and {"type": "DisruptionTarget", "status": "True"} in conditions
        if matched:
            return {"FailJob": "fail", "Ignore": "retry", "Count": "retry"}[rule["action"]]
    return "retry" if spec["backoffLimit"] > 0 else "fail"


def test_the_cronjob_retries_75_and_143_and_nothing_else() -> None:
    job = load("k8s/cronjob.yaml")["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy's condition: each try is a pod of its own
    for rule in job["podFailurePolicy"]["rules"]:
        assert rule["action"] in {"FailJob", "Ignore", "Count"}
        assert ("onExitCodes" in rule) != ("onPodConditions" in rule)
        if "onExitCodes" in rule:  # the container the status is read from
            assert rule["onExitCodes"]["containerName"] == pod["containers"][0]["name"]
            assert rule["onExitCodes"]["operator"] in {"In", "NotIn"}
    assert job["backoffLimit"] == 2
    assert {code for code in range(1, 256) if job_decision(job, code) == "retry"} == RETRYABLE
    # An evicted submitter leaves its refresh running in the cluster: a second one would only race it.
    assert job_decision(job, 143, disrupted=True) == "fail"


def test_rayjobs_retry_only_what_a_rerun_fixes() -> None:
    # KubeRay 1.7 retries every FAILED RayJob (backoffLimit), whatever the exit status: nothing in the CRD says
    # which statuses, and the submitter Job it makes has no podFailurePolicy. So KubeRay does not retry, and
    # the entrypoint does, by status.
    schema = crd_schema("rayjobs")["properties"]["spec"]["properties"]
    assert schema["backoffLimit"]["type"] == "integer"
    assert "onExitCodes" not in json.dumps(crd_schema("rayjobs"))
    workdir = re.findall(r"^WORKDIR (\S+)", (INFRA / "Dockerfile").read_text(), re.MULTILINE)[-1]
    ignored = [line for line in (INFRA / "Dockerfile.dockerignore").read_text().splitlines() if line[:1] != "#"]
    assert not [line for line in ignored if "infra" in line]  # the image holds infra/retry.sh
    assert os.access(RETRY, os.X_OK)
    specs = {"rayjob.yaml": load("k8s/rayjob.yaml")["spec"]}
    specs["raycronjob.yaml"] = load("k8s/raycronjob.yaml")["spec"]["jobTemplate"]
    for where, spec in specs.items():
        assert spec["backoffLimit"] == 0, where
        argv = shlex.split(spec["entrypoint"])
        assert argv[:5] == [f"{workdir}/infra/retry.sh", "3", "python", "-m", "jobs.refresh"], where
        assert flag(argv, "--config") == f"{workdir}/infra/k8s/refresh.toml", where  # the image's copy


# --- commands -----------------------------------------------------------------------------------------------
# What defines a lineage (its architecture and its tokenizer) comes from its current version on an update.
LINEAGE_FLAGS = {"--model", "--vector-size", "--window", "--min-count", "--sg", "--negative", "--sample"}


def test_no_shipped_command_passes_architecture_flags() -> None:
    from jobs.config import parser

    assert set(parser()._option_string_actions) >= LINEAGE_FLAGS  # each a real flag, so none goes unnoticed
    commands = k8s_commands() | documented_commands()
    assert len(commands) >= 5, commands  # three manifests, the AWS example, README.md's
    for where, argv in commands.items():
        args = refresh_args(argv)
        assert not LINEAGE_FLAGS & {a.split("=")[0] for a in args}, where
        # Every shipped command is one the refresh accepts, its config file included, which gives no lineage
        # setting either (--input/--store come from submit.sh's environment).
        assert resolved(argv).explicit == (), where


def test_the_store_exporter_serves_the_store_where_prometheus_scrapes_it() -> None:
    from jobs.exporter import ExporterConfig, options
    from jobs.versions import parser

    deployment = load("k8s/exporter.yaml")  # its pod's restrictions, image and identity: the tests above
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == template["metadata"]["labels"]
    (container,) = template["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["python", "-m", "jobs.versions"]
    config = options(parser().parse_args(command[3:]))
    assert config == ExporterConfig(stores=(MODEL_URI,), port=9108)
    [port] = container["ports"]
    assert port["containerPort"] == config.port and container["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"} in container["env"]  # a read-only root

    monitor = load("monitoring/podmonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"] == template["metadata"]["labels"]
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == [port["name"]]
    rule = load("monitoring/alerts.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")


# --- IAM --------------------------------------------------------------------------------------------------
ROLES = ("head", "trainer", "tokenizer", "promote", "exporter")


INPUT_FILE = INPUT_ARN + "dt=2026-12-01/part-0.parquet"


VERSION = MODEL_ARN + "versions/20261201T020000Z-ab12cd/"


MODEL_FILE, MANIFEST_FILE = VERSION + "model/vectors.npy", VERSION + "manifest.json"


POINTER, RUN_RECORD = MODEL_ARN + "CURRENT", MODEL_ARN + "runs/refresh-20261201T020000Z.json"


PROBE = MODEL_ARN + "probes/conditional-write-0123456789abcdef"


def policy(role: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((INFRA / "aws" / f"iam-{role}.json").read_text())
    return loaded


def allows(role: str, action: str, resource: str, prefix: str | None = None) -> bool:
    """Whether the role's policy allows ``action`` on ``resource`` (for s3:ListBucket, listing ``prefix``).
    IAM's wildcards are fnmatch's, ``*`` spanning ``/`` too; the policies use no other condition."""
    for statement in policy(role)["Statement"]:
        if not any(fnmatch.fnmatchcase(action, a) for a in as_list(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in as_list(statement["Resource"])):
            continue
        if "Condition" in statement:
            prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
            if prefix is None or not any(fnmatch.fnmatchcase(prefix, p) for p in prefixes):
                continue
        return True
    return False


def roles_allowed(action: str, resource: str, prefix: str | None = None) -> set[str]:
    return {role for role in ROLES if allows(role, action, resource, prefix)}


def test_iam_policies_reach_only_the_input_and_model_prefixes() -> None:
    buckets = {INPUT_ARN.rsplit("/", 2)[0]: "events/", MODEL_ARN.rsplit("/", 2)[0]: "word2vec/"}
    granted: dict[str, set[tuple[str, str]]] = {}
    for role in ROLES:
        granted[role] = set()
        for statement in policy(role)["Statement"]:
            assert statement["Effect"] == "Allow" and not {"NotAction", "NotResource"} & statement.keys()
            assert set(statement.get("Condition", {})) <= {"StringLike"}  # what allows() evaluates
            for action in as_list(statement["Action"]):
                assert action in {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", ABORT}, action
                for resource in as_list(statement["Resource"]):
                    if action == "s3:ListBucket":  # a bucket ARN, only with a prefix condition inside its prefix
                        prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
                        assert all(p.startswith(buckets[resource]) for p in prefixes), statement
                        granted[role].add((action, resource + "/" + buckets[resource]))
                        continue
                    prefix = next(p for p in (INPUT_ARN, MODEL_ARN) if resource.startswith(p))
                    if action != "s3:GetObject":
                        assert prefix == MODEL_ARN, f"{action} outside the model prefix"
                    granted[role].add((action, prefix))
    read_input = {("s3:ListBucket", INPUT_ARN), ("s3:GetObject", INPUT_ARN)}
    read_model = {("s3:ListBucket", MODEL_ARN), ("s3:GetObject", MODEL_ARN)}
    write_model = {("s3:PutObject", MODEL_ARN), ("s3:DeleteObject", MODEL_ARN)}
    # A failed multipart upload is aborted, not left to bill its parts.
    assert granted["head"] == read_input | read_model | write_model | {(ABORT, MODEL_ARN)}
    assert granted["trainer"] == read_input | read_model | {("s3:PutObject", MODEL_ARN), (ABORT, MODEL_ARN)}
    assert granted["tokenizer"] == read_input
    assert granted["promote"] == read_model | write_model
    assert granted["exporter"] == read_model  # and only the pointer, manifests and run records (below)


def test_only_the_trainer_and_the_driver_write_versions_and_only_the_driver_and_promote_move_the_pointer() -> None:
    put, delete, get, list_ = "s3:PutObject", "s3:DeleteObject", "s3:GetObject", "s3:ListBucket"
    # The driver (on the head) commits a version: the manifest and reports, and the conditional pointer write,
    # which is the refresh's promotion; `jobs.versions promote` (an operator's role) moves it back or forth.
    assert roles_allowed(put, POINTER) == {"head", "promote"}
    assert roles_allowed(put, MODEL_FILE) == roles_allowed(put, MANIFEST_FILE) == {"head", "trainer"}
    assert roles_allowed(put, RUN_RECORD) == {"head"}
    assert roles_allowed(put, PROBE) == roles_allowed(delete, PROBE) == {"head", "promote"}  # before a pointer write
    # Deleting: the driver its own unfinished version, the operator old ones (gc); the pointer never.
    assert roles_allowed(delete, MODEL_FILE) == {"head", "promote"}
    # Run records: written by the driver, pruned only by the operator (jobs.versions gc --keep-runs), so no run
    # can erase the record of a failure before it.
    assert roles_allowed(delete, POINTER) == set() and roles_allowed(delete, RUN_RECORD) == {"promote"}
    assert roles_allowed(ABORT, MODEL_FILE) == {"head", "trainer"}
    # Reading: the input by every node, the store by all but the tokenizers; the trainer loads the version it
    # is given and never resolves the pointer.
    assert (
        roles_allowed(get, INPUT_FILE)
        == roles_allowed(list_, INPUT_ARN[:-8], "events/dt=2026")
        == {
            "head",
            "trainer",
            "tokenizer",
        }
    )
    assert roles_allowed(get, MODEL_FILE) == {"head", "trainer", "promote"}
    assert roles_allowed(get, POINTER) == roles_allowed(get, RUN_RECORD) == {"head", "promote", "exporter"}
    assert roles_allowed(get, MANIFEST_FILE) == {"head", "trainer", "promote", "exporter"}
    assert roles_allowed(list_, MODEL_ARN[:-10], "word2vec/runs/") == {"head", "promote", "exporter"}
    assert roles_allowed(list_, MODEL_ARN[:-10], "word2vec/versions/") == {"head", "trainer", "promote"}
    assert roles_allowed(list_, MODEL_ARN[:-10], "word2vec/") == {"head", "promote"}
    # Nobody writes the input; the tokenizers touch nothing of the model store.
    assert not {role for action in (put, delete, ABORT) for role in roles_allowed(action, INPUT_FILE)}
    touched = {
        a for a in (put, delete, get, ABORT) for key in (MODEL_FILE, POINTER, PROBE) if allows("tokenizer", a, key)
    }
    assert touched == set() and not allows("tokenizer", list_, MODEL_ARN[:-10], "word2vec/")
    # A listing condition outside the prefix grants nothing.
    assert roles_allowed(list_, INPUT_ARN[:-8], "other/") == set()


# --- runtime_env.yaml and secrets -------------------------------------------------------------------------
def test_runtime_env_uploads_only_the_code(tmp_path: Path) -> None:
    from ray._private.runtime_env.packaging import _get_excludes  # the matcher `ray job submit` uses
    from ray.runtime_env import RuntimeEnv

    runtime_env = load("runtime_env.yaml")
    excluded = _get_excludes(tmp_path, runtime_env["excludes"])
    for path in [".venv", ".git", "data", "models", "demo", ".bench", "tests/data/a.jsonl", "jobs/__pycache__"]:
        assert excluded(tmp_path / path), path
    for path in [
        "jobs/models.py",
        "jobs/versions.py",
        "shards/data/__init__.py",
        "jobs/models/x.py",
        "infra/runtime_env.yaml",
        "tests",
    ]:
        assert not excluded(tmp_path / path), path
    RuntimeEnv(**runtime_env)  # Ray's own field checks
    # No pip: the image has every dependency (RuntimeEnv ignores unknown, plugin, fields: none here).
    assert set(runtime_env) == {"env_vars", "excludes"}
    assert not re.search(r"SECRET|TOKEN|PASSWORD|KEY", " ".join(runtime_env.get("env_vars", {})), re.IGNORECASE)


def test_no_secrets_in_infra() -> None:
    looks_secret = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|-----BEGIN|RAY_AUTH_TOKEN=\S", re.IGNORECASE)
    for path in sorted(p for p in INFRA.rglob("*") if p.is_file()):
        assert not looks_secret.search(path.read_text()), path
