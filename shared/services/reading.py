"""Reads: one message, one group (its summary computed from its legs), a page of search, and the pricing table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.rules import searching
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.legs import view
from shared.rules.status import Status

if TYPE_CHECKING:
    from shared.ports import Runtime

_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_FAILED = frozenset({Status.FAILED, Status.UNDELIVERED, Status.EXPIRED, Status.CANCELED})


def _not_found(what: str) -> ApiError:
    # Another tenant's record is indistinguishable from a missing one.
    return ApiError(ErrorCode.NOT_FOUND, f"No {what} with that id")


def message(rt: Runtime, tenant_id: str, message_id: str) -> dict[str, Any]:
    leg = rt.legs.get(message_id) if message_id.startswith("msg_") else None
    if leg is None or leg.tenant_id != tenant_id:
        raise _not_found("message")
    if leg.direction == "inbound":  # its media: signed URLs of our copies
        from shared.services.received import signed  # noqa: PLC0415

        return signed(rt, leg, view(leg))
    return view(leg)


def group(rt: Runtime, tenant_id: str, group_id: str) -> dict[str, Any]:
    record = rt.legs.get_group(group_id) if group_id.startswith("grp_") else None
    if record is None or record.tenant_id != tenant_id:
        raise _not_found("group")
    order = {message_id: i for i, message_id in enumerate(record.message_ids)}
    legs = sorted(rt.legs.of_group(group_id), key=lambda leg: order.get(leg.id, len(order)))
    # The accept's summary (shared/services/sending.py group_answer), recomputed from the legs as they are now:
    # ``accepted`` = on its way or arrived (neither failed, scheduled nor still pending); ``succeeded``
    # repeats it (the seed contract's name, kept for good), ``delivered`` is the part the carrier confirmed.
    counts = {"total": len(legs), "accepted": 0, "failed": 0, "scheduled": 0, "pending": 0, "delivered": 0,
              "final": 0}
    by_status: dict[str, int] = {}
    for leg in legs:
        by_status[leg.status.value] = by_status.get(leg.status.value, 0) + 1
        if leg.status in _FAILED:
            counts["failed"] += 1
        elif leg.status is Status.SCHEDULED:
            counts["scheduled"] += 1
        elif leg.status is Status.PENDING:
            counts["pending"] += 1
        else:
            counts["accepted"] += 1
        counts["delivered"] += leg.status is Status.DELIVERED
        counts["final"] += leg.is_final
    return {"group_id": group_id, "conversation_id": record.conversation_id, "messages": [view(leg) for leg in legs],
            "summary": {**counts, "succeeded": counts["accepted"], "by_status": by_status}}


def pricing(rt: Runtime, country: str | None) -> dict[str, Any]:
    if not country or not _COUNTRY.match(country):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                       details=[{"field": "country", "issue": "an ISO 3166-1 alpha-2 code is required"}])
    rates = rt.accounts.get_rates(country)
    if rates is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"No messaging prices for {country.upper()}")
    channels = [
        {"channel": channel, "price": f"{micros / 1_000_000:.4f}", "unit": "segment" if channel == "sms" else "message"}
        for channel, micros in (("sms", rates.sms_micros), ("mms", rates.mms_micros)) if micros is not None
    ]
    return {"country": country.upper(), "currency": rates.currency, "channels": channels}


def search(rt: Runtime, tenant_id: str, args: Mapping[str, list[str]]) -> dict[str, Any]:
    key = searching.cursor_key(rt.settings.webhook_signing_key)
    query, scope = searching.parse(key, tenant_id, args)
    # One more row than the page tells whether another page follows, without a count query.
    legs = rt.legs.search(query, query.limit + 1)
    page, more = legs[: query.limit], len(legs) > query.limit
    next_cursor = searching.encode_cursor(key, scope, page[-1].created_at, page[-1].id) if more else None
    data = [view(leg) for leg in page]
    if any(leg.direction == "inbound" for leg in page):  # their media: signed URLs of our copies, as one read's
        from shared.services.received import signed_all  # noqa: PLC0415

        data = signed_all(rt, list(zip(page, data, strict=True)))
    return {"data": data,
            "pagination": {"limit": query.limit, "has_more": more, "next_cursor": next_cursor}}
