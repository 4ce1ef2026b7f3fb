"""One recipient leg: its stored document, its guarded status changes, and its public view.

A leg is the unit that reaches exactly one terminal status. ``transition`` is the only way a status
changes: it checks the status machine, appends the history entry and, when the customer must hear
about it, adds the event to the leg's outbox in the same write.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from shared.ids import notify_event_id
from shared.status import CUSTOMER_EVENTS, Status, can_enter, is_final

Doc = dict[str, Any]


@dataclass
class Change:
    """What a decision about one leg asks the store to write, in one transaction."""

    updates: Doc | None = None  # fields of the leg
    result: Any = None  # handed back to the caller
    refund_micros: int = 0  # credited back to the leg's tenant
    opt_out: str | None = None  # number to add to the leg's tenant's opt-out list


def new_leg(*, message_id: str, leg_key: str, tenant_id: str, group_id: str | None, to: str, from_: str,
            body: str | None, subject: str | None, media_urls: list[str], channel: str, encoding: str,
            segments: int, scheduled_at: dt.datetime | None, webhook_url: str | None,
            metadata: dict[str, str], request_id: str, now: dt.datetime) -> Doc:
    return {
        "id": message_id,
        "leg_key": leg_key,
        "tenant_id": tenant_id,
        "group_id": group_id,
        "to": to,
        "from": from_,
        "body": body,
        "subject": subject,
        "media_urls": media_urls,
        "channel": channel,
        "encoding": encoding,
        "segments": segments,
        "scheduled_at": scheduled_at,
        "webhook_url": webhook_url,
        "metadata": metadata,
        "request_id": request_id,
        "status": Status.PENDING.value,
        "status_since": now,
        "created_at": now,
        "updated_at": now,
        "final": False,
        "error_code": None,
        "error_message": None,
        "provider_id": None,
        "provider_error_code": None,
        "price_micros": 0,
        "attempts": 0,
        "send_state": None,
        "dispatch_generation": 0,
        "history": [{"at": now, "from": None, "to": Status.PENDING.value, "cause": "request received"}],
        "notifications": {},
        "notify_due": None,  # set while an event in the outbox is undelivered: the sweeper's cue
    }


def transition(leg: Doc, new: Status, *, cause: str, now: dt.datetime, event_id: str | None = None,
               fields: Doc | None = None) -> Doc | None:
    """The updates that move ``leg`` to ``new``, or None when the machine refuses the move."""
    current = leg["status"]
    if current == new.value or not can_enter(current, new):
        return None
    entry = {"at": now, "from": current, "to": new.value, "cause": cause}
    if event_id:
        entry["event_id"] = event_id
    updates = {
        "status": new.value,
        "status_since": now,
        "updated_at": now,
        "history": [*leg["history"], entry],
        **(fields or {}),
    }
    if new in CUSTOMER_EVENTS:
        updates.update(outbox_fields(with_event(leg, new.value, CUSTOMER_EVENTS[new], now), now))
    return updates


def with_event(leg: Doc, key: str, event_type: str, now: dt.datetime) -> Doc:
    """The leg's outbox with one more customer event (none when nobody listens)."""
    outbox = dict(leg.get("notifications") or {})
    if leg.get("webhook_url"):
        event_id = notify_event_id(leg["id"], key)
        outbox.setdefault(event_id, {"type": event_type, "status": key, "created_at": now, "state": "pending",
                                     "attempts": 0})
    return outbox


UNDELIVERED = ("pending", "retrying")


def outbox_fields(outbox: Doc, now: dt.datetime, due: dt.datetime | None = None) -> Doc:
    """The outbox and its due marker: set while any event still waits for a 2xx, cleared after."""
    waiting = any(entry["state"] in UNDELIVERED for entry in outbox.values())
    return {"notifications": outbox, "notify_due": (due or now) if waiting else None}


def new_events(before: Doc, updates: Doc | None) -> list[str]:
    """Event ids an update added to the outbox: the caller enqueues them once the write commits."""
    if not updates or "notifications" not in updates:
        return []
    return [eid for eid in updates["notifications"] if eid not in (before.get("notifications") or {})]


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def view(leg: Doc) -> Doc:
    """The public representation of a leg (GET /api/v1/messages/{id}, customer webhooks)."""
    return {
        "id": leg["id"],
        "group_id": leg.get("group_id"),
        "to": leg["to"],
        "from": leg["from"],
        "channel": leg["channel"],
        "status": leg["status"],
        "final": is_final(leg["status"], leg["final"]),
        "segments": leg["segments"],
        "body": leg.get("body"),
        "subject": leg.get("subject"),
        "media_urls": leg.get("media_urls") or [],
        "error_code": leg.get("error_code"),
        "error_message": leg.get("error_message"),
        "provider_id": leg.get("provider_id"),
        "scheduled_at": _iso(leg.get("scheduled_at")),
        "metadata": leg.get("metadata") or {},
        "price": {"amount": f"{leg.get('price_micros', 0) / 1_000_000:.4f}", "currency": "USD"},
        "created_at": _iso(leg["created_at"]),
        "updated_at": _iso(leg["updated_at"]),
        "history": [{k: _iso(v) for k, v in entry.items()} for entry in leg.get("history", [])],
    }
