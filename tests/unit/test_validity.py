"""Validity and delivery windows in the accept's timing, in dispatch's claim and in the sweeper (pure).

The rules, as docs/decisions.md states them:
- ``validity_period`` counts from when the message is due (``scheduled_at``, else acceptance); ``expires_at``
  is an instant; either way the validity ends at most 48 h after the message is due, and after it is due;
- a leg the provider does not have (queued, scheduled, or sending whose last attempt the provider refused)
  ends ``expired`` once its validity has ended (at that instant included), refunded, with
  ``message.expired`` and the code ``VALIDITY_EXPIRED``; a leg the provider may have never expires;
- a leg due outside its delivery window waits (as ``scheduled`` at accept) for the next opening; when the
  window does not open before the validity ends, the accept is a 400 naming ``delivery_window`` and a leg
  already waiting ends expired.
"""

from __future__ import annotations

import datetime as dt

import pytest

from shared.api.models import SendRequest
from shared.carriers.provider import Kind, Outcome
from shared.ports import FixedClock
from shared.rules.ids import notify_event_id
from shared.rules.status import SendState, Status
from shared.rules.validity import FieldError, expire, plan
from shared.rules.windows import Window
from shared.services.dispatch_steps import Action, claim_step
from shared.services.dispatching import dispatch
from shared.services.sweeping import waiting_for_window
from tests.unit.fakes import FakeRuntime
from tests.unit.legs import HOOK, T0, at, claimed, leg

S, SS = Status, SendState
PRICE = 20_000
# T0 is Sunday 1 March 2026, 12:00 UTC. Weekdays 09:00-17:00 UTC.
OFFICE = Window(days=frozenset(range(5)), start=9 * 60, end=17 * 60)
MONDAY_9 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


# -- the request fields ------------------------------------------------------------------------------------
def _send(**fields):
    return SendRequest.model_validate({"to": "+14155550101", "body": "hi", **fields})


@pytest.mark.parametrize("value", [0, -5, 48 * 3600 + 1, True, "60", 1.5])
def test_validity_period_is_a_whole_number_of_seconds_from_1_to_48_hours(value):
    with pytest.raises(ValueError, match="validity_period"):
        _send(validity_period=value)


@pytest.mark.parametrize("value", [1, 48 * 3600])
def test_validity_period_bounds_are_accepted(value):
    assert _send(validity_period=value).validity_period == value


def test_validity_period_and_expires_at_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        _send(validity_period=60, expires_at="2026-03-01T13:00:00Z")


def test_expires_at_needs_an_offset():
    with pytest.raises(ValueError, match="offset"):
        _send(expires_at="2026-03-01T13:00:00")


# -- the accept's timing -------------------------------------------------------------------------------------
def test_no_validity_and_no_window_leaves_the_leg_due_now_and_valid_forever():
    timing = plan(T0, scheduled_at=None, validity_period=None, expires_at=None, window=None)
    assert (timing.scheduled_at, timing.valid_until) == (None, None)


def test_validity_period_counts_from_acceptance():
    timing = plan(T0, scheduled_at=None, validity_period=600, expires_at=None, window=None)
    assert timing.valid_until == at(600)


def test_validity_period_of_a_scheduled_send_counts_from_its_time():
    timing = plan(T0, scheduled_at=at(hours=5), validity_period=600, expires_at=None, window=None)
    assert (timing.scheduled_at, timing.valid_until) == (at(hours=5), at(hours=5, seconds=600))


@pytest.mark.parametrize("expires_at", [at(-1), T0])
def test_expires_at_must_be_in_the_future(expires_at):
    with pytest.raises(FieldError) as caught:
        plan(T0, scheduled_at=None, validity_period=None, expires_at=expires_at, window=None)
    assert caught.value.field == "expires_at"


def test_a_scheduled_send_that_expires_before_its_time_is_refused():
    for expires_at in (at(hours=1), at(hours=2)):
        with pytest.raises(FieldError) as caught:
            plan(T0, scheduled_at=at(hours=2), validity_period=None, expires_at=expires_at, window=None)
        assert caught.value.field == "expires_at" and "scheduled_at" in caught.value.issue


def test_expires_at_is_at_most_48_hours_after_the_message_is_due():
    assert plan(T0, scheduled_at=None, validity_period=None, expires_at=at(hours=48), window=None
                ).valid_until == at(hours=48)
    with pytest.raises(FieldError):
        plan(T0, scheduled_at=None, validity_period=None, expires_at=at(hours=48, seconds=1), window=None)
    # Scheduled: 48 h from its time.
    assert plan(T0, scheduled_at=at(hours=10), validity_period=None, expires_at=at(hours=58), window=None
                ).valid_until == at(hours=58)


