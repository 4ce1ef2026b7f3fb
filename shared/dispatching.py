"""Sending one leg through the provider, exactly once, whatever Cloud Tasks redelivers.

A leg is claimed in a transaction before the provider is called. While a claim is live, another
delivery of the same task backs off; once the provider has the message, every later delivery is a
no-op. An attempt with no answer (the request may have reached the provider) is *ambiguous*: we wait,
within a bounded window, for the delivery report that names the leg, and send again only if none came.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared import ids
from shared.errors import ErrorCode, message_for
from shared.legs import Change, new_events, transition
from shared.provider import Kind, OutboundMessage, Outcome
from shared.status import Status

if TYPE_CHECKING:
    from infra.runtime import Runtime

# A claim outlives the provider call's own timeouts (connect 3 s + read 10 s) with room to spare.
CLAIM_LEASE = dt.timedelta(seconds=30)
# How long an ambiguous attempt waits for the provider's report before we conclude it was lost.
RECONCILE_WINDOW = dt.timedelta(seconds=60)


@dataclass
class Answer:
    """What dispatch answers Cloud Tasks: 2xx ends the task, anything else asks for a retry."""

    status: int
    outcome: str
    retry_after: int | None = None
    updates: dict | None = field(default=None, repr=False)  # what the leg got: its new customer events


def leg_webhook_url(base: str, message_id: str) -> str:
    """The provider reports to a URL that names the leg, so a report can be matched even when the
    send's answer was lost (it comes back inside the signed body, as ``payload.webhook_url``)."""
    return f"{base}?{urllib.parse.urlencode({'leg': message_id})}"


def dispatch(rt: Runtime, message_id: str, retry_count: int) -> Answer:
    now = rt.now()
    last_attempt = retry_count + 1 >= rt.settings.dispatch_max_attempts
    claim = rt.store.mutate_leg(message_id, lambda leg: _claim(leg, now))
    if claim.action != "send":
        if claim.action == "reschedule":
            rt.queue.enqueue_dispatch(message_id, ids.task_name(claim.leg["leg_key"], claim.generation),
                                      claim.leg["scheduled_at"])
        return claim.answer

    leg = claim.leg
    try:
        # Our stored copies, signed now (legs accepted before media was stored carry only media_urls).
        media_urls = rt.media.signed_urls(leg["media"]) if leg.get("media") else leg.get("media_urls") or []
    except Exception as exc:  # noqa: BLE001 - signing is local or one IAM call: a retry can fix it
        outcome = Outcome(Kind.TRANSIENT, detail=f"media URLs not signed: {type(exc).__name__}")
    else:
        outcome = rt.provider.send(OutboundMessage(
            message_id=message_id, to=leg["to"], from_=leg["from"], text=leg.get("body"),
            subject=leg.get("subject"), media_urls=tuple(media_urls),
            webhook_url=leg_webhook_url(rt.settings.telnyx_webhook_url, message_id),
        ))
    before: dict = {}

    def record(current: dict | None) -> Change:
        before.update(current or {})
        return _record(current, outcome, now, last_attempt)

    answer: Answer = rt.store.mutate_leg(message_id, record)
    for event_id in new_events(before, answer.updates):
        rt.queue.enqueue_notify(event_id, message_id)
    return answer


@dataclass
class Claim:
    action: str  # send | reschedule | done
    answer: Answer
    leg: dict | None = None
    generation: int = 0


