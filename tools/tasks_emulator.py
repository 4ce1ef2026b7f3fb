"""Run the Cloud Tasks emulator (gcloud-tasks-emulator 0.6.2) the way the local stack needs it.

Runs under ``.venv-emulators/bin/python`` (the emulator pins protobuf < 5), never in the app venv::

    .venv-emulators/bin/python tools/tasks_emulator.py --port 9022 --max-attempts 10 --max-concurrent 10 \\
        -d projects/demo-mmsgate/locations/us-central1/queues/mms-dispatch

The stock emulator keeps its gRPC API and queue objects; its task storage and delivery loop are replaced,
each change closer to real Cloud Tasks:

1. Bind: ``APIThread.run`` hard-codes ``[::]:PORT`` (every interface); ours binds ``127.0.0.1:PORT``.
2. Attempts: a task is delivered at most ``max_attempts`` times in all (the queue's
   ``retry_config.max_attempts`` when a client created the queue with one, else ``--max-attempts``), so
   ``X-CloudTasks-TaskRetryCount`` goes 0 .. max_attempts-1. The stock emulator retries forever.
3. Backoff: after a failed delivery the task waits ``min_backoff * 2**(failures-1)`` seconds, capped at
   ``max_backoff``, before its next attempt (the queue's ``retry_config`` values when a client set them,
   else ``--min-backoff``/``--max-backoff``; ``max_doublings`` and ``max_retry_duration`` are not modelled).
   The stock emulator retries every 0.1 s.
4. Timeout: each HTTP delivery gives up after ``--timeout`` seconds (a failed attempt without a response).
5. Purge and delete: a task in flight while its queue is purged or deleted is dropped when its delivery
   ends, whatever the answer (the stock loop put it back, or died on ``NotFound`` and never delivered
   again). A queue deleted and created again gets a fresh delivery loop.
6. Concurrency: each queue delivers up to ``rate_limits.max_concurrent_dispatches`` tasks at once (when a
   client created the queue with it, else ``--max-concurrent``) from a thread pool of that size; one task
   is never in flight twice. The stock emulator delivered each queue's tasks one at a time.
   ``max_dispatches_per_second`` is not enforced (locally, the CPU is the limit).
7. System throttling: an answer of 429 or 503 backs off the whole *queue*, not only the task (the
   ``HttpRequest`` reference, "System throttling": Cloud Tasks "will use a higher backoff rate", and
   "the retry specified in the Retry-After HTTP response header is considered"). No task of the queue
   starts until ``max(queue backoff, Retry-After)`` has passed; deliveries already in flight finish. The
   queue backoff starts at ``--throttle-min`` and doubles with each further 429/503 up to
   ``--throttle-max`` (which also caps an honoured ``Retry-After``); a 2xx resets the doubling. Each
   throttle is logged at INFO as ``[THROTTLE] queue Q held S.SSs after HTTP N from task T ...`` and its
   end as ``[THROTTLE] queue Q resumes``. Any other failure (4xx, 5xx, timeout, no connection) backs off
   only its own task, and ``Retry-After`` is then ignored. The "error rate is high" trigger is not
   modelled.
8. Names: creating a task whose name the queue holds answers ``ALREADY_EXISTS`` (the stock emulator
   queued a second copy). Real Cloud Tasks also refuses a name for about an hour after its task ended;
   ``--tombstone-seconds`` (default 0: off) models that. A task created without a name gets a random id.
9. ``GetTask`` and ``DeleteTask`` are implemented (stock: UNIMPLEMENTED); a task deleted while in flight
   is not retried.

Scheduling is event-driven: a new task, a finished delivery or the next due time wakes the scheduler
(``--poll`` caps an idle wait). The headers the emulator sends are the stock ones: ``X-CloudTasks-QueueName``
(the full queue path, where real Cloud Tasks sends the short id), ``X-CloudTasks-TaskName``,
``X-CloudTasks-TaskRetryCount``, ``X-CloudTasks-TaskExecutionCount`` and ``X-CloudTasks-TaskETA``. No
``Authorization`` header is sent: ``oidc_token`` is ignored. SIGTERM/SIGINT exit at once (all state is in
memory: a restarted emulator has its ``-d`` queues again, and no tasks).
"""

from __future__ import annotations

