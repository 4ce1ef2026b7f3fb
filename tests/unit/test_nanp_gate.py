"""MMS goes to US/Canada numbers only; SMS goes anywhere priced. The gate itself (shared/rules/gates.py
``number_gate``), and the single and group sends that apply it, driven through shared/services/sending.py over
in-memory ports: a single send is an MMS when it carries media, a group send is an MMS whatever it carries.

Every destination below is priced for both channels, so a recipient the gate wrongly lets through is
accepted, not refused for want of a price."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from shared.api.models import GroupRequest, SendRequest
from shared.ports import AcceptDecision, FirstRound, IdempotentAnswer
from shared.rules import gates
from shared.rules.errors import ErrorCode
from shared.rules.records import Group, Leg, Rates, SenderCapabilities, Tenant
from shared.rules.status import Status
from shared.services.sending import send_group, send_single

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
US, CANADA = "+14155550101", "+16135550123"
FRANCE = "+33612345678"
JAMAICA = "+18762345678"  # a NANP member, but not US/Canada: the contract's MMS is US/Canada only
SENDER = "+18005551234"
PRICED = Rates(sms_micros=5_000, mms_micros=20_000)
PRICES = {"US": PRICED, "CA": PRICED, "FR": PRICED, "JM": PRICED}
TENANT = Tenant(id="tnt_gate", balance_micros=10_000_000, default_from=SENDER,
                senders={SENDER: SenderCapabilities(sms=True, mms=True)})
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()

MMS_NANP_ONLY = "MMS_NANP_ONLY"


# -- the gate --------------------------------------------------------------------------------------
@pytest.mark.parametrize("number", [US, CANADA])
def test_an_mms_to_the_us_or_canada_passes(number):
    assert gates.number_gate(gates.parse(number), "mms") is None


@pytest.mark.parametrize("number", [FRANCE, JAMAICA])
def test_an_mms_elsewhere_is_refused(number):
    assert gates.number_gate(gates.parse(number), "mms") is ErrorCode.MMS_NANP_ONLY


@pytest.mark.parametrize("number", [US, CANADA, FRANCE, JAMAICA])
def test_an_sms_passes_the_gate_wherever_it_goes(number):
    assert gates.number_gate(gates.parse(number), "sms") is None


# -- the sends that apply it -----------------------------------------------------------------------
class Accounts:
    def first_round(self, tenant_id: str, api_key: str | None, numbers: Any, countries: Any,
                    shard_key: str | None = None) -> FirstRound:
        return FirstRound(tenant=TENANT, version="v1", opted_out=set(), prices=dict(PRICES))


class Limits:
    def claim(self, key: str, limit: int, window_seconds: int, now: dt.datetime) -> tuple[int | None, int]:
        return 0, 0


class Legs:
    """Commits what the accept decides, and keeps it for the test to read."""

    def __init__(self) -> None:
        self.committed: list[Leg] = []

    def accept_one(self, leg: Leg, tenant: Tenant, version: Any, decide: Callable[[Tenant, list[Leg]], AcceptDecision],
                   answer: Callable[[list[Leg]], IdempotentAnswer | None]) -> list[Leg]:
        self.committed = decide(tenant, [leg]).legs
        return self.committed

    def accept(self, group: Group | None, legs: list[Leg], decide: Callable[[Tenant, list[Leg]], AcceptDecision],
               answer: Callable[[list[Leg]], IdempotentAnswer | None], version: Any = None) -> list[Leg]:
        self.committed = decide(TENANT, legs).legs
        return self.committed


class Queue:
    def enqueue_dispatch_many(self, tasks: Any) -> dict[str, Exception | None]:
        return {task.message_id: None for task in tasks}

    def enqueue_fanout(self, name: str, tasks: Any) -> None:
        pass

    def enqueue_notify(self, event_id: str, message_id: str, **_: Any) -> None:
        pass


class Media:
    def prepare(self, tenant_id: str, urls: Any, uploads: Any, policy: Any, limit: Any = None) -> list[dict]:
        return []


class Settings:
    media_trusted_origins: tuple[str, ...] = ()
    media_allowed_hosts: tuple[str, ...] = ()
    media_bucket = "media-bucket"
    media_max_bytes = 1_048_576
    twilio_account_sid = ""  # Telnyx alone: routing reads nothing


class Runtime:
    def __init__(self) -> None:
        self.accounts, self.limits, self.legs = Accounts(), Limits(), Legs()
        self.queue, self.media, self.settings = Queue(), Media(), Settings()

    def now(self) -> dt.datetime:
        return T0

    def concurrently(self, *calls: Callable[[], Any]) -> list[Any]:
        return [call() for call in calls]

    def resolver(self, host: str, port: int) -> list[str]:
        raise AssertionError("these requests name no URL")


def single(to: str, *, media: bool) -> Leg:
    rt = Runtime()
    extra: dict[str, Any] = {"media": [{"content_type": "image/png", "blob": PNG}]} if media else {}
    send_single(rt, TENANT, SendRequest.model_validate({"to": to, "body": "hi", **extra}), "req_gate")  # type: ignore[arg-type]
    [leg] = rt.legs.committed
    return leg


def group(*to: str) -> dict[str, Leg]:
    rt = Runtime()
    send_group(rt, TENANT, GroupRequest.model_validate({"to": list(to), "body": "hi"}), "req_gate")  # type: ignore[arg-type]
    assert len(rt.legs.committed) == len(to)
    return {leg.to: leg for leg in rt.legs.committed}


@pytest.mark.parametrize("to", [FRANCE, JAMAICA])
def test_a_single_send_with_media_outside_the_us_and_canada_is_refused(to):
    leg = single(to, media=True)
    assert (leg.channel, leg.status, leg.error_code) == ("mms", Status.FAILED, MMS_NANP_ONLY)


@pytest.mark.parametrize("to", [US, CANADA])
def test_a_single_send_with_media_to_the_us_or_canada_is_accepted(to):
    leg = single(to, media=True)
    assert (leg.channel, leg.status, leg.error_code) == ("mms", Status.QUEUED, None)


@pytest.mark.parametrize("to", [US, FRANCE, JAMAICA])
def test_a_single_send_without_media_is_an_sms_that_goes_anywhere_priced(to):
    leg = single(to, media=False)
    assert (leg.channel, leg.status, leg.error_code) == ("sms", Status.QUEUED, None)


def test_a_group_send_is_mms_and_refuses_only_its_recipients_outside_the_us_and_canada():
    legs = group(US, FRANCE, CANADA, JAMAICA)  # no media: a group send is the group MMS product all the same
    assert {leg.channel for leg in legs.values()} == {"mms"}
    assert {to: (leg.status, leg.error_code) for to, leg in legs.items()} == {
        US: (Status.QUEUED, None), CANADA: (Status.QUEUED, None),
        FRANCE: (Status.FAILED, MMS_NANP_ONLY), JAMAICA: (Status.FAILED, MMS_NANP_ONLY)}
