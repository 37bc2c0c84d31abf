"""Amounts, enums, times and messages between the SDK's types and the gateway's protobuf."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ordermesh.client import BookUnchanged, convert, decode, requests
from ordermesh.v1 import common_pb2 as common
from ordermesh.v1 import gateway_pb2 as pb


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.1"), "0.1"),
        (Decimal("1E+2"), "100"),
        (Decimal("1.50"), "1.50"),
        (Decimal("-3"), "-3"),
        ("30000.001", "30000.001"),
        ("not a number", "not a number"),  # the gateway is the judge of strings
        (5, "5"),
    ],
)
def test_amounts_go_out_as_plain_decimal_strings(value: object, text: str) -> None:
    assert convert.amount_text(value, "price") == text


def test_a_float_is_refused_with_the_reason_and_the_fix() -> None:
    with pytest.raises(TypeError, match=r"price must be a Decimal, str or int, not float") as e:
        convert.amount_text(0.1, "price")
    assert "cannot hold most decimal amounts exactly" in str(e.value)
    assert "Decimal('0.1')" in str(e.value)


@pytest.mark.parametrize("value", [True, None, b"1", [1]])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(TypeError, match="quantity must be a Decimal, str or int"):
        convert.amount_text(value, "quantity")


def test_place_request_refuses_a_float_anywhere() -> None:
    with pytest.raises(TypeError, match="quote_quantity"):
        requests.place_request("BTC-USDT", "BUY", quote_quantity=10.5)  # type: ignore[arg-type]


def test_place_request_defaults_and_a_generated_client_order_id() -> None:
    limit = requests.place_request("BTC-USDT", "BUY", Decimal("0.5"), "30000")
    assert limit.order_type == common.ORDER_TYPE_LIMIT
    assert limit.time_in_force == common.TIME_IN_FORCE_UNSPECIFIED
    assert limit.response_type == common.RESPONSE_TYPE_ACK
    assert (limit.price, limit.quantity, limit.quote_quantity) == ("30000", "0.5", "")
    market = requests.place_request("BTC-USDT", "sell", "1", wait="result")  # type: ignore[arg-type]
    assert market.order_type == common.ORDER_TYPE_MARKET
    assert market.side == common.SIDE_SELL
    assert market.response_type == common.RESPONSE_TYPE_RESULT
    ids = {requests.place_request("BTC-USDT", "BUY", "1").client_order_id for _ in range(100)}
    assert len(ids) == 100
    for generated in ids:
        assert 1 <= len(generated) <= 36
        assert all(c.isalnum() or c in "_-" for c in generated)


def test_place_request_passes_every_option() -> None:
    request = requests.place_request(
        "ETH-BTC",
        "SELL",
        "2",
        "0.05",
        order_type="LIMIT",
        time_in_force="FOK",
        post_only=True,
        self_trade_prevention="EXPIRE_BOTH",
        client_order_id="mine-1",
    )
    assert request.time_in_force == common.TIME_IN_FORCE_FOK
    assert request.self_trade_prevention == common.SELF_TRADE_PREVENTION_EXPIRE_BOTH
    assert request.post_only
    assert request.client_order_id == "mine-1"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"side": "HOLD"}, "side must be one of BUY, SELL, was 'HOLD'"),
        ({"side": "BUY", "order_type": "STOP"}, "order_type must be one of LIMIT, MARKET"),
        ({"side": "BUY", "time_in_force": "DAY"}, "time_in_force must be one of GTC, IOC, FOK"),
        ({"side": "BUY", "self_trade_prevention": "X"}, "self_trade_prevention must be one of"),
        ({"side": "BUY", "wait": "never"}, "wait must be 'ack' or 'result'"),
    ],
)
def test_unknown_enum_names_are_refused_before_sending(
    arguments: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        requests.place_request("BTC-USDT", quantity="1", **arguments)  # type: ignore[arg-type]


def test_cancel_and_get_need_an_id() -> None:
    with pytest.raises(ValueError, match="order_id or a client_order_id"):
        requests.cancel_request("BTC-USDT")
    with pytest.raises(ValueError, match="order_id or a client_order_id"):
        requests.order_reference(None, None)
    by_client = requests.cancel_request("BTC-USDT", client_order_id="c-1", wait="result")
    assert (by_client.order_id, by_client.client_order_id) == (0, "c-1")


def test_times_round_trip_and_naive_datetimes_are_refused() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert convert.datetime_of(convert.timestamp_of(moment, "start")) == moment
    elsewhere = moment.astimezone(timezone(timedelta(hours=5)))
    assert convert.timestamp_of(elsewhere, "start") == convert.timestamp_of(moment, "start")
    assert convert.optional_datetime(Timestamp()) is None
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        convert.timestamp_of(datetime(2024, 5, 1), "start")  # noqa: DTZ001 - the point


def test_intervals() -> None:
    assert convert.interval_number("5m") == common.CANDLE_INTERVAL_5M
    with pytest.raises(ValueError, match="interval must be one of 1m, 5m, 1h, 1d"):
        convert.interval_number("2m")


def test_an_order_decodes_with_nones_for_what_does_not_apply() -> None:
    message = pb.Order(
        order_id=7,
        client_order_id="c-7",
        symbol="BTC-USDT",
        side=common.SIDE_BUY,
        order_type=common.ORDER_TYPE_MARKET,
        time_in_force=common.TIME_IN_FORCE_IOC,
        quote_quantity="100.5",
        filled_quantity="0.001",
        filled_quote_quantity="30",
        status=common.ORDER_STATUS_EXPIRED,
        reject_reason=common.REJECT_REASON_NO_LIQUIDITY,
        created_at=Timestamp(seconds=1_700_000_000, nanos=5_000),
    )
    order = decode.order(message)
    assert (order.side, order.order_type, order.time_in_force) == ("BUY", "MARKET", "IOC")
    assert (order.price, order.quantity, order.quote_quantity) == (None, None, Decimal("100.5"))
    assert order.status == "EXPIRED"
    assert order.reject_reason == "NO_LIQUIDITY"
    assert order.self_trade_prevention is None
    assert order.created_at == datetime(2023, 11, 14, 22, 13, 20, 5, tzinfo=UTC)
    assert order.updated_at is None


def test_an_order_without_status_is_a_broken_answer() -> None:
    with pytest.raises(ValueError, match="without a status"):
        decode.order(pb.Order(order_id=1, side=common.SIDE_BUY, order_type=common.ORDER_TYPE_LIMIT))


def test_a_ticker_without_trades_has_no_prices() -> None:
    quiet = decode.ticker(pb.Ticker(symbol="ETH-BTC", last_price="0", volume="0"))
    assert (quiet.last_price, quiet.price_change_percent, quiet.trade_count) == (None, None, 0)
    busy = decode.ticker(
        pb.Ticker(symbol="ETH-BTC", last_price="0.05", price_change_percent="1.25", trade_count=3)
    )
    assert (busy.last_price, busy.price_change_percent) == (Decimal("0.05"), Decimal("1.25"))


def test_market_data_messages() -> None:
    snapshot = decode.market_event(
        pb.StreamMarketDataResponse(
            symbol="S",
            sequence=4,
            snapshot=pb.GetOrderBookResponse(
                symbol="S", sequence=4, bids=[pb.PriceLevel(price="1", quantity="2", order_count=1)]
            ),
        )
    )
    assert snapshot is not None
    assert snapshot.sequence == 4
    delta = decode.market_event(
        pb.StreamMarketDataResponse(
            symbol="S",
            sequence=5,
            delta=pb.BookDelta(side=common.SIDE_SELL, price="3", quantity="0", order_count=0),
        )
    )
    assert delta == decode.market_event(
        pb.StreamMarketDataResponse(
            symbol="S",
            sequence=5,
            delta=pb.BookDelta(side=common.SIDE_SELL, price="3.0", quantity="0", order_count=0),
        )
    )
    assert decode.market_event(pb.StreamMarketDataResponse(symbol="S", sequence=6)) == (
        BookUnchanged("S", 6)
    )
