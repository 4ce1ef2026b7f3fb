"""Operator commands against Firestore (the emulator when FIRESTORE_EMULATOR_HOST is set, else the
project in GOOGLE_CLOUD_PROJECT with Application Default Credentials).

    python -m tools.admin create-tenant --name acme --default-from +18005551234 [--balance 25.00]
    python -m tools.admin create-api-key --tenant tnt_...        # prints the key once; we keep only its hash
    python -m tools.admin revoke-api-key --hash <sha256>
    python -m tools.admin set-webhook --tenant tnt_... --url https://example.com/hooks
    python -m tools.admin webhook-secret --tenant tnt_...        # needs WEBHOOK_SIGNING_KEY
    python -m tools.admin seed-pricing
"""

from __future__ import annotations

import argparse
import json
import sys

from shared import ids
from shared.phone import InvalidNumber, parse_e164

# USD per SMS segment / per MMS message, in micro-dollars.
DEFAULT_PRICING = {
    "US": {"currency": "USD", "sms_micros": 8_000, "mms_micros": 20_000},
    "CA": {"currency": "USD", "sms_micros": 9_000, "mms_micros": 25_000},
    # SMS reaches any valid number; MMS is NANP-only, so other countries carry no MMS rate.
    "GB": {"currency": "USD", "sms_micros": 40_000},
}


def _store():
    from infra.runtime import store

    return store().accounts


def create_tenant(store, *, name: str, default_from: str, senders: dict[str, dict] | None = None,
                  balance_micros: int = 0, rps: int = 10, daily_quota: int | None = None,
                  webhook_url: str | None = None, tenant_id: str | None = None) -> str:
    default_from = parse_e164(default_from)
    senders = senders or {default_from: {"sms": True, "mms": True}}
    tenant_id = tenant_id or ids.new_tenant_id()
    store.put_tenant(tenant_id, {
        "name": name, "default_from": default_from, "senders": senders, "sender_numbers": sorted(senders),
        "balance_micros": balance_micros, "rps": rps, "daily_quota": daily_quota, "webhook_url": webhook_url,
        "disabled": False,
    })
    return tenant_id


def create_api_key(store, tenant_id: str, api_key: str | None = None) -> str:
    api_key = api_key or ids.new_api_key()
    store.put_api_key(api_key, tenant_id)
    return api_key


def seed_pricing(store) -> None:
    for country, rates in DEFAULT_PRICING.items():
        store.put_pricing(country, rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create-tenant")
    p.add_argument("--name", required=True)
    p.add_argument("--default-from", required=True, help="an MMS-capable number the tenant owns (E.164)")
    p.add_argument("--balance", default="0", help="prepaid balance in USD")
    p.add_argument("--rps", type=int, default=10, help="single-send requests per second")
    p.add_argument("--daily-quota", type=int, default=None)
    p.add_argument("--webhook-url", default=None)
    p = sub.add_parser("create-api-key")
    p.add_argument("--tenant", required=True)
    p = sub.add_parser("revoke-api-key")
    p.add_argument("--hash", required=True)
    p = sub.add_parser("set-webhook")
    p.add_argument("--tenant", required=True)
    p.add_argument("--url", required=True)
    p = sub.add_parser("webhook-secret")
    p.add_argument("--tenant", required=True)
    sub.add_parser("seed-pricing")
    args = parser.parse_args(argv)

    store = _store()
    if args.command == "create-tenant":
        try:
            tenant_id = create_tenant(store, name=args.name, default_from=args.default_from,
                                      balance_micros=round(float(args.balance) * 1_000_000), rps=args.rps,
                                      daily_quota=args.daily_quota, webhook_url=args.webhook_url)
        except InvalidNumber as exc:
            parser.error(f"--default-from: {exc}")
        print(json.dumps({"tenant_id": tenant_id}))
    elif args.command == "create-api-key":
        if store.get_tenant(args.tenant) is None:
            parser.error(f"no tenant {args.tenant}")
        key = create_api_key(store, args.tenant)
        print(json.dumps({"api_key": key, "note": "shown once; only its SHA-256 is stored"}))
    elif args.command == "revoke-api-key":
        store.revoke_api_key(args.hash)
        print(json.dumps({"revoked": args.hash}))
    elif args.command == "set-webhook":
        store.put_tenant(args.tenant, {"webhook_url": args.url})
        print(json.dumps({"tenant_id": args.tenant, "webhook_url": args.url}))
    elif args.command == "webhook-secret":
        from infra.settings import settings
        from shared.signatures import tenant_secret

        print(json.dumps({"tenant_id": args.tenant,
                          "secret": tenant_secret(settings().webhook_signing_key, args.tenant)}))
    elif args.command == "seed-pricing":
        seed_pricing(store)
        print(json.dumps({"seeded": sorted(DEFAULT_PRICING)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
