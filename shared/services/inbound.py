"""Inbound messages: Telnyx ``message.received`` stored for the tenant that owns the number, its media copied into
our bucket, its keyword applied and answered, the customer told (docs/decisions.md "Inbound messages").

The webhook must answer Telnyx within 2 s, so it does only what is quick, in this order:

1. find the tenant that owns the receiving number (``sender_numbers``; none: recorded for the operator, log and
   metric ``inbound.unknown_number``, answered 200);
2. one commit (``LegStore.record_inbound``): the inbound leg created under an id derived from Telnyx's message
   id, with the keyword's opt-out change and its customer events. A replayed event finds the leg and writes
   nothing, so it stores nothing twice and changes the opt-out list once;
3. the keyword reply (``spawn``: created once under an id derived from the inbound message's, queued, then
   its dispatch task) and, for a message with nothing to copy, ``message.received``;
4. if media waits for its copy (or step 3 could not finish), a task named after the message, on the notify
   queue, for the notifier: ``process`` copies each attachment through the same SSRF-checked, size-capped
   fetch as outbound media, marks one it cannot copy ``unavailable`` (the message is kept), then finishes
   step 3. A task that cannot be created answers Telnyx 500, and Telnyx's retry resumes from step 2.

Every step is idempotent by its derived id, so a replayed event, a second task delivery, or a process killed
between two steps ends with one message, one reply and one event of each kind.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
from typing import TYPE_CHECKING

from shared.ports import Decision, DispatchTask, InboundDecision, Mutation, SpawnDecision
from shared.rules import keywords
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.ids import task_name as dispatch_task_name
from shared.rules.media import MediaError
from shared.rules.phone import InvalidNumber, parse_e164
from shared.rules.records import Leg, OptOut, ProviderEventRecord, StoredMedia, Tenant
from shared.rules.ssrf import UrlPolicy, media_url_policy
from shared.services import leg_changes, observe, received
from shared.services.leg_changes import change

if TYPE_CHECKING:
    from shared.carriers.telnyx_events import Report
    from shared.ports import Runtime

COPY_WORKERS = 4


def ingest(rt: Runtime, report: Report) -> dict[str, str]:
    """A verified ``message.received``: its outcome for the webhook's 200 answer."""
    msg = received.parse(report)
    owner = _owner(rt, msg.numbers)
    if owner is None:
        reason = "unknown number" if msg.numbers else "no recipient number"
        # Kept for the operator (30 days, with the event), never under a tenant; numbers stay out of the logs.
        rt.legs.record_event(ProviderEventRecord(
            event_id=report.event_id, event_type=report.event_type, provider_id=msg.provider_id, outcome=reason,
            extra={"to": list(msg.numbers), "from": msg.sender}))
        observe.metric("inbound.unknown_number", reason=reason)
        observe.log_warning("inbound message for a number no tenant owns", event_id=report.event_id, reason=reason)
        return {"outcome": reason}
    tenant, number = owner
    sender = _e164(msg.sender)
    keyword = keywords.classify(msg.text) if sender else None
    now = rt.now()

    def decide(current: OptOut | None) -> InboundDecision:
        action = keywords.decide(keyword, opted_out=current is not None, replies=keywords.replies_setting(tenant))
        leg = received.inbound_leg(msg, tenant=tenant, number=number, action=action, now=now)
        if action is not None and action.opt == "out" and sender:
            entry = OptOut(number=sender, source="keyword", at=now, keyword=action.keyword.word, message_id=leg.id)
            return InboundDecision(leg=leg, opt_out=entry)
        return InboundDecision(leg=leg, opt_in=action is not None and action.opt == "in")

    written = leg_changes.record_inbound(rt, received.message_id(msg.key), tenant.id, sender, decide)
    leg = written.leg
    remaining = finish(rt, leg)
    if remaining:
        try:
            rt.queue.enqueue_inbound(leg.id, name=received.task_name(leg.id))
        except Exception as exc:
            observe.log_error("inbound task not created; Telnyx will retry", message_id=leg.id,
                              error=type(exc).__name__)
            raise ApiError(ErrorCode.INTERNAL, "The inbound message is stored; its processing could not be "
                                               "queued") from exc
    return {"outcome": _outcome(leg, written.created)}


def process(rt: Runtime, message_id: str) -> tuple[int, str]:
    """The inbound task (the notifier runs it): copy the media still pending, then finish. Answers 503 while
    something transient is left, so Cloud Tasks tries again (the notify queue retries for 24 hours)."""
    leg = rt.legs.get(message_id)
    if leg is None or leg.direction != "inbound":
        return 200, "unknown inbound message"
    if received.pending(leg):
        leg = copy_media(rt, leg) or leg
    remaining = finish(rt, leg)
    if remaining:
        return 503, f"not finished: {', '.join(remaining)}"
    return 200, "done"


