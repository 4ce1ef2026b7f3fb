"""SMS failover and true group conversations, through the local stack.

Numbers ``+1NPA55502XX`` (XX 00-09) are handsets that cannot take MMS in the simulator: an MMS to one is
accepted and then ``delivery_failed``, an SMS is delivered.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid

from shared import ids
from tests.conftest import fictional, wait_for
from tools.telnyx_sim import sign

SMS_US = 8_000  # tools/admin.py DEFAULT_PRICING, micro-USD per US SMS segment
MMS_US = 20_000


def no_mms(xx: int = 0, npa: str = "415") -> str:
    return f"+1{npa}55502{xx:02d}"


def _mms(env, to: str, **fields):
    body = {"to": to, "body": "picture", "media_urls": [env.sample_media_url], **fields}
    return env.api.post("/api/v1/messages/sms", json=body)


def _report(env, provider_id: str, to: str, status: str, event_id: str | None = None, webhook_url: str | None = None):
    payload = {"record_type": "message", "direction": "outbound", "id": provider_id,
               "to": [{"phone_number": to, "status": status}],
               "errors": [{"code": "40008", "title": "Undeliverable"}] if status == "delivery_failed" else []}
    if webhook_url:
        payload["webhook_url"] = webhook_url
    event = {"data": {"record_type": "event", "id": event_id or str(uuid.uuid4()), "event_type": "message.finalized",
                      "occurred_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"), "payload": payload},
             "meta": {"attempt": 1, "delivered_to": "test"}}
    raw = json.dumps(event).encode()
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "telnyx-timestamp": ts,
               "telnyx-signature-ed25519": sign(env.stack.sim_private_key, ts, raw)}
    return env.sim.post(env.stack.urls["gateway"] + "/webhooks/telnyx", content=raw, headers=headers)


def _wait(client, message_id: str, status: str) -> dict:
    """Until ``message_id`` reads ``status`` (a failover leg is created just after the MMS leg fails)."""

    def read():
        message = client.get(f"/api/v1/messages/{message_id}").json().get("data") or {}
        return message if message.get("status") == status else None

    return wait_for(read, 15, f"{message_id} never reached {status}")


def _sms_sent_to(env, to: str) -> list[dict]:
    return [m for m in env.sim_messages(to) if m["type"] == "SMS"]


# -- SMS failover ----------------------------------------------------------------------------------------
def test_an_mms_the_handset_cannot_take_fails_over_to_one_sms_linked_both_ways(env):
    to = no_mms(1)
    before = env.balance()
    response = _mms(env, to, sms_failover={"text": "See the picture at example.com/p/1"},
                    webhook_url=env.receiver.url, client_ref="order-77")
    assert response.status_code == 200, response.text
    mms_id = response.json()["data"]["id"]

    mms = env.wait_status(mms_id, "undelivered")
    assert mms["error_code"] == "DELIVERY_FAILED"
    sms_id = mms["failover_message_id"]
    assert sms_id and sms_id != mms_id
    sms = _wait(env.api, sms_id, "delivered")
    assert sms["failover_of"] == mms_id
    assert (sms["channel"], sms["to"], sms["body"]) == ("sms", to, "See the picture at example.com/p/1")
    assert sms["from"] == mms["from"]
    assert sms["price"]["amount"] == f"{SMS_US / 1e6:.4f}"
    assert sms["client_ref"] == "order-77"
    # the carrier took the MMS (undelivered is not refunded) and the SMS is charged on its own
    assert env.balance() == before - MMS_US - SMS_US

    [sent] = _sms_sent_to(env, to)
    assert sent["text"] == "See the picture at example.com/p/1"
    # its own events: the customer hears of the SMS leg as of any message
    wait_for(lambda: any(json.loads(r["body"])["data"]["id"] == sms_id and json.loads(r["body"])["type"]
                         == "message.delivered" for r in env.receiver.received), 20, "SMS delivered event")


def test_failover_from_another_sms_capable_sender(env):
    tenant_id, key = env.new_tenant(senders={"+18005551234": {"mms": True, "sms": False},
                                             "+18005559999": {"sms": True}},
                                    default_from="+18005551234")
    client = env.client(key)
    body = {"to": no_mms(2), "body": "x", "media_urls": [env.sample_media_url]}
    refused = client.post("/api/v1/messages/sms", json={**body, "sms_failover": {"text": "y"}})
    assert refused.status_code == 403
    assert refused.json()["error"]["details"][0]["field"] == "sms_failover.from"

    accepted = client.post("/api/v1/messages/sms",
                           json={**body, "sms_failover": {"text": "y", "from": "+18005559999"}})
    assert accepted.status_code == 200, accepted.text
    mms = _wait(client, accepted.json()["data"]["id"], "undelivered")
    sms = _wait(client, mms["failover_message_id"], "delivered")
    assert sms["from"] == "+18005559999"


def test_no_failover_for_a_delivered_mms_or_an_opt_out(env):
    delivered = _mms(env, fictional(5), sms_failover={"text": "y"}).json()["data"]["id"]
    opted_out = _mms(env, fictional(90), sms_failover={"text": "y"}).json()["data"]["id"]

    assert env.wait_status(delivered, "delivered")["failover_message_id"] is None
    stopped = env.wait_status(opted_out, "failed")
    assert stopped["error_code"] == "RECIPIENT_OPTED_OUT" and stopped["failover_message_id"] is None
    assert _sms_sent_to(env, fictional(5)) == [] and _sms_sent_to(env, fictional(90)) == []


def test_replayed_and_racing_reports_send_one_failover_sms(env):
    to = fictional(99)  # accepted, never finalized: the test writes the final reports itself
    mms_id = _mms(env, to, sms_failover={"text": "fallback"}).json()["data"]["id"]
    provider_id = env.wait_status(mms_id, "sent")["provider_id"]

    replayed_id = str(uuid.uuid4())
    answers: list = []

    def post(event_id: str) -> None:
        answers.append(_report(env, provider_id, to, "delivery_failed", event_id=event_id))

    threads = [threading.Thread(target=post, args=(eid,))
               for eid in (replayed_id, replayed_id, str(uuid.uuid4()), str(uuid.uuid4()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    post(replayed_id)

    assert {a.status_code for a in answers} == {200}
    mms = env.wait_status(mms_id, "undelivered")
    assert mms["failover_message_id"] == ids.failover_message_id(mms_id)
    _wait(env.api, mms["failover_message_id"], "sent")  # 99: the SMS too is never finalized
    time.sleep(1.0)  # any second SMS would have been dispatched by now
    assert len(_sms_sent_to(env, to)) == 1
    assert [h["to"] for h in env.message(mms_id)["history"]].count("undelivered") == 1


def test_a_failover_the_balance_cannot_cover_fails_insufficient_balance(env):
    tenant_id, key = env.new_tenant(balance_micros=MMS_US + SMS_US - 1)
    client = env.client(key)
    to = no_mms(3)
    response = client.post("/api/v1/messages/sms", json={"to": to, "body": "x", "media_urls": [env.sample_media_url],
                                                         "sms_failover": {"text": "y"}})
    assert response.status_code == 200, response.text
    mms = _wait(client, response.json()["data"]["id"], "undelivered")
    sms = _wait(client, mms["failover_message_id"], "failed")
    assert sms["error_code"] == "INSUFFICIENT_BALANCE"
    assert env.balance(tenant_id) == SMS_US - 1  # nothing charged for the SMS that was not sent
    assert _sms_sent_to(env, to) == []


def test_a_failover_left_half_done_is_finished_by_the_sweeper(env):
    """The MMS leg failed and its failover was linked, but the process died before the SMS leg was created."""
    from infra import collections as C

    to = fictional(99)
    mms_id = _mms(env, to, sms_failover={"text": "late"}).json()["data"]["id"]
    env.wait_status(mms_id, "sent")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    env.store.db.collection(C.MESSAGES).document(mms_id).update({
        "status": "undelivered", "error_code": "DELIVERY_FAILED", "failover_message_id":
        ids.failover_message_id(mms_id), "failover_due": past})

    status, body = env.stack.sweep()
    assert status == 200, body
    assert json.loads(body)["failovers"] == 1
    _wait(env.api, ids.failover_message_id(mms_id), "sent")
    status, body = env.stack.sweep()
    assert json.loads(body)["failovers"] == 0
    assert len(_sms_sent_to(env, to)) == 1


def test_bad_failover_input_is_a_400_naming_the_field(env):
    cases = [
        ({"sms_failover": {"text": "x" * 1601}}, "sms_failover.text"),
        ({"sms_failover": {"text": ""}}, "sms_failover.text"),
        ({"sms_failover": {"text": "x", "colour": "red"}}, "sms_failover.colour"),
    ]
    for extra, field in cases:
        response = _mms(env, fictional(1), **extra)
        assert response.status_code == 400, response.text
        assert field in [d["field"] for d in response.json()["error"]["details"]]
    sms_only = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "x",
                                                           "sms_failover": {"text": "y"}})
    assert sms_only.status_code == 400
    assert sms_only.json()["error"]["details"][0]["field"] == "sms_failover"
