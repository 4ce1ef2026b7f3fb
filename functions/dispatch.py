"""Cloud Tasks target: sends one recipient leg through the provider (private; OIDC-invoked)."""

import json
from collections.abc import Sequence
from typing import Any

import functions_framework
from flask import Request

import infra.web  # noqa: F401 - Flask's own errors (404, crashes) answer in the JSON envelope
from infra import log
from infra.runtime import runtime
from shared.ports import Contended, DispatchTask
from shared.rules import batching
from shared.services import fanout
from shared.services.dispatch_steps import Answer
from shared.services.dispatching import dispatch as dispatch_leg


@functions_framework.http
def dispatch(request: Request) -> tuple[str, int, dict[str, str]]:
    try:
        body = json.loads(request.get_data())
        if isinstance(body, dict) and fanout.KEY in body:  # a group's legs: create their tasks
            return _fan_out(request, fanout.tasks_of(body))
        if isinstance(body, dict) and batching.CHUNK_KEY in body:  # a batch's chunk: write its rows
            return _chunk(request, *batching.chunk_of(body))
        message_id, batch_id = body["message_id"], body.get("batch_id")
        if not isinstance(message_id, str) or not message_id.startswith("msg_") or "/" in message_id:
            raise ValueError(message_id)
        if batch_id is not None and not (isinstance(batch_id, str) and batch_id.startswith("bat_")
                                         and "/" not in batch_id and len(batch_id) <= 64):
            raise ValueError(batch_id)
    except (ValueError, KeyError, TypeError, RecursionError):
        # A malformed task will never parse: acknowledge it so the queue drops it.
        log.error("malformed dispatch task", task=request.headers.get("X-CloudTasks-TaskName"))
        return _json(200, {"outcome": "malformed task dropped"})
    retry_count = request.headers.get("X-CloudTasks-TaskRetryCount", "")
    with log.task_context(request.headers):
        try:
            answer = dispatch_leg(runtime(), message_id, batch_id)
        except Contended:
            # Our storage is overloaded: the one case where slowing the whole queue down is right.
            answer = Answer(503, "storage contended", 5)
        log.info("dispatch", message_id=message_id, retry_count=retry_count, status=answer.status,
                 outcome=answer.outcome)
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after and answer.status >= 300 else {}
    return _json(answer.status, {"message_id": message_id, "outcome": answer.outcome}, headers)


def _fan_out(request: Request, tasks: Sequence[DispatchTask]) -> tuple[str, int, dict[str, str]]:
    with log.task_context(request.headers):
        status, outcome = fanout.run(runtime(), tasks)
        log.info("fan-out", tasks=len(tasks), status=status, outcome=outcome)
    return _json(status, {"outcome": outcome})


def _chunk(request: Request, batch_id: str, index: int) -> tuple[str, int, dict[str, str]]:
    from shared.services.batch_sending import run_chunk  # noqa: PLC0415 - only chunk tasks need the accept's modules

    with log.task_context(request.headers):
        try:
            status, outcome = run_chunk(runtime(), batch_id, index)
        except Contended:
            status, outcome = 503, "storage contended"
        log.info("batch chunk", batch_id=batch_id, chunk=index, status=status, outcome=outcome)
    return _json(status, {"batch_id": batch_id, "chunk": index, "outcome": outcome})


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
          ) -> tuple[str, int, dict[str, str]]:
    return json.dumps(body), status, {"Content-Type": "application/json", **(headers or {})}
