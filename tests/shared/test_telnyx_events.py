"""Hostile webhook input, without the stack: odd ``telnyx-timestamp`` values are a bad signature, and a
signed event whose ids cannot be stored is a 400, whatever it holds (never an exception the edge would
turn into a 500)."""

import json
import uuid

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.carriers.signatures import BadSignature, tenant_secret, verify_telnyx, verify_webhook, webhook_headers
from shared.carriers.telnyx_events import Report, parse_report
from shared.rules.errors import ApiError, ErrorCode
from tools.telnyx_sim import generate_keypair, sign

PRIVATE, PUBLIC = generate_keypair()
NOW = 1_800_000_000


# -- timestamps -------------------------------------------------------------------------------------
@pytest.mark.parametrize("timestamp", [
    "²", "³", "¹", "１８００００００００", "١٨٠٠٠٠٠٠٠٠",  # str.isdigit() is true for each; int() refuses some
    "9" * 5000, "1" + "0" * 4300,  # int() refuses more than 4300 digits
    "1800000000\n", " 1800000000", "+1800000000", "-1", "1e9", "0x6B49D200", "", "1800000000.0",
])
def test_an_odd_timestamp_is_a_bad_signature(timestamp):
    body = b'{"data": {}}'
    signature = sign(PRIVATE, NOW, body)
    with pytest.raises(BadSignature):
        verify_telnyx(body, timestamp, signature, PUBLIC, now=NOW)


def test_the_right_timestamp_still_verifies():
    body = b'{"data": {}}'
    verify_telnyx(body, str(NOW), sign(PRIVATE, NOW, body), PUBLIC, now=NOW)


@settings(max_examples=300)
@given(timestamp=st.text(max_size=60) | st.text(alphabet=st.characters(categories=["Nd", "No"]), max_size=5000))
def test_any_timestamp_but_the_signed_one_is_a_bad_signature(timestamp):
    body = b'{"data": {}}'
    signature = sign(PRIVATE, NOW, body)
    if timestamp == str(NOW):
        return
    with pytest.raises(BadSignature):
        verify_telnyx(body, timestamp, signature, PUBLIC, now=NOW)


@given(t=st.text(max_size=40) | st.just("²") | st.just("9" * 5000))
def test_a_customer_signature_with_an_odd_timestamp_is_refused(t):
    body = b"{}"
    secret = tenant_secret("master", "tnt_x")
    signature = webhook_headers([secret], "evt_1", NOW, body)["webhook-signature"]
    headers = {"webhook-id": "evt_1", "webhook-timestamp": t, "webhook-signature": signature}
    if t == str(NOW):
        verify_webhook(secret, body, headers, now=NOW)
    else:
        with pytest.raises(BadSignature):
            verify_webhook(secret, body, headers, now=NOW)


# -- signed events ------------------------------------------------------------------------------------
def _event(**data) -> bytes:
    base = {"id": str(uuid.uuid4()), "event_type": "message.finalized", "occurred_at": "2026-11-23T18:00:00Z",
            "payload": {"id": str(uuid.uuid4()), "to": [{"phone_number": "+14155550101", "status": "delivered"}]}}
    return json.dumps({"data": {**base, **data}}).encode()


