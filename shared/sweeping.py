"""The sweeper: nothing stays stuck. Legs queued too long get a fresh task, claims whose holder died
are handed back to dispatch to reconcile, and legs the provider never finalised are closed as sent."""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING

from shared import ids
from shared.dispatching import CLAIM_LEASE, RECONCILE_WINDOW
from shared.errors import ErrorCode
from shared.legs import UNDELIVERED, Change, new_events, outbox_fields, transition, with_event
from shared.notifying import GIVE_UP_AFTER, give_up
from shared.status import Status

if TYPE_CHECKING:
    from infra.runtime import Runtime


def sweep(rt: Runtime) -> dict[str, int]:
    now = rt.now()
    s = rt.settings
    counts = {"requeued": 0, "reconciling": 0, "closed": 0, "abandoned": 0}
    # A pending row whose request never finished accepting it (the instance died, or gave up under
    # contention and answered 429): nothing was charged or sent, so it ends failed rather than waiting.
    for leg in rt.store.legs_in_status(Status.PENDING.value, now - dt.timedelta(seconds=s.sweep_queued_after_seconds)):
        counts["abandoned"] += bool(rt.store.mutate_leg(leg["id"], functools.partial(_abandon, now=now)))
    for status, age, key in (
        (Status.QUEUED, dt.timedelta(seconds=s.sweep_queued_after_seconds), "requeued"),
        (Status.SENDING, CLAIM_LEASE + RECONCILE_WINDOW, "reconciling"),
    ):
        for leg in rt.store.legs_in_status(status.value, now - age):
            counts[key] += _requeue(rt, leg, status, now)
    # A scheduled leg still waiting well after its time lost its task (or never got one).
    grace = dt.timedelta(seconds=s.sweep_queued_after_seconds)
    for leg in rt.store.due_scheduled_legs(now - grace):
        if leg["status_since"] < now - grace:  # not re-enqueued within the last grace period
            counts["requeued"] += _requeue(rt, leg, Status.SCHEDULED, now)

    for leg in rt.store.legs_in_status(Status.SENT.value, now - dt.timedelta(seconds=s.sweep_final_after_seconds)):
        before: dict = {}
        updates = rt.store.mutate_leg(leg["id"], functools.partial(_close_silent, before=before, now=now))
        if updates:
            counts["closed"] += 1
            for event_id in new_events(before, updates):
                rt.queue.enqueue_notify(event_id, leg["id"])
    counts["notified"] = _resend_events(rt, now, grace)
    return counts


def _resend_events(rt: Runtime, now: dt.datetime, grace: dt.timedelta) -> int:
    """Customer events still undelivered a while after they were due: their task may never have been
    created (the status change committed, the enqueue failed). Creating it again is harmless, the task
    is named after the event; past 24 hours the event is given up."""
    resent = 0
    for leg in rt.store.legs_with_events_due(now - grace):
        for event_id, entry in (leg.get("notifications") or {}).items():
            if entry["state"] not in UNDELIVERED:
                continue
            if now - entry["created_at"] > GIVE_UP_AFTER:
                give_up(rt, leg["id"], event_id, now)
            else:
                rt.queue.enqueue_notify(event_id, leg["id"])
                resent += 1
        rt.store.mutate_leg(leg["id"], functools.partial(_push_due, now=now))
    return resent


def _push_due(leg: dict | None, *, now: dt.datetime) -> Change:
    """Look at this leg's outbox again only after another grace period."""
    if leg is None or leg.get("notify_due") is None:
        return Change()
    return Change(updates={"notify_due": now})


def _close_silent(current: dict | None, *, before: dict, now: dt.datetime) -> Change:
    """A ``sent`` leg the provider never finalised becomes final, and the customer hears of it."""
    before.update(current or {})
    if current is None or current["status"] != Status.SENT.value or current.get("final"):
        return Change()
    entry = {"at": now, "from": "sent", "to": "sent", "cause": "no final report within the window"}
    updates = {"final": True, "updated_at": now, "history": [*current["history"], entry],
               **outbox_fields(with_event(current, "sent:final", "message.sent", now), now)}
    return Change(updates=updates, result=updates)


def _abandon(leg: dict | None, *, now: dt.datetime) -> Change:
    if leg is None or leg["status"] != Status.PENDING.value:
        return Change(result=False)
    updates = transition(leg, Status.FAILED, cause="the request that created it did not complete", now=now,
                         fields={"error_code": ErrorCode.INTERNAL.value,
                                 "error_message": "The request did not complete; nothing was sent or charged"})
    return Change(updates=updates, result=True)


def _requeue(rt: Runtime, leg: dict, status: Status, now: dt.datetime) -> int:
    generation = rt.store.mutate_leg(leg["id"], functools.partial(_bump, status=status, now=now))
    if not generation:
        return 0
    rt.queue.enqueue_dispatch(leg["id"], ids.task_name(leg["leg_key"], generation), leg.get("scheduled_at"))
    return 1


def _bump(leg: dict | None, *, status: Status, now: dt.datetime) -> Change:
    """Claim the right to re-enqueue: only one sweeper run does, and only if the leg did not move."""
    if leg is None or leg["status"] != status.value:
        return Change(result=0)
    generation = leg.get("dispatch_generation", 0) + 1
    return Change(updates={"dispatch_generation": generation, "status_since": now, "updated_at": now},
                  result=generation)
