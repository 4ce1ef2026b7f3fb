"""smart_encoding and encoding: "gsm7" through the functions (issue 25, item 3): the accept answers report the
SMS text's encoding and segments, the stored message carries the text as sent and is priced on it, and a text
that gsm7 refuses is a 400 BODY_NOT_GSM7 with nothing stored or charged."""

from __future__ import annotations

import pytest

from tests.conftest import fictional
from tools.batch_demo import deliverable_numbers

pytestmark = pytest.mark.stack

# UCS-2 for its curly quotes, long dash and ellipsis: 98 characters, two segments of 70; GSM-7 once they are
# replaced (100 characters: one segment of 160).
LOOK_ALIKES = "Your order \u201cA-12\u201d ships today \u2014 we\u2019ll text you when it\u2019s out\u2026 " + "x" * 36
REPLACED = 'Your order "A-12" ships today - we\'ll text you when it\'s out... ' + "x" * 36


def _micros(price: dict) -> int:
    return round(float(price["amount"]) * 1_000_000)


def _refused(response, field: str, character: str, position: int) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BODY_NOT_GSM7"
    assert [d["field"] for d in error["details"]] == [field]
    issue = error["details"][0]["issue"]
    assert f"U+{ord(character):04X}" in issue and f"position {position}" in issue, issue
    assert field in error["message"]
    assert "message_id" not in error  # nothing was stored to read
    return error


def test_the_sample_body_is_what_the_tests_say():
    assert len(LOOK_ALIKES) == 98 and len(REPLACED) == 100


@pytest.mark.parametrize("extra", [{}, {"validity_period": 3600}], ids=["plain-path", "model-path"])
def test_a_smart_encoded_sms_is_stored_counted_and_priced_as_gsm7(env, extra):
    before = env.balance()
    as_written = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": LOOK_ALIKES, **extra})
    smart = env.api.post("/api/v1/messages/sms", json={"to": fictional(2), "body": LOOK_ALIKES,
                                                       "smart_encoding": True, **extra})
    assert as_written.status_code == 200, as_written.text
    assert smart.status_code == 200, smart.text

    written = as_written.json()["data"]
    assert (written["encoding"], written["segments"], written["channel"]) == ("UCS-2", 2, "sms")
    assert "segments_saved" not in written
    answer = smart.json()["data"]
    assert (answer["encoding"], answer["segments"], answer["segments_saved"]) == ("GSM-7", 1, 1)
    assert {"id", "status", "channel", "segments", "carrier"} <= set(answer)  # the contract's keys stay

    stored_written, stored_smart = env.message(written["id"]), env.message(answer["id"])
    assert (stored_written["body"], stored_written["encoding"], stored_written["segments"]) == (LOOK_ALIKES, "UCS-2", 2)
    assert (stored_smart["body"], stored_smart["encoding"], stored_smart["segments"]) == (REPLACED, "GSM-7", 1)
    unit = _micros(stored_smart["price"])
    assert unit > 0 and _micros(stored_written["price"]) == 2 * unit  # priced per segment, on the text sent
    assert env.balance() == before - 3 * unit

    sent = env.wait_status(answer["id"], {"sent", "delivered"})
    assert sent["body"] == REPLACED
    assert [m["text"] if "text" in m else m.get("body") for m in env.sim_messages(fictional(2))] == [REPLACED]


def test_gsm7_refuses_what_it_cannot_encode_and_charges_nothing(env):
    before = env.balance()
    to = fictional(3)
    body = "Hi \u2014 your code is 1234 \U0001f600"
    _refused(env.api.post("/api/v1/messages/sms", json={"to": to, "body": body, "encoding": "gsm7"}),
             "body", "\u2014", 3)
    # smart encoding replaces the dash; the emoji has no GSM-7 look-alike (its position is in the text as written)
    _refused(env.api.post("/api/v1/messages/sms", json={"to": to, "body": body, "encoding": "gsm7",
                                                        "smart_encoding": True}), "body", "\U0001f600", 23)
    assert env.balance() == before
    listed = env.api.get("/api/v1/messages", params={"to": to})
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == []
    assert env.sim_messages(to) == []


