"""Seeds the local stack: pricing, the dev tenant and its API key, and a sample image in the bucket."""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

from tools.admin import DEFAULT_PRICING, create_api_key, create_tenant

_POOL = ThreadPoolExecutor(max_workers=5, thread_name_prefix="seed")
DEV_API_KEY = "mk_test_devlocal_0000000000000000"
DEV_TENANT_ID = "tnt_dev"
DEV_SENDER = "+18005551234"
DEV_TWILIO_SENDER = "+18335550123"  # the dev tenant's number hosted at Twilio (make dev: tools/twilio_sim)
SAMPLE_OBJECT = "samples/sample.png"


def sample_png(width: int = 64, height: int = 48) -> bytes:
    """A small valid PNG made without an imaging library (a colour gradient)."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 160)) for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def apply_env(env: dict[str, str]) -> None:
    """Point this process's clients at the stack (before any client is built)."""
    os.environ.update(env)


def seed(store, *, api_key: str = DEV_API_KEY, balance_micros: int = 100_000_000, **tenant) -> tuple[str, str]:
    """``store`` is an ``infra.store.Store`` (or its ``accounts``)."""
    store = getattr(store, "accounts", store)
    tenant_id = tenant.pop("tenant_id", DEV_TENANT_ID)
    # Independent writes, at once: the test suite seeds before every stack test.
    writes = [_POOL.submit(store.put_pricing, country, rates) for country, rates in DEFAULT_PRICING.items()]
    writes.append(_POOL.submit(create_tenant, store, tenant_id=tenant_id, name=tenant.pop("name", "dev"),
                               default_from=tenant.pop("default_from", DEV_SENDER), balance_micros=balance_micros,
                               rps=tenant.pop("rps", 50), **tenant))
    writes.append(_POOL.submit(create_api_key, store, tenant_id, api_key))
    for write in writes:
        write.result()
    return tenant_id, api_key


def upload_sample(bucket_name: str, storage_origin: str) -> str:
    from infra.clients import storage

    client = storage()
    bucket = client.bucket(bucket_name)
    if not bucket.exists():
        bucket = client.create_bucket(bucket_name)
    bucket.blob(SAMPLE_OBJECT).upload_from_string(sample_png(), content_type="image/png")
    return f"{storage_origin.rstrip('/')}/{bucket_name}/{SAMPLE_OBJECT}"


def seed_dev(stack) -> None:
    """``on_ready`` hook of ``make dev``: the stack's info gains the sample URL and the API key."""
    env = stack.function_env()
    apply_env(env)
    from infra.runtime import store

    api_key = os.environ.get("MMSGATE_DEV_API_KEY") or DEV_API_KEY
    # The dev tenant's default webhook is the stack's inbox, so the first send already shows signed events.
    inbox = f"{stack.urls['dev']}/inbox/{DEV_TENANT_ID}" if "dev" in stack.urls else None
    senders = {DEV_SENDER: {"sms": True, "mms": True},
               DEV_TWILIO_SENDER: {"sms": True, "mms": True, "carrier": "twilio"}}
    tenant_id, _ = seed(store(), api_key=api_key, webhook_url=inbox, senders=senders)
    url = upload_sample(env["MEDIA_BUCKET"], env["STORAGE_EMULATOR_HOST"])
    stack.info.update({"api_key": api_key, "sample_media_url": url, "tenant_id": tenant_id, "webhook_url": inbox})
