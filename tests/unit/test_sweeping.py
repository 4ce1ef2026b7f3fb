"""The sweeper's pure decisions (shared/services/sweeping.py) at fixed times: an abandoned pending row fails
uncharged, a lost task is re-enqueued once per bump, a silent sent leg is closed final and announced, and
an outbox is looked at again only after another grace period."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.rules.ids import notify_event_id
from shared.rules.records import EventState, OutboxEntry
from shared.rules.status import Status
from shared.services.sweeping import SweepPolicy, abandon, bump, close_silent, push_due
from tests.unit.legs import HOOK, T0, at, leg

S = Status
NOW = at(hours=1)


def test_abandon_fails_a_pending_row_uncharged():
    decision = abandon(leg(S.PENDING, price_micros=0), now=NOW)
    after = decision.after
    assert decision.result is True and after is not None
    assert (after.status, after.error_code) == (S.FAILED, "INTERNAL")
    assert (after.history[-1].from_, after.history[-1].to, after.history[-1].at) == ("pending", "failed", NOW)
    assert decision.refund_micros == 0  # nothing was charged for a pending row


def test_abandon_announces_the_failure_to_a_listener():
    after = abandon(leg(S.PENDING, webhook_url=HOOK), now=NOW).after
    assert after is not None and notify_event_id(after.id, "failed") in after.notifications


@pytest.mark.parametrize("status", [S.QUEUED, S.SCHEDULED, S.SENDING, S.SENT, S.DELIVERED, S.FAILED])
def test_abandon_leaves_anything_but_pending_alone(status):
    decision = abandon(leg(status), now=NOW)
    assert decision.result is False and decision.after is None


def test_abandon_of_a_vanished_leg():
    assert abandon(None, now=NOW).result is False


@pytest.mark.parametrize("status", [S.QUEUED, S.SCHEDULED, S.SENDING])
def test_bump_takes_the_next_generation_once(status):
    before = leg(status, dispatch_generation=2)
    decision = bump(before, status=status, now=NOW)
    after = decision.after
    assert decision.result == 3 and after is not None
    assert (after.status, after.dispatch_generation, after.status_since) == (status, 3, NOW)
    assert after.history == before.history  # no status change, no history
    # A second sweeper run that read the old version decides on what it read; the store's
    # version check refuses its write. One that reads the bumped leg bumps again, to a new name.
    assert bump(after, status=status, now=NOW).result == 4


@pytest.mark.parametrize(("status", "expected"), [(S.SENT, S.QUEUED), (S.DELIVERED, S.SENDING), (S.QUEUED, S.SENDING)])
def test_bump_refuses_a_leg_that_moved(status, expected):
    decision = bump(leg(status), status=expected, now=NOW)
    assert decision.result == 0 and decision.after is None


def test_close_silent_closes_a_sent_leg_final_and_announces_it():
    sent = leg(S.SENT, webhook_url=HOOK, provider_id="tx-1")
    decision = close_silent(sent, now=NOW)
    after = decision.after
    assert after is not None
    assert (after.status, after.final, after.is_final) == (S.SENT, True, True)
    assert after.history[-1].from_ == after.history[-1].to == "sent"
    assert after.history[-1].cause == "no final report within the window"
    closing = notify_event_id(after.id, "sent:final")
    assert after.notifications[closing].type == "message.sent"
    assert closing != notify_event_id(after.id, "sent")  # its own event id, not the first message.sent's
    assert after.notify_due == NOW


def test_close_silent_without_a_listener_adds_no_event():
    after = close_silent(leg(S.SENT), now=NOW).after
    assert after is not None and after.final and after.notifications == {}


@pytest.mark.parametrize("before", [leg(S.SENT, final=True), leg(S.DELIVERED), leg(S.SENDING), leg(S.QUEUED), None])
def test_close_silent_leaves_others_alone(before):
    assert close_silent(before, now=NOW).after is None


def test_push_due_moves_the_marker_to_now():
    waiting = {"evt_1": OutboxEntry(type="message.sent", status="sent", created_at=T0)}
    due = leg(S.SENT, notifications=waiting, notify_due=T0)
    after = push_due(due, now=NOW).after
    assert after is not None and after.notify_due == NOW
    assert after.notifications == waiting


def test_push_due_leaves_a_settled_outbox_alone():
    settled = {"evt_1": OutboxEntry(type="message.sent", status="sent", created_at=T0, state=EventState.DELIVERED)}
    assert push_due(leg(S.SENT, notifications=settled, notify_due=None), now=NOW).after is None
    assert push_due(None, now=NOW).after is None


def test_a_dead_claim_is_only_swept_after_dispatchs_own_follow_up_had_its_chance():
    policy = SweepPolicy(queued_after=dt.timedelta(seconds=300), final_after=dt.timedelta(hours=72))
    assert policy.dead_claim_after > dt.timedelta(seconds=30) + dt.timedelta(seconds=300)  # the default lease, 30 s
    short = SweepPolicy(queued_after=dt.timedelta(seconds=3), final_after=dt.timedelta(seconds=6),
                        claim_lease=dt.timedelta(seconds=15))
    assert short.dead_claim_after > dt.timedelta(seconds=18)
