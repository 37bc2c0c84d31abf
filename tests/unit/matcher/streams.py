"""Random command streams over a small price grid: every order type, option and cancel.

`specs()` is the hypothesis strategy (it shrinks to small readable streams);
`seeded_stream(seed)` draws the same kind of stream from `random.Random(seed)`.
Both go through `build`, which numbers order ids and makes the cancels point at them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import strategies as st

from ordermesh.events import NewOrder, OrderCommand
from ordermesh.model import SelfTradePrevention, Side, TimeInForce
from tests.unit.matcher.helpers import btc, cancel, limit, market, usdt

LOT = btc("0.05")
PRICES = range(96, 105)  # USDT, 1 USDT apart: a handful of levels that cross often


@dataclass(frozen=True)
class LimitSpec:
    side: Side
    price: int
    lots: int
    account: int
    tif: TimeInForce
    post_only: bool
    stp: SelfTradePrevention
    reuse_id: bool = False


@dataclass(frozen=True)
class MarketSpec:
    side: Side
    lots: int
    budget: int
    account: int
    tif: TimeInForce
    stp: SelfTradePrevention


@dataclass(frozen=True)
class CancelSpec:
    target: int
    by_client: bool
    other_account: bool


Spec = LimitSpec | MarketSpec | CancelSpec

_sides = st.sampled_from(Side)
_accounts = st.integers(1, 3)
_preventions = st.sampled_from(SelfTradePrevention)
_limits = st.builds(
    LimitSpec,
    side=_sides,
    price=st.sampled_from(PRICES),
    lots=st.integers(1, 6),
    account=_accounts,
    tif=st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]),
    post_only=st.sampled_from([False, False, False, True]),
    stp=_preventions,
    reuse_id=st.sampled_from([False] * 9 + [True]),
)
_markets = st.builds(
    MarketSpec,
    side=_sides,
    lots=st.integers(0, 8),
    budget=st.integers(1, 900),
    account=_accounts,
    tif=st.sampled_from(TimeInForce),
    stp=_preventions,
)
_cancels = st.builds(
    CancelSpec, target=st.integers(0, 40), by_client=st.booleans(), other_account=st.booleans()
)


def spec() -> st.SearchStrategy[Spec]:
    """One command: about five limits to one market order and two cancels."""
    return st.one_of(_limits, _limits, _limits, _limits, _limits, _markets, _cancels, _cancels)


def specs(max_size: int = 80) -> st.SearchStrategy[list[Spec]]:
    """Streams of up to `max_size` commands (at least a few, so that books build up)."""
    return st.lists(spec(), min_size=min(12, max_size), max_size=max_size)


def seeded_specs(seed: int, count: int) -> list[Spec]:
    """`count` specs drawn from random.Random(seed), in the same proportions as `specs`."""
    rng = random.Random(seed)
    out: list[Spec] = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.62:
            out.append(
                LimitSpec(
                    side=rng.choice(list(Side)),
                    price=rng.choice(PRICES),
                    lots=rng.randint(1, 6),
                    account=rng.randint(1, 3),
                    tif=rng.choice([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK]),
                    post_only=rng.random() < 0.1,
                    stp=rng.choice(list(SelfTradePrevention)),
                    reuse_id=rng.random() < 0.03,
                )
            )
        elif draw < 0.75:
            out.append(
                MarketSpec(
                    side=rng.choice(list(Side)),
                    lots=rng.randint(0, 8),
                    budget=rng.randint(1, 900),
                    account=rng.randint(1, 3),
                    tif=rng.choice(list(TimeInForce)),
                    stp=rng.choice(list(SelfTradePrevention)),
                )
            )
        else:
            out.append(
                CancelSpec(
                    target=rng.randint(0, 40),
                    by_client=rng.random() < 0.5,
                    other_account=rng.random() < 0.1,
                )
            )
    return out


def seeded_stream(seed: int, count: int) -> list[OrderCommand]:
    """A reproducible stream of `count` commands."""
    return build(seeded_specs(seed, count))


def build(stream: list[Spec]) -> list[OrderCommand]:
    """Commands for `stream`: order ids from 1 (or a reused one), cancels of earlier orders."""
    commands: list[OrderCommand] = []
    placed: list[NewOrder] = []
    next_id = 1
    for spec in stream:
        if isinstance(spec, CancelSpec):
            if not placed:
                commands.append(cancel(spec.target + 1))
                continue
            target = placed[-1 - spec.target % len(placed)]
            account = target.account_id + 1 if spec.other_account else target.account_id
            if spec.by_client:
                commands.append(cancel(account=account, client=target.client_order_id))
            else:
                commands.append(cancel(target.order_id, account=account))
            continue
        order_id = placed[-1].order_id if getattr(spec, "reuse_id", False) and placed else next_id
        if order_id == next_id:
            next_id += 1
        order = _order(spec, order_id)
        placed.append(order)
        commands.append(order)
    return commands


def _order(spec: LimitSpec | MarketSpec, order_id: int) -> NewOrder:
    if isinstance(spec, LimitSpec):
        return limit(
            order_id,
            spec.side,
            usdt(spec.price),
            spec.lots * LOT,
            account=spec.account,
            tif=spec.tif,
            post_only=spec.post_only,
            stp=spec.stp,
            client=f"c{order_id}-{spec.account}",
        )
    if spec.side == Side.SELL:
        return market(order_id, Side.SELL, max(spec.lots, 1) * LOT, account=spec.account,
                      tif=spec.tif, stp=spec.stp)  # fmt: skip
    return market(
        order_id,
        Side.BUY,
        spec.lots * LOT,
        budget=usdt(spec.budget),
        account=spec.account,
        tif=spec.tif,
        stp=spec.stp,
    )
