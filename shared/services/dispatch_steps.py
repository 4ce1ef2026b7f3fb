"""The steps of sending one leg (or one conversation) to the provider: what a claim decides, what is recorded
from the provider's answer or a lookup, and how a step is answered to Cloud Tasks. The decisions are pure
functions of the leg and the clock; ``finish`` creates the follow-up task a step asks for.

``shared.services.dispatching`` (a leg) and ``shared.services.conversation`` (a group_mms) both run on these
steps; the why of each rule is in dispatching's docstring and docs/decisions.md, "Exactly once".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from shared.carriers.provider import Kind, Lookup, LookupState, Outcome
from shared.ports import Decision, DispatchTask
from shared.rules import ids, validity
from shared.rules.errors import ErrorCode, message_for
from shared.rules.frozen import frozen
from shared.rules.legs import note, transition, with_send_state
from shared.rules.records import Leg
from shared.rules.status import SendState, Status
from shared.rules.windows import next_opening
from shared.services import failover, observe

if TYPE_CHECKING:
    from shared.ports import Runtime
    from shared.services.carriers import Route

H = TypeVar("H")  # what a claim holds: a leg, or a conversation

# A claim outlives the provider call's own timeouts (connect 3 s + read 10 s) with room to spare
# (DISPATCH_CLAIM_LEASE_SECONDS; this is its default).
CLAIM_LEASE = dt.timedelta(seconds=30)
# After an ambiguous attempt, give the provider's report a moment to arrive before asking the provider.
RECONCILE_DELAY = dt.timedelta(seconds=3)
# How long a provider that cannot say whether it has the message is asked again before we give up (never
# less than a few horizons: absence cannot be proven before one has passed).
RECONCILE_DEADLINE = dt.timedelta(minutes=30)
DEADLINE_HORIZONS = 3
# DISPATCH_LOOKUP_HORIZON_SECONDS' default: how long detail records may lag (record_step's default too).
LOOKUP_HORIZON = dt.timedelta(minutes=10)
# Lookups look back this far before the first attempt (clock skew between us and the provider).
LOOKUP_SKEW = dt.timedelta(seconds=5)
MAX_RETRY_DELAY = 300.0
# A task that arrives this much before its leg's time (clocks differ) sends rather than going round again.
ON_TIME = dt.timedelta(seconds=1)


class Action(StrEnum):
    SEND = "send"  # we hold the claim: call the provider
    RECONCILE = "reconcile"  # we hold the claim of an ambiguous leg: ask the provider first
    FOLLOW_UP = "follow_up"  # not now: a named task comes back at ``at``
    AGAIN = "again"  # the provider provably does not have it: claim again now (a fresh send)
    RESCHEDULE = "reschedule"  # a scheduled leg arrived early (Cloud Tasks' 30-day cap): go round again
    DONE = "done"  # nothing to do
    CONVERSATION = "conversation"  # a conversation's recipient: the conversation is sent as one


@frozen
class Step:
    """What one decision asks of dispatch next, and what it answers Cloud Tasks if it stops here."""

    action: Action
    outcome: str
    status: int = 200
    at: dt.datetime | None = None
    reason: str = ""
    retry_after: int | None = None


@frozen
class Answer:
    """What dispatch answers Cloud Tasks: 2xx ends the task, anything else asks for a retry (and throttles
    the queue in real Cloud Tasks, so only for real overload)."""

    status: int
    outcome: str
    retry_after: int | None = None


def horizon_of(rt: Runtime) -> dt.timedelta:
    return dt.timedelta(seconds=rt.settings.dispatch_lookup_horizon_seconds)


def stoppable_by_opt_out(leg: Leg) -> bool:
    """Whether an opt-out stops this leg at its claim: it is not at the provider (not yet sent, or refused so far:
    a retryable leg provably is not there) and not a keyword's own reply (the STOP confirmation, a HELP answer
    goes to whoever texted it, opted out or not: the carriers require it; docs/decisions.md, Inbound messages).
    The claim reads the opt-out list only for such a leg."""
    return (not leg.conversation_id and not leg.provider_id and leg.in_reply_to is None
            and (leg.status in (Status.QUEUED, Status.SCHEDULED)
                 or leg.status is Status.SENDING and leg.send_state is SendState.RETRYABLE))


def claim_twice(rt: Runtime, attempt: Callable[[dt.datetime], tuple[Step, H]]) -> tuple[Step, H]:
    """One claim and provider call (``attempt``), and one more at once when a lookup proved the provider never
    got the message (``AGAIN``); a second ``AGAIN`` comes back in a second as a follow-up task."""
    step, held = attempt(rt.now())
    if step.action is Action.AGAIN:
        step, held = attempt(rt.now())
        if step.action is Action.AGAIN:
            step = Step(Action.FOLLOW_UP, step.outcome, at=rt.now() + dt.timedelta(seconds=1), reason="a")
    return step, held


def finish(rt: Runtime, step: Step, leg: Leg | None) -> Answer:
    if leg is not None and step.action in (Action.FOLLOW_UP, Action.RESCHEDULE):
        at = step.at if step.action is Action.FOLLOW_UP else leg.scheduled_at
        name = ids.task_name(leg.leg_key, leg.dispatch_generation)
        if step.action is Action.FOLLOW_UP:
            name += f"-{step.reason}{leg.attempts}-{int((at or rt.now()).timestamp())}"
        try:
            rt.queue.enqueue_dispatch(DispatchTask(leg.id, name, at, leg.batch_id))
        except Exception as exc:  # noqa: BLE001 - then this task is the leg's only carrier: keep it
            observe.log_error("follow-up task not created; Cloud Tasks retries this one", message_id=leg.id,
                              error=type(exc).__name__)
            return Answer(503, f"{step.outcome}; follow-up not created", 5)
    return Answer(step.status, step.outcome, step.retry_after)


def claim_step(leg: Leg | None, now: dt.datetime, lease: dt.timedelta = CLAIM_LEASE, *, opted_out: bool = False
               ) -> Decision[Step]:
    """Decide what one delivery of a leg's dispatch task does (pure). ``opted_out``: the recipient is on the
    tenant's opt-out list as read in the same step."""
    if leg is None:
        return Decision(result=Step(Action.DONE, "unknown message"))
    if leg.conversation_id:
        # One recipient of a group conversation: the conversation is claimed and sent as one group_mms
        # (shared/services/conversation.py), whichever of its recipients' tasks comes first.
        return Decision(result=Step(Action.CONVERSATION, "conversation"))
    if opted_out and stoppable_by_opt_out(leg):
        failed = _failed(leg, ErrorCode.RECIPIENT_OPTED_OUT, "recipient opted out before it was sent", now,
                         message_for(ErrorCode.RECIPIENT_OPTED_OUT), None)
        return Decision(after=failed, refund_micros=leg.price_micros if failed else 0,
                        result=Step(Action.DONE, "recipient opted out"))
    if leg.status in (Status.QUEUED, Status.SCHEDULED):
        if validity.past(leg, now):
            return _expire(leg, now, "validity ended before it was sent")
        if leg.scheduled_at and leg.scheduled_at > now + ON_TIME:
            moved = leg.with_(dispatch_generation=leg.dispatch_generation + 1, updated_at=now)
            return Decision(after=moved, result=Step(Action.RESCHEDULE, "rescheduled"))
        if leg.delivery_window and (opening := next_opening(leg.delivery_window, now)) > now + ON_TIME:
            if leg.valid_until and opening >= leg.valid_until:
                return _expire(leg, now, "its delivery window does not open again before its validity ends")
            # Waits for the opening (a queued leg stays queued: a status never goes back to scheduled).
            waiting = note(leg, cause="outside its delivery window", now=now, scheduled_at=opening,
                           dispatch_generation=leg.dispatch_generation + 1)
            return Decision(after=waiting, result=Step(Action.RESCHEDULE, "outside its delivery window"))
        claimed = transition(leg, Status.SENDING, cause="dispatch claimed", now=now)
        assert claimed is not None  # queued and scheduled may always enter sending
        return Decision(after=_take(claimed, now), result=Step(Action.SEND, "sent"))
    if leg.status is Status.PENDING:
        # Its accept has not committed; the accept creates the leg's task once it has.
        return Decision(result=Step(Action.DONE, "not accepted yet"))
    if leg.status is not Status.SENDING:
        return Decision(result=Step(Action.DONE, f"already {leg.status.value}"))
    if leg.provider_id:
        # A report taught us the id while the send's own answer was lost: the provider has it.
        return Decision(after=_provider_has_it(leg, leg.provider_id, now), result=Step(Action.DONE, "provider has it"))
    if leg.send_state in (SendState.ACCEPTED, SendState.FAILED):
        return Decision(result=Step(Action.DONE, "provider has it"))
    if leg.send_state is SendState.RETRYABLE:
        if validity.past(leg, now):  # the provider refused every attempt so far: it does not have it
            return _expire(leg, now, "validity ended before the provider took it")
        return Decision(after=_take(leg, now), result=Step(Action.SEND, "sent"))
    assert leg.claimed_at is not None
    if leg.send_state is SendState.IN_FLIGHT and leg.claimed_at + lease > now:
        return Decision(result=Step(Action.FOLLOW_UP, "another delivery holds the claim",
                                    at=leg.claimed_at + lease, reason="c"))
    # Ambiguous, or a claim whose holder died mid-call: the provider may have it. Ask before sending.
    since = leg.ambiguous_since or leg.claimed_at
    reconciling = with_send_state(leg, SendState.AMBIGUOUS, now=now, ambiguous_since=since)
    # A lookup is not a send: ``attempts`` counts only calls that may have given the provider a message.
    reconciling = with_send_state(reconciling, SendState.IN_FLIGHT, now=now, claimed_at=now)
    return Decision(after=reconciling, result=Step(Action.RECONCILE, "reconciled"))


