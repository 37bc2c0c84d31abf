"""The event classes' written-out constructors stay in step with their fields."""

import copy
import dataclasses
import inspect
import pickle

import pytest

from ordermesh import events

CLASSES = [
    cls
    for cls in vars(events).values()
    if inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls.__module__ == events.__name__
]


def test_every_event_class_is_checked():
    assert len(CLASSES) == 8


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_constructor_takes_every_field_in_order_and_sets_it(cls):
    names = [field.name for field in dataclasses.fields(cls)]
    parameters = list(inspect.signature(cls.__init__).parameters)[1:]
    assert parameters == names
    probe = cls(*(f"value-{name}" for name in names))
    assert [getattr(probe, name) for name in names] == [f"value-{name}" for name in names]
    assert copy.copy(probe) == probe
    assert pickle.loads(pickle.dumps(probe)) == probe  # noqa: S301 - bytes made one line above
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(probe, names[0], "changed")
