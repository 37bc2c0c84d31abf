import pytest

from ordermesh.amounts import INT64_MAX
from ordermesh.model import (
    AccountId,
    ClientOrderId,
    OrdermeshError,
    OrderType,
    RejectReason,
    Side,
    Symbol,
)
from tests.unit.ubscore.harness import (
    BTC,
    BTC_UNIT,
    ETH,
    ETH_BTC,
    MARKETS,
    USDT,
    USDT_UNIT,
    Driver,
    limit,
    market,
)
from ubscore.core import (
    Balance,
    InsufficientFundsError,
    NotReadyError,
    ReserveRequest,
    UBSCore,
    UBSCoreConfig,
)

PRICE = 100 * USDT_UNIT  # 100 USDT per BTC
QTY = BTC_UNIT // 50  # 0.02 BTC: 2 USDT at PRICE


@pytest.fixture
def driver() -> Driver:
    d = Driver()
    d.deposit(1, USDT, 1_000 * USDT_UNIT, "dep-usdt-1")
    d.deposit(1, BTC, 2 * BTC_UNIT, "dep-btc-1")
    d.deposit(2, USDT, 1_000 * USDT_UNIT, "dep-usdt-2")
    return d


def test_limit_buy_freezes_price_times_quantity_of_quote(driver: Driver):
    reservation = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "b1"))
    assert not reservation.duplicate
    assert (reservation.reserved_asset, reservation.reserved_amount) == (USDT, 2 * USDT_UNIT)
    order = reservation.order
    assert (order.order_id, order.account_id, order.client_order_id) == (1, 1, "b1")
    assert (order.price, order.quantity, order.quote_budget) == (PRICE, QTY, 0)
    assert order.timestamp_ns == driver.clock
    assert driver.core.balance(AccountId(1), USDT) == Balance(USDT, 998 * USDT_UNIT, 2 * USDT_UNIT)
    [open_order] = driver.core.open_orders(AccountId(1))
    assert (open_order.order, open_order.reserved_asset, open_order.remaining) == (
        order,
        USDT,
        2 * USDT_UNIT,
    )


def test_limit_sell_freezes_the_quantity_of_base(driver: Driver):
    reservation = driver.reserve(limit(1, Side.SELL, PRICE, QTY, "s1"))
    assert (reservation.reserved_asset, reservation.reserved_amount) == (BTC, QTY)
    assert driver.core.balance(AccountId(1), BTC) == Balance(BTC, 2 * BTC_UNIT - QTY, QTY)
    assert driver.core.balance(AccountId(1), USDT).frozen == 0


def test_market_buy_by_budget_freezes_the_budget(driver: Driver):
    reservation = driver.reserve(market(1, Side.BUY, quote_quantity=50 * USDT_UNIT))
    assert reservation.order.quote_budget == 50 * USDT_UNIT
    assert (reservation.order.quantity, reservation.order.price) == (0, 0)
    assert driver.core.balance(AccountId(1), USDT) == Balance(USDT, 950 * USDT_UNIT, 50 * USDT_UNIT)


def test_market_buy_by_quantity_freezes_all_available_quote(driver: Driver):
    driver.reserve(limit(1, Side.BUY, PRICE, QTY, "b1"))
    reservation = driver.reserve(market(1, Side.BUY, quantity=QTY))
    assert reservation.order.quote_budget == 998 * USDT_UNIT
    assert reservation.order.quantity == QTY
    assert reservation.reserved_amount == 998 * USDT_UNIT
    assert driver.core.balance(AccountId(1), USDT) == Balance(USDT, 0, 1_000 * USDT_UNIT)


def test_market_buy_by_quantity_without_quote_is_insufficient_funds(driver: Driver):
    with pytest.raises(InsufficientFundsError) as caught:
        driver.reserve(market(3, Side.BUY, quantity=QTY))
    assert caught.value.reason is RejectReason.INSUFFICIENT_FUNDS
    assert (caught.value.required, caught.value.available) == (0, 0)


def test_market_sell_freezes_the_quantity(driver: Driver):
    reservation = driver.reserve(market(1, Side.SELL, quantity=QTY))
    assert (reservation.reserved_asset, reservation.reserved_amount) == (BTC, QTY)


def test_a_buy_on_a_cross_pair_freezes_the_quote_asset(driver: Driver):
    price, quantity = 5_000_000, 10**6  # 0.05 BTC per ETH, 0.01 ETH
    reservation = driver.reserve(limit(1, Side.BUY, price, quantity, "x1", symbol=ETH_BTC))
    assert (reservation.reserved_asset, reservation.reserved_amount) == (BTC, 50_000)
    assert driver.core.balance(AccountId(1), ETH) == Balance(ETH, 0, 0)


