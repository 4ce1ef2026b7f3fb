"""infra/store/fastwrite.py builds exactly the write messages the Firestore library builds (no emulator: the
writes are compared before anything is sent)."""

from __future__ import annotations

import datetime as dt
import enum

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from infra.store import fastwrite
from shared.rules.legs import new_leg, transition
from shared.rules.status import Status

NOW = dt.datetime(2026, 3, 8, 9, 59, 58, 123456, tzinfo=dt.UTC)


class Colour(enum.StrEnum):
    RED = "red"


def _pbs(batch) -> list:
    return [getattr(w, "_pb", w) for w in batch._write_pbs]


@pytest.fixture(scope="module")
def db():
    return firestore.Client(project="demo-fastwrite", credentials=AnonymousCredentials())


def _leg():
    return new_leg(message_id="msg_a", leg_key="group-mms:grp_a:+14155550101", tenant_id="tnt_a", group_id="grp_a",
                   to="+14155550101", from_="+18005551234", body="héllo ✓", subject=None,
                   media_urls=["https://example.com/a.png"], channel="mms", encoding="UCS-2", segments=1,
                   scheduled_at=None, webhook_url=None, metadata={"k": "v", "n": "1"}, request_id="req_a", now=NOW)


DOCS = [
    _leg().to_doc(),
    {"none": None, "t": True, "f": False, "i": -7, "big": 2**62, "x": 1.5, "s": "", "b": b"\x00\x01",
     "naive": dt.datetime(2026, 1, 2, 3, 4, 5, 6), "aware": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(
         dt.timedelta(hours=-5))), "nanos": DatetimeWithNanoseconds(2026, 1, 2, 3, 4, 5, nanosecond=123456789,
                                                                     tzinfo=dt.UTC),
     "empty_map": {}, "empty_list": [], "nested": {"a": [{"b": [1, "two", None]}, ()], "ü": {"deep": {"x": 0}}},
     "enum": Colour.RED, "tuple": (1, 2)},
]


@pytest.mark.parametrize("doc", DOCS)
def test_create_is_the_librarys_create(db, doc):
    ref = db.collection("messages").document("msg_a")
    ours, theirs = db.batch(), db.batch()
    fastwrite.create(ours, ref, doc)
    theirs.create(ref, doc)
    assert _pbs(ours) == _pbs(theirs)


@pytest.mark.parametrize("version", [
    DatetimeWithNanoseconds(2026, 3, 8, 9, 59, 58, nanosecond=987654321, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 8, 9, 59, 58, 5, tzinfo=dt.UTC),
])
def test_update_is_the_librarys_conditioned_update(db, version):
    before = _leg()
    after = transition(before, Status.QUEUED, cause="accepted", now=NOW + dt.timedelta(seconds=1), price_micros=20_000)
    assert after is not None
    changes = {k: v for k, v in after.to_doc().items() if before.to_doc().get(k) != v}
    assert {"status", "history", "price_micros"} <= set(changes)
    ref = db.collection("messages").document("msg_a")
    ours, theirs = db.batch(), db.batch()
    fastwrite.update(ours, ref, changes, version)
    theirs.update(ref, changes, option=db.write_option(last_update_time=version))
    assert _pbs(ours) == _pbs(theirs)


@pytest.mark.parametrize("data", [
    {"balance_micros": firestore.Increment(5)},  # a transform
    {"a.b": 1},  # a field path, not a field name
    {"1st": 1},  # a name that needs quoting
])
def test_what_it_does_not_build_itself_is_still_the_librarys(db, data):
    ref = db.collection("tenants").document("tnt_a")
    version = dt.datetime(2026, 3, 8, tzinfo=dt.UTC)
    ours, theirs = db.batch(), db.batch()
    fastwrite.update(ours, ref, data, version)
    theirs.update(ref, data, option=db.write_option(last_update_time=version))
    assert _pbs(ours) == _pbs(theirs)
    ours, theirs = db.batch(), db.batch()
    fastwrite.create(ours, ref, {"x": data})
    theirs.create(ref, {"x": data})
    assert _pbs(ours) == _pbs(theirs)
