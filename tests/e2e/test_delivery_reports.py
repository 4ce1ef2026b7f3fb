"""Delivery reports from Telnyx: verified, applied once, never moving a status backwards."""

import datetime as dt
import json
import time
import uuid

import pytest

from tests.conftest import fictional
from tools.telnyx_sim import generate_keypair, sign

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def _event(provider_id: str, event_type: str, status: str, occurred_at: dt.datetime, *, to: str,
           event_id: str | None = None, errors=None) -> dict:
    return {"data": {"record_type": "event", "id": event_id or str(uuid.uuid4()), "event_type": event_type,
                     "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
                     "payload": {"record_type": "message", "direction": "outbound", "id": provider_id,
                                 "to": [{"phone_number": to, "status": status}], "errors": errors or []}},
            "meta": {"attempt": 1, "delivered_to": "test"}}


def _post(env, event: dict, *, timestamp: int | None = None, key: str | None = None, signature: str | None = None):
    body = json.dumps(event).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    headers = {"Content-Type": "application/json", "telnyx-timestamp": ts,
               "telnyx-signature-ed25519": signature or sign(key or env.stack.sim_private_key, ts, body)}
    return env.sim.post(env.stack.urls["gateway"] + "/webhooks/telnyx", content=body, headers=headers)


@pytest.fixture
def sent_leg(env):
    """A leg the provider accepted but will never finalise (xx=99), ready for hand-made reports."""
    to = fictional(99)
    message_id = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "x"}).json()["data"]["id"]
    message = env.wait_status(message_id, "sent")
    return message_id, message["provider_id"], to


def test_duplicate_report_is_applied_once(env, sent_leg):
    message_id, provider_id, to = sent_leg
    event = _event(provider_id, "message.finalized", "delivered", dt.datetime.now(dt.UTC), to=to)

    first, second = _post(env, event), _post(env, event)

    assert (first.status_code, first.json()["outcome"]) == (200, "applied")
    assert (second.status_code, second.json()["outcome"]) == (200, "duplicate")
    history = env.message(message_id)["history"]
    assert [h["to"] for h in history].count("delivered") == 1


def test_late_sent_after_finalized_changes_nothing(env, sent_leg):
    message_id, provider_id, to = sent_leg
    now = dt.datetime.now(dt.UTC)
    _post(env, _event(provider_id, "message.finalized", "delivery_failed", now, to=to,
                      errors=[{"code": "40008", "title": "Undeliverable"}]))
    late = _post(env, _event(provider_id, "message.sent", "queued", now - dt.timedelta(seconds=5), to=to))
    later_delivered = _post(env, _event(provider_id, "message.finalized", "delivered", now, to=to))

    assert late.status_code == later_delivered.status_code == 200
    message = env.message(message_id)
    assert message["status"] == "undelivered"
    assert message["error_code"] == "DELIVERY_FAILED"
    statuses = [h["to"] for h in message["history"]]
    assert statuses == ["pending", "queued", "sending", "sent", "undelivered"]


@pytest.mark.parametrize("tamper", ["other key", "bad signature", "missing headers", "stale", "future", "body"])
def test_badly_signed_or_stale_reports_are_401_and_change_nothing(env, sent_leg, tamper):
    message_id, provider_id, to = sent_leg
    event = _event(provider_id, "message.finalized", "delivered", dt.datetime.now(dt.UTC), to=to)
    url = env.stack.urls["gateway"] + "/webhooks/telnyx"
    if tamper == "other key":
        response = _post(env, event, key=generate_keypair()[0])
    elif tamper == "bad signature":
        response = _post(env, event, signature="AAAA" * 22)
    elif tamper == "missing headers":
        response = env.sim.post(url, json=event)
    elif tamper == "stale":
        response = _post(env, event, timestamp=int(time.time()) - 301)
    elif tamper == "future":
        response = _post(env, event, timestamp=int(time.time()) + 301)
    else:
        ts = str(int(time.time()))
        signature = sign(env.stack.sim_private_key, ts, json.dumps(event).encode())
        event["data"]["payload"]["to"][0]["status"] = "delivery_failed"
        response = env.sim.post(url, content=json.dumps(event).encode(), headers={
            "Content-Type": "application/json", "telnyx-timestamp": ts, "telnyx-signature-ed25519": signature})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_SIGNATURE"
    message = env.message(message_id)
    assert (message["status"], message["final"]) == ("sent", False)


def test_report_for_an_unknown_message_is_acknowledged(env):
    event = _event(str(uuid.uuid4()), "message.finalized", "delivered", dt.datetime.now(dt.UTC), to="+14155550100")

    response = _post(env, event)

    assert (response.status_code, response.json()["outcome"]) == (200, "unknown message")


def test_inbound_stop_and_start_change_the_opt_out_list(env):
    sender = "+14155550177"

    def inbound(text):
        return {"data": {"record_type": "event", "id": str(uuid.uuid4()), "event_type": "message.received",
                         "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                         "payload": {"direction": "inbound", "text": text, "from": {"phone_number": sender},
                                     "to": [{"phone_number": "+18005551234", "status": "webhook_delivered"}]}}}

    assert _post(env, inbound(" stop ")).json()["outcome"] == "opted out"
    blocked = env.api.post("/api/v1/messages/sms", json={"to": sender, "body": "hi"})
    assert blocked.json()["error"]["code"] == "RECIPIENT_OPTED_OUT"

    assert _post(env, inbound("START")).json()["outcome"] == "opted in"
    allowed = env.api.post("/api/v1/messages/sms", json={"to": sender, "body": "hi"})
    assert allowed.status_code == 200, allowed.text
