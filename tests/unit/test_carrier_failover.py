"""Carrier failover and routing (issue 22), pure and through the fake runtime. Expected values come from the
rules as the issue states them:

- a leg that fails with a transient or permanent carrier error moves, once, to the other carrier and that
  carrier's sender, and is sent again at once; an ambiguous attempt never moves before absence is proven; an
  opt-out never moves; a leg that moved once does not move again;
- a request's sender decides its carrier (a number is hosted at one carrier); a pin must agree with it;
- with one carrier configured, routing reads nothing and counts nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest

from shared.carriers.provider import Kind, Lookup, LookupState, Outcome
from shared.ports import FixedClock
from shared.rules.errors import ApiError
from shared.rules.records import SenderCapabilities, Tenant
from shared.rules.routing import CarrierHealth
from shared.rules.status import SendState, Status
from shared.services import carriers
from shared.services.carriers import Route
from shared.services.dispatch_steps import Action, record_step
from tests.unit.fakes import FakeRuntime, FakeSettings
from tests.unit.legs import T0, at, claimed

MAX = 5
TWILIO = Route("twilio", "+18335550177")
HORIZON = dt.timedelta(seconds=600)


@pytest.mark.parametrize("outcome", [Outcome(Kind.TRANSIENT, http_status=503, code="10007"),
                                     Outcome(Kind.TRANSIENT, http_status=429, code="10011"),
                                     Outcome(Kind.PERMANENT, http_status=400, code="40002")])
def test_a_transient_or_permanent_refusal_moves_the_leg_to_the_other_carrier_and_sends_again(outcome):
    before = claimed()
    decision = record_step(before, outcome, before.claimed_at, at(1), MAX, HORIZON, alternative=TWILIO)
    after = decision.after
    assert decision.result is not None and decision.result.action is Action.AGAIN
    assert after is not None
    assert (after.carrier, after.from_, after.carrier_failed_over_from) == ("twilio", "+18335550177", "telnyx")
    assert (after.status, after.send_state) == (Status.SENDING, SendState.RETRYABLE)
    assert decision.refund_micros == 0 and after.error_code is None  # not failed: it goes on
    assert "failing over from telnyx to twilio" in after.history[-1].cause


def test_without_an_alternative_a_refusal_ends_or_retries_on_the_same_carrier():
    before = claimed()
    permanent = record_step(before, Outcome(Kind.PERMANENT, http_status=400, code="40002"), before.claimed_at,
                            at(1), MAX, HORIZON, alternative=None)
    assert permanent.after is not None and permanent.after.status is Status.FAILED
    assert permanent.after.carrier == "telnyx"
    transient = record_step(before, Outcome(Kind.TRANSIENT, http_status=503), before.claimed_at, at(1), MAX,
                            HORIZON, alternative=None)
    assert transient.result is not None and transient.result.action is Action.FOLLOW_UP
    assert transient.after is not None and transient.after.carrier == "telnyx"


def test_an_ambiguous_attempt_never_moves_before_absence_is_proven():
    before = claimed()
    decision = record_step(before, Outcome(Kind.AMBIGUOUS, detail="read timeout"), before.claimed_at, at(1), MAX,
                           HORIZON, alternative=TWILIO)
    assert decision.after is not None and decision.after.carrier == "telnyx"
    assert decision.after.send_state is SendState.AMBIGUOUS
    # absent, but asked before the horizon: still no move
    waiting = decision.after.with_(send_state=SendState.IN_FLIGHT, claimed_at=at(5))
    early = record_step(waiting, Lookup(LookupState.ABSENT), at(5), at(6), MAX, HORIZON, alternative=TWILIO)
    assert early.after is not None and early.after.carrier == "telnyx"
    # absent past the horizon after the attempt: proven, and it moves
    late = waiting.with_(claimed_at=at(700))
    proven = record_step(late, Lookup(LookupState.ABSENT), at(700), at(701), MAX, HORIZON, alternative=TWILIO)
    assert proven.result is not None and proven.result.action is Action.AGAIN
    assert proven.after is not None and (proven.after.carrier, proven.after.carrier_failed_over_from) == \
        ("twilio", "telnyx")


def test_an_opt_out_never_moves():
    before = claimed()
    decision = record_step(before, Outcome(Kind.OPT_OUT, http_status=409, code="40300"), before.claimed_at, at(1),
                           MAX, HORIZON, alternative=TWILIO)
    assert decision.after is not None and decision.after.status is Status.FAILED
    assert decision.after.carrier == "telnyx" and decision.opt_out == before.to


# -- the service: alternative() and route() ----------------------------------------------------------------
def _tenant(**senders: str) -> Tenant:
    return Tenant(id="tnt_a", default_from="+18005551234",
                  senders={number: SenderCapabilities(sms=True, mms=True, carrier=carrier)
                           for number, carrier in senders.items()})


def _runtime(twilio: bool, tenant: Tenant) -> FakeRuntime:
    rt = FakeRuntime(FixedClock(T0))
    rt.settings = FakeSettings(twilio_account_sid="AC1" if twilio else "",
                               carrier_weights={"telnyx": 100, "twilio": 0})

    class Accounts:
        def get_tenant(self, tenant_id: str, *, balance: bool = True) -> Tenant:
            return tenant

    rt.accounts = Accounts()  # type: ignore[assignment]
    return rt


BOTH = {"+18005551234": "telnyx", "+18335550177": "twilio"}


def test_the_alternative_is_the_other_carrier_with_a_sender_there_once():
    tenant = _tenant(**BOTH)
    rt = _runtime(True, tenant)
    leg = claimed()
    assert carriers.alternative(rt, leg, "transient") == TWILIO
    assert carriers.alternative(rt, leg, "permanent") == TWILIO
    assert carriers.alternative(rt, leg, "ambiguous") is None
    assert carriers.alternative(rt, leg, "opt_out") is None
    assert carriers.alternative(rt, leg.with_(carrier="twilio", carrier_failed_over_from="telnyx"), "transient") \
        is None
    # no sender at the other carrier, or no other carrier configured: stay
    assert carriers.alternative(_runtime(True, _tenant(**{"+18005551234": "telnyx"})), leg, "transient") is None
    assert carriers.alternative(_runtime(False, tenant), leg, "transient") is None


def test_an_mms_fails_over_only_to_a_sender_whose_kind_takes_its_media():
    from shared.rules.records import StoredMedia

    def tenant(kind: str) -> Tenant:
        return Tenant(id="tnt_a", default_from="+14155550100", senders={
            "+14155550100": SenderCapabilities(sms=True, mms=True, carrier="telnyx", kind="long_code"),
            "+18335550177": SenderCapabilities(sms=True, mms=True, carrier="twilio", kind=kind)})

    leg = claimed().with_(from_="+14155550100", channel="mms")
    big = leg.with_(media=(StoredMedia("media/t/a", "image/jpeg", 700_000),))  # under 1 MB, over 600 KB
    small = leg.with_(media=(StoredMedia("media/t/b", "image/jpeg", 500_000),))
    assert carriers.alternative(_runtime(True, tenant("toll_free")), big, "transient") is None
    assert carriers.alternative(_runtime(True, tenant("toll_free")), small, "transient") == TWILIO
    assert carriers.alternative(_runtime(True, tenant("long_code")), big, "transient") == TWILIO


def test_a_sender_decides_the_carrier_and_a_pin_must_agree():
    rt = _runtime(True, _tenant(**BOTH))
    tenant = _tenant(**BOTH)
    assert carriers.route(rt, tenant, "+18335550177", None, "mms", "+14155550100") == TWILIO
    assert carriers.route(rt, tenant, None, "twilio", "mms", "+14155550100") == TWILIO
    assert carriers.route(rt, tenant, None, None, "mms", "+14155550100") == Route("telnyx", "+18005551234")
    with pytest.raises(ApiError) as refused:
        carriers.route(rt, tenant, "+18005551234", "twilio", "mms", "+14155550100")
    assert refused.value.details[0]["field"] == "carrier"
    with pytest.raises(ApiError):  # not configured
        carriers.route(_runtime(False, tenant), tenant, None, "twilio", "mms", "+14155550100")


def test_an_open_circuit_routes_around_its_carrier():
    tenant = _tenant(**BOTH)
    rt = _runtime(True, tenant)
    rt.carriers.known["telnyx"] = CarrierHealth(carrier="telnyx", healthy=False, penalty=10, tripped=True)
    assert {carriers.route(rt, tenant, None, None, "mms", f"+1415555{i:04d}").carrier for i in range(50)} == \
        {"twilio"}


def test_with_one_carrier_nothing_is_read_or_counted():
    tenant = _tenant(**BOTH)
    rt = _runtime(False, tenant)
    rt.carriers.known["telnyx"] = CarrierHealth(carrier="telnyx", healthy=False, tripped=True)
    assert carriers.route(rt, tenant, None, None, "mms", "+14155550100") == Route("telnyx", "+18005551234")
    carriers.count(rt, "telnyx", "errors", T0)
    assert rt.carriers.counted == [] and carriers.assess(rt) == []


def test_the_health_job_opens_the_circuit_on_an_error_burst_and_logs_why():
    rt = _runtime(True, _tenant(**BOTH))
    rt.carriers.error_times["telnyx"] = [T0 - dt.timedelta(seconds=s) for s in range(51)]  # 51 in 60 s
    changes = carriers.assess(rt)
    assert [c.carrier for c in changes] == ["telnyx"]
    health = rt.carriers.known["telnyx"]
    assert (health.healthy, health.tripped, health.penalty) == (False, True, 10)
    assert health.reason == "errors: 51 in 60 s"
    rt.carriers.error_times["telnyx"] = rt.carriers.error_times["telnyx"][:50]  # 50 is not a burst
    rt.carriers.known.clear()
    assert carriers.assess(rt) == []
