"""What a service function needs from the outside world, built lazily once per instance.

Handlers pass ``runtime()`` to the services in ``shared``; each adapter is imported on first use, so a
function only loads the client libraries its own path touches. Every attribute is typed as the port
``shared.ports`` declares, so a call the port does not offer fails type checking.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from infra.settings import Settings, settings
from shared.ports import Clock, SystemClock

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from infra.store import Store
    from shared.ports import (
        AccountStore,
        BatchStore,
        CarrierStore,
        IdempotencyStore,
        LegStore,
        LimitStore,
        LinkStore,
        MediaStore,
        Provider,
        TaskQueue,
        TemplateStore,
    )
    from shared.rules.ssrf import VettedUrl

R = TypeVar("R")


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """The threads of ``concurrently``, started on its first call (most functions never make one)."""
    from concurrent.futures import ThreadPoolExecutor

    # The sweeper's ten independent reads are the most any request makes at once.
    return ThreadPoolExecutor(max_workers=10, thread_name_prefix="request")


class Runtime:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._carriers: dict[str, Provider] = {}

    @functools.cached_property
    def settings(self) -> Settings:
        return settings()

    @functools.cached_property
    def store(self) -> Store:
        from infra.clients import firestore
        from infra.store import Store

        return Store(firestore())

    @property
    def legs(self) -> LegStore:
        return self.store.legs

    @property
    def accounts(self) -> AccountStore:
        return self.store.accounts

    @property
    def limits(self) -> LimitStore:
        return self.store.limits

    @property
    def idempotency(self) -> IdempotencyStore:
        return self.store.idempotency

    @property
    def batches(self) -> BatchStore:
        return self.store.batches

    @property
    def templates(self) -> TemplateStore:
        return self.store.templates

    @functools.cached_property
    def queue(self) -> TaskQueue:
        from infra.queue import CloudTasksQueue

        return CloudTasksQueue(self.settings)

    @property
    def provider(self) -> Provider:
        """Telnyx: the carrier of group conversations (group_mms) and of every leg that names no other."""
        return self.carrier("telnyx")

    def carrier(self, name: str) -> Provider:
        if name not in self._carriers:
            if name == "telnyx":
                from infra.telnyx import TelnyxProvider

                self._carriers[name] = TelnyxProvider.from_settings()
            elif name == "twilio":
                from infra.twilio import TwilioProvider

                self._carriers[name] = TwilioProvider.from_settings()
            else:
                raise KeyError(f"unknown carrier {name!r}")
        return self._carriers[name]

    @property
    def carriers(self) -> CarrierStore:
        return self.store.carriers

    @property
    def links(self) -> LinkStore:
        return self.store.links

    @functools.cached_property
    def media(self) -> MediaStore:
        from infra.media import Media

        return Media(self.settings, self.resolver)

    @staticmethod
    def post_vetted(vetted: VettedUrl, *, content: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST to a URL that passed the SSRF check, connecting only to its vetted addresses."""
        from infra.pinned import post

        return post(vetted, content=content, headers=headers, timeout=timeout).status_code

    @staticmethod
    def resolver(host: str, port: int) -> list[str]:
        from shared.rules.ssrf import system_resolver

        return system_resolver(host, port)

    @staticmethod
    def concurrently(*calls: Callable[[], Any]) -> list[Any]:
        """Run independent blocking calls at once; their results, in order (the first error raises)."""
        futures = [_pool().submit(call) for call in calls]
        return [future.result() for future in futures]

    def now(self) -> dt.datetime:
        return self.clock.now()


@functools.cache
def runtime() -> Runtime:
    return Runtime()


def store() -> Store:
    return runtime().store
