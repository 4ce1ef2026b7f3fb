"""shared/api/plain_requests.py against the pydantic models: whatever the plain path accepts, the models accept with
the same values; plain bodies take the plain path; anything else is left to the models."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.api import models, plain_requests
from shared.api.models import GroupRequest, SendRequest
from shared.api.plain_requests import PlainRequest, plain_group, plain_send

PROPERTIES = ("all_media_urls", "is_mms")


def _pydantic(model, payload):
    try:
        return model.model_validate(payload)
    except ValidationError:
        return None


def _same(plain: PlainRequest, validated) -> None:
    for name in [*type(validated).model_fields, *PROPERTIES]:
        assert getattr(plain, name) == getattr(validated, name), name


def test_the_plain_request_has_every_field_of_both_models():
    """A field added to a model must be known here too (with its default, or handled), or the service would
    read an attribute the plain request lacks."""
    known = {name for name in vars(PlainRequest) if not name.startswith("_")} | set(
        vars(PlainRequest(dict(body="x"), "+14155550101")))
    assert set(SendRequest.model_fields) <= known
    assert set(GroupRequest.model_fields) <= known


def test_the_limits_are_the_models():
    for name in ("MAX_RECIPIENTS", "MAX_MEDIA", "MAX_BODY", "MAX_SUBJECT", "MAX_METADATA_KEYS", "MAX_METADATA_KEY",
                 "MAX_METADATA_VALUE", "MAX_URL", "MAX_CLIENT_REF"):
        assert getattr(plain_requests, name) == getattr(models, name), name


TO = "+14155550101"
URL = "https://example.com/a.png"
PLAIN = [
    {"to": TO, "body": "hello"},
    {"to": TO, "media_urls": [URL]},
    {"to": TO, "media_url": URL, "media_urls": [URL, URL + "?2"]},
    {"to": TO, "from": "+18005551234", "body": "x" * 1600, "subject": "s" * 64, "media_urls": [],
     "webhook_url": URL, "webhook_failover_url": URL, "request_dlr": False, "client_ref": "c" * 4000,
     "metadata": {"k": "", "a" * 40: "v" * 500}},
    {"to": TO, "body": "héllo ✓ 😀", "metadata": None, "subject": None, "from": None, "media_urls": None},
    {"to": TO, "media_urls": [f"{URL}?{i}" for i in range(10)]},
    {"to": TO, "body": "x", "metadata": {f"k{i}": "v" for i in range(20)}},
    {"to": TO, "body": "x\u2019s", "smart_encoding": True, "encoding": "gsm7"},
    {"to": TO, "body": "x", "smart_encoding": False, "encoding": "auto"},
]


@pytest.mark.parametrize("payload", PLAIN)
def test_plain_bodies_take_the_plain_path_with_the_models_values(payload):
    plain = plain_send(payload)
    assert plain is not None
    _same(plain, SendRequest.model_validate(payload))
    group = {**payload, "to": [TO, "+14155550102"]}
    plain_g = plain_group(group)
    assert plain_g is not None
    _same(plain_g, GroupRequest.model_validate(group))


def test_the_encoding_fields_keep_their_values():
    plain = plain_send({"to": TO, "body": "x", "smart_encoding": True, "encoding": "gsm7"})
    assert plain is not None and (plain.smart_encoding, plain.encoding) == (True, "gsm7")
    plain = plain_send({"to": TO, "body": "x"})
    assert plain is not None and (plain.smart_encoding, plain.encoding) == (False, "auto")


LEFT_TO_THE_MODELS = [
    {"to": TO},  # no content
    {"to": TO, "body": ""},
    {"to": TO, "body": "x" * 1601},
    {"to": TO, "body": 5},
    {"to": TO, "body": "\ud800"},  # a lone surrogate
    {"to": "", "body": "x"},
    {"to": "+1" + "4" * 40, "body": "x"},
    {"to": [TO], "body": "x"},
    {"body": "x"},
    {"to": TO, "body": "x", "request_dlr": None},
    {"to": TO, "body": "x", "request_dlr": 1},
    {"to": TO, "media_url": URL, "media_urls": [f"{URL}?{i}" for i in range(10)]},
    {"to": TO, "media_urls": [f"{URL}?{i}" for i in range(11)]},
    {"to": TO, "media_urls": URL},
    {"to": TO, "media_urls": [""]},
    {"to": TO, "body": "x", "metadata": {"__x__": "v"}},
    {"to": TO, "body": "x", "metadata": {"": "v"}},
    {"to": TO, "body": "x", "metadata": {"k": 1}},
    {"to": TO, "body": "x", "metadata": {f"k{i}": "v" for i in range(21)}},
    {"to": TO, "body": "x", "metadata": {"k": "v" * 501}},
    {"to": TO, "body": "x", "metadata": []},
    {"to": TO, "body": "x", "smart_encoding": "true"},
    {"to": TO, "body": "x", "smart_encoding": 1},
    {"to": TO, "body": "x", "smart_encoding": None},
    {"to": TO, "body": "x", "encoding": "ucs2"},
    {"to": TO, "body": "x", "encoding": "GSM7"},
    {"to": TO, "body": "x", "encoding": None},
    # valid, but not plain: the models handle them
    {"to": TO, "body": "x", "from_": "+18005551234"},
    {"to": TO, "body": "x", "scheduled_at": "2030-01-01T00:00:00Z"},
    {"to": TO, "body": "x", "validity_period": 60},
    {"to": TO, "body": "x", "unknown": 1},
    {"to": TO, "media": [{"content_type": "image/png", "blob": "AAAA"}]},
    {"to": TO, "body": "x https://a.example", "tracking": {}},
]


@pytest.mark.parametrize("payload", LEFT_TO_THE_MODELS)
def test_anything_else_is_left_to_the_models(payload):
    assert plain_send(payload) is None


def test_group_specifics():
    assert plain_group({"to": [], "body": "x"}) is None
    assert plain_group({"to": [TO] * 21, "body": "x"}) is None
    assert plain_group({"to": TO, "body": "x"}) is None
    assert plain_group({"to": [TO], "body": "x", "conversation": True}) is None
    assert plain_group({"to": [TO], "body": "x", "conversation": 0}) is None
    plain = plain_group({"to": [TO], "body": "x", "conversation": False})
    assert plain is not None and plain.conversation is False


_text = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.text(min_size=1590, max_size=1610),
                  st.sampled_from(["", "x", "\ud800", URL, "a" * 2001, "__k__"]))
_fields = st.dictionaries(
    st.sampled_from(["to", "from", "from_", "body", "subject", "media_url", "media_urls", "webhook_url",
                     "webhook_failover_url", "request_dlr", "client_ref", "metadata", "conversation", "other",
                     "smart_encoding", "encoding"]),
    st.one_of(_text, st.booleans(), st.sampled_from(["auto", "gsm7", "ucs2", "Auto"]), st.lists(_text, max_size=12),
              st.dictionaries(st.one_of(st.text(max_size=3), st.just("__x__"), st.just("k" * 41)), _text,
                              max_size=22)),
    max_size=8)


@settings(max_examples=100, deadline=None)
@given(_fields, st.booleans())
def test_whatever_the_plain_path_accepts_the_models_accept_alike(payload, from_a_valid_base):
    base = {"to": TO, "body": "x"} if from_a_valid_base else {}
    for plain_path, model, fix in ((plain_send, SendRequest, None), (plain_group, GroupRequest, list)):
        body = {**base, **payload}
        if fix is not None and isinstance(body.get("to"), str):
            body["to"] = [body["to"]]
        plain = plain_path(body)
        if plain is not None:
            validated = _pydantic(model, body)
            assert validated is not None, body
            _same(plain, validated)
