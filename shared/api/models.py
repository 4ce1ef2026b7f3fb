"""Typed request bodies of the public API.

Shape rules live here (types, lengths, unknown fields); rules that need a tenant, a clock or the
network (sender ownership, opt-outs, SSRF, scheduling window) are gates in ``shared.services.sending``.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.rules.phone import InvalidNumber, is_nanp, parse_e164
from shared.rules.templates import MAX_PLACEHOLDER, MAX_VALUE, MAX_VALUES
from shared.rules.windows import DAYS, MIN_LENGTH_MINUTES, UnknownTimeZone, Window, zone

MAX_RECIPIENTS = 20
MAX_MEDIA = 10
MAX_BODY = 1600
MAX_SUBJECT = 64
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500
MAX_URL = 2000
MAX_CLIENT_REF = 4000  # Infobip's callbackData limit
MAX_CONVERSATION = 8  # Telnyx group_mms: "No more than 8 destinations are allowed"

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
ClientRef = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CLIENT_REF), AfterValidator(_unicode)]
# templates (shared/rules/templates.py): a send names one in place of its body, subject and media
TemplateId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")]
PersonalisationValue = Annotated[str, StringConstraints(max_length=MAX_VALUE), AfterValidator(_unicode)]
PersonalisationKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PLACEHOLDER),
                               AfterValidator(_unicode)]
Personalisation = Annotated[dict[PersonalisationKey, PersonalisationValue], Field(max_length=MAX_VALUES)]
_TEMPLATE_OR_CONTENT = "give body (with subject and media) or template_id, not both: a template brings its own"


class SmsFailover(BaseModel):
    """The SMS sent to the same recipient if the MMS fails for a carrier reason (Infobip's ``smsFailover``).
    ``from`` defaults to the MMS's sender; either must be one of the tenant's SMS-capable senders."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: Body
    from_: Phone | None = Field(default=None, alias="from")


MAX_VALIDITY_SECONDS = 48 * 3600  # Infobip's cap on validityPeriod
Day = Literal["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]


class TimeOfDay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hour: int = Field(ge=0, le=23, strict=True)
    minute: int = Field(ge=0, le=59, strict=True)

    @property
    def minutes(self) -> int:
        return self.hour * 60 + self.minute


class DeliveryWindow(BaseModel):
    """Infobip's ``deliveryTimeWindow`` plus a time zone: the weekdays and the hours (``from`` inclusive, ``to``
    exclusive, at least an hour apart, on the zone's wall clock) in which a leg may be sent. Without
    ``from``/``to`` the listed days are open all day."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    days: list[Day] = Field(min_length=1, max_length=7)
    from_: TimeOfDay | None = Field(default=None, alias="from")
    to: TimeOfDay | None = None
    timezone: str = Field(default="UTC", max_length=64)

    @field_validator("days")
    @classmethod
    def _distinct_days(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each day may appear only once")
        return value

    @field_validator("to")
    @classmethod
    def _after_from(cls, value: TimeOfDay | None, info: ValidationInfo) -> TimeOfDay | None:
        start = info.data.get("from_")
        if value is None or start is None:
            return value
        if value.minutes <= start.minutes:
            raise ValueError("must be after from (a window cannot span midnight)")
        if value.minutes - start.minutes < MIN_LENGTH_MINUTES:
            raise ValueError("must be at least one hour after from")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone(value)
        except UnknownTimeZone:
            raise ValueError("unknown time zone: use an IANA name such as America/New_York") from None
        return value

    @model_validator(mode="after")
    def _both_ends(self) -> Self:
        if (self.from_ is None) != (self.to is None):
            raise ValueError("from and to go together: give both, or neither for whole days")
        return self

    def window(self) -> Window:
        days = frozenset(DAYS.index(d) for d in self.days)
        if self.from_ is None or self.to is None:
            return Window(days=days, timezone=self.timezone, whole_day=True)
        return Window(days=days, start=self.from_.minutes, end=self.to.minutes, timezone=self.timezone)


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
    # validity_period (seconds) or expires_at, not both; declared in this order for _one_validity
    validity_period: int | None = Field(default=None, ge=1, le=MAX_VALIDITY_SECONDS, strict=True)
    expires_at: datetime | None = None
    delivery_window: DeliveryWindow | None = None
    webhook_url: Url | None = None
    webhook_failover_url: Url | None = None
    request_dlr: StrictBool = True
    client_ref: ClientRef | None = None
    sms_failover: SmsFailover | None = None
    metadata: dict[str, str] | None = None
    # pins the carrier (docs/decisions.md, "Carrier routing and failover"); else chosen by weight and health
    carrier: Literal["telnyx", "twilio"] | None = None
    # SMS texts (an SMS's body, an MMS's SMS failover text): look-alikes replaced by GSM-7 (shared/rules/segments.py
    # smart_encode); "gsm7" refuses a text that is not GSM-7 after that, as Telnyx's ``encoding`` does
    smart_encoding: StrictBool = False
    encoding: Literal["auto", "gsm7"] = "auto"
    # a template in place of body, subject and media: its id, a version (else the latest), its placeholders' values
    template_id: TemplateId | None = None
    template_version: int | None = Field(default=None, ge=1, strict=True)
    personalisation: Personalisation | None = None
    # link shortening and click tracking (Infobip's object): checked by shared/rules/links.py parse_tracking,
    # whose 400 names ``tracking.<field>``
    tracking: dict[str, Any] | None = None

    @field_validator("scheduled_at", "expires_at")
    @classmethod
    def _needs_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("must be ISO 8601 with a UTC offset, e.g. 2026-01-01T09:00:00Z")
        return value

    @field_validator("expires_at")
    @classmethod
    def _one_validity(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and info.data.get("validity_period") is not None:
            raise ValueError("give validity_period or expires_at, not both")
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
        return check_metadata(value)

    @model_validator(mode="after")
    def _content(self) -> Self:
        if self.template_id is not None:
            if self.body is not None or self.subject is not None or self.all_media_urls or self.media is not None:
                raise ValueError(_TEMPLATE_OR_CONTENT)
            return self
        if self.template_version is not None or self.personalisation is not None:
            raise ValueError("template_version and personalisation go with template_id")
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


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    """A metadata map's limits (a request's, or a batch recipient's own)."""
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


class SendRequest(_Message):
    """POST /api/v1/messages/sms: one recipient; media upgrades it to MMS."""

    to: Phone


class GroupRequest(_Message):
    """POST /api/v1/messages/group: one payload, 1-20 recipients; with ``conversation``, 1-8 NANP recipients in
    one true group conversation (one Telnyx group_mms)."""

    conversation: StrictBool = False  # declared before ``to``, whose validator reads it
    to: list[Phone] = Field(
        min_length=1, max_length=MAX_RECIPIENTS
    )

    @field_validator("to")
    @classmethod
    def _conversation_members(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not info.data.get("conversation"):
            return value
        if len(value) > MAX_CONVERSATION:
            raise ValueError(f"a conversation allows at most {MAX_CONVERSATION} recipients")
        for number in value:
            try:
                nanp = is_nanp(parse_e164(number))
            except InvalidNumber:
                nanp = False
            if not nanp:
                raise ValueError(f"a conversation is MMS to NANP (US/Canada) numbers only; {number} is not one")
        return value


MAX_OPT_OUT_IMPORT = 10_000


class OptOutImport(BaseModel):
    """POST /api/v1/opt-outs/import: up to 10,000 numbers added to the opt-out list (each checked as E.164 by
    shared/services/optouts.py, which names every bad one)."""

    model_config = ConfigDict(extra="forbid")

    numbers: list[Annotated[str, StringConstraints(max_length=32)]] = Field(min_length=1,
                                                                            max_length=MAX_OPT_OUT_IMPORT)
