"""Dispatch decisions (shared/services/dispatching.py), pure: what one delivery of a leg's task does, and what is
recorded from the provider's answer. Expected values come from the module's rules:

- a leg is claimed (sending, in_flight, a lease) before the provider is called; while the claim is live
  another delivery changes nothing and comes back when the lease ends;
- routine waits answer 2xx with a follow-up; only the provider's own 429 answers 429;
- an attempt with no answer is ambiguous: never sent again before the provider is asked;
- a provider that cannot tell is asked again, and past RECONCILE_DEADLINE the leg fails
  PROVIDER_OUTCOME_UNKNOWN (at most once);
- every failure after the accept gives the leg's price back.
"""

from __future__ import annotations

import datetime as dt

import pytest

from shared.carriers.provider import Kind, Lookup, LookupState, Outcome
from shared.rules.ids import notify_event_id
from shared.rules.status import SendState, Status
from shared.services.dispatch_steps import (
    CLAIM_LEASE,
    Action,
    claim_step,
    record_step,
)
from tests.unit.legs import HOOK, T0, at, claimed, leg

S, SS = Status, SendState
MAX = 5  # the queue's max attempts, as settings would give it
PRICE = 20_000
# Written down, not imported: the default lease (README, DISPATCH_CLAIM_LEASE_SECONDS = 30), and the moment an
# ambiguous attempt's own report gets before dispatch asks the provider (3 s).
LEASE = dt.timedelta(seconds=30)
REPORT_GRACE = dt.timedelta(seconds=3)
GIVE_UP = dt.timedelta(minutes=30)  # docs/decisions.md: lookups that cannot tell end past max(30 min, 3 x 600 s)


def test_the_lease_outlives_the_provider_call():
    # connect 3 s + read 10 s (infra/telnyx.py): a live call never loses its claim.
    assert CLAIM_LEASE == LEASE > dt.timedelta(seconds=13)


# -- claim_step -------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [S.QUEUED, S.SCHEDULED])
def test_a_queued_or_due_leg_is_claimed_and_sent(status):
    before = leg(status, scheduled_at=at(-60) if status is S.SCHEDULED else None)
    decision = claim_step(before, at(10))
    step, after = decision.result, decision.after
    assert step is not None and step.action is Action.SEND
    assert after is not None
    assert (after.status, after.send_state) == (S.SENDING, SS.IN_FLIGHT)
    assert (after.claimed_at, after.first_claimed_at, after.attempts) == (at(10), at(10), 1)
    assert (after.history[-1].from_, after.history[-1].to) == (status.value, "sending")
    assert decision.refund_micros == 0 and decision.opt_out is None


def test_a_scheduled_leg_that_arrives_early_goes_round_again():
    before = leg(S.SCHEDULED, scheduled_at=at(hours=1), dispatch_generation=0)
    decision = claim_step(before, at(0))
    assert decision.result is not None and decision.result.action is Action.RESCHEDULE
    assert decision.result.status == 200
    after = decision.after
    assert after is not None
    # Still scheduled, not claimed; a new generation names the new task (the old name is still remembered).
    assert (after.status, after.send_state, after.attempts) == (S.SCHEDULED, SS.NONE, 0)
    assert after.dispatch_generation == 1


def test_a_pending_leg_is_not_sent():
    decision = claim_step(leg(S.PENDING), at(10))
    assert decision.result is not None and decision.result.action is Action.DONE
    assert decision.after is None


def test_an_unknown_leg_is_done():
    decision = claim_step(None, at(10))
    assert decision.result is not None and decision.result.action is Action.DONE and decision.after is None


@pytest.mark.parametrize("status", [S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.CANCELED, S.EXPIRED])
def test_a_leg_past_sending_is_done(status):
    decision = claim_step(leg(status, send_state=SS.ACCEPTED if status is not S.CANCELED else SS.NONE), at(10))
    assert decision.result is not None and decision.result.action is Action.DONE and decision.result.status == 200
    assert decision.after is None


