"""One batch of log records -> the rows to write, the chain points and offsets to store.

Input: records of ordermesh.orders, .engine and .ledger, decoded, in log order within each
partition (any interleaving across partitions). Output: a `BatchPlan` that the adapter
writes in one PostgreSQL transaction with the offsets, so a restart resumes exactly where
the last commit ended.

The engine topic is checked link by link (`matcher.core.verify.ChainVerifier`, seeded
with each symbol's stored sequence and hash). A command's events share one hash, and a
batch may end inside a command's group; so only a prefix of each engine partition is
applied: up to the last record after which no symbol of that partition has a group open.
The rest is carried into the next batch and checked again from the stored point. Nothing
unverified is ever written, the stored chain point is always at a command boundary, and
the stored offset is exactly where the applied prefix ends.

A gap, a repeat, a changed event or a wrong hash raises `ChainBreakError`: the batch is
refused whole, and the caller must stop; it never resets the chain (DESIGN §11).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from matcher.core.chain import GENESIS_HASH
from matcher.core.verify import ChainError, ChainVerifier
from ordermesh.events import (
    CancelOrder,
    CancelRejected,
    EngineEvent,
    LedgerEvent,
    NewOrder,
    TradeExecuted,
)
from ordermesh.markets import Market
from ordermesh.model import EXTERNAL_ACCOUNT
from settlement.core.candles import fold_candles
from settlement.core.ledger import (
    LedgerEventError,
    check_funding,
    funding_legs,
    trade_legs,
)
from settlement.core.orders import OrderChange
from settlement.core.rows import Candle, LedgerLeg, TradeRow


class Source(Enum):
    """The topic a record came from, by its role."""

    ORDERS = "orders"
    ENGINE = "engine"
    LEDGER = "ledger"


@dataclass(frozen=True, slots=True)
class LogItem:
    """One decoded record and where it was read."""

    source: Source
    partition: int
    offset: int
    value: NewOrder | CancelOrder | EngineEvent | LedgerEvent


@dataclass(frozen=True, slots=True)
class ChainPoint:
    """Where a symbol's chain stands: after the last event of a complete command."""

    partition: int
    """The engine partition the symbol's events are in."""
    sequence: int
    hash: bytes


class BatchError(ValueError):
    """Records settlement must not go past; the service stops and writes nothing of them."""


class ChainBreakError(BatchError):
    """An engine event that does not continue its symbol's stored chain."""

    def __init__(self, symbol: str, partition: int, offset: int, detail: str) -> None:
        super().__init__(f"engine chain of {symbol} broken at partition {partition} offset "
                         f"{offset}: {detail}")  # fmt: skip
        self.symbol = symbol
        self.partition = partition
        self.offset = offset
        self.detail = detail


@dataclass(slots=True)
class BatchPlan:
    """What one batch writes."""

    trades: list[TradeRow] = field(default_factory=list)
    ledger: list[LedgerLeg] = field(default_factory=list)
    order_changes: list[OrderChange] = field(default_factory=list)
    """NewOrders and engine events, in log order per partition; see `fold_orders`."""
    candles: dict[tuple[str, int], Candle] = field(default_factory=dict)
    """The batch's 1-minute candles by (symbol, open time), to merge into the stored ones."""
    chains: dict[str, ChainPoint] = field(default_factory=dict)
    """The new chain point of every symbol that moved."""
    offsets: dict[tuple[Source, int], int] = field(default_factory=dict)
    """The next offset to read, per (source, partition) that moved."""
    carry: list[LogItem] = field(default_factory=list)
    """Engine records after the last complete command of their partition: read again next time."""
    applied: int = 0
    """How many records the plan applies."""


def plan_batch(
    items: Sequence[LogItem],
    chains: Mapping[str, ChainPoint],
    markets: Mapping[str, Market],
    assets: Container[str],
) -> BatchPlan:
    """Verify and turn a batch of records into rows.

    Args:
        items: the records, in log order within each partition.
        chains: every symbol's stored chain point (symbols absent start at genesis).
        markets: the market table by symbol.
        assets: the known asset codes.

    Raises:
        ChainBreakError: an engine event does not continue its symbol's chain.
        BatchError: a record that cannot be booked (an unknown symbol or asset, a bad
            funding event, offsets out of order).
    """
    plan = BatchPlan()
    homes: dict[str, int] = {symbol: point.partition for symbol, point in chains.items()}
    for (source, partition), part in sorted(_by_partition(items).items(), key=_partition_key):
        applied = part
        if source is Source.ENGINE:
            applied, carry, points = _cut(partition, part, chains, homes, markets)
            plan.carry.extend(carry)
            plan.chains.update(points)
        if applied:
            plan.offsets[(source, partition)] = applied[-1].offset + 1
        for item in applied:
            _book(plan, item, markets, assets)
        plan.applied += len(applied)
    plan.candles = fold_candles(plan.trades)
    return plan


