"""The two cores driven together: ubscore freezes, the matcher matches, ubscore settles.

Random flows of deposits, orders of every type and cancels go through `UBSCore.reserve`,
the log (offsets), `MatchingEngine.apply` and back into `UBSCore.apply_engine`. After every
step the balance invariants of DESIGN §4 hold, and ubscore's open orders are exactly the
orders resting on the matcher's books.
"""

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from matcher.core import ChainVerifier, MatchingEngine
from ordermesh.events import CancelOrder, NewOrder
from ordermesh.markets import load_markets
from ordermesh.model import (
    FEE_ACCOUNT,
    AccountId,
    Asset,
    ClientOrderId,
    OrderId,
    OrdermeshError,
    OrderType,
    SelfTradePrevention,
    Side,
    Symbol,
    TimeInForce,
)
from ubscore.core import ReserveRequest, UBSCore

MARKETS = load_markets()
ACCOUNTS = [AccountId(a) for a in (1, 2, 3)]
SYMBOLS = [Symbol(s) for s in MARKETS.markets]


@dataclass
class Exchange:
    """Both cores wired through one in-order log, with the expected supply per asset."""

    ubscore: UBSCore = field(default_factory=lambda: UBSCore(MARKETS))
    matcher: MatchingEngine = field(
        default_factory=lambda: MatchingEngine(MARKETS.markets.values())
    )
    supply: Counter[Asset] = field(default_factory=Counter)
    orders_offset: int = 0
    engine_offset: int = 0
    ledger_offset: int = 0
    now: int = 1_700_000_000_000_000_000
    verifiers: dict[Symbol, ChainVerifier] = field(default_factory=dict)
    trades: int = 0

    def __post_init__(self) -> None:
        self.ubscore.finish_replay()

    def tick(self) -> int:
        self.now += 1_000
        return self.now

    def deposit(self, account: AccountId, asset: Asset, amount: int, reference: str) -> None:
        funding = self.ubscore.deposit(account, asset, amount, reference, self.tick())
        self.ubscore.apply_ledger(funding.event, 0, self.ledger_offset)
        self.ledger_offset += 1
        if not funding.duplicate:
            self.supply[asset] += amount

    def submit(self, command: NewOrder | CancelOrder) -> None:
        offset = self.orders_offset
        self.orders_offset += 1
        self.ubscore.apply_command(command, 0, offset)
        for event in self.matcher.apply(command, offset):
            self.verifiers.setdefault(event.symbol, ChainVerifier()).add(event)
            self.trades += type(event.body).__name__ == "TradeExecuted"
            self.ubscore.apply_engine(event, 0, self.engine_offset)
            self.engine_offset += 1

    def place(self, request: ReserveRequest) -> bool:
        before = self.ubscore.state_hash()
        try:
            reservation = self.ubscore.reserve(request, self.tick())
        except OrdermeshError:
            assert self.ubscore.state_hash() == before, "a refusal changed the state"
            return False
        if not reservation.duplicate:
            self.submit(reservation.order)
        return True

    def cancel(self, account: AccountId, pick: int) -> None:
        open_orders = self.ubscore.open_orders(account)
        if not open_orders:
            return
        order = open_orders[pick % len(open_orders)].order
        command = self.ubscore.cancel(
            account, order.symbol, order.order_id, ClientOrderId(""), self.tick()
        )
        self.submit(command)

    def check(self) -> None:
        totals: Counter[Asset] = Counter()
        for account in (FEE_ACCOUNT, *ACCOUNTS):
            reserved: Counter[Asset] = Counter()
            for open_order in self.ubscore.open_orders(account):
                reserved[open_order.reserved_asset] += open_order.remaining
            for balance in self.ubscore.balances(account):
                assert balance.available >= 0, (account, balance)
                assert balance.frozen >= 0, (account, balance)
                assert balance.frozen == reserved[balance.asset], (account, balance)
                totals[balance.asset] += balance.available + balance.frozen
        assert +totals == +self.supply, "an asset was created or lost"
        resting = {
            order.order_id
            for symbol in SYMBOLS
            for side in Side
            for order in self.matcher.book(symbol).orders(side)
        }
        open_ids = {
            open_order.order.order_id
            for account in ACCOUNTS
            for open_order in self.ubscore.open_orders(account)
        }
        assert open_ids == resting, "ubscore and the matcher disagree on what is live"


TIME_IN_FORCE_MIX = [TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK]
MIDS = {"BTC-USDT": "30000", "ETH-USDT": "2000", "ETH-BTC": "0.05"}


def make_request(choose: Callable[[Sequence[Any]], Any], between: Callable[[int, int], int]):
    """One order request near the mid, drawn with `choose` and `between` (any source)."""
    symbol = choose(SYMBOLS)
    market = MARKETS.market(symbol)
    order_type = choose(list(OrderType))
    side = choose(list(Side))
    price = 0
    if order_type is OrderType.LIMIT:
        price = market.parse_price(MIDS[symbol]) + between(-3, 3) * market.tick_size
    quantity = between(1, 40) * market.min_quantity
    quote_quantity = 0
    if order_type is OrderType.MARKET and side is Side.BUY and between(0, 1):
        quantity = 0
        quote_quantity = between(1, 50) * market.min_notional
    return ReserveRequest(
        account_id=choose(ACCOUNTS),
        symbol=symbol,
        side=side,
        order_type=order_type,
        time_in_force=choose(TIME_IN_FORCE_MIX),
        price=price,
        quantity=quantity,
        quote_quantity=quote_quantity,
        client_order_id=ClientOrderId(f"c{between(0, 10**9)}"),
        post_only=order_type is OrderType.LIMIT and between(0, 4) == 0,
        self_trade_prevention=choose(list(SelfTradePrevention)),
    )


