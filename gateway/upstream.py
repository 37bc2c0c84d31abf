"""gRPC channels to ubscore, matcher and settlement: deadlines, readiness, errors passed on.

An upstream refusal reaches the client as it was: the same status code, message and
google.rpc.ErrorInfo (INSUFFICIENT_FUNDS stays FAILED_PRECONDITION with its reason, never
UNKNOWN). What the gateway adds is for failures without a reason of their own: an upstream
that cannot be reached is UNAVAILABLE (reason UNAVAILABLE: safe to retry with the same
client_order_id or reference_id), one that does not answer in time is DEADLINE_EXCEEDED
(same reason: the request may or may not have been carried out; a retry with the same
ids is deduplicated).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ordermesh.grpcx import errors
from ordermesh.model import RejectReason
from ordermesh.v1 import matcher_pb2_grpc, settlement_pb2_grpc, ubscore_pb2, ubscore_pb2_grpc

log = structlog.get_logger(__name__)

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_STATUS_DETAILS: Final = "grpc-status-details-bin"
_UNAVAILABLE: Final = RejectReason.UNAVAILABLE
_UNAVAILABLE_CODE: Final = grpc.StatusCode.UNAVAILABLE
_RETRIABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_STATUS_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}
_CHANNEL_OPTIONS: Final[Sequence[tuple[str, Any]]] = (
    # A channel left idle would report IDLE and flap readiness; the probe keeps it busy
    # enough, and reconnects are driven by the probe instead.
    ("grpc.client_idle_timeout_ms", 24 * 3600 * 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)


class UpstreamError(Exception):
    """An upstream call failed; `status` is what the client's call ends with."""

    def __init__(self, status: grpc.Status, service: str, reason: str) -> None:
        super().__init__(f"{service}: {status.code.name} {reason}: {status.details}")
        self.status = status
        self.service = service
        self.reason = reason
        """The ErrorInfo reason the client gets, or the status code's name without one."""


def rich_status(code: grpc.StatusCode, reason: RejectReason, message: str) -> grpc.Status:
    """A status with `code` (not necessarily `reason`'s usual one) and an ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=errors.reason_name(reason), domain=errors.DOMAIN)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def _details_of(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except ValueError:
                return None
    return None


def translate(service: str, error: grpc.aio.AioRpcError, timeout: float) -> UpstreamError:
    """What the client is told when a call to `service` failed with `error`."""
    return _failure(service, error.code(), error.details(), _details_of(error), timeout)


def refused(service: str, status: bytes, timeout: float) -> UpstreamError:
    """What the client is told for a refusal carried as a serialized google.rpc.Status.

    It is what `translate` makes of a unary call that ended with that status (a batched
    request's refusal reads exactly like the unary call's).
    """
    try:
        details = status_pb2.Status.FromString(status)
    except ValueError:
        details = status_pb2.Status(code=code_pb2.UNKNOWN, message="unreadable refusal")
    code = _STATUS_CODES.get(details.code, grpc.StatusCode.UNKNOWN)
    return _failure(service, code, details.message, details, timeout)


def _failure(
    service: str,
    code: grpc.StatusCode,
    message: str | None,
    details: status_pb2.Status | None,
    timeout: float,
) -> UpstreamError:
    info = errors.error_info(details)
    if details is not None and info is not None and info.domain == errors.DOMAIN:
        passed: grpc.Status = rpc_status.to_status(details)
        return UpstreamError(passed, service, info.reason)
    if code in _RETRIABLE:
        # CANCELLED from the upstream is its server stopping with the call in hand (a call
        # the gateway gives up on ends in asyncio.CancelledError, never here): the outcome
        # is unknown, which is exactly what UNAVAILABLE tells the client.
        text = (
            f"{service} is unavailable ({message}); safe to retry with the same"
            " client_order_id or reference_id"
        )
        status = rich_status(_UNAVAILABLE_CODE, _UNAVAILABLE, text)
        return UpstreamError(status, service, _UNAVAILABLE.name)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return deadline_exceeded(service, timeout)
    log.warning("upstream call failed", service=service, code=code.name, details=message)
    plain = status_pb2.Status(
        code=getattr(code_pb2, code.name, code_pb2.UNKNOWN),
        message=f"{service}: {message}",
    )
    converted: grpc.Status = rpc_status.to_status(plain)
    return UpstreamError(converted, service, code.name)


def deadline_exceeded(service: str, timeout: float) -> UpstreamError:
    """`service` did not answer within `timeout` seconds."""
    text = (
        f"{service} did not answer within {timeout:g} s: the request may or may not have"
        " been carried out; retry with the same client_order_id or reference_id (it is"
        " deduplicated), or look the order up"
    )
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    return UpstreamError(rich_status(code, _UNAVAILABLE, text), service, _UNAVAILABLE.name)


@dataclass(frozen=True, slots=True)
class UpstreamAddresses:
    """Where the three internal services listen, host:port each."""

    ubscore: str
    matcher: str
    settlement: str


@dataclass(slots=True)
class _Waiting:
    """One Reserve waiting for its batch's answer."""

    request: ubscore_pb2.UBSCoreReserveRequest
    timeout: float
    due: float
    """Loop time by which it must be answered."""
    answer: asyncio.Future[ubscore_pb2.UBSCoreReserveResponse]


