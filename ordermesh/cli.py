"""The `ordermesh` command: run the mesh and inspect its configuration."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import ordermesh
from ordermesh.config import SettingsError, add_arguments, load_settings, unknown_environment
from ordermesh.embedded import UpSettings, run_embedded
from ordermesh.markets import DEFAULT_MARKETS_PATH, MarketConfigError, load_markets
from ordermesh.telemetry import configure_logging

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _cmd_markets(args: argparse.Namespace) -> int:
    try:
        table = load_markets(args.markets)
    except MarketConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.markets}: {len(table.assets)} assets, {len(table.markets)} symbols")
    print(
        f"{'symbol':<10} {'tick':>10} {'lot':>10} {'min qty':>10} {'min notional':>13} fees m/t bps"
    )
    for market in table.markets.values():
        print(
            f"{market.symbol:<10} {market.format_price(market.tick_size):>10} "
            f"{market.format_quantity(market.lot_size):>10} "
            f"{market.format_quantity(market.min_quantity):>10} "
            f"{market.format_quote(market.min_notional):>13} "
            f"{market.maker_fee_bps}/{market.taker_fee_bps}"
        )
    return 0


UP_DESCRIPTION = """\
Run the whole mesh in this one process, on localhost: the gateway (what clients call),
ubscore (balances), the matcher and settlement (history in PostgreSQL), on the in-memory
bus and an embedded PostgreSQL. Nothing to install or configure.

Data lives in the data directory (default ./.ordermesh): log/ (the bus's journal),
postgres/ (the database), api_keys.toml (the gateway's API keys; new demo keys are made on
the first start and printed each time). Ctrl-C stops everything cleanly, and the next
`ordermesh up` on the same directory resumes with the same balances and orders.
To start afresh, stop it and delete the data directory (rm -rf .ordermesh).

No account holds money until an admin deposits some; the start-up message shows how.
With --kafka and --postgres it runs the same four services on those servers instead;
`python -m ubscore` (matcher, settlement) runs one service alone.
"""


def _cmd_up(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(UpSettings, args)
        configure_logging(settings.log_level, settings.log_format)
    except (SettingsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for warning in unknown_environment([UpSettings]):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        return asyncio.run(run_embedded(settings))
    except KeyboardInterrupt:  # before the signal handlers are in place
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `ordermesh` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="ordermesh",
        description="ordermesh: a gRPC service mesh for order routing.",
        epilog="Run `ordermesh COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"ordermesh {ordermesh.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="run all four services on localhost (zero setup; data in ./.ordermesh)",
        description=UP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Each flag can also be set by the environment variable shown; a flag wins.",
    )
    add_arguments(up, UpSettings)
    up.set_defaults(handler=_cmd_up)
    markets = commands.add_parser(
        "markets",
        help="check a markets.toml and list its symbols",
        description="Load and validate a market table, then list each symbol's rules.",
    )
    markets.add_argument(
        "markets", nargs="?", default=DEFAULT_MARKETS_PATH, help="the file (default: %(default)s)"
    )
    markets.set_defaults(handler=_cmd_markets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ordermesh` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
