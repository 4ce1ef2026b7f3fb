"""Firestore ``create`` and ``update`` writes of plain documents, built on the raw protobuf classes.

The client library builds every write through proto-plus, one wrapper object per value: about 0.4 ms of CPU
for a leg-sized document, which a group of 20 pays twice per leg (its pending rows, then their accepted
state) while the caller waits. The raw classes build the same message in about a tenth of that
(bench/README.md). Only plain values are handled (None, bool, int, float, str, bytes, datetime, and lists
and dicts of them); a document holding anything else (a transform such as ``firestore.Increment``, a
reference, a GeoPoint) is written through the library, as is an update whose field names are not simple
identifiers. ``tests/infra/test_fastwrite.py`` checks that the messages are exactly the library's.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from google.cloud.firestore_v1.types import write as write_types

_WRITE = write_types.Write.pb()
_SIMPLE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789")


class _Unsupported(Exception):
    pass


def _timestamp(value: dt.datetime, out: Any) -> None:
    """A document value, as the library encodes it (google.cloud._helpers._datetime_to_pb_timestamp): a naive
    datetime is UTC; the library's own DatetimeWithNanoseconds keeps its nanoseconds."""
    if hasattr(value, "timestamp_pb"):
        out.CopyFrom(value.timestamp_pb())
        return
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    micros = calendar.timegm(value.utctimetuple()) * 1_000_000 + value.microsecond
    out.seconds, rest = divmod(micros, 1_000_000)
    out.nanos = rest * 1000


def _precondition_time(value: Any, out: Any) -> None:
    """An update-time precondition, as the library's write option builds it (to the microsecond: Firestore's
    update times have no finer part)."""
    if not isinstance(value, dt.datetime):
        raise _Unsupported(type(value))
    out.seconds, out.nanos = int(value.timestamp()), value.microsecond * 1000


def _value(value: Any, out: Any) -> None:
    # The library's order of checks (google.cloud.firestore_v1._helpers.encode_value), for the plain types.
    if value is None:
        out.null_value = 0
    elif isinstance(value, bool):
        out.boolean_value = value
    elif isinstance(value, int):
        out.integer_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, dt.datetime):
        _timestamp(value, out.timestamp_value)
    elif isinstance(value, str):
        out.string_value = value
    elif type(value) is bytes:
        out.bytes_value = value
    elif type(value) is list or type(value) is tuple:
        values = out.array_value.values
        out.array_value.SetInParent()
        for item in value:
            _value(item, values.add())
    elif type(value) is dict:
        fields = out.map_value.fields
        out.map_value.SetInParent()
        for key, item in value.items():
            if type(key) is not str:
                raise _Unsupported(key)
            _value(item, fields[key])
    else:
        raise _Unsupported(type(value))


def _document(path: str, data: dict[str, Any], out: Any) -> None:
    out.name = path
    fields = out.fields
    for key, item in data.items():
        if type(key) is not str:
            raise _Unsupported(key)
        _value(item, fields[key])


def create(batch: Any, ref: Any, data: dict[str, Any]) -> None:
    """``batch.create(ref, data)``."""
    write = _WRITE()
    try:
        _document(ref._document_path, data, write.update)
    except _Unsupported:
        batch.create(ref, data)
        return
    write.current_document.exists = False
    batch._add_write_pbs([write])


def update(batch: Any, ref: Any, data: dict[str, Any], last_update_time: Any) -> None:
    """``batch.update(ref, data, option=client.write_option(last_update_time=last_update_time))`` where every
    key of ``data`` is a top-level field (a simple name: no dots, no quoting)."""
    if not data or any(not key or key[0].isdigit() or not _SIMPLE.issuperset(key) for key in data):
        batch.update(ref, data, option=batch._client.write_option(last_update_time=last_update_time))
        return
    write = _WRITE()
    try:
        _document(ref._document_path, data, write.update)
        _precondition_time(last_update_time, write.current_document.update_time)
    except _Unsupported:
        batch.update(ref, data, option=batch._client.write_option(last_update_time=last_update_time))
        return
    write.update_mask.field_paths.extend(sorted(data))
    batch._add_write_pbs([write])
