"""Stable error codes, their HTTP statuses, and the exception that carries them to the error envelope."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # request shape
    INVALID_JSON = "INVALID_JSON"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    DUPLICATE_RECIPIENTS = "DUPLICATE_RECIPIENTS"
    BODY_NOT_GSM7 = "BODY_NOT_GSM7"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    BAD_REQUEST = "BAD_REQUEST"
    URI_TOO_LONG = "URI_TOO_LONG"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    # identity and access
    UNAUTHORIZED = "UNAUTHORIZED"
    NOT_FOUND = "NOT_FOUND"
    # per-recipient gates
    INVALID_PHONE_NUMBER = "INVALID_PHONE_NUMBER"
    MMS_NANP_ONLY = "MMS_NANP_ONLY"
    SENDER_NOT_ALLOWED = "SENDER_NOT_ALLOWED"
    MEDIA_URL_REJECTED = "MEDIA_URL_REJECTED"
    MEDIA_FETCH_FAILED = "MEDIA_FETCH_FAILED"
    MEDIA_TYPE_UNSUPPORTED = "MEDIA_TYPE_UNSUPPORTED"
    MEDIA_TOO_LARGE = "MEDIA_TOO_LARGE"
    RECIPIENT_OPTED_OUT = "RECIPIENT_OPTED_OUT"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    RATE_LIMITED = "RATE_LIMITED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    PRICE_UNAVAILABLE = "PRICE_UNAVAILABLE"
    # idempotency
    IDEMPOTENCY_KEY_INVALID = "IDEMPOTENCY_KEY_INVALID"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    # delivery
    PROVIDER_REJECTED = "PROVIDER_REJECTED"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    PROVIDER_OUTCOME_UNKNOWN = "PROVIDER_OUTCOME_UNKNOWN"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    VALIDITY_EXPIRED = "VALIDITY_EXPIRED"
    NOT_CANCELABLE = "NOT_CANCELABLE"
    MESSAGE_NOT_FINAL = "MESSAGE_NOT_FINAL"
    # reads
    INVALID_CURSOR = "INVALID_CURSOR"
    # templates (shared/rules/templates.py)
    TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"
    MISSING_PERSONALISATION = "MISSING_PERSONALISATION"
    # webhooks in
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    # ours
    INTERNAL = "INTERNAL"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.DUPLICATE_RECIPIENTS: 400,
    ErrorCode.BODY_NOT_GSM7: 400,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.URI_TOO_LONG: 414,
    ErrorCode.HEADERS_TOO_LARGE: 431,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_PHONE_NUMBER: 400,
    ErrorCode.MMS_NANP_ONLY: 400,
    ErrorCode.SENDER_NOT_ALLOWED: 403,
    ErrorCode.MEDIA_URL_REJECTED: 400,
    # Media gates (docs/media.md): 413 and 415 name what is wrong with the media the request carries or
    # points to; 422 is a well-formed request whose media URL could not be retrieved.
    ErrorCode.MEDIA_FETCH_FAILED: 422,
    ErrorCode.MEDIA_TYPE_UNSUPPORTED: 415,
    ErrorCode.MEDIA_TOO_LARGE: 413,
    ErrorCode.RECIPIENT_OPTED_OUT: 403,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INSUFFICIENT_BALANCE: 402,
    ErrorCode.PRICE_UNAVAILABLE: 400,
    ErrorCode.IDEMPOTENCY_KEY_INVALID: 400,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.IDEMPOTENCY_KEY_IN_USE: 409,
    ErrorCode.PROVIDER_REJECTED: 502,
    ErrorCode.PROVIDER_UNAVAILABLE: 503,
    ErrorCode.PROVIDER_OUTCOME_UNKNOWN: 502,
    ErrorCode.DELIVERY_FAILED: 502,
    ErrorCode.VALIDITY_EXPIRED: 410,  # on the message only: its validity ended before it could be sent
    ErrorCode.NOT_CANCELABLE: 409,
    ErrorCode.MESSAGE_NOT_FINAL: 409,
    ErrorCode.INVALID_CURSOR: 400,
    ErrorCode.TEMPLATE_NOT_FOUND: 400,  # a send naming it: the request is wrong, not its path
    ErrorCode.MISSING_PERSONALISATION: 400,
    ErrorCode.INVALID_SIGNATURE: 401,
    ErrorCode.INTERNAL: 500,
}

# The message a recipient row carries when a gate fails it.
DEFAULT_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.UNAUTHORIZED: "Missing, unknown or revoked API key: send your key in the X-API-Key header",
    ErrorCode.INVALID_PHONE_NUMBER: ("The recipient is not a valid phone number: expected E.164, a + followed by the "
                                     "country code and the number, e.g. +14155552671"),
    ErrorCode.MMS_NANP_ONLY: "MMS is only available for NANP (US/Canada) recipients",
    ErrorCode.SENDER_NOT_ALLOWED: "The sender number is not allowed for this account or channel",
    ErrorCode.MEDIA_URL_REJECTED: ("A media URL was refused: its host is not on the media host allowlist "
                                   "(MEDIA_ALLOWED_HOSTS), or it failed the address check (a private, loopback or "
                                   "metadata address, a redirect to one, or a name that does not resolve)"),
    ErrorCode.MEDIA_FETCH_FAILED: "A media URL could not be fetched",
    ErrorCode.MEDIA_TYPE_UNSUPPORTED: "A media attachment is not of a supported type, or is not what it declares",
    ErrorCode.MEDIA_TOO_LARGE: "The media attachments are too large for one message",
    ErrorCode.RECIPIENT_OPTED_OUT: "The recipient has opted out of messages from this account",
    ErrorCode.QUOTA_EXCEEDED: "The daily message quota for this account is used up",
    ErrorCode.INSUFFICIENT_BALANCE: "The account balance cannot cover this message",
    ErrorCode.PRICE_UNAVAILABLE: "Messages to this destination and channel are not offered",
    ErrorCode.PROVIDER_REJECTED: "The carrier provider rejected the message",
    ErrorCode.PROVIDER_UNAVAILABLE: "The carrier provider could not be reached",
    ErrorCode.PROVIDER_OUTCOME_UNKNOWN: (
        "The provider may have taken the message but could not confirm it; it was not sent again"),
    ErrorCode.DELIVERY_FAILED: "The carrier could not deliver the message",
    ErrorCode.VALIDITY_EXPIRED: "The message's validity ended before it could be sent; it was not sent or charged",
    ErrorCode.NOT_CANCELABLE: "The message was already handed to the provider (or is still being accepted)",
    ErrorCode.MESSAGE_NOT_FINAL: "Only a message in a final status can be redacted",
    ErrorCode.TEMPLATE_NOT_FOUND: ("No usable template with that id and version: unknown, another account's, "
                                   "or archived"),
}


API_KEY_HEADER = "X-API-Key"


def unauthorized(api_key: str | None = None) -> ApiError:
    """The 401 of a request without a valid key; ``details`` names the header and whether the key was missing."""
    issue = "missing" if not api_key else "unknown or revoked key"
    return ApiError(ErrorCode.UNAUTHORIZED, details=[{"field": API_KEY_HEADER, "issue": issue}])


def message_for(code: ErrorCode) -> str:
    """The human message for a code, for any code (a recipient row must never lack one)."""
    return DEFAULT_MESSAGES.get(code) or code.value.replace("_", " ").capitalize()


class ApiError(Exception):
    """An error answered to the caller in the error envelope."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        details: list[dict[str, str]] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or message_for(code)
        self.details = details
        self.status = status or HTTP_STATUS[code]
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}")
