import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermesh.codec import CodecError
from ordermesh.events import LedgerEvent, NewOrder
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    LedgerEntryKind,
    OrderId,
    OrderType,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)
from ordermesh.v1 import events_pb2, ubscore_pb2
from tests.unit.ubscore.harness import MARKETS
from tests.unit.ubscore.test_recovery import busy_driver
from ubscore.codec import decode_snapshot, encode_snapshot, snapshot_from_pb, snapshot_to_pb
from ubscore.core import (
    AccountBalance,
    AssetSupply,
    OpenOrder,
    SymbolSequence,
    TopicOffset,
    UBSCore,
    UBSCoreConfig,
    UBSCoreSnapshot,
)

U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
NAT64 = st.integers(0, 2**63 - 1)
TEXT = st.text(max_size=12)
ASSETS = TEXT.map(Asset)


def enum(cls):
    return st.sampled_from(list(cls))


NEW_ORDERS = st.builds(
    NewOrder,
    symbol=TEXT.map(Symbol),
    order_id=st.integers(1, 2**64 - 1).map(OrderId),
    account_id=U64.map(AccountId),
    client_order_id=TEXT.map(ClientOrderId),
    side=enum(Side),
    order_type=enum(OrderType),
    time_in_force=enum(TimeInForce),
    price=NAT64,
    quantity=NAT64,
    quote_budget=NAT64,
    post_only=st.booleans(),
    self_trade_prevention=enum(SelfTradePrevention),
    timestamp_ns=NAT64,
)
LEDGER_EVENTS = st.builds(
    LedgerEvent,
    account_id=U64.map(AccountId),
    asset=ASSETS,
    kind=st.sampled_from([LedgerEntryKind.DEPOSIT, LedgerEntryKind.WITHDRAWAL]),
    amount=NAT64,
    reference_id=TEXT,
    timestamp_ns=NAT64,
)
CONFIGS = st.integers(1, 8).flatmap(
    lambda count: st.builds(
        UBSCoreConfig,
        shard_index=st.integers(0, count - 1),
        shard_count=st.just(count),
        order_window=st.integers(1, 5_000),
        funding_window=st.integers(1, 5_000),
    )
)


@st.composite
def snapshots(draw: st.DrawFn) -> UBSCoreSnapshot:
    balances = sorted(
        draw(st.dictionaries(st.tuples(U64, ASSETS), st.tuples(I64, I64), max_size=6)).items()
    )
    return UBSCoreSnapshot(
        config=draw(CONFIGS),
        next_order_counter=draw(U64),
        balances=tuple(AccountBalance(AccountId(a), s, av, fr) for (a, s), (av, fr) in balances),
        open_orders=tuple(
            draw(
                st.lists(
                    st.builds(OpenOrder, order=NEW_ORDERS, reserved_asset=ASSETS, remaining=I64),
                    max_size=3,
                )
            )
        ),
        recent_orders=tuple(draw(st.lists(NEW_ORDERS, max_size=3))),
        recent_funding=tuple(draw(st.lists(LEDGER_EVENTS, max_size=3))),
        supply=tuple(draw(st.lists(st.builds(AssetSupply, asset=ASSETS, amount=I64), max_size=3))),
        offsets=tuple(
            draw(
                st.lists(
                    st.builds(
                        TopicOffset, topic=TEXT, partition=st.integers(0, 2**31 - 1), offset=I64
                    ),
                    max_size=3,
                )
            )
        ),
        sequences=tuple(
            draw(
                st.lists(
                    st.builds(SymbolSequence, symbol=TEXT.map(Symbol), sequence=U64), max_size=3
                )
            )
        ),
    )


@settings(max_examples=60, deadline=None)
@given(snapshots())
def test_any_snapshot_survives_the_round_trip(snapshot: UBSCoreSnapshot):
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot
    assert snapshot_from_pb(snapshot_to_pb(snapshot)).digest() == snapshot.digest()


def test_a_real_snapshot_restores_to_the_same_state_hash_from_bytes():
    driver = busy_driver()
    snapshot = driver.core.snapshot()
    data = encode_snapshot(snapshot)
    assert encode_snapshot(decode_snapshot(data)) == data
    restored = UBSCore.restore(decode_snapshot(data), MARKETS)
    restored.finish_replay()
    assert restored.state_hash() == driver.core.state_hash()


def test_bytes_that_are_not_a_snapshot_are_refused():
    with pytest.raises(CodecError):
        decode_snapshot(b"\xff\xff\xff")


def test_a_snapshot_with_an_impossible_shard_is_refused():
    with pytest.raises(CodecError, match="shard_count"):
        decode_snapshot(ubscore_pb2.UBSCoreSnapshot(shard_count=0).SerializeToString())


def test_a_snapshot_whose_recent_orders_hold_a_cancel_is_refused():
    cancel = events_pb2.OrderCommand(
        symbol="BTC-USDT", cancel_order=events_pb2.CancelOrder(order_id=1, account_id=1)
    )
    msg = ubscore_pb2.UBSCoreSnapshot(
        shard_count=1, order_window=1, funding_window=1, recent_orders=[cancel]
    )
    with pytest.raises(CodecError, match="not a NewOrder"):
        decode_snapshot(msg.SerializeToString())
