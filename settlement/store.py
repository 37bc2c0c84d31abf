"""PostgreSQL adapter, write side: the consumer's stored position and one batch's writes.

A batch is one transaction (`Store.batch`): it first locks this consumer's offset rows and
checks they are what this process last committed (another instance writing to the same
database is a fail-stop, never a silent double write), then COPYs trades and ledger legs,
upserts orders (merged in the core), candles and chain points, and stores the next offsets,
and commits. Either all of it is in, or none of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from ordermesh.model import (
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from ordermesh.runtime import FatalError
from settlement.core import BatchPlan, ChainPoint, OrderRow, TradeRow
from settlement.core.rows import to_signed, to_unsigned
from settlement.schema import migrate

CONSUMER: Final = "settlement"
"""The consumer name offsets are stored under."""

TRADE_COLUMNS: Final = (
    "symbol", "trade_id", "sequence", "maker_order_id", "taker_order_id", "maker_account_id",
    "taker_account_id", "taker_side", "price", "quantity", "quote_quantity", "maker_fee",
    "taker_fee", "timestamp_ns",
)  # fmt: skip
LEDGER_COLUMNS: Final = ("account_id", "asset", "kind", "amount", "reference", "timestamp_ns")
ORDER_COLUMNS: Final = (
    "order_id", "symbol", "account_id", "client_order_id", "side", "order_type",
    "time_in_force", "price", "quantity", "quote_budget", "post_only",
    "self_trade_prevention", "status", "reason", "filled_quantity", "filled_quote_quantity",
    "accepted", "created_ns", "updated_ns",
)  # fmt: skip
_ORDER_TYPES: Final = (
    "bigint", "text", "bigint", "text", "smallint", "smallint", "smallint", "bigint", "bigint",
    "bigint", "boolean", "smallint", "smallint", "integer", "bigint", "bigint", "boolean",
    "bigint", "bigint",
)  # fmt: skip


def _unnest_upsert(table: str, columns: tuple[str, ...], types: tuple[str, ...], tail: str) -> str:
    """INSERT ... SELECT FROM unnest(one array parameter per column) ... `tail`."""
    arrays = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(types, start=1))
    target = f"{table} ({', '.join(columns)})"
    # Built once at import from the constants here; values always travel as parameters.
    return f"INSERT INTO {target} SELECT * FROM unnest({arrays}) {tail}"  # noqa: S608


UNNEST_ORDERS: Final = _unnest_upsert(
    "orders",
    ORDER_COLUMNS,
    _ORDER_TYPES,
    "ON CONFLICT (order_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in ORDER_COLUMNS[1:]),
)
"""Upsert orders from one array per column (the bench's comparison; see STAGE_ORDERS)."""
# The bulk path for orders: COPY into a temporary table kept by the connection (emptied at
# every commit), then one INSERT ... ON CONFLICT from it. Measured faster than one INSERT
# over unnest() arrays and several times faster than executemany (bench/settlement_bench.py).
STAGE_TABLE: Final = "settlement_orders_stage"
STAGE_ORDERS: Final = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (LIKE orders) ON COMMIT DELETE ROWS"
)
MERGE_ORDERS: Final = (
    f"INSERT INTO orders SELECT * FROM {STAGE_TABLE} ON CONFLICT (order_id) DO UPDATE SET "  # noqa: S608
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in ORDER_COLUMNS[1:])
)
_UPSERT_CANDLES: Final = _unnest_upsert(
    "candles",
    ("symbol", "open_time_ns", "open", "high", "low", "close", "volume", "quote_volume",
     "trade_count"),
    ("text", "bigint", "bigint", "bigint", "bigint", "bigint", "numeric", "numeric", "bigint"),
    "ON CONFLICT (symbol, open_time_ns) DO UPDATE SET "
    "high = GREATEST(candles.high, EXCLUDED.high), low = LEAST(candles.low, EXCLUDED.low), "
    "close = EXCLUDED.close, volume = candles.volume + EXCLUDED.volume, "
    "quote_volume = candles.quote_volume + EXCLUDED.quote_volume, "
    "trade_count = candles.trade_count + EXCLUDED.trade_count",
)  # fmt: skip
_UPSERT_CHAINS: Final = _unnest_upsert(
    "symbol_chains",
    ("symbol", "topic", "partition", "sequence", "hash"),
    ("text", "text", "integer", "bigint", "bytea"),
    "ON CONFLICT (symbol) DO UPDATE SET topic = EXCLUDED.topic, partition = EXCLUDED.partition, "
    "sequence = EXCLUDED.sequence, hash = EXCLUDED.hash, updated_at = now()",
)
_UPSERT_OFFSETS: Final = _unnest_upsert(
    "consumer_offsets",
    ("consumer", "topic", "partition", "next_offset"),
    ("text", "text", "integer", "bigint"),
    "ON CONFLICT (consumer, topic, partition) DO UPDATE SET "
    "next_offset = EXCLUDED.next_offset, updated_at = now()",
)

