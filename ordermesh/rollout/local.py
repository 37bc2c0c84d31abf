"""`LocalPlatform`: the two colors as gateway processes on one host, behind nginx.

Outside Kubernetes the same rollout runs on a host: each color is a `python -m gateway`
process on its own port, and nginx proxies the live and preview listeners to them. State
lives in one directory: the nginx prefix (config, pid, logs), `live` and `preview` (the
colors the listeners point at), and per color `<color>.pid` and `<color>.log`. The gateway
command is given once, with `{color}` and `{port}` standing for the color and its port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh.rollout.machine import Color, StepFailed
from ordermesh.rollout.nginx import Nginx, render

_POLL_SECONDS: Final = 0.2
_LOG_LINES: Final = 8


@dataclass(frozen=True, slots=True)
class LocalLayout:
    """Where everything of a local blue-green pair is."""

    state_dir: Path
    """nginx's prefix and the colors' pid and log files."""
    listen: str
    """host:port clients call (nginx's live listener)."""
    preview_listen: str
    """host:port of nginx's preview listener (the smoke test's way in)."""
    ports: Mapping[Color, int]
    """The gateway port of each color."""
    command: Sequence[str]
    """The gateway command; `{color}` and `{port}` in any argument are replaced."""
    stop_seconds: float = 30.0
    """How long a stopped gateway may take to exit (its grace, and some)."""
    nginx_binary: str = "nginx"


@dataclass
class LocalPlatform:
    """The `Platform` of processes behind nginx."""

    layout: LocalLayout
    nginx: Nginx = field(init=False)
    _started: dict[Color, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.nginx = Nginx(self.layout.state_dir, self.layout.nginx_binary)

    # -- what the operator runs once -----------------------------------------------------

    def init(self) -> list[str]:
        """Write the first nginx config (live: blue, preview: green); return nginx's command.

        Raises:
            StepFailed: nginx refuses the config.
        """
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        live = self.live_color() or Color.BLUE
        self._write_config(live, self._preview_color() or live.other)
        self.nginx.check()
        return self.nginx.command()

    # -- Platform ------------------------------------------------------------------------

    def live_color(self) -> Color | None:
        """The color recorded by the last flip, None before the first."""
        return _read_color(self.layout.state_dir / "live")

    def apply(self, color: Color) -> None:
        """Start `color`'s gateway process (refused when one runs already)."""
        running = self._process(color)
        if running is not None:
            raise StepFailed(
                f"a {color} gateway runs already (pid {running.pid}); it is not idle. "
                f"Stop it first, or roll out to {color.other}"
            )
        port = self.layout.ports[color]
        argv = [part.format(color=color, port=port) for part in self.layout.command]
        log = self._log(color)
        with log.open("ab") as sink:
            try:
                # The gateway command is the operator's own, from the command line.
                process = subprocess.Popen(  # noqa: S603
                    argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            except OSError as e:
                raise StepFailed(f"cannot start the {color} gateway ({argv[0]}): {e}") from e
        self._started[color] = process
        started_at = psutil.Process(process.pid).create_time()
        self._pid_file(color).write_text(f"{process.pid} {started_at}\n")

    def wait_ready(self, color: Color, timeout: float) -> None:
        """Wait for health SERVING on `color`'s port; fail early if its process ends."""
        deadline = time.monotonic() + timeout
        status = "no answer"
        while True:
            if self._process(color) is None:
                raise StepFailed(f"the {color} gateway is not running; {self._log_tail(color)}")
            status = self._health(color)
            if status == "SERVING":
                return
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{color} is not ready after {timeout:g} s: health says {status}; "
                    f"{self._log_tail(color)}"
                )
            time.sleep(_POLL_SECONDS)  # polling interval of a deadline-bounded wait

    def is_ready(self, color: Color) -> bool:
        """Whether `color`'s process runs and says SERVING."""
        return self._process(color) is not None and self._health(color) == "SERVING"

    @contextlib.contextmanager
    def preview(self, color: Color) -> Iterator[str]:
        """Point nginx's preview listener at `color`."""
        if self._preview_color() is not color:
            self._switch(live=self.live_color() or color.other, preview=color)
        yield self.layout.preview_listen

    def flip(self, color: Color) -> None:
        """Point nginx's live listener at `color` (preview at the other)."""
        self._switch(live=color, preview=color.other)

    def drain(self, color: Color, timeout: float) -> None:
        """Wait until no TCP connection to `color`'s port is left."""
        port = self.layout.ports[color]
        deadline = time.monotonic() + timeout
        while (count := connections_to(port)) > 0:
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{color} (port {port}) still has {count} client connection(s) after "
                    f"{timeout:g} s"
                )
            time.sleep(_POLL_SECONDS)  # polling interval of a deadline-bounded wait

    def scale_down(self, color: Color) -> None:
        """SIGTERM `color`'s gateway and wait for it to exit (SIGKILL after the wait)."""
        process = self._process(color)
        if process is None:
            self._pid_file(color).unlink(missing_ok=True)
            return
        process.send_signal(signal.SIGTERM)
        try:
            self._wait_exit(color, process, self.layout.stop_seconds)
        except psutil.TimeoutExpired:
            process.kill()
            self._wait_exit(color, process, self.layout.stop_seconds)
            raise StepFailed(
                f"the {color} gateway (pid {process.pid}) did not stop within "
                f"{self.layout.stop_seconds:g} s of SIGTERM; it was killed"
            ) from None
        finally:
            if not _running(process):
                self._pid_file(color).unlink(missing_ok=True)

    # -- helpers -------------------------------------------------------------------------

    def _switch(self, *, live: Color, preview: Color) -> None:
        """Write the config for these colors and reload; on failure, put the old one back."""
        config = self.nginx.config
        old = config.read_text() if config.exists() else None
        self._write_config(live, preview)
        try:
            self.nginx.check()
            self.nginx.reload()
        except StepFailed:
            if old is not None:
                self.nginx.write(old)
            raise
        _write_color(self.layout.state_dir / "live", live)
        _write_color(self.layout.state_dir / "preview", preview)

    def _write_config(self, live: Color, preview: Color) -> None:
        layout = self.layout
        self.nginx.write(
            render(
                layout.listen, layout.preview_listen, layout.ports[live], layout.ports[preview],
                layout.state_dir,
            )
        )  # fmt: skip

    def _preview_color(self) -> Color | None:
        return _read_color(self.layout.state_dir / "preview")

    def _health(self, color: Color) -> str:
        address = f"127.0.0.1:{self.layout.ports[color]}"
        with grpc.insecure_channel(address) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError as e:
                return f"{e.code().name} ({e.details()})"
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return name

    def _process(self, color: Color) -> psutil.Process | None:
        """`color`'s gateway process if it runs (the pid file's pid, same start time)."""
        started = self._started.get(color)
        if started is not None and started.poll() is not None:
            return None  # our child ended (and is reaped now)
        try:
            pid, created = self._pid_file(color).read_text().split()
            process = psutil.Process(int(pid))
            if abs(process.create_time() - float(created)) > 0.01:
                return None  # the pid belongs to another process now
        except (OSError, ValueError, psutil.Error):
            return None
        return process if _running(process) else None

    def _wait_exit(self, color: Color, process: psutil.Process, seconds: float) -> None:
        started = self._started.get(color)
        if started is not None:  # our own child: wait() also reaps it
            try:
                started.wait(seconds)
            except subprocess.TimeoutExpired as e:
                raise psutil.TimeoutExpired(seconds, process.pid) from e
            return
        # Not our child: it is gone once its pid is, or once it is a zombie (an init that
        # does not reap would keep it so).
        deadline = time.monotonic() + seconds
        while _running(process):
            if time.monotonic() > deadline:
                raise psutil.TimeoutExpired(seconds, process.pid)
            time.sleep(_POLL_SECONDS)  # polling interval of a deadline-bounded wait

    def _pid_file(self, color: Color) -> Path:
        return self.layout.state_dir / f"{color}.pid"

    def _log(self, color: Color) -> Path:
        return self.layout.state_dir / f"{color}.log"

    def _log_tail(self, color: Color) -> str:
        try:
            lines = self._log(color).read_text(errors="replace").splitlines()[-_LOG_LINES:]
        except OSError:
            return f"no log at {self._log(color)}"
        return f"last lines of {self._log(color)}:\n" + "\n".join(lines)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def connections_to(port: int) -> int:
    """Established TCP connections whose local end is `port` (clients of that server)."""
    return sum(
        1
        for connection in psutil.net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED
        and connection.laddr
        and connection.laddr.port == port
    )


def _read_color(path: Path) -> Color | None:
    try:
        return Color(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_color(path: Path, color: Color) -> None:
    staged = path.with_suffix(".new")
    staged.write_text(f"{color}\n")
    os.replace(staged, path)
