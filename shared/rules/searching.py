"""Message search, ``GET /api/v1/messages``: the filters a caller may combine, the query they become, and the
opaque cursor that pages through it.

Every query this module can produce is served by one composite index, and ``SEARCH_INDEXES`` lists them all
(infra/collections.py declares them; Terraform creates them; tests check all three agree). To keep that list
short the filters combine in a fixed set of ways (``ALLOWED_EQUALITIES``): the tenant, at most one equality
filter (two when the second is ``status`` under a ``group_id`` or ``batch_id``, or ``direction`` with
``status``, ``to`` or ``from``), and a ``created_at`` range, always ordered newest first: 13 indexes.
``direction`` is the leg's stored field: legs written before it existed carry none and match neither value.

The cursor is ``<payload>.<mac>``: the last row's (created_at, id), with an HMAC over the tenant, the
canonical filter set and the payload, under a key derived from the deployment's master secret. A cursor
from another tenant, for other filters, or edited by hand is refused (400 INVALID_CURSOR) rather than
silently answering a different page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Mapping

from shared.rules.errors import ApiError, ErrorCode
from shared.rules.frozen import frozen
from shared.rules.status import Status

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

# query parameter -> stored field of an equality filter
EQUALITY_PARAMS: dict[str, str] = {
    "status": "status", "to": "to", "from": "from", "group_id": "group_id", "batch_id": "batch_id",
    "client_ref": "client_ref", "direction": "direction",
}
# The equality sets a search may use besides tenant_id (each is one composite index).
ALLOWED_EQUALITIES: tuple[frozenset[str], ...] = (
    frozenset(),
    *(frozenset({field}) for field in EQUALITY_PARAMS.values()),
    frozenset({"group_id", "status"}),
    frozenset({"batch_id", "status"}),
    frozenset({"direction", "status"}),
    frozenset({"direction", "to"}),
    frozenset({"direction", "from"}),
)
PARAMS = frozenset({*EQUALITY_PARAMS, "created_after", "created_before", "limit", "cursor"})
DIRECTIONS = ("outbound", "inbound")


def index_fields(equalities: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The composite index a search with these equality filters needs: equalities first, then created_at in
    the order the search reads (newest first)."""
    return (("tenant_id", "ASCENDING"), *((f, "ASCENDING") for f in sorted(equalities)),
            ("created_at", "DESCENDING"))


SEARCH_INDEXES: tuple[tuple[tuple[str, str], ...], ...] = tuple(index_fields(eq) for eq in ALLOWED_EQUALITIES)

_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_CURSOR_CONTEXT = b"mmsgate search cursor v1"


@frozen
class Query:
    """One page of a search: what the store runs (see infra/store/legs.py ``search``)."""

    tenant_id: str
    equals: tuple[tuple[str, str], ...]  # (field, value), sorted by field
    created_after: dt.datetime | None
    created_before: dt.datetime | None
    limit: int
    after: tuple[dt.datetime, str] | None  # the last row of the previous page: (created_at, id)


