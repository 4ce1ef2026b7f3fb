"""POST /api/v1/messages/group: recipients, per-recipient gates, and the 200/207/402 contract."""

import datetime as dt

import pytest

from tests.conftest import fictional

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def _group(env, **body):
    return env.api.post("/api/v1/messages/group", json={"body": "hi", **body})


def test_recipient_count_limits(env):
    assert _group(env, to=[]).status_code == 400
    assert _group(env, to=[fictional(i) for i in range(21)]).json()["error"]["code"] == "VALIDATION_ERROR"
    response = _group(env, to=[fictional(i) for i in range(20)])
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["accepted"] == 20


def test_duplicate_recipients_are_rejected_naming_them(env):
    response = _group(env, to=[fictional(1), fictional(2), fictional(1)])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "DUPLICATE_RECIPIENTS"
    assert error["details"] == [{"field": "to", "issue": f"duplicate recipient {fictional(1)}"}]


def test_each_gate_fails_only_its_recipient(env):
    env.store.accounts.add_opt_out(env.tenant_id, fictional(3), source="test")
    response = _group(env, to=[fictional(1), "+1415", "+442071838750", fictional(3)])

    assert response.status_code == 207
    codes = [m.get("error_code") for m in response.json()["messages"]]
    assert codes == [None, "INVALID_PHONE_NUMBER", "MMS_NANP_ONLY", "RECIPIENT_OPTED_OUT"]
    assert response.json()["summary"] == {"total": 4, "accepted": 1, "failed": 3, "scheduled": 0, "succeeded": 1}
    for item in response.json()["messages"][1:]:
        assert env.message(item["id"])["status"] == "failed"  # pre-inserted, then flipped
    invalid = response.json()["messages"][1]["error_message"]  # names its position and the form expected
    assert invalid.startswith("to[1] is not a valid phone number") and "+14155552671" in invalid


def test_request_level_gate_fails_every_recipient(env):
    response = _group(env, to=[fictional(1), fictional(2)], media_urls=["https://evil.example.com/x.png"])

    assert response.status_code == 207
    assert {m["error_code"] for m in response.json()["messages"]} == {"MEDIA_URL_REJECTED"}
    assert response.json()["summary"]["failed"] == 2
    assert {m["error_message"].split(" is not on")[0] for m in response.json()["messages"]} == {
        "media_urls[0] (https://evil.example.com/x.png)"}


def test_per_leg_key_and_id(env):
    response = _group(env, to=[fictional(1)])
    group_id = response.json()["group_id"]
    leg = env.leg_doc(response.json()["messages"][0]["id"])
    assert leg["leg_key"] == f"group-mms:{group_id}:{fictional(1)}"
    from shared.rules.ids import leg_message_id

    assert leg["id"] == leg_message_id(leg["leg_key"])


def test_scheduled_group_counts_as_scheduled(env):
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(days=40)).isoformat()
    response = _group(env, to=[fictional(1), fictional(2)], scheduled_at=at, metadata={"campaign": "c1"})

    assert response.status_code == 200
    assert response.json()["summary"] == {"total": 2, "accepted": 0, "failed": 0, "scheduled": 2, "succeeded": 0}
    for item in response.json()["messages"]:
        message = env.message(item["id"])
        assert (message["status"], message["metadata"]) == ("scheduled", {"campaign": "c1"})


def test_group_read_summarises_from_the_legs(env):
    response = _group(env, to=[fictional(1), fictional(81), "+442071838750"], media_urls=[env.sample_media_url])
    group_id = response.json()["group_id"]
    env.wait_status(response.json()["messages"][0]["id"], "delivered")
    env.wait_status(response.json()["messages"][1]["id"], "undelivered")

    group = env.api.get(f"/api/v1/messages/group/{group_id}").json()["data"]

    assert group["summary"]["by_status"] == {"delivered": 1, "undelivered": 1, "failed": 1}
    assert group["summary"]["final"] == 3


def test_insufficient_balance_is_402_and_writes_nothing(env):
    env.store.accounts.put_tenant(env.tenant_id, {"balance_micros": 30_000})  # one MMS costs 20_000
    response = _group(env, to=[fictional(1), fictional(2)], media_urls=[env.sample_media_url])

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
    from infra import collections as C

    assert list(env.store.db.collection(C.MESSAGES).limit(1).stream()) == []
    assert env.balance() == 30_000


def test_cost_is_debited_when_accepted(env):
    before = env.balance()
    _group(env, to=[fictional(1), fictional(2), "+442071838750"], media_urls=[env.sample_media_url])
    assert env.balance() == before - 2 * 20_000


def test_daily_quota(env):
    env.store.accounts.put_tenant(env.tenant_id, {"daily_quota": 2})
    response = _group(env, to=[fictional(1), fictional(2), fictional(3)])
    assert [m.get("error_code") for m in response.json()["messages"]] == [None, None, "QUOTA_EXCEEDED"]
    single = env.api.post("/api/v1/messages/sms", json={"to": fictional(4), "body": "x"})
    assert single.status_code == 429
    assert single.json()["error"]["code"] == "QUOTA_EXCEEDED"


def test_a_recipient_without_a_price_fails_alone(env):
    # The group endpoint is MMS-only, and MMS is NANP-only, so use a NANP number with no price row.
    env.store.db.collection("pricing").document("CA").delete()
    response = _group(env, to=[fictional(1), "+16135550199"])
    assert response.status_code == 207
    assert [m.get("error_code") for m in response.json()["messages"]] == [None, "PRICE_UNAVAILABLE"]
    assert response.json()["messages"][1]["error_message"]
