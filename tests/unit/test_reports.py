"""Applying provider reports (shared/services/reports.py ``apply_report``), pure. Reports arrive duplicated, late and
out of order; each is applied only where the status machine allows. A late carrier report on a leg closed
``sent``/final is applied (the latest truth, never backwards); terminal statuses never change."""

from __future__ import annotations

import pytest

from shared.carriers.telnyx_events import Report
from shared.rules.ids import notify_event_id
from shared.rules.status import SendState, Status
from shared.services.reports import apply_report
from tests.unit.legs import HOOK, T0, at, claimed

S, SS = Status, SendState


def report(event_type: str, status: str, *, provider_id: str | None = "tx-1", event_id: str = "evt-1",
           seconds: float = 1, errors: list | None = None) -> Report:
    payload: dict = {"to": [{"phone_number": "+14155550101", "status": status}]}
    if provider_id:
        payload["id"] = provider_id
    if errors is not None:
        payload["errors"] = errors
    return Report(event_id=event_id, event_type=event_type, occurred_at=at(seconds), payload=payload)


SENT = report("message.sent", "queued", event_id="evt-sent")
DELIVERED = report("message.finalized", "delivered", event_id="evt-final", seconds=2)


def _sent_leg(**fields):
    return claimed(at_=T0, webhook_url=HOOK, **fields).with_(
        status=S.SENT, send_state=SS.ACCEPTED, provider_id="tx-1", sent_at=at(0.5))


def test_in_order_sent_then_delivered():
    # Dispatch recorded sent; message.sent adds nothing, message.finalized delivers.
    leg0 = _sent_leg()
    first = apply_report(leg0, SENT, at(1))
    assert first.after is None  # nothing to write: already sent
    second = apply_report(leg0, DELIVERED, at(2))
    after = second.after
    assert after is not None and second.result == "applied"
    assert after.status is S.DELIVERED and after.last_report_at == at(2)
    assert (after.history[-1].from_, after.history[-1].to, after.history[-1].event_id) == (
        "sent", "delivered", "evt-final")
    assert notify_event_id(after.id, "delivered") in after.notifications


def test_reports_before_dispatch_recorded_the_answer():
    # The provider's reports overtake dispatch's own write: the leg learns its id and moves on.
    sending = claimed(at_=T0, webhook_url=HOOK)
    after = apply_report(sending, SENT, at(1)).after
    assert after is not None
    assert (after.status, after.provider_id, after.send_state) == (S.SENT, "tx-1", SS.ACCEPTED)
    delivered = apply_report(after, DELIVERED, at(2)).after
    assert delivered is not None and delivered.status is S.DELIVERED


def test_out_of_order_finalized_before_sent():
    sending = claimed(at_=T0, webhook_url=HOOK)
    delivered = apply_report(sending, DELIVERED, at(2)).after
    assert delivered is not None
    assert (delivered.status, delivered.provider_id, delivered.send_state) == (S.DELIVERED, "tx-1", SS.ACCEPTED)
    late_sent = apply_report(delivered, SENT, at(3))
    assert late_sent.after is None  # never backwards
    assert late_sent.result == "stale or duplicate status ignored"
    assert [h.to for h in delivered.history].count("sent") == 0  # went straight from sending


def test_a_duplicate_report_changes_nothing():
    once = apply_report(_sent_leg(), DELIVERED, at(2)).after
    assert once is not None
    twice = apply_report(once, DELIVERED, at(3))
    assert twice.after is None


@pytest.mark.parametrize("terminal", [S.DELIVERED, S.UNDELIVERED, S.FAILED])
@pytest.mark.parametrize("late", [
    report("message.finalized", "delivered"), report("message.finalized", "delivery_failed"),
    report("message.finalized", "delivery_unconfirmed"), report("message.sent", "sent"),
])
def test_terminal_statuses_never_change(terminal, late):
    done = _sent_leg().with_(status=terminal)
    assert apply_report(done, late, at(9)).after is None


def test_a_late_delivered_after_sent_final_is_applied_and_stays_final():
    closed = _sent_leg().with_(final=True)
    decision = apply_report(closed, DELIVERED, at(9))
    after = decision.after
    assert after is not None and decision.result == "applied"
    assert after.status is S.DELIVERED and after.is_final
    assert notify_event_id(after.id, "delivered") in after.notifications  # announced like any other


def test_delivery_unconfirmed_on_a_sent_leg_makes_it_final_without_a_status_change():
    leg0 = _sent_leg()
    decision = apply_report(leg0, report("message.finalized", "delivery_unconfirmed", event_id="evt-u"), at(5))
    after = decision.after
    assert after is not None
    assert (after.status, after.final, after.is_final) == (S.SENT, True, True)
    assert after.history[-1].from_ == after.history[-1].to == "sent"
    assert after.history[-1].event_id == "evt-u"
    assert len(after.history) == len(leg0.history) + 1


