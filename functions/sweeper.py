"""Cloud Scheduler target (a timer in the local stack): re-enqueues stuck legs, closes silent ones."""

import json

import functions_framework
from flask import Request

import infra.web  # noqa: F401 - Flask's own errors (404, crashes) answer in the JSON envelope
from infra import log
from infra.runtime import runtime
from shared.services.sweeping import sweep


@functions_framework.http
def sweeper(request: Request) -> tuple[str, int, dict[str, str]]:
    counts = sweep(runtime())
    if any(counts.values()):
        log.info("sweep", **counts)
    return json.dumps(counts), 200, {"Content-Type": "application/json"}