@pytest.mark.parametrize("fields", [
    {"provider_id": "tx-1"},  # a report taught the id while the send's answer was lost
    {"send_state": SS.ACCEPTED, "provider_id": "tx-1"},
])
def test_a_sending_leg_whose_provider_id_is_known_is_sent_not_resent(fields):
    decision = claim_step(claimed(**fields), at(100))
    assert decision.result is not None and decision.result.action is Action.DONE
    assert decision.after is not None
    assert (decision.after.status, decision.after.provider_id, decision.after.send_state) == (
        S.SENT, "tx-1", SS.ACCEPTED)


def test_a_sending_leg_the_provider_refused_is_done():
    decision = claim_step(claimed(send_state=SS.FAILED), at(100))
    assert decision.result is not None and decision.result.action is Action.DONE
    assert decision.after is None


def test_a_live_claim_comes_back_when_its_lease_ends_with_a_2xx():
    decision = claim_step(claimed(at_=at(0)), at(1))
    step = decision.result
    assert step is not None
    assert (step.action, step.status, step.at) == (Action.FOLLOW_UP, 200, at(0) + LEASE)
    assert decision.after is None  # nothing written: the holder's claim stands


def test_a_dead_claim_is_reconciled_not_resent():
    old = claimed(at_=at(0), attempts=1)
    decision = claim_step(old, at(0) + LEASE + dt.timedelta(seconds=1))
    step, after = decision.result, decision.after
    assert step is not None and step.action is Action.RECONCILE
    assert after is not None
    now = at(0) + LEASE + dt.timedelta(seconds=1)
    # a lookup is not a send: attempts counts only calls that may have handed the provider a message
    assert (after.status, after.send_state, after.claimed_at, after.attempts) == (S.SENDING, SS.IN_FLIGHT, now, 1)
    assert after.ambiguous_since == at(0)  # the provider may have had it since the dead holder's attempt
    assert after.first_claimed_at == at(0)  # the body (signed media URLs) stays byte-identical


def test_the_lease_is_the_one_given():
    lease = dt.timedelta(seconds=15)
    live = claim_step(claimed(at_=T0), at(14), lease)
    assert live.result is not None and (live.result.action, live.result.at) == (Action.FOLLOW_UP, at(15))
    dead = claim_step(claimed(at_=T0), at(16), lease)
    assert dead.result is not None and dead.result.action is Action.RECONCILE


def test_an_ambiguous_leg_is_reconciled_and_keeps_when_it_became_ambiguous():
    old = claimed(at_=at(0), attempts=1).with_(send_state=SS.AMBIGUOUS, ambiguous_since=at(0))
    decision = claim_step(old, at(3))
    assert decision.result is not None and decision.result.action is Action.RECONCILE
    after = decision.after
    assert after is not None
    assert (after.send_state, after.claimed_at, after.ambiguous_since, after.attempts) == (
        SS.IN_FLIGHT, at(3), at(0), 1)


def test_a_retryable_leg_is_sent_again_under_a_new_claim():
    old = claimed(at_=at(0), attempts=1).with_(send_state=SS.RETRYABLE)
    decision = claim_step(old, at(2))
    assert decision.result is not None and decision.result.action is Action.SEND
    after = decision.after
    assert after is not None
    assert (after.send_state, after.claimed_at, after.attempts, after.first_claimed_at) == (
        SS.IN_FLIGHT, at(2), 2, at(0))
    assert after.ambiguous_since is None


# -- record_step ------------------------------------------------------------------------------------
def _record(outcome, *, before=None, now=None, claimed_at=T0):
    before = before if before is not None else claimed(at_=T0, price_micros=PRICE)
    return record_step(before, outcome, claimed_at, now or at(2), MAX)


