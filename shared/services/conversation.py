"""True group conversations: ``"conversation": true`` on a group send makes its recipients one Telnyx
``group_mms`` (one thread, everyone sees everyone), while each recipient keeps its own leg, status and events.

The accept is the group accept: gates per recipient, each accepted recipient a leg (``conversation_id`` set),
failed ones left out. Then one dispatch task for the whole conversation, carried by a member leg's id.

Dispatch of any member (its task, a sweeper re-enqueue, a duplicate delivery) goes through the conversation
record (``conversations/{cnv_...}``). Its ``dispatch`` is a leg of its own (never in the messages collection)
to which the one claim/record machinery of shared/services/dispatching.py applies unchanged: the claim with a lease,
reconcile by evidence (a report, or a lookup past the detail-record horizon) before any resend, at most
once when the provider cannot tell. Each decision about it is committed together with its members (one
conditioned batch, ``LegStore.mutate_conversation``), and ``follow`` carries it over to them:

- the first claim fixes the members (the legs still ``queued``/``scheduled``: a canceled or expired one
  drops out) and moves them to ``sending`` with it;
- the provider's id moves every member to ``sent`` with that one id;
- a refusal, a give-up or an expiry ends every member that was still waiting, refunded (and an SMS
  failover armed where the member carries one).

Provider reports are per recipient: the conversation's webhook URL names the conversation
(``?conversation=cnv_...``) and the report's ``to[0].phone_number`` names the member.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shared.carriers.provider import GroupOutboundMessage, Kind, Lookup, Outcome
from shared.ports import ConversationDecision, ConversationMutation, DispatchTask, media_docs
from shared.rules import ids
from shared.rules.errors import ErrorCode, message_for
from shared.rules.legs import transition, with_send_state
from shared.rules.records import Conversation, HistoryEntry, Leg
from shared.rules.status import SendState, Status
from shared.services import failover, leg_changes, observe
from shared.services.dispatch_steps import (
    LOOKUP_HORIZON,
    LOOKUP_SKEW,
    Action,
    Answer,
    Step,
    claim_step,
    claim_twice,
    finish,
    horizon_of,
    record_step,
)

if TYPE_CHECKING:
    from shared.ports import Runtime

WAITING = frozenset({Status.QUEUED, Status.SCHEDULED})


def webhook_url(base: str, conversation_id: str) -> str:
    """Reports of the group_mms name the conversation (inside the signed body), as a leg's name the leg."""
    return f"{base}?{urllib.parse.urlencode({'conversation': conversation_id})}"


def key(group_id: str) -> str:
    return f"conversation:{group_id}"


def one_task(tasks: Sequence[DispatchTask], legs: Sequence[Leg]) -> list[DispatchTask]:
    """The dispatch tasks of an accept: a conversation's accepted legs share one task (any member carries it)."""
    conversation = next((leg for leg in legs if leg.conversation_id), None)
    if conversation is None or not tasks or conversation.group_id is None:
        return list(tasks)
    first = tasks[0]
    return [DispatchTask(first.message_id, ids.task_name(key(conversation.group_id)), first.at)]


def dispatch_leg(conversation_id: str, group_id: str, members: Sequence[Leg], now: dt.datetime) -> Leg:
    """The conversation's own send state, built from its first member (they share the payload and timing)."""
    lead = members[0]
    return Leg(
        id=conversation_id, leg_key=key(group_id), tenant_id=lead.tenant_id, to=lead.to, from_=lead.from_,
        channel="mms", encoding=lead.encoding, segments=lead.segments, request_id=lead.request_id,
        created_at=now, status=Status.QUEUED, status_since=now, updated_at=now, group_id=group_id,
        body=lead.body, subject=lead.subject, media_urls=lead.media_urls, media=lead.media,
        scheduled_at=lead.scheduled_at, valid_until=lead.valid_until, delivery_window=lead.delivery_window,
        delete_at=lead.delete_at,
        history=(HistoryEntry(at=now, from_=None, to=Status.QUEUED.value, cause="conversation created"),),
    )


