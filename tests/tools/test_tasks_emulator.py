"""The patched Cloud Tasks emulator (tools/tasks_emulator.py), run standalone against a target in this process.

What is checked: queue-wide throttling after 429/503 (and not after other failures), concurrent delivery
bounded by the queue's max_concurrent_dispatches, purge during delivery, task names and tombstones, RunTask.
Assertions are on order and counts; the only time bounds are lower bounds that a throttle must enforce, with a
margin.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tools.procs import Proc, free_ports, port_open, stop_all
from tools.stack import EMU_VENV, ROOT

pytestmark = pytest.mark.stack

PARENT = "projects/demo-emu/locations/us-central1"
THROTTLE_MIN = 0.5  # --throttle-min of the emulator below


# -- the target the emulator delivers to ------------------------------------------------------------
@dataclass
class Target:
    """Answers each task as its headers say (X-Status, X-Retry-After, X-Ok-After, X-Sleep, X-Hold-Until),
    records every delivery in arrival order, and counts deliveries in flight at once per X-Group."""

    server: ThreadingHTTPServer | None = None
    calls: list[dict] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def of(self, marker: str) -> list[dict]:
        with self.cond:
            return [c for c in self.calls if c["marker"] == marker]

    def group(self, group: str) -> list[dict]:
        with self.cond:
            return [c for c in self.calls if c["group"] == group]

    def start(self) -> None:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                marker, group = self.headers.get("X-Marker", ""), self.headers.get("X-Group", "")
                with target.cond:
                    target.in_flight[group] = target.in_flight.get(group, 0) + 1
                    target.max_in_flight[group] = max(target.max_in_flight.get(group, 0), target.in_flight[group])
                    seen = sum(1 for c in target.calls if c["marker"] == marker)
                    target.calls.append({"marker": marker, "group": group, "t": time.monotonic(),
                                         "retry": self.headers.get("X-CloudTasks-TaskRetryCount"),
                                         "name": self.headers.get("X-CloudTasks-TaskName")})
                    target.cond.notify_all()
                    # X-Hold-Until=N: stay until N deliveries of the group are in flight together (or 10 s)
                    hold = int(self.headers.get("X-Hold-Until", "0"))
                    target.cond.wait_for(lambda: target.in_flight[group] >= hold, timeout=10)
                time.sleep(float(self.headers.get("X-Sleep", "0")))
                status = int(self.headers.get("X-Status", "200"))
                if seen >= int(self.headers.get("X-Ok-After", "1000")):
                    status = 200
                with target.cond:  # before answering: the emulator may start the next one at once
                    target.in_flight[group] -= 1
                self.send_response(status)
                if self.headers.get("X-Retry-After"):
                    self.send_header("Retry-After", self.headers["X-Retry-After"])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Emulator:
    proc: Proc
    port: int
    client: object
    tasks_v2: object
    _names: itertools.count = field(default_factory=itertools.count)

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def log_lines(self, pattern: str) -> list[str]:
        return [line for line in self.log().splitlines() if re.search(pattern, line)]

    def queue(self, prefix: str, **fields) -> str:
        """A fresh queue created by a client, as a test would configure it."""
        name = f"{PARENT}/queues/{prefix}-{next(self._names)}"
        return self.client.create_queue(parent=PARENT, queue=self.tasks_v2.Queue(name=name, **fields)).name

    def task(self, queue: str, url: str, marker: str, name: str | None = None, **headers: str):
        tasks_v2 = self.tasks_v2
        task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST, url=url, body=b"{}",
            headers={"X-Marker": marker, **{f"X-{k.replace('_', '-').title()}": str(v) for k, v in headers.items()}}))
        if name:
            task.name = f"{queue}/tasks/{name}"
        return self.client.create_task(parent=queue, task=task)


def _wait(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def target():
    t = Target()
    t.start()
    yield t
    t.server.shutdown()
    t.server.server_close()


@contextlib.contextmanager
def _running_emulator(log_dir: Path, *args: str):
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    port = free_ports(1)[0]
    proc = Proc("tasks", [str(EMU_VENV / "bin" / "python"), str(ROOT / "tools" / "tasks_emulator.py"),
                          "--port", str(port), *args], log_dir / "tasks.log").start()
    try:
        _wait(lambda: port_open(port) or not proc.running(), 30, "the emulator to listen")
        assert proc.running(), proc.tail()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        yield Emulator(proc, port, client, tasks_v2)
        channel.close()
    finally:
        stop_all([proc])


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with _running_emulator(tmp_path_factory.mktemp("tasks"), "--max-attempts", "2", "--min-backoff", "0.05",
                           "--max-backoff", "0.2", "--max-concurrent", "4", "--timeout", "15",
                           "--throttle-min", str(THROTTLE_MIN), "--throttle-max", "10") as emu:
        yield emu


# -- system throttling ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [503, 429])
def test_429_or_503_holds_every_task_of_the_queue_for_its_retry_after(emulator, target, status):
    # A long per-task backoff keeps A's own retry out of the picture: only the queue throttle can delay B.
    queue = emulator.queue("throttle", retry_config=emulator.tasks_v2.RetryConfig(
        max_attempts=2, min_backoff=dt.timedelta(seconds=8), max_backoff=dt.timedelta(seconds=8)))
    marker = f"{status}-A"
    emulator.task(queue, target.url, marker, status=status, retry_after=3)
    held = _wait(lambda: emulator.log_lines(rf"\[THROTTLE\] queue {re.escape(queue)} held"), what="the throttle")
    assert f"HTTP {status}" in held[0] and "held 3.00s" in held[0], held  # Retry-After 3 > THROTTLE_MIN
    emulator.task(queue, target.url, f"{status}-B", name=f"b{status}")

    b = _wait(lambda: target.of(f"{status}-B"), what="B once the throttle lifts")[0]
    a = target.of(marker)[0]
    assert b["t"] - a["t"] >= 3 * 0.8, "B was delivered while the queue was held"
    log = emulator.log()
    resumes = log.index(f"[THROTTLE] queue {queue} resumes")
    assert resumes < log.index(f"Submitting task {queue}/tasks/b{status}")
    # A itself retries after its own backoff (8 s): B went first, so nothing waited for A.
    assert len(target.of(marker)) == 1


def test_500_backs_off_only_its_own_task(emulator, target):
    queue = emulator.queue("no-throttle", retry_config=emulator.tasks_v2.RetryConfig(
        max_attempts=2, min_backoff=dt.timedelta(seconds=8), max_backoff=dt.timedelta(seconds=8)))
    # Retry-After is sent too: it only counts with 429/503.
    a_task = emulator.task(queue, target.url, "500-A", status=500, retry_after=3)
    _wait(lambda: emulator.log_lines(rf"Retrying task {re.escape(a_task.name)}"), what="A's failure")
    emulator.task(queue, target.url, "500-B")

    b = _wait(lambda: target.of("500-B"), what="B")[0]
    a_attempts = target.of("500-A")
    assert len(a_attempts) == 1 or a_attempts[1]["t"] > b["t"], "B waited for A's retry"
    assert not emulator.log_lines(rf"\[THROTTLE\] queue {re.escape(queue)}")


def test_queue_backoff_doubles_on_each_throttle_and_resets_after_a_success(emulator, target):
    queue = emulator.queue("doubling", retry_config=emulator.tasks_v2.RetryConfig(
        max_attempts=5, min_backoff=dt.timedelta(milliseconds=50)))
    # A: 503, 503, then 200 (no Retry-After: the queue backoff alone decides).
    emulator.task(queue, target.url, "dbl-A", status=503, ok_after=2)
    _wait(lambda: len(target.of("dbl-A")) == 3, what="A's third attempt")
    # A's 200 is settled (and resets the doubling) when the queue no longer holds A.
    _wait(lambda: not list(emulator.client.list_tasks(parent=queue)), what="A's success")
    emulator.task(queue, target.url, "dbl-C", status=503, ok_after=1)
    _wait(lambda: len(target.of("dbl-C")) == 2, what="C's retry")
    holds = [float(re.search(r"held (\d+\.\d+)s", line).group(1))
             for line in emulator.log_lines(rf"\[THROTTLE\] queue {re.escape(queue)} held")]
    assert holds == [THROTTLE_MIN, 2 * THROTTLE_MIN, THROTTLE_MIN]
    assert len(target.of("dbl-A")) == 3 and len(target.of("dbl-C")) == 2


# -- concurrency ------------------------------------------------------------------------------------
def test_deliveries_run_concurrently_up_to_the_default_limit(emulator, target):
    queue = emulator.queue("concurrent")
    # Each delivery stays until 4 are in flight together, then a little longer: a fifth would show up.
    for i in range(8):
        emulator.task(queue, target.url, f"conc-{i}", group="conc", hold_until=4, sleep=0.3)
    _wait(lambda: len(target.group("conc")) >= 8, what="8 deliveries")
    # answered, each task leaves the queue: from then on no delivery of it can come again
    _wait(lambda: not list(emulator.client.list_tasks(parent=queue)), what="every task answered")
    names = [c["name"] for c in target.group("conc")]
    assert len(names) == 8 and len(set(names)) == 8  # each task once
    assert target.max_in_flight["conc"] == 4  # --max-concurrent 4


def test_queue_max_concurrent_dispatches_bounds_delivery(emulator, target):
    queue = emulator.queue("concurrent2", rate_limits=emulator.tasks_v2.RateLimits(max_concurrent_dispatches=2))
    for i in range(6):
        emulator.task(queue, target.url, f"conc2-{i}", group="conc2", hold_until=2, sleep=0.3)
    _wait(lambda: len(target.group("conc2")) >= 6, what="6 deliveries")
    _wait(lambda: not list(emulator.client.list_tasks(parent=queue)), what="every task answered")
    assert len(target.group("conc2")) == 6
    assert target.max_in_flight["conc2"] == 2


# -- purge, names -----------------------------------------------------------------------------------
def test_a_task_purged_during_delivery_is_not_retried(emulator, target):
    queue = emulator.queue("purge", retry_config=emulator.tasks_v2.RetryConfig(max_attempts=5))
    emulator.task(queue, target.url, "purged", status=500, sleep=1.0)
    _wait(lambda: target.of("purged"), what="the delivery")
    emulator.client.purge_queue(name=queue)
    emulator.task(queue, target.url, "after-purge")
    _wait(lambda: target.of("after-purge"), what="a task created after the purge")
    _wait(lambda: emulator.log_lines(r"Dropping task .* purged"), what="the drop")
    time.sleep(1.0)  # several backoffs (0.05 .. 0.2 s): a retry would have come
    assert len(target.of("purged")) == 1
    assert list(emulator.client.list_tasks(parent=queue)) == []


def test_a_name_the_queue_holds_is_refused(emulator, target):
    from google.api_core.exceptions import AlreadyExists

    queue = emulator.queue("names")
    later = emulator.tasks_v2.Task(name=f"{queue}/tasks/once", schedule_time=dt.datetime.now(dt.UTC)
                                   + dt.timedelta(hours=1), http_request=emulator.tasks_v2.HttpRequest(url=target.url))
    emulator.client.create_task(parent=queue, task=later)
    with pytest.raises(AlreadyExists):
        emulator.client.create_task(parent=queue, task=later)
    assert emulator.client.get_task(name=f"{queue}/tasks/once").name == f"{queue}/tasks/once"
    emulator.client.delete_task(name=f"{queue}/tasks/once")
    emulator.client.create_task(parent=queue, task=later)  # tombstones are off by default
    assert [t.name for t in emulator.client.list_tasks(parent=queue)] == [f"{queue}/tasks/once"]


def test_run_task_delivers_a_scheduled_task_now(emulator, target):
    queue = emulator.queue("run")
    task = emulator.tasks_v2.Task(
        name=f"{queue}/tasks/run-now", schedule_time=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        http_request=emulator.tasks_v2.HttpRequest(url=target.url, headers={"X-Marker": "run-now"}))
    emulator.client.create_task(parent=queue, task=task)
    emulator.client.run_task(name=task.name)
    assert len(target.of("run-now")) == 1
    assert list(emulator.client.list_tasks(parent=queue)) == []  # a 2xx ends it


def test_tombstones_keep_a_finished_name_taken(tmp_path, target):
    from google.api_core.exceptions import AlreadyExists

    with _running_emulator(tmp_path, "--tombstone-seconds", "3600") as emu:
        queue = emu.queue("tomb")
        emu.task(queue, target.url, "tomb", name="t1")
        _wait(lambda: target.of("tomb") and not list(emu.client.list_tasks(parent=queue)), what="t1 done")
        with pytest.raises(AlreadyExists):
            emu.task(queue, target.url, "tomb", name="t1")
        emu.task(queue, target.url, "tomb", name="t2")  # another name is fine
        _wait(lambda: len(target.of("tomb")) == 2, what="t2")
