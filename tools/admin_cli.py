"""mmsgate-admin: operate mmsgate's tenants, API keys, balances, senders, webhooks, keyword replies, prices and
opt-outs.

Where it works (read once, at the start of each command):
  a real project   GOOGLE_CLOUD_PROJECT=<project id>, FIRESTORE_DATABASE=<the deployment's database,
                   `terraform output -raw firestore_database`> and Application Default Credentials
                   (`gcloud auth application-default login`, or a service account's key/identity)
  the emulators    FIRESTORE_EMULATOR_HOST=127.0.0.1:8681 and GOOGLE_CLOUD_PROJECT=demo-mmsgate
  `make dev`       --local: the running local stack's settings, from .dev/stack.json
Webhook secrets are derived from WEBHOOK_SIGNING_KEY (production: the Secret Manager secret
mmsgate-webhook-signing-key; locally, --local reads the stack's). Without it, no secret is printed.

Every command prints JSON on stdout. Every mistake is one line on stderr and a non-zero exit
(1: the command failed, 2: the command line is wrong).

  mmsgate-admin tenants list | show TENANT | create --name NAME --default-from +1... [--balance 10.00]
  mmsgate-admin keys create TENANT | list TENANT | revoke PREFIX [--tenant TENANT]
  mmsgate-admin balance show TENANT | top-up TENANT AMOUNT_USD
  mmsgate-admin senders list TENANT | add TENANT +1... [--no-sms] [--no-mms] [--default] [--carrier twilio]
                                         [--kind long_code|toll_free|short_code]
                       | remove TENANT +1... | weights TENANT [telnyx=70 twilio=30]
  mmsgate-admin webhooks set TENANT [--url URL | --clear-url] [--failover-url URL | --clear-failover-url]
  mmsgate-admin webhooks secret TENANT | rotate TENANT
  mmsgate-admin keywords show TENANT | set TENANT [--stop TEXT] [--help-text TEXT] [--start TEXT] [--clear KIND]
                        [--smart-encoding]
  mmsgate-admin retention show TENANT | set TENANT DAYS
  mmsgate-admin pricing seed | show [COUNTRY]
  mmsgate-admin opt-outs list TENANT | add TENANT +1... | remove TENANT +1...
  mmsgate-admin --version
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import decimal
import json
import os
import re
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from shared.api.version import VERSION
from shared.rules.media import SENDER_KINDS, sender_kind

PROG = "mmsgate-admin"
ROOT = Path(__file__).resolve().parents[1]
STACK_STATE = ROOT / ".dev" / "stack.json"
_TENANT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
MAX_TOP_UP_USD = decimal.Decimal("1000000")


class CliError(Exception):
    """One line for stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise CliError(f"{self.prog}: {message} (see {self.prog} --help)", code=2)


# ------------------------------------------------------------------------------------------ context

@dataclass
class Ctx:
    env: dict[str, str]
    db: Any = None  # google.cloud.firestore.Client
    _accounts: Any = None
    out: list[Any] = field(default_factory=list)

    @property
    def emulator(self) -> str:
        return self.env.get("FIRESTORE_EMULATOR_HOST", "")

    @property
    def accounts(self):
        if self._accounts is None:
            from infra.store.accounts import FirestoreAccounts

            self._accounts = FirestoreAccounts(self.db)
        return self._accounts


