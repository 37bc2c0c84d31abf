"""PostgreSQL adapter, read side: the listings and market data settlement serves.

Listings are newest first, by keyset: each returns a `Page` whose `next_key` (the sort key
of its last row, as the query compares it) continues it; the service turns that into an
opaque page token. Ids in keys are the stored (signed) BIGINTs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from ordermesh.model import EXTERNAL_ACCOUNT, LedgerEntryKind, Side
from settlement.core import MINUTE_NS, OPEN_STATUSES, Candle, LedgerEntry, OrderRow, Ticker
from settlement.core.candles import bucket_start
from settlement.core.paging import Key
from settlement.core.rows import TradeRow, to_signed, to_unsigned
from settlement.store import order_from_record

T = TypeVar("T")

DAY_NS: Final = 24 * 60 * MINUTE_NS
"""The ticker's window."""

_TRADE_COLUMNS: Final = (
    "symbol, trade_id, sequence, maker_order_id, taker_order_id, maker_account_id, "
    "taker_account_id, taker_side, price, quantity, quote_quantity, maker_fee, taker_fee, "
    "timestamp_ns"
)
_NEWEST_TRADES: Final = "ORDER BY timestamp_ns DESC, symbol DESC, trade_id DESC"
_OPEN: Final = ", ".join(str(int(status)) for status in OPEN_STATUSES)
# A command refused as a duplicate of a live order (reason 401, DUPLICATE_ORDER_ID) shares
# that order's client_order_id: the live one comes first.
_BY_CLIENT_ORDER_ID: Final = (
    "SELECT * FROM orders WHERE account_id = $1 AND client_order_id = $2 "
    "ORDER BY (reason = 401), order_id DESC LIMIT 1"
)

