"""nginx as the gRPC proxy in front of the gateway colors: its config, check and reload.

The config has two HTTP/2 listeners: live (what clients call) and preview (what the smoke
test calls), each `grpc_pass`-ing to one color's gateway. Switching a color rewrites the
file, has nginx check it (`nginx -t`), and reloads (`nginx -s reload`): the master starts
workers on the new config, and the old workers finish the calls they carry, say GOAWAY to
their clients and exit. nginx runs with its own prefix directory (`-p`), so its pid file,
logs and temporary files all live there, and it needs no system-wide setup.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from ordermesh.rollout.machine import StepFailed

CONFIG_NAME: Final = "nginx.conf"
PID_NAME: Final = "nginx.pid"
ERROR_LOG_NAME: Final = "nginx-error.log"
_TEMP_KINDS: Final = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_WORKER_TITLE: Final = "nginx: worker process"


def render(
    listen: str, preview_listen: str, live_port: int, preview_port: int, prefix: Path
) -> str:
    """The whole nginx.conf: live and preview listeners, one gateway upstream each."""
    temp = "\n".join(f"    {kind}_temp_path {prefix / 'temp' / kind};" for kind in _TEMP_KINDS)
    return f"""\
# Written by `python -m ordermesh.rollout local`; rewritten on every switch of color.
worker_processes 1;
pid {prefix / PID_NAME};
error_log {prefix / ERROR_LOG_NAME} warn;
# Old workers carrying long calls are stopped after this long past a reload.
worker_shutdown_timeout 60s;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
{temp}

    upstream gateway_live {{
        server 127.0.0.1:{live_port};
        keepalive 32;
    }}
    upstream gateway_preview {{
        server 127.0.0.1:{preview_port};
        keepalive 4;
    }}

    server {{
        listen {listen} http2;
        location / {{
            grpc_pass grpc://gateway_live;
            # Streams may stay open for long; the gateway's own timeouts bound calls.
            grpc_read_timeout 1h;
            grpc_send_timeout 1h;
        }}
    }}
    server {{
        listen {preview_listen} http2;
        location / {{
            grpc_pass grpc://gateway_preview;
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Nginx:
    """One nginx instance, by its prefix directory; started by whoever runs the proxy."""

    prefix: Path
    """Holds nginx.conf, the pid file, the error log and temporary files."""
    binary: str = "nginx"
    reload_seconds: float = 10.0
    """How long a reload may take to bring up workers on the new config."""

    @property
    def config(self) -> Path:
        """The config file."""
        return self.prefix / CONFIG_NAME

    def command(self) -> list[str]:
        """The command that runs this nginx in the foreground (no daemon)."""
        return [*self._base(), "-g", "daemon off;"]

    def write(self, text: str) -> None:
        """Replace the config file (atomically), creating the directories it names."""
        for kind in _TEMP_KINDS:
            (self.prefix / "temp" / kind).mkdir(parents=True, exist_ok=True)
        staged = self.config.with_suffix(".new")
        staged.write_text(text)
        staged.replace(self.config)

    def check(self) -> None:
        """Have nginx check the config file.

        Raises:
            StepFailed: nginx refuses it (with its message) or cannot be run.
        """
        self._run([*self._base(), "-t", "-q"], "check its configuration")

    def reload(self) -> None:
        """Load the config file into the running nginx; return once only new workers accept.

        The old workers go on with the calls they carry, but accept no more connections:
        each renames itself "... is shutting down" once it has closed its listeners.

        Raises:
            StepFailed: nginx is not running, refused the signal, or did not switch workers.
        """
        master = self._master()
        before = {worker.pid for worker in self._workers(master)}
        self._run([*self._base(), "-s", "reload"], "reload")
        deadline = time.monotonic() + self.reload_seconds
        while time.monotonic() < deadline:
            accepting = {worker.pid for worker in self._workers(master)}
            if accepting and not accepting & before:
                return
            time.sleep(0.05)  # polling interval while nginx switches its workers
        raise StepFailed(
            "nginx did not switch to workers on the new configuration within "
            f"{self.reload_seconds} s; see {self.prefix / ERROR_LOG_NAME}"
        )

    def running(self) -> bool:
        """Whether the nginx of this prefix runs."""
        try:
            self._master()
        except StepFailed:
            return False
        return True

    def _base(self) -> list[str]:
        return [
            self.binary, "-p", f"{self.prefix}/", "-c", str(self.config),
            "-e", str(self.prefix / ERROR_LOG_NAME),
        ]  # fmt: skip

    def _run(self, argv: list[str], what: str) -> None:
        try:
            # The nginx binary and prefix are the operator's own flags.
            done = subprocess.run(  # noqa: S603
                argv, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise StepFailed(f"nginx could not {what}: {e}") from e
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()
            raise StepFailed(f"nginx could not {what} (status {done.returncode}): {message}")

    def _master(self) -> psutil.Process:
        pid_file = self.prefix / PID_NAME
        try:
            return psutil.Process(int(pid_file.read_text().strip()))
        except (OSError, ValueError, psutil.Error) as e:
            raise StepFailed(
                f"nginx is not running with prefix {self.prefix} (pid file {pid_file}: {e}); "
                f"start it with: {' '.join(self.command())}"
            ) from e

    def _workers(self, master: psutil.Process) -> list[psutil.Process]:
        """The master's workers on the current config (not those shutting down)."""
        workers = []
        for child in master.children():
            try:
                if " ".join(child.cmdline()).strip() == _WORKER_TITLE:
                    workers.append(child)
            except psutil.Error:
                continue  # it ended while we looked
        return workers
