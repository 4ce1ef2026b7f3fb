"""The template service (shared/services/templating.py) over the in-memory store: versions, archive, tenants kept
apart, preview's counts and price, a send's request rendered (or refused before anything is charged), a batch's
per-recipient values, and the send models' template rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.api.batch_request import BatchRequest
from shared.api.models import GroupRequest, SendRequest
from shared.api.templates import TemplateCreate, TemplateEdit, TemplatePreview
from shared.rules import batching
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.records import Rates
from shared.services import templating
from tests.unit.fakes import FakeRuntime
from tests.unit.legs import T0

TENANT, OTHER = "tnt_a", "tnt_b"


class _Clock:
    def now(self):
        return T0


class _Rates:
    def get_rates(self, country):
        return Rates(sms_micros=7_900, mms_micros=20_000) if country == "US" else None


def _rt() -> FakeRuntime:
    rt = FakeRuntime(_Clock())  # type: ignore[arg-type]
    rt.accounts = _Rates()  # type: ignore[assignment]
    return rt


def _create(rt, body="Hi ((First name)), order ((order)) ships ((day)).", **extra):
    return templating.create(rt, TENANT, TemplateCreate(name="shipping", body=body, **extra))


def _refused(call) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def test_create_read_edit_keeps_every_version_readable():
    rt = _rt()
    made = _create(rt)
    assert made["version"] == 1 and made["placeholders"] == ["First name", "order", "day"]
    edited = templating.edit(rt, TENANT, made["id"], TemplateEdit(body="Hello ((First name))"))
    assert edited["version"] == 2 and edited["name"] == "shipping"
    assert templating.get(rt, TENANT, made["id"], {})["body"] == "Hello ((First name))"
    assert templating.get(rt, TENANT, made["id"], {"version": ["1"]})["body"] == made["body"]
    assert _refused(lambda: templating.get(rt, TENANT, made["id"], {"version": ["3"]})).code is ErrorCode.NOT_FOUND


def test_another_tenants_template_is_not_found_anywhere():
    rt = _rt()
    made = _create(rt)
    for call in (lambda: templating.get(rt, OTHER, made["id"], {}),
                 lambda: templating.edit(rt, OTHER, made["id"], TemplateEdit(body="x")),
                 lambda: templating.archive(rt, OTHER, made["id"]),
                 lambda: templating.preview(rt, OTHER, made["id"], TemplatePreview())):
        assert _refused(call).code is ErrorCode.NOT_FOUND
    assert templating.listing(rt, OTHER, {})["data"] == []
    req = SendRequest(to="+14155550100", template_id=made["id"])
    assert _refused(lambda: templating.apply(rt, OTHER, req)).code is ErrorCode.TEMPLATE_NOT_FOUND


def test_an_archived_template_is_refused_by_sends_but_stays_readable():
    rt = _rt()
    made = _create(rt)
    assert templating.archive(rt, TENANT, made["id"])["archived"] is True
    assert templating.get(rt, TENANT, made["id"], {"version": ["1"]})["archived"] is True
    req = SendRequest(to="+14155550100", template_id=made["id"], personalisation={"first name": "A", "order": "1",
                                                                                  "day": "Mon"})
    error = _refused(lambda: templating.apply(rt, TENANT, req))
    assert error.code is ErrorCode.TEMPLATE_NOT_FOUND and error.details == [{"field": "template_id",
                                                                             "issue": "archived"}]
    assert _refused(lambda: templating.edit(rt, TENANT, made["id"], TemplateEdit(body="x"))).code is \
        ErrorCode.NOT_FOUND


def test_the_list_pages_with_a_cursor():
    rt = _rt()
    ids = sorted(_create(rt)["id"] for _ in range(5))
    first = templating.listing(rt, TENANT, {"limit": ["2"]})
    assert [t["id"] for t in first["data"]] == ids[:2] and first["pagination"]["has_more"] is True
    rest = templating.listing(rt, TENANT, {"limit": ["5"], "cursor": [first["pagination"]["next_cursor"]]})
    assert [t["id"] for t in rest["data"]] == ids[2:] and rest["pagination"]["has_more"] is False
    assert _refused(lambda: templating.listing(rt, TENANT, {"cursor": ["../x"]})).code is ErrorCode.INVALID_CURSOR


def test_preview_renders_and_counts_and_prices_as_a_send_would():
    rt = _rt()
    made = _create(rt, body="((greeting)) " + "x" * 150)
    out = templating.preview(rt, TENANT, made["id"], TemplatePreview(personalisation={"greeting": "Hello"},
                                                                     to="+14155550100"))
    assert out["body"] == "Hello " + "x" * 150
    assert (out["channel"], out["encoding"], out["segments"]) == ("sms", "GSM-7", 1)
    assert out["price"] == {"amount": "0.0079", "currency": "USD"}
    longer = templating.preview(rt, TENANT, made["id"], TemplatePreview(personalisation={"greeting": "Hello, world"},
                                                                        to="+14155550100"))
    assert longer["segments"] == 2 and longer["price"] == {"amount": "0.0158", "currency": "USD"}
    ucs2 = templating.preview(rt, TENANT, made["id"], TemplatePreview(personalisation={"greeting": "Привет"}))
    assert ucs2["encoding"] == "UCS-2" and ucs2["price"] is None


def test_a_missing_value_is_a_400_naming_it():
    rt = _rt()
    made = _create(rt)
    req = SendRequest(to="+14155550100", template_id=made["id"], personalisation={"first_name": "Ann"})
    error = _refused(lambda: templating.apply(rt, TENANT, req))
    assert error.code is ErrorCode.MISSING_PERSONALISATION and error.status == 400
    assert error.message == "Missing personalisation: order, day"
    assert [d["field"] for d in error.details or []] == ["personalisation.order", "personalisation.day"]


def test_a_link_in_a_value_is_refused_by_name():
    rt = _rt()
    made = _create(rt)
    req = GroupRequest(to=["+14155550100"], template_id=made["id"],
                       personalisation={"first name": "see evil.com", "order": "1", "day": "Mon"})
    error = _refused(lambda: templating.apply(rt, TENANT, req))
    assert error.code is ErrorCode.VALIDATION_ERROR
    assert error.details and error.details[0]["field"] == "personalisation.first name"


def test_a_send_gets_the_templates_text_and_version():
    rt = _rt()
    made = _create(rt, subject="For ((First name))")
    templating.edit(rt, TENANT, made["id"], TemplateEdit(body="v2 ((First name))"))
    values = {"FIRST_NAME": "Ann", "order": "((day))", "day": "Mon"}
    latest = templating.apply(rt, TENANT, SendRequest(to="+14155550100", template_id=made["id"],
                                                      personalisation=values))
    assert (latest.body, latest.subject, latest.template_version) == ("v2 Ann", "For Ann", 2)
    pinned = templating.apply(rt, TENANT, SendRequest(to="+14155550100", template_id=made["id"], template_version=1,
                                                      personalisation=values))
    assert pinned.body == "Hi Ann, order ((day)) ships Mon." and pinned.template_version == 1


def test_a_batch_renders_each_recipient_and_prices_each_by_its_own_segments():
    rt = _rt()
    made = _create(rt, body="((name)): ((note))")
    req = BatchRequest(template_id=made["id"], personalisation={"note": "ok"}, recipients=[
        {"to": "+14155550100", "personalisation": {"name": "Ann"}},
        {"to": "+14155550101", "personalisation": {"name": "Bob", "note": "y" * 200}},
    ])
    templated, per = templating.apply_batch(rt, TENANT, req)
    assert templated.body == "((name)): ((note))" and per is not None
    assert per == [({"name": "Ann", "note": "ok"}, 1), ({"name": "Bob", "note": "y" * 200}, 2)]
    gated = batching.gate_recipients(req.all_recipients(), "sms", 1, {"US": Rates(sms_micros=100)}, None, per)
    assert [(r.price_micros, r.personalisation) for r in gated] == [(100, per[0][0]), (200, per[1][0])]


def test_a_batch_recipient_missing_a_value_is_named():
    rt = _rt()
    made = _create(rt, body="((name)) ((note))")
    req = BatchRequest(template_id=made["id"], recipients=[
        {"to": "+14155550100", "personalisation": {"name": "Ann", "note": "x"}},
        {"to": "+14155550101", "personalisation": {"name": "Bob"}},
    ])
    error = _refused(lambda: templating.apply_batch(rt, TENANT, req))
    assert error.code is ErrorCode.MISSING_PERSONALISATION
    assert error.details == [{"field": "recipients[1].personalisation.note", "issue": "missing"}]


@pytest.mark.parametrize("payload", [
    {"to": "+14155550100", "template_id": "tpl_x", "body": "also a body"},
    {"to": "+14155550100", "template_id": "tpl_x", "media_urls": ["https://m.example/a.png"]},
    {"to": "+14155550100", "body": "x", "personalisation": {"a": "b"}},
    {"to": "+14155550100", "body": "x", "template_version": 2},
    {"to": "+14155550100", "template_id": "tpl_x", "template_version": 0},
])
def test_a_send_names_a_body_or_a_template_not_both(payload):
    with pytest.raises(ValidationError):
        SendRequest.model_validate(payload)


def test_a_batch_recipients_personalisation_needs_a_template():
    with pytest.raises(ValidationError):
        BatchRequest(body="x", recipients=[{"to": "+14155550100", "personalisation": {"a": "b"}}])


def test_a_chunk_writes_each_recipients_own_text_with_its_segments_and_the_template_version():
    import dataclasses

    from shared.rules.legs import new_leg
    from shared.rules.records import Batch, BatchStatus, ChunkRecipient

    template = new_leg(message_id="", leg_key="", tenant_id="t", group_id=None, to="", from_="+14155550000",
                       body="((name)) ((note))", subject=None, media_urls=[], channel="sms", encoding="GSM-7",
                       segments=1, scheduled_at=None, webhook_url=None, metadata={}, request_id="req_1",
                       now=T0).with_(batch_id="bat_1", template_id="tpl_abc", template_version=3)
    chunk_recipients = [ChunkRecipient(to="+14155550100", price_micros=1, slot=0,
                                       personalisation={"name": "Ann", "note": "((name))"}),
                        ChunkRecipient(to="+14155550101", price_micros=2, slot=1,
                                       personalisation={"name": "Zoë", "note": "é" * 80})]
    batch = Batch(id="bat_1", tenant_id="t", status=BatchStatus.ACCEPTED, total=2, accepted=2, rejected=0, chunks=1,
                  reserved_micros=3, template=template, created_at=T0, request_id="req_1", start_at=T0)
    (chunk,) = batching.split("bat_1", "t", chunk_recipients, T0, None)
    rows, _ = batching.chunk_rows(batch, chunk, opted_out=set(), validity=None, now=T0)
    assert [(r.body, r.encoding, r.segments) for r in rows] == [
        ("Ann ((name))", "GSM-7", 1), ("Zoë " + "é" * 80, "UCS-2", 2)]
    assert {(r.template_id, r.template_version) for r in rows} == {("tpl_abc", 3)}
    # the personalisation survives the chunk document
    assert [ChunkRecipient.from_doc(r.to_doc()) for r in chunk.recipients] == [
        dataclasses.replace(r) for r in chunk_recipients]


def test_a_batch_recipients_stored_values_are_bounded_like_its_metadata():
    from shared.api.batch_request import MAX_RECIPIENT_BYTES

    assert templating.MAX_RECIPIENT_BYTES == MAX_RECIPIENT_BYTES
    rt = _rt()
    made = _create(rt, body="((a)) ((b))")
    # each value is within its own limit, and the request's shared one is stored with every recipient that uses it
    req = BatchRequest(template_id=made["id"], personalisation={"a": "x" * 1500}, recipients=[
        {"to": "+14155550100", "personalisation": {"b": "short"}},
        {"to": "+14155550101", "personalisation": {"b": "y" * 600}}])
    error = _refused(lambda: templating.apply_batch(rt, TENANT, req))
    assert error.code is ErrorCode.VALIDATION_ERROR
    assert error.details and error.details[0]["field"] == "recipients[1].personalisation"


def test_edits_that_keep_colliding_are_a_429_not_a_500():
    from shared.ports import Contended

    rt = _rt()
    made = _create(rt)

    def contended(*_args, **_kwargs):
        raise Contended("busy")

    rt.templates.update = contended  # type: ignore[method-assign]
    rt.templates.archive = contended  # type: ignore[method-assign]
    for call in (lambda: templating.edit(rt, TENANT, made["id"], TemplateEdit(body="x")),
                 lambda: templating.archive(rt, TENANT, made["id"])):
        error = _refused(call)
        assert error.status == 429 and error.headers == {"Retry-After": "1"}
