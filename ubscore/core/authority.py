"""UBSCore: the balance authority's pure core. No order reaches the matcher unfunded.

Requests (`reserve`, `cancel`, `deposit`, `withdraw`) check, change the state and return
the command or event the adapter must log before it acks. The log (ordermesh.orders, .ledger,
.engine) comes back through `apply_command`, `apply_ledger` and `apply_engine`, which the
adapter calls both when replaying at start-up and, live, once a produce is acknowledged.

Recovery: a core starts replaying, from nothing or from a snapshot; each topic partition is
replayed from the snapshot's offset, in any interleaving; `finish_replay` checks the result
and makes the core live. Every change is a delta, so the interleaving does not matter:
- deltas on (available, frozen) are sums, and sums commute; while replaying a balance may dip
  below zero between two deltas, and `finish_replay` checks that none is left there;
- the only deltas that need an order's reservation, a trade's spend and a done's release,
  wait in a pending entry keyed by order_id until the order's command is replayed (the
  engine partition keeps one order's events in order);
- the client_order_id window keeps the newest orders by order_id, not by arrival;
- the reference_id window is per account, and one ledger partition holds an account.
Applied offsets are tracked per (topic, partition) and an offset already applied is skipped;
engine events are also checked against their per-symbol sequence, and a gap stops the core.

The adapter must stop (fail-stop) when it cannot tell whether a produce reached the log: the
state then holds a change the log may not, and only a rebuild from the log is right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ordermesh.events import (
    CancelOrder,
    EngineEvent,
    LedgerEvent,
    NewOrder,
    OrderCommand,
    OrderDone,
    TradeExecuted,
)
from ordermesh.markets import Market, MarketTable
from ordermesh.model import (
    AccountId,
    Asset,
    ClientOrderId,
    LedgerEntryKind,
    OrderId,
    OrderType,
    Side,
    Symbol,
)
from ubscore.core import cancels, engine, funding, rules
from ubscore.core.accounts import LedgerState
from ubscore.core.errors import (
    InvariantError,
    NotReadyError,
    SnapshotNotReadyError,
)
from ubscore.core.position import LogPosition
from ubscore.core.recovery import capture, rebuild
from ubscore.core.snapshot import UBSCoreSnapshot
from ubscore.core.values import (
    ENGINE_TOPIC,
    LEDGER_TOPIC,
    ORDERS_TOPIC,
    Balance,
    Funding,
    OpenOrder,
    Reservation,
    ReserveRequest,
    UBSCoreConfig,
)

_BUY: Final = Side.BUY
_MARKET: Final = OrderType.MARKET


class UBSCore:
    """Accounts, reservations and dedup windows of one ubscore shard; synchronous and pure.

    Args:
        markets: the market table every service loads.
        config: shard and window sizes; the defaults for a single instance.
    """

    __slots__ = (
        "_config",
        "_markets",
        "_position",
        "_rules",
        "_state",
        "_unlogged_funding",
        "_unlogged_orders",
    )

    def __init__(self, markets: MarketTable, config: UBSCoreConfig | None = None) -> None:
        self._markets = markets
        self._config = config if config is not None else UBSCoreConfig()
        self._state = LedgerState(self._config)
        self._position = LogPosition()
        self._rules = {
            symbol: rules.OrderRules(market) for symbol, market in markets.markets.items()
        }
        self._unlogged_orders: dict[OrderId, NewOrder] = {}
        self._unlogged_funding: dict[tuple[AccountId, str], LedgerEvent] = {}

    @classmethod
    def restore(cls, snapshot: UBSCoreSnapshot, markets: MarketTable) -> UBSCore:
        """A replaying core with the snapshot's state; replay each topic from its offsets next.

        Raises:
            InvariantError: the snapshot contradicts itself or the market table.
        """
        core = cls(markets, snapshot.config)
        core._state, offsets, sequences = rebuild(snapshot, markets)
        core._position = LogPosition(offsets, sequences)
        return core

    @property
    def config(self) -> UBSCoreConfig:
        """Shard and window sizes."""
        return self._config

    @property
    def replaying(self) -> bool:
        """True until `finish_replay`; requests are refused (UNAVAILABLE) meanwhile."""
        return self._state.replaying

    # -- requests ------------------------------------------------------------------------------

    def reserve(self, request: ReserveRequest, now_ns: int) -> Reservation:
        """Check and freeze the funds of a new order; return the NewOrder to log.

        A client_order_id the account used before (an open order, or one in the window)
        returns the original order marked duplicate, and changes nothing.

        Raises:
            OrdermeshError: the request is refused (the reason says why); nothing changed.
        """
        state = self._state
        if state.replaying:
            raise NotReadyError
        account_id = request.account_id
        rules.check_account(self._config, account_id, trading=True)
        rules.check_client_order_id(request.client_order_id)
        account = state.accounts.get(account_id)
        if account is not None:
            original = account.find_order(request.client_order_id)
            if original is not None:
                return self._duplicate(original)
        order_rules = self._rules.get(request.symbol) or self._rules_of(request.symbol)
        asset, amount = order_rules.required_funds(request)
        holding = account.holdings.get(asset) if account is not None else None
        available = holding.available if holding is not None else 0
        if amount == rules.ALL_AVAILABLE:
            amount = available
        if account is None or holding is None or amount > available or amount == 0:
            scale = self._markets.assets[asset].scale
            raise rules.insufficient_funds(request, asset, scale, amount, available)
        # Positional: keyword construction of this 13-field frozen dataclass costs a third
        # of a reservation. The order is NewOrder's field order.
        order = NewOrder(
            order_rules.market.symbol,
            OrderId(state.next_counter * self._config.shard_count + self._config.shard_index),
            account_id,
            request.client_order_id,
            request.side,
            request.order_type,
            request.time_in_force,
            request.price,
            request.quantity,
            amount if request.order_type is _MARKET and request.side is _BUY else 0,
            request.post_only,
            request.self_trade_prevention,
            now_ns,
        )
        state.issue_order(account, holding, order, asset, amount)
        self._unlogged_orders[order.order_id] = order
        return Reservation(order, False, asset, amount)

    def _rules_of(self, symbol: Symbol) -> rules.OrderRules:
        # Not among the known markets: the table raises UNKNOWN_SYMBOL, naming the known ones.
        return rules.OrderRules(self._markets.market(symbol))

    def _duplicate(self, order: NewOrder) -> Reservation:
        spec, amount = rules.reserved_by(order, self._markets.market(order.symbol))
        return Reservation(order, True, spec.code, amount)

    def cancel(
        self,
        account_id: AccountId,
        symbol: Symbol,
        order_id: OrderId,
        client_order_id: ClientOrderId,
        now_ns: int,
    ) -> CancelOrder:
        """Resolve an open order of the account and return the CancelOrder to log.

        Nothing is released here: funds come back when the matcher's OrderDone is applied.
        Cancels have no dedup of their own; a repeated cancel is logged again and the
        matcher answers it with CancelRejected.

        Args:
            account_id: the caller's account; another account's order is UNKNOWN_ORDER.
            symbol: the order's symbol, or empty for any.
            order_id: the order, when non-zero.
            client_order_id: the order by its client id, when order_id is 0.
            now_ns: the command's timestamp.

        Raises:
            OrdermeshError: INVALID_ACCOUNT, INVALID_ORDER_ID, INVALID_CLIENT_ORDER_ID,
                UNKNOWN_ORDER or ORDER_ALREADY_DONE; nothing changed.
        """
        if self._state.replaying:
            raise NotReadyError
        rules.check_account(self._config, account_id, trading=True)
        order = cancels.find_open(self._state, account_id, symbol, order_id, client_order_id)
        return CancelOrder(order.symbol, account_id, order.order_id, order.client_order_id, now_ns)

    def deposit(
        self, account_id: AccountId, asset: Asset, amount: int, reference_id: str, now_ns: int
    ) -> Funding:
        """Credit available funds; return the LedgerEvent to log. Idempotent by reference_id.

        Raises:
            OrdermeshError: the request is refused (the reason says why); nothing changed.
        """
        kind = LedgerEntryKind.DEPOSIT
        return self._fund(LedgerEvent(account_id, asset, kind, amount, reference_id, now_ns))

    def withdraw(
        self, account_id: AccountId, asset: Asset, amount: int, reference_id: str, now_ns: int
    ) -> Funding:
        """Debit available funds; return the LedgerEvent to log. Idempotent by reference_id.

        Raises:
            OrdermeshError: INSUFFICIENT_FUNDS above available, or another refusal.
        """
        kind = LedgerEntryKind.WITHDRAWAL
        return self._fund(LedgerEvent(account_id, asset, kind, amount, reference_id, now_ns))

    def _fund(self, wanted: LedgerEvent) -> Funding:
        if self._state.replaying:
            raise NotReadyError
        event, duplicate = funding.fund(self._state, self._markets, wanted)
        if not duplicate:
            self._unlogged_funding[(event.account_id, event.reference_id)] = event
        return Funding(event, duplicate, self.balance(event.account_id, event.asset))

    # -- the log -------------------------------------------------------------------------------

    def apply_command(self, command: OrderCommand, partition: int, offset: int) -> None:
        """Apply a record of ordermesh.orders (a cancel changes nothing).

        Live, it confirms a command this core issued; replaying, a NewOrder of this shard
        freezes its funds again.

        Raises:
            InvariantError: a NewOrder this core did not issue arrives while live, or a
                logged command differs from the one issued.
        """
        fresh = self._position.advance(ORDERS_TOPIC, partition, offset)
        if not isinstance(command, NewOrder) or not rules.owns(self._config, command.account_id):
            return
        issued = self._unlogged_orders.pop(command.order_id, None)
        if issued is not None:
            # The adapter hands back the very object it was given: identity spares the
            # field-by-field comparison on the hot path.
            if issued is not command and issued != command:
                raise InvariantError(f"the log holds {command}, this core issued {issued}")
            return
        if not fresh:
            return
        if not self._state.replaying:
            raise InvariantError(
                f"ordermesh.orders holds order {command.order_id} of account "
                f"{command.account_id}, which this live core did not issue"
            )
        if command.order_id % self._config.shard_count != self._config.shard_index:
            raise InvariantError(f"order {command.order_id} has an id of another shard")
        try:
            spec, amount = rules.reserved_by(command, self._market_of(command.symbol))
        except ArithmeticError as e:
            raise InvariantError(f"order {command.order_id}: {e}") from e
        self._state.open_order(command, spec.code, amount)

    def apply_ledger(self, event: LedgerEvent, partition: int, offset: int) -> None:
        """Apply a record of ordermesh.ledger.

        Live, it confirms an event this core issued; replaying, a deposit or withdrawal of
        this shard moves its funds again.

        Raises:
            InvariantError: an event this core did not issue arrives while live, or a
                malformed one.
        """
        fresh = self._position.advance(LEDGER_TOPIC, partition, offset)
        if not rules.owns(self._config, event.account_id):
            return
        issued = self._unlogged_funding.pop((event.account_id, event.reference_id), None)
        if issued is not None:
            if issued is not event and issued != event:
                raise InvariantError(f"the log holds {event}, this core issued {issued}")
            return
        if not fresh:
            return
        if not self._state.replaying:
            raise InvariantError(f"ordermesh.ledger holds {event}, not issued by this live core")
        known = event.kind in (LedgerEntryKind.DEPOSIT, LedgerEntryKind.WITHDRAWAL)
        if not known or event.amount <= 0 or event.asset not in self._markets.assets:
            raise InvariantError(f"ordermesh.ledger holds a malformed event {event}")
        self._state.apply_funding(event)

    def apply_engine(self, event: EngineEvent, partition: int, offset: int) -> None:
        """Apply a record of ordermesh.engine: trades move funds, a done releases the rest.

        An event already applied (by offset or by its symbol's sequence) is skipped.

        Raises:
            InvariantError: a sequence gap, an unknown symbol, or an event the state cannot
                take (see `engine.apply_trade`, `engine.apply_done`).
        """
        symbol = event.symbol
        position = self._position
        if not position.advance(ENGINE_TOPIC, partition, offset):
            return
        if not position.is_new(symbol, event.sequence):
            return
        body = event.body
        if isinstance(body, TradeExecuted):
            engine.apply_trade(self._state, self._market_of(symbol), body)
        elif isinstance(body, OrderDone):
            engine.apply_done(self._state, symbol, body)
        position.applied(symbol, event.sequence)

    def _market_of(self, symbol: Symbol) -> Market:
        market = self._markets.markets.get(symbol)
        if market is None:
            raise InvariantError(f"the log names symbol {symbol!r}, which is not traded here")
        return market

    def finish_replay(self) -> None:
        """End the replay: check the rebuilt state, then serve requests.

        Raises:
            InvariantError: engine events whose order never came, a negative balance, frozen
                funds that no open order explains, or (one shard) assets created or lost.
        """
        self._state.check_consistent()
        self._state.replaying = False

    def next_offset(self, topic: str, partition: int) -> int:
        """Where to resume reading a partition: after the last offset applied, else 0."""
        return self._position.next_offset(topic, partition)

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> UBSCoreSnapshot:
        """The state and its offsets, frozen: restore it, then replay from the offsets.

        Raises:
            SnapshotNotReadyError: while replaying, or while a command or event this core
                issued is not yet confirmed in the log (the snapshot would hold a change the
                log may never have).
        """
        if self._state.replaying:
            raise SnapshotNotReadyError("a replaying core has no snapshot; finish_replay first")
        unconfirmed = len(self._unlogged_orders) + len(self._unlogged_funding)
        if unconfirmed:
            raise SnapshotNotReadyError(f"{unconfirmed} issued records are not in the log yet")
        return capture(self._state, self._position.offsets, self._position.sequences)

    def state_hash(self) -> bytes:
        """SHA-256 of the snapshot: equal for two cores that applied the same deltas."""
        return self.snapshot().digest()

    def balance(self, account_id: AccountId, asset: Asset) -> Balance:
        """An account's holding of one asset (zero if never held)."""
        account = self._state.accounts.get(account_id)
        holding = account.holdings.get(asset) if account is not None else None
        if holding is None:
            return Balance(asset, 0, 0)
        return Balance(asset, holding.available, holding.frozen)

    def balances(self, account_id: AccountId) -> tuple[Balance, ...]:
        """Every asset the account holds or held, by asset code."""
        account = self._state.accounts.get(account_id)
        if account is None:
            return ()
        return tuple(
            Balance(asset, holding.available, holding.frozen)
            for asset, holding in sorted(account.holdings.items())
        )

    def open_orders(self, account_id: AccountId) -> tuple[OpenOrder, ...]:
        """The account's orders with funds still frozen, by order_id."""
        account = self._state.accounts.get(account_id)
        if account is None:
            return ()
        lives = sorted(account.open_by_client.values(), key=lambda live: live.order.order_id)
        return tuple(OpenOrder(live.order, live.asset, live.remaining) for live in lives)

    @property
    def offsets(self) -> Mapping[tuple[str, int], int]:
        """(topic, partition) -> the last offset applied from it."""
        return dict(self._position.offsets)
