"""Book snapshots: the value, its restore, and its protobuf codec."""

from __future__ import annotations

import dataclasses

import pytest

from matcher.codec import (
    SnapshotCodecError,
    decode_snapshot,
    encode_snapshot,
    snapshot_from_pb,
    snapshot_to_pb,
)
from matcher.core import GENESIS_HASH, BookSnapshot, OrderBook, SnapshotError
from ordermesh.events import OrderCommand
from ordermesh.model import OrderId, SelfTradePrevention
from tests.unit.matcher.helpers import BUY, ETH, MARKET, SELL, Driver, btc, cancel, limit, usdt


@pytest.fixture
def driver() -> Driver:
    d = Driver()
    d.send(limit(1, BUY, usdt(99), btc(1), account=3))
    d.send(limit(2, BUY, usdt(100), btc(2), client="two", stp=SelfTradePrevention.EXPIRE_MAKER))
    d.send(limit(3, BUY, usdt(100), btc(1)))
    d.send(limit(4, SELL, usdt(101), btc(1)))
    d.send(limit(5, SELL, usdt(100), btc("0.5"), account=9))  # fills half of order 2
    return d


def test_an_empty_book_snapshots_to_the_start_of_the_chain() -> None:
    assert OrderBook(MARKET).snapshot() == BookSnapshot(
        symbol=MARKET.symbol,
        input_offset=-1,
        sequence=0,
        hash=GENESIS_HASH,
        next_trade_id=1,
        bids=(),
        asks=(),
    )


def test_a_snapshot_lists_each_side_in_priority_order(driver: Driver) -> None:
    snapshot = driver.book.snapshot()

    assert [o.order_id for o in snapshot.bids] == [2, 3, 1]
    assert [o.order_id for o in snapshot.asks] == [4]
    partly = snapshot.bids[0]
    assert (partly.remaining_quantity, partly.filled_quantity) == (btc("1.5"), btc("0.5"))
    assert partly.filled_quote_quantity == usdt(50)
    assert partly.self_trade_prevention == SelfTradePrevention.EXPIRE_MAKER
    assert (snapshot.input_offset, snapshot.sequence, snapshot.next_trade_id) == (4, 7, 2)
    assert snapshot.hash == driver.book.last_hash


def test_a_restored_book_carries_on_exactly(driver: Driver) -> None:
    later: list[OrderCommand] = [
        cancel(client="two"),
        limit(6, SELL, usdt(99), btc(2), account=4),
        cancel(1, account=3),
    ]
    restored = OrderBook.restore(MARKET, decode_snapshot(encode_snapshot(driver.book.snapshot())))

    expected = [driver.book.apply(c, 10 + i) for i, c in enumerate(later)]
    actual = [restored.apply(c, 10 + i) for i, c in enumerate(later)]

    assert actual == expected
    assert restored.snapshot() == driver.book.snapshot()


def test_the_codec_round_trips_field_for_field(driver: Driver) -> None:
    snapshot = driver.book.snapshot()

    message = snapshot_to_pb(snapshot)

    assert snapshot_from_pb(message) == snapshot
    assert message.bids[0].client_order_id == "two"
    assert message.bids[0].self_trade_prevention == int(SelfTradePrevention.EXPIRE_MAKER)
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot
    assert encode_snapshot(snapshot) == encode_snapshot(snapshot)


def test_bytes_that_are_not_a_snapshot_are_refused() -> None:
    with pytest.raises(SnapshotCodecError, match="not a BookSnapshot"):
        decode_snapshot(b"\xff\xff\xff")


def test_an_unknown_enum_or_a_short_hash_is_refused(driver: Driver) -> None:
    message = snapshot_to_pb(driver.book.snapshot())
    message.bids[0].side = 7  # type: ignore[assignment]
    with pytest.raises(SnapshotCodecError, match="unknown Side 7"):
        snapshot_from_pb(message)

    message = snapshot_to_pb(driver.book.snapshot())
    message.hash = b"short"
    with pytest.raises(SnapshotCodecError, match="32 bytes"):
        snapshot_from_pb(message)


def _broken(snapshot: BookSnapshot, how: str) -> BookSnapshot:
    bid, ask = snapshot.bids[0], snapshot.asks[0]
    cases = {
        "symbol": lambda: dataclasses.replace(snapshot, symbol=ETH.symbol),
        "crossed": lambda: dataclasses.replace(
            snapshot, asks=(dataclasses.replace(ask, price=bid.price),)
        ),
        "duplicate": lambda: dataclasses.replace(
            snapshot, asks=(dataclasses.replace(ask, order_id=bid.order_id),)
        ),
        "wrong side": lambda: dataclasses.replace(snapshot, asks=(bid,), bids=(ask,)),
        "unsorted": lambda: dataclasses.replace(snapshot, bids=tuple(reversed(snapshot.bids))),
        "off tick": lambda: dataclasses.replace(
            snapshot, asks=(dataclasses.replace(ask, price=ask.price + 1),)
        ),
        "overfilled": lambda: dataclasses.replace(
            snapshot, asks=(dataclasses.replace(ask, remaining_quantity=ask.quantity + 1),)
        ),
        "hash": lambda: dataclasses.replace(snapshot, hash=b"x"),
        "counters": lambda: dataclasses.replace(snapshot, next_trade_id=0),
        "genesis": lambda: dataclasses.replace(snapshot, sequence=0),
        "client id": lambda: dataclasses.replace(
            snapshot,
            bids=(
                *snapshot.bids,
                dataclasses.replace(snapshot.bids[0], order_id=OrderId(77), price=usdt(50)),
            ),
        ),
    }
    return cases[how]()


@pytest.mark.parametrize(
    "how",
    [
        "symbol",
        "crossed",
        "duplicate",
        "wrong side",
        "unsorted",
        "off tick",
        "overfilled",
        "hash",
        "counters",
        "genesis",
        "client id",
    ],
)
def test_an_inconsistent_snapshot_is_refused(driver: Driver, how: str) -> None:
    with pytest.raises(SnapshotError):
        OrderBook.restore(MARKET, _broken(driver.book.snapshot(), how))
