"""Tests of the Telnyx simulator (tools/telnyx_sim): API shapes, the outcome table, signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tools.telnyx_sim import SimConfig, generate_keypair, outcome_code, sign, start_server, verify

# Runs a real server or tool (terraform, checkov, the simulator): not part of the fast pure-Python tier.
pytestmark = pytest.mark.stack

API_KEY = "KEYsim_test_123"
FROM = "+15005550006"
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ helpers


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.01):
    """Poll until predicate() is truthy; return its value or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class _Backlogged(ThreadingHTTPServer):
    request_queue_size = 128  # many webhook POSTs arrive at once


class Receiver:
    """A tiny webhook/media server: records every POST, answers with per-path status codes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict] = []
        self.statuses: dict[str, int] = {}  # path -> status for POSTs (default 200)
        self.delays: dict[str, float] = {}  # path -> seconds to wait before answering a POST
        self.files: dict[str, tuple[bytes, str]] = {}  # path -> (body, content type) for GETs
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": {k.lower(): v for k, v in
                                                                            self.headers.items()},
                                              "raw": raw, "json": json.loads(raw)})
                    status = receiver.statuses.get(self.path, 200)
                    delay = receiver.delays.get(self.path, 0)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # noqa: N802
                item = receiver.files.get(self.path)
                if item is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, ctype = item
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = _Backlogged(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def events(self, message_id: str | None = None, path: str | None = None) -> list[dict]:
        with self.lock:
            items = list(self.received)
        return [r for r in items
                if (message_id is None or r["json"]["data"]["payload"]["id"] == message_id)
                and (path is None or r["path"] == path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def keys():
    return generate_keypair()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_config(private_key: str, **overrides) -> SimConfig:
    """Fast timings for tests. ``mdr_lag_s`` is 0 here so that the search tests see a record as soon as its
    message is sent; the lag itself (default 60 s) has its own tests. Idempotency replay stays at its
    default (off): the tests of the replay experiment turn it on explicitly."""
    values = dict(api_key=API_KEY, signing_key=private_key, webhook_delay_ms=20, webhook_retry_pause_ms=10,
                  media_limit_bytes=10_000, log_requests=False, mdr_lag_s=0.0)
    values.update(overrides)
    return SimConfig(**values)


@pytest.fixture
def run_sim(keys):
    """Start simulators with a given configuration (make_config overrides); all are stopped at teardown."""
    started = []

    def run(**overrides):
        server, thread = start_server("127.0.0.1", 0, make_config(keys[0], **overrides))
        started.append((server, thread))
        return server

    yield run
    for server, thread in started:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def sim(keys):
    server, thread = start_server("127.0.0.1", 0, make_config(keys[0]))
    yield server
    server.shutdown()
    thread.join(5)
    assert not thread.is_alive()


@pytest.fixture
def api(sim):
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10,
                      verify=False) as client:
        yield client


def send(api, to, text="hello", receiver=None, **extra):
    body = {"from": FROM, "to": to, "text": text, **extra}
    if receiver is not None:
        body.setdefault("webhook_url", receiver.url + "/hooks")
    return api.post("/v2/messages", json=body)


def sim_messages(api, **params):
    return api.get("/_sim/messages", params=params).json()["data"]


def event_types(events):
    return [e["json"]["data"]["event_type"] for e in events]


def first_error(response):
    return response.json()["errors"][0]


def wait_all_sent(api, count: int) -> list[dict]:
    """Wait until the simulator holds ``count`` messages and every recipient of each has been sent."""
    def ready():
        messages = sim_messages(api)
        done = len(messages) == count and all(r["sent_at"] for m in messages for r in m["recipients"])
        return messages if done else None

    return wait_for(ready)


LOST_ANSWER = (httpx.RemoteProtocolError, httpx.ReadError)  # what a client sees when the connection drops


# ------------------------------------------------------------------ signing helpers


def test_generate_keypair_and_sign_roundtrip(keys):
    private, public = keys
    assert len(base64.b64decode(private)) == 32 and len(base64.b64decode(public)) == 32
    signature = sign(private, "1700000000", b'{"a":1}')
    raw = base64.b64decode(signature)
    assert len(raw) == 64
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(raw, b'1700000000|{"a":1}')
    assert verify(public, 1700000000, '{"a":1}', signature)
    assert not verify(public, 1700000001, '{"a":1}', signature)
    assert not verify(generate_keypair()[1], "1700000000", b'{"a":1}', signature)


def test_outcome_code_parsing():
    assert outcome_code("+14155550198") == 98
    assert outcome_code("+12125550100") == 0
    assert outcome_code("+12125550183") == 83
    assert outcome_code("+14155550298") == 0  # last four must be 01XX
    assert outcome_code("+14156660198") == 0  # digits 4-6 must be 555
    assert outcome_code("+447700900123") == 0
    # The lost-answer block +1NPA55503XX: 300 + XX, outside the other blocks' codes.
    assert [outcome_code(f"+1415555030{d}") for d in (0, 9)] == [300, 309]
    assert [outcome_code(f"+141555503{xx}") for xx in (49, 50, 99)] == [349, 350, 399]
    assert outcome_code("+14155550400") == 0


def test_config_defaults_play_telnyx_as_documented():
    config = SimConfig.from_env({})
    assert config.idempotency_replay is False  # the messaging reference declares no Idempotency-Key
    assert config.idempotency_ttl_s == 86_400
    assert config.mdr_lag_s == 60.0  # records lag; the delay is undocumented, so it is long
    assert config.message_retention_s == 10 * 86_400  # GET /v2/messages/{id}: up to 10 days old
    direct = SimConfig(api_key="k")
    assert (direct.idempotency_replay, direct.mdr_lag_s, direct.message_retention_s) == (False, 60.0, 864_000.0)


def test_config_from_env():
    config = SimConfig.from_env({"TELNYX_SIM_IDEMPOTENCY_REPLAY": "1", "TELNYX_SIM_IDEMPOTENCY_TTL_S": "0",
                                 "TELNYX_SIM_MDR_LAG_S": "0.5", "TELNYX_SIM_MESSAGE_RETENTION_S": "120"})
    assert (config.idempotency_replay, config.idempotency_ttl_s) == (True, 0)
    assert (config.mdr_lag_s, config.message_retention_s) == (0.5, 120)
    assert SimConfig.from_env({"TELNYX_SIM_IDEMPOTENCY_REPLAY": "0"}).idempotency_replay is False
    assert SimConfig.from_env({"TELNYX_SIM_MDR_LAG_S": "120"}).mdr_lag_s == 120
    for name, bad in [("TELNYX_SIM_IDEMPOTENCY_REPLAY", "maybe"), ("TELNYX_SIM_MDR_LAG_S", "-1"),
                      ("TELNYX_SIM_MDR_LAG_S", "soon"), ("TELNYX_SIM_MDR_LAG_S", "nan"),
                      ("TELNYX_SIM_MESSAGE_RETENTION_S", "inf")]:
        with pytest.raises(ValueError, match=name):
            SimConfig.from_env({name: bad})


# ------------------------------------------------------------------ auth and validation


def test_health_and_sim_routes_need_no_auth(sim):
    r = httpx.get(sim.url + "/_sim/health", verify=False)
    assert r.status_code == 200 and r.json()["public_key"] == sim.public_key
    assert httpx.get(sim.url + "/_sim/messages", verify=False).json() == {"data": []}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY},
                                     {"Authorization": f"Basic {API_KEY}"}])
def test_auth_failures(sim, headers):
    r = httpx.post(sim.url + "/v2/messages", json={"from": FROM, "to": "+12125550100", "text": "x"},
                   headers=headers, verify=False)
    assert r.status_code == 401
    assert first_error(r)["code"] == "10009" and first_error(r)["title"] == "Authentication failed"
    assert first_error(r)["detail"]
    unknown = sim.url + "/v2/messages/00000000-0000-4000-8000-000000000000"
    assert httpx.get(unknown, headers=headers, verify=False).status_code == 401


@pytest.mark.parametrize(
    "body, status, code, pointer",
    [
        ({"from": FROM, "text": "x"}, 400, "10004", "/to"),
        ({"to": "+12125550100", "text": "x"}, 400, "10004", "/from"),
        ({"from": FROM, "to": ["+12125550100", "+12125550101"], "text": "x"}, 400, "40310", "/to"),
        ({"from": FROM, "to": "2125550100", "text": "x"}, 400, "10016", "/to"),
        ({"from": "15005550006", "to": "+12125550100", "text": "x"}, 400, "10016", "/from"),
        ({"from": FROM, "to": "+12125550100"}, 400, "40316", None),
        ({"from": FROM, "to": "+12125550100", "text": ""}, 400, "40316", None),
        ({"from": FROM, "to": "+12125550100", "media_urls": [f"http://127.0.0.1:9/{i}" for i in range(11)]},
         400, "40317", None),
        ({"from": FROM, "to": "+12125550100", "text": "x", "type": "FAX"}, 400, "10015", "/type"),
        ({"from": FROM, "to": "+12125550100", "text": "x", "webhook_url": "not a url"}, 400, "10003",
         "/webhook_url"),
        (["not", "an", "object"], 400, "10015", None),
    ],
)
def test_validation_errors(api, body, status, code, pointer):
    r = api.post("/v2/messages", json=body)
    assert r.status_code == status, r.text
    err = first_error(r)
    assert err["code"] == code and err["title"]
    if pointer:
        assert err["source"]["pointer"] == pointer
    assert sim_messages(api) == []


def test_single_element_to_list_is_accepted(api):
    r = api.post("/v2/messages", json={"from": FROM, "to": ["+12125550100"], "text": "x"})
    assert r.status_code == 200 and r.json()["data"]["to"][0]["phone_number"] == "+12125550100"


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[1,"])
def test_bad_json_is_a_telnyx_shaped_400(api, sim, raw):
    r = api.post("/v2/messages", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and first_error(r)["code"] == "10015"
    assert httpx.get(sim.url + "/_sim/health").status_code == 200  # still alive


def test_unknown_message_and_route(api):
    r = api.get("/v2/messages/3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert r.status_code == 404 and first_error(r)["code"] == "10005"
    assert api.get("/v2/nothing_here").status_code == 404


# ------------------------------------------------------------------ the outcome table


def assert_message_object(data, to, text="hello", msg_type="SMS"):
    assert data["record_type"] == "message" and data["direction"] == "outbound"
    assert len(data["id"]) == 36 and data["type"] == msg_type
    assert data["from"]["phone_number"] == FROM
    assert data["to"] == [{"phone_number": to, "status": "queued", "carrier": data["to"][0]["carrier"],
                           "line_type": data["to"][0]["line_type"]}]
    assert data["text"] == text and data["errors"] == [] and data["cost"] is None
    assert data["sent_at"] is None and data["completed_at"] is None
    assert data["received_at"].endswith("Z") and data["valid_until"]
    for key in ("encoding", "parts", "wait_seconds", "media", "webhook_url", "webhook_failover_url",
                "subject", "valid_until", "messaging_profile_id", "organization_id", "cc", "tags"):
        assert key in data


@pytest.mark.parametrize("to, final, error_code", [
    ("+12125550100", "delivered", None),  # ordinary number behaves like 00
    ("+14155550179", "delivered", None),
    ("+14155550180", "delivery_failed", "40008"),
    ("+14155550184", "delivery_failed", "40008"),
    ("+14155550185", "delivery_unconfirmed", None),
    ("+14155550189", "delivery_unconfirmed", None),
])
def test_accepted_then_sent_then_finalized(api, receiver, to, final, error_code):
    r = send(api, to, receiver=receiver)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert_message_object(data, to)
    assert data["webhook_url"] == receiver.url + "/hooks"

    events = wait_for(lambda: len(receiver.events(data["id"])) >= 2 and receiver.events(data["id"]))
    assert event_types(events) == ["message.sent", "message.finalized"]
    sent, finalized = (e["json"] for e in events)
    for event in (sent, finalized):
        assert event["data"]["record_type"] == "event"
        assert event["data"]["payload"]["id"] == data["id"]
        assert event["meta"] == {"attempt": 1, "delivered_to": receiver.url + "/hooks"}
        assert event["data"]["occurred_at"].endswith("Z")
    assert sent["data"]["id"] != finalized["data"]["id"]
    assert sent["data"]["payload"]["to"][0]["status"] == "queued"
    assert sent["data"]["payload"]["sent_at"] and sent["data"]["payload"]["completed_at"] is None
    fin = finalized["data"]["payload"]
    assert fin["to"][0]["status"] == final and fin["completed_at"] and fin["sent_at"]
    assert fin["cost"]["currency"] == "USD" and isinstance(fin["cost"]["amount"], str)
    if error_code:
        assert fin["errors"][0]["code"] == error_code and fin["errors"][0]["title"] == "Undeliverable"
    else:
        assert fin["errors"] == []

    [record] = sim_messages(api)
    assert record["id"] == data["id"] and record["status"] == final and record["to"] == to
    assert record["from"] == FROM and record["text"] == "hello" and record["media_urls"] == []
    assert record["webhook_url"] == receiver.url + "/hooks" and record["received_at"] == data["received_at"]
    got = api.get(f"/v2/messages/{data['id']}").json()["data"]
    assert got["to"][0]["status"] == final


@pytest.mark.parametrize("to", ["+14155550190", "+14155550191", "+14155550192"])
def test_blocked_is_409_and_not_recorded(api, receiver, to):
    for _ in range(2):  # always, not only the first attempt
        r = send(api, to, receiver=receiver)
        assert r.status_code == 409
        assert r.json() == {"errors": [{
            "code": "40300", "title": "Blocked due to STOP message",
            "detail": f"Messages cannot be sent from {FROM} to {to} due to an existing block rule.",
            "meta": first_error(r)["meta"]}]}
    assert sim_messages(api) == []
    time.sleep(0.1)  # waits for something not to happen (nothing was recorded, so no webhook may come)
    assert receiver.events() == []


@pytest.mark.parametrize("to", ["+14155550193", "+14155550195"])
def test_first_attempt_500_then_accepted(api, receiver, to):
    r = send(api, to, receiver=receiver)
    assert r.status_code == 500
    assert first_error(r)["code"] == "10007" and first_error(r)["title"] == "Unexpected error"
    assert sim_messages(api) == []
    assert send(api, to, text="other text", receiver=receiver).status_code == 500  # its own first attempt
    r2 = send(api, to, receiver=receiver)
    assert r2.status_code == 200
    message_id = r2.json()["data"]["id"]
    wait_for(lambda: sim_messages(api)[0]["status"] == "delivered")
    assert [m["id"] for m in sim_messages(api)] == [message_id]
    assert event_types(wait_for(lambda: len(receiver.events()) == 2 and receiver.events())) == [
        "message.sent", "message.finalized"]


@pytest.mark.parametrize("to", ["+14155550196", "+14155550197"])
def test_first_attempt_429_then_accepted(api, receiver, to):
    r = send(api, to, receiver=receiver)
    assert r.status_code == 429
    assert first_error(r)["code"] == "10011" and first_error(r)["title"] == "Too many requests"
    assert r.headers["retry-after"] == "1"
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert name in r.headers
    assert sim_messages(api) == []
    assert send(api, to, receiver=receiver).status_code == 200
    wait_for(lambda: sim_messages(api)[0]["status"] == "delivered")


def test_98_drops_the_connection_but_records_and_delivers(api, receiver):
    to = "+14155550198"
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        send(api, to, receiver=receiver)
    [record] = wait_for(lambda: sim_messages(api))
    assert record["to"] == to and record["attempt"] == 1
    wait_for(lambda: sim_messages(api)[0]["status"] == "delivered")
    events = wait_for(lambda: len(receiver.events(record["id"])) == 2 and receiver.events(record["id"]))
    assert event_types(events) == ["message.sent", "message.finalized"]

    r = send(api, to, receiver=receiver)  # a retry is a brand-new send: no dedupe
    assert r.status_code == 200 and r.json()["data"]["id"] != record["id"]
    assert len(sim_messages(api)) == 2


def test_99_sent_but_never_finalized(api, receiver, sim):
    r = send(api, "+14155550199", receiver=receiver)
    assert r.status_code == 200
    message_id = r.json()["data"]["id"]
    wait_for(lambda: receiver.events(message_id))
    time.sleep(sim.config.webhook_delay_ms / 1000 * 5)  # several delays: no final report may come
    assert event_types(receiver.events(message_id)) == ["message.sent"]
    assert sim_messages(api)[0]["status"] == "sent"
    assert api.get(f"/v2/messages/{message_id}").json()["data"]["to"][0]["status"] == "sent"


def assert_no_webhooks(api, receiver, sim):
    time.sleep(sim.config.webhook_delay_ms / 1000 * 5)  # a webhook POST follows its status change closely
    assert receiver.events() == []
    assert api.get("/_sim/webhooks").json()["data"] == []


@pytest.mark.parametrize("to", ["+14155550300", "+12125550349"])
def test_silent_lost_answer_is_stored_and_delivered_but_never_answered_or_reported(api, receiver, sim, to):
    with pytest.raises(LOST_ANSWER):
        send(api, to, receiver=receiver)
    [record] = sim_messages(api)
    assert record["to"] == to and record["attempt"] == 1
    wait_for(lambda: sim_messages(api)[0]["status"] == "delivered")
    assert_no_webhooks(api, receiver, sim)
    # Only the carrier's own views tell: retrieval by id, and the detail record (lag 0 in this fixture).
    got = api.get(f"/v2/messages/{record['id']}").json()["data"]
    assert got["to"][0]["status"] == "delivered" and got["webhook_url"] == receiver.url + "/hooks"
    [mdr] = mdrs(api, **{"filter[cld]": to})["data"]
    assert (mdr["uuid"], mdr["status"]) == (record["id"], "delivered")

    again = send(api, to, receiver=receiver)  # a later attempt: answered, a new message, just as silent
    assert again.status_code == 200
    second = again.json()["data"]["id"]
    assert second != record["id"] and again.json()["data"]["to"][0]["status"] == "queued"
    wait_for(lambda: {m["status"] for m in sim_messages(api)} == {"delivered"} and len(sim_messages(api)) == 2)
    assert_no_webhooks(api, receiver, sim)
    assert {r["uuid"] for r in mdrs(api, **{"filter[cld]": to})["data"]} == {record["id"], second}


def test_silent_lost_answer_also_withholds_the_profile_webhooks(run_sim, receiver):
    server = run_sim(profile_webhook_url=receiver.url + "/profile")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as client:
        with pytest.raises(LOST_ANSWER):
            send(client, "+14155550301")
        wait_for(lambda: sim_messages(client) and sim_messages(client)[0]["status"] == "delivered")
        assert sim_messages(client)[0]["webhook_url"] == receiver.url + "/profile"
        assert_no_webhooks(client, receiver, server)


@pytest.mark.parametrize("to", ["+14155550350", "+12125550399"])
def test_lost_before_stored_drops_and_stores_nothing_then_a_retry_is_delivered(api, receiver, sim, to):
    with pytest.raises(LOST_ANSWER):
        send(api, to, receiver=receiver)
    time.sleep(sim.config.webhook_delay_ms / 1000 * 3)  # waits for something not to happen: nothing was stored
    assert sim_messages(api) == []
    assert mdrs(api)["data"] == []
    assert_no_webhooks(api, receiver, sim)
    with pytest.raises(LOST_ANSWER):  # another text is another first attempt
        send(api, to, text="other", receiver=receiver)
    assert sim_messages(api) == []

    again = send(api, to, receiver=receiver)
    assert again.status_code == 200
    message_id = again.json()["data"]["id"]
    events = wait_for(lambda: len(receiver.events(message_id)) == 2 and receiver.events(message_id))
    assert event_types(events) == ["message.sent", "message.finalized"]
    assert events[1]["json"]["data"]["payload"]["to"][0]["status"] == "delivered"
    assert [m["id"] for m in sim_messages(api)] == [message_id]


def test_group_with_a_lost_before_stored_recipient_loses_the_whole_first_request(api, receiver):
    body = {"from": FROM, "to": ["+12125550100", "+14155550350"], "text": "g",
            "webhook_url": receiver.url + "/g"}
    with pytest.raises(LOST_ANSWER):
        api.post("/v2/messages/group_mms", json=body)
    assert sim_messages(api) == []
    r = api.post("/v2/messages/group_mms", json=body)
    assert r.status_code == 200
    events = wait_for(lambda: len(receiver.events(r.json()["data"]["id"])) == 4 and receiver.events())
    assert {e["json"]["data"]["payload"]["to"][0]["phone_number"] for e in events} == set(body["to"])


def test_group_with_a_silent_recipient_withholds_only_its_webhooks(api, receiver, sim):
    body = {"from": FROM, "to": ["+12125550100", "+14155550300"], "text": "g",
            "webhook_url": receiver.url + "/g"}
    with pytest.raises(LOST_ANSWER):
        api.post("/v2/messages/group_mms", json=body)
    [record] = sim_messages(api)
    wait_for(lambda: sim_messages(api)[0]["status"] == "delivered")
    wait_for(lambda: len(receiver.events(record["id"])) >= 2)  # the other recipient's two reports
    time.sleep(sim.config.webhook_delay_ms / 1000 * 5)  # and then none for the silent one (waits for a "not")
    events = receiver.events(record["id"])
    assert event_types(events) == ["message.sent", "message.finalized"]
    assert {e["json"]["data"]["payload"]["to"][0]["phone_number"] for e in events} == {"+12125550100"}
    assert {e["to"] for e in api.get("/_sim/webhooks").json()["data"]} == {"+12125550100"}


def test_by_default_a_keyed_retry_after_a_lost_answer_is_a_second_message(api, receiver):
    """The XX=98 case against Telnyx as documented: the key does not save a resend from being a second send."""
    body = {"from": FROM, "to": "+14155550198", "text": "lost answer", "webhook_url": receiver.url + "/hooks"}
    with pytest.raises(LOST_ANSWER):
        keyed(api, body, "mmsgate:msg_98")
    [first] = sim_messages(api)
    retry = keyed(api, body, "mmsgate:msg_98")
    assert retry.status_code == 200 and retry.json()["data"]["id"] != first["id"]
    assert len(sim_messages(api)) == 2
    assert stats(api)["idempotency"]["replays"] == 0


# ------------------------------------------------------------------ webhooks


def test_webhook_signatures_verify_with_the_public_key(api, receiver, keys):
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys[1]))
    r = send(api, "+12125550100", receiver=receiver)
    events = wait_for(lambda: len(receiver.events(r.json()["data"]["id"])) == 2 and receiver.events())
    for event in events:
        headers = event["headers"]
        assert headers["content-type"] == "application/json"
        timestamp = headers["telnyx-timestamp"]
        assert timestamp.isdigit() and abs(int(timestamp) - time.time()) < 60
        signature = base64.b64decode(headers["telnyx-signature-ed25519"])
        assert len(signature) == 64
        public.verify(signature, timestamp.encode() + b"|" + event["raw"])
        with pytest.raises(InvalidSignature):
            public.verify(signature, timestamp.encode() + b"|" + event["raw"] + b" ")


def test_retry_then_failover(api, receiver, sim):
    receiver.statuses["/primary"] = 500
    r = send(api, "+12125550100", receiver=receiver, webhook_url=receiver.url + "/primary",
             webhook_failover_url=receiver.url + "/failover")
    message_id = r.json()["data"]["id"]
    events = wait_for(lambda: len(receiver.events(message_id)) == 8 and receiver.events(message_id))
    # message.sent: 3 attempts on the primary, then the failover; only then message.finalized
    assert [e["path"] for e in events] == ["/primary"] * 3 + ["/failover"] + ["/primary"] * 3 + ["/failover"]
    assert event_types(events) == ["message.sent"] * 4 + ["message.finalized"] * 4
    assert [e["json"]["meta"]["attempt"] for e in events] == [1, 2, 3, 4] * 2
    assert [e["json"]["meta"]["delivered_to"] for e in events[:4]] == [receiver.url + "/primary"] * 3 + [
        receiver.url + "/failover"]
    assert len({e["json"]["data"]["id"] for e in events[:4]}) == 1  # one event, retried
    assert len({e["json"]["data"]["id"] for e in events}) == 2
    log = api.get("/_sim/webhooks", params={"message_id": message_id}).json()["data"]
    assert [(e["status"], e["result"], e["failover"]) for e in log[:4]] == [
        (500, "failed", False)] * 3 + [(200, "delivered", True)]
    assert all(e["event_id"] and e["url"] and e["attempt"] for e in log)


def test_give_up_after_both_urls_fail_and_finalized_still_follows(api, receiver):
    receiver.statuses["/a"] = 503
    receiver.statuses["/b"] = 404
    r = send(api, "+12125550100", receiver=receiver, webhook_url=receiver.url + "/a",
             webhook_failover_url=receiver.url + "/b")
    message_id = r.json()["data"]["id"]
    log = wait_for(lambda: [e for e in api.get("/_sim/webhooks").json()["data"] if e["result"] == "gave_up"]
                   if len(api.get("/_sim/webhooks").json()["data"]) >= 14 else None)
    assert [e["event_type"] for e in log] == ["message.sent", "message.finalized"]
    assert event_types(receiver.events(message_id)) == ["message.sent"] * 6 + ["message.finalized"] * 6


def test_slow_or_redirecting_receiver_counts_as_failure(keys, receiver):
    receiver.delays["/slow"] = 0.5  # over the (test) 0.2 s deadline
    receiver.statuses["/moved"] = 302  # redirects are not followed
    config = make_config(keys[0], webhook_timeout_s=0.2, webhook_attempts=2)
    server, thread = start_server("127.0.0.1", 0, config)
    try:
        r = httpx.post(server.url + "/v2/messages", headers={"Authorization": f"Bearer {API_KEY}"},
                       json={"from": FROM, "to": "+14155550199", "text": "x",
                             "webhook_url": receiver.url + "/slow",
                             "webhook_failover_url": receiver.url + "/moved"}, verify=False)
        assert r.status_code == 200

        def gave_up():
            log = httpx.get(server.url + "/_sim/webhooks", verify=False).json()["data"]
            return log if log and log[-1]["result"] == "gave_up" else None

        log = wait_for(gave_up)
        assert [(e["failover"], e["status"], e["result"]) for e in log] == [
            (False, None, "failed"), (False, None, "failed"), (True, 302, "failed"), (True, 302, "failed"),
            (None, None, "gave_up")]
        assert "timed out" in log[0]["error"]
    finally:
        server.shutdown()
        thread.join(5)


def test_unreachable_webhook_is_logged_as_errors(api, receiver):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there now
    r = send(api, "+14155550199", receiver=receiver, webhook_url=f"http://127.0.0.1:{port}/x")
    log = wait_for(lambda: [e for e in api.get("/_sim/webhooks").json()["data"] if e["result"] == "gave_up"])
    attempts = [e for e in api.get("/_sim/webhooks").json()["data"] if e["result"] == "failed"]
    assert len(attempts) == 3 and all(e["status"] is None and e["error"] for e in attempts)
    assert log[0]["message_id"] == r.json()["data"]["id"]


def test_profile_webhook_url_used_without_message_url(keys, receiver):
    config = make_config(keys[0], profile_webhook_url=receiver.url + "/p")
    server, thread = start_server("127.0.0.1", 0, config)
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        r = httpx.post(server.url + "/v2/messages", headers=headers,
                       json={"from": FROM, "to": "+12125550100", "text": "x"})
        assert r.status_code == 200 and r.json()["data"]["webhook_url"] == receiver.url + "/p"
        wait_for(lambda: len(receiver.events(path="/p")) == 2)
        r = httpx.post(server.url + "/v2/messages", headers=headers,
                       json={"from": FROM, "to": "+12125550100", "text": "y", "use_profile_webhooks": False})
        assert r.status_code == 200 and r.json()["data"]["webhook_url"] is None
        wait_for(lambda: httpx.get(server.url + "/_sim/messages").json()["data"][1]["status"] == "delivered")
        assert len(receiver.events()) == 2
    finally:
        server.shutdown()
        thread.join(5)


# ------------------------------------------------------------------ media


def test_media_is_fetched_and_limited(api, receiver):
    small = b"\x89PNG" + b"x" * 3000
    receiver.files["/small.png"] = (small, "image/png")
    receiver.files["/exact.jpg"] = (b"y" * 10_000, "image/jpeg")  # == the 10 000-byte test limit
    receiver.files["/almost.jpg"] = (b"z" * 9_999, "image/jpeg")

    r = send(api, "+12125550100", text=None, media_urls=[receiver.url + "/small.png"], subject="pic")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["type"] == "MMS" and data["subject"] == "pic"
    assert data["media"] == [{"url": receiver.url + "/small.png", "content_type": "image/png",
                              "sha256": hashlib.sha256(small).hexdigest(), "size": len(small)}]
    assert send(api, "+12125550100", media_urls=[receiver.url + "/almost.jpg"]).status_code == 200

    for urls, words in [([receiver.url + "/exact.jpg"], "10000"),
                        ([receiver.url + "/small.png"] * 4, "less than 10000"),
                        ([receiver.url + "/missing.gif"], "/missing.gif")]:
        r = send(api, "+12125550101", media_urls=urls)
        assert r.status_code == 400, r.text
        err = first_error(r)
        assert err["code"] == "40317" and err["title"] == "Invalid MMS content"
        assert words in err["detail"]
    assert {m["to"] for m in sim_messages(api)} == {"+12125550100"}
    assert len(sim_messages(api, to="+12125550101")) == 0


# ------------------------------------------------------------------ group MMS


def test_group_mms(api, receiver):
    recipients = ["+12125550100", "+14155550181", "+14155550199"]
    r = api.post("/v2/messages/group_mms", json={"from": FROM, "to": recipients, "text": "hi all",
                                                  "webhook_url": receiver.url + "/g"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["type"] == "MMS"
    assert [t["phone_number"] for t in data["to"]] == recipients
    assert {t["status"] for t in data["to"]} == {"queued"}
    # 3 x message.sent, plus message.finalized for the two that get a final report
    events = wait_for(lambda: len(receiver.events(data["id"])) == 5 and receiver.events(data["id"]))
    by_number: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        payload = e["json"]["data"]["payload"]
        assert len(payload["to"]) == 1 and len(payload["cc"]) == 2
        by_number.setdefault(payload["to"][0]["phone_number"], []).append(
            (e["json"]["data"]["event_type"], payload["to"][0]["status"]))
    assert by_number == {
        "+12125550100": [("message.sent", "queued"), ("message.finalized", "delivered")],
        "+14155550181": [("message.sent", "queued"), ("message.finalized", "delivery_failed")],
        "+14155550199": [("message.sent", "queued")],
    }
    got = api.get(f"/v2/messages/{data['id']}").json()["data"]
    assert [t["status"] for t in got["to"]] == ["delivered", "delivery_failed", "sent"]
    [record] = sim_messages(api, to="+14155550181")
    assert record["to"] == recipients and record["group"] is True


def test_group_mms_limits(api):
    nine = [f"+1212555{1000 + i}" for i in range(9)]
    r = api.post("/v2/messages/group_mms", json={"from": FROM, "to": nine, "text": "x"})
    assert r.status_code == 400 and first_error(r)["code"] == "40310"
    r = api.post("/v2/messages/group_mms", json={"from": FROM, "to": nine[:8], "text": "x"})
    assert r.status_code == 200 and len(r.json()["data"]["to"]) == 8
    r = api.post("/v2/messages/group_mms", json={"from": FROM, "to": ["+12125551000", "+14155550190"],
                                                  "text": "x"})
    assert r.status_code == 409 and "+14155550190" in first_error(r)["detail"]


# ------------------------------------------------------------------ state, concurrency, process


def test_reset_forgets_messages_attempts_and_logs(api, receiver):
    assert send(api, "+14155550193", receiver=receiver).status_code == 500
    assert send(api, "+14155550193", receiver=receiver).status_code == 200
    wait_for(lambda: len(api.get("/_sim/webhooks").json()["data"]) == 2)
    assert api.post("/_sim/reset").status_code == 200
    assert sim_messages(api) == [] and api.get("/_sim/webhooks").json()["data"] == []
    assert send(api, "+14155550193", receiver=receiver).status_code == 500  # first attempt again


def test_filter_by_recipient(api):
    for to in ("+12125550100", "+12125550101", "+12125550100"):
        assert send(api, to).status_code == 200
    assert len(sim_messages(api, to="+12125550100")) == 2
    raw = httpx.get(str(api.base_url) + "/_sim/messages?to=+12125550101").json()["data"]  # unescaped +
    assert [m["to"] for m in raw] == ["+12125550101"]


def test_many_concurrent_sends(sim, receiver):
    def one(i):
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=sim.url, headers=headers, verify=False) as client:
            return send(client, f"+1212555{2000 + i}", text=f"n{i}", receiver=receiver).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(one, range(64)))
    assert statuses == [200] * 64
    assert len(httpx.get(sim.url + "/_sim/messages").json()["data"]) == 64
    wait_for(lambda: len(receiver.events()) == 128, timeout=10)


def test_cli_serves_and_stops_on_sigterm(keys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, TELNYX_SIM_API_KEY=API_KEY, TELNYX_SIM_SIGNING_KEY=keys[0],
               TELNYX_SIM_WEBHOOK_DELAY_MS="10")
    command = [sys.executable, "-m", "tools.telnyx_sim", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def healthy():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/_sim/health").json()
            except httpx.HTTPError:
                return None

        assert wait_for(healthy, timeout=10)["public_key"] == keys[1]
        r = httpx.post(f"http://127.0.0.1:{port}/v2/messages", headers={"Authorization": f"Bearer {API_KEY}"},
                       json={"from": FROM, "to": "+12125550100", "text": "cli"})
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        stderr = proc.stderr.read().decode()
        assert "POST /v2/messages" in stderr and "listening on" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ Idempotency-Key (telnyx.md §1.9)


def keyed(api, body, key, path="/v2/messages", **headers):
    """POST exactly these bytes with an Idempotency-Key (a replay must see a byte-identical body)."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return api.post(path, content=raw, headers={"Content-Type": "application/json", "Idempotency-Key": key,
                                                **headers})