@contextlib.contextmanager
def _environ(values: dict[str, str | None]) -> Iterator[None]:
    """The Firestore client reads the emulator variable when it is built: build it under ours (None: unset)."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def _stack_env(path: Path) -> dict[str, str]:
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"--local: {path} not found: start the local stack first (make dev)") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"--local: cannot read {path}: {exc}") from None
    env = state.get("env") or {}
    wanted = ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "WEBHOOK_SIGNING_KEY", "MEDIA_TRUSTED_ORIGINS")
    return {k: env[k] for k in wanted if env.get(k)}


def connect(args: argparse.Namespace) -> Ctx:
    env = dict(os.environ)
    if args.local:
        env.update(_stack_env(Path(args.state or STACK_STATE)))
    project = env.get("GOOGLE_CLOUD_PROJECT", "")
    emulator = env.get("FIRESTORE_EMULATOR_HOST", "")
    if not project:
        raise CliError("GOOGLE_CLOUD_PROJECT is not set: set it to the project id (with Application Default "
                       "Credentials), or FIRESTORE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT for the emulator, "
                       "or pass --local while make dev runs")
    if emulator:
        host, _, port = emulator.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
                pass
        except (OSError, ValueError):
            raise CliError(f"the Firestore emulator at FIRESTORE_EMULATOR_HOST={emulator} is not answering "
                           "(is make dev running?)") from None
    from google.cloud import firestore

    try:
        with _environ({"FIRESTORE_EMULATOR_HOST": emulator or None}):
            db = firestore.Client(project=project, database=env.get("FIRESTORE_DATABASE") or "(default)")
    except Exception as exc:  # noqa: BLE001 - google.auth's DefaultCredentialsError and kin: one line
        raise CliError(f"cannot reach Firestore in project {project}: {_first_line(exc)} (for a real project: "
                       "gcloud auth application-default login)") from None
    return Ctx(env=env, db=db)


# ------------------------------------------------------------------------------------------ checks

def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def tenant_id_arg(value: str) -> str:
    if not _TENANT_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a tenant id (letters, digits, _ and -)")
    return value


def e164_arg(value: str) -> str:
    from shared.rules.phone import InvalidNumber, parse_e164

    try:
        return parse_e164(value)
    except InvalidNumber as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an E.164 number: {exc}") from None


def usd_arg(value: str) -> int:
    """USD with at most 6 decimals -> micro-dollars."""
    try:
        amount = decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise argparse.ArgumentTypeError(f"{value!r} is not an amount in USD (e.g. 10.00)") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_TOP_UP_USD:
        raise argparse.ArgumentTypeError(f"{value!r} must be between 0 and {MAX_TOP_UP_USD} USD")
    micros = amount * 1_000_000
    if micros != micros.to_integral_value():
        raise argparse.ArgumentTypeError(f"{value!r} has more than 6 decimals")
    return int(micros)


def positive_int_arg(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return int(value)


def country_arg(value: str) -> str:
    if not _COUNTRY.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return value.upper()


def _trusted_origins(ctx: Ctx) -> list[str]:
    """Loopback origins a webhook URL may use, only against the emulators: what the local stack's functions
    trust (MEDIA_TRUSTED_ORIGINS, including the dev inbox and MMSGATE_DEV_TRUSTED_ORIGINS). A real project
    trusts none, as the notifier there trusts none."""
    if not ctx.emulator:
        return []
    origins = [ctx.env.get("MEDIA_TRUSTED_ORIGINS", ""), ctx.env.get("MMSGATE_DEV_TRUSTED_ORIGINS", "")]
    with contextlib.suppress(OSError, ValueError, AttributeError):
        state_env = json.loads(STACK_STATE.read_text()).get("env") or {}
        if state_env.get("FIRESTORE_EMULATOR_HOST") == ctx.emulator:
            origins.append(state_env.get("MEDIA_TRUSTED_ORIGINS", ""))
    return [o.strip() for value in origins for o in value.split(",") if o.strip()]


def check_webhook_url(ctx: Ctx, option: str, url: str) -> str:
    """The notifier's own SSRF check, now rather than at the first event (which would only log it)."""
    from shared.rules.ssrf import UrlRejected, check_url, system_resolver, webhook_url_policy

    try:
        return check_url(url, webhook_url_policy(_trusted_origins(ctx)), system_resolver).url
    except UrlRejected as exc:
        hint = ""
        if ctx.emulator and urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1"):
            hint = (" (a receiver of your own on this machine: start make dev with "
                    "MMSGATE_DEV_TRUSTED_ORIGINS=<its origin>)")
        raise CliError(f"{option} {url!r} is rejected: {exc.reason}{hint}") from None


def signing_key(ctx: Ctx) -> str:
    key = ctx.env.get("WEBHOOK_SIGNING_KEY", "")
    if not key:
        raise CliError("WEBHOOK_SIGNING_KEY is not set, so the secret cannot be derived: set it to the master "
                       "key (gcloud secrets versions access latest --secret mmsgate-webhook-signing-key), "
                       "or pass --local while make dev runs")
    return key


def tenant_doc(ctx: Ctx, tenant_id: str) -> dict[str, Any]:
    """The tenant's document; an unknown tenant is an error (no command creates one by accident)."""
    snap = _tenants(ctx).document(tenant_id).get()
    if not snap.exists:
        raise CliError(f"no tenant {tenant_id} (mmsgate-admin tenants list shows them)")
    return _with_shards(ctx, tenant_id, snap.to_dict() or {})


def _tenants(ctx: Ctx):
    from infra import collections as C

    return ctx.db.collection(C.TENANTS)


