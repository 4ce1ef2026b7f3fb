"""``dispatch`` end to end over in-memory ports and a fixed clock: the provider is called only while the
leg is claimed, an ambiguous leg is looked up before any resend, and routine waits answer 2xx with a
follow-up task."""

from __future__ import annotations

import datetime as dt

from shared.carriers.provider import Kind, Lookup, LookupState, Outcome
from shared.ports import FixedClock
from shared.rules.status import SendState, Status
from shared.services.dispatching import dispatch
from tests.unit.fakes import FakeRuntime
from tests.unit.legs import T0, leg

S, SS = Status, SendState


def _runtime(horizon_seconds=600, **leg_fields):
    rt = FakeRuntime(FixedClock(T0), horizon_seconds=horizon_seconds)
    queued = leg(S.QUEUED, **({"price_micros": 20_000} | leg_fields))
    rt.legs.legs[queued.id] = queued
    return rt, queued.id


def test_a_queued_leg_is_sent_once_and_recorded_sent():
    rt, message_id = _runtime()
    rt.provider.answers.append(Outcome(Kind.ACCEPTED, provider_id="tx-1", http_status=200))

    answer = dispatch(rt, message_id)

    assert answer.status == 200
    assert len(rt.provider.sent) == 1
    stored = rt.legs.get(message_id)
    assert stored is not None and (stored.status, stored.provider_id) == (S.SENT, "tx-1")
    assert rt.provider.sent[0].idempotency_key == f"mmsgate:{message_id}"
    assert "leg=" + message_id in rt.provider.sent[0].webhook_url


def test_no_answer_from_the_provider_answers_2xx_and_schedules_a_reconcile():
    rt, message_id = _runtime()
    rt.provider.answers.append(Outcome(Kind.AMBIGUOUS, detail="timeout"))
    first = dispatch(rt, message_id)
    assert first.status == 200
    assert len(rt.provider.sent) == 1
    assert len(rt.queue.dispatches) == 1
    follow_up = rt.queue.dispatches[0]
    assert follow_up.message_id == message_id and follow_up.at is not None and follow_up.at > T0


def test_an_ambiguous_leg_the_provider_has_is_recorded_without_a_second_send():
    rt, message_id = _runtime()
    rt.provider.answers.append(Outcome(Kind.AMBIGUOUS, detail="dropped"))
    dispatch(rt, message_id)
    rt.clock.advance(seconds=5)
    rt.provider.lookups.append(Lookup(LookupState.FOUND, provider_id="tx-9", status="queued"))

    answer = dispatch(rt, message_id)

    assert answer.status == 200
    assert len(rt.provider.sent) == 1  # only the first attempt
    assert len(rt.provider.asked) == 1
    stored = rt.legs.get(message_id)
    assert stored is not None and (stored.status, stored.provider_id, stored.send_state) == (
        S.SENT, "tx-9", SS.ACCEPTED)


def test_absent_before_the_horizon_is_not_evidence_and_past_it_the_leg_is_sent_again():
    # Telnyx's detail records appear only after the message is sent, with an undocumented lag: a search made
    # too soon after the lost answer finds nothing even when Telnyx has the message.
    rt, message_id = _runtime(media=(), horizon_seconds=60)
    rt.provider.answers += [Outcome(Kind.AMBIGUOUS), Outcome(Kind.ACCEPTED, provider_id="tx-2")]
    dispatch(rt, message_id)
    rt.clock.advance(seconds=5)
    rt.provider.lookups.append(Lookup(LookupState.ABSENT))

    dispatch(rt, message_id)

    assert len(rt.provider.sent) == 1  # absent 5 s after the attempt proves nothing
    waiting = rt.legs.get(message_id)
    assert waiting is not None and (waiting.status, waiting.send_state) == (S.SENDING, SS.AMBIGUOUS)
    follow_up = rt.queue.dispatches[-1].at
    assert follow_up is not None and T0 + dt.timedelta(seconds=5) < follow_up <= T0 + dt.timedelta(seconds=61)

    rt.clock.advance(seconds=56)  # 61 s after the attempt: past the 60 s horizon
    rt.provider.lookups.append(Lookup(LookupState.ABSENT))
    dispatch(rt, message_id)

    assert len(rt.provider.sent) == 2
    assert rt.provider.sent[0] == rt.provider.sent[1]  # same key, byte-identical body
    stored = rt.legs.get(message_id)
    assert stored is not None and stored.status is S.SENT and stored.attempts == 2
    assert stored.last_attempt_at == T0 + dt.timedelta(seconds=61)  # the new attempt's own horizon starts


