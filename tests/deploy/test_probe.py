"""The image's probe script against a real mesh: what the compose health checks and the
blue-green smoke Job run, as a process, the way they run it.

The mesh is the in-process one of the gateway tests (MemoryBus, a real PostgreSQL); the probe
is `python deploy/docker/probe.py`, a separate process that only sees a gRPC address.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
import pytest_asyncio

from tests.deploy.manifests import ROOT
from tests.integration.gateway.harness import Mesh, mesh, trader_key, write_key_file
from tests.servers.common import free_port

PROBE: Final = ROOT / "deploy" / "docker" / "probe.py"
PROBE_SECONDS: Final = 60.0


@pytest_asyncio.fixture
async def running(pg_database: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    async with mesh(pg_database, write_key_file(tmp_path / "api_keys.toml")) as started:
        yield started


async def probe(*args: str, api_key: str = "") -> tuple[int, str, str]:
    """Run the probe script; return its exit status, stdout and stderr."""
    env = {key: value for key, value in os.environ.items() if key != "ORDERMESH_SMOKE_API_KEY"}
    if api_key:
        env["ORDERMESH_SMOKE_API_KEY"] = api_key
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    out, err = await asyncio.wait_for(process.communicate(), PROBE_SECONDS)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_smoke_passes_against_a_serving_gateway(running: Mesh) -> None:
    address = f"127.0.0.1:{running.gateway_service.port}"
    status, out, err = await probe("smoke", address, api_key=trader_key(1))
    assert status == 0, err
    assert "ok  health SERVING" in out
    assert "ok  ListSymbols:" in out
    assert "ok  GetOrderBook BTC-USDT: sequence" in out
    assert "ok  GetTicker" in out


@pytest.mark.asyncio
async def test_smoke_fails_with_a_key_the_gateway_does_not_know(running: Mesh) -> None:
    address = f"127.0.0.1:{running.gateway_service.port}"
    status, _, err = await probe("smoke", address, api_key="not-a-key-of-this-gateway")
    assert status == 1
    assert "UNAUTHENTICATED" in err


@pytest.mark.asyncio
async def test_smoke_fails_on_a_stale_version(running: Mesh) -> None:
    address = f"127.0.0.1:{running.gateway_service.port}"
    status, _, err = await probe(
        "smoke", address, "--expect-version", "0.0.0-stale", api_key=trader_key(1)
    )
    assert status == 1
    assert "expected '0.0.0-stale'" in err


@pytest.mark.asyncio
async def test_health_of_each_service_and_of_nothing(running: Mesh) -> None:
    ports = {
        "ordermesh.v1.Gateway": running.gateway_service.port,
        "ordermesh.v1.UBSCore": running.ubscore.service.port,
        "ordermesh.v1.Matcher": running.matcher.service.port,
        "ordermesh.v1.Settlement": running.settlement.service.port,
    }
    for service, port in ports.items():
        status, _, err = await probe("health", f"127.0.0.1:{port}", "--service", service)
        assert status == 0, f"{service}: {err}"
    status, _, err = await probe("health", f"127.0.0.1:{free_port()}")
    assert status == 1
    assert "UNAVAILABLE" in err


@pytest.mark.asyncio
async def test_smoke_refuses_to_run_without_a_key() -> None:
    status, _, err = await probe("smoke", "127.0.0.1:1")
    assert status == 2
    assert "ORDERMESH_SMOKE_API_KEY" in err
