"""Typed request bodies of the public API.

Shape rules live here (types, lengths, unknown fields); rules that need a tenant, a clock or the
network (sender ownership, opt-outs, SSRF, scheduling window) are gates in ``shared.sending``.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_RECIPIENTS = 20
MAX_MEDIA = 10
MAX_BODY = 1600
MAX_SUBJECT = 64
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500
MAX_URL = 2000

MAX_CONTENT_TYPE = 127
MAX_FILENAME = 255

# Firestore reserves field names matching __.*__ (metadata keys become field names of the stored map).
_RESERVED_KEY = re.compile(r"__.*__", re.DOTALL)
_UNPAIRED_SURROGATE = "contains an unpaired surrogate (not valid Unicode)"


def _unicode(value: str) -> str:
    """JSON can carry a lone surrogate ("\\ud800"); Firestore cannot store it, so the request is refused."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(_UNPAIRED_SURROGATE) from None
    return value


# Every string a request carries is stored (on the leg, the idempotency record or an event), so each is
# checked for valid Unicode after its length rules.
Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL), AfterValidator(_unicode)]
Phone = Annotated[str, StringConstraints(min_length=1, max_length=32), AfterValidator(_unicode)]
Body = Annotated[str, StringConstraints(min_length=1, max_length=MAX_BODY), AfterValidator(_unicode)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUBJECT), AfterValidator(_unicode)]
ContentType = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTENT_TYPE), AfterValidator(_unicode)]
Blob = Annotated[str, StringConstraints(min_length=1), AfterValidator(_unicode)]
Filename = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILENAME, pattern=r'^[^\x00-\x1f\x7f"\\/]+$'),
                     AfterValidator(_unicode)]


class MediaBlob(BaseModel):
    """An attachment sent inline, base64-encoded. The 64 KB request body limit keeps uploads small (about
    47 KB of content); larger media is sent by URL. Type and size rules are the same as for URLs."""

    model_config = ConfigDict(extra="forbid")

    content_type: ContentType
    blob: Blob
    filename: Filename | None = None

    @field_validator("blob")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be standard base64") from None
        return value

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.blob, validate=True)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=False)

    from_: Phone | None = Field(default=None, alias="from")
    body: Body | None = None
    subject: Subject | None = None
    media_url: Url | None = None
    media_urls: list[Url] | None = Field(default=None, max_length=MAX_MEDIA)
    media: list[MediaBlob] | None = Field(default=None, max_length=MAX_MEDIA)
    scheduled_at: datetime | None = None
    webhook_url: Url | None = None
    metadata: dict[str, str] | None = None

    @field_validator("scheduled_at")
    @classmethod
    def _needs_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("must be ISO 8601 with a UTC offset, e.g. 2026-01-01T09:00:00Z")
        return value

    @field_validator("media_urls")
    @classmethod
    def _media_total(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is not None and len(value) + (1 if info.data.get("media_url") else 0) > MAX_MEDIA:
            raise ValueError(f"media_url and media_urls together allow at most {MAX_MEDIA} attachments")
        return value

    @field_validator("media")
    @classmethod
    def _attachments_total(cls, value: list[MediaBlob] | None, info: ValidationInfo) -> list[MediaBlob] | None:
        urls = len(info.data.get("media_urls") or []) + (1 if info.data.get("media_url") else 0)
        if value is not None and len(value) + urls > MAX_MEDIA:
            raise ValueError(f"media_url, media_urls and media together allow at most {MAX_MEDIA} attachments")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
        for key, item in value.items():
            if not key or len(key) > MAX_METADATA_KEY:
                raise ValueError(f"keys must be 1-{MAX_METADATA_KEY} characters")
            if _RESERVED_KEY.fullmatch(key):
                raise ValueError("keys of the form __name__ are reserved")
            if len(item) > MAX_METADATA_VALUE:
                raise ValueError(f"values must be at most {MAX_METADATA_VALUE} characters")
            for text in (key, item):
                _unicode(text)
        return value

    @model_validator(mode="after")
    def _content(self):
        if not self.body and not self.all_media_urls and not self.media:
            raise ValueError("at least one of body or media is required")
        return self

    @property
    def all_media_urls(self) -> list[str]:
        urls = ([self.media_url] if self.media_url else []) + list(self.media_urls or [])
        return list(dict.fromkeys(urls))

    @property
    def is_mms(self) -> bool:
        return bool(self.all_media_urls or self.media)


class SendRequest(_Message):
    """POST /api/v1/messages/sms: one recipient; media upgrades it to MMS."""

    to: Phone


class GroupRequest(_Message):
    """POST /api/v1/messages/group: one payload, 1-20 recipients."""

    to: list[Phone] = Field(
        min_length=1, max_length=MAX_RECIPIENTS
    )
