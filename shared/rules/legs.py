"""One recipient leg: building it, its guarded status changes, its outbox, and its public view.

``transition`` is the only way a status changes: it checks the status machine, appends the history entry
and, when the customer must hear about it, adds the event to the leg's outbox in the same write.
``with_send_state`` does the same for dispatch's own bookkeeping (``SendState``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Unpack

from shared.rules.ids import notify_event_id
from shared.rules.records import EventState, HistoryEntry, Leg, LegChanges, OutboxEntry, StoredMedia
from shared.rules.status import CUSTOMER_EVENTS, SendState, Status, can_enter, can_revive, can_send_enter


def new_leg(*, message_id: str, leg_key: str, tenant_id: str, group_id: str | None, to: str, from_: str,
            body: str | None, subject: str | None, media_urls: list[str], channel: str, encoding: str,
            segments: int, scheduled_at: dt.datetime | None, webhook_url: str | None,
            metadata: dict[str, str], request_id: str, now: dt.datetime) -> Leg:
    return Leg(
        id=message_id, leg_key=leg_key, tenant_id=tenant_id, group_id=group_id, to=to, from_=from_, body=body,
        subject=subject, media_urls=tuple(media_urls), channel=channel, encoding=encoding, segments=segments,
        scheduled_at=scheduled_at, webhook_url=webhook_url, metadata=dict(metadata), request_id=request_id,
        status=Status.PENDING, status_since=now, created_at=now, updated_at=now,
        history=(HistoryEntry(at=now, from_=None, to=Status.PENDING.value, cause="request received"),),
    )


def transition(leg: Leg, new: Status, *, cause: str, now: dt.datetime, event_id: str | None = None,
               **fields: Unpack[LegChanges]) -> Leg | None:
    """``leg`` moved to ``new`` (with ``fields`` set), or None when the status machine refuses the move. A
    revived leg (``can_revive``) loses the error of the failure the provider's proof overturned."""
    if leg.status is new:
        return None
    if not can_enter(leg.status, new):
        if not can_revive(leg.status, leg.error_code, new):
            return None
        fields = {"error_code": None, "error_message": None, **fields}
    entry = HistoryEntry(at=now, from_=leg.status.value, to=new.value, cause=cause, event_id=event_id)
    changes: LegChanges = {**fields, "status": new, "status_since": now, "updated_at": now,
                           "history": (*leg.history, entry)}
    moved = leg.with_(**changes)
    if new in CUSTOMER_EVENTS:
        moved = with_event(moved, new.value, CUSTOMER_EVENTS[new], now)
    return moved


def note(leg: Leg, *, cause: str, now: dt.datetime, event_id: str | None = None,
         **fields: Unpack[LegChanges]) -> Leg:
    """A history entry with no status change (a leg closed as final, a late report)."""
    entry = HistoryEntry(at=now, from_=leg.status.value, to=leg.status.value, cause=cause, event_id=event_id)
    changes: LegChanges = {**fields, "updated_at": now, "history": (*leg.history, entry)}
    return leg.with_(**changes)


def with_send_state(leg: Leg, new: SendState, *, now: dt.datetime, **fields: Unpack[LegChanges]) -> Leg:
    """Dispatch's bookkeeping moved to ``new``; a move the send-state table refuses is a bug, not a race
    (every caller decided on the version it read), so it raises."""
    if leg.send_state is not new and not can_send_enter(leg.send_state, new):
        raise ValueError(f"send state {leg.send_state} cannot become {new}")
    changes: LegChanges = {**fields, "send_state": new, "updated_at": now}
    return leg.with_(**changes)


def with_event(leg: Leg, key: str, event_type: str, now: dt.datetime) -> Leg:
    """The leg with one more customer event in its outbox (none when nobody listens, or the send asked for
    no delivery reports: ``request_dlr: false``)."""
    if not leg.webhook_url or not leg.request_dlr:
        return leg
    event_id = notify_event_id(leg.id, key)
    if event_id in leg.notifications:
        return leg
    outbox = {**leg.notifications, event_id: OutboxEntry(type=event_type, status=key, created_at=now)}
    return with_outbox(leg, outbox, now)


def with_outbox(leg: Leg, outbox: dict[str, OutboxEntry], now: dt.datetime, due: dt.datetime | None = None) -> Leg:
    """The outbox and its due marker: set while any event still waits for a 2xx, cleared after."""
    waiting = any(entry.state.undelivered for entry in outbox.values())
    return leg.with_(notifications=outbox, notify_due=(due or now) if waiting else None)


