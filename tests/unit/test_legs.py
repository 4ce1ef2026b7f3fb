"""Leg changes: ``transition`` is the only way a status changes (history, outbox event, refusal),
``note`` records without a change, ``with_send_state`` guards dispatch's bookkeeping, and the outbox keeps
its due marker while an event waits for a 2xx."""

from __future__ import annotations

import pytest

from shared.rules.ids import notify_event_id
from shared.rules.legs import mark_event, new_leg, note, transition, view, with_event, with_outbox, with_send_state
from shared.rules.records import EventState, HistoryEntry, OutboxEntry, StoredMedia
from shared.rules.status import SendState, Status
from tests.unit.legs import HOOK, T0, at, claimed, leg, statuses

S, SS = Status, SendState


def test_new_leg_starts_pending_with_one_history_entry():
    fresh = new_leg(message_id="msg_a", leg_key="single:msg_a", tenant_id="tnt", group_id=None, to="+14155550101",
                    from_="+18005551234", body="hi", subject=None, media_urls=["https://x/a.png"], channel="mms",
                    encoding="GSM-7", segments=1, scheduled_at=None, webhook_url=HOOK, metadata={"k": "v"},
                    request_id="req", now=T0)
    assert fresh.status is S.PENDING and fresh.send_state is SS.NONE
    assert fresh.history == (HistoryEntry(at=T0, from_=None, to="pending", cause="request received"),)
    assert fresh.notifications == {} and fresh.notify_due is None  # pending is nothing to announce
    assert fresh.media_urls == ("https://x/a.png",)


def test_transition_appends_one_history_entry_and_sets_the_fields():
    before = leg(S.QUEUED)
    moved = transition(before, S.SENDING, cause="dispatch claimed", now=at(5), attempts=1)
    assert moved is not None
    assert moved.status is S.SENDING and moved.status_since == at(5) and moved.updated_at == at(5)
    assert moved.attempts == 1
    assert moved.history == (*before.history, HistoryEntry(at=at(5), from_="queued", to="sending",
                                                           cause="dispatch claimed"))
    assert before.status is S.QUEUED  # records are values: the original is untouched


def test_transition_records_the_provider_event_id():
    moved = transition(leg(S.SENT), S.DELIVERED, cause="report", now=at(1), event_id="evt-telnyx-1")
    assert moved is not None and moved.history[-1].event_id == "evt-telnyx-1"


@pytest.mark.parametrize(("current", "new"), [
    (S.SENT, S.SENDING),  # backwards
    (S.DELIVERED, S.SENT),  # out of a terminal status
    (S.FAILED, S.QUEUED),
    (S.SENDING, S.CANCELED),  # too late to cancel
    (S.QUEUED, S.QUEUED),  # a repeat is not a move
    (S.DELIVERED, S.DELIVERED),
])
def test_transition_refuses_a_disallowed_move(current, new):
    assert transition(leg(current, webhook_url=HOOK), new, cause="x", now=at(1)) is None


@pytest.mark.parametrize(("new", "event_type"), [
    (S.SENT, "message.sent"), (S.DELIVERED, "message.delivered"), (S.UNDELIVERED, "message.failed"),
    (S.FAILED, "message.failed"),
])
def test_a_customer_visible_status_adds_its_event_when_someone_listens(new, event_type):
    moved = transition(leg(S.SENDING, webhook_url=HOOK), new, cause="x", now=at(2))
    assert moved is not None
    event_id = notify_event_id(moved.id, new.value)
    assert moved.notifications == {event_id: OutboxEntry(type=event_type, status=new.value, created_at=at(2))}
    assert moved.notify_due == at(2)


@pytest.mark.parametrize("new", [S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED])
def test_no_event_without_a_webhook_url(new):
    moved = transition(leg(S.SENDING), new, cause="x", now=at(2))
    assert moved is not None and moved.status is new
    assert moved.notifications == {} and moved.notify_due is None


