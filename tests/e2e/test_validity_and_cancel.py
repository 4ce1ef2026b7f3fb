"""Validity, delivery windows and cancel through the stack (issue 12, features 1-3).

What each test holds to (docs/decisions.md): a leg the provider does not have by the end of its validity ends
``expired``, refunded, with ``message.expired``; a leg already sent never expires; a leg due outside its
delivery window waits as ``scheduled`` for the opening; a cancel ends a leg the provider does not have yet,
refunded, with ``message.canceled``, and a cancel racing dispatch's claim never ends in both a cancel and a
provider send.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import fictional, wait_for
from tools.telnyx_sim import sign

pytestmark = pytest.mark.stack

MMS_PRICE = 20_000  # tools/admin.py seed_pricing: one US MMS
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


def _dispatch(env, message_id: str) -> httpx.Response:
    """What Cloud Tasks does: POST the leg's id to the dispatch function."""
    return httpx.post(env.stack.urls["function:dispatch"], content=json.dumps({"message_id": message_id}),
                      headers={"Content-Type": "application/json"}, timeout=30)


def _sweep_until(env, predicate, timeout: float = 30.0, message: str = "the sweeper never settled it"):
    def step():
        status, body = env.stack.sweep()
        assert status == 200, body
        return predicate()

    return wait_for(step, timeout, message)


def _events(env, message_id: str) -> list[dict]:
    events = [json.loads(r["body"]) for r in env.receiver.received if not r["failed"]]
    return [e for e in events if e["data"]["id"] == message_id]


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _past_validity(env, *message_ids: str) -> None:
    """Wait until the clock is past every leg's own ``expires_at`` (the functions share this machine's clock)."""
    ends = [dt.datetime.fromisoformat(env.message(i)["expires_at"].replace("Z", "+00:00")) for i in message_ids]
    assert ends, "no leg to wait for"
    wait_for(lambda: dt.datetime.now(dt.UTC) > max(ends), 30, "the validity never ended")


def _mms(env, to: str, **fields) -> httpx.Response:
    return env.api.post("/api/v1/messages/sms", json={"to": to, "body": "x", "media_urls": [env.sample_media_url],
                                                       "webhook_url": env.receiver.url, **fields})


# -- validity ----------------------------------------------------------------------------------------------
def _report(env, event: dict) -> httpx.Response:
    """A delivery report signed as the simulator (Telnyx) signs them."""
    raw = json.dumps(event).encode()
    ts = str(int(time.time()))
    return httpx.post(env.stack.urls["gateway"] + "/webhooks/telnyx", content=raw, timeout=10, headers={
        "Content-Type": "application/json", "telnyx-timestamp": ts,
        "telnyx-signature-ed25519": sign(env.stack.sim_private_key, ts, raw)})


def _finalized(provider_id: str, to: str, *, leg: str | None = None) -> dict:
    payload = {"record_type": "message", "direction": "outbound", "id": provider_id,
               "to": [{"phone_number": to, "status": "delivered"}], "errors": []}
    if leg:
        payload["webhook_url"] = f"https://gw.example/webhooks/telnyx?leg={leg}"
    return {"data": {"record_type": "event", "id": str(uuid.uuid4()), "event_type": "message.finalized",
                     "occurred_at": _iso(dt.datetime.now(dt.UTC)), "payload": payload}, "meta": {"attempt": 1}}


def test_a_leg_whose_task_arrives_after_its_validity_expires_unsent_refunded_and_stays_expired(env):
    to = fictional(1, "213")
    before = env.balance()
    env.stack.kill("tasks")  # the accept cannot create the leg's task: only the call below dispatches it
    try:
        response = _mms(env, to, validity_period=1)
    finally:
        env.stack.start_component("tasks")
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    assert env.balance() == before - MMS_PRICE
    _past_validity(env, message_id)

    assert _dispatch(env, message_id).json()["outcome"] == "expired"
    message = env.message(message_id)
    assert message["status"] == "expired" and message["final"] is True
    assert message["error_code"] == "VALIDITY_EXPIRED" and message["expires_at"] is not None
    assert [h["to"] for h in message["history"]] == ["pending", "queued", "expired"]
    assert env.balance() == before
    assert env.sim_messages(to) == []
    event = wait_for(lambda: _events(env, message_id), 20, "message.expired never arrived")[0]
    assert event["type"] == "message.expired" and event["data"]["error_code"] == "VALIDITY_EXPIRED"

    # The provider never had it, so no report comes (the simulator's webhook log has nothing for the number);
    # a report naming the leg anyway (forged, or a provider bug) cannot revive it.
    assert not [a for a in env.sim.get("/_sim/webhooks").json()["data"] if to in json.dumps(a)]
    assert _report(env, _finalized(str(uuid.uuid4()), to, leg=message_id)).status_code == 200
    message = env.message(message_id)
    assert message["status"] == "expired"
    assert [h["to"] for h in message["history"]] == ["pending", "queued", "expired"]
    assert _dispatch(env, message_id).json()["outcome"] == "already expired"
    assert env.balance() == before
    env.wait_until_delivered("notify")  # any event the report or the second delivery made has been sent by now
    assert [e["type"] for e in _events(env, message_id)] == ["message.expired"]


