"""The stream iterators: resubscribe after a cut, resync after a gap, give up when told to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from ordermesh.client import BookDelta, BookSnapshot, StreamGap, TradeEvent, errors
from ordermesh.client.retry import RetryPolicy
from ordermesh.client.streams import market_events, order_updates
from ordermesh.v1 import common_pb2 as common
from ordermesh.v1 import gateway_pb2 as pb

Message = pb.StreamMarketDataResponse


class Call:
    """A server stream that sends `messages` and then ends with `code` (None: cleanly)."""

    def __init__(self, messages: list[Message], code: grpc.StatusCode | None = None) -> None:
        self.messages = messages
        self.code = code
        self.cancelled = False

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    async def _run(self) -> AsyncIterator[Message]:
        for message in self.messages:
            yield message
        if self.code is not None:
            raise AioRpcError(self.code, Metadata(), Metadata(), f"ended {self.code.name}")

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._run()


class Server:
    """Hands out the prepared calls in turn."""

    def __init__(self, *calls: Call) -> None:
        self.calls = list(calls)
        self.opened: list[Call] = []

    def __call__(self) -> Call:
        call = self.calls.pop(0)
        self.opened.append(call)
        return call


def snapshot(sequence: int) -> Message:
    book = pb.GetOrderBookResponse(symbol="S", sequence=sequence)
    return Message(symbol="S", sequence=sequence, snapshot=book)


def delta(sequence: int, price: str = "1") -> Message:
    level = pb.BookDelta(side=common.SIDE_BUY, price=price, quantity="1", order_count=1)
    return Message(symbol="S", sequence=sequence, delta=level)


def trade(sequence: int) -> Message:
    public = pb.PublicTrade(
        symbol="S",
        trade_id=1,
        price="1",
        quantity="1",
        quote_quantity="1",
        taker_side=common.SIDE_SELL,
    )
    return Message(symbol="S", sequence=sequence, trade=public)


def empty(sequence: int) -> Message:
    return Message(symbol="S", sequence=sequence)


POLICY = RetryPolicy(retries=2, backoff=0)


async def collect(iterator: AsyncIterator[object], count: int) -> list[object]:
    got = []
    async for item in iterator:
        got.append(item)
        if len(got) == count:
            break
    return got


def kinds(events: list[object]) -> list[tuple[str, int]]:
    return [(type(e).__name__, e.sequence) for e in events]  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_one_sequence_per_event_and_silent_events_keep_the_count() -> None:
    server = Server(Call([snapshot(4), trade(5), delta(5), delta(5, "2"), empty(6), delta(7)]))
    events = await collect(market_events(server, POLICY), 6)
    assert kinds(events) == [
        ("BookSnapshot", 4),
        ("TradeEvent", 5),
        ("BookDelta", 5),
        ("BookDelta", 5),
        ("BookUnchanged", 6),
        ("BookDelta", 7),
    ]
    assert isinstance(events[1], TradeEvent)


@pytest.mark.asyncio
async def test_a_gap_resubscribes_and_yields_a_new_snapshot() -> None:
    server = Server(Call([snapshot(4), delta(5), delta(7)]), Call([snapshot(9), delta(10)]))
    events = await collect(market_events(server, POLICY), 4)
    assert kinds(events) == [
        ("BookSnapshot", 4),
        ("BookDelta", 5),
        ("BookSnapshot", 9),
        ("BookDelta", 10),
    ]
    assert server.opened[0].cancelled


@pytest.mark.asyncio
async def test_unavailable_and_aborted_resubscribe() -> None:
    server = Server(
        Call([snapshot(1)], grpc.StatusCode.UNAVAILABLE),
        Call([snapshot(3)], grpc.StatusCode.ABORTED),
        Call([snapshot(8), delta(9)], grpc.StatusCode.RESOURCE_EXHAUSTED),
        Call([snapshot(9)]),
    )
    events = await collect(market_events(server, POLICY), 10)
    assert [e.sequence for e in events if isinstance(e, BookSnapshot)] == [1, 3, 8, 9]
    assert [e.sequence for e in events if isinstance(e, BookDelta)] == [9]


@pytest.mark.asyncio
async def test_gaps_that_keep_coming_back_raise_stream_gap() -> None:
    server = Server(*[Call([snapshot(1), delta(3)]) for _ in range(3)])
    with pytest.raises(StreamGap) as raised:
        await collect(market_events(server, POLICY), 100)
    assert raised.value.reason == "SEQUENCE_GAP"
    assert "3 subscriptions in a row" in raised.value.message


@pytest.mark.asyncio
async def test_failures_without_progress_give_up_with_the_last_error() -> None:
    server = Server(*[Call([], grpc.StatusCode.UNAVAILABLE) for _ in range(3)])
    with pytest.raises(errors.Unavailable):
        await collect(market_events(server, POLICY), 1)
    assert len(server.opened) == 3


@pytest.mark.asyncio
async def test_a_refusal_ends_the_stream_at_once() -> None:
    server = Server(Call([], grpc.StatusCode.INVALID_ARGUMENT))
    with pytest.raises(errors.InvalidArgument):
        await collect(market_events(server, POLICY), 1)


@pytest.mark.asyncio
async def test_a_clean_end_ends_the_iterator() -> None:
    server = Server(Call([snapshot(1)]))
    assert kinds(await collect(market_events(server, POLICY), 5)) == [("BookSnapshot", 1)]


@pytest.mark.asyncio
async def test_order_updates_resubscribe_after_a_cut() -> None:
    def update(order_id: int) -> pb.StreamOrderUpdatesResponse:
        order = pb.Order(
            order_id=order_id,
            side=common.SIDE_BUY,
            order_type=common.ORDER_TYPE_LIMIT,
            status=common.ORDER_STATUS_NEW,
            symbol="S",
        )
        return pb.StreamOrderUpdatesResponse(order=order, sequence=order_id)

    server = Server(
        Call([update(1)], grpc.StatusCode.UNAVAILABLE),  # type: ignore[list-item]
        Call([update(2)], grpc.StatusCode.RESOURCE_EXHAUSTED),  # type: ignore[list-item]
        Call([update(3)]),  # type: ignore[list-item]
    )
    got = await collect(order_updates(server, POLICY), 5)  # type: ignore[arg-type]
    assert [u.order.order_id for u in got] == [1, 2, 3]  # type: ignore[attr-defined]
    assert [u.fill for u in got] == [None, None, None]  # type: ignore[attr-defined]
