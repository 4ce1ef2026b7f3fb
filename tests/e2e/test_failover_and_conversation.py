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

import pytest

from tests.conftest import fictional, wait_for
from tests.contract import failover_id
from tools.telnyx_sim import sign

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack

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
    assert mms["failover_message_id"] == failover_id(mms_id)
    _wait(env.api, mms["failover_message_id"], "sent")  # 99: the SMS too is never finalized
    env.wait_until_delivered("dispatch")  # every dispatch the reports asked for is done: a second SMS would be out
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
        failover_id(mms_id), "failover_due": past})

    status, body = env.stack.sweep()
    assert status == 200, body
    assert json.loads(body)["failovers"] == 1
    _wait(env.api, failover_id(mms_id), "sent")
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


# -- group conversations -------------------------------------------------------------------------------
def _group_mms(env, numbers: list[str]) -> list[dict]:
    """The simulator's group_mms messages whose recipients are exactly ``numbers``."""
    return [m for m in env.sim_messages() if m["group"] and sorted(m["to"]) == sorted(numbers)]


def test_a_conversation_is_one_group_mms_with_a_leg_status_and_events_per_recipient(env):
    numbers = [fictional(22), fictional(84), fictional(99)]
    response = env.api.post("/api/v1/messages/group", json={
        "to": numbers, "body": "dinner at 8?", "media_urls": [env.sample_media_url], "conversation": True,
        "webhook_url": env.receiver.url})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["conversation_id"].startswith("cnv_")
    assert [m["to"] for m in answer["messages"]] == numbers
    assert answer["summary"]["total"] == 3 and answer["summary"]["failed"] == 0
    ids_ = [m["message_id"] for m in answer["messages"]]

    delivered, undelivered, sent = (env.wait_status(ids_[0], "delivered"), env.wait_status(ids_[1], "undelivered"),
                                    env.wait_status(ids_[2], "sent"))
    [group_mms] = _group_mms(env, numbers)
    assert group_mms["text"] == "dinner at 8?" and group_mms["type"] == "MMS"
    assert {delivered["provider_id"], undelivered["provider_id"], sent["provider_id"]} == {group_mms["id"]}
    assert all(m["conversation_id"] == answer["conversation_id"] for m in (delivered, undelivered, sent))
    assert undelivered["error_code"] == "DELIVERY_FAILED"
    assert len([m for m in env.sim_messages() if not m["group"]]) == 0  # no single sends besides

    # each recipient's own events, under its own message id
    wait_for(lambda: {(e["data"]["id"], e["type"]) for e in map(lambda r: json.loads(r["body"]),
                                                               env.receiver.received)}
             >= {(ids_[0], "message.delivered"), (ids_[1], "message.failed"), (ids_[2], "message.sent")},
             20, "per-recipient events")
    group = env.api.get(f"/api/v1/messages/group/{answer['group_id']}").json()["data"]
    assert group["conversation_id"] == answer["conversation_id"]
    assert [m["status"] for m in group["messages"]] == ["delivered", "undelivered", "sent"]


def test_a_recipient_failing_a_gate_is_left_out_of_the_conversation(env):
    numbers = [fictional(23), fictional(24), fictional(25)]
    env.store.accounts.add_opt_out(env.tenant_id, numbers[1], source="test")
    before = env.balance()
    response = env.api.post("/api/v1/messages/group", json={"to": numbers, "body": "hi", "conversation": True})
    assert response.status_code == 207, response.text
    items = response.json()["messages"]
    assert [m["status"] for m in items] == ["queued", "failed", "queued"]
    assert items[1]["error_code"] == "RECIPIENT_OPTED_OUT"
    env.wait_status(items[0]["message_id"], "delivered")
    env.wait_status(items[2]["message_id"], "delivered")
    assert len(_group_mms(env, [numbers[0], numbers[2]])) == 1
    assert env.sim_messages(numbers[1]) == []
    assert env.balance() == before - 2 * MMS_US


def test_a_refused_conversation_fails_and_refunds_every_member(env):
    numbers = [fictional(26), fictional(91)]  # 91: the provider refuses the whole group_mms (STOP)
    before = env.balance()
    response = env.api.post("/api/v1/messages/group", json={"to": numbers, "body": "hi", "conversation": True,
                                                             "sms_failover": {"text": "sms instead"}})
    ids_ = [m["message_id"] for m in response.json()["messages"]]
    failed = [env.wait_status(i, "failed") for i in ids_]
    assert {m["error_code"] for m in failed} == {"PROVIDER_REJECTED"}
    # nobody can be told apart as the one who opted out: no opt-out recorded, no SMS to anyone
    assert all(m["failover_message_id"] is None for m in failed)
    assert env.balance() == before
    assert [m for m in env.sim_messages() if m["type"] == "SMS"] == []


def test_duplicate_deliveries_of_every_members_task_make_one_group_mms(env):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from infra import collections as C

    numbers = [fictional(27), fictional(28), fictional(29)]
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    response = env.api.post("/api/v1/messages/group", json={"to": numbers, "body": "dup", "conversation": True,
                                                             "scheduled_at": at})
    ids_ = [m["message_id"] for m in response.json()["messages"]]
    for message_id in ids_:  # due now: only our deliveries dispatch it
        env.store.db.collection(C.MESSAGES).document(message_id).update(
            {"scheduled_at": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)})

    def deliver(message_id: str) -> int:
        return httpx.post(env.stack.urls["function:dispatch"], content=json.dumps({"message_id": message_id}),
                          headers={"Content-Type": "application/json"}, timeout=30).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(deliver, ids_ * 3))
    assert statuses == [200] * 9
    for message_id in ids_:
        env.wait_status(message_id, "delivered")
    assert len(_group_mms(env, numbers)) == 1


