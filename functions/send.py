"""POST /api/v1/messages/sms: one message; attached media upgrades it to MMS."""

import functions_framework

from infra.runtime import runtime
from infra.web import Reply, idempotent, parse, serve
from shared.models import SendRequest
from shared.sending import send_single


@functions_framework.http
def send(request):
    return serve(request, _send, methods=("POST",), defer_auth=True)  # the key is read in the send's first round


def _send(ctx) -> Reply:
    req, raw = parse(ctx.request, SendRequest)

    def produce(idempotency_record: str | None) -> Reply:
        answer = send_single(runtime(), ctx.who, req, ctx.request_id, idempotency_record)
        return Reply(answer.status, answer.body, kept=answer.kept)

    return idempotent(ctx, raw, produce, route="/api/v1/messages/sms")