@pytest.mark.parametrize(("current", "new"), [(S.PENDING, S.QUEUED), (S.PENDING, S.SCHEDULED),
                                              (S.SCHEDULED, S.QUEUED), (S.QUEUED, S.SENDING)])
def test_internal_statuses_announce_nothing(current, new):
    moved = transition(leg(current, webhook_url=HOOK), new, cause="x", now=at(2))
    assert moved is not None and moved.notifications == {} and moved.notify_due is None


def test_each_status_is_announced_once_per_leg():
    sent = transition(leg(S.SENDING, webhook_url=HOOK), S.SENT, cause="x", now=at(1))
    assert sent is not None
    again = with_event(sent, "sent", "message.sent", at(9))
    assert again.notifications == sent.notifications  # same key: same event id, not a second event


def test_note_keeps_the_status_and_appends_an_entry():
    before = leg(S.SENT)
    noted = note(before, cause="no final report", now=at(7), event_id="evt-x", final=True)
    assert noted.status is S.SENT and noted.final and noted.status_since == before.status_since
    assert noted.history[-1] == HistoryEntry(at=at(7), from_="sent", to="sent", cause="no final report",
                                             event_id="evt-x")
    assert len(noted.history) == len(before.history) + 1


@pytest.mark.parametrize(("current", "new"), [
    (SS.NONE, SS.IN_FLIGHT), (SS.IN_FLIGHT, SS.RETRYABLE), (SS.IN_FLIGHT, SS.AMBIGUOUS),
    (SS.AMBIGUOUS, SS.IN_FLIGHT), (SS.RETRYABLE, SS.ACCEPTED), (SS.IN_FLIGHT, SS.FAILED),
])
def test_with_send_state_moves(current, new):
    moved = with_send_state(leg(S.SENDING, send_state=current), new, now=at(3), attempts=2)
    assert moved.send_state is new and moved.updated_at == at(3) and moved.attempts == 2


@pytest.mark.parametrize(("current", "new"), [
    (SS.ACCEPTED, SS.IN_FLIGHT),  # the provider has it: never claimed again
    (SS.FAILED, SS.IN_FLIGHT),
    (SS.ACCEPTED, SS.FAILED),
    (SS.NONE, SS.AMBIGUOUS),  # nothing was sent, nothing can be ambiguous
    (SS.RETRYABLE, SS.AMBIGUOUS),
    (SS.IN_FLIGHT, SS.NONE),
])
def test_with_send_state_raises_on_a_disallowed_move(current, new):
    with pytest.raises(ValueError):
        with_send_state(leg(S.SENDING, send_state=current), new, now=at(3))


def test_with_send_state_to_the_same_state_updates_fields():
    moved = with_send_state(claimed(), SS.IN_FLIGHT, now=at(4), claimed_at=at(4))
    assert moved.send_state is SS.IN_FLIGHT and moved.claimed_at == at(4)


# -- outbox ---------------------------------------------------------------------------------------
def _with_two_events():
    sent = transition(leg(S.SENDING, webhook_url=HOOK), S.SENT, cause="x", now=at(1))
    assert sent is not None
    delivered = transition(sent, S.DELIVERED, cause="x", now=at(2))
    assert delivered is not None
    return delivered, notify_event_id(delivered.id, "sent"), notify_event_id(delivered.id, "delivered")


def test_mark_event_counts_the_attempt_and_keeps_the_due_marker_while_any_event_waits():
    two, sent_id, delivered_id = _with_two_events()
    assert two.notify_due is not None
    marked = mark_event(two, sent_id, at(5), state=EventState.DELIVERED, error=None)
    assert marked is not None
    entry = marked.notifications[sent_id]
    assert (entry.state, entry.attempts, entry.last_attempt_at, entry.last_error) == (
        EventState.DELIVERED, 1, at(5), None)
    assert marked.notifications[delivered_id] == two.notifications[delivered_id]
    assert marked.notify_due == two.notify_due  # the delivered event still waits: an attempt moves nothing


