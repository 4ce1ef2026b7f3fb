"""POST /api/v1/messages/sms: one message; attached media upgrades it to MMS."""

from typing import TYPE_CHECKING, cast

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, idempotent, parse_plain, serve
from shared.api.plain_requests import plain_send
from shared.services.sending import send_single

if TYPE_CHECKING:
    from shared.api.models import SendRequest


@functions_framework.http
def send(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, _send, methods=("POST",), defer_auth=True)  # the key is read in the send's first round


def _send(ctx: Context) -> Reply:
    parsed, raw = parse_plain(ctx.request, plain_send, _model)
    req = cast("SendRequest", parsed)  # a plain request has every attribute of the model (its unit test)

    def produce(idempotency_record: str | None) -> Reply:
        answer = send_single(runtime(), ctx.who, req, ctx.request_id, idempotency_record)
        return Reply(answer.status, answer.body, kept=answer.kept)

    return idempotent(ctx, raw, produce, route="/api/v1/messages/sms")


def _model() -> type["SendRequest"]:
    from shared.api.models import SendRequest  # pydantic: only for bodies that are not plain

    return SendRequest
