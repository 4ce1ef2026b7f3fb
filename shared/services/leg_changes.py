"""The one path by which a leg is written and the customer hears of it.

Every write of a leg, whatever the use case, is one of the functions below: each calls the store's write
(one atomic commit) and then enqueues exactly the customer events that commit added to the legs' outboxes,
no more (an event already in the outbox before the commit is not enqueued again) and no fewer. Nothing else
in ``shared`` or ``functions`` calls a store's leg write or ``enqueue_notify`` (tests/unit/test_leg_changes.py
reads every module to check it). An event whose task cannot be created now is not lost: the leg's
``notify_due`` stays set until the event is delivered, and the sweeper creates the task again
(``resend``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from shared.ports import (
    AcceptDecision,
    ConversationDecision,
    ConversationMutation,
    Decision,
    IdempotentAnswer,
    InboundDecision,
    InboundWrite,
    Mutation,
    SpawnDecision,
    Spawned,
)
from shared.rules.records import Conversation, Group, Leg, OptOut, ProviderEventRecord, Tenant
from shared.services import observe

if TYPE_CHECKING:
    from shared.ports import Runtime

T = TypeVar("T")


def change(rt: Runtime, message_id: str, decide: Callable[[Leg | None], Decision[T]], *,
           event: ProviderEventRecord | None = None) -> Mutation[T]:
    """One leg's read-decide-write (``LegStore.mutate``)."""
    mutation = rt.legs.mutate(message_id, decide, event=event)
    _announce(rt, mutation.before, mutation.after)
    return mutation


def change_unless_opted_out(rt: Runtime, message_id: str, decide: Callable[[Leg | None, bool], Decision[T]], *,
                            applies: Callable[[Leg], bool]) -> Mutation[T]:
    """``change``, with ``decide`` told whether the recipient is on the tenant's opt-out list (dispatch's claim);
    the list is read only for a leg ``applies`` says an opt-out could stop."""
    mutation = rt.legs.mutate_unless_opted_out(message_id, decide, applies=applies)
    _announce(rt, mutation.before, mutation.after)
    return mutation


def accept(rt: Runtime, group: Group | None, legs: list[Leg], decide: Callable[[Tenant, list[Leg]], AcceptDecision],
           answer: Callable[[list[Leg]], IdempotentAnswer | None], version: Any = None) -> list[Leg]:
    """A group's (or an idempotent single's) accept: the pending legs gated in one commit (``LegStore.accept``)."""
    accepted = rt.legs.accept(group, legs, decide, answer, version)
    _announce_each(rt, legs, accepted)
    return accepted


def accept_one(rt: Runtime, leg: Leg, tenant: Tenant, version: Any,
               decide: Callable[[Tenant, list[Leg]], AcceptDecision],
               answer: Callable[[list[Leg]], IdempotentAnswer | None]) -> list[Leg]:
    """A single send's one commit (``LegStore.accept_one``): the leg created already gated."""
    accepted = rt.legs.accept_one(leg, tenant, version, decide, answer)
    _announce_each(rt, [leg], accepted)
    return accepted


def write_batch_rows(rt: Runtime, rows: Sequence[Leg], refund_micros: int, refund_key: str) -> bool:
    """A batch chunk's rows, created in their final state in one commit (``BatchStore.write_rows``). False: they
    were written before (a redelivered chunk task): nothing is written or announced again."""
    written = rt.batches.write_rows(rows, refund_micros, refund_key)
    if written:
        for leg in rows:
            _announce(rt, None, leg)
    return written


def record_inbound(rt: Runtime, message_id: str, tenant_id: str, sender: str | None,
                   decide: Callable[[OptOut | None], InboundDecision]) -> InboundWrite:
    """An inbound message's leg, created once (``LegStore.record_inbound``). A replay that finds it created
    enqueues again the events still undelivered: the crash it follows may have come between the commit and the
    enqueues (their task names make a second enqueue of a delivered task a no-op)."""
    written = rt.legs.record_inbound(message_id, tenant_id, sender, decide)
    if written.created:
        _announce(rt, None, written.leg)
    else:
        _enqueue(rt, written.leg, [k for k, v in written.leg.notifications.items() if v.state.undelivered])
    return written


def spawn(rt: Runtime, parent_id: str, child_id: str, tenant_id: str,
          decide: Callable[[Leg | None, bool, Tenant], SpawnDecision]) -> Spawned:
    """A leg born of another (an SMS failover, a keyword reply) with its parent's change (``LegStore.spawn``)."""
    spawned = rt.legs.spawn(parent_id, child_id, tenant_id, decide)
    _announce(rt, spawned.before, spawned.parent)
    _announce(rt, None, spawned.child)
    return spawned


def change_conversation(rt: Runtime, conversation_id: str, group_id: str,
                        decide: Callable[[Conversation | None, list[Leg]], ConversationDecision[T]]
                        ) -> ConversationMutation[T]:
    """A group conversation's decision with its member legs (``LegStore.mutate_conversation``)."""
    mutation = rt.legs.mutate_conversation(conversation_id, group_id, decide)
    for leg in mutation.legs_after:
        _announce(rt, mutation.legs_before.get(leg.id), leg)
    return mutation


def resend(rt: Runtime, message_id: str, event_id: str, *, name: str, at: dt.datetime | None = None) -> None:
    """An event of the outbox delivered again: the notifier's own retry (``at``), or the sweeper's for one whose
    task went missing. Raises when the task cannot be created (the caller decides what that means)."""
    rt.queue.enqueue_notify(event_id, message_id, name=name, at=at)


def _announce_each(rt: Runtime, before: Sequence[Leg], after: Sequence[Leg]) -> None:
    for leg_before, leg_after in zip(before, after, strict=True):
        _announce(rt, leg_before, leg_after)


def _announce(rt: Runtime, before: Leg | None, after: Leg | None) -> None:
    """Enqueue the events ``after`` holds that ``before`` did not: exactly those the commit created."""
    if after is None:
        return
    known = before.notifications if before is not None else {}
    _enqueue(rt, after, [event_id for event_id in after.notifications if event_id not in known])


def _enqueue(rt: Runtime, leg: Leg, event_ids: Sequence[str]) -> None:
    for event_id in event_ids:
        try:
            rt.queue.enqueue_notify(event_id, leg.id)
        except Exception as exc:  # noqa: BLE001 - the sweeper resends it (notify_due is set)
            observe.log_error("notify task not created; the sweeper will resend", message_id=leg.id,
                              event_id=event_id, error=type(exc).__name__)
