"""shared/services/fanout.py: a group's tasks created by one task, with the accept creating them itself if that
fails."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from shared.ports import DispatchTask
from shared.rules import ids
from shared.services import fanout

AT = dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.UTC)
TASKS = [DispatchTask("msg_a", ids.task_name("group-mms:grp_x:+14155550101")),
         DispatchTask("msg_b", ids.task_name("group-mms:grp_x:+14155550102"), AT)]


class Queue:
    def __init__(self, fanout_fails: bool = False, failing: frozenset[str] = frozenset()) -> None:
        self.fanout_fails, self.failing = fanout_fails, failing
        self.fanouts: list[tuple[str, list[DispatchTask]]] = []
        self.created: list[DispatchTask] = []

    def enqueue_fanout(self, name, tasks):
        if self.fanout_fails:
            raise ConnectionError("tasks down")
        self.fanouts.append((name, list(tasks)))

    def enqueue_dispatch_many(self, tasks):
        out = {}
        for task in tasks:
            if task.message_id in self.failing:
                out[task.message_id] = ConnectionError("tasks down")
            else:
                self.created.append(task)
                out[task.message_id] = None
        return out


def test_the_body_lists_the_tasks_as_they_were():
    assert fanout.tasks_of(fanout.payload(TASKS)) == TASKS


@pytest.mark.parametrize("body", [
    {"fanout": []}, {"fanout": "x"}, {"fanout": [1]}, {"fanout": [{"message_id": "msg_a"}]},
    {"fanout": [{"message_id": "x", "name": "n"}]}, {"fanout": [{"message_id": "msg_a/b", "name": "n"}]},
    {"fanout": [{"message_id": "msg_a", "name": "a/b"}]}, {"fanout": [{"message_id": "msg_a", "name": "n", "at": 5}]},
    {"fanout": [{"message_id": "msg_a", "name": "n"}] * 101},
])
def test_a_body_that_is_not_ours_is_refused(body):
    with pytest.raises(ValueError):
        fanout.tasks_of(body)


def test_a_groups_legs_get_one_fanout_task_named_after_the_group():
    queue = Queue()
    errors = fanout.enqueue(SimpleNamespace(queue=queue), "grp_x", TASKS)
    assert errors == {"msg_a": None, "msg_b": None}
    assert queue.fanouts == [(ids.task_name("fanout:grp_x"), TASKS)]
    assert queue.created == []


def test_a_single_leg_gets_its_own_task():
    queue = Queue()
    fanout.enqueue(SimpleNamespace(queue=queue), None, TASKS[:1])
    fanout.enqueue(SimpleNamespace(queue=queue), "grp_x", TASKS[1:])
    assert queue.fanouts == [] and queue.created == TASKS


def test_when_the_fanout_cannot_be_created_the_accept_creates_the_tasks():
    queue = Queue(fanout_fails=True, failing=frozenset({"msg_b"}))
    errors = fanout.enqueue(SimpleNamespace(queue=queue), "grp_x", TASKS)
    assert queue.created == TASKS[:1]
    assert errors["msg_a"] is None and isinstance(errors["msg_b"], ConnectionError)


def test_a_fanout_that_created_only_some_is_retried():
    queue = Queue(failing=frozenset({"msg_b"}))
    status, _ = fanout.run(SimpleNamespace(queue=queue), TASKS)
    assert status == 500
    queue.failing = frozenset()
    assert fanout.run(SimpleNamespace(queue=queue), TASKS)[0] == 200
