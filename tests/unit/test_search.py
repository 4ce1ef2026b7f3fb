"""Message search rules (shared/rules/searching.py): which filters combine, their validation, the signed cursor,
and that every combination the parser lets through has its composite index declared."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from infra import collections as C
from shared.rules import searching
from shared.rules.errors import ApiError, ErrorCode

KEY = searching.cursor_key("master-secret-for-tests")
TENANT = "ten_a"
FILTER_VALUES = {"status": "queued", "to": "+14155550100", "from": "+14155550199", "group_id": "grp_1",
                 "batch_id": "bat_1", "client_ref": "order-7", "direction": "inbound"}


def parse(args: dict[str, str | list[str]], tenant: str = TENANT, key: bytes = KEY):
    return searching.parse(key, tenant, {k: v if isinstance(v, list) else [v] for k, v in args.items()})


def refused(args: dict, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(args, **kwargs)
    assert caught.value.status == 400
    return caught.value


def test_defaults():
    query, _ = parse({})
    assert query.tenant_id == TENANT and query.limit == 50 and query.equals == () and query.after is None


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", "99999"])
def test_limit_out_of_range_is_refused(limit):
    error = refused({"limit": limit})
    assert error.code == ErrorCode.VALIDATION_ERROR and error.details[0]["field"] == "limit"


@pytest.mark.parametrize("limit", [1, 100, 37])
def test_limit_in_range(limit):
    assert parse({"limit": str(limit)})[0].limit == limit


def test_unknown_parameter_and_repeated_parameter_are_refused():
    assert refused({"stauts": "queued"}).details[0]["field"] == "stauts"
    assert refused({"status": ["queued", "sent"]}).details[0]["field"] == "status"


def test_filter_values_are_checked():
    assert refused({"status": "done"}).details[0]["field"] == "status"
    assert refused({"to": "hello"}).details[0]["field"] == "to"
    assert refused({"group_id": "grp/../x"}).details[0]["field"] == "group_id"
    assert refused({"client_ref": "x" * 129}).details[0]["field"] == "client_ref"
    assert refused({"direction": "sideways"}).details[0]["field"] == "direction"


def test_an_unencoded_plus_in_a_number_is_understood():
    # "+" in a query string decodes to a space
    query, _ = parse({"to": " 14155550100"})
    assert query.equals == (("to", "+14155550100"),)


def test_time_range():
    query, _ = parse({"created_after": "2026-01-01T00:00:00Z", "created_before": "2026-01-02T01:00:00+01:00"})
    assert query.created_after == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert query.created_before == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert refused({"created_after": "2026-01-01T00:00:00"}).details[0]["field"] == "created_after"  # no offset
    assert refused({"created_before": "yesterday"}).details[0]["field"] == "created_before"
    assert refused({"created_after": "2026-01-02T00:00:00Z",
                    "created_before": "2026-01-01T00:00:00Z"}).details[0]["field"] == "created_before"


def test_direction_is_a_stored_field():
    assert parse({"direction": "inbound"})[0].equals == (("direction", "inbound"),)
    assert parse({"direction": "outbound", "from": "+14155550100"})[0].equals == (
        ("direction", "outbound"), ("from", "+14155550100"))


def test_the_allowed_combinations_each_have_their_composite_index():
    """Try every subset of the equality filters: the ones the parser accepts are exactly the tenant alone,
    each filter alone, status with group_id, batch_id or direction, and direction with to or from; each is
    served by a declared index."""
    declared = {fields for coll, fields in C.COMPOSITE_INDEXES if coll == C.MESSAGES}
    accepted = []
    for size in range(len(FILTER_VALUES) + 1):
        for names in itertools.combinations(FILTER_VALUES, size):
            args = {name: FILTER_VALUES[name] for name in names}
            try:
                query, _ = parse({**args, "created_after": "2026-01-01T00:00:00Z"})
            except ApiError as error:
                assert error.code == ErrorCode.VALIDATION_ERROR
                continue
            accepted.append(frozenset(names))
            fields = tuple(f for f, _ in query.equals)
            wanted = (("tenant_id", "ASCENDING"), *((f, "ASCENDING") for f in sorted(fields)),
                      ("created_at", "DESCENDING"))
            assert wanted in declared, f"no index for {names}"
    assert set(accepted) == {frozenset(), *(frozenset({n}) for n in FILTER_VALUES),
                             frozenset({"group_id", "status"}), frozenset({"batch_id", "status"}),
                             frozenset({"direction", "status"}), frozenset({"direction", "to"}),
                             frozenset({"direction", "from"})}
    assert len(accepted) == 13


def _cursor_for(args: dict, tenant: str = TENANT) -> str:
    _, scope = parse(args, tenant=tenant)
    return searching.encode_cursor(KEY, scope, dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC), "msg_x1")


def test_a_cursor_resumes_after_the_row_it_names():
    cursor = _cursor_for({"status": "queued"})
    query, _ = parse({"status": "queued", "cursor": cursor, "limit": "10"})
    assert query.after == (dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC), "msg_x1")
    assert query.limit == 10  # the page size may change between pages


def test_a_cursor_from_another_tenant_is_refused():
    cursor = _cursor_for({"status": "queued"}, tenant="ten_b")
    assert refused({"status": "queued", "cursor": cursor}).code == ErrorCode.INVALID_CURSOR


def test_a_cursor_for_other_filters_is_refused():
    cursor = _cursor_for({"status": "queued"})
    assert refused({"status": "sent", "cursor": cursor}).code == ErrorCode.INVALID_CURSOR
    assert refused({"cursor": cursor}).code == ErrorCode.INVALID_CURSOR
    assert refused({"status": "queued", "created_after": "2026-01-01T00:00:00Z",
                    "cursor": cursor}).code == ErrorCode.INVALID_CURSOR


def test_a_cursor_signed_with_another_key_is_refused():
    cursor = _cursor_for({})
    other = searching.cursor_key("another-deployment")
    assert refused({"cursor": cursor}, key=other).code == ErrorCode.INVALID_CURSOR


@pytest.mark.parametrize("mangle", [
    lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # the MAC
    lambda c: "A" + c[1:] if c[0] != "A" else "B" + c[1:],  # the payload
    lambda c: c.replace(".", ""),
    lambda c: c + ".x",
    lambda c: "%%%.***",
    lambda c: "",
    lambda c: c * 20,
])
def test_a_forged_or_damaged_cursor_is_refused(mangle):
    error = refused({"cursor": mangle(_cursor_for({}))})
    assert error.code == ErrorCode.INVALID_CURSOR


def test_a_forged_payload_with_its_own_mac_needs_the_key():
    import base64
    import hashlib
    import hmac
    import json

    payload = json.dumps(["2030-01-01T00:00:00+00:00", "msg_forged"]).encode()
    _, scope = parse({})
    guessed = hmac.new(b"guess", scope + b"\n" + payload, hashlib.sha256).digest()[:16]
    forged = base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + \
        base64.urlsafe_b64encode(guessed).decode().rstrip("=")
    assert refused({"cursor": forged}).code == ErrorCode.INVALID_CURSOR


def test_no_master_secret_no_cursor_key():
    with pytest.raises(ValueError):
        searching.cursor_key("")


@pytest.mark.parametrize(("field", "raw"), [
    ("created_after", "0001-01-01T00:00:00+01:00"),
    ("created_after", "0001-01-01T00:00:00+23:59"),
    ("created_before", "9999-12-31T23:59:59-01:00"),
])
def test_a_date_outside_the_calendar_once_in_utc_is_a_400_naming_its_field(field, raw):
    # Regression: these overflowed converting to UTC and answered 500 INTERNAL.
    error = refused({field: raw})
    assert error.code.value == "VALIDATION_ERROR"
    assert error.details[0]["field"] == field


def test_the_calendar_ends_themselves_are_accepted_in_utc():
    query, _ = parse({"created_after": "0001-01-01T00:00:00Z", "created_before": "9999-12-31T23:59:59Z"})
    assert query.created_after == dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    assert query.created_before == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
