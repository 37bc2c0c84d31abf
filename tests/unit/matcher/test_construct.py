"""Events built through layout twins are exactly the frozen dataclasses they stand for."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.core import construct
from ordermesh.events import CancelRejected, EngineEvent, OrderAccepted, OrderDone, TradeExecuted

PAIRS = [
    (OrderAccepted, construct.ORDER_ACCEPTED),
    (TradeExecuted, construct.TRADE_EXECUTED),
    (OrderDone, construct.ORDER_DONE),
    (CancelRejected, construct.CANCEL_REJECTED),
    (EngineEvent, construct.ENGINE_EVENT),
]


def test_every_event_class_takes_the_fast_path_here() -> None:
    assert construct.FAST
    assert all(construct.compatible(cls, twin) for cls, twin in PAIRS)


@settings(max_examples=60, deadline=None)
@given(pair=st.sampled_from(PAIRS), data=st.data())
def test_a_twin_built_value_equals_the_constructed_one(pair, data) -> None:
    cls, twin = pair
    values = tuple(
        data.draw(st.integers() | st.text(max_size=5), label=field.name)
        for field in dataclasses.fields(cls)
    )

    built = construct.build(cls, twin, values)
    expected = cls(*values)

    assert type(built) is cls
    assert built == expected
    assert hash(built) == hash(expected)
    assert repr(built) == repr(expected)
    assert dataclasses.asdict(built) == dataclasses.asdict(expected)
    assert pickle.loads(pickle.dumps(built)) == expected  # noqa: S301 - our own bytes
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, dataclasses.fields(cls)[0].name, 0)


@dataclass(frozen=True)
class NoSlots:
    a: int


@dataclass(frozen=True, slots=True)
class Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("negative")


@dataclass(frozen=True, slots=True)
class Other:
    a: int


@pytest.mark.parametrize("cls", [NoSlots, Checked])
def test_classes_the_twin_cannot_stand_for_are_refused(cls: type) -> None:
    twin = type("Twin", (), {"__slots__": ("a",)})
    assert not construct.compatible(cls, twin)


def test_a_twin_of_another_layout_is_refused() -> None:
    twin = type("Twin", (), {"__slots__": ("a", "b")})
    assert not construct.compatible(Other, twin)
