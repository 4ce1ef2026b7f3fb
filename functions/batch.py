"""Batches: POST /api/v1/messages/batch, one payload to up to 10,000 recipients, answered 202 (the rows are
written by chunk tasks, shared/services/batch_sending.py); GET /api/v1/batches/{id}, its progress; DELETE
/api/v1/batches/{id}, its cancel."""

import re

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, idempotent, meta, parse, serve
from shared.rules.batching import MAX_BODY_BYTES
from shared.rules.errors import ApiError, ErrorCode

_BATCH = re.compile(r"^/api/v1/batches/([A-Za-z0-9_]{1,64})/?$")


@functions_framework.http
def batch(request: Request) -> tuple[str, int, dict[str, str]]:
    if request.path.startswith("/api/v1/batches"):
        return serve(request, _existing, methods=("GET", "DELETE"))
    return serve(request, _batch, methods=("POST",), defer_auth=True)  # the key is read in the first round


def _existing(ctx: Context) -> Reply:
    from shared.services import batch_sending  # noqa: PLC0415 - the accept's modules are not needed here

    match = _BATCH.match(ctx.request.path)
    if match is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No such resource")
    if ctx.request.method == "GET":
        return Reply(200, {"data": batch_sending.batch_progress(runtime(), ctx.tenant_id, match[1]),
                           "meta": meta(ctx.request_id)})
    return Reply(202, {"data": batch_sending.cancel_batch(runtime(), ctx.tenant_id, match[1]),
                       "meta": meta(ctx.request_id)})


def _batch(ctx: Context) -> Reply:
    from shared.api.batch_request import BatchRequest
    from shared.services.batch_sending import accept_batch

    req, raw = parse(ctx.request, BatchRequest, max_bytes=MAX_BODY_BYTES)

    def produce(idempotency_record: str | None) -> Reply:
        answer = accept_batch(runtime(), ctx.who, req, ctx.request_id, idempotency_record)
        return Reply(answer.status, answer.body, kept=answer.kept)

    return idempotent(ctx, raw, produce, route="/api/v1/messages/batch")
