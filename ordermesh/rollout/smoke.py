"""The smoke test of a candidate gateway: health, then real reads with a probe API key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh.rollout.machine import StepFailed
from ordermesh.v1 import gateway_pb2, gateway_pb2_grpc

GATEWAY_SERVICE: Final = "ordermesh.v1.Gateway"
API_KEY_HEADER: Final = "x-api-key"


@dataclass(frozen=True, slots=True)
class GrpcSmoke:
    """Calls a gateway the way a client would; each failure says which call and why."""

    api_key: str
    """A trader's key (its account need hold nothing): the reads are its own balances."""
    timeout: float = 5.0
    """Deadline of each call, in seconds."""

    def health(self, endpoint: str) -> None:
        """Overall and Gateway health must both say SERVING.

        Raises:
            StepFailed: a status other than SERVING, or the call failed.
        """
        with grpc.insecure_channel(endpoint) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
            for service in ("", GATEWAY_SERVICE):
                request = health_pb2.HealthCheckRequest(service=service)
                answer = self._call(f"Health/Check({service!r})", endpoint, stub.Check, request)
                if answer.status != health_pb2.HealthCheckResponse.SERVING:
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                    raise StepFailed(
                        f"health of {service or 'the server'} at {endpoint} is {status}"
                    )

    def read(self, endpoint: str) -> None:
        """ListSymbols, GetOrderBook of the first symbol (the matcher), GetBalances (ubscore).

        Raises:
            StepFailed: a call failed, or there is no symbol to read.
        """
        with grpc.insecure_channel(endpoint) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            symbols = self._call(
                "ListSymbols", endpoint, stub.ListSymbols, gateway_pb2.ListSymbolsRequest()
            ).symbols
            if not symbols:
                raise StepFailed(f"ListSymbols at {endpoint} returned no symbol")
            book = gateway_pb2.GetOrderBookRequest(symbol=symbols[0].symbol, depth=1)
            self._call("GetOrderBook", endpoint, stub.GetOrderBook, book)
            self._call("GetBalances", endpoint, stub.GetBalances, gateway_pb2.GetBalancesRequest())

    def _call(self, name: str, endpoint: str, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=((API_KEY_HEADER, self.api_key),))
        except grpc.RpcError as e:
            raise StepFailed(f"{name} at {endpoint} failed: {e.code().name} {e.details()}") from e
