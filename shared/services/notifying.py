"""Customer webhooks: one signed event per leg and status, retried for up to 24 hours.

The event id is fixed when the event enters the leg's outbox, so every attempt carries the same id
and receivers can deduplicate. The target URL is checked against SSRF on every attempt, since what a
host resolves to can change between attempts.

A customer endpoint that fails is retried by a named follow-up task with its own backoff, and the task
that found it failing answers 2xx: a 503 would make real Cloud Tasks slow the notify queue down for
every tenant because one tenant's endpoint is down.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

from shared.carriers.signatures import signing_secrets, webhook_headers
from shared.ports import Decision
from shared.rules.legs import mark_event, view
from shared.rules.records import EventState, Leg, OutboxEntry, Tenant
from shared.rules.ssrf import UrlRejected, check_url, webhook_url_policy
from shared.services import leg_changes, observe
from shared.services.leg_changes import change

if TYPE_CHECKING:
    from shared.ports import Runtime

GIVE_UP_AFTER = dt.timedelta(hours=24)
TIMEOUT_SECONDS = 10.0
MAX_RETRY_DELAY = dt.timedelta(hours=1)
# Telnyx tries a webhook up to 3 times per URL before its failover URL (telnyx.md §2.7): so do we.
FAILOVER_AFTER_ATTEMPTS = 3


def retry_delay(attempts: int) -> dt.timedelta:
    """1 s, 2 s, 4 s ... capped at an hour: about 30 attempts in the 24 hours."""
    return min(MAX_RETRY_DELAY, dt.timedelta(seconds=2 ** max(0, attempts - 1)))


def target_urls(leg: Leg, entry: OutboxEntry) -> list[str]:
    """Where the next attempt of an event goes, in order of preference (the first that passes the SSRF check
    is used). Like Telnyx: the primary URL for the first ``FAILOVER_AFTER_ATTEMPTS`` attempts, then the
    failover URL (the send's, else the tenant's) for the rest of the retry schedule; a primary URL that no
    longer passes the check goes straight to the failover URL."""
    if entry.url:  # an event with a URL of its own (link.clicked to the send's tracking_url): that URL only
        return [entry.url]
    primary, failover = leg.webhook_url or "", leg.webhook_failover_url
    if failover and failover != primary:
        return [failover] if entry.attempts >= FAILOVER_AFTER_ATTEMPTS else [primary, failover]
    return [primary]


def event_body(leg: Leg, event_id: str, entry: OutboxEntry) -> bytes:
    created = entry.created_at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if entry.data is not None:  # an event with data of its own (link.clicked), fixed when it entered the outbox
        return json.dumps({"id": event_id, "type": entry.type, "created_at": created, "data": entry.data},
                          separators=(",", ":")).encode()
    # The delivery bookkeeping is the read's, not the event's: it changes with every attempt.
    data = {**{k: v for k, v in view(leg).items() if k != "notifications"}, "status": entry.status.split(":")[0]}
    return json.dumps({"id": event_id, "type": entry.type, "created_at": created, "data": data},
                      separators=(",", ":")).encode()


def deliver(rt: Runtime, event_id: str, message_id: str) -> tuple[int, str]:
    """Returns (HTTP status for Cloud Tasks, outcome). 2xx ends the task; 503 only when the retry could not
    be scheduled (then this task is the event's only carrier)."""
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
    vetted, rejected, via = None, "", ""
    for url in target_urls(leg, entry):
        try:
            vetted = check_url(url, webhook_url_policy(rt.settings.media_trusted_origins), rt.resolver)
            via = " (failover URL)" if url not in (leg.webhook_url, entry.url) else ""
            break
        except UrlRejected as exc:
            rejected = exc.reason
    if vetted is None:
        _mark(rt, message_id, event_id, now, EventState.GAVE_UP, f"webhook URL rejected: {rejected}")
        observe.metric("webhook.gave_up", reason="url rejected")
        return 200, "url rejected"

    if leg.direction == "inbound":  # message.received (signed URLs of our media copies), recipient.opted_*
        from shared.services.received import event_body as inbound_body  # noqa: PLC0415

        body = inbound_body(rt, leg, event_id, entry)
    else:
        body = event_body(leg, event_id, entry)
    # Standard Webhooks headers; X-Mmsgate-Event-Id (= webhook-id) stays for one release (CHANGELOG.md).
    tenant = rt.accounts.get_tenant(leg.tenant_id, balance=False) or Tenant(id=leg.tenant_id)
    secrets = signing_secrets(rt.settings.webhook_signing_key, tenant, now)
    headers = {"Content-Type": "application/json", "User-Agent": "mmsgate-webhooks/1",
               "X-Mmsgate-Event-Id": event_id, **webhook_headers(secrets, event_id, int(now.timestamp()), body)}
    try:
        # To the addresses just vetted, never a fresh DNS answer; a redirect is not followed (not 2xx).
        status = rt.post_vetted(vetted, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
        ok, error = 200 <= status < 300, f"HTTP {status}{via}"
    except Exception as exc:  # noqa: BLE001 - any transport failure is a failed attempt
        ok, error = False, f"{type(exc).__name__}{via}"
    marked = _mark(rt, message_id, event_id, now, EventState.DELIVERED if ok else EventState.RETRYING,
                   None if ok else error)
    if ok:
        return 200, "delivered"
    attempts = marked.notifications[event_id].attempts if marked and event_id in marked.notifications else 1
    at = now + retry_delay(attempts)
    try:
        leg_changes.resend(rt, message_id, event_id, name=f"{event_id}-a{attempts}", at=at)
    except Exception:  # noqa: BLE001 - keep this task alive instead
        return 503, f"attempt failed: {error}; retry not scheduled"
    return 200, f"attempt failed: {error}; retrying"


def give_up(rt: Runtime, message_id: str, event_id: str, now: dt.datetime) -> None:
    _mark(rt, message_id, event_id, now, EventState.GAVE_UP, "no 2xx within 24 hours")
    observe.metric("webhook.gave_up", reason="24 hours")


def _mark(rt: Runtime, message_id: str, event_id: str, now: dt.datetime, state: EventState,
          error: str | None) -> Leg | None:
    def decide(leg: Leg | None) -> Decision[None]:
        return Decision(after=mark_event(leg, event_id, now, state=state, error=error) if leg else None)

    return change(rt, message_id, decide).after
