"""Firestore collection names, the fields that carry TTLs, and the composite indexes the queries need.

Terraform creates the indexes and TTL policies from the same facts; a contract test keeps them equal.
"""

from shared.rules.searching import SEARCH_INDEXES

TENANTS = "tenants"
API_KEYS = "api_keys"
MESSAGES = "messages"
GROUPS = "groups"
IDEMPOTENCY = "idempotency"
PROVIDER_EVENTS = "provider_events"
RATE_LIMITS = "rate_limits"
PRICING = "pricing"
OPT_OUTS = "opt_outs"  # subcollection: tenants/{tenant_id}/opt_outs/{e164}
CONVERSATIONS = "conversations"  # one per group conversation (one Telnyx group_mms)
BATCHES = "batches"  # one per batch send (shared/services/batch_sending.py)
BATCH_CHUNKS = "batch_chunks"  # a batch's recipients, at most batching.CHUNK per document
CARRIERS = "carriers"  # one per carrier: its assessed health (shared/services/carrier_health.py)
CARRIER_SLOTS = "carrier_slots"  # a carrier's traffic per minute and shard (infra/store/carriers.py)
LINKS = "links"  # one per short link (shared/services/links.py)
# subcollection tenants/{tenant_id}/templates/{template_id}: the template's latest version and whether it is archived;
# its every version below it, templates/{template_id}/versions/{n} (infra/store/templates.py)
TEMPLATES = "templates"
TEMPLATE_VERSIONS = "versions"

ALL = (TENANTS, API_KEYS, MESSAGES, GROUPS, IDEMPOTENCY, PROVIDER_EVENTS, RATE_LIMITS, PRICING, OPT_OUTS,
       CONVERSATIONS, BATCHES, BATCH_CHUNKS, CARRIERS, CARRIER_SLOTS, LINKS, TEMPLATES, TEMPLATE_VERSIONS)

# collection -> field holding the expiry timestamp Firestore TTL deletes on
TTL_FIELDS = {
    # the tenant's retention (shared/rules/retention.py)
    MESSAGES: "delete_at",
    GROUPS: "delete_at",
    CONVERSATIONS: "delete_at",
    BATCHES: "delete_at",
    BATCH_CHUNKS: "delete_at",
    IDEMPOTENCY: "expires_at",
    RATE_LIMITS: "expires_at",
    PROVIDER_EVENTS: "expires_at",
    CARRIER_SLOTS: "expires_at",
    LINKS: "expires_at",  # the message's retention
}

# (collection, ((field, order), ...)) for every query that filters on one field and ranges on another.
COMPOSITE_INDEXES = (
    # the sweeper: legs in one status, not final, that entered it before a cutoff
    (MESSAGES, (("status", "ASCENDING"), ("final", "ASCENDING"), ("status_since", "ASCENDING"))),
    # the sweeper: scheduled legs whose time has come (their task may never have been created)
    (MESSAGES, (("status", "ASCENDING"), ("scheduled_at", "ASCENDING"))),
    # the sweeper: queued or scheduled legs whose validity has ended
    (MESSAGES, (("status", "ASCENDING"), ("valid_until", "ASCENDING"))),
    # the sweeper: batch chunks whose work is not done (their task may have been lost)
    (BATCH_CHUNKS, (("todo", "ASCENDING"), ("updated_at", "ASCENDING"))),
    # message search (shared/rules/searching.py): tenant_id, the equality filters it allows, newest first
    *((MESSAGES, fields) for fields in SEARCH_INDEXES),
)
