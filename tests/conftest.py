"""Test harness: the real local stack (Firestore, Cloud Tasks and Cloud Storage emulators, the Telnyx
simulator, every function as its own process, the gateway), started once per run and reset between
tests. Tests that never ask for ``stack`` (pure domain tests, Terraform checks) start nothing."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from hypothesis import settings as hypothesis_settings

# The suite starts hundreds of Python processes (every function of every stack, the simulators, each bench
# child) and xdist workers that each import the whole code base. Some machines (this CI image among them) set
# PYTHONDONTWRITEBYTECODE, so every one of them compiled every module from source: ~10 s of the fast tier's
# 30 on 2 cores. A deployed function loads compiled bytecode, so caching it here changes nothing under test.
# Popped before xdist spawns its workers and before any stack process starts, so they all inherit it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

ROOT = Path(__file__).resolve().parents[1]

# Locally, property tests explore new examples on every run; in CI they replay a fixed set, so a build
# is never red by the luck of the draw (what a local run finds becomes an example test, as in
# tests/shared/test_phone.py).
# No profile has a deadline: a test never asserts that something ran fast (bench/ measures speed), and a
# busy machine made hypothesis' 200 ms deadline fail a correct test.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("local", deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "local")


STACK_FIXTURES = frozenset({"stack", "env"})


def _fast_tier(config) -> bool:
    return " ".join(str(config.option.markexpr).split()) == "not stack"


# Three workers (pyproject's addopts: pytest-xdist's -n auto, made 3 below): the tests that use a stack run on
# two workers, each with its own stack (the end-to-end scenarios on one, every other stack test on the other),
# in order, as a serial run would; every other module is a unit of its own, so its module fixtures (a Terraform
# plan, a started server) are built once, on whichever worker is free. xdist's own "loadgroup" cannot say so
# under pytest 9.2 (it renames node ids, which pytest 9.2 no longer lets it do), hence this scheduler: each
# worker writes the ids of the tests that use the stack (it collected them), and the controller, which
# schedules only once every worker has collected, reads them.
_STACK_IDS = "MMSGATE_STACK_TEST_IDS"


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts). A run with stack tests takes three workers whatever the cores: two of
    them spend most of their time waiting on their stacks. The fast tier is all CPU: one worker per core (a
    third worker on two cores only adds its own collection, ~4 s of CPU)."""
    if _fast_tier(config):
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    return 3


def pytest_configure(config):
    """schemathesis' plugin (the OpenAPI fuzz, a stack test) is loaded only when stack tests may run: pyproject's
    addopts turn autoloading off, which also spares the fast tier from rewriting schemathesis' asserts."""
    if not _fast_tier(config):
        config.pluginmanager.import_plugin("schemathesis.pytest.plugin")
    if not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None):
        import tempfile

        fd, path = tempfile.mkstemp(prefix="mmsgate-stack-tests-", suffix=".json")
        os.close(fd)
        os.environ[_STACK_IDS] = config.stack_ids_path = path  # workers inherit it when they start


def pytest_unconfigure(config):
    path = getattr(config, "stack_ids_path", None)
    if path:
        Path(path).unlink(missing_ok=True)


