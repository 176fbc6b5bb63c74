"""Render the kustomize overlays of deploy/kubernetes, and read what they produce."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.promql import ROOT

K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAYS = ("strimzi", "existing-kafka")


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl is missing: it renders the kustomize overlays (kubectl kustomize)"
    return path


def render_dir(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``, parsed."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render_dir(K8S / overlay))


def render(overlay: str) -> list[dict[str, Any]]:
    return list(_rendered(overlay))


def kind(documents: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == name}


def workloads(documents: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from (d for d in documents if d["kind"] in ("Deployment", "StatefulSet"))


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return containers[0]


def volumes(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}


def mount(workload: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mounted at the directory holding ``path`` (the longest mount prefix)."""
    mounts = [
        m for m in container(workload)["volumeMounts"] if path.startswith(m["mountPath"] + "/")
    ]
    assert mounts, f"nothing mounted for {path}"
    best = max(mounts, key=lambda m: len(m["mountPath"]))
    return volumes(workload)[best["name"]]


def secret_of(workload: dict[str, Any], path: str) -> str:
    volume = mount(workload, path)
    assert "secret" in volume, path
    return str(volume["secret"]["secretName"])


def environment(documents: list[dict[str, Any]], workload: dict[str, Any]) -> dict[str, str]:
    """The container's plain variables: its ``envFrom`` ConfigMaps, then its ``env``."""
    configmaps = kind(documents, "ConfigMap")
    found: dict[str, str] = {}
    spec = container(workload)
    for source in spec.get("envFrom", []):
        found.update(configmaps[source["configMapRef"]["name"]]["data"])
    found.update({e["name"]: e["value"] for e in spec.get("env", []) if "value" in e})
    return found
