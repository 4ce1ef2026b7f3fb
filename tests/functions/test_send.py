"""POST /api/v1/messages/sms: every request rule, through the function, against the emulators."""

import datetime as dt

import pytest

from tests.conftest import fictional

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def _send(env, **body):
    return env.api.post("/api/v1/messages/sms", json=body)


def _error(response, status, code):
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"]["code"] == code
    assert set(payload["meta"]) == {"request_id", "timestamp", "version"}
    return payload["error"]


def _gate(response, status, code, field):
    """A single send's gate failure: the field at fault in details, the stored message's id in its own key."""
    error = _error(response, status, code)
    assert [d["field"] for d in error["details"]] == [field], error
    assert error["message_id"].startswith("msg_"), error
    return error


def test_invalid_recipient_is_rejected_and_stored_as_failed(env):
    error = _gate(_send(env, to="+1415555", body="x"), 400, "INVALID_PHONE_NUMBER", "to")
    assert env.message(error["message_id"])["status"] == "failed"
    # the message teaches the form expected, and names the field (issue 24, item 3)
    for text in (error["message"], error["details"][0]["issue"]):
        assert text.startswith("to is not a valid phone number") and "E.164" in text and "+14155552671" in text


def test_a_national_format_number_is_told_the_e164_form(env):
    error = _gate(_send(env, to="(415) 555-2671", body="x"), 400, "INVALID_PHONE_NUMBER", "to")
    assert "must be in E.164 format" in error["message"] and "country code" in error["message"]


def test_mms_to_a_non_nanp_number_is_rejected(env):
    error = _gate(_send(env, to="+442071838750", body="x", media_url=env.sample_media_url), 400, "MMS_NANP_ONLY",
                  "to")
    assert env.message(error["message_id"])["error_code"] == "MMS_NANP_ONLY"


def test_sms_may_go_to_any_valid_number(env):
    response = _send(env, to="+442071838750", body="hello from the US")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["channel"] == "sms"


def test_sender_defaults_to_the_tenants_number(env):
    message_id = _send(env, to=fictional(1), body="x").json()["data"]["id"]
    assert env.message(message_id)["from"] == "+18005551234"


def test_sender_not_owned_is_rejected(env):
    error = _gate(_send(env, to=fictional(1), body="x", **{"from": "+18005559999"}), 403, "SENDER_NOT_ALLOWED",
                  "from")
    assert env.message(error["message_id"])["status"] == "failed"
    assert env.sim_messages(fictional(1)) == []


def test_sender_without_mms_capability_cannot_send_mms(env):
    env.store.accounts.put_tenant(env.tenant_id, {"senders": {"+18005551234": {"sms": True, "mms": True},
                                                     "+18005550000": {"sms": True, "mms": False}},
                                         "sender_numbers": ["+18005550000", "+18005551234"]})
    sms = _send(env, to=fictional(2), body="x", **{"from": "+18005550000"})
    assert sms.status_code == 200, sms.text
    _error(_send(env, to=fictional(2), body="x", media_url=env.sample_media_url, **{"from": "+18005550000"}),
           403, "SENDER_NOT_ALLOWED")


