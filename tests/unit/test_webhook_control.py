"""Webhook control rules (no stack): where an event's next attempt goes, request_dlr, client_ref."""

from __future__ import annotations

import json

import pydantic
import pytest

from shared.api.models import GroupRequest, SendRequest
from shared.rules.legs import transition, view
from shared.rules.records import OutboxEntry, Tenant
from shared.rules.status import Status
from shared.services.notifying import event_body, target_urls
from shared.services.sending import controls
from tests.unit.legs import HOOK, T0, at, leg

FAILOVER = "https://backup.example.com/hooks"


def _entry(attempts: int) -> OutboxEntry:
    return OutboxEntry(type="message.delivered", status="delivered", created_at=T0, attempts=attempts)


@pytest.mark.parametrize("attempts, expected", [
    (0, [HOOK, FAILOVER]),  # the primary first; the failover only if the primary fails its check
    (1, [HOOK, FAILOVER]),
    (2, [HOOK, FAILOVER]),
    (3, [FAILOVER]),  # three attempts on the primary, like Telnyx: the rest of the schedule on the failover
    (4, [FAILOVER]),
    (29, [FAILOVER]),
])
def test_three_attempts_on_the_primary_then_the_failover_url(attempts, expected):
    hooked = leg(Status.SENT, webhook_url=HOOK, webhook_failover_url=FAILOVER)
    assert target_urls(hooked, _entry(attempts)) == expected


@pytest.mark.parametrize("failover", [None, HOOK])
def test_without_a_distinct_failover_url_every_attempt_goes_to_the_primary(failover):
    hooked = leg(Status.SENT, webhook_url=HOOK, webhook_failover_url=failover)
    assert target_urls(hooked, _entry(0)) == [HOOK]
    assert target_urls(hooked, _entry(10)) == [HOOK]


def test_request_dlr_false_puts_no_event_in_the_outbox_for_any_status():
    quiet = leg(Status.SENDING, webhook_url=HOOK, request_dlr=False)
    sent = transition(quiet, Status.SENT, cause="t", now=at(1))
    assert sent is not None and sent.notifications == {} and sent.notify_due is None
    delivered = transition(sent, Status.DELIVERED, cause="t", now=at(2))
    failed = transition(quiet, Status.FAILED, cause="t", now=at(2))
    assert delivered is not None and failed is not None
    assert delivered.notifications == {} and failed.notifications == {}


def test_request_dlr_true_still_announces():
    loud = leg(Status.SENDING, webhook_url=HOOK)
    sent = transition(loud, Status.SENT, cause="t", now=at(1))
    assert sent is not None and [e.type for e in sent.notifications.values()] == ["message.sent"]


def test_client_ref_is_in_the_read_and_in_every_event():
    tagged = leg(Status.SENDING, webhook_url=HOOK, client_ref="order 42 / 💡")
    sent = transition(tagged, Status.SENT, cause="t", now=at(1))
    assert sent is not None
    assert view(sent)["client_ref"] == "order 42 / 💡"
    assert sent.notifications
    for event_id, entry in sent.notifications.items():
        body = json.loads(event_body(sent, event_id, entry))
        assert body["data"]["client_ref"] == "order 42 / 💡"


def test_a_send_takes_its_own_failover_url_else_the_tenants():
    tenant = Tenant(id="tnt_x", webhook_failover_url="https://tenant.example.com/backup")
    own = SendRequest.model_validate({"to": "+14155550101", "body": "x", "webhook_failover_url": FAILOVER})
    inherited = SendRequest.model_validate({"to": "+14155550101", "body": "x"})
    assert controls(tenant, own, "+18005551234", T0)["webhook_failover_url"] == FAILOVER
    assert controls(tenant, inherited, "+18005551234", T0)["webhook_failover_url"] == \
        "https://tenant.example.com/backup"
    assert controls(Tenant(id="tnt_y"), inherited, "+18005551234", T0)["webhook_failover_url"] is None


@pytest.mark.parametrize("model, base", [(SendRequest, {"to": "+14155550101"}),
                                         (GroupRequest, {"to": ["+14155550101"]})])
@pytest.mark.parametrize("extra, field", [
    ({"client_ref": "x" * 4001}, "client_ref"),
    ({"client_ref": ""}, "client_ref"),
    ({"request_dlr": "false"}, "request_dlr"),  # a string is not a boolean: refused, not guessed
    ({"request_dlr": 0}, "request_dlr"),
    ({"webhook_failover_url": ""}, "webhook_failover_url"),
    ({"webhook_failover_url": "https://x.example/" + "a" * 2000}, "webhook_failover_url"),
])
def test_bad_webhook_control_input_is_refused_naming_the_field(model, base, extra, field):
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate({**base, "body": "x", **extra})
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


def test_client_ref_of_exactly_4000_characters_is_accepted():
    req = SendRequest.model_validate({"to": "+14155550101", "body": "x", "client_ref": "r" * 4000})
    assert req.client_ref == "r" * 4000 and req.request_dlr is True
