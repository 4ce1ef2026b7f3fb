"""Cloud Tasks target: delivers one signed customer webhook event, or finishes one inbound message (its media
copies, keyword reply and message.received); private, OIDC-invoked."""

import json

import functions_framework
from flask import Request

import infra.web  # noqa: F401 - Flask's own errors (404, crashes) answer in the JSON envelope
from infra import log
from infra.runtime import runtime
from shared.services.notifying import deliver


@functions_framework.http
def notifier(request: Request) -> tuple[str, int, dict[str, str]]:
    try:
        task = json.loads(request.get_data())
        if isinstance(task, dict) and isinstance(task.get("inbound"), str):
            return _inbound(request, task["inbound"])
        event_id, message_id = task["event_id"], task["message_id"]
    except (ValueError, KeyError, TypeError):
        log.error("malformed notify task", task=request.headers.get("X-CloudTasks-TaskName"))
        return json.dumps({"outcome": "malformed task dropped"}), 200, {"Content-Type": "application/json"}
    with log.task_context(request.headers):
        status, outcome = deliver(runtime(), event_id, message_id)
        log.info("customer webhook", event_id=event_id, message_id=message_id, status=status, outcome=outcome)
    return json.dumps({"event_id": event_id, "outcome": outcome}), status, {"Content-Type": "application/json"}


def _inbound(request: Request, message_id: str) -> tuple[str, int, dict[str, str]]:
    """An inbound message's remaining work: media copies, keyword reply, message.received
    (shared/services/inbound.py)."""
    from shared.services import inbound  # noqa: PLC0415 - only inbound tasks need it

    with log.task_context(request.headers):
        status, outcome = inbound.process(runtime(), message_id)
        log.info("inbound message", message_id=message_id, status=status, outcome=outcome)
    return json.dumps({"message_id": message_id, "outcome": outcome}), status, {"Content-Type": "application/json"}
