"""The real book against a deliberately naive reference: the same events, byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from matcher.core import OrderBook, event_bytes
from ordermesh.events import OrderCommand
from tests.unit.matcher.helpers import MARKET
from tests.unit.matcher.reference import ReferenceBook
from tests.unit.matcher.streams import build, seeded_stream, specs


def compare(commands: list[OrderCommand]) -> int:
    book, reference = OrderBook(MARKET), ReferenceBook(MARKET)
    count = 0
    for offset, command in enumerate(commands):
        real = book.apply(command, offset)
        expected = reference.apply(command, offset)
        assert real == expected, f"offset {offset}: {command}"
        assert [event_bytes(e) for e in real] == [event_bytes(e) for e in expected]
        count += len(real)
    assert book.last_hash == reference.hash
    assert book.next_trade_id == reference.next_trade_id
    return count


@pytest.mark.parametrize("seed", range(12))
def test_seeded_streams_give_the_reference_events(seed: int) -> None:
    assert compare(seeded_stream(seed, 1_000)) >= 1_000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_generated_streams_give_the_reference_events(stream) -> None:
    compare(build(stream))
