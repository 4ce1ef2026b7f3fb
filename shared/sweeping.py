"""The sweeper: nothing stays stuck. Legs queued too long get a fresh task, claims whose holder died
are handed back to dispatch to reconcile, and legs the provider never finalised are closed as sent."""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING

from shared import ids
from shared.dispatching import CLAIM_LEASE, RECONCILE_WINDOW
from shared.legs import Change, new_events, with_event
from shared.status import Status

if TYPE_CHECKING:
    from infra.runtime import Runtime


def sweep(rt: Runtime) -> dict[str, int]:
    now = rt.now()
    s = rt.settings
    counts = {"requeued": 0, "reconciling": 0, "closed": 0}
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
    return counts


def _close_silent(current: dict | None, *, before: dict, now: dt.datetime) -> Change:
    """A ``sent`` leg the provider never finalised becomes final, and the customer hears of it."""
    before.update(current or {})
    if current is None or current["status"] != Status.SENT.value or current.get("final"):
        return Change()
    entry = {"at": now, "from": "sent", "to": "sent", "cause": "no final report within the window"}
    updates = {"final": True, "updated_at": now, "history": [*current["history"], entry],
               "notifications": with_event(current, "sent:final", "message.sent", now)}
    return Change(updates=updates, result=updates)


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
