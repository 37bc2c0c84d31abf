"""Bad requests: the right gRPC status, ErrorInfo reason and field, and a clear message."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from ordermesh.bus.memory import MemoryBus
from ordermesh.grpcx.errors import error_info, reason_of
from ordermesh.model import RejectReason
from ordermesh.v1 import common_pb2
from ordermesh.v1 import settlement_pb2 as pb
from settlement.core.paging import encode_token
from tests.integration.settlement.harness import create_topics, publish, running
from tests.unit.settlement.exchange import SELL, Exchange, atoms

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_BASE64, NOT_A_LIST = "%%%", "e30"  # the second is base64 of {}
M1 = common_pb2.CANDLE_INTERVAL_1M
NINE: Any = 9  # not a CandleInterval
CASES: list[tuple[str, Any, grpc.StatusCode, RejectReason, str, str]] = [
    ("ListTrades", pb.SettlementListTradesRequest(symbol="BTC-USDT", page_size=1001), INVALID,
     RejectReason.INVALID_ARGUMENT, "page_size", "page_size must be 1..1000 (0 for 100), was 1001"),
    ("ListTrades", pb.SettlementListTradesRequest(symbol="BTC-USDT", page_token=NOT_BASE64),
     INVALID, RejectReason.INVALID_ARGUMENT, "page_token", "is not a token of this listing"),
    ("ListTrades", pb.SettlementListTradesRequest(
        symbol="BTC-USDT", page_token=encode_token("orders", (5,))), INVALID,
     RejectReason.INVALID_ARGUMENT, "page_token", "(symbol-trades)"),
    ("ListTrades", pb.SettlementListTradesRequest(symbol="DOGE-USDT"), INVALID,
     RejectReason.UNKNOWN_SYMBOL, "symbol", "symbol 'DOGE-USDT' is not traded here"),
    ("ListTrades", pb.SettlementListTradesRequest(), INVALID,
     RejectReason.INVALID_ARGUMENT, "symbol", "give a symbol, an account_id, or both"),
    ("ListOrders", pb.SettlementListOrdersRequest(account_id=1, page_size=5000), INVALID,
     RejectReason.INVALID_ARGUMENT, "page_size", "was 5000"),
    ("ListOrders", pb.SettlementListOrdersRequest(account_id=1, symbol="BTC"), INVALID,
     RejectReason.UNKNOWN_SYMBOL, "symbol", "known symbols: BTC-USDT"),
    ("ListOrders", pb.SettlementListOrdersRequest(account_id=1, page_token=NOT_A_LIST), INVALID,
     RejectReason.INVALID_ARGUMENT, "page_token", "page_token"),
    ("GetOrder", pb.SettlementGetOrderRequest(account_id=2, order_id=1), grpc.StatusCode.NOT_FOUND,
     RejectReason.UNKNOWN_ORDER, "order_id", "account 2 has no order with order_id 1"),
    ("GetOrder", pb.SettlementGetOrderRequest(account_id=1, order_id=999),
     grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_ORDER, "order_id", "order_id 999"),
    ("GetOrder", pb.SettlementGetOrderRequest(account_id=2, client_order_id="c1"),
     grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_ORDER, "client_order_id", "'c1'"),
    ("GetOrder", pb.SettlementGetOrderRequest(account_id=1), INVALID,
     RejectReason.INVALID_ARGUMENT, "order_id", "give an order_id or a client_order_id"),
    ("GetLedger", pb.SettlementGetLedgerRequest(account_id=1, asset="DOGE"), INVALID,
     RejectReason.UNKNOWN_ASSET, "asset", "asset 'DOGE' is not known here"),
    ("GetLedger", pb.SettlementGetLedgerRequest(account_id=1, page_size=1001), INVALID,
     RejectReason.INVALID_ARGUMENT, "page_size", "page_size"),
    ("GetCandles", pb.SettlementGetCandlesRequest(symbol="BTC-USDT"), INVALID,
     RejectReason.INVALID_ARGUMENT, "interval", "interval must be one of CANDLE_INTERVAL_1M"),
    ("GetCandles", pb.SettlementGetCandlesRequest(symbol="BTC-USDT", interval=NINE), INVALID,
     RejectReason.INVALID_ARGUMENT, "interval", "was 9"),
    ("GetCandles", pb.SettlementGetCandlesRequest(symbol="BTC-USDT", interval=M1, limit=1001),
     INVALID, RejectReason.INVALID_ARGUMENT, "limit", "limit must be 1..1000 (0 for 500)"),
    ("GetCandles", pb.SettlementGetCandlesRequest(
        symbol="BTC-USDT", interval=M1, start_time_ns=10, end_time_ns=5), INVALID,
     RejectReason.INVALID_ARGUMENT, "end_time_ns", "must be after start_time_ns 10"),
    ("GetCandles", pb.SettlementGetCandlesRequest(symbol="BTC-USDT", interval=M1, start_time_ns=-1),
     INVALID, RejectReason.INVALID_ARGUMENT, "start_time_ns", "was -1"),
    ("GetCandles", pb.SettlementGetCandlesRequest(symbol="", interval=M1), INVALID,
     RejectReason.UNKNOWN_SYMBOL, "symbol", "symbol '(empty)'"),
    ("GetTicker", pb.SettlementGetTickerRequest(symbol="btc-usdt"), INVALID,
     RejectReason.UNKNOWN_SYMBOL, "symbol", "'btc-usdt'"),
]  # fmt: skip


async def test_bad_requests_are_refused_with_reason_and_field(
    memory_bus: MemoryBus, pg_database: str, prefix: str
) -> None:
    ex = Exchange()
    ex.order(1, SELL, atoms("30000", "USDT"), atoms("0.01", "BTC"))  # order 1, account 1's
    async with running(memory_bus, pg_database, prefix) as run:
        await create_topics(memory_bus, run.topics)
        await publish(memory_bus, run.topics, ex.records)
        await run.settled(ex.records)
        mine = await run.stub.GetOrder(pb.SettlementGetOrderRequest(account_id=1, order_id=1))
        assert mine.order.order_id == 1
        for method, request, code, reason, field, words in CASES:
            call = getattr(run.stub, method)(request)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            where = f"{method}({request})"
            assert caught.value.code() == code, where
            assert words in (caught.value.details() or ""), where
            assert await reason_of(call) == reason, where
            info = error_info(await rpc_status.aio.from_call(call))
            assert info is not None
            assert info.metadata["field"] == field, where
