"""Layout twins: build the frozen event dataclasses of ordermesh.events at plain-object cost.

A frozen slotted dataclass sets each field through ``object.__setattr__`` in a Python-level
``__init__``: about 1 µs for an OrderAccepted on CPython 3.11 (measured), more than
matching the order. The event writer (`matcher.core.chain`) instead allocates a *twin*, a
plain class with the very same slots, stores the fields, and then gives the object its real
class by ``__class__`` assignment, which CPython allows between heap types of identical
layout. The result *is* an instance of the event class (equal, hashable, frozen, printed
like one made by its constructor) for about a quarter of the cost.

At import each event class is checked: its slots are its dataclass fields in order, it has
no ``__post_init__``, and a probe built through the twin equals one built by the
constructor. `FAST` is False when any class fails, and the writer then calls the
constructors: a change to ordermesh.events can make the matcher slower, never wrong.

In the mypyc build (scripts/build_native.py) the event classes are native, which refuse
``__class__`` assignment: `FAST` is False there, and the writer calls their compiled
constructors, which store the fields directly and need no twin.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from ordermesh.events import CancelRejected, EngineEvent, OrderAccepted, OrderDone, TradeExecuted

new_object: Final = object.__new__
"""object.__new__, bound once."""


def _twin(cls: type) -> type:
    """A plain class with `cls`'s slots, so an instance of it may become a `cls`."""
    return type(f"{cls.__name__}Layout", (), {"__slots__": getattr(cls, "__slots__", ())})


ORDER_ACCEPTED: Final = _twin(OrderAccepted)
TRADE_EXECUTED: Final = _twin(TradeExecuted)
ORDER_DONE: Final = _twin(OrderDone)
CANCEL_REJECTED: Final = _twin(CancelRejected)
ENGINE_EVENT: Final = _twin(EngineEvent)

_PAIRS: Final = (
    (OrderAccepted, ORDER_ACCEPTED),
    (TradeExecuted, TRADE_EXECUTED),
    (OrderDone, ORDER_DONE),
    (CancelRejected, CANCEL_REJECTED),
    (EngineEvent, ENGINE_EVENT),
)


def build(cls: type, twin: type, values: tuple[Any, ...]) -> Any:
    """`cls(*values)` made through `twin` (slow: for checks and tests, not the hot path)."""
    value: Any = new_object(twin)
    for slot, item in zip(getattr(cls, "__slots__", ()), values, strict=True):
        setattr(value, slot, item)
    value.__class__ = cls
    return value


def compatible(cls: type, twin: type) -> bool:
    """Whether objects built through `twin` are exactly what `cls(...)` builds."""
    names = tuple(field.name for field in dataclasses.fields(cls))
    if getattr(cls, "__slots__", None) != names or hasattr(cls, "__post_init__"):
        return False
    values = tuple(f"probe-{name}" for name in names)  # distinct: a mixed-up slot would show
    try:
        built = build(cls, twin, values)
    except TypeError:  # layouts differ: CPython refuses the __class__ assignment
        return False
    expected = cls(*values)
    return type(built) is cls and built == expected and repr(built) == repr(expected)


FAST: Final = all(compatible(cls, twin) for cls, twin in _PAIRS)
"""True when every event class can be built through its twin."""
