"""Telnyx webhook events, parsed and bounded before anything touches the store.

A signature proves an event came from Telnyx, not that every field is one we can use as a key: the
event id names a Firestore document, the leg from ``webhook_url`` names another, and every string is
stored. So the shapes are checked here and a bad event is a 400 ``VALIDATION_ERROR``, never a 500 from
the database refusing a document path (``""``, ``a/b``, ``..``, ``__x__``) or a string it cannot encode.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.parse
from typing import Any

from shared.rules.errors import ApiError, ErrorCode
from shared.rules.frozen import frozen

# Telnyx event ids are UUIDs. Starting with a letter or digit excludes ".", ".." and "__x__", which
# Firestore reserves as document ids; "/" would split the document path.
EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
PROVIDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# What shared.rules.ids hands out as message ids (base32 lower case): nothing else is looked up as a leg.
LEG_ID = re.compile(r"msg_[a-z0-9]{1,64}")
CONVERSATION_ID = re.compile(r"cnv_[a-z0-9]{1,64}")
MAX_WEBHOOK_URL = 2048


@frozen
class Report:
    event_id: str
    event_type: str
    occurred_at: dt.datetime | None
    payload: dict[str, Any]

    @property
    def provider_id(self) -> str | None:
        return self.payload.get("id")

    @property
    def recipient_status(self) -> str:
        to = self.payload.get("to") or [{}]
        return to[0].get("status") or ""

    @property
    def leg_from_url(self) -> str | None:
        """The leg our dispatch named in the webhook URL (inside the signed body), if it is one of our ids."""
        query = urllib.parse.urlsplit(self.payload.get("webhook_url") or "").query
        legs = urllib.parse.parse_qs(query).get("leg") or []
        return legs[0] if legs and LEG_ID.fullmatch(legs[0]) else None

    @property
    def conversation_from_url(self) -> str | None:
        """The conversation (one group_mms) our dispatch named in the webhook URL, if it is one of our ids."""
        query = urllib.parse.urlsplit(self.payload.get("webhook_url") or "").query
        found = urllib.parse.parse_qs(query).get("conversation") or []
        return found[0] if found and CONVERSATION_ID.fullmatch(found[0]) else None

    @property
    def recipient_number(self) -> str | None:
        """The recipient this report is about: a group message's per-recipient webhook lists it first."""
        to = self.payload.get("to") or [{}]
        number = to[0].get("phone_number")
        return number if isinstance(number, str) and number else None


def _invalid(field: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "Not a usable Telnyx webhook event",
                    details=[{"field": field, "issue": issue}])


def _string(value: Any, field: str, pattern: re.Pattern[str] | None = None, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    if pattern is not None and not pattern.fullmatch(value):
        raise _invalid(field, f"must match {pattern.pattern}")
    return value


def _encodable(value: Any, field: str, depth: int = 0) -> None:
    """Every string (and key) must be valid Unicode: JSON lets a lone surrogate through, storage does not."""
    if depth > 32:
        raise _invalid(field, "nests too deeply")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid(field, "contains an unpaired surrogate") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _encodable(key, field, depth + 1)
            _encodable(item, field, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _encodable(item, field, depth + 1)


def _payload(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid("data.payload", "must be an object")
    _encodable(value, "data.payload")
    _string(value.get("id"), "data.payload.id", PROVIDER_ID, optional=True)
    to = value.get("to")
    if to is not None and not (isinstance(to, list) and all(isinstance(item, dict) for item in to)):
        raise _invalid("data.payload.to", "must be a list of objects")
    for item in to or []:
        _string(item.get("status"), "data.payload.to.status", optional=True)
        _string(item.get("phone_number"), "data.payload.to.phone_number", optional=True)
    sender = value.get("from")
    if sender is not None:
        if not isinstance(sender, dict):
            raise _invalid("data.payload.from", "must be an object")
        _string(sender.get("phone_number"), "data.payload.from.phone_number", optional=True)
    errors = value.get("errors")
    if errors is not None and not (isinstance(errors, list) and all(isinstance(item, dict) for item in errors)):
        raise _invalid("data.payload.errors", "must be a list of objects")
    for item in errors or []:
        _string(item.get("title"), "data.payload.errors.title", optional=True)
        _string(item.get("detail"), "data.payload.errors.detail", optional=True)
        if not isinstance(item.get("code"), str | int | None):
            raise _invalid("data.payload.errors.code", "must be a string or a number")
    _string(value.get("text"), "data.payload.text", optional=True)
    url = _string(value.get("webhook_url"), "data.payload.webhook_url", optional=True)
    if url is not None and len(url) > MAX_WEBHOOK_URL:
        raise _invalid("data.payload.webhook_url", f"must be at most {MAX_WEBHOOK_URL} characters")
    return value


def _occurred_at(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    text = _string(value, "data.occurred_at")
    assert text is not None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid("data.occurred_at", "must be an ISO 8601 time") from None
    if parsed.utcoffset() is None:
        raise _invalid("data.occurred_at", "must carry a UTC offset")
    return parsed


def parse_report(raw: bytes) -> Report:
    """The signed body as a Report; a body that is not a usable Telnyx event is a 400."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "Not a Telnyx webhook event") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "Not a Telnyx webhook event")
    event_id = _string(data.get("id"), "data.id", EVENT_ID)
    event_type = _string(data.get("event_type"), "data.event_type", EVENT_TYPE)
    assert event_id is not None and event_type is not None
    return Report(event_id=event_id, event_type=event_type, occurred_at=_occurred_at(data.get("occurred_at")),
                  payload=_payload(data.get("payload")))