def stats(api):
    return api.get("/_sim/stats").json()["data"]


@pytest.fixture
def replay_sim(run_sim):
    """A simulator with TELNYX_SIM_IDEMPOTENCY_REPLAY=1: the generic idempotency page, an experiment only."""
    return run_sim(idempotency_replay=True)


@pytest.fixture
def replay_api(replay_sim):
    with httpx.Client(base_url=replay_sim.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as c:
        yield c


def test_by_default_a_keyed_resend_creates_a_second_message(api, receiver):
    body = {"from": FROM, "to": "+12125550100", "text": "once?", "webhook_url": receiver.url + "/hooks"}
    first, again = keyed(api, body, "mmsgate:msg_one"), keyed(api, body, "mmsgate:msg_one")
    assert first.status_code == again.status_code == 200
    ids = [first.json()["data"]["id"], again.json()["data"]["id"]]
    assert ids[0] != ids[1]
    assert sorted(m["id"] for m in sim_messages(api)) == sorted(ids)
    for message_id in ids:  # two messages, each with its own reports
        events = wait_for(lambda m=message_id: len(receiver.events(m)) == 2 and receiver.events(m))
        assert event_types(events) == ["message.sent", "message.finalized"]
    idempotency = stats(api)["idempotency"]
    assert idempotency["replay"] is False and idempotency["replays"] == 0 and idempotency["ignored"] == 2
    assert idempotency["records"] == 0


def test_by_default_group_mms_ignores_the_key_too(api):
    body = {"from": FROM, "to": ["+12125550101", "+12125550102"], "text": "g"}
    answers = [keyed(api, body, "k-group", path="/v2/messages/group_mms") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["data"]["id"] != answers[1].json()["data"]["id"]
    assert len(sim_messages(api)) == 2


def test_by_default_the_key_is_neither_checked_nor_compared(api):
    body = {"from": FROM, "to": "+12125550100", "text": "first"}
    assert keyed(api, body, "k-1").status_code == 200
    assert keyed(api, {**body, "text": "second"}, "k-1").status_code == 200  # no 422
    for key in ["", "has space", "slash/no", "x" * 256, "semi;colon"]:  # no format check
        assert keyed(api, body, key).status_code == 200
    assert len(sim_messages(api)) == 7
    assert stats(api)["idempotency"]["conflicts"] == 0


def test_identical_keyed_request_replays_the_first_answer_and_sends_nothing(replay_api, receiver):
    body = {"from": FROM, "to": "+12125550100", "text": "once", "webhook_url": receiver.url + "/hooks"}
    first = keyed(replay_api, body, "mmsgate:msg_one")
    assert first.status_code == 200, first.text
    message_id = first.json()["data"]["id"]
    # Headers are not part of the request's identity: another User-Agent still gets the replay.
    again = keyed(replay_api, body, "mmsgate:msg_one", **{"User-Agent": "another-client/2"})
    assert again.status_code == 200
    assert again.content == first.content  # the same answer, byte for byte (same id, status queued)
    assert [m["id"] for m in sim_messages(replay_api)] == [message_id]
    assert sim_messages(replay_api)[0]["idempotency_key"] == "mmsgate:msg_one"
    assert stats(replay_api)["idempotency"]["replays_by_key"] == {"mmsgate:msg_one": 1}
    events = wait_for(lambda: len(receiver.events(message_id)) == 2 and receiver.events())
    assert event_types(events) == ["message.sent", "message.finalized"]  # one message's reports, not two


def test_same_key_with_another_body_or_query_is_422_and_sends_nothing(replay_api):
    body = {"from": FROM, "to": "+12125550100", "text": "first"}
    assert keyed(replay_api, body, "k-1").status_code == 200
    changed = keyed(replay_api, {**body, "text": "second"}, "k-1")
    assert changed.status_code == 422
    assert first_error(changed)["code"] == "10012" and "k-1" in first_error(changed)["detail"]
    # Same fields, other bytes (key order, spacing) is another body too: Telnyx compares bytes.
    reordered = json.dumps({"text": "first", "to": "+12125550100", "from": FROM}).encode()
    assert keyed(replay_api, reordered, "k-1").status_code == 422
    with_query = replay_api.post("/v2/messages?x=1", content=json.dumps(body, separators=(",", ":"), sort_keys=True),
                          headers={"Content-Type": "application/json", "Idempotency-Key": "k-1"})
    assert with_query.status_code == 422
    assert [m["text"] for m in sim_messages(replay_api)] == ["first"]
    assert stats(replay_api)["idempotency"]["conflicts_by_key"] == {"k-1": 3}
    assert keyed(replay_api, body, "k-1").status_code == 200  # the original request still replays


def test_a_key_is_scoped_to_its_path(replay_api):
    assert keyed(replay_api, {"from": FROM, "to": "+12125550100", "text": "x"}, "shared-key").status_code == 200
    group = keyed(replay_api, {"from": FROM, "to": ["+12125550101", "+12125550102"], "text": "x"}, "shared-key",
                  path="/v2/messages/group_mms")
    assert group.status_code == 200
    assert len(sim_messages(replay_api)) == 2


@pytest.mark.parametrize("to, status", [("+14155550193", 500), ("+14155550196", 429)])
def test_a_failed_keyed_attempt_is_not_stored_so_its_retry_runs(replay_api, to, status):
    body = {"from": FROM, "to": to, "text": "retry me"}
    assert keyed(replay_api, body, "k-fail").status_code == status
    assert sim_messages(replay_api) == [] and stats(replay_api)["idempotency"]["records"] == 0
    second = keyed(replay_api, body, "k-fail")  # runs for real: the outcome table accepts a second attempt
    assert second.status_code == 200
    third = keyed(replay_api, body, "k-fail")  # and now that success is what replays
    assert third.status_code == 200 and third.json()["data"]["id"] == second.json()["data"]["id"]
    assert len(sim_messages(replay_api)) == 1
    assert stats(replay_api)["idempotency"]["replays"] == 1


def test_a_rejected_keyed_request_stays_rejected_and_unrecorded(replay_api):
    body = {"from": FROM, "to": "+14155550190", "text": "stop"}
    for _ in range(2):
        r = keyed(replay_api, body, "k-stop")
        assert r.status_code == 409 and first_error(r)["code"] == "40300"
    assert stats(replay_api)["idempotency"] == {"replay": True, "ignored": 0, "records": 0, "replays": 0,
                                                "conflicts": 0, "replays_by_key": {}, "conflicts_by_key": {}}


def test_98_with_a_key_the_retry_gets_the_replay_one_message(replay_api, receiver):
    body = {"from": FROM, "to": "+14155550198", "text": "lost answer", "webhook_url": receiver.url + "/hooks"}
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        keyed(replay_api, body, "mmsgate:msg_98")
    [record] = sim_messages(replay_api)
    retry = keyed(replay_api, body, "mmsgate:msg_98")
    assert retry.status_code == 200
    assert retry.json()["data"]["id"] == record["id"]
    assert [m["id"] for m in sim_messages(replay_api)] == [record["id"]]
    assert stats(replay_api)["idempotency"]["replays_by_key"] == {"mmsgate:msg_98": 1}
    wait_for(lambda: sim_messages(replay_api)[0]["status"] == "delivered")


def test_replay_on_silent_and_lost_before_stored_retries(replay_api, receiver):
    silent = {"from": FROM, "to": "+14155550300", "text": "s", "webhook_url": receiver.url + "/hooks"}
    with pytest.raises(LOST_ANSWER):
        keyed(replay_api, silent, "k-silent")
    [record] = sim_messages(replay_api)
    assert keyed(replay_api, silent, "k-silent").json()["data"]["id"] == record["id"]  # stored, so replayed
    lost = {"from": FROM, "to": "+14155550350", "text": "l", "webhook_url": receiver.url + "/hooks"}
    with pytest.raises(LOST_ANSWER):
        keyed(replay_api, lost, "k-lost")
    assert len(sim_messages(replay_api)) == 1  # nothing stored, so no record to replay
    retry = keyed(replay_api, lost, "k-lost")
    assert retry.status_code == 200
    assert len(sim_messages(replay_api)) == 2 and stats(replay_api)["idempotency"]["replays"] == 1


@pytest.mark.parametrize("key", ["", "has space", "slash/no", "x" * 256, "semi;colon"])
def test_a_malformed_key_is_400_and_nothing_is_sent(replay_api, key):
    r = keyed(replay_api, {"from": FROM, "to": "+12125550100", "text": "x"}, key)
    assert r.status_code == 400
    assert first_error(r)["code"] == "10015" and first_error(r)["source"] == {"parameter": "Idempotency-Key"}
    assert sim_messages(replay_api) == []


def test_longest_valid_key_is_accepted(replay_api):
    assert keyed(replay_api, {"from": FROM, "to": "+12125550100", "text": "x"}, "a:_-" * 63 + "abc").status_code == 200


def test_replay_on_with_ttl_0_never_replays(run_sim):
    server = run_sim(idempotency_replay=True, idempotency_ttl_s=0)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        body = {"from": FROM, "to": "+12125550100", "text": "x"}
        first, second = keyed(client, body, "k-ttl"), keyed(client, body, "k-ttl")
        assert first.status_code == second.status_code == 200
        assert first.json()["data"]["id"] != second.json()["data"]["id"]
        assert len(sim_messages(client)) == 2
        assert stats(client)["idempotency"]["replays"] == 0


def test_concurrent_identical_keyed_requests_send_once(replay_sim):
    body = {"from": FROM, "to": "+12125550100", "text": "race"}

    def one(_):
        with httpx.Client(base_url=replay_sim.url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            r = keyed(client, body, "k-race")
            return r.status_code, r.json()["data"]["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(8)))
    assert {status for status, _ in answers} == {200}
    assert len({message_id for _, message_id in answers}) == 1
    assert len(httpx.get(replay_sim.url + "/_sim/messages").json()["data"]) == 1


def test_reset_forgets_idempotency_records(replay_api):
    body = {"from": FROM, "to": "+12125550100", "text": "x"}
    first = keyed(replay_api, body, "k-reset").json()["data"]["id"]
    replay_api.post("/_sim/reset")
    assert keyed(replay_api, body, "k-reset").json()["data"]["id"] != first


# ------------------------------------------------------------------ retrieval and detail records


def test_retrieve_returns_the_message_record(api, receiver):
    hook = receiver.url + "/hooks?leg=msg_abc"
    r = send(api, "+14155550181", webhook_url=hook)
    message_id = r.json()["data"]["id"]
    wait_for(lambda: sim_messages(api)[0]["status"] == "delivery_failed")
    got = api.get(f"/v2/messages/{message_id}")
    assert got.status_code == 200
    data = got.json()["data"]
    assert data["record_type"] == "message" and data["direction"] == "outbound" and data["id"] == message_id
    assert data["from"]["phone_number"] == FROM and data["webhook_url"] == hook
    assert [(t["phone_number"], t["status"]) for t in data["to"]] == [("+14155550181", "delivery_failed")]
    assert data["text"] == "hello" and data["type"] == "SMS" and data["received_at"]
    missing = api.get("/v2/messages/3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert missing.status_code == 404 and first_error(missing)["code"] == "10005"


def mdrs(api, **filters):
    params = {"filter[record_type]": "messaging", **filters}
    r = api.get("/v2/detail_records", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def age_message(server, message_id: str, *, received=None, sent=None) -> None:
    """Move a stored message's received_at and its recipients' sent_at into the past (timedeltas)."""
    message = server.store.get(message_id)
    with message.lock:
        if received is not None:
            message.received_at -= received
        for recipient in message.recipients:
            if sent is not None and recipient.sent_at is not None:
                recipient.sent_at -= sent


def test_retrieval_by_id_works_for_10_days_then_404(api, sim):
    message_id = send(api, "+12125550100").json()["data"]["id"]
    wait_all_sent(api, 1)
    age_message(sim, message_id, received=timedelta(days=10) - timedelta(minutes=1))
    assert api.get(f"/v2/messages/{message_id}").status_code == 200
    age_message(sim, message_id, received=timedelta(minutes=1, seconds=1))  # now 10 days and 1 s old
    gone = api.get(f"/v2/messages/{message_id}")
    assert gone.status_code == 404 and first_error(gone)["code"] == "10005"
    # Older messages are found through detail records (telnyx.md §1.1).
    assert [r["uuid"] for r in mdrs(api)["data"]] == [message_id]


def test_retrieval_retention_is_configurable(run_sim):
    server = run_sim(message_retention_s=1.0)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as client:
        message_id = send(client, "+12125550100").json()["data"]["id"]
        assert client.get(f"/v2/messages/{message_id}").status_code == 200
        wait_for(lambda: client.get(f"/v2/messages/{message_id}").status_code == 404, timeout=10)


def test_a_detail_record_appears_only_once_sent_and_the_lag_has_passed(run_sim):
    lag = 1.0
    server = run_sim(mdr_lag_s=lag, webhook_delay_ms=200)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as client:
        message_id = send(client, "+12125550100").json()["data"]["id"]
        assert sim_messages(client)[0]["recipients"][0]["sent_at"] is None
        assert mdrs(client)["data"] == []  # queued: not in MDRs
        [message] = wait_all_sent(client, 1)
        assert mdrs(client)["data"] == []  # sent, but within the lag
        records = wait_for(lambda: mdrs(client)["data"], timeout=10)
        seen = datetime.now(UTC)
        assert [r["uuid"] for r in records] == [message_id]
        sent_at = datetime.fromisoformat(message["recipients"][0]["sent_at"].replace("Z", "+00:00"))
        assert (seen - sent_at).total_seconds() >= lag - 0.001  # never before the lag (ms rounding of sent_at)


def test_detail_records_with_the_default_lag(run_sim):
    """The default (60 s) as one deterministic check: records are moved in time instead of waited for."""
    server = run_sim(mdr_lag_s=SimConfig(api_key="k").mdr_lag_s)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as client:
        message_id = send(client, "+12125550100").json()["data"]["id"]
        wait_for(lambda: sim_messages(client)[0]["status"] == "delivered")
        assert mdrs(client)["data"] == []
        age_message(server, message_id, received=timedelta(seconds=59), sent=timedelta(seconds=59))
        assert mdrs(client)["data"] == []
        age_message(server, message_id, received=timedelta(seconds=2), sent=timedelta(seconds=2))
        assert [r["uuid"] for r in mdrs(client)["data"]] == [message_id]


def test_a_message_never_sent_has_no_detail_record_however_old(run_sim):
    server = run_sim(mdr_lag_s=0.0, webhook_delay_ms=60_000)  # stays queued for the whole test
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as client:
        message_id = send(client, "+12125550100").json()["data"]["id"]
        age_message(server, message_id, received=timedelta(days=1))
        assert sim_messages(client)[0]["status"] == "queued"
        assert mdrs(client)["data"] == []


def test_detail_records_are_filtered_by_sender_recipient_and_direction(api):
    other_from = "+15005550007"
    a = send(api, "+12125550100").json()["data"]["id"]
    b = send(api, "+12125550101").json()["data"]["id"]
    c = api.post("/v2/messages", json={"from": other_from, "to": "+12125550100", "text": "x"}).json()["data"]["id"]
    wait_all_sent(api, 3)

    page = mdrs(api, **{"filter[cli]": FROM, "filter[cld]": "+12125550100", "filter[direction]": "outbound"})
    assert [r["uuid"] for r in page["data"]] == [a]
    record = page["data"][0]
    assert record["record_type"] == "message_detail_record"
    assert (record["cli"], record["cld"], record["direction"]) == (FROM, "+12125550100", "outbound")
    assert record["message_type"] == "SMS" and record["created_at"].endswith("Z")
    assert page["meta"] == {"page_number": 1, "page_size": 20, "total_pages": 1, "total_results": 1}

    assert {r["uuid"] for r in mdrs(api, **{"filter[cli]": FROM})["data"]} == {a, b}
    assert {r["uuid"] for r in mdrs(api, **{"filter[cld]": "+12125550100"})["data"]} == {a, c}
    assert mdrs(api, **{"filter[direction]": "inbound"})["data"] == []
    assert {r["uuid"] for r in mdrs(api, **{"filter[cld][ends_with]": "0101"})["data"]} == {b}
    # An unescaped "+" in the query string arrives as a space; it still matches.
    raw = api.get("/v2/detail_records?filter[record_type]=messaging&filter[cli]=+15005550007").json()["data"]
    assert [r["uuid"] for r in raw] == [c]


def test_detail_records_by_creation_time(api):
    before = send(api, "+12125550100", text="early").json()["data"]["id"]
    # Filters take ISO 8601 date-times (fractions too): this instant lies between the two messages.
    boundary = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    after = send(api, "+12125550100", text="late").json()["data"]["id"]
    wait_all_sent(api, 2)
    assert [r["uuid"] for r in mdrs(api, **{"filter[created_at][gte]": boundary})["data"]] == [after]
    assert [r["uuid"] for r in mdrs(api, **{"filter[created_at][lt]": boundary})["data"]] == [before]
    assert mdrs(api, **{"filter[created_at][gt]": "2999-01-01"})["data"] == []
    assert len(mdrs(api, **{"filter[created_at][gte]": "2000-01-01"})["data"]) == 2  # a date means its 00:00
    assert mdrs(api, **{"filter[date_range]": "tomorrow"})["data"] == []
    assert len(mdrs(api, **{"filter[date_range]": "last_2_days"})["data"]) == 2
    assert [r["uuid"] for r in mdrs(api, sort="created_at")["data"]] == [before, after]
    assert [r["uuid"] for r in mdrs(api)["data"]] == [after, before]  # newest first by default


def test_detail_records_pages_and_group_recipients(api):
    group = api.post("/v2/messages/group_mms", json={"from": FROM, "to": ["+12125550101", "+12125550102"],
                                                      "text": "g"}).json()["data"]["id"]
    single = send(api, "+12125550103").json()["data"]["id"]
    wait_all_sent(api, 2)
    first = mdrs(api, **{"page[size]": "2", "sort": "created_at"})
    assert first["meta"] == {"page_number": 1, "page_size": 2, "total_pages": 2, "total_results": 3}
    assert [(r["uuid"], r["cld"]) for r in first["data"]] == [(group, "+12125550101"), (group, "+12125550102")]
    second = mdrs(api, **{"page[size]": "2", "page[number]": "2", "sort": "created_at"})
    assert [r["uuid"] for r in second["data"]] == [single]
    assert mdrs(api, **{"page[number]": "9"})["data"] == []


def test_detail_records_final_status_follows_the_message(api):
    message_id = send(api, "+14155550181").json()["data"]["id"]
    wait_for(lambda: sim_messages(api)[0]["status"] == "delivery_failed")
    [record] = mdrs(api, **{"filter[uuid]": message_id})["data"]
    assert record["status"] == "failed" and record["errors"] == ["40008"] and record["cost"]


@pytest.mark.parametrize("params, code, parameter", [
    ({}, "10004", "filter[record_type]"),
    ({"filter[record_type]": "telepathy"}, "10015", "filter[record_type]"),
    ({"filter[record_type]": "messaging", "page[size]": "51"}, "10015", "page[size]"),
    ({"filter[record_type]": "messaging", "page[number]": "0"}, "10015", "page[number]"),
    ({"filter[record_type]": "messaging", "filter[created_at][gte]": "yesterday-ish"}, "10015",
     "filter[created_at][gte]"),
    ({"filter[record_type]": "messaging", "filter[date_range]": "someday"}, "10015", "filter[date_range]"),
    ({"filter[record_type]": "messaging", "filter[cli][regex]": ".*"}, "10015", "filter[cli][regex]"),
])
def test_detail_record_search_rejects_bad_queries(api, params, code, parameter):
    r = api.get("/v2/detail_records", params=params)
    assert r.status_code == 400
    assert first_error(r)["code"] == code and first_error(r)["source"] == {"parameter": parameter}


def test_other_record_types_are_empty(api):
    send(api, "+12125550100")
    assert mdrs(api, **{"filter[record_type]": "verify"})["data"] == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_detail_records_and_stats_auth(sim, headers):
    r = httpx.get(sim.url + "/v2/detail_records", params={"filter[record_type]": "messaging"}, headers=headers)
    assert r.status_code == 401 and first_error(r)["code"] == "10009"
    assert httpx.get(sim.url + "/_sim/stats").status_code == 200  # inspection routes stay open


# ------------------------------------------------------------------ handsets that cannot take MMS


@pytest.mark.parametrize("to", ["+14155550200", "+12125550209"])
def test_a_handset_that_cannot_take_mms_fails_the_mms_and_gets_the_sms(api, receiver, to):
    mms = send(api, to, receiver=receiver, type="MMS").json()["data"]
    sms = send(api, to, receiver=receiver).json()["data"]
    assert (mms["type"], sms["type"]) == ("MMS", "SMS")

    for message_id, final in ((mms["id"], "delivery_failed"), (sms["id"], "delivered")):
        events = wait_for(lambda m=message_id: len(receiver.events(m)) >= 2 and receiver.events(m))
        assert event_types(events) == ["message.sent", "message.finalized"]
        payload = events[1]["json"]["data"]["payload"]
        assert payload["to"][0]["status"] == final
        assert [e["code"] for e in payload["errors"]] == (["40008"] if final == "delivery_failed" else [])


def test_the_no_mms_block_is_only_00_to_09():
    assert outcome_code("+14155550210") == 0  # 5550210 is an ordinary number
    assert outcome_code("+14155550205") not in range(100)  # outside the 55501XX table


# ------------------------------------------------------------------ inbound messages (POST /_sim/inbound)


@pytest.fixture
def inbound_sim(keys, receiver):
    config = make_config(keys[0], profile_webhook_url=receiver.url + "/inbound",
                         profile_webhook_failover_url=receiver.url + "/inbound-failover", inbound_media_ttl_ms=60_000)
    server, thread = start_server("127.0.0.1", 0, config)
    yield server
    server.shutdown()
    thread.join(5)


def inject(server, **body):
    return httpx.post(server.url + "/_sim/inbound", json={"from": "+14155550123", "to": FROM, **body})


def test_inbound_delivers_a_signed_message_received_with_media_served_by_the_simulator(inbound_sim, receiver, keys):
    png = b"\x89PNG\r\n\x1a\n" + b"p" * 100
    answer = inject(inbound_sim, text="hi there",
                    media=[{"content_type": "image/png", "data_base64": base64.b64encode(png).decode()}])
    assert answer.status_code == 200, answer.text
    injected = answer.json()["data"]

    [event] = wait_for(lambda: receiver.events(path="/inbound"))
    data = event["json"]["data"]
    assert (data["event_type"], data["id"]) == ("message.received", injected["event_id"])
    payload = data["payload"]
    assert (payload["direction"], payload["type"], payload["id"], payload["text"]) == (
        "inbound", "MMS", injected["id"], "hi there")
    assert payload["from"]["phone_number"] == "+14155550123"
    assert payload["to"] == [{"phone_number": FROM, "status": "webhook_delivered", "carrier": "Telnyx",
                              "line_type": "Wireless"}]
    [media] = payload["media"]
    assert (media["content_type"], media["size"], media["hash_sha256"]) == ("image/png", len(png),
                                                                           hashlib.sha256(png).hexdigest())
    assert verify(keys[1], event["headers"]["telnyx-timestamp"], event["raw"],
                  event["headers"]["telnyx-signature-ed25519"])
    fetched = httpx.get(media["url"])
    assert (fetched.status_code, fetched.content, fetched.headers["content-type"]) == (200, png, "image/png")


def test_inbound_media_links_stop_working_after_their_ttl(inbound_sim):
    """Two links alike but for their TTL (no race with the clock: a loaded machine may take longer than a short
    TTL between the inject and the first GET): the one with a minute left serves, the one with 1 ms stops."""
    data = base64.b64encode(b"GIF89a" + b"g" * 20).decode()
    media = [{"content_type": "image/gif", "data_base64": data}]
    lasting = inject(inbound_sim, text="", media_ttl_ms=60_000, media=media).json()["data"]["media"][0]["url"]
    brief = inject(inbound_sim, text="", media_ttl_ms=1, media=media).json()["data"]["media"][0]["url"]
    assert httpx.get(lasting).status_code == 200
    wait_for(lambda: httpx.get(brief).status_code == 404, timeout=10)
    assert httpx.get(brief).json()["errors"][0]["code"] == "10005"
    assert httpx.get(lasting).status_code == 200


def test_redeliver_sends_the_same_event_again_and_failover_follows_a_failing_url(inbound_sim, receiver):
    injected = inject(inbound_sim, text="STOP").json()["data"]
    wait_for(lambda: receiver.events(path="/inbound"))
    receiver.statuses["/inbound"] = 500
    again = httpx.post(inbound_sim.url + "/_sim/inbound/redeliver", json={"event_id": injected["event_id"]})
    assert again.status_code == 200 and again.json()["data"]["deliveries"] == 2

    [fallback] = wait_for(lambda: receiver.events(path="/inbound-failover"))
    assert fallback["json"]["data"]["id"] == injected["event_id"]
    assert len(receiver.events(path="/inbound")) == 1 + 3  # the first delivery, then three refused attempts
    assert httpx.post(inbound_sim.url + "/_sim/inbound/redeliver", json={"id": "nope"}).status_code == 404
    listed = httpx.get(inbound_sim.url + "/_sim/inbound").json()["data"]
    assert [m["id"] for m in listed] == [injected["id"]]


@pytest.mark.parametrize("body", [
    {"to": "18005550006"}, {"from": ""}, {"text": 5}, {"media": "x"}, {"media": [{"data_base64": "***"}]},
    {"media": [{}] * 11}, {"media_ttl_ms": -1},
])
def test_inbound_bad_input_is_a_telnyx_shaped_400(inbound_sim, receiver, body):
    answer = inject(inbound_sim, **body)
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "10015"
    assert httpx.get(inbound_sim.url + "/_sim/inbound").json()["data"] == []


def test_reset_forgets_inbound_messages_and_their_media(inbound_sim):
    data = base64.b64encode(b"GIF89a" + b"g" * 20).decode()
    injected = inject(inbound_sim, media=[{"content_type": "image/gif", "data_base64": data}]).json()["data"]
    url = injected["media"][0]["url"]
    httpx.post(inbound_sim.url + "/_sim/reset").raise_for_status()
    assert httpx.get(url).status_code == 404
    assert httpx.get(inbound_sim.url + "/_sim/inbound").json()["data"] == []
