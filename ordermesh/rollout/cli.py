"""`python -m ordermesh.rollout` (and `ordermesh rollout`): a blue-green rollout of the gateway."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import click

from ordermesh.rollout.kubectl import KubectlLayout, KubectlPlatform
from ordermesh.rollout.local import LocalLayout, LocalPlatform
from ordermesh.rollout.machine import (
    DEFAULT_DRAIN_SECONDS,
    DEFAULT_READY_SECONDS,
    Color,
    Platform,
    Rollout,
    StepFailed,
    Timeouts,
)
from ordermesh.rollout.smoke import GrpcSmoke

EXIT_FAILED: Final = 1
PROBE_KEY_VARIABLE: Final = "ORDERMESH_ROLLOUT_PROBE_KEY"

DESCRIPTION = """\
Roll a new gateway version out blue-green: deploy it as the idle color, wait until it
reports ready, smoke-test it through the preview endpoint (grpc.health.v1 Check must say
SERVING, then ListSymbols, GetOrderBook and GetBalances with the probe API key), point the
live endpoint at it, wait for the old color's connections to end, and stop the old color.

\b
Steps: apply, ready, smoke-health, smoke-read, flip, drain, scale-down.

If any step fails, traffic goes back to the old color (when it had moved and the old color
is still ready), the new color is stopped, and the command says which step failed and why,
with exit status 1. Status 0: traffic is on the new color. Status 2: bad usage.

The gateway's --max-connection-age-seconds makes long-lived clients reconnect (and so
move) after that long; give --drain-timeout at least that plus its grace.

The probe key is a trader's API key (its account need hold nothing); give it in a file
(--probe-key-file) or in the environment variable ORDERMESH_ROLLOUT_PROBE_KEY, never on
the command line (kubectl: else from the Secret ordermesh-smoke).
"""

LOCAL_EPILOG = """\
\b
Example (gateways on 50061/50062, clients call nginx on 50051):
  python -m ordermesh.rollout local --state-dir /var/lib/ordermesh-gw --init \\
      --listen 127.0.0.1:50051 --preview-listen 127.0.0.1:50050 \\
      --blue-port 50061 --green-port 50062
  nginx ... (the command --init prints; keep it running)
  python -m ordermesh.rollout local --state-dir /var/lib/ordermesh-gw \\
      --listen 127.0.0.1:50051 --preview-listen 127.0.0.1:50050 \\
      --blue-port 50061 --green-port 50062 --probe-key-file probe.key -- \\
      python -m gateway --port {port} --metrics-port 0 --kafka 127.0.0.1:9092 \\
      --api-keys keys.toml
Run the same command again to roll out to the other color.
"""

ROLLOUT_EPILOG = """\
\b
Examples:
  ordermesh rollout kubectl --overlays deploy/k8s/overlays --namespace ordermesh
  make rollout                              # the same, with ROLLOUT_FLAGS to change it
  ordermesh rollout local --help            # gateways behind nginx on one host
"""

KUBECTL_EPILOG = """\
\b
Example:
  python -m ordermesh.rollout kubectl --overlays deploy/k8s/overlays --namespace ordermesh