class ReserveBatcher:
    """Concurrent Reserve calls coalesced into ReserveBatch calls, each answered as its own.

    No request waits for a timer. A batch leaves at once when none is on its way; while one
    is, the requests queue and leave together when it returns (up to `most` a batch), or
    sooner in a batch alongside as soon as `fill` of them wait (up to `in_flight` batches
    on their way). So a lone order costs one call; under load each call carries many orders
    (the batches size themselves to the load: a call costs far more than an order in it),
    and when ubscore's answers take long (a Kafka transaction), full batches overlap.

    Should ubscore not know ReserveBatch (UNIMPLEMENTED: an older version), the batch is
    sent again one unary Reserve per request, and so is everything after it.

    Args:
        upstream: the channels (ubscore's stub).
        most: the most requests in one batch (ubscore takes up to 4096).
        fill: how many waiting requests make a batch leave while others are on their way.
        in_flight: the most batches on their way at once.
    """

    def __init__(
        self, upstream: Upstreams, most: int = 512, fill: int = 64, in_flight: int = 16
    ) -> None:
        self._upstream = upstream
        self._most = most
        self._fill = fill
        self._in_flight = in_flight
        self._queue: deque[_Waiting] = deque()
        self._sending: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self._unary = False
        self._closed = False

    @property
    def waiting(self) -> int:
        """Requests queued for the next batch (their callers may have gone meanwhile)."""
        return len(self._queue)

    async def reserve(
        self,
        request: ubscore_pb2.UBSCoreReserveRequest,
        timeout: float,  # noqa: ASYNC109 - the call's own deadline, as grpc's timeout=
    ) -> ubscore_pb2.UBSCoreReserveResponse:
        """Reserve within `timeout` s, batched with the requests around it.

        Raises:
            UpstreamError: as the unary Reserve would have failed.
        """
        if self._closed:
            raise _failure("ubscore", _UNAVAILABLE_CODE, "the gateway is shutting down", None, 0)
        if self._unary:
            ubscore = self._upstream.ubscore
            return await self._upstream.call("ubscore", ubscore.Reserve, request, within=timeout)
        loop = asyncio.get_running_loop()
        due = loop.time() + timeout
        waiting = _Waiting(request, timeout, due, loop.create_future())
        self._queue.append(waiting)
        self._kick()
        expiry = loop.call_at(due, _expire, waiting)
        try:
            return await waiting.answer
        finally:
            expiry.cancel()
            # Gone (deadline, cancel) before it was sent: it is not sent at all.
            waiting.answer.cancel()

    def _kick(self) -> None:
        """Send a batch soon if one is due: after the requests of this loop turn queued."""
        if self._scheduled or self._closed or not self._queue:
            return
        due = not self._sending or len(self._queue) >= self._fill
        if due and len(self._sending) < self._in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send_next)

    def _send_next(self) -> None:
        self._scheduled = False
        now = asyncio.get_running_loop().time()
        batch: list[_Waiting] = []
        while self._queue and len(batch) < self._most:
            waiting = self._queue.popleft()
            if waiting.answer.done():
                continue  # its caller is gone
            if waiting.due <= now:
                _expire(waiting)
                continue
            batch.append(waiting)
        if batch:
            task = asyncio.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sent)
        self._kick()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled():
            task.exception()  # every failure was handed to the batch's callers
        self._kick()

    async def _send(self, batch: list[_Waiting]) -> None:
        now = asyncio.get_running_loop().time()
        timeout = max(waiting.due for waiting in batch) - now
        request = ubscore_pb2.UBSCoreReserveBatchRequest(requests=[w.request for w in batch])
        try:
            answer = await self._upstream.ubscore.ReserveBatch(request, timeout=max(timeout, 0.0))
        except grpc.aio.AioRpcError as e:
            if e.code() is grpc.StatusCode.UNIMPLEMENTED:
                self._unary = True
                log.warning("ubscore has no ReserveBatch; reserving one call per order")
                await asyncio.gather(*(self._one_by_one(w) for w in batch))
                return
            for waiting in batch:
                _settle(waiting, error=translate("ubscore", e, waiting.timeout))
            return
        except asyncio.CancelledError:
            # The channel closed under the call: its callers end as a unary call's would.
            for waiting in batch:
                waiting.answer.cancel()
            raise
        except Exception as e:  # the call could not be made at all (a closed channel)
            log.warning("ReserveBatch could not be sent", error=repr(e), orders=len(batch))
            _unavailable(batch, repr(e))
            return
        _answer(batch, answer)

    async def _one_by_one(self, waiting: _Waiting) -> None:
        ubscore = self._upstream.ubscore
        within = waiting.due - asyncio.get_running_loop().time()
        try:
            response = await self._upstream.call(
                "ubscore", ubscore.Reserve, waiting.request, within=within
            )
        except UpstreamError as e:
            _settle(waiting, error=e)
        else:
            _settle(waiting, response)

    async def close(self) -> None:
        """Refuse what is queued (UNAVAILABLE) and from now on; wait for the batches sent.

        Close the channel first: the calls on their way then end at once, and their callers
        are cancelled, as the callers of unary calls on that channel are.
        """
        self._closed = True
        _unavailable(list(self._queue), "the gateway is shutting down")
        self._queue.clear()
        if self._sending:
            await asyncio.wait(set(self._sending))