@st.composite
def order_requests(draw: st.DrawFn) -> ReserveRequest:
    request: ReserveRequest = make_request(
        lambda options: draw(st.sampled_from(options)), lambda lo, hi: draw(st.integers(lo, hi))
    )
    return request


ACTIONS = st.one_of(
    st.tuples(st.just("place"), order_requests()),
    st.tuples(st.just("place"), order_requests()),
    st.tuples(st.just("place"), order_requests()),
    st.tuples(st.just("cancel"), st.sampled_from(ACCOUNTS), st.integers(0, 100)),
    st.tuples(
        st.just("deposit"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(list(MARKETS.assets)),
        st.integers(1, 10**12),
    ),
)


def seeded_actions(seed: int, count: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    actions: list[tuple[Any, ...]] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.8:
            actions.append(("place", make_request(rng.choice, rng.randint)))
        elif roll < 0.97:
            actions.append(("cancel", rng.choice(ACCOUNTS), rng.randint(0, 100)))
        else:
            asset = rng.choice(list(MARKETS.assets))
            actions.append(("deposit", rng.choice(ACCOUNTS), asset, rng.randint(1, 10**12)))
    return actions


def funded_exchange() -> Exchange:
    exchange = Exchange()
    for account in ACCOUNTS:
        for asset, spec in MARKETS.assets.items():
            exchange.deposit(account, asset, 10 ** (spec.scale + 5), f"seed-{account}-{asset}")
    return exchange


def run(exchange: Exchange, actions) -> None:
    """Apply actions, checking every invariant after each, then cancel everything left."""
    exchange.check()
    for n, action in enumerate(actions):
        if action[0] == "place":
            exchange.place(action[1])
        elif action[0] == "cancel":
            exchange.cancel(action[1], action[2])
        else:
            exchange.deposit(action[1], action[2], action[3], f"d{n}")
        exchange.check()
    for account in ACCOUNTS:
        while exchange.ubscore.open_orders(account):
            exchange.cancel(account, 0)
            exchange.check()
    for account in ACCOUNTS:
        assert all(b.frozen == 0 for b in exchange.ubscore.balances(account))
    for verifier in exchange.verifiers.values():
        verifier.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTIONS, min_size=20, max_size=120))
def test_invariants_hold_after_every_step_of_any_flow(actions):
    exchange = funded_exchange()
    run(exchange, actions)
    target(exchange.trades)


@pytest.mark.parametrize("seed", [1, 2])
def test_long_seeded_flows_trade_and_keep_every_invariant(seed):
    exchange = funded_exchange()
    run(exchange, seeded_actions(seed, 1000))
    assert exchange.trades >= 100, "the flow hardly traded: it would prove little"


def test_a_crossing_pair_moves_exactly_the_trade_and_its_fees():
    exchange = funded_exchange()
    market = MARKETS.market("BTC-USDT")
    price, quantity = market.parse_price("30000"), market.parse_quantity("0.5")

    def request(account: int, side: Side, cid: str) -> ReserveRequest:
        return ReserveRequest(
            account_id=AccountId(account),
            symbol=Symbol("BTC-USDT"),
            side=side,
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            price=price,
            quantity=quantity,
            quote_quantity=0,
            client_order_id=ClientOrderId(cid),
            post_only=False,
            self_trade_prevention=SelfTradePrevention.NONE,
        )

    btc, usdt = Asset("BTC"), Asset("USDT")
    before = {
        (a, s): exchange.ubscore.balance(AccountId(a), s).available
        for a in (1, 2)
        for s in (btc, usdt)
    }
    assert exchange.place(request(1, Side.SELL, "s1"))
    assert exchange.place(request(2, Side.BUY, "b1"))
    exchange.check()
    notional = market.notional(price, quantity)  # 15,000 USDT
    seller_fee = notional * market.maker_fee_bps // 10_000
    buyer_fee = quantity * market.taker_fee_bps // 10_000
    after = {
        (a, s): exchange.ubscore.balance(AccountId(a), s).available
        for a in (1, 2)
        for s in (btc, usdt)
    }
    assert after[(1, btc)] == before[(1, btc)] - quantity
    assert after[(1, usdt)] == before[(1, usdt)] + notional - seller_fee
    assert after[(2, btc)] == before[(2, btc)] + quantity - buyer_fee
    assert after[(2, usdt)] == before[(2, usdt)] - notional
    assert exchange.ubscore.balance(FEE_ACCOUNT, btc).available == buyer_fee
    assert exchange.ubscore.balance(FEE_ACCOUNT, usdt).available == seller_fee
    assert exchange.trades == 1
    assert OrderId(0) not in {o.order.order_id for o in exchange.ubscore.open_orders(AccountId(1))}
