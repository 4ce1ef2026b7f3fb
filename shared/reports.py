"""Provider delivery reports (and inbound STOP/START) applied to legs.

Reports arrive duplicated, late and out of order. Each is verified, recorded once by its event id in
the same transaction that applies it, and applied only where the status machine allows, so a replay
changes nothing and a late ``message.sent`` never undoes a ``message.finalized``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from shared.errors import ApiError, ErrorCode
from shared.legs import Change, new_events, transition
from shared.signatures import BadSignature, verify_telnyx
from shared.status import Status, from_provider
from shared.telnyx_events import Report, parse_report

if TYPE_CHECKING:
    from infra.runtime import Runtime

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})


def ingest(rt: Runtime, raw: bytes, timestamp: str | None, signature: str | None) -> dict[str, str]:
    try:
        verify_telnyx(raw, timestamp, signature, rt.settings.telnyx_public_key, now=rt.now().timestamp())
    except BadSignature as exc:
        raise ApiError(ErrorCode.INVALID_SIGNATURE, f"Webhook signature rejected: {exc}") from None
    report = parse_report(raw)
    if report.event_type == "message.received":
        return _inbound(rt, report)

    # Our dispatch names the leg in the webhook URL (inside the signed body): go straight to it. The
    # provider-id query is only for reports that carry no leg (apply_report still refuses a leg whose
    # provider id differs from the report's).
    leg_id = report.leg_from_url or \
        (rt.store.leg_id_by_provider_id(report.provider_id) if report.provider_id else None)
    summary = {"event_id": report.event_id, "event_type": report.event_type, "provider_id": report.provider_id}
    if not leg_id:
        rt.store.record_event_only(report.event_id, {**summary, "outcome": "unknown message"})
        return {"outcome": "unknown message"}

    before: dict = {}

    def decide(leg: dict | None) -> Change:
        before.update(leg or {})
        return apply_report(leg, report, rt.now())

    result = rt.store.mutate_leg(leg_id, decide, event_id=report.event_id, event={**summary})
    if result is rt.store.DUPLICATE:
        return {"outcome": "duplicate"}
    outcome, updates = result
    for event_id in new_events(before, updates):
        rt.queue.enqueue_notify(event_id, leg_id)
    return {"outcome": outcome}


def apply_report(leg: dict | None, report: Report, now: dt.datetime) -> Change:
    if leg is None or (leg.get("provider_id") and report.provider_id and leg["provider_id"] != report.provider_id):
        return Change(result=("unknown message", None))
    learned = {"provider_id": report.provider_id} if report.provider_id and not leg.get("provider_id") else {}
    mapped = from_provider(report.event_type, report.recipient_status)
    if mapped is None:
        return Change(updates=learned or None, result=("no status change", learned or None))
    new, final = mapped
    cause = f"provider {report.event_type} {report.recipient_status}".strip()
    fields: dict[str, Any] = {**learned, "send_state": "accepted", "last_report_at": report.occurred_at}
    if final:
        fields["final"] = True
    if new in (Status.UNDELIVERED, Status.FAILED):
        error = (report.payload.get("errors") or [{}])[0]
        fields.update({"error_code": ErrorCode.DELIVERY_FAILED.value,
                       "error_message": error.get("title") or error.get("detail") or "Delivery failed",
                       "provider_error_code": str(error.get("code")) if error.get("code") else None})
    updates = transition(leg, new, cause=cause, now=now, event_id=report.event_id, fields=fields)
    if updates is None and final and leg["status"] == Status.SENT.value and not leg.get("final"):
        # delivery_unconfirmed on a leg already sent: no new status, but it is now final.
        entry = {"at": now, "from": leg["status"], "to": leg["status"], "cause": cause, "event_id": report.event_id}
        updates = {**learned, "final": True, "updated_at": now, "history": [*leg["history"], entry]}
    if updates is None:
        return Change(updates=learned or None, result=("stale or duplicate status ignored", None))
    return Change(updates=updates, result=("applied", updates))


def _inbound(rt: Runtime, report: Report) -> dict[str, str]:
    word = (report.payload.get("text") or "").strip().upper()
    sender = (report.payload.get("from") or {}).get("phone_number")
    to = ((report.payload.get("to") or [{}])[0] or {}).get("phone_number")
    if word not in STOP_WORDS | START_WORDS or not sender or not to:
        return {"outcome": "inbound message ignored"}
    if not rt.store.record_event_only(report.event_id, {"event_type": report.event_type, "word": word}):
        return {"outcome": "duplicate"}
    for tenant_id in rt.store.tenants_owning(to):
        if word in STOP_WORDS:
            rt.store.add_opt_out(tenant_id, sender, source=f"inbound {word}")
        else:
            rt.store.remove_opt_out(tenant_id, sender)
    return {"outcome": "opted out" if word in STOP_WORDS else "opted in"}
