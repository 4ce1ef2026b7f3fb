"""What a pure decision about one leg asks the store to write in one commit (the stores take it:
``shared.ports.LegStore.mutate``)."""

from __future__ import annotations

from typing import Generic, TypeVar

from shared.rules.frozen import frozen
from shared.rules.records import Leg

T = TypeVar("T")


@frozen
class Decision(Generic[T]):
    """What a pure ``decide`` function asks the store to write for one leg, in one commit."""

    after: Leg | None = None  # the leg's new state; None writes nothing to the leg
    result: T | None = None  # handed back to the caller in Mutation.result
    refund_micros: int = 0  # credited back to the leg's tenant
    opt_out: str | None = None  # number added to the leg's tenant's opt-out list