def test_delivery_unconfirmed_before_dispatch_recorded_sent():
    decision = apply_report(claimed(at_=T0), report("message.finalized", "delivery_unconfirmed"), at(5))
    after = decision.after
    assert after is not None
    assert (after.status, after.final, after.provider_id) == (S.SENT, True, "tx-1")


def test_delivery_unconfirmed_twice_changes_nothing_the_second_time():
    once = apply_report(_sent_leg(), report("message.finalized", "delivery_unconfirmed"), at(5)).after
    assert once is not None
    assert apply_report(once, report("message.finalized", "delivery_unconfirmed", event_id="e2"), at(6)).after is None


def test_a_report_for_another_provider_message_is_refused():
    decision = apply_report(_sent_leg(), report("message.finalized", "delivered", provider_id="tx-OTHER"), at(2))
    assert decision.after is None and decision.result == "unknown message"


def test_a_report_for_no_leg():
    assert apply_report(None, DELIVERED, at(2)).result == "unknown message"


def test_delivery_failed_records_the_carrier_error():
    failed = report("message.finalized", "delivery_failed",
                    errors=[{"code": "40008", "title": "Undeliverable", "detail": "carrier said no"}])
    after = apply_report(_sent_leg(), failed, at(3)).after
    assert after is not None
    assert (after.status, after.error_code, after.error_message, after.provider_error_code) == (
        S.UNDELIVERED, "DELIVERY_FAILED", "Undeliverable", "40008")
    assert notify_event_id(after.id, "undelivered") in after.notifications


def test_sending_failed_fails_the_leg():
    after = apply_report(_sent_leg(), report("message.finalized", "sending_failed", errors=[{"code": 40014}]),
                         at(3)).after
    assert after is not None
    assert (after.status, after.error_code, after.provider_error_code) == (S.FAILED, "DELIVERY_FAILED", "40014")


def test_a_queued_status_in_a_finalized_report_only_teaches_the_id():
    sending = claimed(at_=T0)
    decision = apply_report(sending, report("message.finalized", "queued"), at(1))
    after = decision.after
    assert after is not None
    assert (after.status, after.provider_id) == (S.SENDING, "tx-1")
    assert after.history == sending.history


def test_a_report_proves_the_provider_has_it_even_after_an_ambiguous_attempt():
    ambiguous = claimed(at_=T0).with_(send_state=SS.AMBIGUOUS, ambiguous_since=T0)
    after = apply_report(ambiguous, SENT, at(1)).after
    assert after is not None and after.send_state is SS.ACCEPTED and after.status is S.SENT


def test_dispatchs_answer_is_recorded_after_a_report_taught_the_id():
    from shared.carriers.provider import Kind, Outcome
    from shared.services.dispatch_steps import record_step

    sending = claimed(at_=T0)
    taught = apply_report(sending, report("message.finalized", "sending"), at(1)).after
    assert taught is not None and taught.provider_id == "tx-1" and taught.status is S.SENDING
    recorded = record_step(taught, Outcome(Kind.ACCEPTED, provider_id="tx-1"), T0, at(2), 5).after
    assert recorded is not None and recorded.status is S.SENT and recorded.send_state is SS.ACCEPTED


# -- a leg given up as PROVIDER_OUTCOME_UNKNOWN that the provider had after all ---------------------------
def _unknown_leg():
    return claimed(at_=T0, webhook_url=HOOK, price_micros=20_000).with_(
        status=S.FAILED, send_state=SS.FAILED, error_code="PROVIDER_OUTCOME_UNKNOWN",
        error_message="unknown")


def test_a_report_revives_an_unknown_failure_and_charges_it_once():
    decision = apply_report(_unknown_leg(), DELIVERED, at(5))
    after = decision.after
    assert after is not None
    assert (after.status, after.send_state, after.provider_id) == (S.DELIVERED, SS.ACCEPTED, "tx-1")
    assert after.error_code is None and after.error_message is None
    assert decision.refund_micros == -20_000  # the refund given at the failure is taken back
    assert notify_event_id(after.id, "delivered") in after.notifications
    # The same report again, or a later one, changes the status no further and charges nothing more.
    again = apply_report(after, DELIVERED, at(6))
    assert again.refund_micros == 0
    assert again.after is None or again.after.status is S.DELIVERED


def test_a_sent_report_revives_it_as_sent_and_its_final_report_charges_nothing_more():
    sent = apply_report(_unknown_leg(), SENT, at(5))
    assert sent.after is not None and sent.after.status is S.SENT and sent.refund_micros == -20_000
    final = apply_report(sent.after, DELIVERED, at(6))
    assert final.after is not None and final.after.status is S.DELIVERED and final.refund_micros == 0


@pytest.mark.parametrize("code", ["PROVIDER_REJECTED", "RECIPIENT_OPTED_OUT", "PROVIDER_UNAVAILABLE", None])
def test_no_other_failure_is_revived(code):
    failed = _unknown_leg().with_(error_code=code)
    decision = apply_report(failed, DELIVERED, at(5))
    assert decision.refund_micros == 0
    assert decision.after is None or decision.after.status is S.FAILED
