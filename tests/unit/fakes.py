"""In-memory ports (shared/ports.py) for driving a service end to end without the stack.

mypy checks this module (pyproject ``[tool.mypy] files``): ``FakeRuntime`` is a ``shared.ports.Runtime`` and
each fake satisfies its port (``_as_ports`` below), so a port that changes shape breaks the lint, not a
test at run time. A port method no unit test calls is ``_unused``: it raises NotImplementedError."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from shared.carriers.provider import GroupOutboundMessage, Lookup, LookupState, OutboundMessage, Outcome
from shared.ports import (
    AccountStore,
    BatchStore,
    CarrierSlot,
    CarrierStore,
    Decision,
    DispatchTask,
    FixedClock,
    LegStore,
    LimitStore,
    LinkStore,
    MediaStore,
    Mutation,
    Provider,
    Runtime,
    TaskQueue,
    TemplateStore,
)
from shared.rules.links import Link
from shared.rules.records import Leg, ProviderEventRecord
from shared.rules.routing import CarrierHealth
from shared.rules.ssrf import VettedUrl
from shared.rules.templates import Template

T = TypeVar("T")


def _unused(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise NotImplementedError("no unit test needs this port method: give the test a fake of its own")


@dataclass
class FakeLegs:
    legs: dict[str, Leg] = field(default_factory=dict)
    refunds: list[tuple[str, int]] = field(default_factory=list)
    opt_outs: list[tuple[str, str]] = field(default_factory=list)
    events: set[str] = field(default_factory=set)
    opted_out: set[tuple[str, str]] = field(default_factory=set)  # (tenant, number) on the opt-out list
    opt_out_reads: int = 0  # how often a claim read the list

    def get(self, message_id: str) -> Leg | None:
        return self.legs.get(message_id)

    def mutate(self, message_id: str, decide: Callable[[Leg | None], Decision[T]], *,
               event: ProviderEventRecord | None = None) -> Mutation[T]:
        if event is not None and event.event_id in self.events:
            return Mutation(before=None, after=None, result=None, duplicate=True)
        before = self.legs.get(message_id)
        decision = decide(before)
        after = decision.after if before is not None else None
        if after is not None:
            self.legs[message_id] = after
        if before is not None and decision.refund_micros:
            self.refunds.append((before.tenant_id, decision.refund_micros))
        if before is not None and decision.opt_out:
            self.opt_outs.append((before.tenant_id, decision.opt_out))
        if event is not None:
            self.events.add(event.event_id)
        return Mutation(before=before, after=after, result=decision.result)

    def mutate_unless_opted_out(self, message_id: str, decide: Callable[[Leg | None, bool], Decision[T]], *,
                                applies: Callable[[Leg], bool]) -> Mutation[T]:
        leg = self.legs.get(message_id)
        self.opt_out_reads += leg is not None and applies(leg)
        opted_out = leg is not None and applies(leg) and (leg.tenant_id, leg.to) in self.opted_out
        return self.mutate(message_id, lambda current: decide(current, opted_out))

    get_group = of_group = id_by_provider_id = in_status = due_scheduled = past_validity = _unused
    with_events_due = search = record_event = accept = accept_one = id_by_provider_and_recipient = _unused
    with_failover_due = spawn = get_conversation = mutate_conversation = media_in_use = record_inbound = _unused


@dataclass
class FakeQueue:
    dispatches: list[DispatchTask] = field(default_factory=list)
    notifies: list[tuple[str, str]] = field(default_factory=list)
    notify_tasks: list[tuple[str | None, dt.datetime | None]] = field(default_factory=list)

    def enqueue_dispatch(self, task: DispatchTask) -> None:
        self.dispatches.append(task)

    def enqueue_notify(self, event_id: str, message_id: str, *, name: str | None = None,
                       at: dt.datetime | None = None) -> None:
        self.notifies.append((event_id, message_id))
        self.notify_tasks.append((name, at))

    enqueue_dispatch_many = enqueue_fanout = enqueue_batch_chunks = enqueue_inbound = _unused


@dataclass
class FakeProvider:
    answers: list[Outcome] = field(default_factory=list)
    lookups: list[Lookup] = field(default_factory=list)
    sent: list[OutboundMessage] = field(default_factory=list)
    asked: list[tuple[OutboundMessage | GroupOutboundMessage, dt.datetime]] = field(default_factory=list)

    def send(self, message: OutboundMessage) -> Outcome:
        self.sent.append(message)
        return self.answers.pop(0)

    def find(self, message: OutboundMessage | GroupOutboundMessage, since: dt.datetime) -> Lookup:
        self.asked.append((message, since))
        return self.lookups.pop(0) if self.lookups else Lookup(LookupState.UNKNOWN)

    send_group = _unused


class FakeMedia:
    def signed_urls(self, media: Sequence[dict[str, Any]], signed_at: dt.datetime | None = None) -> list[str]:
        return [f"https://storage.example/{m['object']}?signed={signed_at.isoformat() if signed_at else ''}"
                for m in media]

    prepare = remove_unused = _unused


class FakeAccounts:
    """No unit test driven through FakeRuntime reads accounts (one that does sets ``rt.accounts`` itself)."""

    tenant_for_api_key = caller = first_round = get_tenant = gate_reads = get_rates = _unused
    add_opt_out = remove_opt_out = tenants_owning = get_opt_out = list_opt_outs = put_opt_out = _unused
    delete_opt_out = import_opt_outs = _unused


@dataclass
class FakeCarriers:
    """Carrier health and counters in memory (no unit test assesses health through FakeRuntime unless it
    reads these)."""

    known: dict[str, CarrierHealth] = field(default_factory=dict)
    counted: list[tuple[str, str, dt.datetime]] = field(default_factory=list)
    minutes: dict[str, list[CarrierSlot]] = field(default_factory=dict)
    error_times: dict[str, list[dt.datetime]] = field(default_factory=dict)

    def health(self) -> dict[str, CarrierHealth]:
        return dict(self.known)

    def save_health(self, health: CarrierHealth) -> None:
        self.known[health.carrier] = health

    def count(self, carrier: str, field: str, at: dt.datetime) -> None:
        self.counted.append((carrier, field, at))

    def slots(self, carrier: str, since: dt.datetime, until: dt.datetime) -> list[CarrierSlot]:
        return [s for s in self.minutes.get(carrier, []) if since - dt.timedelta(minutes=1) < s.start <= until]

    def errors(self, carrier: str, since: dt.datetime, until: dt.datetime) -> int:
        return sum(since <= at <= until for at in self.error_times.get(carrier, []))


class FakeLimits:
    claim = _unused


@dataclass
class FakeLinks:
    links: dict[str, Link] = field(default_factory=dict)
    reads: int = 0

    def put(self, links: Sequence[Link]) -> None:
        for link in links:
            assert link.code not in self.links, "a code is issued once"
            self.links[link.code] = link

    def get(self, code: str) -> Link | None:
        self.reads += 1
        return self.links.get(code)

    def forget(self, message_id: str) -> int:
        gone = [code for code, link in self.links.items() if link.message_id == message_id]
        for code in gone:
            del self.links[code]
        return len(gone)


class FakeBatches:
    """No batch by default (a test of a batch's leg sets ``rt.batches`` itself)."""

    accept = get = chunk_state = rows = write_rows = chunk_done = cancel = count_by_status = chunks_todo = _unused


class FakeTemplates:
    """Templates and their versions in memory, keyed as the Firestore store keys them (per tenant)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], list[Template]] = {}  # (tenant, id) -> versions, oldest first

    def create(self, template: Template) -> Template:
        self.versions[(template.tenant_id, template.id)] = [template]
        return template

    def get(self, tenant_id: str, template_id: str, version: int | None = None) -> Template | None:
        versions = self.versions.get((tenant_id, template_id))
        if not versions:
            return None
        if version is None:
            return versions[-1]
        one = next((t for t in versions if t.version == version), None)
        return dataclasses.replace(one, archived_at=versions[-1].archived_at) if one else None

    def list(self, tenant_id: str, after: str | None, limit: int) -> list[Template]:
        ids = sorted(i for t, i in self.versions if t == tenant_id and (after is None or i > after))
        return [self.versions[(tenant_id, i)][-1] for i in ids[:limit]]

    def update(self, tenant_id: str, template_id: str, edit: Callable[[Template], Template]) -> Template | None:
        versions = self.versions.get((tenant_id, template_id))
        if not versions:
            return None
        new = edit(versions[-1])
        if new.version != versions[-1].version:
            versions.append(new)
        else:
            versions[-1] = new
        return new

    def archive(self, tenant_id: str, template_id: str, now: dt.datetime) -> Template | None:
        versions = self.versions.get((tenant_id, template_id))
        if not versions:
            return None
        if versions[-1].archived_at is None:
            versions[-1] = dataclasses.replace(versions[-1], archived_at=now)
        return versions[-1]


@dataclass(frozen=True)
class FakeSettings:
    """``shared.ports.Settings`` with the values the unit tests assume (infra/settings.py's defaults elsewhere)."""

    dispatch_claim_lease_seconds: int = 20
    dispatch_max_attempts: int = 5
    dispatch_lookup_horizon_seconds: int = 600
    telnyx_webhook_url: str = "https://gw.example/webhooks/telnyx"
    telnyx_public_key: str = ""
    webhook_signing_key: str = ""
    media_trusted_origins: tuple[str, ...] = ()
    media_allowed_hosts: tuple[str, ...] = ()
    media_bucket: str = ""
    media_max_bytes: int = 1_048_576
    inbound_media_hosts: tuple[str, ...] = ()
    sweep_queued_after_seconds: int = 300
    sweep_final_after_seconds: int = 259200
    batch_legs_per_second: float = 10.0
    twilio_webhook_url: str = "https://gw.example/webhooks/twilio"
    twilio_auth_token: str = ""
    twilio_account_sid: str = ""
    carrier_weights: dict[str, int] = field(default_factory=lambda: {"telnyx": 100})
    carrier_error_burst: tuple[int, int] = (50, 60)
    link_base_url: str = "https://gw.example"


class FakeRuntime:
    def __init__(self, clock: FixedClock, *, max_attempts: int = 5, lease_seconds: int = 20,
                 horizon_seconds: int = 600) -> None:
        self.clock = clock
        self.legs = FakeLegs()
        self.queue = FakeQueue()
        self.provider = FakeProvider()
        self.media = FakeMedia()
        self.accounts = FakeAccounts()
        self.limits = FakeLimits()
        self.batches = FakeBatches()
        self.carriers = FakeCarriers()
        self.links = FakeLinks()
        self.templates = FakeTemplates()
        self.providers: dict[str, FakeProvider] = {"telnyx": self.provider}
        self.settings = FakeSettings(dispatch_max_attempts=max_attempts, dispatch_claim_lease_seconds=lease_seconds,
                                     dispatch_lookup_horizon_seconds=horizon_seconds)

    def now(self) -> dt.datetime:
        return self.clock.now()

    def carrier(self, name: str) -> FakeProvider:
        return self.providers.setdefault(name, FakeProvider())

    def post_vetted(self, vetted: VettedUrl, *, content: bytes, headers: dict[str, str], timeout: float) -> int:
        raise NotImplementedError("no unit test calls a customer webhook")

    def resolver(self, host: str, port: int) -> list[str]:
        raise NotImplementedError("no unit test resolves a host")

    def concurrently(self, *calls: Callable[[], Any]) -> list[Any]:
        raise NotImplementedError("no unit test through FakeRuntime runs calls concurrently (test_cancel does its own)")


def _as_ports(rt: FakeRuntime) -> Runtime:
    """Never called: mypy checks that each fake satisfies its port, and FakeRuntime the whole Runtime."""
    legs: LegStore = rt.legs
    queue: TaskQueue = rt.queue
    provider: Provider = rt.provider
    media: MediaStore = rt.media
    accounts: AccountStore = rt.accounts
    limits: LimitStore = rt.limits
    batches: BatchStore = rt.batches
    carriers: CarrierStore = rt.carriers
    links: LinkStore = rt.links
    templates: TemplateStore = rt.templates
    del legs, queue, provider, media, accounts, limits, batches, carriers, links, templates
    return rt
