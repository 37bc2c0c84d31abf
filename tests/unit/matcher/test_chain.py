"""The canonical event bytes, the per-command hash link, and its verification."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from matcher.core import (
    GENESIS_HASH,
    ChainError,
    ChainVerifier,
    OrderBook,
    command_hash,
    event_bytes,
    verify_chain,
)
from matcher.core import chain as chain_module
from ordermesh.events import EngineEvent, OrderDone, TradeExecuted
from ordermesh.model import AccountId, OrderId, OrderStatus, RejectReason, Side, Symbol, TradeId
from tests.unit.matcher.helpers import BUY, SELL, SYMBOL, Driver, btc, limit, order_done, usdt
from tests.unit.matcher.streams import seeded_stream


def _u(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big", signed=False)


def _i(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


def _envelope(kind: int, sequence: int, offset: int, timestamp: int) -> bytes:
    return bytes([kind]) + _u(8, 2) + b"BTC-USDT" + _u(sequence, 8) + _i(offset) + _i(timestamp)


def test_trade_bytes_follow_the_documented_layout() -> None:
    trade = TradeExecuted(
        trade_id=TradeId(3), maker_order_id=OrderId(10), taker_order_id=OrderId(11),
        maker_account_id=AccountId(20), taker_account_id=AccountId(21), taker_side=Side.SELL,
        price=5, quantity=6, quote_quantity=7, maker_fee=8, taker_fee=9,
    )  # fmt: skip
    event = EngineEvent(SYMBOL, 4, -1, 1_700_000_000_000_000_000, b"", trade)

    expected = (
        _envelope(2, 4, -1, 1_700_000_000_000_000_000)
        + b"".join(_u(v, 8) for v in (3, 10, 11, 20, 21))
        + _u(2, 1)
        + b"".join(_i(v) for v in (5, 6, 7, 8, 9))
    )
    assert event_bytes(event) == expected


def test_order_done_bytes_end_with_the_client_order_id() -> None:
    done = order_done(
        10, OrderStatus.EXPIRED, RejectReason.SELF_TRADE_PREVENTED, 1, 2, 3, side=SELL,
        price=4, account=20, client="ab€",
    )  # fmt: skip
    event = EngineEvent(SYMBOL, 1, 0, 0, b"", done)

    expected = (
        _envelope(3, 1, 0, 0)
        + _u(10, 8) + _u(20, 8) + _u(6, 1) + _u(405, 2)
        + _i(1) + _i(2) + _i(3) + _u(2, 1) + _i(4)
        + _u(5, 4) + "ab€".encode()
    )  # fmt: skip
    assert event_bytes(event) == expected


def test_each_command_links_all_its_events_to_the_previous_hash() -> None:
    driver = Driver()
    driver.send(limit(1, SELL, usdt(100), btc(1)))
    first_hash = driver.events[0].hash
    driver.send(limit(2, BUY, usdt(100), btc(1), account=2))
    taker_events = driver.events[1:]

    assert first_hash == hashlib.sha256(GENESIS_HASH + event_bytes(driver.events[0])).digest()
    link = hashlib.sha256(first_hash + b"".join(event_bytes(e) for e in taker_events)).digest()
    assert {e.hash for e in taker_events} == {link}
    assert command_hash(first_hash, taker_events) == link


def test_a_recorded_stream_keeps_its_golden_hash() -> None:
    # Pins the byte layout and the matching: a change here changes every replayed chain.
    book = OrderBook(Driver().book.market)
    for offset, command in enumerate(seeded_stream(7, 300)):
        book.apply(command, offset)

    assert (book.sequence, book.next_trade_id) == GOLDEN_COUNTS
    assert book.last_hash.hex() == GOLDEN_HASH


GOLDEN_COUNTS = (543, 88)
GOLDEN_HASH = "78421124e76ead9c9a148b86e3ab2fb171bf38073dead751e5e17d9de05a833d"


def _run(commands) -> list[EngineEvent]:
    driver = Driver()
    for command in commands:
        driver.send(command)
    return driver.events


@pytest.fixture(scope="module")
def events() -> list[EngineEvent]:
    return _run(seeded_stream(3, 200))


def test_the_book_output_verifies(events: list[EngineEvent]) -> None:
    assert verify_chain(events) == (events[-1].sequence, events[-1].hash)
    assert verify_chain([]) == (0, GENESIS_HASH)


def _multi(events: list[EngineEvent]) -> int:
    """The index of the first event of a command that caused three or more."""
    for i in range(len(events) - 2):
        if events[i].input_offset == events[i + 2].input_offset and (
            i == 0 or events[i - 1].input_offset != events[i].input_offset
        ):
            return i
    raise AssertionError("no command with three events in the stream")


def test_an_altered_value_is_caught(events: list[EngineEvent]) -> None:
    i = _multi(events) + 1
    body = events[i].body
    assert isinstance(body, TradeExecuted | OrderDone)
    altered = (
        dataclasses.replace(body, quantity=body.quantity + 1)
        if isinstance(body, TradeExecuted)
        else dataclasses.replace(body, filled_quantity=body.filled_quantity + 1)
    )
    forged = [*events[:i], dataclasses.replace(events[i], body=altered), *events[i + 1 :]]

    with pytest.raises(ChainError, match="offset"):
        verify_chain(forged)


def test_a_missing_event_is_a_gap(events: list[EngineEvent]) -> None:
    with pytest.raises(ChainError, match="sequence gap"):
        verify_chain(events[:5] + events[6:])


def test_a_missing_last_event_of_a_command_is_caught(events: list[EngineEvent]) -> None:
    i = _multi(events)
    with pytest.raises(ChainError, match="do not hash"):
        verify_chain(events[: i + 2])


def test_events_swapped_within_a_command_are_caught(events: list[EngineEvent]) -> None:
    i = _multi(events)
    a, b = events[i], events[i + 1]
    swapped = [
        *events[:i],
        dataclasses.replace(b, sequence=a.sequence),
        dataclasses.replace(a, sequence=b.sequence),
        *events[i + 2 :],
    ]

    with pytest.raises(ChainError):
        verify_chain(swapped)


def test_a_foreign_symbol_or_an_offset_going_back_is_caught(events: list[EngineEvent]) -> None:
    foreign = [events[0], dataclasses.replace(events[1], symbol=Symbol("ETH-USDT"))]
    with pytest.raises(ChainError, match="ETH-USDT"):
        verify_chain(foreign)

    first = events[0]
    again = dataclasses.replace(first, sequence=2, hash=command_hash(first.hash, []))
    with pytest.raises(ChainError, match="not after"):
        verify_chain([first, again])


def test_verification_continues_from_any_command_boundary(events: list[EngineEvent]) -> None:
    i = _multi(events)
    head, tail = events[:i], events[i:]

    sequence, digest = verify_chain(head)

    assert verify_chain(tail, digest, sequence) == (events[-1].sequence, events[-1].hash)
    with pytest.raises(ChainError):
        verify_chain(tail)  # not from the start


def test_the_streaming_verifier_says_when_each_command_is_complete(
    events: list[EngineEvent],
) -> None:
    verifier = ChainVerifier()
    closes = [verifier.add(event) for event in events]

    ends = [
        i == len(events) - 1 or events[i + 1].input_offset != event.input_offset
        for i, event in enumerate(events)
    ]
    assert closes == ends
    assert verifier.complete
    verifier.close()


def test_the_constructor_path_gives_the_same_events(monkeypatch: pytest.MonkeyPatch) -> None:
    commands = seeded_stream(5, 150)
    fast = _run(commands)

    monkeypatch.setattr(chain_module, "FAST", False)
    portable = _run(commands)

    assert portable == fast
    assert [type(e.body) for e in portable] == [type(e.body) for e in fast]
