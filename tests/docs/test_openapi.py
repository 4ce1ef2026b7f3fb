"""docs/openapi.yaml describes what the functions really answer, and docs/errors.md every error code."""

import datetime as dt
import functools
import json

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from shared.rules.errors import HTTP_STATUS, ErrorCode
from tests.conftest import ROOT, fictional, wait_for


@functools.cache
def spec() -> dict:
    return yaml.safe_load((ROOT / "docs/openapi.yaml").read_text())


def assert_matches(name: str, payload: dict) -> None:
    registry = Registry().with_resource("urn:spec", DRAFT202012.create_resource(spec()))
    validator = Draft202012Validator({"$ref": f"urn:spec#/components/schemas/{name}"}, registry=registry,
                                     format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(payload), key=lambda e: e.path)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_every_error_code_is_in_the_spec_and_in_errors_md():
    enum = set(spec()["components"]["schemas"]["ErrorEnvelope"]["properties"]["error"]["properties"]["code"]["enum"])
    errors_md = (ROOT / "docs/errors.md").read_text()
    for code in ErrorCode:
        assert code.value in enum, code
        assert f"`{code.value}`" in errors_md, code
        assert f"| {HTTP_STATUS[code]} |" in errors_md.split(f"`{code.value}`", 1)[1].split("\n", 1)[0], code


def test_every_public_path_is_described():
    assert set(spec()["paths"]) == {"/api/v1/messages", "/api/v1/messages/sms", "/api/v1/messages/group",
                                    "/api/v1/messages/{message_id}", "/api/v1/messages/{message_id}/redact",
                                    "/api/v1/messages/group/{group_id}", "/api/v1/messages/batch",
                                    "/api/v1/batches/{batch_id}", "/api/v1/pricing/messaging",
                                    "/api/v1/opt-outs", "/api/v1/opt-outs/import", "/api/v1/opt-outs/{number}",
                                    "/api/v1/templates", "/api/v1/templates/{template_id}",
                                    "/api/v1/templates/{template_id}/preview", "/webhooks/telnyx", "/l/{code}"}


def test_real_responses_match_the_spec(env):
    single = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "x",
                                                         "media_urls": [env.sample_media_url]})
    assert_matches("SendResponse", single.json())
    group = env.api.post("/api/v1/messages/group", json={"to": [fictional(2), "+442071838750"], "body": "x",
                                                          "metadata": {"a": "b"}})
    assert group.status_code == 207
    assert_matches("GroupResponse", group.json())
    message_id = single.json()["data"]["id"]
    env.wait_status(message_id, "delivered")
    assert_matches("Message", env.api.get(f"/api/v1/messages/{message_id}").json()["data"])
    read = env.api.get(f"/api/v1/messages/group/{group.json()['group_id']}").json()
    assert_matches("GroupRead", read["data"])
    assert_matches("Meta", read["meta"])
    assert_matches("Pricing", env.api.get("/api/v1/pricing/messaging", params={"country": "CA"}).json()["data"])
    scheduled = env.api.post("/api/v1/messages/sms", json={
        "to": fictional(3), "body": "x", "scheduled_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()})
    assert_matches("Message", env.message(scheduled.json()["data"]["id"]))


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("post", "/api/v1/messages/sms", {"json": {"to": "+1", "body": "x"}}),
    ("post", "/api/v1/messages/sms", {"json": {"to": fictional(1)}}),
    ("post", "/api/v1/messages/group", {"json": {"to": [fictional(1), fictional(1)], "body": "x"}}),
    ("post", "/api/v1/messages/group", {"content": b"nope", "headers": {"Content-Type": "application/json"}}),
    ("get", "/api/v1/messages/msg_missing", {}),
    ("get", "/api/v1/pricing/messaging", {}),
])
def test_error_answers_match_the_envelope(env, method, path, kwargs):
    response = getattr(env.api, method)(path, **kwargs)
    assert 400 <= response.status_code < 500
    assert_matches("ErrorEnvelope", response.json())


