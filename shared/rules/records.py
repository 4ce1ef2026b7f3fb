"""Typed records: what mmsgate persists, as plain dataclasses, and the one place each is mapped to and from
its stored document (``to_doc`` / ``from_doc``). Services pass these records, never raw documents.

Documents are plain dicts of JSON-like values and timezone-aware datetimes, so the mapping needs no cloud
SDK; ``infra`` hands the dicts to Firestore as they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from shared.rules.frozen import frozen
from shared.rules.media import SENDER_KINDS, sender_kind
from shared.rules.status import SendState, Status
from shared.rules.windows import Window

Doc = dict[str, Any]
DEFAULT_RETENTION_DAYS = 90


class EventState(StrEnum):
    """Delivery state of one customer event in a leg's outbox."""

    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    GAVE_UP = "gave_up"

    @property
    def undelivered(self) -> bool:
        return self in (EventState.PENDING, EventState.RETRYING)


@frozen
class HistoryEntry:
    at: dt.datetime
    from_: str | None
    to: str
    cause: str
    event_id: str | None = None

    def to_doc(self) -> Doc:
        doc: Doc = {"at": self.at, "from": self.from_, "to": self.to, "cause": self.cause}
        if self.event_id:
            doc["event_id"] = self.event_id
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> HistoryEntry:
        return cls(at=doc["at"], from_=doc.get("from"), to=doc["to"], cause=doc.get("cause", ""),
                   event_id=doc.get("event_id"))


@frozen
class OutboxEntry:
    """One customer event: fixed id (the outbox key), type, the status it announces, delivery state."""

    type: str
    status: str  # the status announced; "sent:final" for the sweeper's closing event
    created_at: dt.datetime
    state: EventState = EventState.PENDING
    attempts: int = 0
    last_attempt_at: dt.datetime | None = None
    last_error: str | None = None
    # An event that is not about the leg's status (link.clicked: shared/services/links.py) carries its own
    # ``data``, and may go to a URL of its own (the send's tracking_url) instead of the leg's webhook.
    data: Doc | None = None
    url: str | None = None

    def to_doc(self) -> Doc:
        doc = {"type": self.type, "status": self.status, "created_at": self.created_at, "state": self.state.value,
               "attempts": self.attempts, "last_attempt_at": self.last_attempt_at, "last_error": self.last_error}
        return {**doc, "data": self.data, "url": self.url} if self.data is not None or self.url else doc

    @classmethod
    def from_doc(cls, doc: Doc) -> OutboxEntry:
        return cls(type=doc["type"], status=doc["status"], created_at=doc["created_at"],
                   state=EventState(doc.get("state", "pending")), attempts=int(doc.get("attempts", 0)),
                   last_attempt_at=doc.get("last_attempt_at"), last_error=doc.get("last_error"),
                   data=doc.get("data"), url=doc.get("url"))


@frozen
class StoredMedia:
    """Our copy of one attachment in Cloud Storage (docs/media.md)."""

    object: str
    content_type: str
    size: int = 0
    extra: Doc = field(default_factory=dict)

    def to_doc(self) -> Doc:
        return {**self.extra, "object": self.object, "content_type": self.content_type, "size": self.size}

    @property
    def objects(self) -> tuple[str, ...]:
        """The stored objects it uses: the copy sent and, when that was re-encoded, the original as given."""
        original = self.extra.get("original_object")
        return tuple(o for o in (self.object, original if isinstance(original, str) else None) if o)

    @classmethod
    def from_doc(cls, doc: Doc) -> StoredMedia:
        extra = {k: v for k, v in doc.items() if k not in ("object", "content_type", "size")}
        return cls(object=doc["object"], content_type=doc["content_type"], size=int(doc.get("size") or 0),
                   extra=extra)


