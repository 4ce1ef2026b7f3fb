"""The provider port: what dispatch asks of a messaging provider, and how its answers are classified.

Telnyx-specific codes live here as data; the HTTP adapter that implements ``Provider`` is ``infra.telnyx``.

Telnyx's messaging API declares no ``Idempotency-Key`` support (docs/telnyx.md): a repeated send is a new
message. Every call for one leg still carries the same key and a byte-identical body (it costs nothing,
and a provider that honours keys would replay instead of sending again), but exactly-once never depends
on it: an attempt whose outcome is unknown is settled by evidence (a report, or ``Provider.find`` made
after the detail-record horizon) before anyone sends it again (shared/services/dispatching.py).
"""

from __future__ import annotations

import re
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from shared.rules.frozen import frozen


class Kind(StrEnum):
    ACCEPTED = "accepted"  # the provider has the message: provider_id is set
    PERMANENT = "permanent"  # it will never accept this message: fail the leg
    OPT_OUT = "opt_out"  # the recipient sent STOP: fail the leg and remember the opt-out
    TRANSIENT = "transient"  # it did not take the message; asking again later is safe
    AMBIGUOUS = "ambiguous"  # the request may have reached it: reconcile (find) before sending again


# Telnyx's documented key format (developers.telnyx.com, API fundamentals: idempotency).
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")
IDEMPOTENCY_KEY_PREFIX = "mmsgate:"


def idempotency_key_for(message_id: str) -> str:
    """The provider idempotency key of a leg: stable across every attempt and every process."""
    return IDEMPOTENCY_KEY_PREFIX + message_id


def _settle_key(message: OutboundMessage | GroupOutboundMessage) -> None:
    """Derive the key from the message id when none was given, and refuse one the provider would refuse on
    every attempt (a programming error, not an outcome)."""
    if not message.idempotency_key:
        object.__setattr__(message, "idempotency_key", idempotency_key_for(message.message_id))
    if not IDEMPOTENCY_KEY.match(message.idempotency_key):
        raise ValueError(f"idempotency key {message.idempotency_key!r} does not match {IDEMPOTENCY_KEY.pattern}")


@frozen
class OutboundMessage:
    message_id: str
    to: str
    from_: str
    text: str | None
    subject: str | None
    media_urls: tuple[str, ...]
    webhook_url: str
    # Empty means "derive it from message_id" (idempotency_key_for), so a caller that predates the key
    # still sends every attempt of a leg under one key.
    idempotency_key: str = ""

    def __post_init__(self) -> None:
        _settle_key(self)


@frozen
class GroupOutboundMessage:
    """One Telnyx group_mms: a true group conversation of up to 8 recipients (shared/services/conversation.py).
    ``message_id`` is the conversation's id; every attempt carries its idempotency key and the same body."""

    message_id: str
    to: tuple[str, ...]
    from_: str
    text: str | None
    subject: str | None
    media_urls: tuple[str, ...]
    webhook_url: str
    idempotency_key: str = ""

    def __post_init__(self) -> None:
        _settle_key(self)


@frozen
class Outcome:
    kind: Kind
    provider_id: str | None = None
    http_status: int | None = None
    code: str | None = None
    detail: str = ""
    retry_after: float | None = None
    raw: dict = field(default_factory=dict, compare=False)


class LookupState(StrEnum):
    FOUND = "found"  # the provider holds the leg's message: provider_id (and usually status) are set
    ABSENT = "absent"  # the provider answered completely and holds no message for the leg
    UNKNOWN = "unknown"  # the provider could not be asked, or its answer was incomplete: decide without it


@frozen
class Lookup:
    state: LookupState
    provider_id: str | None = None
    status: str | None = None  # the provider's own status of the recipient (Telnyx to[0].status)
    detail: str = ""


class Provider(Protocol):
    def send(self, message: OutboundMessage) -> Outcome:
        """One attempt, no retries of its own. Never raises for a provider or network failure."""
        ...

    def send_group(self, message: GroupOutboundMessage) -> Outcome:
        """One group_mms attempt (one conversation, one provider message id), as ``send``."""
        ...

    def find(self, message: OutboundMessage | GroupOutboundMessage, since: datetime) -> Lookup:
        """Whether the provider holds ``message`` (matched by its leg, or its conversation), sent no earlier
        than ``since`` (the first attempt; allow for clock skew). Never raises: failures are UNKNOWN."""
        ...


# Telnyx error codes that no retry can fix, besides every 4xx not listed as transient below.
OPT_OUT_CODES = frozenset({"40300"})
# 4xx codes that clear with time: API rate limit, queue full, spend limit (resets at 00:00 UTC).
TRANSIENT_CODES = frozenset({"10011", "40318", "40333", "10008"})

# Telnyx answers 422 when an Idempotency-Key is reused with a different body or query while its record
# exists (it keeps only successful answers, for 24 h): so a 422 on a keyed send means the provider
# accepted a message under this key. The error *code* of that answer is not documented (searched: the
# idempotency page, the API error list); the simulator answers this one, 10012 "Duplicate resource",
# the closest documented code. UNCONFIRMED for real Telnyx, hence the rule in ``classify``.
IDEMPOTENCY_MISMATCH_STATUS = 422
IDEMPOTENCY_MISMATCH_CODE = "10012"
# Codes Telnyx documents for a malformed request (10xxx parameters, 403xx message content): a 422 that
# carries one of them is a validation error, not an idempotency conflict.
_REQUEST_ERROR_CODES = frozenset({"10002", "10003", "10004", "10006", "10015", "10016", "10020", "10023"})


def is_request_error(code: str | None) -> bool:
    return code is not None and (code in _REQUEST_ERROR_CODES or (code.startswith("403") and len(code) == 5))


def classify(http_status: int, code: str | None) -> Kind:
    if 200 <= http_status < 300:
        return Kind.ACCEPTED
    if code in OPT_OUT_CODES:
        return Kind.OPT_OUT
    if http_status == 429 or http_status >= 500 or http_status == 408 or code in TRANSIENT_CODES:
        return Kind.TRANSIENT
    if http_status == IDEMPOTENCY_MISMATCH_STATUS and (code == IDEMPOTENCY_MISMATCH_CODE or not is_request_error(code)):
        # The provider holds a message under this key (an earlier attempt's body differed, e.g. a media URL
        # signed with a rotated key). Failing the leg could fail a message that was sent: find it instead.
        # A 422 with an unknown code counts too, because the real code is unconfirmed.
        return Kind.AMBIGUOUS
    return Kind.PERMANENT


@frozen
class Capabilities:
    """What one carrier can carry over the API we use (facts, each with its source, in the carrier's module:
    ``shared.carriers.telnyx.TELNYX_CAPABILITIES``, ``shared.carriers.twilio.TWILIO_CAPABILITIES``).

    ``max_media_bytes`` is exclusive, as ``MEDIA_MAX_BYTES`` is: a message's media total must stay *below* it.
    ``countries`` are the ISO 3166 alpha-2 codes MMS may be sent to."""

    name: str
    mms: bool
    group_mms: bool
    max_media_bytes: int
    max_media_count: int
    countries: frozenset[str]