def test_mark_event_clears_the_due_marker_when_nothing_waits():
    two, sent_id, delivered_id = _with_two_events()
    one = mark_event(two, sent_id, at(5), state=EventState.DELIVERED, error=None)
    assert one is not None
    done = mark_event(one, delivered_id, at(6), state=EventState.GAVE_UP, error="HTTP 500")
    assert done is not None
    assert done.notify_due is None
    assert done.notifications[delivered_id].last_error == "HTTP 500"


def test_a_retrying_event_still_waits():
    two, sent_id, delivered_id = _with_two_events()
    retrying = mark_event(two, sent_id, at(5), state=EventState.RETRYING, error="timeout")
    assert retrying is not None
    retrying = mark_event(retrying, sent_id, at(6), state=EventState.RETRYING, error="timeout")
    assert retrying is not None
    assert retrying.notifications[sent_id].attempts == 2
    assert retrying.notify_due == two.notify_due


def test_mark_event_refuses_unknown_or_settled_events():
    two, sent_id, _ = _with_two_events()
    assert mark_event(two, "evt_nope", at(5), state=EventState.DELIVERED, error=None) is None
    settled = mark_event(two, sent_id, at(5), state=EventState.DELIVERED, error=None)
    assert settled is not None
    assert mark_event(settled, sent_id, at(6), state=EventState.DELIVERED, error=None) is None
    assert mark_event(settled, sent_id, at(6), state=EventState.RETRYING, error="x") is None


def test_with_outbox_due_marker():
    waiting = {"e1": OutboxEntry(type="message.sent", status="sent", created_at=T0)}
    done = {"e1": OutboxEntry(type="message.sent", status="sent", created_at=T0, state=EventState.DELIVERED)}
    assert with_outbox(leg(S.SENT), waiting, at(3)).notify_due == at(3)
    assert with_outbox(leg(S.SENT), waiting, at(3), due=at(1)).notify_due == at(1)
    assert with_outbox(leg(S.SENT, notify_due=at(1)), done, at(3)).notify_due is None


def test_view_is_final_for_a_closed_sent_leg_and_lists_the_history():
    shown = view(leg(S.SENT, final=True, price_micros=20_000))
    assert shown["final"] is True and shown["status"] == "sent"
    assert shown["price"] == {"amount": "0.0200", "currency": "USD"}
    assert [(h["from"], h["to"]) for h in shown["history"]] == statuses(leg(S.SENT).history)
    assert shown["created_at"] == "2026-03-01T12:00:00.000Z"
    assert view(leg(S.SENT))["final"] is False


# -- what a read shows of an outbound message's media (issue 24, item 3) ------------------------------------------


def test_a_downscaled_image_shows_its_original_and_sent_size_and_type_in_the_read():
    downscaled = StoredMedia(object="media/tnt_unit/aaa", content_type="image/jpeg", size=734_112,
                             extra={"sha256": "aaa", "original_size": 3_145_728})
    kept = StoredMedia(object="media/tnt_unit/bbb", content_type="application/pdf", size=1_000,
                       extra={"sha256": "bbb", "filename": "terms.pdf"})
    shown = view(leg(Status.QUEUED, media=(downscaled, kept)))
    assert shown["sent_media"] == [
        {"content_type": "image/jpeg", "size": 734_112, "original_content_type": "image/jpeg",
         "original_size": 3_145_728, "downscaled": True},
        {"content_type": "application/pdf", "size": 1_000, "original_content_type": "application/pdf",
         "original_size": 1_000, "downscaled": False, "filename": "terms.pdf"},
    ]
    assert "media" not in shown  # the inbound attachments' key


def test_an_inbound_message_shows_its_attachments_not_sent_media():
    shown = view(leg(Status.DELIVERED, direction="inbound"))
    assert shown["media"] == [] and "sent_media" not in shown
