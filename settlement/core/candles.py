"""1-minute candles from trades, and the wider intervals served by aggregating them.

Trades of one symbol come in their log order, so within a minute the first trade opens
the candle and the last closes it; a batch's candle for a minute is merged into the stored
one with `merge_candles` (earlier first).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Final

from settlement.core.rows import Candle, TradeRow

MINUTE_NS: Final = 60 * 1_000_000_000
"""One minute, in nanoseconds: the width of a stored candle."""


class CandleInterval(IntEnum):
    """Candle widths, with the proto's numbers."""

    ONE_MINUTE = 1
    FIVE_MINUTES = 2
    ONE_HOUR = 3
    ONE_DAY = 4

    @property
    def nanoseconds(self) -> int:
        """The interval's width; every interval is a whole number of minutes."""
        return _WIDTHS[self]


_WIDTHS: Final = {
    CandleInterval.ONE_MINUTE: MINUTE_NS,
    CandleInterval.FIVE_MINUTES: 5 * MINUTE_NS,
    CandleInterval.ONE_HOUR: 60 * MINUTE_NS,
    CandleInterval.ONE_DAY: 24 * 60 * MINUTE_NS,
}


def bucket_start(timestamp_ns: int, width_ns: int) -> int:
    """The start of the interval of `width_ns` (aligned to the Unix epoch) holding the time."""
    return timestamp_ns - timestamp_ns % width_ns


def candle_of(trade: TradeRow) -> Candle:
    """The 1-minute candle of a single trade."""
    return Candle(
        symbol=trade.symbol,
        open_time_ns=bucket_start(trade.timestamp_ns, MINUTE_NS),
        open=trade.price,
        high=trade.price,
        low=trade.price,
        close=trade.price,
        volume=trade.quantity,
        quote_volume=trade.quote_quantity,
        trade_count=1,
    )


def merge_candles(earlier: Candle, later: Candle) -> Candle:
    """One candle of the same symbol and minute from two consecutive stretches of trades.

    Raises:
        ValueError: the candles are of different symbols or minutes.
    """
    if (earlier.symbol, earlier.open_time_ns) != (later.symbol, later.open_time_ns):
        raise ValueError(
            f"cannot merge the candle of {earlier.symbol} at {earlier.open_time_ns} with the "
            f"one of {later.symbol} at {later.open_time_ns}"
        )
    return Candle(
        symbol=earlier.symbol,
        open_time_ns=earlier.open_time_ns,
        open=earlier.open,
        high=max(earlier.high, later.high),
        low=min(earlier.low, later.low),
        close=later.close,
        volume=earlier.volume + later.volume,
        quote_volume=earlier.quote_volume + later.quote_volume,
        trade_count=earlier.trade_count + later.trade_count,
    )


def fold_candles(trades: Iterable[TradeRow]) -> dict[tuple[str, int], Candle]:
    """The 1-minute candles of `trades` (in log order per symbol), by (symbol, open time)."""
    candles: dict[tuple[str, int], Candle] = {}
    for trade in trades:
        candle = candle_of(trade)
        key = (candle.symbol, candle.open_time_ns)
        known = candles.get(key)
        candles[key] = candle if known is None else merge_candles(known, candle)
    return candles


def aggregate(candles: Iterable[Candle], width_ns: int) -> list[Candle]:
    """Minute candles (in time order) rolled up into `width_ns` buckets, in time order.

    The reference the SQL aggregation is tested against.
    """
    buckets: dict[tuple[str, int], Candle] = {}
    for candle in candles:
        start = bucket_start(candle.open_time_ns, width_ns)
        key = (candle.symbol, start)
        moved = Candle(
            candle.symbol, start, candle.open, candle.high, candle.low, candle.close,
            candle.volume, candle.quote_volume, candle.trade_count,
        )  # fmt: skip
        known = buckets.get(key)
        buckets[key] = moved if known is None else merge_candles(known, moved)
    return sorted(buckets.values(), key=lambda c: (c.symbol, c.open_time_ns))
