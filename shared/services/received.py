"""Inbound messages as records: a Telnyx ``message.received`` read leniently, the inbound leg it becomes, the reply
a keyword asks for, and the customer events about them (pure, but for signing our media copies' URLs).

An inbound message is a leg of its own (``direction: "inbound"``) in the messages collection, so it is read,
searched, redacted, retained and announced like any other: status ``delivered`` (it reached us; Telnyx's own
word for an inbound message), ``final``, ``from`` the sender and ``to`` the tenant's number. Its id is derived
from Telnyx's message id (the event id when there is none), so a replayed or re-sent event names the same row
and only one ``create()`` succeeds. Each attachment is a ``StoredMedia`` whose ``state`` is ``pending`` until
our copy exists (``stored``) or could not be made (``unavailable``, with the reason); an attachment never
copied has no object.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

from shared.rules import ids, keywords, retention
from shared.rules.frozen import frozen
from shared.rules.legs import new_leg, transition, view, with_event
from shared.rules.records import HistoryEntry, Leg, OutboxEntry, StoredMedia, Tenant
from shared.rules.segments import MMS_SEGMENTS, count_segments
from shared.rules.status import Status

if TYPE_CHECKING:
    from shared.carriers.telnyx_events import Report
    from shared.ports import Runtime

MAX_ATTACHMENTS = 10  # Telnyx's MMS limit; more are recorded unavailable, never fetched
MAX_URL = 2048
MAX_TEXT = 100_000  # far above any MMS text; keeps a hostile event inside Firestore's 1 MiB document
MAX_NUMBERS = 10  # to[] and cc[] entries looked up as ours
_NUMBER = re.compile(r"\+?[0-9A-Za-z]{3,31}")  # E.164, a short code, an alphanumeric sender
RECEIVED = "message.received"


@frozen
class Attachment:
    url: str | None
    content_type: str | None
    size: int | None
    problem: str | None = None  # why it will not be fetched


@frozen
class Inbound:
    event_id: str
    provider_id: str | None
    sender: str | None
    numbers: tuple[str, ...]  # the to[] and cc[] numbers, in order: one of them is the tenant's
    text: str | None
    attachments: tuple[Attachment, ...]
    mms: bool
    received_at: dt.datetime | None

    @property
    def key(self) -> str:
        return self.provider_id or f"event:{self.event_id}"


def message_id(key: str) -> str:
    return ids.leg_message_id(f"inbound:{key}")


def reply_id(inbound_id: str) -> str:
    return ids.leg_message_id(f"reply:{inbound_id}")


def task_name(inbound_id: str, generation: int = 0) -> str:
    return ids.task_name(f"inbound:{inbound_id}", generation)


def _party(value: Any) -> str | None:
    number = value.get("phone_number") if isinstance(value, dict) else None
    return number if isinstance(number, str) and _NUMBER.fullmatch(number) else None


def _attachment(item: Any) -> Attachment:
    if not isinstance(item, dict):
        return Attachment(None, None, None, "not a media entry")
    url, content_type, size = item.get("url"), item.get("content_type"), item.get("size")
    content_type = content_type[:255] if isinstance(content_type, str) else None
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return Attachment(None, content_type, size, "no usable media URL")
    return Attachment(url, content_type, size)


def parse(report: Report) -> Inbound:
    """The event as an inbound message. Lenient: a field it cannot use is left out (a media entry becomes an
    attachment marked unavailable), never a reason to refuse the message."""
    payload = report.payload
    numbers: list[str] = []
    for field in ("to", "cc"):
        entries = payload.get(field)
        for entry in entries if isinstance(entries, list) else []:
            number = _party(entry)
            if number and number not in numbers:
                numbers.append(number)
    media = payload.get("media")
    items = media if isinstance(media, list) else []
    attachments = [_attachment(item) for item in items[:MAX_ATTACHMENTS]]
    attachments += [Attachment(None, None, None, f"more than {MAX_ATTACHMENTS} attachments")
                    for _ in items[MAX_ATTACHMENTS:MAX_ATTACHMENTS * 10]]
    text = payload.get("text")
    received_at = None
    if isinstance(payload.get("received_at"), str):
        try:
            received_at = dt.datetime.fromisoformat(payload["received_at"].replace("Z", "+00:00"))
        except ValueError:
            received_at = None
    kind = payload.get("type")
    return Inbound(event_id=report.event_id, provider_id=payload.get("id") or None, sender=_party(payload.get("from")),
                   numbers=tuple(numbers[:MAX_NUMBERS]), text=text[:MAX_TEXT] if isinstance(text, str) else None,
                   attachments=tuple(attachments), mms=bool(attachments) or kind == "MMS",
                   received_at=received_at if received_at and received_at.utcoffset() is not None else None)


def _stored(attachment: Attachment) -> StoredMedia:
    state = "unavailable" if attachment.problem else "pending"
    extra: dict[str, Any] = {"state": state, "source_url": attachment.url}
    if attachment.problem:
        extra["error"] = attachment.problem
    return StoredMedia(object="", content_type=attachment.content_type or "", size=attachment.size or 0, extra=extra)


def pending(leg: Leg) -> list[int]:
    """Indexes of the attachments still waiting for their copy."""
    return [i for i, m in enumerate(leg.media) if m.extra.get("state") == "pending"]


def inbound_leg(msg: Inbound, *, tenant: Tenant, number: str, action: keywords.Action | None,
                now: dt.datetime) -> Leg:
    """The inbound message as the tenant's record, with the customer events already decided (pure):
    ``message.received`` now if it has nothing to copy (else once the copies are done: ``settle_media``), the
    opt-out change's event, and the reply it asks for (``reply_due``)."""
    leg_id = message_id(msg.key)
    if msg.mms:
        encoding, segments = "GSM-7", MMS_SEGMENTS
    else:
        encoding, segments = count_segments(msg.text or "")
    leg = Leg(
        id=leg_id, leg_key=f"inbound:{msg.key}", tenant_id=tenant.id, to=number, from_=msg.sender or "",
        channel="mms" if msg.mms else "sms", encoding=encoding, segments=max(1, segments),
        request_id=msg.event_id, created_at=now, status=Status.DELIVERED, status_since=now, updated_at=now,
        body=msg.text, media=tuple(_stored(a) for a in msg.attachments), final=True, provider_id=msg.provider_id,
        webhook_url=tenant.webhook_url, webhook_failover_url=tenant.webhook_failover_url,
        history=(HistoryEntry(at=now, from_=None, to=Status.DELIVERED.value, cause="received from the provider",
                              event_id=msg.event_id),),
        delete_at=retention.delete_at(tenant, now), direction="inbound",
        keyword=action.keyword.word if action else None,
        reply_message_id=reply_id(leg_id) if action and action.reply else None,
        reply_due=now if action and action.reply else None,
        # the carrier hosting the number it came to, which carries the reply too
        carrier=tenant.senders[number].carrier if number in tenant.senders else "telnyx",
    )
    if action and action.event:
        leg = with_event(leg, "opted_out" if action.event == keywords.OPTED_OUT else "opted_in", action.event, now)
    return with_received(leg, now)


