"""Run the Cloud Tasks emulator (gcloud-tasks-emulator 0.6.2) the way the local stack needs it.

Runs under ``.venv-emulators/bin/python`` (the emulator pins protobuf < 5), never in the app venv::

    .venv-emulators/bin/python tools/tasks_emulator.py --port 9022 --max-attempts 10 \\
        -d projects/demo-mmsgate/locations/us-central1/queues/mms-dispatch

The stock emulator is patched in five small places, each closer to real Cloud Tasks:

1. Bind: ``APIThread.run`` hard-codes ``[::]:PORT`` (every interface); ours binds ``127.0.0.1:PORT``.
2. Attempts: a task is delivered at most ``max_attempts`` times in all (the queue's
   ``retry_config.max_attempts`` when a client created the queue with one, else ``--max-attempts``), so
   ``X-CloudTasks-TaskRetryCount`` goes 0 .. max_attempts-1. The stock emulator retries forever.
3. Backoff: after a failed delivery the task waits ``min_backoff * 2**(failures-1)`` seconds, capped at
   ``max_backoff``, before its next attempt. The stock emulator retries every 0.1 s.
   Each queue is scanned every ``--poll`` seconds (0.02; stock 0.1), the backoff's resolution.
4. Timeout: each HTTP delivery gives up after ``--timeout`` seconds (counted as a failed attempt), so a
   hanging target cannot block its queue forever (each queue delivers its tasks one at a time).
5. Robustness: in the stock loop, a task purged between the loop's snapshot and its delivery raises
   ``NotFound`` and kills that queue's thread for good (the queue then never delivers again). Our loop
   logs and carries on, and a task that failed while its queue was being purged is not put back.

The headers the emulator sends are unchanged: ``X-CloudTasks-QueueName`` (the full queue path, where real
Cloud Tasks sends the short id), ``X-CloudTasks-TaskName``, ``X-CloudTasks-TaskRetryCount``,
``X-CloudTasks-TaskExecutionCount`` and ``X-CloudTasks-TaskETA``. No ``Authorization`` header is sent:
``oidc_token`` is ignored. SIGTERM/SIGINT exit at once (all state is in memory).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import time
import types
import urllib.request
from collections import defaultdict
from concurrent import futures

import gcloud_tasks_emulator.server as s
import grpc

log = logging.getLogger("tasks-emulator-local")


def _discard(tasks: list, task) -> None:
    """Remove ``task`` (by identity) in place: the gRPC thread may be appending to the same list."""
    for i, candidate in enumerate(tasks):
        if candidate is task:
            del tasks[i]
            return


def patch(max_attempts: int, min_backoff: float, max_backoff: float, timeout: float, poll: float) -> None:
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
        urlopen=functools.partial(urllib.request.urlopen, timeout=timeout),
    )
    # How often each queue's thread looks for due tasks (stock: 0.1 s); sets the backoff's resolution.
    s._LOOP_SLEEP_TIME = poll

    not_before: dict[str, float] = {}          # task name -> monotonic time of its next allowed attempt
    purges: dict[str, int] = defaultdict(int)  # queue name -> number of purges so far

    original_purge = s.QueueState.purge_queue
    original_submit = s.QueueState.submit_task

    def purge_queue(self, queue_name):
        purges[queue_name] += 1
        for task in self._queue_tasks.get(queue_name, []):
            not_before.pop(task.name, None)
        return original_purge(self, queue_name)

    def attempts_allowed(self, queue_name: str) -> int:
        queue = self._queues.get(queue_name)
        configured = queue.retry_config.max_attempts if queue is not None else 0
        return configured if configured > 0 else max_attempts

    # 2 + 3 + 5. Wrap the stock submit_task (which delivers once and, with max_retries=-1, always puts a
    # failed task back at the end of its queue) and decide afterwards whether the task may try again.
    def submit_task(self, task_name, force_run=False):
        queue_name = task_name.rsplit("/", 2)[0]
        due = not_before.get(task_name)
        if due is not None and not force_run and time.monotonic() < due:
            return None  # still backing off; the queue's loop will come back to it
        queued = self._queue_tasks.get(queue_name, [])
        before = next((t.dispatch_count for t in queued if t.name == task_name), 0)
        purges_before = purges[queue_name]
        try:
            task = original_submit(self, task_name, force_run)
        except Exception:
            if force_run:
                raise  # RunTask: let the gRPC layer report NotFound etc.
            log.exception("[TASKS] could not submit %s (purged meanwhile?)", task_name)
            return None
        if task.dispatch_count == before:
            return task  # scheduled for later, not delivered
        pending = self._queue_tasks.get(queue_name, [])
        if not any(t is task for t in pending):
            not_before.pop(task_name, None)  # delivered successfully
            return task
        if purges[queue_name] != purges_before:
            _discard(pending, task)
            not_before.pop(task_name, None)
            log.info("[TASKS] Dropping task %s: its queue was purged during delivery", task_name)
        elif task.dispatch_count >= attempts_allowed(self, queue_name):
            _discard(pending, task)
            not_before.pop(task_name, None)
            log.info("[TASKS] Giving up task %s after %d attempts", task_name, task.dispatch_count)
        else:
            delay = min(min_backoff * 2 ** (task.dispatch_count - 1), max_backoff)
            not_before[task_name] = time.monotonic() + delay
            log.info("[TASKS] Retrying task %s in %.2fs (attempt %d failed)", task_name, delay,
                     task.dispatch_count)
        return task

    s.QueueState.purge_queue = purge_queue
    s.QueueState.submit_task = submit_task

    # 5. The stock per-queue loop, without its per-pass log line and with tasks still backing off skipped
    # quietly (submit_task above would skip them too; this keeps the log readable).
    def process_queue(self, queue):
        while self._is_running.is_set():
            if queue not in self._state._queues or queue not in self._state._queue_tasks:
                break
            if self._state.queue(queue).state == s.Queue.State.RUNNING:
                now = time.monotonic()
                for task in self._state._queue_tasks[queue][:]:
                    if not_before.get(task.name, 0) > now:
                        continue
                    try:
                        self._state.submit_task(task.name)
                    except Exception:  # never let one task stop the queue
                        log.exception("[TASKS] unexpected error delivering %s", task.name)
            time.sleep(s._LOOP_SLEEP_TIME)

    s.Processor._process_queue = process_queue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("start", nargs="?", help="ignored; accepted for CLI compatibility")
    parser.add_argument("-p", "--port", type=int, default=9022)
    parser.add_argument("-d", "--default-queue", action="append", default=[],
                        help="projects/P/locations/L/queues/Q to create at start (repeatable)")
    parser.add_argument("--max-attempts", type=int, default=10,
                        help="deliveries per task in all, unless the queue's retry_config says otherwise")
    parser.add_argument("--min-backoff", type=float, default=0.1, help="seconds before the first retry")
    parser.add_argument("--max-backoff", type=float, default=2.0, help="cap on the doubling backoff")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP delivery")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between queue scans")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)

    def exit_now(signum, frame):  # everything is in memory: nothing to flush
        logging.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, exit_now)
    signal.signal(signal.SIGINT, exit_now)

    patch(args.max_attempts, args.min_backoff, args.max_backoff, args.timeout, args.poll)
    # max_retries=-1: the stock code always re-queues a failed task; our submit_task decides instead.
    server = s.create_server("127.0.0.1", args.port, default_queue_names=args.default_queue, max_retries=-1)
    server.start()
    log.info("[SERVER] ready; queues: %s", ", ".join(args.default_queue) or "(none)")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