Set the new image in the idle color's overlay first (kustomize edit set image ...). Only
the gateway moves; ubscore and the matcher hand over with python -m ordermesh.handover.
"""


def _common(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option(
            "--to", "target", type=click.Choice([c.value for c in Color]),
            help="The color to roll out to.  [default: the idle one]",
        ),
        click.option(
            "--probe-key-file", type=click.Path(dir_okay=False, path_type=Path),
            help=f"File holding the probe API key (else ${PROBE_KEY_VARIABLE}).",
        ),
        click.option(
            "--ready-timeout", type=click.FloatRange(min=1), default=DEFAULT_READY_SECONDS,
            show_default=True, help="Seconds the new color may take to report ready.",
        ),
        click.option(
            "--drain-timeout", type=click.FloatRange(min=0), default=DEFAULT_DRAIN_SECONDS,
            show_default=True, help="Seconds the old color's connections may take to end.",
        ),
        click.option(
            "--smoke-timeout", type=click.FloatRange(min=0.1), default=5.0,
            show_default=True, help="Deadline of each smoke-test call, in seconds.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def _stop_timeout(
    default: float, text: str
) -> Callable[[click.decorators.FC], click.decorators.FC]:
    return click.option(
        "--stop-timeout",
        type=click.FloatRange(min=1),
        default=default,
        show_default=True,
        help=text,
    )


@click.group(
    "rollout",
    help=DESCRIPTION,
    epilog=ROLLOUT_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
def rollout() -> None:
    """Blue-green rollout of the gateway."""


@rollout.command("local", epilog=LOCAL_EPILOG)
@click.option(
    "--state-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="nginx's prefix (config, pid, logs) and the colors' pid and log files.",
)
@click.option("--listen", required=True, metavar="HOST:PORT", help="What clients call (nginx).")
@click.option(
    "--preview-listen",
    required=True,
    metavar="HOST:PORT",
    help="nginx's preview listener, for the smoke test.",
)
@click.option("--blue-port", required=True, type=click.IntRange(1, 65535))
@click.option("--green-port", required=True, type=click.IntRange(1, 65535))
@_stop_timeout(30.0, "Seconds the old gateway may take to exit after SIGTERM (then SIGKILL).")
@click.option("--nginx", "nginx_binary", default="nginx", show_default=True)
@click.option(
    "--init",
    is_flag=True,
    help="Write nginx's config, print the command that runs nginx, and exit.",
)
@_common
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def local(  # noqa: PLR0917  # one parameter per flag: click's way
    state_dir: Path,
    listen: str,
    preview_listen: str,
    blue_port: int,
    green_port: int,
    stop_timeout: float,
    nginx_binary: str,
    init: bool,
    command: tuple[str, ...],
    target: str | None,
    probe_key_file: Path | None,
    ready_timeout: float,
    drain_timeout: float,
    smoke_timeout: float,
) -> None:
    """Gateway processes on this host behind nginx (after --, the gateway's command).

    In the gateway command, {port} and {color} stand for the color's port and name.
    """
    if blue_port == green_port:
        raise click.BadParameter(
            "blue and green need ports of their own", param_hint="--green-port"
        )
    ports = {Color.BLUE: blue_port, Color.GREEN: green_port}
    layout = LocalLayout(
        state_dir.resolve(), listen, preview_listen, ports, command, stop_timeout, nginx_binary
    )
    platform = LocalPlatform(layout)
    if init:
        try:
            nginx = platform.init()
        except StepFailed as e:
            raise click.ClickException(str(e)) from e
        click.echo(f"wrote {platform.nginx.config}; run nginx with:\n{shlex.join(nginx)}")
        return
    if not command:
        raise click.UsageError("give the gateway's command after --, with {port} for its port")
    timeouts = Timeouts(ready=ready_timeout, drain=drain_timeout)
    _run(platform, target, _probe_key(probe_key_file), timeouts, smoke_timeout)


@rollout.command("kubectl", epilog=KUBECTL_EPILOG)
@click.option(
    "--overlays",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of the color overlays (<dir>/blue, <dir>/green), applied with -k.",
)
@click.option("--namespace", default="", help="Namespace.  [default: kubectl's current]")
@click.option("--context", default="", help="kubeconfig context.  [default: kubectl's current]")
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=50051, show_default=True)
@_stop_timeout(120.0, "Seconds the old color's pods may take to go after the scale to zero.")
@click.option("--kubectl", "kubectl_binary", default="kubectl", show_default=True)
@click.option(
    "--probe-key-secret",
    default="ordermesh-smoke:api-key",
    show_default=True,
    metavar="SECRET:KEY",
    help="Where to read the probe key when no file or variable gives it.",
)
@_common
def kubectl(  # noqa: PLR0917  # one parameter per flag: click's way
    overlays: Path,
    namespace: str,
    context: str,
    grpc_port: int,
    stop_timeout: float,
    kubectl_binary: str,
    probe_key_secret: str,
    target: str | None,
    probe_key_file: Path | None,
    ready_timeout: float,
    drain_timeout: float,
    smoke_timeout: float,
) -> None:
    """Deployments gateway-blue/gateway-green behind the Services gateway/gateway-preview."""
    layout = KubectlLayout(
        overlays, namespace, context, grpc_port=grpc_port, stop_seconds=stop_timeout,
        kubectl=kubectl_binary,
    )  # fmt: skip
    platform = KubectlPlatform(layout)
    key = _probe_key(probe_key_file, required=False)
    if not key:
        secret, _, name = probe_key_secret.partition(":")
        try:
            key = platform.probe_key(secret, name or "api-key")
        except StepFailed as e:
            raise click.UsageError(
                f"no probe key: none in --probe-key-file or ${PROBE_KEY_VARIABLE}, and {e}"
            ) from e
    timeouts = Timeouts(ready=ready_timeout, drain=drain_timeout)
    _run(platform, target, key, timeouts, smoke_timeout)


def _run(
    platform: Platform, target: str | None, key: str, timeouts: Timeouts, smoke_timeout: float
) -> None:
    machine = Rollout(platform, GrpcSmoke(key, timeout=smoke_timeout), timeouts, progress=_echo)
    try:
        outcome = machine.run(Color(target) if target else None)
    except StepFailed as e:  # nothing was changed: the live color is unknown, or is the target
        raise click.ClickException(str(e)) from e
    if not outcome.ok:
        raise click.exceptions.Exit(EXIT_FAILED)


def _echo(line: str) -> None:
    click.echo(line)


def _probe_key(path: Path | None, *, required: bool = True) -> str:
    if path is not None:
        try:
            key = path.read_text().strip()
        except OSError as e:
            raise click.BadParameter(str(e), param_hint="--probe-key-file") from e
    else:
        key = os.environ.get(PROBE_KEY_VARIABLE, "").strip()
    if not key and required:
        raise click.UsageError(
            "a probe API key is needed for the smoke test: --probe-key-file or "
            f"${PROBE_KEY_VARIABLE}"
        )
    return key


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    try:
        status = rollout.main(
            args=argv, prog_name="python -m ordermesh.rollout", standalone_mode=False
        )
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILED
    return status if isinstance(status, int) else 0