def test_the_sweeper_expires_legs_whose_task_was_lost(env):
    recipients = [fictional(2, "213"), fictional(3, "213")]
    before = env.balance()
    env.stack.kill("tasks")  # the accept cannot create the tasks: the legs wait for the sweeper
    try:
        response = env.api.post("/api/v1/messages/group", json={
            "to": recipients, "body": "x", "validity_period": 1, "webhook_url": env.receiver.url})
    finally:
        env.stack.start_component("tasks")
    assert response.status_code == 200, response.text
    ids = [m["message_id"] for m in response.json()["messages"]]
    assert env.balance() == before - 2 * MMS_PRICE
    _past_validity(env, *ids)

    _sweep_until(env, lambda: all(env.message(i)["status"] == "expired" for i in ids))
    assert env.balance() == before
    for to in recipients:
        assert env.sim_messages(to) == []
    # The sweeper sends the events too (their tasks exist now).
    _sweep_until(env, lambda: all(_events(env, i) for i in ids), message="message.expired never arrived")
    assert {e["type"] for i in ids for e in _events(env, i)} == {"message.expired"}


def test_a_sent_leg_never_expires_and_its_late_report_still_applies(env):
    """The race of a report arriving after the validity ended: the leg the provider had is not expired by the
    sweeper, and the carrier's report moves it on as usual."""
    to = fictional(99, "213")  # accepted, message.sent, never a final report
    before = env.balance()
    message_id = _mms(env, to, validity_period=3).json()["data"]["id"]
    provider_id = env.wait_status(message_id, "sent")["provider_id"]
    _past_validity(env, message_id)
    status, body = env.stack.sweep()
    assert status == 200, body
    assert env.message(message_id)["status"] == "sent"
    assert _dispatch(env, message_id).json()["outcome"] == "already sent"

    assert _report(env, _finalized(provider_id, to)).status_code == 200
    message = env.message(message_id)
    assert message["status"] == "delivered"
    assert "expired" not in [h["to"] for h in message["history"]]
    assert env.balance() == before - MMS_PRICE  # sent, so charged
    assert len(env.sim_messages(to)) == 1