def test_a_resent_leg_whose_answer_is_lost_again_waits_a_horizon_from_the_new_attempt():
    rt, message_id = _runtime(media=(), horizon_seconds=60)
    rt.provider.answers += [Outcome(Kind.AMBIGUOUS), Outcome(Kind.AMBIGUOUS)]
    dispatch(rt, message_id)
    rt.clock.advance(seconds=61)
    rt.provider.lookups.append(Lookup(LookupState.ABSENT))
    dispatch(rt, message_id)  # absent past the horizon: sent again, and that answer is lost too
    assert len(rt.provider.sent) == 2
    rt.clock.advance(seconds=30)  # 91 s after the first attempt, 30 s after the second
    rt.provider.lookups.append(Lookup(LookupState.ABSENT))
    dispatch(rt, message_id)
    assert len(rt.provider.sent) == 2


def test_a_recipient_who_opted_out_after_the_accept_is_not_sent_and_is_refunded():
    rt, message_id = _runtime(media=())
    stored = rt.legs.get(message_id)
    assert stored is not None and stored.price_micros > 0
    rt.legs.opted_out.add((stored.tenant_id, stored.to))

    answer = dispatch(rt, message_id)

    assert answer.status == 200 and rt.provider.sent == []
    ended = rt.legs.get(message_id)
    assert ended is not None and (ended.status, ended.error_code) == (S.FAILED, "RECIPIENT_OPTED_OUT")
    assert rt.legs.refunds == [(stored.tenant_id, stored.price_micros)]
    assert rt.legs.opt_outs == []  # already on the list: nothing written there again


def test_an_opt_out_stops_a_retry_but_not_a_leg_the_provider_may_have():
    rt, message_id = _runtime(media=(), horizon_seconds=60)
    rt.provider.answers += [Outcome(Kind.TRANSIENT, http_status=503)]
    dispatch(rt, message_id)  # refused: retryable, provably not at the provider
    stored = rt.legs.get(message_id)
    assert stored is not None
    rt.legs.opted_out.add((stored.tenant_id, stored.to))
    rt.clock.advance(seconds=5)
    dispatch(rt, message_id)
    assert len(rt.provider.sent) == 1
    ended = rt.legs.get(message_id)
    assert ended is not None and (ended.status, ended.error_code) == (S.FAILED, "RECIPIENT_OPTED_OUT")

    rt2, other = _runtime(media=(), horizon_seconds=60)
    rt2.provider.answers += [Outcome(Kind.AMBIGUOUS)]
    dispatch(rt2, other)
    leg2 = rt2.legs.get(other)
    assert leg2 is not None
    rt2.legs.opted_out.add((leg2.tenant_id, leg2.to))
    rt2.clock.advance(seconds=5)
    rt2.provider.lookups.append(Lookup(LookupState.FOUND, provider_id="tx-9"))
    dispatch(rt2, other)  # the provider had it before the STOP: it is recorded as sent, not failed
    found = rt2.legs.get(other)
    assert found is not None and (found.status, found.provider_id) == (S.SENT, "tx-9")


def test_an_ambiguous_leg_is_not_sent_while_the_provider_cannot_tell():
    rt, message_id = _runtime()
    rt.provider.answers.append(Outcome(Kind.AMBIGUOUS))
    dispatch(rt, message_id)
    for _ in range(3):
        rt.clock.advance(minutes=1)
        rt.provider.lookups.append(Lookup(LookupState.UNKNOWN, detail="503"))
        answer = dispatch(rt, message_id)
        assert answer.status == 200
    assert len(rt.provider.sent) == 1
    stored = rt.legs.get(message_id)
    assert stored is not None and (stored.status, stored.send_state) == (S.SENDING, SS.AMBIGUOUS)


def test_a_live_claim_answers_2xx_and_names_a_follow_up_at_the_lease_end():
    rt, message_id = _runtime()
    live = leg(S.SENDING, send_state=SS.IN_FLIGHT, claimed_at=T0, first_claimed_at=T0, attempts=1)
    rt.legs.legs[message_id] = live
    rt.clock.advance(seconds=2)

    answer = dispatch(rt, message_id)

    assert answer.status == 200
    assert rt.provider.sent == []
    # The lease is the deployment's DISPATCH_CLAIM_LEASE_SECONDS (20 s in FakeRuntime), not the default.
    assert [task.at for task in rt.queue.dispatches] == [T0 + dt.timedelta(seconds=20)]


