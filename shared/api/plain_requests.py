"""Send and group bodies in their plain form, checked without pydantic.

pydantic and the request models (``shared.api.models``) are the largest import on the send and group
functions' cold path: about 60-90 ms of a cold start's CPU, the whole gap to its floor (bench/README.md).
Most requests carry only plain fields: ``to``, ``from``, ``body``, ``subject``, ``media_url``, ``media_urls``,
``webhook_url``, ``webhook_failover_url``, ``request_dlr``, ``client_ref``, ``metadata``, ``smart_encoding``,
``encoding`` (a group's ``to`` a list, ``conversation`` false). Their rules are simple, and this module checks
exactly those rules, building an object with every attribute of the model and the values pydantic would give it.

A body with any other field, any other type, or any broken rule gets None here: the handler then validates
it with the models (imported then), which also word the 400's details. So this path never answers an error
itself and never accepts what the models refuse. ``tests/unit/test_plain_requests.py`` holds the two to the
same answers, and fails when a model gains a field this module does not know.
"""

from __future__ import annotations

import re
from typing import Any

# The models' limits (shared/api/models.py), repeated here so this module imports nothing heavy; the unit test
# checks they are the same numbers.
MAX_RECIPIENTS = 20
MAX_MEDIA = 10
MAX_BODY = 1600
MAX_SUBJECT = 64
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500
MAX_URL = 2000
MAX_CLIENT_REF = 4000
MAX_PHONE = 32

_RESERVED_KEY = re.compile(r"__.*__", re.DOTALL)
_TEXT_LIMITS = {"from": MAX_PHONE, "body": MAX_BODY, "subject": MAX_SUBJECT, "media_url": MAX_URL,
                "webhook_url": MAX_URL, "webhook_failover_url": MAX_URL, "client_ref": MAX_CLIENT_REF}
_PLAIN = frozenset(_TEXT_LIMITS) | {"to", "media_urls", "request_dlr", "metadata", "smart_encoding", "encoding"}
ENCODINGS = ("auto", "gsm7")


class _Refused(Exception):
    pass


def _text(value: Any, limit: int) -> str:
    if type(value) is not str or not 1 <= len(value) <= limit:
        raise _Refused
    try:
        value.encode("utf-8")  # a lone surrogate: not storable (the models refuse it too)
    except UnicodeEncodeError:
        raise _Refused from None
    return value


def _optional_text(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return None if value is None else _text(value, _TEXT_LIMITS[key])


class PlainRequest:
    """A send or group body that holds only plain fields: every attribute of ``SendRequest``/``GroupRequest``,
    the ones it cannot hold at their defaults."""

    media = None
    scheduled_at = None
    validity_period = None
    expires_at = None
    delivery_window = None
    sms_failover = None
    conversation = False
    carrier = None
    # a body naming a template takes the models' path
    template_id = None
    template_version = None
    personalisation = None
    tracking = None  # a tracked send takes the models' path

    def __init__(self, payload: dict[str, Any], to: str | list[str]) -> None:
        self.to = to
        self.from_ = _optional_text(payload, "from")
        self.body = _optional_text(payload, "body")
        self.subject = _optional_text(payload, "subject")
        self.media_url = _optional_text(payload, "media_url")
        self.webhook_url = _optional_text(payload, "webhook_url")
        self.webhook_failover_url = _optional_text(payload, "webhook_failover_url")
        self.client_ref = _optional_text(payload, "client_ref")
        urls = payload.get("media_urls")
        if urls is not None:
            if type(urls) is not list or len(urls) > MAX_MEDIA - (1 if self.media_url else 0):
                raise _Refused
            urls = [_text(url, MAX_URL) for url in urls]
        self.media_urls: list[str] | None = urls
        dlr = payload.get("request_dlr", True)
        if type(dlr) is not bool:
            raise _Refused
        self.request_dlr = dlr
        smart = payload.get("smart_encoding", False)
        encoding = payload.get("encoding", "auto")
        if type(smart) is not bool or type(encoding) is not str or encoding not in ENCODINGS:
            raise _Refused
        self.smart_encoding = smart
        self.encoding = encoding
        self.metadata = _metadata(payload.get("metadata"))
        if not self.body and not self.all_media_urls:
            raise _Refused

    @property
    def all_media_urls(self) -> list[str]:
        urls = ([self.media_url] if self.media_url else []) + list(self.media_urls or [])
        return list(dict.fromkeys(urls))

    @property
    def is_mms(self) -> bool:
        return bool(self.all_media_urls)


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if type(value) is not dict or len(value) > MAX_METADATA_KEYS:
        raise _Refused
    for key, item in value.items():
        _text(key, MAX_METADATA_KEY)
        if type(item) is not str or len(item) > MAX_METADATA_VALUE or _RESERVED_KEY.fullmatch(key):
            raise _Refused
        if item:
            _text(item, MAX_METADATA_VALUE)
    return dict(value)


def plain_send(payload: dict[str, Any]) -> PlainRequest | None:
    """POST /api/v1/messages/sms in its plain form, or None (the models decide)."""
    if not _PLAIN.issuperset(payload):
        return None
    try:
        return PlainRequest(payload, _text(payload.get("to"), MAX_PHONE))
    except _Refused:
        return None


def plain_group(payload: dict[str, Any]) -> PlainRequest | None:
    """POST /api/v1/messages/group in its plain form (not a conversation), or None (the models decide)."""
    if not (_PLAIN | {"conversation"}).issuperset(payload) or payload.get("conversation", False) is not False:
        return None
    to = payload.get("to")
    if type(to) is not list or not 1 <= len(to) <= MAX_RECIPIENTS:
        return None
    try:
        return PlainRequest(payload, [_text(number, MAX_PHONE) for number in to])
    except _Refused:
        return None
