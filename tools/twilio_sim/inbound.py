"""Inbound messages: ``POST /_sim/inbound`` makes a handset text one of our numbers (twilio.md §5).

The simulator builds the form Twilio posts to the number's messaging webhook (``MessageSid`` and its deprecated
twins ``SmsSid``/``SmsMessageSid``, ``AccountSid``, ``From``, ``To``, ``Body``, ``NumMedia``, ``NumSegments``,
``MediaUrl{N}``/``MediaContentType{N}``, ``From*``/``To*`` geography, ``ApiVersion``, ``SmsStatus=received``),
applies the default opt-out keywords (Advanced Opt-Out: a single-word STOP-family message blocklists the
pair and later sends get 400/21610; START/YES/UNSTOP lifts it; HELP/INFO only replies; the message is still
forwarded, with ``OptOutType``), and posts it, signed, to ``inbound_url`` (then ``inbound_fallback_url``).

Media is hosted the way Twilio hosts it: at ``/2010-04-01/Accounts/{AC}/Messages/{MM}/Media/{ME}`` on the
simulator, behind HTTP Basic auth (MED: "enforced on all media URLs"), kept until deleted.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx

from .state import Inbound, Media
from .wire import API_VERSION, E164, ApiError, bad_request, new_sid, segments

MAX_MEDIA = 10
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
AUTO_REPLY = {
    "STOP": "You have successfully been unsubscribed. You will not receive any more messages from this number. "
            "Reply START to resubscribe.",
    "START": "You have successfully been re-subscribed to messages from this number. Reply HELP for help. "
             "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
    "HELP": "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}


def keyword(body: str) -> str | None:
    """``STOP`` | ``START`` | ``HELP`` when the whole message is one keyword (§5: "only a single-word message
    triggers"; case-insensitive and trimmed is an inference), else None."""
    word = body.strip().upper()
    if word in OPT_OUT:
        return "STOP"
    if word in OPT_IN:
        return "START"
    if word in HELP:
        return "HELP"
    return None


def _sim_error(message: str) -> ApiError:
    return bad_request(20001, message)  # /_sim routes are not Twilio: the code is only a placeholder


def _geo(prefix: str, number: str) -> dict[str, str]:
    country = "US" if number.startswith("+1") else ""
    return {f"{prefix}City": "", f"{prefix}State": "", f"{prefix}Zip": "", f"{prefix}Country": country}


def build(body: Any, *, account_sid: str, base_url: str, client: httpx.Client) -> Inbound:
    """The inbound message a ``POST /_sim/inbound`` JSON body describes (its media fetched and hosted)."""
    if not isinstance(body, dict):
        raise _sim_error("The request body must be a JSON object.")
    sender, to, text = body.get("from"), body.get("to"), body.get("body", "")
    if not isinstance(sender, str) or not E164.match(sender):
        raise _sim_error("'from' must be an E.164 number.")
    if not isinstance(to, str) or not E164.match(to):
        raise _sim_error("'to' must be an E.164 number.")
    if not isinstance(text, str):
        raise _sim_error("'body' must be a string.")
    urls = body.get("media_urls") or []
    items = body.get("media") or []
    if not isinstance(urls, list) or not isinstance(items, list) or len(urls) + len(items) > MAX_MEDIA:
        raise _sim_error(f"'media_urls' and 'media' must be lists of at most {MAX_MEDIA} items in all.")
    blobs: list[tuple[str, bytes]] = [_fetch(client, u) for u in urls] + [_decode(i) for i in items]
    sid = new_sid("MM" if blobs else "SM")
    media = [Media(new_sid("ME"), sid, ctype, data) for ctype, data in blobs]
    params = {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": account_sid,
              "From": sender, "To": to, "Body": text, "NumMedia": str(len(media)),
              "NumSegments": str(segments(text)), "SmsStatus": "received", "ApiVersion": API_VERSION}
    params.update(_geo("From", sender))
    params.update(_geo("To", to))
    for n, item in enumerate(media):
        params[f"MediaContentType{n}"] = item.content_type
        params[f"MediaUrl{n}"] = f"{base_url}/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media/{item.sid}"
    kind = keyword(text)
    if kind is not None:
        params["OptOutType"] = kind
    return Inbound(sid=sid, params=params, opt_out_type=kind, auto_reply=AUTO_REPLY.get(kind or ""),
                   media=media)


def _fetch(client: httpx.Client, url: Any) -> tuple[str, bytes]:
    if not isinstance(url, str):
        raise _sim_error("Each media URL must be a string.")
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise _sim_error(f"Media URL {url} could not be fetched: {type(exc).__name__}") from exc
    if not 200 <= response.status_code < 300 or not response.content:
        raise _sim_error(f"Media URL {url} answered HTTP {response.status_code} with {len(response.content)} bytes.")
    ctype = (response.headers.get("content-type") or "application/octet-stream").split(";")[0].strip()
    return ctype, response.content


def _decode(item: Any) -> tuple[str, bytes]:
    if not isinstance(item, dict):
        raise _sim_error("Each media item must be an object {content_type, data_base64}.")
    try:
        data = base64.b64decode(item.get("data_base64") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise _sim_error("'data_base64' must be base64.") from None
    if not data:
        raise _sim_error("An attachment must not be empty.")
    return str(item.get("content_type") or "application/octet-stream"), data


def view(message: Inbound) -> dict[str, Any]:
    return {"sid": message.sid, "from": message.params["From"], "to": message.params["To"],
            "body": message.params["Body"], "opt_out_type": message.opt_out_type, "auto_reply": message.auto_reply,
            "media": [{"sid": m.sid, "content_type": m.content_type, "size": len(m.data),
                       "url": message.params[f"MediaUrl{i}"]} for i, m in enumerate(message.media)],
            "params": dict(message.params), "deliveries": message.deliveries}
