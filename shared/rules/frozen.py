"""``@frozen``: ``@dataclass(frozen=True)`` without its import cost.

``dataclass`` writes ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and
``__delattr__`` of every class as source text and compiles it when the module is imported: for the
records of a cold instance that is most of their import time (a Leg has ~60 fields). ``@frozen`` lets
``dataclass`` collect the fields (so ``dataclasses.replace``, ``fields``, ``asdict`` and ``is_dataclass``
work as before) and gives the class the same six methods from this module, written once and compiled
with it: equal behaviour (positional and keyword arguments, defaults, ``default_factory``,
``field(init=False)``, ``__post_init__``, equality and hash over the compared fields, the same repr,
``FrozenInstanceError``), no code compiled per class.

Type checkers see a frozen dataclass (``dataclass_transform``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

C = TypeVar("C", bound=type)

_MISSING: Any = dataclasses.MISSING
_FACTORY: Any = object()  # stands for a default_factory in an instance's template
_SPEC = "__frozen_spec__"


class _Spec:
    """What the shared methods need to know about one class, computed once at its definition."""

    __slots__ = ("names", "template", "required", "factories", "late", "key", "shown", "post_init", "index")

    def __init__(self, cls: type) -> None:
        fields = dataclasses.fields(cls)  # InitVar and ClassVar are not fields
        init = [f for f in fields if f.init]
        self.names = tuple(f.name for f in init)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.template: dict[str, Any] = {}
        self.required: list[str] = []
        self.factories: list[tuple[str, Callable[[], Any]]] = []
        for f in init:
            if f.default is not _MISSING:
                self.template[f.name] = f.default
            elif callable(f.default_factory):  # else MISSING
                self.template[f.name] = _FACTORY
                self.factories.append((f.name, f.default_factory))
            else:
                self.template[f.name] = _MISSING
                self.required.append(f.name)
        # fields left out of __init__ that still get a value there: those with a factory (as dataclass, one
        # with a plain default is left to the class attribute)
        self.late = [(f.name, f.default_factory) for f in fields if not f.init and callable(f.default_factory)]
        compared = tuple(f.name for f in fields if f.compare)
        self.key = _getter(compared)
        self.shown = tuple(f.name for f in fields if f.repr)
        self.post_init = getattr(cls, "__post_init__", None)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) >= 2:
        from operator import attrgetter

        return attrgetter(*names)
    if len(names) == 1:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return lambda obj: ()


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    spec: _Spec = getattr(type(self), _SPEC)
    names = spec.names
    if len(args) > len(names):
        raise TypeError(f"{type(self).__qualname__}.__init__() takes {len(names) + 1} positional arguments but "
                        f"{len(args) + 1} were given")
    values = spec.template.copy()  # updating an existing key keeps its place: field order is kept
    values.update(zip(names, args, strict=False))  # fewer args than names: the rest come below
    if kwargs:
        index = spec.index
        for name in kwargs:
            at = index.get(name)
            if at is None:
                raise TypeError(f"{type(self).__qualname__}.__init__() got an unexpected keyword argument {name!r}")
            if at < len(args):
                raise TypeError(f"{type(self).__qualname__}.__init__() got multiple values for argument {name!r}")
        values.update(kwargs)
    for name in spec.required:
        if values[name] is _MISSING:
            missing = [n for n in spec.required if values[n] is _MISSING]
            raise TypeError(f"{type(self).__qualname__}.__init__() missing {len(missing)} required argument(s): "
                            + ", ".join(repr(n) for n in missing))
    for name, factory in spec.factories:
        if values[name] is _FACTORY:
            values[name] = factory()
    for name, factory in spec.late:
        values[name] = factory()
    object.__setattr__(self, "__dict__", values)
    if spec.post_init is not None:
        self.__post_init__()


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        key = getattr(type(self), _SPEC).key
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(getattr(type(self), _SPEC).key(self))


_repr_running: set[tuple[int, int]] = set()


def _repr(self: Any) -> str:
    from threading import get_ident

    key = (id(self), get_ident())
    if key in _repr_running:  # a record that contains itself, as dataclasses' own repr answers
        return "..."
    _repr_running.add(key)
    try:
        shown = getattr(type(self), _SPEC).shown
        return f"{self.__class__.__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in shown) + ")"
    finally:
        _repr_running.discard(key)


def _setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def frozen(cls: C) -> C:
    """``@dataclass(frozen=True)``, with its methods shared rather than compiled per class."""
    own = cls.__dict__
    for name in ("__setattr__", "__delattr__"):  # as dataclass: a frozen class cannot have its own
        if name in own:
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
    if own.get("__hash__") is not None:
        raise TypeError(f"Cannot overwrite attribute __hash__ in class {cls.__name__}")
    shared = {"__init__": _init, "__repr__": _repr, "__eq__": _eq}
    shared = {name: method for name, method in shared.items() if name not in own}  # a class's own one stays
    if cls.__doc__ is None:
        cls.__doc__ = cls.__name__  # dataclass would compute a signature for it: not worth the import time
    dataclasses.dataclass(init=False, repr=False, eq=False)(cls)
    setattr(cls, _SPEC, _Spec(cls))
    for name, method in shared.items():
        type.__setattr__(cls, name, method)
    type.__setattr__(cls, "__hash__", _hash)
    type.__setattr__(cls, "__setattr__", _setattr)
    type.__setattr__(cls, "__delattr__", _delattr)
    return cls
