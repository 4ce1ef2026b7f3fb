"""Hostile input at the edge: bodies nested thousands deep, lone surrogates, Firestore-reserved metadata
keys, odd webhook timestamps, signed reports whose ids cannot name a record. Every answer is a 4xx in
the error envelope, a refused request writes nothing, and what is accepted is stored as sent.

The parsing tests need nothing; the rest go through the functions as Cloud Functions loads them
(``functions_framework.create_app(...).test_client()``) against the emulators."""

import functools
import json
import time
import uuid

import pytest
from functions_framework import create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from infra.web import MAX_JSON_DEPTH, parse
from shared.api.models import GroupRequest, SendRequest
from shared.rules.errors import ApiError, ErrorCode
from tests.conftest import ROOT, fictional
from tools.telnyx_sim import sign


# -- parsing (no stack) -------------------------------------------------------------------------------
def _request(body: bytes):
    return EnvironBuilder(method="POST", data=body, content_type="application/json").get_request()


def _nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 2000, 10_000])
def test_json_nested_too_deep_is_invalid_json(depth, kind):
    body = '{"to": "+14155550101", "body": "x", "metadata": ' + _nested(depth, kind) + "}"
    with pytest.raises(ApiError) as caught:
        parse(_request(body.encode()), SendRequest)
    assert caught.value.code == ErrorCode.INVALID_JSON and caught.value.status == 400


@given(depth=st.integers(MAX_JSON_DEPTH + 1, 9000), kind=st.sampled_from(["array", "object"]),
       model=st.sampled_from([SendRequest, GroupRequest]))
def test_any_nesting_beyond_the_limit_is_invalid_json(depth, kind, model):
    with pytest.raises(ApiError) as caught:
        parse(_request(_nested(depth, kind).join(['{"to": ', "}"]).encode()), model)
    assert caught.value.code == ErrorCode.INVALID_JSON


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = "[{" * 200 + '\\"' + "]}" * 5
    request, _ = parse(_request(json.dumps({"to": "+14155550101", "body": text, "metadata": {"k": text[:500]}})
                                .encode()), SendRequest)
    assert request.body == text


def test_nesting_within_the_limit_is_a_validation_error_not_a_crash():
    body = '{"to": "+14155550101", "body": "x", "metadata": {"k": ' + _nested(MAX_JSON_DEPTH - 3, "array") + "}}"
    with pytest.raises(ApiError) as caught:
        parse(_request(body.encode()), SendRequest)
    assert caught.value.code == ErrorCode.VALIDATION_ERROR


# -- through the functions (stack) -----------------------------------------------------------------
@functools.cache
def _client(target: str):
    return create_app(target=target, source=str(ROOT / "main.py")).test_client()


def _post_text(env, target: str, text: str, headers: dict | None = None):
    """POST raw JSON text: json.dumps would never write a lone surrogate escape, an attacker does."""
    headers = {"X-API-Key": env.api_key, "Content-Type": "application/json", **(headers or {})}
    return _client(target).post("/", data=text.encode(), headers=headers)


def _envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.headers["Content-Type"] == "application/json"
    payload = response.get_json()
    assert payload["error"]["code"] == code, payload
    return payload


def _legs() -> list[dict]:
    from infra import collections as C
    from infra.clients import firestore

    return [snap.to_dict() for snap in firestore().collection(C.MESSAGES).stream()]


def _body(target: str, to: str, extra: str) -> str:
    recipients = json.dumps(to if target == "send" else [to])
    return '{"to": ' + recipients + ', "body": "x"' + extra + "}"


@pytest.mark.stack
@pytest.mark.parametrize("target", ["send", "group", "batch"])
@pytest.mark.parametrize("metadata", [r'{"\ud800": "v"}', r'{"k": "\udfff"}', r'{"k": "a\ud800b"}',
                                      r'{"\udc00x": "\ud83d"}'])
def test_a_lone_surrogate_in_metadata_is_a_400_naming_metadata(env, target, metadata):
    response = _post_text(env, target, _body(target, fictional(1), ', "metadata": ' + metadata))
    payload = _envelope(response, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in payload["error"]["details"]] == ["metadata"]
    assert _legs() == []