def _with_shards(ctx: Ctx, tenant_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The document with the balance and usage traffic keeps on the tenant's shards (shared/rules/balance.py) added:
    the document alone holds only the base (top-ups)."""
    from shared.rules.balance import SHARD_COLLECTION, Shard, overlay
    from shared.rules.records import Tenant

    shards = [Shard.from_doc(int(snap.id), snap.to_dict())
              for snap in _tenants(ctx).document(tenant_id).collection(SHARD_COLLECTION).stream()]
    seen = overlay(Tenant.from_doc(tenant_id, doc), shards)
    return {**doc, "balance_micros": seen.balance_micros, "usage_day": seen.usage_day, "usage_count": seen.usage_count}


def _update_tenant(ctx: Ctx, tenant_id: str, fields: dict[str, Any]) -> None:
    """update(), not set(merge=True): it fails on a missing document, so a tenant deleted meanwhile is
    never brought back as a ghost."""
    from google.api_core.exceptions import NotFound

    try:
        _tenants(ctx).document(tenant_id).update({**fields, "updated_at": _now()})
    except NotFound:
        raise CliError(f"no tenant {tenant_id}") from None


def _change_tenant(ctx: Ctx, tenant_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Read-modify-write of one tenant in a transaction; ``change`` returns the fields to update."""
    from google.cloud import firestore

    ref = _tenants(ctx).document(tenant_id)

    @firestore.transactional
    def run(transaction) -> dict[str, Any]:
        snap = ref.get(transaction=transaction)
        if not snap.exists:
            raise CliError(f"no tenant {tenant_id} (mmsgate-admin tenants list shows them)")
        fields = change(snap.to_dict() or {})
        transaction.update(ref, {**fields, "updated_at": _now()})
        return {**(snap.to_dict() or {}), **fields}

    return run(ctx.db.transaction())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _usd(micros: int) -> str:
    """Micro-dollars as USD text: at least 2 decimals, at most 6, exact."""
    text = f"{decimal.Decimal(micros) / 1_000_000:.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


# ------------------------------------------------------------------------------------------ tenants

def _tenant_view(tenant_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    micros = int(doc.get("balance_micros") or 0)
    return _jsonable({
        "id": tenant_id, "name": doc.get("name"), "default_from": doc.get("default_from"),
        "senders": doc.get("senders") or {}, "balance": _usd(micros), "balance_micros": micros,
        "rps": doc.get("rps"), "daily_quota": doc.get("daily_quota"),
        "usage": {"day": doc.get("usage_day"), "count": int(doc.get("usage_count") or 0)},
        "webhook_url": doc.get("webhook_url"), "webhook_failover_url": doc.get("webhook_failover_url"),
        "webhook_secret_version": int(doc.get("webhook_secret_version") or 0),
        "retention_days": _retention_days(doc),
        "disabled": bool(doc.get("disabled")), "updated_at": doc.get("updated_at"),
    })


def _retention_days(doc: dict[str, Any]) -> int:
    from shared.rules.retention import clamp_days

    return clamp_days(doc.get("retention_days"))


def tenants_list(ctx: Ctx, args: argparse.Namespace) -> Any:
    return [{"id": snap.id, "name": (d := snap.to_dict() or {}).get("name"), "default_from": d.get("default_from"),
             "balance": _usd(int(_with_shards(ctx, snap.id, d).get("balance_micros") or 0)),
             "webhook_url": d.get("webhook_url"), "disabled": bool(d.get("disabled"))}
            for snap in _tenants(ctx).stream()]


def tenants_show(ctx: Ctx, args: argparse.Namespace) -> Any:
    return _tenant_view(args.tenant, tenant_doc(ctx, args.tenant))


def tenants_create(ctx: Ctx, args: argparse.Namespace) -> Any:
    from shared.rules import ids
    from tools.admin import create_tenant

    tenant_id = args.id or ids.new_tenant_id()
    if _tenants(ctx).document(tenant_id).get().exists:
        raise CliError(f"tenant {tenant_id} exists already")
    url = check_webhook_url(ctx, "--webhook-url", args.webhook_url) if args.webhook_url else None
    create_tenant(ctx.accounts, tenant_id=tenant_id, name=args.name, default_from=args.default_from,
                  balance_micros=args.balance, rps=args.rps, daily_quota=args.daily_quota, webhook_url=url)
    return _tenant_view(tenant_id, tenant_doc(ctx, tenant_id))


# ------------------------------------------------------------------------------------------ API keys

def _keys(ctx: Ctx):
    from infra import collections as C

    return ctx.db.collection(C.API_KEYS)


def _key_view(d: dict[str, Any]) -> dict[str, Any]:
    return _jsonable({"prefix": d.get("prefix"), "tenant_id": d.get("tenant_id"), "created_at": d.get("created_at"),
                      "revoked": bool(d.get("revoked")), "revoked_at": d.get("revoked_at")})


def keys_create(ctx: Ctx, args: argparse.Namespace) -> Any:
    from shared.rules import ids
    from tools.admin import create_api_key

    tenant_doc(ctx, args.tenant)
    # Against the emulators (make dev, --local, FIRESTORE_EMULATOR_HOST) a key is mk_test_, like the dev key;
    # against a project, mk_live_.
    key = create_api_key(ctx.accounts, args.tenant, ids.new_api_key(args.tenant, live=not ctx.emulator))
    return {"tenant_id": args.tenant, "api_key": key, "prefix": key[:12],
            "note": "shown once: only its SHA-256 is stored; revoke it with mmsgate-admin keys revoke " + key[:12]}


def keys_list(ctx: Ctx, args: argparse.Namespace) -> Any:
    from google.cloud.firestore_v1.base_query import FieldFilter

    tenant_doc(ctx, args.tenant)
    found = [_key_view(s.to_dict() or {}) for s in _keys(ctx).where(filter=FieldFilter("tenant_id", "==",
                                                                                         args.tenant)).stream()]
    return sorted(found, key=lambda k: k["created_at"] or "")


def keys_revoke(ctx: Ctx, args: argparse.Namespace) -> Any:
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.rules.ids import api_key_hash

    given = args.prefix
    if args.tenant:
        tenant_doc(ctx, args.tenant)
    if len(given) > 12:  # longer than any stored prefix: the whole key
        snap = _keys(ctx).document(api_key_hash(given)).get()
        matches = [snap] if snap.exists else []
    elif args.tenant:  # one equality filter: no composite index needed
        matches = [s for s in _keys(ctx).where(filter=FieldFilter("tenant_id", "==", args.tenant)).stream()
                   if (s.to_dict() or {}).get("prefix", "").startswith(given)]
    else:
        query = _keys(ctx).where(filter=FieldFilter("prefix", ">=", given)) \
            .where(filter=FieldFilter("prefix", "<", given + "\U0010ffff"))
        matches = list(query.stream())
    if args.tenant:
        matches = [s for s in matches if (s.to_dict() or {}).get("tenant_id") == args.tenant]
    if not matches:
        raise CliError(f"no API key starts with {given!r}" + (f" for tenant {args.tenant}" if args.tenant else ""))
    if len(matches) > 1:
        prefixes = ", ".join(sorted(f"{(s.to_dict() or {}).get('prefix')} ({(s.to_dict() or {}).get('tenant_id')})"
                                    for s in matches))
        raise CliError(f"{given!r} matches {len(matches)} keys ({prefixes}): give more characters, the whole key, "
                       "or --tenant")
    snap = matches[0]
    before = snap.to_dict() or {}
    if not before.get("revoked"):
        snap.reference.update({"revoked": True, "revoked_at": _now()})
    return {**_key_view(snap.reference.get().to_dict() or {}),
            "note": "was revoked already" if before.get("revoked") else "revoked: requests with it now get 401"}


# ------------------------------------------------------------------------------------------ balance

def balance_show(ctx: Ctx, args: argparse.Namespace) -> Any:
    micros = int(tenant_doc(ctx, args.tenant).get("balance_micros") or 0)
    return {"tenant_id": args.tenant, "balance": _usd(micros), "balance_micros": micros, "currency": "USD"}


def balance_top_up(ctx: Ctx, args: argparse.Namespace) -> Any:
    from google.cloud import firestore

    if args.amount <= 0:
        raise CliError("the amount must be more than 0")
    tenant_doc(ctx, args.tenant)
    # An increment of the base, not read-then-write: accepts debit the shards meanwhile, and both stay exact.
    _update_tenant(ctx, args.tenant, {"balance_micros": firestore.Increment(args.amount)})
    micros = int(tenant_doc(ctx, args.tenant).get("balance_micros") or 0)
    return {"tenant_id": args.tenant, "added": _usd(args.amount), "balance": _usd(micros), "balance_micros": micros,
            "currency": "USD"}


# ------------------------------------------------------------------------------------------ senders

def _senders_view(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"number": number, "sms": bool(c.get("sms")), "mms": bool(c.get("mms")),
             "carrier": c.get("carrier") or "telnyx", "default": number == doc.get("default_from"),
             "kind": c["kind"] if c.get("kind") in SENDER_KINDS else sender_kind(number)}
            for number, c in sorted((doc.get("senders") or {}).items())]


def senders_list(ctx: Ctx, args: argparse.Namespace) -> Any:
    return _senders_view(tenant_doc(ctx, args.tenant))


def senders_add(ctx: Ctx, args: argparse.Namespace) -> Any:
    if not (args.sms or args.mms):
        raise CliError("a sender needs at least one of SMS and MMS (drop --no-sms or --no-mms)")
    if args.default and not args.mms:
        raise CliError("the default sender must be MMS-capable (drop --no-mms)")

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        # the kind is stored (said, kept from before, or inferred), so the limit it sets does not change if the
        # inference does, nor when other capabilities of the number are changed
        before = (doc.get("senders") or {}).get(args.number) or {}
        kind = args.kind or (before["kind"] if before.get("kind") in SENDER_KINDS else sender_kind(args.number))
        senders = {**(doc.get("senders") or {}),
                   args.number: {"sms": args.sms, "mms": args.mms, "carrier": args.carrier, "kind": kind}}
        fields: dict[str, Any] = {"senders": senders, "sender_numbers": sorted(senders)}
        if args.default:
            fields["default_from"] = args.number
        elif doc.get("default_from") == args.number and not args.mms:
            raise CliError(f"{args.number} is the default sender, which must stay MMS-capable")
        return fields

    return _senders_view(_change_tenant(ctx, args.tenant, change))


def weight_arg(value: str) -> tuple[str, int]:
    carrier, _, weight = value.partition("=")
    if carrier not in ("telnyx", "twilio") or not weight.isdigit() or int(weight) > 100:
        raise argparse.ArgumentTypeError(f"{value!r}: expected telnyx=N or twilio=N with N in 0..100")
    return carrier, int(weight)


def senders_weights(ctx: Ctx, args: argparse.Namespace) -> Any:
    weights = dict(args.weights)
    doc = _change_tenant(ctx, args.tenant, lambda doc: {"carrier_weights": weights})
    return {"carrier_weights": doc.get("carrier_weights") or {}}


def senders_remove(ctx: Ctx, args: argparse.Namespace) -> Any:
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        senders = dict(doc.get("senders") or {})
        if args.number not in senders:
            raise CliError(f"{args.number} is not a sender of {args.tenant}")
        if doc.get("default_from") == args.number:
            raise CliError(f"{args.number} is the default sender: make another one the default first "
                           "(senders add TENANT NUMBER --default)")
        del senders[args.number]
        return {"senders": senders, "sender_numbers": sorted(senders)}

    return _senders_view(_change_tenant(ctx, args.tenant, change))


# ------------------------------------------------------------------------------------------ retention

def retention_days_arg(value: str) -> int:
    from shared.rules.retention import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS

    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(f"retention must be {MIN_RETENTION_DAYS}-{MAX_RETENTION_DAYS} days")
    return days


def retention_show(ctx: Ctx, args: argparse.Namespace) -> Any:
    return {"tenant_id": args.tenant, "retention_days": _retention_days(tenant_doc(ctx, args.tenant))}


def retention_set(ctx: Ctx, args: argparse.Namespace) -> Any:
    tenant_doc(ctx, args.tenant)
    _update_tenant(ctx, args.tenant, {"retention_days": args.days})
    return {"tenant_id": args.tenant, "retention_days": _retention_days(tenant_doc(ctx, args.tenant)),
            "note": "applies to messages created from now on"}


# ------------------------------------------------------------------------------------------ keyword replies

def _keyword_answer(tenant_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Each reply as the gateway sends it (the tenant's own text or the default, with its brand), with its
    encoding and segments: a reply is an SMS the tenant pays for, and one curly quote makes it UCS-2."""
    from shared.rules import keywords
    from shared.rules.records import Tenant
    from shared.rules.segments import count_segments

    tenant = Tenant.from_doc(tenant_id, doc)
    replies = {}
    for kind in keywords.Kind:
        text = keywords.reply_text(tenant, kind)
        encoding, segments = count_segments(text)
        replies[kind.value] = {"text": text, "own": bool((tenant.keyword_texts.get(kind.value) or "").strip()),
                               "encoding": encoding, "segments": segments}
    return {"tenant_id": tenant_id, "keyword_replies": keywords.replies_setting(tenant), "replies": replies}


def keywords_show(ctx: Ctx, args: argparse.Namespace) -> Any:
    return _keyword_answer(args.tenant, tenant_doc(ctx, args.tenant))


def keywords_set(ctx: Ctx, args: argparse.Namespace) -> Any:
    from shared.rules.keywords import MAX_REPLY
    from shared.rules.segments import smart_encode

    doc = tenant_doc(ctx, args.tenant)
    texts = {k: v for k, v in (doc.get("keyword_texts") or {}).items() if isinstance(v, str)}
    given = {"stop": args.stop, "help": args.help_text, "start": args.start}
    for kind, text in given.items():
        if text is None:
            continue
        if not text.strip():
            raise CliError(f"--{'help-text' if kind == 'help' else kind}: give a text, or --clear {kind}", code=2)
        if len(text) > MAX_REPLY:
            raise CliError(f"--{'help-text' if kind == 'help' else kind}: at most {MAX_REPLY} characters "
                           f"({len(text)} given)", code=2)
        texts[kind] = smart_encode(text)[0] if args.smart_encoding else text
    for kind in args.clear or ():
        texts.pop(kind, None)
    if not any(v is not None for v in given.values()) and not args.clear:
        raise CliError("nothing to set: give --stop, --help-text, --start or --clear", code=2)
    _update_tenant(ctx, args.tenant, {"keyword_texts": texts})
    return _keyword_answer(args.tenant, tenant_doc(ctx, args.tenant))


# ------------------------------------------------------------------------------------------ webhooks

def webhooks_set(ctx: Ctx, args: argparse.Namespace) -> Any:
    tenant_doc(ctx, args.tenant)
    fields: dict[str, Any] = {}
    if args.url is not None:
        fields["webhook_url"] = check_webhook_url(ctx, "--url", args.url)
    if args.clear_url:
        fields["webhook_url"] = None
    if args.failover_url is not None:
        fields["webhook_failover_url"] = check_webhook_url(ctx, "--failover-url", args.failover_url)
    if args.clear_failover_url:
        fields["webhook_failover_url"] = None
    if not fields:
        raise CliError("nothing to set: give --url, --failover-url, --clear-url or --clear-failover-url", code=2)
    _update_tenant(ctx, args.tenant, fields)
    doc = tenant_doc(ctx, args.tenant)
    return {"tenant_id": args.tenant, "webhook_url": doc.get("webhook_url"),
            "webhook_failover_url": doc.get("webhook_failover_url")}


def _secret_answer(ctx: Ctx, tenant_id: str, doc: dict[str, Any], key: str) -> dict[str, Any]:
    from shared.carriers.signatures import ROTATION_OVERLAP_SECONDS, signing_secrets, tenant_secret
    from shared.rules.records import Tenant

    tenant = Tenant.from_doc(tenant_id, doc)
    answer: dict[str, Any] = {"tenant_id": tenant_id, "secret": tenant_secret(key, tenant_id,
                                                                                tenant.webhook_secret_version),
                              "version": tenant.webhook_secret_version}
    signing = signing_secrets(key, tenant, _now())
    if len(signing) > 1 and tenant.webhook_secret_rotated_at:
        until = tenant.webhook_secret_rotated_at + dt.timedelta(seconds=ROTATION_OVERLAP_SECONDS)
        answer["previous_secret"] = signing[1]
        answer["previous_valid_until"] = _jsonable(until)
    return answer


def webhooks_secret(ctx: Ctx, args: argparse.Namespace) -> Any:
    key = signing_key(ctx)
    return _secret_answer(ctx, args.tenant, tenant_doc(ctx, args.tenant), key)


def webhooks_rotate(ctx: Ctx, args: argparse.Namespace) -> Any:
    key = signing_key(ctx)  # before changing anything: a rotation whose secret cannot be shown is useless
    now = _now()

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        version = int(doc.get("webhook_secret_version") or 0)
        return {"webhook_secret_version": version + 1, "webhook_secret_previous_version": version,
                "webhook_secret_rotated_at": now}

    doc = _change_tenant(ctx, args.tenant, change)
    return {**_secret_answer(ctx, args.tenant, doc, key),
            "note": "deliveries carry signatures of both secrets until previous_valid_until"}


# ------------------------------------------------------------------------------------------ pricing

def pricing_seed(ctx: Ctx, args: argparse.Namespace) -> Any:
    from tools.admin import DEFAULT_PRICING, seed_pricing

    seed_pricing(ctx.accounts)
    return {"seeded": sorted(DEFAULT_PRICING)}


def pricing_show(ctx: Ctx, args: argparse.Namespace) -> Any:
    from infra import collections as C

    prices = ctx.db.collection(C.PRICING)
    snaps = [prices.document(args.country).get()] if args.country else list(prices.stream())
    found = {s.id: s.to_dict() or {} for s in snaps if s.exists}
    if args.country and not found:
        raise CliError(f"no prices for {args.country} (mmsgate-admin pricing seed adds the defaults)")
    return {country: {"currency": d.get("currency", "USD"),
                      **{ch: _usd(int(d[f"{ch}_micros"])) for ch in ("sms", "mms")
                         if d.get(f"{ch}_micros") is not None}}
            for country, d in sorted(found.items())}


# ------------------------------------------------------------------------------------------ opt-outs

def _opt_outs(ctx: Ctx, tenant_id: str):
    from infra import collections as C

    return _tenants(ctx).document(tenant_id).collection(C.OPT_OUTS)


def opt_outs_list(ctx: Ctx, args: argparse.Namespace) -> Any:
    tenant_doc(ctx, args.tenant)
    return [_jsonable({"number": s.id, **(s.to_dict() or {})}) for s in _opt_outs(ctx, args.tenant).stream()]


def opt_outs_add(ctx: Ctx, args: argparse.Namespace) -> Any:
    tenant_doc(ctx, args.tenant)
    ctx.accounts.add_opt_out(args.tenant, args.number, "admin")
    return {"tenant_id": args.tenant, "number": args.number, "opted_out": True}


def opt_outs_remove(ctx: Ctx, args: argparse.Namespace) -> Any:
    tenant_doc(ctx, args.tenant)
    if not _opt_outs(ctx, args.tenant).document(args.number).get().exists:
        raise CliError(f"{args.number} has not opted out of {args.tenant}")
    ctx.accounts.remove_opt_out(args.tenant, args.number)
    return {"tenant_id": args.tenant, "number": args.number, "opted_out": False}


# ------------------------------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--local", action="store_true", default=argparse.SUPPRESS,
                        help="use the running make dev stack (.dev/stack.json)")
    common.add_argument("--state", default=argparse.SUPPRESS, help="another stack.json for --local")
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}",
                        help="print mmsgate's version and exit")
    parser.add_argument("--local", action="store_true", help="use the running make dev stack (.dev/stack.json)")
    parser.add_argument("--state", default=None, help="another stack.json for --local")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND", parser_class=_Parser)

    def group(name: str, help_: str):
        return groups.add_parser(name, help=help_, description=help_).add_subparsers(
            dest="action", required=True, metavar="ACTION", parser_class=_Parser)

    def leaf(actions, name: str, func: Callable[[Ctx, argparse.Namespace], Any], help_: str,
             tenant: bool = True) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_, description=help_, parents=[common])
        if tenant:
            p.add_argument("tenant", type=tenant_id_arg, metavar="TENANT", help="tenant id (tnt_...)")
        p.set_defaults(func=func)
        return p

    t = group("tenants", "tenants: list, show, create")
    leaf(t, "list", tenants_list, "every tenant, in short", tenant=False)
    leaf(t, "show", tenants_show, "one tenant in full")
    p = leaf(t, "create", tenants_create, "a new tenant with its default sender (SMS and MMS)", tenant=False)
    p.add_argument("--name", required=True)
    p.add_argument("--default-from", required=True, type=e164_arg, help="an MMS-capable number it owns (E.164)")
    p.add_argument("--balance", type=usd_arg, default=0, help="prepaid balance in USD (default 0)")
    p.add_argument("--rps", type=positive_int_arg, default=10, help="single sends per second (default 10)")
    p.add_argument("--daily-quota", type=positive_int_arg, default=None, help="messages per UTC day (default none)")
    p.add_argument("--webhook-url", default=None, help="default customer webhook (checked as the notifier does)")
    p.add_argument("--id", type=tenant_id_arg, default=None, help="the tenant id (default: a new tnt_...)")

    k = group("keys", "API keys: create, list, revoke")
    leaf(k, "create", keys_create, "a new API key, printed once")
    leaf(k, "list", keys_list, "a tenant's keys by prefix (the keys themselves are not stored)")
    p = leaf(k, "revoke", keys_revoke, "revoke the one key that starts with PREFIX", tenant=False)
    p.add_argument("prefix", metavar="PREFIX", help="its first characters (keys list shows 12), or the whole key")
    p.add_argument("--tenant", type=tenant_id_arg, default=None, help="only this tenant's keys")

    b = group("balance", "prepaid balance: show, top-up")
    leaf(b, "show", balance_show, "the balance in USD")
    p = leaf(b, "top-up", balance_top_up, "add AMOUNT USD to the balance")
    p.add_argument("amount", type=usd_arg, metavar="AMOUNT", help="USD, e.g. 25.00")

    s = group("senders", "sending numbers: list, add, remove")
    leaf(s, "list", senders_list, "the tenant's numbers with their capabilities")
    p = leaf(s, "add", senders_add, "add a number (or change its capabilities)")
    p.add_argument("number", type=e164_arg, metavar="NUMBER", help="E.164")
    p.add_argument("--no-sms", dest="sms", action="store_false", help="it cannot send SMS")
    p.add_argument("--no-mms", dest="mms", action="store_false", help="it cannot send MMS")
    p.add_argument("--default", action="store_true", help="make it the default sender")
    p.add_argument("--carrier", choices=("telnyx", "twilio"), default="telnyx",
                   help="the carrier hosting the number, the only one that can send from it (default telnyx)")
    p.add_argument("--kind", choices=SENDER_KINDS, default=None,
                   help="long_code, toll_free or short_code: sets the MMS size limit (1 MB, 600 KB, 600 KB; "
                        "docs/media.md). Default: toll_free for +1 800/833/844/855/866/877/888, else long_code")
    p = leaf(s, "remove", senders_remove, "remove a number (not the default one)")
    p.add_argument("number", type=e164_arg, metavar="NUMBER", help="E.164")
    p = leaf(s, "weights", senders_weights, "the tenant's own carrier weights over CARRIER_WEIGHTS (none: clear)")
    p.add_argument("weights", nargs="*", type=weight_arg, metavar="CARRIER=WEIGHT", help="e.g. telnyx=70 twilio=30")

    w = group("webhooks", "customer webhooks: set URLs, show or rotate the signing secret")
    p = leaf(w, "set", webhooks_set, "set or clear the default and failover webhook URLs")
    url = p.add_mutually_exclusive_group()
    url.add_argument("--url", default=None, help="where events go when a send names no webhook_url")
    url.add_argument("--clear-url", action="store_true")
    failover = p.add_mutually_exclusive_group()
    failover.add_argument("--failover-url", default=None, help="where events go when the URL keeps refusing them")
    failover.add_argument("--clear-failover-url", action="store_true")
    leaf(w, "secret", webhooks_secret, "the whsec_ secret receivers verify with (needs WEBHOOK_SIGNING_KEY)")
    leaf(w, "rotate", webhooks_rotate, "a new secret; the old one still signs for 24 h (needs WEBHOOK_SIGNING_KEY)")

    kw = group("keywords", "the replies to STOP, HELP and START: show, set (each with its encoding and segments)")
    leaf(kw, "show", keywords_show, "each reply as sent, with its encoding and SMS segments")
    p = leaf(kw, "set", keywords_set, "the tenant's own reply texts ({brand} and {contact} are filled in)")
    p.add_argument("--stop", default=None, help="the reply to STOP and its synonyms")
    p.add_argument("--help-text", default=None, help="the reply to HELP and INFO")
    p.add_argument("--start", default=None, help="the reply to START and UNSTOP")
    p.add_argument("--clear", action="append", choices=("stop", "help", "start"), default=None,
                   help="back to the default reply (repeatable)")
    p.add_argument("--smart-encoding", action="store_true",
                   help="replace look-alikes (curly quotes, long dashes, ...) with GSM-7 in the texts given")

    r = group("retention", "how long messages, groups and their events are kept: show, set")
    leaf(r, "show", retention_show, "the tenant's retention in days (default 90)")
    p = leaf(r, "set", retention_set, "keep new messages DAYS days, then Firestore TTL deletes them")
    p.add_argument("days", type=retention_days_arg, metavar="DAYS", help="1-3650")

    pr = group("pricing", "prices per destination country: seed, show")
    leaf(pr, "seed", pricing_seed, "write the default prices (US, CA, GB)", tenant=False)
    p = leaf(pr, "show", pricing_show, "the prices of one country, or all", tenant=False)
    p.add_argument("country", nargs="?", type=country_arg, default=None, metavar="COUNTRY")

    o = group("opt-outs", "numbers that opted out of a tenant: list, add, remove")
    leaf(o, "list", opt_outs_list, "every opted-out number")
    for name, func, help_ in (("add", opt_outs_add, "opt a number out: sends to it fail RECIPIENT_OPTED_OUT"),
                              ("remove", opt_outs_remove, "opt a number back in")):
        p = leaf(o, name, func, help_)
        p.add_argument("number", type=e164_arg, metavar="NUMBER", help="E.164")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        result = args.func(connect(args), args)
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    except CliError as exc:
        message = str(exc)
        print(message if message.startswith(PROG) else f"{PROG}: {message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a Google API error and the like: one line, not a traceback
        if os.environ.get("MMSGATE_ADMIN_DEBUG"):
            traceback.print_exc()
        print(f"{PROG}: {type(exc).__name__}: {_first_line(exc)} (MMSGATE_ADMIN_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
