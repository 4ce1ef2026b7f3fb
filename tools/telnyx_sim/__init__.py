"""A local simulator of the Telnyx messaging API (send, group MMS, retrieve, signed DLR webhooks).

In-process use::

    from tools.telnyx_sim import SimConfig, generate_keypair, start_server
    private, public = generate_keypair()
    server, thread = start_server("127.0.0.1", 0, SimConfig(api_key="k", signing_key=private))
    ... server.url ...
    server.shutdown()

Command line: ``python -m tools.telnyx_sim --host 127.0.0.1 --port 8790`` (configuration from the
``TELNYX_SIM_*`` environment variables, see :class:`SimConfig`).
"""

from .config import SimConfig
from .outcomes import outcome_code
from .server import SimServer, start_server
from .signing import generate_keypair, public_key_b64, sign, verify

__all__ = [
    "SimConfig",
    "SimServer",
    "generate_keypair",
    "outcome_code",
    "public_key_b64",
    "sign",
    "start_server",
    "verify",
]
