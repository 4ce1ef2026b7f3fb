"""Request hygiene, authentication and tenant isolation, through the functions as Cloud Functions load
them (functions_framework.create_app(...).test_client()), against the emulators."""

import functools
import json

import pytest
from functions_framework import create_app

from tests.conftest import ROOT, fictional


@functools.cache
def _client(target: str):
    return create_app(target=target, source=str(ROOT / "main.py")).test_client()


def _post(env, target="send", body=None, *, data=None, headers=None):
    headers = {"X-API-Key": env.api_key, "Content-Type": "application/json", **(headers or {})}
    return _client(target).post("/", data=data if data is not None else json.dumps(body), headers=headers)


def _envelope(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    payload = response.get_json()
    assert payload["error"]["code"] == code
    assert payload["meta"]["request_id"] == response.headers["X-Request-Id"]
    return payload


def test_body_over_64_kb_is_413(env):
    _envelope(_post(env, data=json.dumps({"to": fictional(1), "body": "x" * 70_000})), 413, "PAYLOAD_TOO_LARGE")


def test_not_json_is_400_and_wrong_content_type_is_415(env):
    _envelope(_post(env, data="{not json"), 400, "INVALID_JSON")
    _envelope(_post(env, data="[1, 2]"), 400, "INVALID_JSON")
    _envelope(_post(env, data="to=x", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415,
              "UNSUPPORTED_MEDIA_TYPE")


def test_unknown_fields_are_400(env):
    payload = _envelope(_post(env, body={"to": fictional(1), "body": "x", "text": "typo"}), 400, "VALIDATION_ERROR")
    assert payload["error"]["details"] == [{"field": "text", "issue": "unknown field"}]


def test_wrong_method_is_405_in_the_envelope(env):
    response = _client("group").get("/", headers={"X-API-Key": env.api_key})
    _envelope(response, 405, "METHOD_NOT_ALLOWED")


def test_request_id_is_echoed_or_generated(env):
    echoed = _post(env, body={"to": fictional(1), "body": "x"}, headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["X-Request-Id"] == "abc-123"
    assert echoed.get_json()["meta"]["request_id"] == "abc-123"
    generated = _post(env, body={"to": fictional(1), "body": "x"}, headers={"X-Request-Id": "bad id with spaces"})
    assert generated.headers["X-Request-Id"].startswith("req_")


def test_request_id_appears_in_every_log_line_of_the_request(env, capfd):
    _post(env, body={"to": "+1415", "body": "x"}, headers={"X-Request-Id": "trace-me-42"})
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert lines, "the request logged nothing"
    assert all(line.get("request_id") == "trace-me-42" for line in lines)
    assert env.api_key not in json.dumps(lines)


@pytest.mark.parametrize("key", [None, "", "mk_live_unknown", "x" * 500])
def test_missing_or_unknown_key_is_401(env, key):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    response = _client("send").post("/", data=json.dumps({"to": fictional(1), "body": "x"}), headers=headers)
    _envelope(response, 401, "UNAUTHORIZED")


def test_revoked_key_is_401(env):
    from shared.ids import api_key_hash

    env.store.accounts.revoke_api_key(api_key_hash(env.api_key))
    _envelope(_post(env, body={"to": fictional(1), "body": "x"}), 401, "UNAUTHORIZED")


def test_keys_are_stored_only_as_hashes(env):
    from infra import collections as C

    stored = [snap.to_dict() | {"id": snap.id} for snap in env.store.db.collection(C.API_KEYS).stream()]
    assert stored and env.api_key not in json.dumps(stored, default=str)


def test_a_tenant_never_sees_another_tenants_messages(env):
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "x"}).json()["data"]["id"]
    group_id = env.api.post("/api/v1/messages/group", json={"to": [fictional(2)], "body": "x"}).json()["group_id"]
    _, other_key = env.new_tenant(name="other")

    with env.client(other_key) as other:
        for path in (f"/api/v1/messages/{message_id}", f"/api/v1/messages/group/{group_id}",
                     "/api/v1/messages/msg_doesnotexist"):
            response = other.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "NOT_FOUND"
    assert env.api.get(f"/api/v1/messages/{message_id}").status_code == 200


def test_pricing(env):
    response = env.api.get("/api/v1/pricing/messaging", params={"country": "us"})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["country"] == "US"
    assert {c["channel"] for c in data["channels"]} == {"sms", "mms"}
    assert env.api.get("/api/v1/pricing/messaging").status_code == 400
    assert env.api.get("/api/v1/pricing/messaging", params={"country": "ZZ"}).status_code == 404


def test_unknown_public_path_is_404_envelope(env):
    response = env.api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
