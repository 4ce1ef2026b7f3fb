"""Soak: 100 legs across every outcome row, with duplicate task deliveries and replayed provider reports
injected. Every leg ends terminal, the provider sends exactly what it should, and no history regresses.
Nothing here asserts how long it took: speed is bench/'s business."""

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from infra import collections as C
from shared.rules.status import Status, is_final
from tests.conftest import describe_settlement, wait_for
from tools.telnyx_sim import sign

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack

# Five groups of twenty (the fault-injection test covers the larger, killed bursts).
NPAS = ["212", "213", "312", "415", "617"]
# Two of every row's ending per group of 20: delivered x8, then each special row.
ENDINGS = [0, 11, 22, 33, 44, 55, 66, 79, 80, 84, 85, 89, 90, 92, 93, 95, 96, 97, 98, 99]
REJECTED = {90, 91, 92}
ORDER = [Status.PENDING, Status.QUEUED, Status.SCHEDULED, Status.SENDING, Status.SENT, Status.DELIVERED]


def _rank(status: str) -> int:
    status = Status(status)
    return len(ORDER) if status not in ORDER else ORDER.index(status)


def test_soak_every_leg_terminal_one_send_each_no_regressions(env, figures):
    numbers = [f"+1{npa}55501{xx:02d}" for npa in NPAS for xx in ENDINGS]
    legs: list[str] = []
    for npa in NPAS:
        group = [n for n in numbers if n.startswith(f"+1{npa}")]
        response = env.api.post("/api/v1/messages/group", json={"to": group, "body": f"soak {npa}",
                                                                  "media_urls": [env.sample_media_url]})
        assert response.status_code == 200, response.text
        legs += [m["message_id"] for m in response.json()["messages"]]
    assert len(legs) == len(NPAS) * len(ENDINGS)

    # Duplicate task deliveries: every leg's task delivered once more, concurrently with the real one.
    dispatch = env.stack.urls["function:dispatch"]

    def duplicate(message_id):
        return httpx.post(dispatch, content=json.dumps({"message_id": message_id}), timeout=30,
                          headers={"Content-Type": "application/json", "X-CloudTasks-TaskRetryCount": "0"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(duplicate, legs))
    # 2xx, including every routine wait; 429 is the provider's own rate limit (96-97); 503 storage contention.
    assert {a.status_code for a in answers} <= {200, 429, 503}, {a.status_code for a in answers}

    def unsettled():
        snaps = env.store.db.collection(C.MESSAGES).stream()
        return [s.id for s in snaps if s.get("status") in ("pending", "queued", "scheduled", "sending")]

    wait_for(lambda: not unsettled(), 60, "every leg past sending")

    # Replayed provider reports: every recorded event posted again, signed, with its original id. Each
    # accepted leg gets message.sent and message.finalized, but 99 never a final report; 90-92 get none. An
    # event is recorded when it changed its leg: every final report does (message.sent usually does not:
    # dispatch has recorded the leg sent already), so once those legs are final their reports are recorded.
    per_group = sum(0 if xx in REJECTED else 1 if xx == 99 else 2 for xx in ENDINGS)
    finals_per_group = sum(1 for xx in ENDINGS if xx not in REJECTED and xx != 99)

    def waiting() -> list[tuple[str, str, bool, object]]:
        docs = [env.leg_doc(message_id) or {} for message_id in legs]
        reported = [d for d in docs if int(d["to"][-2:]) not in REJECTED and int(d["to"][-2:]) != 99]
        return [(d["to"], d["status"], bool(d.get("final"))) for d in reported
                if not is_final(d["status"], bool(d.get("final")))]

    try:
        wait_for(lambda: not waiting(), 60, "every final provider report applied")
    except AssertionError:
        raise AssertionError(f"final reports not applied: {waiting()[:10]}") from None
    events = [snap.to_dict() | {"id": snap.id} for snap in env.store.db.collection(C.PROVIDER_EVENTS).stream()]
    assert len(NPAS) * finals_per_group <= len(events) <= len(NPAS) * per_group
    url = env.stack.urls["gateway"] + "/webhooks/telnyx"

    def replay(event):
        body = json.dumps({"data": {"record_type": "event", "id": event["id"], "event_type": event["event_type"],
                                    "occurred_at": "2026-01-01T00:00:00Z",
                                    "payload": {"id": event["provider_id"], "to": [{"status": "queued"}]}}}).encode()
        ts = str(int(time.time()))
        return httpx.post(url, content=body, timeout=30, headers={
            "Content-Type": "application/json", "telnyx-timestamp": ts,
            "telnyx-signature-ed25519": sign(env.stack.sim_private_key, ts, body)})

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(replay, events))
    assert {r.json()["outcome"] for r in replies} <= {"duplicate", "unknown message"}

    # Legs the provider never finalises (xx=99) are closed by the sweeper after its window (run here, on a
    # clock past the window, rather than sleeping through it).
    from infra.runtime import Runtime
    from infra.settings import settings
    from shared.ports import FixedClock
    from shared.services.sweeping import sweep

    rt = Runtime(clock=FixedClock(dt.datetime.now(dt.UTC)
                                  + dt.timedelta(seconds=env.stack.config.sweep_final_after_seconds + 1)))
    rt.settings = settings.__wrapped__()
    assert sweep(rt)["closed"] == len(NPAS) * ENDINGS.count(99)

    sent_by_provider = {m["to"] if isinstance(m["to"], str) else m["to"][0]: 0 for m in env.sim_messages()}
    for m in env.sim_messages():
        sent_by_provider[m["to"] if isinstance(m["to"], str) else m["to"][0]] += 1
    for message_id in legs:
        leg = env.leg_doc(message_id)
        assert is_final(leg["status"], leg["final"]), (leg["to"], leg["status"])
        xx = int(leg["to"][-2:])
        assert sent_by_provider.get(leg["to"], 0) == (0 if xx in REJECTED else 1), leg["to"]
        ranks = [_rank(h["to"]) for h in leg["history"]]
        assert ranks == sorted(ranks), (leg["to"], [h["to"] for h in leg["history"]])
        entered = [h for h in leg["history"] if h["to"] == leg["status"] and h["from"] != leg["status"]]
        assert len(entered) == 1, (leg["to"], leg["history"])  # entered its status exactly once
    assert sum(sent_by_provider.values()) == len(legs) - len(NPAS) * sum(1 for xx in ENDINGS if xx in REJECTED)
    figures(describe_settlement("soak", env, legs, env.stack.lookup_horizon_seconds()))
