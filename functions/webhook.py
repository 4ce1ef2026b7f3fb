"""POST /webhooks/telnyx: signed delivery reports and inbound STOP/START from Telnyx.

Telnyx drops a webhook that takes over 2 s: this handler verifies, applies one transaction, and
answers. An event for a message we do not know answers 200 (and is logged), so it is not retried
forever.
"""

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, serve
from shared.services.reports import ingest


@functions_framework.http
def webhook(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, _webhook, methods=("POST",), authenticate=False)


def _webhook(ctx: Context) -> Reply:
    request = ctx.request
    result = ingest(runtime(), request.get_data(), request.headers.get("telnyx-timestamp"),
                    request.headers.get("telnyx-signature-ed25519"))
    return Reply(200, result)
