"""The Kubernetes manifests: they build, validate offline, and say what the design needs.

Every kustomization is rendered by a real `kustomize build`; every rendered object of a
Kubernetes API group is validated (strictly: unknown fields fail) against the OpenAPI schemas
bundled by kubernetes-validate; Argo Rollouts objects, outside those schemas, are checked for
structure here. Nothing talks to a cluster.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import fields
from typing import Any, Final

import kubernetes_validate
import pytest

from gateway.auth import ApiKeys, KeyFileError
from gateway.bootstrap import GatewaySettings
from matcher.bootstrap import MatcherSettings
from ordermesh.config import ENV_PREFIX
from settlement.bootstrap import SettlementSettings
from tests.deploy.manifests import (
    KUSTOMIZATIONS,
    ROOT,
    WORKLOAD_KINDS,
    Object,
    container_port,
    containers,
    named,
    of_kind,
    pod_templates,
    render,
    selects,
)
from ubscore.bootstrap import UBSCoreSettings

SCHEMA_VERSION: Final = "1.31.0"
"""The Kubernetes version whose schemas the objects must meet (the oldest we support)."""
DEPLOYABLE: Final = ("base", "blue", "green", "argo")
"""The kustomizations that run ordermesh (the secret templates are built on their own)."""
UID: Final = 10001
SERVICES: Final = {
    "gateway": (50051, "ordermesh.v1.Gateway", GatewaySettings),
    "ubscore": (50052, "ordermesh.v1.UBSCore", UBSCoreSettings),
    "matcher": (50053, "ordermesh.v1.Matcher", MatcherSettings),
    "settlement": (50054, "ordermesh.v1.Settlement", SettlementSettings),
}
"""Service -> (gRPC port, health service name, settings class)."""
HANDED_OVER: Final = frozenset({"ubscore", "matcher"})
"""Services that may run as standby in the blue/green overlays."""
COLORS: Final = ("blue", "green")


def _service_of(container: Object) -> str | None:
    args = container.get("args") or []
    return args[0] if args and args[0] in SERVICES else None


def _service_containers(name: str) -> list[tuple[str, Object, Object]]:
    """(where, pod template, container) of every ordermesh service container in a build."""
    found = []
    for where, template in pod_templates(render(name)):
        for container in containers(template):
            if _service_of(container) is not None:
                found.append((where, template, container))
    return found


# -- build and validate ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_kustomize_builds(name: str) -> None:
    objects = render(name)
    assert objects, f"{name} renders nothing"
    namespaces = {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"}
    assert namespaces == {"ordermesh"}, f"{name}: objects outside namespace ordermesh"


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_every_object_validates_against_the_kubernetes_schemas(name: str) -> None:
    checked = 0
    for obj in render(name):
        if obj["apiVersion"].startswith("argoproj.io/"):
            continue  # not in the Kubernetes schemas: see the Argo tests below
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        checked += 1
    for where, template in pod_templates(render(name)):
        if where.startswith("AnalysisTemplate/"):  # its Job, validated as the Job it becomes
            job = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "smoke"},
                "spec": {"template": template},
            }
            kubernetes_validate.validate(job, SCHEMA_VERSION, strict=True)
    assert checked > 0


def test_a_schema_violation_is_caught() -> None:
    deployment = named(render("base"), "Deployment", "gateway")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, SCHEMA_VERSION, strict=True)


# -- security ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_every_pod_and_container_is_locked_down(name: str) -> None:
    templates = list(pod_templates(render(name)))
    assert len(templates) >= 4
    for where, template in templates:
        spec = template["spec"]
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("runAsUser") == UID, where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        assert spec.get("enableServiceLinks") is False, where
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), f"{where} {host}"
        tmp = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(template):
            at = f"{where}/{container['name']}"
            context = container.get("securityContext", {})
            assert context.get("runAsNonRoot") is True, at
            assert context.get("runAsUser") == UID, at
            assert context.get("readOnlyRootFilesystem") is True, at
            assert context.get("allowPrivilegeEscalation") is False, at
            assert context.get("privileged", False) is False, at
            assert context.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not context.get("capabilities", {}).get("add"), at
            assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", at
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            scratch = mounts.get("/tmp")  # noqa: S108 - the pod's own emptyDir, checked here
            assert scratch in tmp, f"{at}: /tmp is not a writable emptyDir"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})), at


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_service_accounts_exist_and_mount_no_token(name: str) -> None:
    objects = render(name)
    accounts = {sa["metadata"]["name"]: sa for sa in of_kind(objects, "ServiceAccount")}
    for sa in accounts.values():
        assert sa.get("automountServiceAccountToken") is False, sa["metadata"]["name"]
    for where, template in pod_templates(objects):
        account = template["spec"].get("serviceAccountName")
        assert account in accounts, f"{where} runs as {account!r}, not defined here"


# -- probes, resources, budgets ----------------------------------------------------------------


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_probes_ask_grpc_health_on_the_grpc_port(name: str) -> None:
    found = _service_containers(name)
    assert {_service_of(c) for _, _, c in found} == set(SERVICES)
    for where, _, container in found:
        service = _service_of(container)
        assert service is not None
        port, health_name, _ = SERVICES[service]
        assert container_port(container, "grpc") == port, where
        readiness = container["readinessProbe"]
        assert readiness.get("grpc") == {"port": port, "service": health_name}, where
        for probe_name in ("startupProbe", "livenessProbe"):
            probe = container[probe_name]
            if name in COLORS and service in HANDED_OVER:
                # Either role must pass: no health name is SERVING in both (see the component).
                assert probe.get("tcpSocket") == {"port": port}, f"{where} {probe_name}"
            else:
                assert probe.get("grpc") == {"port": port, "service": health_name}, where
    # the startup probe leaves room for recovery (snapshot + log replay)
    for where, _, container in found:
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, where


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_every_workload_has_a_disruption_budget(name: str) -> None:
    objects = render(name)
    budgets = of_kind(objects, "PodDisruptionBudget")
    workloads = of_kind(objects, *WORKLOAD_KINDS)
    assert workloads
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert covering, f"no PodDisruptionBudget covers {workload['metadata']['name']}"
        for budget in covering:
            assert budget["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow"


def test_single_owners_are_one_replica_replaced_only_after_the_old_one_is_gone() -> None:
    objects = render("base")
    for name in HANDED_OVER:
        stateful = named(objects, "StatefulSet", name)
        assert stateful["spec"]["replicas"] == 1
        # OrderedReady would never replace a pod that is not Ready: a standby never is
        assert stateful["spec"]["podManagementPolicy"] == "Parallel"
    settlement = named(objects, "Deployment", "settlement")
    assert settlement["spec"]["replicas"] == 1
    assert settlement["spec"]["strategy"]["type"] == "Recreate"


def test_the_gateway_drains_before_it_is_killed() -> None:
    gateway = named(render("base"), "Deployment", "gateway")
    spec = gateway["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    sleep = int(pre_stop[1])
    grace = float(env["ORDERMESH_GRACE_SECONDS"])
    assert sleep >= 5
    assert spec["terminationGracePeriodSeconds"] >= sleep + grace + 5
    assert float(env["ORDERMESH_MAX_CONNECTION_AGE_SECONDS"]) > 0
    assert float(env["ORDERMESH_MAX_CONNECTION_AGE_GRACE_SECONDS"]) > 0
    strategy = gateway["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_every_setting_given_to_a_service_is_one_it_knows(name: str) -> None:
    objects = render(name)
    config_maps = {cm["metadata"]["name"]: cm for cm in of_kind(objects, "ConfigMap")}
    for where, _, container in _service_containers(name):
        service = _service_of(container)
        assert service is not None
        known = {ENV_PREFIX + f.name.upper() for f in fields(SERVICES[service][2])}
        names = [e["name"] for e in container.get("env", [])]
        for source in container.get("envFrom", []):
            config_map = config_maps[source["configMapRef"]["name"]]
            names += list(config_map["data"])
        unknown = sorted(n for n in names if n.startswith(ENV_PREFIX) and n not in known)
        assert not unknown, f"{where}: {service} has no setting {unknown}"
        assert len(names) == len(set(names)), f"{where}: a variable is set twice"


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_configuration_references_resolve(name: str) -> None:
    objects = render(name)
    config_maps = {cm["metadata"]["name"] for cm in of_kind(objects, "ConfigMap")}
    secrets = {s["metadata"]["name"]: s for s in of_kind(render("secrets"), "Secret")}
    for where, template in pod_templates(objects):
        for volume in template["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, where
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, where
        for container in containers(template):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], where


def test_the_markets_config_map_is_config_markets_toml() -> None:
    shipped = (ROOT / "config" / "markets.toml").read_text(encoding="utf-8")
    copy = (KUSTOMIZATIONS["base"] / "markets.toml").read_text(encoding="utf-8")
    assert copy == shipped, "deploy/k8s/base/markets.toml differs from config/markets.toml"
    [config_map] = [
        cm
        for cm in of_kind(render("base"), "ConfigMap")
        if cm["metadata"]["name"].startswith("ordermesh-markets-")
    ]
    assert config_map["data"]["markets.toml"] == shipped


# -- secrets -----------------------------------------------------------------------------------

_REAL_LOOKING: Final = (
    re.compile(r"\b[0-9a-f]{64}\b"),  # a sha256 digest
    re.compile(r"[A-Za-z0-9+/_-]{32,}"),  # a long random token
    re.compile(r"-----BEGIN"),  # a key or certificate
)


def _secret_values(secret: Object) -> dict[str, str]:
    values = dict(secret.get("stringData", {}))
    for key, encoded in secret.get("data", {}).items():
        values[key] = base64.b64decode(encoded).decode()
    return values


def test_secrets_are_placeholders_only() -> None:
    secrets = of_kind(render("secrets"), "Secret")
    assert {s["metadata"]["name"] for s in secrets} == {
        "ordermesh-postgres",
        "ordermesh-api-keys",
        "ordermesh-smoke",
    }
    for secret in secrets:
        name = secret["metadata"]["name"]
        assert secret["metadata"]["annotations"]["ordermesh.io/placeholder"] == "true"
        for key, value in _secret_values(secret).items():
            assert "REPLACE_ME" in value, f"{name}/{key} is not a placeholder"
            rest = re.sub(r"REPLACE_ME\w*", "", value)
            for pattern in _REAL_LOOKING:
                assert pattern.search(rest) is None, f"{name}/{key} looks real: {pattern}"
    keys = _secret_values(named(render("secrets"), "Secret", "ordermesh-api-keys"))
    with pytest.raises(KeyFileError):  # a gateway given the template refuses to start
        ApiKeys.parse(keys["api_keys.toml"])


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_applying_a_build_never_overwrites_a_secret(name: str) -> None:
    assert not of_kind(render(name), "Secret")


# -- network policies --------------------------------------------------------------------------


def _admits_outside(rule: Object) -> bool:
    """Whether an ingress rule lets in traffic from outside the namespace."""
    peers = rule.get("from")
    if not peers:
        return True
    return any("namespaceSelector" in peer or "ipBlock" in peer for peer in peers)


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_only_the_gateway_takes_traffic_from_outside_the_namespace(name: str) -> None:
    objects = render(name)
    policies = of_kind(objects, "NetworkPolicy")
    pods = [(where, template["metadata"]["labels"]) for where, template in pod_templates(objects)]
    deny = named(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    outside_to_gateway = False
    for policy in policies:
        spec = policy["spec"]
        for rule in spec.get("ingress", []):
            if not _admits_outside(rule):
                continue
            for where, labels in pods:
                if selects(spec["podSelector"], labels):
                    assert labels["app.kubernetes.io/name"] == "gateway", (
                        f"{policy['metadata']['name']} lets outside traffic into {where}"
                    )
                    outside_to_gateway = True
            assert [p["port"] for p in rule.get("ports", [])] == [50051]
    assert outside_to_gateway, "nothing lets clients reach the gateway"


def _egress_ports(objects: tuple[Object, ...], labels: dict[str, str]) -> set[int]:
    ports: set[int] = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        if selects(policy["spec"]["podSelector"], labels):
            for rule in policy["spec"].get("egress", []):
                ports |= {int(p["port"]) for p in rule.get("ports", [])}
    return ports


def test_each_service_may_reach_what_it_needs_and_no_more() -> None:
    objects = render("base")
    for service in SERVICES:
        labels = {"app.kubernetes.io/name": service, "app.kubernetes.io/part-of": "ordermesh"}
        ports = _egress_ports(objects, labels)
        assert {53, 9092} <= ports, service
        assert (5432 in ports) == (service == "settlement"), service
    gateway = {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/part-of": "ordermesh"}
    assert {50052, 50053, 50054} <= _egress_ports(objects, gateway)


# -- blue / green ------------------------------------------------------------------------------


def _neutral(objects: tuple[Object, ...], color: str) -> str:
    """The build with the color words and the role made neutral, for comparing overlays."""
    other = "green" if color == "blue" else "blue"
    text = json.dumps(sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"])))
    text = re.sub(r'"value": "(active|standby)"', '"value": "ROLE"', text)
    return text.replace(color, "COLOR").replace(other, "OTHER")


def test_the_overlays_differ_only_in_color_and_role() -> None:
    assert _neutral(render("blue"), "blue") == _neutral(render("green"), "green")


@pytest.mark.parametrize(
    ("color", "other", "role"), [("blue", "green", "active"), ("green", "blue", "standby")]
)
def test_an_overlay_deploys_its_color_as_the_idle_one(color: str, other: str, role: str) -> None:
    objects = render(color)
    gateway = named(objects, "Deployment", f"gateway-{color}")
    assert gateway["spec"]["selector"]["matchLabels"]["color"] == color
    assert gateway["spec"]["template"]["metadata"]["labels"]["color"] == color
    # applying the idle color leaves live traffic where it is; the rollout flips it
    assert named(objects, "Service", "gateway")["spec"]["selector"]["color"] == other
    assert named(objects, "Service", "gateway-preview")["spec"]["selector"]["color"] == color
    for service in HANDED_OVER:
        stateful = named(objects, "StatefulSet", f"{service}-{color}")
        container = stateful["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ORDERMESH_ROLE"] == role
        assert stateful["spec"]["template"]["metadata"]["labels"]["color"] == color
        # the Service reaches whichever color is the active owner: readiness decides
        assert "color" not in named(objects, "Service", service)["spec"]["selector"]
    assert "color" not in named(objects, "Deployment", "settlement")["metadata"]["labels"]


def test_the_overlays_change_nothing_else_of_the_base() -> None:
    base = {(o["kind"], o["metadata"]["name"]): o for o in render("base")}
    patched = {("Deployment", "gateway"), ("StatefulSet", "ubscore"), ("StatefulSet", "matcher")}
    patched |= {("Service", "gateway")}
    for color in COLORS:
        overlay = {(o["kind"], o["metadata"]["name"]): o for o in render(color)}
        for key, obj in base.items():
            if key not in patched:
                assert overlay[key] == obj, f"{color} changes {key}"
        added = set(overlay) - set(base)
        assert added == {
            ("Deployment", f"gateway-{color}"),
            ("StatefulSet", f"ubscore-{color}"),
            ("StatefulSet", f"matcher-{color}"),
            ("Service", "gateway-preview"),
        }


# -- Argo Rollouts -----------------------------------------------------------------------------


def _labels_of(template: Object) -> dict[str, str]:
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def test_the_argo_rollout_is_blue_green_with_services_that_exist() -> None:
    objects = render("argo")
    [rollout] = of_kind(objects, "Rollout")
    spec: dict[str, Any] = rollout["spec"]
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1"
    assert spec["replicas"] >= 2
    reference = spec["workloadRef"]
    assert (reference["apiVersion"], reference["kind"]) == ("apps/v1", "Deployment")
    deployment = named(objects, "Deployment", reference["name"])
    assert deployment["spec"]["replicas"] == 0, "the Rollout, not the Deployment, runs the pods"
    pod_labels = _labels_of(deployment["spec"]["template"])
    assert selects(spec["selector"], pod_labels)
    blue_green = spec["strategy"]["blueGreen"]
    active, preview = blue_green["activeService"], blue_green["previewService"]
    assert active != preview
    for service_name in (active, preview):
        service = named(objects, "Service", service_name)
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels)
        assert service["spec"]["ports"][0]["port"] == 50051
    analysis = blue_green.get("prePromotionAnalysis")
    assert blue_green.get("autoPromotionEnabled") is False or analysis, "nothing gates promotion"
    assert blue_green["scaleDownDelaySeconds"] >= 120 * 1.1 + 30, "old pods go before drained"


def test_the_argo_analysis_smoke_tests_the_preview_service() -> None:
    objects = render("argo")
    [rollout] = of_kind(objects, "Rollout")
    analysis = rollout["spec"]["strategy"]["blueGreen"]["prePromotionAnalysis"]
    given = {arg["name"]: arg["value"] for arg in analysis.get("args", [])}
    preview = rollout["spec"]["strategy"]["blueGreen"]["previewService"]
    for reference in analysis["templates"]:
        template = named(objects, "AnalysisTemplate", reference["templateName"])
        spec = template["spec"]
        required = {arg["name"] for arg in spec.get("args", []) if "value" not in arg}
        assert required <= set(given), f"arguments {required - set(given)} are not passed"
        for metric in spec["metrics"]:
            assert metric.get("failureLimit", 0) == 0
            job = metric["provider"]["job"]["spec"]
            assert job["backoffLimit"] == 0
            assert job["template"]["spec"]["restartPolicy"] == "Never"
            [container] = job["template"]["spec"]["containers"]
            assert container["args"][:2] == ["probe", "smoke"]
            address = container["args"][2]
            for name, value in given.items():
                address = address.replace("{{args." + name + "}}", value)
            assert address.split(".")[0] == preview, f"the smoke test calls {address}"
            assert address.endswith(":50051")