@pytest.mark.parametrize("answer", [Outcome(Kind.ACCEPTED, provider_id="tx-1", http_status=200),
                                    Lookup(LookupState.FOUND, provider_id="tx-1", status="queued")])
def test_accepted_or_found_records_sent_with_the_provider_id(answer):
    decision = _record(answer, before=claimed(at_=T0, webhook_url=HOOK))
    after = decision.after
    assert after is not None
    assert (after.status, after.send_state, after.provider_id, after.sent_at) == (S.SENT, SS.ACCEPTED, "tx-1", at(2))
    assert (after.history[-1].from_, after.history[-1].to) == ("sending", "sent")
    assert notify_event_id(after.id, "sent") in after.notifications
    assert decision.refund_micros == 0
    assert decision.result is not None and (decision.result.action, decision.result.status) == (Action.DONE, 200)


def test_accepted_after_a_report_already_delivered_it_only_records_the_id():
    delivered = claimed(at_=T0).with_(status=S.DELIVERED, send_state=SS.ACCEPTED)
    decision = _record(Outcome(Kind.ACCEPTED, provider_id="tx-1"), before=delivered)
    after = decision.after
    assert after is not None
    assert (after.status, after.provider_id) == (S.DELIVERED, "tx-1")
    assert after.history == delivered.history


def test_accepted_when_the_id_is_already_known_writes_nothing():
    known = claimed(at_=T0).with_(status=S.SENT, provider_id="tx-1", send_state=SS.ACCEPTED)
    decision = _record(Outcome(Kind.ACCEPTED, provider_id="tx-1"), before=known)
    assert decision.after is None and decision.refund_micros == 0


def test_opt_out_fails_refunds_and_remembers_the_number():
    decision = _record(Outcome(Kind.OPT_OUT, http_status=409, code="40300", detail="STOP"))
    after = decision.after
    assert after is not None
    assert (after.status, after.send_state, after.error_code, after.provider_error_code) == (
        S.FAILED, SS.FAILED, "RECIPIENT_OPTED_OUT", "40300")
    assert decision.refund_micros == PRICE
    assert decision.opt_out == "+14155550101"


def test_permanent_rejection_fails_and_refunds():
    decision = _record(Outcome(Kind.PERMANENT, http_status=400, code="40310", detail="bad number"))
    after = decision.after
    assert after is not None
    assert (after.status, after.send_state, after.error_code) == (S.FAILED, SS.FAILED, "PROVIDER_REJECTED")
    assert decision.refund_micros == PRICE and decision.opt_out is None


def test_transient_is_retried_with_a_2xx_follow_up():
    decision = _record(Outcome(Kind.TRANSIENT, http_status=500, detail="boom"))
    after, step = decision.after, decision.result
    assert after is not None and step is not None
    assert (after.status, after.send_state, after.last_error) == (S.SENDING, SS.RETRYABLE, "boom")
    assert (step.action, step.status) == (Action.FOLLOW_UP, 200)
    assert step.at is not None and at(2) < step.at <= at(2) + dt.timedelta(minutes=5)
    assert decision.refund_micros == 0


def test_transient_honours_the_providers_retry_after():
    decision = _record(Outcome(Kind.TRANSIENT, http_status=503, retry_after=7))
    assert decision.result is not None and decision.result.at == at(2) + dt.timedelta(seconds=7)


def test_the_providers_429_is_answered_429():
    decision = _record(Outcome(Kind.TRANSIENT, http_status=429, code="10011", retry_after=4))
    step, after = decision.result, decision.after
    assert step is not None and after is not None
    assert (step.status, step.retry_after) == (429, 4)
    assert after.send_state is SS.RETRYABLE and after.status is S.SENDING


