"""Which open order a cancel names: by order_id or client_order_id, of the caller only."""

from __future__ import annotations

from ordermesh.events import NewOrder
from ordermesh.model import AccountId, ClientOrderId, OrderId, RejectReason, Symbol
from ubscore.core import rules
from ubscore.core.accounts import LedgerState, LiveOrder
from ubscore.core.errors import InvalidRequestError, UnknownOrderError
from ubscore.core.values import UINT64_MAX


def find_open(
    state: LedgerState,
    account_id: AccountId,
    symbol: Symbol,
    order_id: OrderId,
    client_order_id: ClientOrderId,
) -> NewOrder:
    """The open order of `account_id` a cancel names.

    Another account's order is reported exactly like one that does not exist, so a cancel
    never tells whether an order id is in use.

    Raises:
        OrdermeshError: INVALID_ORDER_ID, INVALID_CLIENT_ORDER_ID, UNKNOWN_ORDER or
            ORDER_ALREADY_DONE.
    """
    order = _find(state, account_id, order_id, client_order_id).order
    if symbol and symbol != order.symbol:
        raise UnknownOrderError(
            RejectReason.UNKNOWN_ORDER,
            f"account {account_id} has no open order {order.order_id} on {symbol}",
            field="symbol",
        )
    return order


def _find(
    state: LedgerState, account_id: AccountId, order_id: OrderId, client_order_id: ClientOrderId
) -> LiveOrder:
    if order_id:
        return _by_order_id(state, account_id, order_id, client_order_id)
    if not client_order_id:
        raise InvalidRequestError(
            RejectReason.INVALID_ORDER_ID,
            "a cancel needs an order_id or a client_order_id",
            field="order_id",
        )
    rules.check_client_order_id(client_order_id)
    account = state.accounts.get(account_id)
    found = account.open_by_client.get(client_order_id) if account is not None else None
    if found is not None:
        return found
    done = account is not None and client_order_id in account.recent_orders
    raise UnknownOrderError(
        RejectReason.ORDER_ALREADY_DONE if done else RejectReason.UNKNOWN_ORDER,
        f"account {account_id}'s order {client_order_id!r} is already done"
        if done
        else f"account {account_id} has no open order {client_order_id!r}",
        field="client_order_id",
    )


def _by_order_id(
    state: LedgerState, account_id: AccountId, order_id: OrderId, client_order_id: ClientOrderId
) -> LiveOrder:
    if not 0 < order_id <= UINT64_MAX:
        raise InvalidRequestError(
            RejectReason.INVALID_ORDER_ID,
            f"order_id must be 1..{UINT64_MAX}, was {order_id}",
            field="order_id",
        )
    live = state.orders.get(order_id)
    if (
        live is None
        or live.order.account_id != account_id
        or (client_order_id and client_order_id != live.order.client_order_id)
    ):
        named = f" with client_order_id {client_order_id!r}" if client_order_id else ""
        raise UnknownOrderError(
            RejectReason.UNKNOWN_ORDER,
            f"account {account_id} has no open order {order_id}{named}",
            field="order_id",
        )
    return live
