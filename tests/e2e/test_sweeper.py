"""The sweeper: a leg whose Cloud Task was lost still gets sent, exactly once.

The sweeper runs in this process (``shared.services.sweeping.sweep``) on a ``Runtime`` whose clock is set past
the sweeper's windows, instead of sleeping through them: the test process has the stack's environment,
so it talks to the same emulators, and the tasks it creates reach the stack's functions."""

import datetime as dt

import pytest

from infra import collections as C
from infra.clients import tasks
from tests.conftest import fictional, wait_for

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def _purge(env, queue: str) -> None:
    tasks().purge_queue(name=env.stack.queue_paths[queue])


def _sweep_at(env, when: dt.datetime) -> dict[str, int]:
    """One sweeper run as of ``when``, with the stack's settings (not whatever an earlier test cached)."""
    from infra.runtime import Runtime
    from infra.settings import settings
    from shared.ports import FixedClock
    from shared.services.sweeping import sweep

    rt = Runtime(clock=FixedClock(when))
    rt.settings = settings.__wrapped__()
    assert rt.settings.sweep_queued_after_seconds == env.stack.config.sweep_queued_after_seconds
    return sweep(rt)


def _past_queued_window(env, since: dt.datetime) -> dt.datetime:
    return since + dt.timedelta(seconds=env.stack.config.sweep_queued_after_seconds + 1)


def test_scheduled_leg_whose_task_was_lost_is_sent_after_its_time(env):
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(40), "body": "x",
                                                            "scheduled_at": at.isoformat()}).json()["data"]["id"]
    _purge(env, "dispatch")  # the task is gone before it was due
    assert env.message(message_id)["status"] == "scheduled"

    counts = _sweep_at(env, _past_queued_window(env, at))

    assert counts["requeued"] == 1
    env.wait_status(message_id, "delivered", timeout=20)
    sent = env.sim_messages(fictional(40))
    assert len(sent) == 1
    # The new task waits for the leg's time like the lost one would have (dispatch sends up to 1 s early).
    received = dt.datetime.fromisoformat(sent[0]["received_at"].replace("Z", "+00:00"))
    assert received >= at - dt.timedelta(seconds=1)


def test_queued_leg_whose_task_was_lost_is_requeued_once(env):
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(41), "body": "x",
                                                            "scheduled_at": far}).json()["data"]["id"]
    _purge(env, "dispatch")
    # As if it had been accepted as queued and its task never ran.
    env.store.db.collection(C.MESSAGES).document(message_id).update({"status": "queued", "scheduled_at": None})
    later = _past_queued_window(env, dt.datetime.now(dt.UTC))

    first, second = _sweep_at(env, later), _sweep_at(env, later)

    assert (first["requeued"], second["requeued"]) == (1, 0)
    env.wait_status(message_id, "delivered")
    assert len(env.sim_messages(fictional(41))) == 1


def test_customer_events_whose_tasks_were_lost_are_sent_again(env):
    env.receiver.fail_next = 10_000  # the customer's endpoint is down
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(42), "body": "x",
                                                            "webhook_url": env.receiver.url}).json()["data"]["id"]
    env.wait_status(message_id, "delivered")
    wait_for(lambda: env.receiver.received, 10, "the notifier never tried the endpoint")
    _purge(env, "notify")  # every pending attempt is lost
    leg = env.leg_doc(message_id)
    assert leg["notify_due"] is not None
    assert len(leg["notifications"]) == 2  # message.sent and message.delivered
    assert {e["state"] for e in leg["notifications"].values()} <= {"pending", "retrying"}
    env.receiver.reset()  # the endpoint is back

    counts = _sweep_at(env, _past_queued_window(env, dt.datetime.now(dt.UTC)))

    assert counts["notified"] == 2
    wait_for(lambda: len({r["headers"]["webhook-id"] for r in env.receiver.received if not r["failed"]}) == 2,
             15, f"both events delivered once the endpoint is back: {env.receiver.received}")
    leg = wait_for(lambda: (d := env.leg_doc(message_id))["notify_due"] is None and d, 10,
                   "the outbox was never settled")
    assert {e["state"] for e in leg["notifications"].values()} == {"delivered"}


def test_a_pending_row_whose_request_never_finished_ends_failed(env):
    from shared.rules.legs import new_leg

    now = dt.datetime.now(dt.UTC)
    leg = new_leg(message_id="msg_abandoned", leg_key="single:msg_abandoned", tenant_id=env.tenant_id, group_id=None,
                  to=fictional(43), from_="+18005551234", body="x", subject=None, media_urls=[], channel="sms",
                  encoding="GSM-7", segments=1, scheduled_at=None, webhook_url=None, metadata={},
                  request_id="req_x", now=now)
    env.store.db.collection(C.MESSAGES).document(leg.id).create(leg.to_doc())
    before = env.balance()

    assert _sweep_at(env, now)["abandoned"] == 0  # a request still running is left alone
    assert _sweep_at(env, _past_queued_window(env, now))["abandoned"] == 1

    message = env.message("msg_abandoned")
    assert (message["status"], message["error_code"]) == ("failed", "INTERNAL")
    assert env.sim_messages(fictional(43)) == []
    assert env.balance() == before  # nothing was charged, nothing is refunded
