"""A live service keeps its gRPC port to itself: a second ubscore or matcher started on it (a
zombie of the same shard, a restart racing the old process, a clash) fails to start instead
of listening alongside it and taking part of its calls."""

from __future__ import annotations

import pytest

from matcher.bootstrap import build as build_matcher
from ordermesh.bus.memory import MemoryBus
from ordermesh.markets import DEFAULT_MARKETS_PATH
from ordermesh.v1 import matcher_pb2 as pb
from tests.integration.matcher.harness import health_status, matcher_stub
from tests.integration.matcher.harness import settings as matcher_settings
from tests.integration.mesh.harness import mesh
from tests.integration.ubscore.harness import SERVING, USDT_UNIT, balances, deposit
from tests.integration.ubscore.harness import settings as ubscore_settings
from ubscore.bootstrap import build as build_ubscore

pytestmark = pytest.mark.asyncio


async def test_a_second_instance_cannot_listen_on_a_live_service_port(prefix: str) -> None:
    bus = MemoryBus()
    async with mesh(bus, prefix) as both:
        ubscore_port, matcher_port = both.ubscore.service.port, both.matcher.port
        second = build_ubscore(ubscore_settings(prefix, port=ubscore_port), bus)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{ubscore_port}"):
            await second.start()
        await second.stop()
        other = build_matcher(
            matcher_settings(prefix, DEFAULT_MARKETS_PATH, port=matcher_port), bus
        )
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{matcher_port}"):
            await other.start()
        await other.stop()

        # Every call still reaches the live instances, on fresh connections too.
        await deposit(both.stub, 1, "USDT", USDT_UNIT, "fund-1")
        for _ in range(10):
            assert await balances(both.stub, 1) == {"USDT": (USDT_UNIT, 0)}
            assert await health_status(matcher_port) == SERVING
            async with matcher_stub(matcher_port) as stub:
                book = await stub.GetOrderBook(pb.MatcherGetOrderBookRequest(symbol="BTC-USDT"))
            assert book.symbol == "BTC-USDT"