def _expire(leg: Leg, now: dt.datetime, cause: str) -> Decision[Step]:
    moved = validity.expired(leg, now, cause)
    assert moved is not None  # callers pass only legs the provider does not have
    return Decision(after=moved, refund_micros=leg.price_micros, result=Step(Action.DONE, "expired"))


def _provider_has_it(leg: Leg, provider_id: str, now: dt.datetime) -> Leg | None:
    """The leg once we know the provider has it: ``sent`` (unless a report already moved it further),
    with the provider's id and send state ``accepted``; None when there is nothing left to record."""
    sent = transition(leg, Status.SENT, cause="provider accepted", now=now, sent_at=now, provider_id=provider_id)
    after = sent or (leg.with_(provider_id=provider_id, updated_at=now) if not leg.provider_id else leg)
    if after.send_state not in (SendState.ACCEPTED, SendState.FAILED):
        after = with_send_state(after, SendState.ACCEPTED, now=now)
    return after if after != leg else None


def _take(leg: Leg, now: dt.datetime) -> Leg:
    """The leg claimed for a send: ``last_attempt_at`` (committed before the call) is when the provider may
    first have got this attempt, the time a lookup's horizon counts from."""
    return with_send_state(leg, SendState.IN_FLIGHT, now=now, claimed_at=now, attempts=leg.attempts + 1,
                           first_claimed_at=leg.first_claimed_at or now, last_attempt_at=now)


