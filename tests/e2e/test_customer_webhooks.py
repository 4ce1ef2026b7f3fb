"""Customer webhooks: one signed event per status, retried with the same id until it lands."""

import json

import pytest

from shared.carriers.signatures import tenant_secret, verify_webhook
from tests.conftest import fictional, wait_for

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def _events(env):
    return [json.loads(r["body"]) | {"_failed": r["failed"], "_headers": r["headers"]} for r in env.receiver.received]


def test_endpoint_failing_three_times_still_gets_each_event_signed_with_a_stable_id(env):
    env.receiver.fail_next = 3
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(30), "body": "hook",
                                                           "webhook_url": env.receiver.url})
    message_id = response.json()["data"]["id"]
    env.wait_status(message_id, "delivered")

    wait_for(lambda: {e["type"] for e in _events(env) if not e["_failed"]} == {"message.sent", "message.delivered"},
             20, "both events delivered")
    events = _events(env)
    assert sum(e["_failed"] for e in events) == 3
    secret = tenant_secret(env.stack.function_env()["WEBHOOK_SIGNING_KEY"], env.tenant_id)
    by_id: dict[str, list] = {}
    for record, event in zip(env.receiver.received, events, strict=True):
        verify_webhook(secret, record["body"], event["_headers"])  # raises if it does not verify
        assert event["data"]["id"] == message_id
        by_id.setdefault(event["id"], []).append(event)
    assert len(by_id) == 2  # retries reuse the event id
    for attempts in by_id.values():
        assert len({a["type"] for a in attempts}) == 1
        assert [a["_failed"] for a in attempts][-1] is False
    delivered = next(e for e in events if e["type"] == "message.delivered")
    assert delivered["data"]["status"] == "delivered"


def test_failed_leg_sends_message_failed(env):
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(81), "body": "x",
                                                           "webhook_url": env.receiver.url})
    env.wait_status(response.json()["data"]["id"], "undelivered")

    wait_for(lambda: "message.failed" in {e["type"] for e in _events(env)}, 20, "message.failed")
    failed = next(e for e in _events(env) if e["type"] == "message.failed")
    assert failed["data"]["status"] == "undelivered"
    assert failed["data"]["error_code"] == "DELIVERY_FAILED"


def test_a_webhook_url_that_is_not_public_is_rejected_at_send_time(env):
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(31), "body": "x",
                                                           "webhook_url": "https://169.254.169.254/hook"})

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "webhook_url"