def _refused(raw: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_report(raw)
    assert caught.value.code == ErrorCode.VALIDATION_ERROR and caught.value.status == 400
    return caught.value


@pytest.mark.parametrize("event_id", ["", "a/b", "/", ".", "..", "__x__", "x" * 129, "a b", "a\nb", "\ud800", 7, None])
def test_an_event_id_that_cannot_name_a_record_is_refused(event_id):
    _refused(_event(id=event_id))


def test_a_uuid_event_id_is_accepted():
    event_id = str(uuid.uuid4())
    assert parse_report(_event(id=event_id)).event_id == event_id


@pytest.mark.parametrize("url, leg", [
    ("https://gw.example/webhooks/telnyx?leg=msg_abc234", "msg_abc234"),
    ("https://gw.example/webhooks/telnyx?leg=../../x", None),
    ("https://gw.example/webhooks/telnyx?leg=msg_abc%2F..", None),
    ("https://gw.example/webhooks/telnyx?leg=", None),
    ("https://gw.example/webhooks/telnyx?leg=MSG_ABC", None),
    ("https://gw.example/webhooks/telnyx?leg=msg_" + "a" * 65, None),
    ("https://gw.example/webhooks/telnyx?leg=__x__", None),
    ("https://gw.example/webhooks/telnyx", None),
    (None, None),
])
def test_only_one_of_our_message_ids_is_taken_from_the_webhook_url(url, leg):
    report = parse_report(_event(payload={"id": str(uuid.uuid4()), "webhook_url": url}))
    assert report.leg_from_url == leg


@pytest.mark.parametrize("data", [
    {"event_type": None}, {"event_type": 5}, {"event_type": ""}, {"event_type": "x" * 65},
    {"occurred_at": "yesterday"}, {"occurred_at": "2026-11-23T18:00:00"}, {"occurred_at": 5},
    {"payload": "x"}, {"payload": []}, {"payload": {"id": "a/b"}}, {"payload": {"id": 5}}, {"payload": {"id": ""}},
    {"payload": {"to": "x"}}, {"payload": {"to": ["x"]}}, {"payload": {"to": [{"status": 5}]}},
    {"payload": {"from": "x"}}, {"payload": {"text": 5}}, {"payload": {"errors": "x"}},
    {"payload": {"errors": [{"title": {"a": 1}}]}}, {"payload": {"errors": [{"code": [1]}]}},
    {"payload": {"webhook_url": 5}}, {"payload": {"webhook_url": "https://x/" + "a" * 3000}},
    {"payload": {"text": "\ud800"}}, {"payload": {"\udc00": "x"}}, {"payload": {"errors": [{"title": "\ud800"}]}},
])
def test_a_malformed_event_is_refused(data):
    _refused(_event(**data))


@pytest.mark.parametrize("raw", [
    b"", b"null", b"[]", b'{"data": null}', b'{"data": []}', b"\xff\xfe", b"{" * 2000, b"[" * 100_000,
    b'{"data": ' * 2000 + b"{}" + b"}" * 2000,
])
def test_a_body_that_is_not_an_event_is_refused(raw):
    _refused(raw)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from(["", "/", "..", "__x__", "\ud800", "msg_abc", "https://x/?leg=../../x", "²"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "event_type", "occurred_at", "payload", "to", "status", "webhook_url", "errors",
                         "from", "text", "title", "code", "phone_number", "\ud800", "x"]), children, max_size=5),
    max_leaves=20,
)


_keys = st.sampled_from(["id", "to", "status", "webhook_url", "errors", "from", "text", "title", "code", "\ud800"])
_events = _json | st.fixed_dictionaries({
    "id": st.uuids().map(str) | _json,
    "event_type": st.sampled_from(["message.sent", "message.finalized", "message.received"]) | _json,
    "occurred_at": st.just("2026-11-23T18:00:00Z") | _json,
    "payload": st.dictionaries(_keys, _json, max_size=6) | _json,
})


@settings(max_examples=150)  # each a nested JSON document: 150 a run, a fresh draw each local run
@given(data=_events)
@example(data={"id": "evt-1", "event_type": "message.sent", "occurred_at": None, "payload": {}})
def test_whatever_the_signed_body_holds_it_is_a_report_or_a_400(data):
    raw = json.dumps({"data": data}).encode()
    try:
        report = parse_report(raw)
    except ApiError as exc:
        assert exc.code == ErrorCode.VALIDATION_ERROR
        return
    assert isinstance(report, Report)
    report.event_id.encode("utf-8")
    assert "/" not in report.event_id and not report.event_id.startswith((".", "_"))
    # What the webhook reads from a report must not raise either.
    assert report.leg_from_url is None or report.leg_from_url.startswith("msg_")
    assert isinstance(report.recipient_status, str)
    assert report.provider_id is None or "/" not in report.provider_id
