"""KubectlPlatform's commands, against a stand-in `kubectl` that keeps a tiny cluster in JSON.

No cluster runs in the tests; the stand-in answers the few kubectl commands the platform
uses (get, apply -k, rollout status, patch, scale, wait, exec, port-forward) from a state
file and records every command line, so the tests see exactly what an operator's kubectl
would be asked to do, in which order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ordermesh.rollout.kubectl import KubectlLayout, KubectlPlatform, established_on
from ordermesh.rollout.machine import Color, Rollout, Step, Timeouts
from tests.unit.rollout.test_machine import FakeSmoke

FAKE_KUBECTL = r"""
import json, sys, time
from pathlib import Path
state_path = Path(__file__).with_name("cluster.json")
state = json.loads(state_path.read_text())
argv = [a for a in sys.argv[1:] if not a.startswith(("--namespace=", "--context="))]
with Path(__file__).with_name("calls.log").open("a") as log:
    log.write(" ".join(argv) + "\n")
def save():
    state_path.write_text(json.dumps(state))
def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)
verb = argv[0]
if verb in state.get("fail", {}):
    fail(state["fail"][verb])
if verb == "get" and argv[1] == "service":
    selector = state["services"].get(argv[2])
    print(selector or "", end="")
elif verb == "get" and argv[1].startswith("deployment/") and "--ignore-not-found" in argv:
    print(argv[1] if argv[1] in state["deployments"] else "", end="")
elif verb == "get" and argv[1].startswith("deployment/") and argv[-1] == "json":
    color = argv[1].rsplit("-", 1)[1]
    print(json.dumps({"spec": {"selector": {"matchLabels": {"app": "gateway", "color": color}}}}))
elif verb == "get" and argv[1].startswith("deployment/"):
    print(state["deployments"].get(argv[1], 0), end="")
elif verb == "get" and argv[1] == "pods":
    color = argv[3].split("color=")[1]
    replicas = state["deployments"].get(f"deployment/gateway-{color}", 0)
    print("\n".join(f"pod/gateway-{color}-{n}" for n in range(replicas)))
elif verb == "get" and argv[1] == "secret":
    print("cHJvYmUta2V5LWZyb20tc2VjcmV0", end="")
elif verb == "apply":
    color = Path(argv[2]).name
    state["deployments"][f"deployment/gateway-{color}"] = 2
    save()
elif verb == "rollout":
    pass
elif verb == "patch":
    state["services"][argv[2]] = json.loads(argv[-1])["spec"]["selector"]["color"]
    save()
elif verb == "scale":
    state["deployments"][argv[1]] = 0
    save()
elif verb == "wait":
    pass
elif verb == "exec":
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
    busy = state.get("connections", 0)
    rest = "00000000:00000000 00:00000000 00000000 0"
    rows = [f"   {n}: 0100007F:C383 0100007F:D431 01 {rest}" for n in range(busy)]
    rows.append(f"   9: 00000000:C383 00000000:0000 0A {rest}")
    print("\n".join([header, *rows]))
elif verb == "port-forward":
    print("Forwarding from 127.0.0.1:45678 -> 50051", flush=True)
    time.sleep(60)
else:
    fail(f"unexpected: {argv}")
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    script = tmp_path / "kubectl.py"
    script.write_text(FAKE_KUBECTL)
    wrapper = tmp_path / "kubectl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(0o755)
    state = {
        "services": {"gateway": "blue", "gateway-preview": "green"},
        "deployments": {"deployment/gateway-blue": 2},
    }
    (tmp_path / "cluster.json").write_text(json.dumps(state))
    return tmp_path


def platform_on(cluster: Path) -> KubectlPlatform:
    layout = KubectlLayout(
        cluster / "overlays", namespace="ordermesh", kubectl=str(cluster / "kubectl")
    )
    return KubectlPlatform(layout)


def calls(cluster: Path) -> list[str]:
    return (cluster / "calls.log").read_text().splitlines()


