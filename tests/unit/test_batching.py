"""Batch send rules (shared/rules/batching.py, shared/api/batch_request.py): the request's shape, duplicates,
deterministic rows, chunks, the accept's gates and reservation, each chunk's rows, the speed limit's spread, and
the batch's view with its progress."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from shared.api.batch_request import BatchRecipient, BatchRequest, SendingSpeed
from shared.rules import batching
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.legs import new_leg
from shared.rules.records import Batch, BatchChunk, BatchStatus, ChunkRecipient, Rates, Tenant
from shared.rules.status import Status
from shared.services import batch_sending


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
    # each chunk's one commit: its rows plus the refund of those a late gate fails, within 500 writes
    assert len(parts) == 25 and all(len(p) + 1 <= 500 for p in parts)
    parts = batching.chunks(1_201, size=500)
    assert [len(p) for p in parts] == [500, 500, 201]
    assert [i for p in batching.chunks(1_201) for i in p] == list(range(1_201))
    assert batching.chunks(0) == []
    names = {batching.chunk_task_name("bat_1", i) for i in range(25)}
    assert len(names) == 25 and batching.chunk_task_name("bat_1", 3) == batching.chunk_task_name("bat_1", 3)
    # a cancel's and a sweep's tasks for the same chunk are tasks of their own
    assert len({batching.chunk_task_name("bat_1", 3, p) for p in ("write", "cancel", "sweep-1")}) == 3


# -- the accept's gates and reservation, the chunks' rows (pure) -------------------------------------------

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
PRICES = {"US": Rates(sms_micros=4_000, mms_micros=20_000), "CA": Rates(sms_micros=5_000, mms_micros=25_000)}


def recipients(*tos: str) -> list[BatchRecipient]:
    return [BatchRecipient(to=t) for t in tos]


def test_the_accept_gates_number_nanp_and_price_per_recipient():
    items = recipients("+14155550100", "+14165550123", "12345", "+447911123456")
    mms = batching.gate_recipients(items, "mms", 1, PRICES)
    assert [(r.price_micros, r.error_code) for r in mms] == [
        (20_000, None), (25_000, None), (0, "INVALID_PHONE_NUMBER"), (0, "MMS_NANP_ONLY")]
    sms = batching.gate_recipients(items, "sms", 2, PRICES)  # two segments, priced per segment; no GB price
    assert [(r.price_micros, r.error_code) for r in sms] == [
        (8_000, None), (10_000, None), (0, "INVALID_PHONE_NUMBER"), (0, "PRICE_UNAVAILABLE")]


def test_the_reservation_is_the_cost_of_the_sendable_in_order_up_to_the_quota():
    gated = batching.gate_recipients(recipients("+14155550100", "bad", "+14155550101", "+14155550102"), "mms", 1,
                                     PRICES)
    tenant = Tenant(id="t", balance_micros=100_000, daily_quota=5, usage_day="2026-12-01", usage_count=3)
    got = batching.reserve(gated, tenant, NOW)
    # two left in today's quota: the first two sendable get slots 0 and 1, the third fails on the quota
    assert [(r.slot, r.error_code) for r in got.recipients] == [
        (0, None), (None, "INVALID_PHONE_NUMBER"), (1, None), (None, "QUOTA_EXCEEDED")]
    assert (got.cost_micros, got.accepted, got.balance_micros, got.usage_count) == (40_000, 2, 60_000, 5)
    assert got.recipients[3].price_micros == 0  # nothing reserved for it
    # yesterday's usage does not count today
    fresh = batching.reserve(gated, Tenant(id="t", balance_micros=60_000, usage_day="2026-11-30", usage_count=9),
                             NOW)
    assert (fresh.accepted, fresh.cost_micros, fresh.usage_count, fresh.usage_day) == (3, 60_000, 3, "2026-12-01")


def test_a_reservation_the_balance_cannot_cover_refuses_the_batch():
    gated = batching.gate_recipients(recipients("+14155550100", "+14155550101"), "mms", 1, PRICES)
    with pytest.raises(ApiError) as refused:
        batching.reserve(gated, Tenant(id="t", balance_micros=39_999), NOW)
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE and refused.value.status == 402
    assert batching.reserve(gated, Tenant(id="t", balance_micros=40_000), NOW).balance_micros == 0


def _batch(n: int, *, speed: SendingSpeed | None = None, canceled: bool = False, validity: int | None = None,
           valid_until: dt.datetime | None = None) -> tuple[Batch, list[BatchChunk]]:
    gated = batching.gate_recipients(recipients(*numbers(n), "nope"), "mms", 1, PRICES)
    reservation = batching.reserve(gated, Tenant(id="t", balance_micros=10**9), NOW)
    template = new_leg(message_id="", leg_key="", tenant_id="t", group_id=None, to="", from_="+14155550000",
                       body="hi", subject=None, media_urls=[], channel="mms", encoding="GSM-7", segments=1,
                       scheduled_at=None, webhook_url=None, metadata={"campaign": "c", "k": "shared"},
                       request_id="req_1", now=NOW).with_(batch_id="bat_1", valid_until=valid_until)
    batch = Batch(id="bat_1", tenant_id="t", status=BatchStatus.CANCELED if canceled else BatchStatus.ACCEPTED,
                  total=n + 1, accepted=reservation.accepted, rejected=1, chunks=len(batching.chunks(n + 1)),
                  reserved_micros=reservation.cost_micros, template=template, created_at=NOW, request_id="req_1",
                  start_at=NOW, interval_seconds=speed.interval_seconds if speed else 0.0, validity_seconds=validity)
    return batch, batching.split("bat_1", "t", reservation.recipients, NOW, None)


def test_split_keeps_every_recipient_once_in_order():
    batch, parts = _batch(999)
    assert [c.index for c in parts] == [0, 1, 2] and [len(c.recipients) for c in parts] == [400, 400, 200]
    assert [r.to for c in parts for r in c.recipients][:999] == numbers(999)
    assert all(c.todo for c in parts)


def test_chunk_rows_are_each_recipients_one_row_in_its_decided_state():
    batch, parts = _batch(3)
    rows, refund = batching.chunk_rows(batch, parts[0], opted_out={numbers(3)[1]}, validity=None, now=NOW)
    assert [r.id for r in rows] == [batching.leg_id("bat_1", t) for t in [*numbers(3), "nope"]]
    assert [r.status for r in rows] == [Status.QUEUED, Status.FAILED, Status.QUEUED, Status.FAILED]
    assert [r.error_code for r in rows] == [None, "RECIPIENT_OPTED_OUT", None, "INVALID_PHONE_NUMBER"]
    assert refund == 20_000  # the opted-out recipient's reservation comes back; the invalid one had none
    assert [r.price_micros for r in rows] == [20_000, 0, 20_000, 0]
    assert all(r.batch_id == "bat_1" and r.tenant_id == "t" and r.body == "hi" for r in rows)
    again, _ = batching.chunk_rows(batch, parts[0], opted_out={numbers(3)[1]}, validity=None, now=NOW)
    assert again == rows  # a second run decides the very same rows (its create then finds them)


def test_a_recipients_own_metadata_and_client_ref_win_over_the_batchs():
    batch, _ = _batch(1)
    chunk = BatchChunk(batch_id="bat_1", tenant_id="t", index=0, recipients=(
        ChunkRecipient(to=numbers(1)[0], price_micros=20_000, slot=0, metadata={"k": "own"}, client_ref="r-1"),))
    (row,), _ = batching.chunk_rows(batch, chunk, set(), None, NOW)
    assert row.metadata == {"campaign": "c", "k": "own"} and row.client_ref == "r-1"


def test_a_speed_spreads_the_legs_turns_and_validity_counts_from_each_turn():
    batch, parts = _batch(1_000, speed=SendingSpeed(amount=600, time_unit="minute"), validity=3_600)
    rows = [row for c in parts for row in batching.chunk_rows(batch, c, set(), dt.timedelta(seconds=3_600), NOW)[0]]
    sendable = [r for r in rows if r.status is not Status.FAILED]
    assert len(sendable) == 1_000
    turns = [NOW + i * dt.timedelta(milliseconds=100) for i in range(1_000)]  # 600 a minute
    for row, turn in zip(sendable, turns, strict=True):
        if turn > NOW + dt.timedelta(seconds=1):
            assert row.status is Status.SCHEDULED and row.scheduled_at == turn
        else:  # due within a second: queued, its task runs at once
            assert row.status is Status.QUEUED and row.scheduled_at is None
        assert row.valid_until == turn + dt.timedelta(hours=1)
    assert sendable[-1].scheduled_at - NOW == dt.timedelta(seconds=99.9)  # 1,000 at 600 a minute: about 100 s


def test_a_canceled_batchs_unwritten_rows_are_written_canceled_and_refunded():
    batch, parts = _batch(2, canceled=True)
    rows, refund = batching.chunk_rows(batch, parts[0], set(), None, NOW)
    assert [r.status for r in rows] == [Status.CANCELED, Status.CANCELED, Status.FAILED]
    assert refund == 40_000 and all(r.price_micros == 0 for r in rows)


@pytest.mark.parametrize("body", [{}, {"batch_chunk": None}, {"batch_chunk": {"batch_id": "grp_1", "index": 0}},
                                  {"batch_chunk": {"batch_id": "bat_1/x", "index": 0}},
                                  {"batch_chunk": {"batch_id": "bat_1", "index": "0"}},
                                  {"batch_chunk": {"batch_id": "bat_1", "index": -1}},
                                  {"batch_chunk": {"batch_id": "bat_1", "index": True}}])
def test_a_chunk_task_body_that_is_not_ours_is_refused(body):
    with pytest.raises(ValueError):
        batching.chunk_of(body)


def test_a_chunk_task_body_round_trips():
    assert batching.chunk_of(batching.chunk_payload("bat_1", 24)) == ("bat_1", 24)


def test_a_recipients_own_fields_are_bounded():
    with pytest.raises(ValidationError):
        BatchRecipient(to="+14155550100", client_ref="x" * 2_049)
    with pytest.raises(ValidationError):
        BatchRecipient(to="+14155550100", metadata={"__name__": "x"})
    with pytest.raises(ValidationError):  # 15 of the batch's own keys and 6 more of the recipient's
        BatchRequest(body="x", metadata={f"k{i}": "v" for i in range(15)},
                     recipients=[{"to": "+14155550100", "metadata": {f"r{i}": "v" for i in range(6)}}])


def test_the_view_counts_progress_and_says_completed_when_every_row_is_final():
    batch, _ = _batch(3)
    running = batch_sending.view(batch, {"queued": 1, "delivered": 2, "failed": 1, "sent": 0})
    assert running["status"] == "accepted"
    assert running["progress"] == {"total": 4, "written": 4, "final": 3,
                                   "by_status": {"delivered": 2, "failed": 1, "queued": 1}}
    done = batch_sending.view(batch, {"delivered": 3, "failed": 1})
    assert done["status"] == "completed" and done["progress"]["final"] == 4
    assert batch_sending.view(batch)["reserved"] == {"amount": "0.0600", "currency": "USD"}
    assert "progress" not in batch_sending.view(batch)


def test_a_batch_without_a_speed_goes_at_the_deployments_pace():
    def pace(rate: float) -> float:
        return batch_sending._default_interval(SimpleNamespace(settings=SimpleNamespace(batch_legs_per_second=rate)))

    assert pace(10) == 0.1 and pace(0.5) == 2.0
    assert pace(0) == 0.0  # 0: all at once


def test_a_paced_leg_is_kept_the_retention_from_its_own_turn():
    batch, parts = _batch(3, speed=SendingSpeed(amount=1, time_unit="day"))
    batch = batch.with_(template=batch.template.with_(delete_at=NOW + dt.timedelta(days=7)))
    rows, _ = batching.chunk_rows(batch, parts[0], set(), None, NOW)
    sendable = [r for r in rows if r.status is not Status.FAILED]
    # one a day: the third is due in two days and kept seven days from then, never deleted before it is sent
    assert [r.delete_at - NOW for r in sendable] == [dt.timedelta(days=d) for d in (7, 8, 9)]
