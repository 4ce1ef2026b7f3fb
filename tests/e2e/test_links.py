"""Short links through the stack (issue 25 item 1, before the accept pipeline calls it): ``shorten`` for a real
stored message, then a click through the gateway's ``GET /l/{code}``: a 302 to exactly the stored URL, a signed
``link.clicked`` event at the message's webhook (verified with the Standard Webhooks library, not our code), and
404s for unknown, expired, crafted and redacted links."""

from __future__ import annotations

import datetime as dt
import json
import re

import httpx
import pytest
from standardwebhooks import Webhook

from shared.carriers.signatures import tenant_secret
from shared.rules.links import Tracking, new_code
from shared.services import links
from tests.conftest import fictional, wait_for
from tests.docs.test_openapi import assert_matches

pytestmark = pytest.mark.stack

ORIGINAL = "https://shop.example.com/p?id=7&ref=(spring)#top"
AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) mmsgate-test"


def _runtime():
    from infra.runtime import Runtime

    return Runtime()


def _delivered_message(env) -> str:
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(40), "body": "hello",
                                                          "webhook_url": env.receiver.url})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    env.wait_status(message_id, "delivered")
    return message_id


def _events(env, kind: str, n: int) -> list[dict]:
    def found() -> list[dict]:
        return [r for r in env.receiver.received if json.loads(r["body"]).get("type") == kind]

    wait_for(lambda: len(found()) >= n, 20, f"{n} {kind} events")
    return found()


def _shorten(env, message_id: str, body: str, *, expires_in: dt.timedelta = dt.timedelta(days=1),
             tracking: Tracking | None = None) -> list[str]:
    rt = _runtime()
    shortened = links.shorten(rt, body, tracking or Tracking(), tenant_id=env.tenant_id, message_id=message_id,
                              recipient=fictional(40), expires_at=dt.datetime.now(dt.UTC) + expires_in)
    short = re.findall(r"http://127\.0\.0\.1:\d+/l/[A-Za-z0-9_-]+", shortened)
    assert short and ORIGINAL not in shortened, shortened
    return short


def _get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, follow_redirects=False, timeout=10, trust_env=False, **kwargs)


def _is_404(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_a_click_redirects_to_the_original_and_signs_a_link_clicked_event(env):
    message_id = _delivered_message(env)
    _events(env, "message.delivered", 1)
    [short] = _shorten(env, message_id, f"Spring sale: {ORIGINAL}. Reply STOP to opt out")
    assert short.startswith(env.stack.urls["gateway"] + "/l/")

    response = _get(short, headers={"User-Agent": AGENT})
    assert response.status_code == 302, response.text
    assert response.headers["location"] == ORIGINAL
    assert response.headers["cache-control"] == "no-store"

    [record] = _events(env, "link.clicked", 1)
    payload = Webhook(tenant_secret(env.stack.function_env()["WEBHOOK_SIGNING_KEY"], env.tenant_id)).verify(
        record["body"], record["headers"])
    assert_matches("CustomerEvent", payload)  # docs/openapi.yaml's LinkClick
    data = payload["data"]
    assert (data["message_id"], data["recipient"], data["url"], data["user_agent"]) == \
        (message_id, fictional(40), ORIGINAL, AGENT)
    clicked = dt.datetime.fromisoformat(data["clicked_at"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - clicked).total_seconds()) < 60
    # The event shows in the message's own read, delivered, like every other event of it.
    read = env.api.get(f"/api/v1/messages/{message_id}").json()["data"]
    assert [n["state"] for n in read["notifications"] if n["type"] == "link.clicked"] == ["delivered"]


def test_unknown_expired_and_crafted_codes_never_redirect_elsewhere(env):
    message_id = _delivered_message(env)
    [short] = _shorten(env, message_id, f"Go {ORIGINAL}")
    gateway = env.stack.urls["gateway"]

    _is_404(_get(f"{gateway}/l/{new_code()}"))  # well formed, never issued
    assert _get(f"{gateway}/l/{new_code()}").headers["cache-control"] == "no-store"
    _is_404(_get(f"{gateway}/l/https:%2F%2Fevil.example.com"))
    _is_404(_get(f"{gateway}/l/..%2F..%2Fapi%2Fv1%2Fmessages"))
    _is_404(_get(f"{gateway}/l/{short.rsplit('/', 1)[1]}%2F%2Fevil.example.com"))
    assert _get(f"{short}/https://evil.example.com").status_code == 404  # no route: never reaches the function
    # Nothing in the request can change where a real code leads.
    for crafted in (httpx.URL(short, params={"url": "https://evil.example.com", "next": "//evil.example.com"}),
                    short + "/"):
        response = _get(str(crafted), headers={"Host": "evil.example.com", "X-Forwarded-Host": "evil.example.com",
                                               "Referer": "https://evil.example.com"})
        assert response.status_code == 302 and response.headers["location"] == ORIGINAL

    [expired] = _shorten(env, message_id, f"Old {ORIGINAL}", expires_in=-dt.timedelta(seconds=1))
    _is_404(_get(expired))


def test_redaction_removes_the_links(env):
    message_id = _delivered_message(env)
    [short] = _shorten(env, message_id, f"Go {ORIGINAL}", tracking=Tracking(track_clicks=False))
    assert _get(short).status_code == 302
    response = env.api.post(f"/api/v1/messages/{message_id}/redact")
    assert response.status_code == 200, response.text
    _is_404(_get(short))


def test_ten_clicks_in_a_batch_of_fifty_are_each_attributed_to_their_message(env):
    """Issue 25's proof, with shorten called per recipient as the accept will: 50 recipients share one URL,
    10 of them click, and each of the 10 events names the clicking recipient's message and nobody else's."""
    from tests.e2e.test_batch import numbers, progress, search

    response = env.api.post("/api/v1/messages/batch", json={"to": numbers(50), "body": "spring",
                                                            "webhook_url": env.receiver.url})
    assert response.status_code == 202, response.text
    batch_id = response.json()["data"]["id"]
    wait_for(lambda: progress(env, batch_id)["status"] == "completed", 60, "the batch never completed")
    rows = search(env, batch_id=batch_id)
    assert len(rows) == 50

    rt = _runtime()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    short: dict[str, str] = {}
    for row in rows:
        body = links.shorten(rt, f"Sale: {ORIGINAL}", Tracking(), tenant_id=env.tenant_id, message_id=row["id"],
                             recipient=row["to"], expires_at=expires)
        [short[row["id"]]] = re.findall(r"http://127\.0\.0\.1:\d+/l/[A-Za-z0-9_-]+", body)
    assert len(set(short.values())) == 50  # one link per recipient, though the URL is the same

    clickers = {row["id"]: row["to"] for row in rows[::5]}
    for message_id in clickers:
        response = _get(short[message_id], headers={"User-Agent": f"reader {message_id}"})
        assert response.status_code == 302 and response.headers["location"] == ORIGINAL

    events = [json.loads(r["body"])["data"] for r in _events(env, "link.clicked", 10)]
    assert sorted((e["message_id"], e["recipient"], e["user_agent"]) for e in events) == \
        sorted((m, to, f"reader {m}") for m, to in clickers.items())
    for row in rows:
        read = env.api.get(f"/api/v1/messages/{row['id']}").json()["data"]
        clicks = [n for n in read["notifications"] if n["type"] == "link.clicked"]
        assert len(clicks) == (1 if row["id"] in clickers else 0), row["id"]