def test_gsm7_accepts_what_smart_encoding_makes_gsm7(env):
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(4), "body": "It\u2019s here",
                                                          "encoding": "gsm7", "smart_encoding": True})
    assert response.status_code == 200, response.text
    answer = response.json()["data"]
    assert (answer["encoding"], answer["segments"]) == ("GSM-7", 1)
    assert "segments_saved" not in answer  # one segment either way: nothing saved
    assert env.message(answer["id"])["body"] == "It's here"
    plain = env.api.post("/api/v1/messages/sms", json={"to": fictional(4), "body": "plain", "encoding": "gsm7"})
    assert plain.status_code == 200, plain.text
    assert plain.json()["data"]["encoding"] == "GSM-7"


def test_a_group_reports_and_stores_its_sms_failover_text(env):
    response = env.api.post("/api/v1/messages/group", json={
        "to": [fictional(1), fictional(2)], "body": "It\u2019s a picture", "media_urls": [env.sample_media_url],
        "smart_encoding": True, "sms_failover": {"text": LOOK_ALIKES}})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["sms_failover"] == {"encoding": "GSM-7", "segments": 1, "segments_saved": 1}
    assert answer["summary"]["succeeded"] == 2 and "encoding" not in answer  # the MMS body is not an SMS text
    stored = env.message(answer["messages"][0]["message_id"])
    assert stored["sms_failover"]["text"] == REPLACED
    assert stored["body"] == "It\u2019s a picture" and stored["encoding"] is None  # an MMS is sent as written


def test_a_group_whose_failover_text_gsm7_refuses_writes_nothing(env):
    before = env.balance()
    response = env.api.post("/api/v1/messages/group", json={
        "to": [fictional(1), fictional(2)], "body": "picture", "media_urls": [env.sample_media_url],
        "encoding": "gsm7", "sms_failover": {"text": "ok \u4e2d"}})
    _refused(response, "sms_failover.text", "\u4e2d", 3)
    assert env.balance() == before
    for to in (fictional(1), fictional(2)):
        assert env.api.get("/api/v1/messages", params={"to": to}).json()["data"] == []


def test_a_batch_reports_encoding_and_reserves_on_the_smart_encoded_text(env):
    before = env.balance()
    to = deliverable_numbers(3)
    response = env.api.post("/api/v1/messages/batch", json={"to": to, "body": LOOK_ALIKES, "smart_encoding": True})
    assert response.status_code == 202, response.text
    batch = response.json()["data"]
    assert (batch["encoding"], batch["segments"], batch["segments_saved"]) == ("GSM-7", 1, 1)
    assert batch["accepted"] == 3 and batch["id"].startswith("bat_")
    reserved = _micros(batch["reserved"])
    assert env.balance() == before - reserved

    single = env.api.post("/api/v1/messages/sms", json={"to": fictional(5), "body": "one segment"})
    unit = _micros(env.message(single.json()["data"]["id"])["price"])
    assert reserved == 3 * unit  # one segment each, not the two the text as written would cost

    refused = env.api.post("/api/v1/messages/batch", json={"to": to, "body": "\U0001f600 hi", "encoding": "gsm7"})
    _refused(refused, "body", "\U0001f600", 0)
    assert env.balance() == before - reserved - unit


def test_gsm7_with_smart_encoding_never_sends_a_body_grown_past_1600(env):
    before = env.balance()
    body = "x" * 1590 + "\u2026" * 10  # 1600 characters; replaced, 1620
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(3), "body": body,
                                                          "smart_encoding": True, "encoding": "gsm7"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == "body"
    assert "1620 characters" in error["details"][0]["issue"] and "1600" in error["details"][0]["issue"]
    assert env.balance() == before
    # without the demand for GSM-7 the body goes as written (UCS-2), not grown
    sent = env.api.post("/api/v1/messages/sms", json={"to": fictional(3), "body": body, "smart_encoding": True})
    assert sent.status_code == 200, sent.text
    assert sent.json()["data"]["encoding"] == "UCS-2"
    assert env.message(sent.json()["data"]["id"])["body"] == body
