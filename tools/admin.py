"""The operator's building blocks (tenants, API keys, prices), shared by the admin CLI and the dev seed.

The command line is ``mmsgate-admin`` (``tools/admin_cli.py``); ``python -m tools.admin`` still runs it.
"""

from __future__ import annotations

import sys

from shared.rules import ids
from shared.rules.phone import parse_e164

# USD per SMS segment / per MMS message, in micro-dollars.
DEFAULT_PRICING = {
    "US": {"currency": "USD", "sms_micros": 8_000, "mms_micros": 20_000},
    "CA": {"currency": "USD", "sms_micros": 9_000, "mms_micros": 25_000},
    # SMS reaches any valid number; MMS is NANP-only, so other countries carry no MMS rate.
    "GB": {"currency": "USD", "sms_micros": 40_000},
}


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
    api_key = api_key or ids.new_api_key(tenant_id)
    store.put_api_key(api_key, tenant_id)
    return api_key


def seed_pricing(store) -> None:
    for country, rates in DEFAULT_PRICING.items():
        store.put_pricing(country, rates)


def main(argv: list[str] | None = None) -> int:
    from tools import admin_cli

    print("python -m tools.admin is now mmsgate-admin (tools/admin_cli.py); running it", file=sys.stderr)
    return admin_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