def _failed(leg: Leg, code: ErrorCode, cause: str, now: dt.datetime, detail: str, provider_code: str | None
            ) -> Leg | None:
    failed = transition(leg, Status.FAILED, cause=cause, now=now, error_code=code.value,
                        error_message=detail or message_for(code), provider_error_code=provider_code)
    return with_send_state(failed, SendState.FAILED, now=now) if failed else None


def _ended(leg: Leg, failed: Leg | None, outcome: str, opt_out: str | None = None) -> Decision[Step]:
    refund = leg.price_micros if failed else 0
    # A carrier refusal of an MMS with an SMS failover links the failover in this same decision.
    return Decision(after=failover.arm(failed), refund_micros=refund, opt_out=opt_out if failed else None,
                    result=Step(Action.DONE, outcome))


def _fail_over(leg: Leg, route: Route, now: dt.datetime, cause: str, detail: str) -> Decision[Step]:
    """The leg moved to another carrier and its sender there, free to be claimed and sent again at once (its
    first carrier provably does not have it). Once per leg: ``carrier_failed_over_from`` remembers."""
    moved = note(leg, cause=f"{cause}; failing over from {leg.carrier} to {route.carrier}", now=now,
                 carrier=route.carrier, from_=route.sender, carrier_failed_over_from=leg.carrier)
    observe.metric("carrier.failover", source=leg.carrier, target=route.carrier, message_id=leg.id)
    return Decision(after=with_send_state(moved, SendState.RETRYABLE, now=now, last_error=detail),
                    result=Step(Action.AGAIN, f"failing over to {route.carrier}"))