@pytest.mark.parametrize(("body", "field"), [
    ({"body": "x" * 1601}, "body"),
    ({"body": ""}, "body"),
    ({}, "body"),
    ({"subject": "s" * 65, "body": "x"}, "subject"),
    ({"media_urls": [f"https://storage.googleapis.com/b/{i}" for i in range(11)]}, "media_urls"),
    ({"media_url": "https://storage.googleapis.com/b/x",
      "media_urls": [f"https://storage.googleapis.com/b/{i}" for i in range(10)]}, "media_urls"),
    ({"body": "x", "unknown": 1}, "unknown"),
    ({"body": "x", "metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
    ({"body": "x", "metadata": {"k" * 41: "v"}}, "metadata"),
    ({"body": "x", "metadata": {"k": "v" * 501}}, "metadata"),
    ({"body": "x", "scheduled_at": "2030-01-01T10:00:00"}, "scheduled_at"),
])
def test_shape_rules(env, body, field):
    error = _error(_send(env, to=fictional(3), **body), 400, "VALIDATION_ERROR")
    assert any(d["field"].startswith(field) for d in error["details"]), error


def test_limits_that_are_allowed(env):
    urls = [f"{env.sample_media_url}?v={i}" for i in range(9)]
    response = _send(env, to=fictional(4), body="x" * 1600, subject="s" * 64, media_url=env.sample_media_url,
                     media_urls=urls, metadata={f"k{i}": "v" * 500 for i in range(20)})
    assert response.status_code == 200, response.text
    message = env.message(response.json()["data"]["id"])
    assert len(message["media_urls"]) == 10
    assert message["subject"] == "s" * 64


@pytest.mark.parametrize(("text", "segments"), [("a" * 160, 1), ("a" * 161, 2), ("é" * 306, 2),
                                                ("😀" * 35, 1), ("😀" * 36, 2), ("[" * 80, 1)])
def test_sms_segments(env, text, segments):
    response = _send(env, to=fictional(5), body=text)
    assert response.json()["data"]["segments"] == segments


@pytest.mark.parametrize("url", ["http://storage.googleapis.com/b/o.png", "https://example.com/o.png",
                                 "https://127.0.0.1/o.png", "https://storage.googleapis.com:8443/b/o.png"])
def test_media_url_rejected(env, url):
    _gate(_send(env, to=fictional(6), body="x", media_urls=[url]), 400, "MEDIA_URL_REJECTED", "media_urls[0]")
    assert env.sim_messages(fictional(6)) == []


def test_a_rejected_media_url_is_named_by_position_without_its_secrets_and_says_why(env):
    good = env.sample_media_url
    foreign = "https://cdn.example.com/pics/cat.jpg?X-Goog-Signature=s3cret#frag"
    error = _gate(_send(env, to=fictional(6), body="x", media_urls=[good, foreign]), 400, "MEDIA_URL_REJECTED",
                  "media_urls[1]")
    message = error["message"]
    assert message == error["details"][0]["issue"]
    assert "media_urls[1] (https://cdn.example.com/pics/cat.jpg) is not on the media host allowlist" in message
    assert "MEDIA_ALLOWED_HOSTS" in message
    stored = env.message(error["message_id"])
    assert stored["error_code"] == "MEDIA_URL_REJECTED" and stored["error_message"] == message
    with_user = "https://reader:hunter2@storage.googleapis.com/b/cat.jpg?X-Goog-Signature=s3cret"
    error = _gate(_send(env, to=fictional(6), body="x", media_url=with_user), 400, "MEDIA_URL_REJECTED", "media_url")
    assert error["message"] == ("media_url (https://storage.googleapis.com/b/cat.jpg) was refused: url must not "
                                "contain user information")
    for text in (message, error["message"]):
        for secret in ("hunter2", "reader", "s3cret", "X-Goog-Signature", "frag"):
            assert secret not in text


def test_a_media_url_on_a_private_address_is_told_it_is_the_address_check(env):
    error = _gate(_send(env, to=fictional(6), body="x", media_url="https://127.0.0.1/o.png"), 400,
                  "MEDIA_URL_REJECTED", "media_url")
    assert "media_url (https://127.0.0.1/o.png) failed the address check" in error["message"]
    assert "allowlist" not in error["message"]


def test_scheduled_send_is_scheduled_and_dispatched_at_its_time(env):
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    response = _send(env, to=fictional(7), body="later", scheduled_at=at.isoformat())
    assert response.json()["data"]["status"] == "scheduled"
    message_id = response.json()["data"]["id"]
    assert env.sim_messages(fictional(7)) == []
    message = env.wait_status(message_id, "delivered", timeout=20)
    sent_at = next(h["at"] for h in message["history"] if h["to"] == "sending")
    assert dt.datetime.fromisoformat(sent_at.replace("Z", "+00:00")) >= at - dt.timedelta(milliseconds=500)


@pytest.mark.parametrize(("delta", "issue"), [(-60, "future"), (181 * 86400, "180 days")])
def test_scheduled_at_window(env, delta, issue):
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delta)
    error = _error(_send(env, to=fictional(8), body="x", scheduled_at=at.isoformat()), 400, "VALIDATION_ERROR")
    assert issue in error["details"][0]["issue"]


def test_metadata_and_webhook_url_are_stored_and_returned(env):
    response = _send(env, to=fictional(9), body="x", metadata={"order": "42"}, webhook_url=env.receiver.url)
    message = env.message(response.json()["data"]["id"])
    assert message["metadata"] == {"order": "42"}


def test_opted_out_recipient_is_rejected(env):
    env.store.accounts.add_opt_out(env.tenant_id, fictional(11), source="test")
    _error(_send(env, to=fictional(11), body="x"), 403, "RECIPIENT_OPTED_OUT")


def test_destination_without_a_price_fails_with_price_unavailable(env):
    single = _send(env, to="+33142685300", body="bonjour")
    error = _gate(single, 400, "PRICE_UNAVAILABLE", "to")
    assert env.message(error["message_id"])["error_message"]
