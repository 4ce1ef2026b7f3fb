"""The links service (shared/services/links.py) over in-memory ports: shortening stores one link per URL and
recipient, a click answers the stored URL and records one signed-to-be ``link.clicked`` event through
leg_changes, unknown or expired codes are 404s, and redaction forgets a message's links (no stack)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from shared.ports import FixedClock
from shared.rules import links as rules
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.status import Status
from shared.services import links, notifying
from shared.services.redaction import redact
from tests.unit.fakes import FakeRuntime
from tests.unit.legs import HOOK, T0, leg

LATER = T0 + dt.timedelta(days=30)
TRACKER = "https://tracker.example.com/clicks"


def runtime(**leg_fields: object) -> FakeRuntime:
    rt = FakeRuntime(FixedClock(T0))
    message = leg(Status.DELIVERED, **{"webhook_url": HOOK, **leg_fields})  # type: ignore[arg-type]
    rt.legs.legs[message.id] = message
    return rt


def shorten(rt: FakeRuntime, body: str, tracking: rules.Tracking | None = None, *, message_id: str = "msg_unit0001",
            recipient: str = "+14155550101") -> str:
    return links.shorten(rt, body, rules.Tracking() if tracking is None else tracking, tenant_id="tnt_unit",
                         message_id=message_id, recipient=recipient, expires_at=LATER)


def code_of(short: str) -> str:
    return short.rsplit("/", 1)[1]


def test_shorten_stores_a_link_per_url_and_rewrites_the_body():
    rt = runtime()
    out = shorten(rt, "Sale https://shop.example.com/s?c=1 and https://shop.example.com/s?c=1, www.b.example.com.")
    by_url = {link.url: link for link in rt.links.links.values()}
    assert set(by_url) == {"https://shop.example.com/s?c=1", "https://www.b.example.com"}
    shop, bare = by_url["https://shop.example.com/s?c=1"].code, by_url["https://www.b.example.com"].code
    assert out == f"Sale https://gw.example/l/{shop} and https://gw.example/l/{shop}, https://gw.example/l/{bare}."
    assert {(link.message_id, link.recipient, link.expires_at) for link in by_url.values()} == \
        {("msg_unit0001", "+14155550101", LATER)}


def test_two_recipients_of_one_body_get_links_of_their_own():
    rt = runtime()
    a = shorten(rt, "https://x.example.com", message_id="msg_a", recipient="+14155550101")
    b = shorten(rt, "https://x.example.com", message_id="msg_b", recipient="+14155550102")
    assert a != b
    assert rt.links.links[code_of(a)].message_id == "msg_a" and rt.links.links[code_of(b)].message_id == "msg_b"


def test_no_tracking_or_no_urls_stores_nothing():
    rt = runtime()
    assert links.shorten(rt, "https://x.example.com", None, tenant_id="t", message_id="m", recipient="r",
                         expires_at=LATER) == "https://x.example.com"
    assert shorten(rt, "https://x.example.com", rules.Tracking(shorten_urls=False, track_clicks=False)) == \
        "https://x.example.com"
    assert shorten(rt, "no links") == "no links"
    assert rt.links.links == {}


def test_a_click_answers_the_stored_url_and_queues_one_link_clicked_event():
    rt = runtime(client_ref="order-7")
    code = code_of(shorten(rt, "Track it: https://shop.example.com/o?id=7&x=(1)"))
    at = T0 + dt.timedelta(hours=2)
    assert links.click(rt, code, "Mozilla/5.0 (iPhone)", at) == "https://shop.example.com/o?id=7&x=(1)"
    message = rt.legs.legs["msg_unit0001"]
    [(event_id, entry)] = [(k, v) for k, v in message.notifications.items() if v.type == "link.clicked"]
    assert rt.queue.notifies == [(event_id, "msg_unit0001")]
    assert message.notify_due == at
    body = json.loads(notifying.event_body(message, event_id, entry))
    assert body == {"id": event_id, "type": "link.clicked", "created_at": "2026-03-01T14:00:00.000Z",
                    "data": {"message_id": "msg_unit0001", "recipient": "+14155550101",
                             "url": "https://shop.example.com/o?id=7&x=(1)", "clicked_at": "2026-03-01T14:00:00.000Z",
                             "user_agent": "Mozilla/5.0 (iPhone)", "client_ref": "order-7"}}
    # no tracking_url: the message's own webhook
    assert notifying.target_urls(message, entry) == [HOOK]


def test_each_click_is_an_event_of_its_own_sent_to_the_tracking_url():
    rt = runtime()
    code = code_of(shorten(rt, "https://x.example.com", rules.Tracking(tracking_url=TRACKER)))
    for minute in range(3):
        links.click(rt, code, None, T0 + dt.timedelta(minutes=minute))
    clicks = [v for v in rt.legs.legs["msg_unit0001"].notifications.values() if v.type == "link.clicked"]
    assert len(clicks) == 3 and len(rt.queue.notifies) == 3 and len({e for e, _ in rt.queue.notifies}) == 3
    assert [c.data["clicked_at"] for c in clicks if c.data] == \
        ["2026-03-01T12:00:00.000Z", "2026-03-01T12:01:00.000Z", "2026-03-01T12:02:00.000Z"]
    assert all(notifying.target_urls(rt.legs.legs["msg_unit0001"], c) == [TRACKER] for c in clicks)


def test_a_link_without_click_tracking_only_redirects():
    rt = runtime()
    code = code_of(shorten(rt, "https://x.example.com", rules.Tracking(track_clicks=False)))
    assert links.click(rt, code, None, T0) == "https://x.example.com"
    assert rt.legs.legs["msg_unit0001"].notifications == {} and rt.queue.notifies == []


def test_a_click_nobody_listens_to_adds_no_event():
    rt = runtime(webhook_url=None)
    code = code_of(shorten(rt, "https://x.example.com"))
    assert links.click(rt, code, None, T0) == "https://x.example.com"
    assert rt.legs.legs["msg_unit0001"].notifications == {}


def test_click_events_stop_at_the_cap_and_the_redirect_goes_on():
    rt = runtime()
    code = code_of(shorten(rt, "https://x.example.com"))
    for n in range(links.MAX_CLICK_EVENTS + 5):
        assert links.click(rt, code, None, T0 + dt.timedelta(seconds=n)) == "https://x.example.com"
    assert len(rt.legs.legs["msg_unit0001"].notifications) == links.MAX_CLICK_EVENTS


def test_a_failed_event_write_still_redirects():
    rt = runtime()
    code = code_of(shorten(rt, "https://x.example.com"))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("firestore down")

    rt.legs.mutate = broken  # type: ignore[method-assign, assignment]
    assert links.click(rt, code, None, T0) == "https://x.example.com"


@pytest.mark.parametrize("code", ["", "nope", "A" * 12, "../../../../x", "https:%2F%2Fevil.example"])
def test_unknown_codes_are_404(code):
    rt = runtime()
    shorten(rt, "https://x.example.com")
    with pytest.raises(ApiError) as caught:
        links.click(rt, code, None, T0)
    assert caught.value.code is ErrorCode.NOT_FOUND and caught.value.status == 404


def test_a_malformed_code_costs_no_read():
    rt = runtime()
    with pytest.raises(ApiError):
        links.click(rt, "../etc/passwd", None, T0)
    assert rt.links.reads == 0


def test_a_click_reads_one_link_document():
    rt = runtime()
    code = code_of(shorten(rt, "https://x.example.com"))
    links.click(rt, code, None, T0)
    assert rt.links.reads == 1


def test_an_expired_link_is_404_and_records_nothing():
    rt = runtime()
    code = code_of(shorten(rt, "https://x.example.com"))
    with pytest.raises(ApiError) as caught:
        links.click(rt, code, None, LATER)
    assert caught.value.status == 404
    assert rt.legs.legs["msg_unit0001"].notifications == {}


def test_redaction_forgets_the_messages_links():
    rt = runtime()
    code = code_of(shorten(rt, "https://x.example.com"))
    other = code_of(shorten(rt, "https://x.example.com", message_id="msg_other"))
    redact(rt, "tnt_unit", "msg_unit0001")
    with pytest.raises(ApiError):
        links.click(rt, code, None, T0)
    assert links.click(rt, other, None, T0) == "https://x.example.com"


def test_a_click_on_a_redacted_message_adds_no_event():
    rt = runtime(redacted_at=T0)
    code = code_of(shorten(rt, "https://x.example.com"))
    assert links.click(rt, code, None, T0) == "https://x.example.com"
    assert rt.legs.legs["msg_unit0001"].notifications == {}


@pytest.mark.parametrize("url", ["http://tracker.example.com/c", "https://user@tracker.example.com/c",
                                 "https://10.0.0.1/c", "https://localhost/c"])
def test_a_tracking_url_that_fails_the_ssrf_rules_is_a_400(url):
    rt = runtime()
    with pytest.raises(ApiError) as caught:
        links.vet(rt, rules.Tracking(tracking_url=url))
    assert caught.value.status == 400
    assert caught.value.details is not None and caught.value.details[0]["field"] == "tracking.tracking_url"


def test_no_tracking_url_needs_no_check():
    links.vet(runtime(), rules.Tracking())
    links.vet(runtime(), None)


def test_a_click_event_keeps_its_data_and_url_through_attempts_and_storage():
    from shared.rules.legs import mark_event
    from shared.rules.records import EventState, Leg, OutboxEntry

    rt = runtime()
    code = code_of(shorten(rt, "https://x.example.com", rules.Tracking(tracking_url=TRACKER)))
    links.click(rt, code, "UA", T0)
    message = rt.legs.legs["msg_unit0001"]
    [event_id] = message.notifications
    retried = mark_event(message, event_id, T0 + dt.timedelta(seconds=5), state=EventState.RETRYING, error="HTTP 500")
    assert retried is not None
    entry = retried.notifications[event_id]
    assert (entry.data, entry.url, entry.attempts) == (message.notifications[event_id].data, TRACKER, 1)
    assert Leg.from_doc(retried.to_doc()).notifications == retried.notifications
    # a status event's stored form is as it was: no keys of its own
    plain = OutboxEntry(type="message.sent", status="sent", created_at=T0)
    assert set(plain.to_doc()) == {"type", "status", "created_at", "state", "attempts", "last_attempt_at", "last_error"}


def test_prepare_marks_nothing_without_urls_or_shortening():
    rt = runtime()
    assert links.prepare(rt, "no links", rules.Tracking()) is None
    assert links.prepare(rt, "x https://a.example.com", rules.Tracking(shorten_urls=False, track_clicks=False)) is None
    assert links.prepare(rt, "x https://a.example.com", None) is None
    assert links.prepare(rt, None, rules.Tracking()) is None


def test_prepare_then_issue_stores_nothing_until_store():
    rt = runtime()
    marked = links.prepare(rt, "x https://a.example.com y", rules.Tracking())
    assert marked is not None and marked.body.startswith("x https://gw.example/l/") and not rt.links.links
    body, made = links.issue(rt, marked.body, marked, tenant_id="tnt_unit", message_id="msg_a",
                             recipient="+14155550101", expires_at=LATER)
    assert not rt.links.links
    links.store(rt, made)
    [link] = rt.links.links.values()
    assert body == f"x https://gw.example/l/{link.code} y"
    assert (link.url, link.message_id, link.created_at, link.expires_at) == \
        ("https://a.example.com", "msg_a", T0, LATER)


def test_a_deployment_without_a_link_origin_refuses_tracking_without_a_custom_domain():
    rt = runtime()
    rt.settings = dataclasses.replace(rt.settings, link_base_url="")
    with pytest.raises(ApiError) as raised:
        links.prepare(rt, "x https://a.example.com", rules.Tracking())
    assert raised.value.code is ErrorCode.VALIDATION_ERROR
    assert raised.value.details == [{"field": "tracking.custom_domain", "issue": raised.value.details[0]["issue"]}]
    marked = links.prepare(rt, "x https://a.example.com", rules.Tracking(custom_domain="go.acme.example"))
    assert marked is not None and marked.body.startswith("x https://go.acme.example/l/")
