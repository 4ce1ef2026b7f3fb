"""Telnyx wire formats: error bodies, request validation, the outbound message object (telnyx.md §1)."""

from __future__ import annotations

import math
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_MEDIA_URLS = 10
MAX_GROUP_RECIPIENTS = 8
MAX_URL_LENGTH = 2000
ORGANIZATION_ID = "6f1b2c9e-0d47-4a7e-9a55-5b1f3c0de001"
MESSAGING_PROFILE_ID = "4001f2a8-7c3e-4d2b-8b1e-51ad0c0de002"
VALIDITY = timedelta(hours=4)
COST_PER_SMS_PART = Decimal("0.0040")
COST_PER_MMS = Decimal("0.0150")


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """Telnyx style: ``2019-01-23T18:10:02.574Z``."""
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------- errors


def error(code: str, title: str, detail: str | None = None, pointer: str | None = None) -> dict:
    item: dict[str, Any] = {"code": code, "title": title}
    if detail:
        item["detail"] = detail
    if pointer:
        item["source"] = {"pointer": pointer}
    item["meta"] = {"url": f"https://developers.telnyx.com/docs/overview/errors/{code}"}
    return item


class ApiError(Exception):
    """An HTTP error answer with a Telnyx-shaped body ``{"errors": [...]}``."""

    def __init__(self, status: int, errors: list[dict], headers: dict[str, str] | None = None):
        super().__init__(f"HTTP {status}: {errors[0].get('code')} {errors[0].get('title')}")
        self.status = status
        self.errors = errors
        self.headers = headers or {}

    @classmethod
    def one(cls, status: int, code: str, title: str, detail: str | None = None,
            pointer: str | None = None, headers: dict[str, str] | None = None) -> ApiError:
        return cls(status, [error(code, title, detail, pointer)], headers)


def bad_request(detail: str, pointer: str | None = None) -> ApiError:
    return ApiError.one(400, "10015", "Bad Request", detail, pointer)


def missing(name: str) -> dict:
    return error("10004", "Missing required parameter", f"The '{name}' parameter is required.", f"/{name}")


def not_e164(name: str, value: Any) -> dict:
    return error("10016", "Phone number must be in +E.164 format",
                 f"The '{name}' parameter value {value!r} is not a +E.164 formatted phone number.",
                 f"/{name}")


def invalid_mms(detail: str, pointer: str | None = "/media_urls") -> ApiError:
    return ApiError.one(400, "40317", "Invalid MMS content", detail, pointer)


def not_found(detail: str = "The requested resource or URL could not be found.") -> ApiError:
    return ApiError.one(404, "10005", "Resource not found", detail)


def unexpected() -> ApiError:
    return ApiError.one(500, "10007", "Unexpected error",
                        "An unexpected error occurred. Please try again later.")


def rate_limited() -> ApiError:
    return ApiError.one(429, "10011", "Too many requests",
                        "You have exceeded the maximum number of allowed requests.",
                        headers={"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0",
                                 "x-ratelimit-reset": "1", "Retry-After": "1"})


def blocked(src: str, dst: str) -> ApiError:
    return ApiError.one(409, "40300", "Blocked due to STOP message",
                        f"Messages cannot be sent from {src} to {dst} due to an existing block rule.")


def auth_failed(detail: str) -> ApiError:
    return ApiError.one(401, "10009", "Authentication failed", detail)


def bad_parameter(name: str, detail: str, code: str = "10015", title: str = "Bad Request") -> ApiError:
    """A 400 about a query parameter or header: ``source.parameter`` names it (Telnyx's error ``source``
    has ``parameter`` for these and ``pointer`` for body fields)."""
    item = error(code, title, detail)
    item["source"] = {"parameter": name}
    return ApiError(400, [item])


# Telnyx's documented key format (API fundamentals: idempotency).
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")
# Telnyx documents HTTP 422 for a key reused with a different body or query, but not the error code in it:
# the simulator uses 10012 "Duplicate resource", the closest documented code (unconfirmed). Keep in step with
# shared.carriers.provider.IDEMPOTENCY_MISMATCH_CODE (tests/shared/test_provider.py checks).
IDEMPOTENCY_MISMATCH_CODE = "10012"