def claim(conv: Conversation | None, legs: list[Leg], conversation_id: str, group_id: str, now: dt.datetime,
          lease: dt.timedelta) -> ConversationDecision[Step]:
    """One delivery of a member's dispatch task (pure): claim the conversation, members follow."""
    if conv is None:
        waiting = [leg for leg in legs if leg.status in WAITING]
        if not waiting:
            outcome = "not accepted yet" if any(leg.status is Status.PENDING for leg in legs) else "no recipient left"
            return ConversationDecision(result=Step(Action.DONE, outcome))
        conv = Conversation(id=conversation_id, tenant_id=waiting[0].tenant_id, group_id=group_id,
                            members=tuple(leg.id for leg in waiting), numbers=tuple(leg.to for leg in waiting),
                            dispatch=dispatch_leg(conversation_id, group_id, waiting, now),
                            delete_at=waiting[0].delete_at)
        created = True
    else:
        created = False
    if conv.dispatch.status in WAITING:
        # Until the first send, the members are whoever is still waiting (a cancel or an expiry drops one).
        waiting = [leg for leg in legs if leg.status in WAITING]
        if not waiting:
            closed = transition(conv.dispatch, Status.CANCELED, cause="no recipient left", now=now)
            return ConversationDecision(conversation=conv.with_(dispatch=closed or conv.dispatch),
                                        result=Step(Action.DONE, "no recipient left"))
        conv = conv.with_(members=tuple(leg.id for leg in waiting), numbers=tuple(leg.to for leg in waiting))
    decision = claim_step(conv.dispatch, now, lease)
    step = decision.result
    assert step is not None
    after = conv.with_(dispatch=decision.after) if decision.after is not None else conv
    members, refund = follow(after, legs, now)
    changed = created or decision.after is not None or after.members != conv.members
    return ConversationDecision(conversation=after if changed else None, legs=members, refund_micros=refund,
                                result=step)


def record(conv: Conversation | None, legs: list[Leg], outcome: Outcome | Lookup, claimed_at: dt.datetime | None,
           now: dt.datetime, max_attempts: int, horizon: dt.timedelta = LOOKUP_HORIZON) -> ConversationDecision[Step]:
    """Record the provider's answer on the conversation (pure); members follow."""
    if conv is None:
        return ConversationDecision(result=Step(Action.DONE, "unknown conversation"))
    decision = record_step(conv.dispatch, outcome, claimed_at, now, max_attempts, horizon)
    after = conv.with_(dispatch=decision.after) if decision.after is not None else conv
    members, refund = follow(after, legs, now)
    return ConversationDecision(conversation=after if decision.after is not None else None, legs=members,
                                refund_micros=refund, result=decision.result)


def follow(conv: Conversation, legs: list[Leg], now: dt.datetime) -> tuple[tuple[Leg, ...], int]:
    """Each member leg brought in line with the conversation's send state (pure); and what is refunded."""
    state = conv.dispatch
    by_id = {leg.id: leg for leg in legs}
    moved: list[Leg] = []
    refund = 0
    for member_id in conv.members:
        leg = by_id.get(member_id)
        if leg is None:
            continue
        new: Leg | None = None
        if state.provider_id and not leg.provider_id:
            sent = transition(leg, Status.SENT, cause="provider accepted the conversation", now=now, sent_at=now,
                              provider_id=state.provider_id)
            new = sent or leg.with_(provider_id=state.provider_id, updated_at=now)
            if new.send_state not in (SendState.ACCEPTED, SendState.FAILED):
                new = with_send_state(new, SendState.ACCEPTED, now=now)
        elif state.status is Status.SENDING and leg.status in WAITING:
            new = transition(leg, Status.SENDING, cause="conversation claimed", now=now)
        elif state.status in (Status.FAILED, Status.EXPIRED) and (
                leg.status in WAITING or (leg.status is Status.SENDING and not leg.provider_id)):
            new = _ended(leg, state, now)
            if new is not None:
                refund += leg.price_micros
        if new is not None and new != leg:
            moved.append(new)
    return tuple(moved), refund


