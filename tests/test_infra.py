"""The cluster manifests parse, name real modules and configs of this repo, and the worker
image installs the package the way CI does."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.training.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MANIFESTS = sorted(INFRA.rglob("*.yaml"))


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _by_kind(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p in MANIFESTS for d in _docs(p) if d.get("kind") == kind]


def _check_command(words: list[str]) -> str:
    """`python -m <module> [--config <file>] ...`: the module exists with a main(), the config loads."""
    assert words[:2] == ["python", "-m"], words
    module = words[2]
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    assert re.search(r"^def main\(", Path(spec.origin).read_text(), re.M), f"{module} has no main()"
    flags = {words[i]: words[i + 1] for i in range(3, len(words) - 1) if words[i].startswith("--")}
    if "--config" in flags:
        config = ROOT / flags["--config"]
        assert config.is_file(), f"{module}: no config {config}"
        if module == "pipeline.tune":
            load_sweep(config)
        else:
            load_config(config)
    return module


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_parses(path):
    assert _docs(path), f"{path} is empty"


def test_kustomization_lists_existing_files():
    kustomization = yaml.safe_load((INFRA / "k8s" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (INFRA / "k8s" / resource).is_file(), resource
    assert kustomization["images"][0]["name"] == "srgan-pipeline"


def test_raycluster_has_a_cpu_head_and_an_autoscaling_gpu_group():
    [(_, cluster)] = _by_kind("RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    [gpu] = spec["workerGroupSpecs"]
    worker = gpu["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["minReplicas"] == 0 < gpu["maxReplicas"]
    for container in (head, worker):  # env from the ConfigMap, S3 settings from the Secret
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {"srgan-env", "srgan-s3"}


def test_rayjobs_run_real_modules_with_real_configs():
    jobs = _by_kind("RayJob")
    modules = {_check_command(shlex.split(job["spec"]["entrypoint"])) for _, job in jobs}
    assert modules == {"pipeline.train", "pipeline.tune", "pipeline.upscale"}
    for _, job in jobs:
        assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "srgan"}


def test_mlflow_server_uses_postgres_and_s3():
    [(_, deployment)] = [(p, d) for p, d in _by_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(container["args"])
    assert "--backend-store-uri" in command and '--artifacts-destination "s3://' in command
    assert {e["name"] for e in container["env"]} == {"MLFLOW_BACKEND_STORE_URI"}
    assert _by_kind("StatefulSet")[0][1]["spec"]["template"]["spec"]["containers"][0]["image"].startswith("postgres:")


def test_aws_cluster_launcher_has_gpu_workers_and_an_instance_role():
    config = yaml.safe_load((INFRA / "aws" / "cluster.yaml").read_text())
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["node_config"]["InstanceType"].startswith(("g", "p"))
    assert workers["node_config"]["IamInstanceProfile"]["Arn"]
    assert not any("AWS_SECRET_ACCESS_KEY" in opt for opt in config["docker"]["run_options"])
    assert config["head_node_type"] in config["available_node_types"]


def test_local_stack_scripts_exist_and_name_real_modules():
    e2e = (INFRA / "local" / "e2e.sh").read_text()
    command = re.search(r"-- \\\n\s+(python -m \S+)", e2e).group(1)
    assert _check_command(shlex.split(command)) == "pipeline.quickstart"


def test_dockerfile_installs_like_make_setup():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^\$\(STAMP\):.*?\n((?:\t.*\n)+)", makefile, re.M).group(1)
    make_pip = [line.strip().replace("$(PY)", "python") for line in recipe.splitlines() if "pip install" in line]
    docker_pip = [
        line[len("RUN ") :].strip()
        for line in (INFRA / "docker" / "Dockerfile").read_text().splitlines()
        if line.startswith("RUN ") and "pip install" in line
    ]
    assert make_pip and docker_pip == make_pip