# -- delivery windows ----------------------------------------------------------------------------------------
def _closed_today_window() -> tuple[dict, dt.datetime]:
    """A window open every whole day except today (UTC), and when it opens: tomorrow 00:00 UTC."""
    today = dt.datetime.now(dt.UTC)
    days = [d for i, d in enumerate(DAYS) if i != today.weekday()]
    tomorrow = dt.datetime.combine(today.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    return {"days": days, "timezone": "UTC"}, tomorrow


def test_a_leg_due_outside_its_window_waits_scheduled_and_a_dispatch_sends_nothing(env):
    window, opening = _closed_today_window()
    to = fictional(5, "213")
    response = _mms(env, to, delivery_window=window)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "scheduled"
    message_id = response.json()["data"]["id"]
    message = env.message(message_id)
    assert message["scheduled_at"] == opening.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert message["delivery_window"] == window
    # A task that arrives now (a duplicate, a redelivery) goes round again rather than sending.
    assert _dispatch(env, message_id).json()["outcome"] in ("rescheduled", "outside its delivery window")
    assert env.message(message_id)["status"] == "scheduled"
    assert env.sim_messages(to) == []


def test_a_window_in_a_named_time_zone_is_shown_as_given(env):
    window = {"days": ["MONDAY", "FRIDAY"], "from": {"hour": 9, "minute": 30}, "to": {"hour": 17, "minute": 0},
              "timezone": "America/New_York"}
    response = _mms(env, fictional(6, "213"), delivery_window=window, scheduled_at=_iso(
        dt.datetime.now(dt.UTC) + dt.timedelta(days=1)))
    assert response.status_code == 200, response.text
    assert env.message(response.json()["data"]["id"])["delivery_window"] == window


def test_a_window_that_opens_only_after_the_validity_ends_is_a_400_and_writes_nothing(env):
    window, _ = _closed_today_window()
    before = env.balance()
    response = _mms(env, fictional(7, "213"), delivery_window=window, validity_period=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["field"] == "delivery_window"
    assert env.balance() == before


def test_a_scheduled_send_that_expires_before_its_time_is_a_400(env):
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    response = _mms(env, fictional(8, "213"), scheduled_at=_iso(at), expires_at=_iso(at - dt.timedelta(minutes=1)))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["field"] == "expires_at"


NOW = dt.datetime.now(dt.UTC)
BAD_INPUT = [
    ({"validity_period": 0}, "validity_period"),
    ({"validity_period": 48 * 3600 + 1}, "validity_period"),
    ({"expires_at": _iso(NOW - dt.timedelta(minutes=1))}, "expires_at"),
    ({"expires_at": _iso(NOW + dt.timedelta(hours=49))}, "expires_at"),
    ({"validity_period": 60, "expires_at": _iso(NOW + dt.timedelta(hours=1))}, "expires_at"),
    ({"delivery_window": {"days": ["MONDAY", "HOLIDAY"]}}, "delivery_window.days.1"),
    ({"delivery_window": {"days": []}}, "delivery_window.days"),
    ({"delivery_window": {"days": ["MONDAY"], "from": {"hour": 24, "minute": 0}, "to": {"hour": 23, "minute": 0}}},
     "delivery_window.from.hour"),
    ({"delivery_window": {"days": ["MONDAY"], "from": {"hour": 9, "minute": 60}, "to": {"hour": 17, "minute": 0}}},
     "delivery_window.from.minute"),
    ({"delivery_window": {"days": ["MONDAY"], "from": {"hour": 17, "minute": 0}, "to": {"hour": 9, "minute": 0}}},
     "delivery_window.to"),
    ({"delivery_window": {"days": ["MONDAY"], "from": {"hour": 9, "minute": 0}, "to": {"hour": 9, "minute": 59}}},
     "delivery_window.to"),
    ({"delivery_window": {"days": ["MONDAY"], "from": {"hour": 9, "minute": 0}}}, "delivery_window"),
    ({"delivery_window": {"days": ["MONDAY"], "timezone": "Mars/Olympus_Mons"}}, "delivery_window.timezone"),
    ({"delivery_window": {"days": ["MONDAY"], "timezone": "../../../etc/passwd"}}, "delivery_window.timezone"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_INPUT, ids=[f for _, f in BAD_INPUT])
def test_bad_timing_input_is_a_400_naming_the_field_on_both_endpoints(env, fields, field):
    before = env.balance()
    single = _mms(env, fictional(9, "213"), **fields)
    group = env.api.post("/api/v1/messages/group", json={"to": [fictional(10, "213")], "body": "x", **fields})
    for response in (single, group):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert field in [d["field"] for d in error["details"]], error
    assert env.balance() == before


# -- cancel --------------------------------------------------------------------------------------------------
def _later(seconds: float) -> str:
    return _iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds))


def test_cancel_a_scheduled_message_refunds_it_announces_it_and_its_task_sends_nothing(env):
    to = fictional(11, "213")
    before = env.balance()
    message_id = _mms(env, to, scheduled_at=_later(3)).json()["data"]["id"]
    assert [t["due"] for t in env.queued() if t["message_id"] == message_id] == [False], "the leg's task, waiting"
    assert env.balance() == before - MMS_PRICE

    response = env.api.delete(f"/api/v1/messages/{message_id}")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["id"], data["status"], data["final"]) == (message_id, "canceled", True)
    assert env.balance() == before
    again = env.api.delete(f"/api/v1/messages/{message_id}")
    assert again.status_code == 200 and again.json()["data"]["status"] == "canceled"
    assert env.balance() == before  # refunded once

    # the leg's own task has come (at its scheduled time) and gone (answered)
    wait_for(lambda: not [t for t in env.queued() if t["message_id"] == message_id], 20, "the leg's task stayed")
    assert _dispatch(env, message_id).json()["outcome"] == "already canceled"
    assert env.sim_messages(to) == []
    message = env.message(message_id)
    assert [h["to"] for h in message["history"]] == ["pending", "scheduled", "canceled"]
    events = wait_for(lambda: _events(env, message_id), 20, "message.canceled never arrived")
    assert [e["type"] for e in events] == ["message.canceled"]