def test_cancel_answers_and_timed_messages_match_the_spec(env):
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    single = env.api.post("/api/v1/messages/sms", json={
        "to": fictional(4), "body": "x", "scheduled_at": later, "validity_period": 3600,
        "delivery_window": {"days": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"],
                            "from": {"hour": 0, "minute": 0}, "to": {"hour": 23, "minute": 59},
                            "timezone": "America/New_York"}})
    assert single.status_code == 200, single.text
    message = env.message(single.json()["data"]["id"])
    assert message["expires_at"] and message["delivery_window"]
    assert_matches("Message", message)
    canceled = env.api.delete(f"/api/v1/messages/{message['id']}")
    assert canceled.status_code == 200
    assert_matches("Message", canceled.json()["data"])
    refused = env.api.delete(f"/api/v1/messages/{message['id']}/")  # canceled again: the same answer
    assert refused.status_code == 200
    group = env.api.post("/api/v1/messages/group", json={"to": [fictional(5), "+442071838750"], "body": "x",
                                                          "scheduled_at": later})
    answer = env.api.delete(f"/api/v1/messages/group/{group.json()['group_id']}")
    assert answer.status_code == 200
    assert_matches("CancelGroupResponse", answer.json())
    assert_matches("ErrorEnvelope", env.api.delete("/api/v1/messages/msg_missing").json())


def test_batch_answers_match_the_spec(env):
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    accepted = env.api.post("/api/v1/messages/batch", json={
        "recipients": [{"to": fictional(70), "metadata": {"row": "1"}, "client_ref": "r1"},
                       {"to": "+442071838750"}],
        "body": "x", "scheduled_at": later, "sending_speed": {"amount": 60, "time_unit": "minute"},
        "campaign_ref": "spec"})
    assert accepted.status_code == 202, accepted.text
    assert_matches("Batch", accepted.json()["data"])
    assert_matches("Meta", accepted.json()["meta"])
    batch_id = accepted.json()["data"]["id"]
    read = env.api.get(f"/api/v1/batches/{batch_id}")
    assert read.status_code == 200, read.text
    assert_matches("BatchReadResponse", read.json())
    canceled = env.api.delete(f"/api/v1/batches/{batch_id}/")
    assert canceled.status_code == 202, canceled.text
    assert_matches("BatchReadResponse", canceled.json())
    assert canceled.json()["data"]["status"] == "canceled"
    plain = env.api.post("/api/v1/messages/batch", json={"to": [fictional(71)], "body": "x"})
    assert plain.status_code == 202, plain.text
    assert_matches("Batch", plain.json()["data"])
    both = {"to": [fictional(72)], "recipients": [{"to": fictional(72)}], "body": "x"}
    twice = {"to": [fictional(73), fictional(73)], "body": "x"}
    for response in (env.api.get("/api/v1/batches/bat_missing"),
                     env.api.post("/api/v1/messages/batch", json=both),
                     env.api.post("/api/v1/messages/batch", json=twice)):
        assert 400 <= response.status_code < 500, response.text
        assert_matches("ErrorEnvelope", response.json())


def test_customer_events_match_the_spec_and_carry_its_headers(env):
    sent = env.api.post("/api/v1/messages/sms", json={"to": fictional(4), "body": "x", "webhook_url": env.receiver.url})
    env.wait_status(sent.json()["data"]["id"], "delivered")
    wait_for(lambda: len(env.receiver.received) >= 2, 20, "two events")
    headers = [p["name"].lower() for p in spec()["webhooks"]["messageEvent"]["post"]["parameters"] if p["required"]]
    for record in env.receiver.received:
        assert_matches("CustomerEvent", json.loads(record["body"]))
        assert set(headers) <= {k.lower() for k in record["headers"]}, record["headers"]


def test_a_single_send_gate_failure_names_the_field_and_the_stored_message(env):
    failed = env.api.post("/api/v1/messages/sms", json={"to": fictional(5), "body": "x", "from": "+18005559999"})
    assert failed.status_code == 403
    assert_matches("ErrorEnvelope", failed.json())
    error = failed.json()["error"]
    assert error["details"] == [{"field": "from", "issue": error["message"]}]
    assert_matches("Message", env.message(error["message_id"]))


