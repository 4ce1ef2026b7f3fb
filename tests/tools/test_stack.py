"""The local stack runner (tools/stack.py): start, emulators, tasks retries, gateway, reset, stop.

One stack for the module, with stand-in functions (every entry point echoes its request and records it),
so this does not depend on the real functions.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

import pytest

from tools.procs import pid_alive, port_open
from tools.stack import ROOT, Stack, StackConfig, StackError, _http

pytestmark = pytest.mark.stack

NAMES = ["send", "group", "batch", "messages", "optouts", "dispatch", "webhook", "notifier", "sweeper"]

STANDIN_FUNCTIONS = '''
import base64, json, os, time
import functions_framework

ENV_KEYS = ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST",
            "CLOUD_TASKS_EMULATOR_HOST", "DISPATCH_URL", "TELNYX_BASE_URL", "TELNYX_WEBHOOK_URL",
            "DISPATCH_MAX_ATTEMPTS", "HOST", "PORT", "XDG_RUNTIME_DIR")

def _echo(name, request):
    entry = {"function": name, "method": request.method, "path": request.path,
             "query": request.query_string.decode(), "headers": dict(request.headers),
             "body_b64": base64.b64encode(request.get_data()).decode(), "t": time.time(),
             "env": {k: os.environ.get(k) for k in ENV_KEYS}, "pid": os.getpid(), "pgid": os.getpgid(0)}
    with open(os.environ["STANDIN_RECORD"], "a") as f:
        f.write(json.dumps(entry) + "\\n")
    time.sleep(float(request.headers.get("X-Standin-Sleep", "0")))
    if request.headers.get("X-Cloudtasks-Taskretrycount") == "0":
        time.sleep(float(request.headers.get("X-Standin-Sleep-First", "0")))
    status = int(request.headers.get("X-Standin-Status", "200"))
    return json.dumps(entry), status, {"Content-Type": "application/json", "X-Standin": name}

for _name in %r:
    globals()[_name] = (lambda n: lambda request: _echo(n, request))(_name)
''' % (NAMES,)  # noqa: UP031 - the template is code full of braces

# Used only while tools/telnyx_sim (written separately) has no command line yet.
STANDIN_SIM = '''
import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def _ok(self):
        self.send_response(200 if self.path.startswith("/_sim/") else 404)
        self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    do_GET = do_POST = _ok
p = argparse.ArgumentParser(); p.add_argument("--host"); p.add_argument("--port", type=int)
a = p.parse_args()
ThreadingHTTPServer((a.host, a.port), H).serve_forever()
'''


def _records(path: Path, **match: str) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if all(r["headers"].get(k) == v or r.get(k) == v for k, v in match.items())]


def _wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def _config(tmp: Path, **overrides) -> StackConfig:
    source = tmp / "standin_main.py"
    source.write_text(STANDIN_FUNCTIONS)
    sim_cmd = None
    if not (ROOT / "tools" / "telnyx_sim" / "__main__.py").exists():
        (tmp / "sim_standin.py").write_text(STANDIN_SIM)
        sim_cmd = [sys.executable, str(tmp / "sim_standin.py")]
    values = dict(functions_source=source, entry_points=NAMES, simulator_cmd=sim_cmd,
                  dispatch_max_attempts=3, tasks_timeout=1.0,
                  env_overrides={"STANDIN_RECORD": str(tmp / "calls.jsonl")})
    values.update(overrides)
    return StackConfig.for_tests(tmp / "state", **values)


def test_failed_start_fails_fast_with_log_tail_and_cleans_up(tmp_path):
    config = _config(tmp_path)
    config.functions_source.write_text("raise RuntimeError('boom on import')\n")
    stack = Stack(config)
    with pytest.raises(StackError) as excinfo:
        stack.start()
    # Fast = on the crash, not at the readiness deadline (which says "not ready after"), whatever the clock says.
    assert "exited with code" in str(excinfo.value) and "boom on import" in str(excinfo.value)
    assert "not ready after" not in str(excinfo.value)
    assert stack.procs, "nothing was started"
    for proc in stack.procs.values():
        assert not pid_alive(proc.pid), proc.name
    assert not any(port_open(p) for p in stack.ports.values())
    assert not stack.state_file.exists()


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    hook_calls = []

    def on_ready(st: Stack):
        hook_calls.append(st)
        st.info["seeded"] = True
        return {"api_key": "mk_test_key", "sample_media_url": st.urls["storage"] + "/b/sample.jpg"}

    st = Stack(_config(tmp), on_ready=on_ready)
    t0 = time.monotonic()
    st.start()
    st.test_start_seconds = time.monotonic() - t0
    st.test_hook_calls = hook_calls
    st.test_record = tmp / "calls.jsonl"
    yield st
    st.stop()


@pytest.fixture
def emulator_env(standin, monkeypatch):
    for key, value in standin.function_env().items():
        monkeypatch.setenv(key, value)


def test_started_hook_and_state_file(standin):
    print(f"stack start: {standin.test_start_seconds:.2f}s timings={standin.timings}")
    assert standin.test_hook_calls == [standin]
    state = json.loads(standin.state_file.read_text())
    keys = ("gateway", "simulator", "twilio", "firestore", "tasks", "storage", "sample_media_url", "api_key",
            "functions")
    for key in keys:
        assert key in state, key
    assert state["api_key"] == "mk_test_key" and state["seeded"] is True
    assert state["functions"] == {name: standin.urls[f"function:{name}"] for name in NAMES}
    assert state["gateway"] == standin.urls["gateway"]
    assert set(standin.urls) == {"gateway", "simulator", "twilio", "firestore", "tasks", "storage", "dev",
                               *(f"function:{n}" for n in NAMES)}
    assert state["console"] == standin.urls["dev"] + "/_dev/console"
    assert state["inbox"] == standin.urls["dev"] + "/_dev/inbox"
    for name in ("firestore", "tasks", "storage", "simulator", "twilio", *NAMES):
        assert (standin.logs_dir / f"{name}.log").exists()


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_every_server_listens_on_loopback_only(standin):
    assert standin.ports
    for name, port in standin.ports.items():
        addresses = _listening(port)
        assert addresses, f"{name} is not listening on {port}"
        # 127.0.0.1, or ::ffff:127.0.0.1 (Java's dual-stack socket bound to the IPv4 loopback)
        assert set(addresses) <= {"0100007F", "0000000000000000FFFF00000100007F"}, f"{name}: {addresses}"


def test_functions_get_the_stack_environment(standin):
    status, body = _http("POST", standin.urls["function:dispatch"] + "/", b"{}")
    assert status == 200
    env = json.loads(body)["env"]
    expected = standin.function_env()
    for key in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST",
                "CLOUD_TASKS_EMULATOR_HOST", "DISPATCH_URL", "TELNYX_BASE_URL", "TELNYX_WEBHOOK_URL"):
        assert env[key] == expected[key], key
    assert env["DISPATCH_MAX_ATTEMPTS"] == "3"
    assert env["DISPATCH_URL"] == f"http://127.0.0.1:{standin.ports['dispatch']}/"
    assert env["TELNYX_WEBHOOK_URL"] == f"{standin.urls['gateway']}/webhooks/telnyx"
    assert env["HOST"] is None and env["PORT"] is None
    assert expected["TELNYX_PUBLIC_KEY"] and len(base64.b64decode(expected["TELNYX_PUBLIC_KEY"])) == 32
    assert len(expected["WEBHOOK_SIGNING_KEY"]) == 64


def test_firestore_write_and_read(standin, emulator_env):
    from google.cloud import firestore

    client = firestore.Client(project=standin.config.project)
    client.collection("stack_test").document("a").set({"n": 1, "s": "x"})
    assert client.collection("stack_test").document("a").get().to_dict() == {"n": 1, "s": "x"}


def test_storage_upload_and_download(standin, emulator_env):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=standin.config.project, credentials=AnonymousCredentials())
    bucket = client.bucket(standin.config.media_bucket)
    data = os.urandom(5000)
    bucket.blob("t/photo.jpg").upload_from_string(data, content_type="image/jpeg")
    assert bucket.blob("t/photo.jpg").download_as_bytes() == data
    status, body = _http("GET", f"{standin.urls['storage']}/{standin.config.media_bucket}/t/photo.jpg")
    assert status == 200 and body == data


def _tasks_client(standin):
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    return tasks_v2, tasks_v2.CloudTasksClient(
        transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(standin.urls["tasks"])))


def _task(tasks_v2, url: str, marker: str, status: int, body: bytes, sleep: float = 0, sleep_first: float = 0):
    return tasks_v2.Task(http_request=tasks_v2.HttpRequest(
        http_method=tasks_v2.HttpMethod.POST, url=url, body=body,
        headers={"Content-Type": "application/json", "X-Marker": marker, "X-Standin-Status": str(status),
                 "X-Standin-Sleep": str(sleep), "X-Standin-Sleep-First": str(sleep_first)}))


def _gaps(rows: list[dict]) -> list[float]:
    times = [r["t"] for r in rows]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_tasks_deliver_with_headers_and_retry_with_backoff(standin):
    tasks_v2, client = _tasks_client(standin)
    record, url = standin.test_record, standin.urls["function:dispatch"] + "/"
    dispatch_queue = standin.queue_paths["dispatch"]
    # A queue created by a client with its own retry_config.max_attempts wins over --max-attempts.
    parent = dispatch_queue.rsplit("/queues/", 1)[0]
    own_queue = client.create_queue(parent=parent, queue=tasks_v2.Queue(
        name=f"{parent}/queues/stack-test", retry_config=tasks_v2.RetryConfig(max_attempts=5))).name

    body = b'{"leg": "l1", "n": 1}'
    client.create_task(parent=dispatch_queue, task=_task(tasks_v2, url, "ok", 200, body))
    client.create_task(parent=dispatch_queue, task=_task(tasks_v2, url, "fail3", 500, body))
    client.create_task(parent=own_queue, task=_task(tasks_v2, url, "fail5", 500, body))
    client.create_task(parent=standin.queue_paths["notify"],
                       task=_task(tasks_v2, standin.urls["function:notifier"] + "/", "notify", 200, body))

    ok = _wait_for(lambda: _records(record, **{"X-Marker": "ok"}))
    assert len(ok) == 1
    headers = ok[0]["headers"]
    assert headers["X-Cloudtasks-Queuename"] == dispatch_queue
    assert headers["X-Cloudtasks-Taskretrycount"] == "0"
    assert headers["X-Cloudtasks-Taskname"]
    assert headers["Content-Type"] == "application/json"
    assert base64.b64decode(ok[0]["body_b64"]) == body
    assert _wait_for(lambda: _records(record, **{"X-Marker": "notify"}))[0]["function"] == "notifier"

    # 3 attempts in all on the dispatch queue (dispatch_max_attempts=3), 5 on the queue that says 5.
    fail3 = _wait_for(lambda: len(_records(record, **{"X-Marker": "fail3"})) >= 3 and
                      _records(record, **{"X-Marker": "fail3"}))
    fail5 = _wait_for(lambda: len(_records(record, **{"X-Marker": "fail5"})) >= 5 and
                      _records(record, **{"X-Marker": "fail5"}))
    # Given up, the tasks leave their queues: from then on no further attempt can come.
    assert _wait_for(lambda: not list(client.list_tasks(parent=dispatch_queue))
                     and not list(client.list_tasks(parent=own_queue))), "the failing tasks were never given up"
    fail3 = _records(record, **{"X-Marker": "fail3"})
    fail5 = _records(record, **{"X-Marker": "fail5"})
    assert [r["headers"]["X-Cloudtasks-Taskretrycount"] for r in fail3] == ["0", "1", "2"]
    assert [r["headers"]["X-Cloudtasks-Taskretrycount"] for r in fail5] == ["0", "1", "2", "3", "4"]
    gaps = _gaps(fail5)
    print("retry gaps:", [round(g, 3) for g in gaps])
    # backoff 0.05 s doubling, capped at 0.5 s (StackConfig.for_tests): at least 0.05, 0.1, 0.2, 0.4 apart
    for gap, backoff in zip(gaps, [0.05, 0.1, 0.2, 0.4], strict=False):
        assert gap >= backoff * 0.9, gaps
    assert gaps[-1] > 3 * gaps[0], gaps  # not the stock emulator's constant 0.1 s
    assert list(client.list_tasks(parent=dispatch_queue)) == []
    client.delete_queue(name=own_queue)


def test_tasks_503_throttles_its_queue_and_the_stack_reports_it(standin):
    tasks_v2, client = _tasks_client(standin)
    record, url = standin.test_record, standin.urls["function:dispatch"] + "/"
    parent = standin.queue_paths["dispatch"].rsplit("/queues/", 1)[0]
    queue = client.create_queue(parent=parent, queue=tasks_v2.Queue(
        name=f"{parent}/queues/stack-throttle", retry_config=tasks_v2.RetryConfig(max_attempts=1))).name
    assert not [t for t in standin.throttles() if t["queue"] == queue]
    task = client.create_task(parent=queue, task=_task(tasks_v2, url, "thr", 503, b"{}"))
    assert _wait_for(lambda: _records(record, **{"X-Marker": "thr"}))
    throttles = _wait_for(lambda: [t for t in standin.throttles() if t["queue"] == queue])
    assert throttles == [{"queue": queue, "seconds": 0.2, "status": 503, "task": task.name, "retry_after": None}]
    client.delete_queue(name=queue)


def test_tasks_hanging_target_times_out_and_does_not_block_the_queue(standin):
    tasks_v2, client = _tasks_client(standin)
    record, url = standin.test_record, standin.urls["function:dispatch"] + "/"
    parent = standin.queue_paths["dispatch"].rsplit("/queues/", 1)[0]
    # One delivery at a time: the second task can only go once the first has timed out.
    queue = client.create_queue(parent=parent, queue=tasks_v2.Queue(
        name=f"{parent}/queues/stack-timeout", retry_config=tasks_v2.RetryConfig(max_attempts=1),
        rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=1))).name
    t0 = time.time()
    client.create_task(parent=queue, task=_task(tasks_v2, url, "hang", 200, b"{}", sleep=30))
    client.create_task(parent=queue, task=_task(tasks_v2, url, "after-hang", 200, b"{}"))
    after = _wait_for(lambda: _records(record, **{"X-Marker": "after-hang"}), timeout=20)
    assert after, "the task behind a hanging one was never delivered"
    # tasks_timeout=1.0 is enforced: the hanging delivery is abandoned long before its 30 s are up (15 times the
    # timeout allowed for a loaded machine; without the timeout the second task could not go before 30 s)
    assert after[0]["t"] - t0 < 15
    assert len(_records(record, **{"X-Marker": "hang"})) == 1  # max_attempts=1: not retried
    client.delete_queue(name=queue)


def _gateway(standin, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    status, payload = _http(method, standin.urls["gateway"] + path, body, headers=headers or {})
    return status, payload


def test_gateway_routes_public_paths(standin):
    body = b'{"to": "+14155550101",\n "body": "h\xc3\xa9llo"}  '
    status, payload = _gateway(standin, "POST", "/api/v1/messages/sms?x=1&y=%20z", body,
                               {"X-API-Key": "k1", "Content-Type": "application/json",
                                "X-Standin-Status": "202", "Connection": "keep-alive"})
    assert status == 202
    echo = json.loads(payload)
    assert echo["function"] == "send" and echo["method"] == "POST"
    assert echo["path"] == "/api/v1/messages/sms" and echo["query"] == "x=1&y=%20z"
    assert base64.b64decode(echo["body_b64"]) == body
    assert echo["headers"]["X-Api-Key"] == "k1"
    assert echo["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert "Connection" not in echo["headers"] or echo["headers"]["Connection"] != "keep-alive"

    for method, path, function in [
        ("POST", "/api/v1/messages/group", "group"),
        ("POST", "/api/v1/messages/batch", "batch"),
        ("GET", "/api/v1/messages/msg_123", "messages"),
        ("GET", "/api/v1/batches/bat_1", "batch"),
        ("DELETE", "/api/v1/batches/bat_1/", "batch"),
        ("GET", "/api/v1/messages/group/grp_1?include=legs", "messages"),
        ("GET", "/api/v1/pricing/messaging?country=US", "messages"),
        ("POST", "/webhooks/telnyx", "webhook"),
    ]:
        status, payload = _gateway(standin, method, path, b"{}" if method == "POST" else None)
        assert status == 200, (method, path)
        assert json.loads(payload)["function"] == function, (method, path)


def test_gateway_passes_upstream_response_unchanged(standin):
    status, _ = _gateway(standin, "GET", "/api/v1/pricing/messaging", headers={"X-Standin-Status": "418"})
    assert status == 418
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", standin.ports["gateway"], timeout=10)
    conn.request("GET", "/api/v1/messages/abc")
    response = conn.getresponse()
    assert response.getheader("X-Standin") == "messages"
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(response.read())["path"] == "/api/v1/messages/abc"
    conn.request("POST", "/nowhere", body=b"x")  # same connection: keep-alive works
    response = conn.getresponse()
    assert response.status == 404
    response.read()
    conn.close()


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/api/v1/messages/m1", "DELETE, GET"), ("GET", "/webhooks/telnyx", "POST"),
    ("POST", "/api/v1/messages/sweep", "DELETE, GET"), ("GET", "/api/v1/messages/sms", "POST"),
    ("TRACE", "/api/v1/messages/group", "POST"),
    ("GET", "/api/v1/messages/batch", "POST"), ("DELETE", "/api/v1/messages/batch", "POST"),
    ("POST", "/api/v1/batches/bat_1", "DELETE, GET"),
])
def test_gateway_405s_a_known_path_with_another_method(standin, method, path, allow):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", standin.ports["gateway"], timeout=10)
    conn.request(method, path)
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    assert response.status == 405
    assert response.getheader("Allow") == allow
    assert payload["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("POST", "/dispatch"), ("PATCH", "/api/v1/messages/x/y"),
    ("GET", "/api/v1/messages/"), ("POST", "/api/v1/messages/sms/extra"), ("GET", "/api/v1/pricing/mms"),
    ("POST", "/api/v1/messages/batch/"), ("GET", "/api/v1/batches"), ("GET", "/api/v1/batches/"),
    ("GET", "/api/v1/batches/bat_1/progress"),
])
def test_gateway_404s_everything_else(standin, method, path):
    status, payload = _gateway(standin, method, path)
    assert status == 404
    doc = json.loads(payload)
    assert doc["error"]["code"] == "NOT_FOUND" and doc["error"]["message"]
    assert doc["meta"]["request_id"] and doc["meta"]["timestamp"].endswith("Z")


def test_gateway_passes_a_4_mib_batch_body_and_refuses_what_no_function_takes(standin):
    # The batch route takes 4 MiB (shared/rules/batching.MAX_BODY_BYTES); the function, not the gateway, refuses more.
    body = b'{"to": []}' + b" " * (4 * 1024 * 1024 - 10)
    status, payload = _gateway(standin, "POST", "/api/v1/messages/batch", body,
                               {"Content-Type": "application/json"})
    assert status == 200
    echo = json.loads(payload)
    assert echo["function"] == "batch" and base64.b64decode(echo["body_b64"]) == body
    import http.client

    from tools.gateway import MAX_BODY
    # Only the declared length: the gateway answers before reading a body it would refuse.
    conn = http.client.HTTPConnection("127.0.0.1", standin.ports["gateway"], timeout=10)
    conn.putrequest("POST", "/api/v1/messages/batch")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    assert response.status == 413 and json.loads(payload)["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_gateway_502_when_upstream_is_down(standin):
    original = standin.gateway.upstreams["send"]
    from tools.procs import free_ports
    standin.gateway.upstreams["send"] = f"http://127.0.0.1:{free_ports(1)[0]}"
    try:
        status, payload = _gateway(standin, "POST", "/api/v1/messages/sms", b"{}")
    finally:
        standin.gateway.upstreams["send"] = original
    assert status == 502
    doc = json.loads(payload)
    assert doc["error"]["code"] == "UPSTREAM_UNAVAILABLE" and doc["meta"]["request_id"]


def test_sweep_calls_the_sweeper(standin):
    status, body = standin.sweep()
    assert status == 200
    echo = json.loads(body)
    assert echo["function"] == "sweeper" and base64.b64decode(echo["body_b64"]) == b"{}"


def test_reset_empties_firestore_storage_and_queues(standin, emulator_env):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore, storage

    db = firestore.Client(project=standin.config.project)
    db.collection("stack_test").document("r").set({"x": 1})
    db.collection("tenants").document("t").collection("opt_outs").document("o").set({"x": 1})
    bucket = storage.Client(project=standin.config.project, credentials=AnonymousCredentials()).bucket(
        standin.config.media_bucket)
    bucket.blob("r/x.bin").upload_from_string(b"abc")
    tasks_v2, client = _tasks_client(standin)
    future = tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url=standin.urls["function:dispatch"] + "/", body=b"{}"),
        schedule_time={"seconds": int(time.time()) + 3600})
    client.create_task(parent=standin.queue_paths["dispatch"], task=future)

    t0 = time.monotonic()
    standin.reset()
    print(f"reset: {time.monotonic() - t0:.3f}s")
    assert list(db.collection("stack_test").stream()) == []
    assert list(db.collection("tenants").document("t").collection("opt_outs").stream()) == []
    assert list(bucket.client.list_blobs(standin.config.media_bucket)) == []
    assert bucket.exists()
    assert list(client.list_tasks(parent=standin.queue_paths["dispatch"])) == []


# -- faults: kill, start_component, restart ---------------------------------------------------------------
def _group_pids(pgid: int) -> list[int]:
    from tools.procs import group_members

    return group_members(pgid)


def test_kill_and_start_the_webhook_on_the_same_port(standin):
    port, old = standin.ports["webhook"], standin.procs["webhook"]
    members = _group_pids(old.pid)
    assert len(members) >= 2  # gunicorn's master and its worker
    standin.kill("webhook")
    assert not any(pid_alive(pid) for pid in members)
    assert not port_open(port)
    status, payload = _gateway(standin, "POST", "/webhooks/telnyx", b"{}")
    assert status == 502 and json.loads(payload)["error"]["code"] == "UPSTREAM_UNAVAILABLE"
    standin.kill("webhook")  # already down: nothing to do
    assert standin.dead()["webhook"] == -9

    standin.start_component("webhook")
    assert standin.ports["webhook"] == port and standin.procs["webhook"].pid != old.pid
    status, payload = _gateway(standin, "POST", "/webhooks/telnyx", b"{}")
    assert status == 200 and json.loads(payload)["function"] == "webhook"
    assert json.loads(payload)["pgid"] == standin.procs["webhook"].pid
    assert "webhook" not in standin.dead()
    with pytest.raises(StackError, match="is running"):
        standin.start_component("webhook")
    assert (standin.logs_dir / "webhook.log").read_text().count(" start: ") == 2  # the log is appended


def test_firestore_and_unknown_components_cannot_be_killed(standin):
    with pytest.raises(StackError, match="memory"):
        standin.restart("firestore")
    with pytest.raises(StackError, match="no component"):
        standin.kill("nope")
    assert standin.procs["firestore"].running()
    assert set(standin.components()) == {"tasks", "storage", "simulator", "twilio", "gateway", *NAMES}


def test_a_task_in_flight_when_its_function_dies_is_retried_by_the_new_process(standin):
    tasks_v2, client = _tasks_client(standin)
    record, url = standin.test_record, standin.urls["function:dispatch"] + "/"
    parent = standin.queue_paths["dispatch"].rsplit("/queues/", 1)[0]
    # Enough attempts, spaced enough, to outlast the function being down.
    queue = client.create_queue(parent=parent, queue=tasks_v2.Queue(
        name=f"{parent}/queues/stack-crash", retry_config=tasks_v2.RetryConfig(
            max_attempts=30, min_backoff={"seconds": 0, "nanos": 200_000_000}, max_backoff={"seconds": 1}))).name
    old_pgid = standin.procs["dispatch"].pid
    client.create_task(parent=queue, task=_task(tasks_v2, url, "crash", 200, b"{}", sleep_first=0.9))
    first = _wait_for(lambda: _records(record, **{"X-Marker": "crash"}))
    assert first and first[0]["pgid"] == old_pgid
    standin.kill("dispatch")  # while the first attempt sleeps: it never answers
    time.sleep(1.0)  # a deliberate outage: attempts in this second find nobody listening
    standin.start_component("dispatch")
    new_pgid = standin.procs["dispatch"].pid
    again = _wait_for(lambda: [r for r in _records(record, **{"X-Marker": "crash"}) if r["pgid"] == new_pgid],
                      timeout=30)
    assert again, "the task was not delivered to the restarted function"
    assert int(again[0]["headers"]["X-Cloudtasks-Taskretrycount"]) >= 1
    _wait_for(lambda: not list(client.list_tasks(parent=queue)))
    assert list(client.list_tasks(parent=queue)) == []  # the new process's 200 ended the task
    client.delete_queue(name=queue)


def test_restarted_tasks_emulator_has_its_queues_and_delivers_new_tasks(standin):
    tasks_v2, client = _tasks_client(standin)
    record = standin.test_record
    dispatch, notify = standin.queue_paths["dispatch"], standin.queue_paths["notify"]
    later = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=standin.urls["function:dispatch"] + "/", body=b"{}"),
                          schedule_time={"seconds": int(time.time()) + 3600})
    client.create_task(parent=dispatch, task=later)
    old_pid = standin.procs["tasks"].pid

    standin.restart("tasks")
    assert standin.procs["tasks"].pid != old_pid
    assert standin.urls["tasks"] == f"127.0.0.1:{standin.ports['tasks']}"
    tasks_v2, client = _tasks_client(standin)
    assert {client.get_queue(name=q).name for q in (dispatch, notify)} == {dispatch, notify}
    assert list(client.list_tasks(parent=dispatch)) == []  # held in memory: lost with the process
    client.create_task(parent=dispatch, task=_task(tasks_v2, standin.urls["function:dispatch"] + "/",
                                                   "after-tasks-restart", 200, b"{}"))
    client.create_task(parent=notify, task=_task(tasks_v2, standin.urls["function:notifier"] + "/",
                                                 "notify-after-tasks-restart", 200, b"{}"))
    assert _wait_for(lambda: _records(record, **{"X-Marker": "after-tasks-restart"}))
    assert _wait_for(lambda: _records(record, **{"X-Marker": "notify-after-tasks-restart"}))
    standin.reset()  # the stack's own client reaches the new process too


@pytest.mark.parametrize("name", ["storage", "simulator", "gateway"])
def test_restart_serves_again_on_the_same_port(standin, name):
    port = standin.ports[name]
    old_pid = standin.procs[name].pid if name in standin.procs else None
    standin.restart(name)
    assert standin.ports[name] == port
    if old_pid is not None:
        assert standin.procs[name].pid != old_pid and not pid_alive(old_pid)
    if name == "storage":  # in memory: objects are gone, the media bucket is there again
        status, _ = _http("GET", f"{standin.urls['storage']}/storage/v1/b/{standin.config.media_bucket}")
    elif name == "simulator":
        status, _ = _http("GET", f"{standin.urls['simulator']}/_sim/health")
    else:
        status, payload = _gateway(standin, "GET", "/api/v1/messages/abc")
        assert json.loads(payload)["function"] == "messages"
    assert status == 200


def test_stop_leaves_nothing_running(standin):
    pids = {name: proc.pid for name, proc in standin.procs.items()}
    assert pids and standin.ports
    children = {}
    for name, pid in pids.items():  # e.g. gunicorn's worker
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2:].split()[2]) == pid:
                    children.setdefault(name, []).append(int(entry))
    assert children.get("send"), "expected gunicorn's worker in the function's process group"
    t0 = time.monotonic()
    standin.stop()
    elapsed = time.monotonic() - t0
    print(f"stack stop: {elapsed:.2f}s")
    for name, pid in pids.items():
        assert not pid_alive(pid), name
    for name, group in children.items():
        assert not any(pid_alive(pid) for pid in group), name
    for name, port in standin.ports.items():
        assert not port_open(port), f"{name} still listening on {port}"
    assert not standin.state_file.exists()
    standin.stop()  # idempotent
    # Bounded: a 5 s SIGTERM grace (stop_timeout), then SIGKILL and at most 5 s more, then 2 s for the ports.
    # 60 s is far past that on any machine, and far short of a stop that waits on something forever.
    assert elapsed < 60


# -- the real stack (tests/conftest.py): a restarted function serves the real flow ---------------------------
def test_a_send_reaches_delivered_after_dispatch_restarts(env):
    from tests.conftest import fictional

    old_pid = env.stack.procs["dispatch"].pid
    env.stack.restart("dispatch")
    assert env.stack.procs["dispatch"].pid != old_pid
    to = fictional(0)
    response = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "after a restart",
                                                           "media_urls": [env.sample_media_url]})
    assert response.status_code == 200, response.text
    env.wait_status(response.json()["data"]["id"], "delivered", timeout=30)
    assert len(env.sim_messages(to)) == 1


def test_a_send_reaches_delivered_after_the_tasks_emulator_restarts(env):
    from tests.conftest import fictional

    env.stack.restart("tasks")
    to = fictional(1)
    response = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "after a tasks restart"})
    assert response.status_code == 200, response.text
    env.wait_status(response.json()["data"]["id"], "delivered", timeout=30)
    assert len(env.sim_messages(to)) == 1