def test_a_closed_window_defers_the_leg_to_its_opening():
    timing = plan(T0, scheduled_at=None, validity_period=None, expires_at=None, window=OFFICE)
    assert timing.scheduled_at == MONDAY_9


def test_an_open_window_changes_nothing():
    monday_noon = MONDAY_9 + dt.timedelta(hours=3)
    timing = plan(monday_noon, scheduled_at=None, validity_period=None, expires_at=None, window=OFFICE)
    assert timing.scheduled_at is None
    scheduled = plan(T0, scheduled_at=monday_noon, validity_period=None, expires_at=None, window=OFFICE)
    assert scheduled.scheduled_at == monday_noon


def test_a_window_that_opens_only_after_the_validity_ends_is_refused():
    # Sunday noon + 1 h validity: the window opens on Monday 09:00.
    with pytest.raises(FieldError) as caught:
        plan(T0, scheduled_at=None, validity_period=3600, expires_at=None, window=OFFICE)
    assert caught.value.field == "delivery_window"
    with pytest.raises(FieldError):
        plan(T0, scheduled_at=None, validity_period=None, expires_at=MONDAY_9, window=OFFICE)
    # One second more and it can be sent.
    timing = plan(T0, scheduled_at=None, validity_period=None, expires_at=MONDAY_9 + dt.timedelta(seconds=1),
                  window=OFFICE)
    assert timing.scheduled_at == MONDAY_9


# -- dispatch's claim --------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [S.QUEUED, S.SCHEDULED])
@pytest.mark.parametrize("late", [0, 30])
def test_a_leg_claimed_after_its_validity_expires_instead_of_sending(status, late):
    before = leg(status, valid_until=at(60), scheduled_at=at(-10) if status is S.SCHEDULED else None,
                 webhook_url=HOOK)
    decision = claim_step(before, at(60 + late))
    after = decision.after
    assert decision.result.action is Action.DONE
    assert after is not None and after.status is S.EXPIRED and after.is_final
    assert after.error_code == "VALIDITY_EXPIRED"
    assert decision.refund_micros == PRICE
    assert after.send_state is SS.NONE and after.attempts == 0
    event = after.notifications[notify_event_id(before.id, "expired")]
    assert event.type == "message.expired"
    assert (after.history[-1].from_, after.history[-1].to) == (status.value, "expired")


def test_a_leg_claimed_before_its_validity_ends_is_sent():
    decision = claim_step(leg(S.QUEUED, valid_until=at(60)), at(59))
    assert decision.result.action is Action.SEND and decision.after.status is S.SENDING
    assert decision.refund_micros == 0


def test_a_retry_after_the_provider_refused_expires_once_the_validity_ends():
    retryable = claimed(attempts=1, send_state=SS.RETRYABLE, valid_until=at(30))
    decision = claim_step(retryable, at(40))
    assert decision.after.status is S.EXPIRED and decision.after.send_state is SS.FAILED
    assert decision.refund_micros == PRICE
    # Before the end it is retried.
    assert claim_step(retryable, at(20)).result.action is Action.SEND


@pytest.mark.parametrize("send_state", [SS.IN_FLIGHT, SS.AMBIGUOUS])
def test_a_leg_the_provider_may_have_never_expires(send_state):
    # The claim's holder died (or the attempt went unanswered) and the validity has ended: dispatch asks the
    # provider, as without a validity; expiring it could contradict a delivery.
    maybe_sent = claimed(at_=at(0), send_state=send_state, valid_until=at(5), ambiguous_since=at(0))
    decision = claim_step(maybe_sent, at(600))
    assert decision.result.action is Action.RECONCILE
    assert decision.after.status is S.SENDING and decision.refund_micros == 0


@pytest.mark.parametrize("status", [S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.CANCELED])
def test_a_leg_past_sending_is_left_alone(status):
    decision = claim_step(leg(status, valid_until=at(5), provider_id="tx-1"), at(600))
    assert decision.after is None and decision.refund_micros == 0


def test_a_queued_leg_outside_its_window_waits_for_the_opening_still_queued():
    before = leg(S.QUEUED, delivery_window=OFFICE, dispatch_generation=0)
    decision = claim_step(before, at(5))
    after = decision.after
    assert decision.result.action is Action.RESCHEDULE
    assert after.status is S.QUEUED and after.scheduled_at == MONDAY_9
    assert after.dispatch_generation == 1  # a task of a new name carries it
    assert after.history[-1].cause == "outside its delivery window"


