"""POST /api/v1/messages/batch: one payload to up to 10,000 recipients, answered 202; the rows are written by
chunk tasks (shared/services/batch_sending.py)."""

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, idempotent, parse, serve
from shared.rules.batching import MAX_BODY_BYTES


@functions_framework.http
def batch(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, _batch, methods=("POST",), defer_auth=True)  # the key is read in the first round


def _batch(ctx: Context) -> Reply:
    from shared.api.batch_request import BatchRequest
    from shared.services.batch_sending import accept_batch

    req, raw = parse(ctx.request, BatchRequest, max_bytes=MAX_BODY_BYTES)

    def produce(idempotency_record: str | None) -> Reply:
        answer = accept_batch(runtime(), ctx.who, req, ctx.request_id, idempotency_record)
        return Reply(answer.status, answer.body, kept=answer.kept)

    return idempotent(ctx, raw, produce, route="/api/v1/messages/batch")
