"""The benchmark's stack: ``tools.stack.Stack`` on free ports, seeded tenants, keep-alive HTTP clients,
queue control (pause/resume/purge on the Cloud Tasks emulator) and leg helpers.

Every server is bound to 127.0.0.1 (the Stack does that; the receiver here too). Every wait is bounded.
"""

from __future__ import annotations

import copy
import datetime as dt
import http.client
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
BIG_BALANCE = 10**15  # micro-dollars: never the limit in a benchmark
BIG_RPS = 10**6  # single-send rate limit of bench tenants: the limiter runs, but never refuses
GROUP_USES_PER_TENANT = 25  # group sends are limited to 30 per minute per tenant: rotate tenants


def fictional(xx: int, npa: str = "415") -> str:
    """A simulator number whose last two digits pick the outcome (docs/simulator.md: 99 = sent, never final)."""
    return f"+1{npa}55501{xx:02d}"


class BenchError(RuntimeError):
    pass


# -- HTTP ----------------------------------------------------------------------------------------
class Client:
    """One keep-alive HTTP/1.1 connection to one server (http.client: no proxy, little overhead).

    ``request`` returns (status, body, seconds). If the server closed the idle connection (gunicorn's
    keep-alive is 2 s), the request is retried once on a new connection and only that attempt is timed.
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 30.0):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()
        return conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        all_headers = {**self.headers, **(headers or {})}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = self._connect()
            t0 = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                elapsed = time.perf_counter() - t0
            except (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError,
                    ConnectionResetError, http.client.BadStatusLine):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, data, elapsed
        raise AssertionError("unreachable")

    def post_json(self, path: str, payload: object, headers: dict[str, str] | None = None):
        return self.request("POST", path, json.dumps(payload).encode(),
                            {"Content-Type": "application/json", **(headers or {})})

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# -- a customer's webhook endpoint (the notifier's target) ----------------------------------------
class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return self.origin + "/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- tenants -------------------------------------------------------------------------------------
@dataclass
class Tenant:
    tenant_id: str
    api_key: str
    group_uses: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


@dataclass
class BenchStack:
    state_dir: Path
    log_level: str = "INFO"
    probe: bool = False  # function processes carry tools/rpc_probe.py (recording only while enabled)
    probe_dir: Path | None = None
    stack: object = None
    receiver: Receiver | None = None
    tenant: Tenant | None = None  # single sends, reads, cold starts
    hook_tenant: Tenant | None = None  # has a webhook URL: its legs carry customer events (notifier)
    group_pool: list[Tenant] = field(default_factory=list)
    sample_media_url: str = ""
    _tasks_client: object = None
    _members: dict | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> BenchStack:
        from tools.stack import Stack, StackConfig

        self.receiver = Receiver()
        config = StackConfig.for_tests(
            self.state_dir,
            # The sweeper must find exactly the leg a benchmark makes stuck, nothing the benchmark
            # left queued (paused queues) or sent (outcome 99) a few seconds ago.
            sweep_queued_after_seconds=3600,
            sweep_final_after_seconds=7 * 86400,
            log_level=self.log_level,
        )
        stack = Stack(config)
        config.env_overrides["MEDIA_TRUSTED_ORIGINS"] = f"{stack.urls['storage']},{self.receiver.origin}"
        if self.probe:
            from tools import rpc_probe

            self.probe_dir = Path(self.state_dir) / "rpc-probe"
            self.probe_dir.mkdir(parents=True, exist_ok=True)
            site = rpc_probe.site_dir()
            config.env_overrides.update({
                "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
                rpc_probe.ENV: str(self.probe_dir)})
        self.stack = stack
        stack.start()
        os.environ.update(self.function_env())  # in-process clients (floor, seeding) use the same emulators
        self._seed()
        return self

    def stop(self) -> None:
        if self._tasks_client is not None:
            try:
                self._tasks_client.transport.close()
            except Exception:  # noqa: BLE001 - best effort
                pass
        if self.stack is not None:
            self.stack.stop()
        if self.receiver is not None:
            self.receiver.close()

    def __enter__(self) -> BenchStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def function_env(self) -> dict[str, str]:
        """The functions' environment without the probe's variables (for this process and cold-start children,
        which must run exactly as a deployed instance)."""
        from tools.rpc_probe import ENV

        env = self.stack.function_env()
        if self.probe:
            env.pop(ENV, None)
            if os.environ.get("PYTHONPATH") is None:
                env.pop("PYTHONPATH", None)
            else:
                env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return env

    # ---------------------------------------------------------------- data
    @property
    def store(self):
        from infra.runtime import store

        return store()

    def new_tenant(self, **fields) -> Tenant:
        from shared.rules import ids
        from tools.seed import seed

        tenant_id = ids.new_tenant_id()
        tenant_id, api_key = seed(self.store, api_key=ids.new_api_key(tenant_id), tenant_id=tenant_id,
                                  balance_micros=BIG_BALANCE, rps=BIG_RPS, **fields)
        return Tenant(tenant_id, api_key)

    def reset(self) -> None:
        """Empty Firestore, the bucket, the queues and the simulator, then seed again. Each section starts
        from the same small database: the Firestore emulator has no indexes, so its queries slow down in
        proportion to a collection's size, which production Firestore's indexes do not."""
        self.stack.reset()
        self.group_pool.clear()
        self._seed()
        self.pause()

    def _seed(self) -> None:
        from tools.seed import upload_sample

        self.tenant = self.new_tenant(name="bench")
        self.hook_tenant = self.new_tenant(name="bench-hooks", webhook_url=self.receiver.url)
        self.sample_media_url = upload_sample(self.stack.config.media_bucket, self.stack.urls["storage"])

    def group_tenant(self) -> Tenant:
        """A tenant that may still send a group request this minute (rate limit: 30 per minute)."""
        with self._lock:
            for tenant in self.group_pool:
                if tenant.group_uses < GROUP_USES_PER_TENANT:
                    tenant.group_uses += 1
                    return tenant
        tenant = self.new_tenant(name=f"bench-group-{len(self.group_pool)}")
        tenant.group_uses = 1
        with self._lock:
            self.group_pool.append(tenant)
        return tenant

    # ---------------------------------------------------------------- URLs and clients
    def url(self, function: str) -> str:
        return self.stack.urls[f"function:{function}"]

    def client(self, function: str, tenant: Tenant | None = None) -> Client:
        return Client(self.url(function), headers=tenant.headers if tenant else None)

    def single_body(self, to: str | None = None, media: bool = True) -> dict:
        body = {"to": to or fictional(99), "body": "mmsgate bench"}
        if media:
            body["media_urls"] = [self.sample_media_url]
        return body

    def group_body(self, n: int, media: bool = True) -> dict:
        body = {"to": [fictional(i) for i in range(n)], "body": "mmsgate bench"}
        if media:
            body["media_urls"] = [self.sample_media_url]
        return body

    # ---------------------------------------------------------------- Cloud Tasks
    def tasks(self):
        if self._tasks_client is None:
            import grpc
            from google.cloud import tasks_v2
            from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

            channel = grpc.insecure_channel(self.stack.urls["tasks"])
            self._tasks_client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        return self._tasks_client

    def queues(self, which: Iterable[str] = ("dispatch", "notify")) -> list[str]:
        return [self.stack.queue_paths[name] for name in which]

    def pause(self, which: Iterable[str] = ("dispatch", "notify")) -> None:
        for name in self.queues(which):
            self.tasks().pause_queue(name=name, timeout=10)

    def resume(self, which: Iterable[str] = ("dispatch", "notify")) -> None:
        for name in self.queues(which):
            self.tasks().resume_queue(name=name, timeout=10)

    def purge(self, which: Iterable[str] = ("dispatch", "notify")) -> None:
        for name in self.queues(which):
            self.tasks().purge_queue(name=name, timeout=10)

    def queued_tasks(self, which: str = "dispatch") -> int:
        return len(list(self.tasks().list_tasks(parent=self.stack.queue_paths[which], timeout=10)))

    # ---------------------------------------------------------------- legs
    def get_legs(self, ids: list[str]) -> dict[str, dict]:
        from infra import collections as C

        db = self.store.db
        found: dict[str, dict] = {}
        for start in range(0, len(ids), 200):
            refs = [db.collection(C.MESSAGES).document(i) for i in ids[start:start + 200]]
            for snap in db.get_all(refs):
                if snap.exists:
                    found[snap.id] = snap.to_dict()
        return found

    def wait_legs(self, ids: list[str], done: Callable[[dict], bool], timeout: float) -> dict[str, dict]:
        """Poll until every leg satisfies ``done`` (bounded by ``timeout``); returns the last read."""
        deadline = time.monotonic() + timeout
        pending = list(ids)
        legs: dict[str, dict] = {}
        while True:
            current = self.get_legs(pending)
            legs.update(current)
            pending = [i for i in pending if not (i in current and done(current[i]))]
            if not pending:
                return legs
            if time.monotonic() > deadline:
                raise BenchError(f"{len(pending)} of {len(ids)} legs not done after {timeout:.0f} s "
                                 f"(e.g. {pending[0]}: {legs.get(pending[0], {}).get('status')})")
            time.sleep(0.1)

    def wait_count(self, field_name: str, values: list[str], status: str, expected: int, timeout: float,
                   interval: float = 0.25) -> float:
        """Poll a count() of legs whose ``field_name`` is one of ``values`` (at most 30) and whose status is
        ``status`` until it reaches ``expected`` (bounded by ``timeout``). Cheap for this process: the
        emulator counts; no document is sent back. Returns the seconds waited."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        from infra import collections as C

        query = (self.store.db.collection(C.MESSAGES).where(filter=FieldFilter(field_name, "in", values))
                 .where(filter=FieldFilter("status", "==", status)).count())
        t0 = time.monotonic()
        while True:
            count = query.get()[0][0].value
            if count >= expected:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise BenchError(f"only {count} of {expected} legs {status} after {timeout:.0f} s")
            time.sleep(interval)

    def send_singles(self, n: int, tenant: Tenant, to: str | None = None, concurrency: int = 4,
                     media: bool = True) -> list[str]:
        """Accept ``n`` single sends through the send function; returns their message ids."""
        payload = self.single_body(to, media)
        ids: list[str] = []
        lock = threading.Lock()

        def worker(count: int) -> None:
            client = self.client("send", tenant)
            try:
                for _ in range(count):
                    status, body, _ = client.post_json("/api/v1/messages/sms", payload)
                    if status != 200:
                        raise BenchError(f"send answered {status}: {body[:300]!r}")
                    with lock:
                        ids.append(json.loads(body)["data"]["id"])
            finally:
                client.close()

        shares = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in [pool.submit(worker, k) for k in shares if k]:
                future.result()
        return ids

    def sent_legs(self, n: int, tenant: Tenant, timeout: float = 120.0) -> list[dict]:
        """``n`` legs the provider accepted and will never finalise (outcome 99), through the real path:
        send, the tasks emulator, dispatch, the simulator. Leaves both queues paused and empty."""
        self.purge()
        self.resume(["dispatch"])
        try:
            ids = self.send_singles(n, tenant, fictional(99))
            legs = self.wait_legs(ids, lambda leg: leg["status"] == "sent" and bool(leg.get("provider_id")),
                                  timeout)
        finally:
            self.pause(["dispatch"])
        return [legs[i] for i in ids]

    def clone_sent_legs(self, template: dict, n: int) -> list[dict]:
        """``n`` copies of a real ``sent`` leg, each with its own id and provider id, written in batches
        (webhook benchmarks need many legs waiting for a final report; dispatching each is slow)."""
        from infra import collections as C
        from shared.rules import ids

        db = self.store.db
        legs = []
        for _ in range(n):
            leg = copy.deepcopy(template)
            leg["id"] = ids.new_message_id()
            leg["leg_key"] = f"single:{leg['id']}"
            leg["provider_id"] = str(uuid.uuid4())
            leg["notifications"] = {}
            legs.append(leg)
        for start in range(0, n, 400):
            batch = db.batch()
            for leg in legs[start:start + 400]:
                batch.set(db.collection(C.MESSAGES).document(leg["id"]), leg)
            batch.commit()
        return legs

    # ---------------------------------------------------------------- webhook events
    def finalized_event(self, leg: dict, status: str = "delivered") -> bytes:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        webhook_url = f"{self.stack.function_env()['TELNYX_WEBHOOK_URL']}?leg={leg['id']}"
        data = {"record_type": "event", "id": str(uuid.uuid4()), "event_type": "message.finalized",
                "occurred_at": now,
                "payload": {"record_type": "message", "direction": "outbound", "id": leg["provider_id"],
                            "type": "MMS", "from": {"phone_number": leg["from"]},
                            "to": [{"phone_number": leg["to"], "status": status}], "text": leg.get("body"),
                            "media": [{"url": u} for u in leg.get("media_urls") or []],
                            "webhook_url": webhook_url, "errors": []}}
        return json.dumps({"data": data, "meta": {"attempt": 1, "delivered_to": webhook_url}}).encode()

    def signed_headers(self, body: bytes) -> dict[str, str]:
        from tools.telnyx_sim import sign

        ts = str(int(time.time()))
        return {"Content-Type": "application/json", "telnyx-timestamp": ts,
                "telnyx-signature-ed25519": sign(self.stack.sim_private_key, ts, body)}

    # ---------------------------------------------------------------- processes
    def function_pids(self, name: str) -> list[int]:
        from tools.procs import group_members

        proc = self.stack.procs[name]
        return sorted(group_members(proc.pid))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each component's process group and by this process.
        (Members are listed once and cached: scanning /proc each time would cost this process CPU too.)"""
        if self._members is None or any(not Path(f"/proc/{pid}").exists() for pids in self._members.values()
                                        for pid in pids):
            self._members = {name: self.function_pids(name) for name in self.stack.procs}
        out = {name: sum(_cpu(pid) for pid in pids) for name, pids in self._members.items()}
        times = os.times()
        out["bench"] = times.user + times.system
        return out


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def cpu_delta(before: dict[str, float], after: dict[str, float], per: int, keys: Iterable[str]) -> dict[str, float]:
    """Milliseconds of CPU per unit of work (``per`` units) spent by each component between two readings."""
    return {k: round((after.get(k, 0) - before.get(k, 0)) * 1000 / max(per, 1), 2) for k in keys}


def token() -> str:
    return secrets.token_hex(6)
