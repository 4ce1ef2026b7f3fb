"""``GET /v2/detail_records``: Telnyx's Detail Record Search, for messaging records.

Documented (developers.telnyx.com, "Search detail records"; telnyx-python ``detail_record_list_params``):
``filter[record_type]`` is required; ``filter[date_range]`` (``today``, ``yesterday``, …, ``last_N_days``);
``filter[created_at][gte|lt]`` (the docs also show ``gt``/``lte`` style operators elsewhere: both are
accepted here); ``filter[<attribute>]=<value>`` on any record attribute (``filter[status]=delivered``,
``filter[direction]=inbound``, ``filter[cli]=…``), with ``[starts_with]``, ``[ends_with]`` and
``[contains]``; ``sort=created_at`` or ``-created_at``; ``page[number]`` (≥ 1, default 1) and
``page[size]`` (1–50, default 20). The answer is ``{"data": [...], "meta": {"page_number", "page_size",
"total_pages", "total_results"}}``.

The simulator's readings where the docs are silent: times are UTC; a date-only value means that day's
00:00; a named range covers the whole period (weeks start on Monday); the default sort is newest first;
a group message has one record per recipient (Telnyx: "individual message detail records per recipient").

When a record appears: Telnyx says queued messages that are not yet sent are not in MDR reports
(developers.telnyx.com, messaging/messages/configuration-and-usage) and does not say how long a record
takes after that. The simulator shows a recipient's record only once it is ``sent`` and ``mdr_lag_s``
seconds (default 60) have passed since its ``sent_at``; a request that never created a message has none.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

from .wire import MESSAGING_PROFILE_ID, ORGANIZATION_ID, ApiError, Message, bad_parameter, error

RECORD_TYPES = frozenset({
    "ai-voice-assistant", "amd", "call-control", "conference", "conference-participant", "embedding", "fax",
    "inference", "inference-speech-to-text", "media_storage", "media-streaming", "messaging",
    "noise-suppression", "recording", "sip-trunking", "siprec-client", "stt", "tts", "verify", "webrtc",
    "wireless",
})
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 50
_FILTER = re.compile(r"^filter\[([^\[\]]+)\](?:\[([^\[\]]+)\])?$")
_TIME_OPS = {"gte": lambda a, b: a >= b, "gt": lambda a, b: a > b, "lte": lambda a, b: a <= b,
             "lt": lambda a, b: a < b, "eq": lambda a, b: a == b}
_TEXT_OPS = {"eq": lambda a, b: a == b, "starts_with": str.startswith, "ends_with": str.endswith,
             "contains": lambda a, b: b in a}
# Telnyx messaging statuses → the MDR's final status vocabulary (gw_timeout, delivered, dlr_unconfirmed,
# dlr_timeout, received, gw_reject, failed); a message still on its way has none yet.
_MDR_STATUS = {"delivered": "delivered", "delivery_failed": "failed", "delivery_unconfirmed": "dlr_unconfirmed",
               "sending_failed": "gw_reject", "expired": "dlr_timeout"}


def _stamp(ts: datetime | None) -> str | None:
    """The MDR examples' style: ``2020-07-01T00:00:00Z``."""
    return None if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def detail_records(message: Message, now: datetime | None = None,
                   lag_s: float = 0.0) -> list[tuple[datetime, dict]]:
    """(created_at, record) per recipient that is visible at ``now``: sent, and ``lag_s`` seconds ago or
    more (with ``now`` None, every sent recipient). Call with ``message.lock`` held."""
    req = message.request
    out = []
    unit = message.unit_cost()
    for recipient in message.recipients:
        if recipient.sent_at is None:
            continue  # queued, not yet sent: not in MDRs
        if now is not None and (now - recipient.sent_at).total_seconds() < lag_s:
            continue
        final = _MDR_STATUS.get(recipient.status)
        out.append((message.received_at, {
            "record_type": "message_detail_record",
            "uuid": message.id,
            "user_id": ORGANIZATION_ID,
            "created_at": _stamp(message.received_at),
            "updated_at": _stamp(recipient.completed_at or recipient.sent_at or message.received_at),
            "sent_at": _stamp(recipient.sent_at),
            "completed_at": _stamp(recipient.completed_at),
            "carrier": "T-MOBILE USA, INC.",
            "carrier_fee": "0.0",
            "cld": recipient.phone_number,
            "cli": req.from_,
            "country_code": "US",
            "source_country_code": "US",
            "direction": "outbound",
            "message_type": req.type,
            "parts": message.parts,
            "on_net": False,
            "fteu": False,
            "profile_id": req.messaging_profile_id or MESSAGING_PROFILE_ID,
            "profile_name": "Simulator profile",
            "status": final,
            "errors": [e["code"] for e in recipient.errors],
            "tags": ",".join(req.tags),
            "rate": f"{unit:.4f}",
            "cost": None if recipient.cost is None else f"{recipient.cost:.4f}",
            "currency": "USD",
            "delivery_status_webhook_url": message.webhook_url,
            "delivery_status_failover_url": message.webhook_failover_url,
        }))
    return out