def _answer(batch: list[_Waiting], answer: ubscore_pb2.UBSCoreReserveBatchResponse) -> None:
    """Hand each caller of `batch` its own result."""
    if len(answer.results) != len(batch):
        mismatch = _mismatch(len(answer.results), len(batch))
        for waiting in batch:
            _settle(waiting, error=mismatch)
        return
    for waiting, result in zip(batch, answer.results, strict=True):
        if result.WhichOneof("result") == "reserved":
            _settle(waiting, result.reserved)
        else:
            _settle(waiting, error=refused("ubscore", result.status, waiting.timeout))


def _unavailable(batch: list[_Waiting], why: str) -> None:
    """Answer each of `batch` as a unary call to an ubscore that cannot be reached."""
    for waiting in batch:
        _settle(waiting, error=_failure("ubscore", _UNAVAILABLE_CODE, why, None, waiting.timeout))


def _expire(waiting: _Waiting) -> None:
    """The deadline of `waiting` passed: it fails as the unary call would have."""
    _settle(waiting, error=deadline_exceeded("ubscore", waiting.timeout))


def _settle(
    waiting: _Waiting,
    response: ubscore_pb2.UBSCoreReserveResponse | None = None,
    *,
    error: UpstreamError | None = None,
) -> None:
    """Hand a batch's answer to its caller, unless the caller is gone."""
    if waiting.answer.done():
        return
    if error is not None:
        waiting.answer.set_exception(error)
    else:
        waiting.answer.set_result(response)  # type: ignore[arg-type]  # one of the two is set


