"""Errors that teach (issue 24, item 3): a refused media URL says which one (its field, the URL without secrets)
and why (the host allowlist and how an operator allows a host, the address check, the form); an invalid number
says where it is and the form expected; the 401 names the X-API-Key header. Codes and the envelope stay."""

from __future__ import annotations

import pytest

from shared.api.models import SendRequest
from shared.rules import gates
from shared.rules.errors import ApiError, ErrorCode, message_for, unauthorized
from shared.rules.media import MediaError
from shared.rules.ssrf import media_url_problem, shown_url
from shared.services.sending import media_field, media_url_fields


@pytest.mark.parametrize(("url", "shown"), [
    ("https://storage.googleapis.com/b/o.png", "https://storage.googleapis.com/b/o.png"),
    ("https://user:pw@cdn.example.com/a.jpg?token=s3cret#frag", "https://cdn.example.com/a.jpg"),
    ("https://a@b@cdn.example.com:8443/x?y", "https://cdn.example.com:8443/x"),
    ("user:pw@cdn.example.com/a?b", "cdn.example.com/a"),
    ("https://cdn.example.com/a b\x00c", "https://cdn.example.com/a?b?c"),
    (42, "(not a string)"),
])
def test_a_shown_url_has_no_user_information_query_or_fragment(url, shown):
    assert shown_url(url) == shown


def test_a_long_url_is_shortened():
    shown = shown_url("https://cdn.example.com/" + "a" * 500)
    assert len(shown) == 120 and shown.endswith("...")


def test_the_allowlist_says_which_url_and_how_an_operator_allows_a_host():
    text = media_url_problem("media_urls[1]", "https://u:p@cdn.example.com/cat.jpg?sig=s3cret",
                             "host is not on the allowlist")
    assert text.startswith("media_urls[1] (https://cdn.example.com/cat.jpg) is not on the media host allowlist")
    assert "host cdn.example.com is not allowed" in text
    assert "MEDIA_ALLOWED_HOSTS" in text and "extra_allowed_hosts" in text
    assert "s3cret" not in text and "u:p" not in text


@pytest.mark.parametrize("reason", ["host is a literal IP address", "host is an internal name",
                                    "host does not resolve", "resolves to a private address (169.254.169.254)"])
def test_an_address_check_is_named_as_such(reason):
    text = media_url_problem("media_url", "https://metadata.example.com/x", reason)
    assert text.startswith(f"media_url (https://metadata.example.com/x) failed the address check: {reason}.")
    assert "allowlist" not in text


def test_a_redirect_names_both_urls_and_the_check_of_the_target():
    text = media_url_problem("media_urls[0]", "https://storage.googleapis.com/b/o", "host is not on the allowlist",
                             redirected_to="https://cdn.example.com/o?t=secret")
    assert text.startswith("media_urls[0] (https://storage.googleapis.com/b/o) redirected to "
                           "https://cdn.example.com/o, which is not on the media host allowlist")
    assert "host cdn.example.com" in text and "secret" not in text


def test_the_form_and_the_port_are_named():
    assert media_url_problem("media_urls[0]", "http://x.example.com/a", "scheme must be https") == (
        "media_urls[0] (http://x.example.com/a) was refused: scheme must be https")
    assert "host:port in MEDIA_ALLOWED_HOSTS" in media_url_problem("media_url", "https://x.example.com:8443/",
                                                                    "port is not allowed")


def test_without_a_field_the_fetcher_still_says_which_url():
    assert media_url_problem(None, "https://x.example.com/a?b", "host does not resolve").startswith(
        "media URL https://x.example.com/a failed the address check")


def _request(**fields) -> SendRequest:
    return SendRequest.model_validate({"to": "+14155552671", "body": "x", **fields})


def test_each_distinct_media_url_is_named_by_the_field_it_was_first_given_in():
    req = _request(media_url="https://a.example.com/1", media_urls=["https://b.example.com/2",
                                                                    "https://a.example.com/1",
                                                                    "https://c.example.com/3"])
    assert media_url_fields(req) == [("media_url", "https://a.example.com/1"),
                                     ("media_urls[0]", "https://b.example.com/2"),
                                     ("media_urls[2]", "https://c.example.com/3")]
    assert [url for _, url in media_url_fields(req)] == req.all_media_urls


def test_a_fetch_time_refusal_is_rewritten_with_the_urls_position():
    req = _request(media_urls=["https://storage.googleapis.com/b/1", "https://storage.googleapis.com/b/2"])
    exc = MediaError(ErrorCode.MEDIA_URL_REJECTED, "media URL ...", url="https://storage.googleapis.com/b/2",
                     reason="host is not on the allowlist", redirected_to="https://cdn.example.com/2")
    assert media_field(req, exc) == "media_urls[1]"
    assert exc.message.startswith("media_urls[1] (https://storage.googleapis.com/b/2) redirected to "
                                  "https://cdn.example.com/2, which is not on the media host allowlist")
    other = MediaError(ErrorCode.MEDIA_TOO_LARGE, "too large")
    assert media_field(req, other) == "media_urls" and other.message == "too large"
    assert media_field(_request(), other) == "media"


@pytest.mark.parametrize(("raw", "reason"), [
    ("(415) 555-2671", "phone number must be in E.164 format (+ and 8 to 15 digits)"),
    ("+1415555010", "phone number is not valid"),
    ("+99912345678", "unknown country calling code"),
])
def test_an_invalid_number_names_its_position_and_the_form_expected(raw, reason):
    text = gates.invalid_number_message(raw, "to[3]")
    assert text == (f"to[3] is not a valid phone number ({reason}): expected E.164, a + followed by the country "
                    "code and the number, digits only, e.g. +14155552671")


def test_the_default_texts_teach_the_form_and_the_header():
    assert "E.164" in message_for(ErrorCode.INVALID_PHONE_NUMBER)
    assert "+14155552671" in message_for(ErrorCode.INVALID_PHONE_NUMBER)
    assert "MEDIA_ALLOWED_HOSTS" in message_for(ErrorCode.MEDIA_URL_REJECTED)
    assert "address check" in message_for(ErrorCode.MEDIA_URL_REJECTED)


@pytest.mark.parametrize(("key", "issue"), [(None, "missing"), ("", "missing"),
                                            ("mk_live_x", "unknown or revoked key")])
def test_the_401_names_the_x_api_key_header(key, issue):
    error = unauthorized(key)
    assert isinstance(error, ApiError) and error.code is ErrorCode.UNAUTHORIZED and error.status == 401
    assert "X-API-Key header" in error.message
    assert error.details == [{"field": "X-API-Key", "issue": issue}]
