"""infra.telnyx.TelnyxProvider against the Telnyx simulator (started here, in-process: no stack), plus its
answer handling against canned answers (httpx.MockTransport) for what the simulator never does."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from typing import Any

import httpx
import pytest

from infra import telnyx
from infra.telnyx import TelnyxProvider, names_leg, request_body
from shared.carriers.provider import Kind, LookupState, OutboundMessage
from tools.telnyx_sim import SimConfig, generate_keypair, start_server

# Real local servers on loopback (and their timeouts): not part of the fast pure-Python tier.
pytestmark = pytest.mark.stack

API_KEY = "KEYclient_test"
FROM = "+15005550006"
HOOK = "https://gw.example/webhooks/telnyx"


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def sim():
    # The adapter's wire handling (a replayed answer, a 422, a record found at once) is what these tests check:
    # the simulator plays the kinder-than-Telnyx modes here. The exactly-once promise is proven against the
    # documented mode (no replay, lagging records) in tests/e2e (test_fault_injection, test_soak).
    config = SimConfig(api_key=API_KEY, signing_key=generate_keypair()[0], webhook_delay_ms=10,
                       webhook_retry_pause_ms=1, webhook_attempts=1, log_requests=False,
                       idempotency_replay=True, mdr_lag_s=0.0)
    server, thread = start_server("127.0.0.1", 0, config)
    yield server
    server.shutdown()
    thread.join(5)


@pytest.fixture
def http():
    with httpx.Client(trust_env=False, follow_redirects=False) as client:
        yield client


@pytest.fixture
def provider(sim, http):
    httpx.post(sim.url + "/_sim/reset")
    return TelnyxProvider(sim.url, API_KEY, http)


def leg(message_id: str, to: str = "+12125550100", text: str | None = "hello", **extra) -> OutboundMessage:
    # The webhook host does not exist: the simulator's reports fail, its timeline carries on.
    values: dict[str, Any] = dict(message_id=message_id, to=to, from_=FROM, text=text, subject=None, media_urls=(),
                                  webhook_url=f"http://127.0.0.1:9/webhooks/telnyx?leg={message_id}")
    values.update(extra)
    return OutboundMessage(**values)


def sim_messages(sim) -> list[dict]:
    return httpx.get(sim.url + "/_sim/messages").json()["data"]


def sim_stats(sim) -> dict:
    return httpx.get(sim.url + "/_sim/stats").json()["data"]["idempotency"]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- send --------------------------------------------------------------------------------------------


def test_send_carries_the_legs_key_and_a_retry_gets_the_same_message(provider, sim):
    message = leg("msg_send1")
    first = provider.send(message)
    assert first.kind is Kind.ACCEPTED and first.provider_id
    [record] = sim_messages(sim)
    assert record["idempotency_key"] == "mmsgate:msg_send1" and record["id"] == first.provider_id

    again = provider.send(leg("msg_send1"))  # a new object, as a later attempt builds it
    assert again.kind is Kind.ACCEPTED and again.provider_id == first.provider_id
    assert len(sim_messages(sim)) == 1
    assert sim_stats(sim)["replays_by_key"] == {"mmsgate:msg_send1": 1}


def test_a_lost_answer_then_a_retry_is_one_message(provider, sim):
    message = leg("msg_lost98", to="+14155550198")
    lost = provider.send(message)
    assert lost.kind is Kind.AMBIGUOUS  # the simulator dropped the connection after recording it
    retry = provider.send(message)
    assert retry.kind is Kind.ACCEPTED
    assert [m["id"] for m in sim_messages(sim)] == [retry.provider_id]


def test_a_changed_body_under_the_same_key_is_ambiguous(provider, sim):
    assert provider.send(leg("msg_changed", text="first")).kind is Kind.ACCEPTED
    changed = provider.send(leg("msg_changed", text="second"))
    assert changed.kind is Kind.AMBIGUOUS and changed.http_status == 422
    assert [m["text"] for m in sim_messages(sim)] == ["first"]


def test_transient_and_permanent_answers(provider, sim):
    assert provider.send(leg("msg_t", to="+14155550193")).kind is Kind.TRANSIENT  # first attempt: 500
    assert provider.send(leg("msg_t", to="+14155550193")).kind is Kind.ACCEPTED  # not stored: runs for real
    opted_out = provider.send(leg("msg_stop", to="+14155550190"))
    assert opted_out.kind is Kind.OPT_OUT and opted_out.code == "40300"


def test_the_body_is_the_same_bytes_for_the_same_message():
    message = leg("msg_body", media_urls=("https://s.example/b?sig=2", "https://s.example/a?sig=1"),
                  subject="Pic")
    body = request_body(message)
    assert body == request_body(leg("msg_body", media_urls=("https://s.example/b?sig=2",
                                                            "https://s.example/a?sig=1"), subject="Pic"))
    assert json.loads(body) == {"from": FROM, "to": "+12125550100", "text": "hello", "subject": "Pic",
                                "media_urls": ["https://s.example/b?sig=2", "https://s.example/a?sig=1"],
                                "type": "MMS", "webhook_url": message.webhook_url, "use_profile_webhooks": False}
    assert body == json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True).encode()
    assert request_body(leg("msg_body", text="ünïcode")) != request_body(leg("msg_body", text="unicode"))


# -- find ----------------------------------------------------------------------------------------------


def test_find_names_the_sent_leg_among_others_on_the_same_route(provider, sim):
    since = now()
    sent = provider.send(leg("msg_mine"))
    provider.send(leg("msg_other"))  # same sender and recipient, another leg
    found = provider.find(leg("msg_mine"), since)
    assert found.state is LookupState.FOUND and found.provider_id == sent.provider_id
    assert found.status in ("queued", "sent", "delivered")
    wait_for(lambda: provider.find(leg("msg_mine"), since).status == "delivered")


def test_find_is_absent_for_a_leg_never_sent(provider, sim):
    since = now()
    provider.send(leg("msg_sent_one"))
    lookup = provider.find(leg("msg_never_sent"), since)
    assert lookup.state is LookupState.ABSENT and lookup.provider_id is None


def test_find_only_looks_after_the_first_attempt(provider):
    provider.send(leg("msg_earlier"))
    assert provider.find(leg("msg_earlier"), now() + dt.timedelta(hours=1)).state is LookupState.ABSENT


def test_find_after_a_lost_answer_finds_the_recorded_message(provider, sim):
    since = now()
    message = leg("msg_find98", to="+14155550198")
    assert provider.send(message).kind is Kind.AMBIGUOUS
    [record] = sim_messages(sim)
    found = provider.find(message, since)
    assert found.state is LookupState.FOUND and found.provider_id == record["id"]


def test_find_is_unknown_when_the_provider_is_unreachable(http):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    lookup = TelnyxProvider(f"http://127.0.0.1:{port}", API_KEY, http).find(leg("msg_x"), now())
    assert lookup.state is LookupState.UNKNOWN and "ConnectError" in lookup.detail


def test_find_is_unknown_when_the_key_is_refused(sim, http):
    lookup = TelnyxProvider(sim.url, "wrong", http).find(leg("msg_x"), now())
    assert lookup.state is LookupState.UNKNOWN and "401" in lookup.detail


def test_find_is_unknown_with_too_many_candidates(provider, monkeypatch):
    monkeypatch.setattr(telnyx, "MAX_CANDIDATES", 3)
    since = now()
    for i in range(4):
        provider.send(leg(f"msg_busy{i}"))
    lookup = provider.find(leg("msg_not_there"), since)
    assert lookup.state is LookupState.UNKNOWN and "4 candidate" in lookup.detail


def test_find_is_unknown_when_the_search_has_more_pages(provider, monkeypatch):
    monkeypatch.setattr(telnyx, "SEARCH_PAGE_SIZE", 2)
    since = now()
    for i in range(3):
        provider.send(leg(f"msg_paged{i}"))
    assert provider.find(leg("msg_not_there"), since).state is LookupState.UNKNOWN
    newest = provider.find(leg("msg_paged2"), since)  # on the first page (newest first): found regardless
    assert newest.state is LookupState.FOUND


# -- find against canned answers -------------------------------------------------------------------------


def canned(handler) -> TelnyxProvider:
    return TelnyxProvider("https://api.telnyx.test", API_KEY, httpx.Client(transport=httpx.MockTransport(handler)))


def mdr(uuid: str, **extra) -> dict:
    return {"record_type": "message_detail_record", "uuid": uuid, "cli": FROM, "cld": "+12125550100",
            "direction": "outbound", **extra}


def page(*records, total_pages=1) -> httpx.Response:
    return httpx.Response(200, json={"data": list(records), "meta": {"page_number": 1, "page_size": 50,
                                                                      "total_pages": total_pages,
                                                                      "total_results": len(records)}})


def test_the_search_asks_telnyx_for_the_legs_route_since_the_first_attempt_less_skew():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return page()

    since = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert canned(handler).find(leg("msg_q"), since).state is LookupState.ABSENT
    [request] = seen
    assert request.url.path == "/v2/detail_records" and request.headers["authorization"] == f"Bearer {API_KEY}"
    assert dict(request.url.params) == {
        "filter[record_type]": "messaging", "filter[direction]": "outbound", "filter[cli]": FROM,
        "filter[cld]": "+12125550100", "filter[created_at][gte]": "2030-05-06T07:08:04Z", "sort": "-created_at",
        "page[number]": "1", "page[size]": "50"}


@pytest.mark.parametrize("answer", [
    httpx.Response(500, json={"errors": [{"code": "10007", "title": "Unexpected error"}]}),
    httpx.Response(429, json={"errors": [{"code": "10011", "title": "Too many requests"}]}),
    httpx.Response(200, content=b"<html>not json</html>"),
    httpx.Response(200, json={"data": "nope"}),
    httpx.Response(200, json={"data": [{"record_type": "message_detail_record", "cli": FROM}]}),  # no id
])
def test_an_answer_that_cannot_tell_is_unknown(answer):
    assert canned(lambda request: answer).find(leg("msg_q"), dt.datetime.now(dt.UTC)).state is LookupState.UNKNOWN


def test_a_candidate_that_cannot_be_retrieved_makes_absent_unknown():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/detail_records":
            return page(mdr("id-1"), mdr("id-2"))
        if request.url.path == "/v2/messages/id-1":
            return httpx.Response(503)
        return httpx.Response(200, json={"data": {"id": "id-2", "webhook_url": f"{HOOK}?leg=msg_other",
                                                  "to": [{"phone_number": "+12125550100", "status": "sent"}]}})

    lookup = canned(handler).find(leg("msg_q"), dt.datetime.now(dt.UTC))
    assert lookup.state is LookupState.UNKNOWN and "id-1" in lookup.detail


def test_found_wins_over_a_candidate_that_failed():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/detail_records":
            return page(mdr("id-1"), mdr("id-2"), mdr("id-3", cld="+19999999999"))
        if request.url.path == "/v2/messages/id-1":
            raise httpx.ReadTimeout("slow", request=request)
        if request.url.path == "/v2/messages/id-3":
            raise AssertionError("another recipient's record is not a candidate")
        return httpx.Response(200, json={"data": {"id": "id-2", "webhook_url": f"{HOOK}?leg=msg_q",
                                                  "to": [{"phone_number": "+12125550100", "status": "sent"}]}})

    lookup = canned(handler).find(leg("msg_q"), dt.datetime.now(dt.UTC))
    assert (lookup.state, lookup.provider_id, lookup.status) == (LookupState.FOUND, "id-2", "sent")


def test_names_leg_matches_the_leg_parameter_exactly():
    assert names_leg(f"{HOOK}?leg=msg_a", "msg_a")
    assert not names_leg(f"{HOOK}?leg=msg_ab", "msg_a")
    assert not names_leg(f"{HOOK}?leg=msg_a&leg=msg_b", "msg_a")
    assert not names_leg(f"{HOOK}?other=msg_a", "msg_a")
    assert not names_leg(None, "msg_a")
