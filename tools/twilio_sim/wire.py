"""Twilio wire formats: error bodies, SIDs, dates, request validation, the Message resource (twilio.md §1, §2)."""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
TOLL_FREE = re.compile(r"^\+18(00|33|44|55|66|77|88)\d{7}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")
MAX_MEDIA_URLS = 10
MAX_BODY_CHARS = 1600
MAX_VALIDITY_S = 36_000
PRICE_PER_SEGMENT = "-0.00790"  # a US SMS segment (the simulator's figure; prices are strings, §1)
PRICE_MMS = "-0.02000"


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc2822(ts: datetime | None) -> str | None:
    """``Thu, 24 Aug 2023 05:01:45 +0000`` (§1: RFC 2822, GMT)."""
    return None if ts is None else format_datetime(ts.astimezone(UTC).replace(microsecond=0))


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


# ---------------------------------------------------------------- errors (§1: {code, message, more_info, status})


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"HTTP {status}: {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}", "status": self.status}


def bad_request(code: int, message: str) -> ApiError:
    return ApiError(400, code, message)


def auth_failed() -> ApiError:
    return ApiError(401, 20003, "Authenticate")


def not_found(path: str) -> ApiError:
    return ApiError(404, 20404, f"The requested resource {path} was not found")


def rate_limited() -> ApiError:
    # No Retry-After: twilio.md §7 documents none (harsher: the client picks its own backoff).
    return ApiError(429, 20429, "Too Many Requests")


def server_error() -> ApiError:
    return ApiError(500, 20500, "Internal Server Error")


def unavailable() -> ApiError:
    return ApiError(503, 20503, "Service Unavailable")


def opted_out() -> ApiError:
    return bad_request(21610, "Attempt to send to unsubscribed recipient")


SYNC_ERRORS = {
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {from_} via SMS.",
    21614: "'To' number {to} is not a valid mobile number",
}


# ---------------------------------------------------------------- text and segments


_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def segments(body: str) -> int:
    """SMS segments: 160 GSM-7 / 70 UCS-2 characters in one (§1); a longer body is split in 153 / 67
    (the standard concatenation header, an inference: twilio.md gives only the single-segment sizes)."""
    if not body:
        return 1
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        units = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        return 1 if units <= 160 else -(-units // 153)
    units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in body)
    return 1 if units <= 70 else -(-units // 67)


# ---------------------------------------------------------------- the create request


@dataclass
class SendRequest:
    to: str
    from_: str | None
    body: str
    media_urls: list[str]
    status_callback: str | None
    validity_s: int
    messaging_service_sid: str | None

    @property
    def attempt_key(self) -> tuple[str, str, str]:
        return (self.to, self.from_ or self.messaging_service_sid or "", self.body)


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[-1] if values else None


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def parse_send(form: dict[str, list[str]], owned: list[str]) -> SendRequest:
    """Validate a create, in the order the codes are listed (§1, §3, §10.3); raise the first 400."""
    to = (_one(form, "To") or "").strip()
    from_ = (_one(form, "From") or "").strip() or None
    service = (_one(form, "MessagingServiceSid") or "").strip() or None
    body = _one(form, "Body") or ""
    media = [u.strip() for u in form.get("MediaUrl", []) if u.strip()]
    callback = (_one(form, "StatusCallback") or "").strip() or None
    if not to:
        raise bad_request(21604, "A 'To' phone number is required.")
    if service is None and from_ is None:
        raise bad_request(21603, "A 'From' phone number is required.")
    if service is not None and not MESSAGING_SERVICE_SID.match(service):
        raise bad_request(21701, f"The Messaging Service Sid {service} is invalid.")
    if from_ is not None:
        if not E164.match(from_):
            raise bad_request(21606, f"The From phone number {from_} is not a valid, SMS-capable inbound phone "
                                     "number or short code for your account.")
        if owned and from_ not in owned:
            raise bad_request(21660, f"Mismatch between the 'From' number {from_} and the account")
    if not E164.match(to) or to == from_:
        raise bad_request(21211, f"Invalid 'To' Phone Number: {to}")
    if not body and not media:
        raise bad_request(21602, "Message body is required.")
    if len(body) > MAX_BODY_CHARS:
        raise bad_request(21658, f"Body exceeds the {MAX_BODY_CHARS} character limit.")
    if len(media) > MAX_MEDIA_URLS:
        raise bad_request(21620, f"Too many media URLs: {len(media)}; at most {MAX_MEDIA_URLS} are allowed.")
    for url in media:
        if not _valid_url(url):
            raise bad_request(21620, f"Invalid media URL(s): {url}")
    if callback is not None:
        parts = urlsplit(callback)
        if not _valid_url(callback) or "_" in (parts.hostname or ""):
            raise bad_request(21609, f"Invalid StatusCallback url: {callback}")
    raw_validity = _one(form, "ValidityPeriod")
    validity = MAX_VALIDITY_S
    if raw_validity is not None and raw_validity.strip():
        try:
            validity = int(raw_validity.strip())
        except ValueError:
            validity = -1
        if not 1 <= validity <= MAX_VALIDITY_S:
            raise bad_request(21624, "Validity period can only be set to integers between 1 and 36,000 seconds.")
    return SendRequest(to=to, from_=from_, body=body, media_urls=media, status_callback=callback,
                       validity_s=validity, messaging_service_sid=service)


# ---------------------------------------------------------------- the Message resource


@dataclass
class Message:
    sid: str
    account_sid: str
    request: SendRequest
    from_: str
    outcome: int
    status: str
    created: datetime
    updated: datetime
    num_segments: int
    attempt: int
    visible_at: float  # time.monotonic() after which the list shows it
    sent: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    price: str | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # (status, RFC 2822 time)
    answer: str = "201"  # what the create request got: 201 | 500 | hang | reset
    forced: tuple[str, int] | None = None  # a final status and error decided at create (media over the limit)
    turn_s: float = 0.0  # wait in the sender queue before "sending" (§7)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The JSON of ``api.v2010.account.message`` (§1). Call with ``lock`` held."""
        service_and_new = self.request.messaging_service_sid is not None and self.status == "accepted"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.request.body,
            "date_created": rfc2822(self.created),
            "date_sent": rfc2822(self.sent),
            "date_updated": rfc2822(self.updated),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.request.messaging_service_sid,
            "num_media": str(len(self.request.media_urls)),
            "num_segments": "0" if service_and_new else str(self.num_segments),
            "price": self.price,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": self.uri[: -len(".json")] + "/Media.json"},
            "to": self.request.to,
            "uri": self.uri,
        }

    def sim_view(self) -> dict[str, Any]:
        view = self.resource()
        view["_sim"] = {"outcome": self.outcome, "attempt": self.attempt, "answer": self.answer,
                        "status_callback": self.request.status_callback, "history": list(self.history),
                        "validity_period": self.request.validity_s}
        return view
