"""An Idempotency-Key belongs to the operation, not to how its path is spelled: the same key and body
sent to ``/api/v1/messages/sms`` and ``/api/v1/messages/sms/`` is one message and one provider send.

The functions scope a key to their route whatever path reaches them (functions-framework serves a
function at every path); the gateway, like API Gateway, routes only the exact spelling of a path without
parameters, so a trailing-slash spelling is a 404 that sends nothing."""

import functools

import pytest
from functions_framework import create_app

from tests.conftest import ROOT, fictional, wait_for

pytestmark = pytest.mark.stack

SPELLINGS = {
    "send": ("/api/v1/messages/sms", "/api/v1/messages/sms/"),
    "group": ("/api/v1/messages/group", "/api/v1/messages/group/"),
}


@functools.cache
def _client(target: str):
    return create_app(target=target, source=str(ROOT / "main.py")).test_client()


def _legs() -> list[dict]:
    from infra import collections as C
    from infra.clients import firestore

    return [snap.to_dict() for snap in firestore().collection(C.MESSAGES).stream()]


def _ids(target: str, payload: dict) -> list[str]:
    return [payload["data"]["id"]] if target == "send" else [m["message_id"] for m in payload["messages"]]


@pytest.mark.parametrize("target", ["send", "group"])
def test_a_second_spelling_of_the_path_replays_the_first_answer(env, target):
    to = fictional(1)
    body = {"to": to if target == "send" else [to], "body": "once"}
    headers = {"X-API-Key": env.api_key, "Idempotency-Key": f"spelling-{target}"}
    canonical, slashed = SPELLINGS[target]

    first = _client(target).post(canonical, json=body, headers=headers)
    second = _client(target).post(slashed, json=body, headers=headers)

    assert first.status_code == 200, first.get_data(as_text=True)
    assert second.status_code == 200, second.get_data(as_text=True)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert _ids(target, second.get_json()) == _ids(target, first.get_json())
    assert len(_legs()) == 1
    message_id = _ids(target, first.get_json())[0]
    env.wait_status(message_id, {"sent", "delivered"})
    assert len(env.sim_messages(to)) == 1


@pytest.mark.parametrize("target", ["send", "group"])
def test_the_gateway_does_not_route_a_trailing_slash_spelling(env, target):
    to = fictional(2)
    body = {"to": to if target == "send" else [to], "body": "once"}
    canonical, slashed = SPELLINGS[target]

    first = env.api.post(canonical, json=body, headers={"Idempotency-Key": f"gw-{target}"})
    second = env.api.post(slashed, json=body, headers={"Idempotency-Key": f"gw-{target}"})

    assert first.status_code == 200, first.text
    assert second.status_code == 404, second.text
    assert second.json()["error"]["code"] == "NOT_FOUND"
    assert len(_legs()) == 1
    env.wait_status(_ids(target, first.json())[0], {"sent", "delivered"})
    wait_for(lambda: len(env.sim_messages(to)) == 1, message="one provider send")


def test_a_parameter_path_takes_one_trailing_slash_as_api_gateway_does(env):
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(3), "body": "x"}).json()["data"]["id"]
    plain = env.api.get(f"/api/v1/messages/{message_id}")
    slashed = env.api.get(f"/api/v1/messages/{message_id}/")
    assert plain.status_code == slashed.status_code == 200
    assert slashed.json()["data"]["id"] == message_id
    doubled = env.api.get(f"/api/v1/messages/{message_id}//")
    assert doubled.status_code == 404 and doubled.json()["error"]["code"] == "NOT_FOUND"
