"""Twilio Programmable Messaging: its wire format as data and pure functions (the HTTP client is ``infra.twilio``).

Sections (§) are those of the wire reference ``twilio.md``; its source keys (TPY = twilio-python, OAS = Twilio's
OpenAPI spec, TRK/OSC/E<n>/SUP-* = Twilio docs and support pages) are quoted where a fact comes from.

- ``classify``: a create answer (HTTP status, Twilio error code) as a ``Kind``;
- ``STATUS_TABLE`` / ``neutral_status``: Twilio's message statuses in the vocabulary our report service already
  reads (Telnyx's ``event_type`` and ``to[].status``, mapped by ``shared.rules.status.from_provider``);
- ``ERROR_TABLE`` / ``error_code_for``: Twilio error codes as our stable ``ErrorCode``;
- ``expected_signature`` / ``verify_twilio``: ``X-Twilio-Signature`` (HMAC-SHA1, §4), as TPY's RequestValidator;
- ``parse_status_callback`` / ``parse_inbound``: a (verified) form POST as the ``Report`` the report and inbound
  services consume, every field's shape checked first: a bad form is a 400 ``VALIDATION_ERROR``, never a 500.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlparse

from shared.carriers.provider import Capabilities, Kind
from shared.carriers.signatures import BadSignature
from shared.carriers.telnyx_events import EVENT_ID, MAX_WEBHOOK_URL, Report
from shared.rules.errors import ApiError, ErrorCode

# -- capabilities ---------------------------------------------------------------------------------------------

TWILIO_CAPABILITIES = Capabilities(
    name="twilio",
    mms=True,
    # The Messages API sends to one ``To`` per request (§1: only ``To`` is required, one address); nothing in
    # twilio.md offers a group MMS send over it.
    group_mms=False,
    # "Total must be < 5 MB for MMS" (§8, accepted-mime-types; MED). Whether that MB is 10^6 or 2^20 bytes is
    # not stated: the smaller reading. Non-image types: 500 KB each (§1 MediaUrl), carriers ~600 KB (§8).
    max_media_bytes=5_000_000,
    max_media_count=10,  # "Repeat the parameter, <= 10" (§1 MediaUrl)
    countries=frozenset({"US", "CA"}),  # "MMS is US/Canada only" (§8, support 223179808)
)

# -- classification of a create answer (§1 Errors, §3, §7) -----------------------------------------------------

# 21610: the recipient sent STOP; every later send to the pair (or service) gets 400/21610 (§3, §5; SUP-STOP).
OPT_OUT_CODES = frozenset({"21610"})
# Codes that clear with time: 20429 too many concurrent requests, "never processed, always safe to retry"
# (§3, E20429); 21611 the sender's queue is over 10 h, rejected at create when no service is used (§3, §7).
TRANSIENT_CODES = frozenset({"20429", "21611"})
# HTTP statuses that clear with time: 429 (§1 Errors: 429/20429), 408 and every 5xx (as Telnyx's ``classify``).
# A 5xx "does not mean not sent" (§3, an inference): the adapter (infra.twilio) decides which 5xx is ambiguous.
TRANSIENT_HTTP = frozenset({408, 429})


def classify(http_status: int, code: str | int | None) -> Kind:
    """A create answer as a ``Kind``: 2xx accepted, 21610 opt-out, 429/20429/21611/408/5xx transient, any other
    4xx permanent (21211, 21408, 21612, 21614, 20003, 20404, ...: §3)."""
    code = str(code) if code is not None else None
    if 200 <= http_status < 300:
        return Kind.ACCEPTED
    if code in OPT_OUT_CODES:
        return Kind.OPT_OUT
    if http_status in TRANSIENT_HTTP or http_status >= 500 or code in TRANSIENT_CODES:
        return Kind.TRANSIENT
    return Kind.PERMANENT


# -- statuses (§2, §4) -------------------------------------------------------------------------------------------

# Our report service reads Telnyx's vocabulary (shared.rules.status.from_provider): ``message.sent`` means sent
# whatever ``to[].status`` says, so an intermediate status must come with another event type. These two are
# ours (Telnyx has no such events): from_provider maps their "queued"/"sending" to no change.
EVENT_QUEUED = "message.queued"
EVENT_SENDING = "message.sending"
EVENT_SENT = "message.sent"  # Telnyx's
EVENT_FINALIZED = "message.finalized"  # Telnyx's
EVENT_UNMAPPED = "message.updated"  # a status not in the table: recorded, changes nothing
EVENT_RECEIVED = "message.received"  # Telnyx's, read by shared.services.inbound
UNMAPPED_PREFIX = "twilio_"  # neutral status of an unmapped one: "twilio_<status>", in no table of ours


class StatusRow(NamedTuple):
    event_type: str
    status: str  # the neutral (Telnyx ``to[].status``) word
    source: str


STATUS_TABLE: dict[str, StatusRow] = {
    # initial statuses; the first one gets no callback, a later one may (§1 Success, §2 Order; OSC)
    "accepted": StatusRow(EVENT_QUEUED, "queued", "§2: with a Messaging Service, before queued (OSC)"),
    "scheduled": StatusRow(EVENT_QUEUED, "queued", "§2: ScheduleType=fixed, before queued (OSC)"),
    "queued": StatusRow(EVENT_QUEUED, "queued", "§2: waiting in the sender's queue (SUP-ST)"),
    "sending": StatusRow(EVENT_SENDING, "sending", "§2: being handed to the carrier (SUP-ST)"),
    "sent": StatusRow(EVENT_SENT, "sent", "§2: 'the upstream carrier accepted the message' (SUP-ST)"),
    "delivered": StatusRow(EVENT_FINALIZED, "delivered", "§2: carrier DLR, final (SUP-ST)"),
    # ``read`` follows ``delivered`` on WhatsApp/RCS (§2): it proves delivery.
    "read": StatusRow(EVENT_FINALIZED, "delivered", "§2: WhatsApp/RCS read, after delivered (OAS enum)"),
    "undelivered": StatusRow(EVENT_FINALIZED, "delivery_failed", "§2: carrier DLR says not delivered, final; "
                                                                 "ErrorCode added (§4, TRK)"),
    "failed": StatusRow(EVENT_FINALIZED, "sending_failed", "§2: failed from the queue onward, not charged; "
                                                           "ErrorCode added (§4, SUP-ST)"),
    # Canceled before it was sent (only a scheduled, or queued with a service, message): never reached a
    # carrier, so it fails the leg as a send failure (our FAILED; CANCELED is the customer's own cancel).
    "canceled": StatusRow(EVENT_FINALIZED, "sending_failed", "§2: scheduled -> canceled, final (OSC)"),
}
# Not mapped (recorded, no status change): ``partially_delivered`` (group/RCS; its future is UNCONFIRMED, §2),
# ``receiving``/``received`` (inbound statuses, §2), and any status Twilio adds later.
CANCELED_TITLE = "Canceled at the provider before it was sent"


def status_row(twilio_status: str) -> StatusRow:
    """The row of a Twilio status; an unmapped one is recorded without changing the leg."""
    row = STATUS_TABLE.get(twilio_status)
    if row is not None:
        return row
    return StatusRow(EVENT_UNMAPPED, UNMAPPED_PREFIX + twilio_status, "not in the table")


def neutral_status(twilio_status: str) -> str:
    return status_row(twilio_status).status


# -- error codes (§3, §8) ----------------------------------------------------------------------------------------


class ErrorRow(NamedTuple):
    code: ErrorCode
    title: str
    source: str


ERROR_TABLE: dict[str, ErrorRow] = {
    # at create (sync 4xx)
    "21610": ErrorRow(ErrorCode.RECIPIENT_OPTED_OUT, "Recipient has opted out (STOP)", "§3, SUP-STOP"),
    "21211": ErrorRow(ErrorCode.INVALID_PHONE_NUMBER, "Invalid 'To' phone number", "§3, E21211"),
    "21614": ErrorRow(ErrorCode.INVALID_PHONE_NUMBER, "'To' is not a valid mobile number", "§3 (wording UNCONFIRMED)"),
    "21408": ErrorRow(ErrorCode.PROVIDER_REJECTED, "Destination region not enabled", "§3, E21408"),
    "21612": ErrorRow(ErrorCode.PROVIDER_REJECTED, "'To'/'From' combination cannot be routed", "§3, E21612"),
    "21611": ErrorRow(ErrorCode.PROVIDER_UNAVAILABLE, "Sender queue is full", "§3, §7, E21611"),
    "20429": ErrorRow(ErrorCode.PROVIDER_UNAVAILABLE, "Too many concurrent requests", "§3, E20429"),
    "21620": ErrorRow(ErrorCode.MEDIA_FETCH_FAILED, "Invalid media URL", "§8, E21620"),
    "12300": ErrorRow(ErrorCode.MEDIA_TYPE_UNSUPPORTED, "Invalid media Content-Type", "§8"),
    "63019": ErrorRow(ErrorCode.MEDIA_FETCH_FAILED, "Media download returned no content", "§8"),
    # after create (async: ErrorCode on failed/undelivered, §4)
    "30001": ErrorRow(ErrorCode.PROVIDER_UNAVAILABLE, "Queue overflow", "§3, §7, E30001"),
    "30002": ErrorRow(ErrorCode.PROVIDER_REJECTED, "Account suspended", "§3, E30002"),
    "30003": ErrorRow(ErrorCode.DELIVERY_FAILED, "Unreachable destination handset", "§3, E30003"),
    "30004": ErrorRow(ErrorCode.DELIVERY_FAILED, "Message blocked", "§3, E30004"),
    "30005": ErrorRow(ErrorCode.DELIVERY_FAILED, "Unknown destination handset", "§3 (UNCONFIRMED)"),
    "30006": ErrorRow(ErrorCode.DELIVERY_FAILED, "Landline or unreachable carrier", "§3, E30006"),
    "30007": ErrorRow(ErrorCode.DELIVERY_FAILED, "Message filtered", "§3 (third-party pages)"),
    "30008": ErrorRow(ErrorCode.DELIVERY_FAILED, "Unknown error", "§3 (third-party pages)"),
    # Twilio's ValidityPeriod (default 10 h, §1), not ours: the provider could not send it in time.
    "30036": ErrorRow(ErrorCode.PROVIDER_UNAVAILABLE, "Validity period expired", "§3, E30036"),
}


def error_code_for(twilio_code: str | int | None) -> ErrorCode:
    """Our code for a Twilio error code: the table, else a 30xxx (after create) is a delivery failure and
    anything else (at create) a rejection."""
    code = str(twilio_code) if twilio_code is not None else ""
    row = ERROR_TABLE.get(code)
    if row is not None:
        return row.code
    return ErrorCode.DELIVERY_FAILED if code.startswith("30") else ErrorCode.PROVIDER_REJECTED


# -- X-Twilio-Signature (§4) -------------------------------------------------------------------------------------

Params = Mapping[str, str] | Mapping[str, Sequence[str]]


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def expected_signature(auth_token: str, url: str, params: Params) -> str:
    """base64(HMAC-SHA1(auth token, url + name + value ...)): each distinct name in ascending order, each of
    its values de-duplicated and in ascending order (§4 steps 1-3; TPY ``RequestValidator.compute_signature``).
    ``url`` is used verbatim (no port variant: ``verify_twilio`` tries those)."""
    signed = url + "".join(name + value for name in sorted(set(params))
                           for value in sorted(set(_values(params[name]))))
    mac = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii").strip()


def _without_port(parsed: Any) -> str:
    if not parsed.port:
        return str(parsed.geturl())
    return str(parsed._replace(netloc=parsed.netloc.split(":")[0]).geturl())


def _with_port(parsed: Any) -> str:
    if parsed.port:
        return str(parsed.geturl())
    return str(parsed._replace(netloc=f"{parsed.netloc}:{443 if parsed.scheme == 'https' else 80}").geturl())


def _same(expected: str, given: bytes) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given)


def verify_twilio(url: str, params: Params, signature: str | None, auth_token: str, *,
                  raw_body: bytes | None = None) -> None:
    """Raise ``BadSignature`` unless ``signature`` (the ``X-Twilio-Signature`` header) signs this request, as
    TPY's ``RequestValidator.validate`` decides (§4):

    - ``url`` is the URL Twilio requested, fragment-free (§4.6: a URL still carrying ``#rc=...`` fails) and
      rebuilt from ``X-Forwarded-*`` behind a proxy (§4.7); it is tried with any explicit port removed and
      with the scheme's default port added (§4.4), and either may match;
    - a JSON request (``bodySHA256`` in the URL's query, §4.5) is checked against ``raw_body``'s SHA-256 and
      signed with no parameters; both checks must pass;
    - comparisons take constant time.
    """
    if not auth_token:
        raise BadSignature("no Twilio auth token configured")
    if not signature:
        raise BadSignature("missing X-Twilio-Signature")
    try:
        given = signature.encode("utf-8")
        parsed = urlparse(url)
        variants = (_without_port(parsed), _with_port(parsed))  # .port raises ValueError on a malformed port
    except (UnicodeEncodeError, ValueError):
        raise BadSignature("malformed signature or URL") from None
    body_ok = True
    hashes = parse_qs(parsed.query).get("bodySHA256")
    if hashes and raw_body is not None:
        body_hash = hashlib.sha256(raw_body).hexdigest().encode()
        body_ok = hmac.compare_digest(body_hash, hashes[0].encode("utf-8", "replace"))
        params = {}
    try:
        matches = [_same(expected_signature(auth_token, variant, params), given) for variant in variants]
    except UnicodeEncodeError:  # a lone surrogate in a name or value: no signature can cover it
        raise BadSignature("unencodable parameters") from None
    if not (body_ok and any(matches)):
        raise BadSignature("signature does not verify")


# -- parsing the form POSTs (§4 status callbacks, §5 inbound) ----------------------------------------------------

MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")  # §1 Success: SM/MM + 32 hex
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
STATUS = re.compile(r"[a-z_]{1,32}")
ERROR_CODE = re.compile(r"[0-9]{1,6}")
# E.164, a short code, an alphanumeric sender, a channel address (``whatsapp:+1...``): printable ASCII.
ADDRESS = re.compile(r"[ -~]{1,64}")
COUNT = re.compile(r"[0-9]{1,4}")
OPT_OUT_TYPE = re.compile(r"[A-Za-z]{1,16}")  # STOP, START, HELP with Advanced Opt-Out (§5)
MAX_FIELDS = 256  # names in one form (inbound: ~30 plus two per attachment)
MAX_VALUE = 2048  # any one value but the body
MAX_BODY = 100_000  # far above any message text (shared.services.received.MAX_TEXT)
MAX_MEDIA_ENTRIES = 100  # read at most; shared.services.received fetches 10 and marks the rest unavailable
EVENT_PREFIX = "twilio"

Form = Mapping[str, str] | Mapping[str, Sequence[str]] | Mapping[str, list[str]]


def _invalid(field: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "Not a usable Twilio webhook request",
                    details=[{"field": field, "issue": issue}])


def _encodable(value: str, field: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(field, "contains an unpaired surrogate") from None
    return value


def _fields(form: Any) -> dict[str, list[str]]:
    """The form as name -> values, every name and value a valid string (a ``str`` value is one value)."""
    if not isinstance(form, Mapping):
        raise _invalid("form", "must be a form")
    if len(form) > MAX_FIELDS:
        raise _invalid("form", f"must have at most {MAX_FIELDS} fields")
    fields: dict[str, list[str]] = {}
    for name, value in form.items():
        if not isinstance(name, str):
            raise _invalid("form", "field names must be strings")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise _invalid(_encodable(name, "form"), "must be a string")
        fields[_encodable(name, "form")] = [_encodable(v, name) for v in values]
    return fields


def _one(fields: dict[str, list[str]], name: str, pattern: re.Pattern[str] | None = None, *,
         required: bool = False, limit: int = MAX_VALUE) -> str | None:
    """One field's single value, shape-checked; an empty value counts as absent."""
    values = [v for v in fields.get(name, []) if v != ""]
    if not values:
        if required:
            raise _invalid(name, "is required")
        return None
    if len(values) > 1:
        raise _invalid(name, "must appear once")
    value = values[0]
    if len(value) > limit:
        raise _invalid(name, f"must be at most {limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise _invalid(name, f"must match {pattern.pattern}")
    return value


def _url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise _invalid("url", "must be a string")
    if len(url) > MAX_WEBHOOK_URL:
        raise _invalid("url", f"must be at most {MAX_WEBHOOK_URL} characters")
    return _encodable(url, "url")


def _aware(received_at: dt.datetime) -> dt.datetime:
    return received_at if received_at.utcoffset() is not None else received_at.replace(tzinfo=dt.UTC)


def _event_id(message_sid: str, status: str) -> str:
    """Stable per (MessageSid, status): a duplicate or retried callback is the same event (§4: dedupe on it)."""
    event_id = f"{EVENT_PREFIX}:{message_sid}:{status}"
    assert EVENT_ID.fullmatch(event_id)
    return event_id


def parse_status_callback(url: str, form: Form, received_at: dt.datetime) -> Report:
    """A status callback (§4) as a delivery report the report service reads like a Telnyx one:

    - ``event_type``/``to[0].status`` from ``STATUS_TABLE``; ``event_id`` ``twilio:<MessageSid>:<MessageStatus>``;
    - ``payload``: ``id`` (MessageSid), ``to`` ``[{"phone_number": To, "status": ...}]`` (``To`` is not
      guaranteed, §4: then ``None``), ``from``, ``webhook_url`` (the callback URL: dispatch's ``?leg=`` names
      the leg), ``errors`` ``[{"code", "title", "detail"}]`` when ``ErrorCode`` is present (or the message was
      canceled), and ``twilio_status``;
    - ``occurred_at`` is ``received_at``: the callback carries no time of its own (``RawDlrDoneDate`` has
      minutes and no zone, §4).
    """
    webhook_url = _url(url)
    fields = _fields(form)
    sid = _one(fields, "MessageSid", MESSAGE_SID) or _one(fields, "SmsSid", MESSAGE_SID)
    if sid is None:
        raise _invalid("MessageSid", "is required")
    status = _one(fields, "MessageStatus", STATUS) or _one(fields, "SmsStatus", STATUS)
    if status is None:
        raise _invalid("MessageStatus", "is required")
    _one(fields, "AccountSid", ACCOUNT_SID)
    to = _one(fields, "To", ADDRESS)
    sender = _one(fields, "From", ADDRESS)
    error_code = _one(fields, "ErrorCode", ERROR_CODE)
    error_message = _one(fields, "ErrorMessage")
    row = status_row(status)
    payload: dict[str, Any] = {
        "id": sid,
        "to": [{"phone_number": to, "status": row.status}],
        "from": {"phone_number": sender},
        "webhook_url": webhook_url,
        "twilio_status": status,
    }
    if error_code is not None:
        known = ERROR_TABLE.get(error_code)
        title = known.title if known else f"Twilio error {error_code}"
        payload["errors"] = [{"code": error_code, "title": title, "detail": error_message or title}]
    elif status == "canceled":
        payload["errors"] = [{"code": None, "title": CANCELED_TITLE, "detail": CANCELED_TITLE}]
    return Report(event_id=_event_id(sid, status), event_type=row.event_type, occurred_at=_aware(received_at),
                  payload=payload)


def _media(fields: dict[str, list[str]]) -> list[dict[str, Any]]:
    declared = _one(fields, "NumMedia", COUNT)
    if declared is not None:
        count = int(declared)
    else:  # no NumMedia: the attachments present, numbered from 0
        count = 0
        while count < MAX_MEDIA_ENTRIES and f"MediaUrl{count}" in fields:
            count += 1
    media = []
    for index in range(min(count, MAX_MEDIA_ENTRIES)):
        media.append({"url": _one(fields, f"MediaUrl{index}"),
                      "content_type": _one(fields, f"MediaContentType{index}", limit=255),
                      "size": None})  # Twilio does not say (§5)
    return media


def parse_inbound(url: str, form: Form, received_at: dt.datetime) -> Report:
    """An inbound message webhook (§5) as a Telnyx-shaped ``message.received`` (what
    ``shared.services.received.parse`` reads): ``id`` (MessageSid), ``from``/``to`` phone numbers, ``text``
    (Body), ``media`` ``[{"url", "content_type", "size": None}]`` (``MediaUrl{N}``/``MediaContentType{N}``,
    ``N < NumMedia``; an entry without its URL is kept, received marks it unavailable), ``type`` MMS/SMS,
    ``received_at``. ``event_id`` is ``twilio:<MessageSid>:received``: a retried webhook is the same event.

    Media URLs need HTTP Basic auth with the account's credentials to be fetched (§5 Media, MED)."""
    _url(url)
    fields = _fields(form)
    sid = (_one(fields, "MessageSid", MESSAGE_SID) or _one(fields, "SmsMessageSid", MESSAGE_SID)
           or _one(fields, "SmsSid", MESSAGE_SID))
    if sid is None:
        raise _invalid("MessageSid", "is required")
    _one(fields, "AccountSid", ACCOUNT_SID)
    service = _one(fields, "MessagingServiceSid", SERVICE_SID)
    to = _one(fields, "To", ADDRESS)
    sender = _one(fields, "From", ADDRESS)
    body = _one(fields, "Body", limit=MAX_BODY)
    opt_out_type = _one(fields, "OptOutType", OPT_OUT_TYPE)
    media = _media(fields)
    at = _aware(received_at)
    payload: dict[str, Any] = {
        "id": sid,
        "direction": "inbound",
        "type": "MMS" if media else "SMS",
        "from": {"phone_number": sender},
        "to": [{"phone_number": to, "status": "webhook_delivered"}] if to else [],
        "text": body if body is not None else "",
        "media": media,
        "received_at": at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }
    if service:
        payload["messaging_service_sid"] = service
    if opt_out_type:
        payload["opt_out_type"] = opt_out_type
    return Report(event_id=_event_id(sid, "received"), event_type=EVENT_RECEIVED, occurred_at=at, payload=payload)
