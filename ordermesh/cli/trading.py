"""Account commands: orders (place, cancel, get, list), balances, and funding (admin)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import click
from rich.console import Group, RenderableType
from rich.text import Text

from ordermesh.cli import output
from ordermesh.cli.errors import refusal
from ordermesh.cli.params import DECIMAL, limit_option
from ordermesh.cli.state import json_option, state_of

if TYPE_CHECKING:
    from ordermesh.client import Balance, Fill, FundingResult, Order, PlaceResult

ORDER_EPILOG = """\
\b
Examples:
  ordermesh --key demo-trader-1 order place BTC-USDT sell 0.5 --price 30000
  ordermesh --key demo-trader-2 order place BTC-USDT buy 0.2 --price 30100 --tif IOC
  ordermesh --key demo-trader-1 order list --open
  ordermesh --key demo-trader-1 order get 42
  ordermesh --key demo-trader-1 order cancel BTC-USDT 42
"""

PLACE_EPILOG = """\
\b
A LIMIT order needs --price; without --price the order is a MARKET order (a MARKET BUY
may give --quote-quantity, the quote to spend, instead of QUANTITY). With --wait result
(the default) the answer comes after the matcher's first outcome, fills included; with
--wait ack, as soon as the funds are frozen and the order is in the log. A REJECTED
order exits 1 with its reason. Resending the same --client-order-id returns the first
order (marked duplicate), never a second one.

\b
Examples:
  ordermesh --key demo-trader-1 order place BTC-USDT sell 0.5 --price 30000
  ordermesh --key demo-trader-2 order place BTC-USDT buy 0.1 --price 30100 --tif FOK
  ordermesh --key demo-trader-2 order place BTC-USDT buy --quote-quantity 500
  ordermesh --key demo-trader-1 order place ETH-USDT sell 1 --price 2000 --post-only \\
      --client-order-id my-ask-1 --json