def test_inbound_messages_their_events_and_the_opt_out_api_match_the_spec(env):
    import base64

    from shared.services.received import message_id
    from tools.seed import DEV_SENDER, sample_png

    env.store.accounts.put_tenant(env.tenant_id, {"webhook_url": env.receiver.url})
    media = [{"content_type": "image/png", "data_base64": base64.b64encode(sample_png(8, 8)).decode()},
             {"url": "https://169.254.169.254/x", "content_type": "image/png"}]
    picture = env.sim.post("/_sim/inbound", json={"from": fictional(60), "to": DEV_SENDER, "text": "pic",
                                                  "media": media}).json()["data"]
    stop = env.sim.post("/_sim/inbound", json={"from": fictional(61), "to": DEV_SENDER, "text": "STOP"}).json()["data"]
    types = {"message.received", "recipient.opted_out"}
    wait_for(lambda: types <= {json.loads(r["body"])["type"] for r in env.receiver.received}
             and sum(json.loads(r["body"])["type"] == "message.received" for r in env.receiver.received) >= 2,
             30, "the inbound events")
    for record in env.receiver.received:
        assert_matches("CustomerEvent", json.loads(record["body"]))
    for injected in (picture, stop):
        assert_matches("Message", env.message(message_id(injected["id"])))

    put = env.api.put(f"/api/v1/opt-outs/{fictional(62)}")
    assert put.status_code == 201
    assert_matches("OptOut", put.json()["data"])
    listing = env.api.get("/api/v1/opt-outs", params={"limit": 1}).json()
    assert listing["pagination"]["has_more"] is True
    for entry in listing["data"]:
        assert_matches("OptOut", entry)
    imported = env.api.post("/api/v1/opt-outs/import", json={"numbers": [fictional(63)]}).json()
    assert_matches("OptOutImportResult", imported["data"])
    assert_matches("ErrorEnvelope", env.api.get("/api/v1/opt-outs", params={"cursor": "x!"}).json())


def test_the_template_api_and_templated_sends_match_the_spec(env):
    created = env.api.post("/api/v1/templates", json={"name": "spec", "body": "Hi ((name))", "subject": "((name))"})
    assert created.status_code == 201, created.text
    assert_matches("Template", created.json()["data"])
    template_id = created.json()["data"]["id"]
    edited = env.api.put(f"/api/v1/templates/{template_id}", json={"body": "Hello ((name))"})
    assert_matches("Template", edited.json()["data"])
    listed = env.api.get("/api/v1/templates", params={"limit": 1}).json()
    assert listed["data"] and all(assert_matches("Template", t) is None for t in listed["data"])
    assert_matches("Template", env.api.get(f"/api/v1/templates/{template_id}", params={"version": 1}).json()["data"])
    preview = env.api.post(f"/api/v1/templates/{template_id}/preview",
                           json={"personalisation": {"name": "Ann"}, "to": fictional(80)})
    assert preview.status_code == 200, preview.text
    assert_matches("TemplatePreviewResult", preview.json()["data"])
    send = {"to": fictional(81), "template_id": template_id, "personalisation": {"name": "Ann"}}
    assert_matches("SendRequest", send)
    single = env.api.post("/api/v1/messages/sms", json=send)
    assert single.status_code == 200, single.text
    message = env.message(single.json()["data"]["id"])
    assert message["template"] == {"id": template_id, "version": 2}
    assert_matches("Message", message)
    batch = {"template_id": template_id, "recipients": [{"to": fictional(82), "personalisation": {"name": "Bo"}}]}
    assert_matches("BatchRequest", batch)
    for refused in (env.api.post("/api/v1/messages/sms", json={**send, "personalisation": {}}),
                    env.api.post("/api/v1/messages/sms", json={**send, "template_id": "tpl_missing"}),
                    env.api.get("/api/v1/templates/tpl_missing")):
        assert 400 <= refused.status_code < 500
        assert_matches("ErrorEnvelope", refused.json())
    assert_matches("Template", env.api.delete(f"/api/v1/templates/{template_id}").json()["data"])


def test_a_body_and_a_template_together_break_the_request_schemas():
    for name, payload in (("SendRequest", {"to": "+14155550100", "template_id": "tpl_x", "body": "x"}),
                          ("SendRequest", {"to": "+14155550100"}),
                          ("GroupRequest", {"to": ["+14155550100"], "template_id": "tpl_x", "media_urls": ["u"]})):
        with pytest.raises(AssertionError):
            assert_matches(name, payload)