@pytest.mark.stack
@pytest.mark.parametrize("target", ["send", "group", "batch"])
@pytest.mark.parametrize("field", [r'"body": "\ud800"', r'"subject": "\ud800"', r'"webhook_url": "\ud800"',
                                   r'"media": [{"content_type": "image/png", "blob": "aGk=", "filename": "\ud800"}]'])
def test_a_lone_surrogate_in_any_other_string_is_a_400(env, target, field):
    recipients = json.dumps(fictional(1) if target == "send" else [fictional(1)])
    content = "" if field.startswith('"body"') else ', "body": "x"'
    response = _post_text(env, target, '{"to": ' + recipients + content + ", " + field + "}")
    _envelope(response, 400, "VALIDATION_ERROR")
    assert _legs() == []


@pytest.mark.stack
@pytest.mark.parametrize("target", ["send", "group", "batch"])
@pytest.mark.parametrize("key", ["__x__", "__name__", "____", "__ __"])
def test_a_reserved_metadata_key_is_a_400_naming_metadata(env, target, key):
    response = _post_text(env, target, _body(target, fictional(1), ', "metadata": ' + json.dumps({key: "v"})))
    payload = _envelope(response, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in payload["error"]["details"]] == ["metadata"]
    assert _legs() == []


@pytest.mark.stack
@pytest.mark.parametrize("target", ["send", "group"])
def test_metadata_keys_with_field_path_characters_are_stored_verbatim(env, target):
    # Metadata is stored as one map value, never addressed by a dotted field path, so these are safe.
    metadata = {"a.b": "1", "a/b": "2", "`c`": "3", "a`b.c": "4", "x y": "5", "[0]": "6", "__": "7", "$": "8",
                "\u00e9\u4e2d\U0001f600": "\U0001f600"}
    response = _post_text(env, target, _body(target, fictional(1), ', "metadata": ' + json.dumps(metadata)))
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    message_id = data["data"]["id"] if target == "send" else data["messages"][0]["message_id"]
    assert env.message(message_id)["metadata"] == metadata


@pytest.mark.stack
@pytest.mark.parametrize("target", ["send", "group", "batch"])
def test_json_nested_2000_deep_is_a_400(env, target):
    response = _post_text(env, target, _body(target, fictional(1), ', "metadata": ' + _nested(2000, "array")))
    _envelope(response, 400, "INVALID_JSON")
    assert _legs() == []


@pytest.mark.stack
@pytest.mark.parametrize("recipient", [r'"metadata": {"__x__": "v"}', r'"metadata": {"k": "\ud800"}',
                                       r'"client_ref": "\udfff"', r'"metadata": {"k": 5}', r'"to": 14155550101',
                                       r'"client_ref": "' + "x" * 2_100 + '"', r'"extra": 1'])
def test_a_hostile_batch_recipient_is_a_400_naming_it(env, recipient):
    own_to = "" if '"to"' in recipient else f'"to": "{fictional(1)}", '
    text = '{"recipients": [{"to": "' + fictional(2) + '"}, {' + own_to + recipient + '}], "body": "x"}'
    payload = _envelope(_post_text(env, "batch", text), 400, "VALIDATION_ERROR")
    details = payload["error"]["details"]
    assert details and all(d["field"].startswith("recipients.1") for d in details), payload
    assert _legs() == []


# Strings an attacker would put anywhere; each kind must come back as a 4xx envelope or be stored as sent.
_hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from([r"\ud800", r"\udfff", r"x\ud83d", "__x__", "a.b", "a/b", "`x`", "..", "\\u0000", "²", ""]),
).map(lambda s: s if "\\u" in s else json.dumps(s)[1:-1])


