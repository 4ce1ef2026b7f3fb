"""The status machine of one recipient leg, and how provider statuses map onto it.

Every change of a leg's status goes through ``can_enter``: the table below lists, for each status,
the statuses it may be entered from. Anything not listed is refused, so a status never moves
backwards, whatever order Cloud Tasks or Telnyx deliver things in.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"  # pre-inserted, gates not yet applied
    QUEUED = "queued"  # accepted, a dispatch task exists
    SCHEDULED = "scheduled"  # accepted, dispatched at scheduled_at
    SENDING = "sending"  # dispatch claimed it and is talking to the provider
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


S = Status

ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    S.PENDING: frozenset(),
    S.QUEUED: frozenset({S.PENDING, S.SCHEDULED}),
    S.SCHEDULED: frozenset({S.PENDING}),
    S.SENDING: frozenset({S.QUEUED, S.SCHEDULED}),
    # A provider report can overtake dispatch's own record of the provider's answer.
    S.SENT: frozenset({S.SENDING}),
    S.DELIVERED: frozenset({S.SENDING, S.SENT}),
    S.UNDELIVERED: frozenset({S.SENDING, S.SENT}),
    S.FAILED: frozenset({S.PENDING, S.QUEUED, S.SCHEDULED, S.SENDING, S.SENT}),
    S.CANCELED: frozenset({S.PENDING, S.QUEUED, S.SCHEDULED}),
    S.EXPIRED: frozenset({S.PENDING, S.QUEUED, S.SCHEDULED, S.SENDING, S.SENT}),
}

TERMINAL = frozenset({S.DELIVERED, S.UNDELIVERED, S.FAILED, S.CANCELED, S.EXPIRED})
ACCEPTED = frozenset({S.QUEUED, S.SCHEDULED, S.SENDING, S.SENT, S.DELIVERED, S.UNDELIVERED})


def can_enter(current: Status | str, new: Status | str) -> bool:
    return Status(current) in ALLOWED_FROM[Status(new)]


# The one failure a later proof can overturn: PROVIDER_OUTCOME_UNKNOWN means we could not learn whether the
# provider had the message and did not send it again. A report (or record) that proves it did moves the leg on
# to what the provider says, refunded price charged back once (docs/decisions.md, "Exactly once"). Never
# back to sending: nothing is ever resent from here.
REVIVABLE_ERROR = "PROVIDER_OUTCOME_UNKNOWN"
REVIVABLE_TO = frozenset({S.SENT, S.DELIVERED, S.UNDELIVERED})


def can_revive(current: Status | str, error_code: str | None, new: Status | str) -> bool:
    return Status(current) is S.FAILED and error_code == REVIVABLE_ERROR and Status(new) in REVIVABLE_TO


def is_final(status: Status | str, final_flag: bool = False) -> bool:
    """Terminal, or ``sent`` that will never get a report (``delivery_unconfirmed`` or swept)."""
    return Status(status) in TERMINAL or (Status(status) is S.SENT and final_flag)


# Telnyx `to[].status` -> (our status, whether a `sent` is final). None: no change.
PROVIDER_STATUS: dict[str, tuple[Status, bool] | None] = {
    "queued": None,
    "sending": None,
    "sent": (S.SENT, False),
    "delivered": (S.DELIVERED, False),
    "delivery_failed": (S.UNDELIVERED, False),
    "sending_failed": (S.FAILED, False),
    "expired": (S.FAILED, False),
    "delivery_unconfirmed": (S.SENT, True),
}


def from_provider(event_type: str, provider_status: str) -> tuple[Status, bool] | None:
    """Map one Telnyx delivery report to our status.

    ``message.sent`` reports often still carry ``to[].status == "queued"``: the event itself says the
    carrier has it, so it means ``sent`` (whatever else its status says, e.g. ``delivery_unconfirmed``).
    """
    mapped = PROVIDER_STATUS.get(provider_status)
    if event_type == "message.sent" and mapped is None:
        return (S.SENT, False)
    return mapped


class SendState(StrEnum):
    """Where one leg's conversation with the provider stands (dispatch's own bookkeeping, beside the status)."""

    NONE = "none"  # never claimed
    IN_FLIGHT = "in_flight"  # a dispatch holds the claim and is calling the provider
    RETRYABLE = "retryable"  # the provider did not take it (connect failure, 5xx): sending again is safe
    AMBIGUOUS = "ambiguous"  # the request may have reached the provider: find out before sending again
    ACCEPTED = "accepted"  # the provider has it (its id is recorded)
    FAILED = "failed"  # the provider refused it for good, or we gave up


SS = SendState

# For each send state, the states it may be entered from (a claim may be retaken by a later delivery of the
# same task once its holder is known dead: in_flight -> ambiguous -> in_flight).
SEND_ALLOWED_FROM: dict[SendState, frozenset[SendState]] = {
    SS.NONE: frozenset(),
    SS.IN_FLIGHT: frozenset({SS.NONE, SS.RETRYABLE, SS.AMBIGUOUS}),
    SS.RETRYABLE: frozenset({SS.IN_FLIGHT}),
    SS.AMBIGUOUS: frozenset({SS.IN_FLIGHT, SS.AMBIGUOUS}),
    # from failed only when a report revives a leg that ended PROVIDER_OUTCOME_UNKNOWN (can_revive)
    SS.ACCEPTED: frozenset({SS.NONE, SS.IN_FLIGHT, SS.RETRYABLE, SS.AMBIGUOUS, SS.FAILED}),
    SS.FAILED: frozenset({SS.NONE, SS.IN_FLIGHT, SS.RETRYABLE, SS.AMBIGUOUS}),
}


def can_send_enter(current: SendState | str, new: SendState | str) -> bool:
    return SendState(current) in SEND_ALLOWED_FROM[SendState(new)]


# Customer webhook event for a status a leg has just entered.
CUSTOMER_EVENTS: dict[Status, str] = {
    S.SENT: "message.sent",
    S.DELIVERED: "message.delivered",
    S.UNDELIVERED: "message.failed",
    S.FAILED: "message.failed",
    # Their own types, named after the status as Infobip's EXPIRED and Twilio's canceled are: a receiver
    # that only knows message.failed must not read a send the customer called off as a carrier failure.
    S.EXPIRED: "message.expired",
    S.CANCELED: "message.canceled",
}
