"""Retention and redaction rules (no stack)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from infra import collections as C
from shared.api.models import SendRequest
from shared.rules import retention
from shared.rules.records import Conversation, Group, Leg, StoredMedia, Tenant
from shared.rules.status import Status
from shared.services.redaction import redact_step
from shared.services.sending import controls
from tests.unit.legs import T0, at, leg

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("days, kept", [(None, 90), (7, 7), (3650, 3650), (0, 1), (-5, 1), (10_000, 3650)])
def test_the_retention_of_a_tenant(days, kept):
    doc = {} if days is None else {"retention_days": days}
    tenant = Tenant.from_doc("tnt_x", doc)
    assert retention.delete_at(tenant, T0) == T0 + dt.timedelta(days=kept)


def test_a_tenant_without_the_setting_keeps_messages_90_days():
    assert Tenant(id="tnt_x").retention_days == 90
    req = SendRequest.model_validate({"to": "+14155550101", "body": "x"})
    assert controls(Tenant(id="tnt_x"), req, "+18005551234", T0)["delete_at"] == T0 + dt.timedelta(days=90)


def test_every_record_keeps_its_delete_at_through_storage():
    until = T0 + dt.timedelta(days=30)
    stored = leg(Status.DELIVERED, delete_at=until)
    assert Leg.from_doc(stored.to_doc()).delete_at == until
    group = Group(id="grp_x", tenant_id="tnt_x", total=1, created_at=T0, request_id="r", message_ids=("m",),
                  delete_at=until, conversation_id="cnv_x")
    assert Group.from_doc(group.to_doc()) == group
    conv = Conversation(id="cnv_x", tenant_id="tnt_x", group_id="grp_x", members=("m",), numbers=("+1",),
                        dispatch=stored, delete_at=until)
    assert Conversation.from_doc(conv.to_doc()) == conv


# The tenant's retention ends a message, a group and a conversation at ``delete_at`` (docs/deploy.md: TTL on
# messages, groups, conversations), written down here rather than read from infra.collections.
RETAINED = {"messages": "delete_at", "groups": "delete_at", "conversations": "delete_at"}


def test_the_ttl_field_of_each_retained_collection_is_the_one_the_records_write():
    docs = {"messages": leg(Status.DELIVERED).to_doc(),
            "groups": Group(id="g", tenant_id="t", total=0, created_at=T0, request_id="r", message_ids=()).to_doc(),
            "conversations": Conversation(id="c", tenant_id="t", group_id="g", members=(), numbers=(),
                                          dispatch=leg()).to_doc()}
    assert (C.MESSAGES, C.GROUPS, C.CONVERSATIONS) == tuple(RETAINED)
    for collection, field in RETAINED.items():
        assert field in docs[collection], collection  # the record writes it ...
        assert C.TTL_FIELDS[collection] == field, collection  # ... and it is the field the TTL policy names
    # Terraform declares a TTL policy for each (the contract test compares the whole table)
    main_tf = " ".join((ROOT / "terraform" / "main.tf").read_text().split())
    for collection, field in RETAINED.items():
        assert f'{collection} = "{field}"' in main_tf, collection


def test_old_documents_without_the_new_fields_still_load():
    doc = leg(Status.DELIVERED).to_doc()
    for key in ("delete_at", "redacted_at", "client_ref", "request_dlr", "webhook_failover_url", "sms_failover",
                "failover_message_id", "failover_of", "failover_due", "conversation_id", "media_objects"):
        doc.pop(key)
    loaded = Leg.from_doc(doc)
    assert loaded.request_dlr is True and loaded.delete_at is None and loaded.client_ref is None


# -- redaction ------------------------------------------------------------------------------------------
MEDIA = (StoredMedia(object="media/tnt_unit/abc", content_type="image/png", size=10),)


def _final(status: Status = Status.DELIVERED, **fields) -> Leg:
    values = dict(body="secret", subject="subj", media_urls=("https://x.example/a.png",), media=MEDIA,
                  metadata={"k": "v"}, sms_failover={"text": "fallback", "from": "+18005551234"}, client_ref="ref",
                  provider_id="prov-1", price_micros=20_000)
    values.update(fields)
    return leg(status, **values)


def test_redaction_removes_the_content_at_once_and_keeps_the_record():
    before = _final()
    decision = redact_step(before, "tnt_unit", at(60))
    after = decision.after
    assert decision.result == "redacted" and after is not None
    assert (after.body, after.subject, after.media_urls, after.media, after.metadata, after.sms_failover) == (
        None, None, (), (), {}, None)
    assert after.redacted_at == at(60)
    for kept in ("status", "price_micros", "created_at", "provider_id", "client_ref", "to", "from_", "error_code"):
        assert getattr(after, kept) == getattr(before, kept), kept
    assert after.history[:-1] == before.history and after.history[-1].cause == "content redacted"
    assert after.to_doc()["media_objects"] == [] and before.to_doc()["media_objects"] == ["media/tnt_unit/abc"]
    assert "secret" not in repr(after.to_doc()) and "fallback" not in repr(after.to_doc())


@pytest.mark.parametrize("status", [Status.PENDING, Status.QUEUED, Status.SCHEDULED, Status.SENDING, Status.SENT])
def test_a_message_that_is_not_final_is_not_redacted(status):
    decision = redact_step(leg(status, body="secret"), "tnt_unit", at(60))
    assert decision.result == "not final" and decision.after is None


def test_a_sent_message_closed_as_final_can_be_redacted():
    assert redact_step(leg(Status.SENT, final=True, body="x"), "tnt_unit", at(60)).result == "redacted"


def test_an_mms_whose_sms_failover_is_being_created_waits():
    decision = redact_step(_final(status=Status.UNDELIVERED, failover_due=at(5)), "tnt_unit", at(60))
    assert decision.result == "failover pending" and decision.after is None


def test_another_tenants_message_is_not_found_and_a_second_redaction_writes_nothing():
    assert redact_step(_final(), "tnt_other", at(60)).result == "not found"
    assert redact_step(None, "tnt_unit", at(60)).result == "not found"
    once = redact_step(_final(), "tnt_unit", at(60)).after
    assert once is not None
    again = redact_step(once, "tnt_unit", at(90))
    assert again.result == "already redacted" and again.after is None