def _claim(leg: dict | None, now: dt.datetime) -> Change:
    if leg is None:
        return Change(result=Claim("done", Answer(200, "unknown message")))
    status, state = leg["status"], leg.get("send_state")
    take = {"send_state": "in_flight", "claimed_at": now, "attempts": leg.get("attempts", 0) + 1,
            "updated_at": now}

    if status in (Status.QUEUED.value, Status.SCHEDULED.value):
        scheduled_at = leg.get("scheduled_at")
        if scheduled_at and scheduled_at > now + dt.timedelta(seconds=1):
            # Cloud Tasks schedules at most 30 days ahead: a longer wait arrives early and goes round again.
            generation = leg.get("dispatch_generation", 0) + 1
            return Change(updates={"dispatch_generation": generation, "updated_at": now},
                          result=Claim("reschedule", Answer(200, "rescheduled"), leg, generation))
        updates = transition(leg, Status.SENDING, cause="dispatch claimed", now=now, fields=take)
        return Change(updates=updates, result=Claim("send", Answer(200, "sent"), {**leg, **updates}))

    if status == Status.PENDING.value:
        return Change(result=Claim("done", Answer(503, "not accepted yet", 1)))
    if status != Status.SENDING.value:
        return Change(result=Claim("done", Answer(200, f"already {status}")))

    # status == sending
    if leg.get("provider_id"):
        return Change(result=Claim("done", Answer(200, "provider has it")))
    if state == "retryable":
        return Change(updates=take, result=Claim("send", Answer(200, "sent"), {**leg, **take}))
    if state == "in_flight" and leg["claimed_at"] + CLAIM_LEASE > now:
        return Change(result=Claim("done", Answer(503, "another delivery holds the claim", 5)))
    # ambiguous, or a claim whose holder died mid-call: wait for the report, then resend.
    since = leg.get("ambiguous_since") or leg["claimed_at"]
    if since + RECONCILE_WINDOW > now:
        updates = None if state == "ambiguous" else {"send_state": "ambiguous", "ambiguous_since": since}
        return Change(updates=updates, result=Claim("done", Answer(503, "awaiting provider report", 2)))
    return Change(updates={**take, "ambiguous_since": None},
                  result=Claim("send", Answer(200, "sent"), {**leg, **take}))


def _failed(leg: dict, code: ErrorCode, cause: str, now: dt.datetime, outcome: Outcome) -> dict | None:
    return transition(leg, Status.FAILED, cause=cause, now=now, fields={
        "error_code": code.value,
        "error_message": outcome.detail or message_for(code),
        "provider_error_code": outcome.code,
        "send_state": "failed",
    })


def _record(leg: dict | None, outcome: Outcome, now: dt.datetime, last_attempt: bool) -> Change:
    if leg is None:
        return Change(result=Answer(200, "unknown message"))
    refund = leg.get("price_micros", 0)
    if outcome.kind is Kind.ACCEPTED:
        fields = {"provider_id": outcome.provider_id, "send_state": "accepted", "sent_at": now}
        # A delivery report may already have moved the leg past sent; then only the id is recorded.
        updates = transition(leg, Status.SENT, cause="provider accepted", now=now, fields=fields)
        updates = updates or ({"provider_id": outcome.provider_id} if not leg.get("provider_id") else None)
        return Change(updates=updates, result=_with(Answer(200, "sent"), updates))
    if outcome.kind is Kind.OPT_OUT:
        updates = _failed(leg, ErrorCode.RECIPIENT_OPTED_OUT, f"provider {outcome.code}", now, outcome)
        return Change(updates=updates, refund_micros=refund if updates else 0, opt_out=leg["to"],
                      result=_with(Answer(200, "recipient opted out"), updates))
    if outcome.kind is Kind.PERMANENT:
        updates = _failed(leg, ErrorCode.PROVIDER_REJECTED, f"provider {outcome.http_status} {outcome.code}",
                          now, outcome)
        return Change(updates=updates, refund_micros=refund if updates else 0,
                      result=_with(Answer(200, "provider rejected"), updates))
    if outcome.kind is Kind.TRANSIENT:
        if last_attempt:
            updates = _failed(leg, ErrorCode.PROVIDER_UNAVAILABLE, "retries exhausted", now, outcome)
            return Change(updates=updates, refund_micros=refund if updates else 0,
                          result=_with(Answer(200, "gave up"), updates))
        retry_after = int(outcome.retry_after) if outcome.retry_after else None
        status = 429 if outcome.http_status == 429 else 503
        return Change(updates={"send_state": "retryable", "last_error": outcome.detail, "updated_at": now},
                      result=Answer(status, "provider unavailable, retrying", retry_after or 1))
    # Ambiguous: the provider may have it. Never resend before the reconcile window has passed.
    return Change(updates={"send_state": "ambiguous", "ambiguous_since": now, "last_error": outcome.detail,
                           "updated_at": now},
                  result=Answer(503, "no answer from provider; reconciling", 2))


def _with(answer: Answer, updates: dict | None) -> Answer:
    answer.updates = updates
    return answer
