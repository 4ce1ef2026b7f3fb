"""infra.twilio.TwilioProvider against canned Twilio answers (httpx.MockTransport): no network, no stack.
Answers are shaped as twilio.md documents them (§1 create and errors, §6 list)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from infra import twilio
from infra.twilio import TwilioProvider
from shared.carriers.provider import GroupOutboundMessage, Kind, LookupState, OutboundMessage

BASE = "https://api.twilio.test"
ACCOUNT = "AC" + "0" * 31 + "1"
TOKEN = "0123456789abcdef0123456789abcdef"
FROM = "+15005550006"
TO = "+15558675310"
SID = "SM" + "a" * 32
OTHER = "SM" + "b" * 32
LIST_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
SINCE = dt.datetime(2026, 8, 21, 14, 30, tzinfo=dt.UTC)


def leg(text: str | None = "hello", media: tuple[str, ...] = (), message_id: str = "msg_abc") -> OutboundMessage:
    return OutboundMessage(message_id=message_id, to=TO, from_=FROM, text=text, subject=None, media_urls=media,
                           webhook_url=f"https://gw.example.com/webhooks/twilio/status?leg={message_id}")


def provider(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> TwilioProvider:
    return TwilioProvider(BASE, ACCOUNT, TOKEN, httpx.Client(transport=httpx.MockTransport(handler)), **kwargs)


def error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    # §1 Errors: {"code":<int>,"message":"…","more_info":"https://www.twilio.com/docs/errors/<code>","status":<http>}
    return httpx.Response(status, headers=headers, json={"code": code, "message": message, "status": status,
                                                         "more_info": f"https://www.twilio.com/docs/errors/{code}"})


def created(sid: str = SID) -> dict[str, Any]:
    # §1 Success: 201, string counts, RFC 2822 GMT dates, null error_code, initial status queued
    return {"sid": sid, "account_sid": ACCOUNT, "from": FROM, "to": TO, "body": "hello", "status": "queued",
            "direction": "outbound-api", "num_segments": "1", "num_media": "0", "price": None, "error_code": None,
            "error_message": None, "date_created": "Fri, 21 Aug 2026 14:30:02 +0000",
            "date_updated": "Fri, 21 Aug 2026 14:30:02 +0000", "date_sent": None, "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"}


# -- send -----------------------------------------------------------------------------------------------------


def test_201_is_accepted_and_the_request_is_the_documented_form():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=created())

    message = leg("hello", media=("https://media.example/a.jpg", "https://media.example/b.png"))
    outcome = provider(handler).send(message)
    assert outcome.kind is Kind.ACCEPTED
    assert outcome.provider_id == SID
    assert outcome.http_status == 201
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}{LIST_PATH}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    form = parse_qs(request.content.decode())
    assert form == {"To": [TO], "From": [FROM], "Body": ["hello"],
                    "MediaUrl": ["https://media.example/a.jpg", "https://media.example/b.png"],
                    "StatusCallback": [message.webhook_url]}
    assert parse_qs(urlsplit(form["StatusCallback"][0]).query) == {"leg": ["msg_abc"]}


def test_every_attempt_of_a_leg_sends_the_same_bytes():
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(201, json=created())

    p = provider(handler)
    p.send(leg())
    p.send(leg())
    assert bodies[0] == bodies[1]


def test_an_api_key_authenticates_instead_of_the_auth_token():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=created())

    provider(handler, api_key_sid="SK" + "1" * 32, api_key_secret="s3cret").send(leg())
    assert seen[0].headers["authorization"] == "Basic " + base64.b64encode(f"SK{'1' * 32}:s3cret".encode()).decode()
    assert seen[0].url.path == LIST_PATH  # the account SID still names the account


def test_media_only_sends_no_body():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=created("MM" + "c" * 32))

    outcome = provider(handler).send(leg(None, media=("https://media.example/a.jpg",)))
    assert outcome.provider_id == "MM" + "c" * 32
    assert "Body" not in parse_qs(seen[0].content.decode())


def test_400_21610_is_an_opt_out():
    outcome = provider(lambda r: error(400, 21610, "Attempt to send to unsubscribed recipient")).send(leg())
    assert outcome.kind is Kind.OPT_OUT
    assert outcome.code == "21610"
    assert outcome.http_status == 400
    assert outcome.detail == "Attempt to send to unsubscribed recipient"


def test_400_21211_is_permanent():
    outcome = provider(lambda r: error(400, 21211, "The 'To' number is not a valid phone number.")).send(leg())
    assert outcome.kind is Kind.PERMANENT and outcome.code == "21211"


def test_429_is_transient_and_keeps_retry_after():
    outcome = provider(lambda r: error(429, 20429, "Too Many Requests", **{"Retry-After": "3"})).send(leg())
    assert outcome.kind is Kind.TRANSIENT
    assert outcome.code == "20429"
    assert outcome.retry_after == 3.0


def test_500_is_transient():
    outcome = provider(lambda r: error(500, 20500, "Internal Server Error")).send(leg())
    assert outcome.kind is Kind.TRANSIENT and outcome.http_status == 500


def test_a_500_without_a_twilio_body_is_transient_too():
    outcome = provider(lambda r: httpx.Response(503, text="<html>unavailable</html>")).send(leg())
    assert outcome.kind is Kind.TRANSIENT and outcome.code is None


def test_a_gateway_timeout_is_ambiguous():
    outcome = provider(lambda r: httpx.Response(504, text="Gateway Timeout")).send(leg())
    assert outcome.kind is Kind.AMBIGUOUS


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def test_a_read_timeout_is_ambiguous():
    outcome = provider(raising(httpx.ReadTimeout("read timed out"))).send(leg())
    assert outcome.kind is Kind.AMBIGUOUS


def test_a_lost_answer_is_ambiguous():
    outcome = provider(raising(httpx.RemoteProtocolError("server disconnected"))).send(leg())
    assert outcome.kind is Kind.AMBIGUOUS


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"),
                                 httpx.PoolTimeout("pool")])
def test_a_connect_failure_is_transient(exc):
    assert provider(raising(exc)).send(leg()).kind is Kind.TRANSIENT


@pytest.mark.parametrize("answer", [
    httpx.Response(201, json={"status": "queued"}),
    httpx.Response(201, json={"sid": "../x"}),
    httpx.Response(201, text="not json"),
    httpx.Response(201, json=["SM" + "a" * 32]),
])
def test_a_success_without_a_usable_sid_is_ambiguous(answer):
    assert provider(lambda r: answer).send(leg()).kind is Kind.AMBIGUOUS


def test_send_group_is_refused_without_a_call():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(201, json=created())

    group = GroupOutboundMessage(message_id="cnv_abc", to=(TO, "+15558675311"), from_=FROM, text="hi",
                                 subject=None, media_urls=(), webhook_url="https://gw.example.com/s?conversation=cnv_abc")
    outcome = provider(handler).send_group(group)
    assert outcome.kind is Kind.PERMANENT and outcome.code == "GROUP_UNSUPPORTED"
    assert not calls
    assert provider(handler).find(group, SINCE).state is LookupState.ABSENT
    assert not calls


# -- find (§6) ------------------------------------------------------------------------------------------------


def record(sid: str, *, body: str = "hello", num_media: str = "0", to: str = TO, from_: str = FROM,
           status: str = "sent", created_at: str = "Fri, 21 Aug 2026 14:30:02 +0000",
           direction: str = "outbound-api") -> dict[str, Any]:
    return {"sid": sid, "account_sid": ACCOUNT, "to": to, "from": from_, "body": body, "num_media": num_media,
            "status": status, "direction": direction, "date_created": created_at, "date_sent": None,
            "error_code": None}


def listing(messages: list[dict[str, Any]], next_page_uri: str | None = None) -> httpx.Response:
    return httpx.Response(200, json={"messages": messages, "start": 0, "end": len(messages) - 1, "page": 0,
                                     "page_size": 50, "uri": LIST_PATH, "first_page_uri": LIST_PATH,
                                     "previous_page_uri": None, "next_page_uri": next_page_uri})


def lister(*pages: httpx.Response, seen: list[httpx.Request] | None = None) -> TwilioProvider:
    answers = list(pages)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answers.pop(0)

    return provider(handler)


def test_find_found():
    seen: list[httpx.Request] = []
    lookup = lister(listing([record(SID, status="delivered")]), seen=seen).find(leg(), SINCE)
    assert lookup.state is LookupState.FOUND
    assert lookup.provider_id == SID
    assert lookup.status == "delivered"
    [request] = seen
    assert request.method == "GET" and request.url.path == LIST_PATH
    assert request.url.params["To"] == TO and request.url.params["From"] == FROM
    assert request.headers["authorization"].startswith("Basic ")


def test_find_ignores_other_routes_texts_media_counts_directions_and_older_messages():
    others = [record(OTHER, body="another text"),
              record("SM" + "c" * 32, num_media="1"),
              record("SM" + "d" * 32, to="+15558675399"),
              record("SM" + "e" * 32, direction="inbound"),
              record("SM" + "f" * 32, created_at="Thu, 20 Aug 2026 09:00:00 +0000")]
    assert lister(listing([*others, record(SID, status="queued")])).find(leg(), SINCE).provider_id == SID
    assert lister(listing(others)).find(leg(), SINCE).state is LookupState.ABSENT


def test_find_absent():
    lookup = lister(listing([])).find(leg(), SINCE)
    assert lookup.state is LookupState.ABSENT


def test_find_allows_for_clock_skew():
    lookup = lister(listing([record(SID, created_at="Fri, 21 Aug 2026 14:29:57 +0000")])).find(leg(), SINCE)
    assert lookup.state is LookupState.FOUND


def test_find_matches_media_messages_by_count():
    media = ("https://media.example/a.jpg", "https://media.example/b.jpg")
    lookup = lister(listing([record("MM" + "a" * 32, body="", num_media="2")])).find(leg(None, media), SINCE)
    assert lookup.state is LookupState.FOUND and lookup.provider_id == "MM" + "a" * 32


def test_find_with_two_identical_candidates_is_unknown():
    lookup = lister(listing([record(SID), record(OTHER)])).find(leg(), SINCE)
    assert lookup.state is LookupState.UNKNOWN


def test_find_follows_next_page_uri_on_our_base_url():
    seen: list[httpx.Request] = []
    next_uri = f"{LIST_PATH}?To=%2B15558675310&From=%2B15005550006&PageSize=200&Page=1&PageToken=PAMM{'1' * 32}"
    lookup = lister(listing([record(OTHER, body="no")], next_page_uri=next_uri), listing([record(SID)]),
                    seen=seen).find(leg(), SINCE)
    assert lookup.state is LookupState.FOUND and lookup.provider_id == SID
    assert [r.url.host for r in seen] == ["api.twilio.test", "api.twilio.test"]
    assert seen[1].url.params["PageToken"] == "PAMM" + "1" * 32


def test_a_candidate_on_a_later_page_makes_an_earlier_match_ambiguous():
    next_uri = f"{LIST_PATH}?PageToken=PAMM1"
    lookup = lister(listing([record(SID)], next_page_uri=next_uri), listing([record(OTHER)])).find(leg(), SINCE)
    assert lookup.state is LookupState.UNKNOWN


def test_find_past_the_page_bound_is_unknown_not_absent():
    next_uri = f"{LIST_PATH}?PageToken=PAMM1"
    pages = [listing([record(OTHER, body="no")], next_page_uri=next_uri) for _ in range(twilio.MAX_PAGES)]
    assert lister(*pages).find(leg(), SINCE).state is LookupState.UNKNOWN


@pytest.mark.parametrize("next_uri", ["https://evil.example/2010-04-01/Accounts/x/Messages.json",
                                      "/2010-04-01/Accounts/OTHER/Calls.json", 42])
def test_a_next_page_elsewhere_is_unknown(next_uri):
    assert lister(listing([], next_page_uri=next_uri)).find(leg(), SINCE).state is LookupState.UNKNOWN


@pytest.mark.parametrize("answer", [
    error(500, 20500, "Internal Server Error"),
    error(401, 20003, "Authenticate"),
    error(429, 20429, "Too Many Requests"),
    httpx.Response(200, text="<xml/>"),
    httpx.Response(200, json={"messages": "none"}),
    httpx.Response(200, json={"messages": [1, 2]}),
    httpx.Response(200, json=[]),
])
def test_find_on_a_failed_or_odd_answer_is_unknown(answer):
    assert lister(answer).find(leg(), SINCE).state is LookupState.UNKNOWN


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_find_never_raises_on_the_network(exc):
    assert provider(raising(exc)).find(leg(), SINCE).state is LookupState.UNKNOWN


def test_a_matching_record_without_a_sid_is_unknown():
    bad = record(SID)
    del bad["sid"]
    assert lister(listing([bad])).find(leg(), SINCE).state is LookupState.UNKNOWN


def test_an_unreadable_date_cannot_exclude_a_candidate():
    assert lister(listing([record(SID, created_at="yesterday")])).find(leg(), SINCE).state is LookupState.FOUND


def test_a_naive_since_is_utc():
    lookup = lister(listing([record(SID)])).find(leg(), SINCE.replace(tzinfo=None))
    assert lookup.state is LookupState.FOUND


def test_the_documented_create_answer_round_trips_as_json():
    # The 201 body is the OAS message resource; our parser reads only sid, so a full resource is fine.
    answer = httpx.Response(201, content=json.dumps(created()).encode(), headers={"content-type": "application/json"})
    assert provider(lambda r: answer).send(leg()).raw["sid"] == SID
