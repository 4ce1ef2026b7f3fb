"""The sweeper: a leg whose Cloud Task was lost still gets sent, exactly once."""

import datetime as dt
import time

from infra import collections as C
from infra.clients import tasks
from tests.conftest import fictional


def _purge_dispatch_queue(env) -> None:
    tasks().purge_queue(name=env.stack.queue_paths["dispatch"])


def test_scheduled_leg_whose_task_was_lost_is_sent_after_its_time(env):
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(40), "body": "x",
                                                            "scheduled_at": at.isoformat()}).json()["data"]["id"]
    _purge_dispatch_queue(env)  # the task is gone before it was due
    time.sleep(1 + env.stack.config.sweep_queued_after_seconds + 0.5)
    assert env.message(message_id)["status"] == "scheduled"

    status, body = env.stack.sweep()

    assert status == 200
    env.wait_status(message_id, "delivered")
    assert len(env.sim_messages(fictional(40))) == 1


def test_queued_leg_whose_task_was_lost_is_requeued_once(env):
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(41), "body": "x",
                                                            "scheduled_at": far}).json()["data"]["id"]
    _purge_dispatch_queue(env)
    # As if it had been accepted as queued long ago and its task never ran.
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    env.store.db.collection(C.MESSAGES).document(message_id).update(
        {"status": "queued", "status_since": long_ago, "scheduled_at": None})

    first, second = env.stack.sweep(), env.stack.sweep()

    assert first[0] == second[0] == 200
    env.wait_status(message_id, "delivered")
    assert len(env.sim_messages(fictional(41))) == 1


def test_customer_events_whose_tasks_were_lost_are_sent_again(env):
    env.receiver.fail_next = 10_000  # the customer's endpoint is down
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(42), "body": "x",
                                                            "webhook_url": env.receiver.url}).json()["data"]["id"]
    env.wait_status(message_id, "delivered")
    wait_for_attempts = time.monotonic() + 10
    while not env.receiver.received and time.monotonic() < wait_for_attempts:
        time.sleep(0.05)
    tasks().purge_queue(name=env.stack.queue_paths["notify"])  # every pending attempt is lost
    time.sleep(0.5)
    env.receiver.reset()  # the endpoint is back
    leg = env.leg_doc(message_id)
    assert leg["notify_due"] is not None
    assert {e["state"] for e in leg["notifications"].values()} <= {"pending", "retrying"}
    env.store.db.collection(C.MESSAGES).document(message_id).update(
        {"notify_due": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)})

    status, _ = env.stack.sweep()

    assert status == 200
    deadline = time.monotonic() + 15
    while len({r["headers"]["X-Mmsgate-Event-Id"] for r in env.receiver.received if not r["failed"]}) < 2:
        assert time.monotonic() < deadline, env.receiver.received
        time.sleep(0.05)
    leg = env.leg_doc(message_id)
    assert {e["state"] for e in leg["notifications"].values()} == {"delivered"}
    assert leg["notify_due"] is None


def test_a_pending_row_whose_request_never_finished_ends_failed(env):
    from shared.legs import new_leg

    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    leg = new_leg(message_id="msg_abandoned", leg_key="single:msg_abandoned", tenant_id=env.tenant_id, group_id=None,
                  to=fictional(43), from_="+18005551234", body="x", subject=None, media_urls=[], channel="sms",
                  encoding="GSM-7", segments=1, scheduled_at=None, webhook_url=None, metadata={},
                  request_id="req_x", now=long_ago)
    env.store.db.collection(C.MESSAGES).document(leg.id).create(leg.to_doc())

    assert env.stack.sweep()[0] == 200

    message = env.message("msg_abandoned")
    assert (message["status"], message["error_code"]) == ("failed", "INTERNAL")
    assert env.sim_messages(fictional(43)) == []
