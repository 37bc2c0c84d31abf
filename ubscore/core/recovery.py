"""Between the live state and its snapshot: capture one, and rebuild a state from one."""

from __future__ import annotations

from collections.abc import Mapping

from ordermesh.events import LedgerEvent, NewOrder
from ordermesh.markets import MarketTable
from ordermesh.model import Asset, Symbol
from ubscore.core.accounts import Holding, LedgerState, LiveOrder
from ubscore.core.errors import InvariantError
from ubscore.core.rules import reserved_by
from ubscore.core.snapshot import (
    AccountBalance,
    AssetSupply,
    SymbolSequence,
    TopicOffset,
    UBSCoreSnapshot,
)
from ubscore.core.values import OpenOrder

Offsets = dict[tuple[str, int], int]
"""(topic, partition) -> the last offset applied from it."""


def capture(
    state: LedgerState, offsets: Mapping[tuple[str, int], int], sequences: Mapping[Symbol, int]
) -> UBSCoreSnapshot:
    """The state as a canonical, frozen snapshot (the caller checks it is quiescent)."""
    balances: list[AccountBalance] = []
    recent_orders: list[NewOrder] = []
    recent_funding: list[LedgerEvent] = []
    for account_id in sorted(state.accounts):
        account = state.accounts[account_id]
        for asset in sorted(account.holdings):
            holding = account.holdings[asset]
            if holding.available or holding.frozen:
                balances.append(
                    AccountBalance(account_id, asset, holding.available, holding.frozen)
                )
        recent_orders.extend(account.recent_orders.values())
        recent_funding.extend(account.recent_funding.values())
    return UBSCoreSnapshot(
        config=state.config,
        next_order_counter=state.next_counter,
        balances=tuple(balances),
        open_orders=tuple(
            OpenOrder(live.order, live.asset, live.remaining)
            for _, live in sorted(state.orders.items())
        ),
        recent_orders=tuple(recent_orders),
        recent_funding=tuple(recent_funding),
        supply=tuple(
            AssetSupply(asset, amount) for asset, amount in sorted(state.supply.items()) if amount
        ),
        offsets=tuple(
            TopicOffset(topic, part, off) for (topic, part), off in sorted(offsets.items())
        ),
        sequences=tuple(SymbolSequence(symbol, seq) for symbol, seq in sorted(sequences.items())),
    )


def rebuild(
    snapshot: UBSCoreSnapshot, markets: MarketTable
) -> tuple[LedgerState, Offsets, dict[Symbol, int]]:
    """A state equal to the one `snapshot` was captured from, checked for consistency.

    Raises:
        InvariantError: the snapshot contradicts itself or the market table.
    """
    state = LedgerState(snapshot.config)
    for entry in snapshot.balances:
        holdings = state.account(entry.account_id).holdings
        if entry.asset in holdings:
            raise InvariantError(f"snapshot lists account {entry.account_id} {entry.asset} twice")
        holdings[entry.asset] = Holding(entry.available, entry.frozen)
    for open_order in snapshot.open_orders:
        _restore_open(state, markets, open_order)
    counters = [order.order_id // snapshot.config.shard_count for order in snapshot.recent_orders]
    counters.extend(o.order.order_id // snapshot.config.shard_count for o in snapshot.open_orders)
    if counters and max(counters) >= snapshot.next_order_counter:
        raise InvariantError("snapshot holds an order_id at or above its next order counter")
    state.next_counter = snapshot.next_order_counter
    for order in snapshot.recent_orders:
        state.account(order.account_id).remember_order(order, snapshot.config.order_window)
    if sum(len(account.recent_orders) for account in state.accounts.values()) != len(
        snapshot.recent_orders
    ):
        raise InvariantError("snapshot's order windows repeat a client id or exceed their size")
    for event in snapshot.recent_funding:
        _restore_funding(state, event)
    state.supply = {entry.asset: entry.amount for entry in snapshot.supply}
    state.check_consistent()
    offsets = {(entry.topic, entry.partition): entry.offset for entry in snapshot.offsets}
    sequences = {entry.symbol: entry.sequence for entry in snapshot.sequences}
    return state, offsets, sequences


def _restore_open(state: LedgerState, markets: MarketTable, open_order: OpenOrder) -> None:
    order = open_order.order
    market = markets.markets.get(order.symbol)
    if market is None:
        raise InvariantError(f"open order {order.order_id} is on {order.symbol}, not traded here")
    asset, reserved = reserved_by(order, market)
    if asset.code != open_order.reserved_asset or not 0 <= open_order.remaining <= reserved:
        raise InvariantError(
            f"open order {order.order_id} keeps {open_order.remaining} "
            f"{open_order.reserved_asset}; it reserved {reserved} {asset.code}"
        )
    if order.order_id in state.orders:
        raise InvariantError(f"snapshot lists open order {order.order_id} twice")
    account = state.account(order.account_id)
    live = LiveOrder(order, Asset(asset.code), account.holding(asset.code), open_order.remaining)
    state.orders[order.order_id] = live
    account.index_open(live)


def _restore_funding(state: LedgerState, event: LedgerEvent) -> None:
    window = state.account(event.account_id).recent_funding
    reference = event.reference_id
    if reference in window or len(window) >= state.config.funding_window:
        raise InvariantError(
            f"snapshot's funding window of account {event.account_id} repeats {reference!r} "
            f"or exceeds {state.config.funding_window} entries"
        )
    window[reference] = event
    state.reference_users[reference] = state.reference_users.get(reference, 0) + 1
