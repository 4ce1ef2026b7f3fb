"""Link shortening and click tracking (issue 25): the links of one recipient's body, a click on one, and their
removal with a redaction.

The accept calls ``vet`` once per request (the tracking URL's SSRF check resolves its host) and ``shorten`` once
per recipient, before it prices the body (segments count the shortened text). ``click`` is the public redirect
(functions/links.py): it reads the one document of the code and answers the URL stored there, never anything
taken from the request, so a crafted code can only 404. A tracked click adds a ``link.clicked`` event to the
message's outbox through ``leg_changes`` (the one path of a leg's events), and the notifier signs and delivers
it like every other event: to the send's ``tracking_url``, else to the message's webhook (the send's, or the
tenant's). A failure to record the click never keeps the reader from the page: the redirect is answered anyway.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from shared.ports import Decision
from shared.rules import links as rules
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.ids import notify_event_id
from shared.rules.legs import with_outbox
from shared.rules.records import Leg, OutboxEntry
from shared.rules.ssrf import UrlRejected, check_url, webhook_url_policy
from shared.services import observe
from shared.services.leg_changes import change

if TYPE_CHECKING:
    from shared.ports import Runtime

EVENT = "link.clicked"
# A message's events live in its document (1 MiB at most): past this many clicks the reader is still sent on,
# but no more events are added (a link passed around a group chat, or a crawler, can click it without end).
MAX_CLICK_EVENTS = 100


def vet(rt: Runtime, tracking: rules.Tracking | None) -> None:
    """The request's tracking URL against the webhook SSRF rules (400 naming ``tracking.tracking_url``)."""
    if tracking is None or not tracking.tracking_url:
        return
    try:
        check_url(tracking.tracking_url, webhook_url_policy(rt.settings.media_trusted_origins), rt.resolver)
    except UrlRejected as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                       details=[{"field": "tracking.tracking_url", "issue": exc.reason}]) from None


def shorten(rt: Runtime, body: str, tracking: rules.Tracking | None, *, tenant_id: str, message_id: str,
            recipient: str, expires_at: dt.datetime) -> str:
    """``body`` with every URL replaced by a short link of this recipient's own, the links stored (one write).
    ``expires_at``: the message's retention (its ``delete_at``)."""
    if tracking is None or not tracking.active or not body:
        return body
    origin = rt.settings.link_base_url
    if not origin and not tracking.custom_domain:
        raise RuntimeError("LINK_BASE_URL is not set: short links have no origin")
    shortened, links = rules.plan(body, tracking, origin=origin, tenant_id=tenant_id, message_id=message_id,
                                  recipient=recipient, now=rt.now(), expires_at=expires_at)
    if links:
        rt.links.put(links)
    return shortened


def prepare(rt: Runtime, body: str | None, tracking: rules.Tracking | None) -> rules.Marked | None:
    """A send's body with its URLs marked (``rules.mark``), None when nothing is to be shortened. Nothing is
    stored: the accept prices the marked body, and ``issue`` gives each recipient its codes once it is decided
    to write. A deployment without a link origin refuses a request that names no ``custom_domain`` (400)."""
    if tracking is None or not tracking.active or not body:
        return None
    origin = rt.settings.link_base_url
    if not origin and not tracking.custom_domain:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid", details=[{
            "field": "tracking.custom_domain", "issue": "this deployment has no link domain (LINK_BASE_URL): name "
            "the custom_domain that serves its /l/ route"}])
    marked = rules.mark(body, tracking, origin=origin, nonce=rules.new_code()[:rules.MARK_NONCE_CHARS])
    return marked if marked.marks else None


def issue(rt: Runtime, text: str | None, marked: rules.Marked | None, *, tenant_id: str, message_id: str,
          recipient: str, expires_at: dt.datetime) -> tuple[str | None, list[rules.Link]]:
    """One recipient's text with its own codes, and the links to ``store`` before its message is written."""
    if marked is None or not text:
        return text, []
    return rules.issue(text, marked, tenant_id=tenant_id, message_id=message_id, recipient=recipient,
                       now=rt.now(), expires_at=expires_at)


def store(rt: Runtime, issued: list[rules.Link]) -> None:
    """Links issued by an accept or a batch chunk, written before the messages that name them: a message never
    shows a link that does not answer. An accept that then fails leaves its links unnamed: they expire with
    the retention they were given (Firestore TTL), as docs/decisions.md says."""
    if issued:
        rt.links.put(issued)


def click(rt: Runtime, code: str, user_agent: str | None, now: dt.datetime) -> str:
    """The URL a click on ``code`` goes to; 404 ``NOT_FOUND`` for a code never issued or past its expiry."""
    link = rt.links.get(code) if rules.is_code(code) else None
    if link is None or not link.live(now):
        raise ApiError(ErrorCode.NOT_FOUND, "No such link, or it has expired")
    if link.track_clicks:
        try:
            change(rt, link.message_id, lambda leg: clicked(leg, link, now=now, user_agent=user_agent))
        except Exception as exc:  # noqa: BLE001 - see the module docstring: the reader goes on regardless
            observe.log_error("link click not recorded", message_id=link.message_id, error=type(exc).__name__)
    return link.url


def clicked(leg: Leg | None, link: rules.Link, *, now: dt.datetime, user_agent: str | None) -> Decision[str]:
    """The message with one more ``link.clicked`` event in its outbox (pure). Results: ``recorded``, ``no
    message`` (gone, or not the link's tenant's), ``redacted``, ``nobody listens``, ``too many``."""
    if leg is None or leg.tenant_id != link.tenant_id:
        return Decision(result="no message")
    if leg.redacted_at is not None:
        return Decision(result="redacted")
    if not (link.tracking_url or leg.webhook_url):
        return Decision(result="nobody listens")
    count = sum(1 for entry in leg.notifications.values() if entry.type == EVENT)
    if count >= MAX_CLICK_EVENTS:
        return Decision(result="too many")
    # Numbered by the clicks already recorded: a retried transaction decides the same id again.
    event_id = notify_event_id(leg.id, f"{EVENT}:{count}")
    data = {**rules.click_data(link, at=now, user_agent=user_agent), "client_ref": leg.client_ref}
    entry = OutboxEntry(type=EVENT, status=leg.status.value, created_at=now, data=data, url=link.tracking_url)
    return Decision(after=with_outbox(leg, {**leg.notifications, event_id: entry}, now), result="recorded")


def forget(rt: Runtime, message_id: str) -> int:
    """Delete a message's links (its redaction): a click on one 404s from then on."""
    return rt.links.forget(message_id)
