"""Tests of the Twilio simulator (tools/twilio_sim): signing vectors, wire shapes, the outcome table, status
callbacks, opt-out, reconciliation reads, the outage switch. Pure tests are unmarked; server tests are ``stack``."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from tools.twilio_sim import SimConfig, expected_signature, fate, outcome_code, start_server, validate
from tools.twilio_sim.inbound import keyword
from tools.twilio_sim.signing import body_sha256_url, string_to_sign
from tools.twilio_sim.webhooks import Overrides, split_url
from tools.twilio_sim.wire import ApiError, parse_send, segments

TOKEN = "0123456789abcdef0123456789abcdef"
ACCOUNT = "AC" + "a" * 32
FROM = "+15005550006"
REPO = Path(__file__).resolve().parents[2]
SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
stack = pytest.mark.stack


# ------------------------------------------------------------------ pure: signing (twilio.md §4 vectors)

VECTOR_A = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234", "From": "+14158675309",
            "To": "+18005551212"}
URL_A = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_B = {"AccountSid": "AC00000000000000000000000000000001", "ApiVersion": "2010-04-01", "From": "+15005550006",
            "MessageSid": "MM11111111111111111111111111111111", "MessageStatus": "delivered",
            "RawDlrDoneDate": "2608211432", "SmsSid": "MM11111111111111111111111111111111",
            "SmsStatus": "delivered", "To": "+15558675310"}
URL_B = "https://gw.example.com/twilio/status?tenant=acme"


def test_vector_a_string_to_sign_and_signatures():
    assert string_to_sign(URL_A, VECTOR_A) == (
        "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309Digits1234"
        "From+14158675309To+18005551212")
    assert expected_signature("12345", URL_A, VECTOR_A) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert expected_signature("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                              VECTOR_A) == "kvajT1Ptam85bY51eRf/AJRuM3w="


def test_vector_b_status_callback():
    assert expected_signature(TOKEN, URL_B, VECTOR_B) == "HOh3dGkHZqk/KB2C7xof4FTN0+M="
    assert expected_signature(TOKEN, "https://gw.example.com:443/twilio/status?tenant=acme",
                              VECTOR_B) == "JeHe3Ch9O+9yXGyoRlSZaJP7iLk="
    sig = "HOh3dGkHZqk/KB2C7xof4FTN0+M="
    assert validate(TOKEN, URL_B, VECTOR_B, sig)
    assert validate(TOKEN, "https://gw.example.com:8443/twilio/status?tenant=acme", VECTOR_B, sig)
    assert not validate(TOKEN, URL_B + "#rc=3", VECTOR_B, sig)
    assert not validate(TOKEN, URL_B.replace("https", "http"), VECTOR_B, sig)


def test_vector_c_json_body():
    url = body_sha256_url(URL_A, b'{"property": "value", "boolean": true}')
    assert url.endswith("&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620")
    assert expected_signature("12345", url) == "a9nBmqA0ju/hNViExpshrM61xv4="


def test_repeated_parameters_are_deduplicated_and_sorted():
    pairs = [("MediaUrl", "b"), ("MediaUrl", "a"), ("MediaUrl", "b"), ("Body", "x")]
    assert string_to_sign("u", pairs) == "uBodyxMediaUrlaMediaUrlb"
    assert expected_signature("t", "u", pairs) == expected_signature("t", "u", {"Body": "x", "MediaUrl": ["b", "a"]})


# ------------------------------------------------------------------ pure: outcomes, config, parsing


def test_outcome_blocks_do_not_collide_with_the_telnyx_simulator():
    assert outcome_code("+14155550455") == 55
    assert outcome_code("+14155550507") == 107
    for telnyx in ("+14155550198", "+14155550201", "+14155550350", "+12125550100"):
        assert outcome_code(telnyx) == 0 and fate(0).final == "delivered"
    assert fate(42) == fate(0).__class__(final="undelivered", error_code=30003)
    assert fate(67).final == "failed" and fate(67).error_code == 30008
    assert fate(71).via_sending is False and fate(71).error_code == 21610
    assert fate(73).sync_error == 21610 and fate(78).sync_error == 21614
    assert fate(80).final is None
    assert fate(86).first_error == 500 and fate(88).first_error == 503 and fate(89).first_error == 429
    assert fate(91).first_after_store == "hang" and fate(94).first_after_store == "reset"
    assert fate(97).first_lost == "hang" and fate(98).first_lost == "reset" and fate(99).always_500_after_store
    assert fate(105).callbacks == "duplicate" and fate(115).callbacks == "reorder" and fate(125).callbacks == "drop"


def test_config_defaults_and_env():
    config = SimConfig.from_env({"TWILIO_SIM_AUTH_TOKEN": "t"})
    assert (config.rate_limit_per_s, config.list_lag_s, config.outage, config.fetch_media) == (50, 30.0, "off", False)
    assert config.sender_segments_per_s is None and config.queue_capacity_s == 36_000
    config = SimConfig.from_env({"TWILIO_SIM_AUTH_TOKEN": "t", "TWILIO_SIM_OUTAGE": "5xx",
                                 "TWILIO_SIM_NUMBERS": "+15005550006, +15005550007",
                                 "TWILIO_SIM_SENDER_SEGMENTS_PER_S": "0", "TWILIO_SIM_FETCH_MEDIA": "1"})
    assert config.outage == "5xx" and config.numbers == ["+15005550006", "+15005550007"]
    assert config.sender_segments_per_s == 0 and config.fetch_media
    for bad in ({}, {"TWILIO_SIM_AUTH_TOKEN": "t", "TWILIO_SIM_OUTAGE": "maybe"},
                {"TWILIO_SIM_AUTH_TOKEN": "t", "TWILIO_SIM_ACCOUNT_SID": "ACnope"},
                {"TWILIO_SIM_AUTH_TOKEN": "t", "TWILIO_SIM_HANG_S": "-1"}):
        with pytest.raises(ValueError):
            SimConfig.from_env(bad)


def test_connection_overrides_from_the_fragment():
    url, o = split_url("https://h.example/cb?x=1#rc=3&rp=5xx,rt&ct=50&tt=99999")
    assert url == "https://h.example/cb?x=1"
    assert (o.retries, o.policy, o.connect_s, o.total_s) == (3, frozenset({"5xx", "rt"}), 0.1, 15.0)
    assert Overrides.parse("") == Overrides(5.0, 15.0, 15.0, 1, frozenset({"ct"}))
    assert Overrides.parse("rp=all&rc=9").policy == frozenset({"ct", "rt", "4xx", "5xx"})


def test_keywords_and_segments():
    assert [keyword(w) for w in ("stop", " Unsubscribe ", "revoke", "yes", "UNSTOP", "info", "stop please")] == \
        ["STOP", "STOP", "STOP", "START", "START", "HELP", None]
    assert segments("a" * 160) == 1 and segments("a" * 161) == 2 and segments("é" * 0 + "ü" * 160) == 1
    assert segments("ж" * 70) == 1 and segments("ж" * 71) == 2


@pytest.mark.parametrize("form, code", [
    ({"From": FROM, "Body": "x"}, 21604),
    ({"To": "+12125550100", "Body": "x"}, 21603),
    ({"To": "+12125550100", "From": "12345", "Body": "x"}, 21606),
    ({"To": "12125550100", "From": FROM, "Body": "x"}, 21211),
    ({"To": FROM, "From": FROM, "Body": "x"}, 21211),
    ({"To": "+12125550100", "From": FROM}, 21602),
    ({"To": "+12125550100", "From": FROM, "Body": "x" * 1601}, 21658),
    ({"To": "+12125550100", "From": FROM, "MediaUrl": [f"https://m.example/{i}" for i in range(11)]}, 21620),
    ({"To": "+12125550100", "From": FROM, "MediaUrl": ["m.example/a.jpg"]}, 21620),
    ({"To": "+12125550100", "From": FROM, "Body": "x", "StatusCallback": "https://my_host.example/cb"}, 21609),
    ({"To": "+12125550100", "From": FROM, "Body": "x", "ValidityPeriod": "36001"}, 21624),
    ({"To": "+12125550100", "From": FROM, "Body": "x", "ValidityPeriod": "0"}, 21624),
    ({"To": "+12125550100", "From": "+15005550099", "Body": "x"}, 21660),
])
def test_validation_codes(form, code):
    as_lists = {k: v if isinstance(v, list) else [v] for k, v in form.items()}
    with pytest.raises(ApiError) as info:
        parse_send(as_lists, [FROM, "+15005550007"])
    assert (info.value.status, info.value.code) == (400, code)


# ------------------------------------------------------------------ the server: helpers


# httpx's module functions build a client (and load the CA bundle, ~50 ms) per call: one plain client instead.
PLAIN = httpx.Client(verify=False, timeout=5)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Receiver:
    """Records form POSTs (callbacks, inbound) and serves files for GET/HEAD (media)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict] = []
        self.statuses: dict[str, int] = {}
        self.files: dict[str, tuple[bytes, str, str | None]] = {}  # path -> (body, GET type, HEAD type)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers.items()),
                                              "params": dict(parse_qsl(raw.decode(), keep_blank_values=True))})
                    status = receiver.statuses.get(self.path.partition("?")[0], 200)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _file(self, with_body: bool):
                item = receiver.files.get(self.path)
                if item is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, ctype, head_type = item
                self.send_response(200)
                self.send_header("Content-Type", ctype if with_body else (head_type or ctype))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                self._file(True)

            def do_HEAD(self):  # noqa: N802
                self._file(False)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def posts(self, sid: str | None = None) -> list[dict]:
        with self.lock:
            items = list(self.received)
        return [r for r in items if sid is None or r["params"].get("MessageSid") == sid]

    def statuses_of(self, sid: str) -> list[str]:
        return [r["params"]["MessageStatus"] for r in self.posts(sid)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_config(**overrides) -> SimConfig:
    values = dict(auth_token=TOKEN, account_sid=ACCOUNT, status_delay_ms=10, list_lag_s=0.0, hang_s=0.5,
                  sender_segments_per_s=0.0, rate_limit_per_s=0, log_requests=False, workers=4)
    values.update(overrides)
    return SimConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def run_sim():
    started = []

    def run(**overrides):
        server, thread = start_server("127.0.0.1", 0, make_config(**overrides))
        started.append((server, thread))
        return server

    yield run
    for server, thread in started:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def sim(run_sim, receiver):
    return run_sim(inbound_url=receiver.url + "/inbound")


def client_for(server, **kwargs) -> httpx.Client:
    return httpx.Client(base_url=server.api_base, auth=(ACCOUNT, TOKEN), timeout=kwargs.pop("timeout", 5),
                        verify=False, **kwargs)


@pytest.fixture
def api(sim):
    with client_for(sim) as client:
        yield client


def send(api, to, body="hello", receiver=None, **extra):
    data = {"To": to, "From": FROM, "Body": body, **extra}
    if receiver is not None:
        data.setdefault("StatusCallback", receiver.url + "/status")
    return api.post("/Messages.json", data=data)


def fetch(api, sid):
    return api.get(f"/Messages/{sid}.json").json()


# A bound, not a speed claim: generous so a loaded CI box cannot miss it (the sim ticks in ~1 s here).
def wait_status(api, sid, status, timeout=15.0):
    return wait_for(lambda: (m := fetch(api, sid))["status"] == status and m, timeout)


def sim_get(server, path, **params):
    return PLAIN.get(server.url + path, params=params).json()


def assert_error(response, status, code):
    body = response.json()
    assert response.status_code == status, body
    assert body == {"code": code, "message": body["message"], "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status}


# ------------------------------------------------------------------ the server: create, auth, shapes


@stack
@pytest.mark.parametrize("auth", [None, (ACCOUNT, "wrong"), ("AC" + "b" * 32, TOKEN)])
def test_bad_credentials_are_401_20003(sim, auth):
    r = PLAIN.post(sim.api_base + "/Messages.json", data={"To": "+12125550100", "From": FROM, "Body": "x"},
                   auth=auth)
    assert_error(r, 401, 20003)
    assert sim_get(sim, "/_sim/messages")["messages"] == []


@stack
def test_other_account_in_path_is_refused(sim):
    r = PLAIN.get(f"{sim.url}/2010-04-01/Accounts/{'AC' + 'c' * 32}/Messages.json", auth=(ACCOUNT, TOKEN))
    assert_error(r, 401, 20003)


@stack
def test_api_key_credentials(run_sim):
    server = run_sim(api_key_sid="SK" + "1" * 32, api_key_secret="s3cret")
    with client_for(server) as api:
        api.auth = httpx.BasicAuth("SK" + "1" * 32, "s3cret")
        assert send(api, "+12125550100").status_code == 201


@stack
def test_create_answers_201_with_the_message_resource(api, receiver):
    r = send(api, "+12125550100", receiver=receiver)
    assert r.status_code == 201
    m = r.json()
    assert SID.match(m["sid"]) and m["sid"].startswith("SM")
    assert (m["status"], m["num_segments"], m["num_media"]) == ("queued", "1", "0")
    assert m["error_code"] is None and m["price"] is None
    assert m["direction"] == "outbound-api" and m["api_version"] == "2010-04-01" and m["date_sent"] is None
    assert m["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{m['sid']}.json"
    assert parsedate_to_datetime(m["date_created"]).utcoffset().total_seconds() == 0
    assert m["date_created"].endswith(" +0000")
    mms = send(api, "+12125550101", MediaUrl=["https://m.example/a.jpg", "https://m.example/b.png"]).json()
    assert mms["sid"].startswith("MM") and mms["num_media"] == "2"


@stack
def test_delivered_progression_and_signed_callbacks(api, receiver, sim):
    sid = send(api, "+12125550100", receiver=receiver).json()["sid"]
    final = wait_status(api, sid, "delivered")
    assert final["date_sent"] and final["price"].startswith("-")
    wait_for(lambda: len(receiver.posts(sid)) == 3)
    assert sorted(receiver.statuses_of(sid)) == ["delivered", "sending", "sent"]  # never "queued" (§4)
    for post in receiver.posts(sid):
        p = post["params"]
        assert p["MessageSid"] == p["SmsSid"] == sid and p["SmsStatus"] == p["MessageStatus"]
        assert (p["AccountSid"], p["From"], p["To"], p["ApiVersion"]) == (ACCOUNT, FROM, "+12125550100", "2010-04-01")
        assert "ErrorCode" not in p
        assert post["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert validate(TOKEN, receiver.url + "/status", p, post["headers"]["X-Twilio-Signature"])
        assert post["headers"]["X-Twilio-Signature"] == expected_signature(TOKEN, receiver.url + "/status", p)
        assert ("RawDlrDoneDate" in p) == (p["MessageStatus"] == "delivered")
    assert re.match(r"^\d{10}$", next(r["params"]["RawDlrDoneDate"] for r in receiver.posts(sid)
                                      if r["params"]["MessageStatus"] == "delivered"))
    assert [h[0] for h in sim_get(sim, "/_sim/messages", sid=sid)["messages"][0]["_sim"]["history"]] == \
        ["queued", "sending", "sent", "delivered"]


@stack
@pytest.mark.parametrize("to, final, code, seen", [
    ("+12125550440", "undelivered", 30003, ["sending", "sent", "undelivered"]),
    ("+12125550449", "undelivered", 30005, ["sending", "sent", "undelivered"]),
    ("+12125550450", "undelivered", 30006, ["sending", "sent", "undelivered"]),
    ("+12125550455", "undelivered", 30007, ["sending", "sent", "undelivered"]),
    ("+12125550460", "undelivered", 30008, ["sending", "sent", "undelivered"]),
    ("+12125550465", "failed", 30008, ["sending", "failed"]),
    ("+12125550470", "failed", 21610, ["failed"]),
])
def test_carrier_outcomes(api, receiver, to, final, code, seen):
    sid = send(api, to, receiver=receiver).json()["sid"]
    m = wait_status(api, sid, final)
    assert m["error_code"] == code and m["error_message"]
    wait_for(lambda: len(receiver.posts(sid)) == len(seen))
    assert sorted(receiver.statuses_of(sid)) == sorted(seen)
    last = next(r["params"] for r in receiver.posts(sid) if r["params"]["MessageStatus"] == final)
    assert last["ErrorCode"] == str(code)


@stack
def test_no_dlr_leaves_the_message_sent(api, receiver):
    sid = send(api, "+12125550480", receiver=receiver).json()["sid"]
    wait_status(api, sid, "sent")
    time.sleep(0.1)
    assert fetch(api, sid)["status"] == "sent" and sorted(receiver.statuses_of(sid)) == ["sending", "sent"]


@stack
@pytest.mark.parametrize("to, code", [("+12125550473", 21610), ("+12125550475", 21408), ("+12125550477", 21612),
                                      ("+12125550478", 21614)])
def test_sync_refusals_create_nothing(api, sim, to, code):
    for _ in range(2):
        assert_error(send(api, to), 400, code)
    assert sim_get(sim, "/_sim/messages")["messages"] == []


@stack
@pytest.mark.parametrize("to, status, code", [("+12125550485", 500, 20500), ("+12125550487", 503, 20503),
                                              ("+12125550489", 429, 20429)])
def test_first_attempt_fails_unstored_then_succeeds(api, sim, to, status, code):
    assert_error(send(api, to), status, code)
    assert sim_get(sim, "/_sim/messages")["messages"] == []
    r = send(api, to)
    assert r.status_code == 201
    assert [m["sid"] for m in sim_get(sim, "/_sim/messages")["messages"]] == [r.json()["sid"]]


@stack
def test_timeout_after_storing_is_ambiguous(sim, receiver):
    with client_for(sim, timeout=0.2) as api:
        with pytest.raises(httpx.TimeoutException):
            send(api, "+12125550491", receiver=receiver)
        stored = sim_get(sim, "/_sim/messages", to="+12125550491")["messages"]
        assert len(stored) == 1 and stored[0]["_sim"]["answer"] == "hang"
        wait_for(lambda: receiver.statuses_of(stored[0]["sid"]).count("delivered") == 1)
        retry = send(api, "+12125550491")  # no idempotency (§6): a second message
        assert retry.status_code == 201 and retry.json()["sid"] != stored[0]["sid"]


@stack
def test_reset_after_storing_and_500_after_storing(api, sim):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        send(api, "+12125550493")
    assert len(sim_get(sim, "/_sim/messages", to="+12125550493")["messages"]) == 1
    assert_error(send(api, "+12125550495"), 500, 20500)
    assert len(sim_get(sim, "/_sim/messages", to="+12125550495")["messages"]) == 1
    for _ in range(2):
        assert_error(send(api, "+12125550499"), 500, 20500)
    assert len(sim_get(sim, "/_sim/messages", to="+12125550499")["messages"]) == 2


@stack
def test_lost_before_stored(sim):
    with client_for(sim, timeout=0.2) as api:
        with pytest.raises(httpx.TimeoutException):
            send(api, "+12125550497")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            send(api, "+12125550498")
        assert sim_get(sim, "/_sim/messages")["messages"] == []
        assert send(api, "+12125550497").status_code == 201 and send(api, "+12125550498").status_code == 201


# ------------------------------------------------------------------ callbacks: retries, duplicates, order


@stack
def test_callback_to_a_closed_port_is_retried_once_and_a_5xx_is_not(api, sim, receiver):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/cb"
    sid = send(api, "+12125550480", StatusCallback=closed).json()["sid"]
    wait_status(api, sid, "sent")
    log = wait_for(lambda: len(w := sim_get(sim, "/_sim/webhooks", message_sid=sid)["webhooks"]) == 4 and w)
    assert all(e["failure"] == "ct" for e in log) and sorted(e["attempt"] for e in log) == [1, 1, 2, 2]
    receiver.statuses["/status"] = 500
    sid = send(api, "+12125550480", body="again", receiver=receiver).json()["sid"]
    wait_for(lambda: len(receiver.posts(sid)) == 2)
    time.sleep(0.05)
    assert len(receiver.posts(sid)) == 2  # one POST per status: a 5xx is not retried by default


@stack
def test_fragment_overrides_retry_5xx_and_are_not_signed(api, sim, receiver):
    receiver.statuses["/status"] = 503
    sid = send(api, "+12125550480", StatusCallback=receiver.url + "/status?t=1#rc=2&rp=5xx").json()["sid"]
    wait_for(lambda: len(receiver.posts(sid)) == 6)  # sending, sent: 3 tries each
    for post in receiver.posts(sid):
        assert post["path"] == "/status?t=1"
        assert post["headers"]["X-Twilio-Signature"] == expected_signature(TOKEN, receiver.url + "/status?t=1",
                                                                           post["params"])
        assert "I-Twilio-Idempotency-Token" not in post["headers"]


@stack
def test_idempotency_token_is_stable_across_retries_when_enabled(run_sim, receiver):
    server = run_sim(idempotency_token=True)
    receiver.statuses["/status"] = 500
    with client_for(server) as api:
        sid = send(api, "+12125550480", StatusCallback=receiver.url + "/status#rc=1&rp=5xx").json()["sid"]
        wait_for(lambda: len(receiver.posts(sid)) == 4)
    tokens: dict[str, set[str]] = {}
    for post in receiver.posts(sid):
        tokens.setdefault(post["params"]["MessageStatus"], set()).add(post["headers"]["I-Twilio-Idempotency-Token"])
    assert all(len(v) == 1 for v in tokens.values()) and len(set.union(*tokens.values())) == 2


@stack
def test_duplicate_reordered_and_dropped_callbacks(api, receiver):
    dup = send(api, "+12125550505", receiver=receiver).json()["sid"]
    rev = send(api, "+12125550515", receiver=receiver).json()["sid"]
    gone = send(api, "+12125550525", receiver=receiver).json()["sid"]
    wait_for(lambda: len(receiver.posts(dup)) == 6 and len(receiver.posts(rev)) == 3)
    assert sorted(receiver.statuses_of(dup)) == ["delivered"] * 2 + ["sending"] * 2 + ["sent"] * 2
    assert receiver.statuses_of(rev) == ["delivered", "sent", "sending"]
    wait_status(api, gone, "delivered")
    assert receiver.posts(gone) == []


# ------------------------------------------------------------------ opt-out and inbound (§5)


@stack
def test_inbound_webhook_is_signed_and_carries_the_documented_fields(sim, receiver):
    r = PLAIN.post(sim.url + "/_sim/inbound", json={"from": "+12125550100", "to": FROM, "body": "hi there"})
    assert r.status_code == 200
    post = wait_for(lambda: receiver.posts(r.json()["sid"]))[0]
    p = post["params"]
    assert post["path"] == "/inbound" and p["SmsStatus"] == "received" and p["Body"] == "hi there"
    assert p["MessageSid"] == p["SmsSid"] == p["SmsMessageSid"] and p["MessageSid"].startswith("SM")
    assert (p["NumMedia"], p["NumSegments"], p["AccountSid"], p["ApiVersion"]) == ("0", "1", ACCOUNT, "2010-04-01")
    assert {"FromCity", "FromState", "FromZip", "FromCountry", "ToCity", "ToCountry"} <= set(p)
    assert "OptOutType" not in p
    assert validate(TOKEN, receiver.url + "/inbound", p, post["headers"]["X-Twilio-Signature"])


@stack
def test_stop_blocks_the_pair_and_start_lifts_it(api, sim, receiver):
    handset = "+12125550100"
    assert send(api, handset).status_code == 201
    stop = PLAIN.post(sim.url + "/_sim/inbound", json={"from": handset, "to": FROM, "body": " Stop "}).json()
    assert stop["opt_out_type"] == "STOP" and stop["auto_reply"]
    assert wait_for(lambda: receiver.posts(stop["sid"]))[0]["params"]["OptOutType"] == "STOP"
    assert_error(send(api, handset), 400, 21610)
    assert send(api, handset, From="+15005550007").status_code == 201  # the pair, not the handset
    assert send(api, "+12125550101").status_code == 201
    PLAIN.post(sim.url + "/_sim/inbound", json={"from": handset, "to": FROM, "body": "stop now"})  # not a keyword
    assert_error(send(api, handset), 400, 21610)
    start = PLAIN.post(sim.url + "/_sim/inbound", json={"from": handset, "to": FROM, "body": "unstop"}).json()
    assert start["opt_out_type"] == "START"
    assert send(api, handset).status_code == 201


@stack
def test_inbound_media_is_hosted_behind_basic_auth(sim, receiver):
    receiver.files["/pic.jpg"] = (b"\xff\xd8jpeg", "image/jpeg", None)
    r = PLAIN.post(sim.url + "/_sim/inbound", json={"from": "+12125550100", "to": FROM, "body": "",
                                                     "media_urls": [receiver.url + "/pic.jpg"]}).json()
    p = wait_for(lambda: receiver.posts(r["sid"]))[0]["params"]
    assert p["NumMedia"] == "1" and p["MediaContentType0"] == "image/jpeg" and p["MessageSid"].startswith("MM")
    url = p["MediaUrl0"]
    assert re.search(rf"/2010-04-01/Accounts/{ACCOUNT}/Messages/MM[0-9a-f]{{32}}/Media/ME[0-9a-f]{{32}}$", url)
    assert PLAIN.get(url).status_code == 401
    got = PLAIN.get(url, auth=(ACCOUNT, TOKEN))
    assert got.content == b"\xff\xd8jpeg" and got.headers["content-type"] == "image/jpeg"
    assert PLAIN.delete(url, auth=(ACCOUNT, TOKEN)).status_code == 204
    assert PLAIN.get(url, auth=(ACCOUNT, TOKEN)).status_code == 404


@stack
def test_inbound_falls_back_when_the_primary_fails(run_sim, receiver):
    server = run_sim(inbound_url=receiver.url + "/primary", inbound_fallback_url=receiver.url + "/fallback")
    receiver.statuses["/primary"] = 500
    sid = PLAIN.post(server.url + "/_sim/inbound", json={"from": "+12125550100", "to": FROM, "body": "x"}).json()["sid"]
    assert [p["path"] for p in wait_for(lambda: len(receiver.posts(sid)) == 2 and receiver.posts(sid))] == \
        ["/primary", "/fallback"]


# ------------------------------------------------------------------ reads for reconciliation (§6)


@stack
def test_fetch_unknown_sid_is_404_20404(api):
    assert_error(api.get("/Messages/SM" + "0" * 32 + ".json"), 404, 20404)


@stack
def test_list_filters_newest_first_and_pages(api):
    sids = [send(api, "+12125550100", body=f"m{i}").json()["sid"] for i in range(5)]
    send(api, "+12125550101")
    for sid in sids:
        wait_status(api, sid, "delivered")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    page = api.get("/Messages.json", params={"To": "+12125550100", "DateSent>": today, "PageSize": 2}).json()
    assert [m["body"] for m in page["messages"]] == ["m4", "m3"] and page["page_size"] == 2
    seen = [m["sid"] for m in page["messages"]]
    while page["next_page_uri"]:
        assert page["next_page_uri"].startswith(f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json?")
        page = PLAIN.get(api.base_url.scheme + "://" + api.base_url.netloc.decode() + page["next_page_uri"],
                         auth=(ACCOUNT, TOKEN)).json()
        seen += [m["sid"] for m in page["messages"]]
    assert seen == sids[::-1]
    assert api.get("/Messages.json", params={"DateSent<": "2000-01-01"}).json()["messages"] == []
    assert len(api.get("/Messages.json", params={"DateSent": today, "From": FROM}).json()["messages"]) == 6


@stack
def test_list_lags_and_ignores_unsent_messages(run_sim):
    server = run_sim(list_lag_s=0.3, sender_segments_per_s=1.0)
    with client_for(server) as api:
        first = send(api, "+12125550100").json()["sid"]
        second = send(api, "+12125550100", body="queued behind").json()["sid"]  # waits ~1 s in the queue
        assert api.get("/Messages.json").json()["messages"] == []  # not listed yet
        assert fetch(api, first)["sid"] == first  # fetch by SID always works
        wait_for(lambda: len(api.get("/Messages.json").json()["messages"]) == 2)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        listed = wait_for(lambda: api.get("/Messages.json", params={"DateSent": today}).json()["messages"])
        assert [m["sid"] for m in listed] == [first] and fetch(api, second)["date_sent"] is None


# ------------------------------------------------------------------ limits, queues, outage


@stack
def test_rate_limit_is_429_20429_without_side_effects(run_sim):
    server = run_sim(rate_limit_per_s=3)
    with client_for(server) as api:
        answers = [send(api, "+12125550100", body=str(i)) for i in range(5)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
    assert_error(answers[3], 429, 20429)
    assert "Retry-After" not in answers[3].headers
    assert len(sim_get(server, "/_sim/messages")["messages"]) == 3


@stack
def test_full_sender_queue_is_21611_and_validity_expiry_is_30036(run_sim, receiver):
    server = run_sim(sender_segments_per_s=0.5, queue_capacity_s=5.0)  # 2 s per segment, 5 s of queue
    with client_for(server) as api:
        codes = [send(api, "+12125550100", body=str(i)).status_code for i in range(3)]
        assert codes == [201, 201, 400]
        assert_error(send(api, "+12125550100", body="x"), 400, 21611)
        assert send(api, "+12125550100", From="+15005550007").status_code == 201  # per sender
    server = run_sim(sender_segments_per_s=0.5)
    with client_for(server) as api:
        send(api, "+12125550100", body="a")
        sid = send(api, "+12125550100", body="b", receiver=receiver, ValidityPeriod="1").json()["sid"]
        m = wait_status(api, sid, "failed")
    assert m["error_code"] == 30036 and m["date_sent"] is None
    # the status callback follows the status change: wait for it rather than race it
    wait_for(lambda: receiver.statuses_of(sid))
    assert receiver.statuses_of(sid) == ["failed"]


@stack
def test_outage_switch(sim, api):
    assert PLAIN.post(sim.url + "/_sim/outage", json={"mode": "5xx"}).json() == {"mode": "5xx"}
    assert_error(send(api, "+12125550100"), 503, 20503)
    assert_error(api.get("/Messages.json"), 503, 20503)
    PLAIN.post(sim.url + "/_sim/outage", json={"mode": "timeout"})
    with client_for(sim, timeout=0.2) as short:
        with pytest.raises(httpx.TimeoutException):
            send(short, "+12125550100")
    assert PLAIN.post(sim.url + "/_sim/outage", json={"mode": "bogus"}).status_code == 400
    PLAIN.post(sim.url + "/_sim/outage", json={"mode": "off"})
    assert send(api, "+12125550100").status_code == 201
    stats = sim_get(sim, "/_sim/stats")
    assert stats["messages"] == 1 and stats["outage_5xx"] == 2 and stats["outage_timeout"] == 1


@stack
def test_outage_from_config_and_reset(run_sim):
    server = run_sim(outage="5xx")
    with client_for(server) as api:
        assert_error(send(api, "+12125550100"), 503, 20503)
        assert PLAIN.post(server.url + "/_sim/reset").json() == {"reset": True}
        assert send(api, "+12125550100").status_code == 201


@stack
def test_media_fetch_when_enabled(run_sim, receiver):
    server = run_sim(fetch_media=True, carrier_media_limit_bytes=10)
    receiver.files["/ok.jpg"] = (b"jpegdata", "image/jpeg", None)
    receiver.files["/liar.jpg"] = (b"jpegdata", "image/jpeg", "text/html")
    receiver.files["/clip.mp4"] = (b"x" * 20, "video/mp4", None)
    with client_for(server) as api:
        assert send(api, "+12125550100", MediaUrl=receiver.url + "/ok.jpg").status_code == 201
        assert_error(send(api, "+12125550100", MediaUrl=receiver.url + "/liar.jpg"), 400, 12300)
        assert_error(send(api, "+12125550100", MediaUrl=receiver.url + "/missing.jpg"), 400, 21620)
        sid = send(api, "+12125550100", MediaUrl=receiver.url + "/clip.mp4").json()["sid"]
        assert wait_status(api, sid, "undelivered")["error_code"] == 30019


@stack
def test_binds_only_to_loopback():
    with pytest.raises(ValueError):
        start_server("0.0.0.0", 0, make_config())


@stack
def test_cli_serves_and_stops_on_sigterm():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, TWILIO_SIM_AUTH_TOKEN=TOKEN, TWILIO_SIM_ACCOUNT_SID=ACCOUNT)
    proc = subprocess.Popen([sys.executable, "-m", "tools.twilio_sim", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def healthy():
            try:
                return PLAIN.get(f"http://127.0.0.1:{port}/_sim/health").json()
            except httpx.HTTPError:
                return None

        assert wait_for(healthy, timeout=10)["account_sid"] == ACCOUNT
        r = PLAIN.post(f"http://127.0.0.1:{port}/2010-04-01/Accounts/{ACCOUNT}/Messages.json", auth=(ACCOUNT, TOKEN),
                       data={"To": "+12125550100", "From": FROM, "Body": "cli"})
        assert r.status_code == 201
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        stderr = proc.stderr.read().decode()
        assert "listening on" in stderr and "POST /2010-04-01/" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
