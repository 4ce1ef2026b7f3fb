"""Customer webhooks: one signed event per leg and status, retried by Cloud Tasks for up to 24 hours.

The event id is fixed when the event enters the leg's outbox, so every attempt carries the same id
and receivers can deduplicate. The target URL is checked against SSRF on every attempt, since what a
host resolves to can change between attempts.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

from shared import observe
from shared.leg_changes import change
from shared.legs import mark_event, view
from shared.ports import Decision
from shared.records import EventState, Leg, OutboxEntry
from shared.signatures import sign_customer_event, tenant_secret
from shared.ssrf import UrlRejected, check_url, webhook_url_policy

if TYPE_CHECKING:
    from infra.runtime import Runtime

GIVE_UP_AFTER = dt.timedelta(hours=24)
TIMEOUT_SECONDS = 10.0


def event_body(leg: Leg, event_id: str, entry: OutboxEntry) -> bytes:
    created = entry.created_at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data = {**view(leg), "status": entry.status.split(":")[0]}
    return json.dumps({"id": event_id, "type": entry.type, "created_at": created, "data": data},
                      separators=(",", ":")).encode()


def deliver(rt: Runtime, event_id: str, message_id: str) -> tuple[int, str]:
    """Returns (HTTP status for Cloud Tasks, outcome). 2xx ends the task; 503 asks for a retry (a failing
    customer endpoint is the one case where Cloud Tasks' own backoff is what we want)."""
    now = rt.now()
    leg = rt.legs.get(message_id)
    entry = leg.notifications.get(event_id) if leg else None
    if leg is None or entry is None:
        return 200, "unknown event"
    if not entry.state.undelivered:
        return 200, f"already {entry.state.value}"
    if now - entry.created_at > GIVE_UP_AFTER:
        give_up(rt, message_id, event_id, now)
        return 200, "gave up"
    try:
        vetted = check_url(leg.webhook_url or "", webhook_url_policy(rt.settings.media_trusted_origins), rt.resolver)
    except UrlRejected as exc:
        _mark(rt, message_id, event_id, now, EventState.GAVE_UP, f"webhook URL rejected: {exc.reason}")
        observe.metric("webhook.gave_up", reason="url rejected")
        return 200, "url rejected"

    body = event_body(leg, event_id, entry)
    secret = tenant_secret(rt.settings.webhook_signing_key, leg.tenant_id)
    headers = {"Content-Type": "application/json", "User-Agent": "mmsgate-webhooks/1",
               "X-Mmsgate-Event-Id": event_id,
               "X-Mmsgate-Signature": sign_customer_event(secret, body, int(now.timestamp()))}
    try:
        # To the addresses just vetted, never a fresh DNS answer; a redirect is not followed (not 2xx).
        status = rt.post_vetted(vetted, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
        ok, error = 200 <= status < 300, f"HTTP {status}"
    except Exception as exc:  # noqa: BLE001 - any transport failure is a failed attempt
        ok, error = False, type(exc).__name__
    _mark(rt, message_id, event_id, now, EventState.DELIVERED if ok else EventState.RETRYING, None if ok else error)
    return (200, "delivered") if ok else (503, f"attempt failed: {error}")


def give_up(rt: Runtime, message_id: str, event_id: str, now: dt.datetime) -> None:
    _mark(rt, message_id, event_id, now, EventState.GAVE_UP, "no 2xx within 24 hours")
    observe.metric("webhook.gave_up", reason="24 hours")


def _mark(rt: Runtime, message_id: str, event_id: str, now: dt.datetime, state: EventState,
          error: str | None) -> None:
    def decide(leg: Leg | None) -> Decision[None]:
        return Decision(after=mark_event(leg, event_id, now, state=state, error=error) if leg else None)

    change(rt, message_id, decide)
