"""Keyword compliance and inbound records, pure (shared/rules/keywords.py, shared/services/received.py,
shared/services/inbound.py's
decisions): which texts are keywords, what each changes for a sender on or off the list, who answers, the reply
texts, and the inbound leg with its events and reply, decided once."""

from __future__ import annotations

import json

import pytest

from shared.carriers.telnyx_events import Report
from shared.rules import keywords
from shared.rules.ids import notify_event_id
from shared.rules.keywords import Kind
from shared.rules.records import StoredMedia, Tenant
from shared.rules.status import Status
from shared.services import inbound, received
from tests.unit.legs import HOOK, T0, at

TENANT = Tenant(id="tnt_unit", name="Acme", webhook_url=HOOK)
NUMBER, SENDER = "+18005551234", "+14155550123"


# -- which texts are keywords ----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kind", "word"), [
    ("STOP", Kind.STOP, "STOP"), (" stop ", Kind.STOP, "STOP"), ("Stop.", Kind.STOP, "STOP"),
    ("stopall", Kind.STOP, "STOPALL"), ("Stop  All", Kind.STOP, "STOP ALL"), ("UNSUBSCRIBE", Kind.STOP, "UNSUBSCRIBE"),
    ("cancel", Kind.STOP, "CANCEL"), ("End", Kind.STOP, "END"), ("quit!", Kind.STOP, "QUIT"),
    ("help", Kind.HELP, "HELP"), ("\tINFO\n", Kind.HELP, "INFO"),
    ("start", Kind.START, "START"), ("Unstop", Kind.START, "UNSTOP"), ("yes", Kind.START, "YES"),
])
def test_a_whole_message_that_is_a_keyword(text, kind, word):
    assert keywords.classify(text) == keywords.Keyword(kind, word)


@pytest.mark.parametrize("text", ["please stop texting me", "STOP IT", "stopp", "helpful", "", None, "s t o p",
                                  "STOP" + " " * 40 + "x", "yesterday", "STOP?"])
def test_anything_else_is_an_ordinary_message(text):
    assert keywords.classify(text) is None


# -- what each does --------------------------------------------------------------------------------------
def test_stop_opts_out_announces_and_confirms():
    action = keywords.decide(keywords.classify("STOP"), opted_out=False, replies="mmsgate")
    assert (action.opt, action.event, action.reply) == ("out", "recipient.opted_out", Kind.STOP)


def test_a_second_stop_is_confirmed_again_but_changes_nothing():
    action = keywords.decide(keywords.classify("QUIT"), opted_out=True, replies="mmsgate")
    assert (action.opt, action.event, action.reply) == (None, None, Kind.STOP)


def test_start_after_an_opt_out_opts_in_and_confirms():
    action = keywords.decide(keywords.classify("start"), opted_out=True, replies="mmsgate")
    assert (action.opt, action.event, action.reply) == ("in", "recipient.opted_in", Kind.START)


def test_start_from_a_sender_never_opted_out_is_confirmed_without_a_change():
    action = keywords.decide(keywords.classify("UNSTOP"), opted_out=False, replies="mmsgate")
    assert (action.opt, action.event, action.reply) == (None, None, Kind.START)


def test_yes_is_a_keyword_only_after_an_opt_out():
    assert keywords.decide(keywords.classify("yes"), opted_out=False, replies="mmsgate") is None
    action = keywords.decide(keywords.classify("YES"), opted_out=True, replies="mmsgate")
    assert (action.opt, action.event, action.reply) == ("in", "recipient.opted_in", Kind.START)


def test_help_changes_nothing_and_is_answered():
    action = keywords.decide(keywords.classify("HELP"), opted_out=True, replies="mmsgate")
    assert (action.opt, action.event, action.reply) == (None, None, Kind.HELP)


@pytest.mark.parametrize("replies", ["provider", "off"])
def test_when_mmsgate_does_not_answer_the_list_still_changes(replies):
    action = keywords.decide(keywords.classify("STOP"), opted_out=False, replies=replies)
    assert (action.opt, action.event, action.reply) == ("out", "recipient.opted_out", None)
    assert keywords.decide(keywords.classify("HELP"), opted_out=False, replies=replies).reply is None