def _ended(leg: Leg, state: Leg, now: dt.datetime) -> Leg | None:
    if state.status is Status.EXPIRED:
        return transition(leg, Status.EXPIRED, cause=f"conversation expired: {_last_cause(state)}", now=now,
                          error_code=state.error_code or ErrorCode.VALIDITY_EXPIRED.value,
                          error_message=state.error_message or message_for(ErrorCode.VALIDITY_EXPIRED))
    code, text = state.error_code, state.error_message
    if code == ErrorCode.RECIPIENT_OPTED_OUT.value:
        # Telnyx refuses the whole group_mms when one participant has opted out and does not say which
        # one: no member can be recorded as opted out, and none gets an SMS failover (provider code 40300).
        code = ErrorCode.PROVIDER_REJECTED.value
        text = "The provider refused the conversation: a participant has opted out (STOP)"
    failed = transition(leg, Status.FAILED, cause=f"conversation failed: {_last_cause(state)}", now=now,
                        error_code=code or ErrorCode.PROVIDER_REJECTED.value,
                        error_message=text or message_for(ErrorCode.PROVIDER_REJECTED),
                        provider_error_code=state.provider_error_code)
    if failed is None:
        return None
    if failed.send_state not in (SendState.FAILED, SendState.ACCEPTED):
        failed = with_send_state(failed, SendState.FAILED, now=now)
    return failover.arm(failed)


def _last_cause(state: Leg) -> str:
    return state.history[-1].cause if state.history else state.status.value


def _outbound(rt: Runtime, conv: Conversation) -> GroupOutboundMessage | Outcome:
    lead = conv.dispatch
    try:
        media_urls = (rt.media.signed_urls(media_docs(lead.media), lead.first_claimed_at) if lead.media
                      else list(lead.media_urls))
    except Exception as exc:  # noqa: BLE001 - signing is local or one IAM call: a retry can fix it
        return Outcome(Kind.TRANSIENT, detail=f"media URLs not signed: {type(exc).__name__}")
    return GroupOutboundMessage(message_id=conv.id, to=tuple(conv.numbers), from_=lead.from_, text=lead.body,
                                subject=lead.subject, media_urls=tuple(media_urls),
                                webhook_url=webhook_url(rt.settings.telnyx_webhook_url, conv.id))


def _commit(rt: Runtime, conversation_id: str, group_id: str,
            decide: Callable[[Conversation | None, list[Leg]], ConversationDecision[Step]]
            ) -> ConversationMutation[Step]:
    return leg_changes.change_conversation(rt, conversation_id, group_id, decide)


def dispatch(rt: Runtime, member: Leg) -> Answer:
    """What one delivery of a member's dispatch task does: at most one group_mms for the conversation."""
    assert member.conversation_id is not None and member.group_id is not None
    conversation_id, group_id = member.conversation_id, member.group_id
    step, conv = claim_twice(rt, lambda at: _claim_and_call(rt, conversation_id, group_id, at))
    # Follow-up tasks are named after the conversation and carried by the member whose task this was.
    return finish(rt, step, conv.dispatch.with_(id=member.id) if conv is not None else None)


def _claim_and_call(rt: Runtime, conversation_id: str, group_id: str, now: dt.datetime
                    ) -> tuple[Step, Conversation | None]:
    lease = dt.timedelta(seconds=rt.settings.dispatch_claim_lease_seconds)
    claimed = _commit(rt, conversation_id, group_id,
                      lambda conv, legs: claim(conv, legs, conversation_id, group_id, now, lease))
    step, conv = claimed.result, claimed.current
    assert step is not None
    if step.action not in (Action.SEND, Action.RECONCILE) or conv is None:
        return step, conv
    claimed_at = conv.dispatch.claimed_at
    message = _outbound(rt, conv)
    if isinstance(message, Outcome):
        outcome: Outcome | Lookup = message
    elif step.action is Action.RECONCILE:
        outcome = rt.provider.find(message, (conv.dispatch.ambiguous_since or now) - LOOKUP_SKEW)
        observe.metric("dispatch.reconciled", lookup=outcome.state.value)
    else:
        outcome = rt.provider.send_group(message)
    horizon = horizon_of(rt)
    recorded = _commit(rt, conversation_id, group_id,
                       lambda current, legs: record(current, legs, outcome, claimed_at, rt.now(),
                                                    rt.settings.dispatch_max_attempts, horizon))
    step, conv = recorded.result, recorded.current
    assert step is not None
    for leg in recorded.legs_after:
        failover.launch_if_due(rt, leg)
    if recorded.after is not None and recorded.after.dispatch.status is Status.FAILED \
            and recorded.after.dispatch.provider_error_code:
        observe.metric("provider.rejected", code=recorded.after.dispatch.provider_error_code)
    return step, conv