def test_order_ids_count_up_and_interleave_across_shards():
    config = UBSCoreConfig(shard_index=1, shard_count=3)
    driver = Driver(config)
    driver.deposit(4, USDT, 100 * USDT_UNIT, "d4")
    ids = [driver.reserve(limit(4, Side.BUY, PRICE, QTY, f"o{i}")).order.order_id for i in range(3)]
    assert ids == [4, 7, 10]
    assert all(order_id % 3 == 1 for order_id in ids)


def test_exactly_the_available_funds_may_be_frozen(driver: Driver):
    driver.deposit(5, USDT, 2 * USDT_UNIT, "d5")
    before = driver.core.state_hash()
    with pytest.raises(InsufficientFundsError) as caught:
        driver.reserve(limit(5, Side.BUY, PRICE + USDT_UNIT, QTY, "too-much"))
    assert (caught.value.asset, caught.value.required) == (USDT, 2_020_000)
    assert caught.value.available == 2 * USDT_UNIT
    assert "2.02 USDT" in caught.value.message
    assert driver.core.state_hash() == before
    driver.reserve(limit(5, Side.BUY, PRICE, QTY, "just-enough"))
    assert driver.core.balance(AccountId(5), USDT) == Balance(USDT, 0, 2 * USDT_UNIT)


def test_an_unknown_account_has_no_funds(driver: Driver):
    with pytest.raises(InsufficientFundsError):
        driver.reserve(limit(99, Side.SELL, PRICE, QTY, "s1"))
    assert driver.core.balances(AccountId(99)) == ()


def _req(**changes: object) -> ReserveRequest:
    base = limit(1, Side.BUY, PRICE, QTY, "v1")
    fields = {name: getattr(base, name) for name in ReserveRequest.__dataclass_fields__}
    fields.update(changes)
    return ReserveRequest(**fields)


def _market_buy(**changes: object) -> ReserveRequest:
    return _req(**{"order_type": OrderType.MARKET, "price": 0, "quantity": 0, **changes})


@pytest.mark.parametrize(
    ("request_", "reason", "field"),
    [
        (_req(symbol=Symbol("DOGE-USDT")), RejectReason.UNKNOWN_SYMBOL, "symbol"),
        (_req(price=PRICE + 1), RejectReason.INVALID_PRICE, "price"),
        (_req(price=0), RejectReason.INVALID_PRICE, "price"),
        (_req(price=-PRICE), RejectReason.INVALID_PRICE, "price"),
        (
            _req(price=(INT64_MAX // USDT_UNIT + 1) * USDT_UNIT),
            RejectReason.AMOUNT_OVERFLOW,
            "price",
        ),
        (_req(quantity=QTY + 1), RejectReason.INVALID_QUANTITY, "quantity"),
        (_req(quantity=0), RejectReason.INVALID_QUANTITY, "quantity"),
        (_req(quantity=100_000), RejectReason.BELOW_MIN_QUANTITY, "quantity"),
        (_req(quantity=200_000), RejectReason.BELOW_MIN_NOTIONAL, "quantity"),
        (
            _req(price=10**12 * USDT_UNIT, quantity=10**10 * BTC_UNIT),
            RejectReason.AMOUNT_OVERFLOW,
            "price x quantity",
        ),
        (_req(quote_quantity=USDT_UNIT), RejectReason.INVALID_QUOTE_QUANTITY, "quote_quantity"),
        (_req(order_type=OrderType.MARKET), RejectReason.INVALID_PRICE, "price"),
        (_market_buy(post_only=True), RejectReason.INVALID_POST_ONLY, "post_only"),
        (
            _market_buy(quantity=QTY, quote_quantity=USDT_UNIT),
            RejectReason.INVALID_QUOTE_QUANTITY,
            "quote_quantity",
        ),
        (_market_buy(), RejectReason.INVALID_QUANTITY, "quantity"),
        (_market_buy(quote_quantity=-1), RejectReason.INVALID_QUOTE_QUANTITY, "quote_quantity"),
        (
            _market_buy(quote_quantity=USDT_UNIT - 1),
            RejectReason.BELOW_MIN_NOTIONAL,
            "quote_quantity",
        ),
        (
            _market_buy(quote_quantity=INT64_MAX + 1),
            RejectReason.AMOUNT_OVERFLOW,
            "quote_quantity",
        ),
        (_market_buy(quantity=QTY + 1), RejectReason.INVALID_QUANTITY, "quantity"),
        (
            _market_buy(side=Side.SELL, quantity=QTY, quote_quantity=USDT_UNIT),
            RejectReason.INVALID_QUOTE_QUANTITY,
            "quote_quantity",
        ),
        (
            _req(client_order_id=ClientOrderId("")),
            RejectReason.INVALID_CLIENT_ORDER_ID,
            "client_order_id",
        ),
        (
            _req(client_order_id=ClientOrderId("a" * 37)),
            RejectReason.INVALID_CLIENT_ORDER_ID,
            "client_order_id",
        ),
        (
            _req(client_order_id=ClientOrderId("has space")),
            RejectReason.INVALID_CLIENT_ORDER_ID,
            "client_order_id",
        ),
        (
            _req(client_order_id=ClientOrderId("caf\u00e9")),
            RejectReason.INVALID_CLIENT_ORDER_ID,
            "client_order_id",
        ),
        (
            _req(client_order_id=ClientOrderId("ok\n")),
            RejectReason.INVALID_CLIENT_ORDER_ID,
            "client_order_id",
        ),
        (_req(account_id=AccountId(0)), RejectReason.INVALID_ACCOUNT, "account_id"),
        (_req(account_id=AccountId(-1)), RejectReason.INVALID_ACCOUNT, "account_id"),
        (_req(account_id=AccountId(2**64)), RejectReason.INVALID_ACCOUNT, "account_id"),
        (_req(account_id=AccountId(2**63 - 1)), RejectReason.INVALID_ACCOUNT, "account_id"),
    ],
)
def test_a_refused_order_names_its_reason_and_changes_nothing(
    driver: Driver, request_: ReserveRequest, reason: RejectReason, field: str
):
    before = driver.core.state_hash()
    with pytest.raises(OrdermeshError) as caught:
        driver.core.reserve(request_, 1)
    assert caught.value.reason is reason, caught.value.message
    assert caught.value.field == field
    assert caught.value.message
    assert driver.core.state_hash() == before


def test_client_order_id_accepts_its_whole_alphabet_up_to_36(driver: Driver):
    reservation = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "Az09_-" * 6))
    assert reservation.order.client_order_id == "Az09_-" * 6