def test_transient_on_the_last_attempt_fails_provider_unavailable_and_refunds():
    decision = _record(Outcome(Kind.TRANSIENT, http_status=500),
                       before=claimed(at_=T0, attempts=MAX, price_micros=PRICE))
    after = decision.after
    assert after is not None
    assert (after.status, after.send_state, after.error_code) == (S.FAILED, SS.FAILED, "PROVIDER_UNAVAILABLE")
    assert decision.refund_micros == PRICE
    assert decision.result is not None and decision.result.status == 200


def test_ambiguous_is_reconciled_later_never_sent():
    decision = _record(Outcome(Kind.AMBIGUOUS, detail="read timeout"), now=at(13))
    after, step = decision.after, decision.result
    assert after is not None and step is not None
    assert (after.status, after.send_state, after.ambiguous_since) == (S.SENDING, SS.AMBIGUOUS, T0)
    assert (step.action, step.status, step.at) == (Action.FOLLOW_UP, 200, at(13) + REPORT_GRACE)
    assert decision.refund_micros == 0


def test_ambiguous_on_the_last_attempt_gives_up_at_most_once():
    decision = _record(Outcome(Kind.AMBIGUOUS), before=claimed(at_=T0, attempts=MAX, price_micros=PRICE))
    after = decision.after
    assert after is not None
    assert (after.status, after.error_code) == (S.FAILED, "PROVIDER_OUTCOME_UNKNOWN")
    assert decision.refund_micros == PRICE


def test_a_lookup_that_cannot_tell_asks_again_later():
    reconciling = claimed(at_=at(60), attempts=2).with_(ambiguous_since=T0)
    decision = _record(Lookup(LookupState.UNKNOWN, detail="502"), before=reconciling, now=at(61), claimed_at=at(60))
    after, step = decision.after, decision.result
    assert after is not None and step is not None
    assert (after.status, after.send_state, after.ambiguous_since) == (S.SENDING, SS.AMBIGUOUS, T0)
    assert (step.action, step.status) == (Action.FOLLOW_UP, 200)
    assert step.at is not None and step.at > at(61)
    assert decision.refund_micros == 0


def test_a_lookup_that_cannot_tell_past_the_deadline_fails_outcome_unknown():
    now = T0 + GIVE_UP + dt.timedelta(seconds=1)
    reconciling = claimed(at_=now - dt.timedelta(seconds=1), attempts=3, price_micros=PRICE).with_(ambiguous_since=T0)
    decision = _record(Lookup(LookupState.UNKNOWN), before=reconciling, now=now, claimed_at=reconciling.claimed_at)
    after = decision.after
    assert after is not None
    assert (after.status, after.send_state, after.error_code) == (S.FAILED, SS.FAILED, "PROVIDER_OUTCOME_UNKNOWN")
    assert decision.refund_micros == PRICE


@pytest.mark.parametrize("outcome", [Outcome(Kind.TRANSIENT, http_status=500), Outcome(Kind.AMBIGUOUS),
                                     Outcome(Kind.PERMANENT, http_status=400), Lookup(LookupState.UNKNOWN)])
def test_a_lost_claim_records_nothing(outcome):
    # Our lease ran out and another delivery claimed the leg at 40 s: its attempt is the one to record.
    retaken = claimed(at_=at(40), attempts=2)
    decision = record_step(retaken, outcome, T0, at(41), MAX)
    assert decision.after is None and decision.refund_micros == 0 and decision.opt_out is None
    assert decision.result is not None and decision.result.action is Action.DONE


def test_a_failure_after_a_report_settled_the_leg_records_nothing():
    delivered = claimed(at_=T0).with_(status=S.DELIVERED, send_state=SS.ACCEPTED, provider_id="tx-1")
    decision = record_step(delivered, Outcome(Kind.PERMANENT, http_status=400), T0, at(2), MAX)
    assert decision.after is None and decision.refund_micros == 0


def test_unknown_leg_records_nothing():
    decision = record_step(None, Outcome(Kind.ACCEPTED, provider_id="x"), T0, at(1), MAX)
    assert decision.after is None and decision.refund_micros == 0
