"""OrderEntry: many PlaceOrder and CancelOrder requests on one stream, answered on it.

The caller is authenticated once, from the stream's metadata; each request then takes a
token of the account's rate limit and goes through the same `OrderDesk.place`/`cancel` as
the unary calls. Each is answered by an OrderEntryResponse carrying its client_order_id:
`placed`, `canceled`, or `error` with the code, ErrorInfo reason and message the unary call
would have ended with; the stream goes on after an error.

Flow control: at most `window` requests are in flight on one stream, counted from the
moment a request is read until its answer has been handed to gRPC for sending. While the
window is full the stream stops reading requests, so HTTP/2 flow control holds the client's
sends back; answers go through a queue of the same bound, so a client that stops reading
answers stops the stream from taking requests, and nothing grows without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from gateway.auth import Principal
from gateway.orders import Deadline, OrderDesk
from gateway.upstream import UpstreamError
from ordermesh.grpcx import errors
from ordermesh.model import OrdermeshError, RejectReason
from ordermesh.v1 import gateway_pb2

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_NOTHING: Final = (
    "an OrderEntryRequest must hold a place or a cancel request; this one held neither"
)


@dataclass(slots=True)
class EntryWindow:
    """Requests in flight on every OrderEntry stream, and the most there ever were on one."""

    in_flight: int = 0
    """Read and not yet answered, over all streams."""
    peak: int = 0
    """The most in flight on any one stream since start."""
    streams: dict[int, int] = field(default_factory=dict)
    """In flight per stream (by the stream's id)."""

    def take(self, stream: int) -> None:
        """One more request in flight on `stream`."""
        self.in_flight += 1
        count = self.streams[stream] = self.streams.get(stream, 0) + 1
        self.peak = max(self.peak, count)

    def give_back(self, stream: int, count: int = 1) -> None:
        """`count` requests of `stream` answered (or dropped)."""
        self.in_flight -= count
        left = self.streams.get(stream, 0) - count
        if left > 0:
            self.streams[stream] = left
        else:
            self.streams.pop(stream, None)


def entry_error(
    client_order_id: str, error: OrdermeshError | UpstreamError
) -> gateway_pb2.OrderEntryResponse:
    """The answer to a request refused as a unary call would have been."""
    if isinstance(error, OrdermeshError):
        code = errors.status_code(error.reason)
        reason = errors.reason_name(error.reason)
        message = error.message
    else:
        code = error.status.code
        reason = error.reason
        message = error.status.details
    return gateway_pb2.OrderEntryResponse(
        client_order_id=client_order_id,
        error=gateway_pb2.OrderEntryError(code=code.value[0], reason=reason, message=message),
    )


class OrderEntrySession:
    """One OrderEntry stream of an authenticated caller.

    Args:
        desk: the order desk the unary calls use.
        principal: the caller.
        limit: takes one rate limit token (raises OrdermeshError RATE_LIMITED).
        window: the most requests in flight.
        counts: the gateway's in-flight counts (for metrics and tests).
    """

    def __init__(
        self,
        desk: OrderDesk,
        principal: Principal,
        limit: Callable[[], None],
        window: int,
        counts: EntryWindow,
    ) -> None:
        self._desk = desk
        self._principal = principal
        self._limit = limit
        self._window = window
        self._counts = counts
        self._slots = asyncio.Semaphore(window)
        self._answers: asyncio.Queue[gateway_pb2.OrderEntryResponse | None] = asyncio.Queue(
            maxsize=window
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    async def run(
        self, requests: AsyncIterator[gateway_pb2.OrderEntryRequest]
    ) -> AsyncIterator[gateway_pb2.OrderEntryResponse]:
        """Answer every request; end once the client has closed its side and all are answered.

        Raises:
            Exception: a failure that is not a refusal (a bug): the stream ends with it.
        """
        stream = id(self)
        reader = asyncio.create_task(self._read(requests, stream))
        try:
            while True:
                answer = await self._answers.get()
                if self._failure is not None:
                    raise self._failure
                if answer is None:
                    break
                yield answer  # returns once gRPC has taken it: the slot is free after that
                self._slots.release()
                self._counts.give_back(stream)
        finally:
            reader.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(reader, *self._tasks, return_exceptions=True)
            self._counts.give_back(stream, self._counts.streams.get(stream, 0))

    async def _read(
        self, requests: AsyncIterator[gateway_pb2.OrderEntryRequest], stream: int
    ) -> None:
        try:
            async for request in requests:
                await self._slots.acquire()  # a full window stops reading: HTTP/2 holds the client
                self._counts.take(stream)
                task = asyncio.create_task(self._answer(request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            while self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        except Exception as e:
            self._failure = e
        await self._answers.put(None)

    async def _answer(self, request: gateway_pb2.OrderEntryRequest) -> None:
        try:
            answer = await self._decide(request)
        except Exception as e:
            self._failure = e
            answer = entry_error(
                _client_order_id(request),
                OrdermeshError(RejectReason.UNSPECIFIED, f"internal error: {e!r}"),
            )
        await self._answers.put(answer)

    async def _decide(
        self, request: gateway_pb2.OrderEntryRequest
    ) -> gateway_pb2.OrderEntryResponse:
        client_order_id = _client_order_id(request)
        kind = request.WhichOneof("request")
        try:
            self._limit()
            if kind == "place":
                placed = await self._call(self._desk.place, request.place)
                return gateway_pb2.OrderEntryResponse(
                    client_order_id=client_order_id, placed=placed
                )
            if kind == "cancel":
                canceled = await self._call(self._desk.cancel, request.cancel)
                return gateway_pb2.OrderEntryResponse(
                    client_order_id=client_order_id, canceled=canceled
                )
            raise OrdermeshError(RejectReason.INVALID_ARGUMENT, _NOTHING, field="request")
        except (OrdermeshError, UpstreamError) as e:
            return entry_error(client_order_id, e)

    async def _call(
        self, method: Callable[[Principal, _Req, Deadline], Awaitable[_Resp]], request: _Req
    ) -> _Resp:
        return await method(self._principal, request, Deadline(None))


def _client_order_id(request: gateway_pb2.OrderEntryRequest) -> str:
    kind = request.WhichOneof("request")
    if kind == "place":
        return request.place.client_order_id
    if kind == "cancel":
        return request.cancel.client_order_id
    return ""
