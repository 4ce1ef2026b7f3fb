"""The interfaces the domain talks to. ``infra`` implements them (Firestore, Cloud Tasks, Cloud Storage,
Telnyx); tests and the bench may implement them too. Nothing here imports a cloud SDK.

Every read-decide-write of a leg goes through ``LegStore.mutate``: the store reads the leg, asks a pure
``decide`` function for a :class:`Decision`, and commits it atomically (conditioned on the version it
read), answering with a :class:`Mutation` that says what committed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from shared.carriers.provider import Provider as Provider  # noqa: PLC0414 - re-exported: one place lists the ports
from shared.rules.decisions import Decision as Decision  # noqa: PLC0414 - re-exported: the stores take it
from shared.rules.frozen import frozen
from shared.rules.records import (
    Batch,
    BatchChunk,
    Conversation,
    Group,
    IdempotencyRecord,
    Leg,
    OptOut,
    ProviderEventRecord,
    Rates,
    StoredMedia,
    Tenant,
)

if TYPE_CHECKING:
    from shared.rules.links import Link
    from shared.rules.routing import CarrierHealth
    from shared.rules.searching import Query as SearchQuery
    from shared.rules.ssrf import VettedUrl
    from shared.rules.templates import Template

T = TypeVar("T")


class Contended(Exception):
    """Optimistic retries ran out: too many concurrent writers to the same records. Retry shortly."""


class PreInsertFailed(Exception):
    """The recipients could not be recorded: nothing was written, nothing will be sent."""


@frozen
class Mutation(Generic[T]):
    """What committed: the leg before and after, and the decision's result."""

    before: Leg | None
    after: Leg | None
    result: T | None
    duplicate: bool = False  # the provider event was applied before: nothing was decided or written

    @property
    def changed(self) -> bool:
        return self.after is not None and self.after != self.before

    @property
    def current(self) -> Leg | None:
        return self.after if self.after is not None else self.before


@frozen
class AcceptDecision:
    """The accept's one atomic write: each leg's gated state, and the tenant's new balance and usage."""

    legs: list[Leg]
    balance_micros: int
    usage_day: str
    usage_count: int


@frozen
class BatchAcceptDecision:
    """A batch accept's one atomic write: the batch, its chunks, and the tenant's balance and usage after the
    reservation (shared/services/batch_sending.py)."""

    batch: Batch
    chunks: list[BatchChunk]
    balance_micros: int
    usage_day: str
    usage_count: int


@frozen
class ChunkState:
    """A chunk task's first read: its batch, its chunk, and the chunk's version (a finished chunk is marked
    done only if nothing, a cancel say, wrote it since)."""

    batch: Batch
    chunk: BatchChunk
    version: Any


@dataclass
class Caller:
    """An API key whose check waits for the request's first round of reads (``infra.web.serve(defer_auth=True)``):
    its key document is read in the same round as its tenant, the opt-outs and the prices.

    ``tenant_id`` is the tenant the key names (``shared.rules.ids.tenant_named_by``) or the one this instance found for
    it before (None: neither; the key is then checked on its own first). ``known`` is the tenant as this instance
    last read it for this key, once the key had been found valid: only then is the request's rate-limit slot
    claimed in the first round too, so a key this instance never saw valid cannot spend a tenant's slots.
    ``authenticated`` is set by the service once the first round found the key valid."""

    api_key: str
    tenant_id: str | None
    known: Tenant | None = None
    authenticated: Tenant | None = None


@frozen
class FirstRound:
    """The reads of a single send's first round: the tenant (None: unknown or revoked key, or no such tenant),
    the version of its document the accept commit is conditioned on (opaque to the domain), the opted-out
    numbers and the prices by country. ``exact`` False: only one balance shard was read, and the tenant's
    balance and quota are that shard's share (shared/rules/balance.py ``one_shard_view``: at most the exact
    figures); a request they cannot cover reads the exact ones before it is refused."""

    tenant: Tenant | None
    version: Any
    opted_out: set[str]
    prices: dict[str, Rates | None]
    exact: bool = True


@frozen
class IdempotentAnswer:
    """An answer kept under an Idempotency-Key in the same commit as the accept that produced it."""

    record_id: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@frozen
class InboundDecision:
    """An inbound message's first write (shared/services/inbound.py): the leg to create, and the change its
    keyword makes
    to the sender's entry on the tenant's opt-out list (``opt_out`` written, or ``opt_in``: entry removed)."""

    leg: Leg
    opt_out: OptOut | None = None
    opt_in: bool = False


@frozen
class InboundWrite:
    leg: Leg  # as created, or as found
    created: bool


