"""Render the deploy manifests with kustomize and walk what they contain.

`render(kustomization)` runs `kustomize build` (kustomize itself is built once with Go by
`tests.servers.gotools.go_tool`) and returns the objects; the helpers find pod specs wherever
a kind keeps them (Deployments, StatefulSets, Jobs, and the Job inside an Argo Rollouts
AnalysisTemplate), so a check on "every container" cannot miss one.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

from tests.servers.gotools import go_tool

ROOT: Final = Path(__file__).resolve().parents[2]
K8S: Final = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS: Final = {
    "base": K8S / "base",
    "blue": K8S / "overlays" / "blue",
    "green": K8S / "overlays" / "green",
    "argo": K8S / "argo",
    "secrets": K8S / "base" / "secrets",
}
"""Every kustomization a user may build, by a short name."""
KUSTOMIZE: Final = ("kustomize", "sigs.k8s.io/kustomize/kustomize/v5", "v5.8.2")
"""kustomize's module and version (v5.8.3 and later need Go 1.27)."""
WORKLOAD_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})

Object = dict[str, Any]


def kustomize() -> Path:
    """The kustomize binary, built on first use."""
    return go_tool(*KUSTOMIZE)


@functools.cache
def render(name: str) -> tuple[Object, ...]:
    """`kustomize build` of KUSTOMIZATIONS[name], as objects (cached per test session).

    Raises:
        subprocess.CalledProcessError: the build failed (its stderr says why).
    """
    done = subprocess.run(
        [str(kustomize()), "build", str(KUSTOMIZATIONS[name])],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def named(objects: tuple[Object, ...], kind: str, name: str) -> Object:
    """The object of `kind` called `name`; KeyError when there is none."""
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"no {kind} {name}")


def of_kind(objects: tuple[Object, ...], *kinds: str) -> list[Object]:
    """The objects whose kind is one of `kinds`."""
    return [obj for obj in objects if obj["kind"] in kinds]


def pod_templates(objects: tuple[Object, ...]) -> Iterator[tuple[str, Object]]:
    """(where, pod template) for every pod any object would run."""
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        spec = obj.get("spec", {})
        if obj["kind"] in WORKLOAD_KINDS or obj["kind"] == "Job":
            yield where, spec["template"]
        elif obj["kind"] == "CronJob":
            yield where, spec["jobTemplate"]["spec"]["template"]
        elif obj["kind"] == "AnalysisTemplate":
            for metric in spec.get("metrics", []):
                job = metric.get("provider", {}).get("job")
                if job is not None:
                    yield f"{where}/{metric['name']}", job["spec"]["template"]
        elif obj["kind"] == "Rollout" and "template" in spec:
            yield where, spec["template"]


def containers(template: Object) -> Iterator[Object]:
    """Every container of a pod template: init, regular and ephemeral."""
    spec = template["spec"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key, [])


def selects(selector: Object, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) matches `labels`."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def container_port(container: Object, name: str) -> int:
    """The number of the container's port called `name`."""
    for port in container.get("ports", []):
        if port.get("name") == name:
            return int(port["containerPort"])
    raise KeyError(f"container {container['name']} has no port {name}")
