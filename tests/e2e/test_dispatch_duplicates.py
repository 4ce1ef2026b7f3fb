"""Cloud Tasks delivers at least once: duplicates of a leg's task never cause a second provider send."""

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from infra import collections as C
from tests.conftest import fictional

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def _due_leg(env, to: str) -> str:
    """A scheduled leg (its own task is an hour away) made due now, so only our calls dispatch it."""
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    response = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "dup", "scheduled_at": at})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "scheduled"
    message_id = response.json()["data"]["id"]
    env.store.db.collection(C.MESSAGES).document(message_id).update(
        {"scheduled_at": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)})
    return message_id


def _dispatch(env, message_id: str, retry_count: int = 0) -> httpx.Response:
    return httpx.post(env.stack.urls["function:dispatch"], content=json.dumps({"message_id": message_id}),
                      headers={"Content-Type": "application/json", "X-CloudTasks-TaskRetryCount": str(retry_count)},
                      timeout=30)


def test_two_simultaneous_deliveries_of_one_task_send_once(env):
    to = fictional(20)
    message_id = _due_leg(env, to)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _dispatch(env, message_id), range(4)))

    # Routine waits are not overload: every delivery is acknowledged 2xx (a 429/503 would make real Cloud
    # Tasks throttle the whole queue), and exactly one of them sent.
    assert [a.status_code for a in answers] == [200] * 4
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes.count("sent") == 1, outcomes
    env.wait_status(message_id, "delivered")
    assert len(env.sim_messages(to)) == 1
    # Every later redelivery is acknowledged without calling the provider.
    assert _dispatch(env, message_id).status_code == 200
    assert len(env.sim_messages(to)) == 1


def test_redelivery_after_the_send_is_a_no_op(env):
    to = fictional(21)
    message_id = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "x"}).json()["data"]["id"]
    env.wait_status(message_id, "delivered")

    answer = _dispatch(env, message_id, retry_count=3)

    assert answer.status_code == 200
    assert answer.json()["outcome"] == "already delivered"
    assert len(env.sim_messages(to)) == 1


def test_transient_failure_on_the_last_attempt_fails_the_leg(env):
    to = fictional(94)  # HTTP 500 on the first attempt
    message_id = _due_leg(env, to)
    # The leg has used every attempt but this one (attempts are counted on the leg, one per claim).
    env.store.db.collection(C.MESSAGES).document(message_id).update(
        {"attempts": env.stack.config.dispatch_max_attempts - 1})

    answer = _dispatch(env, message_id)

    assert answer.status_code == 200
    message = env.message(message_id)
    assert (message["status"], message["error_code"]) == ("failed", "PROVIDER_UNAVAILABLE")
    assert env.sim_messages(to) == []


def test_transient_failure_asks_cloud_tasks_to_retry(env):
    to = fictional(97)  # HTTP 429 on the first attempt
    message_id = _due_leg(env, to)

    answer = _dispatch(env, message_id)

    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert env.message(message_id)["status"] == "sending"
    assert _dispatch(env, message_id, retry_count=1).status_code == 200
    env.wait_status(message_id, "delivered")
    assert len(env.sim_messages(to)) == 1
