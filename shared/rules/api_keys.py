"""API-key validity, pure: given the key's document as read (and the tenant the read assumed it belongs to),
whether the key authenticates, and whether the read must be made again under the key's own tenant.

A request's first round reads the key's document beside the tenant it guesses the key belongs to: the tenant
the key names (``shared.rules.ids.tenant_named_by``), or the one this instance noted for it before. The key's
document decides. Keys carry no expiry: a key is valid until it is revoked (``mmsgate-admin keys``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from shared.rules.frozen import frozen
from shared.rules.ids import tenant_named_by


@frozen
class ApiKeyRecord:
    """A key's document: the tenant it belongs to (None: the document names none) and whether it is revoked."""

    tenant_id: str | None
    revoked: bool = False

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ApiKeyRecord:
        owner = doc.get("tenant_id")
        return cls(tenant_id=owner if isinstance(owner, str) else None, revoked=bool(doc.get("revoked")))


class KeyVerdict(StrEnum):
    VALID = "valid"
    UNKNOWN = "unknown"  # no such key
    REVOKED = "revoked"
    WRONG_TENANT = "wrong_tenant"  # its document names no tenant, or not the one its text or the read insists on
    STALE_NOTE = "stale_note"  # valid, but read beside another tenant's documents: read again under its own


@frozen
class KeyCheck:
    verdict: KeyVerdict
    owner: str | None = None  # the tenant the key's document names

    @property
    def valid(self) -> bool:
        return self.verdict is KeyVerdict.VALID


def check_key(api_key: str, key: ApiKeyRecord | None, read_for: str | None = None) -> KeyCheck:
    """The key ``api_key`` as its document ``key`` says (None: no document), read beside the documents of
    tenant ``read_for`` (None: the read was of the key alone, so its owner decides).

    A key whose text names a tenant must belong to that one: keys are never made otherwise, so a mismatch is
    refused rather than guessed at. A key that names none may have been noted under a tenant this instance
    saw before, and that note goes stale when the tenants are seeded again (a local stack): the key's own
    tenant is then read, never another tenant's documents used."""
    if key is None:
        return KeyCheck(KeyVerdict.UNKNOWN)
    if key.revoked:
        return KeyCheck(KeyVerdict.REVOKED, key.tenant_id)
    owner, named = key.tenant_id, tenant_named_by(api_key)
    if owner is None or (named is not None and named != owner):
        return KeyCheck(KeyVerdict.WRONG_TENANT, owner)
    if read_for is not None and read_for != owner:
        return KeyCheck(KeyVerdict.WRONG_TENANT if named is not None else KeyVerdict.STALE_NOTE, owner)
    return KeyCheck(KeyVerdict.VALID, owner)