import argparse
import email.utils
import functools
import heapq
import itertools
import logging
import os
import secrets
import signal
import sys
import threading
import time
import types
import urllib.request
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC
from urllib import error

import gcloud_tasks_emulator.server as s
import grpc
from google.api_core.exceptions import AlreadyExists, FailedPrecondition, GoogleAPICallError, NotFound
from google.cloud.tasks_v2 import Attempt, Queue, Task
from google.protobuf import empty_pb2, timestamp_pb2

log = logging.getLogger("tasks-emulator-local")

THROTTLING_STATUSES = (429, 503)


@dataclass
class Options:
    max_attempts: int = 10
    min_backoff: float = 0.1
    max_backoff: float = 2.0
    timeout: float = 30.0
    poll: float = 0.25
    max_concurrent: int = 10
    throttle_min: float = 1.0
    throttle_max: float = 60.0
    tombstone_seconds: float = 0.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _seconds(duration) -> float:
    return duration.total_seconds() if duration else 0.0


def _timestamp() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


class QueueRunner:
    """Delivery state of one queue: tasks by name, a heap of due times, what is in flight, the throttle.

    Every field is guarded by the owning state's lock; deliveries run in ``pool`` outside it.
    """

    def __init__(self, name: str, queue: Queue, options: Options):
        self.name = name
        self.tasks: dict[str, Task] = {}  # insertion order = ListTasks order
        self.heap: list[tuple[float, int, str]] = []  # (monotonic due time, ticket, task name)
        self.ticket: dict[str, int] = {}  # name -> ticket of its one valid heap entry
        self.in_flight: set[str] = set()
        self.concurrency = queue.rate_limits.max_concurrent_dispatches or options.max_concurrent
        retry = queue.retry_config
        self.max_attempts = retry.max_attempts if retry.max_attempts > 0 else options.max_attempts
        # proto-plus gives a Duration field as a timedelta (zero when unset)
        self.min_backoff = _seconds(retry.min_backoff) or options.min_backoff
        self.max_backoff = _seconds(retry.max_backoff) or max(options.max_backoff, self.min_backoff)
        self.pool = futures.ThreadPoolExecutor(max_workers=self.concurrency,
                                               thread_name_prefix=f"deliver-{name.rsplit('/', 1)[-1]}")
        self.throttle_until = 0.0  # monotonic; nothing starts before it
        self.throttle_backoff = 0.0  # last queue backoff; 0 after a success
        self.throttled = False  # a throttle is being held (for the "resumes" log line)


