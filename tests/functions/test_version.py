"""Every answer's ``meta`` names the version of mmsgate that gave it: through each public function as Cloud
Functions loads it (functions_framework test clients; a refused method needs no stack), and a real send and
read through the local stack's gateway."""

from __future__ import annotations

import functools

import pytest
from functions_framework import create_app

from shared.api.version import VERSION
from tests.conftest import ROOT, fictional

PUBLIC = ("send", "group", "batch", "messages", "optouts", "templates")


@functools.cache
def _client(target: str):
    return create_app(target=target, source=str(ROOT / "main.py")).test_client()


@pytest.mark.parametrize("target", PUBLIC)
def test_an_error_answer_of_every_public_function_names_the_version(target):
    response = _client(target).put("/")  # refused before any read: 405, or 401 where PUT is a method it takes
    assert response.status_code in (401, 405), response.get_data(as_text=True)
    meta = response.get_json()["meta"]
    assert meta["version"] == VERSION
    assert meta["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.stack
def test_a_send_and_its_read_name_the_version(env):
    sent = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "version"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["meta"]["version"] == VERSION
    read = env.api.get(f"/api/v1/messages/{sent.json()['data']['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["meta"]["version"] == VERSION
