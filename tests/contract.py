"""Expected values as the contract states them, written down here instead of imported from the code under test:
a test that computes its expectation with the implementation cannot fail when the implementation is wrong."""

from __future__ import annotations

import base64
import hashlib


def failover_id(mms_id: str) -> str:
    """The message id of an MMS leg's SMS failover (docs/decisions.md, SMS failover): derived from the MMS leg's
    id alone, so every path that creates it (the report, dispatch, the sweeper, a replay) names the same row.
    The rule, as a group leg's id is derived from its key: ``msg_`` and the lower-case base32 of the first 15
    bytes of the SHA-256 of ``failover:<mms id>``."""
    digest = hashlib.sha256(f"failover:{mms_id}".encode()).digest()[:15]
    return "msg_" + base64.b32encode(digest).decode().lower()
