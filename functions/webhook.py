"""POST /webhooks/telnyx and /webhooks/twilio: each carrier's signed delivery reports and inbound messages
(STOP/START included).

Telnyx drops a webhook that takes over 2 s: this handler verifies, applies one transaction, and
answers. An event for a message we do not know answers 200 (and is logged), so it is not retried
forever.
"""

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, serve
from shared.services.reports import ingest, ingest_twilio


@functions_framework.http
def webhook(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, _webhook, methods=("POST",), authenticate=False)


def _webhook(ctx: Context) -> Reply:
    request = ctx.request
    rt = runtime()
    if request.path.rstrip("/").endswith("/twilio"):
        form = {key: request.form.getlist(key) for key in request.form}
        return Reply(200, ingest_twilio(rt, request.query_string.decode("utf-8", "replace"), form,
                                        request.headers.get("x-twilio-signature")))
    result = ingest(rt, request.get_data(), request.headers.get("telnyx-timestamp"),
                    request.headers.get("telnyx-signature-ed25519"))
    return Reply(200, result)
