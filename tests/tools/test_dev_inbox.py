"""The dev server on its own (no stack: a stand-in Firestore reader): the inbox keeps each event's exact bytes,
so a signature can be checked again on them, and a client that hangs up is no traceback in the make dev log."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from shared.carriers.signatures import tenant_secret, verify_webhook, webhook_headers
from tools.dev_inbox import DevServer

KEY = "dev-signing-key"


class _Tenants:
    def get(self, path: str) -> dict | None:
        return {"id": "tnt_a", "webhook_secret_version": 0} if path.endswith("/tnt_a") else None


@pytest.fixture
def server():
    dev = DevServer("127.0.0.1", 0, project="demo", firestore_url="http://127.0.0.1:9",
                    simulator_url="http://127.0.0.1:9", signing_key=KEY)
    dev.store = _Tenants()  # type: ignore[assignment]
    dev.start()
    yield dev
    dev.close()


def test_an_event_keeps_its_exact_bytes_and_they_verify_again(server):
    secret = tenant_secret(KEY, "tnt_a")
    # Spacing and key order a parse-and-dump would change: the signature covers exactly these bytes.
    body = b'{"type":  "message.delivered",\n "id": "evt_1", "data": {"id": "msg_1", "body": "caf\xc3\xa9"}}'
    headers = webhook_headers([secret], "evt_1", int(time.time()), body)
    answer = httpx.post(f"{server.url}/inbox/tnt_a", content=body, headers=headers, timeout=5)
    assert answer.status_code == 200 and answer.json()["signature_valid"] is True

    [event] = httpx.get(f"{server.url}/_dev/inbox", timeout=5).json()["data"]
    assert event["raw_body"].encode() == body and event["body"]["data"]["body"] == "café"
    verify_webhook(secret, event["raw_body"].encode(), event["headers"])  # re-verified from the listing alone
    raw = httpx.get(f"{server.url}/_dev/inbox/{event['seq']}/raw", timeout=5)
    assert raw.status_code == 200 and raw.content == body
    verify_webhook(secret, raw.content, event["headers"])
    assert httpx.get(f"{server.url}/_dev/inbox/999/raw", timeout=5).status_code == 404

    httpx.delete(f"{server.url}/_dev/inbox", timeout=5)
    assert httpx.get(f"{server.url}/_dev/inbox/{event['seq']}/raw", timeout=5).status_code == 404


def test_a_body_that_is_not_utf8_is_kept_as_bytes(server):
    body = b"\xff\xfe not text"
    httpx.post(f"{server.url}/inbox/tnt_a", content=body, timeout=5)
    [event] = httpx.get(f"{server.url}/_dev/inbox", timeout=5).json()["data"]
    assert event["raw_body"] is None and event["signature"]["valid"] is False
    assert httpx.get(f"{server.url}/_dev/inbox/{event['seq']}/raw", timeout=5).content == body


def test_a_client_that_hangs_up_mid_answer_leaves_no_traceback(server, caplog, capsys, monkeypatch):
    # A console tab closed while its poll is answered: the write fails with BrokenPipeError (or a reset).
    def hang_up(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("tools.dev_inbox._Handler._get", hang_up)
    caplog.set_level(logging.DEBUG, logger="dev_inbox")
    with socket.create_connection(server.server_address[:2], timeout=5) as conn:
        conn.sendall(b"GET /_dev/api/state HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(100) == b""  # closed, no answer
    assert not caplog.records
    assert "Traceback" not in capsys.readouterr().err


def test_the_server_itself_stays_quiet_about_a_reset_but_not_about_a_real_error(server, capsys):
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        server.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == ""
    try:
        raise ValueError("a bug")
    except ValueError:
        server.handle_error(None, ("127.0.0.1", 1))
    assert "ValueError: a bug" in capsys.readouterr().err
