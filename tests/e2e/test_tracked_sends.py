"""Tracked sends through the stack (issue 25 item 1, the accept pipeline): ``tracking`` on a single, a group and
a batch send. Each recipient's stored body holds short links of its own; the segments and the price are those
of the shortened body (a long URL that made the text two segments costs one once shortened); a click on a
recipient's own link answers a 302 to the original and a ``link.clicked`` event names that recipient's message;
an expired link 404s; nothing in a crafted request leads anywhere but the original URL."""

from __future__ import annotations

import datetime as dt
import json
import re

import httpx
import pytest

from shared.rules.segments import count_segments
from tests.conftest import fictional, wait_for

pytestmark = pytest.mark.stack

# 27 + 180 characters of URL: the body is two GSM-7 segments as written, one once the URL is a short link.
ORIGINAL = "https://shop.example.com/p?" + "ref=spring&x=(1)" * 11 + "&end=1"
BODY = f"Spring sale, 20% off: {ORIGINAL}. Reply STOP to opt out"
SHORT = re.compile(r"http://127\.0\.0\.1:\d+/l/([A-Za-z0-9_-]{12})")


def _get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, follow_redirects=False, timeout=10, trust_env=False, **kwargs)


def _message(env, message_id: str) -> dict:
    response = env.api.get(f"/api/v1/messages/{message_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _short_links(body: str) -> list[str]:
    return [m.group(0) for m in SHORT.finditer(body)]


def _clicked(env, n: int) -> list[dict]:
    def found() -> list[dict]:
        return [json.loads(r["body"]) for r in env.receiver.received
                if json.loads(r["body"]).get("type") == "link.clicked"]

    wait_for(lambda: len(found()) >= n, 30, f"{n} link.clicked events")
    return found()


def _amount(price: dict) -> float:
    return float(price["amount"])


def test_a_single_send_is_priced_on_its_shortened_body(env):
    assert count_segments(BODY) == ("GSM-7", 2)
    plain = env.api.post("/api/v1/messages/sms", json={"to": fictional(41), "body": BODY})
    assert plain.status_code == 200, plain.text
    assert plain.json()["data"]["segments"] == 2

    before = env.balance()
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(40), "body": BODY, "tracking": {},
                                                          "webhook_url": env.receiver.url})
    assert response.status_code == 200, response.text
    answer = response.json()["data"]
    assert (answer["segments"], answer["encoding"]) == (1, "GSM-7")
    env.wait_status(answer["id"], "delivered")
    stored = _message(env, answer["id"])
    [short] = _short_links(stored["body"])
    assert ORIGINAL not in stored["body"]
    assert stored["body"] == BODY.replace(ORIGINAL, short)
    assert count_segments(stored["body"]) == ("GSM-7", 1) and stored["segments"] == 1
    # one segment's price: half of what the same text costs with its long URL
    plain_price = _amount(_message(env, plain.json()["data"]["id"])["price"])
    assert _amount(stored["price"]) * 2 == pytest.approx(plain_price)
    assert before - env.balance() == round(_amount(stored["price"]) * 1_000_000)
    # what the carrier was given is the stored, shortened body
    [sent] = env.sim_messages(fictional(40))
    assert sent["text"] == stored["body"]

    response = _get(short, headers={"User-Agent": "single reader"})
    assert (response.status_code, response.headers["location"]) == (302, ORIGINAL)
    [event] = _clicked(env, 1)
    assert (event["data"]["message_id"], event["data"]["recipient"], event["data"]["url"]) == \
        (answer["id"], fictional(40), ORIGINAL)


def test_a_group_send_gives_each_member_its_own_links(env):
    members = [fictional(40), fictional(42, "212"), fictional(43, "646")]
    body = f"Team: {ORIGINAL} and www.example.org/agenda (twice: {ORIGINAL})"
    response = env.api.post("/api/v1/messages/group", json={
        "to": members, "body": body, "media_urls": [env.sample_media_url],
        "tracking": {"remove_protocol": True, "track_clicks": False}})
    assert response.status_code == 200, response.text
    bodies = {}
    for item in response.json()["messages"]:
        stored = _message(env, item["id"])
        found = re.findall(r"(?<!/)127\.0\.0\.1:\d+/l/[A-Za-z0-9_-]{12}", stored["body"])
        assert len(found) == 3 and found[0] == found[2] != found[1], stored["body"]  # one link per distinct URL
        assert "http" not in stored["body"]  # remove_protocol
        bodies[item["id"]] = found
        assert _get("http://" + found[0]).headers["location"] == ORIGINAL
        assert _get("http://" + found[1]).headers["location"] == "https://www.example.org/agenda"
    codes = [code for found in bodies.values() for code in found[:2]]
    assert len(set(codes)) == 6  # unique per recipient