@frozen
class SpawnDecision:
    """One leg giving rise to another (the SMS failover of an MMS), decided purely and committed at once: the
    parent's new state, the child (created only if absent) and the tenant's new balance (None: unchanged)."""

    parent: Leg | None = None
    child: Leg | None = None
    balance_micros: int | None = None
    result: str = ""


@frozen
class Spawned:
    before: Leg | None  # the parent as read
    parent: Leg | None  # the parent as written (None: not written)
    child: Leg | None  # the child as created (None: not created by this call)
    result: str = ""


@frozen
class ConversationDecision(Generic[T]):
    """A decision about a conversation and its member legs, committed together."""

    conversation: Conversation | None = None  # its new state; None writes nothing
    legs: tuple[Leg, ...] = ()  # members' new states (each conditioned on the version read)
    refund_micros: int = 0  # credited back to the tenant
    result: T | None = None


@frozen
class ConversationMutation(Generic[T]):
    before: Conversation | None
    after: Conversation | None
    legs_before: dict[str, Leg]
    legs_after: tuple[Leg, ...]
    result: T | None

    @property
    def current(self) -> Conversation | None:
        return self.after if self.after is not None else self.before


class LegStore(Protocol):
    def get(self, message_id: str) -> Leg | None: ...

    def get_group(self, group_id: str) -> Group | None: ...

    def of_group(self, group_id: str) -> list[Leg]: ...

    def id_by_provider_id(self, provider_id: str) -> str | None: ...

    def in_status(self, status: str, since_before: dt.datetime, limit: int = 200) -> list[Leg]: ...

    def due_scheduled(self, due_before: dt.datetime, limit: int = 200) -> list[Leg]: ...

    def past_validity(self, statuses: list[str], now: dt.datetime, limit: int = 200) -> list[Leg]: ...

    def with_events_due(self, due_before: dt.datetime, limit: int = 200) -> list[Leg]: ...

    def search(self, query: SearchQuery, limit: int) -> list[Leg]: ...

    def mutate(self, message_id: str, decide: Callable[[Leg | None], Decision[T]], *,
               event: ProviderEventRecord | None = None) -> Mutation[T]: ...

    def mutate_unless_opted_out(self, message_id: str, decide: Callable[[Leg | None, bool], Decision[T]], *,
                                applies: Callable[[Leg], bool]) -> Mutation[T]:
        """``mutate``, with ``decide`` told whether the leg's recipient is on its tenant's opt-out list as read
        just before the commit (dispatch's claim: a STOP stops every leg not yet handed to the provider). The
        entry is read only for a leg ``applies`` to (False is passed for any other)."""
        ...

    def record_event(self, event: ProviderEventRecord) -> bool: ...

    def accept(self, group: Group | None, legs: list[Leg],
               decide: Callable[[Tenant, list[Leg]], AcceptDecision],
               answer: Callable[[list[Leg]], IdempotentAnswer | None], version: Any = None) -> list[Leg]: ...

    def accept_one(self, leg: Leg, tenant: Tenant, version: Any,
                   decide: Callable[[Tenant, list[Leg]], AcceptDecision],
                   answer: Callable[[list[Leg]], IdempotentAnswer | None]) -> list[Leg]: ...

    # -- SMS failover, conversations, redaction (infra/store/linked.py) ---------------------------
    def id_by_provider_and_recipient(self, provider_id: str, to: str | None) -> str | None: ...

    def with_failover_due(self, due_before: dt.datetime, limit: int = 200) -> list[Leg]: ...

    def spawn(self, parent_id: str, child_id: str, tenant_id: str,
              decide: Callable[[Leg | None, bool, Tenant], SpawnDecision]) -> Spawned: ...

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def mutate_conversation(self, conversation_id: str, group_id: str,
                            decide: Callable[[Conversation | None, list[Leg]], ConversationDecision[T]]
                            ) -> ConversationMutation[T]: ...

    def media_in_use(self, tenant_id: str, object_name: str, besides: str) -> bool: ...

    # -- inbound messages (infra/store/legs.py) --------------------------------------------------
    def record_inbound(self, message_id: str, tenant_id: str, sender: str | None,
                       decide: Callable[[OptOut | None], InboundDecision]) -> InboundWrite: ...


class BatchStore(Protocol):
    def accept(self, tenant_id: str, version: Any, decide: Callable[[Tenant], BatchAcceptDecision],
               answer: Callable[[Batch], IdempotentAnswer | None]) -> Batch: ...

    def get(self, batch_id: str) -> Batch | None: ...

    def chunk_state(self, batch_id: str, index: int) -> ChunkState | None: ...

    def rows(self, message_ids: Sequence[str]) -> list[Leg]: ...

    def write_rows(self, legs: Sequence[Leg], refund_micros: int, refund_key: str) -> bool: ...

    def chunk_done(self, chunk: BatchChunk, version: Any, now: dt.datetime) -> bool: ...

    def cancel(self, batch_id: str, tenant_id: str, now: dt.datetime) -> Batch | None: ...

    def count_by_status(self, tenant_id: str, batch_id: str, statuses: Sequence[str]) -> dict[str, int]: ...

    def chunks_todo(self, updated_before: dt.datetime, limit: int = 100) -> list[BatchChunk]: ...


