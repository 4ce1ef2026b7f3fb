"""Group conversation rules (no stack): one task, one claim, members following the one group_mms."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pydantic
import pytest

from infra.telnyx import group_request_body, names_leg
from shared.carriers.provider import GroupOutboundMessage, Kind, Lookup, LookupState, Outcome
from shared.carriers.telnyx_events import Report
from shared.ports import ConversationDecision, ConversationMutation, DispatchTask, FixedClock
from shared.rules import ids
from shared.rules.records import Conversation, Leg
from shared.rules.status import SendState, Status
from shared.services import conversation
from shared.services.dispatch_steps import Action
from tests.contract import failover_id
from tests.unit.fakes import FakeRuntime
from tests.unit.legs import HOOK, T0, at, leg

GROUP = "grp_unit"
CNV = ids.conversation_id(GROUP)
LEASE = dt.timedelta(seconds=20)


def member(n: int, status: Status = Status.QUEUED, **fields) -> Leg:
    values = dict(id=f"msg_member{n}", leg_key=f"group-mms:{GROUP}:+1415555010{n}", to=f"+1415555010{n}",
                  group_id=GROUP, conversation_id=CNV, webhook_url=HOOK)
    values.update(fields)
    return leg(status, **values)


def _apply(conv: Conversation | None, legs: list[Leg], decision: ConversationDecision) -> tuple:
    conv = decision.conversation or conv
    by_id = {m.id: m for m in legs}
    by_id.update({m.id: m for m in decision.legs})
    return conv, sorted(by_id.values(), key=lambda m: m.id)


# -- accept -------------------------------------------------------------------------------------------
def test_a_conversations_accepted_legs_share_one_task():
    legs = [member(1), member(2), member(3)]
    tasks = [DispatchTask(m.id, ids.task_name(m.leg_key)) for m in legs]
    [task] = conversation.one_task(tasks, legs)
    assert task.message_id == "msg_member1"
    assert task.name == ids.task_name(conversation.key(GROUP))


def test_other_sends_keep_a_task_per_leg():
    legs = [member(1, conversation_id=None), member(2, conversation_id=None)]
    tasks = [DispatchTask(m.id, ids.task_name(m.leg_key)) for m in legs]
    assert conversation.one_task(tasks, legs) == tasks


# -- claim --------------------------------------------------------------------------------------------
def test_the_first_claim_fixes_the_members_and_moves_them_to_sending():
    legs = [member(1), member(2, Status.CANCELED), member(3), member(4, Status.FAILED)]
    decision = conversation.claim(None, legs, CNV, GROUP, at(1), LEASE)
    assert decision.result is not None and decision.result.action is Action.SEND
    conv = decision.conversation
    assert conv is not None and conv.members == ("msg_member1", "msg_member3")
    assert conv.numbers == ("+14155550101", "+14155550103")
    assert conv.dispatch.status is Status.SENDING and conv.dispatch.send_state is SendState.IN_FLIGHT
    assert {m.id: m.status for m in decision.legs} == {"msg_member1": Status.SENDING, "msg_member3": Status.SENDING}


def test_a_second_delivery_while_the_claim_is_live_changes_nothing():
    legs = [member(1), member(2)]
    first = conversation.claim(None, legs, CNV, GROUP, at(1), LEASE)
    conv, legs = _apply(None, legs, first)
    again = conversation.claim(conv, legs, CNV, GROUP, at(2), LEASE)
    assert again.result is not None and again.result.action is Action.FOLLOW_UP
    assert again.conversation is None and again.legs == ()


def test_nothing_to_send_when_every_member_dropped_out():
    legs = [member(1, Status.CANCELED), member(2, Status.EXPIRED)]
    decision = conversation.claim(None, legs, CNV, GROUP, at(1), LEASE)
    assert decision.result is not None and decision.result.action is Action.DONE
    assert decision.conversation is None and decision.legs == ()


def test_a_scheduled_conversation_arriving_early_waits_without_fixing_members():
    later = at(3600)
    legs = [member(1, Status.SCHEDULED, scheduled_at=later), member(2, Status.SCHEDULED, scheduled_at=later)]
    decision = conversation.claim(None, legs, CNV, GROUP, at(1), LEASE)
    assert decision.result is not None and decision.result.action is Action.RESCHEDULE
    assert decision.legs == ()
    assert decision.conversation is not None and decision.conversation.dispatch.status is Status.QUEUED
    # one of them is canceled before it is due: the send leaves it out
    conv = decision.conversation
    legs = [legs[0], member(2, Status.CANCELED)]
    due = conversation.claim(conv, legs, CNV, GROUP, later, LEASE)
    assert due.conversation is not None and due.conversation.members == ("msg_member1",)


# -- record -------------------------------------------------------------------------------------------
def _claimed(legs: list[Leg]) -> tuple[Conversation, list[Leg]]:
    return _apply(None, legs, conversation.claim(None, legs, CNV, GROUP, at(1), LEASE))


def test_the_provider_id_moves_every_member_to_sent_with_that_id():
    conv, legs = _claimed([member(1), member(2)])
    decision = conversation.record(conv, legs, Outcome(Kind.ACCEPTED, provider_id="grp-prov-1"), at(1), at(2), 5)
    assert decision.conversation is not None and decision.conversation.dispatch.provider_id == "grp-prov-1"
    assert {m.id: (m.status, m.provider_id, m.send_state) for m in decision.legs} == {
        "msg_member1": (Status.SENT, "grp-prov-1", SendState.ACCEPTED),
        "msg_member2": (Status.SENT, "grp-prov-1", SendState.ACCEPTED)}
    assert all([e.type for e in m.notifications.values()] == ["message.sent"] for m in decision.legs)


def test_a_refusal_fails_every_member_refunds_them_and_arms_their_failovers():
    failover = {"text": "sms", "from": "+18005551234"}
    conv, legs = _claimed([member(1, sms_failover=failover), member(2)])
    refused = Outcome(Kind.PERMANENT, http_status=400, code="40002", detail="bad")
    decision = conversation.record(conv, legs, refused, at(1), at(2), 5)
    assert {m.status for m in decision.legs} == {Status.FAILED}
    assert {m.error_code for m in decision.legs} == {"PROVIDER_REJECTED"}
    assert decision.refund_micros == 2 * 20_000
    by_id = {m.id: m for m in decision.legs}
    assert by_id["msg_member1"].failover_message_id == failover_id("msg_member1")
    assert by_id["msg_member2"].failover_message_id is None


def test_a_stop_refusal_names_nobody_and_arms_no_failover():
    failover = {"text": "sms", "from": "+18005551234"}
    conv, legs = _claimed([member(1, sms_failover=failover), member(2, sms_failover=failover)])
    decision = conversation.record(conv, legs, Outcome(Kind.OPT_OUT, http_status=409, code="40300"), at(1), at(2), 5)
    assert {(m.status, m.error_code, m.failover_message_id) for m in decision.legs} == {
        (Status.FAILED, "PROVIDER_REJECTED", None)}
    assert decision.refund_micros == 40_000


def test_no_answer_leaves_the_members_sending_and_asks_before_any_resend():
    conv, legs = _claimed([member(1), member(2)])
    decision = conversation.record(conv, legs, Outcome(Kind.AMBIGUOUS, detail="timeout"), at(1), at(2), 5)
    assert decision.legs == () and decision.refund_micros == 0
    assert decision.conversation is not None and decision.conversation.dispatch.send_state is SendState.AMBIGUOUS
    assert decision.result is not None and decision.result.action is Action.FOLLOW_UP
    conv, legs = _apply(conv, legs, decision)
    retried = conversation.claim(conv, legs, CNV, GROUP, at(10), LEASE)
    assert retried.result is not None and retried.result.action is Action.RECONCILE


# -- dispatch over in-memory ports -----------------------------------------------------------------------
@dataclass
class ConversationLegs:
    legs: dict[str, Leg]
    conversations: dict[str, Conversation] = field(default_factory=dict)
    refunds: int = 0

    def get(self, message_id: str) -> Leg | None:
        return self.legs.get(message_id)

    def mutate(self, message_id, decide, *, event=None):
        from shared.ports import Mutation

        before = self.legs.get(message_id)
        decision = decide(before)
        return Mutation(before=before, after=decision.after, result=decision.result)

    def mutate_unless_opted_out(self, message_id, decide, *, applies):
        return self.mutate(message_id, lambda leg: decide(leg, False))

    def mutate_conversation(self, conversation_id: str, group_id: str,
                            decide: Callable[[Conversation | None, list[Leg]], ConversationDecision]
                            ) -> ConversationMutation:
        before = self.conversations.get(conversation_id)
        members = sorted((m for m in self.legs.values() if m.conversation_id == conversation_id), key=lambda m: m.id)
        decision = decide(before, members)
        if decision.conversation is not None:
            self.conversations[conversation_id] = decision.conversation
        for m in decision.legs:
            self.legs[m.id] = m
        self.refunds += decision.refund_micros
        return ConversationMutation(before=before, after=decision.conversation, legs_before={m.id: m for m in members},
                                    legs_after=decision.legs, result=decision.result)


class GroupProvider:
    def __init__(self) -> None:
        self.sent: list[GroupOutboundMessage] = []

    def send_group(self, message: GroupOutboundMessage) -> Outcome:
        self.sent.append(message)
        return Outcome(Kind.ACCEPTED, provider_id="grp-prov-1")


def test_every_members_task_delivered_twice_makes_one_group_mms():
    from shared.services.dispatching import dispatch

    rt = FakeRuntime(FixedClock(at(1)))
    store = ConversationLegs({m.id: m for m in (member(1), member(2), member(3))})
    rt.legs = store  # type: ignore[assignment]
    rt.provider = GroupProvider()  # type: ignore[assignment]

    answers = [dispatch(rt, f"msg_member{n}") for n in (1, 2, 3, 1, 2, 3)]  # type: ignore[arg-type]

    assert [a.status for a in answers] == [200] * 6
    [sent] = rt.provider.sent
    assert sent.to == ("+14155550101", "+14155550102", "+14155550103")
    assert sent.idempotency_key == f"mmsgate:{CNV}" and names_leg(sent.webhook_url, CNV)
    assert {m.provider_id for m in store.legs.values()} == {"grp-prov-1"}
    assert {m.status for m in store.legs.values()} == {Status.SENT}


# -- wire -----------------------------------------------------------------------------------------------
def test_the_group_mms_body_is_byte_identical_for_the_same_conversation():
    def message() -> GroupOutboundMessage:
        return GroupOutboundMessage(message_id=CNV, to=("+14155550102", "+14155550101"), from_="+18005551234",
                                    text="hi", subject=None, media_urls=("https://s.example/a",),
                                    webhook_url=conversation.webhook_url("https://gw.example/webhooks/telnyx", CNV))

    body = group_request_body(message())
    assert body == group_request_body(message())
    decoded = json.loads(body)
    assert decoded["to"] == ["+14155550102", "+14155550101"]  # the members' order, as fixed by the claim
    assert decoded["use_profile_webhooks"] is False and "type" not in decoded


def test_a_report_names_its_conversation_and_recipient():
    url = conversation.webhook_url("https://gw.example/webhooks/telnyx", CNV)
    report = Report(event_id="e1", event_type="message.finalized", occurred_at=T0,
                    payload={"id": "p", "webhook_url": url,
                             "to": [{"phone_number": "+14155550102", "status": "delivered"}],
                             "cc": [{"phone_number": "+14155550101"}]})
    assert report.conversation_from_url == CNV and report.leg_from_url is None
    assert report.recipient_number == "+14155550102"
    forged = Report(event_id="e2", event_type="message.finalized", occurred_at=T0,
                    payload={"webhook_url": "https://gw.example/x?conversation=../../tenants"})
    assert forged.conversation_from_url is None


@pytest.mark.parametrize("to, issue", [
    ([f"+1415555010{n}" for n in range(9)], "at most 8"),
    (["+14155550101", "+442071838750"], "+442071838750"),
    (["+14155550101", "12"], "12"),
])
def test_a_conversation_is_one_to_eight_nanp_numbers(to, issue):
    from shared.api.models import GroupRequest

    with pytest.raises(pydantic.ValidationError) as caught:
        GroupRequest.model_validate({"to": to, "body": "x", "conversation": True})
    [error] = caught.value.errors()
    assert error["loc"] == ("to",) and issue in error["msg"]
    assert GroupRequest.model_validate({"to": to, "body": "x"}).conversation is False


class LosingGroupProvider:
    """Every group_mms answer is lost; lookups answer what the test queues (Telnyx's records lag)."""

    def __init__(self) -> None:
        self.sent: list[GroupOutboundMessage] = []
        self.lookups: list[Lookup] = []

    def send_group(self, message: GroupOutboundMessage) -> Outcome:
        self.sent.append(message)
        return Outcome(Kind.AMBIGUOUS, detail="no answer")

    def find(self, message: object, since: object) -> Lookup:
        return self.lookups.pop(0)


def test_a_group_mms_with_a_lost_answer_is_resent_only_once_its_absence_is_proven():
    from shared.services.dispatching import dispatch

    clock = FixedClock(at(1))
    rt = FakeRuntime(clock, horizon_seconds=60)
    store = ConversationLegs({m.id: m for m in (member(1), member(2))})
    rt.legs = store  # type: ignore[assignment]
    provider = LosingGroupProvider()
    rt.provider = provider  # type: ignore[assignment]

    dispatch(rt, "msg_member1")  # type: ignore[arg-type]
    assert len(provider.sent) == 1
    clock.advance(seconds=5)
    provider.lookups.append(Lookup(LookupState.ABSENT))
    dispatch(rt, "msg_member1")  # type: ignore[arg-type]
    assert len(provider.sent) == 1  # 5 s after the attempt, "not found" proves nothing
    assert {m.status for m in store.legs.values()} == {Status.SENDING}

    clock.advance(seconds=57)  # 62 s after the attempt: past the horizon
    provider.lookups.append(Lookup(LookupState.ABSENT))
    dispatch(rt, "msg_member2")  # type: ignore[arg-type]
    assert len(provider.sent) == 2 and provider.sent[0] == provider.sent[1]