def test_an_unanswered_group_mms_is_found_by_its_conversation_not_sent_again(env):
    from infra import collections as C

    numbers = [fictional(35), fictional(98)]  # 98: the simulator records the first attempt and drops the answer
    response = env.api.post("/api/v1/messages/group", json={"to": numbers, "body": "lost", "conversation": True})
    assert response.status_code == 200, response.text
    ids_ = [m["message_id"] for m in response.json()["messages"]]
    delivered = [env.wait_status(i, "delivered") for i in ids_]

    [group_mms] = _group_mms(env, numbers)
    assert {m["provider_id"] for m in delivered} == {group_mms["id"]}
    ref = env.store.db.collection(C.CONVERSATIONS).document(response.json()["conversation_id"])
    # the reports may deliver the members before the lookup (a few seconds after the lost answer) records it
    record = wait_for(lambda: (doc := ref.get().to_dict())["dispatch"]["provider_id"] and doc, 20,
                      "the conversation's lookup")
    assert record["dispatch"]["ambiguous_since"] is not None  # it went through the lookup
    assert record["dispatch"]["provider_id"] == group_mms["id"]
    assert len(_group_mms(env, numbers)) == 1
    assert [h["to"] for h in delivered[0]["history"]].count("sent") == 1


def test_a_killed_dispatch_during_conversation_sends_makes_one_group_mms_each(env):
    tenant_id, key = env.new_tenant(rps=100)
    client = env.client(key)
    conversations = [[f"+1{npa}55501{xx:02d}" for xx in (5, 98, 85)] for npa in ("301", "302", "303", "304")]
    started = threading.Event()
    sent: list[list[str]] = []

    def send(numbers: list[str]) -> None:
        response = client.post("/api/v1/messages/group", json={"to": numbers, "body": "k", "conversation": True})
        assert response.status_code == 200, response.text
        sent.append([m["message_id"] for m in response.json()["messages"]])
        started.set()

    threads = [threading.Thread(target=send, args=(numbers,)) for numbers in conversations]
    for t in threads:
        t.start()
    started.wait(10)
    env.stack.kill("dispatch")
    time.sleep(1.0)  # a deliberate outage: deliveries in this second find no dispatch function
    env.stack.start_component("dispatch")
    for t in threads:
        t.join()

    legs = [message_id for group in sent for message_id in group]

    def all_final() -> bool:
        assert env.stack.sweep()[0] == 200
        return all(client.get(f"/api/v1/messages/{i}").json()["data"]["final"] for i in legs)

    wait_for(all_final, 120, "conversation legs never final")
    for numbers in conversations:
        assert len(_group_mms(env, numbers)) == 1, numbers
    by_group: dict[str, set] = {}
    for message_id in legs:
        m = client.get(f"/api/v1/messages/{message_id}").json()["data"]
        assert m["provider_id"], m
        by_group.setdefault(m["conversation_id"], set()).add(m["provider_id"])
    assert len(by_group) == 4 and all(len(p) == 1 for p in by_group.values())
    assert env.balance(tenant_id) == 100_000_000 - len(legs) * MMS_US


def test_bad_conversations_are_a_400_naming_the_field(env):
    too_many = [fictional(30 + i) for i in range(9)]
    cases = [
        {"to": too_many, "body": "x", "conversation": True},
        {"to": [fictional(30), "+442071838750"], "body": "x", "conversation": True},
        {"to": [fictional(30), "not a number"], "body": "x", "conversation": True},
        {"to": [fictional(30)], "body": "x", "conversation": "yes"},
    ]
    for body in cases:
        response = env.api.post("/api/v1/messages/group", json=body)
        assert response.status_code == 400, response.text
        field = response.json()["error"]["details"][0]["field"]
        assert field == ("conversation" if body["conversation"] == "yes" else "to"), response.text
    assert env.sim_messages() == []
    # nine recipients are fine without conversation (the group fan-out allows 20)
    assert env.api.post("/api/v1/messages/group", json={"to": too_many, "body": "x"}).status_code == 200


def test_conversation_and_failover_answers_match_the_spec(env):
    from tests.docs.test_openapi import assert_matches

    response = env.api.post("/api/v1/messages/group", json={
        "to": [fictional(40), no_mms(4)], "body": "spec", "conversation": True, "client_ref": "c",
        "sms_failover": {"text": "spec sms"}, "request_dlr": False, "webhook_failover_url": env.receiver.url})
    assert response.status_code == 200, response.text
    assert_matches("GroupResponse", response.json())
    ids_ = [m["message_id"] for m in response.json()["messages"]]
    mms = env.wait_status(ids_[1], "undelivered")
    assert_matches("Message", mms)
    assert_matches("Message", _wait(env.api, mms["failover_message_id"], "delivered"))
    read = env.api.get(f"/api/v1/messages/group/{response.json()['group_id']}").json()["data"]
    assert_matches("GroupRead", read)
    redacted = env.api.post(f"/api/v1/messages/{env.wait_status(ids_[0], 'delivered')['id']}/redact").json()
    assert_matches("Message", redacted["data"])
