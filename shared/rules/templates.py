"""Message templates with personalisation (GOV.UK Notify's model), pure.

A template's body and subject hold placeholders ``((name))``: a name is letters, digits, spaces and
underscores. Names match as Notify matches them, ignoring case, spaces and underscores, so ``((First name))``
takes ``first_name`` or ``FirstName``.

Rendering is one pass over the template's own text: a value is inserted as it is and never read again, so a
value holding ``((x))`` stays that literal text (it cannot pull in another value). A value that looks like a
link (a scheme such as ``https://``, ``www.``, or a name ending in a common top-level domain) is refused: the
author of a template decides which links a message carries, the personalisation cannot add one. Every
placeholder must have a value: the ones missing are named, in the template's order.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from shared.rules.frozen import frozen

MAX_NAME = 100  # a template's name
MAX_VALUES = 100  # personalisation keys in one request (a batch recipient's own, the request's shared)
MAX_VALUE = 1600  # one value: a rendered body is held to the send's body limit anyway
MAX_PLACEHOLDER = 64

PLACEHOLDER = re.compile(r"\(\(([A-Za-z0-9_ ]{1,%s})\)\)" % (MAX_PLACEHOLDER,))  # noqa: UP031 - braces of a regex

# A scheme ("https://", "mailto:" is not a link an SMS client opens, "sms:" neither), "www.", or a dotted name
# whose last label is a top-level domain messaging apps turn into links.
_TLDS = ("com|net|org|info|biz|io|co|ly|me|app|xyz|link|site|online|top|click|us|uk|ca|de|fr|ru|cn|in|au|gov|"
         "edu|tv|gl|gg|to|sh|ai|dev|page|club|store|shop|live|news|cc|ws|tk|ml|ga|cf|bit")
_LINK = re.compile(
    r"[a-z][a-z0-9+.\-]*://"  # any scheme with an authority
    r"|\bwww\."
    r"|\b[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.(?:" + _TLDS + r")\b(?!\.[a-z0-9])"
    r"|\b[a-z0-9\-]+(?:\.[a-z0-9\-]+)+/",  # a dotted host followed by a path, whatever its top-level domain
    re.IGNORECASE)


class TemplateProblem(ValueError):
    """A template or its values break a rule: ``field`` is where (``personalisation.name``, ``body``)."""

    def __init__(self, field: str, issue: str) -> None:
        super().__init__(f"{field}: {issue}")
        self.field = field
        self.issue = issue


class MissingPersonalisation(ValueError):
    """Placeholders without a value, named as the template writes them, in its order."""

    def __init__(self, names: list[str]) -> None:
        super().__init__("Missing personalisation: " + ", ".join(names))
        self.names = names


def key(name: str) -> str:
    """The form two names are compared in: lower case, without spaces and underscores."""
    return name.lower().replace(" ", "").replace("_", "")


def placeholders(*texts: str | None) -> list[str]:
    """Each distinct placeholder of the texts, as first written, in order."""
    seen: dict[str, str] = {}
    for text in texts:
        for match in PLACEHOLDER.finditer(text or ""):
            name = match[1].strip()
            if name:
                seen.setdefault(key(name), name)
    return list(seen.values())


def looks_like_link(value: str) -> bool:
    return _LINK.search(value) is not None


def check_values(values: Mapping[str, str], field: str = "personalisation") -> dict[str, str]:
    """The values keyed for matching; a value that is not text, is too long or holds a link is refused by name."""
    if len(values) > MAX_VALUES:
        raise TemplateProblem(field, f"at most {MAX_VALUES} values")
    keyed: dict[str, str] = {}
    for name, value in values.items():
        where = f"{field}.{name}"
        if not isinstance(value, str):
            raise TemplateProblem(where, "must be a string")
        if len(value) > MAX_VALUE:
            raise TemplateProblem(where, f"at most {MAX_VALUE} characters")
        if looks_like_link(value):
            raise TemplateProblem(where, "a value cannot contain a link (put links in the template itself)")
        keyed[key(name)] = value
    return keyed


def missing(values: Mapping[str, str], *texts: str | None) -> list[str]:
    keyed = {key(name) for name in values}
    return [name for name in placeholders(*texts) if key(name) not in keyed]


def render(text: str | None, values: Mapping[str, str]) -> str | None:
    """``text`` with each placeholder replaced by its value, in one pass (values are never read for placeholders).
    ``values`` as ``check_values`` keys them, or raw: both match."""
    if text is None:
        return None
    keyed = {key(name): value for name, value in values.items()}
    gaps = [name for name in placeholders(text) if key(name) not in keyed]
    if gaps:
        raise MissingPersonalisation(gaps)
    return PLACEHOLDER.sub(lambda m: keyed.get(key(m[1].strip()), m[0]) if m[1].strip() else m[0], text)


@frozen
class Rendered:
    body: str | None
    subject: str | None


def render_all(body: str | None, subject: str | None, values: Mapping[str, str], *, max_body: int,
               max_subject: int) -> Rendered:
    """A template's body and subject rendered, held to a send's limits. Raises ``MissingPersonalisation`` naming
    every gap of both, or ``TemplateProblem``."""
    keyed = check_values(values)
    gaps = missing(keyed, body, subject)
    if gaps:
        raise MissingPersonalisation(gaps)
    out = Rendered(body=render(body, keyed), subject=render(subject, keyed))
    if out.body is not None and len(out.body) > max_body:
        raise TemplateProblem("personalisation", f"the rendered body has {len(out.body)} characters; a message "
                              f"allows at most {max_body}")
    if out.subject is not None and len(out.subject) > max_subject:
        raise TemplateProblem("personalisation", f"the rendered subject has {len(out.subject)} characters; at "
                              f"most {max_subject}")
    return out


def used_values(values: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """Only the values a template's placeholders use (what a batch recipient's row keeps), keyed for matching."""
    keyed = {key(name): value for name, value in values.items()}
    wanted = {key(name) for name in names}
    return {k: v for k, v in keyed.items() if k in wanted}


@frozen
class Template:
    """One version of a tenant's template. An edit makes a new version (the old ones stay readable); an archived
    template is refused by sends, and its versions stay readable for the messages that used them."""

    id: str
    tenant_id: str
    version: int
    name: str
    body: str | None
    subject: str | None
    media_urls: tuple[str, ...]
    created_at: dt.datetime  # the template's first version
    updated_at: dt.datetime  # this version's
    archived_at: dt.datetime | None = None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def placeholders(self) -> list[str]:
        return placeholders(self.body, self.subject)

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "tenant_id": self.tenant_id, "version": self.version, "name": self.name,
                "body": self.body, "subject": self.subject, "media_urls": list(self.media_urls),
                "created_at": self.created_at, "updated_at": self.updated_at, "archived_at": self.archived_at}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Template:
        return cls(id=doc["id"], tenant_id=doc["tenant_id"], version=int(doc["version"]), name=doc["name"],
                   body=doc.get("body"), subject=doc.get("subject"), media_urls=tuple(doc.get("media_urls") or ()),
                   created_at=doc["created_at"], updated_at=doc["updated_at"], archived_at=doc.get("archived_at"))
