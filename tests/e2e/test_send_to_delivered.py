"""The whole path, through the gateway, the real emulators and the Telnyx simulator."""

import hashlib

import pytest

from tests.conftest import fictional, load_json
from tools.seed import sample_png

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def test_single_mms_is_queued_then_delivered_with_one_provider_send(env):
    response = env.api.post("/api/v1/messages/sms", json={
        "to": "+14155550101", "body": "hello", "media_urls": [env.sample_media_url]})

    assert response.status_code == 200, response.text
    body = load_json(response)
    assert body["data"]["channel"] == "mms"
    assert body["data"]["status"] == "queued"
    assert body["data"]["segments"] == 1
    assert body["meta"]["request_id"] == response.headers["X-Request-Id"]

    message = env.wait_status(body["data"]["id"], "delivered", timeout=10)
    assert [h["to"] for h in message["history"]] == ["pending", "queued", "sending", "sent", "delivered"]
    sent = env.sim_messages("+14155550101")
    assert len(sent) == 1
    assert sent[0]["id"] == message["provider_id"]
    # The provider got a signed URL of our own checked copy, and fetched exactly the sample's bytes.
    assert "X-Goog-Signature=" in sent[0]["media_urls"][0]
    assert sent[0]["media"][0]["sha256"] == hashlib.sha256(sample_png()).hexdigest()
    assert message["media_urls"] == [env.sample_media_url]


def test_sms_without_media_stays_sms(env):
    response = env.api.post("/api/v1/messages/sms", json={"to": "+14155550103", "body": "plain text"})

    assert response.status_code == 200, response.text
    assert response.json()["data"]["channel"] == "sms"
    env.wait_status(response.json()["data"]["id"], "delivered")


def test_group_with_a_non_nanp_recipient_is_207_and_the_rest_are_delivered(env):
    response = env.api.post("/api/v1/messages/group", json={
        "to": ["+14155550101", "+14155550102", "+442071838750"],
        "body": "Weekend sale", "media_urls": [env.sample_media_url]})

    assert response.status_code == 207, response.text
    body = load_json(response)
    assert body["summary"] == {"total": 3, "accepted": 2, "failed": 1, "scheduled": 0, "succeeded": 2}
    first, second, third = body["messages"]
    assert (first["to"], first["status"]) == ("+14155550101", "queued")
    assert (second["to"], second["status"]) == ("+14155550102", "queued")
    assert third["status"] == "failed"
    assert third["error_code"] == "MMS_NANP_ONLY"
    assert third["error_message"]

    for leg in (first, second):
        env.wait_status(leg["id"], "delivered", timeout=10)
    # The rejected recipient has a readable, failed row and never reached the provider.
    assert env.message(third["id"])["status"] == "failed"
    assert env.sim_messages("+442071838750") == []
    assert len(env.sim_messages("+14155550101")) == 1
    assert len(env.sim_messages("+14155550102")) == 1


def test_group_where_everyone_succeeds_is_200(env):
    recipients = [fictional(n) for n in range(10, 15)]
    response = env.api.post("/api/v1/messages/group", json={"to": recipients, "body": "hi"})

    assert response.status_code == 200, response.text
    assert response.json()["summary"] == {"total": 5, "accepted": 5, "failed": 0, "scheduled": 0, "succeeded": 5}
    group_id = response.json()["group_id"]
    for item in response.json()["messages"]:
        env.wait_status(item["id"], "delivered")
    group = env.api.get(f"/api/v1/messages/group/{group_id}").json()["data"]
    assert group["summary"]["by_status"] == {"delivered": 5}
    assert [m["to"] for m in group["messages"]] == recipients
    # One shape per concept: an item's id is `id` in the group answer, the group read and the single read,
    # and the summary's counts carry the same names in the answer and the read.
    answered = [m["id"] for m in response.json()["messages"]]
    assert [m["id"] for m in group["messages"]] == answered
    assert [env.message(i)["id"] for i in answered] == answered
    assert {k: group["summary"][k] for k in response.json()["summary"]} == {
        "total": 5, "accepted": 5, "failed": 0, "scheduled": 0, "succeeded": 5}
    assert group["summary"]["delivered"] == 5
