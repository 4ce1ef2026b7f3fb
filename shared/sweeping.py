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
            generation = rt.store.mutate_leg(leg["id"], lambda current, st=status: _bump(current, st, now))
            if generation:
                rt.queue.enqueue_dispatch(leg["id"], ids.task_name(leg["leg_key"], generation), leg.get("scheduled_at"))
                counts[key] += 1

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


def _bump(leg: dict | None, status: Status, now: dt.datetime) -> Change:
    """Claim the right to re-enqueue: only one sweeper run does, and only if the leg did not move."""
    if leg is None or leg["status"] != status.value:
        return Change(result=0)
    generation = leg.get("dispatch_generation", 0) + 1
    return Change(updates={"dispatch_generation": generation, "status_since": now, "updated_at": now},
                  result=generation)
