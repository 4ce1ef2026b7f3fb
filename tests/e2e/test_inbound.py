"""Two-way messaging through the stack: a handset texts the tenant's number at the simulator (``POST
/_sim/inbound``), the simulator delivers a signed ``message.received`` to the gateway, and mmsgate stores the
message with copies of its media, applies and answers its keyword, and tells the customer."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid

import httpx
import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C
from shared.carriers.signatures import tenant_secret, verify_webhook
from shared.services import received
from tests.conftest import fictional, wait_for
from tools.seed import DEV_SENDER, sample_png
from tools.telnyx_sim import sign

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack

PNG = sample_png(40, 30)


def _hooked(env, **tenant) -> None:
    """The dev tenant's default webhook is the test receiver (plus any other tenant setting)."""
    env.store.accounts.put_tenant(env.tenant_id, {"webhook_url": env.receiver.url, **tenant})


def _inject(env, text: str | None, *, sender: str, to: str = DEV_SENDER, media: list | None = None,
            ttl_ms: int | None = None) -> dict:
    body: dict = {"from": sender, "to": to, "text": text, "media": media or []}
    if ttl_ms is not None:
        body["media_ttl_ms"] = ttl_ms
    response = env.sim.post("/_sim/inbound", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _png(content_type: str = "image/png") -> dict:
    return {"content_type": content_type, "data_base64": base64.b64encode(PNG).decode()}


def _message_id(injected: dict) -> str:
    return received.message_id(injected["id"])  # Telnyx's message id names our row


def _stored(env, injected: dict) -> dict:
    message_id = _message_id(injected)

    def read():
        response = env.api.get(f"/api/v1/messages/{message_id}")
        return response.status_code == 200 and response.json()["data"]

    return wait_for(read, 20, f"inbound {message_id} stored")


def _events(env, type_: str | None = None) -> list[dict]:
    events = [json.loads(r["body"]) | {"_headers": r["headers"]} for r in list(env.receiver.received)
              if not r["failed"]]
    return [e for e in events if type_ is None or e["type"] == type_]


def _event(env, type_: str, message_id: str, timeout: float = 20) -> dict:
    def found():
        return next((e for e in _events(env, type_) if e["data"].get("id") == message_id
                     or e["data"].get("message_id") == message_id), None)

    return wait_for(found, timeout, f"{type_} for {message_id}")


def _webhook_answers(env, message: dict) -> list[dict]:
    """The simulator's deliveries of an inbound message's event that got an answer."""
    log = env.sim.get("/_sim/webhooks", params={"event_type": "message.received"}).json()["data"]
    return [e for e in log if e["message_id"] == message["id"] and e["status"] is not None]


def _delivered(env, message: dict, times: int) -> list[dict]:
    return wait_for(lambda: len(answers := _webhook_answers(env, message)) >= times and answers, 20,
                    f"{times} deliveries of {message['id']}")


def _replies(env, inbound_id: str) -> list[dict]:
    query = env.store.db.collection(C.MESSAGES).where(filter=FieldFilter("in_reply_to", "==", inbound_id))
    return [snap.to_dict() for snap in query.stream()]


def _inbound_rows(env, sender: str) -> list[dict]:
    query = env.store.db.collection(C.MESSAGES).where(filter=FieldFilter("from", "==", sender))
    return [doc for snap in query.stream() if (doc := snap.to_dict()).get("direction") == "inbound"]


# -- receiving ---------------------------------------------------------------------------------------------
def test_an_inbound_mms_is_stored_with_our_copy_of_its_media_and_announced(env):
    _hooked(env)
    sender = fictional(41)
    injected = _inject(env, "look at this", sender=sender, media=[_png()], ttl_ms=4000)
    sim_url = injected["media"][0]["url"]

    event = _event(env, "message.received", _message_id(injected))
    data = event["data"]
    assert (data["direction"], data["from"], data["to"], data["body"], data["channel"], data["status"]) == (
        "inbound", sender, DEV_SENDER, "look at this", "mms", "delivered")
    assert data["provider_id"] == injected["id"]
    [attachment] = data["media"]
    assert (attachment["status"], attachment["content_type"], attachment["size"]) == ("stored", "image/png",
                                                                                      len(PNG))
    assert attachment["url"] and attachment["url"] != sim_url
    secret = tenant_secret(env.stack.function_env()["WEBHOOK_SIGNING_KEY"], env.tenant_id)
    raw = next(r["body"] for r in env.receiver.received if json.loads(r["body"])["id"] == event["id"])
    verify_webhook(secret, raw, event["_headers"])  # raises if the signature does not verify
    assert httpx.get(attachment["url"]).content == PNG

    # Telnyx's link stops working; ours does not (the copy was made at once).
    wait_for(lambda: httpx.get(sim_url).status_code == 404, 15, "the simulator's media link to expire")
    read = _stored(env, injected)
    assert read["media"][0]["status"] == "stored" and httpx.get(read["media"][0]["url"]).content == PNG
    assert _replies(env, read["id"]) == []  # an ordinary message is not answered


def test_an_inbound_sms_with_no_customer_webhook_is_still_stored(env):
    injected = _inject(env, "hello", sender=fictional(42))
    read = _stored(env, injected)
    assert (read["direction"], read["channel"], read["body"], read["notifications"]) == ("inbound", "sms", "hello",
                                                                                          [])
    found = env.api.get("/api/v1/messages", params={"direction": "inbound"})
    assert [m["id"] for m in found.json()["data"]] == [read["id"]], found.text


def test_the_message_list_signs_inbound_media_as_the_single_read_does(env):
    injected = _inject(env, "in the list", sender=fictional(43), media=[_png()])
    read = _stored(env, injected)
    wait_for(lambda: env.api.get(f"/api/v1/messages/{read['id']}").json()["data"]["media"][0]["status"] == "stored",
             20, "the inbound copy stored")
    found = env.api.get("/api/v1/messages", params={"direction": "inbound"})
    assert found.status_code == 200, found.text
    [listed] = [m for m in found.json()["data"] if m["id"] == read["id"]]
    [attachment] = listed["media"]
    assert attachment["status"] == "stored" and attachment["url"], listed
    assert httpx.get(attachment["url"]).content == PNG


def test_a_replayed_event_stores_nothing_twice_and_announces_once(env):
    _hooked(env)
    sender = fictional(43)
    injected = _inject(env, "once", sender=sender, media=[_png()])
    first = _event(env, "message.received", _message_id(injected))
    for _ in range(2):
        env.sim.post("/_sim/inbound/redeliver", json={"event_id": injected["event_id"]}).raise_for_status()
    answers = _delivered(env, injected, 3)

    assert {a["status"] for a in answers} == {200}
    assert len(_inbound_rows(env, sender)) == 1
    env.stack.sweep()
    received_ids = {e["id"] for e in _events(env, "message.received") if e["data"]["from"] == sender}
    assert received_ids == {first["id"]}


def test_a_message_to_a_number_no_tenant_owns_is_acknowledged_and_kept_for_the_operator(env):
    sender = fictional(44)
    injected = _inject(env, "who is this", sender=sender, to="+18005559876")
    [answer] = _delivered(env, injected, 1)

    assert answer["status"] == 200
    assert _inbound_rows(env, sender) == []
    record = env.store.db.collection(C.PROVIDER_EVENTS).document(injected["event_id"]).get().to_dict()
    assert record["outcome"] == "unknown number" and record["to"] == ["+18005559876"]


# -- keywords ----------------------------------------------------------------------------------------------
def test_stop_opts_out_confirms_once_and_later_sends_fail(env):
    _hooked(env)
    sender = fictional(45)
    injected = _inject(env, " Stop ", sender=sender)
    inbound = _stored(env, injected)
    assert inbound["keyword"] == "STOP"

    opted = _event(env, "recipient.opted_out", inbound["id"])
    assert opted["data"] | {"at": None} == {"recipient": sender, "number": DEV_SENDER, "opted_out": True,
                                            "source": "keyword", "keyword": "STOP", "message_id": inbound["id"],
                                            "at": None}
    entry = env.api.get(f"/api/v1/opt-outs/{sender}").json()["data"]
    assert (entry["source"], entry["keyword"], entry["message_id"]) == ("keyword", "STOP", inbound["id"])

    [reply] = wait_for(lambda: env.sim_messages(to=sender), 20, "the confirmation at the simulator")
    assert reply["from"] == DEV_SENDER and "unsubscribed" in reply["text"] and reply["text"].startswith("dev:")
    reply_id = inbound["reply_message_id"]
    confirmed = env.wait_status(reply_id, "delivered")
    assert (confirmed["in_reply_to"], confirmed["price"]["amount"]) == (inbound["id"], "0.0000")

    # Telnyx retries the event: nothing is stored, changed or answered again.
    env.sim.post("/_sim/inbound/redeliver", json={"event_id": injected["event_id"]}).raise_for_status()
    _delivered(env, injected, 2)
    assert len(_replies(env, inbound["id"])) == 1
    assert len(env.sim_messages(to=sender)) == 1
    assert len([e for e in _events(env, "recipient.opted_out") if e["data"]["recipient"] == sender]) == 1

    blocked = env.api.post("/api/v1/messages/sms", json={"to": sender, "body": "one more offer"})
    assert (blocked.status_code, blocked.json()["error"]["code"]) == (403, "RECIPIENT_OPTED_OUT")


def test_help_gets_one_help_reply_and_changes_nothing(env):
    env.store.accounts.put_tenant(env.tenant_id, {"help_contact": "help@dev.example"})
    sender = fictional(46)
    injected = _inject(env, "HELP", sender=sender)
    inbound = _stored(env, injected)

    [reply] = wait_for(lambda: env.sim_messages(to=sender), 20, "the help reply")
    assert "help@dev.example" in reply["text"] and "Msg&data rates may apply" in reply["text"]
    assert "Reply STOP to opt out" in reply["text"]
    assert env.api.get(f"/api/v1/opt-outs/{sender}").status_code == 404
    env.sim.post("/_sim/inbound/redeliver", json={"event_id": injected["event_id"]}).raise_for_status()
    _delivered(env, injected, 2)
    assert len(_replies(env, inbound["id"])) == 1


def test_start_after_stop_opts_back_in_and_sends_go_through_again(env):
    _hooked(env)
    sender = fictional(47)
    stop = _stored(env, _inject(env, "STOP", sender=sender))
    assert env.api.get(f"/api/v1/opt-outs/{sender}").status_code == 200
    start = _stored(env, _inject(env, "start", sender=sender))

    opted_in = _event(env, "recipient.opted_in", start["id"])
    assert (opted_in["data"]["recipient"], opted_in["data"]["opted_out"]) == (sender, False)
    assert env.api.get(f"/api/v1/opt-outs/{sender}").status_code == 404
    texts = wait_for(lambda: len(m := env.sim_messages(to=sender)) == 2 and [x["text"] for x in m], 20,
                     "both confirmations")
    assert any("resubscribed" in t for t in texts) and any("unsubscribed" in t for t in texts)
    assert stop["reply_message_id"] != start["reply_message_id"]
    sent = env.api.post("/api/v1/messages/sms", json={"to": sender, "body": "welcome back"})
    assert sent.status_code == 200, sent.text


def test_yes_opts_in_only_a_sender_who_opted_out(env):
    sender = fictional(48)
    chat = _stored(env, _inject(env, "yes", sender=sender))
    assert chat["keyword"] is None and chat["reply_message_id"] is None
    _stored(env, _inject(env, "STOP", sender=sender))
    again = _stored(env, _inject(env, "Yes", sender=sender))
    assert again["keyword"] == "YES"
    assert env.api.get(f"/api/v1/opt-outs/{sender}").status_code == 404


@pytest.mark.parametrize("setting", ["provider", "off"])
def test_when_telnyx_or_nobody_answers_keywords_mmsgate_sends_no_reply(env, setting):
    env.store.accounts.put_tenant(env.tenant_id, {"keyword_replies": setting})
    sender = fictional(49)
    inbound = _stored(env, _inject(env, "STOP", sender=sender))

    assert inbound["reply_message_id"] is None and _replies(env, inbound["id"]) == []
    assert env.api.get(f"/api/v1/opt-outs/{sender}").json()["data"]["source"] == "keyword"
    assert env.sim_messages(to=sender) == []


# -- bad input ---------------------------------------------------------------------------------------------
def test_media_that_cannot_be_copied_is_marked_unavailable_and_the_message_kept(env):
    _hooked(env)
    too_large = b"%PDF-1.4\n" + b"0" * (1_100_000)
    injected = _inject(env, "mixed", sender=fictional(50), ttl_ms=60_000, media=[
        {"url": "https://169.254.169.254/computeMetadata/v1/", "content_type": "image/png"},
        {"content_type": "application/zip", "data_base64": base64.b64encode(b"PK\x03\x04" + b"z" * 200).decode()},
        {"content_type": "application/pdf", "data_base64": base64.b64encode(too_large).decode()},
        _png(),
    ])
    event = _event(env, "message.received", _message_id(injected), timeout=30)
    media = event["data"]["media"]

    assert [m["status"] for m in media] == ["unavailable", "unavailable", "unavailable", "stored"]
    assert media[0]["error"].startswith("MEDIA_URL_REJECTED")
    assert media[1]["error"].startswith("MEDIA_TYPE_UNSUPPORTED")
    assert media[2]["error"].startswith("MEDIA_TOO_LARGE")
    assert [m["url"] is None for m in media] == [True, True, True, False]
    assert {a["status"] for a in _webhook_answers(env, injected)} == {200}
    # An inbound message is final: it can be redacted, copies and all.
    redacted = env.api.post(f"/api/v1/messages/{event['data']['id']}/redact")
    assert redacted.status_code == 200, redacted.text
    assert (redacted.json()["data"]["body"], redacted.json()["data"]["media"]) == (None, [])
    assert httpx.get(media[3]["url"]).status_code != 200


def test_media_whose_link_already_expired_is_unavailable(env):
    injected = _inject(env, "late", sender=fictional(51), media=[_png()], ttl_ms=0)
    read = wait_for(lambda: (m := _stored(env, injected))["media"][0]["status"] != "pending" and m, 30,
                    "the copy attempt")
    assert read["media"][0]["status"] == "unavailable" and "MEDIA_FETCH_FAILED" in read["media"][0]["error"]


def _post_signed(env, payload: dict) -> httpx.Response:
    event = {"data": {"record_type": "event", "id": str(uuid.uuid4()), "event_type": "message.received",
                      "occurred_at": dt.datetime.now(dt.UTC).isoformat(), "payload": payload},
             "meta": {"attempt": 1, "delivered_to": "test"}}
    body = json.dumps(event).encode()
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "telnyx-timestamp": ts,
               "telnyx-signature-ed25519": sign(env.stack.sim_private_key, ts, body)}
    return env.sim.post(env.stack.urls["gateway"] + "/webhooks/telnyx", content=body, headers=headers)


