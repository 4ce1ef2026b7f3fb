"""Google Cloud clients, created lazily once per instance.

Each getter imports its library on first use, so a function that never touches Cloud Tasks never
pays for importing it. Under the local stack the emulator variables point the clients at the
emulators (Cloud Tasks has no emulator variable of its own: we build an insecure channel).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from infra.settings import settings

if TYPE_CHECKING:  # each library is imported on first use (the module docstring)
    import google.cloud.storage as gcs
    import httpx
    from google.cloud import firestore as fs
    from google.cloud import tasks_v2


@functools.cache
def firestore() -> fs.Client:
    from google.cloud import firestore as fs

    client = fs.Client(project=settings().project, database=settings().firestore_database)
    # The client builds its gRPC channel on first use, without a lock: a request whose first reads run in
    # parallel threads (the sweeper's queries, a send's first round) would build one channel per thread
    # (the sweeper's first request built five). Build the one channel here, before any thread needs it.
    client._firestore_api  # noqa: B018
    return client


@functools.cache
def tasks() -> tasks_v2.CloudTasksClient:
    from google.cloud import tasks_v2

    host = settings().tasks_emulator_host
    if host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host)))
    return tasks_v2.CloudTasksClient()


@functools.cache
def storage() -> gcs.Client:
    import google.cloud.storage as gcs

    if settings().storage_emulator_host:
        from google.auth.credentials import AnonymousCredentials

        client = gcs.Client(project=settings().project, credentials=AnonymousCredentials())
    else:
        client = gcs.Client(project=settings().project)
    if not any((name.lower().endswith("_proxy") and name.lower() != "no_proxy")
               or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") for name in os.environ):
        # Nothing in the environment for requests to honour (no proxy, no CA bundle): it would still scan
        # the whole environment on every call (~1 ms of CPU per media copy).
        client._http.trust_env = False
    return client


@functools.cache
def http() -> httpx.Client:
    """One pooled HTTP client for outbound calls (provider, customer webhooks)."""
    import httpx

    return httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), follow_redirects=False)
