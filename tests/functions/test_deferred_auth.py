"""Keys that name their tenant, checked in the accept's first round (infra/web.py defer_auth): every refusal a
key got before still happens, and a key that is not valid spends nothing of the tenant it names."""

from __future__ import annotations

import pytest

from infra import collections as C
from shared.rules import ids
from tests.conftest import fictional
from tools.admin import create_api_key

pytestmark = pytest.mark.stack

BODY = {"to": fictional(1), "body": "x"}


def _slots(env, tenant_id: str) -> int:
    return sum(1 for snap in env.store.db.collection(C.RATE_LIMITS).stream() if snap.id.startswith(tenant_id))


def _forged(tenant_id: str) -> str:
    """A key of the right shape naming ``tenant_id`` that was never issued."""
    return ids.new_api_key(tenant_id)


def test_an_issued_key_names_its_tenant_and_sends(env):
    key = create_api_key(env.store.accounts, env.tenant_id)
    assert ids.tenant_named_by(key) == env.tenant_id
    with env.client(key) as client:
        for _ in range(3):  # the first request checks the key; later ones claim their slot in the same round
            assert client.post("/api/v1/messages/sms", json=BODY).status_code == 200
        group = client.post("/api/v1/messages/group", json={"to": [fictional(2), fictional(3)], "body": "x"})
        assert group.status_code == 200, group.text


@pytest.mark.parametrize("path, body", [("/api/v1/messages/sms", BODY),
                                        ("/api/v1/messages/group", {"to": [fictional(2)], "body": "x"})])
def test_a_forged_key_naming_a_tenant_is_401_and_claims_no_slot(env, path, body):
    before = _slots(env, env.tenant_id)
    with env.client(_forged(env.tenant_id)) as client:
        for _ in range(3):
            response = client.post(path, json=body)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert _slots(env, env.tenant_id) == before


def test_a_forged_key_with_a_bad_body_is_401_not_400(env):
    with env.client(_forged(env.tenant_id)) as client:
        response = client.post("/api/v1/messages/sms", json={"to": fictional(1)})  # no content: a 400 otherwise
    assert response.status_code == 401


def test_a_forged_key_leaves_no_idempotency_record_behind(env):
    headers = {"Idempotency-Key": "forged-1"}
    with env.client(_forged(env.tenant_id)) as client:
        assert client.post("/api/v1/messages/sms", json=BODY, headers=headers).status_code == 401
    assert list(env.store.db.collection(C.IDEMPOTENCY).stream()) == []
    key = create_api_key(env.store.accounts, env.tenant_id)
    with env.client(key) as client:
        first = client.post("/api/v1/messages/sms", json=BODY, headers=headers)
        again = client.post("/api/v1/messages/sms", json=BODY, headers=headers)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()


def test_a_revoked_key_is_401_on_its_next_request(env):
    key = create_api_key(env.store.accounts, env.tenant_id)
    with env.client(key) as client:
        assert client.post("/api/v1/messages/sms", json=BODY).status_code == 200
        env.store.accounts.revoke_api_key(ids.api_key_hash(key))
        assert client.post("/api/v1/messages/sms", json=BODY).status_code == 401
        assert client.post("/api/v1/messages/sms", json=BODY, headers={"Idempotency-Key": "r"}).status_code == 401


def test_a_key_naming_another_tenant_than_its_own_is_401(env):
    other, _ = env.new_tenant()
    mislabelled = ids.new_api_key(other)
    env.store.accounts.put_api_key(mislabelled, env.tenant_id)  # issued to one tenant, naming another
    with env.client(mislabelled) as client:
        assert client.post("/api/v1/messages/sms", json=BODY).status_code == 401
        assert client.post("/api/v1/messages/sms", json=BODY, headers={"Idempotency-Key": "m"}).status_code == 401


def test_a_disabled_tenant_is_401(env):
    key = create_api_key(env.store.accounts, env.tenant_id)
    with env.client(key) as client:
        assert client.post("/api/v1/messages/sms", json=BODY).status_code == 200
        env.store.accounts.put_tenant(env.tenant_id, {"disabled": True})
        assert client.post("/api/v1/messages/sms", json=BODY).status_code == 401


def test_a_lowered_rate_limit_holds_for_a_key_already_known(env):
    """A known key claims its slot under the limit this instance last read; the limit read in the same round
    decides."""
    key = create_api_key(env.store.accounts, env.tenant_id)
    with env.client(key) as client:
        assert client.post("/api/v1/messages/sms", json=BODY).status_code == 200
        env.store.accounts.put_tenant(env.tenant_id, {"rps": 1})
        statuses = [client.post("/api/v1/messages/sms", json=BODY).status_code for _ in range(6)]
    # Requests in one second: at most one admitted per second, and six requests take well under six seconds.
    assert statuses.count(429) >= 1, statuses
    assert set(statuses) <= {200, 429}