def mark_event(leg: Leg, event_id: str, now: dt.datetime, *, state: EventState, error: str | None) -> Leg | None:
    """The outbox after one delivery attempt of ``event_id`` (None: no such event, or already settled)."""
    entry = leg.notifications.get(event_id)
    if entry is None or not entry.state.undelivered:
        return None
    done = OutboxEntry(type=entry.type, status=entry.status, created_at=entry.created_at, state=state,
                       attempts=entry.attempts + 1, last_attempt_at=now, last_error=error, data=entry.data,
                       url=entry.url)
    return with_outbox(leg, {**leg.notifications, event_id: done}, now, due=leg.notify_due)


def iso(value: dt.datetime | None) -> str | None:
    """A timestamp as the API writes it: UTC, milliseconds, ``Z``."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def attachment(media: StoredMedia) -> dict[str, Any]:
    """One attachment of an inbound message: our copy's state (``stored``, ``pending`` while it is being
    copied, ``unavailable`` with the reason when it could not be), without a URL: the caller signs one."""
    return {"content_type": media.content_type or None, "size": media.size or None,
            "status": media.extra.get("state") or "stored", "error": media.extra.get("error"), "url": None}


def sent_attachment(media: StoredMedia) -> dict[str, Any]:
    """One attachment of an outbound message as it went to the carrier: our copy's type and size and, when it
    was re-encoded (a HEIC converted to JPEG, an image downscaled to fit the sender's limit, a PNG sent as JPEG),
    the original's type and size (``media.original_*``). Copies stored before ``downscaled`` was recorded were
    re-encoded only to be downscaled."""
    original_size = media.extra.get("original_size")
    return {"content_type": media.content_type or None, "size": media.size or None,
            "original_content_type": media.extra.get("original_content_type") or media.content_type or None,
            "original_size": original_size or media.size or None,
            "downscaled": bool(media.extra.get("downscaled", original_size is not None)),
            **({"filename": media.extra["filename"]} if media.extra.get("filename") else {})}


def view(leg: Leg) -> dict[str, Any]:
    """The public representation of a leg (GET /api/v1/messages/{id}, customer webhooks)."""
    return {
        "id": leg.id,
        "group_id": leg.group_id,
        "batch_id": leg.batch_id,
        "to": leg.to,
        "from": leg.from_,
        "channel": leg.channel,
        "status": leg.status.value,
        "final": leg.is_final,
        "segments": leg.segments,
        "encoding": leg.encoding if leg.channel == "sms" else None,  # an MMS is not GSM-7/UCS-2 encoded
        "body": leg.body,
        "subject": leg.subject,
        "media_urls": list(leg.media_urls),
        "error_code": leg.error_code,
        "error_message": leg.error_message,
        "provider_id": leg.provider_id,
        "carrier": leg.carrier,
        "carrier_failed_over_from": leg.carrier_failed_over_from,
        "scheduled_at": iso(leg.scheduled_at),
        "expires_at": iso(leg.valid_until),  # the validity (the stored field is valid_until)
        "delivery_window": leg.delivery_window.to_doc() if leg.delivery_window else None,
        "metadata": dict(leg.metadata),
        "client_ref": leg.client_ref,
        "conversation_id": leg.conversation_id,
        "sms_failover": dict(leg.sms_failover) if leg.sms_failover else None,
        "failover_of": leg.failover_of,
        "failover_message_id": leg.failover_message_id,
        "redacted_at": iso(leg.redacted_at),
        # two-way messaging: an inbound message's keyword and its reply; a reply's inbound message
        "direction": leg.direction,
        "keyword": leg.keyword,
        "reply_message_id": leg.reply_message_id,
        "in_reply_to": leg.in_reply_to,
        **({"media": [attachment(m) for m in leg.media]} if leg.direction == "inbound" else
           {"sent_media": [sent_attachment(m) for m in leg.media]}),
        "price": {"amount": f"{leg.price_micros / 1_000_000:.4f}", "currency": "USD"},
        "template": {"id": leg.template_id, "version": leg.template_version} if leg.template_id else None,
        "created_at": iso(leg.created_at),
        "updated_at": iso(leg.updated_at),
        "history": [{"at": iso(h.at), "from": h.from_, "to": h.to, "cause": h.cause,
                     **({"event_id": h.event_id} if h.event_id else {})} for h in leg.history],
        # The customer events and how their delivery went: a webhook URL that fails its check, or an
        # endpoint that does not answer 2xx, shows here with the reason.
        "notifications": [
            {"event_id": event_id, "type": entry.type, "state": entry.state.value, "attempts": entry.attempts,
             "last_attempt_at": iso(entry.last_attempt_at), "last_error": entry.last_error}
            for event_id, entry in sorted(leg.notifications.items(), key=lambda item: (item[1].created_at, item[0]))
        ],
    }
