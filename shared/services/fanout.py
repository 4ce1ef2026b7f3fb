"""A group's dispatch tasks created by one task (docs/decisions.md, "A group's tasks: one fan-out task").

A group of 20 would create 20 Cloud Tasks while its caller waits. Instead the accept creates one task, named
after the group, whose delivery (to the dispatch function) creates the legs' own tasks, each named after its
leg as before. Creating a named task twice creates it once, so a fan-out delivered twice, or retried after it
created some of them, creates each leg's task exactly once. If the fan-out task cannot be created, the accept
creates the legs' tasks itself; if those fail too, the sweeper re-enqueues every queued leg whose task is
missing, as it always did.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.ports import DispatchTask
from shared.rules import ids
from shared.services import observe

if TYPE_CHECKING:
    from shared.ports import Runtime

KEY = "fanout"
MAX_TASKS = 100  # a group has at most 20 legs; more in one body is not ours


def payload(tasks: Sequence[DispatchTask]) -> dict[str, Any]:
    return {KEY: [{"message_id": t.message_id, "name": t.name, "at": t.at.isoformat() if t.at else None}
                  for t in tasks]}


def tasks_of(body: dict[str, Any]) -> list[DispatchTask]:
    """The tasks a fan-out body lists; ValueError if it is not one of ours."""
    items = body.get(KEY)
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_TASKS:
        raise ValueError("not a fan-out body")
    tasks = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("not a fan-out item")
        message_id, name, at = item.get("message_id"), item.get("name"), item.get("at")
        if not (isinstance(message_id, str) and message_id.startswith("msg_") and "/" not in message_id
                and isinstance(name, str) and name and "/" not in name and (at is None or isinstance(at, str))):
            raise ValueError("not a fan-out item")
        tasks.append(DispatchTask(message_id, name, dt.datetime.fromisoformat(at) if at else None))
    return tasks


def enqueue(rt: Runtime, group_id: str | None, tasks: Sequence[DispatchTask]) -> dict[str, Exception | None]:
    """The accept's tasks: one fan-out task for a group's several legs, else the tasks themselves. Each
    message id's error (None: its task is created, or the fan-out that will create it is)."""
    if group_id is None or len(tasks) < 2:
        return rt.queue.enqueue_dispatch_many(tasks)
    try:
        rt.queue.enqueue_fanout(ids.task_name(f"fanout:{group_id}"), tasks)
        return {task.message_id: None for task in tasks}
    except Exception as exc:  # noqa: BLE001 - fall back to the legs' own tasks
        observe.log_error("fan-out task not created; creating the legs' tasks", group_id=group_id,
                          error=type(exc).__name__)
        return rt.queue.enqueue_dispatch_many(tasks)


def run(rt: Runtime, tasks: Sequence[DispatchTask]) -> tuple[int, str]:
    """A fan-out task's delivery: create every leg's task. Not all created: 500, so Cloud Tasks delivers the
    fan-out again (the ones created already are not created twice)."""
    errors = rt.queue.enqueue_dispatch_many(tasks)
    failed = [message_id for message_id, error in errors.items() if error is not None]
    if failed:
        observe.log_error("fan-out incomplete; it will be retried", failed=len(failed), total=len(tasks))
        return 500, f"{len(failed)} of {len(tasks)} tasks not created"
    return 200, f"{len(tasks)} tasks created"
