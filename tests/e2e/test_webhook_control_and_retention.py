"""Webhook control (failover URL, request_dlr, client_ref) and retention and redaction, through the stack."""

from __future__ import annotations

import json

from tests.conftest import fictional, wait_for


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
    outbox = env.leg_doc(message_id)["notifications"]
    assert {entry["state"] for entry in outbox.values()} == {"delivered"}
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
