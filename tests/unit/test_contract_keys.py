"""The first contract's keys stay for good (docs/releasing.md, CHANGELOG.md): the group answer's items repeat
their ``id`` as ``message_id``, and its summary repeats ``accepted`` as ``succeeded``. Removing either would be
a breaking change of the API; they are part of the contract, not a deprecation."""

from __future__ import annotations

from shared.api.version import VERSION
from shared.rules.status import Status
from shared.services.sending import group_answer
from tests.unit.legs import T0, leg


def test_the_group_answer_keeps_message_id_and_summary_succeeded():
    legs = [leg(Status.QUEUED, id="msg_unit0001", to="+14155550101"),
            leg(Status.SCHEDULED, id="msg_unit0002", to="+14155550102"),
            leg(Status.FAILED, id="msg_unit0003", to="+14155550103", error_code="INVALID_PHONE_NUMBER",
                error_message="not a number")]
    status, body = group_answer("grp_unit", legs, "req_unit", T0)
    assert status == 207
    assert [(m["id"], m["message_id"]) for m in body["messages"]] == [
        ("msg_unit0001", "msg_unit0001"), ("msg_unit0002", "msg_unit0002"), ("msg_unit0003", "msg_unit0003")]
    assert body["summary"] == {"total": 3, "accepted": 1, "failed": 1, "scheduled": 1, "succeeded": 1}
    assert body["meta"]["version"] == VERSION