class AccountStore(Protocol):
    def tenant_for_api_key(self, api_key: str, *, balance: bool = True) -> Tenant | None: ...

    def caller(self, api_key: str) -> Caller: ...

    def first_round(self, tenant_id: str, api_key: str | None, numbers: Iterable[str], countries: Iterable[str],
                    shard_key: str | None = None) -> FirstRound: ...

    def get_tenant(self, tenant_id: str, *, balance: bool = True) -> Tenant | None: ...

    def gate_reads(self, tenant_id: str, numbers: Iterable[str], countries: Iterable[str]
                   ) -> tuple[set[str], dict[str, Rates | None]]: ...

    def get_rates(self, country: str) -> Rates | None: ...

    def add_opt_out(self, tenant_id: str, number: str, source: str) -> None: ...

    def remove_opt_out(self, tenant_id: str, number: str) -> None: ...

    def tenants_owning(self, number: str) -> list[str]: ...

    # -- the opt-out API (shared/services/optouts.py) ----------------------------------------------------
    def get_opt_out(self, tenant_id: str, number: str) -> OptOut | None: ...

    def list_opt_outs(self, tenant_id: str, after: str | None, limit: int) -> list[OptOut]: ...

    def put_opt_out(self, tenant_id: str, entry: OptOut) -> tuple[OptOut, bool]: ...

    def delete_opt_out(self, tenant_id: str, number: str) -> bool: ...

    def import_opt_outs(self, tenant_id: str, entries: Sequence[OptOut]) -> int: ...


class TemplateStore(Protocol):
    """A tenant's templates and every version of each (infra/store/templates.py)."""

    def create(self, template: Template) -> Template: ...

    def get(self, tenant_id: str, template_id: str, version: int | None = None) -> Template | None: ...

    def list(self, tenant_id: str, after: str | None, limit: int) -> list[Template]: ...

    def update(self, tenant_id: str, template_id: str, edit: Callable[[Template], Template]) -> Template | None: ...

    def archive(self, tenant_id: str, template_id: str, now: dt.datetime) -> Template | None: ...


class LimitStore(Protocol):

    def claim(self, key: str, limit: int, window_seconds: int, now: dt.datetime) -> tuple[int | None, int]: ...


class IdempotencyStore(Protocol):
    def begin(self, record_id: str, payload_hash: str, now: dt.datetime, lease_seconds: int,
              ttl_seconds: int) -> tuple[str, IdempotencyRecord | None]: ...

    def complete(self, record_id: str, status: int, body: dict[str, Any], headers: dict[str, str]) -> None: ...

    def release(self, record_id: str) -> None: ...


@frozen
class DispatchTask:
    message_id: str
    name: str  # Cloud Tasks deduplicates by name: the same name twice creates one task
    at: dt.datetime | None = None
    batch_id: str | None = None  # a batch's leg: dispatch checks the batch was not canceled before claiming it


class TaskQueue(Protocol):
    def enqueue_dispatch(self, task: DispatchTask) -> None: ...

    def enqueue_dispatch_many(self, tasks: Sequence[DispatchTask]) -> dict[str, Exception | None]: ...

    def enqueue_fanout(self, name: str, tasks: Sequence[DispatchTask]) -> None: ...

    def enqueue_batch_chunks(self, batch_id: str, indexes: Sequence[int], *, purpose: str = "write"
                             ) -> dict[int, Exception | None]: ...

    def enqueue_notify(self, event_id: str, message_id: str, *, name: str | None = None,
                       at: dt.datetime | None = None) -> None: ...

    def enqueue_inbound(self, message_id: str, *, name: str, at: dt.datetime | None = None) -> None: ...


class MediaStore(Protocol):
    def prepare(self, tenant_id: str, urls: Sequence[str], uploads: Sequence[Any], policy: Any,
                limit: Any = None) -> list[dict]: ...

    def signed_urls(self, media: Sequence[dict], signed_at: dt.datetime | None = None) -> list[str]: ...

    def remove_unused(self, name: str, in_use: Callable[[], bool]) -> str: ...


def media_docs(media: Sequence[StoredMedia]) -> list[dict]:
    return [m.to_doc() for m in media]


@frozen
class CarrierSlot:
    """One minute of one carrier's traffic, summed over its shards: messages it accepted (``given``), those
    delivered within the slow threshold (``fast``)."""

    start: dt.datetime
    given: int = 0
    fast: int = 0