def finish(rt: Runtime, leg: Leg) -> list[str]:
    """The steps after the first commit that this call could not complete (empty: nothing left)."""
    remaining = []
    if leg.reply_due is not None and not send_reply(rt, leg):
        remaining.append("reply")
    if received.pending(leg):
        remaining.append("media")
    return remaining


def send_reply(rt: Runtime, parent: Leg) -> bool:
    """Create the keyword reply if it is due, then its dispatch task. False if it could not be created now."""
    now = rt.now()
    try:
        spawned = leg_changes.spawn(rt, parent.id, received.reply_id(parent.id), parent.tenant_id,
                                    lambda leg, exists, tenant: decide_reply(leg, exists, tenant, now))
    except Exception as exc:  # noqa: BLE001 - the inbound task tries again
        observe.log_error("keyword reply not created yet", message_id=parent.id, error=type(exc).__name__)
        return False
    child = spawned.child
    if child is not None:
        try:
            rt.queue.enqueue_dispatch(DispatchTask(child.id, dispatch_task_name(child.leg_key)))
        except Exception as exc:  # noqa: BLE001 - the sweeper re-enqueues a queued leg without a task
            observe.log_error("dispatch task not created; the sweeper will re-enqueue", message_id=child.id,
                              error=type(exc).__name__)
    return True


def decide_reply(parent: Leg | None, child_exists: bool, tenant: Tenant, now: dt.datetime) -> SpawnDecision:
    """Create the reply of ``parent`` if it is due (pure): queued, not charged; the parent no longer due."""
    if parent is None or parent.reply_due is None:
        return SpawnDecision(result="nothing due")
    cleared = parent.with_(reply_due=None, updated_at=now)
    if child_exists:
        return SpawnDecision(parent=cleared, result="already created")
    return SpawnDecision(parent=cleared, child=received.reply_leg(parent, tenant, now), result="queued")


def inbound_media_policy(rt: Runtime) -> UrlPolicy:
    """Where inbound media may come from: Telnyx's media hosts (INBOUND_MEDIA_HOSTS), HTTPS, public addresses
    only; locally also the trusted origins (the simulator)."""
    s = rt.settings
    return media_url_policy(None, s.inbound_media_hosts, s.media_trusted_origins)


def copy_media(rt: Runtime, leg: Leg) -> Leg | None:
    """Fetch and store every pending attachment (concurrently), and record each outcome in one commit: a copy,
    or ``unavailable`` for a media rule (not allowed, too large, unsupported, the link no longer works). A
    failure of our own storage leaves it pending for the task's retry. Returns the leg as written."""
    policy = inbound_media_policy(rt)

    def one(index: int) -> tuple[int, StoredMedia | None]:
        attachment = leg.media[index]
        url = attachment.extra.get("source_url")
        if not isinstance(url, str):
            return index, received.unavailable(attachment, "no usable media URL")
        try:
            refs = rt.media.prepare(leg.tenant_id, [url], [], policy)
        except MediaError as exc:
            return index, received.unavailable(attachment, f"{exc.code.value}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - storing failed: kept pending, the task tries again
            observe.log_error("inbound media not stored yet", message_id=leg.id, error=type(exc).__name__)
            return index, None
        return index, received.copy_of(attachment, refs[0])

    indexes = received.pending(leg)
    with cf.ThreadPoolExecutor(max_workers=min(COPY_WORKERS, len(indexes)), thread_name_prefix="inbound") as pool:
        results = list(pool.map(one, indexes))
    copies = {index: copy for index, copy in results if copy is not None}
    if not copies:
        return None
    for copy in copies.values():
        if copy.extra.get("state") == "unavailable":
            observe.log_warning("inbound attachment unavailable", message_id=leg.id,
                                reason=str(copy.extra.get("error", ""))[:80])
    now = rt.now()
    mutation: Mutation[None] = change(
        rt, leg.id, lambda current: Decision(after=received.settle_media(current, copies, now)))
    return mutation.current


def _owner(rt: Runtime, numbers: tuple[str, ...]) -> tuple[Tenant, str] | None:
    """The tenant owning the first of ``numbers`` any tenant owns. A number belongs to one tenant (mmsgate-admin
    refuses a second); if several list it all the same, the one whose id sorts first gets the message."""
    for number in numbers:
        owners = sorted(rt.accounts.tenants_owning(number))
        if not owners:
            continue
        if len(owners) > 1:
            observe.log_warning("a number is a sender of several tenants; inbound goes to the first",
                                tenant_id=owners[0], tenants=len(owners))
        tenant = rt.accounts.get_tenant(owners[0], balance=False)
        if tenant is not None:
            return tenant, number
    return None


def _e164(number: str | None) -> str | None:
    if not number:
        return None
    try:
        return parse_e164(number)
    except InvalidNumber:
        return None


def _outcome(leg: Leg, created: bool) -> str:
    if not created:
        return "duplicate"
    keyword = keywords.classify(leg.keyword)
    if keyword is None:
        return "inbound message stored"
    return {keywords.Kind.STOP: "opted out", keywords.Kind.START: "opted in"}.get(keyword.kind, "help")