def test_an_unknown_setting_falls_back_to_mmsgate():
    assert keywords.replies_setting(Tenant(id="t", keyword_replies="telepathy")) == "mmsgate"
    assert keywords.replies_setting(Tenant(id="t", keyword_replies="off")) == "off"


# -- reply texts -----------------------------------------------------------------------------------------
def test_default_texts_name_the_brand_and_carry_the_compliance_phrases():
    stop = keywords.reply_text(TENANT, Kind.STOP)
    help_ = keywords.reply_text(TENANT.__class__(id="t", name="Acme", help_contact="support@acme.example"), Kind.HELP)
    start = keywords.reply_text(TENANT, Kind.START)
    assert stop.startswith("Acme:") and "no more messages" in stop
    assert "support@acme.example" in help_ and "Msg&data rates may apply" in help_ and "Reply STOP to opt out" in help_
    assert "Msg&data rates may apply" in start and "STOP to opt out" in start


def test_a_tenant_brand_and_own_texts_win():
    tenant = Tenant(id="t", name="acme-prod", brand_name="Acme Coffee",
                    keyword_texts={"help": "{brand} help: call 555. Reply STOP to opt out.", "stop": "  "})
    assert keywords.reply_text(tenant, Kind.HELP) == "Acme Coffee help: call 555. Reply STOP to opt out."
    assert keywords.reply_text(tenant, Kind.STOP).startswith("Acme Coffee: You are unsubscribed")  # blank: default


def test_a_tenant_text_with_stray_braces_is_sent_as_written_and_long_ones_are_cut():
    tenant = Tenant(id="t", keyword_texts={"help": "Use {code} at checkout " + "x" * 400})
    text = keywords.reply_text(tenant, Kind.HELP)
    assert text.startswith("Use {code} at checkout") and len(text) == keywords.MAX_REPLY


# -- the inbound record ------------------------------------------------------------------------------------
def _report(text: str | None = "hello", *, media: list | None = None, provider_id: str | None = "tx-in-1",
            sender: str | None = SENDER, event_id: str = "evt-in-1") -> Report:
    payload: dict = {"direction": "inbound", "type": "MMS" if media else "SMS", "text": text,
                     "to": [{"phone_number": NUMBER, "status": "webhook_delivered"}]}
    if provider_id:
        payload["id"] = provider_id
    if sender:
        payload["from"] = {"phone_number": sender}
    if media is not None:
        payload["media"] = media
    return Report(event_id=event_id, event_type="message.received", occurred_at=T0, payload=payload)


def _leg(report: Report, *, opted_out: bool = False, tenant: Tenant = TENANT):
    msg = received.parse(report)
    action = keywords.decide(keywords.classify(msg.text), opted_out=opted_out,
                             replies=keywords.replies_setting(tenant))
    return received.inbound_leg(msg, tenant=tenant, number=NUMBER, action=action, now=T0)


def test_an_sms_is_stored_delivered_final_and_announced_at_once():
    leg = _leg(_report("hello there"))
    assert (leg.direction, leg.status, leg.is_final, leg.from_, leg.to, leg.body) == (
        "inbound", Status.DELIVERED, True, SENDER, NUMBER, "hello there")
    assert leg.provider_id == "tx-in-1" and leg.keyword is None and leg.reply_due is None
    assert [e.type for e in leg.notifications.values()] == ["message.received"]
    assert leg.price_micros == 0


def test_the_id_comes_from_the_provider_message_so_another_event_for_it_names_the_same_row():
    first, again = received.parse(_report(event_id="evt-a")), received.parse(_report(event_id="evt-b"))
    assert received.message_id(first.key) == received.message_id(again.key)
    no_id = received.parse(_report(provider_id=None, event_id="evt-c"))
    assert received.message_id(no_id.key) != received.message_id(first.key)
    assert received.message_id(no_id.key).startswith("msg_")


def test_stop_records_its_keyword_event_and_reply():
    leg = _leg(_report(" Stop "))
    assert leg.keyword == "STOP" and leg.reply_due == T0 and leg.reply_message_id == received.reply_id(leg.id)
    types = sorted(e.type for e in leg.notifications.values())
    assert types == ["message.received", "recipient.opted_out"]
    assert notify_event_id(leg.id, "opted_out") in leg.notifications