def with_received(leg: Leg, now: dt.datetime) -> Leg:
    """The leg with its ``message.received`` event once no attachment waits for its copy."""
    return leg if pending(leg) else with_event(leg, "received", RECEIVED, now)


def settle_media(leg: Leg | None, copies: dict[int, StoredMedia], now: dt.datetime) -> Leg | None:
    """The leg with the copies just made (or refused) in place of attachments still pending, and its
    ``message.received`` once none waits (pure; None: nothing to write)."""
    if leg is None:
        return None
    media = list(leg.media)
    for index, copy in copies.items():
        if index < len(media) and media[index].extra.get("state") == "pending":
            media[index] = copy
    after = with_received(leg.with_(media=tuple(media)), now)
    if after.media == leg.media and after.notifications == leg.notifications:
        return None
    return after.with_(updated_at=now)


def copy_of(attachment: StoredMedia, ref: dict[str, Any]) -> StoredMedia:
    """A stored copy (``ref`` from ``MediaStore.prepare``) in place of a pending attachment."""
    stored = StoredMedia.from_doc(ref)
    return StoredMedia(object=stored.object, content_type=stored.content_type, size=stored.size,
                       extra={**stored.extra, "state": "stored", "source_url": attachment.extra.get("source_url")})


def unavailable(attachment: StoredMedia, reason: str) -> StoredMedia:
    return StoredMedia(object="", content_type=attachment.content_type, size=attachment.size,
                       extra={**attachment.extra, "state": "unavailable", "error": reason[:300]})


