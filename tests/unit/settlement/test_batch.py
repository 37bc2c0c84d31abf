"""Batches: chain verification from the stored point, the cut at command boundaries, rows."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermesh.events import EngineEvent, LedgerEvent, TradeExecuted
from ordermesh.model import AccountId, LedgerEntryKind
from settlement.core import (
    EXTERNAL_ACCOUNT,
    BatchError,
    BatchPlan,
    ChainBreakError,
    ChainPoint,
    LogItem,
    Source,
    plan_batch,
)
from tests.unit.settlement.exchange import (
    BTC_USDT,
    BUY,
    ETH_USDT,
    MARKETS,
    SELL,
    Exchange,
    atoms,
    random_session,
)

SYMBOLS = {str(symbol): market for symbol, market in MARKETS.markets.items()}
ASSETS = frozenset(MARKETS.assets)
PRICE = atoms("30000", "USDT")
LOT = atoms("0.01", "BTC")


def plan(items: list[LogItem], chains: dict[str, ChainPoint] | None = None) -> BatchPlan:
    return plan_batch(items, chains or {}, SYMBOLS, ASSETS)


def sweep(exchange: Exchange, makers: int = 3) -> list[EngineEvent]:
    """Rest `makers` sells, then one buy that takes them all: a command of many events."""
    for n in range(makers):
        exchange.order(1, SELL, PRICE + n * 10_000, LOT)
    return exchange.order(2, BUY, PRICE + makers * 10_000, makers * LOT)[1]


def ev(item: LogItem) -> Any:
    """The engine event of an item, untyped for replace() in the tests."""
    return item.value


def engine_items(exchange: Exchange) -> list[LogItem]:
    return [item for item in exchange.items() if item.source is Source.ENGINE]


def test_one_batch_stores_each_symbols_last_event_and_every_next_offset() -> None:
    exchange = random_session(3, 150)
    result = plan(exchange.items())
    assert result.carry == []
    assert result.applied == len(exchange.records)
    last: dict[str, EngineEvent] = {}
    for event in exchange.engine_events():
        last[event.symbol] = event
    assert result.chains == {
        symbol: ChainPoint(exchange.partition_of(symbol), event.sequence, event.hash)
        for symbol, event in last.items()
    }
    ends: dict[tuple[Source, int], int] = {}
    for record in exchange.records:
        ends[(record.source, record.partition)] = record.offset + 1
    assert result.offsets == ends
    assert len(result.trades) == sum(
        isinstance(e.body, TradeExecuted) for e in exchange.engine_events()
    )


def test_a_batch_ending_inside_a_command_carries_its_events() -> None:
    exchange = Exchange(partitions=1)
    events = sweep(exchange)
    assert len(events) > 4
    items = engine_items(exchange)
    group_start = len(items) - len(events)
    first = plan(items[: group_start + 3])

    assert first.applied == group_start
    assert [item.value for item in first.carry] == events[:3]
    assert first.offsets == {(Source.ENGINE, 0): items[group_start].offset}
    assert first.chains[BTC_USDT].sequence == events[0].sequence - 1
    assert not any(t.taker_order_id == 4 for t in first.trades)

    second = plan(first.carry + items[group_start + 3 :], first.chains)
    assert second.applied == len(events)
    assert second.carry == []
    assert second.chains[BTC_USDT] == ChainPoint(0, events[-1].sequence, events[-1].hash)
    assert second.offsets == {(Source.ENGINE, 0): items[-1].offset + 1}
    assert len(second.trades) == 3


def test_an_open_group_holds_back_other_symbols_of_its_partition() -> None:
    exchange = Exchange(partitions=1)
    sweep(exchange)
    exchange.order(3, SELL, atoms("2000", "USDT"), atoms("0.1", "ETH"), symbol=ETH_USDT)
    items = engine_items(exchange)
    btc_last = max(i for i, item in enumerate(items) if ev(item).symbol == BTC_USDT)
    # Reorder as two writers to one partition might: ETH's events inside BTC's open group.
    mixed = items[: btc_last - 1] + items[btc_last + 1 :] + items[btc_last - 1 : btc_last + 1]
    renumbered = [replace(item, offset=n) for n, item in enumerate(mixed)]
    result = plan(renumbered[:-2])
    assert all(ev(item).symbol != ETH_USDT for item in renumbered[: result.applied])
    assert ETH_USDT not in result.chains
    assert {ev(item).symbol for item in result.carry} == {BTC_USDT, ETH_USDT}


@settings(max_examples=30, deadline=None)
@given(session=st.integers(0, 10_000), cuts=st.integers(0, 10_000))
def test_any_batching_writes_what_one_batch_writes(session: int, cuts: int) -> None:
    exchange = random_session(session, 100)
    items = exchange.items()
    whole = plan(items)
    rng = random.Random(cuts)
    chains: dict[str, ChainPoint] = {}
    carry: list[LogItem] = []
    trades, ledger, changes = [], [], []
    offsets: dict[tuple[Source, int], int] = {}
    start = 0
    while start < len(items):
        end = start + rng.randint(1, 40)
        # A batch takes new records in partition order, across partitions in any order.
        chunk = sorted(items[start:end], key=lambda i: (i.source.value, i.partition, i.offset))
        part = plan(carry + chunk, chains)
        for symbol, point in part.chains.items():
            boundary = [e for e in exchange.engine_events() if e.symbol == symbol]
            after = [e for e in boundary if e.sequence == point.sequence + 1]
            at = [e for e in boundary if e.sequence == point.sequence]
            assert not after or after[0].input_offset != at[0].input_offset  # a command's end
        chains.update(part.chains)
        offsets.update(part.offsets)
        carry = part.carry
        trades += part.trades
        ledger += part.ledger
        changes += part.order_changes
        start = end
    assert carry == []
    assert (chains, offsets) == (whole.chains, whole.offsets)
    assert sorted(trades, key=repr) == sorted(whole.trades, key=repr)
    assert sorted(ledger, key=repr) == sorted(whole.ledger, key=repr)
    assert sorted(changes, key=repr) == sorted(whole.order_changes, key=repr)


def test_a_gap_is_refused_naming_expected_and_got() -> None:
    exchange = Exchange(partitions=1)
    sweep(exchange)
    items = engine_items(exchange)
    del items[4]
    with pytest.raises(ChainBreakError, match="sequence gap, expected 5, was 6") as caught:
        plan(items)
    assert caught.value.symbol == BTC_USDT


def test_a_repeat_of_what_is_stored_is_refused() -> None:
    exchange = Exchange(partitions=1)
    sweep(exchange)
    items = engine_items(exchange)
    done = plan(items[:2])
    with pytest.raises(ChainBreakError, match="expected 3, was 2"):
        plan(items[1:], done.chains)


def test_a_stored_point_is_continued_never_reset() -> None:
    exchange = Exchange(partitions=1)
    sweep(exchange)
    items = engine_items(exchange)
    stored = {str(BTC_USDT): ChainPoint(0, 2, bytes(32))}  # a point these events do not continue
    with pytest.raises(ChainBreakError, match="expected 3, was 1"):
        plan(items, stored)
    with pytest.raises(ChainBreakError, match=r"do not hash|before the events"):
        plan(items[2:], stored)


def test_a_changed_event_is_refused_at_the_next_event_of_its_symbol() -> None:
    exchange = Exchange(partitions=1)
    sweep(exchange)
    exchange.order(1, SELL, PRICE, LOT)
    items = engine_items(exchange)
    trade_at = next(i for i, item in enumerate(items) if isinstance(ev(item).body, TradeExecuted))
    event = ev(items[trade_at])
    changed = replace(event, body=replace(event.body, quantity=event.body.quantity + 1))
    tampered = [*items[:trade_at], replace(items[trade_at], value=changed), *items[trade_at + 1 :]]
    with pytest.raises(ChainBreakError, match="BTC-USDT"):
        plan(tampered)
    # Alone at the end, the altered group never completes: nothing of it is written.
    alone = plan(tampered[: trade_at + 1])
    assert alone.applied < trade_at + 1
    assert alone.trades == []


def test_a_wrong_hash_is_refused() -> None:
    exchange = Exchange(partitions=1)
    exchange.order(1, SELL, PRICE, LOT)
    exchange.order(1, SELL, PRICE, LOT)
    items = engine_items(exchange)
    forged = replace(items[0], value=replace(ev(items[0]), hash=bytes(range(32))))
    with pytest.raises(ChainBreakError):
        plan([forged, *items[1:]])


def test_a_symbol_in_a_second_partition_is_refused() -> None:
    exchange = Exchange(partitions=1)
    exchange.order(1, SELL, PRICE, LOT)
    exchange.order(1, SELL, PRICE, LOT)
    first, second = engine_items(exchange)
    with pytest.raises(ChainBreakError, match="were in engine partition 0"):
        plan([first, replace(second, partition=1, offset=0)])
    with pytest.raises(ChainBreakError, match="were in engine partition 0"):
        plan([replace(second, partition=1)], {str(BTC_USDT): ChainPoint(0, 1, ev(first).hash)})


def test_records_that_cannot_be_booked_are_refused() -> None:
    exchange = Exchange(partitions=1)
    exchange.order(1, SELL, PRICE, LOT)
    (item,) = engine_items(exchange)
    unknown = replace(item, value=replace(ev(item), symbol="DOGE-USDT"))
    with pytest.raises(BatchError, match="'DOGE-USDT' is not in the market table"):
        plan([unknown])
    deposit = LedgerEvent(AccountId(1), "USDT", LedgerEntryKind.FEE, 5, "r", 1)  # type: ignore[arg-type]
    with pytest.raises(BatchError, match=r"ledger partition 0 offset 0: .*DEPOSIT or WITHDRAWAL"):
        plan([LogItem(Source.LEDGER, 0, 0, deposit)])
    with pytest.raises(BatchError, match="must come in log order"):
        plan([item, item])


def test_a_trade_naming_the_external_account_is_refused() -> None:
    exchange = Exchange(partitions=1)
    exchange.order(EXTERNAL_ACCOUNT, SELL, PRICE, LOT)
    exchange.order(2, BUY, PRICE, LOT)
    with pytest.raises(BatchError, match="names the external account"):
        plan(engine_items(exchange))


def test_cancels_and_cancel_rejections_change_no_rows() -> None:
    exchange = Exchange(partitions=1)
    exchange.cancel(1, 99)
    result = plan(exchange.items())
    assert (result.trades, result.ledger, result.order_changes) == ([], [], [])
    assert result.applied == 2
    assert result.chains[BTC_USDT].sequence == 1