def test_media_waits_for_its_copy_before_message_received():
    leg = _leg(_report("pic", media=[{"url": "https://media.telnyx.com/a.jpg", "content_type": "image/jpeg",
                                      "size": 1200}, {"content_type": "image/png"}, "junk"]))
    assert leg.channel == "mms" and received.pending(leg) == [0]
    assert [m.extra["state"] for m in leg.media] == ["pending", "unavailable", "unavailable"]
    assert "message.received" not in {e.type for e in leg.notifications.values()}

    copy = received.copy_of(leg.media[0], {"object": "media/tnt_unit/abc", "content_type": "image/jpeg",
                                           "size": 1100, "sha256": "abc"})
    settled = received.settle_media(leg, {0: copy}, at(2))
    assert settled is not None and received.pending(settled) == []
    assert settled.media[0].object == "media/tnt_unit/abc" and settled.media[0].extra["state"] == "stored"
    assert "message.received" in {e.type for e in settled.notifications.values()}
    # The same outcome recorded again (a second task delivery) writes nothing.
    assert received.settle_media(settled, {0: copy}, at(3)) is None


def test_an_attachment_settled_once_is_not_replaced_by_a_later_outcome():
    leg = _leg(_report("pic", media=[{"url": "https://media.telnyx.com/a.jpg"}]))
    lost = received.unavailable(leg.media[0], "MEDIA_FETCH_FAILED: HTTP 404")
    first = received.settle_media(leg, {0: lost}, at(1))
    copy = received.copy_of(leg.media[0], {"object": "media/t/x", "content_type": "image/jpeg", "size": 1})
    assert first is not None and received.settle_media(first, {0: copy}, at(2)) is None
    assert first.media[0].extra["error"] == "MEDIA_FETCH_FAILED: HTTP 404" and not first.media[0].object


def test_more_than_ten_attachments_are_recorded_unavailable_without_a_url():
    media = [{"url": f"https://media.telnyx.com/{i}.jpg"} for i in range(12)]
    msg = received.parse(_report("many", media=media))
    assert [a.problem for a in msg.attachments].count(None) == 10
    assert msg.attachments[-1].problem == "more than 10 attachments"


def test_a_sender_that_is_not_e164_is_stored_but_no_keyword_applies():
    leg = _leg(_report("STOP", sender=None))
    assert leg.from_ == "" and leg.status is Status.DELIVERED


def test_the_reply_goes_back_from_the_number_queued_and_free():
    parent = _leg(_report("HELP"))
    decision = inbound.decide_reply(parent, False, TENANT, at(1))
    child = decision.child
    assert child is not None and decision.parent is not None and decision.parent.reply_due is None
    assert (child.id, child.to, child.from_, child.channel) == (parent.reply_message_id, SENDER, NUMBER, "sms")
    assert child.status is Status.QUEUED and child.price_micros == 0 and child.in_reply_to == parent.id
    assert child.body == keywords.reply_text(TENANT, Kind.HELP) and decision.balance_micros is None
    # Once created, no second one: the parent is no longer due, or the child already exists.
    assert inbound.decide_reply(decision.parent, False, TENANT, at(2)).child is None
    assert inbound.decide_reply(parent, True, TENANT, at(2)).child is None


def test_opt_event_bodies_name_the_recipient_and_the_keyword():
    leg = _leg(_report("STOP"))
    event_id = notify_event_id(leg.id, "opted_out")
    body = json.loads(received.event_body(None, leg, event_id, leg.notifications[event_id]))  # type: ignore[arg-type]
    assert body["type"] == "recipient.opted_out" and body["id"] == event_id
    assert body["data"] == {"recipient": SENDER, "number": NUMBER, "opted_out": True, "source": "keyword",
                            "keyword": "STOP", "message_id": leg.id, "at": "2026-03-01T12:00:00.000Z"}


def test_a_stored_copy_missing_from_a_view_is_never_given_a_url():
    leg = _leg(_report("pic", media=[{"url": "https://media.telnyx.com/a.jpg"}]))
    leg = leg.with_(media=(StoredMedia(object="", content_type="image/jpeg", extra={"state": "unavailable"}),))
    from shared.rules.legs import view

    assert view(leg)["media"] == [{"content_type": "image/jpeg", "size": None, "status": "unavailable",
                                   "error": None, "url": None}]