@st.composite
def _hostile_bodies(draw) -> str:
    parts = ['"to": "+1415"']  # never a valid number: the request is stored and refused, nothing is sent
    for field in draw(st.lists(st.sampled_from(["body", "subject", "from", "webhook_url", "metadata", "deep"]),
                               unique=True, max_size=4)):
        if field == "metadata":
            entries = draw(st.lists(st.tuples(_hostile_text, _hostile_text), max_size=3))
            parts.append('"metadata": {' + ", ".join(f'"{k}": "{v}"' for k, v in entries) + "}")
        elif field == "deep":
            parts.append('"media": ' + _nested(draw(st.integers(1, 3000)), draw(st.sampled_from(["array", "object"]))))
        else:
            parts.append(f'"{field}": "{draw(_hostile_text)}"')
    return "{" + ", ".join(parts) + "}"


@pytest.mark.stack
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=_hostile_bodies())
def test_any_hostile_body_is_a_4xx_envelope(env, text):
    response = _post_text(env, "send", text)
    assert 400 <= response.status_code < 500, (text, response.get_data(as_text=True)[:300])
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json()["error"]["code"]


# -- the webhook ----------------------------------------------------------------------------------------
def _webhook(body: bytes, timestamp: str, signature: str):
    return _client("webhook").post("/", data=body, headers={
        "Content-Type": "application/json", "telnyx-timestamp": timestamp, "telnyx-signature-ed25519": signature})


@pytest.mark.stack
@pytest.mark.parametrize("timestamp", ["²", "¹²³", "9" * 5000, "1" + "0" * 4300])
def test_an_odd_timestamp_is_401_unauthenticated(env, timestamp):
    body = b'{"data": {"id": "e1", "event_type": "message.sent", "payload": {}}}'
    now = str(int(time.time()))
    _envelope(_webhook(body, timestamp, sign(env.stack.sim_private_key, now, body)), 401, "INVALID_SIGNATURE")


@pytest.mark.stack
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timestamp=st.text(alphabet=st.characters(max_codepoint=0xFF, exclude_categories=["Cc"]), max_size=40)
       | st.text(alphabet="0123456789²³¹", min_size=4000, max_size=6000))
def test_any_timestamp_header_is_answered_401(env, timestamp):
    body = b"{}"
    _envelope(_webhook(body, timestamp, "A" * 88), 401, "INVALID_SIGNATURE")


def _signed(env, data: dict):
    body = json.dumps({"data": data}).encode()
    now = str(int(time.time()))
    return _webhook(body, now, sign(env.stack.sim_private_key, now, body))


def _report(**fields) -> dict:
    return {"id": str(uuid.uuid4()), "event_type": "message.finalized", "occurred_at": "2026-11-23T18:00:00Z",
            "payload": {"id": str(uuid.uuid4()), "to": [{"phone_number": fictional(1), "status": "delivered"}]},
            **fields}


@pytest.mark.stack
@pytest.mark.parametrize("event_id", ["", "a/b", "/", ".", "..", "__x__", "x" * 200, "a\u0000b"])
def test_a_signed_report_with_an_unusable_event_id_is_a_400(env, event_id):
    _envelope(_signed(env, _report(id=event_id)), 400, "VALIDATION_ERROR")


@pytest.mark.stack
@pytest.mark.parametrize("url", ["https://gw.test/webhooks/telnyx?leg=../../x", "https://gw.test/w?leg=msg_x/../y",
                                 "https://gw.test/w?leg=__x__", "https://gw.test/w?leg=", "https://gw.test/w?leg=.."])
def test_a_signed_report_naming_no_leg_of_ours_is_an_unknown_message(env, url):
    data = _report()
    data["payload"]["webhook_url"] = url
    response = _signed(env, data)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["outcome"] == "unknown message"


@pytest.mark.stack
@pytest.mark.parametrize("payload", [{"id": "a/b"}, {"id": ""}, {"to": "x"}, {"text": r"\ud800"}, "x"])
def test_a_signed_report_with_a_malformed_payload_is_a_400(env, payload):
    data = _report(payload=payload)
    if isinstance(payload, dict) and payload.get("text") == r"\ud800":
        body = json.dumps({"data": _report(payload={})}).replace('"payload": {}', '"payload": {"text": "\\ud800"}')
        now = str(int(time.time()))
        response = _webhook(body.encode(), now, sign(env.stack.sim_private_key, now, body.encode()))
    else:
        response = _signed(env, data)
    _envelope(response, 400, "VALIDATION_ERROR")