def _mismatch(results: int, requests: int) -> UpstreamError:
    message = f"ubscore: answered {results} results for {requests} requests"
    log.error("ReserveBatch answer does not match its request", results=results, requests=requests)
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message=message)
    )
    return UpstreamError(status, "ubscore", grpc.StatusCode.INTERNAL.name)


class Upstreams:
    """One channel and stub per internal service, opened by `open`, closed by `close`.

    Args:
        addresses: host:port of each service.
        timeout: the longest any one call may take, in seconds.
    """

    def __init__(self, addresses: UpstreamAddresses, timeout: float) -> None:
        self.addresses = addresses
        self.timeout = timeout
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._ubscore: ubscore_pb2_grpc.UBSCoreAsyncStub | None = None
        self._matcher: matcher_pb2_grpc.MatcherAsyncStub | None = None
        self._settlement: settlement_pb2_grpc.SettlementAsyncStub | None = None
        self._reserves = ReserveBatcher(self)

    def open(self) -> None:
        """Create the channels (they connect on first use, or when probed)."""
        for name, address in (
            ("ubscore", self.addresses.ubscore),
            ("matcher", self.addresses.matcher),
            ("settlement", self.addresses.settlement),
        ):
            self._channels[name] = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._ubscore = ubscore_pb2_grpc.UBSCoreStub(self._channels["ubscore"])
        self._matcher = matcher_pb2_grpc.MatcherStub(self._channels["matcher"])
        self._settlement = settlement_pb2_grpc.SettlementStub(self._channels["settlement"])

    @property
    def ubscore(self) -> ubscore_pb2_grpc.UBSCoreAsyncStub:
        """The balance authority."""
        if self._ubscore is None:
            raise RuntimeError("upstream channels are not open")
        return self._ubscore

    @property
    def matcher(self) -> matcher_pb2_grpc.MatcherAsyncStub:
        """The books."""
        if self._matcher is None:
            raise RuntimeError("upstream channels are not open")
        return self._matcher

    @property
    def settlement(self) -> settlement_pb2_grpc.SettlementAsyncStub:
        """The system of record."""
        if self._settlement is None:
            raise RuntimeError("upstream channels are not open")
        return self._settlement

    async def call(
        self,
        service: str,
        method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        *,
        within: float | None = None,
    ) -> _Resp:
        """Call `method` of `service` with the upstream deadline (or `within`, if sooner).

        Raises:
            UpstreamError: the call failed; its status is what the client gets.
        """
        timeout = self.deadline(within)
        try:
            response: _Resp = await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise translate(service, e, timeout) from e
        return response

    def deadline(self, within: float | None) -> float:
        """The timeout of a call: the upstream deadline, or `within` if sooner (never < 0)."""
        return self.timeout if within is None else max(min(self.timeout, within), 0.0)

    async def reserve(
        self, request: ubscore_pb2.UBSCoreReserveRequest, *, within: float | None = None
    ) -> ubscore_pb2.UBSCoreReserveResponse:
        """Reserve one order at ubscore, in one call with the orders reserved meanwhile.

        It answers and fails as `call("ubscore", ubscore.Reserve, request, within=within)`
        does: the same response, the same UpstreamError for a refusal, an unreachable
        ubscore or a missed deadline; only the gRPC call is shared (ReserveBatch).

        Raises:
            UpstreamError: the reservation failed; its status is what the client gets.
        """
        return await self._reserves.reserve(request, self.deadline(within))

    async def connected(self, within: float) -> dict[str, bool]:
        """Whether each channel is connected, waiting up to `within` s for those that are not."""

        async def ready(channel: grpc.aio.Channel) -> bool:
            if channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
                return True
            try:
                async with asyncio.timeout(within):
                    await channel.channel_ready()
            except TimeoutError:
                return False
            return True

        names = list(self._channels)
        states = await asyncio.gather(*(ready(self._channels[name]) for name in names))
        return dict(zip(names, states, strict=True))

    async def close(self) -> None:
        """Close the channels (calls in flight are cancelled)."""
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()
        await self._reserves.close()
