"""The one path for leg writes (shared/services/leg_changes.py), fast:

- no module of ``shared`` or ``functions`` writes a leg or enqueues a customer event except through it (read
  from every module's calls);
- every customer event type the code can put in an outbox is driven through it here and enqueued exactly once:
  a type added to the code without a case below fails;
- an event already in the outbox before a commit is never enqueued again by it.
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

from shared.ports import Decision, FixedClock, InboundDecision, InboundWrite, Spawned
from shared.rules.ids import notify_event_id
from shared.rules.legs import transition, with_event
from shared.rules.records import Leg, OptOut
from shared.rules.status import CUSTOMER_EVENTS, Status
from shared.services import leg_changes
from tests.unit.fakes import FakeRuntime
from tests.unit.legs import HOOK, T0, at, leg

ROOT = Path(__file__).resolve().parents[2]
# What writes a leg (or a batch's rows) in the stores, and what enqueues a customer event.
WRITES = {"legs": {"mutate", "mutate_unless_opted_out", "accept", "accept_one", "record_inbound", "spawn",
                   "mutate_conversation"},
          "batches": {"write_rows"},
          "queue": {"enqueue_notify"}}


def _calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            if name in WRITES and node.func.attr in WRITES[name]:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}.{node.func.attr}")
    return found


def test_only_leg_changes_writes_a_leg_or_enqueues_an_event():
    sources = [p for d in ("shared", "functions") for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(sources) > 40
    home = ROOT / "shared" / "services" / "leg_changes.py"
    assert _calls(home), "the reader of calls finds nothing even where the writes are"
    elsewhere = [call for path in sources if path != home for call in _calls(path)]
    assert not elsewhere, elsewhere


def test_there_is_no_public_announce_to_call_by_hand():
    assert not hasattr(leg_changes, "announce")


def _rt() -> FakeRuntime:
    return FakeRuntime(FixedClock(T0))


def _enqueued(rt: FakeRuntime) -> list[str]:
    return [event_id for event_id, _ in rt.queue.notifies]


# Every (status it enters, event type) the status machine announces, each driven from a status it may enter
# from; CUSTOMER_EVENTS is the code's table: a row added there fails the coverage test below until it is here.
FROM = {Status.SENT: Status.SENDING, Status.DELIVERED: Status.SENT, Status.UNDELIVERED: Status.SENT,
        Status.FAILED: Status.QUEUED, Status.EXPIRED: Status.QUEUED, Status.CANCELED: Status.SCHEDULED}
# The outbox events written outside the status machine (with_event's other callers), driven below.
OTHER_EVENTS = {"sent:final": "message.sent", "opted_out": "recipient.opted_out", "opted_in": "recipient.opted_in",
                "received": "message.received"}


def test_every_event_type_in_the_code_is_driven_here():
    assert set(FROM) == set(CUSTOMER_EVENTS)
    # with_event's callers in shared/: each (key, type) they can write is one of OTHER_EVENTS.
    callers = [n for p in (ROOT / "shared").rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
               if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "with_event"]
    assert len(callers) == 1 + 3  # legs.transition, sweeping's close, received's keyword and arrival events
    for key, event_type in OTHER_EVENTS.items():
        assert event_type.count(".") == 1 and key


@pytest.mark.parametrize("status", list(FROM), ids=[s.value for s in FROM])
def test_a_status_change_enqueues_its_event_exactly_once(status):
    rt = _rt()
    rt.legs.legs["msg_unit0001"] = leg(FROM[status], webhook_url=HOOK)

    def move(current: Leg | None) -> Decision[str]:
        assert current is not None
        return Decision(after=transition(current, status, cause="test", now=at(1)))

    leg_changes.change(rt, "msg_unit0001", move)
    leg_changes.change(rt, "msg_unit0001", move)  # the same decision again: the machine refuses, nothing new

    assert _enqueued(rt) == [notify_event_id("msg_unit0001", status.value)]
    stored = rt.legs.get("msg_unit0001")
    assert stored is not None and stored.notifications[_enqueued(rt)[0]].type == CUSTOMER_EVENTS[status]


@pytest.mark.parametrize("key", list(OTHER_EVENTS))
def test_an_event_written_beside_the_status_machine_is_enqueued_once(key):
    rt = _rt()
    rt.legs.legs["msg_unit0001"] = leg(Status.SENT, webhook_url=HOOK)

    def add(current: Leg | None) -> Decision[str]:
        assert current is not None
        return Decision(after=with_event(current, key, OTHER_EVENTS[key], at(1)))

    leg_changes.change(rt, "msg_unit0001", add)
    leg_changes.change(rt, "msg_unit0001", add)
    assert _enqueued(rt) == [notify_event_id("msg_unit0001", key)]


def test_an_event_already_in_the_outbox_is_not_enqueued_again_by_a_later_commit():
    rt = _rt()
    sent = transition(leg(Status.SENDING, webhook_url=HOOK), Status.SENT, cause="test", now=at(1))
    assert sent is not None and len(sent.notifications) == 1
    rt.legs.legs[sent.id] = sent

    def deliver(current: Leg | None) -> Decision[str]:
        assert current is not None
        return Decision(after=transition(current, Status.DELIVERED, cause="test", now=at(2)))

    leg_changes.change(rt, sent.id, deliver)
    assert _enqueued(rt) == [notify_event_id(sent.id, "delivered")]


class _InboundStore:
    """record_inbound and spawn as the Firestore store answers them: created, or found as written before."""

    def __init__(self, existing: Leg | None = None) -> None:
        self.existing = existing

    def record_inbound(self, message_id, tenant_id, sender, decide) -> InboundWrite:
        if self.existing is not None:
            return InboundWrite(leg=self.existing, created=False)
        decision: InboundDecision = decide(None)
        return InboundWrite(leg=decision.leg, created=True)

    def spawn(self, parent_id, child_id, tenant_id, decide) -> Spawned:
        parent = leg(Status.UNDELIVERED, webhook_url=HOOK)
        child = transition(leg(Status.PENDING, id=child_id, webhook_url=HOOK), Status.FAILED, cause="t", now=at(1))
        return Spawned(before=parent, parent=parent.with_(failover_due=None), child=child)


def _inbound(state_of_event: str | None) -> Leg:
    arrived = with_event(leg(Status.DELIVERED, webhook_url=HOOK, id="msg_in1"), "opted_out", "recipient.opted_out",
                         at(1))
    arrived = with_event(arrived, "received", "message.received", at(1))
    if state_of_event is None:
        return arrived
    from shared.rules.records import EventState, OutboxEntry

    first = notify_event_id("msg_in1", "opted_out")
    entry = arrived.notifications[first]
    done = OutboxEntry(type=entry.type, status=entry.status, created_at=entry.created_at,
                       state=EventState(state_of_event), attempts=1)
    return arrived.with_(notifications={**arrived.notifications, first: done})


def test_an_inbound_leg_announces_its_events_once_and_a_replay_only_the_undelivered_ones():
    rt = _rt()
    rt.legs = _InboundStore()  # type: ignore[assignment]
    fresh = _inbound(None)
    leg_changes.record_inbound(rt, "msg_in1", "tnt_unit", "+14155550199",
                               lambda current: InboundDecision(leg=fresh, opt_out=OptOut(number="+14155550199",
                                                                                         source="keyword")))
    assert sorted(_enqueued(rt)) == sorted(fresh.notifications)

    replay = _rt()
    replay.legs = _InboundStore(existing=_inbound("delivered"))  # type: ignore[assignment]
    leg_changes.record_inbound(replay, "msg_in1", "tnt_unit", "+14155550199",
                               lambda current: pytest.fail("a replay decides nothing"))
    assert _enqueued(replay) == [notify_event_id("msg_in1", "received")]


def test_a_spawned_leg_announces_its_own_events():
    rt = _rt()
    rt.legs = _InboundStore()  # type: ignore[assignment]
    spawned = leg_changes.spawn(rt, "msg_unit0001", "msg_child", "tnt_unit", lambda *_: pytest.fail("unused"))
    assert spawned.child is not None
    assert _enqueued(rt) == [notify_event_id("msg_child", "failed")]


def test_resend_names_its_task_and_time():
    rt = _rt()
    when = T0 + dt.timedelta(minutes=5)
    leg_changes.resend(rt, "msg_unit0001", "evt_1", name="evt_1-a2", at=when)
    assert rt.queue.notifies == [("evt_1", "msg_unit0001")]
    assert rt.queue.notify_tasks == [("evt_1-a2", when)]
