"""The accept's decision (shared/services/sending.py ``gate``), pure: per leg, in order, the daily quota and the
balance; an accepted leg is debited and counted, a failed one is neither."""

from __future__ import annotations

from shared.rules.records import Tenant
from shared.rules.status import Status
from shared.services.sending import Recipient, gate
from tests.unit.legs import T0, leg

S = Status
MMS = 20_000  # tools/admin.py DEFAULT_PRICING: one MMS to the US
DAY = "2026-03-01"  # T0's UTC day


def _legs(n: int, *, errors: dict[int, str] | None = None, price: int = MMS):
    from shared.rules.errors import ErrorCode

    legs, recipients = [], {}
    for i in range(n):
        message_id = f"msg_g{i}"
        legs.append(leg(S.PENDING, id=message_id, leg_key=f"group-mms:grp:{i}", to=f"+1415555010{i}",
                        price_micros=0))
        error = ErrorCode((errors or {}).get(i)) if (errors or {}).get(i) else None
        recipients[message_id] = Recipient(raw=f"+1415555010{i}", message_id=message_id, leg_key=f"k{i}",
                                           e164=f"+1415555010{i}", price_micros=0 if error else price, error=error)
    return legs, recipients


def test_every_leg_accepted_and_debited():
    legs, recipients = _legs(3)
    decided = gate(legs, recipients, Tenant(id="t", balance_micros=100_000), S.QUEUED, T0)
    assert [leg.status for leg in decided.legs] == [S.QUEUED] * 3
    assert [leg.price_micros for leg in decided.legs] == [MMS] * 3
    assert decided.balance_micros == 100_000 - 3 * MMS
    assert (decided.usage_day, decided.usage_count) == (DAY, 3)


def test_scheduled_target():
    legs, recipients = _legs(1)
    decided = gate(legs, recipients, Tenant(id="t", balance_micros=MMS), S.SCHEDULED, T0)
    assert decided.legs[0].status is S.SCHEDULED and decided.balance_micros == 0


def test_balance_runs_out_mid_list():
    legs, recipients = _legs(4)
    decided = gate(legs, recipients, Tenant(id="t", balance_micros=2 * MMS + MMS // 2), S.QUEUED, T0)
    assert [leg.status for leg in decided.legs] == [S.QUEUED, S.QUEUED, S.FAILED, S.FAILED]
    assert [leg.error_code for leg in decided.legs] == [None, None, "INSUFFICIENT_BALANCE", "INSUFFICIENT_BALANCE"]
    assert [leg.price_micros for leg in decided.legs] == [MMS, MMS, 0, 0]
    assert decided.balance_micros == MMS // 2
    assert decided.usage_count == 2


def test_failed_recipients_are_not_charged_or_counted():
    legs, recipients = _legs(3, errors={1: "RECIPIENT_OPTED_OUT"})
    decided = gate(legs, recipients, Tenant(id="t", balance_micros=MMS * 2), S.QUEUED, T0)
    assert [leg.status for leg in decided.legs] == [S.QUEUED, S.FAILED, S.QUEUED]
    assert decided.legs[1].error_code == "RECIPIENT_OPTED_OUT" and decided.legs[1].price_micros == 0
    assert decided.balance_micros == 0  # the opted-out one did not take the third leg's money
    assert decided.usage_count == 2


def test_daily_quota_counts_todays_use_only():
    legs, recipients = _legs(3)
    today = Tenant(id="t", balance_micros=10 * MMS, daily_quota=5, usage_day=DAY, usage_count=4)
    decided = gate(legs, recipients, today, S.QUEUED, T0)
    assert [leg.status for leg in decided.legs] == [S.QUEUED, S.FAILED, S.FAILED]
    assert [leg.error_code for leg in decided.legs][1:] == ["QUOTA_EXCEEDED"] * 2
    assert (decided.usage_count, decided.balance_micros) == (5, 9 * MMS)

    yesterday = Tenant(id="t", balance_micros=10 * MMS, daily_quota=5, usage_day="2026-02-28", usage_count=5)
    decided = gate(legs, recipients, yesterday, S.QUEUED, T0)
    assert [leg.status for leg in decided.legs] == [S.QUEUED] * 3
    assert (decided.usage_day, decided.usage_count) == (DAY, 3)


def test_quota_failure_does_not_consume_balance_for_later_legs():
    legs, recipients = _legs(2, errors={0: "INVALID_PHONE_NUMBER"})
    decided = gate(legs, recipients, Tenant(id="t", balance_micros=MMS, daily_quota=1), S.QUEUED, T0)
    assert [leg.status for leg in decided.legs] == [S.FAILED, S.QUEUED]
    assert (decided.usage_count, decided.balance_micros) == (1, 0)


def test_a_gate_failure_is_in_the_history():
    legs, recipients = _legs(1)
    decided = gate(legs, recipients, Tenant(id="t", balance_micros=0), S.QUEUED, T0)
    failed = decided.legs[0]
    assert (failed.history[-1].from_, failed.history[-1].to) == ("pending", "failed")
    assert "INSUFFICIENT_BALANCE" in failed.history[-1].cause
    assert failed.error_message
