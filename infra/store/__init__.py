"""All Firestore access, one module per concern: ``accounts`` (tenants, keys, prices, opt-outs), ``legs``
(legs, groups, provider events, the accept), ``limits`` (rate-limit slots), ``idempotency`` ``batches``
(batch sends) and ``templates``.

``Store`` bundles them over one client, for the runtime and for operator tools and tests.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from google.cloud import firestore

from infra.store.accounts import FirestoreAccounts
from infra.store.batches import FirestoreBatches
from infra.store.carriers import FirestoreCarriers
from infra.store.idempotency import FirestoreIdempotency
from infra.store.legs import FirestoreLegs
from infra.store.limits import FirestoreLimits

if TYPE_CHECKING:
    from infra.store.links import FirestoreLinks
    from infra.store.templates import FirestoreTemplates


class Store:
    def __init__(self, client: firestore.Client) -> None:
        self.db = client
        self.accounts = FirestoreAccounts(client)
        self.legs = FirestoreLegs(client)
        self.limits = FirestoreLimits(client)
        self.idempotency = FirestoreIdempotency(client)
        self.batches = FirestoreBatches(client)
        self.carriers = FirestoreCarriers(client)

    # Built on first use: only the functions that shorten links or read templates load their modules.
    @functools.cached_property
    def links(self) -> FirestoreLinks:
        from infra.store.links import FirestoreLinks  # noqa: PLC0415

        return FirestoreLinks(self.db)

    @functools.cached_property
    def templates(self) -> FirestoreTemplates:
        from infra.store.templates import FirestoreTemplates  # noqa: PLC0415

        return FirestoreTemplates(self.db)


__all__ = ["FirestoreAccounts", "FirestoreBatches", "FirestoreCarriers", "FirestoreIdempotency", "FirestoreLegs",
           "FirestoreLimits", "Store"]