def test_a_tracked_batch_of_fifty_attributes_ten_clicks(env):
    """Issue 25's proof: 50 recipients of one tracked batch, 10 click the link of their own stored body."""
    from tests.e2e.test_batch import numbers, progress, search

    to = numbers(50)
    response = env.api.post("/api/v1/messages/batch", json={
        "to": to, "body": BODY, "webhook_url": env.receiver.url, "tracking": {"track_clicks": True}})
    assert response.status_code == 202, response.text
    accepted = response.json()["data"]
    assert accepted["segments"] == 1
    batch_id = accepted["id"]
    wait_for(lambda: progress(env, batch_id)["status"] == "completed", 90, "the batch never completed")
    rows = {row["id"]: row for row in search(env, batch_id=batch_id)}
    assert len(rows) == 50

    short: dict[str, str] = {}
    for message_id in rows:
        stored = _message(env, message_id)
        [short[message_id]] = _short_links(stored["body"])
        assert stored["body"] == BODY.replace(ORIGINAL, short[message_id])
        assert stored["segments"] == 1
    assert len(set(short.values())) == 50
    # the reservation was one segment per recipient: 50 times a one-segment price
    one = _amount(_message(env, next(iter(rows)))["price"])
    assert _amount(accepted["reserved"]) == pytest.approx(50 * one)

    clickers = sorted(rows)[::5]
    for message_id in clickers:
        response = _get(short[message_id], headers={"User-Agent": f"reader {message_id}"})
        assert (response.status_code, response.headers["location"]) == (302, ORIGINAL)
    events = [event["data"] for event in _clicked(env, 10)]
    assert sorted((e["message_id"], e["recipient"], e["user_agent"], e["url"]) for e in events) == \
        sorted((m, rows[m]["to"], f"reader {m}", ORIGINAL) for m in clickers)

    # a crafted request around a real code still leads only to its original; a code never issued 404s
    gateway = env.stack.urls["gateway"]
    some = short[clickers[0]]
    crafted = _get(str(httpx.URL(some, params={"url": "https://evil.example.com"})),
                   headers={"Host": "evil.example.com", "X-Forwarded-Host": "evil.example.com"})
    assert (crafted.status_code, crafted.headers["location"]) == (302, ORIGINAL)
    code = SHORT.fullmatch(some).group(1)
    for path in (code[:-1] + ("A" if code[-1] != "A" else "B"), f"{code}%2F%2Fevil.example.com",
                 "https:%2F%2Fevil.example.com"):
        assert _get(f"{gateway}/l/{path}").status_code == 404

    # past its message's retention a link answers 404 (time moved on: its expiry set in the past)
    from infra import collections as C

    late = short[clickers[1]]
    env.store.db.collection(C.LINKS).document(SHORT.fullmatch(late).group(1)).update(
        {"expires_at": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)})
    expired = _get(late)
    assert expired.status_code == 404 and expired.json()["error"]["code"] == "NOT_FOUND"


def test_a_refused_tracked_send_charges_nothing(env):
    before = env.balance()
    for tracking, field in (({"shorten_urls": "yes"}, "tracking.shorten_urls"),
                            ({"tracking_url": "http://169.254.169.254/latest"}, "tracking.tracking_url"),
                            ({"custom_domain": "Go.Example.com"}, "tracking.custom_domain")):
        response = env.api.post("/api/v1/messages/sms", json={"to": fictional(40), "body": BODY,
                                                              "tracking": tracking})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"][0]["field"] == field
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(40), "body": BODY, "tracking": "on"})
    assert response.status_code == 400, response.text
    assert env.balance() == before


def test_a_tracked_template_batch_counts_each_rows_rendered_shortened_body(env):
    from tests.e2e.test_batch import numbers, progress, search

    created = env.api.post("/api/v1/templates", json={"name": "tracked", "body": f"Hi ((name)), see {ORIGINAL}"})
    assert created.status_code in (200, 201), created.text
    template_id = created.json()["data"]["id"]
    names = {number: name for number, name in zip(numbers(2), ("Al", "Bo" * 30), strict=True)}
    response = env.api.post("/api/v1/messages/batch", json={
        "template_id": template_id, "tracking": {},
        "recipients": [{"to": number, "personalisation": {"name": name}} for number, name in names.items()]})
    assert response.status_code == 202, response.text
    batch_id = response.json()["data"]["id"]
    wait_for(lambda: progress(env, batch_id)["status"] == "completed", 60, "the batch never completed")
    for row in search(env, batch_id=batch_id):
        stored = _message(env, row["id"])
        [short] = _short_links(stored["body"])
        assert stored["body"] == f"Hi {names[row['to']]}, see {short}"
        assert stored["segments"] == count_segments(stored["body"])[1] == 1
        assert _get(short).headers["location"] == ORIGINAL

    # a link that holds a placeholder cannot be one short link for every recipient: refused, nothing charged
    created = env.api.post("/api/v1/templates", json={"name": "per-order", "body": "See https://x.example/((order))"})
    assert created.status_code in (200, 201), created.text
    before = env.balance()
    response = env.api.post("/api/v1/messages/batch", json={
        "template_id": created.json()["data"]["id"], "tracking": {},
        "recipients": [{"to": number, "personalisation": {"order": f"A-{i}"}} for i, number in enumerate(names)]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["field"] == "tracking"
    assert env.balance() == before


def test_clicks_go_to_the_tracking_url_and_redaction_removes_the_links(env):
    # the test tenant has no default webhook and the send names none: only tracking_url can receive the click
    response = env.api.post("/api/v1/messages/sms", json={
        "to": fictional(44), "body": BODY, "tracking": {"tracking_url": env.receiver.url}})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    env.wait_status(message_id, "delivered")
    [short] = _short_links(_message(env, message_id)["body"])
    assert _get(short).status_code == 302
    [event] = _clicked(env, 1)
    assert (event["data"]["message_id"], event["data"]["url"]) == (message_id, ORIGINAL)

    response = env.api.post(f"/api/v1/messages/{message_id}/redact")
    assert response.status_code == 200, response.text
    gone = _get(short)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"
