"""SMS failover rules (no stack): when it is armed, what the SMS leg is, and that it is created once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from shared.carriers.provider import Kind, Outcome
from shared.carriers.telnyx_events import Report
from shared.ports import FixedClock, SpawnDecision, Spawned
from shared.rules import ids
from shared.rules.records import Leg, Rates, Tenant
from shared.rules.status import SendState, Status
from shared.services import failover
from shared.services.dispatch_steps import record_step
from shared.services.reports import apply_report
from tests.contract import failover_id
from tests.unit.fakes import FakeRuntime
from tests.unit.legs import HOOK, T0, at, claimed, leg

FAILOVER = {"text": "See it at example.com/p/1", "from": "+18005550000"}
US = Rates(sms_micros=8_000, mms_micros=20_000)


def mms(status: Status = Status.SENT, **fields) -> Leg:
    values = dict(sms_failover=dict(FAILOVER), provider_id="prov-1", send_state=SendState.ACCEPTED)
    values.update(fields)
    return leg(status, **values)


def _report(status: str, event_id: str = "evt-1") -> Report:
    errors = [{"code": "40008", "title": "Undeliverable"}] if status == "delivery_failed" else []
    return Report(event_id=event_id, event_type="message.finalized", occurred_at=at(5),
                  payload={"id": "prov-1", "to": [{"phone_number": "+14155550101", "status": status}],
                           "errors": errors})


# -- arming -------------------------------------------------------------------------------------------
def test_an_undelivered_report_links_the_failover_in_the_same_decision():
    decision = apply_report(mms(), _report("delivery_failed"), at(6))
    after = decision.after
    assert after is not None and after.status is Status.UNDELIVERED
    assert after.failover_message_id == failover_id(after.id)
    assert after.failover_due == at(6)


def test_a_provider_refusal_at_dispatch_links_the_failover():
    refused = Outcome(Kind.PERMANENT, http_status=400, code="40002", detail="rejected")
    decision = record_step(claimed(sms_failover=dict(FAILOVER)), refused, T0, at(1), max_attempts=5)
    assert decision.after is not None and decision.after.status is Status.FAILED
    assert decision.after.error_code == "PROVIDER_REJECTED"
    assert decision.after.failover_message_id == failover_id(decision.after.id)
    assert decision.refund_micros == 20_000  # the MMS is refunded in that same decision


@pytest.mark.parametrize("outcome, error_code", [
    (Outcome(Kind.OPT_OUT, http_status=409, code="40300"), "RECIPIENT_OPTED_OUT"),
    (Outcome(Kind.TRANSIENT, http_status=503, code="10007"), "PROVIDER_UNAVAILABLE"),  # retries exhausted
    (Outcome(Kind.AMBIGUOUS), "PROVIDER_OUTCOME_UNKNOWN"),  # the MMS may still arrive: no SMS
])
def test_no_failover_when_the_reason_is_not_the_carriers(outcome, error_code):
    decision = record_step(claimed(sms_failover=dict(FAILOVER), attempts=5), outcome, T0, at(1), max_attempts=5)
    assert decision.after is not None and decision.after.error_code == error_code
    assert decision.after.failover_message_id is None and decision.after.failover_due is None


@pytest.mark.parametrize("changed", [
    dict(sms_failover=None),  # none asked for
    dict(channel="sms"),  # an SMS has no SMS failover
    dict(status=Status.DELIVERED, error_code=None),
    dict(status=Status.EXPIRED, error_code="VALIDITY_EXPIRED"),
    dict(status=Status.CANCELED, error_code=None),
    dict(status=Status.FAILED, error_code="INSUFFICIENT_BALANCE"),  # our own gate
    dict(status=Status.FAILED, error_code="PROVIDER_REJECTED", provider_error_code="40300"),  # a STOP
])
def test_arm_leaves_other_legs_alone(changed):
    values = dict(status=Status.UNDELIVERED, error_code="DELIVERY_FAILED")
    values.update(changed)
    subject = mms(**values)
    assert failover.arm(subject) == subject


def test_arm_never_links_twice():
    linked = mms(Status.UNDELIVERED, error_code="DELIVERY_FAILED", failover_message_id="msg_other",
                 failover_due=None)
    assert failover.arm(linked) == linked


def test_a_replayed_or_later_report_does_not_arm_again():
    first = apply_report(mms(), _report("delivery_failed"), at(6)).after
    assert first is not None
    again = apply_report(first.with_(failover_due=None), _report("delivery_failed", "evt-2"), at(7))
    assert again.after is None or again.after.failover_due is None


def test_the_failover_id_is_derived_from_the_mms_leg_and_only_from_it():
    assert ids.failover_message_id("msg_a") == "msg_dol2r5ubmrnfyxbbmfpybucp"  # stable: stored links name it
    assert ids.failover_message_id("msg_a") == failover_id("msg_a")
    assert ids.failover_message_id("msg_b") == failover_id("msg_b") != failover_id("msg_a")


# -- the SMS leg --------------------------------------------------------------------------------------
def _due(**fields) -> Leg:
    values = dict(status=Status.UNDELIVERED, error_code="DELIVERY_FAILED",
                  failover_message_id=failover_id("msg_unit0001"), failover_due=at(6),
                  webhook_url=HOOK, webhook_failover_url="https://backup.example.com/h", client_ref="r-1",
                  metadata={"k": "v"}, delete_at=T0 + dt.timedelta(days=90))
    values.update(fields)
    return mms(**values)


def test_the_failover_is_an_sms_leg_queued_charged_and_linked_back():
    parent = _due()
    decision = failover.decide_spawn(parent, False, Tenant(id="tnt_unit", balance_micros=50_000), US, False, at(7))
    child = decision.child
    assert child is not None and child.id == parent.failover_message_id
    assert (child.status, child.channel, child.to, child.from_, child.body) == (
        Status.QUEUED, "sms", parent.to, "+18005550000", FAILOVER["text"])
    assert child.failover_of == parent.id and child.price_micros == 8_000 and child.segments == 1
    assert (child.webhook_url, child.webhook_failover_url, child.client_ref, child.metadata, child.delete_at) == (
        parent.webhook_url, parent.webhook_failover_url, "r-1", {"k": "v"}, parent.delete_at)
    assert decision.balance_micros == 42_000
    assert decision.parent is not None and decision.parent.failover_due is None
    assert decision.parent.failover_message_id == child.id


def test_a_long_failover_text_is_priced_per_segment():
    parent = _due(sms_failover={"text": "x" * 161, "from": "+18005550000"})
    decision = failover.decide_spawn(parent, False, Tenant(id="tnt_unit", balance_micros=50_000), US, False, at(7))
    assert decision.child is not None and decision.child.segments == 2 and decision.child.price_micros == 16_000
    assert decision.balance_micros == 34_000


@pytest.mark.parametrize("balance, rates, opted_out, code", [
    (7_999, US, False, "INSUFFICIENT_BALANCE"),
    (50_000, Rates(mms_micros=20_000), False, "PRICE_UNAVAILABLE"),
    (50_000, None, False, "PRICE_UNAVAILABLE"),
    (50_000, US, True, "RECIPIENT_OPTED_OUT"),
])
def test_a_failover_that_cannot_go_is_a_failed_leg_and_charges_nothing(balance, rates, opted_out, code):
    decision = failover.decide_spawn(_due(), False, Tenant(id="tnt_unit", balance_micros=balance), rates, opted_out,
                                     at(7))
    assert decision.child is not None
    assert (decision.child.status, decision.child.error_code, decision.child.price_micros) == (Status.FAILED, code, 0)
    assert decision.balance_micros is None
    assert decision.parent is not None and decision.parent.failover_due is None
    # the customer hears of it like of any failed message
    assert [e.type for e in decision.child.notifications.values()] == ["message.failed"]


def test_nothing_is_written_when_nothing_is_due():
    tenant = Tenant(id="tnt_unit", balance_micros=50_000)
    assert failover.decide_spawn(None, False, tenant, US, False, at(7)) == SpawnDecision(result="nothing due")
    done = _due(failover_due=None)
    assert failover.decide_spawn(done, False, tenant, US, False, at(7)).child is None


def test_a_child_that_exists_only_clears_the_parent():
    decision = failover.decide_spawn(_due(), True, Tenant(id="tnt_unit", balance_micros=50_000), US, False, at(7))
    assert decision.child is None and decision.balance_micros is None
    assert decision.parent is not None and decision.parent.failover_due is None


# -- launch over in-memory ports -------------------------------------------------------------------------
@dataclass
class SpawningLegs:
    """An in-memory store with the one-commit spawn semantics: the child is created only if absent."""

    legs: dict[str, Leg]
    tenant: Tenant
    spawns: list[str] = field(default_factory=list)

    def get(self, message_id: str) -> Leg | None:
        return self.legs.get(message_id)

    def spawn(self, parent_id: str, child_id: str, tenant_id: str,
              decide: Callable[[Leg | None, bool, Tenant], SpawnDecision]) -> Spawned:
        before = self.legs.get(parent_id)
        decision = decide(before, child_id in self.legs, self.tenant)
        if decision.child is not None:
            assert child_id not in self.legs, "created twice"
            self.legs[child_id] = decision.child
            self.spawns.append(child_id)
        if decision.parent is not None:
            self.legs[parent_id] = decision.parent
        if decision.balance_micros is not None:
            self.tenant = Tenant(id=self.tenant.id, balance_micros=decision.balance_micros)
        return Spawned(before=before, parent=decision.parent, child=decision.child, result=decision.result)


class Accounts:
    def gate_reads(self, tenant_id, numbers, countries):
        return set(), {"US": US}


def test_launch_creates_one_sms_and_one_task_however_often_it_runs():
    rt = FakeRuntime(FixedClock(at(7)))
    parent = _due()
    store = SpawningLegs({parent.id: parent}, Tenant(id="tnt_unit", balance_micros=50_000))
    rt.legs = store  # type: ignore[assignment]
    rt.accounts = Accounts()  # type: ignore[attr-defined]

    results = [failover.launch(rt, parent.id) for _ in range(3)]  # type: ignore[arg-type]

    assert results == ["queued", "nothing due", "nothing due"]
    assert store.spawns == [failover_id(parent.id)]
    assert [t.message_id for t in rt.queue.dispatches] == store.spawns
    assert store.tenant.balance_micros == 42_000


def test_launch_never_raises_and_leaves_the_failover_due():
    class Broken(SpawningLegs):
        def spawn(self, *args, **kwargs):
            raise RuntimeError("storage down")

    rt = FakeRuntime(FixedClock(at(7)))
    parent = _due()
    rt.legs = Broken({parent.id: parent}, Tenant(id="tnt_unit"))  # type: ignore[assignment]
    rt.accounts = Accounts()  # type: ignore[attr-defined]
    assert failover.launch(rt, parent.id) == "deferred"  # type: ignore[arg-type]
    assert rt.legs.get(parent.id).failover_due == at(6)  # the sweeper's cue stays
    assert rt.queue.dispatches == []
