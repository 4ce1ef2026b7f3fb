"""Every row of the simulator's number table ends in its stated status with exactly one provider send
(none for the numbers the provider rejects), through exactly the statuses it should pass."""

import datetime as dt

import httpx
import pytest

from tests.conftest import fictional

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack

MMS_PRICE = 20_000  # tools/admin.py DEFAULT_PRICING: one MMS to the US, in micro-USD
ACCEPTED = ["pending", "queued", "sending"]
# The statuses each final status is reached through. The simulator sends message.finalized only once
# message.sent was delivered, so ``sent`` is always entered before the final report; a retried or
# reconciled attempt (93-98) changes dispatch's send state, never the status.
PATHS = {
    "delivered": [*ACCEPTED, "sent", "delivered"],
    "undelivered": [*ACCEPTED, "sent", "undelivered"],
    "failed": [*ACCEPTED, "failed"],
    "sent": [*ACCEPTED, "sent"],
}

ROWS = [
    # xx, final status, final flag, provider sends, error code
    (0, "delivered", True, 1, None),
    (79, "delivered", True, 1, None),
    (80, "undelivered", True, 1, "DELIVERY_FAILED"),
    (84, "undelivered", True, 1, "DELIVERY_FAILED"),
    (85, "sent", True, 1, None),
    (89, "sent", True, 1, None),
    (90, "failed", True, 0, "RECIPIENT_OPTED_OUT"),
    (92, "failed", True, 0, "RECIPIENT_OPTED_OUT"),
    (93, "delivered", True, 1, None),  # HTTP 500 first, then accepted
    (96, "delivered", True, 1, None),  # HTTP 429 first, then accepted
    (98, "delivered", True, 1, None),  # connection dropped after the provider took it
    (99, "sent", False, 1, None),  # never a final report
]


@pytest.mark.parametrize(("xx", "status", "final", "sends", "error_code"), ROWS, ids=[f"xx{r[0]:02d}" for r in ROWS])
def test_outcome_row(env, xx, status, final, sends, error_code):
    to = fictional(xx)
    response = env.api.post("/api/v1/messages/sms", json={"to": to, "body": f"row {xx}",
                                                           "media_urls": [env.sample_media_url]})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]

    message = env.wait_status(message_id, status, final=final, timeout=20)
    assert message["error_code"] == error_code
    assert len(env.sim_messages(to)) == sends
    history = message["history"]
    if status == "sent" and final:
        # delivery_unconfirmed: sent once, then one entry with no status change that made it final.
        assert [h["to"] for h in history] == [*PATHS["sent"], "sent"], history
        closing = history[-1]
        assert closing["from"] == closing["to"] == "sent"
        assert "delivery_unconfirmed" in closing["cause"] and closing.get("event_id"), closing
    else:
        assert [h["to"] for h in history] == PATHS[status], history
    assert [h["from"] for h in history[1:]] == [h["to"] for h in history[:-1]]  # each entry leaves the last
    if sends:
        assert message["provider_id"] == env.sim_messages(to)[0]["id"]


def test_stop_rejection_adds_the_number_to_the_opt_out_list(env):
    to = fictional(91)
    first = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "one"}).json()["data"]["id"]
    env.wait_status(first, "failed")

    second = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "two"})

    assert second.status_code == 403
    assert second.json()["error"]["code"] == "RECIPIENT_OPTED_OUT"
    assert env.sim_messages(to) == []


def test_a_failed_provider_rejection_refunds_the_leg(env):
    """The leg is charged when accepted and refunded when the provider rejects it. It is scheduled a day
    ahead so the charge can be seen before anything is sent, then made due and dispatched."""
    from infra import collections as C

    before = env.balance()
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(90), "body": "x", "scheduled_at": far,
                                                          "media_urls": [env.sample_media_url]})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    assert env.balance() == before - MMS_PRICE

    env.store.db.collection(C.MESSAGES).document(message_id).update(
        {"scheduled_at": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)})
    dispatched = httpx.post(env.stack.urls["function:dispatch"], json={"message_id": message_id}, timeout=30)
    assert dispatched.status_code == 200, dispatched.text

    message = env.wait_status(message_id, "failed")
    assert message["error_code"] == "RECIPIENT_OPTED_OUT"
    assert env.balance() == before


def test_sweeper_closes_a_leg_with_no_final_report(env):
    from infra.runtime import Runtime
    from infra.settings import settings
    from shared.ports import FixedClock
    from shared.services.sweeping import sweep

    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(99), "body": "x"}).json()["data"]["id"]
    env.wait_status(message_id, "sent", final=False)
    since = env.leg_doc(message_id)["status_since"]
    rt = Runtime(clock=FixedClock(since + dt.timedelta(seconds=env.stack.config.sweep_final_after_seconds + 1)))
    rt.settings = settings.__wrapped__()  # the stack's settings, not whatever an earlier test cached

    assert sweep(rt)["closed"] == 1

    message = env.message(message_id)
    assert (message["status"], message["final"]) == ("sent", True)
    assert message["history"][-1]["cause"] == "no final report within the window"
    assert [h["to"] for h in message["history"]] == [*PATHS["sent"], "sent"]