def record_step(leg: Leg | None, outcome: Outcome | Lookup, claimed_at: dt.datetime | None, now: dt.datetime,
                max_attempts: int, horizon: dt.timedelta = LOOKUP_HORIZON, alternative: Route | None = None
                ) -> Decision[Step]:
    """Record what the provider said (or what the lookup found) on the leg we claimed (pure). ``horizon``:
    how long after an attempt a lookup must be made for "absent" to prove the provider never got it.
    ``alternative``: the carrier and sender a transient or permanent refusal (or proven absence) moves the
    leg to, instead of retrying or failing it on this carrier (shared/services/carriers.py)."""
    if leg is None:
        return Decision(result=Step(Action.DONE, "unknown message"))
    provider_id = outcome.provider_id if (
        isinstance(outcome, Lookup) and outcome.state is LookupState.FOUND
        or isinstance(outcome, Outcome) and outcome.kind is Kind.ACCEPTED) else None
    if provider_id:
        settled = _provider_has_it(leg, leg.provider_id or provider_id, now)
        return Decision(after=settled, result=Step(Action.DONE, "sent" if settled else "provider has it"))
    if leg.status is not Status.SENDING or leg.send_state is not SendState.IN_FLIGHT or leg.claimed_at != claimed_at:
        # Someone else holds the leg now (our claim ran out, or a report settled it): theirs to record.
        return Decision(result=Step(Action.DONE, "claim lost; not recorded"))

    if isinstance(outcome, Lookup):
        return _looked_up(leg, outcome, claimed_at, now, max_attempts, horizon, alternative)

    if outcome.kind is Kind.OPT_OUT:
        failed = _failed(leg, ErrorCode.RECIPIENT_OPTED_OUT, f"provider {outcome.code}", now, outcome.detail,
                         outcome.code)
        return _ended(leg, failed, "recipient opted out", opt_out=leg.to)
    if outcome.kind in (Kind.PERMANENT, Kind.TRANSIENT) and alternative is not None:
        return _fail_over(leg, alternative, now, f"provider {outcome.http_status} {outcome.code}", outcome.detail)
    if outcome.kind is Kind.PERMANENT:
        failed = _failed(leg, ErrorCode.PROVIDER_REJECTED, f"provider {outcome.http_status} {outcome.code}", now,
                         outcome.detail, outcome.code)
        return _ended(leg, failed, "provider rejected")
    if outcome.kind is Kind.TRANSIENT:
        if leg.attempts >= max_attempts:
            failed = _failed(leg, ErrorCode.PROVIDER_UNAVAILABLE, "retries exhausted", now, outcome.detail,
                             outcome.code)
            return _ended(leg, failed, "gave up")
        retryable = with_send_state(leg, SendState.RETRYABLE, now=now, last_error=outcome.detail)
        if outcome.http_status == 429:
            # The provider's own rate limit is real overload: let Cloud Tasks slow the whole queue.
            wait = int(outcome.retry_after or 1) or 1
            return Decision(after=retryable, result=Step(Action.DONE, "provider rate limited", status=429,
                                                         retry_after=wait))
        return Decision(after=retryable, result=Step(
            Action.FOLLOW_UP, "provider unavailable, retrying", at=now + _backoff(leg.attempts, outcome.retry_after),
            reason="t"))
    # Ambiguous: the provider may have it. Never resend before evidence says it does not.
    observe.metric("dispatch.ambiguous", message_id=leg.id)
    if leg.attempts >= max_attempts:
        failed = _failed(leg, ErrorCode.PROVIDER_OUTCOME_UNKNOWN, "no answer on the last attempt; not resent", now,
                         message_for(ErrorCode.PROVIDER_OUTCOME_UNKNOWN), None)
        return _ended(leg, failed, "outcome unknown; gave up (at most once)")
    waiting = with_send_state(leg, SendState.AMBIGUOUS, now=now, ambiguous_since=leg.ambiguous_since or claimed_at,
                              last_error=outcome.detail)
    return Decision(after=waiting, result=Step(Action.FOLLOW_UP, "no answer from provider; reconciling",
                                               at=now + RECONCILE_DELAY, reason="r"))