def test_signed_media_urls_do_not_change_between_attempts():
    from shared.rules.records import StoredMedia

    rt, message_id = _runtime(media=(StoredMedia(object="t/a.png", content_type="image/png", size=10),))
    rt.provider.answers += [Outcome(Kind.TRANSIENT, http_status=500), Outcome(Kind.ACCEPTED, provider_id="tx-3")]
    dispatch(rt, message_id)
    rt.clock.advance(seconds=40)
    dispatch(rt, message_id)
    assert len(rt.provider.sent) == 2
    assert rt.provider.sent[0].media_urls == rt.provider.sent[1].media_urls
    assert rt.provider.sent[0].media_urls[0].endswith(T0.isoformat())  # signed as of the first claim


class _Batches:
    """The one batch read dispatch makes for a batch's leg."""

    def __init__(self, batch) -> None:
        self.batch = batch

    def get(self, batch_id: str):
        return self.batch if self.batch is not None and self.batch.id == batch_id else None


def _batch(status):
    from shared.rules.records import Batch, BatchStatus

    template = leg(S.PENDING)
    return Batch(id="bat_1", tenant_id=template.tenant_id, status=BatchStatus(status), total=1, accepted=1, rejected=0,
                 chunks=1, reserved_micros=20_000, template=template, created_at=T0, request_id="req_1", start_at=T0)


def test_a_canceled_batchs_queued_leg_is_canceled_and_refunded_not_sent():
    rt, message_id = _runtime(batch_id="bat_1", price_micros=20_000)
    rt.batches = _Batches(_batch("canceled"))
    answer = dispatch(rt, message_id, "bat_1")
    assert answer.status == 200 and rt.provider.sent == []
    stored = rt.legs.get(message_id)
    assert stored is not None and stored.status is S.CANCELED
    assert rt.legs.refunds == [(stored.tenant_id, 20_000)]


def test_a_canceled_batchs_leg_already_claimed_is_finished_not_canceled():
    rt, message_id = _runtime(batch_id="bat_1", price_micros=20_000)
    rt.batches = _Batches(_batch("accepted"))
    rt.provider.answers.append(Outcome(Kind.AMBIGUOUS, detail="timeout"))
    dispatch(rt, message_id, "bat_1")  # claimed; the answer was lost
    rt.batches = _Batches(_batch("canceled"))  # the cancel comes now: the provider may have it
    rt.provider.lookups.append(Lookup(LookupState.FOUND, provider_id="tx-9"))
    rt.clock.at = T0 + dt.timedelta(seconds=5)
    dispatch(rt, message_id, "bat_1")
    stored = rt.legs.get(message_id)
    assert stored is not None and (stored.status, stored.provider_id) == (S.SENT, "tx-9")
    assert rt.legs.refunds == [] and len(rt.provider.sent) == 1


def test_an_accepted_batchs_leg_is_sent_as_any_other():
    rt, message_id = _runtime(batch_id="bat_1")
    rt.batches = _Batches(_batch("accepted"))
    rt.provider.answers.append(Outcome(Kind.ACCEPTED, provider_id="tx-1", http_status=200))
    assert dispatch(rt, message_id, "bat_1").status == 200 and len(rt.provider.sent) == 1


def test_a_keyword_reply_goes_to_the_recipient_who_just_opted_out():
    # The STOP confirmation is itself a message to a number now on the list: it must still go.
    rt, message_id = _runtime(media=(), in_reply_to="msg_inbound1")
    stored = rt.legs.get(message_id)
    assert stored is not None
    rt.legs.opted_out.add((stored.tenant_id, stored.to))
    rt.provider.answers.append(Outcome(Kind.ACCEPTED, provider_id="tx-r", http_status=200))

    dispatch(rt, message_id)

    assert len(rt.provider.sent) == 1
    sent = rt.legs.get(message_id)
    assert sent is not None and sent.status is S.SENT


def test_the_claim_reads_the_opt_out_list_only_for_a_leg_it_could_stop():
    rt, message_id = _runtime(media=())
    rt.provider.answers.append(Outcome(Kind.AMBIGUOUS))
    dispatch(rt, message_id)  # queued: read, then sent and its answer lost
    assert rt.legs.opt_out_reads == 1
    rt.clock.advance(seconds=5)
    rt.provider.lookups.append(Lookup(LookupState.ABSENT))
    dispatch(rt, message_id)  # ambiguous: the provider may have it, so an opt-out cannot stop it; no read
    assert rt.legs.opt_out_reads == 1
