"""Idempotency keys, rate limits and balance under concurrent requests."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from infra import collections as C
from tests.conftest import fictional

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def _legs(env) -> list[dict]:
    return [snap.to_dict() for snap in env.store.db.collection(C.MESSAGES).stream()]


def test_same_key_and_body_replays_the_first_answer(env):
    body = {"to": [fictional(1), fictional(2)], "body": "once"}
    headers = {"Idempotency-Key": "order-1001"}
    first = env.api.post("/api/v1/messages/group", json=body, headers=headers)
    second = env.api.post("/api/v1/messages/group", json=body, headers=headers)

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(_legs(env)) == 2


def test_same_key_with_another_body_is_422(env):
    env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "a"}, headers={"Idempotency-Key": "k1"})
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "b"},
                            headers={"Idempotency-Key": "k1"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_a_replayed_failure_is_the_same_failure(env):
    headers = {"Idempotency-Key": "bad-number"}
    first = env.api.post("/api/v1/messages/sms", json={"to": "+1415", "body": "a"}, headers=headers)
    second = env.api.post("/api/v1/messages/sms", json={"to": "+1415", "body": "a"}, headers=headers)
    assert first.status_code == second.status_code == 400
    assert first.json() == second.json()
    assert len(_legs(env)) == 1


def test_key_length_is_checked(env):
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "a"},
                            headers={"Idempotency-Key": "k" * 256})
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_INVALID"


def test_records_carry_a_ttl_field(env):
    env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "a"}, headers={"Idempotency-Key": "ttl"})
    records = [snap.to_dict() for snap in env.store.db.collection(C.IDEMPOTENCY).stream()]
    assert len(records) == 1
    assert (records[0]["expires_at"] - records[0]["created_at"]).total_seconds() == 24 * 3600


def test_fifty_concurrent_requests_with_one_key_make_one_set_of_legs(env):
    body = {"to": [fictional(1), fictional(2), fictional(3)], "body": "race"}

    def call(_):
        return env.client(env.api_key).post("/api/v1/messages/group", json=body, headers={"Idempotency-Key": "race-1"})

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(call, range(50)))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 409}, statuses
    assert statuses.count(200) >= 1
    assert all(r.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE" and r.headers["Retry-After"]
               for r in responses if r.status_code == 409)
    assert len({r.json()["group_id"] for r in responses if r.status_code == 200}) == 1
    assert len(_legs(env)) == 3
    for to in body["to"]:
        assert len(env.sim_messages(to)) <= 1


def test_forty_concurrent_group_requests_in_a_minute_accept_exactly_thirty(env):
    # The limit's windows are calendar minutes. A burst that straddles two may admit up to 30 in each (right, but
    # not what this test checks): the clock before and after the burst tells, and then the burst is made again by
    # a fresh tenant (fresh windows), now at the start of a minute, instead of sleeping until one begins.
    for _ in range(3):
        _, api_key = env.new_tenant()

        def call(i, api_key=api_key):
            return env.client(api_key).post("/api/v1/messages/group", json={"to": [fictional(i % 80)], "body": "x"})

        minute = int(time.time() // 60)
        with ThreadPoolExecutor(40) as pool:
            responses = list(pool.map(call, range(40)))
        if int(time.time() // 60) == minute:
            break
    else:
        pytest.fail("three bursts in a row straddled a minute")

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 30, statuses
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 10
    assert all(r.json()["error"]["code"] == "RATE_LIMITED" and int(r.headers["Retry-After"]) >= 1 for r in limited)


def test_a_balance_for_ten_messages_accepts_exactly_ten_recipients_across_concurrent_requests(env):
    env.store.accounts.put_tenant(env.tenant_id, {"balance_micros": 10 * 20_000})

    # Groups of two: sequentially, five are accepted whole and the rest are 402, so "exactly ten"
    # holds whatever the interleaving (with odd sizes a lone unit could be left unspent by a 402).
    def call(i):
        to = [fictional(10 + 2 * i + k) for k in range(2)]
        return env.client(env.api_key).post("/api/v1/messages/group", json={"to": to, "body": "x",
                                                                             "media_urls": [env.sample_media_url]})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(8)))

    accepted = sum(1 for r in responses if r.status_code in (200, 207)
                   for m in r.json()["messages"] if m["status"] == "queued")
    assert accepted == 10, [r.status_code for r in responses]
    assert env.balance() == 0
    assert {r.status_code for r in responses} <= {200, 207, 402}
