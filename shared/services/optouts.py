"""The opt-out API: a tenant's opt-out list, read, changed and imported (docs/decisions.md "Opt-outs").

A number on the list is refused at accept time (``RECIPIENT_OPTED_OUT``). Each entry keeps where it came from
and when: ``keyword`` (the recipient texted STOP; the word and the inbound message), ``provider_rejection``
(Telnyx refused a send with its STOP block, 40300), ``api`` (PUT), ``import`` (POST .../import) or ``admin``
(mmsgate-admin). An entry is never overwritten by a later opt-out of the same number: its source and time stay
the first one's. Changes made through this API raise no customer event (the caller made them); keyword opt-outs
and opt-ins do (``recipient.opted_out`` / ``recipient.opted_in``).

Numbers are strict E.164 (``+`` and the full international number), checked as the send path checks recipients,
so that an entry matches the recipients it is meant to stop. The list is paged in number order with an opaque
cursor: the last number of the page, so a cursor edited by hand can only move within the caller's own list.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.rules.errors import ApiError, ErrorCode
from shared.rules.legs import iso
from shared.rules.paging import page_query
from shared.rules.phone import InvalidNumber, parse_e164
from shared.rules.records import OptOut

if TYPE_CHECKING:
    from shared.api.models import OptOutImport  # pydantic: loaded by the import route only
    from shared.ports import Runtime

MAX_DETAILS = 20  # bad numbers named in one 400 (the count says how many in all)


def entry_view(entry: OptOut) -> dict[str, Any]:
    return {"number": entry.number, "opted_out": True, "source": entry.source, "keyword": entry.keyword,
            "message_id": entry.message_id, "opted_out_at": iso(entry.at)}


def _invalid(field: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid", details=[{"field": field, "issue": issue}])


def number_of(raw: str, field: str = "number") -> str:
    """``raw`` as canonical E.164, or a 400 naming ``field``."""
    try:
        return parse_e164(raw)
    except InvalidNumber as exc:
        raise _invalid(field, f"not an E.164 number: {exc.reason}") from None


def encode_cursor(number: str) -> str:
    return base64.urlsafe_b64encode(number.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return parse_e164(raw) if raw.startswith("+") and len(cursor) <= 64 else _bad_cursor()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return _bad_cursor()


def _bad_cursor() -> str:
    raise ApiError(ErrorCode.INVALID_CURSOR, "The cursor is not one this list handed out",
                   details=[{"field": "cursor", "issue": "use next_cursor from the previous page as it is"}])


def listing(rt: Runtime, tenant_id: str, args: Mapping[str, list[str]]) -> dict[str, Any]:
    """``GET /api/v1/opt-outs``: one page in number order, and the cursor of the next."""
    limit, cursor = page_query(args)
    after = decode_cursor(cursor) if cursor is not None else None
    # One more than the page says whether another follows, without a count.
    entries = rt.accounts.list_opt_outs(tenant_id, after, limit + 1)
    page, more = entries[:limit], len(entries) > limit
    return {"data": [entry_view(e) for e in page],
            "pagination": {"limit": limit, "has_more": more,
                           "next_cursor": encode_cursor(page[-1].number) if more else None}}


def get(rt: Runtime, tenant_id: str, raw: str) -> dict[str, Any]:
    number = number_of(raw)
    entry = rt.accounts.get_opt_out(tenant_id, number)
    if entry is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"{number} is not on the opt-out list")
    return entry_view(entry)


def put(rt: Runtime, tenant_id: str, raw: str) -> tuple[int, dict[str, Any]]:
    """201 with the new entry; 200 with the entry already there (its source and time unchanged)."""
    number = number_of(raw)
    entry, created = rt.accounts.put_opt_out(tenant_id, OptOut(number=number, source="api", at=rt.now()))
    return (201 if created else 200), entry_view(entry)


def delete(rt: Runtime, tenant_id: str, raw: str) -> dict[str, Any]:
    number = number_of(raw)
    if not rt.accounts.delete_opt_out(tenant_id, number):
        raise ApiError(ErrorCode.NOT_FOUND, f"{number} is not on the opt-out list")
    return {"number": number, "opted_out": False}


def import_numbers(rt: Runtime, tenant_id: str, req: OptOutImport) -> dict[str, Any]:
    """Every number checked first (one bad number refuses the whole import, naming it: nothing is written);
    then each one not on the list yet is added, 500 per commit."""
    numbers: dict[str, None] = {}
    bad: list[dict[str, str]] = []
    for i, raw in enumerate(req.numbers):
        try:
            numbers[parse_e164(raw)] = None
        except InvalidNumber as exc:
            bad.append({"field": f"numbers.{i}", "issue": f"not an E.164 number: {exc.reason}"})
    if bad:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"{len(bad)} of the {len(req.numbers)} numbers are not E.164 "
                       "numbers; nothing was imported", details=bad[:MAX_DETAILS])
    now = rt.now()
    added = rt.accounts.import_opt_outs(tenant_id, [OptOut(number=n, source="import", at=now) for n in numbers])
    return {"received": len(req.numbers), "distinct": len(numbers), "added": added,
            "already_opted_out": len(numbers) - added}