def test_events_with_missing_or_odd_fields_are_acknowledged_never_a_5xx(env):
    number = [{"phone_number": DEV_SENDER, "status": "webhook_delivered"}]
    no_sender = _post_signed(env, {"id": "in-nofrom-1", "text": "who am i", "to": number})
    no_recipient = _post_signed(env, {"id": "in-noto-1", "text": "to whom", "from": {"phone_number": fictional(52)}})
    odd_media = _post_signed(env, {"id": "in-odd-1", "text": "odd", "to": number,
                                   "from": {"phone_number": fictional(53)}, "media": "not a list", "cc": "nope"})
    bad_entries = _post_signed(env, {"id": "in-bad-1", "to": number, "from": {"phone_number": fictional(54)},
                                     "media": [7, {"url": 5}, {"url": "x" * 5000}]})

    assert [r.status_code for r in (no_sender, no_recipient, odd_media, bad_entries)] == [200, 200, 200, 200]
    assert no_recipient.json()["outcome"] == "no recipient number"
    stored = env.message(received.message_id("in-nofrom-1"))
    assert (stored["from"], stored["body"], stored["keyword"]) == ("", "who am i", None)
    assert env.message(received.message_id("in-odd-1"))["media"] == []
    assert [m["status"] for m in env.message(received.message_id("in-bad-1"))["media"]] == ["unavailable"] * 3