def invalid_idempotency_key(key: str) -> ApiError:
    # Telnyx does not document the answer to a malformed key; a 400 like any other malformed parameter.
    return bad_parameter("Idempotency-Key", f"The Idempotency-Key header {key[:300]!r} must match "
                         f"{IDEMPOTENCY_KEY.pattern}.")


def idempotency_mismatch(key: str) -> ApiError:
    return ApiError.one(422, IDEMPOTENCY_MISMATCH_CODE, "Duplicate resource",
                        f"The Idempotency-Key {key!r} was already used for a different request to this "
                        "endpoint (the body or query parameters differ). Retry with the identical request, "
                        "or use a new key for a new request.")


# ---------------------------------------------------------------- text encoding

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def is_gsm7(text: str) -> bool:
    return all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text)


def encoding_and_parts(text: str, message_type: str, requested: str | None) -> tuple[str, int]:
    """(encoding label, number of parts) as Telnyx reports them."""
    gsm = is_gsm7(text) and requested != "ucs2"
    label = "GSM-7" if gsm else "UCS-2"
    if message_type == "MMS":
        return label, 1
    if gsm:
        units = len(text) + sum(1 for ch in text if ch in _GSM_EXTENDED)
        return label, 1 if units <= 160 else math.ceil(units / 153)
    units = len(text.encode("utf-16-le")) // 2
    return label, 1 if units <= 70 else math.ceil(units / 67)


# ---------------------------------------------------------------- requests


@dataclass
class SendRequest:
    from_: str
    to: list[str]
    text: str | None
    subject: str | None
    media_urls: list[str]
    type: str  # "SMS" | "MMS"
    webhook_url: str | None
    webhook_failover_url: str | None
    use_profile_webhooks: bool
    messaging_profile_id: str | None
    encoding: str | None
    tags: list[str]
    group: bool

    @property
    def attempt_key(self) -> tuple:
        return ("group" if self.group else "single", tuple(self.to), self.from_, self.text or "")


