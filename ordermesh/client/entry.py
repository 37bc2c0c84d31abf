"""OrderEntrySession: many places and cancels on one OrderEntry stream, each awaited alone.

Every request waits for room in the window (at most `window` unanswered), is written to the
stream, and waits for its own answer. The gateway answers each request with the request's
own client_order_id (empty for a cancel by order_id), so the session keeps at most one
request per client_order_id unanswered: a second one with the same id waits for the first
(cancels by order_id therefore go one at a time; cancel by client_order_id to pipeline
them). If the stream breaks with UNAVAILABLE or RESOURCE_EXHAUSTED, the session opens a
new one and writes every unanswered request again, unchanged: a place carries the same
client_order_id, so the gateway answers with the original order rather than a second one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import grpc

from ordermesh.client import decode, requests
from ordermesh.client.convert import Amount
from ordermesh.client.errors import (
    ClientError,
    Unavailable,
    from_rpc_error,
    make_error,
    status_code,
)
from ordermesh.client.retry import RetryPolicy
from ordermesh.client.streams import RESUBSCRIBE
from ordermesh.client.types import (
    CancelResult,
    OrderType,
    PlaceResult,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Wait,
)
from ordermesh.v1 import gateway_pb2 as pb

EntryCall = grpc.aio.StreamStreamCall[pb.OrderEntryRequest, pb.OrderEntryResponse]


@dataclass(slots=True)
class _Pending:
    request: pb.OrderEntryRequest
    answer: asyncio.Future[pb.OrderEntryResponse]


class OrderEntrySession:
    """An open OrderEntry stream; made by `AsyncClient.order_entry`, used with `async with`.

    `place` and `cancel` may be called from many tasks at once (e.g. `asyncio.gather`);
    each returns its own answer or raises its own `ClientError`.
    """

    def __init__(
        self,
        open_call: Callable[[], EntryCall],
        window: int,
        policy: RetryPolicy,
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, was {window}")
        self._open_call = open_call
        self._room = asyncio.Semaphore(window)
        self._policy = policy
        self._jitter = jitter
        self._pending: dict[str, _Pending] = {}
        """Unanswered requests by the client_order_id their answer will carry."""
        self._write_lock = asyncio.Lock()
        self._call: EntryCall | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failure: ClientError | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        self._call = self._open_call()
        self._reader = asyncio.create_task(self._read(), name="ordermesh order entry")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def unanswered(self) -> int:
        """Requests written and not answered yet."""
        return len(self._pending)

    async def close(self) -> None:
        """End the stream; requests still unanswered fail with CANCELLED."""
        if self._closed:
            return
        self._closed = True
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._fail_all(ClientError(grpc.StatusCode.CANCELLED, "the order entry session closed"))

    async def place(
        self,
        symbol: str,
        side: Side,
        quantity: Amount | None = None,
        price: Amount | None = None,
        *,
        order_type: OrderType | None = None,
        time_in_force: TimeInForce | None = None,
        quote_quantity: Amount | None = None,
        post_only: bool = False,
        self_trade_prevention: SelfTradePrevention | None = None,
        client_order_id: str | None = None,
        wait: Wait = "ack",
    ) -> PlaceResult:
        """Place an order on the stream and wait for its answer; as `AsyncClient.place_order`."""
        request = requests.place_request(
            symbol,
            side,
            quantity,
            price,
            order_type=order_type,
            time_in_force=time_in_force,
            quote_quantity=quote_quantity,
            post_only=post_only,
            self_trade_prevention=self_trade_prevention,
            client_order_id=client_order_id,
            wait=wait,
        )
        answer = await self._submit(request.client_order_id, pb.OrderEntryRequest(place=request))
        return decode.place_result(answer.placed)

    async def cancel(
        self,
        symbol: str,
        order_id: int | None = None,
        *,
        client_order_id: str | None = None,
        wait: Wait = "ack",
    ) -> CancelResult:
        """Cancel an order on the stream and wait for its answer; as `AsyncClient.cancel_order`."""
        request = requests.cancel_request(
            symbol, order_id, client_order_id=client_order_id, wait=wait
        )
        key = "" if request.order_id else request.client_order_id  # what the answer carries
        answer = await self._submit(key, pb.OrderEntryRequest(cancel=request))
        return decode.cancel_result(answer.canceled)

    async def _submit(self, key: str, request: pb.OrderEntryRequest) -> pb.OrderEntryResponse:
        if self._call is None or self._closed:
            raise RuntimeError("use the session inside `async with client.order_entry()`")
        async with self._room:
            while key in self._pending:  # its answer would be indistinguishable from ours
                await asyncio.wait([self._pending[key].answer])
            if self._failure is not None:
                raise self._failure
            pending = _Pending(request, asyncio.get_running_loop().create_future())
            self._pending[key] = pending
            try:
                await self._write(request)
                return await pending.answer
            finally:
                if self._pending.get(key) is pending:
                    del self._pending[key]

    async def _write(self, request: pb.OrderEntryRequest) -> None:
        async with self._write_lock:
            call = self._call
            if call is None:
                return
            try:
                await call.write(request)
            except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                return  # the stream broke: the reader reconnects and writes it again

    async def _read(self) -> None:
        failures = 0
        while True:
            call = self._call
            if call is None:  # closed
                return
            try:
                async for response in call:
                    failures = 0
                    self._dispatch(response)
                error: ClientError = Unavailable(
                    grpc.StatusCode.UNAVAILABLE, "the gateway ended the order entry stream"
                )
            except grpc.RpcError as e:
                error = from_rpc_error(e)
            if error.code not in RESUBSCRIBE or failures >= self._policy.retries:
                self._failure = error
                self._fail_all(error)
                return
            await asyncio.sleep(self._policy.delay(failures, self._jitter()))
            failures += 1
            await self._reconnect()

    async def _reconnect(self) -> None:
        async with self._write_lock:
            self._call = self._open_call()
            for pending in list(self._pending.values()):
                try:
                    await self._call.write(pending.request)
                except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                    return  # broken again: the reader sees it and tries once more

    def _dispatch(self, response: pb.OrderEntryResponse) -> None:
        pending = self._pending.get(response.client_order_id)
        if pending is None or pending.answer.done():
            return  # the answer to a request written again after a reconnect: already had
        if response.WhichOneof("response") == "error":
            error = response.error
            pending.answer.set_exception(
                make_error(status_code(error.code), error.message, reason=error.reason)
            )
        else:
            pending.answer.set_result(response)

    def _fail_all(self, error: ClientError) -> None:
        for pending in self._pending.values():
            if not pending.answer.done():
                pending.answer.set_exception(error)
