"""Reads: one message, one group (its summary computed from its legs), and the pricing table."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.errors import ApiError, ErrorCode
from shared.legs import view
from shared.status import Status, is_final

if TYPE_CHECKING:
    from infra.runtime import Runtime

_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


def _not_found(what: str) -> ApiError:
    # Another tenant's record is indistinguishable from a missing one.
    return ApiError(ErrorCode.NOT_FOUND, f"No {what} with that id")


def message(rt: Runtime, tenant_id: str, message_id: str) -> dict:
    leg = rt.store.get_leg(message_id) if message_id.startswith("msg_") else None
    if leg is None or leg["tenant_id"] != tenant_id:
        raise _not_found("message")
    return view(leg)


def group(rt: Runtime, tenant_id: str, group_id: str) -> dict:
    record = rt.store.get_group(group_id) if group_id.startswith("grp_") else None
    if record is None or record["tenant_id"] != tenant_id:
        raise _not_found("group")
    legs = sorted(rt.store.legs_of_group(group_id), key=lambda leg: record["message_ids"].index(leg["id"]))
    counts = {"total": len(legs), "succeeded": 0, "failed": 0, "scheduled": 0, "pending": 0, "final": 0}
    by_status: dict[str, int] = {}
    for leg in legs:
        by_status[leg["status"]] = by_status.get(leg["status"], 0) + 1
        if leg["status"] in (Status.FAILED.value, Status.UNDELIVERED.value, Status.EXPIRED.value,
                             Status.CANCELED.value):
            counts["failed"] += 1
        elif leg["status"] == Status.SCHEDULED.value:
            counts["scheduled"] += 1
        elif leg["status"] == Status.PENDING.value:
            counts["pending"] += 1
        else:
            counts["succeeded"] += 1
        counts["final"] += is_final(leg["status"], leg.get("final", False))
    return {"group_id": group_id, "messages": [view(leg) for leg in legs],
            "summary": {**counts, "by_status": by_status}}


def pricing(rt: Runtime, country: str | None) -> dict:
    if not country or not _COUNTRY.match(country):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                       details=[{"field": "country", "issue": "an ISO 3166-1 alpha-2 code is required"}])
    rates = rt.store.get_pricing(country)
    if rates is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"No messaging prices for {country.upper()}")
    channels = [
        {"channel": channel, "price": f"{rates[f'{channel}_micros'] / 1_000_000:.4f}",
         "unit": "segment" if channel == "sms" else "message"}
        for channel in ("sms", "mms") if f"{channel}_micros" in rates
    ]
    return {"country": country.upper(), "currency": rates.get("currency", "USD"), "channels": channels}