class CarrierStore(Protocol):
    """Carrier health (one small document per carrier) and traffic counters in sharded one-minute slots, so no
    document takes more than a few writes a second whatever the traffic (infra/store/carriers.py)."""

    def health(self) -> dict[str, CarrierHealth]:
        """Every carrier's last assessed health; may be up to a few seconds old (cached per instance)."""
        ...

    def save_health(self, health: CarrierHealth) -> None: ...

    def count(self, carrier: str, field: str, at: dt.datetime) -> None:
        """Add one to ``field`` ("given", "fast" or "errors") of the slot holding ``at``. Never raises: a lost
        count only blurs a health sample."""
        ...

    def slots(self, carrier: str, since: dt.datetime, until: dt.datetime) -> list[CarrierSlot]:
        """The minutes from ``since`` to ``until`` that saw traffic, oldest first."""
        ...

    def errors(self, carrier: str, since: dt.datetime, until: dt.datetime) -> int:
        """Errors counted from ``since`` to ``until`` (errors are kept per ten seconds: a burst window is short)."""
        ...


class LinkStore(Protocol):
    """Short links (shared/services/links.py), one document per code (infra/store/links.py)."""

    def put(self, links: Sequence[Link]) -> None:
        """Store links, each created (never overwriting a code), in writes of at most 400: an accept's or a batch
        chunk's recipients at once. A failure may leave some stored; no message names them (their writer
        fails before its commit), and they expire by TTL."""
        ...

    def get(self, code: str) -> Link | None:
        """The link of ``code``: one document read, the redirect's only one."""
        ...

    def forget(self, message_id: str) -> int:
        """Delete every link of a message (its redaction); how many were deleted."""
        ...


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass
class FixedClock:
    """A clock tests set and move by hand."""

    at: dt.datetime

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> dt.datetime:
        self.at += dt.timedelta(**delta)
        return self.at


class Settings(Protocol):
    """The deployment settings services read (``infra.settings.Settings`` has them all, from the environment)."""

    @property
    def dispatch_claim_lease_seconds(self) -> int: ...
    @property
    def dispatch_max_attempts(self) -> int: ...
    @property
    def dispatch_lookup_horizon_seconds(self) -> int: ...
    @property
    def telnyx_webhook_url(self) -> str: ...
    @property
    def telnyx_public_key(self) -> str: ...
    @property
    def twilio_webhook_url(self) -> str: ...
    @property
    def twilio_auth_token(self) -> str: ...
    @property
    def twilio_account_sid(self) -> str: ...
    @property
    def carrier_weights(self) -> dict[str, int]: ...
    @property
    def carrier_error_burst(self) -> tuple[int, int]: ...
    @property
    def webhook_signing_key(self) -> str: ...
    @property
    def media_trusted_origins(self) -> tuple[str, ...]: ...
    @property
    def media_allowed_hosts(self) -> tuple[str, ...]: ...
    @property
    def media_bucket(self) -> str: ...
    @property
    def media_max_bytes(self) -> int: ...
    @property
    def inbound_media_hosts(self) -> tuple[str, ...]: ...
    @property
    def sweep_queued_after_seconds(self) -> int: ...
    @property
    def sweep_final_after_seconds(self) -> int: ...
    @property
    def batch_legs_per_second(self) -> float: ...
    @property
    def link_base_url(self) -> str: ...


class Runtime(Protocol):
    """What a service is handed: the ports, the settings and the clock (``infra.runtime.Runtime`` builds them
    lazily, once per instance; tests hand in fakes). Services name this, never ``infra``."""

    @property
    def settings(self) -> Settings: ...
    @property
    def legs(self) -> LegStore: ...
    @property
    def accounts(self) -> AccountStore: ...
    @property
    def limits(self) -> LimitStore: ...
    @property
    def batches(self) -> BatchStore: ...
    @property
    def templates(self) -> TemplateStore: ...
    @property
    def queue(self) -> TaskQueue: ...
    @property
    def provider(self) -> Provider: ...
    def carrier(self, name: str) -> Provider:
        """The provider adapter of one carrier ("telnyx", "twilio")."""
        ...
    @property
    def carriers(self) -> CarrierStore: ...
    @property
    def media(self) -> MediaStore: ...
    @property
    def links(self) -> LinkStore: ...

    def post_vetted(self, vetted: VettedUrl, *, content: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST to a URL that passed the SSRF check, connecting only to its vetted addresses."""
        ...

    def resolver(self, host: str, port: int) -> list[str]: ...

    def concurrently(self, *calls: Callable[[], Any]) -> list[Any]:
        """Run independent blocking calls at once; their results, in order (the first error raises)."""
        ...

    def now(self) -> dt.datetime: ...