def _invalid(field: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid", details=[{"field": field, "issue": issue}])


def _one(args: Mapping[str, list[str]], name: str) -> str | None:
    values = args.get(name) or []
    if len(values) > 1:
        raise _invalid(name, "give this parameter once")
    return values[0] if values else None


def _time(name: str, raw: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _invalid(name, "an RFC 3339 date-time with a UTC offset is required") from None
    if value.tzinfo is None:
        raise _invalid(name, "an RFC 3339 date-time with a UTC offset is required")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC (9999-12-31...-01:00, after 9999)
        raise _invalid(name, "the date-time is outside the years 1 to 9999 once in UTC") from None


def _number(name: str, raw: str) -> str:
    # An unencoded "+" in a query string arrives as a space: take " 1555..." as the number the caller meant.
    value = raw.strip()
    value = value if value.startswith("+") else "+" + value
    if not _E164.match(value):
        raise _invalid(name, "an E.164 phone number is required (URL-encode the + as %2B)")
    return value


def _equality(name: str, raw: str) -> str:
    if name == "status":
        if raw not in {s.value for s in Status}:
            raise _invalid(name, "one of " + ", ".join(s.value for s in Status))
        return raw
    if name in ("to", "from"):
        return _number(name, raw)
    if name in ("group_id", "batch_id"):
        if not _ID.match(raw):
            raise _invalid(name, "an id of 1 to 64 letters, digits or underscores is required")
        return raw
    if name == "direction":
        if raw not in DIRECTIONS:
            raise _invalid(name, "one of " + ", ".join(DIRECTIONS))
        return raw
    if not raw or len(raw) > 128:  # client_ref
        raise _invalid(name, "1 to 128 characters are required")
    return raw


def _filters(args: Mapping[str, list[str]]) -> tuple[dict[str, str], dt.datetime | None, dt.datetime | None]:
    unknown = sorted(set(args) - PARAMS)
    if unknown:
        raise _invalid(unknown[0], "unknown query parameter; filters are " + ", ".join(sorted(PARAMS)))
    equals: dict[str, str] = {}
    for name, field in EQUALITY_PARAMS.items():
        raw = _one(args, name)
        if raw is not None:
            equals[field] = _equality(name, raw)
    if frozenset(equals) not in ALLOWED_EQUALITIES:
        raise _invalid(sorted(equals)[-1], "combine at most one of status, to, from, group_id, batch_id, "
                       "client_ref, direction (and status with group_id, batch_id or direction; direction with to "
                       "or from)")
    after_raw, before_raw = _one(args, "created_after"), _one(args, "created_before")
    after = _time("created_after", after_raw) if after_raw is not None else None
    before = _time("created_before", before_raw) if before_raw is not None else None
    if after is not None and before is not None and after >= before:
        raise _invalid("created_before", "must be later than created_after")
    return equals, after, before


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", raw.strip()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise _invalid("limit", f"an integer from 1 to {MAX_LIMIT} is required")
    return int(raw)


# -- the cursor -------------------------------------------------------------------------------------------

def cursor_key(master: str) -> bytes:
    """The cursor MAC key, derived so that it signs nothing else the master secret signs (webhooks)."""
    if not master:
        raise ValueError("WEBHOOK_SIGNING_KEY is not set")
    return hmac.new(master.encode(), _CURSOR_CONTEXT, hashlib.sha256).digest()


def _scope(tenant_id: str, equals: Mapping[str, str], after: dt.datetime | None, before: dt.datetime | None) -> bytes:
    return json.dumps([tenant_id, sorted(equals.items()), after.isoformat() if after else None,
                       before.isoformat() if before else None], separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(key: bytes, scope: bytes, created_at: dt.datetime, leg_id: str) -> str:
    payload = json.dumps([created_at.astimezone(dt.UTC).isoformat(), leg_id], separators=(",", ":")).encode()
    mac = hmac.new(key, scope + b"\n" + payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(mac)}"


def decode_cursor(key: bytes, scope: bytes, cursor: str) -> tuple[dt.datetime, str]:
    bad = ApiError(ErrorCode.INVALID_CURSOR, "The cursor is not one this search issued: start again without it")
    if len(cursor) > 512 or cursor.count(".") != 1:
        raise bad
    try:
        payload_text, mac_text = cursor.split(".")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (ValueError, binascii.Error):
        raise bad from None
    expected = hmac.new(key, scope + b"\n" + payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, expected):
        raise bad
    created, leg_id = json.loads(payload)
    return dt.datetime.fromisoformat(created), leg_id


# -- the service -------------------------------------------------------------------------------------------

def parse(key: bytes, tenant_id: str, args: Mapping[str, list[str]]) -> tuple[Query, bytes]:
    """The query a request's parameters ask for, and the scope its cursors are bound to."""
    equals, after, before = _filters(args)
    limit = _limit(_one(args, "limit"))
    scope = _scope(tenant_id, equals, after, before)
    raw_cursor = _one(args, "cursor")
    position = decode_cursor(key, scope, raw_cursor) if raw_cursor is not None else None
    return Query(tenant_id=tenant_id, equals=tuple(sorted(equals.items())), created_after=after,
                 created_before=before, limit=limit, after=position), scope
