"""The cold-start floor: one functions-framework function, ``floor``, that makes a function's first
calls to the emulators with nothing but the client libraries those calls need.

A cold-start floor process runs ``functions_framework.create_app(target="floor", source=<this file>)``
and sends it one request whose JSON body lists the calls (``ops``). Each library is imported on the
first op that needs it, so the process imports functions_framework plus exactly what its ops use:

- ``["get", "collection/doc"]``                    Firestore document get
- ``["commit", n]``                                one Firestore batch of ``n`` set() writes (a leg-sized doc)
- ``["query", "collection", "field", value]``      Firestore query, limit 200, streamed
- ``["task", queue_path, url]``                    Cloud Tasks create_task (HTTP target, JSON body)
- ``["post", url, json_body, headers]``            httpx POST (the provider call, a customer webhook)
- ``["fetch", url]``                               httpx GET of a media URL (the accept-time media fetch)
- ``["blob", bucket, name]``                       Cloud Storage get_blob (the media copy's existence check)
- ``["sign", bucket, name]``                       V4 signed URL with the MEDIA_SIGNING_KEY service account
- ``["range", "collection/doc/sub", "field", iso]``  Firestore query ``field >= iso`` on a subcollection, streamed
- ``["scan", "collection"]``                        every document of a collection, streamed
- ``["concurrently", [op | [op, ...], ...]]``      the items at once on a pool of threads (a list of ops is one
                                                    item run in order), as the app's ``Runtime.concurrently``

Configuration comes from the same environment the functions get (emulator hosts, project).
This file is bench code, not application code: it never imports ``functions``, ``shared`` or ``infra``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid

_clients: dict[str, object] = {}


def _firestore():
    if "fs" not in _clients:
        from google.cloud import firestore

        _clients["fs"] = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    return _clients["fs"]


def _tasks():
    if "tasks" not in _clients:
        from google.cloud import tasks_v2

        host = os.environ.get("CLOUD_TASKS_EMULATOR_HOST")
        if host:
            import grpc
            from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

            _clients["tasks"] = tasks_v2.CloudTasksClient(
                transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host)))
        else:
            _clients["tasks"] = tasks_v2.CloudTasksClient()
    return _clients["tasks"]


def _http():
    if "http" not in _clients:
        import httpx

        _clients["http"] = httpx.Client(timeout=10.0)
    return _clients["http"]


def _storage():
    if "gcs" not in _clients:
        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            _clients["gcs"] = storage.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"],
                                             credentials=AnonymousCredentials())
        else:
            _clients["gcs"] = storage.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    return _clients["gcs"]


def _signer():
    if "signer" not in _clients:
        from google.oauth2 import service_account

        _clients["signer"] = service_account.Credentials.from_service_account_info(
            json.loads(os.environ["MEDIA_SIGNING_KEY"]))
    return _clients["signer"]


def _leg_sized_doc(now: dt.datetime) -> dict:
    """About the size and shape of a pending leg (the app's ``new_leg``)."""
    return {
        "tenant_id": "tnt_floor", "group_id": None, "to": "+14155550199", "from": "+18005551234",
        "body": "mmsgate bench", "subject": None, "media_urls": ["http://127.0.0.1/bucket/samples/sample.png"],
        "channel": "mms", "encoding": "GSM-7", "segments": 1, "scheduled_at": None, "webhook_url": None,
        "metadata": {}, "request_id": "req_floor", "status": "pending", "status_since": now, "created_at": now,
        "updated_at": now, "final": False, "error_code": None, "error_message": None, "provider_id": None,
        "provider_error_code": None, "price_micros": 0, "attempts": 0, "send_state": None,
        "dispatch_generation": 0, "history": [{"at": now, "from": None, "to": "pending", "cause": "floor"}],
        "notifications": {},
    }


def floor(request):
    try:
        results = _run(json.loads(request.get_data())["ops"])
    except ValueError as exc:
        return json.dumps({"error": str(exc)}), 400, {"Content-Type": "application/json"}
    return json.dumps({"results": results}), 200, {"Content-Type": "application/json"}


def _run(ops: list) -> list:
    results: list = []
    for op in ops:
        kind = op[0]
        if isinstance(kind, list):  # a sequence inside ``concurrently``
            results.append(_run(op))
        elif kind == "concurrently":
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=len(op[1])) as pool:
                futures = [pool.submit(_run, item if isinstance(item[0], list) else [item]) for item in op[1]]
                results.append([future.result() for future in futures])
        elif kind == "range":
            from google.cloud.firestore_v1.base_query import FieldFilter

            since = dt.datetime.fromisoformat(op[3])
            query = _firestore().collection(op[1]).where(filter=FieldFilter(op[2], ">=", since))
            results.append(sum(1 for _ in query.stream()))
        elif kind == "scan":
            results.append(sum(1 for _ in _firestore().collection(op[1]).stream()))
        elif kind == "get":
            collection, doc = op[1].split("/", 1)
            results.append(_firestore().collection(collection).document(doc).get().exists)
        elif kind == "commit":
            db = _firestore()
            batch = db.batch()
            now = dt.datetime.now(dt.UTC)
            for _ in range(int(op[1])):
                batch.set(db.collection("bench_floor").document(uuid.uuid4().hex), _leg_sized_doc(now))
            results.append(len(batch.commit()))
        elif kind == "query":
            from google.cloud.firestore_v1.base_query import FieldFilter

            query = _firestore().collection(op[1]).where(filter=FieldFilter(op[2], "==", op[3])).limit(200)
            results.append(sum(1 for _ in query.stream()))
        elif kind == "task":
            from google.cloud import tasks_v2

            queue, url = op[1], op[2]
            task = tasks_v2.Task(name=f"{queue}/tasks/floor-{uuid.uuid4().hex}", http_request=tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.POST, url=url, headers={"Content-Type": "application/json"},
                body=json.dumps({"message_id": "msg_floor"}).encode()))
            results.append(_tasks().create_task(parent=queue, task=task).name)
        elif kind == "post":
            response = _http().post(op[1], json=op[2], headers=op[3] if len(op) > 3 else None)
            results.append(response.status_code)
        elif kind == "fetch":
            response = _http().get(op[1])
            results.append(len(response.content))
        elif kind == "blob":
            results.append(_storage().bucket(op[1]).get_blob(op[2]) is not None)
        elif kind == "sign":
            blob = _storage().bucket(op[1]).blob(op[2])
            results.append(len(blob.generate_signed_url(version="v4", expiration=dt.timedelta(hours=1),
                                                        method="GET", credentials=_signer())))
        else:
            raise ValueError(f"unknown op {kind}")
    return results
