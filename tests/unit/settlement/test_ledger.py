"""Double entry: every trade's and every funding event's legs sum to zero per asset."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordermesh.events import LedgerEvent, TradeExecuted
from ordermesh.model import (
    FEE_ACCOUNT,
    AccountId,
    Asset,
    LedgerEntryKind,
    OrderId,
    Side,
    TradeId,
)
from settlement.core import EXTERNAL_ACCOUNT, LedgerLeg, funding_legs, trade_legs
from settlement.core.ledger import LedgerEventError, check_funding
from tests.unit.settlement.exchange import BTC_USDT, MARKETS

MARKET = MARKETS.markets[BTC_USDT]
INT64_MAX = 2**63 - 1


def trade(
    *,
    maker: int = 1,
    taker: int = 2,
    taker_side: Side = Side.BUY,
    quantity: int = 100,
    notional: int = 3_000,
    maker_fee: int = 3,
    taker_fee: int = 1,
    trade_id: int = 7,
) -> TradeExecuted:
    return TradeExecuted(
        TradeId(trade_id), OrderId(10), OrderId(11), AccountId(maker), AccountId(taker),
        taker_side, 30, quantity, notional, maker_fee, taker_fee,
    )  # fmt: skip


def sums(legs: list[LedgerLeg]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for leg in legs:
        total[leg.asset] += leg.amount
    return dict(total)


def by_owner(legs: list[LedgerLeg]) -> dict[tuple[int, str, LedgerEntryKind], int]:
    return {(leg.account_id, leg.asset, leg.kind): leg.amount for leg in legs}


def test_taker_buys_pays_quote_gets_base_less_its_fee() -> None:
    legs = trade_legs(MARKET, trade(), 5)
    assert by_owner(legs) == {
        (2, "USDT", LedgerEntryKind.TRADE): -3_000,
        (2, "BTC", LedgerEntryKind.TRADE): 99,
        (1, "BTC", LedgerEntryKind.TRADE): -100,
        (1, "USDT", LedgerEntryKind.TRADE): 2_997,
        (FEE_ACCOUNT, "BTC", LedgerEntryKind.FEE): 1,
        (FEE_ACCOUNT, "USDT", LedgerEntryKind.FEE): 3,
    }
    assert {leg.reference for leg in legs} == {"BTC-USDT:7"}
    assert {leg.timestamp_ns for leg in legs} == {5}


def test_taker_sells_the_maker_is_the_buyer() -> None:
    legs = trade_legs(MARKET, trade(taker_side=Side.SELL), 5)
    owners = by_owner(legs)
    assert owners[(1, "BTC", LedgerEntryKind.TRADE)] == 100 - 3  # maker buys, pays maker_fee
    assert owners[(2, "USDT", LedgerEntryKind.TRADE)] == 3_000 - 1
    assert owners[(FEE_ACCOUNT, "BTC", LedgerEntryKind.FEE)] == 3
    assert owners[(FEE_ACCOUNT, "USDT", LedgerEntryKind.FEE)] == 1


def test_zero_fees_leave_no_fee_legs() -> None:
    legs = trade_legs(MARKET, trade(maker_fee=0, taker_fee=0), 5)
    assert all(leg.kind is LedgerEntryKind.TRADE for leg in legs)
    assert len(legs) == 4


def test_a_self_trade_nets_into_one_leg_per_asset() -> None:
    legs = trade_legs(MARKET, trade(maker=4, taker=4), 5)
    assert by_owner(legs) == {
        (4, "USDT", LedgerEntryKind.TRADE): -3,
        (4, "BTC", LedgerEntryKind.TRADE): -1,
        (FEE_ACCOUNT, "BTC", LedgerEntryKind.FEE): 1,
        (FEE_ACCOUNT, "USDT", LedgerEntryKind.FEE): 3,
    }


ACCOUNTS = st.sampled_from([1, 2, 3, 2**64 - 1])


@given(data=st.data())
def test_legs_of_any_trade_sum_to_zero_per_asset_and_are_unique(data: st.DataObject) -> None:
    side = data.draw(st.sampled_from(Side))
    quantity = data.draw(st.integers(1, INT64_MAX))
    notional = data.draw(st.integers(0, INT64_MAX))
    buyer_fee = data.draw(st.integers(0, quantity))  # in base: the buyer receives base
    seller_fee = data.draw(st.integers(0, notional))
    maker_fee, taker_fee = (seller_fee, buyer_fee) if side is Side.BUY else (buyer_fee, seller_fee)
    traded = trade(
        maker=data.draw(ACCOUNTS), taker=data.draw(ACCOUNTS), taker_side=side,
        quantity=quantity, notional=notional, maker_fee=maker_fee, taker_fee=taker_fee,
    )  # fmt: skip
    legs = trade_legs(MARKET, traded, 1)
    assert all(value == 0 for value in sums(legs).values())
    keys = Counter((leg.reference, leg.account_id, leg.asset, leg.kind) for leg in legs)
    assert max(keys.values(), default=1) == 1
    assert all(leg.amount != 0 for leg in legs)
    assert all(-INT64_MAX - 1 <= leg.amount <= INT64_MAX for leg in legs)


def funding(kind: LedgerEntryKind, amount: int = 500, **changes: object) -> LedgerEvent:
    values: dict[str, object] = {
        "account_id": AccountId(9), "asset": Asset("USDT"), "kind": kind, "amount": amount,
        "reference_id": "ref-1", "timestamp_ns": 3,
    }  # fmt: skip
    values.update(changes)
    return LedgerEvent(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "account_amount"), [(LedgerEntryKind.DEPOSIT, 500), (LedgerEntryKind.WITHDRAWAL, -500)]
)
def test_funding_has_an_external_contra_leg(kind: LedgerEntryKind, account_amount: int) -> None:
    legs = funding_legs(funding(kind))
    assert by_owner(legs) == {
        (9, "USDT", kind): account_amount,
        (EXTERNAL_ACCOUNT, "USDT", kind): -account_amount,
    }
    assert {leg.reference for leg in legs} == {"ref-1"}


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (funding(LedgerEntryKind.TRADE), "kind must be DEPOSIT or WITHDRAWAL, was TRADE"),
        (funding(LedgerEntryKind.DEPOSIT, 0), "amount must be positive, was 0"),
        (funding(LedgerEntryKind.DEPOSIT, asset=Asset("XYZ")), "asset 'XYZ' is not in"),
        (funding(LedgerEntryKind.DEPOSIT, reference_id=""), "reference_id is empty"),
        (
            funding(LedgerEntryKind.DEPOSIT, account_id=AccountId(EXTERNAL_ACCOUNT)),
            "is the external account",
        ),
    ],
)
def test_funding_that_cannot_be_booked_is_refused(event: LedgerEvent, words: str) -> None:
    with pytest.raises(LedgerEventError, match=words):
        check_funding(event, set(MARKETS.assets))
