"""`ordermesh demo`: bots trade on a running `ordermesh up` while the live book shows it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import click
from rich.console import Group, RenderableType
from rich.text import Text

from ordermesh import demo as bots
from ordermesh.cli import live, output
from ordermesh.cli.errors import UnreachableFailure
from ordermesh.cli.state import KEY_FILE, KeyEntry, State, json_option, read_key_file, state_of

if TYPE_CHECKING:
    from ordermesh.client import AsyncClient, SymbolInfo

MAX_BOTS: Final = 8
FUNDING_VERSION: Final = "v1"
"""Part of every funding reference id: change it if the funding amounts ever change."""

DEMO_EPILOG = """\
\b
Needs a running `ordermesh up` (e.g. `make run` in another terminal). The bots are the
trader keys in DATA_DIR/api_keys.toml (`up` makes two: demo-trader-1 and -2; add more
[[keys]] entries and restart `up` for more bots); the admin key funds them first, with
fixed reference ids, so running the demo again never funds them twice. The mid price
takes a bounded random walk (within 3% of its start); each bot steps every 0.3 s: it
cancels stale quotes, rests a quote near the mid, and sometimes takes (IOC). At the end
the bots cancel what they left resting and a summary is printed.

\b
Examples:
  ordermesh demo                                  # 60 s on BTC-USDT, 2 bots
  ordermesh demo --duration 20 --symbol ETH-USDT
  ordermesh --data-dir /tmp/mesh --target 127.0.0.1:6051 demo --duration 5 --json
  make demo                                       # the same, from the Makefile
"""


@click.command(epilog=DEMO_EPILOG)
@click.option(
    "--duration",
    type=click.FloatRange(1, 600),
    default=60,
    show_default=True,
    help="Seconds of trading.",
)
@click.option("--symbol", default="BTC-USDT", show_default=True, help="The market to trade.")
@click.option(
    "--bots",
    "bot_count",
    type=click.IntRange(2, MAX_BOTS),
    default=2,
    show_default=True,
    help="How many trader accounts trade (each needs a trader key in the key file).",
)
@click.option("--seed", type=int, default=None, help="Seed the bots and the price for a repeat.")
@json_option
@click.pass_context
def demo(
    ctx: click.Context, duration: float, symbol: str, bot_count: int, seed: int | None
) -> None:
    """Bots trade around a moving mid price for a while; watch the book and trades move."""
    state = state_of(ctx)
    admin, traders = _demo_keys(state, bot_count)
    plan = Plan(symbol, duration, seed, admin, traders)
    summary = asyncio.run(_run(state, plan))
    output.emit(ctx, summary, lambda: _summary_view(summary))


def _demo_keys(state: State, bot_count: int) -> tuple[KeyEntry, list[KeyEntry]]:
    path = state.data_dir / KEY_FILE
    if not path.exists():
        message = (
            f"no running `ordermesh up` found: there is no {path}. Start one with `make run`"
            " (or `ordermesh up`) in another terminal, then run the demo again; or give"
            " --data-dir of the `ordermesh up` to use"
        )
        raise UnreachableFailure(
            message, {"code": "NO_MESH", "message": message}, as_json=state.json
        )
    entries = read_key_file(state.data_dir)
    admin = next((entry for entry in entries if entry.role == "admin"), None)
    traders = [e for e in entries if e.role == "trader" and e.account_id is not None]
    if admin is None:
        raise click.UsageError(f"no admin key in {path}: the demo funds its bots with one")
    if len(traders) < bot_count:
        raise click.UsageError(
            f"--bots {bot_count} needs {bot_count} trader keys, {path} has {len(traders)}:"
            ' add [[keys]] entries (name, key, account_id, role = "trader") and restart'
            " `ordermesh up`, or ask for fewer bots"
        )
    return admin, traders[:bot_count]


@dataclass(frozen=True, slots=True)
class Plan:
    """What the demo was asked to do."""

    symbol: str
    seconds: float
    seed: int | None
    admin: KeyEntry
    traders: list[KeyEntry]


async def _run(state: State, plan: Plan) -> dict[str, Any]:
    rng = random.Random(plan.seed)  # noqa: S311 - a price walk for a demo, not a secret
    symbol, traders = plan.symbol, plan.traders
    async with state.async_client(plan.admin.key) as watcher:
        info = await _market(watcher, symbol)
        grid = bots.Grid.of(info)
        await _fund(watcher, grid, info, traders)
        path = bots.PricePath(await _start_mid(watcher, symbol, grid), grid, rng)
        clients = [state.async_client(trader.key) for trader in traders]
        team = [
            bots.Bot(
                client,
                symbol,
                bots.Brain(grid, random.Random(rng.getrandbits(64))),  # noqa: S311 - as above
                path,
                bots.BotStats(trader.name, trader.account_id or 0),
            )
            for client, trader in zip(clients, traders, strict=True)
        ]
        try:
            await _trade(state, plan, watcher, team, path)
        finally:
            await asyncio.gather(*(client.close() for client in clients))
        trades = await watcher.list_trades(symbol, limit=1)
    return _summary(plan, path, team, trades[0].trade_id if trades else None)


async def _trade(
    state: State, plan: Plan, watcher: AsyncClient, team: list[bots.Bot], path: bots.PricePath
) -> None:
    seconds = plan.seconds
    trading = asyncio.gather(bots.move_mid(path, seconds), *(bot.run(seconds) for bot in team))
    if state.json:
        await trading
        return
    view = live.BookView(plan.symbol, depth=10, trades_kept=12)
    following = asyncio.ensure_future(live.follow(watcher, view, poll_seconds=0.5))
    try:
        await live.show_live(trading, lambda: _live_view(view, team, path))
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)


async def _market(client: AsyncClient, symbol: str) -> SymbolInfo:
    for info in await client.list_symbols():
        if info.symbol == symbol:
            return info
    raise click.BadParameter(f"{symbol!r} is not a market of this mesh", param_hint="--symbol")


async def _fund(
    client: AsyncClient, grid: bots.Grid, info: SymbolInfo, traders: list[KeyEntry]
) -> None:
    """Deposit each bot's stake once: the reference ids are fixed, so a repeat is a duplicate.

    ALREADY_EXISTS (the reference was used with other amounts) means funded all the same.
    """
    from ordermesh.client import AlreadyExists  # noqa: PLC0415 - the client is loaded by now

    base, quote = bots.funding(info.symbol, grid)
    for trader in traders:
        for asset, amount in ((info.base_asset, base), (info.quote_asset, quote)):
            reference = f"demo-{FUNDING_VERSION}-{info.symbol}-{trader.account_id}-{asset}"
            with contextlib.suppress(AlreadyExists):
                await client.deposit(trader.account_id or 0, asset, amount, reference_id=reference)


async def _start_mid(client: AsyncClient, symbol: str, grid: bots.Grid) -> Decimal:
    """The last trade's price if it is near the reference price, else the reference price."""
    reference = bots.reference_price(symbol, grid)
    last = await client.list_trades(symbol, limit=1)
    if last and abs(last[0].price - reference) <= reference / 5:
        return last[0].price
    return reference