# -- killed mid-way ----------------------------------------------------------------------------------------
def _signed_stop(env, sender: str) -> tuple[bytes, str, str]:
    event = {"data": {"record_type": "event", "id": str(uuid.uuid4()), "event_type": "message.received",
                      "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                      "payload": {"id": f"in-{uuid.uuid4()}", "direction": "inbound", "text": "STOP",
                                  "from": {"phone_number": sender},
                                  "to": [{"phone_number": DEV_SENDER, "status": "webhook_delivered"}]}}}
    body = json.dumps(event).encode()
    ts = str(int(time.time()))
    return body, ts, sign(env.stack.sim_private_key, ts, body)


def test_a_webhook_that_dies_after_storing_still_gets_exactly_one_reply_out(env, monkeypatch):
    from infra.runtime import Runtime
    from shared.services import reports

    sender = fictional(55)
    body, ts, signature = _signed_stop(env, sender)
    rt = Runtime()
    legs = rt.store.legs

    def dies(*args, **kwargs):
        raise RuntimeError("instance killed before the reply")

    monkeypatch.setattr(legs, "spawn", dies)
    outcome = reports.ingest(rt, body, ts, signature)  # stored, opted out; the reply left to the inbound task
    monkeypatch.undo()
    assert outcome == {"outcome": "opted out"}

    wait_for(lambda: env.sim_messages(to=sender), 30, "the reply, sent by the inbound task")
    replay = env.sim.post(env.stack.urls["gateway"] + "/webhooks/telnyx", content=body,
                          headers={"Content-Type": "application/json", "telnyx-timestamp": ts,
                                   "telnyx-signature-ed25519": signature})
    assert replay.json() == {"outcome": "duplicate"}
    inbound_id = received.message_id(json.loads(body)["data"]["payload"]["id"])
    assert len(_replies(env, inbound_id)) == 1 and len(env.sim_messages(to=sender)) == 1


