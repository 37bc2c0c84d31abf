"""AsyncClient and Client against a real `ordermesh up`: every method, every error class.

| test              | who            | market   | what                                         |
|-------------------|----------------|----------|----------------------------------------------|
| trading           | admin, 3, 4    | ETH-USDT | fund, rest, cross (RESULT), read it all back |
| errors            | admin, 5, 6    | ETH-USDT | each refusal -> its class, reason and field  |
| blocking client   | admin, 7, 8    | ETH-USDT | the same calls through Client                |
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
import pytest_asyncio

from ordermesh.client import (
    AlreadyExists,
    AsyncClient,
    Balance,
    BookSnapshot,
    Client,
    FailedPrecondition,
    InvalidArgument,
    LocalBook,
    NotFound,
    Order,
    OrderUpdate,
    PermissionDenied,
    TradeEvent,
    Unauthenticated,
)
from tests import waiting
from tests.e2e.mesh_process import Up, clean_environment
from tests.integration.client.mesh import ADMIN_KEY, start_mesh, trader_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
in_module_loop = pytest.mark.asyncio(loop_scope="module")

T = TypeVar("T")
D = Decimal
SYMBOL = "ETH-USDT"
QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart.py"


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], what: str
) -> T:
    return await waiting.eventually(probe, accept, what=what, seconds=20, poll_seconds=0.1)


def settles(probe: Callable[[], T], accept: Callable[[T], bool], what: str) -> T:
    """`eventually` for blocking calls (settlement-backed reads lag the engine a little)."""
    return asyncio.run(eventually(lambda: asyncio.to_thread(probe), accept, what))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    process = await start_mesh(tmp_path_factory.mktemp("sdk"))
    try:
        yield process
    finally:
        await process.kill()


def client(up: Up, key: str) -> AsyncClient:
    return AsyncClient(up.gateway, key, timeout=10)


def balances(*rows: tuple[str, str, str]) -> dict[str, Balance]:
    return {asset: Balance(asset, D(available), D(frozen)) for asset, available, frozen in rows}


@in_module_loop
async def test_async_client_trades_and_reads_everything_back(up: Up) -> None:
    async with (
        client(up, ADMIN_KEY) as admin,
        client(up, trader_key(3)) as seller,
        client(up, trader_key(4)) as buyer,
    ):
        funded = await admin.deposit(3, "ETH", D("2"), reference_id="sdk-fund-3")
        assert (funded.balance, funded.duplicate) == (Balance("ETH", D(2), D(0)), False)
        again = await admin.deposit(3, "ETH", "2", reference_id="sdk-fund-3")
        assert (again.balance.available, again.duplicate) == (D(2), True)
        await admin.deposit(4, "USDT", 1000)
        out = await admin.withdraw(4, "USDT", "100", reference_id="sdk-out-4")
        assert (out.balance.available, out.duplicate) == (D(900), False)
        assert await buyer.get_balances() == balances(("USDT", "900", "0"))

        symbols = {s.symbol: s for s in await buyer.list_symbols()}
        eth = symbols[SYMBOL]
        assert (eth.tick_size, eth.lot_size, eth.taker_fee_bps, eth.base_scale) == (
            D("0.01"),
            D("0.0001"),
            20,
            8,
        )

        rest = await seller.place_order(SYMBOL, "SELL", D("1"), D("2000"), client_order_id="s-1")
        assert (rest.status, rest.duplicate, rest.client_order_id) == ("PENDING_NEW", False, "s-1")
        book = await eventually(
            lambda: buyer.get_order_book(SYMBOL, 5), lambda b: bool(b.asks), "the resting ask"
        )
        assert [(lv.price, lv.quantity, lv.order_count) for lv in book.asks] == [(D(2000), D(1), 1)]

        take = await buyer.place_order(SYMBOL, "BUY", "0.4", "2000", wait="result")
        assert (take.status, take.filled_quantity, take.filled_quote_quantity) == (
            "FILLED",
            D("0.4"),
            D(800),
        )
        (fill,) = take.fills
        assert (fill.price, fill.quantity, fill.fee, fill.fee_asset, fill.maker) == (
            D(2000),
            D("0.4"),
            D("0.0008"),
            "ETH",
            False,
        )
        assert len(take.client_order_id) == 32  # generated

        await read_back(seller, buyer, rest.order_id, fill.trade_id)

        done = await seller.cancel_order(SYMBOL, rest.order_id, wait="result")
        assert (done.order_id, done.status) == (rest.order_id, "CANCELED")
        assert await seller.get_balances() == balances(("ETH", "1.6", "0"), ("USDT", "799.2", "0"))
        assert await buyer.get_balances() == balances(("ETH", "0.3992", "0"), ("USDT", "100", "0"))
        assert (await buyer.get_order_book(SYMBOL)).asks == ()


async def read_back(seller: AsyncClient, buyer: AsyncClient, order_id: int, trade_id: int) -> None:
    async def settled() -> Order | None:
        try:
            return await seller.get_order(order_id)
        except NotFound:  # settlement has not written it yet
            return None

    found = await eventually(
        settled,
        lambda o: o is not None and o.status == "PARTIALLY_FILLED",
        "the partly filled sell in settlement",
    )
    assert found is not None
    order = found
    assert (order.client_order_id, order.side, order.order_type, order.price) == (
        "s-1",
        "SELL",
        "LIMIT",
        D(2000),
    )
    assert (order.quantity, order.filled_quantity, order.time_in_force) == (D(1), D("0.4"), "GTC")
    assert order.created_at is not None
    assert await seller.get_order(client_order_id="s-1") == order
    assert [o.order_id for o in await seller.list_open_orders(SYMBOL)] == [order_id]
    assert await seller.list_open_orders("ETH-BTC") == []
    page = await seller.list_orders(SYMBOL, page_size=1)
    assert ([o.order_id for o in page.items], page.next_page_token) == ([order_id], "")
    assert [o.order_id async for o in seller.iter_orders(page_size=1)] == [order_id]
    mine = await eventually(
        lambda: buyer.list_my_trades(SYMBOL), lambda p: len(p.items) == 1, "the buyer's trade"
    )
    assert (mine.items[0].trade_id, mine.items[0].side, mine.items[0].maker) == (
        trade_id,
        "BUY",
        False,
    )
    sold = (await seller.list_my_trades()).items[0]
    assert (sold.side, sold.maker, sold.fee, sold.fee_asset) == ("SELL", True, D("0.8"), "USDT")
    trades = await buyer.list_trades(SYMBOL, limit=10)
    assert [(t.trade_id, t.price, t.taker_side) for t in trades] == [(trade_id, D(2000), "BUY")]
    ticker = await eventually(
        lambda: buyer.get_ticker(SYMBOL), lambda t: t.trade_count == 1, "the ticker's trade"
    )
    assert (ticker.last_price, ticker.volume, ticker.quote_volume) == (D(2000), D("0.4"), D(800))
    now = datetime.now(UTC)
    candles = await eventually(
        lambda: buyer.get_candles(SYMBOL, "1m", start=now - timedelta(minutes=5), limit=10),
        lambda c: len(c) == 1,
        "the minute's candle",
    )
    assert (candles[0].open, candles[0].close, candles[0].volume, candles[0].trade_count) == (
        D(2000),
        D(2000),
        D("0.4"),
        1,
    )
    assert len(await buyer.get_candles(SYMBOL, "1d")) == 1


@in_module_loop
async def test_every_refusal_is_its_exception_with_reason_and_field(up: Up) -> None:
    async with (
        client(up, ADMIN_KEY) as admin,
        client(up, trader_key(5)) as trader,
        client(up, "not-a-key-of-this-mesh") as stranger,
    ):
        with pytest.raises(InvalidArgument) as bad_price:
            await trader.place_order(SYMBOL, "BUY", "0.1", "2000.001")
        assert (bad_price.value.reason, bad_price.value.field) == ("INVALID_PRICE", "price")
        assert "price has 3 decimals" in bad_price.value.message
        assert str(bad_price.value).startswith("INVALID_PRICE: price has 3 decimals")

        with pytest.raises(InvalidArgument) as bad_quantity:
            await trader.place_order(SYMBOL, "BUY", "abc", "2000")
        assert (bad_quantity.value.reason, bad_quantity.value.field) == (
            "INVALID_QUANTITY",
            "quantity",
        )
        with pytest.raises(InvalidArgument) as unknown:
            await trader.get_ticker("DOGE-USDT")
        assert unknown.value.reason == "UNKNOWN_SYMBOL"
        with pytest.raises(InvalidArgument) as bad_id:
            await trader.place_order(SYMBOL, "BUY", "1", "1", client_order_id="has space")
        assert (bad_id.value.reason, bad_id.value.field) == (
            "INVALID_CLIENT_ORDER_ID",
            "client_order_id",
        )
        with pytest.raises(TypeError, match="not float"):
            await trader.place_order(SYMBOL, "BUY", 0.1, "2000")  # type: ignore[arg-type]

        with pytest.raises(Unauthenticated) as no_key:
            await stranger.get_balances()
        assert (no_key.value.code, no_key.value.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "UNAUTHENTICATED",
        )
        with pytest.raises(PermissionDenied) as not_admin:
            await trader.deposit(5, "USDT", "10")
        assert not_admin.value.reason == "PERMISSION_DENIED"
        with pytest.raises(NotFound) as missing:
            await trader.get_order(987654321)
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(FailedPrecondition) as poor:
            await trader.place_order(SYMBOL, "BUY", "1", "2000")
        assert poor.value.reason == "INSUFFICIENT_FUNDS"
        with pytest.raises(FailedPrecondition) as overdrawn:
            await admin.withdraw(6, "USDT", "1")
        assert overdrawn.value.reason == "INSUFFICIENT_FUNDS"
        await admin.deposit(6, "USDT", "10", reference_id="sdk-conflict")
        with pytest.raises(AlreadyExists) as conflict:
            await admin.deposit(6, "USDT", "11", reference_id="sdk-conflict")
        assert conflict.value.reason == "REFERENCE_ID_CONFLICT"
        assert await trader.get_balances() == {}  # nothing moved for anyone refused


def test_the_blocking_client_does_the_same(up: Up) -> None:
    with Client(up.gateway, ADMIN_KEY) as admin, Client(up.gateway, trader_key(7)) as seven:
        assert admin.deposit(7, "ETH", "1").balance.available == D(1)
        assert admin.withdraw(7, "ETH", D("0.25")).balance.available == D("0.75")
        placed = seven.place_order(SYMBOL, "SELL", "0.5", "3000", client_order_id="blocking-1")
        assert placed.status == "PENDING_NEW"
        resent = seven.place_order(SYMBOL, "SELL", "0.5", "3000", client_order_id="blocking-1")
        assert (resent.order_id, resent.duplicate) == (placed.order_id, True)
        assert seven.get_balances() == balances(("ETH", "0.25", "0.5"))
        assert seven.get_order_book(SYMBOL, 1).asks[0].price == D(3000)
        assert [s.symbol for s in seven.list_symbols()] == ["BTC-USDT", "ETH-USDT", "ETH-BTC"]
        assert seven.get_ticker(SYMBOL).symbol == SYMBOL
        assert isinstance(seven.list_trades(SYMBOL), list)
        assert isinstance(seven.get_candles(SYMBOL, "1h"), list)
        assert seven.list_my_trades().items == ()
        canceled = seven.cancel_order(SYMBOL, client_order_id="blocking-1", wait="result")
        assert (canceled.order_id, canceled.status) == (placed.order_id, "CANCELED")
        assert seven.get_balances() == balances(("ETH", "0.75", "0"))
        settles(seven.list_open_orders, lambda orders: orders == [], "no open order")
        assert [o.order_id for o in seven.list_orders().items] in ([], [placed.order_id])
        assert [o.order_id for o in seven.iter_orders()] in ([], [placed.order_id])
        with pytest.raises(NotFound):
            seven.get_order(client_order_id="never-placed")


@in_module_loop
async def test_market_data_keeps_a_local_book_equal_to_the_gateways(up: Up) -> None:
    market = "ETH-BTC"
    async with (
        client(up, ADMIN_KEY) as admin,
        client(up, trader_key(5)) as maker,
        client(up, trader_key(6)) as taker,
    ):
        await admin.deposit(5, "ETH", "10")
        await admin.deposit(6, "BTC", "1")
        events = maker.market_data(market, depth=3)
        book = LocalBook(market)
        first = await anext(events)
        assert isinstance(first, BookSnapshot)
        book.apply(first)
        for number, price in enumerate(("0.05", "0.051", "0.052", "0.053", "0.05")):
            await maker.place_order(market, "SELL", "1", price, client_order_id=f"md-{number}")
        taken = await taker.place_order(market, "BUY", "1.5", "0.051", wait="result")
        assert taken.status == "FILLED"
        trades: list[TradeEvent] = []
        want = await maker.get_order_book(market, 3)
        async with asyncio.timeout(20):
            while book.sequence < want.sequence:
                event = await anext(events)
                book.apply(event)
                if isinstance(event, TradeEvent):
                    trades.append(event)
        await events.aclose()  # type: ignore[attr-defined]
        assert book.snapshot(3) == want
        assert [(t.trade.price, t.trade.quantity, t.trade.taker_side) for t in trades] == [
            (D("0.05"), D(1), "BUY"),
            (D("0.05"), D("0.5"), "BUY"),
        ]
        for left in ("md-1", "md-2", "md-3", "md-4"):  # md-0 was filled
            await maker.cancel_order(market, client_order_id=left)


@in_module_loop
async def test_order_updates_follow_an_order_from_accepted_to_filled(up: Up) -> None:
    async with (
        client(up, ADMIN_KEY) as admin,
        client(up, trader_key(5)) as maker,
        client(up, trader_key(6)) as taker,
    ):
        await admin.deposit(6, "BTC", "1")
        updates = taker.order_updates("ETH-BTC")
        received: asyncio.Queue[OrderUpdate] = asyncio.Queue()

        async def pump() -> None:
            async for update in updates:
                await received.put(update)

        task = asyncio.create_task(pump())
        # The subscription is in place once an order of ours shows up on it.
        probes = 0

        async def probe() -> int:
            nonlocal probes
            probes += 1
            await taker.place_order("ETH-BTC", "BUY", "1", "0.001", client_order_id=f"p-{probes}")
            return received.qsize()

        await eventually(probe, lambda size: size > 0, "a first order update")
        await maker.place_order("ETH-BTC", "SELL", "1", "0.04", client_order_id="ou-sell")
        placed = await taker.place_order("ETH-BTC", "BUY", "1", "0.04", client_order_id="ou-buy")
        seen: list[OrderUpdate] = []
        async with asyncio.timeout(20):
            while not any(
                u.order.order_id == placed.order_id and u.order.status == "FILLED" for u in seen
            ):
                seen.append(await received.get())
        ours = [u for u in seen if u.order.order_id == placed.order_id]
        fills = [u.fill for u in ours if u.fill is not None]
        assert [(f.price, f.quantity, f.maker) for f in fills] == [(D("0.04"), D(1), False)]
        assert ours[-1].order.filled_quantity == D(1)
        assert all(u.sequence > 0 for u in ours)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for number in range(1, probes + 1):
            await taker.cancel_order("ETH-BTC", client_order_id=f"p-{number}")


@in_module_loop
async def test_order_entry_pipelines_places_and_cancels_each_with_its_answer(up: Up) -> None:
    async with client(up, ADMIN_KEY) as admin, client(up, trader_key(7)) as trader:
        await admin.deposit(7, "USDT", "100000")
        async with trader.order_entry(window=8) as session:
            placed = await asyncio.gather(
                *(
                    session.place(SYMBOL, "BUY", "0.01", str(100 + n), client_order_id=f"oe-{n}")
                    for n in range(20)
                )
            )
            assert [p.client_order_id for p in placed] == [f"oe-{n}" for n in range(20)]
            assert len({p.order_id for p in placed}) == 20
            again = await session.place(SYMBOL, "BUY", "0.01", "100", client_order_id="oe-0")
            assert (again.order_id, again.duplicate) == (placed[0].order_id, True)
            with pytest.raises(InvalidArgument) as refused:
                await session.place(SYMBOL, "BUY", "0.01", "1.001", client_order_id="oe-bad")
            assert (refused.value.reason, refused.value.code) == (
                "INVALID_PRICE",
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            by_id = await asyncio.gather(
                *(session.cancel(SYMBOL, p.order_id, wait="result") for p in placed[:10])
            )
            assert [c.status for c in by_id] == ["CANCELED"] * 10
            by_client = await asyncio.gather(
                *(session.cancel(SYMBOL, client_order_id=f"oe-{n}") for n in range(10, 20))
            )
            assert [c.order_id for c in by_client] == [p.order_id for p in placed[10:]]
        await eventually(trader.get_balances, lambda b: b["USDT"].frozen == 0, "all released")


def test_the_blocking_streams_and_order_entry(up: Up) -> None:
    with Client(up.gateway, ADMIN_KEY) as admin, Client(up.gateway, trader_key(8)) as eight:
        admin.deposit(8, "USDT", "100")
        events = eight.market_data("BTC-USDT", depth=1)
        snapshot = next(events)
        assert isinstance(snapshot, BookSnapshot)
        assert snapshot.book.symbol == "BTC-USDT"
        events.close()  # type: ignore[attr-defined]
        with eight.order_entry(window=2) as session:
            futures = [
                session.submit_place("BTC-USDT", "BUY", "0.001", "1000", client_order_id=f"b{n}")
                for n in range(4)
            ]
            placed = [f.result(timeout=20) for f in futures]
            assert [p.client_order_id for p in placed] == ["b0", "b1", "b2", "b3"]
            for p in placed:
                assert session.cancel("BTC-USDT", p.order_id).order_id == p.order_id


@in_module_loop
async def test_the_quickstart_runs_as_the_readme_shows_it(up: Up) -> None:
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        str(QUICKSTART),
        f"--gateway={up.gateway}",
        f"--data-dir={up.data_dir}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean_environment(),
    )
    output, _ = await asyncio.wait_for(run.communicate(), 60)
    text = output.decode()
    assert run.returncode == 0, text
    assert text.splitlines() == [  # exactly what the README shows
        "deposit again is a duplicate: True",
        "alice's sell: PENDING_NEW",
        "bob's buy: FILLED",
        "  filled 0.2 at 30000, fee 0.0004 BTC",  # the maker's price; the taker pays 20 bps
        "best ask: 0.3 at 30000",
        "alice's rest: CANCELED",
        "  bob holds 0.1996 BTC (0 frozen)",
        "  bob holds 44000 USDT (0 frozen)",  # the 20 USDT of price improvement came back
        "refused: INVALID_PRICE price - price has 3 decimals, tick 0.01 allows 2, was 30000.001",
    ]
