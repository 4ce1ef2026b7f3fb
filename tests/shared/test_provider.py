"""The provider port's pure rules: how Telnyx answers are classified, and the per-leg idempotency key.
No emulator, no network."""

from __future__ import annotations

from typing import Any

import pytest

from shared.carriers.provider import (
    IDEMPOTENCY_MISMATCH_CODE,
    Kind,
    Lookup,
    LookupState,
    OutboundMessage,
    classify,
    idempotency_key_for,
)


@pytest.mark.parametrize("status, code, kind", [
    (200, None, Kind.ACCEPTED),
    (202, None, Kind.ACCEPTED),
    # STOP block (telnyx.md §1.5: 409 / 40300) is an opt-out, whatever the status.
    (409, "40300", Kind.OPT_OUT),
    # Rate limit, queue full, spend limit, request timeout, server errors: the provider did not take it.
    (429, "10011", Kind.TRANSIENT),
    (429, "40318", Kind.TRANSIENT),
    (429, "40333", Kind.TRANSIENT),
    (408, None, Kind.TRANSIENT),
    (500, "10007", Kind.TRANSIENT),
    (503, None, Kind.TRANSIENT),
    # Validation errors: no retry can fix them.
    (400, "40310", Kind.PERMANENT),
    (400, "10016", Kind.PERMANENT),
    (400, "40317", Kind.PERMANENT),
    (401, "10009", Kind.PERMANENT),
    (404, "10005", Kind.PERMANENT),
])
def test_classification_of_ordinary_answers(status, code, kind):
    assert classify(status, code) is kind


def test_a_reused_key_with_another_body_is_ambiguous_not_permanent():
    """Telnyx answers 422 when the key's record exists and the body differs: it has a message under it."""
    assert classify(422, IDEMPOTENCY_MISMATCH_CODE) is Kind.AMBIGUOUS
    assert classify(422, "10012") is Kind.AMBIGUOUS


@pytest.mark.parametrize("code", [None, "10099", "99999"])
def test_a_422_whose_code_is_not_a_validation_code_is_ambiguous(code):
    """The real code of the idempotency 422 is unconfirmed: an unknown one must not fail a sent message."""
    assert classify(422, code) is Kind.AMBIGUOUS


@pytest.mark.parametrize("code", ["10004", "10016", "10015", "40310", "40316", "40317"])
def test_a_422_carrying_a_documented_validation_code_is_permanent(code):
    assert classify(422, code) is Kind.PERMANENT


def test_the_simulator_answers_the_code_the_classifier_knows():
    from tools.telnyx_sim import wire

    assert wire.IDEMPOTENCY_MISMATCH_CODE == IDEMPOTENCY_MISMATCH_CODE
    assert wire.idempotency_mismatch("k").status == 422


def message(**overrides) -> OutboundMessage:
    values: dict[str, Any] = dict(message_id="msg_abc234", to="+12125550100", from_="+15005550006", text="hi",
                                  subject=None, media_urls=(),
                                  webhook_url="https://gw.example/webhooks/telnyx?leg=msg_abc234")
    values.update(overrides)
    return OutboundMessage(**values)


def test_the_key_defaults_to_one_derived_from_the_leg():
    assert message().idempotency_key == "mmsgate:msg_abc234"
    assert idempotency_key_for("msg_abc234") == "mmsgate:msg_abc234"
    assert message(idempotency_key="explicit-1").idempotency_key == "explicit-1"


@pytest.mark.parametrize("key", ["has space", "a/b", "x" * 256, "é"])
def test_a_key_telnyx_would_refuse_is_a_programming_error(key):
    with pytest.raises(ValueError, match="idempotency key"):
        message(idempotency_key=key)


def test_a_key_at_the_length_limit_is_accepted():
    assert len(message(idempotency_key="k" * 255).idempotency_key) == 255


def test_lookup_defaults():
    assert Lookup(LookupState.ABSENT) == Lookup(LookupState.ABSENT, provider_id=None, status=None, detail="")
    assert {s.value for s in LookupState} == {"found", "absent", "unknown"}