class LocalQueueState(s.QueueState):
    """The stock QueueState's queues, with our own task storage and concurrent delivery (patches 2-9)."""

    options = Options()

    def __init__(self, target_host: str, target_port: int, max_retries: int):
        super().__init__(target_host, target_port, max_retries)
        self._lock = threading.RLock()
        self._runners: dict[str, QueueRunner] = {}
        self._tombstones: dict[str, float] = {}  # task name -> monotonic time its name is free again
        self._tickets = itertools.count()
        self.wake = threading.Event()

    # -- queues -------------------------------------------------------------------------------------
    def create_queue(self, parent, queue: Queue):
        with self._lock:
            if queue.name not in self._queues:
                self._queues[queue.name] = queue
                queue.state = Queue.State.RUNNING
                self._runners[queue.name] = QueueRunner(queue.name, queue, self.options)
                self._queue_tasks[queue.name] = []  # unused; kept so stock code that tests membership works
                log.info("[TASKS] Created queue %s (max concurrent dispatches %d, max attempts %d)",
                         queue.name, self._runners[queue.name].concurrency, self._runners[queue.name].max_attempts)
            return self._queues[queue.name]

    def delete_queue(self, name: str):
        with self._lock:
            runner = self._runners.pop(name, None)
            self._queues.pop(name, None)
            self._queue_tasks.pop(name, None)
        if runner is not None:
            log.info("[TASKS] Deleted queue %s", name)
            runner.pool.shutdown(wait=False)

    def purge_queue(self, queue_name: str):
        with self._lock:
            runner = self._runner(queue_name)
            for name in runner.tasks:
                self._bury(name)
            runner.tasks.clear()
            runner.heap.clear()
            runner.ticket.clear()
            log.info("[TASKS] Purged queue %s", queue_name)
            return self._queues[queue_name]

    def _runner(self, queue_name: str) -> QueueRunner:
        runner = self._runners.get(queue_name)
        if runner is None:
            raise NotFound(f"Queue {queue_name} does not exist.")
        return runner

    # -- tasks --------------------------------------------------------------------------------------
    def create_task(self, queue: str, task: Task):
        if task.app_engine_http_request.relative_uri:
            task.app_engine_http_request.http_method = task.app_engine_http_request.http_method or s.HttpMethod.POST
        elif task.http_request.url:
            task.http_request.http_method = task.http_request.http_method or s.HttpMethod.POST
        else:
            raise FailedPrecondition("Either app_engine_http_request or http_request is required")
        with self._lock:
            runner = self._runners.get(queue)
            if runner is None:
                raise FailedPrecondition(f"Queue {queue} does not exist.")
            if not task.name:
                task.name = f"{queue}/tasks/{secrets.randbits(63)}"
            elif task.name.rsplit("/tasks/", 1)[0] != queue:
                raise FailedPrecondition(f"Task {task.name} does not belong to queue {queue}.")
            name = task.name
            if name in runner.tasks:
                raise AlreadyExists(f"Requested entity already exists: {name}")
            buried = self._tombstones.get(name)
            if buried is not None:
                if buried > time.monotonic():
                    raise AlreadyExists(f"The task cannot be created because a task with this name existed "
                                        f"too recently: {name}")
                del self._tombstones[name]
            if not task.schedule_time:
                task.schedule_time = _timestamp()
            runner.tasks[name] = task
            due = time.monotonic() + max(0.0, task.schedule_time.timestamp() - time.time())
            self._push(runner, name, due)
        log.info("[TASKS] Created task %s", name)
        self.wake.set()
        return task

    def get_task(self, name: str) -> Task:
        with self._lock:
            runner = self._runners.get(name.rsplit("/tasks/", 1)[0])
            task = runner.tasks.get(name) if runner else None
            if task is None:
                raise NotFound(f"Task not found: {name}")
            return Task.deserialize(Task.serialize(task))

    def delete_task(self, name: str) -> None:
        with self._lock:
            runner = self._runners.get(name.rsplit("/tasks/", 1)[0])
            if runner is None or runner.tasks.pop(name, None) is None:
                raise NotFound(f"Task not found: {name}")
            runner.ticket.pop(name, None)
            self._bury(name)
        log.info("[TASKS] Deleted task %s", name)

    def list_tasks(self, queue_name: str):
        with self._lock:  # copies: deliveries mutate the live objects from other threads
            return [Task.deserialize(Task.serialize(t)) for t in self._runner(queue_name).tasks.values()]

    def _push(self, runner: QueueRunner, name: str, due: float) -> None:
        ticket = next(self._tickets)
        runner.ticket[name] = ticket
        heapq.heappush(runner.heap, (due, ticket, name))

    def _bury(self, name: str) -> None:
        if self.options.tombstone_seconds > 0:
            self._tombstones[name] = time.monotonic() + self.options.tombstone_seconds

    # -- delivery -----------------------------------------------------------------------------------
    def schedule(self) -> float:
        """Start every due task that its queue's state, throttle and concurrency allow.

        Returns the seconds until something may next become due (capped by ``--poll``).
        """
        wait = self.options.poll
        with self._lock:
            now = time.monotonic()
            for runner in self._runners.values():
                if self._queues[runner.name].state != Queue.State.RUNNING:
                    continue
                if runner.throttle_until > now:
                    wait = min(wait, runner.throttle_until - now)
                    continue
                if runner.throttled:
                    runner.throttled = False
                    log.info("[THROTTLE] queue %s resumes", runner.name)
                while runner.heap and len(runner.in_flight) < runner.concurrency:
                    due, ticket, name = runner.heap[0]
                    if runner.ticket.get(name) != ticket:
                        heapq.heappop(runner.heap)  # superseded, deleted or purged
                        continue
                    if due > now:
                        wait = min(wait, due - now)
                        break
                    heapq.heappop(runner.heap)
                    del runner.ticket[name]
                    task = runner.tasks[name]
                    self._begin(runner, task)
                    runner.pool.submit(self._deliver_logged, runner, task)
        return max(wait, 0.001)

    def _begin(self, runner: QueueRunner, task: Task) -> None:
        runner.in_flight.add(task.name)
        task.dispatch_count += 1

    def _deliver_logged(self, runner: QueueRunner, task: Task) -> None:
        try:
            self._deliver(runner, task)
        except Exception:  # never lose a pool thread silently
            log.exception("[TASKS] unexpected error delivering %s", task.name)
            with self._lock:
                runner.in_flight.discard(task.name)

    def _deliver(self, runner: QueueRunner, task: Task) -> Task:
        """One HTTP attempt (outside the lock), then what it means for the task and its queue."""
        schedule_time, dispatch_time = task.schedule_time, _timestamp()
        status, retry_after = None, None
        try:
            response = s._make_task_request(runner.name, task, self._target_host, self._target_port)
        except error.HTTPError as exc:
            status, retry_after = exc.code, exc.headers.get("Retry-After") if exc.headers else None
            exc.close()
            log.info("[TASKS] Task %s answered HTTP %d", task.name, status)
        except Exception as exc:  # noqa: BLE001 - timeout, refused connection, ...: no response at all
            log.info("[TASKS] Task %s got no response: %s: %s", task.name, type(exc).__name__, exc)
        else:
            status = response.status
            with response:
                response.read()
        with self._lock:
            runner.in_flight.discard(task.name)
            attempt = Attempt(schedule_time=schedule_time, dispatch_time=dispatch_time,
                              response_time=_timestamp(), response_status={"code": status or 0})
            task.first_attempt = task.first_attempt or attempt
            task.last_attempt = attempt
            self._settle(runner, task, status, retry_after)
        self.wake.set()
        return task

    def _settle(self, runner: QueueRunner, task: Task, status: int | None, retry_after: str | None) -> None:
        name, now = task.name, time.monotonic()
        current = self._runners.get(runner.name) is runner and runner.tasks.get(name) is task
        if status is not None and 200 <= status < 300:
            runner.throttle_backoff = 0.0
            if current:
                del runner.tasks[name]
                self._bury(name)
            return
        if status in THROTTLING_STATUSES:
            self._throttle(runner, name, status, retry_after, now)
        if not current:
            log.info("[TASKS] Dropping task %s: it was purged or deleted during delivery", name)
        elif task.dispatch_count >= runner.max_attempts:
            del runner.tasks[name]
            self._bury(name)
            log.info("[TASKS] Giving up task %s after %d attempts", name, task.dispatch_count)
        else:
            delay = min(runner.min_backoff * 2 ** (task.dispatch_count - 1), runner.max_backoff)
            self._push(runner, name, now + delay)
            log.info("[TASKS] Retrying task %s in %.2fs (attempt %d failed)", name, delay, task.dispatch_count)

    def _throttle(self, runner: QueueRunner, name: str, status: int, retry_after: str | None, now: float) -> None:
        o = self.options
        backoff = o.throttle_min if runner.throttle_backoff <= 0 else min(runner.throttle_backoff * 2, o.throttle_max)
        runner.throttle_backoff = backoff
        asked = retry_after_seconds(retry_after)
        hold = max(backoff, min(asked, o.throttle_max) if asked is not None else 0.0)
        runner.throttle_until = max(runner.throttle_until, now + hold)
        runner.throttled = True
        log.info("[THROTTLE] queue %s held %.2fs after HTTP %d from task %s (queue backoff %.2fs, Retry-After %s)",
                 runner.name, hold, status, name, backoff, retry_after if retry_after is not None else "-")

    def submit_task(self, task_name: str, force_run: bool = False) -> Task:
        """RunTask: deliver now, whatever the schedule, backoff, throttle or queue state."""
        queue_name = task_name.rsplit("/tasks/", 1)[0]
        with self._lock:
            runner = self._runners.get(queue_name)
            task = runner.tasks.get(task_name) if runner else None
            if task is None:
                raise NotFound(f"Task not found: {task_name}")
            if task_name in runner.in_flight:
                raise FailedPrecondition(f"Task {task_name} is being dispatched")
            runner.ticket.pop(task_name, None)  # its heap entry is void; a failure pushes a new one
            self._begin(runner, task)
        self._deliver(runner, task)
        return task


