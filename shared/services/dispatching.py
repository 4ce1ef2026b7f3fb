"""Sending one leg through the provider, exactly once, whatever Cloud Tasks redelivers or kills.

A leg is claimed (``SendState.IN_FLIGHT``, with a lease) in one atomic write before the provider is
called; while the claim is live another delivery of the task changes nothing. The same write reads the
recipient's opt-out entry: a STOP stored before it stops the leg (``failed``/``RECIPIENT_OPTED_OUT``,
refunded), however long ago the leg was accepted.

Telnyx documents no idempotency for message sends (docs/telnyx.md): a second POST is a second message.
So an attempt with no answer is *ambiguous* and is resolved only by evidence (docs/decisions.md,
"Exactly once"):

- the leg's own report (its webhook URL names it): the report path records the provider's id, and the
  next claim sees it;
- ``Provider.find``: a detail-record search for the leg's route, each candidate retrieved by id and
  matched on the webhook URL that names the leg. Found: recorded as sent. Absent counts only once the
  search is made ``DISPATCH_LOOKUP_HORIZON_SECONDS`` after the attempt (detail records appear only after
  the message is sent, with a lag Telnyx does not document); before that, dispatch asks again later;
- absent past the horizon: the leg becomes ``RETRYABLE`` and is claimed and sent again;
- the provider cannot tell (lookups fail) past the reconcile deadline: ``failed`` /
  ``PROVIDER_OUTCOME_UNKNOWN``, refunded, never resent (at most once). A report that later proves the
  provider had it moves the leg on and charges it once (shared/rules/status.py, ``can_revive``).

Routine waits (a live claim, a reconcile, a retry after a provider hiccup) answer Cloud Tasks 2xx and
create a named follow-up task: a 429/503 would make real Cloud Tasks throttle the whole queue. Only real
overload answers 429 (the provider's own rate limit) or 503 (our storage contended).
"""

from __future__ import annotations

import datetime as dt
import functools
import urllib.parse
from typing import TYPE_CHECKING

from shared.carriers.provider import Kind, Lookup, LookupState, OutboundMessage, Outcome, idempotency_key_for
from shared.ports import media_docs
from shared.rules.records import Leg
from shared.rules.status import Status
from shared.services import carriers, failover, observe
from shared.services.dispatch_steps import (
    LOOKUP_SKEW,
    Action,
    Answer,
    Step,
    claim_step,
    claim_twice,
    finish,
    horizon_of,
    record_step,
    stoppable_by_opt_out,
)
from shared.services.leg_changes import change, change_unless_opted_out

if TYPE_CHECKING:
    from shared.ports import Runtime

def leg_webhook_url(base: str, message_id: str) -> str:
    """The provider reports to a URL that names the leg, so a report (and a lookup) can be matched even
    when the send's answer was lost (it comes back inside the signed body, as ``payload.webhook_url``)."""
    return f"{base}?{urllib.parse.urlencode({'leg': message_id})}"


def dispatch(rt: Runtime, message_id: str, batch_id: str | None = None) -> Answer:
    now = rt.now()
    if batch_id is not None and (canceled := _batch_canceled(rt, message_id, batch_id, now)) is not None:
        return canceled
    step, leg = claim_twice(rt, lambda at: _claim_and_call(rt, message_id, at))
    if step.action is Action.CONVERSATION and leg is not None:
        from shared.services import conversation  # noqa: PLC0415 - it builds on this module

        return conversation.dispatch(rt, leg)
    return finish(rt, step, leg)