"""

_SIDES: Final = click.Choice(["buy", "sell"], case_sensitive=False)
_WAIT: Final = click.Choice(["ack", "result"], case_sensitive=False)


@click.group(epilog=ORDER_EPILOG)
def order() -> None:
    """Place, cancel and look up your orders (the key's account)."""


@order.command(epilog=PLACE_EPILOG)
@click.argument("symbol")
@click.argument("side", type=_SIDES)
@click.argument("quantity", type=DECIMAL, required=False)
@click.option("--price", type=DECIMAL, help="Limit price (a multiple of the tick size).")
@click.option(
    "--type",
    "order_type",
    type=click.Choice(["limit", "market"], case_sensitive=False),
    help="LIMIT when --price is given, else MARKET.",
)
@click.option(
    "--tif",
    "time_in_force",
    type=click.Choice(["GTC", "IOC", "FOK"], case_sensitive=False),
    help="Time in force; GTC for LIMIT and IOC for MARKET when not given.",
)
@click.option("--quote-quantity", type=DECIMAL, help="MARKET BUY: how much quote to spend.")
@click.option("--post-only", is_flag=True, help="Rejected instead of taking liquidity.")
@click.option(
    "--stp",
    "self_trade_prevention",
    type=click.Choice(
        ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"], case_sensitive=False
    ),
    help="Self-trade prevention; EXPIRE_TAKER when not given.",
)
@click.option(
    "--client-order-id",
    metavar="ID",
    help="Your id for the order (1-36 of A-Z a-z 0-9 _ -); made up when not given.",
)
@click.option(
    "--wait", type=_WAIT, default="result", show_default=True, help="Answer at ack or result."
)
@json_option
@click.pass_context
def place(
    ctx: click.Context,
    *,
    symbol: str,
    side: str,
    quantity: Decimal | None,
    price: Decimal | None,
    order_type: str | None,
    time_in_force: str | None,
    quote_quantity: Decimal | None,
    post_only: bool,
    self_trade_prevention: str | None,
    client_order_id: str | None,
    wait: str,
) -> None:
    """Place an order: SYMBOL, SIDE (buy or sell) and QUANTITY (in the base asset)."""
    if quantity is None and quote_quantity is None:
        raise click.UsageError("give a QUANTITY, or --quote-quantity for a MARKET BUY")
    options: dict[str, Any] = {
        "order_type": order_type.upper() if order_type else None,
        "time_in_force": time_in_force.upper() if time_in_force else None,
        "quote_quantity": quote_quantity,
        "post_only": post_only,
        "self_trade_prevention": self_trade_prevention.upper() if self_trade_prevention else None,
        "client_order_id": client_order_id,
        "wait": wait.lower(),
    }
    state = state_of(ctx)
    with state.client() as client:
        result = client.place_order(symbol, side.upper(), quantity, price, **options)  # type: ignore[arg-type]
    output.emit(ctx, result, lambda: _placed_view(result))
    if result.status == "REJECTED":
        reason = result.reject_reason or "REJECTED"
        raise refusal(state, f"order {result.order_id} rejected: {reason}", reason)


def _placed_view(result: PlaceResult) -> RenderableType:
    status = result.status or "ACCEPTED (no outcome yet: --wait ack)"
    line = Text(f"order {result.order_id} ({result.client_order_id}) {result.symbol}: ", "bold")
    line.append(status)
    if result.reject_reason:
        line.append(f" ({result.reject_reason})")
    if result.duplicate:
        line.append("  [already placed with this client order id: the first order]", "yellow")
    filled = Text(
        f"filled {output.cell(result.filled_quantity)}"
        f" for {output.cell(result.filled_quote_quantity)} quote"
    )
    if not result.fills:
        return Group(line, filled)
    return Group(line, filled, _fills_table(result.fills))


def _fills_table(fills: tuple[Fill, ...]) -> RenderableType:
    columns: list[output.Column[Fill]] = [
        ("trade id", lambda f: f.trade_id),
        ("price", lambda f: f.price),
        ("quantity", lambda f: f.quantity),
        ("quote", lambda f: f.quote_quantity),
        ("fee", lambda f: f"{output.cell(f.fee)} {f.fee_asset}"),
        ("maker", lambda f: f.maker),
    ]
    return output.table("fills", fills, columns)


CANCEL_EPILOG = """\
\b
Examples:
  ordermesh --key demo-trader-1 order cancel BTC-USDT 42
  ordermesh --key demo-trader-1 order cancel BTC-USDT --client-order-id my-ask-1 --wait ack
"""


@order.command(epilog=CANCEL_EPILOG)
@click.argument("symbol")
@click.argument("order_id", type=click.IntRange(min=1), required=False)
@click.option("--client-order-id", metavar="ID", help="Cancel by your id instead of ORDER_ID.")
@click.option(
    "--wait", type=_WAIT, default="result", show_default=True, help="Answer at ack or result."
)
@json_option
@click.pass_context
def cancel(
    ctx: click.Context, symbol: str, order_id: int | None, client_order_id: str | None, wait: str
) -> None:
    """Cancel one of your orders, by ORDER_ID or --client-order-id."""
    _one_of(order_id, client_order_id)
    with state_of(ctx).client() as client:
        result = client.cancel_order(
            symbol,
            order_id,
            client_order_id=client_order_id,
            wait=wait.lower(),  # type: ignore[arg-type]  # one of click.Choice's values
        )
    status = result.status or "cancel accepted (the matcher has not answered yet: --wait ack)"
    output.emit(
        ctx,
        result,
        lambda: Text(f"order {result.order_id} ({result.client_order_id}) {symbol}: {status}"),
    )


def _one_of(order_id: int | None, client_order_id: str | None) -> None:
    if (order_id is None) == (client_order_id is None):
        raise click.UsageError("give ORDER_ID or --client-order-id (one of them)")


GET_EPILOG = """\
\b
Examples:
  ordermesh --key demo-trader-1 order get 42
  ordermesh --key demo-trader-1 order get --client-order-id my-ask-1 --json
"""


@order.command(epilog=GET_EPILOG)
@click.argument("order_id", type=click.IntRange(min=1), required=False)
@click.option("--client-order-id", metavar="ID", help="Look up by your id instead of ORDER_ID.")
@json_option
@click.pass_context
def get(ctx: click.Context, order_id: int | None, client_order_id: str | None) -> None:
    """One of your orders, as the system of record knows it."""
    _one_of(order_id, client_order_id)
    with state_of(ctx).client() as client:
        found = client.get_order(order_id, client_order_id=client_order_id)
    output.emit(ctx, found, lambda: output.fields_table(f"order {found.order_id}", found))


LIST_EPILOG = """\
\b
Examples:
  ordermesh --key demo-trader-1 order list                 # newest first, all markets
  ordermesh --key demo-trader-1 order list --open --symbol BTC-USDT
  ordermesh --key demo-trader-1 order list --limit 500 --json
"""


@order.command("list", epilog=LIST_EPILOG)
@click.option("--symbol", help="Only this market.")
@click.option("--open", "open_only", is_flag=True, help="Only orders still on the book.")
@limit_option(10_000, 50, "At most this many (pages are fetched as needed).")
@json_option
@click.pass_context
def list_orders(ctx: click.Context, symbol: str | None, open_only: bool, limit: int) -> None:
    """Your orders, newest first (or only the open ones)."""
    with state_of(ctx).client() as client:
        if open_only:
            found = client.list_open_orders(symbol)[:limit]
        else:
            found = []
            for item in client.iter_orders(symbol, page_size=min(limit, 1000)):
                found.append(item)
                if len(found) >= limit:
                    break
    output.emit(ctx, found, lambda: _orders_table("open orders" if open_only else "orders", found))


def _orders_table(title: str, orders: list[Order]) -> RenderableType:
    columns: list[output.Column[Order]] = [
        ("order id", lambda o: o.order_id),
        ("client order id", lambda o: o.client_order_id),
        ("symbol", lambda o: o.symbol),
        ("side", lambda o: o.side),
        ("type", lambda o: f"{o.order_type} {o.time_in_force}"),
        ("price", lambda o: o.price),
        ("quantity", lambda o: o.quantity if o.quantity is not None else o.quote_quantity),
        ("filled", lambda o: o.filled_quantity),
        ("status", lambda o: o.status),
        ("created", lambda o: o.created_at),
    ]
    return output.table(title, orders, columns)


BALANCES_EPILOG = """\
\b
Examples:
  ordermesh --key demo-trader-1 balances
  ordermesh --key demo-trader-1 balances --json | jq -r '.[] | "\\(.asset) \\(.available)"'
"""


@click.command(epilog=BALANCES_EPILOG)
@json_option
@click.pass_context
def balances(ctx: click.Context) -> None:
    """Your balances: available, frozen (held by open orders) and total, per asset."""
    with state_of(ctx).client() as client:
        found = sorted(client.get_balances().values(), key=lambda b: b.asset)
    rows = [_balance_row(balance) for balance in found]
    output.emit(ctx, rows, lambda: output.rows_table(None, rows))


def _balance_row(balance: Balance) -> dict[str, object]:
    return {
        "asset": balance.asset,
        "available": balance.available,
        "frozen": balance.frozen,
        "total": balance.total,
    }


FUNDING_EPILOG = """\
\b
Needs an admin key. Idempotent by --reference-id: running it again with the same
reference does nothing more (the answer says duplicate). Without --reference-id a new
one is made and printed.

\b
Examples:
  ordermesh --key admin {name} 1 USDT 10000
  ordermesh --key admin {name} 2 BTC 0.5 --reference-id {name}-2-btc-1 --json
"""


def _funding_command(name: str, verb: str) -> click.Command:
    @click.command(name, epilog=FUNDING_EPILOG.format(name=name))
    @click.argument("account_id", type=click.IntRange(min=1))
    @click.argument("asset")
    @click.argument("amount", type=DECIMAL)
    @click.option(
        "--reference-id",
        metavar="REF",
        help="Your id of this transfer (1-64 of A-Z a-z 0-9 _ . : -), the key of retries.",
    )
    @json_option
    @click.pass_context
    def command(
        ctx: click.Context,
        account_id: int,
        asset: str,
        amount: Decimal,
        reference_id: str | None,
    ) -> None:
        reference = reference_id or f"cli-{uuid.uuid4().hex}"
        with state_of(ctx).client() as client:
            call = client.deposit if name == "deposit" else client.withdraw
            result = call(account_id, asset, amount, reference_id=reference)
        done = f"{verb} {output.cell(amount)} {asset}, account {account_id}, reference {reference}"
        data = {"reference_id": reference, "duplicate": result.duplicate, "balance": result.balance}
        output.emit(ctx, data, lambda: _funded_view(done, account_id, result))

    command.help = (
        "Credit AMOUNT of ASSET to ACCOUNT_ID (admin key)."
        if name == "deposit"
        else "Debit AMOUNT of ASSET from ACCOUNT_ID (admin key)."
    )
    return command


def _funded_view(done: str, account: int, result: FundingResult) -> RenderableType:
    if result.duplicate:
        done = f"nothing done, already done before with this reference: {done}"
    balance = result.balance
    return Text(
        f"{done}\naccount {account} {balance.asset}: available {output.cell(balance.available)},"
        f" frozen {output.cell(balance.frozen)}"
    )


deposit = _funding_command("deposit", "deposited")
withdraw = _funding_command("withdraw", "withdrew")