def _looked_up(leg: Leg, lookup: Lookup, claimed_at: dt.datetime | None, now: dt.datetime, max_attempts: int,
               horizon: dt.timedelta, alternative: Route | None = None) -> Decision[Step]:
    """A lookup that did not find the message: absent past the horizon frees the leg for a fresh send; absent
    before it, or no answer, waits; no answer past the deadline ends it unknown (at most once)."""
    since = leg.ambiguous_since or claimed_at or now
    # Legs claimed before last_attempt_at existed: the first ambiguous attempt is the best bound we have.
    attempted = leg.last_attempt_at or since
    settles_at = attempted + horizon
    if lookup.state is LookupState.ABSENT and now >= settles_at:
        if alternative is not None:
            return _fail_over(leg, alternative, now, f"absent {horizon.total_seconds():g} s after the attempt",
                              lookup.detail)
        if leg.attempts >= max_attempts:
            failed = _failed(leg, ErrorCode.PROVIDER_UNAVAILABLE, "absent after every attempt; retries exhausted",
                             now, lookup.detail, None)
            return _ended(leg, failed, "gave up")
        absent = with_send_state(leg, SendState.RETRYABLE, now=now,
                                 last_error=f"provider does not have it {horizon.total_seconds():g} s after the "
                                            f"attempt: {lookup.detail}")
        observe.log_warning("provider does not have an ambiguous send past the horizon: sending again",
                            message_id=leg.id)
        return Decision(after=absent, result=Step(Action.AGAIN, "provider does not have it; sending again"))
    if now - since > max(RECONCILE_DEADLINE, DEADLINE_HORIZONS * horizon):
        failed = _failed(leg, ErrorCode.PROVIDER_OUTCOME_UNKNOWN, "provider could not confirm; not resent",
                         now, message_for(ErrorCode.PROVIDER_OUTCOME_UNKNOWN), None)
        return _ended(leg, failed, "outcome unknown; gave up (at most once)")
    waiting = with_send_state(leg, SendState.AMBIGUOUS, now=now, ambiguous_since=since, last_error=lookup.detail)
    # Lookups space out as the wait grows (10 s up to 5 min), so a long horizon costs a handful of them.
    pause = dt.timedelta(seconds=min(MAX_RETRY_DELAY, max(10.0, (now - since).total_seconds())))
    if lookup.state is LookupState.ABSENT:
        # Not yet evidence: the detail record may still be on its way. Ask again by the horizon at the latest.
        return Decision(after=waiting, result=Step(Action.FOLLOW_UP, "not found yet; asking again",
                                                   at=min(settles_at + ON_TIME, now + pause), reason="h"))
    return Decision(after=waiting, result=Step(Action.FOLLOW_UP, "provider lookup failed; asking again",
                                               at=now + pause, reason="r"))


def _backoff(attempts: int, retry_after: float | None, floor: float = 1.0) -> dt.timedelta:
    seconds = retry_after if retry_after else min(MAX_RETRY_DELAY, max(floor, 2.0 ** max(0, attempts - 1)))
    return dt.timedelta(seconds=min(MAX_RETRY_DELAY, seconds))
