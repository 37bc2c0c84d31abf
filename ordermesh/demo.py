"""Demo bots: a few accounts quoting and taking around a moving mid price, for a bounded time.

The decisions are pure (`Grid`, `PricePath`, `Brain`: seeded, no I/O, Decimal only); `Bot`
carries them out through an `AsyncClient`. Every bot paces itself (one step every
`STEP_SECONDS`, a few calls a step, well under the gateway's per-account rate limit), keeps
at most `MAX_OPEN` orders resting, stops at its deadline and cancels what it left resting.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ordermesh.client import AsyncClient, PlaceResult, SymbolInfo

Side = Literal["BUY", "SELL"]

STEP_SECONDS: Final = 0.3
"""A bot's rhythm: one decision (and its few calls) per step."""
MOVE_SECONDS: Final = 0.5
"""How often the mid price moves."""
MAX_OPEN: Final = 6
"""Resting orders a bot keeps at most; older ones are canceled first."""
QUOTE_BPS: Final = (2, 20)
"""How far from the mid a quote rests, in basis points (drawn uniformly)."""
TAKE_BPS: Final = 30
"""How far through the mid a taking order is priced (IOC), in basis points."""
TAKE_PERCENT: Final = 50
"""The chance a step also sends a taking order."""
STALE_BPS: Final = 60
"""Quotes further than this from the mid are canceled."""
BAND_BPS: Final = 300
"""The mid stays within this many basis points of where it started."""
MOVE_BPS: Final = 6
"""The largest single move of the mid, in basis points."""
_BPS: Final = Decimal(10_000)
ORDER_PREFIX: Final = "demo-"
"""Start of the client_order_id of every bot order: bots touch only orders they placed."""

REFERENCE_PRICES: Final = {
    "BTC-USDT": Decimal(30_000),
    "ETH-USDT": Decimal(2_000),
    "ETH-BTC": Decimal("0.06"),
}
"""Where the mid starts on the shipped markets when they have no trades yet."""


@dataclass(frozen=True, slots=True)
class Grid:
    """A market's price and quantity grid, to put the bots' numbers on it."""

    tick: Decimal
    lot: Decimal
    min_quantity: Decimal
    min_notional: Decimal

    @classmethod
    def of(cls, info: SymbolInfo) -> Grid:
        """The grid of a market as ListSymbols describes it."""
        return cls(info.tick_size, info.lot_size, info.min_quantity, info.min_notional)

    def price_below(self, price: Decimal) -> Decimal:
        """The highest tick at or below `price` (at least one tick)."""
        return max(self.tick, (price / self.tick).to_integral_value(ROUND_FLOOR) * self.tick)

    def price_above(self, price: Decimal) -> Decimal:
        """The lowest tick at or above `price`."""
        return max(self.tick, (price / self.tick).to_integral_value(ROUND_CEILING) * self.tick)

    def unit(self, price: Decimal) -> Decimal:
        """The smallest lot multiple that meets min_quantity and twice min_notional at `price`."""
        wanted = max(self.min_quantity, self.lot, 2 * self.min_notional / price)
        return (wanted / self.lot).to_integral_value(ROUND_CEILING) * self.lot


def reference_price(symbol: str, grid: Grid) -> Decimal:
    """A fixed price per market (so funding amounts, and their reference ids, never change)."""
    return REFERENCE_PRICES.get(symbol, grid.tick * 100_000)


def funding(symbol: str, grid: Grid) -> tuple[Decimal, Decimal]:
    """(base, quote) each bot is funded with: room for a few hundred orders each way."""
    price = reference_price(symbol, grid)
    base = grid.unit(price) * 10 * 500
    return base, grid.price_above(base * price * 2)


class PricePath:
    """A random walk of the mid, in whole basis points, kept within BAND_BPS of its start.

    Args:
        start: the first mid.
        grid: the market's grid (the mid is kept on its ticks).
        rng: the source of moves (seed it for a repeatable path).
    """

    def __init__(self, start: Decimal, grid: Grid, rng: random.Random) -> None:
        self.start = grid.price_below(start)
        self.mid = self.start
        self._grid = grid
        self._offset_bps = 0
        self._rng = rng

    def move(self) -> Decimal:
        """Move the mid once and return it; past the band, moves lean back towards the start."""
        step = self._rng.randint(-MOVE_BPS, MOVE_BPS)
        if abs(self._offset_bps + step) > BAND_BPS:
            step = -step
        self._offset_bps += step
        self.mid = self._grid.price_below(self.start * (1 + Decimal(self._offset_bps) / _BPS))
        return self.mid


@dataclass(frozen=True, slots=True)
class Resting:
    """One of a bot's orders on the book, oldest first by order_id."""

    order_id: int
    side: Side
    price: Decimal


