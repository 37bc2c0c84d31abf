"""The root of the `ordermesh` command: global options, the command table, exit statuses.

Exit statuses: 0 done; 1 the gateway (or a local check) refused; 2 a usage error (a bad
flag, a missing argument, an unknown --key); 3 the gateway could not be reached or did not
answer within --timeout; 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import click

import ordermesh
from ordermesh.cli.errors import EXIT_INTERRUPTED, EXIT_REFUSED, failure_from
from ordermesh.cli.state import (
    DEFAULT_DATA_DIR,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    State,
)

COMMANDS: Final[dict[str, str]] = {
    "up": "ordermesh.cli.up:up",
    "markets": "ordermesh.cli.market:markets",
    "order": "ordermesh.cli.trading:order",
    "balances": "ordermesh.cli.trading:balances",
    "deposit": "ordermesh.cli.trading:deposit",
    "withdraw": "ordermesh.cli.trading:withdraw",
    "symbols": "ordermesh.cli.market:symbols",
    "ticker": "ordermesh.cli.market:ticker",
    "trades": "ordermesh.cli.market:trades",
    "candles": "ordermesh.cli.market:candles",
    "book": "ordermesh.cli.market:book",
    "demo": "ordermesh.cli.demo:demo",
    "rollout": "ordermesh.rollout.cli:rollout",
}
"""Sub-command name -> "module:attribute" of its click command, imported when first used.

A package adds a command by adding one entry here (its module holds the click command).
"""

TRACEBACK_VARIABLE: Final = "ORDERMESH_TRACEBACK"
"""Set to 1 to see the traceback of an unexpected error instead of one line."""

ROOT_EPILOG = """\
\b
Examples:
  ordermesh up                                   # the mesh on localhost, in ./.ordermesh
  ordermesh --key admin deposit 1 USDT 10000     # fund account 1 (admin key of `up`)
  ordermesh --key demo-trader-1 balances
  ordermesh --key demo-trader-1 order place BTC-USDT buy 0.01 --price 30000
  ordermesh --key demo-trader-1 book BTC-USDT    # live depth and trades (Ctrl-C ends)
  ordermesh demo --duration 30                   # bots trading, shown live

\b
Exit status: 0 done; 1 refused (the reason and field are printed); 2 usage error;
3 gateway unreachable or no answer within --timeout; 130 interrupted.
Run `ordermesh COMMAND --help` for the options and examples of one command.
"""


class CommandGroup(click.Group):
    """A group whose commands come from a name -> "module:attribute" table, imported on use.

    Client errors raised by any command below it become one-line messages with their exit
    status (see `ordermesh.cli.errors`), never a traceback.
    """

    def __init__(self, *args: object, table: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._table = table

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The table's commands in its order, then any added directly."""
        return [
            *self._table,
            *(name for name in super().list_commands(ctx) if name not in self._table),
        ]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the command's module the first time it is asked for."""
        if cmd_name in self._table and cmd_name not in self.commands:
            module_name, _, attribute = self._table[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._table[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; turn a client error into a message and an exit status."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            state = ctx.find_object(State)
            failure = failure_from(e, state)
            if failure is None:
                raise
            raise failure from e


@click.group(
    cls=CommandGroup,
    table=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=ROOT_EPILOG,
)
@click.version_option(ordermesh.__version__, prog_name="ordermesh")
@click.option(
    "--target",
    envvar="ORDERMESH_TARGET",
    default=DEFAULT_TARGET,
    show_default=True,
    show_envvar=True,
    metavar="HOST:PORT",
    help="The gateway to call.",
)
@click.option(
    "--api-key",
    envvar="ORDERMESH_API_KEY",
    show_envvar=True,
    metavar="KEY",
    help="The API key to send (x-api-key).",
)
@click.option(
    "--key",
    "key_name",
    envvar="ORDERMESH_KEY",
    show_envvar=True,
    metavar="NAME",
    help="Use the key NAME from DATA_DIR/api_keys.toml, e.g. admin, demo-trader-1 "
    "(the keys `ordermesh up` made). Wins over an --api-key from the environment.",
)
@click.option(
    "--data-dir",
    envvar="ORDERMESH_DATA_DIR",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    show_envvar=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The data directory of a local `ordermesh up` (where --key finds api_keys.toml).",
)
@click.option(
    "--timeout",
    envvar="ORDERMESH_TIMEOUT",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    show_envvar=True,
    type=click.FloatRange(min=0.1, max=3600),
    help="Seconds to wait for each answer of the gateway.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    *,
    target: str,
    api_key: str | None,
    key_name: str | None,
    data_dir: Path,
    timeout: float,
) -> None:
    """ordermesh: a gRPC service mesh for order routing.

    Run the mesh on this machine (`up`), trade and fund accounts through its gateway
    (`order`, `balances`, `deposit`, `withdraw`), read its markets (`symbols`, `ticker`,
    `trades`, `candles`, `book`), or watch bots trade (`demo`). Every data command takes
    --json for machine-readable output (amounts as decimal strings).
    """
    command_line_key = ctx.get_parameter_source("api_key") is click.core.ParameterSource.COMMANDLINE
    if key_name and api_key and command_line_key:
        raise click.UsageError("give --api-key or --key, not both")
    ctx.obj = State(
        target=target,
        api_key=api_key,
        key_name=key_name,
        data_dir=data_dir,
        timeout=timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ordermesh` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        click.echo(
            cli.get_help(click.Context(cli, info_name="ordermesh", **cli.context_settings)),
            err=True,
        )
        return 2
    try:
        result = cli.main(args=args, prog_name="ordermesh", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: one line unless asked for the traceback
        if os.environ.get(TRACEBACK_VARIABLE) == "1":
            traceback.print_exc()
        else:
            click.echo(
                f"error: unexpected {type(e).__name__}: {e}"
                f" (set {TRACEBACK_VARIABLE}=1 to see where)",
                err=True,
            )
        return EXIT_REFUSED
    return result if isinstance(result, int) else 0
