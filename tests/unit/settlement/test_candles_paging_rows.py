"""Candles from trades, page tokens and sizes, and uint64 ids in BIGINT columns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordermesh.model import OrdermeshError, RejectReason, Side
from settlement.core import MINUTE_NS, Candle, CandleInterval, TradeRow, aggregate, fold_candles
from settlement.core.candles import merge_candles
from settlement.core.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_token,
    encode_token,
    page_size,
)
from settlement.core.rows import to_signed, to_unsigned

T = 1_700_000_040_000_000_000  # minute-aligned


def trade(at: int, price: int, quantity: int = 2, symbol: str = "BTC-USDT") -> TradeRow:
    return TradeRow(symbol, at, 1, 1, 2, 1, 2, Side.BUY, price, quantity, price * quantity, 0, 0,
                    at)  # fmt: skip


def test_minute_candles_open_high_low_close_and_volumes() -> None:
    trades = [trade(T + 1, 10), trade(T + 5, 14), trade(T + 9, 8), trade(T + 59_999_999_999, 11),
              trade(T + MINUTE_NS, 20, 3)]  # fmt: skip
    candles = fold_candles(trades)
    assert candles == {
        ("BTC-USDT", T): Candle("BTC-USDT", T, 10, 14, 8, 11, 8, 10 * 2 + 14 * 2 + 8 * 2 + 11 * 2,
                                4),
        ("BTC-USDT", T + MINUTE_NS): Candle("BTC-USDT", T + MINUTE_NS, 20, 20, 20, 20, 3, 60, 1),
    }  # fmt: skip


def test_a_minute_split_over_two_batches_merges_to_the_same_candle() -> None:
    trades = [trade(T + n, price) for n, price in enumerate([5, 9, 3, 7, 6])]
    whole = fold_candles(trades)[("BTC-USDT", T)]
    for cut in range(1, len(trades)):
        left = fold_candles(trades[:cut])[("BTC-USDT", T)]
        right = fold_candles(trades[cut:])[("BTC-USDT", T)]
        assert merge_candles(left, right) == whole
    with pytest.raises(ValueError, match="cannot merge"):
        merge_candles(whole, replace_symbol(whole))


def replace_symbol(candle: Candle) -> Candle:
    return Candle("ETH-USDT", *[getattr(candle, f) for f in Candle.__slots__[1:]])


def test_intervals_roll_up_from_minutes() -> None:
    minutes = [trade(T + n * MINUTE_NS, 100 + n) for n in range(12)]
    candles = sorted(fold_candles(minutes).values(), key=lambda c: c.open_time_ns)
    five = aggregate(candles, CandleInterval.FIVE_MINUTES.nanoseconds)
    start = T - T % (5 * MINUTE_NS)
    assert [c.open_time_ns for c in five] == [start + k * 5 * MINUTE_NS for k in range(len(five))]
    assert sum(c.trade_count for c in five) == 12
    assert five[0].open == 100
    assert five[-1].close == 111
    assert [i.nanoseconds for i in CandleInterval] == [
        MINUTE_NS,
        5 * MINUTE_NS,
        60 * MINUTE_NS,
        24 * 60 * MINUTE_NS,
    ]


@pytest.mark.parametrize(("asked", "given_"), [(0, DEFAULT_PAGE_SIZE), (1, 1), (1000, 1000)])
def test_page_sizes(asked: int, given_: int) -> None:
    assert page_size(asked) == given_


def test_a_page_size_above_the_maximum_is_refused() -> None:
    with pytest.raises(
        OrdermeshError, match=r"page_size must be 1\.\.1000 \(0 for 100\), was 1001"
    ) as caught:
        page_size(MAX_PAGE_SIZE + 1)
    assert (caught.value.reason, caught.value.field) == (RejectReason.INVALID_ARGUMENT, "page_size")


@given(
    key=st.tuples(
        st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.integers(-(2**63), 2**63 - 1)
    )
)
def test_tokens_round_trip(key: tuple[int, str, int]) -> None:
    token = encode_token("account-trades", key)
    assert token.isascii()
    assert "=" not in token
    assert decode_token(token, "account-trades", (int, str, int)) == key


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        "e30",  # {} : not a list
        encode_token("orders", (5,)),  # another listing's
        encode_token("ledger", ("5",)),  # a str where an int belongs
        encode_token("ledger", (5, 6)),  # too long
        encode_token("ledger", (2**63,)),  # beyond int64
        encode_token("ledger", (True,)),  # a bool is not an int here
        "_" * 600,
        "gA",  # not UTF-8
    ],
)
def test_tokens_not_of_the_listing_are_refused_naming_page_token(token: str) -> None:
    with pytest.raises(OrdermeshError, match="page_token is not a token of this listing") as caught:
        decode_token(token, "ledger", (int,))
    assert (caught.value.reason, caught.value.field) == (
        RejectReason.INVALID_ARGUMENT,
        "page_token",
    )


def test_no_token_is_the_first_page() -> None:
    assert decode_token("", "ledger", (int,)) is None


@given(st.integers(0, 2**64 - 1))
def test_uint64_ids_round_trip_through_bigint(value: int) -> None:
    stored = to_signed(value)
    assert -(2**63) <= stored < 2**63
    assert to_unsigned(stored) == value
    if value < 2**63:
        assert stored == value


@pytest.mark.parametrize("value", [-1, 2**64])
def test_ids_outside_uint64_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="id must be within"):
        to_signed(value)
