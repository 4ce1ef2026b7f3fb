"""POST /api/v1/messages/group: one payload to 1-20 recipients, a result per recipient (200/207)."""

import functions_framework

from infra.runtime import runtime
from infra.web import Reply, idempotent, parse, serve
from shared.models import GroupRequest
from shared.sending import send_group


@functions_framework.http
def group(request):
    return serve(request, _group, methods=("POST",))


def _group(ctx) -> Reply:
    req, raw = parse(ctx.request, GroupRequest)

    def produce(idempotency_record: str | None) -> Reply:
        answer = send_group(runtime(), ctx.tenant, req, ctx.request_id, idempotency_record)
        return Reply(answer.status, answer.body, kept=answer.kept)

    return idempotent(ctx, raw, produce, route="/api/v1/messages/group")
