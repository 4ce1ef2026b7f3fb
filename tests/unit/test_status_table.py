"""The status machine, checked pair by pair against rules written here from the domain (docs/webhooks.md "Statuses",
the docstrings of shared/rules/status.py), not read from ``ALLOWED_FROM``: adding or removing any single entry of
either table fails one of these tests.

Leg statuses
    pending -> queued | scheduled (accepted) -> sending (claimed by dispatch) -> sent (the provider has it)
    -> delivered | undelivered. Never backwards, terminal statuses are never left, no status re-enters
    itself (a repeated report is not a move).
    - ``scheduled`` becomes ``queued`` when its time comes, as at Twilio (scheduled -> queued -> sending);
      ``queued`` never becomes ``scheduled``.
    - A provider report may overtake dispatch's own record of the answer: ``sending`` may go straight to
      ``delivered``/``undelivered``.
    - ``failed`` and ``expired`` (validity limits) from any non-terminal status.
    - ``canceled`` only before dispatch took the leg: once ``sending``, the provider may have it.

Send states (dispatch's bookkeeping)
    none -> in_flight (claimed). in_flight -> retryable (not taken) | ambiguous (no answer).
    retryable/ambiguous -> in_flight (the next attempt or the reconcile retakes the claim); a dead claim is
    retaken through ``ambiguous`` (in_flight -> ambiguous -> in_flight), never in_flight -> in_flight.
    An ambiguous leg whose provider still cannot tell stays ambiguous. ``accepted`` and ``failed`` are
    terminal and reachable from every open state (a report proves the provider has it at any moment; a
    give-up can come at any moment).
"""

from __future__ import annotations

import itertools

import pytest

from shared.rules.status import (
    ALLOWED_FROM,
    SEND_ALLOWED_FROM,
    TERMINAL,
    SendState,
    Status,
    can_enter,
    can_send_enter,
    from_provider,
    is_final,
)

S, SS = Status, SendState

# Written from the rules above: for each status, where it may go.
MOVES: dict[str, set[str]] = {
    "pending": {"queued", "scheduled", "failed", "canceled", "expired"},
    "queued": {"sending", "failed", "canceled", "expired"},
    "scheduled": {"queued", "sending", "failed", "canceled", "expired"},
    "sending": {"sent", "delivered", "undelivered", "failed", "expired"},
    "sent": {"delivered", "undelivered", "failed", "expired"},
    "delivered": set(),
    "undelivered": set(),
    "failed": set(),
    "canceled": set(),
    "expired": set(),
}

SEND_MOVES: dict[str, set[str]] = {
    "none": {"in_flight", "accepted", "failed"},
    "in_flight": {"retryable", "ambiguous", "accepted", "failed"},
    "retryable": {"in_flight", "accepted", "failed"},
    "ambiguous": {"in_flight", "ambiguous", "accepted", "failed"},
    "accepted": set(),
    # a report that proves the provider had a leg given up as PROVIDER_OUTCOME_UNKNOWN (status.can_revive)
    "failed": {"accepted"},
}

ALL = [s.value for s in Status]
PAIRS = list(itertools.product(ALL, ALL))
SEND_PAIRS = list(itertools.product([s.value for s in SendState], [s.value for s in SendState]))


def test_the_expectation_names_every_status():
    assert set(MOVES) == set(ALL)
    assert set(SEND_MOVES) == {s.value for s in SendState}


@pytest.mark.parametrize(("current", "new"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_can_enter(current, new):
    assert can_enter(current, new) is (new in MOVES[current])
    assert can_enter(Status(current), Status(new)) is (new in MOVES[current])


@pytest.mark.parametrize(("current", "new"), SEND_PAIRS, ids=[f"{a}->{b}" for a, b in SEND_PAIRS])
def test_can_send_enter(current, new):
    assert can_send_enter(current, new) is (new in SEND_MOVES[current])


def test_the_tables_hold_nothing_else():
    """Belt and braces for the pair tests: the table as a set of edges equals the expectation's edges."""
    edges = {(old.value, new.value) for new, olds in ALLOWED_FROM.items() for old in olds}
    assert edges == {(old, new) for old, news in MOVES.items() for new in news}
    send_edges = {(old.value, new.value) for new, olds in SEND_ALLOWED_FROM.items() for old in olds}
    assert send_edges == {(old, new) for old, news in SEND_MOVES.items() for new in news}


def test_terminal_statuses():
    assert {s.value for s in TERMINAL} == {"delivered", "undelivered", "failed", "canceled", "expired"}


@pytest.mark.parametrize("status", ALL)
def test_is_final(status):
    terminal = status in {"delivered", "undelivered", "failed", "canceled", "expired"}
    assert is_final(status) is terminal
    # Only a sent leg can be final without being terminal (delivery_unconfirmed, or closed by the sweeper).
    assert is_final(status, True) is (terminal or status == "sent")


def test_unknown_status_is_refused_loudly():
    with pytest.raises(ValueError):
        can_enter("pending", "bogus")
    with pytest.raises(ValueError):
        can_send_enter("none", "bogus")


# -- Telnyx statuses (telnyx.md §2.3: queued, sending, sent, delivered, sending_failed, delivery_failed,
# delivery_unconfirmed, expired; docs/webhooks.md "Statuses" for our side) -----------------------------------
TELNYX_FINALIZED = {
    "queued": None,  # not news: no change
    "sending": None,
    "sent": (S.SENT, False),
    "delivered": (S.DELIVERED, False),
    "delivery_failed": (S.UNDELIVERED, False),
    "sending_failed": (S.FAILED, False),
    "expired": (S.FAILED, False),
    "delivery_unconfirmed": (S.SENT, True),  # no final report will come
    "webhook_delivered": None,  # an inbound-only status: nothing for an outbound leg
    "": None,
    "something_new": None,
}
# ``message.sent`` means the carrier has it even while ``to[].status`` still says queued/sending.
TELNYX_SENT = {**TELNYX_FINALIZED, "queued": (S.SENT, False), "sending": (S.SENT, False),
               "webhook_delivered": (S.SENT, False), "": (S.SENT, False), "something_new": (S.SENT, False)}


@pytest.mark.parametrize(("provider_status", "expected"), TELNYX_FINALIZED.items())
def test_from_provider_finalized(provider_status, expected):
    assert from_provider("message.finalized", provider_status) == expected


@pytest.mark.parametrize(("provider_status", "expected"),
                         [(k, v) for k, v in TELNYX_SENT.items() if k != "delivery_unconfirmed"])
def test_from_provider_sent_event(provider_status, expected):
    assert from_provider("message.sent", provider_status) == expected


def test_from_provider_sent_event_delivery_unconfirmed_is_final():
    assert from_provider("message.sent", "delivery_unconfirmed") == (S.SENT, True)


def test_every_telnyx_outbound_status_is_mapped_explicitly():
    # A status Telnyx documents but the mapping forgets would silently be "no change".
    from shared.rules.status import PROVIDER_STATUS

    documented = {"queued", "sending", "sent", "delivered", "sending_failed", "delivery_failed",
                  "delivery_unconfirmed", "expired"}
    assert set(PROVIDER_STATUS) == documented