class LocalProcessor(threading.Thread):
    """The scheduler: wakes on a new task, a finished delivery, or the next due time."""

    def __init__(self, state: LocalQueueState):
        super().__init__(name="scheduler", daemon=True)
        self._state = state
        self._is_running = threading.Event()

    def run(self):
        self._is_running.set()
        while self._is_running.is_set():
            try:
                wait = self._state.schedule()
            except Exception:  # never let one bad pass stop delivery
                log.exception("[TASKS] scheduler pass failed")
                wait = self._state.options.poll
            self._state.wake.wait(wait)
            self._state.wake.clear()

    def join(self, timeout=None):
        self._is_running.clear()
        self._state.wake.set()
        super().join(timeout)


def _greeter_extras() -> None:
    def get_task(self, request, context):
        try:
            return self._state.get_task(request.name)
        except GoogleAPICallError as err:
            context.abort(err.grpc_status_code, err.message)

    def delete_task(self, request, context):
        try:
            self._state.delete_task(request.name)
            return empty_pb2.Empty()
        except GoogleAPICallError as err:
            context.abort(err.grpc_status_code, err.message)

    s.Greeter.GetTask = get_task
    s.Greeter.DeleteTask = delete_task


def patch(options: Options) -> None:
    # 1. Bind to loopback only (and 8 gRPC threads, not 2: several functions enqueue at the same time).
    def api_run(self):
        self._httpd = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        s.add_CloudTasksServicer_to_server(s.Greeter(self._state), self._httpd)
        self._httpd.add_insecure_port(f"127.0.0.1:{self._port}")
        log.info("[API] Cloud Tasks emulator listening on 127.0.0.1:%s", self._port)
        self._httpd.start()

    s.APIThread.run = api_run
    # 4. A timeout on every delivery (the module calls request.urlopen(req) with none).
    s.request = types.SimpleNamespace(
        Request=urllib.request.Request,
        urlopen=functools.partial(urllib.request.urlopen, timeout=options.timeout),
    )
    LocalQueueState.options = options
    s.QueueState = LocalQueueState  # Server.__init__ builds its state and processor from these names
    s.Processor = LocalProcessor
    _greeter_extras()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("start", nargs="?", help="ignored; accepted for CLI compatibility")
    parser.add_argument("-p", "--port", type=int, default=9022)
    parser.add_argument("-d", "--default-queue", action="append", default=[],
                        help="projects/P/locations/L/queues/Q to create at start (repeatable)")
    parser.add_argument("--max-attempts", type=int, default=10,
                        help="deliveries per task in all, unless the queue's retry_config says otherwise")
    parser.add_argument("--min-backoff", type=float, default=0.1, help="seconds before a task's first retry")
    parser.add_argument("--max-backoff", type=float, default=2.0, help="cap on a task's doubling backoff")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP delivery")
    parser.add_argument("--max-concurrent", type=int, default=10,
                        help="deliveries in flight per queue, unless the queue's rate_limits say otherwise")
    parser.add_argument("--throttle-min", type=float, default=1.0,
                        help="seconds a queue is held after a 429/503, doubling with each further one")
    parser.add_argument("--throttle-max", type=float, default=60.0,
                        help="cap on the queue hold, including an honoured Retry-After")
    parser.add_argument("--tombstone-seconds", type=float, default=0.0,
                        help="a task's name stays taken this long after it ended (real Cloud Tasks: ~1 h)")
    parser.add_argument("--poll", type=float, default=0.25, help="longest idle wait between queue scans")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.max_concurrent < 1:
        parser.error("--max-concurrent must be at least 1")

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)

    def exit_now(signum, frame):  # everything is in memory: nothing to flush
        logging.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, exit_now)
    signal.signal(signal.SIGINT, exit_now)

    patch(Options(max_attempts=args.max_attempts, min_backoff=args.min_backoff, max_backoff=args.max_backoff,
                  timeout=args.timeout, poll=args.poll, max_concurrent=args.max_concurrent,
                  throttle_min=args.throttle_min, throttle_max=args.throttle_max,
                  tombstone_seconds=args.tombstone_seconds))
    server = s.create_server("127.0.0.1", args.port, default_queue_names=args.default_queue, max_retries=-1)
    server.start()
    log.info("[SERVER] ready; queues: %s", ", ".join(args.default_queue) or "(none)")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
