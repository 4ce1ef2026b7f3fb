"""GET /l/{code}: the short links of tracked sends (shared/services/links.py). Public, no API key: a phone's
browser follows it. 302 to the URL stored under the code, never one built from the request; 404 in the error
envelope for a code never issued or expired. Nothing is cached: every click is counted, and an expired or
redacted link must stop redirecting at once."""

from __future__ import annotations

import re

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, meta, serve
from shared.rules.errors import ApiError, ErrorCode
from shared.services import links as short_links

# The code is the last segment: /l/{code} behind the gateway, /{code} where a link domain maps to the function.
_CODE = re.compile(r"^(?:/l)?/([^/]{1,64})/?$")
NO_STORE = {"Cache-Control": "no-store"}


@functions_framework.http
def links(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, _redirect, methods=("GET",), authenticate=False)


def _redirect(ctx: Context) -> Reply:
    match = _CODE.match(ctx.request.path)
    try:
        if match is None:
            raise ApiError(ErrorCode.NOT_FOUND, "No such link, or it has expired")
        rt = runtime()
        url = short_links.click(rt, match.group(1), ctx.request.headers.get("User-Agent"), rt.now())
    except ApiError as exc:
        exc.headers = {**exc.headers, **NO_STORE}
        raise
    return Reply(302, {"data": {"url": url}, "meta": meta(ctx.request_id)}, {"Location": url, **NO_STORE})
