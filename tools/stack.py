"""The local stack: emulators, the Telnyx simulator, a server per Cloud Function, a gateway, a sweeper timer.

``make dev`` runs ``python -m tools.stack`` (foreground; Ctrl-C stops everything); the pytest suite uses
:class:`Stack` with :meth:`StackConfig.for_tests` to start the same stack once per run::

    with Stack(StackConfig.for_tests(tmp_path)) as stack:
        stack.urls["gateway"]             # http://127.0.0.1:PORT
        stack.function_env()              # the environment every function process gets
        stack.reset()                     # empty Firestore, storage objects, queues, simulator state

What runs (every server bound to 127.0.0.1, each in its own process group, log in ``state_dir/logs/``):

- firestore: ``java ... CloudFirestore start`` (the SDK's jar, no gcloud wrapper); ready: ``GET /`` is 200
- tasks: ``.venv-emulators/bin/python tools/tasks_emulator.py`` (patched, see there); ready: port accepts
- storage: ``.venv-emulators/bin/gcp-storage-emulator start --in-memory``; ready: ``GET /`` is 200
- simulator: ``.venv/bin/python -m tools.telnyx_sim``; ready: ``GET /_sim/health`` is 200
- one per function: ``.venv/bin/functions-framework --target=NAME``; ready: port accepts (the app is
  imported before gunicorn binds)
- gateway: ``tools.gateway`` in a thread of this process
- dev: ``tools.dev_inbox`` in a thread of this process: the webhook inbox (``POST /inbox/{tenant}``,
  ``GET /_dev/inbox``) and the live console (``/_dev/console``); local only, like everything here
- sweeper timer: a thread of this process, ``POST {}`` to the sweeper every ``sweep_interval`` seconds

``urls`` holds ``http://127.0.0.1:PORT`` for every HTTP server and ``127.0.0.1:PORT`` for ``tasks`` (gRPC).
Children get ``PR_SET_PDEATHSIG`` (via ``setpriv``) so they die with this process even if it is SIGKILLed.

Faults (for tests): ``kill(name)`` SIGKILLs a component's process group and waits until it is gone;
``start_component(name)`` starts it again with the same command, environment and port (callers keep their
URLs) and waits until it answers, as ``start`` does; ``restart(name)`` is both. Every component can be
killed except ``firestore`` (its data lives only in the emulator's memory). What a restart loses:

- tasks: every task it held (in memory, as in an outage of the emulator; the sweeper re-enqueues legs);
  the ``-d`` queues exist again at once, queues a client created do not. Throttles it logged before stay
  in its log (``throttles()`` reads them).
- storage: every object (``--in-memory``); the media bucket is created again.
- simulator: all its state (messages, scheduled reports, idempotency replays); it does not persist
  anything. A test that needs the simulator's records across faults should not restart it.
- a function: nothing (they keep no state); requests in flight when it is killed get no answer.
- gateway (a thread here): its listening socket is closed and opened again; requests in progress finish.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import http.client
import importlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.settings import ENV
from tools import gateway as gateway_mod
from tools.procs import HOST, Proc, free_ports, port_open, stop_all

ROOT = Path(__file__).resolve().parents[1]
APP_VENV = ROOT / ".venv"
EMU_VENV = ROOT / ".venv-emulators"

# Fixed ports for `make dev`; 0 means "pick a free port".
DEFAULT_PORTS: dict[str, int] = {
    "gateway": 8080, "firestore": 8681, "tasks": 9022, "storage": 9023, "simulator": 9090, "twilio": 9091,
    "send": 8701, "group": 8702, "messages": 8703, "dispatch": 8704, "webhook": 8705, "notifier": 8706,
    "sweeper": 8707, "batch": 8708, "optouts": 8709, "links": 8710, "templates": 8711, "dev": 8088,
}
SERVICES = ("firestore", "tasks", "storage", "simulator", "twilio")
# The Twilio simulator's account (tools/twilio_sim/config.py's default SID) and the local carrier weights: Twilio is
# configured, and used when a send pins it, names a Twilio number, or fails over from Telnyx (a tenant with a
# Twilio sender); a send that leaves the choice to weights goes through Telnyx, so local answers are predictable.
TWILIO_SIM_ACCOUNT_SID = "AC" + "0" * 31 + "1"
LOCAL_CARRIER_WEIGHTS = "telnyx=100,twilio=0"

# Variables a function process must not inherit from the shell (functions-framework reads some of them).
_STRIP_ENV = ("PORT", "HOST", "DEBUG", "FUNCTION_TARGET", "FUNCTION_SOURCE", "FUNCTION_SIGNATURE_TYPE",
              "FUNCTION_USE_ASGI", "GOOGLE_APPLICATION_CREDENTIALS")


def _default_ports() -> dict[str, int]:
    ports = dict(DEFAULT_PORTS)
    if os.environ.get("PORT"):
        ports["gateway"] = int(os.environ["PORT"])
    return ports


class StackError(RuntimeError):
    """A component did not start (the message carries the end of its log), or a reset call failed."""


# tools/telnyx_sim/config.py's default detail-record lag (docs/simulator.md).
SIM_DEFAULT_MDR_LAG_SECONDS = 60.0

@dataclass
class StackConfig:
    project: str = "demo-mmsgate"
    ports: dict[str, int] = field(default_factory=_default_ports)  # see DEFAULT_PORTS; 0 = free port
    state_dir: Path = ROOT / ".dev"  # logs/ and stack.json go here
    sweep_interval: float = 5.0  # seconds between sweeper calls; 0 disables the timer
    env_overrides: dict[str, str] = field(default_factory=dict)  # applied last to every function's env
    dispatch_max_attempts: int = 10  # DISPATCH_MAX_ATTEMPTS and the tasks emulator's --max-attempts
    sim_webhook_delay_ms: int = 100
    location: str = ENV["TASKS_LOCATION"][0]
    dispatch_queue: str = ENV["DISPATCH_QUEUE"][0]
    notify_queue: str = ENV["NOTIFY_QUEUE"][0]
    media_bucket: str = "mmsgate-media-local"
    sweep_queued_after_seconds: int = int(ENV["SWEEP_QUEUED_AFTER_SECONDS"][0])
    batch_legs_per_second: float = float(ENV["BATCH_LEGS_PER_SECOND"][0])
    sweep_final_after_seconds: int = int(ENV["SWEEP_FINAL_AFTER_SECONDS"][0])
    claim_lease_seconds: int = int(ENV["DISPATCH_CLAIM_LEASE_SECONDS"][0])
    log_level: str = "INFO"
    tasks_min_backoff: float = 0.1  # seconds before a failed task's first retry, doubling ...
    tasks_max_backoff: float = 2.0  # ... up to this
    tasks_timeout: float = 30.0  # seconds per Cloud Tasks HTTP delivery
    # Deliveries in flight per queue (real queues: terraform's *_max_concurrent, 50 and 100; locally each
    # function serves 4 requests per core at once, so more would only queue up in gunicorn).
    tasks_max_concurrent: int = 10
    tasks_throttle_min: float = 1.0  # seconds a queue is held after a 429/503, doubling ...
    tasks_throttle_max: float = 60.0  # ... up to this (which also caps an honoured Retry-After)
    functions_source: Path = ROOT / "main.py"  # functions-framework --source (cwd = its directory)
    entry_points: list[str] | None = None  # None: the keys of main.ENTRY_POINTS
    simulator_cmd: list[str] | None = None  # None: .venv/bin/python -m tools.telnyx_sim (host/port appended)
    sim_env: dict[str, str] = field(default_factory=dict)  # extra TELNYX_SIM_* variables
    twilio_sim_env: dict[str, str] = field(default_factory=dict)  # extra TWILIO_SIM_* variables
    # The simulator's detail-record lag (TELNYX_SIM_MDR_LAG_S; None: the shell's, else the simulator's 60 s) and
    # dispatch's DISPATCH_LOOKUP_HORIZON_SECONDS (None: the shell's, else derived from that lag: the horizon
    # must outlast it, as it must outlast Telnyx's on a real account; docs/decisions.md, Exactly once).
    sim_mdr_lag_seconds: float | None = None
    lookup_horizon_seconds: int | None = None
    startup_timeout: float = 60.0
    stop_timeout: float = 5.0  # SIGTERM grace before SIGKILL

    @classmethod
    def for_tests(cls, state_dir: Path | str, **overrides: Any) -> StackConfig:
        """Free ports, no sweeper timer (tests call the sweeper), short sweep windows and retry backoff."""
        values: dict[str, Any] = {
            "ports": dict.fromkeys(DEFAULT_PORTS, 0),
            "state_dir": Path(state_dir),
            "sweep_interval": 0.0,
            "sweep_queued_after_seconds": 3,
            "batch_legs_per_second": 0.0,  # a test's batch goes as fast as the machine: its speed is what it says
            "sweep_final_after_seconds": 6,
            "claim_lease_seconds": 15,  # the simulator answers at once; still above the client's 13 s timeouts
            "sim_webhook_delay_ms": 50,
            # Telnyx as documented (no replay of keyed sends, detail records that lag), on a short clock: a
            # record shows 2 s after its message is sent, and absence counts 8 s after an attempt. A lag set in
            # the shell (TELNYX_SIM_MDR_LAG_S=120 make test) is played instead, with the horizon derived from it.
            **({} if os.environ.get("TELNYX_SIM_MDR_LAG_S", "").strip() else {
                "sim_mdr_lag_seconds": 2.0, "lookup_horizon_seconds": 8}),
            "tasks_min_backoff": 0.05,
            "tasks_max_backoff": 0.5,
            "tasks_throttle_min": 0.2,
            "tasks_throttle_max": 1.0,
            # a test's Twilio legs are not held in a per-sender queue (1 segment/s for a long code: §7)
            "twilio_sim_env": {"TWILIO_SIM_SENDER_SEGMENTS_PER_S": "0"},
            # a burst a test can make and outwait: more than 20 carrier errors within 10 s
            "env_overrides": {"CARRIER_ERROR_BURST": "20/10"},
        }
        values.update(overrides)
        return cls(**values)

    def function_names(self) -> list[str]:
        if self.entry_points is not None:
            return list(self.entry_points)
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        return list(importlib.import_module("main").ENTRY_POINTS)


def _ed25519_keypair() -> tuple[str, str]:
    """(private seed, public key), each raw 32 bytes in base64: the simulator's signing key format."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def _media_signing_key(project: str) -> str:
    """A service-account JSON with a fresh RSA key: the local stand-in for IAM signBlob, used only to sign
    media URLs for the storage emulator (which does not check signatures). Never a real account."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": secrets.token_hex(20),
        "private_key": pem, "client_email": f"mmsgate-local-signer@{project}.iam.gserviceaccount.com",
        "client_id": "0", "token_uri": "https://oauth2.googleapis.com/token",
    })


def _http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One plain HTTP call (http.client: never routed through an HTTP(S)_PROXY from the environment)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _dev_trusted_origins() -> list[str]:
    """MMSGATE_DEV_TRUSTED_ORIGINS: exact origins (``http://127.0.0.1:PORT``) of the developer's own receivers,
    which the local stack's functions may post webhooks to (and fetch media from)."""
    return [o.strip().rstrip("/") for o in os.environ.get("MMSGATE_DEV_TRUSTED_ORIGINS", "").split(",") if o.strip()]


def _venv_bin(venv: Path, name: str) -> str:
    path = venv / "bin" / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise StackError(f"{path} not found: run `make {venv.name}/.stamp` (or `make dev`) first")


def _firestore_cmd(port: int) -> list[str]:
    jar = os.environ.get("FIRESTORE_EMULATOR_JAR")
    if not jar:
        gcloud = shutil.which("gcloud")
        if not gcloud:
            raise StackError("gcloud not found: install the Google Cloud SDK with cloud-firestore-emulator")
        sdk_root = Path(os.path.realpath(gcloud)).parent.parent
        jar = str(sdk_root / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar")
    if not Path(jar).exists():
        raise StackError(f"{jar} not found: `gcloud components install cloud-firestore-emulator`")
    java = shutil.which("java")
    if not java:
        raise StackError("java not found: the Firestore emulator needs a JRE (17+)")
    # C1-only JIT: the emulator is ready ~0.2 s sooner and its first write is faster.
    return [java, "-XX:TieredStopAtLevel=1", "-Duser.language=en", "-cp", jar,
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
            f"--host={HOST}", f"--port={port}", "--database-mode=firestore-native"]


class Stack:
    """The whole local stack. ``start()`` blocks until every component answers; ``stop()`` is idempotent."""

    def __init__(self, config: StackConfig, on_ready: Callable[[Stack], Any] | None = None):
        self.config = config
        self.on_ready = on_ready
        self.functions: list[str] = config.function_names()
        self.ports: dict[str, int] = self._resolve_ports()
        self.state_dir = Path(config.state_dir)
        self.logs_dir = self.state_dir / "logs"
        self.state_file = self.state_dir / "stack.json"

        self.sim_api_key = "KEYSIM" + secrets.token_hex(12)
        self.sim_private_key, self.sim_public_key = _ed25519_keypair()
        self.twilio_auth_token = secrets.token_hex(16)
        self.webhook_signing_key = secrets.token_hex(32)
        self.media_signing_key = _media_signing_key(config.project)

        port = self.ports
        self.urls: dict[str, str] = {
            "gateway": f"http://{HOST}:{port['gateway']}",
            "simulator": f"http://{HOST}:{port['simulator']}",
            "twilio": f"http://{HOST}:{port['twilio']}",
            "firestore": f"http://{HOST}:{port['firestore']}",
            "tasks": f"{HOST}:{port['tasks']}",
            "storage": f"http://{HOST}:{port['storage']}",
            "dev": f"http://{HOST}:{port['dev']}",  # tools/dev_inbox.py: webhook inbox and console
            **{f"function:{name}": f"http://{HOST}:{port[name]}" for name in self.functions},
        }
        # Extra keys for stack.json; the on_ready hook adds sample_media_url and api_key.
        self.info: dict[str, Any] = {"sample_media_url": None, "api_key": None}
        self.procs: dict[str, Proc] = {}
        self.gateway: gateway_mod.GatewayServer | None = None
        self.dev_server: Any = None  # tools.dev_inbox.DevServer
        self._gateway_log = None
        self.timings: dict[str, float] = {}
        self._state = "new"  # new -> starting -> running -> stopped
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._tasks_client = None
        self._runtime_dir: str | None = None
        self._commands_used: dict[str, tuple[list[str], dict[str, str], Path]] = {}

    # ------------------------------------------------------------------ configuration

    def _resolve_ports(self) -> dict[str, int]:
        names = ("gateway", "dev", *SERVICES, *self.functions)
        ports = {name: int(self.config.ports.get(name, 0)) for name in names}
        fixed = [p for p in ports.values() if p]
        if len(set(fixed)) != len(fixed):
            raise StackError(f"two components share a port: {ports}")
        unset = [name for name, p in ports.items() if not p]
        free = [p for p in free_ports(len(unset) + len(fixed)) if p not in fixed]
        ports.update(zip(unset, free, strict=False))
        return ports

    @property
    def queue_paths(self) -> dict[str, str]:
        parent = f"projects/{self.config.project}/locations/{self.config.location}/queues"
        return {"dispatch": f"{parent}/{self.config.dispatch_queue}",
                "notify": f"{parent}/{self.config.notify_queue}"}

    def function_env(self) -> dict[str, str]:
        """The environment of every function process (the shell's, minus _STRIP_ENV, plus this)."""
        c, port = self.config, self.ports
        env = {
            "GOOGLE_CLOUD_PROJECT": c.project,
            "FIRESTORE_EMULATOR_HOST": f"{HOST}:{port['firestore']}",
            "STORAGE_EMULATOR_HOST": f"http://{HOST}:{port['storage']}",
            "CLOUD_TASKS_EMULATOR_HOST": f"{HOST}:{port['tasks']}",
            "TASKS_LOCATION": c.location,
            "DISPATCH_QUEUE": c.dispatch_queue,
            "NOTIFY_QUEUE": c.notify_queue,
            "DISPATCH_URL": f"http://{HOST}:{port['dispatch']}/" if "dispatch" in port else "",
            "NOTIFIER_URL": f"http://{HOST}:{port['notifier']}/" if "notifier" in port else "",
            "TELNYX_BASE_URL": f"http://{HOST}:{port['simulator']}",
            "TELNYX_API_KEY": self.sim_api_key,
            "TELNYX_PUBLIC_KEY": self.sim_public_key,
            "TELNYX_WEBHOOK_URL": f"http://{HOST}:{port['gateway']}/webhooks/telnyx",
            "TWILIO_BASE_URL": f"http://{HOST}:{port['twilio']}",
            "TWILIO_ACCOUNT_SID": TWILIO_SIM_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": self.twilio_auth_token,
            "TWILIO_WEBHOOK_URL": f"http://{HOST}:{port['gateway']}/webhooks/twilio",
            "CARRIER_WEIGHTS": LOCAL_CARRIER_WEIGHTS,
            "WEBHOOK_SIGNING_KEY": self.webhook_signing_key,
            "MEDIA_BUCKET": c.media_bucket,
            "MEDIA_ALLOWED_HOSTS": "storage.googleapis.com",
            # Loopback origins the functions may fetch from and post to: the storage emulator, the dev inbox,
            # the simulator (inbound media, as Telnyx's media host is in production) and a receiver of the
            # developer's own (MMSGATE_DEV_TRUSTED_ORIGINS). Never set in Terraform.
            "MEDIA_TRUSTED_ORIGINS": ",".join([f"http://{HOST}:{port['storage']}", f"http://{HOST}:{port['dev']}",
                                               f"http://{HOST}:{port['simulator']}", f"http://{HOST}:{port['twilio']}",
                                               *_dev_trusted_origins()]),
            "MEDIA_SIGNING_KEY": self.media_signing_key,
            "DISPATCH_MAX_ATTEMPTS": str(c.dispatch_max_attempts),
            "SWEEP_QUEUED_AFTER_SECONDS": str(c.sweep_queued_after_seconds),
            "BATCH_LEGS_PER_SECOND": str(c.batch_legs_per_second),
            "LINK_BASE_URL": f"http://{HOST}:{port['gateway']}",
            "SWEEP_FINAL_AFTER_SECONDS": str(c.sweep_final_after_seconds),
            "DISPATCH_CLAIM_LEASE_SECONDS": str(c.claim_lease_seconds),
            "DISPATCH_LOOKUP_HORIZON_SECONDS": str(self.lookup_horizon_seconds()),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": c.log_level,
        }
        env.update(c.env_overrides)
        return env

    def sim_mdr_lag_seconds(self) -> float:
        if self.config.sim_mdr_lag_seconds is not None:
            return self.config.sim_mdr_lag_seconds
        raw = os.environ.get("TELNYX_SIM_MDR_LAG_S", "").strip()
        return float(raw) if raw else SIM_DEFAULT_MDR_LAG_SECONDS

    def lookup_horizon_seconds(self) -> int:
        """Dispatch's horizon: the configured one, the shell's, or the simulator's lag plus a margin for a loaded
        machine (a record shows ``lag`` after the simulator sends the message, itself a moment after the
        attempt)."""
        if self.config.lookup_horizon_seconds is not None:
            return self.config.lookup_horizon_seconds
        raw = os.environ.get("DISPATCH_LOOKUP_HORIZON_SECONDS", "").strip()
        if raw:
            return int(raw)
        lag = self.sim_mdr_lag_seconds()
        return math.ceil(lag + max(10.0, lag / 2))

    def _child_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
        # Loopback must never go through a proxy the shell may have configured (httpx, urllib honour these).
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1,localhost"]))
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def _commands(self) -> dict[str, tuple[list[str], dict[str, str], Path]]:
        """name -> (argv, env, cwd) for every child process, in start order (the JVM first: slowest)."""
        c, port = self.config, self.ports
        commands: dict[str, tuple[list[str], dict[str, str], Path]] = {}
        commands["firestore"] = (_firestore_cmd(port["firestore"]), self._child_env({}), ROOT)
        commands["tasks"] = ([
            _venv_bin(EMU_VENV, "python"), str(ROOT / "tools" / "tasks_emulator.py"),
            "--port", str(port["tasks"]), "--max-attempts", str(c.dispatch_max_attempts),
            "--min-backoff", str(c.tasks_min_backoff), "--max-backoff", str(c.tasks_max_backoff),
            "--timeout", str(c.tasks_timeout), "--max-concurrent", str(c.tasks_max_concurrent),
            "--throttle-min", str(c.tasks_throttle_min), "--throttle-max", str(c.tasks_throttle_max),
            *[arg for q in self.queue_paths.values() for arg in ("-d", q)],
        ], self._child_env({}), ROOT)
        commands["storage"] = ([
            _venv_bin(EMU_VENV, "gcp-storage-emulator"), "start", f"--host={HOST}",
            f"--port={port['storage']}", "--in-memory", f"--default-bucket={c.media_bucket}",
        ], self._child_env({}), ROOT)
        sim_cmd = list(c.simulator_cmd or [_venv_bin(APP_VENV, "python"), "-m", "tools.telnyx_sim"])
        sim_argv = [*sim_cmd, "--host", HOST, "--port", str(port["simulator"])]
        commands["simulator"] = (sim_argv, self._child_env({
            "TELNYX_SIM_API_KEY": self.sim_api_key,
            "TELNYX_SIM_SIGNING_KEY": self.sim_private_key,
            "TELNYX_SIM_WEBHOOK_DELAY_MS": str(c.sim_webhook_delay_ms),
            "TELNYX_SIM_PROFILE_WEBHOOK_URL": f"http://{HOST}:{port['gateway']}/webhooks/telnyx",
            "TELNYX_SIM_MDR_LAG_S": f"{self.sim_mdr_lag_seconds():g}",
            **c.sim_env,
        }), ROOT)
        commands["twilio"] = ([_venv_bin(APP_VENV, "python"), "-m", "tools.twilio_sim", "--host", HOST,
                               "--port", str(port["twilio"])], self._child_env({
            "TWILIO_SIM_ACCOUNT_SID": TWILIO_SIM_ACCOUNT_SID,
            "TWILIO_SIM_AUTH_TOKEN": self.twilio_auth_token,
            "TWILIO_SIM_INBOUND_URL": f"http://{HOST}:{port['gateway']}/webhooks/twilio",
            "TWILIO_SIM_STATUS_DELAY_MS": str(c.sim_webhook_delay_ms),
            # the list's lag plays the detail records': one horizon covers both carriers' lookups
            "TWILIO_SIM_LIST_LAG_S": f"{self.sim_mdr_lag_seconds():g}",
            **c.twilio_sim_env,
        }), ROOT)
        source = Path(c.functions_source).resolve()
        ff = _venv_bin(APP_VENV, "functions-framework")
        function_env = self._child_env(self.function_env())
        for name in self.functions:
            # gunicorn >= 25 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl (else ~/.gunicorn/):
            # one path shared by every server on the machine. Give each function its own directory.
            runtime_dir = Path(self._runtime_dir) / name
            runtime_dir.mkdir(mode=0o700, exist_ok=True)
            commands[name] = ([ff, f"--source={source}", f"--target={name}", f"--host={HOST}",
                               f"--port={port[name]}"], {**function_env, "XDG_RUNTIME_DIR": str(runtime_dir)},
                              source.parent)
        return commands

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._lock:
            if self._state != "new":
                raise StackError(f"a Stack starts once (state: {self._state})")
            self._state = "starting"
        atexit.register(self.stop)
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = round(time.monotonic() - t0, 3)
        with self._lock:
            if self._state == "starting":
                self._state = "running"

    def _start(self) -> None:
        busy = [f"{name}={p}" for name, p in self.ports.items() if port_open(p)]
        if busy:
            raise StackError(f"port(s) already in use: {', '.join(busy)} (another stack running? "
                             "stop it, or pick other ports; PORT= sets the gateway's)")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._runtime_dir = tempfile.mkdtemp(prefix="mmsgate-run-")  # short: unix socket paths max 107 bytes
        t0 = time.monotonic()
        self._commands_used = self._commands()  # start_component() starts exactly these again
        for name, (cmd, env, cwd) in self._commands_used.items():
            log_path = self.logs_dir / f"{name}.log"
            log_path.write_bytes(b"")  # fresh log per run (a restart appends)
            self.procs[name] = Proc(name, cmd, log_path, env=env, cwd=cwd).start()
        upstreams = {name: f"http://{HOST}:{self.ports[name]}" for name in self.functions}
        self._gateway_log = open(self.logs_dir / "gateway.log", "w")
        self.gateway = gateway_mod.serve(HOST, self.ports["gateway"], upstreams, self._gateway_log)
        from tools import dev_inbox

        self.dev_server = dev_inbox.serve(HOST, self.ports["dev"], project=self.config.project,
                                          firestore_url=self.urls["firestore"], simulator_url=self.urls["simulator"],
                                          twilio_url=self.urls["twilio"],
                                          signing_key=self.webhook_signing_key)
        self._wait_ready(t0)

        if self.on_ready is not None:
            t1 = time.monotonic()
            extra = self.on_ready(self)
            if isinstance(extra, dict):
                self.info.update(extra)
            self.timings["on_ready"] = round(time.monotonic() - t1, 3)
        self._write_state()
        if self.config.sweep_interval > 0 and "sweeper" in self.functions:
            self._sweeper = threading.Thread(target=self._sweep_loop, name="sweeper-timer", daemon=True)
            self._sweeper.start()

    def _probe(self, name: str) -> bool:
        port = self.ports[name]
        if name in ("firestore", "storage", "simulator", "twilio"):
            path = "/_sim/health" if name in ("simulator", "twilio") else "/"
            try:
                return _http("GET", f"http://{HOST}:{port}{path}", timeout=1.0)[0] == 200
            except OSError:
                return False
        return port_open(port)  # tasks (gRPC) and functions (functions-framework answers any path)

    def _wait_ready(self, t0: float, procs: dict[str, Proc] | None = None) -> None:
        pending = dict(self.procs if procs is None else procs)
        checked = dict(pending)
        deadline = t0 + self.config.startup_timeout
        while pending:
            for name, proc in list(pending.items()):
                if self._probe(name):
                    self.timings[name if procs is None else f"restart:{name}"] = round(time.monotonic() - t0, 3)
                    del pending[name]
                elif not proc.running():
                    raise StackError(f"{name} exited with code {proc.popen.returncode} before it was ready "
                                     f"(log: {proc.log_path}); last lines:\n{proc.tail()}")
            if pending and time.monotonic() > deadline:
                name, proc = next(iter(pending.items()))
                raise StackError(f"{name} not ready after {self.config.startup_timeout:.0f} s "
                                 f"(log: {proc.log_path}); last lines:\n{proc.tail()}")
            if pending:
                time.sleep(0.05)
        for name, proc in checked.items():  # a server that answered and then died (e.g. a port clash)
            if not proc.running():
                raise StackError(f"{name} exited with code {proc.popen.returncode} right after it answered "
                                 f"(log: {proc.log_path}); last lines:\n{proc.tail()}")

    def _write_state(self) -> None:
        state = {
            "gateway": self.urls["gateway"],
            "simulator": self.urls["simulator"],
            "twilio": self.urls["twilio"],
            "firestore": self.urls["firestore"],
            "tasks": self.urls["tasks"],
            "storage": self.urls["storage"],
            "console": f"{self.urls['dev']}/_dev/console",
            "inbox": f"{self.urls['dev']}/_dev/inbox",
            "functions": {name: self.urls[f"function:{name}"] for name in self.functions},
            **self.info,
            "project": self.config.project,
            "bucket": self.config.media_bucket,
            "queues": self.queue_paths,
            "logs": str(self.logs_dir),
            "pid": os.getpid(),
            "env": self.function_env(),
        }
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    def stop(self) -> None:
        """Stop everything this stack started (idempotent; safe from atexit and signal handlers)."""
        with self._lock:
            if self._state in ("new", "stopped"):
                self._state = "stopped"
                return
            self._state = "stopped"
        t0 = time.monotonic()
        self._stop_event.set()
        ours = [*self.procs, *(["gateway"] if self.gateway is not None else [])]
        if self.gateway is not None:
            self.gateway.close()
        if self.dev_server is not None:
            self.dev_server.close()
        if self._gateway_log is not None:
            self._gateway_log.close()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        if self._tasks_client is not None:
            with contextlib.suppress(Exception):  # best effort: the emulator is about to go anyway
                self._tasks_client.transport.close()
        # The functions first, while what they call still answers: a request in flight when the stop begins (a
        # dispatch, a notifier delivery) finishes against a live Firestore, Cloud Tasks and simulator and the
        # function exits on its SIGTERM. Stopped together, such a request hung on an emulator that was already
        # gone (its client retrying for a minute), gunicorn waited for it, and the stop ended in a SIGKILL.
        functions = [proc for name, proc in self.procs.items() if name in self.functions]
        services = [proc for name, proc in self.procs.items() if name not in self.functions]
        killed = stop_all(functions, timeout=self.config.stop_timeout)
        killed += stop_all(services, timeout=self.config.stop_timeout)
        if killed:
            print(f"[stack] SIGKILLed after {self.config.stop_timeout:.0f} s: {', '.join(killed)}",
                  file=sys.stderr)
        deadline = time.monotonic() + 2.0
        while (bound := [n for n in ours if port_open(self.ports[n], timeout=0.1)]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        if bound:
            print(f"[stack] still listening after stop (not ours?): {bound}", file=sys.stderr)
        self.state_file.unlink(missing_ok=True)
        if self._runtime_dir:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
        atexit.unregister(self.stop)
        self.timings["stop"] = round(time.monotonic() - t0, 3)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def dead(self) -> dict[str, int | None]:
        """Components whose process has exited: name -> exit code."""
        return {name: p.popen.returncode for name, p in self.procs.items() if not p.running()}

    # ------------------------------------------------------------------ faults

    def components(self) -> list[str]:
        """What ``kill``, ``start_component`` and ``restart`` accept."""
        return [name for name in (*self.procs, "gateway") if name != "firestore"]

    def _component(self, name: str) -> None:
        if name == "firestore":
            raise StackError("firestore cannot be restarted: its data lives only in the emulator's memory")
        if name not in self.components():
            raise StackError(f"no component {name!r}; one of {', '.join(self.components())}")
        if self._state != "running":
            raise StackError(f"the stack is not running (state: {self._state})")

    def kill(self, name: str, timeout: float = 10.0) -> None:
        """SIGKILL component ``name`` (its whole process group) and wait until it is gone and its port free.

        It stays down until ``start_component(name)``. Killing a component that is already down is a no-op.
        """
        with self._lock:
            self._component(name)
            if name == "gateway":
                if self.gateway is not None:
                    self.gateway.close()
                    self.gateway = None
            else:
                proc = self.procs[name]
                if not proc.kill(timeout):
                    raise StackError(f"{name} (process group {proc.pid}) still alive {timeout:.0f} s after SIGKILL")
                if name == "tasks" and self._tasks_client is not None:
                    # a fresh channel for reset(): the old one may sit in gRPC's reconnect backoff
                    with contextlib.suppress(Exception):
                        self._tasks_client.transport.close()
                    self._tasks_client = None
            deadline = time.monotonic() + timeout
            while port_open(self.ports[name], timeout=0.1):
                if time.monotonic() > deadline:
                    raise StackError(f"port {self.ports[name]} of {name} still accepts connections after the kill")
                time.sleep(0.05)

    def start_component(self, name: str) -> None:
        """Start component ``name`` again (after ``kill``) on its port, and wait until it answers."""
        with self._lock:
            self._component(name)
            t0 = time.monotonic()
            if name == "gateway":
                if self.gateway is not None:
                    raise StackError("gateway is running: kill it first (or call restart)")
                upstreams = {fn: f"http://{HOST}:{self.ports[fn]}" for fn in self.functions}
                self.gateway = gateway_mod.serve(HOST, self.ports["gateway"], upstreams, self._gateway_log)
                self.timings["restart:gateway"] = round(time.monotonic() - t0, 3)
                return
            old = self.procs[name]
            if old.alive():
                raise StackError(f"{name} is running: kill it first (or call restart)")
            if port_open(self.ports[name]):
                raise StackError(f"port {self.ports[name]} of {name} is taken by another process")
            cmd, env, cwd = self._commands_used[name]
            self.procs[name] = proc = Proc(name, cmd, old.log_path, env=env, cwd=cwd).start()
            self._wait_ready(t0, {name: proc})

    def restart(self, name: str) -> None:
        """``kill(name)`` then ``start_component(name)``: a crash and a fresh instance on the same port."""
        with self._lock:
            self.kill(name)
            self.start_component(name)

    def throttles(self) -> list[dict[str, Any]]:
        """Queue throttles the tasks emulator logged since the stack started (restarts included), oldest
        first: ``{"queue", "seconds", "status", "task", "retry_after"}`` (see tools/tasks_emulator.py)."""
        pattern = re.compile(r"\[THROTTLE\] queue (\S+) held ([\d.]+)s after HTTP (\d+) from task (\S+) "
                             r"\(queue backoff [\d.]+s, Retry-After (.*)\)$")
        found = []
        for line in (self.logs_dir / "tasks.log").read_text(errors="replace").splitlines():
            if match := pattern.search(line):
                queue, seconds, status, task, retry_after = match.groups()
                found.append({"queue": queue, "seconds": float(seconds), "status": int(status), "task": task,
                              "retry_after": None if retry_after == "-" else retry_after})
        return found

    # ------------------------------------------------------------------ data

    def _tasks(self):
        if self._tasks_client is None:
            import grpc
            from google.cloud import tasks_v2
            from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

            channel = grpc.insecure_channel(self.urls["tasks"])
            self._tasks_client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        return self._tasks_client

    def reset(self) -> None:
        """Empty the queues, the simulator, Firestore and the bucket's objects (buckets stay)."""
        client = self._tasks()
        for queue in self.queue_paths.values():
            client.purge_queue(name=queue, timeout=10)
        documents = f"/emulator/v1/projects/{self.config.project}/databases/(default)/documents"
        calls = [
            ("POST", f"{self.urls['simulator']}/_sim/reset"),
            ("POST", f"{self.urls['twilio']}/_sim/reset"),
            ("DELETE", f"{self.urls['firestore']}{documents}"),
            ("GET", f"{self.urls['storage']}/wipe?keep-buckets=true"),
        ]
        for method, url in calls:
            status, body = _http(method, url, body=b"" if method == "POST" else None)
            if status != 200:
                raise StackError(f"reset: {method} {url} -> {status} {body[:200]!r}")
        if self.dev_server is not None:
            self.dev_server.inbox.clear()

    def sweep(self, timeout: float = 30.0) -> tuple[int, bytes]:
        """Call the sweeper function once, as the scheduler would: ``POST {}``."""
        return _http("POST", self.urls["function:sweeper"] + "/", body=b"{}", timeout=timeout,
                     headers={"Content-Type": "application/json"})

    def _sweep_loop(self) -> None:
        with open(self.logs_dir / "sweeper-timer.log", "a") as log:
            while not self._stop_event.wait(self.config.sweep_interval):
                t0 = time.monotonic()
                try:
                    status, body = self.sweep()
                    line = f"{status} {body[:300].decode(errors='replace').strip()}"
                except OSError as exc:
                    line = f"error {exc}"
                log.write(f"{time.strftime('%H:%M:%S')} {time.monotonic() - t0:.3f}s {line}\n")
                log.flush()


# ---------------------------------------------------------------------- make dev

def _seed_hook() -> Callable[[Stack], Any] | None:
    try:
        seed = importlib.import_module("tools.seed")
    except ModuleNotFoundError as exc:
        if exc.name != "tools.seed":
            raise
        print("[stack] warning: tools/seed.py not found; starting without seed data (no API key)",
              file=sys.stderr)
        return None
    return seed.seed_dev


def _summary(stack: Stack) -> str:
    u, info = stack.urls, stack.info
    key = info.get("api_key") or "<no API key: tools/seed.py missing>"
    media = info.get("sample_media_url") or "https://storage.googleapis.com/your-bucket/photo.jpg"
    width = max(len(name) for name in u) + 2
    t = stack.timings
    functions = max((t.get(name, 0) for name in stack.functions), default=0)
    parts = (("firestore", t.get("firestore", 0)), ("functions", functions), ("seed", t.get("on_ready", 0)))
    detail = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in parts if seconds)
    lines = ["", f"mmsgate local stack ready in {t.get('total', 0):.1f} s ({detail})", ""]
    lines += [f"  {name:<{width}}{url}" for name, url in u.items()]
    tenant = info.get("tenant_id") or "<no tenant: tools/seed.py missing>"
    lines += [
        "",
        f"  {'console':<{width}}{u['dev']}/_dev/console   (messages, webhook deliveries, inbox, simulator; live)",
        f"  {'webhook inbox':<{width}}{u['dev']}/_dev/inbox     (the dev tenant's webhook: its signed events)",
        f"  {'dev tenant':<{width}}{tenant}",
        f"  {'api key':<{width}}{key}",
        f"  {'webhook secret':<{width}}.venv/bin/mmsgate-admin --local webhooks secret {tenant}",
        f"  {'sample media':<{width}}{media}",
        f"  {'state':<{width}}{stack.state_file}  (logs in {stack.logs_dir}/)",
        "",
        "Send one MMS:",
        (f"  curl -sS -X POST {u['gateway']}/api/v1/messages/sms -H \"X-API-Key: {key}\" "
         "-H 'Content-Type: application/json' "
         f"-d '{{\"to\":\"+14155550101\",\"body\":\"hello\",\"media_urls\":[\"{media}\"]}}'"),
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.stack", description="Run the local mmsgate stack.")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".dev", help="logs and stack.json (.dev)")
    parser.add_argument("--sweep-interval", type=float, default=5.0, help="seconds; 0 disables the timer")
    parser.add_argument("--no-seed", action="store_true", help="do not run tools.seed.seed_dev")
    args = parser.parse_args(argv)

    stack = Stack(StackConfig(state_dir=args.state_dir, sweep_interval=args.sweep_interval),
                  on_ready=None if args.no_seed else _seed_hook())

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, interrupt)
    try:
        stack.start()
        print(_summary(stack), flush=True)
        reported: set[str] = set()
        while True:
            time.sleep(1.0)
            for name, code in stack.dead().items():
                if name not in reported:
                    reported.add(name)
                    print(f"[stack] {name} exited with code {code}; see {stack.logs_dir / (name + '.log')}",
                          file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    except StackError as exc:
        print(f"[stack] {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the shutdown
        if stack.procs:
            print("\nstopping ...", file=sys.stderr, flush=True)
        stack.stop()
        if stack.procs:
            print(f"stopped in {stack.timings.get('stop', 0):.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
