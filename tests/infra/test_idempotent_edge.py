"""The HTTP edge's Idempotency-Key handling (infra/web.py ``idempotent``) over an in-memory store, without the
stack: which requests run, which are replayed, which records are kept or released. The rules it asks are
tested on their own in tests/unit/test_idempotency_rules.py; this checks the edge asks them with the tenant,
the route and the key, and writes what they say."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pytest

from infra import web
from infra.web import Context, Reply
from shared.rules import idempotency as idem
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.records import IdempotencyRecord, IdempotencyState, Tenant

SMS, GROUP = "/api/v1/messages/sms", "/api/v1/messages/group"
BODY = json.dumps({"to": "+14155550101", "body": "once"}).encode()


@dataclass
class MemoryIdempotency:
    """shared.ports.IdempotencyStore in a dict: a record is claimed when absent or when the rules say so."""

    records: dict[str, IdempotencyRecord] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)

    def begin(self, record_id: str, payload_hash: str, now: dt.datetime, lease_seconds: int,
              ttl_seconds: int) -> tuple[str, IdempotencyRecord | None]:
        found = self.records.get(record_id)
        claim = idem.claim(found, payload_hash, now)
        if claim is idem.Claim.NEW:
            self.records[record_id] = idem.fresh_record(payload_hash, now, lease_seconds=lease_seconds,
                                                        ttl_seconds=ttl_seconds)
            return claim, None
        return claim, found

    def complete(self, record_id: str, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.records[record_id] = replace(self.records[record_id], state=IdempotencyState.COMPLETED,
                                          response_status=status, response_body=body, response_headers=headers)

    def release(self, record_id: str) -> None:
        self.released.append(record_id)
        del self.records[record_id]


@pytest.fixture
def store(monkeypatch) -> MemoryIdempotency:
    memory = MemoryIdempotency()
    monkeypatch.setattr("infra.runtime.runtime", lambda: SimpleNamespace(idempotency=memory))
    return memory


@dataclass
class Service:
    """A handler's ``produce``: counts its runs and answers ``status`` with a body naming the run."""

    status: int = 200
    runs: list[str | None] = field(default_factory=list)

    def __call__(self, record_id: str | None) -> Reply:
        self.runs.append(record_id)
        return Reply(self.status, {"run": len(self.runs)}, {"X-Run": str(len(self.runs))})


def call(service: Service, *, route: str = SMS, key: str | None = "order-1", tenant: str = "tnt_a",
         body: bytes = BODY) -> Reply:
    headers = {"Idempotency-Key": key} if key is not None else {}
    ctx = Context(request=SimpleNamespace(headers=headers), request_id="req_test", tenant=Tenant(id=tenant))
    return web.idempotent(ctx, body, service, route=route)


def test_the_same_key_and_body_run_once_and_replay_the_first_answer(store):
    service = Service()
    first, second = call(service), call(service)
    assert len(service.runs) == 1
    assert (first.status, first.body) == (second.status, second.body) == (200, {"run": 1})
    assert second.headers == {"X-Run": "1", "Idempotent-Replayed": "true"}
    assert first.headers == {"X-Run": "1"}


def test_one_key_on_two_routes_runs_both(store):
    service = Service()
    call(service, route=SMS)
    second = call(service, route=GROUP)
    assert len(service.runs) == 2 and second.body == {"run": 2}
    assert "Idempotent-Replayed" not in (second.headers or {})


def test_one_key_of_two_tenants_runs_both(store):
    service = Service()
    call(service, tenant="tnt_a")
    call(service, tenant="tnt_b")
    assert len(service.runs) == 2


def test_the_run_gets_the_record_it_may_keep_its_answer_in(store):
    service = Service()
    call(service)
    assert service.runs == [idem.record_id("tnt_a", SMS, "order-1")]
    assert list(store.records) == service.runs


def test_without_a_key_every_request_runs_and_nothing_is_stored(store):
    service = Service()
    call(service, key=None)
    call(service, key=None)
    assert service.runs == [None, None] and store.records == {}


def test_another_body_under_the_key_is_refused(store):
    service = Service()
    call(service)
    with pytest.raises(ApiError) as refused:
        call(service, body=json.dumps({"to": "+14155550101", "body": "twice"}).encode())
    assert refused.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert len(service.runs) == 1


def test_a_key_too_long_is_refused_before_anything_runs(store):
    service = Service()
    with pytest.raises(ApiError) as refused:
        call(service, key="k" * 256)
    assert refused.value.code is ErrorCode.IDEMPOTENCY_KEY_INVALID
    assert service.runs == [] and store.records == {}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_refusal_to_retry_is_released_so_the_retry_runs(store, status):
    service = Service(status=status)
    call(service)
    assert store.records == {} and len(store.released) == 1
    service.status = 200
    retried = call(service)
    assert len(service.runs) == 2 and retried.status == 200


@pytest.mark.parametrize("status", [400, 402, 422])
def test_a_client_error_is_kept_and_replayed(store, status):
    service = Service(status=status)
    call(service)
    service.status = 200
    again = call(service)
    assert len(service.runs) == 1 and again.status == status


def test_an_answer_kept_by_the_accept_itself_is_not_written_again(store):
    def accepted(record_id: str | None) -> Reply:
        return Reply(200, {"kept": True}, kept=True)

    call(accepted)
    record_id = idem.record_id("tnt_a", SMS, "order-1")
    assert store.records[record_id].state is IdempotencyState.IN_PROGRESS  # the accept's commit writes it
    assert store.released == []


def test_a_crash_releases_the_claim(store):
    def crashes(record_id: str | None) -> Reply:
        raise RuntimeError("instance lost")

    with pytest.raises(RuntimeError):
        call(crashes)
    assert store.records == {} and len(store.released) == 1
