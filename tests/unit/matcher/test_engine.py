"""The multi-symbol engine: one book and one chain per symbol."""

from __future__ import annotations

import pytest

from matcher.core import MatchingEngine, UnknownSymbolError, verify_chain
from ordermesh.model import Symbol
from tests.unit.matcher.helpers import BUY, ETH, MARKET, SELL, btc, limit, usdt


def test_commands_go_to_their_symbols_book_with_its_own_chain() -> None:
    engine = MatchingEngine([MARKET, ETH])

    btc_events = engine.apply(limit(1, SELL, usdt(100), btc(1)), 0)
    eth_events = engine.apply(limit(2, BUY, usdt(100), btc(1), symbol=ETH.symbol), 1)
    btc_events += engine.apply(limit(3, BUY, usdt(100), btc(1)), 2)

    assert [e.sequence for e in btc_events] == [1, 2, 3, 4, 5]
    assert [e.sequence for e in eth_events] == [1]
    assert {e.symbol for e in eth_events} == {"ETH-USDT"}
    assert verify_chain(btc_events) == (5, engine.book(MARKET.symbol).last_hash)
    assert engine.book(ETH.symbol).best_bid() == usdt(100)
    assert list(engine.books) == ["BTC-USDT", "ETH-USDT"]


def test_a_symbol_without_a_book_is_refused_loudly() -> None:
    engine = MatchingEngine([MARKET])

    with pytest.raises(UnknownSymbolError, match="ETH-USDT"):
        engine.apply(limit(1, BUY, usdt(100), btc(1), symbol=ETH.symbol), 0)
    with pytest.raises(UnknownSymbolError):
        engine.book(Symbol("XRP-USDT"))


def test_an_engine_restores_from_its_snapshots() -> None:
    engine = MatchingEngine([MARKET, ETH])
    engine.apply(limit(1, SELL, usdt(100), btc(1)), 0)
    engine.apply(limit(2, SELL, usdt(100), btc(1), symbol=ETH.symbol), 1)

    restored = MatchingEngine.restore([MARKET, ETH], engine.snapshot())
    command = limit(3, BUY, usdt(100), btc(1))

    assert restored.snapshot() == engine.snapshot()
    assert restored.apply(command, 2) == engine.apply(command, 2)


def test_restore_refuses_a_snapshot_of_a_market_it_does_not_have() -> None:
    engine = MatchingEngine([ETH])

    with pytest.raises(UnknownSymbolError):
        MatchingEngine.restore([MARKET], engine.snapshot())
    with pytest.raises(ValueError, match="twice"):
        MatchingEngine([MARKET, MARKET])
