"""Keyword compliance for inbound messages: which texts are STOP, HELP or START, what each one changes, and what
the sender is answered (pure; docs/decisions.md "Inbound messages and keywords").

A message is a keyword only when its whole text is one, case, surrounding spaces and a trailing ``.`` or ``!``
ignored (``" stop "``, ``"Stop."``); "Please stop texting me" is not, as carriers and Telnyx read it.

- STOP family (STOP, STOPALL, STOP ALL, UNSUBSCRIBE, CANCEL, END, QUIT): the sender is opted out of the tenant
  that owns the number, and is told so once.
- HELP, INFO: nothing changes; the sender gets the help text.
- START, UNSTOP: the sender is opted in again (a no-op for a number that never opted out) and told so.
  YES does the same, but only for a sender who is opted out: anywhere else "yes" is conversation, and the
  customer gets it as an ordinary message.

Who answers is the tenant's ``keyword_replies``: ``mmsgate`` (default: a reply through the normal outbound
path), ``provider`` (Telnyx's own auto-response answers, configured on the messaging profile) or ``off``
(nobody: the customer answers from its own application). Whoever answers, the opt-out list changes the
same way, so that a sender never gets two confirmations and a send never ignores a STOP.
"""

from __future__ import annotations

import re
from enum import StrEnum

from shared.rules.frozen import frozen
from shared.rules.records import Tenant


class Kind(StrEnum):
    STOP = "stop"
    HELP = "help"
    START = "start"


STOP_WORDS = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
HELP_WORDS = frozenset({"HELP", "INFO"})
START_WORDS = frozenset({"START", "UNSTOP"})
YES = "YES"  # a START word only for a sender who opted out

REPLY_SETTINGS = ("mmsgate", "provider", "off")
DEFAULT_REPLIES = "mmsgate"
# Longest text taken for a keyword at all: a long message is conversation, whatever it starts with.
_LONGEST = 32
_TRAILING = re.compile(r"[.!]+$")
_SPACES = re.compile(r"\s+")

# Customer events of an opt-out list change a keyword made.
OPTED_OUT = "recipient.opted_out"
OPTED_IN = "recipient.opted_in"

# CTIA's Short Code Monitoring Handbook and the 10DLC campaign rules ask for: the brand, what happened, how
# to undo it; HELP: the brand, how to get help, "Msg&data rates may apply", how to opt out.
DEFAULT_TEXTS: dict[Kind, str] = {
    Kind.STOP: "{brand}: You are unsubscribed and will receive no more messages. Reply START to resubscribe.",
    Kind.HELP: "{brand}: Help: {contact}. Msg&data rates may apply. Reply STOP to opt out.",
    Kind.START: "{brand}: You are resubscribed and will receive messages again. Msg&data rates may apply. "
                "Reply HELP for help, STOP to opt out.",
}
DEFAULT_CONTACT = "reply to this message"
MAX_REPLY = 320  # two GSM-7 segments: a tenant's own text is cut, never refused


@frozen
class Keyword:
    kind: Kind
    word: str  # as recognised, upper case ("STOP", "STOP ALL", "YES")


@frozen
class Action:
    """What one keyword changes: the opt-out list (``out`` / ``in`` / None), the customer event, the reply."""

    keyword: Keyword
    opt: str | None = None
    event: str | None = None
    reply: Kind | None = None


def normalise(text: str | None) -> str:
    if not isinstance(text, str) or len(text) > _LONGEST:
        return ""
    return _TRAILING.sub("", _SPACES.sub(" ", text.strip()).upper()).strip()


def classify(text: str | None) -> Keyword | None:
    """The keyword a whole message is, or None (YES is returned as a START word; ``decide`` judges it)."""
    word = normalise(text)
    if word in STOP_WORDS:
        return Keyword(Kind.STOP, word)
    if word in HELP_WORDS:
        return Keyword(Kind.HELP, word)
    if word in START_WORDS or word == YES:
        return Keyword(Kind.START, word)
    return None


def decide(keyword: Keyword | None, *, opted_out: bool, replies: str) -> Action | None:
    """What a keyword does for a sender who is (or is not) on the tenant's opt-out list. None: nothing, the
    message is an ordinary one (no keyword, or YES from a sender who never opted out)."""
    if keyword is None or (keyword.word == YES and not opted_out):
        return None
    reply = keyword.kind if replies == "mmsgate" else None
    if keyword.kind is Kind.STOP:
        return Action(keyword, opt=None if opted_out else "out", event=None if opted_out else OPTED_OUT, reply=reply)
    if keyword.kind is Kind.START:
        return Action(keyword, opt="in" if opted_out else None, event=OPTED_IN if opted_out else None, reply=reply)
    return Action(keyword, reply=reply)


def replies_setting(tenant: Tenant) -> str:
    return tenant.keyword_replies if tenant.keyword_replies in REPLY_SETTINGS else DEFAULT_REPLIES


def reply_text(tenant: Tenant, kind: Kind) -> str:
    """The tenant's own text for ``kind`` (``keyword_texts``), else the compliant default with its brand."""
    brand = (tenant.brand_name or tenant.name or "mmsgate").strip() or "mmsgate"
    own = tenant.keyword_texts.get(kind.value) if isinstance(tenant.keyword_texts, dict) else None
    template = own if isinstance(own, str) and own.strip() else DEFAULT_TEXTS[kind]
    contact = (tenant.help_contact or "").strip() or DEFAULT_CONTACT
    try:
        text = template.format(brand=brand, contact=contact)
    except (KeyError, IndexError, ValueError):
        text = template  # a tenant text with stray braces is sent as written
    return text.strip()[:MAX_REPLY]