def _claim_and_call(rt: Runtime, message_id: str, now: dt.datetime) -> tuple[Step, Leg | None]:
    """One claim and, if it is ours, one provider call (a send or a lookup) recorded on the leg."""
    lease = dt.timedelta(seconds=rt.settings.dispatch_claim_lease_seconds)
    claim = change_unless_opted_out(rt, message_id,
                                    lambda leg, opted_out: claim_step(leg, now, lease, opted_out=opted_out),
                                    applies=stoppable_by_opt_out)
    step, leg = claim.result, claim.current
    assert step is not None
    if step.action not in (Action.SEND, Action.RECONCILE):
        return step, leg
    assert leg is not None
    claimed_at = leg.claimed_at
    message = _outbound(rt, leg)
    alternative = None
    if isinstance(message, Outcome):
        outcome: Outcome | Lookup = message  # media URLs could not be signed: nothing was sent
    elif step.action is Action.RECONCILE:
        outcome = rt.carrier(leg.carrier).find(message, (leg.ambiguous_since or now) - LOOKUP_SKEW)
        observe.metric("dispatch.reconciled", lookup=outcome.state.value, carrier=leg.carrier)
        if outcome.state is LookupState.ABSENT:
            alternative = carriers.alternative(rt, leg, Kind.TRANSIENT.value)
    else:
        outcome = rt.carrier(leg.carrier).send(message)
        _count(rt, leg.carrier, outcome)
        if outcome.kind in (Kind.TRANSIENT, Kind.PERMANENT):
            alternative = carriers.alternative(rt, leg, outcome.kind.value)
    horizon = horizon_of(rt)
    recorded = change(rt, message_id,
                      lambda current: record_step(current, outcome, claimed_at, rt.now(),
                                                  rt.settings.dispatch_max_attempts, horizon, alternative))
    step, leg = recorded.result, recorded.current
    assert step is not None
    if recorded.changed and leg is not None and leg.status is Status.FAILED and leg.provider_error_code:
        observe.metric("provider.rejected", code=leg.provider_error_code, carrier=leg.carrier)
    if recorded.changed:
        failover.launch_if_due(rt, leg)
    return step, leg


def _count(rt: Runtime, carrier: str, outcome: Outcome) -> None:
    """A send the carrier took counts toward its share; one it failed for its own reasons (not its rate limit,
    not a refusal of this message) counts toward an error burst (shared/services/carriers.py)."""
    if outcome.kind is Kind.ACCEPTED:
        carriers.count(rt, carrier, "given", rt.now())
    elif outcome.kind is Kind.AMBIGUOUS or outcome.kind is Kind.TRANSIENT and outcome.http_status != 429:
        carriers.count(rt, carrier, "errors", rt.now())


def _batch_canceled(rt: Runtime, message_id: str, batch_id: str, now: dt.datetime) -> Answer | None:
    """A leg of a canceled batch is canceled here rather than claimed, whenever its batch's cancel tasks get to
    it (shared/services/batch_sending.py): a cancel stops the sending at once. None: go on as usual (the batch is not
    canceled, or the leg is past canceling: dispatch then finishes what it started)."""
    from shared.rules.records import BatchStatus  # noqa: PLC0415
    from shared.services.canceling import cancel_step  # noqa: PLC0415 - only batch legs need it

    batch = rt.batches.get(batch_id)
    if batch is None or batch.status is not BatchStatus.CANCELED:
        return None
    mutation = change(rt, message_id, functools.partial(cancel_step, tenant_id=batch.tenant_id, now=now))
    if mutation.result is not None and mutation.result.canceled:
        return Answer(200, "batch canceled")
    return None


def _outbound(rt: Runtime, leg: Leg) -> OutboundMessage | Outcome:
    try:
        # Our stored copies, signed as of the first claim: every attempt's body is byte-identical.
        media_urls = (rt.media.signed_urls(media_docs(leg.media), leg.first_claimed_at) if leg.media
                      else list(leg.media_urls))
    except Exception as exc:  # noqa: BLE001 - signing is local or one IAM call: a retry can fix it
        return Outcome(Kind.TRANSIENT, detail=f"media URLs not signed: {type(exc).__name__}")
    return OutboundMessage(
        message_id=leg.id, to=leg.to, from_=leg.from_, text=leg.body, subject=leg.subject,
        media_urls=tuple(media_urls), webhook_url=leg_webhook_url(
            rt.settings.twilio_webhook_url if leg.carrier == "twilio" else rt.settings.telnyx_webhook_url, leg.id),
        idempotency_key=idempotency_key_for(leg.id),
    )


