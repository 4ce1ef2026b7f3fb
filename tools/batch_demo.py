"""A batch send against a running ``make dev``: 1,000 recipients at 600 a minute, followed until every leg is
final (or canceled part-way with ``--cancel-after``), then paged through by batch and status.

    .venv/bin/python -m tools.batch_demo [--recipients 1000] [--per-minute 600] [--cancel-after SECONDS]

It reads the gateway and the dev API key from ``.dev/stack.json`` and prints what it sees as it goes: the 202,
the spread of the legs' turns, the progress by status every few seconds, what search returns by ``batch_id``
and ``status``, and the balance before and after (every canceled leg refunded).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

# Area codes the simulator's fictional numbers use (+1 NPA 555-01XX; its outcomes 00-79 are delivered).
AREA_CODES = ("415", "212", "310", "646", "202", "617", "305", "206", "312", "213", "404", "512", "602", "702",
              "718", "801", "303", "503", "469", "615", "704", "713", "720", "757", "763", "781", "786", "804",
              "813", "817", "818", "832", "847", "856", "857", "858", "860", "863", "864", "865")
DELIVERED_ENDINGS = 80


def deliverable_numbers(n: int) -> list[str]:
    """``n`` distinct numbers the simulator delivers (up to 3,200)."""
    if n > DELIVERED_ENDINGS * len(AREA_CODES):
        raise ValueError(f"at most {DELIVERED_ENDINGS * len(AREA_CODES)} distinct deliverable numbers")
    return [f"+1{AREA_CODES[i // DELIVERED_ENDINGS]}55501{i % DELIVERED_ENDINGS:02d}" for i in range(n)]


def _pages(api: httpx.Client, **params: str) -> int:
    count, cursor, pages = 0, None, 0
    while True:
        body = api.get("/api/v1/messages", params={**params, "limit": "100", **({"cursor": cursor} if cursor
                                                                                 else {})}).json()
        count, pages, cursor = count + len(body["data"]), pages + 1, body["pagination"]["next_cursor"]
        if cursor is None:
            return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1_000)
    parser.add_argument("--per-minute", type=int, default=600)
    parser.add_argument("--cancel-after", type=float, default=None, help="cancel the batch after this many seconds")
    parser.add_argument("--stack-file", default=".dev/stack.json")
    args = parser.parse_args(argv)
    info = json.loads(Path(args.stack_file).read_text())
    api = httpx.Client(base_url=info["gateway"], headers={"X-API-Key": info["api_key"]}, timeout=60)
    balance = _balance(info)
    started = time.monotonic()
    response = api.post("/api/v1/messages/batch", json={
        "to": deliverable_numbers(args.recipients), "body": "batch demo",
        "sending_speed": {"amount": args.per_minute, "time_unit": "minute"}, "campaign_ref": "demo"})
    print(f"POST /api/v1/messages/batch -> {response.status_code} in {time.monotonic() - started:.2f} s")
    if response.status_code != 202:
        print(response.text)
        return 1
    batch = response.json()["data"]
    print(json.dumps({k: batch[k] for k in ("id", "total", "accepted", "rejected", "reserved", "first_dispatch_at",
                                            "last_dispatch_at")}, indent=1))
    canceled = False
    while True:
        time.sleep(5)
        data = api.get(f"/api/v1/batches/{batch['id']}").json()["data"]
        print(f"{time.monotonic() - started:6.1f} s  {data['status']:9}  {data['progress']}")
        if args.cancel_after is not None and not canceled and time.monotonic() - started >= args.cancel_after:
            asked = time.monotonic()
            answer = api.delete(f"/api/v1/batches/{batch['id']}")
            print(f"DELETE /api/v1/batches/{batch['id']} -> {answer.status_code} in {time.monotonic() - asked:.2f} s: "
                  f"{answer.json()['data']['progress']}")
            canceled = True
        if data["progress"]["final"] == data["total"]:
            break
        if time.monotonic() - started > 3_600:
            print("gave up after an hour")
            return 1
    for status in sorted(data["progress"]["by_status"]):
        print(f"search batch_id={batch['id']} status={status}: {_pages(api, batch_id=batch['id'], status=status)}")
    print(f"search batch_id={batch['id']}: {_pages(api, batch_id=batch['id'])} messages")
    after = _balance(info)
    print(f"balance {balance / 1e6:.4f} -> {after / 1e6:.4f} USD (reserved {batch['reserved']['amount']}, "
          f"charged {(balance - after) / 1e6:.4f})")
    return 0


def _balance(info: dict) -> int:
    from tools.seed import apply_env

    apply_env(info["env"])
    from infra.runtime import store

    tenant = store().accounts.get_tenant(info["tenant_id"])
    return tenant.balance_micros if tenant else 0


if __name__ == "__main__":
    sys.exit(main())