def _url_field(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH or not re.match(r"^https?://[^\s/]+", value):
        raise ApiError.one(400, "10003", "Invalid URL",
                           f"The '{name}' parameter must be an http(s) URL of at most "
                           f"{MAX_URL_LENGTH} characters.",
                           f"/{name}")
    return value


def parse_send(body: Any, group: bool) -> SendRequest:
    """Validate a ``POST /v2/messages`` (or ``/group_mms``) body the way Telnyx does."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")

    errors: list[dict] = []
    src = body.get("from")
    if src is None or src == "":
        errors.append(missing("from"))
    raw_to = body.get("to")
    if raw_to is None or raw_to == "" or raw_to == []:
        errors.append(missing("to"))
    if errors:
        raise ApiError(400, errors)

    if isinstance(raw_to, str):
        to = [raw_to]
    elif isinstance(raw_to, list) and all(isinstance(t, str) for t in raw_to):
        to = list(raw_to)
    else:
        raise ApiError.one(400, "40310", "Invalid 'to' address",
                           "The 'to' address should be a single valid number." if not group
                           else "The 'to' parameter must be an array of +E.164 phone numbers.", "/to")
    if group:
        if len(to) > MAX_GROUP_RECIPIENTS:
            raise ApiError.one(400, "40310", "Invalid 'to' address",
                               f"No more than {MAX_GROUP_RECIPIENTS} destinations are allowed.", "/to")
        if len(set(to)) != len(to):
            raise ApiError.one(400, "40310", "Invalid 'to' address",
                               "The 'to' array must not contain the same number twice.", "/to")
    elif len(to) > 1:
        raise ApiError.one(400, "40310", "Invalid 'to' address",
                           "The 'to' address should be a single valid number.", "/to")

    if not isinstance(src, str) or not E164.match(src):
        errors.append(not_e164("from", src))
    for i, number in enumerate(to):
        if not E164.match(number):
            item = not_e164("to", number)
            if isinstance(raw_to, list):
                item["source"] = {"pointer": f"/to/{i}"}
            errors.append(item)
    if errors:
        raise ApiError(400, errors)

    text = body.get("text")
    if text is not None and not isinstance(text, str):
        raise bad_request("The 'text' parameter must be a string.", "/text")
    subject = body.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise bad_request("The 'subject' parameter must be a string.", "/subject")

    media_urls = body.get("media_urls")
    if media_urls is None:
        media_urls = []
    if not isinstance(media_urls, list) or not all(isinstance(u, str) for u in media_urls):
        raise invalid_mms("The 'media_urls' parameter must be an array of URLs.")
    if len(media_urls) > MAX_MEDIA_URLS:
        raise invalid_mms(f"At most {MAX_MEDIA_URLS} media URLs are allowed; got {len(media_urls)}.")
    for i, url in enumerate(media_urls):
        if len(url) > MAX_URL_LENGTH or not re.match(r"^https?://[^\s/]+", url):
            raise ApiError.one(400, "10003", "Invalid URL",
                               f"Media URL {url[:100]!r} is not an http(s) URL of at most "
                               f"{MAX_URL_LENGTH} characters.",
                               f"/media_urls/{i}")

    if not text and not media_urls:
        raise ApiError.one(400, "40316", "No content provided for message",
                           "A message needs a non-empty 'text' or at least one 'media_urls' entry.")

    requested_type = body.get("type")
    if requested_type is not None and requested_type not in ("SMS", "MMS"):
        raise bad_request("The 'type' parameter must be 'SMS' or 'MMS'.", "/type")
    message_type = "MMS" if (group or media_urls or requested_type == "MMS") else "SMS"

    encoding = body.get("encoding")
    if encoding is not None and encoding not in ("auto", "gsm7", "ucs2"):
        raise bad_request("The 'encoding' parameter must be one of 'auto', 'gsm7', 'ucs2'.", "/encoding")
    if encoding == "gsm7" and text and not is_gsm7(text):
        raise bad_request("The message text contains characters that cannot be encoded as GSM-7.",
                          "/encoding")

    use_profile = body.get("use_profile_webhooks", True)
    if not isinstance(use_profile, bool):
        raise bad_request("The 'use_profile_webhooks' parameter must be a boolean.", "/use_profile_webhooks")
    profile_id = body.get("messaging_profile_id")
    if profile_id is not None and not isinstance(profile_id, str):
        raise bad_request("The 'messaging_profile_id' parameter must be a string.", "/messaging_profile_id")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad_request("The 'tags' parameter must be an array of strings.", "/tags")

    return SendRequest(
        from_=src, to=to, text=text, subject=subject, media_urls=list(media_urls), type=message_type,
        webhook_url=_url_field(body, "webhook_url"),
        webhook_failover_url=_url_field(body, "webhook_failover_url"),
        use_profile_webhooks=use_profile, messaging_profile_id=profile_id, encoding=encoding, tags=tags,
        group=group,
    )


# ---------------------------------------------------------------- the stored message


@dataclass
class Recipient:
    phone_number: str
    outcome: int
    status: str = "queued"
    errors: list[dict] = field(default_factory=list)
    sent_at: datetime | None = None
    completed_at: datetime | None = None
    cost: Decimal | None = None

    def to_entry(self, status: str | None = None) -> dict:
        return {"phone_number": self.phone_number, "status": status or self.status,
                "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"}


@dataclass
class Message:
    id: str
    request: SendRequest
    recipients: list[Recipient]
    media: list[dict]
    webhook_url: str | None  # effective primary URL (message's own, else the profile's)
    webhook_failover_url: str | None
    received_at: datetime
    encoding: str
    parts: int
    attempt: int  # which attempt of its (to, from, text) key created it
    idempotency_key: str | None = None  # the Idempotency-Key of the request that created it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def valid_until(self) -> datetime:
        return self.received_at + VALIDITY

    def unit_cost(self) -> Decimal:
        return COST_PER_MMS if self.request.type == "MMS" else COST_PER_SMS_PART * self.parts

    def payload(self, focus: int | None = None, focus_status: str | None = None) -> dict:
        """The §1.3 outbound message object.

        With ``focus`` (a recipient index) it is the per-recipient webhook view: that recipient is
        ``to[0]`` (its status optionally overridden by ``focus_status``), the others are listed in ``cc``,
        and errors, timestamps and cost are that recipient's. Without it, every recipient is in ``to``.
        Call with ``self.lock`` held.
        """
        req = self.request
        if focus is None:
            to = [r.to_entry() for r in self.recipients]
            cc: list[dict] = []
            errors = [e for r in self.recipients for e in r.errors]
            sent = [r.sent_at for r in self.recipients]
            done = [r.completed_at for r in self.recipients]
            sent_at = max(sent) if all(sent) else None
            completed_at = max(done) if all(done) else None
            costs = [r.cost for r in self.recipients]
            cost = sum(costs, Decimal(0)) if all(c is not None for c in costs) else None
        else:
            mine = self.recipients[focus]
            to = [mine.to_entry(focus_status)]
            cc = [r.to_entry() for i, r in enumerate(self.recipients) if i != focus]
            errors = list(mine.errors)
            sent_at, completed_at, cost = mine.sent_at, mine.completed_at, mine.cost
        return {
            "record_type": "message",
            "direction": "outbound",
            "id": self.id,
            "type": req.type,
            "messaging_profile_id": req.messaging_profile_id or MESSAGING_PROFILE_ID,
            "organization_id": ORGANIZATION_ID,
            "from": {"phone_number": req.from_, "carrier": "TELNYX LLC", "line_type": "VoIP"},
            "to": to,
            "cc": cc,
            "text": req.text if req.text is not None else "",
            "subject": req.subject,
            "media": [dict(m) for m in self.media],
            "webhook_url": self.webhook_url,
            "webhook_failover_url": self.webhook_failover_url,
            "encoding": self.encoding,
            "parts": self.parts,
            "tags": list(req.tags),
            "cost": None if cost is None else {"amount": f"{cost:.4f}", "currency": "USD"},
            "cost_breakdown": None,
            "tcr_campaign_id": None,
            "tcr_campaign_billable": False,
            "tcr_campaign_registered": None,
            "received_at": iso(self.received_at),
            "sent_at": iso(sent_at),
            "completed_at": iso(completed_at),
            "valid_until": iso(self.valid_until),
            "errors": errors,
            "wait_seconds": 0.0,
            "smart_encoding_applied": False,
        }

    def sim_view(self) -> dict:
        """The ``/_sim/messages`` summary. Call with ``self.lock`` held."""
        req = self.request
        statuses = {r.status for r in self.recipients}
        return {
            "id": self.id,
            "group": req.group,
            "to": list(req.to) if req.group else req.to[0],
            "from": req.from_,
            "text": req.text,
            "subject": req.subject,
            "type": req.type,
            "media_urls": list(req.media_urls),
            "media": [dict(m) for m in self.media],
            "webhook_url": self.webhook_url,
            "webhook_failover_url": self.webhook_failover_url,
            "received_at": iso(self.received_at),
            "status": statuses.pop() if len(statuses) == 1 else "mixed",
            "recipients": [{"phone_number": r.phone_number, "status": r.status, "errors": list(r.errors),
                            "sent_at": iso(r.sent_at), "completed_at": iso(r.completed_at)}
                           for r in self.recipients],
            "attempt": self.attempt,
            "idempotency_key": self.idempotency_key,
        }


def new_message(req: SendRequest, media: list[dict], webhook_url: str | None,
                webhook_failover_url: str | None, attempt: int, outcome_of,
                idempotency_key: str | None = None) -> Message:
    encoding, parts = encoding_and_parts(req.text or "", req.type, req.encoding)
    return Message(
        id=str(uuid.uuid4()), request=req,
        recipients=[Recipient(phone_number=n, outcome=outcome_of(n)) for n in req.to],
        media=media, webhook_url=webhook_url, webhook_failover_url=webhook_failover_url,
        received_at=now_utc(), encoding=encoding, parts=parts, attempt=attempt,
        idempotency_key=idempotency_key,
    )
