"""The core's mutable state: holdings, open orders, deferred engine deltas and dedup windows.

Internal to `ubscore.core`; callers see it through `UBSCore` and its frozen snapshot. Every
change here is a delta on (available, frozen) of one account and asset, so deltas from the
three topics commute; the few that depend on an order's reservation (a trade spends from it,
a done releases what is left) wait in a `PendingOrder` until the order's command is applied.
"""

from __future__ import annotations

from collections import OrderedDict

from ordermesh.amounts import INT64_MAX
from ordermesh.events import LedgerEvent, NewOrder
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    LedgerEntryKind,
    OrderId,
    Side,
    Symbol,
)
from ubscore.core.errors import InvariantError
from ubscore.core.values import UBSCoreConfig


class Holding:
    """(available, frozen) atoms of one asset of one account."""

    __slots__ = ("available", "frozen")

    def __init__(self, available: int = 0, frozen: int = 0) -> None:
        self.available = available
        self.frozen = frozen


class LiveOrder:
    """An order whose reservation is (partly) frozen until the matcher says it is done."""

    __slots__ = ("asset", "holding", "order", "remaining")

    def __init__(self, order: NewOrder, asset: Asset, holding: Holding, remaining: int) -> None:
        self.order = order
        self.asset = asset
        self.holding = holding
        """The holding the reservation sits in (kept to skip two lookups per trade)."""
        self.remaining = remaining


class PendingOrder:
    """Engine deltas for an order whose command has not been replayed yet."""

    __slots__ = ("account_id", "consumed", "done", "side", "symbol")

    def __init__(self, account_id: AccountId, symbol: Symbol) -> None:
        self.account_id = account_id
        self.symbol = symbol
        self.side: Side | None = None
        self.consumed = 0
        self.done = False


class Account:
    """One account: its holdings, open orders by client id, and its two dedup windows."""

    __slots__ = ("holdings", "newest_recent", "open_by_client", "recent_funding", "recent_orders")

    def __init__(self) -> None:
        self.holdings: dict[Asset, Holding] = {}
        self.open_by_client: dict[ClientOrderId, LiveOrder] = {}
        # OrderedDicts: a plain dict slows down when it is used as a queue (every delete at
        # the front leaves a hole that iteration has to skip until the next resize).
        self.recent_orders: OrderedDict[ClientOrderId, NewOrder] = OrderedDict()
        """The newest orders by order_id, ascending: deterministic whatever order the
        ordermesh.orders partitions are replayed in."""
        self.recent_funding: OrderedDict[str, LedgerEvent] = OrderedDict()
        """The newest funding events, oldest first (one ledger partition holds an account)."""
        self.newest_recent = 0
        """The highest order_id ever put in recent_orders (the last one there)."""

    def holding(self, asset: Asset) -> Holding:
        """The holding of `asset`, created empty on first use."""
        holding = self.holdings.get(asset)
        if holding is None:
            holding = self.holdings[asset] = Holding()
        return holding

    def find_order(self, client_order_id: ClientOrderId) -> NewOrder | None:
        """The order this client id names, if it is open or still in the window."""
        live = self.open_by_client.get(client_order_id)
        if live is not None:
            return live.order
        return self.recent_orders.get(client_order_id)

    def remember_order(self, order: NewOrder, limit: int) -> None:
        """Keep the `limit` newest orders by order_id, one per client id (the newest)."""
        recent = self.recent_orders
        order_id = order.order_id
        client_order_id = order.client_order_id
        known = recent.get(client_order_id)
        if known is not None:
            if known.order_id >= order_id:
                return
            del recent[client_order_id]
        recent[client_order_id] = order
        if order_id > self.newest_recent:
            self.newest_recent = order_id
        else:
            # Only while replaying partitions out of the order the ids were given in.
            recent = self.recent_orders = OrderedDict(
                sorted(recent.items(), key=lambda item: item[1].order_id)
            )
        if len(recent) > limit:
            recent.popitem(last=False)

    def index_open(self, live: LiveOrder) -> None:
        """Find `live` by its client id (the newest open order wins, as in the straight run)."""
        client_order_id = live.order.client_order_id
        known = self.open_by_client.get(client_order_id)
        if known is None or known.order.order_id < live.order.order_id:
            self.open_by_client[client_order_id] = live

    def unindex_open(self, live: LiveOrder) -> None:
        """Forget `live` by its client id, unless a newer order holds that id."""
        client_order_id = live.order.client_order_id
        if self.open_by_client.get(client_order_id) is live:
            del self.open_by_client[client_order_id]


