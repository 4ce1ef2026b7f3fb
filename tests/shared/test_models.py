"""Property tests of the request models: body, media and metadata rules hold for any input."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.models import MAX_BODY, MAX_MEDIA, GroupRequest, SendRequest

url = st.from_regex(r"https://storage\.googleapis\.com/b/[a-z0-9]{1,12}\.png", fullmatch=True)


@given(body=st.text(min_size=1, max_size=MAX_BODY))
def test_any_body_within_the_limit_is_accepted(body):
    assert SendRequest.model_validate({"to": "+14155550101", "body": body}).body == body


@given(body=st.text(min_size=MAX_BODY + 1, max_size=MAX_BODY + 200))
def test_any_body_over_the_limit_is_rejected(body):
    with pytest.raises(ValidationError):
        SendRequest.model_validate({"to": "+14155550101", "body": body})


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


@given(key=st.text(min_size=1, max_size=60), value=st.text(max_size=600))
def test_metadata_limits(key, value):
    payload = {"to": ["+14155550101"], "body": "x", "metadata": {key: value}}
    if len(key) > 40 or len(value) > 500:
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
