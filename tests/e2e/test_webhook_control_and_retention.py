"""Webhook control (failover URL, request_dlr, client_ref) and retention and redaction, through the stack."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.conftest import fictional, wait_for

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def _events(env, message_id: str | None = None) -> list[dict]:
    events = [json.loads(r["body"]) | {"_failed": r["failed"]} for r in env.receiver.received]
    return [e for e in events if message_id is None or e["data"]["id"] == message_id]


def _refusing_url(env) -> str:
    """A URL that passes the SSRF check in the test stack but never answers 2xx to a POST."""
    return env.stack.urls["storage"].rstrip("/") + "/hooks-that-refuse"


# -- webhook control ------------------------------------------------------------------------------------
def test_an_event_the_primary_url_keeps_refusing_goes_to_the_failover_url(env):
    response = env.api.post("/api/v1/messages/sms", json={
        "to": fictional(7), "body": "x", "webhook_url": _refusing_url(env),
        "webhook_failover_url": env.receiver.url})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    env.wait_status(message_id, "delivered")

    wait_for(lambda: {e["type"] for e in _events(env, message_id)} == {"message.sent", "message.delivered"},
             40, "both events at the failover URL")
    def recorded() -> dict | None:  # the receiver answers before the notifier records its answer
        box = env.leg_doc(message_id)["notifications"]
        return box if {entry["state"] for entry in box.values()} == {"delivered"} else None

    outbox = wait_for(recorded, 10, "both events recorded delivered")
    # three refused attempts on the primary, then the failover URL took it at the fourth
    assert sorted(entry["attempts"] for entry in outbox.values()) == [4, 4]
    assert len(_events(env, message_id)) == 2  # the failover URL got each event once


def test_a_tenant_failover_url_serves_sends_without_their_own(env):
    tenant_id, key = env.new_tenant()
    env.store.accounts.put_tenant(tenant_id, {"webhook_url": _refusing_url(env),
                                              "webhook_failover_url": env.receiver.url})
    response = env.client(key).post("/api/v1/messages/sms", json={"to": fictional(8), "body": "x"})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    wait_for(lambda: "message.delivered" in {e["type"] for e in _events(env, message_id)}, 40,
             "delivered event at the tenant's failover URL")


def test_request_dlr_false_sends_no_customer_events_at_all(env):
    quiet = env.api.post("/api/v1/messages/sms", json={"to": fictional(9), "body": "x", "request_dlr": False,
                                                        "webhook_url": env.receiver.url}).json()["data"]["id"]
    failing = env.api.post("/api/v1/messages/sms", json={"to": fictional(81), "body": "x", "request_dlr": False,
                                                          "webhook_url": env.receiver.url}).json()["data"]["id"]
    loud = env.api.post("/api/v1/messages/sms", json={"to": fictional(10), "body": "x",
                                                       "webhook_url": env.receiver.url}).json()["data"]["id"]
    env.wait_status(quiet, "delivered")
    env.wait_status(failing, "undelivered")
    env.wait_status(loud, "delivered")
    wait_for(lambda: len(_events(env, loud)) >= 2, 20, "the loud message's events")

    assert _events(env, quiet) == [] and _events(env, failing) == []
    assert env.leg_doc(quiet)["notifications"] == {} and env.leg_doc(failing)["notifications"] == {}


def test_client_ref_is_stored_read_back_and_in_every_event(env):
    ref = "crm:case/981 ✓ " + "r" * 3985  # 4000 characters
    assert len(ref) == 4000
    response = env.api.post("/api/v1/messages/group", json={
        "to": [fictional(11), fictional(82)], "body": "x", "client_ref": ref, "webhook_url": env.receiver.url})
    assert response.status_code == 200, response.text
    ids = [m["message_id"] for m in response.json()["messages"]]
    env.wait_status(ids[0], "delivered")
    env.wait_status(ids[1], "undelivered")

    assert [env.message(i)["client_ref"] for i in ids] == [ref, ref]
    wait_for(lambda: len({e["id"] for e in _events(env)}) >= 4, 20, "four events")
    assert {e["data"]["client_ref"] for e in _events(env)} == {ref}


def test_bad_webhook_control_input_is_a_400_naming_the_field(env):
    cases = [
        ({"webhook_failover_url": "https://169.254.169.254/hooks"}, "webhook_failover_url"),
        ({"webhook_failover_url": "http://10.0.0.8/hooks"}, "webhook_failover_url"),
        ({"client_ref": "x" * 4001}, "client_ref"),
        ({"request_dlr": "no"}, "request_dlr"),
    ]
    for extra, field in cases:
        response = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "x", **extra})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"][0]["field"] == field
    assert env.sim_messages(fictional(1)) == []


# -- retention ------------------------------------------------------------------------------------------
def _doc(env, collection: str, doc_id: str) -> dict:
    snap = env.store.db.collection(collection).document(doc_id).get()
    assert snap.exists, f"{collection}/{doc_id}"
    return snap.to_dict()


def test_messages_groups_events_and_idempotency_records_carry_their_ttl(env):
    from infra import collections as C

    tenant_id, key = env.new_tenant()
    env.store.accounts.put_tenant(tenant_id, {"retention_days": 7})
    client = env.client(key)
    response = client.post("/api/v1/messages/group", json={"to": [fictional(12), fictional(13)], "body": "x"},
                           headers={"Idempotency-Key": "retention-test-1"})
    assert response.status_code == 200, response.text
    group_id = response.json()["group_id"]
    message_id = response.json()["messages"][0]["message_id"]
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["data"]["status"] == "delivered", 15)

    leg = env.leg_doc(message_id)
    assert leg["delete_at"] - leg["created_at"] == dt.timedelta(days=7)
    group = _doc(env, C.GROUPS, group_id)
    assert group["delete_at"] - group["created_at"] == dt.timedelta(days=7)
    events = [s.to_dict() for s in env.store.db.collection(C.PROVIDER_EVENTS).stream()
              if (s.to_dict() or {}).get("message_id") == message_id]
    assert events and all(e["expires_at"] == leg["delete_at"] for e in events)
    keys = [s.to_dict() for s in env.store.db.collection(C.IDEMPOTENCY).stream()]
    assert keys and all(k["expires_at"] > k["created_at"] for k in keys)
    # the fields the TTL policies name (docs/deploy.md; Terraform applies infra/collections.py's table)
    for collection, fields in ((C.MESSAGES, leg), (C.GROUPS, group)):
        assert C.TTL_FIELDS[collection] == "delete_at" and fields["delete_at"] is not None, collection


def test_the_default_retention_is_90_days(env):
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(14), "body": "x"}).json()["data"]["id"]
    leg = env.leg_doc(message_id)
    assert leg["delete_at"] - leg["created_at"] == dt.timedelta(days=90)


def test_a_send_scheduled_past_the_retention_is_kept_the_retention_from_when_it_is_due(env):
    tenant_id, key = env.new_tenant()
    env.store.accounts.put_tenant(tenant_id, {"retention_days": 7})
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).replace(microsecond=0)
    response = env.client(key).post("/api/v1/messages/sms", json={"to": fictional(15), "body": "x",
                                                                 "scheduled_at": due.isoformat()})
    assert response.status_code == 200, response.text
    leg = env.leg_doc(response.json()["data"]["id"])
    assert leg["delete_at"] == due + dt.timedelta(days=7)  # not deleted three days before it is sent
    assert env.client(key).delete(f"/api/v1/messages/{leg['id']}").status_code == 200


# -- redaction ------------------------------------------------------------------------------------------
def _blob(env, name: str):
    from infra.clients import storage

    return storage().bucket(env.stack.config.media_bucket).get_blob(name)


def _redact(env, message_id: str):
    return env.api.post(f"/api/v1/messages/{message_id}/redact")


def test_redaction_removes_content_keeps_the_record_and_deletes_unshared_media(env):
    send = {"body": "secret plans", "media_urls": [env.sample_media_url], "metadata": {"customer": "c-9"},
            "client_ref": "ref-1", "sms_failover": {"text": "fallback text"}}
    first = env.api.post("/api/v1/messages/sms", json={"to": fictional(15), **send}).json()["data"]["id"]
    second = env.api.post("/api/v1/messages/sms", json={"to": fictional(16), **send}).json()["data"]["id"]
    before = env.wait_status(first, "delivered")
    env.wait_status(second, "delivered")
    [name] = {m["object"] for m in env.leg_doc(first)["media"]}
    assert {m["object"] for m in env.leg_doc(second)["media"]} == {name}  # one copy, two messages

    response = _redact(env, first)
    assert response.status_code == 200, response.text
    redacted = response.json()["data"]
    assert (redacted["body"], redacted["media_urls"], redacted["metadata"]) == (None, [], {})
    assert redacted["sms_failover"] is None and redacted["redacted_at"]
    for kept in ("status", "price", "created_at", "provider_id", "client_ref", "to"):
        assert redacted[kept] == before[kept], kept
    stored = env.leg_doc(first)
    assert stored["body"] is None and stored["media"] == [] and stored["media_objects"] == []
    assert "secret plans" not in json.dumps(stored, default=str)
    assert _blob(env, name) is not None  # the second message still uses the copy

    assert _redact(env, second).status_code == 200
    assert _blob(env, name) is None  # nobody uses it now
    again = _redact(env, first)
    assert again.status_code == 200 and again.json()["data"]["redacted_at"] == redacted["redacted_at"]


def test_a_message_that_is_not_final_cannot_be_redacted(env):
    message_id = env.api.post("/api/v1/messages/sms", json={
        "to": fictional(17), "body": "later", "scheduled_at": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        .isoformat()}).json()["data"]["id"]
    response = _redact(env, message_id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "MESSAGE_NOT_FINAL"
    assert env.message(message_id)["body"] == "later"
    assert env.api.delete(f"/api/v1/messages/{message_id}").status_code == 200  # leave nothing in flight


def test_redaction_of_an_unknown_or_another_tenants_message_is_404(env):
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(18), "body": "x"}).json()["data"]["id"]
    env.wait_status(message_id, "delivered")
    _, key = env.new_tenant()
    assert env.client(key).post(f"/api/v1/messages/{message_id}/redact").status_code == 404
    assert _redact(env, "msg_doesnotexist0000").status_code == 404
    assert env.message(message_id)["body"] == "x"


# -- logs -----------------------------------------------------------------------------------------------
def test_bodies_and_numbers_never_reach_the_function_logs(env):
    from pathlib import Path

    body, failover_text, number = "zebra-umbrella-7731", "quokka-lantern-4410", "+14155550209"
    group_numbers = [fictional(19), fictional(83)]
    conversation_numbers = [fictional(20, npa="646"), fictional(21, npa="646")]
    env.api.post("/api/v1/messages/sms", json={"to": number, "body": body, "media_urls": [env.sample_media_url],
                                                "sms_failover": {"text": failover_text},
                                                "webhook_url": env.receiver.url}).raise_for_status()
    group = env.api.post("/api/v1/messages/group", json={"to": group_numbers, "body": body,
                                                          "webhook_url": env.receiver.url})
    assert group.status_code == 200, group.text
    ids_ = [m["message_id"] for m in group.json()["messages"]]
    conversation = env.api.post("/api/v1/messages/group", json={"to": conversation_numbers, "body": body,
                                                                 "conversation": True})
    assert conversation.status_code == 200, conversation.text
    env.wait_status(ids_[0], "delivered")
    env.wait_status(ids_[1], "undelivered")
    for item in conversation.json()["messages"]:
        env.wait_status(item["message_id"], "delivered")
    wait_for(lambda: any(json.loads(r["body"])["data"]["body"] == failover_text for r in env.receiver.received),
             30, "the failover SMS's events")
    env.stack.sweep()

    logs = Path(env.stack.logs_dir)
    functions = ["send", "group", "messages", "dispatch", "webhook", "notifier", "sweeper"]
    checked = 0
    for name in functions:
        text = (logs / f"{name}.log").read_text(errors="replace")
        checked += len(text)
        numbers = [number, *group_numbers, *conversation_numbers]
        for secret in (body, failover_text, *numbers, *(n[1:] for n in numbers)):
            assert secret not in text, f"{secret!r} in {name}.log"
    assert checked > 0
    # the logs are the ones that saw these messages: they name them by id, never by content or number
    assert any(message_id in (logs / "dispatch.log").read_text() for message_id in ids_)