def reply_leg(parent: Leg, tenant: Tenant, now: dt.datetime) -> Leg:
    """The answer to a keyword message, queued (pure): from the number the keyword was sent to, an SMS, not
    charged (docs/decisions.md), past every gate (it confirms the very opt-out the gate would apply)."""
    keyword = keywords.classify(parent.keyword)
    kind = keyword.kind if keyword else keywords.Kind.HELP
    text = keywords.reply_text(tenant, kind)
    encoding, segments = count_segments(text)
    leg = new_leg(message_id=reply_id(parent.id), leg_key=f"reply:{parent.id}", tenant_id=parent.tenant_id,
                  group_id=None, to=parent.from_, from_=parent.to, body=text, subject=None, media_urls=[],
                  channel="sms", encoding=encoding, segments=segments, scheduled_at=None,
                  webhook_url=tenant.webhook_url, metadata={}, request_id=parent.request_id, now=now)
    leg = leg.with_(in_reply_to=parent.id, keyword=parent.keyword, webhook_failover_url=tenant.webhook_failover_url,
                    delete_at=retention.delete_at(tenant, now), carrier=parent.carrier)
    queued = transition(leg, Status.QUEUED, cause=f"keyword reply to {parent.id}", now=now)
    assert queued is not None
    return queued


# -- what the customer and the API see ---------------------------------------------------------------


def signed(rt: Runtime, leg: Leg, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (an inbound leg's view) with a signed URL for each stored copy. A copy whose URL cannot be
    signed now shows none (the read or the event still answers)."""
    return signed_all(rt, [(leg, data)])[0]


def _stored_copies(leg: Leg) -> list[int]:
    return [i for i, m in enumerate(leg.media) if m.object and m.extra.get("state", "stored") == "stored"]


def signed_all(rt: Runtime, pairs: list[tuple[Leg, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each view of ``pairs`` (a leg and its view) with signed URLs of its stored copies, as ``signed``: the
    inbound messages of a search page are signed in one call. Views without ``media`` are returned as they are."""
    wanted = [(n, i) for n, (leg, data) in enumerate(pairs) if "media" in data for i in _stored_copies(leg)]
    out = [data for _, data in pairs]
    if not wanted:
        return out
    try:
        urls = rt.media.signed_urls([pairs[n][0].media[i].to_doc() for n, i in wanted])
    except Exception:  # noqa: BLE001 - IAM signing is one call: the next read or attempt signs again
        return out
    media: dict[int, list[dict[str, Any]]] = {}
    for (n, i), url in zip(wanted, urls, strict=True):
        items = media.setdefault(n, [dict(item) for item in out[n]["media"]])
        items[i]["url"] = url
    return [{**data, "media": media[n]} if n in media else data for n, data in enumerate(out)]


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(rt: Runtime, leg: Leg, event_id: str, entry: OutboxEntry) -> bytes:
    """An inbound leg's customer event: ``message.received`` carries the message (signed URLs of our copies);
    ``recipient.opted_out`` / ``recipient.opted_in`` the opt-out list change its keyword made."""
    if entry.type in (keywords.OPTED_OUT, keywords.OPTED_IN):
        data: dict[str, Any] = {"recipient": leg.from_, "number": leg.to,
                                "opted_out": entry.type == keywords.OPTED_OUT, "source": "keyword",
                                "keyword": leg.keyword, "message_id": leg.id, "at": _iso(entry.created_at)}
    else:
        data = signed(rt, leg, {k: v for k, v in view(leg).items() if k != "notifications"})
    return json.dumps({"id": event_id, "type": entry.type, "created_at": _iso(entry.created_at), "data": data},
                      separators=(",", ":")).encode()