def _partition_key(entry: tuple[tuple[Source, int], list[LogItem]]) -> tuple[str, int]:
    (source, partition), _ = entry
    return source.value, partition


def _by_partition(items: Sequence[LogItem]) -> dict[tuple[Source, int], list[LogItem]]:
    parts: dict[tuple[Source, int], list[LogItem]] = {}
    for item in items:
        part = parts.setdefault((item.source, item.partition), [])
        if part and item.offset <= part[-1].offset:
            raise BatchError(
                f"{item.source.value} partition {item.partition}: offset {item.offset} after "
                f"{part[-1].offset}; records must come in log order"
            )
        part.append(item)
    return parts


def _cut(
    partition: int,
    items: list[LogItem],
    chains: Mapping[str, ChainPoint],
    homes: dict[str, int],
    markets: Mapping[str, Market],
) -> tuple[list[LogItem], list[LogItem], dict[str, ChainPoint]]:
    """Split an engine partition's records at its last command boundary; verify them all."""
    verifiers: dict[str, ChainVerifier] = {}
    points: dict[str, ChainPoint] = {}
    touched: set[str] = set()
    open_groups = 0
    boundary = 0
    for index, item in enumerate(items):
        event = item.value
        if not isinstance(event, EngineEvent):
            raise BatchError(f"engine partition {partition} offset {item.offset}: not an event")
        verifier = verifiers.get(event.symbol)
        if verifier is None:
            _market(markets, event.symbol, f"engine partition {partition} offset {item.offset}")
            verifier = verifiers[event.symbol] = _verifier(event.symbol, item, chains, homes)
        was_complete = verifier.complete
        try:
            verifier.add(event)
        except ChainError as e:
            raise ChainBreakError(event.symbol, partition, item.offset, str(e)) from e
        open_groups += int(was_complete) - int(verifier.complete)
        touched.add(event.symbol)
        if open_groups == 0:
            boundary = index + 1
            for symbol in touched:
                done = verifiers[symbol]
                points[symbol] = ChainPoint(partition, done.sequence, done.hash)
            touched.clear()
    return items[:boundary], items[boundary:], points


def _verifier(
    symbol: str, item: LogItem, chains: Mapping[str, ChainPoint], homes: dict[str, int]
) -> ChainVerifier:
    home = homes.setdefault(symbol, item.partition)
    if home != item.partition:
        raise ChainBreakError(
            symbol,
            item.partition,
            item.offset,
            f"its events were in engine partition {home}; a symbol's chain lives in one",
        )
    start = chains.get(symbol)
    if start is None:
        return ChainVerifier(GENESIS_HASH, 0, symbol)
    return ChainVerifier(start.hash, start.sequence, symbol)


def _book(
    plan: BatchPlan, item: LogItem, markets: Mapping[str, Market], assets: Container[str]
) -> None:
    value = item.value
    where = f"{item.source.value} partition {item.partition} offset {item.offset}"
    if isinstance(value, EngineEvent):
        market = _market(markets, value.symbol, where)
        body = value.body
        if isinstance(body, TradeExecuted):
            if EXTERNAL_ACCOUNT in (body.maker_account_id, body.taker_account_id):
                raise BatchError(f"{where}: trade {body.trade_id} names the external account")
            plan.trades.append(_trade_row(value, body))
            plan.ledger.extend(trade_legs(market, body, value.timestamp_ns))
        if not isinstance(body, CancelRejected):
            plan.order_changes.append(value)
    elif isinstance(value, NewOrder):
        _market(markets, value.symbol, where)
        plan.order_changes.append(value)
    elif isinstance(value, LedgerEvent):
        try:
            check_funding(value, assets)
        except LedgerEventError as e:
            raise BatchError(f"{where}: {e}") from e
        plan.ledger.extend(funding_legs(value))
    # A CancelOrder changes nothing here: its outcome comes from the engine.


def _market(markets: Mapping[str, Market], symbol: str, where: str) -> Market:
    market = markets.get(symbol)
    if market is None:
        raise BatchError(
            f"{where}: symbol {symbol!r} is not in the market table ({', '.join(markets)}); "
            "settlement and the matcher must load the same markets.toml"
        )
    return market


def _trade_row(event: EngineEvent, body: TradeExecuted) -> TradeRow:
    return TradeRow(
        symbol=event.symbol,
        trade_id=body.trade_id,
        sequence=event.sequence,
        maker_order_id=body.maker_order_id,
        taker_order_id=body.taker_order_id,
        maker_account_id=body.maker_account_id,
        taker_account_id=body.taker_account_id,
        taker_side=body.taker_side,
        price=body.price,
        quantity=body.quantity,
        quote_quantity=body.quote_quantity,
        maker_fee=body.maker_fee,
        taker_fee=body.taker_fee,
        timestamp_ns=event.timestamp_ns,
    )
