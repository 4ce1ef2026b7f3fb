"""Templates with personalisation through the stack (issue 25, item 2): a template with three placeholders sent to
a batch with per-recipient values (each recipient's stored body, segments and price its own, the template's id
and version recorded); the preview of a recipient's values matching its stored message; a missing value refused
with nothing stored or charged; versions, archive and tenants kept apart."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tools.batch_demo import deliverable_numbers

pytestmark = pytest.mark.stack

BODY = "Hi ((First name)), order ((order)) ships ((day))."


def _template(api, body: str = BODY) -> dict:
    response = api.post("/api/v1/templates", json={"name": "shipping", "body": body})
    assert response.status_code == 201, response.text
    return response.json()["data"]


def _rows(api, batch_id: str) -> list[dict]:
    response = api.get("/api/v1/messages", params={"batch_id": batch_id, "limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_batch_renders_each_recipients_values_and_the_preview_matches_what_was_stored(env):
    template = _template(env.api)
    assert template["placeholders"] == ["First name", "order", "day"]
    to = deliverable_numbers(6)
    values = [{"first_name": f"Name{i}", "order": f"A-{i}", "day": "Monday"} for i in range(6)]
    values[5]["day"] = "Monday, after a long wait " + "x" * 120  # this recipient's text needs two segments
    values[4]["day"] = "((order))"  # a value is never read for placeholders
    before = env.balance()
    response = env.api.post("/api/v1/messages/batch", json={
        "template_id": template["id"],
        "personalisation": {"day": "shared"},  # the recipients' own values win over it
        "recipients": [{"to": n, "personalisation": v} for n, v in zip(to, values, strict=True)]})
    assert response.status_code == 202, response.text
    batch_id = response.json()["data"]["id"]
    wait_for(lambda: env.api.get(f"/api/v1/batches/{batch_id}").json()["data"]["status"] == "completed", 60,
             "the batch never completed")

    rows = {row["to"]: row for row in _rows(env.api, batch_id)}
    expected = {n: f"Hi {v['first_name']}, order {v['order']} ships {v['day']}." for n, v in zip(to, values,
                                                                                               strict=True)}
    assert {n: rows[n]["body"] for n in to} == expected
    assert {rows[n]["status"] for n in to} == {"delivered"}
    assert {(rows[n]["template"]["id"], rows[n]["template"]["version"]) for n in to} == {(template["id"], 1)}
    assert [rows[n]["segments"] for n in to] == [1, 1, 1, 1, 1, 2]
    # what the carrier was handed is the rendered text
    assert {m["to"]: m["text"] for m in env.sim_messages() if m["to"] in to} == expected

    charged = 0
    for n, v in zip(to, values, strict=True):
        preview = env.api.post(f"/api/v1/templates/{template['id']}/preview", json={"personalisation": v, "to": n})
        assert preview.status_code == 200, preview.text
        shown = preview.json()["data"]
        assert (shown["body"], shown["segments"], shown["price"]) == (rows[n]["body"], rows[n]["segments"],
                                                                     rows[n]["price"])
        charged += round(float(shown["price"]["amount"]) * 1_000_000)
    assert env.balance() == before - charged


def test_a_missing_value_is_refused_by_name_with_nothing_stored_or_charged(env):
    tenant_id, key = env.new_tenant()
    with env.client(key) as api:
        template = _template(api)
        before = env.balance(tenant_id)
        to = deliverable_numbers(3)
        batch = api.post("/api/v1/messages/batch", json={"template_id": template["id"], "recipients": [
            {"to": to[0], "personalisation": {"first name": "A", "order": "1", "day": "Mon"}},
            {"to": to[1], "personalisation": {"first name": "B", "day": "Mon"}},
            {"to": to[2], "personalisation": {"first name": "C", "order": "3", "day": "Mon"}}]})
        assert batch.status_code == 400, batch.text
        error = batch.json()["error"]
        assert (error["code"], error["message"]) == ("MISSING_PERSONALISATION", "Missing personalisation: order")
        assert error["details"] == [{"field": "recipients[1].personalisation.order", "issue": "missing"}]

        single = api.post("/api/v1/messages/sms", json={"to": to[0], "template_id": template["id"],
                                                        "personalisation": {"FIRST_NAME": "A"}})
        assert single.status_code == 400, single.text
        assert single.json()["error"]["message"] == "Missing personalisation: order, day"
        assert "message_id" not in single.json()["error"]
        group = api.post("/api/v1/messages/group", json={"to": to[:2], "template_id": template["id"],
                                                         "personalisation": {"order": "1", "day": "x"}})
        assert group.status_code == 400 and group.json()["error"]["code"] == "MISSING_PERSONALISATION", group.text

        assert env.balance(tenant_id) == before
        assert api.get("/api/v1/messages").json()["data"] == []


def test_a_single_send_uses_the_latest_version_or_the_one_named_and_archive_stops_sends(env):
    template = _template(env.api, "v1 for ((name))")
    edited = env.api.put(f"/api/v1/templates/{template['id']}", json={"body": "v2 for ((name))",
                                                                       "subject": "Hi ((name))"})
    assert edited.status_code == 200 and edited.json()["data"]["version"] == 2, edited.text
    to = deliverable_numbers(2)
    latest = env.api.post("/api/v1/messages/sms", json={"to": to[0], "template_id": template["id"],
                                                        "personalisation": {"name": "Ann"}})
    pinned = env.api.post("/api/v1/messages/sms", json={"to": to[1], "template_id": template["id"],
                                                        "template_version": 1, "personalisation": {"name": "Bob"}})
    assert latest.status_code == 200 and pinned.status_code == 200, (latest.text, pinned.text)
    first = env.wait_status(latest.json()["data"]["id"], "delivered")
    second = env.wait_status(pinned.json()["data"]["id"], "delivered")
    assert (first["body"], first["subject"], first["template"]) == ("v2 for Ann", "Hi Ann",
                                                                    {"id": template["id"], "version": 2})
    assert (second["body"], second["template"]) == ("v1 for Bob", {"id": template["id"], "version": 1})

    assert env.api.delete(f"/api/v1/templates/{template['id']}").json()["data"]["archived"] is True
    refused = env.api.post("/api/v1/messages/sms", json={"to": to[0], "template_id": template["id"],
                                                         "personalisation": {"name": "Ann"}})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "TEMPLATE_NOT_FOUND", refused.text
    old = env.api.get(f"/api/v1/templates/{template['id']}", params={"version": 1})
    assert old.status_code == 200 and old.json()["data"]["body"] == "v1 for ((name))"

    _, other_key = env.new_tenant()
    with env.client(other_key) as other:
        assert other.get(f"/api/v1/templates/{template['id']}").status_code == 404
        theirs = other.post("/api/v1/messages/sms", json={"to": to[0], "template_id": template["id"]})
        assert theirs.status_code == 400 and theirs.json()["error"]["code"] == "TEMPLATE_NOT_FOUND"


def test_bad_template_requests_are_4xx_with_the_field_named(env):
    both = env.api.post("/api/v1/messages/sms", json={"to": deliverable_numbers(1)[0], "body": "x",
                                                      "template_id": "tpl_x"})
    assert both.status_code == 400 and both.json()["error"]["code"] == "VALIDATION_ERROR", both.text
    template = _template(env.api)
    link = env.api.post(f"/api/v1/templates/{template['id']}/preview", json={
        "personalisation": {"first name": "click https://evil.example", "order": "1", "day": "Mon"}})
    assert link.status_code == 400, link.text
    assert link.json()["error"]["details"][0]["field"] == "personalisation.first name"
    listed = env.api.get("/api/v1/templates", params={"limit": 200})
    assert listed.status_code == 200 and template["id"] in {t["id"] for t in listed.json()["data"]}
    assert env.api.patch(f"/api/v1/templates/{template['id']}").status_code == 405