@dataclass(frozen=True, slots=True)
class Place:
    """Place a LIMIT order."""

    side: Side
    price: Decimal
    quantity: Decimal
    time_in_force: Literal["GTC", "IOC"]


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel one resting order."""

    order_id: int


Action = Place | Cancel


class Brain:
    """What one bot does at a step, given the mid and its resting orders (no I/O).

    Args:
        grid: the market's grid.
        rng: the bot's own seeded source.
    """

    def __init__(self, grid: Grid, rng: random.Random) -> None:
        self._grid = grid
        self._rng = rng

    def decide(self, mid: Decimal, resting: Sequence[Resting]) -> list[Action]:
        """Cancel stale and surplus quotes, quote one side, and sometimes take."""
        actions: list[Action] = []
        keep = [order for order in resting if abs(order.price - mid) * _BPS <= mid * STALE_BPS]
        actions += [Cancel(order.order_id) for order in resting if order not in keep]
        keep.sort(key=lambda order: order.order_id)
        while len(keep) >= MAX_OPEN:
            actions.append(Cancel(keep.pop(0).order_id))
        actions.append(self._quote(mid))
        if self._rng.randint(1, 100) <= TAKE_PERCENT:
            actions.append(self._take(mid))
        return actions

    def _quantity(self, mid: Decimal) -> Decimal:
        return self._grid.unit(mid) * self._rng.randint(1, 10)

    def _quote(self, mid: Decimal) -> Place:
        away = Decimal(self._rng.randint(*QUOTE_BPS)) / _BPS
        if self._rng.randint(0, 1):
            return Place(
                "BUY", self._grid.price_below(mid * (1 - away)), self._quantity(mid), "GTC"
            )
        return Place("SELL", self._grid.price_above(mid * (1 + away)), self._quantity(mid), "GTC")

    def _take(self, mid: Decimal) -> Place:
        through = Decimal(TAKE_BPS) / _BPS
        if self._rng.randint(0, 1):
            return Place(
                "BUY", self._grid.price_above(mid * (1 + through)), self._quantity(mid), "IOC"
            )
        return Place(
            "SELL", self._grid.price_below(mid * (1 - through)), self._quantity(mid), "IOC"
        )


@dataclass
class BotStats:
    """What one bot did (shown live and in the summary)."""

    name: str
    account_id: int
    placed: int = 0
    canceled: int = 0
    taker_fills: int = 0
    """Fills of its orders as the taker: each is one trade it started."""
    refused: Counter[str] = field(default_factory=Counter)
    """Refusals by reason (e.g. INSUFFICIENT_FUNDS, or UNKNOWN_ORDER for a late cancel)."""

    def record(self, result: PlaceResult) -> None:
        """Count a placed order and the trades it took."""
        self.placed += 1
        self.taker_fills += sum(1 for fill in result.fills if not fill.maker)


class Bot:
    """One trading account: steps its Brain against the shared PricePath until a deadline.

    Args:
        client: the account's client (its own API key).
        symbol: the market.
        brain: its decisions.
        path: the shared mid.
        stats: where it counts what it did.
    """

    def __init__(
        self, client: AsyncClient, symbol: str, brain: Brain, path: PricePath, stats: BotStats
    ) -> None:
        self._client = client
        self._symbol = symbol
        self._brain = brain
        self._path = path
        self.stats = stats

    async def run(self, seconds: float) -> None:
        """Trade for `seconds` (at most seconds / STEP_SECONDS steps), then cancel what rests."""
        from ordermesh.client import ClientError  # noqa: PLC0415 - keeps this module pure to import

        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        for _ in range(max(1, int(seconds / STEP_SECONDS))):
            if loop.time() >= deadline:
                break
            try:
                await self._step()
            except ClientError as e:
                self.stats.refused[e.reason or e.code.name] += 1
            await asyncio.sleep(STEP_SECONDS)  # the bot's pace, not a wait for a condition
        await self.cancel_all()

    async def _resting(self) -> list[Resting]:
        orders = await self._client.list_open_orders(self._symbol)
        return [
            Resting(order.order_id, order.side, order.price)
            for order in orders
            if order.price is not None and order.client_order_id.startswith(ORDER_PREFIX)
        ]

    async def _step(self) -> None:
        from ordermesh.client import ClientError  # noqa: PLC0415 - as in `run`

        for action in self._brain.decide(self._path.mid, await self._resting()):
            try:
                await self._act(action)
            except ClientError as e:
                self.stats.refused[e.reason or e.code.name] += 1

    async def _act(self, action: Action) -> None:
        if isinstance(action, Cancel):
            await self._client.cancel_order(self._symbol, action.order_id, wait="ack")
            self.stats.canceled += 1
            return
        result = await self._client.place_order(
            self._symbol,
            action.side,
            action.quantity,
            action.price,
            time_in_force=action.time_in_force,
            client_order_id=f"{ORDER_PREFIX}{uuid.uuid4().hex[:30]}",
            wait="result",
        )
        self.stats.record(result)

    async def cancel_all(self) -> None:
        """Cancel the bot orders resting (the demo leaves the book as it found it)."""
        from ordermesh.client import ClientError  # noqa: PLC0415 - as in `run`

        try:
            for order in await self._resting():
                await self._act(Cancel(order.order_id))
        except ClientError as e:
            self.stats.refused[e.reason or e.code.name] += 1


async def move_mid(path: PricePath, seconds: float) -> None:
    """Move the mid every MOVE_SECONDS for `seconds`."""
    for _ in range(int(seconds / MOVE_SECONDS)):
        await asyncio.sleep(MOVE_SECONDS)  # the price's pace, not a wait for a condition
        path.move()
