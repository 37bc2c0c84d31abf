import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermesh.amounts import INT64_MAX, AmountError
from ordermesh.markets import Market
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from tests.unit.ubscore.harness import BTC_USDT, ETH_BTC, MARKETS
from ubscore.core import ReserveRequest
from ubscore.core.rules import OrderRules

AMOUNTS = st.one_of(
    st.integers(-10, 10**9),
    st.integers(0, 2_000).map(lambda lots: lots * 100_000),
    st.integers(0, 2_000).map(lambda ticks: ticks * 10_000),
    st.integers(INT64_MAX - 10**6, INT64_MAX + 10**6),
)


def _by_the_market(market: Market, price: int, quantity: int) -> int | str:
    try:
        market.check_price(price)
        market.check_quantity(quantity)
        return market.check_notional(price, quantity)
    except AmountError as e:
        return f"{e.reason.name} {e.field} {e.message}"


def _by_the_rules(market: Market, side: Side, price: int, quantity: int) -> int | str:
    request = ReserveRequest(
        AccountId(1), market.symbol, side, OrderType.LIMIT, TimeInForce.GTC, price, quantity, 0,
        ClientOrderId("c"), False, SelfTradePrevention.NONE,
    )  # fmt: skip
    try:
        asset, amount = OrderRules(market).required_funds(request)
    except AmountError as e:
        return f"{e.reason.name} {e.field} {e.message}"
    assert asset == (market.quote.code if side is Side.BUY else market.base.code)
    return amount


@settings(max_examples=400, deadline=None)
@given(
    symbol=st.sampled_from([BTC_USDT, ETH_BTC]),
    price=AMOUNTS,
    quantity=AMOUNTS,
)
def test_the_fast_limit_check_agrees_with_the_market_on_every_price_and_quantity(
    symbol: str, price: int, quantity: int
):
    market = MARKETS.market(symbol)
    expected = _by_the_market(market, price, quantity)
    assert _by_the_rules(market, Side.BUY, price, quantity) == expected
    sold = _by_the_rules(market, Side.SELL, price, quantity)
    assert sold == (quantity if isinstance(expected, int) else expected)


@pytest.mark.parametrize("symbol", [BTC_USDT, ETH_BTC])
def test_the_smallest_order_on_the_grid_passes_both(symbol: str):
    market = MARKETS.market(symbol)
    quantity = market.min_quantity
    price = -(-market.min_notional * 10**market.base.scale // quantity)
    price += -price % market.tick_size
    assert _by_the_rules(market, Side.BUY, price, quantity) == market.check_notional(
        price, quantity
    )
