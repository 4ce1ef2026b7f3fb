"""GET /api/v1/messages through the stack: filters, newest first, pages that neither skip nor repeat a row,
only the caller's tenant, and cursors that cannot be carried to another tenant or other filters."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import fictional

pytestmark = pytest.mark.stack


def _tomorrow() -> str:
    # scheduled a day ahead: the legs stay put (scheduled) while the test reads them
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()


def _send(client, n: int, **fields) -> str:
    response = client.post("/api/v1/messages/sms", json={"to": fictional(n), "body": f"search {n}",
                                                         "scheduled_at": _tomorrow(), **fields})
    assert response.status_code in (200, 201, 202), response.text
    return response.json()["data"]["id"]


def _all_pages(client, params: dict, limit: int) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        response = client.get("/api/v1/messages", params={**params, "limit": limit, **({"cursor": cursor} if cursor
                                                                                       else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["data"])
        assert len(body["data"]) <= limit
        cursor = body["pagination"]["next_cursor"]
        assert body["pagination"]["has_more"] == (cursor is not None)
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination never ended"


def test_search_filters_and_pages_through_one_tenants_messages(env):
    singles = [_send(env.api, n, client_ref=f"ref-{n}") for n in (1, 2, 3, 4, 5)]
    group = env.api.post("/api/v1/messages/group", json={
        "to": [fictional(11), fictional(12), fictional(13)], "body": "search group", "scheduled_at": _tomorrow()})
    assert group.status_code in (200, 201, 202, 207), group.text
    group_id = group.json()["group_id"]
    group_ids = [item["id"] for item in group.json()["messages"]]
    other_key = env.new_tenant()[1]
    with env.client(other_key) as other:
        foreign = _send(other, 1)

        # everything, 3 a page: each of our 8 exactly once, newest first, never the other tenant's
        pages = _all_pages(env.api, {}, limit=3)
        rows = [row for page in pages for row in page]
        ids = [row["id"] for row in rows]
        assert sorted(ids) == sorted(singles + group_ids)
        assert foreign not in ids
        assert [len(p) for p in pages] == [3, 3, 2]
        created = [dt.datetime.fromisoformat(row["created_at"].replace("Z", "+00:00")) for row in rows]
        assert created == sorted(created, reverse=True)
        # the singles were sent one after another before the group: the last single precedes them in the list
        assert ids.index(singles[4]) < ids.index(singles[0])

        # one filter at a time
        def found(**params) -> list[str]:
            return [row["id"] for page in _all_pages(env.api, params, limit=100) for row in page]

        assert found(to=fictional(3)) == [singles[2]]
        assert found(client_ref="ref-4") == [singles[3]]
        assert sorted(found(group_id=group_id)) == sorted(group_ids)
        assert sorted(found(group_id=group_id, status="scheduled")) == sorted(group_ids)
        assert found(group_id=group_id, status="delivered") == []
        assert sorted(found(status="scheduled")) == sorted(singles + group_ids)
        assert len(found(direction="outbound")) == 8
        assert found(direction="inbound") == []
        assert found(created_after=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()) == []
        assert len(found(created_before=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat())) == 8
        the_from = env.message(singles[0])["from"]
        assert sorted(found(**{"from": the_from})) == sorted(singles + group_ids)

        # a cursor belongs to the tenant and the filters that produced it
        first = env.api.get("/api/v1/messages", params={"limit": 2}).json()
        cursor = first["pagination"]["next_cursor"]
        theirs = other.get("/api/v1/messages", params={"limit": 2, "cursor": cursor})
        assert theirs.status_code == 400 and theirs.json()["error"]["code"] == "INVALID_CURSOR"
        refiltered = env.api.get("/api/v1/messages", params={"limit": 2, "cursor": cursor, "status": "queued"})
        assert refiltered.status_code == 400 and refiltered.json()["error"]["code"] == "INVALID_CURSOR"
        payload, mac = cursor.split(".")
        forged = env.api.get("/api/v1/messages", params={"limit": 2, "cursor": payload[::-1] + "." + mac})
        assert forged.status_code == 400 and forged.json()["error"]["code"] == "INVALID_CURSOR"
        assert [row["id"] for row in other.get("/api/v1/messages").json()["data"]] == [foreign]


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"status": "nope"}, "status"),
    ({"to": fictional(1), "from": fictional(2)}, "to"), ({"created_after": "not a time"}, "created_after"),
    ({"sort": "asc"}, "sort"),
])
def test_bad_search_parameters_are_400_naming_the_field(env, params, field):
    response = env.api.get("/api/v1/messages", params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"][0]["field"] == field


def test_search_needs_an_api_key_and_only_takes_get(env):
    with env.client("mk_not_a_real_key_000000000000") as stranger:
        assert stranger.get("/api/v1/messages").status_code == 401
    assert env.api.post("/api/v1/messages", json={}).status_code == 405
