"""Regression tests for the promises that broke under faults (issue 10): each one reproduces a fault that
used to cause a double send, a double charge or a queue-wide throttle, and checks it no longer does."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import fictional, wait_for

pytestmark = pytest.mark.stack

MMS_PRICE = 20_000  # tools/admin.py seed_pricing: one US MMS


def _dispatch(env, message_id: str) -> httpx.Response:
    return httpx.post(env.stack.urls["function:dispatch"], content=json.dumps({"message_id": message_id}),
                      headers={"Content-Type": "application/json"}, timeout=30)


def _sweep_until(env, predicate, timeout: float = 60.0, message: str = "sweeper never settled it"):
    def step():
        status, body = env.stack.sweep()
        assert status == 200, body
        return predicate()

    return wait_for(step, timeout, message)


def test_an_accepted_group_is_answered_and_kept_when_cloud_tasks_is_down(env, receiver):
    """Defect 1: the accept committed, the task/event creation failed, the answer was 500 and the
    idempotency record was released, so the client's retry sent and charged everything twice."""
    recipients = [fictional(1, "212"), fictional(2, "212"), "+442071838750"]  # the UK one fails its gate
    body = {"to": recipients, "body": "tasks down", "media_urls": [env.sample_media_url], "webhook_url": receiver.url}
    before = env.balance()
    env.stack.kill("tasks")
    try:
        first = env.api.post("/api/v1/messages/group", json=body, headers={"Idempotency-Key": "outage-1"})
        retry = env.api.post("/api/v1/messages/group", json=body, headers={"Idempotency-Key": "outage-1"})
    finally:
        env.stack.start_component("tasks")

    assert first.status_code == 207, first.text
    assert [m["status"] for m in first.json()["messages"]] == ["queued", "queued", "failed"]
    assert retry.status_code == 207
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json()["group_id"] == first.json()["group_id"]
    assert env.balance() == before - 2 * MMS_PRICE

    # The tasks that could not be created are the sweeper's: both legs still reach the provider, once.
    ids = [m["message_id"] for m in first.json()["messages"][:2]]
    _sweep_until(env, lambda: all(env.message(i)["status"] == "delivered" for i in ids))
    for to in recipients[:2]:
        assert len(env.sim_messages(to)) == 1
    assert env.balance() == before - 2 * MMS_PRICE
    # The failed leg's event, whose task could not be created either, is sent by the sweeper too.
    failed_id = first.json()["messages"][2]["message_id"]
    _sweep_until(env, lambda: any(json.loads(r["body"])["data"]["id"] == failed_id for r in receiver.received),
                 message="the failed leg's event was never delivered")


def test_a_single_send_whose_gate_fails_answers_its_own_error_when_cloud_tasks_is_down(env, receiver):
    to = fictional(11, "212")
    env.store.accounts.add_opt_out(env.tenant_id, to, source="test")
    env.stack.kill("tasks")
    try:
        response = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "x", "webhook_url": receiver.url},
                                headers={"Idempotency-Key": "single-gate"})
    finally:
        env.stack.start_component("tasks")
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "RECIPIENT_OPTED_OUT"
    assert env.sim_messages(to) == []


def test_an_unanswered_send_is_not_sent_again_after_a_webhook_outage(env):
    """Defect 2: the first attempt reached the provider but its answer was lost (98), and the reports were
    lost too (the webhook was down): dispatch resent blindly after its window. Now it asks the provider."""
    to = fictional(98, "212")
    env.stack.kill("webhook")
    try:
        message_id = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "lost answer"}).json()["data"]["id"]
        # (Sweeping too: a function whose gRPC channel saw the tasks emulator restart may fail to enqueue.)
        # Its reports are lost, so only Telnyx's detail record tells: it shows a lag after the send (up to the
        # lookup horizon).
        leg = _sweep_until(env, lambda: (m := env.message(message_id))["provider_id"] and m,
                           30 + env.stack.lookup_horizon_seconds(), "the leg never learned its provider id")
        # the reports stay lost: the webhook comes back only once the provider has given up its final report
        wait_for(lambda: [e for e in env.sim.get("/_sim/webhooks", params={
            "to": to, "event_type": "message.finalized"}).json()["data"] if e["result"] == "gave_up"],
            30, "the provider never gave up its final report")
    finally:
        env.stack.start_component("webhook")

    sent = env.sim_messages(to)
    assert len(sent) == 1
    assert leg["provider_id"] == sent[0]["id"]
    assert leg["status"] == "sent"  # its reports were lost; nothing else moved it
    # Any later delivery of its task is a no-op.
    assert _dispatch(env, message_id).json()["outcome"] == "already sent"
    assert len(env.sim_messages(to)) == 1


def test_the_resend_of_an_ambiguous_leg_carries_the_same_idempotency_key(env):
    to = fictional(98, "646")
    message_id = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "keyed"}).json()["data"]["id"]
    env.wait_status(message_id, "delivered", timeout=30)
    sent = env.sim_messages(to)
    assert len(sent) == 1
    assert sent[0]["idempotency_key"] == f"mmsgate:{message_id}"


def test_routine_waits_do_not_throttle_the_dispatch_queue_but_provider_overload_does(env):
    """Defect 8: 503/429 for routine waits made real Cloud Tasks slow down the whole queue."""
    queue = env.stack.queue_paths["dispatch"] if hasattr(env.stack, "queue_paths") else "dispatch"
    before = len(env.stack.throttles())
    ids = [env.api.post("/api/v1/messages/sms", json={"to": fictional(i, "718"), "body": "calm"}).json()["data"]["id"]
           for i in range(5)]
    for message_id in ids:  # duplicate deliveries collide with the real ones: routine waits
        _dispatch(env, message_id)
    for message_id in ids:
        env.wait_status(message_id, "delivered")
    assert env.stack.throttles()[before:] == []

    overloaded = env.api.post("/api/v1/messages/sms", json={"to": fictional(96, "718"), "body": "busy"})
    env.wait_status(overloaded.json()["data"]["id"], "delivered", timeout=30)
    throttles = env.stack.throttles()[before:]
    assert [t["status"] for t in throttles] == [429]
    assert str(queue).endswith(throttles[0]["queue"].rsplit("/", 1)[-1])
