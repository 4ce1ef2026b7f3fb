"""A local simulator of Twilio Programmable Messaging (create, fetch, list, signed status callbacks, inbound
webhooks with Advanced Opt-Out), as ``/work/shared/reference/twilio.md`` documents it.

In-process use::

    from tools.twilio_sim import SimConfig, start_server
    server, thread = start_server("127.0.0.1", 0, SimConfig(auth_token="secret"))
    ... server.api_base + "/Messages.json" (HTTP Basic: server.config.account_sid, "secret") ...
    server.shutdown()

Command line: ``python -m tools.twilio_sim --host 127.0.0.1 --port 8791`` (configuration from the
``TWILIO_SIM_*`` environment variables, see :class:`SimConfig` and ``docs/twilio-simulator.md``).
"""

from .config import SimConfig
from .outcomes import fate, outcome_code
from .server import SimServer, start_server
from .signing import expected_signature, string_to_sign, validate

__all__ = [
    "SimConfig",
    "SimServer",
    "expected_signature",
    "fate",
    "outcome_code",
    "start_server",
    "string_to_sign",
    "validate",
]