def _restore_plus(value: str) -> str:
    """An unescaped ``+`` in a query string arrives as a space: give it back."""
    return "+" + value[1:] if value.startswith(" ") else value


def _parse_time(name: str, raw: str) -> datetime:
    text = raw.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise bad_parameter(name, f"{raw!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time.") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _date_range(raw: str, now: datetime) -> tuple[datetime, datetime]:
    today = datetime.combine(now.date(), datetime.min.time(), UTC)
    day = timedelta(days=1)
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)

    def month_start(start: datetime, months: int) -> datetime:
        index = start.year * 12 + start.month - 1 + months
        return start.replace(year=index // 12, month=index % 12 + 1)

    ranges = {
        "today": (today, today + day), "yesterday": (today - day, today), "tomorrow": (today + day, today + 2 * day),
        "last_week": (monday - 7 * day, monday), "this_week": (monday, monday + 7 * day),
        "next_week": (monday + 7 * day, monday + 14 * day),
        "last_month": (month_start(first, -1), first), "this_month": (first, month_start(first, 1)),
        "next_month": (month_start(first, 1), month_start(first, 2)),
    }
    if raw in ranges:
        return ranges[raw]
    match = re.fullmatch(r"last_(\d{1,4})_days", raw)
    if match:
        return today - int(match.group(1)) * day, today + day
    raise bad_parameter("filter[date_range]", f"{raw!r} is not one of {sorted(ranges)} or last_N_days.")


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise bad_parameter(name, f"The '{name}' parameter must be an integer from {low} to {high}.")
    return value


def search(messages: list[Message], query: dict[str, list[str]], now: datetime, lag_s: float = 0.0) -> dict:
    """Answer a detail record search, or raise ``ApiError`` for a bad query. Only records visible at
    ``now`` (sent, ``lag_s`` seconds ago or more) are searched."""
    types = query.get("filter[record_type]")
    record_type = types[-1] if types else None
    if not record_type:
        item = error("10004", "Missing required parameter", "The 'filter[record_type]' parameter is required.")
        item["source"] = {"parameter": "filter[record_type]"}
        raise ApiError(400, [item])
    if record_type not in RECORD_TYPES:
        raise bad_parameter("filter[record_type]", f"{record_type!r} is not a detail record type.")
    number = _int_param(query, "page[number]", 1, 1, 1_000_000)
    size = _int_param(query, "page[size]", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    sort = (query.get("sort") or ["-created_at"])[-1]
    descending, sort_key = sort.startswith("-"), sort.lstrip("-")

    time_tests: list[tuple[str, datetime]] = []
    text_tests: list[tuple[str, str, str]] = []
    for name, values in query.items():
        match = _FILTER.match(name)
        if not match or name == "filter[record_type]":
            continue
        attribute, op = match.group(1), match.group(2) or "eq"
        raw = values[-1]
        if attribute == "date_range":
            start, end = _date_range(raw, now)
            time_tests += [("gte", start), ("lt", end)]
        elif attribute == "created_at":
            if op not in _TIME_OPS:
                raise bad_parameter(name, f"'{op}' is not a comparison of created_at ({sorted(_TIME_OPS)}).")
            time_tests.append((op, _parse_time(name, raw)))
        else:
            if op not in _TEXT_OPS:
                raise bad_parameter(name, f"'{op}' is not one of {sorted(_TEXT_OPS)}.")
            text_tests.append((attribute, op, _restore_plus(raw)))

    found: list[tuple[datetime, dict]] = []
    if record_type == "messaging":
        for message in messages:
            with message.lock:
                found.extend(detail_records(message, now, lag_s))

    def keep(created: datetime, record: dict) -> bool:
        if not all(_TIME_OPS[op](created, bound) for op, bound in time_tests):
            return False
        for attribute, op, value in text_tests:
            actual = record.get(attribute)
            if actual is None:
                return False
            text = str(actual).lower() if isinstance(actual, bool) else str(actual)
            if not _TEXT_OPS[op](text, value):
                return False
        return True

    selected = [(c, r) for c, r in found if keep(c, r)]
    if sort_key == "created_at":
        selected.sort(key=lambda item: item[0], reverse=descending)
    else:
        selected.sort(key=lambda item: (item[1].get(sort_key) is None, str(item[1].get(sort_key))),
                      reverse=descending)
    total = len(selected)
    page = [record for _, record in selected[(number - 1) * size: number * size]]
    return {"data": page, "meta": {"page_number": number, "page_size": size,
                                   "total_pages": math.ceil(total / size), "total_results": total}}