def test_a_resent_client_order_id_returns_the_original_and_changes_nothing(driver: Driver):
    first = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "same"))
    before = driver.core.state_hash()
    again = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "same"))
    different = driver.reserve(limit(1, Side.SELL, PRICE * 2, QTY * 2, "same"))
    for retry in (again, different):
        assert retry.duplicate
        assert retry.order == first.order
        assert (retry.reserved_asset, retry.reserved_amount) == (USDT, 2 * USDT_UNIT)
    assert driver.core.state_hash() == before


def test_a_duplicate_is_found_before_funds_are_checked(driver: Driver):
    driver.reserve(market(1, Side.BUY, quantity=QTY, client_order_id="all-in"))
    retry = driver.reserve(market(1, Side.BUY, quantity=QTY, client_order_id="all-in"))
    assert retry.duplicate
    assert retry.reserved_amount == 1_000 * USDT_UNIT


def test_the_same_client_order_id_on_two_accounts_is_two_orders(driver: Driver):
    one = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "shared"))
    two = driver.reserve(limit(2, Side.BUY, PRICE, QTY, "shared"))
    assert not two.duplicate
    assert one.order.order_id != two.order.order_id


def test_a_done_order_is_still_a_duplicate_while_in_the_window(driver: Driver):
    first = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "gone"))
    driver.matcher.accept(first.order.symbol)
    driver.matcher.expire(first.order.symbol, 0)
    driver.drain()
    assert driver.core.open_orders(AccountId(1)) == ()
    retry = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "gone"))
    assert retry.duplicate
    assert retry.order == first.order


def test_the_window_forgets_the_oldest_done_orders_but_never_an_open_one():
    driver = Driver(UBSCoreConfig(order_window=2))
    driver.deposit(1, USDT, 1_000 * USDT_UNIT, "d1")
    kept_open = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "open"))
    done = [driver.reserve(limit(1, Side.BUY, PRICE, QTY, f"done{i}")) for i in range(3)]
    driver.drain()
    for reservation in done:
        driver.matcher.expire(reservation.order.symbol, 1)
    driver.drain()
    assert driver.reserve(limit(1, Side.BUY, PRICE, QTY, "open")).order == kept_open.order
    assert driver.reserve(limit(1, Side.BUY, PRICE, QTY, "done2")).duplicate
    assert driver.reserve(limit(1, Side.BUY, PRICE, QTY, "done1")).duplicate
    reused = driver.reserve(limit(1, Side.BUY, PRICE, QTY, "done0"))
    assert not reused.duplicate
    assert reused.order.order_id > done[0].order.order_id


def test_a_replaying_core_refuses_orders_as_unavailable():
    core = UBSCore(MARKETS)
    with pytest.raises(NotReadyError) as caught:
        core.reserve(limit(1, Side.BUY, PRICE, QTY), 1)
    assert caught.value.reason is RejectReason.UNAVAILABLE


def test_an_account_of_another_shard_is_refused():
    driver = Driver(UBSCoreConfig(shard_index=0, shard_count=2))
    with pytest.raises(OrdermeshError) as caught:
        driver.reserve(limit(3, Side.BUY, PRICE, QTY))
    assert caught.value.reason is RejectReason.INVALID_ACCOUNT
    assert "shard 1 of 2" in caught.value.message
