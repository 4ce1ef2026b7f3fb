"""The Idempotency-Key rules (shared/rules/idempotency.py), pure: the key's scope, the record's TTL and lease,
and what a request finds under its key."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.rules import idempotency as idem
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.records import IdempotencyRecord, IdempotencyState

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SMS, GROUP = "/api/v1/messages/sms", "/api/v1/messages/group"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def record(state: IdempotencyState = IdempotencyState.COMPLETED, *, payload: str = "h1", lease_until: float = 60,
           expires_at: float = 86_400, status: int | None = 200, body: dict | None = None,
           headers: dict[str, str] | None = None) -> IdempotencyRecord:
    return IdempotencyRecord(state=state, payload_hash=payload, created_at=T0, lease_until=at(lease_until),
                             expires_at=at(expires_at), response_status=status, response_body=body,
                             response_headers=headers or {})


# -- the key -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["k", "order-1001", "k" * 255, "é" * 255])
def test_keys_of_one_to_255_characters_are_taken(key):
    assert idem.check_key(key) == key


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_empty_or_longer_key_is_a_400(key):
    with pytest.raises(idem.InvalidKey) as refused:
        idem.check_key(key)
    assert (refused.value.code, refused.value.status) == (ErrorCode.IDEMPOTENCY_KEY_INVALID, 400)


# -- the scope: tenant, route and key ----------------------------------------------------------------
def test_the_same_tenant_route_and_key_name_one_record():
    assert idem.record_id("tnt_a", SMS, "k1") == idem.record_id("tnt_a", SMS, "k1")


def test_one_key_on_two_routes_names_two_records():
    # A client that reuses "order-7" for a single send and then a group send made two requests, not a replay.
    assert idem.record_id("tnt_a", SMS, "order-7") != idem.record_id("tnt_a", GROUP, "order-7")


def test_one_key_of_two_tenants_names_two_records():
    assert idem.record_id("tnt_a", SMS, "k1") != idem.record_id("tnt_b", SMS, "k1")


def test_two_keys_name_two_records():
    assert idem.record_id("tnt_a", SMS, "k1") != idem.record_id("tnt_a", SMS, "k2")


def test_the_parts_of_the_scope_cannot_run_into_each_other():
    # Without a separator, tenant "tnt_a" + key "/x" and tenant "tnt_a/x" + the same route would collide.
    assert idem.record_id("tnt_a", SMS, "k") != idem.record_id("tnt_a" + SMS, "", "k")
    assert idem.record_id("tnt_a", SMS, "k") != idem.record_id("tnt_a", SMS + "k", "")


def test_a_record_id_is_stable_across_releases():
    # Records live for a day: a deploy that changed how they are named would let every retry across it send
    # again. Pinned from `printf` piped to `sha256sum` (SHA-256 of "tnt_a\n/api/v1/messages/sms\norder-1001").
    assert idem.record_id("tnt_a", SMS, "order-1001") == (
        "5f99fe12a260a7ba60289ccd9ee5c46275cfa284375dd87dfe24c90f1e08e217")


# -- the body's fingerprint --------------------------------------------------------------------------
def test_key_order_and_whitespace_do_not_change_the_fingerprint():
    assert idem.payload_hash(b'{"to": "+14155550101", "body": "hi", "media": {"a": 1, "b": 2}}') == \
        idem.payload_hash(b'{"body":"hi","media":{"b":2,"a":1},"to":"+14155550101"}')


@pytest.mark.parametrize("other", [b'{"to": "+14155550101", "body": "hi!"}', b'{"to": "+14155550102", "body": "hi"}',
                                   b'{"to": "+14155550101", "body": "hi", "subject": null}', b'[]'])
def test_another_body_has_another_fingerprint(other):
    assert idem.payload_hash(b'{"to": "+14155550101", "body": "hi"}') != idem.payload_hash(other)


# -- the record's lease and TTL ----------------------------------------------------------------------
def test_a_fresh_record_is_leased_a_minute_and_kept_a_day():
    fresh = idem.fresh_record("h1", T0)
    assert fresh.state is IdempotencyState.IN_PROGRESS and fresh.payload_hash == "h1"
    assert (fresh.created_at, fresh.lease_until, fresh.expires_at) == (T0, at(60), at(24 * 3600))
    assert fresh.response_status is None


def test_a_fresh_record_takes_the_lease_and_ttl_it_is_given():
    fresh = idem.fresh_record("h1", T0, lease_seconds=5, ttl_seconds=10)
    assert (fresh.lease_until, fresh.expires_at) == (at(5), at(10))


def test_a_record_expires_at_its_ttl_not_a_moment_later():
    kept = record(expires_at=100)
    assert not idem.expired(kept, at(99.999))
    assert idem.expired(kept, at(100))
    assert idem.expired(kept, at(101))


# -- what a request finds under its key --------------------------------------------------------------
def test_nothing_stored_is_a_new_claim():
    assert idem.claim(None, "h1", T0) is idem.Claim.NEW


def test_the_same_body_after_a_finished_request_is_replayed():
    assert idem.claim(record(), "h1", at(10)) is idem.Claim.COMPLETED


def test_the_same_body_while_the_first_runs_is_in_progress():
    assert idem.claim(record(IdempotencyState.IN_PROGRESS, lease_until=60), "h1", at(59)) is idem.Claim.IN_PROGRESS


def test_a_claim_whose_lease_ran_out_is_taken_over():
    # The first request's instance died before it answered: its retry must run, not wait forever.
    stuck = record(IdempotencyState.IN_PROGRESS, lease_until=60, status=None)
    assert idem.claim(stuck, "h1", at(60)) is idem.Claim.NEW
    assert idem.claim(stuck, "h1", at(3600)) is idem.Claim.NEW


def test_a_finished_request_is_replayed_long_after_its_lease():
    assert idem.claim(record(lease_until=60), "h1", at(86_399)) is idem.Claim.COMPLETED


@pytest.mark.parametrize("state", list(IdempotencyState))
def test_another_body_under_a_live_key_is_a_mismatch(state):
    assert idem.claim(record(state), "h2", at(10)) is idem.Claim.MISMATCH


@pytest.mark.parametrize("state", list(IdempotencyState))
def test_an_expired_record_is_taken_over_whatever_it_holds(state):
    assert idem.claim(record(state, expires_at=100), "h1", at(100)) is idem.Claim.NEW
    assert idem.claim(record(state, expires_at=100), "h2", at(100)) is idem.Claim.NEW


# -- the answer a request gets without running -------------------------------------------------------
def test_a_replay_is_the_first_answer_marked_replayed():
    stored = record(status=202, body={"data": {"id": "msg_1"}}, headers={"X-Request-Id": "req_first"})
    replay = idem.stored_answer(idem.Claim.COMPLETED, stored)
    assert replay == idem.Replay(202, {"data": {"id": "msg_1"}},
                                 {"X-Request-Id": "req_first", "Idempotent-Replayed": "true"})


def test_a_replay_of_an_answer_without_a_body_is_an_empty_object():
    replay = idem.stored_answer(idem.Claim.COMPLETED, record(status=204, body=None))
    assert replay is not None and (replay.status, replay.body) == (204, {})


def test_a_completed_record_without_an_answer_runs_the_request():
    assert idem.stored_answer(idem.Claim.COMPLETED, record(status=None)) is None


def test_a_new_claim_runs_the_request():
    assert idem.stored_answer(idem.Claim.NEW, None) is None


def test_another_body_is_a_422():
    with pytest.raises(idem.KeyReused) as refused:
        idem.stored_answer(idem.Claim.MISMATCH, record(payload="h2"))
    assert (refused.value.code, refused.value.status) == (ErrorCode.IDEMPOTENCY_KEY_REUSED, 422)


def test_a_duplicate_in_flight_is_a_409_to_retry_in_a_second():
    with pytest.raises(idem.KeyInUse) as refused:
        idem.stored_answer(idem.Claim.IN_PROGRESS, None)
    assert (refused.value.code, refused.value.status) == (ErrorCode.IDEMPOTENCY_KEY_IN_USE, 409)
    assert refused.value.headers == {"Retry-After": "1"}


def test_the_refusals_are_api_errors():
    assert issubclass(idem.KeyReused, ApiError) and issubclass(idem.KeyInUse, ApiError)
    assert issubclass(idem.InvalidKey, ApiError)


# -- which answers are kept --------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 202, 400, 401, 402, 404, 409, 413, 422, 428, 499])
def test_answers_the_client_should_see_again_are_kept(status):
    assert idem.keeps(status)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_rate_limit_or_our_own_failure_is_not_kept(status):
    assert not idem.keeps(status)
