"""The opt-out API through the gateway: GET /api/v1/opt-outs (paged), GET|PUT|DELETE /api/v1/opt-outs/{number},
POST /api/v1/opt-outs/import; what it changes for sends; and the 4xx answers to bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import fictional

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack

# Area codes of the form the phone rules take for fictional 555-01XX lines (no N11, no middle 9).
_AREAS = [n for n in range(201, 500) if str(n)[1] != "9" and str(n)[1:] != "11"][:101]


def _number(i: int) -> str:
    """Distinct valid US numbers, 100 fictional 555-01XX lines per area code."""
    return f"+1{_AREAS[i // 100]}55501{i % 100:02d}"


def test_put_get_delete_round_trip_and_what_it_does_to_sends(env):
    number = fictional(5)
    put = env.api.put(f"/api/v1/opt-outs/{number}")
    assert put.status_code == 201, put.text
    entry = put.json()["data"]
    assert (entry["number"], entry["opted_out"], entry["source"], entry["keyword"]) == (number, True, "api", None)
    assert entry["opted_out_at"]

    again = env.api.put(f"/api/v1/opt-outs/{number}")
    assert again.status_code == 200 and again.json()["data"]["opted_out_at"] == entry["opted_out_at"]
    assert env.api.get(f"/api/v1/opt-outs/{number}").json()["data"] == entry
    blocked = env.api.post("/api/v1/messages/sms", json={"to": number, "body": "x"})
    assert blocked.json()["error"]["code"] == "RECIPIENT_OPTED_OUT"

    gone = env.api.delete(f"/api/v1/opt-outs/{number}")
    assert gone.status_code == 200 and gone.json()["data"] == {"number": number, "opted_out": False}
    assert env.api.get(f"/api/v1/opt-outs/{number}").status_code == 404
    assert env.api.delete(f"/api/v1/opt-outs/{number}").status_code == 404
    sent = env.api.post("/api/v1/messages/sms", json={"to": number, "body": "x"})
    assert sent.status_code == 200, sent.text


def test_an_encoded_plus_names_the_same_number(env):
    number = fictional(6)
    assert env.api.put(f"/api/v1/opt-outs/%2B{number[1:]}").status_code == 201
    assert env.api.get(f"/api/v1/opt-outs/{number}").json()["data"]["number"] == number


def test_entries_from_other_sources_say_where_they_came_from(env):
    env.store.accounts.add_opt_out(env.tenant_id, fictional(7), source="inbound STOP")  # as written before
    entry = env.api.get(f"/api/v1/opt-outs/{fictional(7)}").json()["data"]
    assert (entry["source"], entry["keyword"]) == ("keyword", "STOP")


def test_the_list_pages_in_number_order_with_a_cursor(env):
    numbers = [_number(i) for i in (7, 3, 5, 1, 6, 2, 4)]
    imported = env.api.post("/api/v1/opt-outs/import", json={"numbers": numbers})
    assert imported.status_code == 200, imported.text

    seen, cursor, pages = [], None, 0
    while True:
        response = env.api.get("/api/v1/opt-outs", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [e["number"] for e in body["data"]]
        pages += 1
        assert len(body["data"]) <= 3 and body["pagination"]["limit"] == 3
        cursor = body["pagination"]["next_cursor"]
        assert body["pagination"]["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert seen == sorted(numbers) and pages == 3
    assert {e["source"] for e in env.api.get("/api/v1/opt-outs").json()["data"]} == {"import"}


def test_another_tenants_list_is_invisible(env):
    env.api.put(f"/api/v1/opt-outs/{fictional(8)}").raise_for_status()
    _, key = env.new_tenant(default_from="+18005550000")
    with env.client(key) as other:
        assert other.get(f"/api/v1/opt-outs/{fictional(8)}").status_code == 404
        assert other.get("/api/v1/opt-outs").json()["data"] == []


def test_an_import_of_ten_thousand_numbers_is_written_once(env):
    numbers = [_number(i) for i in range(10_000)]
    body = json.dumps({"numbers": numbers}).encode()
    assert len(body) > 64 * 1024  # past every other route's limit

    first = env.api.post("/api/v1/opt-outs/import", content=body, headers={"Content-Type": "application/json"})
    assert first.status_code == 200, first.text
    assert first.json()["data"] == {"received": 10_000, "distinct": 10_000, "added": 10_000, "already_opted_out": 0}
    assert env.api.get(f"/api/v1/opt-outs/{numbers[-1]}").json()["data"]["source"] == "import"

    again = env.api.post("/api/v1/opt-outs/import", json={"numbers": numbers[:10] + [numbers[0], "+14155550199"]})
    assert again.json()["data"] == {"received": 12, "distinct": 11, "added": 1, "already_opted_out": 10}


def test_an_import_with_a_bad_number_names_it_and_writes_nothing(env):
    numbers = [fictional(9), "555-0101", "+1", fictional(10)]
    response = env.api.post("/api/v1/opt-outs/import", json={"numbers": numbers})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in error["details"]] == ["numbers.1", "numbers.2"]
    assert env.api.get(f"/api/v1/opt-outs/{fictional(9)}").status_code == 404


def test_import_size_and_shape_limits(env):
    too_many = env.api.post("/api/v1/opt-outs/import", json={"numbers": [_number(i) for i in range(10_001)]})
    assert too_many.status_code == 400 and too_many.json()["error"]["details"][0]["field"] == "numbers"
    empty = env.api.post("/api/v1/opt-outs/import", json={"numbers": []})
    assert empty.status_code == 400
    unknown = env.api.post("/api/v1/opt-outs/import", json={"numbers": [fictional(1)], "source": "x"})
    assert unknown.status_code == 400 and unknown.json()["error"]["details"][0]["issue"] == "unknown field"
    huge = b'{"numbers": ["' + b"+14155550101" + b" " * (600 * 1024) + b'"]}'
    too_large = env.api.post("/api/v1/opt-outs/import", content=huge, headers={"Content-Type": "application/json"})
    assert (too_large.status_code, too_large.json()["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    not_json = env.api.post("/api/v1/opt-outs/import", content=b"numbers", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 415


def test_bad_numbers_cursors_and_parameters_are_400s(env):
    bad_number = env.api.put("/api/v1/opt-outs/14155550101")
    assert bad_number.status_code == 400 and bad_number.json()["error"]["details"][0]["field"] == "number"
    assert env.api.get("/api/v1/opt-outs/not-a-number").status_code == 400
    cursor = env.api.get("/api/v1/opt-outs", params={"cursor": "not a cursor!"})
    assert (cursor.status_code, cursor.json()["error"]["code"]) == (400, "INVALID_CURSOR")
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"sort": "number"}):
        response = env.api.get("/api/v1/opt-outs", params=params)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "VALIDATION_ERROR"), params


def test_methods_a_path_does_not_take_are_405_with_allow(env):
    listing = env.api.post("/api/v1/opt-outs", json={})
    assert listing.status_code == 405 and listing.headers["Allow"] == "GET"
    one = env.api.post(f"/api/v1/opt-outs/{fictional(1)}", json={})
    assert one.status_code == 405 and set(one.headers["Allow"].split(", ")) == {"DELETE", "GET", "PUT"}
    assert env.api.get("/api/v1/opt-outs", headers={"X-API-Key": "mk_wrong"}).status_code == 401


def test_a_send_telnyx_refuses_for_stop_lists_the_number_as_a_provider_rejection(env):
    number = fictional(90)  # the simulator answers 40300, Telnyx's STOP block
    message_id = env.api.post("/api/v1/messages/sms", json={"to": number, "body": "x"}).json()["data"]["id"]
    env.wait_status(message_id, "failed")

    entry = env.api.get(f"/api/v1/opt-outs/{number}").json()["data"]
    assert (entry["source"], entry["message_id"], entry["keyword"]) == ("provider_rejection", message_id, None)
