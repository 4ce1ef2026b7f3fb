"""Records map to their stored documents and back without losing anything (shared/rules/records.py)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.rules.records import (
    EventState,
    Group,
    HistoryEntry,
    IdempotencyRecord,
    IdempotencyState,
    Leg,
    OutboxEntry,
    StoredMedia,
)
from shared.rules.status import SendState, Status

text = st.text(min_size=1, max_size=20)
times = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1),
                     timezones=st.just(dt.UTC))
history = st.builds(HistoryEntry, at=times, from_=st.sampled_from([s.value for s in Status]),
                    to=st.sampled_from([s.value for s in Status]), cause=text, event_id=text)
outbox = st.builds(OutboxEntry, type=text, status=text, created_at=times, state=st.sampled_from(list(EventState)),
                   attempts=st.integers(1, 50), last_attempt_at=times, last_error=text)
media = st.builds(StoredMedia, object=text, content_type=text, size=st.integers(1, 10**6),
                  extra=st.dictionaries(text.filter(lambda k: k not in ("object", "content_type", "size")),
                                        text, min_size=1, max_size=3))

legs = st.builds(
    Leg, id=text, leg_key=text, tenant_id=text, to=text, from_=text, channel=st.sampled_from(["sms", "mms"]),
    encoding=st.sampled_from(["GSM-7", "UCS-2"]), segments=st.integers(1, 11), request_id=text, created_at=times,
    status=st.sampled_from(list(Status)), status_since=times, updated_at=times, group_id=text, body=text,
    subject=text, media_urls=st.lists(text, min_size=1, max_size=3).map(tuple),
    media=st.lists(media, min_size=1, max_size=3).map(tuple), scheduled_at=times, webhook_url=text,
    metadata=st.dictionaries(text, text, min_size=1, max_size=3), final=st.booleans(), error_code=text,
    error_message=text, provider_id=text, provider_error_code=text, price_micros=st.integers(1, 10**9),
    attempts=st.integers(1, 20), send_state=st.sampled_from(list(SendState)), dispatch_generation=st.integers(1, 9),
    claimed_at=times, first_claimed_at=times, ambiguous_since=times, last_error=text, sent_at=times,
    last_report_at=times, history=st.lists(history, min_size=1, max_size=4).map(tuple),
    notifications=st.dictionaries(text, outbox, min_size=1, max_size=3), notify_due=times,
)


@settings(max_examples=50, deadline=None)  # every example sets every one of the leg's fields
@given(leg=legs)
def test_leg_round_trip(leg):
    assert Leg.from_doc(leg.to_doc()) == leg


@settings(max_examples=30, deadline=None)
@given(leg=legs)
def test_every_field_reaches_the_document(leg):
    doc = leg.to_doc()
    # Every dataclass field is stored (``from_`` under its wire name "from").
    names = {f.name.rstrip("_") if f.name == "from_" else f.name for f in Leg.__dataclass_fields__.values()}
    assert names <= set(doc)
    assert doc["status"] == leg.status.value and doc["send_state"] == leg.send_state.value
    assert doc["from"] == leg.from_


def test_a_minimal_stored_leg_reads_with_defaults():
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    leg = Leg.from_doc({"id": "msg_1", "leg_key": "k", "tenant_id": "t", "to": "+14155550101", "channel": "sms",
                        "status": "queued", "created_at": created})
    assert (leg.status, leg.send_state, leg.attempts, leg.history, leg.notifications) == (
        Status.QUEUED, SendState.NONE, 0, (), {})
    assert Leg.from_doc(leg.to_doc()) == leg


@given(group=st.builds(Group, id=text, tenant_id=text, total=st.integers(1, 20), created_at=times, request_id=text,
                       message_ids=st.lists(text, min_size=1, max_size=5).map(tuple)))
def test_group_round_trip(group):
    assert Group.from_doc(group.to_doc()) == group


@given(record=st.builds(IdempotencyRecord, state=st.sampled_from(list(IdempotencyState)), payload_hash=text,
                        created_at=times, lease_until=times, expires_at=times, response_status=st.integers(200, 599),
                        response_body=st.dictionaries(text, text, min_size=1, max_size=3),
                        response_headers=st.dictionaries(text, text, min_size=1, max_size=3)))
def test_idempotency_record_round_trip(record):
    assert IdempotencyRecord.from_doc(record.to_doc()) == record
