"""Redaction: ``POST /api/v1/messages/{id}/redact`` removes a final message's content and keeps its record.

One decision removes the body, subject, media (our copies' references and the URLs given), metadata and
the SMS failover text together, and stamps ``redacted_at`` (its short links are deleted after it); status,
price, timestamps, history, provider id, ``client_ref`` (the caller's own reference) and the links to a
failover stay. A message that is not final
(the provider may still need its media, a report may still come) is refused: 409 ``MESSAGE_NOT_FINAL``;
so is an MMS whose SMS failover is still being created (it needs the failover text).

Media copies are stored once per tenant and content (``media/{tenant}/{sha256}``), so several messages may
share one object. After the redaction commits (the message no longer refers to its objects), each object is
deleted unless another message of the tenant still refers to it (a query on ``media_objects``; no reference
count to keep in step), conditioned on the object's generation read before that check, so a send that
stores the object again meanwhile keeps it (docs/decisions.md, "Redaction").
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from shared.ports import Decision
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.legs import note, view
from shared.rules.records import Leg
from shared.services import links, observe
from shared.services.leg_changes import change

if TYPE_CHECKING:
    from shared.ports import Runtime


def redact_step(leg: Leg | None, tenant_id: str, now: dt.datetime) -> Decision[str]:
    """The leg with its content removed (pure). Results: ``not found``, ``not final``, ``failover pending``,
    ``already redacted``, ``redacted``."""
    if leg is None or leg.tenant_id != tenant_id:
        return Decision(result="not found")
    if not leg.is_final:
        return Decision(result="not final")
    if leg.failover_due is not None:
        return Decision(result="failover pending")
    if leg.redacted_at is not None:
        return Decision(result="already redacted")
    redacted = note(leg, cause="content redacted", now=now, body=None, subject=None, media_urls=(), media=(),
                    metadata={}, sms_failover=None, redacted_at=now)
    return Decision(after=redacted, result="redacted")


def redact(rt: Runtime, tenant_id: str, message_id: str) -> dict[str, Any]:
    """Redact one message of ``tenant_id``; its view afterwards (a second call answers the same)."""
    now = rt.now()
    mutation = change(rt, message_id, lambda leg: redact_step(leg, tenant_id, now)) \
        if message_id.startswith("msg_") else None
    result = mutation.result if mutation else "not found"
    if result == "not found" or mutation is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No message with that id")
    leg = mutation.current
    assert leg is not None
    if result in ("not final", "failover pending"):
        reason = ("its SMS failover is still being created" if result == "failover pending"
                  else f"it is {leg.status.value}, not final")
        raise ApiError(ErrorCode.MESSAGE_NOT_FINAL, f"Only a final message can be redacted; {reason}",
                       details=[{"field": "message_id", "issue": leg.status.value}])
    if result == "redacted" and mutation.before is not None:
        remove_media(rt, mutation.before)
    # Its short links too (shared/services/links.py), on a repeated call as well: a redaction whose deletion
    # failed (the error reaches the caller) is completed by calling it again.
    links.forget(rt, message_id)
    return view(leg)


def remove_media(rt: Runtime, before: Leg) -> dict[str, str]:
    """Delete the redacted leg's media copies that no other message uses. Never raises: an object left behind
    is deleted by the bucket's lifecycle rule, and the message no longer points to it."""
    outcomes: dict[str, str] = {}
    # each copy sent and its original; an inbound attachment never copied has none
    for name in sorted({o for m in before.media for o in m.objects}):
        def in_use(name: str = name) -> bool:
            return rt.legs.media_in_use(before.tenant_id, name, besides=before.id)

        try:
            outcomes[name] = rt.media.remove_unused(name, in_use)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            outcomes[name] = "error"
            observe.log_error("media copy not deleted after a redaction", message_id=before.id,
                              error=type(exc).__name__)
    return outcomes