def test_a_message_the_provider_has_is_not_cancelable(env):
    message_id = _mms(env, fictional(12, "213")).json()["data"]["id"]
    env.wait_status(message_id, "delivered")
    response = env.api.delete(f"/api/v1/messages/{message_id}")
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "NOT_CANCELABLE" and error["details"] == [{"field": "status", "issue": "delivered"}]
    assert env.message(message_id)["status"] == "delivered"


def test_another_tenants_message_or_group_is_404_and_stays_as_it_was(env):
    response = env.api.post("/api/v1/messages/group", json={"to": [fictional(13, "213")], "body": "x",
                                                             "scheduled_at": _later(3600)})
    group_id = response.json()["group_id"]
    message_id = response.json()["messages"][0]["message_id"]
    _, other_key = env.new_tenant()
    with env.client(other_key) as other:
        assert other.delete(f"/api/v1/messages/{message_id}").status_code == 404
        assert other.delete(f"/api/v1/messages/group/{group_id}").status_code == 404
    assert env.api.delete("/api/v1/messages/msg_doesnotexist").status_code == 404
    assert env.api.delete("/api/v1/messages/group/grp_doesnotexist").status_code == 404
    assert env.message(message_id)["status"] == "scheduled"
    refused = env.api.delete("/api/v1/pricing/messaging")
    assert refused.status_code == 405 and refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_cancel_a_group_answers_per_leg(env):
    before = env.balance()
    response = env.api.post("/api/v1/messages/group", json={
        "to": [fictional(14, "213"), fictional(15, "213"), "+442071838750"], "body": "x",
        "scheduled_at": _later(3600), "webhook_url": env.receiver.url})
    assert response.status_code == 207, response.text
    group_id = response.json()["group_id"]
    ids = [m["message_id"] for m in response.json()["messages"]]

    answer = env.api.delete(f"/api/v1/messages/group/{group_id}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["group_id"] == group_id
    assert [(m["message_id"], m["status"], m["canceled"]) for m in body["messages"]] == [
        (ids[0], "canceled", True), (ids[1], "canceled", True), (ids[2], "failed", False)]
    assert body["messages"][2]["error_code"] == "NOT_CANCELABLE"
    assert body["summary"] == {"total": 3, "canceled": 2, "not_cancelable": 1}
    assert env.balance() == before
    read = env.api.get(f"/api/v1/messages/group/{group_id}").json()["data"]
    assert read["summary"]["by_status"] == {"canceled": 2, "failed": 1}


def test_cancel_racing_dispatch_never_both_cancels_and_sends(env):
    """Many legs, each canceled the moment it is accepted while its own task and an extra dispatch call race
    for it: for each leg exactly one side wins. A 200 cancel means no provider send and a refund; a 409 means
    one provider send and a charge."""
    before = env.balance()
    outcomes: dict[str, tuple[str, int]] = {}  # message id -> (recipient, cancel status)
    lock = threading.Lock()
    with ThreadPoolExecutor(10) as pool, ThreadPoolExecutor(10) as cancels:
        for npa in ("212", "312", "617", "702", "206", "404"):  # a fresh set of recipients each round
            recipients = [fictional(xx, npa) for xx in range(10)]
            response = env.api.post("/api/v1/messages/group", json={"to": recipients, "body": "race"})
            assert response.status_code == 200, response.text

            def race(item):
                cancel = cancels.submit(env.api.delete, f"/api/v1/messages/{item['message_id']}")
                _dispatch(env, item["message_id"])
                with lock:
                    outcomes[item["message_id"]] = (item["to"], cancel.result().status_code)

            list(pool.map(race, response.json()["messages"]))

    assert len(outcomes) == 6 * 10  # every leg raced
    statuses = {code for _, code in outcomes.values()}
    assert statuses <= {200, 409}, statuses
    for message_id, (to, code) in outcomes.items():
        final = env.wait_status(message_id, {"canceled", "delivered"})
        sends = env.sim_messages(to)
        if code == 200:
            assert final["status"] == "canceled" and sends == [], (message_id, final["status"], sends)
        else:
            assert final["status"] == "delivered" and len(sends) == 1, (message_id, final["status"], sends)
    sent = sum(code == 409 for _, code in outcomes.values())
    assert env.balance() == before - sent * MMS_PRICE
