"""Request hygiene, authentication and tenant isolation, through the functions as Cloud Functions load
them (functions_framework.create_app(...).test_client()), against the emulators."""

import functools
import json

import pytest
from functions_framework import create_app

from tests.conftest import ROOT, fictional


@functools.cache
def _client(target: str):
    return create_app(target=target, source=str(ROOT / "main.py")).test_client()


def _post(env, target="send", body=None, *, data=None, headers=None):
    headers = {"X-API-Key": env.api_key, "Content-Type": "application/json", **(headers or {})}
    return _client(target).post("/", data=data if data is not None else json.dumps(body), headers=headers)


def _envelope(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    payload = response.get_json()
    assert payload["error"]["code"] == code
    assert payload["meta"]["request_id"] == response.headers["X-Request-Id"]
    return payload


@pytest.mark.stack
def test_body_over_64_kb_is_413(env):
    _envelope(_post(env, data=json.dumps({"to": fictional(1), "body": "x" * 70_000})), 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.stack
def test_not_json_is_400_and_wrong_content_type_is_415(env):
    _envelope(_post(env, data="{not json"), 400, "INVALID_JSON")
    _envelope(_post(env, data="[1, 2]"), 400, "INVALID_JSON")
    _envelope(_post(env, data="to=x", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415,
              "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.stack
def test_unknown_fields_are_400(env):
    payload = _envelope(_post(env, body={"to": fictional(1), "body": "x", "text": "typo"}), 400, "VALIDATION_ERROR")
    assert payload["error"]["details"] == [{"field": "text", "issue": "unknown field"}]


@pytest.mark.stack
def test_wrong_method_is_405_in_the_envelope(env):
    response = _client("group").get("/", headers={"X-API-Key": env.api_key})
    _envelope(response, 405, "METHOD_NOT_ALLOWED")


@pytest.mark.stack
def test_request_id_is_echoed_or_generated(env):
    echoed = _post(env, body={"to": fictional(1), "body": "x"}, headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["X-Request-Id"] == "abc-123"
    assert echoed.get_json()["meta"]["request_id"] == "abc-123"
    generated = _post(env, body={"to": fictional(1), "body": "x"}, headers={"X-Request-Id": "bad id with spaces"})
    assert generated.headers["X-Request-Id"].startswith("req_")


@pytest.mark.stack
def test_request_id_appears_in_every_log_line_of_the_request(env, capfd):
    _post(env, body={"to": "+1415", "body": "x"}, headers={"X-Request-Id": "trace-me-42"})
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert lines, "the request logged nothing"
    assert all(line.get("request_id") == "trace-me-42" for line in lines)
    assert env.api_key not in json.dumps(lines)


@pytest.mark.stack
@pytest.mark.parametrize("key", [None, "", "mk_live_unknown", "x" * 500])
def test_missing_or_unknown_key_is_401(env, key):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    response = _client("send").post("/", data=json.dumps({"to": fictional(1), "body": "x"}), headers=headers)
    _envelope(response, 401, "UNAUTHORIZED")
    error = response.get_json()["error"]
    assert "X-API-Key header" in error["message"]
    assert error["details"] == [{"field": "X-API-Key", "issue": "missing" if not key else "unknown or revoked key"}]


@pytest.mark.stack
def test_revoked_key_is_401(env):
    from shared.rules.ids import api_key_hash

    env.store.accounts.revoke_api_key(api_key_hash(env.api_key))
    _envelope(_post(env, body={"to": fictional(1), "body": "x"}), 401, "UNAUTHORIZED")


@pytest.mark.stack
def test_keys_are_stored_only_as_hashes(env):
    from infra import collections as C

    stored = [snap.to_dict() | {"id": snap.id} for snap in env.store.db.collection(C.API_KEYS).stream()]
    assert stored and env.api_key not in json.dumps(stored, default=str)


@pytest.mark.stack
def test_a_tenant_never_sees_another_tenants_messages(env):
    message_id = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "x"}).json()["data"]["id"]
    group_id = env.api.post("/api/v1/messages/group", json={"to": [fictional(2)], "body": "x"}).json()["group_id"]
    _, other_key = env.new_tenant(name="other")

    with env.client(other_key) as other:
        for path in (f"/api/v1/messages/{message_id}", f"/api/v1/messages/group/{group_id}",
                     "/api/v1/messages/msg_doesnotexist"):
            response = other.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "NOT_FOUND"
    assert env.api.get(f"/api/v1/messages/{message_id}").status_code == 200


@pytest.mark.stack
def test_pricing(env):
    response = env.api.get("/api/v1/pricing/messaging", params={"country": "us"})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["country"] == "US"
    assert {c["channel"] for c in data["channels"]} == {"sms", "mms"}
    assert env.api.get("/api/v1/pricing/messaging").status_code == 400
    assert env.api.get("/api/v1/pricing/messaging", params={"country": "ZZ"}).status_code == 404


@pytest.mark.stack
def test_unknown_public_path_is_404_envelope(env):
    response = env.api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


# -- every answer is the envelope, whatever the path or method (issue 10, defect 7) -------------------
# functions-framework serves each function as a Flask app; werkzeug answers what its router cannot match
# (a decoded newline: /api/v1/messages/group/%2A%0Az) and what crashes outside our handler. These need no
# stack: the router answers before any function code runs.
FUNCTIONS = ["send", "group", "messages", "optouts", "templates", "webhook", "dispatch", "notifier", "sweeper"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]
UNROUTABLE = ["/api/v1/messages/group/%2A%0Az", "/api/v1/messages/msg_x%0A", "/a%0A", "/a%0D%0Ab/c",
              "/robots.txt", "/favicon.ico", "/x/%0a/%0d"]


def _json_error(response, status: int, code: str, method: str = "GET") -> None:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.headers["Content-Type"] == "application/json", response.get_data(as_text=True)[:300]
    if method != "HEAD":
        payload = response.get_json()
        assert payload["error"]["code"] == code
        assert payload["meta"]["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize("target", FUNCTIONS)
@pytest.mark.parametrize("path", UNROUTABLE)
def test_a_path_the_router_cannot_match_is_a_json_404(target, path):
    for method in METHODS:
        _json_error(_client(target).open(path, method=method), 404, "NOT_FOUND", method)


@pytest.mark.parametrize("target, allowed", [("send", "POST"), ("group", "POST"), ("webhook", "POST"),
                                             ("messages", "GET, DELETE, POST"),  # POST: redact
                                             ("optouts", "GET, PUT, DELETE, POST"),  # POST: import
                                             ("templates", "GET, POST, PUT, DELETE")])
def test_a_method_a_public_function_does_not_take_is_a_json_405(target, allowed):
    for method in (m for m in METHODS if m not in allowed.split(", ")):
        for path in ("/", "/api/v1/messages/sms", "/api/v1/messages/msg_x/", "/%zz", "/%", "/%FF%FE"):
            response = _client(target).open(path, method=method)
            _json_error(response, 405, "METHOD_NOT_ALLOWED", method)
            assert response.headers["Allow"] == allowed


@pytest.mark.parametrize("target, module, attribute, body", [
    ("sweeper", "functions.sweeper", "sweep", b""),
    ("dispatch", "functions.dispatch", "dispatch_leg", b'{"message_id": "msg_crash"}'),
    ("notifier", "functions.notifier", "deliver", b'{"event_id": "evt_crash", "message_id": "msg_crash"}'),
])
def test_a_crash_outside_the_envelope_wrapper_is_a_json_500(monkeypatch, target, module, attribute, body):
    import importlib

    client = _client(target)

    def crash(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(importlib.import_module(module), attribute, crash)
    response = client.post("/", data=body, headers={"Content-Type": "application/json"})
    _json_error(response, 500, "INTERNAL")
    assert "boom" not in response.get_data(as_text=True)


def test_every_function_app_in_a_process_answers_in_json():
    # A function module is imported once per process, but tests (and bench) build several apps from it.
    for _ in range(2):
        client = create_app(target="messages", source=str(ROOT / "main.py")).test_client()
        _json_error(client.get("/robots.txt"), 404, "NOT_FOUND")


# -- the local gateway ----------------------------------------------------------------------------------
def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request as raw bytes (no client library would send these), the answer parsed by hand."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        no_body = request.startswith(b"HEAD ") or lines[0].split()[1] in ("204", "304")
        while not no_body and len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


# (raw request, status the gateway itself answers with no function behind it)
GATEWAY_ANSWERS = [
    (b"GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"POST /api/v1/messages/sms/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 404),
    (b"POST /api/v1/messages/group/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 404),
    (b"POST /webhooks/telnyx/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 404),
    (b"GET /api/v1/pricing/messaging/ HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /api/v1/messages/msg_x// HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"POST /api/v1/messages/sms//// HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 404),
    (b"DELETE /api/v1/messages/sms HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"HEAD /api/v1/messages/msg_x HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"OPTIONS /api/v1/messages/group HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"BREW /webhooks/telnyx HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET /api/v1/nothing HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /x HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (b"GET /api/v1/messages/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"POST /api/v1/messages/sms HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /api/v1/messages/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400),
    (b"POST /api/v1/messages/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 413),
    (b"POST /api/v1/messages/sms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST /api/v1/messages/sms HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\nContent-Length: 0\r\n\r\n", 400),
    (b"POST /api/v1/messages/sms HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", 400),
    (b"POST /api/v1/messages/sms HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n",
     431),
]


@pytest.fixture(scope="module")
def bare_gateway():
    """The gateway with no function behind it: only its own answers are under test."""
    from tools.gateway import serve

    server = serve("127.0.0.1", 0, {})
    yield server
    server.close()


@pytest.mark.parametrize("request_bytes, status", GATEWAY_ANSWERS, ids=lambda v: repr(v)[:60])
def test_the_gateways_own_answers_are_json(bare_gateway, request_bytes, status):
    answer, headers, body = _raw(bare_gateway.port, request_bytes)
    assert answer == status, body[:300]
    assert headers["content-type"] == "application/json"
    if not request_bytes.startswith(b"HEAD "):
        assert json.loads(body)["error"]["code"]


def test_gateway_routes_agree_with_the_api_gateway_template():
    """The local gateway and API Gateway (terraform/openapi-gateway.yaml.tftpl) accept the same spellings:
    API Gateway matches a path without parameters exactly and one with a {parameter} also with one
    trailing slash (cloud.google.com/api-gateway/docs/path-templating)."""
    import re

    import yaml

    from tools.gateway import ROUTES, route

    template = (ROOT / "terraform/openapi-gateway.yaml.tftpl").read_text()
    doc = yaml.safe_load(re.sub(r"\$\{(\w+)\}", r"https://\1.test", template))
    operations = [(method.upper(), path, re.fullmatch(r"https://(\w+)_url\.test", op["x-google-backend"]["address"])[1])
                  for path, ops in doc["paths"].items() for method, op in ops.items()]
    assert len(operations) == len(ROUTES)
    for method, path, function in operations:
        concrete = re.sub(r"\{\w+\}", "msg_abc234", path)
        assert route(method, concrete) == function, (method, concrete)
        with_slash = route(method, concrete + "/")
        assert with_slash == (function if "{" in path else None), (method, concrete + "/")
        assert route(method, concrete + "//") is None


HOSTILE_PATHS = [
    "/api/v1/messages/group/%2A%0Az", "/api/v1/messages/%0A", "/api/v1/messages/a%0Db", "/api/v1/messages/%zz",
    "/api/v1/messages/%", "/api/v1/messages/%FF%FE", "/api/v1/messages/group/%00", "/api/v1/messages/" + "a" * 20_000,
    "/api/v1/messages/msg_x?%0A=%0A&country=%FF", "/api/v1/pricing/messaging?country=%0A",
]


@pytest.mark.stack
@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=lambda p: p[:40])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "OPTIONS"])
def test_hostile_paths_through_the_gateway_are_json(env, path, method):
    port = int(env.stack.urls["gateway"].rsplit(":", 1)[1])
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {env.api_key}\r\nContent-Length: 0\r\n\r\n"
    status, headers, body = _raw(port, request.encode())
    assert 400 <= status < 500, (status, body[:300])
    assert headers["content-type"] == "application/json", body[:300]
    if method != "HEAD":
        assert json.loads(body)["error"]["code"]


@pytest.mark.stack
def test_the_issue_path_is_a_json_404(env):
    response = env.api.get("/api/v1/messages/group/%2A%0Az")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.stack
def test_a_header_the_functions_server_would_refuse_is_a_json_431_at_the_gateway(env):
    port = int(env.stack.urls["gateway"].rsplit(":", 1)[1])
    request = (f"GET /api/v1/messages/msg_x HTTP/1.1\r\nHost: x\r\nX-API-Key: {env.api_key}\r\n"
               f"X-Padding: {'a' * 8500}\r\n\r\n")
    status, headers, body = _raw(port, request.encode())
    assert status == 431, body[:300]
    assert json.loads(body)["error"]["code"] == "HEADERS_TOO_LARGE"
