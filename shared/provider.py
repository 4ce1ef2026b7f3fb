"""The provider interface and how its answers are classified. Telnyx-specific codes live here as
data; the HTTP client that produces an ``Outcome`` is ``infra.telnyx``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    ACCEPTED = "accepted"  # the provider has the message: provider_id is set
    PERMANENT = "permanent"  # it will never accept this message: fail the leg
    OPT_OUT = "opt_out"  # the recipient sent STOP: fail the leg and remember the opt-out
    TRANSIENT = "transient"  # it did not take the message; asking again later is safe
    AMBIGUOUS = "ambiguous"  # the request may have reached it: reconcile before sending again


@dataclass(frozen=True)
class OutboundMessage:
    message_id: str
    to: str
    from_: str
    text: str | None
    subject: str | None
    media_urls: tuple[str, ...]
    webhook_url: str


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    provider_id: str | None = None
    http_status: int | None = None
    code: str | None = None
    detail: str = ""
    retry_after: float | None = None
    raw: dict = field(default_factory=dict, compare=False)


# Telnyx error codes that no retry can fix, besides every 4xx not listed as transient below.
OPT_OUT_CODES = frozenset({"40300"})
# 4xx codes that clear with time: API rate limit, queue full, spend limit (resets at 00:00 UTC).
TRANSIENT_CODES = frozenset({"10011", "40318", "40333", "10008"})


def classify(http_status: int, code: str | None) -> Kind:
    if 200 <= http_status < 300:
        return Kind.ACCEPTED
    if code in OPT_OUT_CODES:
        return Kind.OPT_OUT
    if http_status == 429 or http_status >= 500 or http_status == 408 or code in TRANSIENT_CODES:
        return Kind.TRANSIENT
    return Kind.PERMANENT