def pytest_collection_modifyitems(config, items):
    """Every test that needs the stack (directly or through another fixture) is marked ``stack``, so
    ``pytest -m "not stack"`` is the fast tier; tests/unit must never need it."""
    uses_stack = []
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            if "tests/unit/" in item.nodeid:
                raise pytest.UsageError(f"{item.nodeid}: tests/unit must not start the stack")
            item.add_marker(pytest.mark.stack)
            uses_stack.append(item.nodeid)
    path = os.environ.get(_STACK_IDS)
    if hasattr(config, "workerinput") and path:
        mine = f"{path}.{config.workerinput['workerid']}"
        Path(mine).write_text(json.dumps(uses_stack))
        os.replace(mine, path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class OneStack(LoadScopeScheduling):
        """xdist's scope scheduling with these scopes: a stack's tests (two stacks, two scopes), else the module."""

        stack_ids: set[str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.stack_ids is None:
                path = getattr(config, "stack_ids_path", None)
                self.stack_ids = set(json.loads(Path(path).read_text() or "[]")) if path else set()
            module = nodeid.split("::", 1)[0]
            if nodeid not in self.stack_ids:
                return module
            # Two stacks, each on its own worker: the end-to-end scenarios (long waits on faults and
            # horizons), and every other test that uses a stack.
            return "stack:e2e" if module.startswith("tests/e2e/") else "stack:other"

    return OneStack(config, log)


@pytest.fixture
def figures(request):
    """``figures(text)``: a figure the issue asks every run to show (a settlement spread, an outage's split).
    Kept in the test's report and printed at the end of the run, also from an xdist worker (whose own output
    never reaches the terminal)."""
    def add(text: str) -> None:
        request.node.add_report_section("call", "figures", text.strip())

    return add


def pytest_terminal_summary(terminalreporter):
    # "Captured figures call" sections, from each test's call report (its teardown report repeats them)
    shown = [content for reports in terminalreporter.stats.values() for report in reports
             if getattr(report, "when", None) == "call"
             for title, content in getattr(report, "sections", ()) if title.split()[1:2] == ["figures"]]
    if shown:
        terminalreporter.section("figures")
        for content in shown:
            terminalreporter.write_line(content)


# A module that marks itself whole (``pytestmark = pytest.mark.stack``) has nothing for the fast tier.
_WHOLE_MODULE_STACK = re.compile(r"^pytestmark = pytest\.mark\.stack$", re.MULTILINE)


def pytest_ignore_collect(collection_path, config):
    """Under ``-m "not stack"``, a module marked ``stack`` as a whole is not even imported: every test in it
    would be deselected anyway, and importing them (emulator clients, schemathesis, the simulator) was
    two thirds of the fast tier's time. tests/unit is always collected (it must never need the stack)."""
    if not _fast_tier(config):
        return None
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_") \
            or collection_path.parent.name == "unit":
        return None
    return True if _WHOLE_MODULE_STACK.search(collection_path.read_text(errors="replace")) else None


# -- a customer's webhook endpoint ---------------------------------------------------------------
@dataclass
class Receiver:
    """Records every POST; ``fail_next`` makes the next N answer 500."""

    server: ThreadingHTTPServer | None = None
    received: list[dict] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.fail_next = 0

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= 1 if failing else 0
                    receiver.received.append({"body": body, "headers": dict(self.headers), "failed": failing})
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def receiver():
    r = Receiver()
    r.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


# -- a tenant's media host ----------------------------------------------------------------------
@dataclass
class MediaHost:
    """Serves bytes put at a path (``put`` returns the URL) and counts the GETs of each path."""

    server: ThreadingHTTPServer | None = None
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def put(self, path: str, data: bytes, content_type: str) -> str:
        with self.lock:
            self.files[path] = (data, content_type)
        return self.origin + path

    def reset(self) -> None:
        with self.lock:
            self.files.clear()
            self.hits.clear()

    def start(self) -> None:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                with host.lock:
                    host.hits[self.path] = host.hits.get(self.path, 0) + 1
                    found = host.files.get(self.path)
                data, content_type = found or (b"not found", "text/plain")
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the fetcher stopped reading (a cap): expected

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def media_host():
    host = MediaHost()
    host.start()
    yield host
    host.server.shutdown()
    host.server.server_close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, receiver, media_host):
    from tools.stack import Stack, StackConfig

    config = StackConfig.for_tests(tmp_path_factory.mktemp("stack"))
    s = Stack(config)
    # Customer endpoints in tests live on loopback: trust exactly that origin (never in production).
    config.env_overrides["MEDIA_TRUSTED_ORIGINS"] = \
        f"{s.urls['storage']},{s.urls['dev']},{s.urls['simulator']},{receiver.origin},{media_host.origin}"
    s.start()
    os.environ.update(s.function_env())  # in-process clients and test_client() use the same emulators
    try:
        yield s
    finally:
        s.stop()


@dataclass
class Env:
    stack: object
    api: httpx.Client
    sim: httpx.Client
    tenant_id: str
    api_key: str
    sample_media_url: str
    receiver: Receiver

    @property
    def store(self):
        from infra.runtime import store

        return store()

    def balance(self, tenant_id: str | None = None) -> int:
        tenant = self.store.accounts.get_tenant(tenant_id or self.tenant_id)
        assert tenant is not None
        return tenant.balance_micros

    def leg_doc(self, message_id: str) -> dict | None:
        """The leg's stored document as Firestore holds it."""
        from infra import collections as C

        snap = self.store.db.collection(C.MESSAGES).document(message_id).get()
        return snap.to_dict() if snap.exists else None

    def sim_messages(self, to: str | None = None) -> list[dict]:
        return self.sim.get("/_sim/messages", params={"to": to} if to else None).json()["data"]

    def message(self, message_id: str) -> dict:
        response = self.api.get(f"/api/v1/messages/{message_id}")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def wait_status(self, message_id: str, statuses: set[str] | str, timeout: float = 15.0,
                    final: bool | None = None) -> dict:
        wanted = {statuses} if isinstance(statuses, str) else statuses
        return wait_for(lambda: (m := self.message(message_id))["status"] in wanted
                        and (final is None or m["final"] == final) and m, timeout,
                        f"{message_id} never reached {wanted}")

    def queued(self, queue: str = "dispatch") -> list[dict]:
        """The tasks a queue still holds, each as ``{"name", "message_id", "due"}``. A task leaves its queue once a
        delivery of it is answered 2xx (or it is given up), so when no task is due, every delivery asked for so
        far has been made and answered: what a test waits for instead of sleeping."""
        from google.cloud import tasks_v2

        now = time.time()
        found = []
        for task in self.stack._tasks().list_tasks(request={  # the stack's own client (reset uses it too)
                "parent": self.stack.queue_paths[queue], "response_view": tasks_v2.Task.View.FULL}):
            try:
                body = json.loads(task.http_request.body or b"{}")
            except ValueError:
                body = {}
            due = task.schedule_time is None or task.schedule_time.timestamp() <= now
            found.append({"name": task.name, "message_id": body.get("message_id"), "due": due})
        return found

    def wait_until_delivered(self, queue: str = "dispatch", message_id: str | None = None,
                             timeout: float = 20.0) -> None:
        """Wait until ``queue`` holds no task that is due (for ``message_id``, or for anyone): whatever the tasks
        asked for so far has been done, so what it would have done can be checked now."""
        wait_for(lambda: not [t for t in self.queued(queue) if t["due"]
                              and (message_id is None or t["message_id"] == message_id)],
                 timeout, f"{queue} still has due tasks{f' for {message_id}' if message_id else ''}")

    def new_tenant(self, **fields) -> tuple[str, str]:
        from shared.rules import ids
        from tools.seed import seed

        tenant_id = ids.new_tenant_id()
        return seed(self.store, api_key=ids.new_api_key(), tenant_id=tenant_id, **fields)

    def client(self, api_key: str) -> httpx.Client:
        return httpx.Client(base_url=self.stack.urls["gateway"], headers={"X-API-Key": api_key}, timeout=30)


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(0.05)


def settlement(env: Env, message_ids: list[str]) -> tuple[int, list[float]]:
    """How many legs ended ``PROVIDER_OUTCOME_UNKNOWN``, and for every leg that was ever ambiguous (a send whose
    answer was lost, or whose dispatch died mid-call), the seconds from then until it was settled."""
    import datetime as dt

    unknown, settled = 0, []
    for message_id in message_ids:
        doc = env.leg_doc(message_id) or {}
        unknown += doc.get("error_code") == "PROVIDER_OUTCOME_UNKNOWN"
        since = doc.get("ambiguous_since")
        ends = [h["at"] for h in doc.get("history") or [] if h["to"] in ("sent", "delivered", "undelivered", "failed")]
        if since is not None and ends:
            settled.append((min(ends) - since).total_seconds() if isinstance(ends[0], dt.datetime) else 0.0)
    return unknown, settled


def describe_settlement(label: str, env: Env, message_ids: list[str], horizon: int) -> str:
    import statistics

    unknown, settled = settlement(env, message_ids)
    spread = (f"{len(settled)} ambiguous legs settled in {min(settled):.1f}-{max(settled):.1f} s (median "
              f"{statistics.median(settled):.1f} s)") if settled else "no ambiguous leg"
    return (f"\n{label}: {len(message_ids)} legs, {unknown} ended PROVIDER_OUTCOME_UNKNOWN; {spread}; "
            f"lookup horizon {horizon} s")


@pytest.fixture
def env(stack, receiver) -> Env:
    from tools.seed import DEV_API_KEY, seed, upload_sample

    stack.reset()
    receiver.reset()
    from infra.runtime import store

    tenant_id, api_key = seed(store(), api_key=DEV_API_KEY)
    sample = upload_sample(stack.config.media_bucket, stack.urls["storage"])
    api = httpx.Client(base_url=stack.urls["gateway"], headers={"X-API-Key": api_key}, timeout=30)
    sim = httpx.Client(base_url=stack.urls["simulator"], timeout=10)
    try:
        yield Env(stack, api, sim, tenant_id, api_key, sample, receiver)
    finally:
        api.close()
        try:
            _settle(store(), sim)
        finally:
            sim.close()


def _settle(store, sim: httpx.Client, timeout: float = 15.0) -> None:
    """Let a test's in-flight legs finish before the next test resets: a dispatch still running
    after a reset would otherwise reach the simulator and be counted by the next test. A leg still in
    flight after ``timeout`` is a stuck leg, the very thing mmsgate promises never happens: it fails the
    test that left it, by name, instead of leaking into the next one."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from infra import collections as C

    in_flight = ["pending", "queued", "sending"]
    busy = store.db.collection(C.MESSAGES).where(filter=FieldFilter("status", "in", in_flight))
    deadline = time.monotonic() + timeout
    while list(busy.limit(1).stream()):
        if time.monotonic() > deadline:
            stuck = [snap.to_dict() or {} for snap in busy.limit(20).stream()]
            described = ", ".join(f"{leg.get('id')} to {leg.get('to')}: {leg.get('status')}"
                                  f" (send_state {leg.get('send_state')}, since {leg.get('status_since')})"
                                  for leg in stuck)
            raise AssertionError(f"{len(stuck)} leg(s) still in flight {timeout}s after the test: {described}")
        time.sleep(0.1)
    # The simulator's reports of this test's legs: none may be running or due in a moment when the next test
    # resets (later ones die with the reset's generation).
    wait_for(lambda: sim.get("/_sim/stats", params={"within_s": "0.05"}).json()["data"]["busy"] == 0, 5.0,
             "the simulator's reports sent")


def fictional(xx: int, npa: str = "415") -> str:
    """A simulator number whose last two digits pick the outcome (see docs/simulator.md)."""
    return f"+1{npa}55501{xx:02d}"


def load_json(response: httpx.Response) -> dict:
    try:
        return response.json()
    except json.JSONDecodeError:  # pragma: no cover - makes the failing assertion readable
        raise AssertionError(f"not JSON ({response.status_code}): {response.text[:500]}") from None
