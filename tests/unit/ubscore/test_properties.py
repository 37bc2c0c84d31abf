"""Random deposits, orders, fills and cancels against the invariants of DESIGN §4 and §6.

Two generators drive the same actions: a hypothesis state machine (any sequence of small
steps, with the invariants checked after each), and whole trading sessions drawn as scripts,
denser in trades. Both end by rebuilding the core from each snapshot (and from nothing) with
the topics replayed in random interleavings, and compare with the straight run.
"""

import random
from collections import Counter
from collections.abc import Callable

import hypothesis.strategies as st
from hypothesis import HealthCheck, event, given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ordermesh.model import AccountId, Asset, OrdermeshError, RejectReason, Side, Symbol
from tests.unit.ubscore.harness import (
    ASSETS,
    BTC,
    BTC_USDT,
    ETH,
    ETH_BTC,
    MARKETS,
    SYMBOLS,
    USDT,
    Driver,
    limit,
    market,
    replay,
)
from ubscore.codec import decode_snapshot, encode_snapshot
from ubscore.core import ENGINE_TOPIC, UBSCoreConfig

CONFIG = UBSCoreConfig(order_window=4, funding_window=3)
ACCOUNTS = st.integers(1, 3)
FUNDING_STEP = {USDT: 10**6, BTC: 10**6, ETH: 10**7}  # 1 USDT, 0.01 BTC, 0.1 ETH
PRICE_CENTER = {BTC_USDT: 100 * 10**6, ETH_BTC: 5 * 10**6}  # 100 USDT, 0.05 BTC per unit
BUDGET_STEP = {BTC_USDT: 10**6, ETH_BTC: 10**4}  # 1 USDT, 0.0001 BTC
EXPECTED_REFUSALS = {
    RejectReason.INSUFFICIENT_FUNDS,
    RejectReason.BELOW_MIN_NOTIONAL,
    RejectReason.BELOW_MIN_QUANTITY,
    RejectReason.REFERENCE_ID_CONFLICT,
    RejectReason.INVALID_AMOUNT,
    RejectReason.UNKNOWN_ORDER,
    RejectReason.ORDER_ALREADY_DONE,
}
ORDER_KINDS = ("limit", "limit", "limit", "by quantity", "by budget")


