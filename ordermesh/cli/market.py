"""Market commands: the local market table; the gateway's symbols, trades and live book.

Also its ticker and candles.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from ordermesh.cli import output
from ordermesh.cli.errors import refusal
from ordermesh.cli.params import TIME, limit_option
from ordermesh.cli.state import State, json_option, state_of
from ordermesh.markets import DEFAULT_MARKETS_PATH, MarketConfigError, load_markets

if TYPE_CHECKING:
    from ordermesh.client import Candle, MyTrade, PublicTrade, SymbolInfo

MARKETS_EPILOG = """\
\b
Examples:
  ordermesh markets                       # the shipped config/markets.toml
  ordermesh markets my-markets.toml --json
"""


@click.command(epilog=MARKETS_EPILOG)
@click.argument(
    "path",
    required=False,
    default=DEFAULT_MARKETS_PATH,
    type=click.Path(path_type=Path, dir_okay=False),
)
@json_option
@click.pass_context
def markets(ctx: click.Context, path: Path) -> None:
    """Check a markets.toml and list its symbols' rules (no gateway needed).

    Loads and validates the market table (default: the shipped one), then lists each
    symbol's tick, lot, minimum quantity and notional, and maker/taker fees. A table that
    breaks a rule (e.g. tick x lot not a whole number of quote atoms) exits 1 with the rule.
    """
    try:
        table = load_markets(path)
    except MarketConfigError as e:
        raise refusal(state_of(ctx), str(e), "INVALID_MARKETS") from e
    rows = [
        {
            "symbol": market.symbol,
            "base_asset": market.base.code,
            "quote_asset": market.quote.code,
            "tick_size": market.format_price(market.tick_size),
            "lot_size": market.format_quantity(market.lot_size),
            "min_quantity": market.format_quantity(market.min_quantity),
            "min_notional": market.format_quote(market.min_notional),
            "maker_fee_bps": market.maker_fee_bps,
            "taker_fee_bps": market.taker_fee_bps,
        }
        for market in table.markets.values()
    ]
    title = f"{path}: {len(table.assets)} assets, {len(table.markets)} symbols"
    output.emit(ctx, {"path": str(path), "symbols": rows}, lambda: output.rows_table(title, rows))


SYMBOLS_EPILOG = """\
\b
Examples:
  ordermesh --key demo-trader-1 symbols
  ordermesh --key demo-trader-1 symbols --json | jq '.[].symbol'
"""


@click.command(epilog=SYMBOLS_EPILOG)
@json_option
@click.pass_context
def symbols(ctx: click.Context) -> None:
    """The markets the gateway trades, with their rules and fees."""
    with state_of(ctx).client() as client:
        found = client.list_symbols()
    columns: list[output.Column[SymbolInfo]] = [
        ("symbol", lambda s: s.symbol),
        ("base", lambda s: s.base_asset),
        ("quote", lambda s: s.quote_asset),
        ("tick", lambda s: s.tick_size),
        ("lot", lambda s: s.lot_size),
        ("min qty", lambda s: s.min_quantity),
        ("min notional", lambda s: s.min_notional),
        ("maker bps", lambda s: s.maker_fee_bps),
        ("taker bps", lambda s: s.taker_fee_bps),
    ]
    output.emit(ctx, found, lambda: output.table(None, found, columns))


TICKER_EPILOG = """\
\b
Example:
  ordermesh --key demo-trader-1 ticker BTC-USDT
"""


@click.command(epilog=TICKER_EPILOG)
@click.argument("symbol")
@json_option
@click.pass_context
def ticker(ctx: click.Context, symbol: str) -> None:
    """24-hour statistics of one market: last, open, high, low, volume, change."""
    with state_of(ctx).client() as client:
        found = client.get_ticker(symbol)
    output.emit(ctx, found, lambda: output.fields_table(None, found))


TRADES_EPILOG = """\
\b
Examples:
  ordermesh --key demo-trader-1 trades BTC-USDT              # everyone's, newest first
  ordermesh --key demo-trader-1 trades --mine --limit 5     # your fills, all markets
  ordermesh --key demo-trader-1 trades BTC-USDT --json