def test_a_scheduled_leg_outside_its_window_waits_for_the_opening():
    before = leg(S.SCHEDULED, delivery_window=OFFICE, scheduled_at=at(-1))
    decision = claim_step(before, at(5))
    assert decision.result.action is Action.RESCHEDULE
    assert decision.after.status is S.SCHEDULED and decision.after.scheduled_at == MONDAY_9


def test_a_leg_inside_its_window_is_sent():
    monday_noon = MONDAY_9 + dt.timedelta(hours=3)
    decision = claim_step(leg(S.QUEUED, delivery_window=OFFICE), monday_noon)
    assert decision.result.action is Action.SEND


def test_a_leg_a_moment_before_its_window_opens_is_sent_rather_than_going_round_again():
    decision = claim_step(leg(S.SCHEDULED, delivery_window=OFFICE, scheduled_at=MONDAY_9),
                          MONDAY_9 - dt.timedelta(milliseconds=500))
    assert decision.result.action is Action.SEND


def test_a_leg_whose_window_reopens_only_after_its_validity_expires_now():
    # Friday 16:59:59 the window is open; a task arriving at 17:00 finds it closed until Monday, and the
    # validity ends on Saturday.
    friday_5pm = dt.datetime(2026, 3, 6, 17, 0, tzinfo=dt.UTC)
    before = leg(S.QUEUED, delivery_window=OFFICE, valid_until=friday_5pm + dt.timedelta(hours=20),
                 webhook_url=HOOK)
    decision = claim_step(before, friday_5pm)
    assert decision.after.status is S.EXPIRED and decision.refund_micros == PRICE
    assert decision.result.action is Action.DONE


def test_dispatch_over_ports_reschedules_a_leg_outside_its_window_to_the_opening():
    rt = FakeRuntime(FixedClock(T0))
    waiting = leg(S.QUEUED, delivery_window=OFFICE)
    rt.legs.legs[waiting.id] = waiting
    answer = dispatch(rt, waiting.id)
    assert answer.status == 200
    assert rt.provider.sent == []
    assert [task.at for task in rt.queue.dispatches] == [MONDAY_9]
    # When the task comes back at the opening, it sends.
    rt.clock.at = MONDAY_9
    rt.provider.answers.append(Outcome(Kind.ACCEPTED, provider_id="tx-1", http_status=200))
    dispatch(rt, waiting.id)
    assert len(rt.provider.sent) == 1 and rt.legs.get(waiting.id).status is S.SENT


def test_dispatch_over_ports_never_calls_the_provider_for_an_expired_leg():
    rt = FakeRuntime(FixedClock(at(120)))
    late = leg(S.QUEUED, valid_until=at(60))
    rt.legs.legs[late.id] = late
    dispatch(rt, late.id)
    assert rt.provider.sent == []
    assert rt.legs.get(late.id).status is S.EXPIRED
    assert rt.legs.refunds == [(late.tenant_id, PRICE)]


# -- the sweeper ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [S.QUEUED, S.SCHEDULED])
def test_the_sweeper_expires_an_unsent_leg_past_its_validity(status):
    decision = expire(leg(status, valid_until=at(10), webhook_url=HOOK), now=at(11))
    assert decision.result is True
    assert decision.after.status is S.EXPIRED and decision.refund_micros == PRICE
    assert "message.expired" in {e.type for e in decision.after.notifications.values()}


@pytest.mark.parametrize("before", [
    leg(S.QUEUED, valid_until=at(10)),  # not yet
    leg(S.QUEUED),  # no validity
    leg(S.SENT, valid_until=at(-10), provider_id="tx-1"),  # the provider has it
    leg(S.DELIVERED, valid_until=at(-10), provider_id="tx-1"),
    claimed(valid_until=at(-10)),  # an attempt in flight
    leg(S.CANCELED, valid_until=at(-10)),
    leg(S.EXPIRED, valid_until=at(-10)),
    None,
])
def test_the_sweeper_leaves_other_legs_alone(before):
    decision = expire(before, now=at(5))
    assert decision.result is False and decision.after is None and decision.refund_micros == 0


def test_a_queued_leg_waiting_for_its_window_is_not_requeued_before_the_opening():
    waiting = leg(S.QUEUED, scheduled_at=MONDAY_9)
    assert waiting_for_window(waiting, MONDAY_9 - dt.timedelta(minutes=5))
    assert not waiting_for_window(waiting, MONDAY_9 + dt.timedelta(seconds=1))
    assert not waiting_for_window(leg(S.QUEUED), T0)
