"""POST /api/v1/messages/group: one payload to 1-20 recipients, a result per recipient (200/207)."""

from typing import TYPE_CHECKING, cast

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, idempotent, parse_plain, serve
from shared.api.plain_requests import plain_group
from shared.services.sending import send_group

if TYPE_CHECKING:
    from shared.api.models import GroupRequest


@functions_framework.http
def group(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, _group, methods=("POST",), defer_auth=True)  # the key is read in the group's first round


def _group(ctx: Context) -> Reply:
    parsed, raw = parse_plain(ctx.request, plain_group, _model)
    req = cast("GroupRequest", parsed)  # a plain request has every attribute of the model (its unit test)

    def produce(idempotency_record: str | None) -> Reply:
        answer = send_group(runtime(), ctx.who, req, ctx.request_id, idempotency_record)
        return Reply(answer.status, answer.body, kept=answer.kept)

    return idempotent(ctx, raw, produce, route="/api/v1/messages/group")


def _model() -> type["GroupRequest"]:
    from shared.api.models import GroupRequest  # pydantic: only for bodies that are not plain

    return GroupRequest
