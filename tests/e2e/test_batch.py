"""POST /api/v1/messages/batch through the stack: 202 at once, rows written by chunk tasks, the legs spread by
the speed limit, searchable by batch, progress by status, cancel mid-way (the rest canceled and refunded), a
chunk task delivered again writing nothing twice, and bad input refused with nothing written."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import httpx
import pytest

from tests.conftest import wait_for
from tools.batch_demo import deliverable_numbers

pytestmark = pytest.mark.stack

numbers = deliverable_numbers  # n distinct numbers the simulator delivers


def progress(env, batch_id: str) -> dict:
    response = env.api.get(f"/api/v1/batches/{batch_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def search(env_or_client, **params) -> list[dict]:
    client = getattr(env_or_client, "api", env_or_client)
    rows, cursor = [], None
    while True:
        response = client.get("/api/v1/messages", params={**params, "limit": 100, **({"cursor": cursor} if cursor
                                                                                      else {})})
        assert response.status_code == 200, response.text
        rows += response.json()["data"]
        cursor = response.json()["pagination"]["next_cursor"]
        if cursor is None:
            return rows


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_paced_batch_is_spread_delivered_once_each_and_searchable(env):
    before = env.balance()
    to = numbers(40)
    response = env.api.post("/api/v1/messages/batch", json={
        "recipients": [{"to": n, "client_ref": f"r{i}"} for i, n in enumerate(to)] + [{"to": "+1415555"}],
        "body": "paced", "sending_speed": {"amount": 600, "time_unit": "minute"}, "campaign_ref": "winter"})
    assert response.status_code == 202, response.text
    batch = response.json()["data"]
    assert (batch["total"], batch["accepted"], batch["rejected"], batch["campaign_ref"]) == (41, 40, 1, "winter")
    assert batch["batch_id"] == batch["id"] and batch["id"].startswith("bat_")
    price = int(round(float(batch["reserved"]["amount"]) * 1_000_000)) // 40
    assert price > 0 and env.balance() == before - 40 * price  # reserved at accept, before any row exists
    # 40 at 600 a minute: the last one's turn is 3.9 s after the first's
    assert _parse(batch["last_dispatch_at"]) - _parse(batch["first_dispatch_at"]) == dt.timedelta(seconds=3.9)

    done = wait_for(lambda: (p := progress(env, batch["id"]))["status"] == "completed" and p, 60,
                    "the batch never completed")
    assert done["progress"]["final"] == 41
    assert done["progress"]["by_status"] == {"delivered": 40, "failed": 1}
    rows = search(env, batch_id=batch["id"])
    assert sorted(r["to"] for r in rows if r["status"] == "delivered") == sorted(to)
    assert {r["client_ref"] for r in rows if r["to"] in to} == {f"r{i}" for i in range(40)}
    assert {r["batch_id"] for r in rows} == {batch["id"]}
    (bad,) = search(env, batch_id=batch["id"], status="failed")
    assert bad["error_code"] == "INVALID_PHONE_NUMBER" and bad["to"] == "+1415555"
    # one provider send per recipient, handed over in the order and at the pace asked
    sent = [m for m in env.sim_messages() if m["to"] in to]
    assert len(sent) == 40 and len({m["to"] for m in sent}) == 40
    by_to = {r["to"]: r for r in rows}
    turns = sorted(_parse(by_to[n]["scheduled_at"]) for n in to if by_to[n]["scheduled_at"])
    assert turns and all(b - a == dt.timedelta(milliseconds=100) for a, b in zip(turns, turns[1:], strict=False))
    assert env.balance() == before - 40 * price  # charged once each, nothing refunded


def test_a_batch_canceled_mid_way_cancels_and_refunds_the_rest(env):
    before = env.balance()
    to = numbers(30)
    response = env.api.post("/api/v1/messages/batch", json={
        "to": to, "body": "slow", "sending_speed": {"amount": 120, "time_unit": "minute"}})  # one every 0.5 s
    assert response.status_code == 202, response.text
    batch_id = response.json()["data"]["id"]
    price = int(round(float(response.json()["data"]["reserved"]["amount"]) * 1_000_000)) // 30
    wait_for(lambda: progress(env, batch_id)["progress"]["by_status"].get("delivered", 0) >= 3, 20,
             "nothing was delivered")
    canceled = env.api.delete(f"/api/v1/batches/{batch_id}")
    assert canceled.status_code == 202, canceled.text
    assert canceled.json()["data"]["status"] == "canceled"
    settled = wait_for(lambda: (p := progress(env, batch_id))["progress"]["final"] == 30 and p, 20,
                       "the canceled batch never settled")
    counts = settled["progress"]["by_status"]
    sent = counts.get("delivered", 0)
    assert settled["status"] == "canceled"
    assert counts.get("canceled", 0) >= 10 and sent >= 3 and sent + counts["canceled"] == 30
    assert len([m for m in env.sim_messages() if m["to"] in to]) == sent
    assert env.balance() == before - sent * price  # every canceled leg refunded, exactly
    again = env.api.delete(f"/api/v1/batches/{batch_id}")
    assert again.status_code == 202 and again.json()["data"]["canceled_at"] == canceled.json()["data"]["canceled_at"]
    assert env.balance() == before - sent * price


def test_a_chunk_task_delivered_again_writes_and_sends_nothing_twice(env):
    response = env.api.post("/api/v1/messages/batch", json={"to": numbers(5), "body": "twice"})
    assert response.status_code == 202, response.text
    batch_id = response.json()["data"]["id"]
    wait_for(lambda: progress(env, batch_id)["status"] == "completed", 20, "the batch never completed")
    balance, sends = env.balance(), len(env.sim_messages())
    redelivered = httpx.post(env.stack.function_env()["DISPATCH_URL"],
                             json={"batch_chunk": {"batch_id": batch_id, "index": 0}}, timeout=30)
    assert redelivered.status_code == 200, redelivered.text
    assert progress(env, batch_id)["progress"]["by_status"] == {"delivered": 5}
    assert (env.balance(), len(env.sim_messages())) == (balance, sends)
    finished = env.api.delete(f"/api/v1/batches/{batch_id}")  # nothing left to cancel
    assert finished.status_code == 409 and finished.json()["error"]["code"] == "NOT_CANCELABLE"
    assert progress(env, batch_id)["status"] == "completed"


def _refused(env, body: dict, status: int, code: str) -> dict:
    response = env.api.post("/api/v1/messages/batch", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return response.json()["error"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"to": numbers(1) * 10_001, "body": "x"}, 400, "VALIDATION_ERROR"),  # 10,001 recipients
    ({"to": [numbers(2)[0], numbers(2)[1], numbers(2)[0]], "body": "x"}, 400, "DUPLICATE_RECIPIENTS"),
    ({"to": numbers(2), "body": "x", "sending_speed": {"amount": 0, "time_unit": "minute"}}, 400, "VALIDATION_ERROR"),
    ({"to": numbers(2), "body": "x", "sending_speed": {"amount": 5, "time_unit": "week"}}, 400, "VALIDATION_ERROR"),
    ({"to": numbers(2), "recipients": [{"to": numbers(3)[2]}], "body": "x"}, 400, "VALIDATION_ERROR"),
    ({"to": numbers(2), "body": "x", "sending_speed": {"amount": 1, "time_unit": "day"},
      "expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()}, 400, "VALIDATION_ERROR"),
])
def test_bad_batches_are_refused_with_nothing_written(env, body, status, code):
    before = env.balance()
    _refused(env, body, status, code)
    assert env.balance() == before
    assert search(env, direction="outbound") == []


def test_a_batch_the_balance_cannot_cover_is_402_and_writes_nothing(env):
    tenant_id, key = env.new_tenant(balance_micros=10)
    with env.client(key) as poor:
        response = poor.post("/api/v1/messages/batch", json={"to": numbers(3), "body": "x"})
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
        assert poor.get("/api/v1/messages").json()["data"] == []
    assert env.balance(tenant_id) == 10


def test_a_batch_is_its_tenants_alone(env):
    response = env.api.post("/api/v1/messages/batch", json={"to": numbers(2), "body": "mine",
                                                            "scheduled_at": (dt.datetime.now(dt.UTC)
                                                                             + dt.timedelta(days=1)).isoformat()})
    assert response.status_code == 202, response.text
    batch_id = response.json()["data"]["id"]
    _, other_key = env.new_tenant()
    with env.client(other_key) as other:
        for method in ("GET", "DELETE"):
            foreign = other.request(method, f"/api/v1/batches/{batch_id}")
            assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "NOT_FOUND"
        assert other.get("/api/v1/messages", params={"batch_id": batch_id}).json()["data"] == []
    assert env.api.get("/api/v1/batches/bat_unknown").status_code == 404
    assert progress(env, batch_id)["status"] == "accepted"  # the other tenant's DELETE changed nothing
    wait_for(lambda: progress(env, batch_id)["progress"]["by_status"] == {"scheduled": 2}, 15, "rows not written")
    assert env.api.delete(f"/api/v1/batches/{batch_id}").status_code == 202
    wait_for(lambda: progress(env, batch_id)["progress"]["by_status"] == {"canceled": 2}, 15, "not canceled")


def test_a_batch_survives_dispatch_and_the_task_queue_killed_mid_fan_out(env):
    """Two chunks (400 + 20). Dispatch is killed while it writes them, then the tasks emulator (every task it
    held is lost); both come back and the sweeper finds the chunks with work left. Every recipient ends in one
    row with one terminal status, sent once, charged once."""
    tenant_id, key = env.new_tenant(balance_micros=100_000_000, rps=100)
    to = numbers(420)
    with env.client(key) as client:
        response = client.post("/api/v1/messages/batch", json={"to": to, "body": "faults"})
        assert response.status_code == 202, response.text
        batch = response.json()["data"]
        price = int(round(float(batch["reserved"]["amount"]) * 1_000_000)) // 420
        env.stack.kill("dispatch")
        env.stack.kill("tasks")
        env.stack.start_component("tasks")
        env.stack.start_component("dispatch")

        def settled() -> dict | None:
            assert env.stack.sweep()[0] == 200
            response = client.get(f"/api/v1/batches/{batch['id']}")
            assert response.status_code == 200, response.text
            data = response.json()["data"]
            return data if data["progress"]["final"] == 420 else None

        done = wait_for(settled, 180, "the batch never settled")
        rows = search(client, batch_id=batch["id"])
    assert sorted(r["to"] for r in rows) == sorted(to)  # one row each, none missing
    sent = Counter(m["to"] for m in env.sim_messages() if m["to"] in set(to))
    charged = [r for r in rows if r["status"] in ("delivered", "sent", "undelivered")]
    assert charged, "not one leg was sent"
    assert all(sent[r["to"]] == 1 for r in charged) and sum(sent.values()) == len(charged)
    # a leg whose send could not be confirmed either way ends failed and refunded; none is lost
    assert {r["status"] for r in rows} <= {"delivered", "sent", "failed"}
    assert all(r["error_code"] == "PROVIDER_OUTCOME_UNKNOWN" for r in rows if r["status"] == "failed")
    assert env.balance(tenant_id) == 100_000_000 - len(charged) * price
    assert done["progress"]["by_status"].get("delivered", 0) == len([r for r in charged if r["status"] == "delivered"])