def _live_view(view: live.BookView, team: list[bots.Bot], path: bots.PricePath) -> RenderableType:
    header = Text(f"demo: {len(team)} bots trading around mid {output.cell(path.mid)}")
    return Group(view.render(), header, _stats_table(team))


def _stats_table(team: list[bots.Bot]) -> RenderableType:
    columns: list[output.Column[bots.BotStats]] = [
        ("bot", lambda s: s.name),
        ("account", lambda s: s.account_id),
        ("placed", lambda s: s.placed),
        ("canceled", lambda s: s.canceled),
        ("trades taken", lambda s: s.taker_fills),
        ("refused", lambda s: ", ".join(f"{r} {n}" for r, n in sorted(s.refused.items()))),
    ]
    return output.table("bots", [bot.stats for bot in team], columns)


def _summary(
    plan: Plan, path: bots.PricePath, team: list[bots.Bot], last_trade: int | None
) -> dict[str, Any]:
    stats = [bot.stats for bot in team]
    return {
        "symbol": plan.symbol,
        "duration_seconds": plan.seconds,
        "start_mid": path.start,
        "end_mid": path.mid,
        "orders_placed": sum(s.placed for s in stats),
        "trades": sum(s.taker_fills for s in stats),
        "last_trade_id": last_trade,
        "bots": [
            {
                "name": s.name,
                "account_id": s.account_id,
                "placed": s.placed,
                "canceled": s.canceled,
                "trades_taken": s.taker_fills,
                "refused": dict(sorted(s.refused.items())),
            }
            for s in stats
        ],
    }


def _summary_view(summary: dict[str, Any]) -> RenderableType:
    return Text(
        f"demo done: {summary['orders_placed']} orders placed, {summary['trades']} trades on"
        f" {summary['symbol']} in {summary['duration_seconds']:g} s (mid"
        f" {output.cell(summary['start_mid'])} -> {output.cell(summary['end_mid'])})"
    )
