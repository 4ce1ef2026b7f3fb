"""POST /api/v1/messages/sms: one message; attached media upgrades it to MMS."""

import functions_framework

from infra.runtime import runtime
from infra.web import Reply, idempotent, meta, parse, serve
from shared.models import SendRequest
from shared.sending import send_single, single_response


@functions_framework.http
def send(request):
    return serve(request, _send, methods=("POST",))


def _send(ctx) -> Reply:
    req, raw = parse(ctx.request, SendRequest)

    def produce() -> Reply:
        status, data = single_response(send_single(runtime(), ctx.tenant, req, ctx.request_id))
        return Reply(status, {"data": data, "meta": meta(ctx.request_id)})

    return idempotent(ctx, raw, produce, route="/api/v1/messages/sms")
