"""`ordermesh up`: the whole mesh in this process; its flags come from `UpSettings`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, TypeVar

import click

from ordermesh.cli.errors import EXIT_INTERRUPTED, UsageFailure
from ordermesh.cli.state import CLIENT_SETTINGS
from ordermesh.config import ENV_PREFIX, SettingsError, load_settings, unknown_environment
from ordermesh.embedded import UpSettings, run_embedded
from ordermesh.telemetry import configure_logging

_F = TypeVar("_F", bound=Callable[..., Any])

UP_DESCRIPTION = """\
\b
Run the whole mesh in this one process, on localhost: the gateway (what clients call),
ubscore (balances), the matcher and settlement (history in PostgreSQL), on the in-memory
bus and an embedded PostgreSQL. Nothing to install or configure.

\b
Data lives in the data directory (default ./.ordermesh): log/ (the bus's journal),
postgres/ (the database), api_keys.toml (the gateway's API keys; new demo keys are made on
the first start and printed each time). Ctrl-C stops everything cleanly, and the next
`ordermesh up` on the same directory resumes with the same balances and orders.
To start afresh, stop it and delete the data directory (rm -rf .ordermesh).

\b
No account holds money until an admin deposits some; the start-up message shows how.
With --kafka and --postgres it runs the same four services on those servers instead;
`python -m ubscore` (matcher, settlement) runs one service alone.
"""

UP_EPILOG = """\
\b
Each flag can also be set by the environment variable shown; a flag wins.

\b
Examples:
  ordermesh up                                  # data in ./.ordermesh, gateway on :50051
  ordermesh up --data-dir /tmp/mesh --gateway-port 6051 --metrics-port 0
  ordermesh up --kafka 127.0.0.1:9092 --postgres postgresql://u:p@127.0.0.1/ordermesh
"""


def settings_options(cls: type[Any]) -> Callable[[_F], _F]:
    """One click option per setting of dataclass `cls`, as `ordermesh.config` documents them.

    The values stay raw text (None when not given): `load_settings` parses them, so a flag
    wins over its ORDERMESH_* variable and both are checked and reported the same way.
    """

    def decorate(function: _F) -> _F:
        for f in reversed(fields(cls)):
            env = ENV_PREFIX + f.name.upper()
            default = f.default if f.default is not MISSING else None
            shown = "" if default == "" else f" (default: {default})"
            function = click.option(
                "--" + f.name.replace("_", "-"),
                f.name,
                default=None,
                metavar=f.name.upper(),
                help=f"{f.metadata.get('help', '')}{shown} [env {env}]",
            )(function)
        return function

    return decorate


@click.command(
    help=UP_DESCRIPTION,
    short_help="Run all four services on localhost (zero setup; data in ./.ordermesh).",
    epilog=UP_EPILOG,
)
@settings_options(UpSettings)
def up(**flags: str | None) -> int:
    """Run the mesh until Ctrl-C; return its exit status."""
    try:
        settings = load_settings(UpSettings, argparse.Namespace(**flags))
        configure_logging(settings.log_level, settings.log_format)
    except (SettingsError, ValueError) as e:
        raise UsageFailure(str(e), {"code": "INVALID_SETTING", "message": str(e)}) from e
    for warning in unknown_environment([UpSettings, *CLIENT_SETTINGS]):
        click.echo(f"warning: {warning}", err=True)
    try:
        return asyncio.run(run_embedded(settings))
    except KeyboardInterrupt:  # before the signal handlers are in place
        return EXIT_INTERRUPTED
