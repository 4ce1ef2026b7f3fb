"""Property tests of the request models: body, media and metadata rules hold for any input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.api.models import GroupRequest, SendRequest

# The contract's limits (docs/openapi.yaml: body maxLength 1600, media maxItems 10), not the models' constants.
MAX_BODY = 1600
MAX_MEDIA = 10

url = st.from_regex(r"https://storage\.googleapis\.com/b/[a-z0-9]{1,12}\.png", fullmatch=True)


@given(body=st.text(min_size=1, max_size=MAX_BODY))
def test_any_body_within_the_limit_is_accepted(body):
    assert SendRequest.model_validate({"to": "+14155550101", "body": body}).body == body


@settings(max_examples=25)  # the length decides; each example is a 1.6k-character draw
@given(body=st.text(min_size=MAX_BODY + 1, max_size=MAX_BODY + 200))
def test_any_body_over_the_limit_is_rejected(body):
    with pytest.raises(ValidationError):
        SendRequest.model_validate({"to": "+14155550101", "body": body})


@settings(max_examples=50)  # the count of URLs decides (0 to 14 of them)
@given(single=st.one_of(st.none(), url), many=st.lists(url, max_size=MAX_MEDIA + 3))
def test_media_url_and_media_urls_together_allow_ten(single, many):
    payload = {"to": "+14155550101", "media_url": single, "media_urls": many}
    total = len(many) + (1 if single else 0)
    if total > MAX_MEDIA or total == 0:
        with pytest.raises(ValidationError):
            SendRequest.model_validate(payload)
    else:
        request = SendRequest.model_validate(payload)
        assert request.is_mms
        assert len(request.all_media_urls) == len(dict.fromkeys(([single] if single else []) + many))


def _reserved(key: str) -> bool:
    """Firestore's reserved field names: two underscores, anything, two underscores."""
    return len(key) >= 4 and key.startswith("__") and key.endswith("__")


@given(key=st.text(min_size=1, max_size=60) | st.from_regex(r"__.{0,10}__", fullmatch=True),
       value=st.text(max_size=600))
def test_metadata_limits(key, value):
    payload = {"to": ["+14155550101"], "body": "x", "metadata": {key: value}}
    if len(key) > 40 or len(value) > 500 or _reserved(key):
        with pytest.raises(ValidationError):
            GroupRequest.model_validate(payload)
    else:
        assert GroupRequest.model_validate(payload).metadata == {key: value}


@given(extra=st.text(min_size=1, max_size=20).filter(
    lambda k: k not in SendRequest.model_fields and k not in {"from", "to"}))
def test_unknown_fields_are_always_rejected(extra):
    with pytest.raises(ValidationError):
        SendRequest.model_validate({"to": "+14155550101", "body": "x", extra: 1})


@given(recipients=st.lists(st.just("+14155550101"), min_size=21, max_size=30))
def test_more_than_twenty_recipients_is_rejected(recipients):
    with pytest.raises(ValidationError):
        GroupRequest.model_validate({"to": recipients, "body": "x"})


# -- hostile text ----------------------------------------------------------------------------------
# JSON can carry a lone surrogate ("\ud800"): json.loads makes it a str that no UTF-8 encoder (Firestore's,
# protobuf's) accepts, so every stored string must refuse it with a 400 naming the field.
surrogate = st.integers(0xD800, 0xDFFF).map(chr)
text_with_surrogate = st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), surrogate, st.text(max_size=5))

_MEDIA = {"content_type": "image/png", "blob": "aGk="}


def _fields(payload: dict, field: str, hostile: str) -> tuple[dict, str]:
    """``payload`` with ``hostile`` put into ``field``; the field name the error must carry."""
    if field == "metadata.key":
        return {**payload, "metadata": {hostile: "v"}}, "metadata"
    if field == "metadata.value":
        return {**payload, "metadata": {"k": hostile}}, "metadata"
    if field == "media.filename":
        return {**payload, "media": [{**_MEDIA, "filename": hostile}]}, "media.0.filename"
    if field == "media.content_type":
        return {**payload, "media": [{**_MEDIA, "content_type": hostile}]}, "media.0.content_type"
    if field == "media_urls":
        return {**payload, "media_urls": [hostile]}, "media_urls.0"
    return {**payload, field: hostile}, field


STRING_FIELDS = ["body", "subject", "from", "to", "media_url", "media_urls", "webhook_url", "metadata.key",
                 "metadata.value", "media.filename", "media.content_type"]


def _error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in err["loc"]) for err in exc.errors()}


@pytest.mark.parametrize("field", STRING_FIELDS)
@given(hostile=text_with_surrogate)
def test_a_lone_surrogate_in_any_stored_string_is_refused_naming_the_field(field, hostile):
    payload, name = _fields({"to": "+14155550101", "body": "x"}, field, hostile)
    with pytest.raises(ValidationError) as caught:
        SendRequest.model_validate(payload)
    assert name in _error_fields(caught.value)


@given(hostile=text_with_surrogate)
def test_a_lone_surrogate_in_a_group_recipient_is_refused(hostile):
    with pytest.raises(ValidationError) as caught:
        GroupRequest.model_validate({"to": ["+14155550101", hostile], "body": "x"})
    assert "to.1" in _error_fields(caught.value)


@given(key=st.from_regex(r"__[^\x00]{0,36}__", fullmatch=True))
def test_a_reserved_metadata_key_is_refused_naming_metadata(key):
    with pytest.raises(ValidationError) as caught:
        SendRequest.model_validate({"to": "+14155550101", "body": "x", "metadata": {"ok": "1", key: "v"}})
    assert _error_fields(caught.value) == {"metadata"}


@pytest.mark.parametrize("key", ["a.b", "a/b", "`a`", "a`b", "__", "_x_", "__x", "x__", "a[0]", "*", "$x"])
def test_metadata_keys_firestore_stores_verbatim_are_accepted(key):
    # Metadata is one map value, not a field path: these names are stored as they are (the stack test
    # tests/functions/test_hostile_input.py reads them back).
    request = SendRequest.model_validate({"to": "+14155550101", "body": "x", "metadata": {key: "v"}})
    assert request.metadata == {key: "v"}


@given(body=st.text(min_size=1, max_size=MAX_BODY))
def test_valid_unicode_is_never_refused_for_being_unicode(body):
    request = GroupRequest.model_validate({"to": ["+14155550101"], "body": body, "metadata": {"k": body[:500]}})
    assert request.body == body
