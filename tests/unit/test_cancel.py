"""Cancel (shared/services/canceling.py), pure decisions and the service over in-memory ports.

Rules (docs/decisions.md): a leg the provider does not have yet (``queued``, ``scheduled``) ends
``canceled``, refunded, with ``message.canceled``; any other leg is not cancelable and keeps its status;
canceling twice answers as once; another tenant's leg does not exist. The cancel and dispatch's claim
decide on the version they read, so whichever commits second sees the other's status.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.ports import FixedClock
from shared.rules.errors import ApiError
from shared.rules.ids import notify_event_id
from shared.rules.records import Group
from shared.rules.status import SendState, Status
from shared.services.canceling import cancel_group, cancel_message, cancel_step
from shared.services.dispatch_steps import Action, claim_step
from tests.unit.fakes import FakeRuntime
from tests.unit.legs import HOOK, T0, at, claimed, leg

S, SS = Status, SendState
PRICE = 20_000
TENANT = "tnt_unit"


@pytest.mark.parametrize("status", [S.QUEUED, S.SCHEDULED])
def test_a_leg_the_provider_does_not_have_is_canceled_and_refunded(status):
    before = leg(status, webhook_url=HOOK, scheduled_at=at(3600) if status is S.SCHEDULED else None)
    decision = cancel_step(before, tenant_id=TENANT, now=at(5))
    after = decision.after
    assert decision.result.canceled is True and decision.result.status is S.CANCELED
    assert after.status is S.CANCELED and after.is_final
    assert decision.refund_micros == PRICE
    assert after.notifications[notify_event_id(before.id, "canceled")].type == "message.canceled"
    assert (after.history[-1].from_, after.history[-1].to) == (status.value, "canceled")
    assert after.error_code is None  # the customer's own choice, not an error


def test_canceling_a_canceled_leg_again_answers_canceled_and_writes_nothing():
    first = cancel_step(leg(S.QUEUED), tenant_id=TENANT, now=at(5)).after
    again = cancel_step(first, tenant_id=TENANT, now=at(9))
    assert again.result.canceled is True and again.after is None and again.refund_micros == 0


@pytest.mark.parametrize("before", [
    leg(S.PENDING),  # still being accepted: its accept would charge it after the cancel
    claimed(),  # dispatch holds it: the provider may have it
    claimed(send_state=SS.RETRYABLE),
    leg(S.SENT, provider_id="tx-1"),
    leg(S.DELIVERED, provider_id="tx-1"),
    leg(S.UNDELIVERED, provider_id="tx-1"),
    leg(S.FAILED),
    leg(S.EXPIRED),
])
def test_any_other_leg_is_not_cancelable_and_keeps_its_status(before):
    decision = cancel_step(before, tenant_id=TENANT, now=at(5))
    assert decision.result.canceled is False and decision.result.status is before.status
    assert decision.after is None and decision.refund_micros == 0


def test_another_tenants_leg_does_not_exist():
    decision = cancel_step(leg(S.QUEUED), tenant_id="tnt_other", now=at(5))
    assert decision.result is None and decision.after is None
    assert cancel_step(None, tenant_id=TENANT, now=at(5)).result is None


def test_a_dispatch_task_arriving_after_the_cancel_sends_nothing():
    canceled = cancel_step(leg(S.QUEUED), tenant_id=TENANT, now=at(5)).after
    decision = claim_step(canceled, at(6))
    assert decision.result.action is Action.DONE and decision.after is None


def test_a_cancel_arriving_after_the_claim_is_refused():
    claim = claim_step(leg(S.QUEUED), at(5))
    assert claim.result.action is Action.SEND
    assert cancel_step(claim.after, tenant_id=TENANT, now=at(6)).result.canceled is False


# -- the service over in-memory ports ---------------------------------------------------------------------
class Runtime(FakeRuntime):
    def __init__(self) -> None:
        super().__init__(FixedClock(T0 + dt.timedelta(seconds=5)))
        self.groups: dict[str, Group] = {}
        self.legs.get_group = self.groups.get  # type: ignore[attr-defined]

    @staticmethod
    def concurrently(*calls):
        with ThreadPoolExecutor(4) as pool:
            return [f.result() for f in [pool.submit(c) for c in calls]]


def _with(rt: Runtime, *legs_):
    for one in legs_:
        rt.legs.legs[one.id] = one


def test_cancel_message_answers_the_canceled_message_and_enqueues_its_event():
    rt = Runtime()
    _with(rt, leg(S.SCHEDULED, scheduled_at=at(3600), webhook_url=HOOK))
    data = cancel_message(rt, TENANT, "msg_unit0001")
    assert data["id"] == "msg_unit0001" and data["status"] == "canceled" and data["final"] is True
    assert rt.legs.refunds == [(TENANT, PRICE)]
    assert rt.queue.notifies == [(notify_event_id("msg_unit0001", "canceled"), "msg_unit0001")]
    # Again: the same answer, no second refund or event.
    assert cancel_message(rt, TENANT, "msg_unit0001")["status"] == "canceled"
    assert rt.legs.refunds == [(TENANT, PRICE)] and len(rt.queue.notifies) == 1


def test_cancel_message_of_a_sent_leg_is_409_naming_its_status():
    rt = Runtime()
    _with(rt, leg(S.SENT, provider_id="tx-1"))
    with pytest.raises(ApiError) as caught:
        cancel_message(rt, TENANT, "msg_unit0001")
    assert caught.value.status == 409 and caught.value.code == "NOT_CANCELABLE"
    assert caught.value.details == [{"field": "status", "issue": "sent"}]
    assert rt.legs.get("msg_unit0001").status is S.SENT and rt.legs.refunds == []


@pytest.mark.parametrize("message_id", ["msg_unit0001", "msg_missing", "grp_notamessage"])
def test_cancel_message_of_another_tenant_or_of_nothing_is_404(message_id):
    rt = Runtime()
    _with(rt, leg(S.QUEUED, tenant_id="tnt_other"))
    with pytest.raises(ApiError) as caught:
        cancel_message(rt, TENANT, message_id)
    assert caught.value.status == 404
    assert rt.legs.get("msg_unit0001").status is S.QUEUED


def test_cancel_group_cancels_what_it_can_and_answers_per_leg_in_request_order():
    rt = Runtime()
    legs_ = [leg(S.QUEUED, id="msg_a", to="+14155550101"), leg(S.SENT, id="msg_b", to="+14155550102"),
             leg(S.SCHEDULED, id="msg_c", to="+14155550103", scheduled_at=at(60)),
             leg(S.CANCELED, id="msg_d", to="+14155550104"), leg(S.FAILED, id="msg_e", to="+14155550105")]
    _with(rt, *legs_)
    rt.groups["grp_1"] = Group(id="grp_1", tenant_id=TENANT, total=5, created_at=T0, request_id="req",
                               message_ids=tuple(one.id for one in legs_))
    answer = cancel_group(rt, TENANT, "grp_1")
    assert [(m["id"], m["status"], m["canceled"]) for m in answer["messages"]] == [
        ("msg_a", "canceled", True), ("msg_b", "sent", False), ("msg_c", "canceled", True),
        ("msg_d", "canceled", True), ("msg_e", "failed", False)]
    assert answer["messages"][1]["error_code"] == "NOT_CANCELABLE"
    assert "error_code" not in answer["messages"][0]
    assert answer["summary"] == {"total": 5, "canceled": 3, "not_cancelable": 2}
    assert sorted(rt.legs.refunds) == [(TENANT, PRICE), (TENANT, PRICE)]  # a and c; d was refunded before


def test_cancel_group_of_another_tenant_is_404():
    rt = Runtime()
    _with(rt, leg(S.QUEUED, id="msg_a"))
    rt.groups["grp_1"] = Group(id="grp_1", tenant_id="tnt_other", total=1, created_at=T0, request_id="req",
                               message_ids=("msg_a",))
    for group_id in ("grp_1", "grp_missing", "msg_a"):
        with pytest.raises(ApiError) as caught:
            cancel_group(rt, TENANT, group_id)
        assert caught.value.status == 404
    assert rt.legs.get("msg_a").status is S.QUEUED
