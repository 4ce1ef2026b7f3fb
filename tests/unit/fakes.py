"""In-memory ports (shared/ports.py) for driving a service end to end without the stack."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

from shared.carriers.provider import Lookup, LookupState, OutboundMessage, Outcome
from shared.ports import Decision, DispatchTask, FixedClock, Mutation
from shared.rules.records import Leg, ProviderEventRecord

T = TypeVar("T")


@dataclass
class FakeLegs:
    legs: dict[str, Leg] = field(default_factory=dict)
    refunds: list[tuple[str, int]] = field(default_factory=list)
    opt_outs: list[tuple[str, str]] = field(default_factory=list)
    events: set[str] = field(default_factory=set)
    opted_out: set[tuple[str, str]] = field(default_factory=set)  # (tenant, number) on the opt-out list

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

    def mutate_unless_opted_out(self, message_id: str, decide: Callable[[Leg | None, bool], Decision[T]]
                                ) -> Mutation[T]:
        leg = self.legs.get(message_id)
        opted_out = leg is not None and (leg.tenant_id, leg.to) in self.opted_out
        return self.mutate(message_id, lambda current: decide(current, opted_out))


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


@dataclass
class FakeProvider:
    answers: list[Outcome] = field(default_factory=list)
    lookups: list[Lookup] = field(default_factory=list)
    sent: list[OutboundMessage] = field(default_factory=list)
    asked: list[tuple[OutboundMessage, dt.datetime]] = field(default_factory=list)

    def send(self, message: OutboundMessage) -> Outcome:
        self.sent.append(message)
        return self.answers.pop(0)

    def find(self, message: OutboundMessage, since: dt.datetime) -> Lookup:
        self.asked.append((message, since))
        return self.lookups.pop(0) if self.lookups else Lookup(LookupState.UNKNOWN)


class FakeMedia:
    def signed_urls(self, media: Any, signed_at: dt.datetime | None = None) -> list[str]:
        return [f"https://storage.example/{m['object']}?signed={signed_at.isoformat() if signed_at else ''}"
                for m in media]


class FakeRuntime:
    def __init__(self, clock: FixedClock, *, max_attempts: int = 5, lease_seconds: int = 20,
                 horizon_seconds: int = 600) -> None:
        self.clock = clock
        self.legs = FakeLegs()
        self.queue = FakeQueue()
        self.provider = FakeProvider()
        self.media = FakeMedia()
        self.settings = SimpleNamespace(dispatch_max_attempts=max_attempts, dispatch_claim_lease_seconds=lease_seconds,
                                        dispatch_lookup_horizon_seconds=horizon_seconds,
                                        telnyx_webhook_url="https://gw.example/webhooks/telnyx")

    def now(self) -> dt.datetime:
        return self.clock.now()