def state(cluster: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((cluster / "cluster.json").read_text())
    return loaded


def test_a_rollout_is_these_kubectl_commands(cluster):
    smoke = FakeSmoke()
    outcome = Rollout(
        platform_on(cluster), smoke, Timeouts(ready=30, drain=5), lambda _: None
    ).run()
    assert outcome.ok, outcome.summary()
    overlays = cluster / "overlays"
    assert calls(cluster) == [
        "get service gateway --ignore-not-found -o jsonpath={.spec.selector.color}",
        "get deployment/gateway-blue --ignore-not-found -o name",
        f"apply -k {overlays}/green",
        "rollout status deployment/gateway-green --timeout=30s",
        "get service gateway-preview --ignore-not-found -o jsonpath={.spec.selector.color}",
        "port-forward service/gateway-preview :50051",
        "get service gateway-preview --ignore-not-found -o jsonpath={.spec.selector.color}",
        "port-forward service/gateway-preview :50051",
        'patch service gateway --type=merge -p {"spec": {"selector": {"color": "green"}}}',
        'patch service gateway-preview --type=merge -p {"spec": {"selector": {"color": "blue"}}}',
        "get deployment/gateway-blue -o json",
        "get pods -l app=gateway,color=blue -o name",
        "exec pod/gateway-blue-0 -- cat /proc/net/tcp /proc/net/tcp6",
        "exec pod/gateway-blue-1 -- cat /proc/net/tcp /proc/net/tcp6",
        "scale deployment/gateway-blue --replicas=0",
        "get deployment/gateway-blue -o json",
        "wait --for=delete pod -l app=gateway,color=blue --timeout=120s",
    ]
    assert smoke.endpoints == ["127.0.0.1:45678", "127.0.0.1:45678"]
    assert state(cluster)["services"] == {"gateway": "green", "gateway-preview": "blue"}


def test_connections_left_on_the_old_color_fail_the_drain_and_move_traffic_back(cluster):
    cluster_state = state(cluster)
    cluster_state["connections"] = 2
    (cluster / "cluster.json").write_text(json.dumps(cluster_state))
    outcome = Rollout(
        platform_on(cluster), FakeSmoke(), Timeouts(ready=30, drain=0), lambda _: None
    ).run()
    assert outcome.failed_step is Step.DRAIN
    assert outcome.reason == "blue still has 4 client connection(s) after 0 s"
    assert state(cluster)["services"] == {"gateway": "blue", "gateway-preview": "green"}
    assert state(cluster)["deployments"] == {
        "deployment/gateway-blue": 2,
        "deployment/gateway-green": 0,
    }


def test_a_kubectl_error_names_the_command_and_its_message(cluster):
    cluster_state = state(cluster)
    cluster_state["fail"] = {"apply": "error: no objects passed to apply"}
    (cluster / "cluster.json").write_text(json.dumps(cluster_state))
    outcome = Rollout(platform_on(cluster), FakeSmoke(), Timeouts(), lambda _: None).run()
    assert outcome.failed_step is Step.APPLY
    assert "apply -k" in outcome.reason
    assert outcome.reason.endswith("failed (status 1): error: no objects passed to apply")


def test_before_the_first_rollout_nothing_is_live(cluster):
    (cluster / "cluster.json").write_text(
        json.dumps({"services": {"gateway": "green"}, "deployments": {}})
    )
    assert platform_on(cluster).live_color() is None
    (cluster / "cluster.json").write_text(json.dumps({"services": {}, "deployments": {}}))
    assert platform_on(cluster).live_color() is None


def test_the_probe_key_comes_from_the_secret(cluster):
    assert platform_on(cluster).probe_key("ordermesh-smoke", "api-key") == "probe-key-from-secret"
    assert calls(cluster)[-1] == "get secret ordermesh-smoke -o jsonpath={.data.api-key}"


def test_established_connections_are_counted_by_local_port():
    table = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001
   1: 0A00000C:C383 0A000001:9C40 01 00000000:00000000 00:00000000 00000000 10001
   2: 0A00000C:C383 0A000002:9C41 06 00000000:00000000 00:00000000 00000000 10001
   3: 0A00000C:D431 0A000001:C383 01 00000000:00000000 00:00000000 00000000 10001
"""
    assert established_on(table, 50051) == 1
    assert established_on(table, 1234) == 0
    assert Color.BLUE.other is Color.GREEN
