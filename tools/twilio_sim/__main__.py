"""``python -m tools.twilio_sim --host 127.0.0.1 --port 8791``: run the Twilio simulator.

Configuration comes from the ``TWILIO_SIM_*`` environment variables; flags override them.
Stops cleanly on SIGTERM or SIGINT (exit status 0).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .config import SimConfig
from .server import start_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.twilio_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 (or localhost) is accepted")
    parser.add_argument("--port", type=int, default=8791, help="0 picks a free port (printed on stderr)")
    parser.add_argument("--account-sid", help="overrides TWILIO_SIM_ACCOUNT_SID")
    parser.add_argument("--auth-token", help="overrides TWILIO_SIM_AUTH_TOKEN")
    parser.add_argument("--inbound-url", help="overrides TWILIO_SIM_INBOUND_URL")
    parser.add_argument("--status-delay-ms", type=int, help="overrides TWILIO_SIM_STATUS_DELAY_MS")
    parser.add_argument("--outage", choices=["off", "5xx", "timeout"], help="overrides TWILIO_SIM_OUTAGE")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = parser.parse_args(argv)

    try:
        config = SimConfig.from_env(account_sid=args.account_sid, auth_token=args.auth_token,
                                    inbound_url=args.inbound_url, status_delay_ms=args.status_delay_ms,
                                    outage=args.outage)
        if args.quiet:
            config.log_requests = False
        server, thread = start_server(args.host, args.port, config)
    except (ValueError, OSError) as exc:
        print(f"twilio-sim: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.log(f"listening on {server.url} (account {config.account_sid}, outage {server.outage})")
    while not stop.wait(0.5) and thread.is_alive():
        pass
    server.log("shutting down")
    server.shutdown()
    thread.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