def test_a_webhook_that_cannot_queue_its_task_answers_500_and_telnyx_retry_finishes(env, monkeypatch):
    from infra.runtime import Runtime
    from shared.rules.errors import ApiError
    from shared.services import reports

    sender = fictional(56)
    body, ts, signature = _signed_stop(env, sender)
    rt = Runtime()

    def refuse(*args, **kwargs):
        raise RuntimeError("Cloud Tasks unavailable")

    monkeypatch.setattr(rt.store.legs, "spawn", refuse)
    monkeypatch.setattr(rt.queue, "enqueue_inbound", refuse)
    with pytest.raises(ApiError) as refused:
        reports.ingest(rt, body, ts, signature)
    assert refused.value.status == 500
    monkeypatch.undo()

    retry = env.sim.post(env.stack.urls["gateway"] + "/webhooks/telnyx", content=body,
                         headers={"Content-Type": "application/json", "telnyx-timestamp": ts,
                                  "telnyx-signature-ed25519": signature})
    assert retry.status_code == 200 and retry.json() == {"outcome": "duplicate"}
    [reply] = wait_for(lambda: env.sim_messages(to=sender), 30, "the reply, sent by the retry")
    assert "unsubscribed" in reply["text"]
    assert env.api.get(f"/api/v1/opt-outs/{sender}").json()["data"]["source"] == "keyword"
