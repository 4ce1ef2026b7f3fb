"""``python -m tools.telnyx_sim --host 127.0.0.1 --port 8790``: run the Telnyx simulator.

Configuration comes from the ``TELNYX_SIM_*`` environment variables; flags override them.
Stops cleanly on SIGTERM or SIGINT (exit status 0).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .config import SimConfig
from .server import start_server
from .signing import generate_keypair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.telnyx_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790, help="0 picks a free port (printed on stderr)")
    parser.add_argument("--api-key", help="overrides TELNYX_SIM_API_KEY")
    parser.add_argument("--signing-key", help="base64 Ed25519 seed; overrides TELNYX_SIM_SIGNING_KEY")
    parser.add_argument("--webhook-delay-ms", type=int, help="overrides TELNYX_SIM_WEBHOOK_DELAY_MS")
    parser.add_argument("--profile-webhook-url", help="overrides TELNYX_SIM_PROFILE_WEBHOOK_URL")
    parser.add_argument("--profile-webhook-failover-url",
                        help="overrides TELNYX_SIM_PROFILE_WEBHOOK_FAILOVER_URL")
    parser.add_argument("--media-limit-bytes", type=int, help="overrides TELNYX_SIM_MEDIA_LIMIT_BYTES")
    parser.add_argument("--webhook-attempts", type=int, help="overrides TELNYX_SIM_WEBHOOK_ATTEMPTS")
    parser.add_argument("--webhook-retry-pause-ms", type=int,
                        help="overrides TELNYX_SIM_WEBHOOK_RETRY_PAUSE_MS")
    parser.add_argument("--inbound-media-ttl-ms", type=int, help="overrides TELNYX_SIM_INBOUND_MEDIA_TTL_MS")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    parser.add_argument("--generate-keypair", action="store_true",
                        help="print 'TELNYX_SIM_SIGNING_KEY=…' and 'TELNYX_PUBLIC_KEY=…' and exit")
    args = parser.parse_args(argv)

    if args.generate_keypair:
        private, public = generate_keypair()
        print(f"TELNYX_SIM_SIGNING_KEY={private}")
        print(f"TELNYX_PUBLIC_KEY={public}")
        return 0

    try:
        config = SimConfig.from_env(
            api_key=args.api_key, signing_key=args.signing_key, webhook_delay_ms=args.webhook_delay_ms,
            profile_webhook_url=args.profile_webhook_url,
            profile_webhook_failover_url=args.profile_webhook_failover_url,
            media_limit_bytes=args.media_limit_bytes, webhook_attempts=args.webhook_attempts,
            webhook_retry_pause_ms=args.webhook_retry_pause_ms, inbound_media_ttl_ms=args.inbound_media_ttl_ms,
        )
        if args.quiet:
            config.log_requests = False
        generated_key = config.signing_key is None
        server, thread = start_server(args.host, args.port, config)
    except (ValueError, OSError) as exc:
        print(f"telnyx-sim: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if generated_key:
        server.log("no TELNYX_SIM_SIGNING_KEY: generated a throwaway signing key")
    server.log(f"listening on {server.url} (public key {server.public_key})")
    while not stop.wait(0.5) and thread.is_alive():
        pass
    server.log("shutting down")
    server.shutdown()
    thread.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