class LedgerState:
    """Everything the core holds in memory, and the deltas that change it."""

    __slots__ = (
        "accounts",
        "config",
        "next_counter",
        "orders",
        "pending",
        "reference_users",
        "replaying",
        "supply",
    )

    def __init__(self, config: UBSCoreConfig) -> None:
        self.config = config
        self.accounts: dict[AccountId, Account] = {}
        self.orders: dict[OrderId, LiveOrder] = {}
        self.pending: dict[OrderId, PendingOrder] = {}
        self.supply: dict[Asset, int] = {}
        """Per asset, deposits minus withdrawals applied here."""
        self.reference_users: dict[str, int] = {}
        """How many accounts' funding windows hold each reference_id."""
        self.next_counter = 1
        """order_id = counter * shard_count + shard_index; 0 is never an order id."""
        self.replaying = True
        """While True, balances may dip below zero between deltas and engine events may
        arrive before their order; `check_consistent` closes the replay."""

    def account(self, account_id: AccountId) -> Account:
        """The account, created empty on first use."""
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = Account()
        return account

    def available(self, account_id: AccountId, asset: Asset) -> int:
        """Available atoms of `asset`, 0 for an account or asset never seen."""
        account = self.accounts.get(account_id)
        holding = account.holdings.get(asset) if account is not None else None
        return holding.available if holding is not None else 0

    # -- orders ------------------------------------------------------------------------------

    def open_order(self, order: NewOrder, asset: Asset, amount: int) -> None:
        """Freeze `amount` of `asset` for `order`, then apply any engine deltas it missed."""
        if order.order_id in self.orders:
            raise InvariantError(f"order {order.order_id} is already open; its command came twice")
        account = self.account(order.account_id)
        holding = account.holding(asset)
        holding.available -= amount
        holding.frozen += amount
        account.remember_order(order, self.config.order_window)
        counter = order.order_id // self.config.shard_count
        if counter >= self.next_counter:
            self.next_counter = counter + 1
        live = LiveOrder(order, asset, holding, amount)
        if self.pending and self._catch_up(live):
            return
        self.orders[order.order_id] = live
        account.index_open(live)

    def issue_order(
        self, account: Account, holding: Holding, order: NewOrder, asset: Asset, amount: int
    ) -> None:
        """`open_order` for an order this live core has just made from `next_counter`.

        The reserve hot path: its id is new, its client id is neither open nor in the window
        (the caller checked), and no engine event can be waiting for it, so only the deltas
        are left to do. The straight run takes this path and a replay takes `open_order`;
        the property tests check that both end in the same state.
        """
        holding.available -= amount
        holding.frozen += amount
        self.next_counter += 1
        recent = account.recent_orders
        recent[order.client_order_id] = order
        account.newest_recent = order.order_id
        if len(recent) > self.config.order_window:
            recent.popitem(last=False)
        live = LiveOrder(order, asset, holding, amount)
        self.orders[order.order_id] = live
        account.open_by_client[order.client_order_id] = live

    def _catch_up(self, live: LiveOrder) -> bool:
        """Apply deltas that arrived before the order; True if it is already done."""
        order = live.order
        pending = self.pending.pop(order.order_id, None)
        if pending is None:
            return False
        if (pending.account_id, pending.symbol) != (order.account_id, order.symbol) or (
            pending.side is not None and pending.side is not order.side
        ):
            raise InvariantError(
                f"engine events for order {order.order_id} name account {pending.account_id} "
                f"{pending.symbol} {pending.side!r}, its command says account "
                f"{order.account_id} {order.symbol} {order.side!r}"
            )
        self._spend(live, pending.consumed)
        if not pending.done:
            return False
        live.holding.available += live.remaining
        live.holding.frozen -= live.remaining
        return True

    def open_order_for(
        self, order_id: OrderId, account_id: AccountId, side: Side | None, symbol: Symbol
    ) -> LiveOrder | None:
        """The open order an engine event names, checked; None if it must wait (replay only)."""
        live = self.orders.get(order_id)
        if live is None:
            if not self.replaying:
                raise InvariantError(f"engine event for order {order_id}, which is not open here")
            self._pending(order_id, account_id, side, symbol)
            return None
        order = live.order
        if (
            order.account_id != account_id
            or order.symbol != symbol
            or (side is not None and order.side is not side)
        ):
            raise InvariantError(
                f"engine event names order {order_id} as account {account_id} {symbol} "
                f"{side!r}; it is account {order.account_id} {order.symbol} {order.side!r}"
            )
        return live

    def _pending(
        self, order_id: OrderId, account_id: AccountId, side: Side | None, symbol: Symbol
    ) -> PendingOrder:
        pending = self.pending.get(order_id)
        if pending is None:
            pending = self.pending[order_id] = PendingOrder(account_id, symbol)
        elif (pending.account_id, pending.symbol) != (account_id, symbol):
            raise InvariantError(f"engine events disagree on the account or symbol of {order_id}")
        if pending.done:
            raise InvariantError(f"engine event for order {order_id} after it was done")
        if side is not None:
            if pending.side is not None and pending.side is not side:
                raise InvariantError(f"order {order_id} traded on both sides")
            pending.side = side
        return pending

    def spend(self, order_id: OrderId, live: LiveOrder | None, amount: int) -> None:
        """A trade consumed `amount` of the order's reservation (deferred if not open yet)."""
        if live is None:
            self.pending[order_id].consumed += amount
        else:
            self._spend(live, amount)

    def _spend(self, live: LiveOrder, amount: int) -> None:
        if amount > live.remaining:
            raise InvariantError(
                f"order {live.order.order_id} spends {amount} {live.asset}, "
                f"but only {live.remaining} is left of its reservation"
            )
        live.remaining -= amount
        live.holding.frozen -= amount

    def close_order(self, order_id: OrderId, live: LiveOrder | None) -> None:
        """The order is done: release what is left of its reservation (deferred if not open)."""
        if live is None:
            self.pending[order_id].done = True
            return
        del self.orders[order_id]
        self.accounts[live.order.account_id].unindex_open(live)
        live.holding.available += live.remaining
        live.holding.frozen -= live.remaining
        live.remaining = 0

    # -- balances ----------------------------------------------------------------------------

    def credit(self, account_id: AccountId, asset: Asset, amount: int) -> None:
        """Add `amount` atoms to available (a trade's proceeds or a fee)."""
        if amount == 0:
            return
        account = self.accounts.get(account_id) or self.account(account_id)
        holding = account.holdings.get(asset) or account.holding(asset)
        holding.available += amount
        if not self.replaying and holding.available + holding.frozen > INT64_MAX:
            raise InvariantError(f"account {account_id} would hold more {asset} than int64")

    def apply_funding(self, event: LedgerEvent) -> Holding:
        """Apply a deposit or withdrawal and remember its reference_id; no checks here."""
        account = self.account(event.account_id)
        holding = account.holding(event.asset)
        signed = event.amount if event.kind is LedgerEntryKind.DEPOSIT else -event.amount
        holding.available += signed
        self.supply[event.asset] = self.supply.get(event.asset, 0) + signed
        window = account.recent_funding
        reference = event.reference_id
        if reference in window:
            del window[reference]
        else:
            self.reference_users[reference] = self.reference_users.get(reference, 0) + 1
        window[reference] = event
        while len(window) > self.config.funding_window:
            self._forget_reference(window.popitem(last=False)[0])
        return holding

    def _forget_reference(self, reference: str) -> None:
        users = self.reference_users[reference] - 1
        if users:
            self.reference_users[reference] = users
        else:
            del self.reference_users[reference]

    # -- checks ------------------------------------------------------------------------------

    def check_consistent(self) -> None:
        """Raise InvariantError unless the state is one a live core may be in."""
        if self.pending:
            waiting = ", ".join(str(order_id) for order_id in sorted(self.pending)[:5])
            raise InvariantError(
                f"{len(self.pending)} orders have engine events but no command in "
                f"ordermesh.orders (e.g. {waiting})"
            )
        reserved: dict[tuple[AccountId, Asset], int] = {}
        for live in self.orders.values():
            key = (live.order.account_id, live.asset)
            reserved[key] = reserved.get(key, 0) + live.remaining
        totals: dict[Asset, int] = {}
        for account_id, account in self.accounts.items():
            for asset, holding in account.holdings.items():
                frozen = reserved.pop((account_id, asset), 0)
                if holding.available < 0 or holding.frozen != frozen:
                    raise InvariantError(
                        f"account {account_id} {asset}: available {holding.available}, frozen "
                        f"{holding.frozen}, open orders reserve {frozen}"
                    )
                if holding.available + holding.frozen > INT64_MAX:
                    raise InvariantError(f"account {account_id} holds more {asset} than int64")
                totals[asset] = totals.get(asset, 0) + holding.available + holding.frozen
        if reserved:
            raise InvariantError(f"open orders reserve from missing holdings: {sorted(reserved)}")
        if self.config.shard_count == 1:
            self._check_conservation(totals)

    def _check_conservation(self, totals: dict[Asset, int]) -> None:
        # One shard holds every account, so what it holds is exactly what came in minus what
        # went out (DESIGN §4). Across shards only the sum over all shards conserves.
        for asset in totals.keys() | self.supply.keys():
            held, supplied = totals.get(asset, 0), self.supply.get(asset, 0)
            if held != supplied:
                raise InvariantError(
                    f"{asset}: accounts hold {held} atoms, deposits minus withdrawals are "
                    f"{supplied}"
                )
