"""The live view of one market: depth and last trades, kept current from the gateway.

The view follows StreamMarketData (a snapshot, then deltas and trades applied to a local
book); when the gateway answers that stream with UNIMPLEMENTED it polls GetOrderBook and
ListTrades instead, so it works against either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import grpc
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ordermesh.cli.output import cell, console
from ordermesh.client import (
    AsyncClient,
    ClientError,
    LocalBook,
    OrderBook,
    PriceLevel,
    PublicTrade,
    TradeEvent,
)

STREAM: Final = "stream"
REFRESH_SECONDS: Final = 0.25
"""How often the live display is redrawn."""


def polling(seconds: float) -> str:
    """The source label of a view kept current by polling every `seconds`."""
    return f"polling every {seconds:g} s (the gateway serves no stream)"


@dataclass
class BookView:
    """What the live view shows: the latest book and the newest trades of one market."""

    symbol: str
    depth: int = 10
    trades_kept: int = 12
    source: str = "connecting"
    book: OrderBook | None = None
    trades: list[PublicTrade] = field(default_factory=list)
    """Newest first, at most `trades_kept`."""
    updated: datetime | None = None

    def show_book(self, book: OrderBook, source: str) -> None:
        """Replace the book (and say where it came from)."""
        self.book = book
        self.source = source
        self.updated = datetime.now(UTC)

    def show_trades(self, trades: Iterable[PublicTrade]) -> None:
        """Merge trades in by trade_id, keeping the newest `trades_kept`."""
        merged = {trade.trade_id: trade for trade in self.trades}
        merged.update((trade.trade_id, trade) for trade in trades)
        newest = sorted(merged.values(), key=lambda trade: trade.trade_id, reverse=True)
        self.trades = newest[: self.trades_kept]

    def frame(self) -> dict[str, Any]:
        """One frame as data (for --json): symbol, sequence, bids, asks, trades."""
        book = self.book
        return {
            "symbol": self.symbol,
            "sequence": book.sequence if book else None,
            "source": self.source,
            "bids": list(book.bids[: self.depth]) if book else [],
            "asks": list(book.asks[: self.depth]) if book else [],
            "trades": self.trades,
        }

    def render(self) -> RenderableType:
        """The frame for a terminal: a header line, the depth ladder, the last trades."""
        book = self.book
        header = Text(f"{self.symbol}  ", style="bold")
        if book is not None:
            header.append(f"sequence {book.sequence}  ")
            spread = _spread(book)
            if spread is not None:
                header.append(f"spread {cell(spread[0])}  mid {cell(spread[1])}  ")
        header.append(f"[{self.source}]", style="dim")
        if self.updated is not None:
            header.append(f"  {self.updated:%H:%M:%S} UTC", style="dim")
        grid = Table.grid(padding=(0, 4))
        grid.add_row(self._ladder(), self._trades())
        return Group(header, grid)

    def _ladder(self) -> Table:
        ladder = Table(title="depth", title_justify="left", header_style="bold")
        for header in ("side", "price", "quantity", "orders"):
            ladder.add_column(header, justify="left" if header == "side" else "right")
        book = self.book
        asks: list[PriceLevel] = list(book.asks[: self.depth]) if book else []
        bids: list[PriceLevel] = list(book.bids[: self.depth]) if book else []
        for level in reversed(asks):
            ladder.add_row(*_level_row("ask", level), style="red")
        if asks or bids:
            ladder.add_section()
        for level in bids:
            ladder.add_row(*_level_row("bid", level), style="green")
        if not asks and not bids:
            ladder.add_row("", "(empty book)", "", "")
        return ladder

    def _trades(self) -> Table:
        trades = Table(title="last trades", title_justify="left", header_style="bold")
        for header in ("time", "taker", "price", "quantity"):
            trades.add_column(
                header, justify="right" if header in {"price", "quantity"} else "left"
            )
        for trade in self.trades:
            trades.add_row(
                f"{trade.time:%H:%M:%S}",
                trade.taker_side,
                cell(trade.price),
                cell(trade.quantity),
                style="green" if trade.taker_side == "BUY" else "red",
            )
        if not self.trades:
            trades.add_row("", "(none yet)", "", "")
        return trades


def _level_row(side: str, level: PriceLevel) -> tuple[str, str, str, str]:
    return side, cell(level.price), cell(level.quantity), str(level.order_count)


def _spread(book: OrderBook) -> tuple[Decimal, Decimal] | None:
    if not book.bids or not book.asks:
        return None
    bid, ask = book.bids[0].price, book.asks[0].price
    return ask - bid, (ask + bid) / 2


async def load_once(client: AsyncClient, view: BookView) -> None:
    """Fill `view` from one GetOrderBook and one ListTrades."""
    view.show_book(await client.get_order_book(view.symbol, depth=view.depth), "snapshot")
    view.show_trades(await client.list_trades(view.symbol, limit=view.trades_kept))


async def follow(client: AsyncClient, view: BookView, *, poll_seconds: float) -> None:
    """Keep `view` current until cancelled: from the stream, else by polling."""
    view.show_trades(await client.list_trades(view.symbol, limit=view.trades_kept))
    try:
        await _follow_stream(client, view)
    except ClientError as e:
        if e.code is not grpc.StatusCode.UNIMPLEMENTED:
            raise
    await _follow_polling(client, view, poll_seconds)


async def _follow_stream(client: AsyncClient, view: BookView) -> None:
    book = LocalBook(view.symbol)
    async for event in client.market_data(view.symbol, depth=view.depth):
        book.apply(event)
        if isinstance(event, TradeEvent):
            view.show_trades([event.trade])
        view.show_book(book.snapshot(view.depth), STREAM)


async def _follow_polling(client: AsyncClient, view: BookView, poll_seconds: float) -> None:
    source = polling(poll_seconds)
    while True:
        view.show_book(await client.get_order_book(view.symbol, depth=view.depth), source)
        view.show_trades(await client.list_trades(view.symbol, limit=view.trades_kept))
        await asyncio.sleep(poll_seconds)  # the polling period, not a wait for a condition


async def show_live(
    feed: Awaitable[object],
    render: Callable[[], RenderableType],
    *,
    seconds: float | None = None,
) -> None:
    """Redraw `render()` while `feed` runs; end when it fails or after `seconds` (if given).

    The feed's error, if it fails, is raised here once the display is closed.
    """
    task = asyncio.ensure_future(feed)
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    try:
        with Live(render(), console=console(), auto_refresh=False) as live:
            try:
                while not task.done():
                    if deadline is not None and loop.time() >= deadline:
                        break
                    await asyncio.wait({task}, timeout=REFRESH_SECONDS)
                    live.update(render(), refresh=True)
            finally:
                live.update(render())  # the last frame shows the latest state, even on Ctrl-C
        if not console().is_terminal:
            console().line()  # a file or pipe gets the last frame without its final newline
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    error = None if task.cancelled() else task.exception()
    if error is not None:
        raise error
