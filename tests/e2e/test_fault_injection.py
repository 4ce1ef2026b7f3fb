"""Fault injection: bursts of legs over every simulator outcome while, in turn, dispatch, the webhook, the
notifier and the Cloud Tasks emulator are SIGKILLed mid-burst and restarted (the webhook stays down long
enough for the provider to give up its reports of unanswered sends). Then the sweeper runs until every leg
is final, and the promises are checked against what the provider and the customer's endpoint saw:

- no leg lost: every accepted recipient ends in one final status;
- no double send: the simulator received each recipient at most once (exactly once unless it refuses it);
- no double charge: the balance fell by exactly one price per message the provider took;
- no status regression in any leg's history;
- every customer event reached the customer's endpoint, under one id per (leg, status).

No assertion is about time; the waits are bounds that fail loudly."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.rules.status import Status
from tests.conftest import describe_settlement, settlement, wait_for

pytestmark = pytest.mark.stack

MMS_PRICE = 20_000  # tools/admin.py seed_pricing: one US MMS (every area code below is a US one)
# Every row of the simulator's outcome table (docs/simulator.md), once per group: 55501XX, and the two lost
# answers of 55503XX that only the carrier's records settle (10: Telnyx has it but never reports it; 60: the
# request died before Telnyx stored it, so dispatch must send it again once the records prove it absent).
ENDINGS = [f"55501{xx:02d}" for xx in (0, 33, 66, 80, 85, 90, 93, 96, 98, 99)] + ["5550310", "5550360"]
REFUSED = {"5550190"}  # the provider refuses these numbers: nothing is sent, the leg is refunded
ORDER = [Status.PENDING, Status.QUEUED, Status.SCHEDULED, Status.SENDING, Status.SENT]
BURSTS = [
    # (component killed mid-burst, seconds it stays down, area codes of the burst's recipients)
    ("dispatch", 1.0, ["201", "202", "203"]),
    ("webhook", 7.0, ["214", "205", "206"]),  # longer than the provider's webhook retries: reports are lost
    ("notifier", 1.0, ["207", "208", "209"]),
    ("tasks", 1.0, ["210", "212", "213"]),
]


def _rank(status: str) -> int:
    """Position in the one-way order of statuses; every terminal status ranks last."""
    s = Status(status)
    return ORDER.index(s) if s in ORDER else len(ORDER)


def _burst(env, client, area_codes: list[str], kill: str, down_for: float, webhook_url: str) -> list[str]:
    """Send one group per area code (all endings) concurrently, killing ``kill`` once half are sent."""
    started = threading.Event()

    def send(npa: str) -> list[str]:
        started.wait(5) if npa != area_codes[0] else None
        recipients = [f"+1{npa}{ending}" for ending in ENDINGS]
        response = client.post("/api/v1/messages/group", json={"to": recipients, "body": f"faults {npa}",
                                                                 "webhook_url": webhook_url},
                               headers={"Idempotency-Key": f"faults-{npa}"})
        if npa == area_codes[0]:
            started.set()
        assert response.status_code == 200, response.text
        return [m["message_id"] for m in response.json()["messages"]]

    with ThreadPoolExecutor(len(area_codes)) as pool:
        futures = [pool.submit(send, npa) for npa in area_codes]
        started.wait(10)
        env.stack.kill(kill)
        time.sleep(down_for)  # a deliberate outage of the burst's chosen length
        env.stack.start_component(kill)
        return [message_id for f in futures for message_id in f.result()]


def test_no_leg_lost_no_double_send_no_double_charge_under_kills(env, receiver, figures):
    tenant_id, api_key = env.new_tenant(balance_micros=100_000_000, rps=100)
    client = env.client(api_key)
    legs: list[str] = []
    for kill, down_for, area_codes in BURSTS:
        legs += _burst(env, client, area_codes, kill, down_for, receiver.url)
    assert len(legs) == len(BURSTS) * 3 * len(ENDINGS) == 144
    # Lost answers settle a lookup horizon after their attempt at the latest (twice: a resend can lose its own).
    horizon = env.stack.lookup_horizon_seconds()

    def unsettled() -> list[dict]:
        reads = [client.get(f"/api/v1/messages/{message_id}").json()["data"] for message_id in legs]
        return [m for m in reads if not m["final"]]

    def all_final() -> bool:
        assert env.stack.sweep()[0] == 200
        return not unsettled()

    wait_for(all_final, 240 + 2 * horizon, "some legs never became final")

    sent = Counter(m["to"] if isinstance(m["to"], str) else m["to"][0] for m in env.sim_messages())
    messages = [client.get(f"/api/v1/messages/{message_id}").json()["data"] for message_id in legs]
    taken = 0
    for m in messages:
        refused = m["to"][-7:] in REFUSED
        expected = 0 if refused else 1
        if m["error_code"] == "PROVIDER_OUTCOME_UNKNOWN":
            # Allowed (at most once): refunded, and the provider has it at most once.
            assert sent[m["to"]] <= 1, (m["to"], sent[m["to"]], m["history"])
            expected = 0
        else:
            assert sent[m["to"]] == expected, (m["to"], sent[m["to"]], m["status"], m["history"])
        taken += expected
        ranks = [_rank(h["to"]) for h in m["history"]]
        assert ranks == sorted(ranks), (m["to"], [h["to"] for h in m["history"]])
        assert m["status"] in {"delivered", "undelivered", "sent", "failed"}
        if refused:
            assert (m["status"], m["error_code"]) == ("failed", "RECIPIENT_OPTED_OUT")
        elif m["error_code"] != "PROVIDER_OUTCOME_UNKNOWN":
            assert m["provider_id"] is not None, m
    _, settled = settlement(env, legs)
    assert settled, "no leg was ever ambiguous: the faults missed the case this test is about"
    figures(describe_settlement("fault injection", env, legs, horizon))

    # One charge per message the provider took, and not one more (refunds for the refused ones).
    assert env.balance(tenant_id) == 100_000_000 - taken * MMS_PRICE

    # Every customer event reached the endpoint; one id per (leg, status).
    def outboxes() -> dict[str, dict]:
        docs = {message_id: env.leg_doc(message_id) for message_id in legs}
        return {eid: {"leg": message_id, **entry} for message_id, doc in docs.items()
                for eid, entry in doc["notifications"].items()}

    def events_settled() -> bool:
        assert env.stack.sweep()[0] == 200
        return all(e["state"] == "delivered" for e in outboxes().values())

    wait_for(events_settled, 120, "some customer events were never delivered")
    expected_events = outboxes()
    assert expected_events, "no leg has an event"
    received = Counter(r["headers"]["webhook-id"] for r in receiver.received if not r["failed"])
    assert set(received) == set(expected_events)
    ids_per_leg_status = Counter((e["leg"], e["status"]) for e in expected_events.values())
    assert max(ids_per_leg_status.values()) == 1
