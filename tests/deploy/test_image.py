"""The container image and the local stack, checked statically (no Docker engine needed).

The Dockerfile is parsed (dockerfile-parse): the runtime stage must run as a fixed non-root
user, install nothing, carry no HEALTHCHECK and copy only the virtualenv and the files the
services read. The entry point script is run for real, dispatching to the services in this
checkout's virtualenv. docker-compose.yml is parsed and checked for what a local stack must
never do (publish on every interface) and what it must do (wait for health).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from gateway.auth import ApiKeys
from ordermesh.config import ENV_PREFIX
from tests.deploy.manifests import ROOT
from tests.deploy.test_manifests import SERVICES, UID

DOCKERFILE: Final = ROOT / "Dockerfile"
ENTRYPOINT: Final = ROOT / "deploy" / "docker" / "entrypoint.sh"
BUILD_TOOLS: Final = ("apt-get", "apt ", "apk ", "dnf ", "yum ", "gcc", "build-essential", "pip ")
Instruction = dict[str, Any]


def _stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per stage (comments dropped)."""
    stages: list[list[Instruction]] = []
    for instruction in DockerfileParser(path=str(DOCKERFILE)).structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages and instruction["instruction"] != "COMMENT":
            stages[-1].append(instruction)
    return stages


def _values(stage: list[Instruction], name: str) -> list[str]:
    return [str(i["value"]) for i in stage if i["instruction"] == name]


def test_the_image_is_built_in_two_stages_on_python_slim() -> None:
    stages = _stages()
    assert len(stages) == 2
    parser = DockerfileParser(path=str(DOCKERFILE))
    assert parser.parent_images == ["python:3.11-slim", "python:3.11-slim"]
    assert _values(stages[0], "FROM")[0].endswith("AS builder")


def test_the_runtime_stage_runs_as_a_fixed_non_root_user() -> None:
    runtime = _stages()[-1]
    users = _values(runtime, "USER")
    assert users == [f"{UID}:{UID}"], "the last USER must be the numeric non-root user"
    assert any(f"--uid {UID}" in run and f"--gid {UID}" in run for run in _values(runtime, "RUN"))


def test_the_runtime_stage_installs_nothing_and_copies_only_what_runs() -> None:
    runtime = _stages()[-1]
    for run in _values(runtime, "RUN"):
        for tool in BUILD_TOOLS:
            assert tool not in run, f"the runtime stage runs {tool.strip()}: {run}"
    copies = _values(runtime, "COPY")
    assert copies[0] == "--from=builder /opt/ordermesh /opt/ordermesh"
    sources = [c.split()[-2] for c in copies[1:]]
    assert sources == [
        "config/markets.toml",
        "deploy/docker/entrypoint.sh",
        "deploy/docker/probe.py",
    ]
    for source in sources:
        assert (ROOT / source).is_file(), source


def test_no_healthcheck_and_the_entry_point_chooses_the_service() -> None:
    stages = _stages()
    assert not any(_values(stage, "HEALTHCHECK") for stage in stages)
    runtime = stages[-1]
    assert _values(runtime, "ENTRYPOINT") == ['["/app/entrypoint.sh"]']
    env = " ".join(_values(runtime, "ENV"))
    assert "ORDERMESH_MARKETS=/app/config/markets.toml" in env, "installed, the default is wrong"
    assert "ORDERMESH_HOST=0.0.0.0" in env
    for word in ("PASSWORD", "SECRET", "TOKEN", "API_KEY"):
        assert word not in env.upper()
    labels = " ".join(_values(runtime, "LABEL"))
    for label in ("title", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_the_builder_pins_dependencies_by_the_constraints() -> None:
    runs = " ".join(_values(_stages()[0], "RUN"))
    assert runs.count("-c requirements/constraints.txt") >= 2
    assert "PIP_NO_CACHE_DIR=1" in " ".join(_values(_stages()[0], "ENV"))


def test_dockerignore_keeps_environments_caches_tests_and_data_out() -> None:
    entries = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    required = {
        ".git", ".venv", "**/__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
        ".hypothesis", ".ordermesh", "build", "dist", "tests", "bench", "deploy/k8s",
    }  # fmt: skip
    assert required <= entries, f"missing: {sorted(required - entries)}"
    for source in ("ordermesh", "gateway", "ubscore", "matcher", "settlement", "config"):
        assert source not in entries
    assert "deploy" not in entries
    assert "deploy/docker" not in entries


# -- the entry point, run for real -------------------------------------------------------------


def _entrypoint(*args: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PATH": path},
    )


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_entry_point_runs_the_named_service(service: str) -> None:
    done = _entrypoint(service, "--help")
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m {service}" in done.stdout


def test_the_entry_point_refuses_an_unknown_service() -> None:
    done = _entrypoint("bogus")
    assert done.returncode == 2
    assert "unknown service 'bogus'" in done.stderr
    assert _entrypoint().returncode == 2


# -- docker-compose.yml ------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return loaded


def test_compose_publishes_only_on_loopback() -> None:
    published = 0
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use the 'IP:HOST:CONTAINER' string form"
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
            published += 1
    assert published >= 6


def test_compose_runs_kafka_in_kraft_mode_and_postgres() -> None:
    services = _compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    for single in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG"):
        assert env[f"KAFKA_{single}_REPLICATION_FACTOR"] == "1"
    assert services["postgres"]["image"].startswith("postgres:")


def test_compose_services_wait_for_health_and_know_their_settings() -> None:
    services = _compose()["services"]
    for name, (port, _, settings) in SERVICES.items():
        service = services[name]
        assert service["command"] == [name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        check = service["healthcheck"]["test"]
        assert check[:4] == ["CMD", "python", "/app/probe.py", "health"]
        assert check[4] == f"127.0.0.1:{port}"
        for dependency in service["depends_on"].values():
            assert dependency == {"condition": "service_healthy"}
        known = {ENV_PREFIX + f.name.upper() for f in fields(settings)}
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name} has no setting {sorted(unknown)}"
    assert set(services["gateway"]["depends_on"]) == {"ubscore", "matcher", "settlement"}
    assert {"kafka", "postgres"} <= set(services["settlement"]["depends_on"])
    for name in ("kafka", "postgres"):
        assert services[name]["healthcheck"]["test"]


def test_compose_demo_keys_load_and_are_marked_local_only() -> None:
    source = _compose()["secrets"]["api_keys"]["file"]
    path = ROOT / source
    ApiKeys.load(path)  # raises when the gateway would refuse it
    text = path.read_text(encoding="utf-8")
    assert "LOCAL" in text
    assert "never use them" in text
