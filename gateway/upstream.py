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
from ordermesh.v1 import matcher_pb2_grpc, settlement_pb2_grpc, ubscore_pb2_grpc

log = structlog.get_logger(__name__)

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_STATUS_DETAILS: Final = "grpc-status-details-bin"
_UNAVAILABLE: Final = RejectReason.UNAVAILABLE
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
    code = error.code()
    details = _details_of(error)
    info = errors.error_info(details)
    if details is not None and info is not None and info.domain == errors.DOMAIN:
        passed: grpc.Status = rpc_status.to_status(details)
        return UpstreamError(passed, service, info.reason)
    if code is grpc.StatusCode.UNAVAILABLE:
        message = (
            f"{service} is unavailable ({error.details()}); safe to retry with the same"
            " client_order_id or reference_id"
        )
        return UpstreamError(rich_status(code, _UNAVAILABLE, message), service, _UNAVAILABLE.name)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        message = (
            f"{service} did not answer within {timeout:g} s: the request may or may not have"
            " been carried out; retry with the same client_order_id or reference_id (it is"
            " deduplicated), or look the order up"
        )
        return UpstreamError(rich_status(code, _UNAVAILABLE, message), service, _UNAVAILABLE.name)
    log.warning("upstream call failed", service=service, code=code.name, details=error.details())
    plain = status_pb2.Status(
        code=getattr(code_pb2, code.name, code_pb2.UNKNOWN),
        message=f"{service}: {error.details()}",
    )
    converted: grpc.Status = rpc_status.to_status(plain)
    return UpstreamError(converted, service, code.name)


@dataclass(frozen=True, slots=True)
class UpstreamAddresses:
    """Where the three internal services listen, host:port each."""

    ubscore: str
    matcher: str
    settlement: str


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
        timeout = self.timeout if within is None else max(min(self.timeout, within), 0.0)
        try:
            response: _Resp = await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise translate(service, e, timeout) from e
        return response

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
