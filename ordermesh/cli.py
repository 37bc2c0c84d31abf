"""The `ordermesh` command: run the mesh and inspect its configuration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import ordermesh
from ordermesh.markets import DEFAULT_MARKETS_PATH, MarketConfigError, load_markets

EXIT_USAGE = 2
EXIT_NOT_READY = 3


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


def _cmd_up(_args: argparse.Namespace) -> int:
    print(
        "ordermesh up: the mesh is not ready yet: the gateway, ubscore, matcher and settlement "
        "services have not landed.\nWhat works today: `ordermesh markets` checks the market "
        "table, and `make test` runs the test suite.",
        file=sys.stderr,
    )
    return EXIT_NOT_READY


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
        "up", help="run all four services on localhost", description="Run the whole mesh locally."
    )
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
