"""The one path by which a leg changes and the customer hears of it.

``change`` commits a decision about one leg; ``announce`` enqueues the customer events that commit added
to the leg's outbox. An event whose task cannot be created now is not lost: the leg's ``notify_due``
stays set until the event is delivered, and the sweeper creates the task again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from shared.ports import Decision, Mutation
from shared.rules.records import Leg, ProviderEventRecord
from shared.services import observe

if TYPE_CHECKING:
    from shared.ports import Runtime

T = TypeVar("T")


def change(rt: Runtime, message_id: str, decide: Callable[[Leg | None], Decision[T]], *,
           event: ProviderEventRecord | None = None) -> Mutation[T]:
    mutation = rt.legs.mutate(message_id, decide, event=event)
    announce(rt, mutation.before, mutation.after)
    return mutation


def change_unless_opted_out(rt: Runtime, message_id: str, decide: Callable[[Leg | None, bool], Decision[T]]
                            ) -> Mutation[T]:
    """``change``, with ``decide`` told whether the recipient is on the tenant's opt-out list (dispatch's claim)."""
    mutation = rt.legs.mutate_unless_opted_out(message_id, decide)
    announce(rt, mutation.before, mutation.after)
    return mutation


def announce(rt: Runtime, before: Leg | None, after: Leg | None) -> None:
    if after is None:
        return
    known = before.notifications if before is not None else {}
    for event_id in after.notifications:
        if event_id in known:
            continue
        try:
            rt.queue.enqueue_notify(event_id, after.id)
        except Exception as exc:  # noqa: BLE001 - the sweeper resends it (notify_due is set)
            observe.log_error("notify task not created; the sweeper will resend", message_id=after.id,
                              event_id=event_id, error=type(exc).__name__)
