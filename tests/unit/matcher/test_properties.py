"""Properties of the book over random command streams (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from matcher.codec import decode_snapshot, encode_snapshot
from matcher.core import OrderBook, event_bytes, verify_chain
from ordermesh.events import EngineEvent, OrderCommand
from ordermesh.model import Side
from tests.unit.matcher.audit import Audit
from tests.unit.matcher.helpers import MARKET, cancel
from tests.unit.matcher.streams import Spec, build, spec, specs

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(commands: list[OrderCommand], book: OrderBook | None = None, start: int = 0):
    book = OrderBook(MARKET) if book is None else book
    events: list[EngineEvent] = []
    for offset, command in enumerate(commands, start):
        events.extend(book.apply(command, offset))
    return book, events


@SETTINGS
@given(specs())
def test_every_invariant_holds_after_every_command(stream) -> None:
    Audit(OrderBook(MARKET)).run(build(stream))


@SETTINGS
@given(specs())
def test_replaying_the_same_commands_gives_byte_identical_events(stream) -> None:
    commands = build(stream)

    first_book, first = run(commands)
    second_book, second = run(commands)

    assert first == second
    assert [event_bytes(e) for e in first] == [event_bytes(e) for e in second]
    assert [e.hash for e in first] == [e.hash for e in second]
    assert first_book.last_hash == second_book.last_hash
    assert first_book.snapshot() == second_book.snapshot()


@SETTINGS
@given(specs(), st.data())
def test_snapshot_at_any_point_then_replay_equals_the_uninterrupted_run(stream, data) -> None:
    commands = build(stream)
    cut = data.draw(st.integers(0, len(commands)), label="cut")
    whole_book, whole = run(commands)

    head_book, head = run(commands[:cut])
    restored = OrderBook.restore(MARKET, decode_snapshot(encode_snapshot(head_book.snapshot())))
    restored_book, tail = run(commands[cut:], restored, start=cut)

    assert head + tail == whole
    assert restored_book.snapshot() == whole_book.snapshot()
    assert verify_chain(tail, head_book.last_hash, head_book.sequence) == (
        whole_book.sequence,
        whole_book.last_hash,
    )


@SETTINGS
@given(specs(max_size=30))
def test_commands_already_applied_are_ignored_on_replay(stream) -> None:
    commands = build(stream)
    book, _ = run(commands)
    snapshot = book.snapshot()

    _, again = run(commands, book)

    assert again == []
    assert book.snapshot() == snapshot


class BookMachine(RuleBasedStateMachine):
    """Commands one at a time with the audit after each; cancels of resting orders and
    snapshot round trips in between."""

    def __init__(self) -> None:
        super().__init__()
        self.audit = Audit(OrderBook(MARKET))
        self.stream: list[Spec] = []

    @rule(one=spec())
    def command(self, one: Spec) -> None:
        self.stream.append(one)
        self.audit.step(build(self.stream)[-1])

    @precondition(lambda self: len(self.audit.book) > 0)
    @rule(side=st.sampled_from(Side), index=st.integers(0, 50))
    def cancel_a_resting_order(self, side: Side, index: int) -> None:
        book = self.audit.book
        resting = book.orders(side) or book.orders(Side.SELL if side == Side.BUY else Side.BUY)
        target = resting[index % len(resting)]
        self.audit.step(cancel(target.order_id, account=target.account_id))

    @rule()
    def snapshot_round_trip(self) -> None:
        book = self.audit.book
        restored = OrderBook.restore(MARKET, decode_snapshot(encode_snapshot(book.snapshot())))
        assert restored.snapshot() == book.snapshot()
        self.audit.book = restored

    @invariant()
    def chain_verifies(self) -> None:
        book = self.audit.book
        assert verify_chain(self.audit.events) == (book.sequence, book.last_hash)


BookMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=50, deadline=None)
test_book_state_machine = BookMachine.TestCase
