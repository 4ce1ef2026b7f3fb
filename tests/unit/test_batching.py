"""Batch send rules (shared/batching.py): the request's shape, duplicates, deterministic rows, chunks, the speed
limit's spread and the progress counts."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from shared import batching
from shared.batching import BatchRecipient, BatchRequest, SendingSpeed
from shared.errors import ApiError, ErrorCode


def numbers(n: int) -> list[str]:
    return [f"+1415{5550000 + i:07d}" for i in range(n)]


def test_to_or_recipients_and_not_both():
    assert len(BatchRequest(to=numbers(3), body="x").all_recipients()) == 3
    req = BatchRequest(recipients=[{"to": "+14155550100", "metadata": {"a": "b"}, "client_ref": "c1"}], body="x")
    assert req.all_recipients() == [BatchRecipient(to="+14155550100", metadata={"a": "b"}, client_ref="c1")]
    for bad in ({"body": "x"}, {"body": "x", "to": numbers(1), "recipients": [{"to": "+14155550100"}]}):
        with pytest.raises(ValidationError):
            BatchRequest(**bad)


def test_ten_thousand_recipients_and_not_one_more():
    assert len(BatchRequest(to=numbers(10_000), body="x").all_recipients()) == 10_000
    with pytest.raises(ValidationError):
        BatchRequest(to=numbers(10_001), body="x")
    with pytest.raises(ValidationError):
        BatchRequest(recipients=[{"to": n} for n in numbers(10_001)], body="x")
    with pytest.raises(ValidationError):
        BatchRequest(to=[], body="x")


@pytest.mark.parametrize("speed", [{"amount": 0, "time_unit": "minute"}, {"amount": -5, "time_unit": "hour"},
                                   {"amount": 10, "time_unit": "week"}, {"amount": 10},
                                   {"amount": "600", "time_unit": "minute"}, {"amount": 1.5, "time_unit": "day"},
                                   {"amount": 10, "time_unit": "minute", "burst": 3}])
def test_a_bad_speed_is_refused(speed):
    with pytest.raises(ValidationError):
        BatchRequest(to=numbers(1), body="x", sending_speed=speed)


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        BatchRequest(to=numbers(1), body="x", speed={"amount": 1, "time_unit": "minute"})
    with pytest.raises(ValidationError):
        BatchRequest(recipients=[{"to": "+14155550100", "name": "Ann"}], body="x")


def test_duplicates_are_refused_naming_them():
    batching.check_duplicates([BatchRecipient(to=n) for n in numbers(50)])  # distinct: fine
    with pytest.raises(ApiError) as caught:
        batching.check_duplicates([BatchRecipient(to="+14155550100"), BatchRecipient(to="+14155550101"),
                                   BatchRecipient(to="+14155550100")])
    assert caught.value.code == ErrorCode.DUPLICATE_RECIPIENTS and caught.value.status == 400
    assert caught.value.details == [{"field": "recipients[2].to", "issue": "repeats recipients[0] (+14155550100)"}]
    with pytest.raises(ApiError) as caught:
        batching.check_duplicates([BatchRecipient(to=n) for n in ["+14155550100", "+14155550100"]], field="to")
    assert caught.value.details == [{"field": "to[1]", "issue": "repeats to[0] (+14155550100)"}]


def test_invalid_numbers_are_not_duplicates_of_each_other_unless_equal():
    batching.check_duplicates([BatchRecipient(to="hello"), BatchRecipient(to="12")])
    with pytest.raises(ApiError):
        batching.check_duplicates([BatchRecipient(to="hello"), BatchRecipient(to="hello")])


def test_rows_are_derived_from_the_batch_and_the_recipient():
    a = batching.leg_id("bat_1", "+14155550100")
    assert a == batching.leg_id("bat_1", "+14155550100")  # a chunk task's second run finds the same row
    assert a.startswith("msg_")
    assert a != batching.leg_id("bat_2", "+14155550100") and a != batching.leg_id("bat_1", "+14155550101")
    assert len({batching.leg_id("bat_1", n) for n in numbers(10_000)}) == 10_000


def test_chunks_cover_every_recipient_once_within_a_commit():
    parts = batching.chunks(10_000)
    assert len(parts) == 20 and all(len(p) == 500 for p in parts)
    parts = batching.chunks(1_201)
    assert [len(p) for p in parts] == [500, 500, 201]
    assert [i for p in parts for i in p] == list(range(1_201))
    assert batching.chunks(0) == []
    names = {batching.chunk_task_name("bat_1", i) for i in range(20)}
    assert len(names) == 20 and batching.chunk_task_name("bat_1", 3) == batching.chunk_task_name("bat_1", 3)


def test_the_speed_spreads_the_legs_evenly():
    offsets = batching.dispatch_offsets(1_000, SendingSpeed(amount=600, time_unit="minute"))
    assert offsets[0] == dt.timedelta(0) and offsets[1] == dt.timedelta(milliseconds=100)
    assert offsets[-1] == dt.timedelta(seconds=99.9)  # 1,000 legs at 600/minute: about 100 s
    # no window of one minute holds more than 600
    in_first_minute = sum(1 for o in offsets if o < dt.timedelta(minutes=1))
    assert in_first_minute == 600
    assert batching.dispatch_offsets(3, None) == [dt.timedelta(0)] * 3
    assert batching.dispatch_offsets(2, SendingSpeed(amount=1, time_unit="day"))[1] == dt.timedelta(days=1)


def test_progress_counts_by_status():
    counts = batching.progress(["queued", "delivered", "delivered", "failed", "sent", "canceled"])
    assert counts == {"total": 6, "final": 4,
                      "by_status": {"canceled": 1, "delivered": 2, "failed": 1, "queued": 1, "sent": 1}}
