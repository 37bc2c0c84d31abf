"""Check an ordermesh gRPC server from inside the image: its health, or a gateway smoke test.

    python probe.py health HOST:PORT [--service NAME]
        exit 0 when grpc.health.v1 says SERVING for NAME ("" = the server as a whole);
    python probe.py smoke HOST:PORT [--expect-version VERSION]
        the gateway's health, then real reads through it: ListSymbols (its market table),
        GetOrderBook of each symbol (the matcher behind it) and GetTicker (settlement), with
        the API key in the environment variable ORDERMESH_SMOKE_API_KEY.

Exit status 0: passed; 1: failed, the reason on stderr; 2: bad usage. Docker Compose health
checks and the blue-green smoke test (a Kubernetes Job) both run it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh.grpcx.server import VERSION_HEADER
from ordermesh.v1 import gateway_pb2, gateway_pb2_grpc

API_KEY_ENV: Final = "ORDERMESH_SMOKE_API_KEY"
"""Where `smoke` finds the API key it reads with (a trader key; it never trades)."""
GATEWAY_SERVICE: Final = "ordermesh.v1.Gateway"
_TIMEOUT_SECONDS: Final = 5.0


class ProbeFailed(Exception):
    """The server answered wrongly or not at all; the message says which call and why."""


def check_health(channel: grpc.Channel, service: str) -> str:
    """Ask grpc.health.v1 about `service`; return the server's version header.

    Raises:
        ProbeFailed: the call failed, or the status is not SERVING.
    """
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the typed stubs omit its methods
    try:
        response, call = stub.Check.with_call(
            health_pb2.HealthCheckRequest(service=service), timeout=_TIMEOUT_SECONDS
        )
    except grpc.RpcError as e:
        raise ProbeFailed(f"health check of {service or 'the server'!r}: {_describe(e)}") from e
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        raise ProbeFailed(f"health of {service or 'the server'!r} is {status}")
    return _version_of(call)


def smoke(channel: grpc.Channel, api_key: str, expect_version: str = "") -> list[str]:
    """Check the gateway's health, then read through it; return one line per check passed.

    Raises:
        ProbeFailed: the first check that failed.
    """
    version = check_health(channel, GATEWAY_SERVICE)
    if expect_version and version != expect_version:
        raise ProbeFailed(f"the gateway runs version {version!r}, expected {expect_version!r}")
    passed = [f"health SERVING, version {version!r}"]
    stub = gateway_pb2_grpc.GatewayStub(channel)
    metadata = (("x-api-key", api_key),)
    try:
        symbols = stub.ListSymbols(
            gateway_pb2.ListSymbolsRequest(), metadata=metadata, timeout=_TIMEOUT_SECONDS
        ).symbols
        if not symbols:
            raise ProbeFailed("ListSymbols answered no symbols")
        passed.append(f"ListSymbols: {len(symbols)} symbols")
        for info in symbols:
            book = stub.GetOrderBook(
                gateway_pb2.GetOrderBookRequest(symbol=info.symbol, depth=1),
                metadata=metadata,
                timeout=_TIMEOUT_SECONDS,
            )
            passed.append(f"GetOrderBook {book.symbol}: sequence {book.sequence}")
        first = symbols[0].symbol
        stub.GetTicker(
            gateway_pb2.GetTickerRequest(symbol=first), metadata=metadata, timeout=_TIMEOUT_SECONDS
        )
        passed.append(f"GetTicker {first}: answered")
    except grpc.RpcError as e:
        raise ProbeFailed(f"read through the gateway: {_describe(e)}") from e
    return passed


def _version_of(call: grpc.Call) -> str:
    for key, value in call.initial_metadata() or ():
        if key == VERSION_HEADER:
            return str(value)
    return ""


def _describe(error: grpc.RpcError) -> str:
    code, details = getattr(error, "code", None), getattr(error, "details", None)
    if callable(code) and callable(details):  # a failed call: it has a status code
        return f"{code().name} {details()}"
    return str(error)


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `probe.py`."""
    parser = argparse.ArgumentParser(prog="probe", description=__doc__.splitlines()[0])
    checks = parser.add_subparsers(dest="check", required=True, metavar="CHECK")
    health = checks.add_parser("health", help="exit 0 when the server's health is SERVING")
    health.add_argument("address", help="host:port of the gRPC server")
    health.add_argument("--service", default="", help='health service name ("": overall)')
    smoke_check = checks.add_parser("smoke", help="health and real reads through a gateway")
    smoke_check.add_argument("address", help="host:port of the gateway")
    smoke_check.add_argument(
        "--expect-version", default="", help="fail unless the gateway runs this version"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one check; return the exit status."""
    args = build_parser().parse_args(argv)
    with grpc.insecure_channel(args.address) as channel:
        try:
            if args.check == "health":
                check_health(channel, args.service)
                return 0
            api_key = os.environ.get(API_KEY_ENV, "")
            if not api_key:
                print(f"probe: {API_KEY_ENV} is not set", file=sys.stderr)
                return 2
            for line in smoke(channel, api_key, args.expect_version):
                print(f"ok  {line}")
        except ProbeFailed as e:
            print(f"probe {args.check} {args.address} failed: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