class Session:
    """The straight run: a live core, its log, and a matcher that trades legally."""

    def __init__(self, seed_units: list[int]) -> None:
        self.driver = Driver(CONFIG)
        for i, (account, asset) in enumerate((a, s) for a in (1, 2, 3) for s in ASSETS):
            self.driver.deposit(account, asset, seed_units[i] * FUNDING_STEP[asset], f"seed-{i}")

    def _attempt(self, action: Callable[..., object], *args: object, **kwargs: object) -> None:
        before = self.driver.core.state_hash()
        try:
            action(*args, **kwargs)
        except OrdermeshError as e:
            refusal = e
        else:
            return
        event(f"refused {refusal.reason.name}")
        assert refusal.reason in EXPECTED_REFUSALS, refusal.message
        assert self.driver.core.state_hash() == before, "a refusal changed the state"

    def fund(
        self, account: int, asset: Asset, units: int, reference: int, withdrawal: bool
    ) -> None:
        fund = self.driver.withdraw if withdrawal else self.driver.deposit
        self._attempt(fund, account, asset, units * FUNDING_STEP[asset], f"ref-{reference}")

    def order(  # noqa: PLR0917 - one positional argument per field of a drawn step
        self,
        account: int,
        symbol: Symbol,
        side: Side,
        kind: str,
        ticks: int,
        lots: int,
        client: int,
    ) -> None:
        spec = MARKETS.market(symbol)
        quantity, client_order_id = lots * spec.lot_size, f"c{client}"
        if kind == "limit":
            price = PRICE_CENTER[symbol] + ticks * spec.tick_size
            request = limit(account, side, price, quantity, client_order_id, symbol=symbol)
        elif kind == "by budget" and side is Side.BUY:
            budget = lots * BUDGET_STEP[symbol]
            request = market(
                account, side, quote_quantity=budget, client_order_id=client_order_id, symbol=symbol
            )
        else:
            request = market(
                account, side, quantity=quantity, client_order_id=client_order_id, symbol=symbol
            )
        self._attempt(self.driver.reserve, request)

    def crossing(
        self, accounts: tuple[int, int], symbol: Symbol, spread: int, shape: tuple[int, int, int]
    ) -> None:
        """A buy `spread` ticks above the center and a sell at it: they cross unless spread < 0."""
        lots, buy_client, sell_client = shape
        self.order(accounts[0], symbol, Side.BUY, "limit", spread, lots, buy_client)
        self.order(accounts[1], symbol, Side.SELL, "limit", 0, lots, sell_client)

    def cancel(self, account: int, client: int, by_id: bool) -> None:
        open_ids = [o.order.order_id for o in self.driver.core.open_orders(AccountId(account))]
        if by_id and open_ids:
            self._attempt(self.driver.cancel, account, order_id=open_ids[client % len(open_ids)])
        else:
            self._attempt(self.driver.cancel, account, client_order_id=f"c{client}")

    def match(self, symbol: Symbol, lots: int) -> None:
        event(f"match rounds: {self.driver.matcher.match(symbol, lots)}")

    def consume(self, partition: int, count: int) -> None:
        self.driver.consume_engine(partition, count)

    def snapshot(self) -> None:
        snapshot = self.driver.take_snapshot()
        assert decode_snapshot(encode_snapshot(snapshot)) == snapshot

    def check_invariants(self) -> None:
        snapshot = self.driver.core.snapshot()
        held: Counter[str] = Counter()
        frozen: Counter[tuple[int, str]] = Counter()
        reserved: Counter[tuple[int, str]] = Counter()
        for entry in snapshot.balances:
            assert entry.available >= 0
            assert entry.frozen >= 0
            held[entry.asset] += entry.available + entry.frozen
            frozen[(entry.account_id, entry.asset)] = entry.frozen
        for open_order in snapshot.open_orders:
            assert open_order.remaining >= 0
            reserved[(open_order.order.account_id, open_order.reserved_asset)] += (
                open_order.remaining
            )
        # DESIGN §4: per asset, what the accounts hold is deposits minus withdrawals.
        expected = self.driver.deposited.copy()
        expected.subtract(self.driver.withdrawn)
        assert +held == +expected
        # Frozen funds are exactly what open orders have left of their reservations.
        assert +frozen == +reserved
        for partition in range(len(SYMBOLS)):
            assert (
                self.driver.core.next_offset(ENGINE_TOPIC, partition)
                == (self.driver.engine_read[partition])
            )

    def check_replays(self, rng: random.Random, snapshots: int = 3, interleavings: int = 2) -> None:
        for partition in range(len(SYMBOLS)):
            self.driver.consume_engine(partition)
        straight = self.driver.core.state_hash()
        for snapshot in [None, *self.driver.snapshots][-snapshots:]:
            for _ in range(interleavings):
                rebuilt = replay(self.driver.log, snapshot, random.Random(rng.random()), CONFIG)
                assert rebuilt.state_hash() == straight
        event(f"replayed after trades: {self.driver.matcher.trades > 0}")