"""


@click.command(epilog=TRADES_EPILOG)
@click.argument("symbol", required=False)
@click.option("--mine", is_flag=True, help="Your own fills (with fees), not the public tape.")
@limit_option(1000, 20)
@json_option
@click.pass_context
def trades(ctx: click.Context, symbol: str | None, mine: bool, limit: int) -> None:
    """Recent trades of a market (newest first), or with --mine your own fills."""
    state = state_of(ctx)
    if mine:
        _my_trades(ctx, state, symbol, limit)
        return
    if symbol is None:
        raise click.UsageError("give a SYMBOL (e.g. BTC-USDT), or --mine for your own fills")
    with state.client() as client:
        found = sorted(client.list_trades(symbol, limit=limit), key=_newest_first)
    columns: list[output.Column[PublicTrade]] = [
        ("trade id", lambda t: t.trade_id),
        ("time", lambda t: t.time),
        ("taker", lambda t: t.taker_side),
        ("price", lambda t: t.price),
        ("quantity", lambda t: t.quantity),
        ("quote quantity", lambda t: t.quote_quantity),
    ]
    output.emit(ctx, found, lambda: output.table(f"{symbol} trades", found, columns))


def _newest_first(trade: PublicTrade | MyTrade) -> int:
    return -trade.trade_id


def _my_trades(ctx: click.Context, state: State, symbol: str | None, limit: int) -> None:
    with state.client() as client:
        page = client.list_my_trades(symbol, page_size=limit)
    found = sorted(page.items, key=_newest_first)
    columns: list[output.Column[MyTrade]] = [
        ("trade id", lambda t: t.trade_id),
        ("time", lambda t: t.time),
        ("symbol", lambda t: t.symbol),
        ("order id", lambda t: t.order_id),
        ("side", lambda t: t.side),
        ("price", lambda t: t.price),
        ("quantity", lambda t: t.quantity),
        ("fee", lambda t: f"{output.cell(t.fee)} {t.fee_asset}"),
        ("maker", lambda t: t.maker),
    ]
    output.emit(ctx, found, lambda: output.table("your trades", found, columns))


CANDLES_EPILOG = """\
\b
Examples:
  ordermesh --key demo-trader-1 candles BTC-USDT
  ordermesh --key demo-trader-1 candles BTC-USDT --interval 1h --start 2025-01-31T00:00
"""


@click.command(epilog=CANDLES_EPILOG)
@click.argument("symbol")
@click.option(
    "--interval",
    type=click.Choice(["1m", "5m", "1h", "1d"]),
    default="1m",
    show_default=True,
    help="Candle length.",
)
@click.option("--start", type=TIME, help="First candle at or after this time (ISO 8601, UTC).")
@click.option("--end", type=TIME, help="Last candle before this time (ISO 8601, UTC).")
@limit_option(1000, 20)
@json_option
@click.pass_context
def candles(
    ctx: click.Context,
    *,
    symbol: str,
    interval: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> None:
    """OHLCV candles of one market, oldest first."""
    with state_of(ctx).client() as client:
        found = client.get_candles(
            symbol,
            interval,  # type: ignore[arg-type]  # one of click.Choice's values
            start=start,
            end=end,
            limit=limit,
        )
    columns: list[output.Column[Candle]] = [
        ("open time", lambda c: c.open_time),
        ("open", lambda c: c.open),
        ("high", lambda c: c.high),
        ("low", lambda c: c.low),
        ("close", lambda c: c.close),
        ("volume", lambda c: c.volume),
        ("quote volume", lambda c: c.quote_volume),
        ("trades", lambda c: c.trade_count),
    ]
    output.emit(ctx, found, lambda: output.table(f"{symbol} {interval}", found, columns))


BOOK_EPILOG = """\
\b
The view follows the gateway's StreamMarketData; if the gateway answers that stream
with UNIMPLEMENTED it polls GetOrderBook and ListTrades every --poll seconds instead
(the header says which). Ctrl-C ends it.

\b
Examples:
  ordermesh --key demo-trader-1 book BTC-USDT
  ordermesh --key demo-trader-1 book BTC-USDT --once --depth 5     # one frame, for scripts
  ordermesh --key demo-trader-1 book BTC-USDT --json               # one frame as JSON
"""

DEFAULT_POLL_SECONDS: Final = 0.5


@click.command(epilog=BOOK_EPILOG)
@click.argument("symbol")
@click.option(
    "--depth", type=click.IntRange(1, 100), default=10, show_default=True, help="Levels per side."
)
@click.option(
    "--trades",
    "trades_kept",
    type=click.IntRange(0, 100),
    default=12,
    show_default=True,
    help="How many last trades to show.",
)
@click.option("--once", is_flag=True, help="Print one frame and exit (implied by --json).")
@click.option(
    "--poll",
    type=click.FloatRange(0.1, 60),
    default=DEFAULT_POLL_SECONDS,
    show_default=True,
    help="Seconds between polls when the gateway has no stream.",
)
@json_option
@click.pass_context
def book(
    ctx: click.Context, *, symbol: str, depth: int, trades_kept: int, once: bool, poll: float
) -> None:
    """A live view of one market: depth on both sides and the last trades."""
    from ordermesh.cli import live  # noqa: PLC0415 - rich Live and the client, only here

    state = state_of(ctx)
    view = live.BookView(symbol, depth=depth, trades_kept=trades_kept)

    async def run() -> None:
        async with state.async_client() as client:
            if once or state.json:
                await live.load_once(client, view)
            else:
                await live.show_live(live.follow(client, view, poll_seconds=poll), view.render)

    asyncio.run(run())
    if once or state.json:
        output.emit(ctx, view.frame(), view.render)