Offsets = dict[tuple[str, int], int]
"""Next offset to read by (topic, partition)."""


class FencedError(FatalError):
    """The stored offsets moved under this process: another instance writes this database."""


@dataclass(frozen=True, slots=True)
class StoredState:
    """Where the consumer stands, as last committed."""

    offsets: Offsets
    chains: dict[str, ChainPoint]
    """Each symbol's chain point (its partition is of the engine topic)."""


def trade_record(row: TradeRow) -> tuple[Any, ...]:
    """A TradeRow as a COPY record in TRADE_COLUMNS order."""
    return (
        row.symbol, to_signed(row.trade_id), row.sequence, to_signed(row.maker_order_id),
        to_signed(row.taker_order_id), to_signed(row.maker_account_id),
        to_signed(row.taker_account_id), int(row.taker_side), row.price, row.quantity,
        row.quote_quantity, row.maker_fee, row.taker_fee, row.timestamp_ns,
    )  # fmt: skip


def order_record(row: OrderRow) -> tuple[Any, ...]:
    """An OrderRow as a record in ORDER_COLUMNS order."""
    return (
        to_signed(row.order_id), row.symbol, to_signed(row.account_id), row.client_order_id,
        row.side, row.order_type, row.time_in_force, row.price, row.quantity, row.quote_budget,
        row.post_only, row.self_trade_prevention, row.status, row.reason, row.filled_quantity,
        row.filled_quote_quantity, row.accepted, row.created_ns, row.updated_ns,
    )  # fmt: skip


def _enum(kind: Any, value: int | None) -> Any:
    return None if value is None else kind(value)


def order_from_record(record: Any) -> OrderRow:
    """An OrderRow from an orders row."""
    return OrderRow(
        order_id=to_unsigned(record["order_id"]),
        symbol=record["symbol"],
        account_id=to_unsigned(record["account_id"]),
        client_order_id=record["client_order_id"],
        side=_enum(Side, record["side"]),
        order_type=_enum(OrderType, record["order_type"]),
        time_in_force=_enum(TimeInForce, record["time_in_force"]),
        price=record["price"],
        quantity=record["quantity"],
        quote_budget=record["quote_budget"],
        post_only=record["post_only"],
        self_trade_prevention=_enum(SelfTradePrevention, record["self_trade_prevention"]),
        status=OrderStatus(record["status"]),
        reason=RejectReason(record["reason"]),
        filled_quantity=record["filled_quantity"],
        filled_quote_quantity=record["filled_quote_quantity"],
        accepted=record["accepted"],
        created_ns=record["created_ns"],
        updated_ns=record["updated_ns"],
    )


