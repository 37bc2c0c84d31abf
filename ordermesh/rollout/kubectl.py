"""`KubectlPlatform`: the two colors as Deployments in Kubernetes, switched by Service selector.

The manifests (deploy/k8s/) give each color its overlay with a Deployment `gateway-<color>`
whose pods carry the label `color: <color>`; the Service `gateway` selects the live color,
`gateway-preview` the idle one. Applying an overlay never touches the Services' selectors:
only this tool moves them. Every action is one `kubectl` call; the smoke test reaches the
preview Service through `kubectl port-forward`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ordermesh.rollout.machine import Color, StepFailed

_FORWARDING: Final = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")
_ESTABLISHED: Final = "01"  # the st column of /proc/net/tcp
_POLL_SECONDS: Final = 1.0
_FORWARD_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class KubectlLayout:
    """The names the manifests use, and how to reach the cluster."""

    overlays: Path
    """The directory of the color overlays: `<overlays>/blue`, `<overlays>/green`."""
    namespace: str = ""
    """The namespace (empty: kubectl's current one)."""
    context: str = ""
    """The kubeconfig context (empty: kubectl's current one)."""
    live_service: str = "gateway"
    preview_service: str = "gateway-preview"
    deployment: str = "gateway-{color}"
    """The Deployment of a color; `{color}` is replaced."""
    label: str = "color"
    """The pod label the Services select on."""
    grpc_port: int = 50051
    """The gateway's gRPC port (in the pods and on the Services)."""
    stop_seconds: float = 120.0
    """How long the old color's pods may take to go after a scale to zero."""
    kubectl: str = "kubectl"


class KubectlPlatform:
    """The `Platform` of a Kubernetes cluster, driven by kubectl."""

    def __init__(self, layout: KubectlLayout) -> None:
        self.layout = layout

    def live_color(self) -> Color | None:
        """The color the live Service selects, if that color's Deployment exists.

        None before the first rollout: no live Service yet, or one that selects a color
        never deployed (applying the blue overlay first leaves `gateway` on green).
        """
        color = self._selected(self.layout.live_service)
        if color is None or not self._exists(self._deployment(color)):
            return None
        return color

    def apply(self, color: Color) -> None:
        """`kubectl apply -k <overlays>/<color>`."""
        self._kubectl(["apply", "-k", str(self.layout.overlays / color)], timeout=300)

    def wait_ready(self, color: Color, timeout: float) -> None:
        """`kubectl rollout status` of the color's Deployment (readiness = gRPC health)."""
        self._kubectl(
            ["rollout", "status", self._deployment(color), f"--timeout={max(1, round(timeout))}s"],
            timeout=timeout + 30,
        )

    def is_ready(self, color: Color) -> bool:
        """Whether the color's Deployment has a ready pod now."""
        try:
            ready = self._kubectl(
                ["get", self._deployment(color), "-o", "jsonpath={.status.readyReplicas}"]
            )
        except StepFailed:
            return False
        return ready.strip().isdigit() and int(ready) > 0

    @contextlib.contextmanager
    def preview(self, color: Color) -> Iterator[str]:
        """Select `color` in the preview Service, and port-forward to it."""
        if self._selected(self.layout.preview_service) is not color:
            self._select(self.layout.preview_service, color)
        with self._port_forward(f"service/{self.layout.preview_service}") as port:
            yield f"127.0.0.1:{port}"

    def flip(self, color: Color) -> None:
        """Select `color` in the live Service, and the other color in the preview one."""
        self._select(self.layout.live_service, color)
        self._select(self.layout.preview_service, color.other)

    def drain(self, color: Color, timeout: float) -> None:
        """Wait until no pod of `color` has an established connection on the gRPC port."""
        deadline = time.monotonic() + timeout
        while (count := self._connections(color)) > 0:
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{color} still has {count} client connection(s) after {timeout:g} s"
                )
            time.sleep(_POLL_SECONDS)  # polling interval of a deadline-bounded wait

    def scale_down(self, color: Color) -> None:
        """Scale the color's Deployment to 0 and wait for its pods to go."""
        self._kubectl(["scale", self._deployment(color), "--replicas=0"])
        selector = self._pod_selector(color)
        seconds = max(1, round(self.layout.stop_seconds))
        self._kubectl(
            ["wait", "--for=delete", "pod", "-l", selector, f"--timeout={seconds}s"],
            timeout=seconds + 30,
        )

    # -- helpers -------------------------------------------------------------------------

    def _deployment(self, color: Color) -> str:
        return "deployment/" + self.layout.deployment.format(color=color)

    def probe_key(self, secret: str, key: str) -> str:
        """The value of `key` in Secret `secret` (the smoke test's API key).

        Raises:
            StepFailed: no such Secret or key, or kubectl may not read it.
        """
        path = "{.data." + key.replace(".", "\\.") + "}"
        encoded = self._kubectl(["get", "secret", secret, "-o", f"jsonpath={path}"]).strip()
        try:
            value = base64.b64decode(encoded, validate=True).decode().strip()
        except (ValueError, UnicodeDecodeError) as e:
            raise StepFailed(f"secret {secret} key {key} is not base64 text: {e}") from e
        if not value:
            raise StepFailed(f"secret {secret} has no key {key!r}")
        return value

    def _exists(self, resource: str) -> bool:
        return bool(self._kubectl(["get", resource, "--ignore-not-found", "-o", "name"]).strip())

    def _selected(self, service: str) -> Color | None:
        """The color `service` selects; None when it selects none or does not exist."""
        path = "{.spec.selector." + self.layout.label + "}"
        value = self._kubectl(
            ["get", "service", service, "--ignore-not-found", "-o", f"jsonpath={path}"]
        ).strip()
        try:
            return Color(value) if value else None
        except ValueError:
            raise StepFailed(
                f"service {service} selects {self.layout.label}={value!r}, not blue or green"
            ) from None

    def _select(self, service: str, color: Color) -> None:
        patch = json.dumps({"spec": {"selector": {self.layout.label: str(color)}}})
        self._kubectl(["patch", "service", service, "--type=merge", "-p", patch])

    def _pod_selector(self, color: Color) -> str:
        raw = self._kubectl(["get", self._deployment(color), "-o", "json"])
        try:
            labels = json.loads(raw)["spec"]["selector"]["matchLabels"]
        except (ValueError, KeyError, TypeError) as e:
            raise StepFailed(f"{self._deployment(color)} has no matchLabels selector") from e
        return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))

    def _connections(self, color: Color) -> int:
        selector = self._pod_selector(color)
        pods = self._kubectl(["get", "pods", "-l", selector, "-o", "name"]).split()
        total = 0
        for pod in pods:
            try:
                table = self._kubectl(["exec", pod, "--", "cat", "/proc/net/tcp", "/proc/net/tcp6"])
            except StepFailed:
                continue  # the pod is going or gone: nothing left to drain there
            total += established_on(table, self.layout.grpc_port)
        return total

    @contextlib.contextmanager
    def _port_forward(self, target: str) -> Iterator[int]:
        argv = [*self._base(), "port-forward", target, f":{self.layout.grpc_port}"]
        # kubectl and its arguments come from the operator's own flags, as for every call here.
        process = subprocess.Popen(  # noqa: S603
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            if process.stdout is None:  # never: stdout is a pipe
                raise StepFailed("kubectl port-forward has no output pipe")
            # kubectl prints "Forwarding from ..." once listening, or exits with an error.
            readable, _, _ = select.select([process.stdout], [], [], _FORWARD_SECONDS)
            line = process.stdout.readline() if readable else ""
            match = _FORWARDING.search(line)
            if match is None:
                process.kill()
                _, error = process.communicate(timeout=10)
                raise StepFailed(f"kubectl port-forward {target} failed: {(line + error).strip()}")
            yield int(match.group(1))
        finally:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)

    def _base(self) -> list[str]:
        argv = [self.layout.kubectl]
        if self.layout.context:
            argv.append(f"--context={self.layout.context}")
        if self.layout.namespace:
            argv.append(f"--namespace={self.layout.namespace}")
        return argv

    def _kubectl(self, arguments: Sequence[str], timeout: float = 60.0) -> str:
        argv = [*self._base(), *arguments]
        try:
            done = subprocess.run(  # noqa: S603  # the operator's kubectl and flags
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise StepFailed(f"{' '.join(argv)}: {e}") from e
        if done.returncode != 0:
            raise StepFailed(
                f"{' '.join(argv)} failed (status {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return done.stdout


def established_on(table: str, port: int) -> int:
    """Established connections whose local port is `port`, in /proc/net/tcp{,6} text."""
    wanted = f"{port:04X}"
    count = 0
    for line in table.splitlines():
        columns = line.split()
        if len(columns) < 4 or ":" not in columns[1]:
            continue  # a header line
        local_port = columns[1].rsplit(":", 1)[1]
        if local_port == wanted and columns[3] == _ESTABLISHED:
            count += 1
    return count