_CANDLES: Final = """
SELECT open_time_ns - open_time_ns % $2 AS open_time_ns,
       (array_agg(open ORDER BY open_time_ns))[1] AS open,
       max(high) AS high,
       min(low) AS low,
       (array_agg(close ORDER BY open_time_ns DESC))[1] AS close,
       sum(volume) AS volume,
       sum(quote_volume) AS quote_volume,
       sum(trade_count) AS trade_count
FROM candles
WHERE symbol = $1 AND open_time_ns >= $3 AND open_time_ns < $4
GROUP BY 1
"""
# One row per trade of the window's partial first and last minutes, one per whole minute
# between (from the 1-minute candles): exact, without reading a day of trades.
_TICKER: Final = """
WITH parts AS (
    SELECT timestamp_ns AS at, trade_id AS tie, price AS open, price AS high, price AS low,
           price AS close, quantity::numeric AS volume, quote_quantity::numeric AS quote_volume,
           1::bigint AS trade_count
    FROM trades
    WHERE symbol = $1
      AND ((timestamp_ns >= $2 AND timestamp_ns < $3) OR (timestamp_ns >= $4 AND timestamp_ns < $5))
    UNION ALL
    SELECT open_time_ns, 0, open, high, low, close, volume, quote_volume, trade_count
    FROM candles
    WHERE symbol = $1 AND open_time_ns >= $6 AND open_time_ns < $7
)
SELECT (array_agg(open ORDER BY at, tie))[1] AS open,
       max(high) AS high,
       min(low) AS low,
       sum(volume) AS volume,
       sum(quote_volume) AS quote_volume,
       coalesce(sum(trade_count), 0) AS trade_count
FROM parts
"""
_LATEST_MINUTE: Final = "SELECT max(open_time_ns) AS open_time_ns FROM candles WHERE symbol = $1"
_LAST_TRADE: Final = (
    "SELECT price, timestamp_ns FROM trades WHERE symbol = $1 "
    "ORDER BY timestamp_ns DESC, trade_id DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Rows of one page, and the key after which the next one starts (None: the last page)."""

    rows: list[T]
    next_key: Key | None


class _Where:
    """Conditions with numbered parameters."""

    def __init__(self, *params: Any) -> None:
        self.params: list[Any] = list(params)
        self.conditions: list[str] = []

    def add(self, template: str, *values: Any) -> None:
        """Add a condition; `template` has one {} per value, replaced by its $n."""
        names = []
        for value in values:
            self.params.append(value)
            names.append(f"${len(self.params)}")
        self.conditions.append(template.format(*names))

    @property
    def sql(self) -> str:
        return "".join(f" AND {condition}" for condition in self.conditions)

    def limit(self, value: int) -> str:
        self.params.append(value)
        return f"${len(self.params)}"


def trade_from_record(record: Any) -> TradeRow:
    """A TradeRow from a trades row."""
    return TradeRow(
        symbol=record["symbol"],
        trade_id=to_unsigned(record["trade_id"]),
        sequence=record["sequence"],
        maker_order_id=to_unsigned(record["maker_order_id"]),
        taker_order_id=to_unsigned(record["taker_order_id"]),
        maker_account_id=to_unsigned(record["maker_account_id"]),
        taker_account_id=to_unsigned(record["taker_account_id"]),
        taker_side=Side(record["taker_side"]),
        price=record["price"],
        quantity=record["quantity"],
        quote_quantity=record["quote_quantity"],
        maker_fee=record["maker_fee"],
        taker_fee=record["taker_fee"],
        timestamp_ns=record["timestamp_ns"],
    )


def _page(rows: list[T], size: int, key: Callable[[T], Key]) -> Page[T]:
    if len(rows) > size:
        rows = rows[:size]
        return Page(rows, key(rows[-1]))
    return Page(rows, None)


def _trade_time_key(row: TradeRow) -> Key:
    return (row.timestamp_ns, row.symbol, to_signed(row.trade_id))


def _order_key(row: OrderRow) -> Key:
    return (to_signed(row.order_id),)


class Queries:
    """The read side over an asyncpg pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        async with self._pool.acquire() as connection:
            records: list[Any] = await connection.fetch(sql, *params)
            return records

    async def trades_by_symbol(self, symbol: str, after: Key | None, size: int) -> Page[TradeRow]:
        """A symbol's trades, newest first; the key is (trade_id,)."""
        where = _Where(symbol)
        if after is not None:
            where.add("trade_id < {}", *after)
        sql = (
            f"SELECT {_TRADE_COLUMNS} FROM trades WHERE symbol = $1{where.sql} "  # noqa: S608
            f"ORDER BY trade_id DESC LIMIT {where.limit(size + 1)}"
        )
        rows = [trade_from_record(r) for r in await self._fetch(sql, where.params)]
        return _page(rows, size, lambda row: (to_signed(row.trade_id),))

    async def trades_by_account(
        self, account_id: int, symbol: str | None, after: Key | None, size: int
    ) -> Page[TradeRow]:
        """An account's trades on either side, newest first; the key is (time, symbol, id)."""
        where = _Where(to_signed(account_id))
        if symbol is not None:
            where.add("symbol = {}", symbol)
        if after is not None:
            where.add("(timestamp_ns, symbol, trade_id) < ({}, {}, {})", *after)
        limit = where.limit(size + 1)
        side = (
            f"SELECT {_TRADE_COLUMNS} FROM trades WHERE {{}}{where.sql} "  # noqa: S608
            f"{_NEWEST_TRADES} LIMIT {limit}"
        )
        maker = side.format("maker_account_id = $1")
        taker = side.format("taker_account_id = $1 AND maker_account_id <> $1")
        sql = (
            f"SELECT * FROM (({maker}) UNION ALL ({taker})) AS mine {_NEWEST_TRADES} LIMIT {limit}"  # noqa: S608
        )
        rows = [trade_from_record(r) for r in await self._fetch(sql, where.params)]
        return _page(rows, size, _trade_time_key)

    async def orders(
        self,
        account_id: int,
        symbol: str | None,
        open_only: bool,
        after: Key | None,
        size: int,
    ) -> Page[OrderRow]:
        """An account's orders, newest first; the key is (order_id,)."""
        where = _Where(to_signed(account_id))
        if symbol is not None:
            where.add("symbol = {}", symbol)
        if open_only:
            where.conditions.append(f"status IN ({_OPEN})")
        if after is not None:
            where.add("order_id < {}", *after)
        sql = (
            f"SELECT * FROM orders WHERE account_id = $1{where.sql} "  # noqa: S608
            f"ORDER BY order_id DESC LIMIT {where.limit(size + 1)}"
        )
        rows = [order_from_record(r) for r in await self._fetch(sql, where.params)]
        return _page(rows, size, _order_key)

    async def order_by_id(self, order_id: int) -> OrderRow | None:
        """The order with this id, whoever's it is."""
        records = await self._fetch(
            "SELECT * FROM orders WHERE order_id = $1", [to_signed(order_id)]
        )
        return order_from_record(records[0]) if records else None

    async def order_by_client_id(self, account_id: int, client_order_id: str) -> OrderRow | None:
        """The account's latest order with this client_order_id.

        A command refused as a duplicate of a live order shares that order's
        client_order_id; the live one is preferred.
        """
        records = await self._fetch(_BY_CLIENT_ORDER_ID, [to_signed(account_id), client_order_id])
        return order_from_record(records[0]) if records else None

    async def ledger(
        self, account_id: int, asset: str | None, after: Key | None, size: int
    ) -> Page[LedgerEntry]:
        """An account's ledger legs, newest first; the key is (entry_id,)."""
        where = _Where(to_signed(account_id))
        if asset is not None:
            where.add("asset = {}", asset)
        if after is not None:
            where.add("entry_id < {}", *after)
        sql = (
            f"SELECT * FROM ledger_entries WHERE account_id = $1{where.sql} "  # noqa: S608
            f"ORDER BY entry_id DESC LIMIT {where.limit(size + 1)}"
        )
        rows = [
            LedgerEntry(
                entry_id=r["entry_id"],
                account_id=to_unsigned(r["account_id"]),
                asset=r["asset"],
                kind=LedgerEntryKind(r["kind"]),
                amount=r["amount"],
                reference=r["reference"],
                timestamp_ns=r["timestamp_ns"],
            )
            for r in await self._fetch(sql, where.params)
        ]
        return _page(rows, size, lambda row: (row.entry_id,))

    async def candles(
        self, symbol: str, width_ns: int, start_ns: int, end_ns: int, limit: int
    ) -> list[Candle]:
        """Candles of `width_ns` over at most `limit` intervals, oldest first.

        The intervals open in [start_ns, end_ns): the first `limit` of them from
        `start_ns` on when it is given, else the last `limit` before `end_ns` (before and
        including the latest trade's when end_ns is 0). Intervals without a trade have no
        candle. The scan is bounded to those intervals, so its cost is that of `limit`
        candles however long the history.
        """
        if start_ns:
            low = _ceil(start_ns, width_ns)
            high = low + limit * width_ns
            if end_ns:
                high = min(high, _ceil(end_ns, width_ns))
        else:
            if end_ns:
                high = _ceil(end_ns, width_ns)
            else:
                latest = await self._fetch(_LATEST_MINUTE, [symbol])
                if latest[0]["open_time_ns"] is None:
                    return []
                high = bucket_start(latest[0]["open_time_ns"], width_ns) + width_ns
            low = high - limit * width_ns
        records = await self._fetch(f"{_CANDLES} ORDER BY 1", [symbol, width_ns, low, high])
        return [
            Candle(
                symbol, r["open_time_ns"], r["open"], r["high"], r["low"], r["close"],
                int(r["volume"]), int(r["quote_volume"]), int(r["trade_count"]),
            )
            for r in records
        ]  # fmt: skip

    async def ticker(self, symbol: str, now_ns: int) -> Ticker:
        """The 24 hours up to the later of `now_ns` and the latest trade."""
        last = await self._fetch(_LAST_TRADE, [symbol])
        last_price, last_time = (last[0]["price"], last[0]["timestamp_ns"]) if last else (0, 0)
        end = max(now_ns, last_time)
        start = end - DAY_NS
        first_full, last_full = _ceil(start + 1, MINUTE_NS), bucket_start(end + 1, MINUTE_NS)
        if first_full < last_full:
            spans = [start + 1, first_full, last_full, end + 1, first_full, last_full]
        else:
            spans = [start + 1, end + 1, 0, 0, 0, 0]
        (row,) = await self._fetch(_TICKER, [symbol, *spans])
        count = int(row["trade_count"])
        return Ticker(
            symbol=symbol,
            last_price=last_price,
            open_price=row["open"] if count else last_price,
            high_price=row["high"] if count else last_price,
            low_price=row["low"] if count else last_price,
            volume=int(row["volume"] or 0),
            quote_volume=int(row["quote_volume"] or 0),
            trade_count=count,
            open_time_ns=start,
            close_time_ns=end,
        )


def _ceil(value: int, width: int) -> int:
    return bucket_start(value + width - 1, width)


async def ledger_problems(connection: Any) -> list[str]:
    """What breaks the ledger's invariants; empty when it balances.

    - the legs of every reference sum to zero per asset (double entry);
    - per asset, the balances of customers and the fee account (`account_balances`) sum to
      Σ deposits - Σ withdrawals (DESIGN §4).
    """
    problems = [
        f"reference {r['reference']!r}: the {r['asset']} legs sum to {r['total']}, not 0"
        for r in await connection.fetch(
            "SELECT reference, asset, sum(amount) AS total FROM ledger_entries "
            "GROUP BY reference, asset HAVING sum(amount) <> 0 ORDER BY reference, asset"
        )
    ]
    rows = await connection.fetch(
        "SELECT asset,"
        " coalesce((SELECT sum(balance) FROM account_balances b WHERE b.asset = a.asset), 0)"
        "   AS held,"
        " coalesce(sum(amount) FILTER (WHERE kind = 1), 0) AS deposited,"
        " coalesce(-sum(amount) FILTER (WHERE kind = 2), 0) AS withdrawn "
        "FROM ledger_entries a WHERE account_id <> $1 GROUP BY asset ORDER BY asset",
        EXTERNAL_ACCOUNT,
    )
    problems.extend(
        f"{r['asset']}: accounts hold {r['held']}, but deposits - withdrawals = "
        f"{r['deposited'] - r['withdrawn']}"
        for r in rows
        if r["held"] != r["deposited"] - r["withdrawn"]
    )
    return problems
