"""Link shortening rules (shared/rules/links.py): finding URLs in a body, rewriting, short links, codes, and
the ``tracking`` object's validation (no stack)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from shared.rules import links
from shared.rules.errors import ApiError
from shared.rules.segments import count_segments

NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)


def urls(body: str) -> list[str]:
    return [found.url for found in links.find_urls(body)]


@pytest.mark.parametrize(("body", "expected"), [
    ("Your order: https://shop.example/orders/42", ["https://shop.example/orders/42"]),
    ("http://a.example and HTTPS://B.example/x", ["http://a.example", "HTTPS://B.example/x"]),
    # query strings and fragments belong to the URL
    ("Pay at https://pay.example/p?id=7&amp=1&x=a%20b#top now", ["https://pay.example/p?id=7&amp=1&x=a%20b#top"]),
    ("https://x.example/?q=1,2;3", ["https://x.example/?q=1,2;3"]),
    # trailing punctuation ends the sentence, not the URL
    ("See https://x.example/a.", ["https://x.example/a"]),
    ("See https://x.example/a, then https://y.example/b; done", ["https://x.example/a", "https://y.example/b"]),
    ("Really? https://x.example/q?!", ["https://x.example/q"]),
    ("Go: https://x.example/a:", ["https://x.example/a"]),
    ("'https://x.example/a'", ["https://x.example/a"]),
    ('He said "https://x.example/a" loudly', ["https://x.example/a"]),
    ("(see https://x.example/a)", ["https://x.example/a"]),
    ("(see https://x.example/a).", ["https://x.example/a"]),
    ("https://x.example/a...", ["https://x.example/a"]),
    # balanced parentheses stay, as in Wikipedia links
    ("https://en.wikipedia.org/wiki/Mercury_(planet)", ["https://en.wikipedia.org/wiki/Mercury_(planet)"]),
    ("Read https://en.wikipedia.org/wiki/Mercury_(planet).", ["https://en.wikipedia.org/wiki/Mercury_(planet)"]),
    ("(Read https://en.wikipedia.org/wiki/Mercury_(planet))", ["https://en.wikipedia.org/wiki/Mercury_(planet)"]),
    ("https://x.example/f(a)(b)", ["https://x.example/f(a)(b)"]),
    # bare www. forms
    ("visit www.example.com/deal today", ["www.example.com/deal"]),
    ("WWW.Example.com!", ["WWW.Example.com"]),
    # nothing that is not a link
    ("no links here, just text.", []),
    ("https:// is not a link, nor is www. alone", []),
    ("email me@www.example.com", []),
    ("awww.example.com is a word", []),
    ("ahttps://x.example", []),
    # unicode around and inside
    ("Café ☕ https://x.example/menü — ok", ["https://x.example/menü"]),
    ("请访问https://x.example/a。谢谢", ["https://x.example/a"]),
    ("“https://x.example/a”", ["https://x.example/a"]),
    ("🎉https://x.example/🎉", ["https://x.example/🎉"]),
    # several, and the same one twice
    ("a https://x.example b https://x.example c", ["https://x.example", "https://x.example"]),
    ("<https://x.example/a>", ["https://x.example/a"]),
])
def test_find_urls(body, expected):
    assert urls(body) == expected


def test_spans_point_at_the_urls():
    body = "A (https://x.example/a_(b)), then www.y.example."
    for found in links.find_urls(body):
        assert body[found.start:found.end] == found.url


def test_rewrite_replaces_only_the_mapped_urls_and_keeps_the_rest():
    body = "Hi! https://x.example/a?b=1, www.y.example and https://x.example/a?b=1. (https://z.example)"
    out = links.rewrite(body, {"https://x.example/a?b=1": "S1", "https://z.example": "S3"})
    assert out == "Hi! S1, www.y.example and S1. (S3)"


def test_rewrite_of_a_body_without_links_is_the_body():
    assert links.rewrite("plain text… ✓", {"https://x.example": "S"}) == "plain text… ✓"


def test_a_bare_www_link_redirects_over_https():
    assert links.target("www.example.com/a") == "https://www.example.com/a"
    assert links.target("http://example.com") == "http://example.com"
    assert links.target("HTTPS://example.com") == "HTTPS://example.com"


def test_codes_have_at_least_64_random_bits_and_are_url_safe():
    codes = {links.new_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in itertools.islice(codes, 50):
        assert links.is_code(code)
        assert len(code) * 6 >= 64
        assert all(c.isalnum() or c in "-_" for c in code)


@pytest.mark.parametrize("value", ["", "abc", "A" * 11, "A" * 13, "../../etc/pas", "AAAAAAAAAAA/", "AAAAAAAAAA%2F",
                                   "https:%2F%2Fev", "AAAAAAAAAAA.", "ÄAAAAAAAAAAA"])
def test_anything_else_is_no_code(value):
    assert not links.is_code(value)


def test_short_link_form():
    assert links.short_link("https://gw.example", "abcdefghijkl") == "https://gw.example/l/abcdefghijkl"
    assert links.short_link("https://gw.example/", "abcdefghijkl") == "https://gw.example/l/abcdefghijkl"
    assert links.short_link("https://gw.example", "abcdefghijkl", remove_protocol=True) == "gw.example/l/abcdefghijkl"


def _plan(body: str, tracking: links.Tracking, recipient: str = "+15550001111") -> tuple[str, list[links.Link]]:
    counter = itertools.count()
    return links.plan(body, tracking, origin="https://gw.example", tenant_id="tnt_1", message_id="msg_1",
                      recipient=recipient, now=NOW, expires_at=NOW + dt.timedelta(days=30),
                      code=lambda: f"code{next(counter):08d}")


def test_plan_gives_each_distinct_url_one_link():
    body = "Deal: https://shop.example/d?x=1. Again: https://shop.example/d?x=1! More www.more.example"
    out, made = _plan(body, links.Tracking())
    assert out == ("Deal: https://gw.example/l/code00000000. Again: https://gw.example/l/code00000000! "
                   "More https://gw.example/l/code00000001")
    assert [(link.code, link.url) for link in made] == [("code00000000", "https://shop.example/d?x=1"),
                                                         ("code00000001", "https://www.more.example")]
    assert all(link.message_id == "msg_1" and link.recipient == "+15550001111" and link.track_clicks for link in made)
    assert all(link.expires_at == NOW + dt.timedelta(days=30) for link in made)


def test_plan_with_a_custom_domain_and_no_protocol():
    out, _ = _plan("x https://a.example y", links.Tracking(custom_domain="go.acme.example", remove_protocol=True))
    assert out == "x go.acme.example/l/code00000000 y"


def test_plan_without_shortening_changes_nothing():
    body = "x https://a.example y"
    assert _plan(body, links.Tracking(shorten_urls=False, track_clicks=False)) == (body, [])


def test_the_links_of_two_recipients_differ():
    body = "x https://a.example y"
    first = links.plan(body, links.Tracking(), origin="https://gw.example", tenant_id="t", message_id="msg_a",
                       recipient="+1", now=NOW, expires_at=NOW)
    second = links.plan(body, links.Tracking(), origin="https://gw.example", tenant_id="t", message_id="msg_b",
                        recipient="+2", now=NOW, expires_at=NOW)
    assert first[0] != second[0]
    assert first[1][0].code != second[1][0].code


def test_a_link_is_live_until_it_expires():
    _, [link] = _plan("https://a.example", links.Tracking())
    assert link.live(NOW) and link.live(link.expires_at - dt.timedelta(microseconds=1))
    assert not link.live(link.expires_at)


def test_a_link_round_trips_through_its_document():
    _, [link] = _plan("https://a.example", links.Tracking(tracking_url="https://hooks.example/c"))
    assert links.Link.from_doc(link.to_doc()) == link


# -- the tracking object ----------------------------------------------------------------------------------


def test_tracking_defaults_follow_infobip():
    assert links.parse_tracking({}) == links.Tracking(shorten_urls=True, track_clicks=True, remove_protocol=False)
    assert links.parse_tracking(None) is None


def test_tracking_takes_every_field():
    parsed = links.parse_tracking({"shorten_urls": True, "track_clicks": True, "tracking_url": "https://h.example/c",
                                   "remove_protocol": True, "custom_domain": "go.acme.example"})
    assert parsed == links.Tracking(True, True, "https://h.example/c", True, "go.acme.example")


@pytest.mark.parametrize(("value", "field", "issue"), [
    ("yes", "tracking", "must be an object"),
    ({"shorten": True}, "tracking.shorten", "unknown field"),
    ({"shorten_urls": "true"}, "tracking.shorten_urls", "must be a boolean"),
    ({"tracking_url": 5}, "tracking.tracking_url", "must be a string"),
    ({"track_clicks": False, "tracking_url": "https://h.example"}, "tracking.tracking_url", "needs track_clicks"),
    ({"shorten_urls": False, "track_clicks": True}, "tracking.track_clicks", "needs shorten_urls"),
    ({"shorten_urls": False, "custom_domain": "go.example.com"}, "tracking.custom_domain", "needs shorten_urls"),
    ({"tracking_url": "https://h.example/" + "a" * 2000}, "tracking.tracking_url", "must be at most 2000 characters"),
])
def test_bad_tracking_is_a_400_naming_the_field(value, field, issue):
    with pytest.raises(ApiError) as caught:
        links.parse_tracking(value)
    assert caught.value.status == 400
    assert caught.value.details == [{"field": field, "issue": issue}]


@pytest.mark.parametrize("domain", ["https://go.example.com", "go.example.com:8443", "go.example.com/x", "localhost",
                                    "Go.Example.com", "10.0.0.1", "go..example.com", "-go.example.com", "go_x.example",
                                    "go.example.com.", "a" * 64 + ".example.com", "gö.example.com"])
def test_a_custom_domain_is_a_host_name(domain):
    with pytest.raises(ApiError) as caught:
        links.parse_tracking({"custom_domain": domain})
    assert caught.value.details is not None and caught.value.details[0]["field"] == "tracking.custom_domain"


@pytest.mark.parametrize("domain", ["go.example.com", "l.acme.co.uk", "x-1.example"])
def test_good_custom_domains(domain):
    parsed = links.parse_tracking({"custom_domain": domain})
    assert parsed is not None and parsed.custom_domain == domain


def test_click_data_names_the_message_recipient_url_time_and_agent():
    _, [link] = _plan("https://a.example/x", links.Tracking())
    data = links.click_data(link, at=NOW, user_agent="Mozilla/5.0")
    assert data == {"message_id": "msg_1", "recipient": "+15550001111", "url": "https://a.example/x",
                    "clicked_at": "2026-12-07T12:00:00.000Z", "user_agent": "Mozilla/5.0"}
    assert links.click_data(link, at=NOW, user_agent=None)["user_agent"] is None
    assert len(links.click_data(link, at=NOW, user_agent="x" * 5000)["user_agent"]) == 512


# -- the accept's marks: priced once, each recipient its own codes ----------------------------------------

NONCE = "NoNcE_-1"


def _mark(body: str, tracking: links.Tracking | None = None) -> links.Marked:
    return links.mark(body, tracking or links.Tracking(), origin="https://gw.example", nonce=NONCE)


def _issue(text: str, marked: links.Marked, message_id: str = "msg_1",
           codes: list[str] | None = None) -> tuple[str, list[links.Link]]:
    given = iter(codes) if codes is not None else None
    return links.issue(text, marked, tenant_id="tnt_1", message_id=message_id, recipient="+15550001111", now=NOW,
                       expires_at=NOW + dt.timedelta(days=30),
                       **({"code": lambda: next(given)} if given is not None else {}))


def test_mark_replaces_each_distinct_url_with_a_placeholder_of_a_codes_length():
    body = ("Deal: https://shop.example/d?x=1&y=(2). Again https://shop.example/d?x=1&y=(2)! "
            "Wiki (https://en.wikipedia.org/wiki/Mercury_(planet)), and www.more.example.")
    marked = _mark(body)
    assert marked.marks == (("NoNcE_-10000", "https://shop.example/d?x=1&y=(2)"),
                            ("NoNcE_-10001", "https://en.wikipedia.org/wiki/Mercury_(planet)"),
                            ("NoNcE_-10002", "https://www.more.example"))
    assert marked.body == ("Deal: https://gw.example/l/NoNcE_-10000. Again https://gw.example/l/NoNcE_-10000! "
                           "Wiki (https://gw.example/l/NoNcE_-10001), and https://gw.example/l/NoNcE_-10002.")


def test_issue_gives_each_recipient_fresh_codes_of_the_same_length():
    marked = _mark("Shop https://shop.example/a?b=1 or www.b.example, twice: https://shop.example/a?b=1")
    first, made_first = _issue(marked.body, marked, "msg_1", ["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    assert first == ("Shop https://gw.example/l/aaaaaaaaaaaa or https://gw.example/l/bbbbbbbbbbbb, twice: "
                     "https://gw.example/l/aaaaaaaaaaaa")
    assert [(link.code, link.url, link.message_id) for link in made_first] == [
        ("aaaaaaaaaaaa", "https://shop.example/a?b=1", "msg_1"), ("bbbbbbbbbbbb", "https://www.b.example", "msg_1")]
    second, made_second = _issue(marked.body, marked, "msg_2")  # real random codes
    assert {link.code for link in made_second}.isdisjoint({link.code for link in made_first})
    assert all(links.is_code(link.code) for link in made_second)
    assert len(second) == len(first) == len(marked.body)
    assert count_segments(second) == count_segments(marked.body)


def test_issue_works_on_the_marked_text_as_sent_smart_encoded_or_rendered():
    marked = _mark("\u201cSale\u201d \u2013 https://s.example/x \u2026 Hi ((name))")
    sent = marked.body.replace("\u201c", '"').replace("\u201d", '"').replace("\u2013", "-").replace("\u2026", "...")
    out, [link] = _issue(sent.replace("((name))", "Ann"), marked, codes=["cccccccccccc"])
    assert out == '"Sale" - https://gw.example/l/cccccccccccc ... Hi Ann'
    assert link.url == "https://s.example/x"


def test_marks_follow_a_custom_domain_and_remove_protocol():
    tracking = links.Tracking(custom_domain="go.acme.example", remove_protocol=True, tracking_url="https://h.example/c")
    marked = _mark("x https://a.example y", tracking)
    assert marked.body == "x go.acme.example/l/NoNcE_-10000 y"
    out, [link] = _issue(marked.body, marked, codes=["dddddddddddd"])
    assert out == "x go.acme.example/l/dddddddddddd y"
    assert link.tracking_url == "https://h.example/c" and link.track_clicks


def test_a_body_without_urls_has_no_marks_and_a_marked_body_round_trips():
    assert _mark("no links here, www. alone").marks == ()
    marked = _mark("x https://a.example/(b) y", links.Tracking(tracking_url="https://h.example/c"))
    assert links.Marked.from_doc(marked.to_doc()) == marked


@pytest.mark.parametrize("nonce", ["short", "NoNcE_-1x", "bad nonce"])
def test_a_nonce_is_eight_code_characters(nonce):
    with pytest.raises(ValueError):
        links.mark("https://a.example", links.Tracking(), origin="https://gw.example", nonce=nonce)
