"""POST /api/v1/messages/group: one payload to 1-20 recipients, a result per recipient (200/207)."""

import functions_framework

from infra.runtime import runtime
from infra.web import Reply, idempotent, meta, parse, serve
from shared.models import GroupRequest
from shared.sending import group_response, send_group


@functions_framework.http
def group(request):
    return serve(request, _group, methods=("POST",))


def _group(ctx) -> Reply:
    req, raw = parse(ctx.request, GroupRequest)

    def produce() -> Reply:
        status, body = group_response(send_group(runtime(), ctx.tenant, req, ctx.request_id))
        return Reply(status, {**body, "meta": meta(ctx.request_id)})

    return idempotent(ctx, raw, produce, route="/api/v1/messages/group")
