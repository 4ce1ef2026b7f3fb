"""The sweeper: nothing stays stuck. Abandoned pending rows fail (nothing was charged), legs whose task was
lost get a fresh one, claims whose holder died are handed back to dispatch to reconcile, legs the provider
never finalised are closed as final, and customer events whose task was lost are sent again.

Each rule is a pure decision over one leg (``abandon``, ``bump``, ``close_silent``, ``push_due``) that
the store commits conditioned on the version it read, so two sweeper runs never both act on one leg.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.ports import Decision, DispatchTask
from shared.rules import ids, validity
from shared.rules.errors import ErrorCode
from shared.rules.frozen import frozen
from shared.rules.legs import note, transition, with_event
from shared.rules.records import BatchChunk, Leg
from shared.rules.status import Status
from shared.services import failover, leg_changes
from shared.services.dispatch_steps import CLAIM_LEASE, RECONCILE_DELAY
from shared.services.leg_changes import change
from shared.services.notifying import GIVE_UP_AFTER, give_up, retry_delay

if TYPE_CHECKING:
    from shared.ports import Runtime


@frozen
class SweepPolicy:
    queued_after: dt.timedelta  # a queued leg older than this lost its task
    final_after: dt.timedelta  # a sent leg with no final report by then is closed
    claim_lease: dt.timedelta = CLAIM_LEASE

    @property
    def dead_claim_after(self) -> dt.timedelta:
        # A claim's lease plus a reconcile's follow-up, with margin: dispatch's own follow-up tasks come first.
        return self.claim_lease + RECONCILE_DELAY + self.queued_after


def sweep(rt: Runtime) -> dict[str, int]:
    now = rt.now()
    policy = SweepPolicy(queued_after=dt.timedelta(seconds=rt.settings.sweep_queued_after_seconds),
                         final_after=dt.timedelta(seconds=rt.settings.sweep_final_after_seconds),
                         claim_lease=dt.timedelta(seconds=rt.settings.dispatch_claim_lease_seconds))
    counts = {"requeued": 0, "reconciling": 0, "closed": 0, "abandoned": 0, "expired": 0}
    stale = now - policy.queued_after
    # The sweep's queries are independent: one round of waiting, not nine. Each list is as of the sweep's
    # start, as it would be a moment later; every step below reads its leg again before it decides.
    # Carrier health (every minute in production, on the sweeper's schedule) goes beside them: it reads and
    # writes only the carriers' documents, and nothing at all with one carrier.
    from shared.services import carriers  # noqa: PLC0415 - the routing rules only when there are two carriers

    (pending, past_validity, queued, sending, scheduled, sent, events_due, failovers_due, chunks,
     carrier_changes) = rt.concurrently(
        lambda: rt.legs.in_status(Status.PENDING.value, stale),
        lambda: rt.legs.past_validity([s.value for s in validity.UNSENT], now),
        lambda: rt.legs.in_status(Status.QUEUED.value, stale),
        lambda: rt.legs.in_status(Status.SENDING.value, now - policy.dead_claim_after),
        lambda: rt.legs.due_scheduled(stale),
        lambda: rt.legs.in_status(Status.SENT.value, now - policy.final_after),
        lambda: rt.legs.with_events_due(stale),
        lambda: rt.legs.with_failover_due(stale),
        lambda: rt.batches.chunks_todo(stale),
        lambda: carriers.assess(rt),
    )
    for leg in pending:
        counts["abandoned"] += bool(change(rt, leg.id, functools.partial(abandon, now=now)).result)
    # Before the requeue: a leg past its validity gets no fresh task, it ends expired.
    for leg in past_validity:
        counts["expired"] += bool(change(rt, leg.id, functools.partial(validity.expire, now=now)).result)
    for leg in queued:
        if not waiting_for_window(leg, stale):
            counts["requeued"] += _requeue(rt, leg.id, Status.QUEUED, now)
    for leg in sending:
        counts["reconciling"] += _requeue(rt, leg.id, Status.SENDING, now)
    for leg in scheduled:
        if leg.status_since and leg.status_since < stale:  # not re-enqueued recently
            counts["requeued"] += _requeue(rt, leg.id, Status.SCHEDULED, now)
    for leg in sent:
        counts["closed"] += change(rt, leg.id, functools.partial(close_silent, now=now)).changed
    counts["notified"] = _resend_events(rt, now, policy.queued_after, events_due)
    # SMS failovers decided but not created (the process died between the two steps: shared/services/failover.py)
    counts["failovers"] = sum(failover.launch(rt, leg.id).startswith(("queued", "failed")) for leg in failovers_due)
    counts["batch_chunks"] = enqueue_batch_chunks(rt, chunks, now)
    counts["carrier_changes"] = len(carrier_changes)
    return counts


def enqueue_batch_chunks(rt: Runtime, chunks: list[BatchChunk], now: dt.datetime) -> int:
    """Batch chunks whose work is not done (shared/services/batch_sending.py) and that nobody touched for a queued
    leg's window (their task was lost, or keeps failing): a new task each, named after the sweep's
    second, so a sweep delivered twice creates it once. A chunk task is safe to run any number of times."""
    for chunk in chunks:
        rt.queue.enqueue_batch_chunks(chunk.batch_id, [chunk.index], purpose=f"sweep-{int(now.timestamp())}")
    return len(chunks)


def _resend_events(rt: Runtime, now: dt.datetime, grace: dt.timedelta, due: list[Leg] | None = None) -> int:
    """Customer events still undelivered a while after they were due: their task may never have been
    created (the status change committed, the enqueue failed), or its retry task was lost. A resend is a
    task of its own name (the event id with the sweep's time); a duplicate delivery is harmless, the event
    id stays the same and receivers deduplicate on it. Past 24 hours the event is given up."""
    resent = 0
    for leg in due if due is not None else rt.legs.with_events_due(now - grace):
        for event_id, entry in leg.notifications.items():
            if not entry.state.undelivered:
                continue
            if now - entry.created_at > GIVE_UP_AFTER:
                give_up(rt, leg.id, event_id, now)
            elif (entry.last_attempt_at or entry.created_at) + retry_delay(entry.attempts) + grace > now:
                continue  # its own retry task is not late yet
            else:
                try:
                    leg_changes.resend(rt, leg.id, event_id, name=f"{event_id}-s{int(now.timestamp())}")
                    resent += 1
                except Exception:  # noqa: BLE001, S112 - the next sweep tries again (notify_due stays set)
                    continue
        change(rt, leg.id, functools.partial(push_due, now=now))
    return resent


def waiting_for_window(leg: Leg, due_before: dt.datetime) -> bool:
    """A queued leg whose delivery window closed before dispatch took it waits, still queued, for the
    window's next opening (its ``scheduled_at``): its task is not lost before that time has passed."""
    return leg.scheduled_at is not None and leg.scheduled_at >= due_before


def push_due(leg: Leg | None, *, now: dt.datetime) -> Decision[None]:
    """Look at this leg's outbox again only after another grace period."""
    if leg is None or leg.notify_due is None:
        return Decision()
    return Decision(after=leg.with_(notify_due=now))


def close_silent(leg: Leg | None, *, now: dt.datetime) -> Decision[None]:
    """A ``sent`` leg the provider never finalised becomes final, and the customer hears of it."""
    if leg is None or leg.status is not Status.SENT or leg.final:
        return Decision()
    closed = note(leg, cause="no final report within the window", now=now, final=True)
    return Decision(after=with_event(closed, "sent:final", "message.sent", now))


def abandon(leg: Leg | None, *, now: dt.datetime) -> Decision[bool]:
    """A pending row whose request never finished accepting it (the instance died, or gave up under
    contention and answered 429): nothing was charged or sent, so it ends failed rather than waiting."""
    if leg is None or leg.status is not Status.PENDING:
        return Decision(result=False)
    failed = transition(leg, Status.FAILED, cause="the request that created it did not complete", now=now,
                        error_code=ErrorCode.INTERNAL.value,
                        error_message="The request did not complete; nothing was sent or charged")
    return Decision(after=failed, result=failed is not None)


def bump(leg: Leg | None, *, status: Status, now: dt.datetime) -> Decision[int]:
    """Claim the right to re-enqueue: only one sweeper run does, and only if the leg did not move."""
    if leg is None or leg.status is not status:
        return Decision(result=0)
    generation = leg.dispatch_generation + 1
    return Decision(after=leg.with_(dispatch_generation=generation, status_since=now, updated_at=now),
                    result=generation)


def _requeue(rt: Runtime, message_id: str, status: Status, now: dt.datetime) -> int:
    decide: Callable[[Leg | None], Decision[int]] = functools.partial(bump, status=status, now=now)
    mutation = change(rt, message_id, decide)
    leg = mutation.after
    if not mutation.result or leg is None:
        return 0
    try:
        rt.queue.enqueue_dispatch(DispatchTask(leg.id, ids.task_name(leg.leg_key, leg.dispatch_generation),
                                               leg.scheduled_at, leg.batch_id))
    except Exception:  # noqa: BLE001 - the next sweep finds it again
        return 0
    return 1
