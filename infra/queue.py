"""Cloud Tasks: one task per recipient leg (dispatch queue), one per customer event and one per inbound message
(notify queue)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from infra import log
from infra.clients import tasks
from infra.settings import Settings
from shared.ports import DispatchTask

# Cloud Tasks accepts a schedule_time at most 30 days ahead; later legs are re-enqueued on arrival.
MAX_SCHEDULE_AHEAD = dt.timedelta(days=29)
_pool = ThreadPoolExecutor(max_workers=20, thread_name_prefix="enqueue")


class CloudTasksQueue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _queue_path(self, queue_id: str) -> str:
        s = self.settings
        return str(tasks().queue_path(s.project, s.tasks_location, queue_id))

    def _task(self, queue_id: str, url: str, name: str, payload: dict[str, Any], at: dt.datetime | None
              ) -> tasks_v2.Task:
        request = tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=url,
            # The request id and trace ride along, so the function the task reaches logs under them too.
            headers={"Content-Type": "application/json", **log.propagation_headers()},
            body=json.dumps(payload).encode(),
        )
        invoker = self.settings.tasks_invoker_sa
        if invoker:
            request.oidc_token = tasks_v2.OidcToken(service_account_email=invoker, audience=url.rstrip("/"))
        task = tasks_v2.Task(name=f"{self._queue_path(queue_id)}/tasks/{name}", http_request=request)
        if at is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(min(at, dt.datetime.now(dt.UTC) + MAX_SCHEDULE_AHEAD))
            task.schedule_time = stamp
        return task

    def _create(self, queue_id: str, task: tasks_v2.Task) -> None:
        """Create a task; a name Cloud Tasks already knows means it was created before: that is success."""
        try:
            tasks().create_task(parent=self._queue_path(queue_id), task=task)
        except gexc.AlreadyExists:
            pass

    def enqueue_dispatch(self, task: DispatchTask) -> None:
        s = self.settings
        payload = {"message_id": task.message_id, **({"batch_id": task.batch_id} if task.batch_id else {})}
        self._create(s.dispatch_queue, self._task(s.dispatch_queue, s.dispatch_url, task.name, payload, task.at))

    def enqueue_dispatch_many(self, tasks_: Sequence[DispatchTask]) -> dict[str, Exception | None]:
        """Create many dispatch tasks concurrently; returns each message id's error (None when created)."""

        def one(task: DispatchTask) -> tuple[str, Exception | None]:
            try:
                self.enqueue_dispatch(task)
                return task.message_id, None
            except Exception as exc:  # noqa: BLE001 - reported per leg; the sweeper re-enqueues it
                return task.message_id, exc

        if len(tasks_) == 1:
            return dict([one(tasks_[0])])
        return dict(_pool.map(one, tasks_))

    def enqueue_fanout(self, name: str, tasks_: Sequence[DispatchTask]) -> None:
        """One task, to the dispatch function, that creates ``tasks_`` (shared/services/fanout.py)."""
        from shared.services import fanout

        s = self.settings
        self._create(s.dispatch_queue, self._task(s.dispatch_queue, s.dispatch_url, name, fanout.payload(tasks_), None))

    def enqueue_batch_chunks(self, batch_id: str, indexes: Sequence[int], *, purpose: str = "write"
                             ) -> dict[int, Exception | None]:
        """A batch's chunk tasks (shared/services/batch_sending.py), to the dispatch function, created concurrently and
        named after (batch, chunk, purpose): an accept or a cancel that creates them again creates each once.
        Each chunk's error (None: created)."""
        from shared.rules import batching

        s = self.settings

        def one(index: int) -> tuple[int, Exception | None]:
            name = batching.chunk_task_name(batch_id, index, purpose)
            try:
                self._create(s.dispatch_queue, self._task(s.dispatch_queue, s.dispatch_url, name,
                                                          batching.chunk_payload(batch_id, index), None))
                return index, None
            except Exception as exc:  # noqa: BLE001 - reported per chunk; the sweeper creates it again
                return index, exc

        return dict(_pool.map(one, indexes))

    def enqueue_notify(self, event_id: str, message_id: str, *, name: str | None = None,
                       at: dt.datetime | None = None) -> None:
        """The first task of an event is named after it; a retry or a resend names itself (Cloud Tasks keeps
        a finished task's name taken for about an hour, so reusing the event id would silently do nothing)."""
        s = self.settings
        payload = {"event_id": event_id, "message_id": message_id}
        self._create(s.notify_queue, self._task(s.notify_queue, s.notifier_url, name or event_id, payload, at))

    def enqueue_inbound(self, message_id: str, *, name: str, at: dt.datetime | None = None) -> None:
        """An inbound message's remaining work (media copies, its keyword reply, message.received): the notifier
        does it, on the notify queue, whose 24 h of retries outlast anything transient (docs/decisions.md)."""
        s = self.settings
        self._create(s.notify_queue, self._task(s.notify_queue, s.notifier_url, name, {"inbound": message_id}, at))
