"""Customer webhooks as Standard Webhooks receivers see them: our real deliveries, through the stack, verify
with the specification's own Python library (PyPI ``standardwebhooks``), not with our code; a rotated secret
signs alongside the old one for a day; the local inbox checks what it receives; a rejected webhook URL shows
in the message's read."""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from infra import collections as C
from shared.carriers.signatures import tenant_secret
from tests.conftest import ROOT, fictional, wait_for


def _master(env) -> str:
    return env.stack.function_env()["WEBHOOK_SIGNING_KEY"]


def _delivered(env, n: int) -> list[dict]:
    wait_for(lambda: len([r for r in env.receiver.received if not r["failed"]]) >= n, 20, f"{n} deliveries")
    return [r for r in env.receiver.received if not r["failed"]]


def _send(env, xx: int, **extra) -> str:
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(xx), "body": "hook", **extra})
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


def test_our_deliveries_verify_with_the_standard_webhooks_library(env):
    message_id = _send(env, 20, webhook_url=env.receiver.url)
    env.wait_status(message_id, "delivered")
    received = _delivered(env, 2)

    hook = Webhook(tenant_secret(_master(env), env.tenant_id))
    types = set()
    for record in received:
        payload = hook.verify(record["body"], record["headers"])  # raises if the signature is not the spec's
        headers = {k.lower(): v for k, v in record["headers"].items()}
        assert headers["webhook-id"] == payload["id"] == headers["x-mmsgate-event-id"]
        assert payload["data"]["id"] == message_id
        assert "notifications" not in payload["data"]  # delivery bookkeeping stays out of the event
        assert headers["webhook-signature"].startswith("v1,")
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120
        types.add(payload["type"])
    assert types == {"message.sent", "message.delivered"}

    record = received[0]
    with pytest.raises(WebhookVerificationError):
        hook.verify(record["body"].replace(b"hook", b"hack"), record["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(tenant_secret(_master(env), "tnt_other")).verify(record["body"], record["headers"])


def test_a_rotated_secret_signs_with_the_old_one_for_a_day_then_alone(env):
    old = Webhook(tenant_secret(_master(env), env.tenant_id))
    new = Webhook(tenant_secret(_master(env), env.tenant_id, 1))
    tenants = env.store.db.collection(C.TENANTS)
    tenants.document(env.tenant_id).update({"webhook_secret_version": 1, "webhook_secret_previous_version": 0,
                                            "webhook_secret_rotated_at": dt.datetime.now(dt.UTC)})
    env.wait_status(_send(env, 21, webhook_url=env.receiver.url), "delivered")
    for record in _delivered(env, 2):
        old.verify(record["body"], record["headers"])
        new.verify(record["body"], record["headers"])

    env.receiver.reset()
    tenants.document(env.tenant_id).update(
        {"webhook_secret_rotated_at": dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)})
    env.wait_status(_send(env, 22, webhook_url=env.receiver.url), "delivered")
    for record in _delivered(env, 2):
        new.verify(record["body"], record["headers"])
        with pytest.raises(WebhookVerificationError):
            old.verify(record["body"], record["headers"])


def test_the_dev_inbox_lists_the_tenants_events_with_their_signature_check(env):
    inbox = env.stack.urls["dev"]
    env.store.accounts.put_tenant(env.tenant_id, {"webhook_url": f"{inbox}/inbox/{env.tenant_id}"})
    message_id = _send(env, 23)  # no webhook_url: the tenant's default, the inbox
    env.wait_status(message_id, "delivered")

    def listed() -> list[dict]:
        return httpx.get(f"{inbox}/_dev/inbox", timeout=5).json()["data"]

    wait_for(lambda: len(listed()) >= 2, 20, "two events in the inbox")
    events = listed()
    assert {e["type"] for e in events} == {"message.sent", "message.delivered"}
    assert all(e["message_id"] == message_id and e["signature"]["valid"] for e in events), events
    assert all(e["answered"] == 200 for e in events)

    # The check is real: a forged event is listed as invalid, with the reason.
    forged = json.dumps({"id": "evt_forged", "type": "message.delivered", "data": {"id": message_id}}).encode()
    answer = httpx.post(f"{inbox}/inbox/{env.tenant_id}", content=forged, timeout=5,
                        headers={"webhook-id": "evt_forged", "webhook-timestamp": str(int(time.time())),
                                 "webhook-signature": "v1,AAAA", "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["signature_valid"] is False
    newest = listed()[0]
    assert newest["event_id"] == "evt_forged" and not newest["signature"]["valid"]
    assert "no signature matches" in newest["signature"]["reason"]


def test_an_inbox_answering_500_shows_the_attempts_in_the_read(env):
    inbox = env.stack.urls["dev"]
    message_id = _send(env, 24, webhook_url=f"{inbox}/inbox/{env.tenant_id}?status=500")
    env.wait_status(message_id, "delivered")
    def retried() -> bool:
        notifications = env.message(message_id)["notifications"]
        return len(notifications) == 2 and all(n["attempts"] >= 1 for n in notifications) \
            and any(n["attempts"] >= 2 for n in notifications)

    wait_for(retried, 20, "both events attempted, one of them retried")
    notifications = env.message(message_id)["notifications"]
    assert {n["type"] for n in notifications} == {"message.sent", "message.delivered"}
    assert all(n["state"] == "retrying" and n["last_error"] == "HTTP 500" for n in notifications), notifications


def test_a_rejected_tenant_webhook_url_is_visible_in_the_read(env):
    # Stored directly, as a URL that passed an older check might be: loopback that nobody trusted.
    env.store.accounts.put_tenant(env.tenant_id, {"webhook_url": "http://127.0.0.1:9/hooks"})
    message_id = _send(env, 25)
    env.wait_status(message_id, "delivered")
    wait_for(lambda: len(env.message(message_id)["notifications"]) == 2
             and all(n["state"] == "gave_up" for n in env.message(message_id)["notifications"]), 20,
             "both events given up")
    for notification in env.message(message_id)["notifications"]:
        assert notification["attempts"] == 1
        assert notification["last_error"].startswith("webhook URL rejected:"), notification
        assert notification["event_id"].startswith("evt_")


def test_dev_trusted_origins_reach_the_functions_and_never_terraform(tmp_path, monkeypatch):
    from tools.stack import Stack, StackConfig

    monkeypatch.setenv("MMSGATE_DEV_TRUSTED_ORIGINS", "http://127.0.0.1:9999, http://127.0.0.1:9998/")
    stack = Stack(StackConfig.for_tests(tmp_path, entry_points=["send"]))
    trusted = stack.function_env()["MEDIA_TRUSTED_ORIGINS"].split(",")
    assert {"http://127.0.0.1:9999", "http://127.0.0.1:9998", stack.urls["dev"]} <= set(trusted)
    checked = [path for path in (ROOT / "terraform").rglob("*")
               if path.is_file() and path.suffix in (".tf", ".tftpl", ".tfvars", ".example", ".sh", ".yaml")]
    assert checked, "no Terraform file found"
    for path in checked:
        assert "MMSGATE_DEV_TRUSTED_ORIGINS" not in path.read_text(errors="replace"), path