class BatchWriter:
    """The writes of one batch, inside its transaction (made by `Store.batch`)."""

    def __init__(self, connection: Any, consumer: str) -> None:
        self._connection = connection
        self._consumer = consumer

    async def load_orders(self, order_ids: Iterable[int]) -> dict[int, OrderRow]:
        """The stored rows of these orders (those that exist)."""
        ids = [to_signed(order_id) for order_id in order_ids]
        if not ids:
            return {}
        records = await self._connection.fetch(
            "SELECT * FROM orders WHERE order_id = ANY($1::bigint[])", ids
        )
        rows = (order_from_record(record) for record in records)
        return {row.order_id: row for row in rows}

    async def write(
        self,
        plan: BatchPlan,
        orders: Iterable[OrderRow],
        offsets: Mapping[tuple[str, int], int],
        engine_topic: str,
    ) -> None:
        """Write the plan's rows, the merged orders, chain points and the next offsets."""
        connection = self._connection
        if plan.trades:
            await connection.copy_records_to_table(
                "trades", records=[trade_record(t) for t in plan.trades], columns=TRADE_COLUMNS
            )
        if plan.ledger:
            records = [
                (to_signed(leg.account_id), leg.asset, int(leg.kind), leg.amount, leg.reference,
                 leg.timestamp_ns)
                for leg in plan.ledger
            ]  # fmt: skip
            await connection.copy_records_to_table(
                "ledger_entries", records=records, columns=LEDGER_COLUMNS
            )
        await self._merge_orders([order_record(row) for row in orders])
        await self._upsert(_UPSERT_CANDLES, [
            (c.symbol, c.open_time_ns, c.open, c.high, c.low, c.close, c.volume,
             c.quote_volume, c.trade_count)
            for c in plan.candles.values()
        ])  # fmt: skip
        await self._upsert(_UPSERT_CHAINS, [
            (symbol, engine_topic, point.partition, point.sequence, point.hash)
            for symbol, point in plan.chains.items()
        ])  # fmt: skip
        await self._upsert(_UPSERT_OFFSETS, [
            (self._consumer, topic, partition, offset)
            for (topic, partition), offset in offsets.items()
        ])  # fmt: skip

    async def _merge_orders(self, records: list[tuple[Any, ...]]) -> None:
        if records:
            await self._connection.execute(STAGE_ORDERS)
            await self._connection.copy_records_to_table(
                STAGE_TABLE, records=records, columns=ORDER_COLUMNS
            )
            await self._connection.execute(MERGE_ORDERS)

    async def _upsert(self, statement: str, records: list[tuple[Any, ...]]) -> None:
        if records:
            await self._connection.execute(
                statement, *(list(c) for c in zip(*records, strict=True))
            )


class Store:
    """settlement's PostgreSQL, write side (the read side is `settlement.queries`).

    Args:
        pool: an asyncpg pool on the settlement database.
        consumer: the name offsets are stored under.
    """

    def __init__(self, pool: Any, consumer: str = CONSUMER) -> None:
        self.pool = pool
        self._consumer = consumer

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""
        async with self.pool.acquire() as connection:
            return await migrate(connection)

    async def load_state(self) -> StoredState:
        """The committed offsets and chain points."""
        async with self.pool.acquire() as connection:
            offsets = await connection.fetch(
                "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = $1",
                self._consumer,
            )
            chains = await connection.fetch(
                "SELECT symbol, partition, sequence, hash FROM symbol_chains"
            )
        return StoredState(
            offsets={(r["topic"], r["partition"]): r["next_offset"] for r in offsets},
            chains={
                r["symbol"]: ChainPoint(r["partition"], r["sequence"], bytes(r["hash"]))
                for r in chains
            },
        )

    @asynccontextmanager
    async def batch(self, expected: Mapping[tuple[str, int], int]) -> AsyncIterator[BatchWriter]:
        """One batch's transaction; commits when the block ends without an exception.

        Args:
            expected: the offsets this process last committed (or loaded).

        Raises:
            FencedError: the stored offsets are not `expected`.
        """
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT topic, partition, next_offset FROM consumer_offsets "
                "WHERE consumer = $1 FOR UPDATE",
                self._consumer,
            )
            stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
            if stored != dict(expected):
                raise FencedError(
                    f"consumer_offsets of {self._consumer!r} changed under this process "
                    f"(expected {_show(expected)}, found {_show(stored)}): another settlement "
                    "instance is writing to this database"
                )
            yield BatchWriter(connection, self._consumer)


def _show(offsets: Mapping[tuple[str, int], int]) -> str:
    return ", ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(offsets.items())) or "none"
