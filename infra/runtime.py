"""What a service function needs from the outside world, built lazily once per instance.

Handlers pass ``runtime()`` to the services in ``shared``; each adapter is imported on first use, so
a function only loads the client libraries its own path touches.
"""

from __future__ import annotations

import datetime as dt
import functools
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

from infra.settings import Settings, settings

_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="request")


class Runtime:
    @functools.cached_property
    def settings(self) -> Settings:
        return settings()

    @functools.cached_property
    def store(self):
        from infra.clients import firestore
        from infra.store import Store

        return Store(firestore())

    @functools.cached_property
    def queue(self) -> ModuleType:
        from infra import queue

        return queue

    @functools.cached_property
    def provider(self) -> ModuleType:
        from infra import telnyx

        return telnyx

    @functools.cached_property
    def media(self):
        from infra.media import Media

        return Media(self.settings, self.resolver)

    @staticmethod
    def post_vetted(vetted, *, content: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST to a URL that passed the SSRF check, connecting only to its vetted addresses."""
        from infra.pinned import post

        return post(vetted, content=content, headers=headers, timeout=timeout).status_code

    @staticmethod
    def resolver(host: str, port: int) -> list[str]:
        from shared.ssrf import system_resolver

        return system_resolver(host, port)

    @staticmethod
    def concurrently(*calls):
        """Run independent blocking calls at once; their results, in order (the first error raises)."""
        futures = [_pool.submit(call) for call in calls]
        return [future.result() for future in futures]

    @staticmethod
    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@functools.cache
def runtime() -> Runtime:
    return Runtime()


def store():
    return runtime().store
