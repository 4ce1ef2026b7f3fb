"""Reads (shared/services/reading.py): a page of the message list shows an inbound message's media as the single
read does, with signed URLs of our stored copies (issue 24, item 4)."""

from __future__ import annotations

import dataclasses
from typing import Any

from shared.rules.records import StoredMedia
from shared.rules.status import Status
from shared.services import reading
from tests.unit.fakes import FakeRuntime, FakeSettings
from tests.unit.legs import T0, leg


class _Clock:
    def now(self):
        return T0


def _inbound(message_id: str, *media: StoredMedia):
    return leg(Status.DELIVERED, id=message_id, direction="inbound", channel="mms", media=media)


STORED = StoredMedia(object="media/tnt_unit/aaa", content_type="image/png", size=10)
PENDING = StoredMedia(object="", content_type="image/png", size=0, extra={"state": "pending"})
FAILED = StoredMedia(object="", content_type="", size=0,
                     extra={"state": "unavailable", "error": "MEDIA_FETCH_FAILED: HTTP 404"})


def _runtime(page: list) -> FakeRuntime:
    rt = FakeRuntime(_Clock())  # type: ignore[arg-type]
    rt.settings = dataclasses.replace(FakeSettings(), webhook_signing_key="k" * 32)
    for item in page:
        rt.legs.legs[item.id] = item
    rt.legs.search = lambda query, limit: page[:limit]  # type: ignore[method-assign]
    return rt


def test_the_list_signs_an_inbound_messages_stored_media_as_the_single_read_does():
    inbound = _inbound("msg_in1", STORED, PENDING, FAILED)
    other = _inbound("msg_in2", dataclasses.replace(STORED, object="media/tnt_unit/bbb"))
    outbound = leg(Status.DELIVERED, id="msg_out1")
    rt = _runtime([inbound, outbound, other])

    page: Any = reading.search(rt, "tnt_unit", {"direction": ["inbound"]})["data"]  # type: ignore[arg-type]

    assert [m["id"] for m in page] == ["msg_in1", "msg_out1", "msg_in2"]
    assert [(a["status"], a["url"]) for a in page[0]["media"]] == [
        ("stored", "https://storage.example/media/tnt_unit/aaa?signed="), ("pending", None), ("unavailable", None)]
    assert page[2]["media"][0]["url"] == "https://storage.example/media/tnt_unit/bbb?signed="
    assert "media" not in page[1]
    single = reading.message(rt, "tnt_unit", "msg_in1")  # type: ignore[arg-type]
    assert page[0]["media"] == single["media"]


def test_a_list_whose_signing_fails_still_answers_without_urls():
    rt = _runtime([_inbound("msg_in1", STORED)])

    def broken(media, signed_at=None):
        raise RuntimeError("IAM signBlob unavailable")

    rt.media.signed_urls = broken  # type: ignore[method-assign]
    page: Any = reading.search(rt, "tnt_unit", {})["data"]  # type: ignore[arg-type]
    assert page[0]["media"][0] == {"content_type": "image/png", "size": 10, "status": "stored", "error": None,
                                   "url": None}
