import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordermesh import codec, events, model
from ordermesh.v1 import common_pb2, events_pb2

U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(0, 2**63 - 1)
IDS = st.integers(1, 2**63 - 1)
TEXT = st.text(st.characters(codec="utf-8"), max_size=36)


def enum(cls):
    return st.sampled_from(list(cls))


def builds(cls, **overrides):
    return st.builds(cls, **overrides)


COMMON = {
    "order_id": IDS,
    "account_id": U64,
    "client_order_id": TEXT,
}
NEW_ORDERS = builds(
    events.NewOrder,
    symbol=TEXT,
    side=enum(model.Side),
    order_type=enum(model.OrderType),
    time_in_force=enum(model.TimeInForce),
    price=I64,
    quantity=I64,
    quote_budget=I64,
    post_only=st.booleans(),
    self_trade_prevention=enum(model.SelfTradePrevention),
    timestamp_ns=I64,
    **COMMON,
)
CANCELS = builds(events.CancelOrder, symbol=TEXT, timestamp_ns=I64, **COMMON)
BODIES = st.one_of(
    builds(
        events.OrderAccepted,
        side=enum(model.Side),
        order_type=enum(model.OrderType),
        time_in_force=enum(model.TimeInForce),
        price=I64,
        quantity=I64,
        quote_budget=I64,
        **COMMON,
    ),
    builds(
        events.TradeExecuted,
        trade_id=IDS,
        maker_order_id=IDS,
        taker_order_id=IDS,
        maker_account_id=U64,
        taker_account_id=U64,
        taker_side=enum(model.Side),
        price=I64,
        quantity=I64,
        quote_quantity=I64,
        maker_fee=I64,
        taker_fee=I64,
    ),
    builds(
        events.OrderDone,
        status=enum(model.OrderStatus),
        reason=enum(model.RejectReason),
        filled_quantity=I64,
        remaining_quantity=I64,
        filled_quote_quantity=I64,
        side=enum(model.Side),
        price=I64,
        **COMMON,
    ),
    builds(events.CancelRejected, reason=enum(model.RejectReason), **COMMON),
)
ENGINE_EVENTS = builds(
    events.EngineEvent,
    symbol=TEXT,
    sequence=U64,
    input_offset=I64,
    timestamp_ns=I64,
    hash=st.binary(min_size=32, max_size=32),
    body=BODIES,
)
LEDGER_EVENTS = builds(
    events.LedgerEvent,
    account_id=U64,
    asset=TEXT,
    kind=enum(model.LedgerEntryKind),
    amount=I64,
    reference_id=TEXT,
    timestamp_ns=I64,
)


@given(st.one_of(NEW_ORDERS, CANCELS))
def test_commands_round_trip(command):
    assert codec.decode_command(codec.encode_command(command)) == command


@given(ENGINE_EVENTS)
def test_engine_events_round_trip(event):
    assert codec.decode_engine_event(codec.encode_engine_event(event)) == event


@given(LEDGER_EVENTS)
def test_ledger_events_round_trip(event):
    assert codec.decode_ledger_event(codec.encode_ledger_event(event)) == event


@pytest.mark.parametrize(
    ("decode", "data", "message"),
    [
        (codec.decode_command, b"\xff\xff\xff", "not a ordermesh.v1.OrderCommand"),
        (codec.decode_command, b"", "OrderCommand without a command"),
        (
            codec.decode_command,
            events_pb2.OrderCommand(
                new_order=events_pb2.NewOrder(side=common_pb2.SIDE_BUY)
            ).SerializeToString(),
            "NewOrder.order_type: unknown OrderType 0",
        ),
        (
            codec.decode_command,
            events_pb2.OrderCommand(
                new_order=events_pb2.NewOrder(side=common_pb2.Side.ValueType(7))
            ).SerializeToString(),
            "NewOrder.side: unknown Side 7",
        ),
        (codec.decode_engine_event, b"", "EngineEvent #0 without an event"),
        (codec.decode_engine_event, b"\x0a\x05ab", "not a ordermesh.v1.EngineEvent"),
        (codec.decode_ledger_event, b"", "LedgerEvent.kind: unknown LedgerEntryKind 0"),
    ],
)
def test_undecodable_records_raise_never_pass_silently(decode, data, message):
    with pytest.raises(codec.CodecError, match=message):
        decode(data)


def _cancel_rejected(sequence):
    body = events.CancelRejected(
        model.OrderId(1),
        model.AccountId(2),
        model.ClientOrderId("c"),
        model.RejectReason.INVALID_ORDER_ID,
    )
    return events.EngineEvent(model.Symbol("BTC-USDT"), sequence, 0, 5, bytes(32), body)


@given(ENGINE_EVENTS)
def test_the_same_record_decoded_again_is_the_same_value(event):
    data = codec.encode_engine_event(event)
    first = codec.decode_engine_event(data)
    assert codec.decode_engine_event(data) is first
    assert codec.decode_engine_event(bytes(bytearray(data))) is first  # equal bytes, too


@given(st.one_of(NEW_ORDERS, CANCELS))
def test_the_same_command_decoded_again_is_the_same_value(command):
    data = codec.encode_command(command)
    assert codec.decode_command(data) is codec.decode_command(data)


def test_a_record_that_is_not_bytes_is_decoded_afresh_and_equal():
    event = _cancel_rejected(1)
    data = bytearray(codec.encode_engine_event(event))  # not hashable: never remembered
    assert codec.decode_engine_event(data) == event  # type: ignore[arg-type]  # bytes-like


def test_a_bad_record_raises_every_time_it_is_decoded():
    data = events_pb2.OrderCommand(
        new_order=events_pb2.NewOrder(side=common_pb2.Side.ValueType(7))
    ).SerializeToString()
    for _ in range(3):
        with pytest.raises(codec.CodecError, match=r"NewOrder\.side: unknown Side 7"):
            codec.decode_command(data)


def test_the_decoded_records_remembered_are_bounded():
    for sequence in range(1, codec.DECODE_CACHE_RECORDS + 100):
        codec.decode_engine_event(codec.encode_engine_event(_cancel_rejected(sequence)))
    assert codec._decode_engine_event_cached.cache_info().currsize == codec.DECODE_CACHE_RECORDS