@frozen
class Leg:
    """One recipient of one request: the unit that reaches exactly one terminal status."""

    id: str
    leg_key: str
    tenant_id: str
    to: str
    from_: str
    channel: str
    encoding: str
    segments: int
    request_id: str
    created_at: dt.datetime
    status: Status = Status.PENDING
    status_since: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    group_id: str | None = None
    batch_id: str | None = None  # the batch send this leg is one recipient of (shared/rules/batching.py)
    body: str | None = None
    subject: str | None = None
    media_urls: tuple[str, ...] = ()
    media: tuple[StoredMedia, ...] = ()
    scheduled_at: dt.datetime | None = None
    # validity (the API's expires_at; stored documents keep that name for TTL fields): not handed to the
    # provider by then, the leg ends expired (shared/rules/validity.py)
    valid_until: dt.datetime | None = None
    delivery_window: Window | None = None  # sent only while open (shared/rules/windows.py)
    webhook_url: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    final: bool = False
    error_code: str | None = None
    error_message: str | None = None
    provider_id: str | None = None
    provider_error_code: str | None = None
    price_micros: int = 0
    # dispatch bookkeeping (see shared.rules.status.SendState)
    attempts: int = 0
    send_state: SendState = SendState.NONE
    dispatch_generation: int = 0
    claimed_at: dt.datetime | None = None
    first_claimed_at: dt.datetime | None = None  # fixes the signed media URLs: every attempt's body is equal
    ambiguous_since: dt.datetime | None = None
    last_attempt_at: dt.datetime | None = None  # the latest send call: a lookup's horizon counts from it
    last_error: str | None = None
    sent_at: dt.datetime | None = None
    last_report_at: dt.datetime | None = None
    history: tuple[HistoryEntry, ...] = ()
    notifications: dict[str, OutboxEntry] = field(default_factory=dict)
    notify_due: dt.datetime | None = None  # set while an outbox event waits for a 2xx: the sweeper's cue
    # webhook control (docs/decisions.md): where events go when the primary URL keeps refusing them, whether
    # the customer wants events at all, and the customer's own reference, echoed in reads and every event
    webhook_failover_url: str | None = None
    request_dlr: bool = True
    client_ref: str | None = None
    # SMS failover (shared/services/failover.py): the SMS to send if this MMS fails for a carrier reason; the link to
    # that SMS leg (written in the decision that fails this one) and, on the SMS leg, the link back;
    # failover_due is set until the SMS leg exists (the sweeper's cue to finish creating it)
    sms_failover: dict[str, str] | None = None
    failover_message_id: str | None = None
    failover_of: str | None = None
    failover_due: dt.datetime | None = None
    # group conversation (shared/services/conversation.py): the one group_mms this leg is a recipient of
    conversation_id: str | None = None
    # retention and redaction (shared/rules/retention.py, shared/services/redaction.py): Firestore TTL deletes
    # the leg at
    # delete_at (not "expires_at": that names a send's validity in the public API)
    delete_at: dt.datetime | None = None
    redacted_at: dt.datetime | None = None
    # two-way messaging (shared/services/inbound.py): "inbound" for a message a tenant's number received (status
    # delivered, final; media copies in ``media`` with their state); the keyword it was (STOP, HELP...), the
    # reply it asked for (reply_due set until that leg exists); on the reply leg, the message it answers
    direction: str = "outbound"
    keyword: str | None = None
    reply_message_id: str | None = None
    reply_due: dt.datetime | None = None
    in_reply_to: str | None = None
    # which carrier carries the leg (its provider_id is that carrier's message id), and the carrier it left when a
    # carrier error moved it (shared/rules/routing.py, failover_carrier: once per leg)
    carrier: str = "telnyx"
    carrier_failed_over_from: str | None = None
    # the template the message was made from (shared/rules/templates.py), and which of its versions
    template_id: str | None = None
    template_version: int | None = None

    def with_(self, **changes: Unpack[LegChanges]) -> Leg:
        return dataclasses.replace(self, **changes)

    @property
    def is_final(self) -> bool:
        from shared.rules.status import is_final

        return is_final(self.status, self.final)

    def to_doc(self) -> Doc:
        return {
            "id": self.id, "leg_key": self.leg_key, "tenant_id": self.tenant_id, "group_id": self.group_id,
            "batch_id": self.batch_id,
            "to": self.to, "from": self.from_, "body": self.body, "subject": self.subject,
            "media_urls": list(self.media_urls), "media": [m.to_doc() for m in self.media],
            "channel": self.channel, "encoding": self.encoding, "segments": self.segments,
            "scheduled_at": self.scheduled_at, "webhook_url": self.webhook_url, "metadata": dict(self.metadata),
            "valid_until": self.valid_until,
            "delivery_window": self.delivery_window.to_doc() if self.delivery_window else None,
            "request_id": self.request_id, "status": self.status.value, "status_since": self.status_since,
            "created_at": self.created_at, "updated_at": self.updated_at, "final": self.final,
            "error_code": self.error_code, "error_message": self.error_message, "provider_id": self.provider_id,
            "provider_error_code": self.provider_error_code, "price_micros": self.price_micros,
            "attempts": self.attempts, "send_state": self.send_state.value,
            "dispatch_generation": self.dispatch_generation, "claimed_at": self.claimed_at,
            "first_claimed_at": self.first_claimed_at, "ambiguous_since": self.ambiguous_since,
            "last_attempt_at": self.last_attempt_at, "last_error": self.last_error, "sent_at": self.sent_at,
            "last_report_at": self.last_report_at,
            "history": [h.to_doc() for h in self.history],
            "notifications": {k: v.to_doc() for k, v in self.notifications.items()},
            "notify_due": self.notify_due,
            "webhook_failover_url": self.webhook_failover_url, "request_dlr": self.request_dlr,
            "client_ref": self.client_ref, "sms_failover": dict(self.sms_failover) if self.sms_failover else None,
            "failover_message_id": self.failover_message_id, "failover_of": self.failover_of,
            "failover_due": self.failover_due, "conversation_id": self.conversation_id,
            "delete_at": self.delete_at, "redacted_at": self.redacted_at,
            "direction": self.direction, "keyword": self.keyword, "reply_message_id": self.reply_message_id,
            "reply_due": self.reply_due, "in_reply_to": self.in_reply_to,
            "carrier": self.carrier, "carrier_failed_over_from": self.carrier_failed_over_from,
            "template_id": self.template_id, "template_version": self.template_version,
            # derived, for one query: is a media object (a copy sent or its original) still used by another
            # message (redaction); an inbound attachment that could not be copied has no object
            "media_objects": sorted({o for m in self.media for o in m.objects}),
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> Leg:
        return cls(
            id=doc["id"], leg_key=doc["leg_key"], tenant_id=doc["tenant_id"], group_id=doc.get("group_id"),
            batch_id=doc.get("batch_id"),
            to=doc["to"], from_=doc.get("from") or "", body=doc.get("body"), subject=doc.get("subject"),
            media_urls=tuple(doc.get("media_urls") or ()),
            media=tuple(StoredMedia.from_doc(m) for m in doc.get("media") or ()),
            channel=doc["channel"], encoding=doc.get("encoding") or "GSM-7", segments=int(doc.get("segments") or 1),
            scheduled_at=doc.get("scheduled_at"), webhook_url=doc.get("webhook_url"),
            valid_until=doc.get("valid_until"),
            delivery_window=Window.from_doc(doc["delivery_window"]) if doc.get("delivery_window") else None,
            metadata=dict(doc.get("metadata") or {}), request_id=doc.get("request_id") or "",
            status=Status(doc["status"]), status_since=doc.get("status_since"), created_at=doc["created_at"],
            updated_at=doc.get("updated_at"), final=bool(doc.get("final")), error_code=doc.get("error_code"),
            error_message=doc.get("error_message"), provider_id=doc.get("provider_id"),
            provider_error_code=doc.get("provider_error_code"), price_micros=int(doc.get("price_micros") or 0),
            attempts=int(doc.get("attempts") or 0), send_state=SendState(doc.get("send_state") or "none"),
            dispatch_generation=int(doc.get("dispatch_generation") or 0), claimed_at=doc.get("claimed_at"),
            first_claimed_at=doc.get("first_claimed_at"), ambiguous_since=doc.get("ambiguous_since"),
            last_attempt_at=doc.get("last_attempt_at"), last_error=doc.get("last_error"), sent_at=doc.get("sent_at"),
            last_report_at=doc.get("last_report_at"),
            history=tuple(HistoryEntry.from_doc(h) for h in doc.get("history") or ()),
            notifications={k: OutboxEntry.from_doc(v) for k, v in (doc.get("notifications") or {}).items()},
            notify_due=doc.get("notify_due"),
            webhook_failover_url=doc.get("webhook_failover_url"), request_dlr=doc.get("request_dlr") is not False,
            client_ref=doc.get("client_ref"),
            sms_failover=dict(doc["sms_failover"]) if doc.get("sms_failover") else None,
            failover_message_id=doc.get("failover_message_id"), failover_of=doc.get("failover_of"),
            failover_due=doc.get("failover_due"), conversation_id=doc.get("conversation_id"),
            delete_at=doc.get("delete_at"), redacted_at=doc.get("redacted_at"),
            direction=doc.get("direction") or "outbound", keyword=doc.get("keyword"),
            reply_message_id=doc.get("reply_message_id"), reply_due=doc.get("reply_due"),
            in_reply_to=doc.get("in_reply_to"), carrier=doc.get("carrier") or "telnyx",
            carrier_failed_over_from=doc.get("carrier_failed_over_from"),
            template_id=doc.get("template_id"), template_version=doc.get("template_version"),
        )


@frozen
class Group:
    id: str
    tenant_id: str
    total: int
    created_at: dt.datetime
    request_id: str
    message_ids: tuple[str, ...]
    conversation_id: str | None = None  # a true group conversation: one group_mms for every recipient
    delete_at: dt.datetime | None = None  # Firestore TTL (the tenant's retention)

    def to_doc(self) -> Doc:
        return {"id": self.id, "tenant_id": self.tenant_id, "total": self.total, "created_at": self.created_at,
                "request_id": self.request_id, "message_ids": list(self.message_ids),
                "conversation_id": self.conversation_id, "delete_at": self.delete_at}

    @classmethod
    def from_doc(cls, doc: Doc) -> Group:
        return cls(id=doc["id"], tenant_id=doc["tenant_id"], total=int(doc["total"]), created_at=doc["created_at"],
                   request_id=doc.get("request_id") or "", message_ids=tuple(doc.get("message_ids") or ()),
                   conversation_id=doc.get("conversation_id"), delete_at=doc.get("delete_at"))


class BatchStatus(StrEnum):
    ACCEPTED = "accepted"
    CANCELED = "canceled"


@frozen
class Batch:
    """One batch send (shared/services/batch_sending.py). ``template`` is the leg every recipient's row is made from
    (the shared payload: body, media, sender, timing, webhooks...), stored as a leg document so the one
    mapping above serves it too. Written at accept and by a cancel, never by the chunk tasks: it stays far
    below one write per second."""

    id: str
    tenant_id: str
    status: BatchStatus
    total: int
    accepted: int  # recipients whose cost was reserved (their rows are written queued/scheduled, or failed
    rejected: int  # by a late gate and refunded); rejected: failed at accept (number, quota), nothing reserved
    chunks: int
    reserved_micros: int
    template: Leg
    created_at: dt.datetime
    request_id: str
    start_at: dt.datetime  # the first leg's dispatch time; leg ``slot`` i is due ``i`` intervals later
    interval_seconds: float = 0.0
    validity_seconds: int | None = None  # a relative validity counts from each leg's turn
    campaign_ref: str | None = None
    sending_speed: dict[str, Any] | None = None
    canceled_at: dt.datetime | None = None
    delete_at: dt.datetime | None = None
    # link tracking (shared/rules/links.py Marked.to_doc): the template's body holds the marks each row's chunk
    # task replaces with codes of its own
    tracking: dict[str, Any] | None = None

    def with_(self, **changes: Unpack[BatchChanges]) -> Batch:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> Doc:
        return {"id": self.id, "tenant_id": self.tenant_id, "status": self.status.value, "total": self.total,
                "accepted": self.accepted, "rejected": self.rejected, "chunks": self.chunks,
                "reserved_micros": self.reserved_micros, "template": self.template.to_doc(),
                "created_at": self.created_at, "request_id": self.request_id, "start_at": self.start_at,
                "interval_seconds": self.interval_seconds, "validity_seconds": self.validity_seconds,
                "campaign_ref": self.campaign_ref,
                "sending_speed": dict(self.sending_speed) if self.sending_speed else None,
                "canceled_at": self.canceled_at, "delete_at": self.delete_at, "tracking": self.tracking}

    @classmethod
    def from_doc(cls, doc: Doc) -> Batch:
        return cls(id=doc["id"], tenant_id=doc["tenant_id"], status=BatchStatus(doc["status"]),
                   total=int(doc["total"]), accepted=int(doc.get("accepted") or 0),
                   rejected=int(doc.get("rejected") or 0), chunks=int(doc["chunks"]),
                   reserved_micros=int(doc.get("reserved_micros") or 0), template=Leg.from_doc(doc["template"]),
                   created_at=doc["created_at"], request_id=doc.get("request_id") or "", start_at=doc["start_at"],
                   interval_seconds=float(doc.get("interval_seconds") or 0.0),
                   validity_seconds=doc.get("validity_seconds"), campaign_ref=doc.get("campaign_ref"),
                   sending_speed=dict(doc["sending_speed"]) if doc.get("sending_speed") else None,
                   canceled_at=doc.get("canceled_at"), delete_at=doc.get("delete_at"),
                   tracking=dict(doc["tracking"]) if doc.get("tracking") else None)


@frozen
class ChunkRecipient:
    """One recipient as the accept left it for its chunk task: the number (E.164 when it parsed), what the
    accept reserved for it, its place in the sending order (``slot``: None when it was rejected at accept,
    with ``error_code``), and its own metadata and client_ref."""

    to: str
    price_micros: int = 0
    slot: int | None = None
    error_code: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    client_ref: str | None = None
    # the values of the batch template's placeholders for this recipient (its row's body is rendered from them)
    personalisation: dict[str, str] | None = None

    def to_doc(self) -> Doc:
        doc: Doc = {"to": self.to, "price_micros": self.price_micros, "slot": self.slot}
        if self.personalisation is not None:
            doc["personalisation"] = dict(self.personalisation)
        if self.error_code:
            doc["error_code"] = self.error_code
        if self.metadata:
            doc["metadata"] = dict(self.metadata)
        if self.client_ref is not None:
            doc["client_ref"] = self.client_ref
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> ChunkRecipient:
        slot = doc.get("slot")
        return cls(to=doc["to"], price_micros=int(doc.get("price_micros") or 0),
                   slot=int(slot) if slot is not None else None, error_code=doc.get("error_code"),
                   metadata=dict(doc.get("metadata") or {}), client_ref=doc.get("client_ref"),
                   personalisation=dict(doc["personalisation"]) if doc.get("personalisation") is not None else None)


@frozen
class BatchChunk:
    """At most ``batching.CHUNK`` recipients of a batch, written at accept; its task writes their rows.
    ``todo``: work is left (rows to write, tasks to create, or a cancel to apply); the sweeper's cue."""

    batch_id: str
    tenant_id: str
    index: int
    recipients: tuple[ChunkRecipient, ...]
    todo: bool = True
    updated_at: dt.datetime | None = None
    delete_at: dt.datetime | None = None

    @property
    def id(self) -> str:
        return chunk_doc_id(self.batch_id, self.index)

    def to_doc(self) -> Doc:
        return {"batch_id": self.batch_id, "tenant_id": self.tenant_id, "index": self.index,
                "recipients": [r.to_doc() for r in self.recipients], "todo": self.todo,
                "updated_at": self.updated_at, "delete_at": self.delete_at}

    @classmethod
    def from_doc(cls, doc: Doc) -> BatchChunk:
        return cls(batch_id=doc["batch_id"], tenant_id=doc["tenant_id"], index=int(doc["index"]),
                   recipients=tuple(ChunkRecipient.from_doc(r) for r in doc.get("recipients") or ()),
                   todo=bool(doc.get("todo")), updated_at=doc.get("updated_at"), delete_at=doc.get("delete_at"))


def chunk_doc_id(batch_id: str, index: int) -> str:
    return f"{batch_id}-{index:05d}"


@frozen
class Conversation:
    """A true group conversation: one Telnyx group_mms for several recipient legs (shared/services/conversation.py).

    ``dispatch`` is the group_mms's own send state, kept as a leg (id ``cnv_...``, never in the messages
    collection) so the one claim/record machinery of shared/services/dispatching.py applies to it unchanged.
    ``members`` (and their ``numbers``, in the order sent) are fixed by the first claim."""

    id: str
    tenant_id: str
    group_id: str
    members: tuple[str, ...]
    numbers: tuple[str, ...]
    dispatch: Leg
    delete_at: dt.datetime | None = None

    def with_(self, **changes: Unpack[ConversationChanges]) -> Conversation:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> Doc:
        return {"id": self.id, "tenant_id": self.tenant_id, "group_id": self.group_id,
                "members": list(self.members), "numbers": list(self.numbers), "dispatch": self.dispatch.to_doc(),
                "delete_at": self.delete_at}

    @classmethod
    def from_doc(cls, doc: Doc) -> Conversation:
        return cls(id=doc["id"], tenant_id=doc["tenant_id"], group_id=doc["group_id"],
                   members=tuple(doc.get("members") or ()), numbers=tuple(doc.get("numbers") or ()),
                   dispatch=Leg.from_doc(doc["dispatch"]), delete_at=doc.get("delete_at"))


@frozen
class SenderCapabilities:
    sms: bool = False
    mms: bool = False
    carrier: str = "telnyx"  # a number is hosted at one carrier, and only that carrier can send from it
    # long_code, toll_free or short_code (shared/rules/media.py SENDER_KINDS): sets the MMS size limit. A
    # sender stored without one is what its number says (media.sender_kind).
    kind: str = "long_code"

    def allows(self, channel: str) -> bool:
        return self.mms if channel == "mms" else self.sms


@frozen
class Tenant:
    id: str
    balance_micros: int = 0
    daily_quota: int | None = None
    usage_day: str | None = None
    usage_count: int = 0
    rps: int | None = None
    default_from: str | None = None
    senders: dict[str, SenderCapabilities] = field(default_factory=dict)
    webhook_url: str | None = None
    disabled: bool = False
    name: str | None = None
    webhook_failover_url: str | None = None  # events the primary URL keeps refusing go here (notifying.py)
    retention_days: int = DEFAULT_RETENTION_DAYS  # days until messages, groups and their events are deleted
    # Webhook secret rotation (shared/carriers/signatures.py): the version the secret is derived with, and the one
    # before it with the time of the rotation, for the overlap during which both sign.
    webhook_secret_version: int = 0
    webhook_secret_previous_version: int | None = None
    webhook_secret_rotated_at: dt.datetime | None = None
    # keyword compliance (shared/rules/keywords.py): who answers STOP/HELP/START ("mmsgate", "provider", "off"), the
    # tenant's own reply texts by kind ("stop", "help", "start"; {brand} and {contact} are filled in), the brand
    # named in the default texts (else ``name``) and the help contact
    keyword_replies: str = "mmsgate"
    keyword_texts: dict[str, str] = field(default_factory=dict)
    brand_name: str | None = None
    help_contact: str | None = None
    # the tenant's own share of sends per carrier, over the deployment's CARRIER_WEIGHTS (shared/rules/routing.py)
    carrier_weights: dict[str, int] = field(default_factory=dict)

    def used_on(self, day: str) -> int:
        return self.usage_count if self.usage_day == day else 0

    @classmethod
    def from_doc(cls, tenant_id: str, doc: Doc) -> Tenant:
        senders = {number: SenderCapabilities(sms=bool(c.get("sms")), mms=bool(c.get("mms")),
                                              carrier=str(c.get("carrier") or "telnyx"),
                                              kind=c["kind"] if c.get("kind") in SENDER_KINDS else sender_kind(number))
                   for number, c in (doc.get("senders") or {}).items()}
        quota = doc.get("daily_quota")
        return cls(id=tenant_id, balance_micros=int(doc.get("balance_micros") or 0),
                   daily_quota=int(quota) if quota is not None else None, usage_day=doc.get("usage_day"),
                   usage_count=int(doc.get("usage_count") or 0), rps=int(doc["rps"]) if doc.get("rps") else None,
                   default_from=doc.get("default_from"), senders=senders, webhook_url=doc.get("webhook_url"),
                   disabled=bool(doc.get("disabled")), name=doc.get("name"),
                   webhook_failover_url=doc.get("webhook_failover_url"),
                   retention_days=int(doc["retention_days"]) if doc.get("retention_days") is not None
                   else DEFAULT_RETENTION_DAYS,
                   webhook_secret_version=int(doc.get("webhook_secret_version") or 0),
                   webhook_secret_previous_version=doc.get("webhook_secret_previous_version"),
                   webhook_secret_rotated_at=doc.get("webhook_secret_rotated_at"),
                   keyword_replies=doc.get("keyword_replies") or "mmsgate",
                   keyword_texts={k: v for k, v in (doc.get("keyword_texts") or {}).items() if isinstance(v, str)},
                   brand_name=doc.get("brand_name"), help_contact=doc.get("help_contact"),
                   carrier_weights={str(k): int(v) for k, v in (doc.get("carrier_weights") or {}).items()
                                    if isinstance(v, int) and 0 <= v <= 100})


OPT_OUT_SOURCES = ("keyword", "provider_rejection", "api", "import", "admin")


@frozen
class OptOut:
    """One number on a tenant's opt-out list (``tenants/{tenant}/opt_outs/{number}``): why, and since when."""

    number: str
    source: str  # one of OPT_OUT_SOURCES
    at: dt.datetime | None = None
    keyword: str | None = None  # source keyword: the word the recipient sent
    message_id: str | None = None  # the inbound message (keyword) or the leg the provider refused

    def to_doc(self) -> Doc:
        return {"source": self.source, "at": self.at, "keyword": self.keyword, "message_id": self.message_id}

    @classmethod
    def from_doc(cls, number: str, doc: Doc) -> OptOut:
        # Entries written before the list had a vocabulary: "inbound STOP", "provider 40300", "admin", "test".
        raw = str(doc.get("source") or "")
        keyword = doc.get("keyword")
        if raw.startswith("inbound "):
            source, keyword = "keyword", keyword or raw.split(" ", 1)[1]
        elif raw.startswith("provider"):
            source = "provider_rejection"
        else:
            source = raw if raw in OPT_OUT_SOURCES else "admin"
        return cls(number=number, source=source, at=doc.get("at"), keyword=keyword, message_id=doc.get("message_id"))


@frozen
class Rates:
    """One country's prices (micro-USD); a channel missing here is not offered."""

    sms_micros: int | None = None
    mms_micros: int | None = None
    currency: str = "USD"

    def price(self, channel: str, segments: int) -> int | None:
        if channel == "sms":
            return None if self.sms_micros is None else self.sms_micros * segments
        return self.mms_micros

    @classmethod
    def from_doc(cls, doc: Doc) -> Rates:
        def micros(key: str) -> int | None:
            return int(doc[key]) if doc.get(key) is not None else None

        return cls(sms_micros=micros("sms_micros"), mms_micros=micros("mms_micros"),
                   currency=doc.get("currency") or "USD")


class IdempotencyState(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


@frozen
class IdempotencyRecord:
    """A Stripe-style Idempotency-Key: the payload hash, a lease while the first request runs, its answer."""

    state: IdempotencyState
    payload_hash: str
    created_at: dt.datetime
    lease_until: dt.datetime
    expires_at: dt.datetime
    response_status: int | None = None
    response_body: Doc | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    def to_doc(self) -> Doc:
        return {"state": self.state.value, "payload_hash": self.payload_hash, "created_at": self.created_at,
                "lease_until": self.lease_until, "expires_at": self.expires_at,
                "response_status": self.response_status, "response_body": self.response_body,
                "response_headers": dict(self.response_headers)}

    @classmethod
    def from_doc(cls, doc: Doc) -> IdempotencyRecord:
        return cls(state=IdempotencyState(doc["state"]), payload_hash=doc["payload_hash"],
                   created_at=doc["created_at"], lease_until=doc["lease_until"], expires_at=doc["expires_at"],
                   response_status=doc.get("response_status"), response_body=doc.get("response_body"),
                   response_headers=dict(doc.get("response_headers") or {}))


@frozen
class ProviderEventRecord:
    """A provider webhook event, recorded once by its id in the same commit that applies it."""

    event_id: str
    event_type: str
    provider_id: str | None = None
    outcome: str | None = None
    extra: Doc = field(default_factory=dict)

    def to_doc(self, message_id: str | None, now: dt.datetime, ttl: dt.timedelta) -> Doc:
        return {**self.extra, "event_id": self.event_id, "event_type": self.event_type,
                "provider_id": self.provider_id, "outcome": self.outcome, "message_id": message_id,
                "recorded_at": now, "expires_at": now + ttl}


if TYPE_CHECKING:  # for type checkers: at run time the three are plain dicts (no 80 annotations to evaluate)

    class LegChanges(TypedDict, total=False):
        """Any of ``Leg``'s fields, each with its own type: ``Leg.with_`` takes these and no others."""

        id: str
        leg_key: str
        tenant_id: str
        to: str
        from_: str
        channel: str
        encoding: str
        segments: int
        request_id: str
        created_at: dt.datetime
        status: Status
        status_since: dt.datetime | None
        updated_at: dt.datetime | None
        group_id: str | None
        batch_id: str | None
        body: str | None
        subject: str | None
        media_urls: tuple[str, ...]
        media: tuple[StoredMedia, ...]
        scheduled_at: dt.datetime | None
        valid_until: dt.datetime | None
        delivery_window: Window | None
        webhook_url: str | None
        metadata: dict[str, str]
        final: bool
        error_code: str | None
        error_message: str | None
        provider_id: str | None
        provider_error_code: str | None
        price_micros: int
        attempts: int
        send_state: SendState
        dispatch_generation: int
        claimed_at: dt.datetime | None
        first_claimed_at: dt.datetime | None
        ambiguous_since: dt.datetime | None
        last_attempt_at: dt.datetime | None
        last_error: str | None
        sent_at: dt.datetime | None
        last_report_at: dt.datetime | None
        history: tuple[HistoryEntry, ...]
        notifications: dict[str, OutboxEntry]
        notify_due: dt.datetime | None
        webhook_failover_url: str | None
        request_dlr: bool
        client_ref: str | None
        sms_failover: dict[str, str] | None
        failover_message_id: str | None
        failover_of: str | None
        failover_due: dt.datetime | None
        conversation_id: str | None
        delete_at: dt.datetime | None
        redacted_at: dt.datetime | None
        direction: str
        keyword: str | None
        reply_message_id: str | None
        reply_due: dt.datetime | None
        in_reply_to: str | None
        carrier: str
        carrier_failed_over_from: str | None
        template_id: str | None
        template_version: int | None

    class BatchChanges(TypedDict, total=False):
        """Any of ``Batch``'s fields, each with its own type: ``Batch.with_`` takes these and no others."""

        id: str
        tenant_id: str
        status: BatchStatus
        total: int
        accepted: int
        rejected: int
        chunks: int
        reserved_micros: int
        template: Leg
        created_at: dt.datetime
        request_id: str
        start_at: dt.datetime
        interval_seconds: float
        validity_seconds: int | None
        campaign_ref: str | None
        sending_speed: dict[str, Any] | None
        canceled_at: dt.datetime | None
        delete_at: dt.datetime | None

    class ConversationChanges(TypedDict, total=False):
        """Any of ``Conversation``'s fields, each with its own type: ``Conversation.with_`` takes these and no
        others."""

        id: str
        tenant_id: str
        group_id: str
        members: tuple[str, ...]
        numbers: tuple[str, ...]
        dispatch: Leg
        delete_at: dt.datetime | None
else:
    LegChanges = BatchChanges = ConversationChanges = dict
