"""`ordermesh up` as a subprocess on a temporary data directory and free loopback ports.

Waits are conditions with deadlines: the "ordermesh is up" line, health SERVING, a balance
that settles; each fails the test with what it saw when its deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import tomllib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests import waiting

BIN = Path(sys.executable).parent / "ordermesh"
UP_SECONDS = 90.0
STOP_SECONDS = 60.0
KILL_GRACE_SECONDS = 15.0
DEADLINE_SECONDS = 20.0
SERVICES = ("gateway", "ubscore", "matcher", "settlement")
PORT_NAMES = (*SERVICES, "metrics")
"""The ports `ordermesh up` takes a flag for."""


def _end_postgres(pid_file: Path) -> None:
    """Stop the PostgreSQL whose postmaster.pid this is, if it still runs (fast shutdown).

    Only a process whose command line names this data directory: a stale pid file's pid may
    belong to another process by now.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return
    if str(pid_file.parent) not in command:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGINT)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def mesh_ports() -> dict[str, int]:
    """A free loopback port for each of PORT_NAMES."""
    return dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))


def clean_environment() -> dict[str, str]:
    """The test's environment without ORDERMESH_* settings a developer may have exported."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ORDERMESH_") or name.startswith("ORDERMESH_TEST_")
    }


@dataclass
class Completed:
    """How a command that ran to its end ended."""

    status: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def run_command(
    *argv: str, seconds: float, env: Mapping[str, str] | None = None
) -> Completed:
    """Run `argv` in the clean environment plus `env`; fail if it takes over `seconds`."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_environment(), **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), seconds)
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


@dataclass
class Up:
    """One `ordermesh up` process."""

    data_dir: Path
    ports: dict[str, int]
    process: asyncio.subprocess.Process | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    def argv(self) -> list[str]:
        flags = [f"--{name}-port={port}" for name, port in self.ports.items()]
        return [str(BIN), "up", f"--data-dir={self.data_dir}", "--fsync=never", *flags]

    async def start(self) -> None:
        """Start it and wait for "ordermesh is up"."""
        await self.launch()
        try:
            async with asyncio.timeout(UP_SECONDS):
                while not any(line.startswith("ordermesh is up") for line in self.lines):
                    if not await self._read_line():
                        pytest.fail(f"ordermesh up ended while starting: {self.output()}")
        except TimeoutError:
            pytest.fail(f"no 'ordermesh is up' after {UP_SECONDS} s: {self.output()}")

    async def launch(self) -> None:
        """Start the process (and return at once)."""
        self.lines = []
        stderr = (self.data_dir.parent / f"{self.data_dir.name}.stderr").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv(), stdout=asyncio.subprocess.PIPE, stderr=stderr, env=clean_environment()
        )
        stderr.close()

    async def ended(self) -> tuple[int, str]:
        """Wait for a process that ends on its own; its status and output."""
        assert self.process is not None
        try:
            async with asyncio.timeout(UP_SECONDS):
                while await self._read_line():
                    pass
                return await self.process.wait(), self.output()
        except TimeoutError:
            pytest.fail(f"ordermesh up did not end within {UP_SECONDS} s: {self.output()}")

    async def _read_line(self) -> bool:
        assert self.process is not None
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if line:
            self.lines.append(line.decode().rstrip("\n"))
        return bool(line)

    async def stop(self, signum: int = signal.SIGINT) -> int:
        """Send `signum`, read the rest of the output, return the exit status."""
        assert self.process is not None
        self.process.send_signal(signum)
        try:
            async with asyncio.timeout(STOP_SECONDS):
                while await self._read_line():
                    pass
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            pytest.fail(f"ordermesh up did not stop within {STOP_SECONDS} s: {self.output()}")

    async def kill(self) -> None:
        """End it whatever state it is in, and the embedded PostgreSQL it started.

        SIGINT first (a clean stop also stops its PostgreSQL); SIGKILL when that takes too
        long, and then the PostgreSQL left behind is ended by the pid it wrote.
        """
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(KILL_GRACE_SECONDS):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        _end_postgres(self.data_dir / "postgres" / "postmaster.pid")

    def output(self) -> str:
        stderr = self.data_dir.parent / f"{self.data_dir.name}.stderr"
        tail = stderr.read_text(errors="replace")[-3000:] if stderr.exists() else ""
        return "\n".join(self.lines) + "\n--- stderr ---\n" + tail

    def keys(self) -> dict[str, str]:
        """name -> key, from the key file `up` wrote (mode 0600)."""
        path = self.data_dir / "api_keys.toml"
        assert path.stat().st_mode & 0o777 == 0o600
        return {e["name"]: e["key"] for e in tomllib.loads(path.read_text())["keys"]}


@contextlib.asynccontextmanager
async def running_mesh(prefix: str) -> AsyncIterator[Up]:
    """A started `ordermesh up` for a test module; stopped on exit, which must end it with 0.

    Its data is not under pytest's basetemp: a pytest session starting meanwhile makes that
    0700, and the embedded PostgreSQL runs as another user when the tests run as root.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    process = Up(root / "data", mesh_ports())
    try:
        await process.start()
        yield process
        assert process.process is not None
        assert process.process.returncode is None, f"ordermesh up ended: {process.output()}"
        assert await process.stop() == 0, process.output()
    finally:
        await process.kill()
        shutil.rmtree(root, ignore_errors=True)


async def all_serving(up: Up) -> None:
    """Health SERVING on each of the four ports (the overall status, service "")."""
    for name in SERVICES:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{up.ports[name]}") as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, name


eventually = functools.partial(waiting.eventually, seconds=DEADLINE_SECONDS)
"""Wait for a condition with this file's deadline and poll interval."""
