"""``@frozen`` behaves as ``@dataclass(frozen=True)``: the same class written both ways answers alike."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pytest

from shared.rules.frozen import frozen

T = TypeVar("T")


def _classes(deco: Any) -> tuple[type, type, type]:
    @deco
    class A(Generic[T]):
        x: int
        y: str = "a"
        z: tuple[int, ...] = field(default_factory=tuple)
        w: int = field(default=3, compare=False, repr=False)

    @deco
    class B:
        """documented"""

        a: float
        late: int = field(init=False, default=7)
        made: list[int] = field(init=False, default_factory=list)

        def __post_init__(self) -> None:
            object.__setattr__(self, "seen", self.a * 2)

    @deco
    class E:
        pass

    return A, B, E


DC = _classes(dataclass(frozen=True))
FR = _classes(frozen)
CALLS = [((1,), {}), ((1, "b"), {"z": (1, 2)}), ((), {"x": 2, "w": 9}), ((4, "q", (5,), 6), {})]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_construction_repr_eq_hash_and_replace_match_dataclass(args: tuple, kwargs: dict) -> None:
    a1, a2 = DC[0](*args, **kwargs), FR[0](*args, **kwargs)
    assert repr(a1) == repr(a2)
    assert list(vars(a1).items()) == list(vars(a2).items())
    assert hash(a1) == hash(a2)
    assert a2 == FR[0](*args, **kwargs) and a2 != FR[0](99)
    assert a2.__eq__(a1) is NotImplemented
    assert dataclasses.asdict(a1) == dataclasses.asdict(a2)
    assert dataclasses.replace(a2, y="r") == FR[0](**{**dataclasses.asdict(a2), "y": "r"})
    assert copy.copy(a2) == a2 and copy.deepcopy(a2) == a2


def test_compare_false_fields_are_left_out_of_eq_and_hash() -> None:
    assert FR[0](1, w=1) == FR[0](1, w=2) and hash(FR[0](1, w=1)) == hash(FR[0](1, w=2))


@pytest.mark.parametrize(("args", "kwargs"), [((1, "a", (), 3, 5), {}), ((), {}), ((1,), {"x": 1}), ((1,), {"q": 1})])
def test_wrong_arguments_raise_type_error(args: tuple, kwargs: dict) -> None:
    for cls in (DC[0], FR[0]):
        with pytest.raises(TypeError):
            cls(*args, **kwargs)


def test_instances_are_frozen() -> None:
    a = FR[0](1)
    for change in (lambda: setattr(a, "x", 2), lambda: delattr(a, "x"), lambda: setattr(a, "other", 1)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            change()


def test_init_false_fields_post_init_and_empty_classes() -> None:
    b1, b2 = DC[1](1.5), FR[1](1.5)
    assert vars(b1) == vars(b2) == {"a": 1.5, "made": [], "seen": 3.0} and b2.late == 7
    assert repr(b1) == repr(b2) and b2.__doc__ == "documented"
    assert FR[2]() == FR[2]() and hash(FR[2]()) == hash(DC[2]()) and repr(FR[2]()).endswith("E()")


def test_introspection_and_generic_aliases() -> None:
    assert dataclasses.is_dataclass(FR[0]) and FR[0].__match_args__ == DC[0].__match_args__
    assert [f.name for f in dataclasses.fields(FR[0])] == ["x", "y", "z", "w"]
    assert FR[0][int](1) == FR[0](1)  # typing sets __orig_class__ where it may: a frozen record refuses it


def test_records_survive_pickling() -> None:
    from shared.rules.records import HistoryEntry

    entry = HistoryEntry(at=None, from_=None, to="queued", cause="test")  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(entry)) == entry


def test_a_class_may_not_bring_its_own_setattr() -> None:
    with pytest.raises(TypeError):
        @frozen
        class Bad:
            def __setattr__(self, name: str, value: Any) -> None: ...
