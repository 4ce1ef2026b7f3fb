"""Every row of the simulator's number table ends in its stated status with exactly one provider send
(none for the numbers the provider rejects)."""

import pytest

from tests.conftest import fictional

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
    statuses = [h["to"] for h in message["history"]]
    assert statuses.count(status) == 1 or status == "sent" and final
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
    before = env.balance()
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(90), "body": "x",
                                                            "media_urls": [env.sample_media_url]}).json()["data"]["id"]
    env.wait_status(message_id, "failed")
    assert env.balance() == before


def test_sweeper_closes_a_leg_with_no_final_report(env):
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(99), "body": "x"}).json()["data"]["id"]
    env.wait_status(message_id, "sent", final=False)

    import time

    time.sleep(env.stack.config.sweep_final_after_seconds + 0.5)
    status, _ = env.stack.sweep()

    assert status == 200
    message = env.message(message_id)
    assert (message["status"], message["final"]) == ("sent", True)
    assert message["history"][-1]["cause"] == "no final report within the window"
