"""Provider delivery reports applied to legs (inbound messages: shared/services/inbound.py).

Reports arrive duplicated, late and out of order. Each is verified, recorded once by its event id in
the same commit that applies it, and applied only where the status machine allows, so a replay changes
nothing and a late ``message.sent`` never undoes a ``message.finalized``.

``final: true`` on a ``sent`` leg means mmsgate expects no further report (``delivery_unconfirmed``, or
the sweeper closed it). If the carrier's report still comes later, it is applied and announced like any
other: a Twilio user expects the latest truth about a message (``sent`` -> ``delivered``), and the status
machine still never moves backwards. Terminal statuses never change.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from shared.carriers.signatures import BadSignature, verify_telnyx
from shared.carriers.telnyx_events import Report, parse_report
from shared.ports import Decision
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.legs import note, transition, with_send_state
from shared.rules.records import Leg, LegChanges, ProviderEventRecord
from shared.rules.status import SendState, Status, from_provider
from shared.services import carriers, failover, observe
from shared.services.leg_changes import change

if TYPE_CHECKING:
    from shared.ports import Runtime


def ingest(rt: Runtime, raw: bytes, timestamp: str | None, signature: str | None) -> dict[str, str]:
    try:
        verify_telnyx(raw, timestamp, signature, rt.settings.telnyx_public_key, now=rt.now().timestamp())
    except BadSignature as exc:
        observe.metric("signature.invalid", reason=str(exc))
        raise ApiError(ErrorCode.INVALID_SIGNATURE, f"Webhook signature rejected: {exc}") from None
    return apply(rt, parse_report(raw))


def ingest_twilio(rt: Runtime, query: str, form: dict[str, list[str]], signature: str | None) -> dict[str, str]:
    """A Twilio status callback or inbound message (form-encoded), verified with ``X-Twilio-Signature`` over the
    URL Twilio called: ours as published (``TWILIO_WEBHOOK_URL``) with the request's ``query``, as Twilio signs
    it (behind the gateway, the URL the function sees is not the one Twilio called)."""
    from shared.carriers.twilio import parse_inbound, parse_status_callback, verify_twilio  # noqa: PLC0415

    url = rt.settings.twilio_webhook_url + (f"?{query}" if query else "")
    try:
        verify_twilio(url, form, signature or "", rt.settings.twilio_auth_token)
    except BadSignature as exc:
        observe.metric("signature.invalid", reason=str(exc), carrier="twilio")
        raise ApiError(ErrorCode.INVALID_SIGNATURE, f"Webhook signature rejected: {exc}") from None
    status = (form.get("MessageStatus") or form.get("SmsStatus") or [""])[0]
    parse = parse_inbound if status == "received" and "leg=" not in url else parse_status_callback
    return apply(rt, parse(url, form, rt.now()))


def apply(rt: Runtime, report: Report) -> dict[str, str]:
    """One verified, parsed report of any carrier: an inbound message, or a leg's (or a conversation's) status."""
    if report.event_type == "message.received":
        from shared.services import inbound  # (keywords, phone numbers: off the cold path of status reports)

        return inbound.ingest(rt, report)  # stored for its tenant, keyword applied (shared/services/inbound.py)

    # Our dispatch names the leg in the webhook URL (inside the signed body): go straight to it. The
    # provider-id query is only for reports that carry no leg (apply_report still refuses a leg whose
    # provider id differs from the report's).
    leg_id = report.leg_from_url or _conversation_member(rt, report) or (
        rt.legs.id_by_provider_and_recipient(report.provider_id, report.recipient_number) if report.provider_id
        else None)
    record = ProviderEventRecord(event_id=report.event_id, event_type=report.event_type,
                                 provider_id=report.provider_id)
    if not leg_id:
        rt.legs.record_event(ProviderEventRecord(event_id=report.event_id, event_type=report.event_type,
                                                 provider_id=report.provider_id, outcome="unknown message"))
        return {"outcome": "unknown message"}

    now = rt.now()
    mutation = change(rt, leg_id, lambda leg: apply_report(leg, report, now), event=record)
    if mutation.duplicate:
        return {"outcome": "duplicate"}
    if mutation.changed:
        failover.launch_if_due(rt, mutation.after)
    if mutation.changed and report.occurred_at and mutation.after and mutation.after.sent_at:
        latency = (report.occurred_at - mutation.after.sent_at).total_seconds() * 1000
        observe.metric("report.latency", latency_ms=round(max(0.0, latency), 1), event_type=report.event_type,
                       carrier=mutation.after.carrier, status=mutation.after.status.value)
        if mutation.after.status is Status.DELIVERED and latency <= carriers.HEALTH.slow_after.total_seconds() * 1000:
            carriers.count(rt, mutation.after.carrier, "fast", mutation.after.sent_at)
    return {"outcome": mutation.result or "applied"}


def _conversation_member(rt: Runtime, report: Report) -> str | None:
    """A group_mms reports per recipient: the URL names the conversation, ``to[0]`` the recipient."""
    conversation_id = report.conversation_from_url
    if conversation_id is None:
        return None
    conversation = rt.legs.get_conversation(conversation_id)
    if conversation is None or report.recipient_number not in conversation.numbers:
        return None
    return conversation.members[conversation.numbers.index(report.recipient_number)]


def apply_report(leg: Leg | None, report: Report, now: dt.datetime) -> Decision[str]:
    """The leg after one provider report (pure)."""
    if leg is None or (leg.provider_id and report.provider_id and leg.provider_id != report.provider_id):
        return Decision(result="unknown message")
    learned: LegChanges = {"provider_id": report.provider_id} if report.provider_id and not leg.provider_id else {}
    mapped = from_provider(report.event_type, report.recipient_status)
    if mapped is None:
        return Decision(after=leg.with_(**learned) if learned else None, result="no status change")
    new, final = mapped
    cause = f"provider {report.event_type} {report.recipient_status}".strip()
    fields: LegChanges = {**learned, "last_report_at": report.occurred_at}
    if final:
        fields["final"] = True
    if new in (Status.UNDELIVERED, Status.FAILED):
        error = _first_error(report)
        fields["error_code"] = ErrorCode.DELIVERY_FAILED.value
        fields["error_message"] = error.get("title") or error.get("detail") or "Delivery failed"
        fields["provider_error_code"] = str(error["code"]) if error.get("code") else None
    moved = transition(leg, new, cause=cause, now=now, event_id=report.event_id, **fields)
    if moved is None and final and leg.status is Status.SENT and not leg.final:
        # delivery_unconfirmed on a leg already sent: no new status, but no further report is expected.
        closing: LegChanges = {**learned, "final": True}
        moved = note(leg, cause=cause, now=now, event_id=report.event_id, **closing)
    if moved is None:
        return Decision(after=leg.with_(**learned) if learned else None, result="stale or duplicate status ignored")
    revived = leg.status is Status.FAILED
    if moved.send_state is not SendState.ACCEPTED and (revived or moved.send_state is not SendState.FAILED):
        # A report proves the provider has the message, even if dispatch never heard its answer.
        moved = with_send_state(moved, SendState.ACCEPTED, now=now)
    if revived:
        # It ended PROVIDER_OUTCOME_UNKNOWN and was refunded: the provider had it after all, so it is charged
        # again, once (only this transition leaves failed, and it cannot happen twice).
        observe.log_warning("a leg failed PROVIDER_OUTCOME_UNKNOWN was proven sent: revived and charged",
                            message_id=leg.id, status=moved.status.value)
        return Decision(after=failover.arm(moved), refund_micros=-leg.price_micros, result="applied (revived)")
    return Decision(after=failover.arm(moved), result="applied")


def _first_error(report: Report) -> dict[str, Any]:
    errors = report.payload.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    return first if isinstance(first, dict) else {}