class LedgerMachine(RuleBasedStateMachine):
    """Any sequence of small steps; the invariants hold after each one."""

    def __init__(self) -> None:
        super().__init__()
        self.session = Session([100] * 9)

    @initialize(units=st.lists(st.integers(50, 400), min_size=9, max_size=9))
    def fund_every_account(self, units: list[int]) -> None:
        self.session = Session(units)

    @rule(
        account=ACCOUNTS,
        asset=st.sampled_from(ASSETS),
        units=st.integers(0, 40),
        reference=st.integers(0, 9),
        withdrawal=st.booleans(),
    )
    def fund(
        self, account: int, asset: Asset, units: int, reference: int, withdrawal: bool
    ) -> None:
        self.session.fund(account, asset, units, reference, withdrawal)

    @rule(
        account=ACCOUNTS,
        symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from(Side),
        kind=st.sampled_from(ORDER_KINDS),
        shape=st.tuples(st.integers(-3, 3), st.integers(1, 40), st.integers(0, 7)),
    )
    def order(
        self, account: int, symbol: Symbol, side: Side, kind: str, shape: tuple[int, int, int]
    ) -> None:
        self.session.order(account, symbol, side, kind, *shape)

    @rule(
        accounts=st.tuples(ACCOUNTS, ACCOUNTS),
        symbol=st.sampled_from(SYMBOLS),
        spread=st.integers(-1, 3),
        shape=st.tuples(st.integers(10, 40), st.integers(0, 7), st.integers(0, 7)),
    )
    def crossing_orders(
        self, accounts: tuple[int, int], symbol: Symbol, spread: int, shape: tuple[int, int, int]
    ) -> None:
        self.session.crossing(accounts, symbol, spread, shape)

    @rule(account=ACCOUNTS, client=st.integers(0, 7), by_id=st.booleans())
    def cancel(self, account: int, client: int, by_id: bool) -> None:
        self.session.cancel(account, client, by_id)

    @rule(symbol=st.sampled_from(SYMBOLS), lots=st.integers(1, 30))
    def matcher_matches_what_crosses(self, symbol: Symbol, lots: int) -> None:
        self.session.match(symbol, lots)

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        picks=st.tuples(st.integers(0, 9), st.integers(0, 9)),
        lots=st.integers(1, 30),
    )
    def matcher_trades_any_pair(self, symbol: Symbol, picks: tuple[int, int], lots: int) -> None:
        self.session.driver.matcher.accept(symbol)
        self.session.driver.matcher.trade(symbol, *picks, lots)

    @rule(symbol=st.sampled_from(SYMBOLS), pick=st.integers(0, 9))
    def matcher_expires(self, symbol: Symbol, pick: int) -> None:
        self.session.driver.matcher.expire(symbol, pick)

    @rule(partition=st.integers(0, len(SYMBOLS) - 1), count=st.integers(1, 8))
    def core_applies_engine_events(self, partition: int, count: int) -> None:
        self.session.consume(partition, count)

    @rule()
    def snapshot(self) -> None:
        self.session.snapshot()

    @rule(data=st.data())
    def restart_from_a_snapshot_and_the_log(self, data: st.DataObject) -> None:
        driver = self.session.driver
        snapshot = data.draw(st.sampled_from([None, *driver.snapshots]))
        rng = data.draw(st.randoms(use_true_random=False))
        for partition in range(len(SYMBOLS)):
            driver.consume_engine(partition)
        straight = driver.core.state_hash()
        driver.core = replay(driver.log, snapshot, rng, CONFIG)
        assert driver.core.state_hash() == straight

    @invariant()
    def invariants_hold(self) -> None:
        self.session.check_invariants()

    def teardown(self) -> None:
        self.session.check_replays(random.Random(0))


LedgerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase


# -- whole sessions, drawn from a seed -----------------------------------------------------


def _order_step(rng: random.Random) -> tuple[object, ...]:
    shape = (rng.randint(-3, 3), rng.randint(5, 40), rng.randint(0, 11))
    side = rng.choice(list(Side))
    return ("order", rng.randint(1, 3), rng.choice(SYMBOLS), side, rng.choice(ORDER_KINDS), *shape)


def _crossing_step(rng: random.Random) -> tuple[object, ...]:
    accounts = (rng.randint(1, 3), rng.randint(1, 3))
    shape = (rng.randint(10, 40), rng.randint(0, 11), rng.randint(0, 11))
    return ("crossing", accounts, rng.choice(SYMBOLS), rng.randint(-1, 3), shape)


def _fund_step(rng: random.Random) -> tuple[object, ...]:
    asset = rng.choice(ASSETS)
    units, reference = rng.randint(1, 40), rng.randint(0, 9)
    return ("fund", rng.randint(1, 3), asset, units, reference, rng.random() < 0.4)


SESSION_STEPS: list[tuple[float, Callable[[random.Random], tuple[object, ...]]]] = [
    (35, _order_step),
    (20, _crossing_step),
    (20, lambda rng: ("match", rng.choice(SYMBOLS), rng.randint(1, 30))),
    (8, lambda rng: ("cancel", rng.randint(1, 3), rng.randint(0, 11), rng.random() < 0.5)),
    (7, _fund_step),
    (6, lambda rng: ("consume", rng.randrange(len(SYMBOLS)), rng.randint(1, 8))),
    (4, lambda _: ("snapshot",)),
]


def random_step(rng: random.Random) -> tuple[object, ...]:
    """One step of a busy session: mostly orders and matching, some of everything else."""
    weights = [weight for weight, _ in SESSION_STEPS]
    [(_, make)] = rng.choices(SESSION_STEPS, weights=weights)
    return make(rng)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(20, 120))
def test_a_trading_session_conserves_and_replays_in_any_interleaving(seed: int, length: int):
    rng = random.Random(seed)
    session = Session([rng.randint(50, 400) for _ in range(9)])
    for _ in range(length):
        name, *args = random_step(rng)
        getattr(session, str(name))(*args)
        session.check_invariants()
    session.check_replays(rng, snapshots=4, interleavings=3)
