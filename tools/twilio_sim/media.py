"""Fetch MMS media the way Twilio does at send time (twilio.md §8), when ``fetch_media`` is on.

Each URL gets a HEAD and a GET. Either failing (non-2xx, unreachable, a redirect: not followed, UNCONFIRMED)
is a 400 21620; a missing Content-Type, or HEAD and GET disagreeing on it, is 12300; an empty body is 63019;
a total of 5 MB or more is 21620 (§8 "must be < 5 MB"). Synchronous rejection is the harsher reading:
twilio.md does not say whether Twilio fails these at create or after.
"""

from __future__ import annotations

import httpx

from .wire import ApiError, bad_request

TOTAL_LIMIT = 5 * 1024 * 1024
IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/gif"})


def _type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    return value.split(";")[0].strip().lower() if value else None


def fetch_all(client: httpx.Client, urls: list[str]) -> list[tuple[str, str, int]]:
    """``(url, content type, size)`` per URL, or raise the 400 Twilio would."""
    total = 0
    out: list[tuple[str, str, int]] = []
    for url in urls:
        try:
            head = client.head(url)
            if not 200 <= head.status_code < 300:
                raise bad_request(21620, f"Invalid media URL(s): HEAD {url} answered HTTP {head.status_code}")
            size = 0
            with client.stream("GET", url) as response:
                if not 200 <= response.status_code < 300:
                    raise bad_request(21620, f"Invalid media URL(s): GET {url} answered HTTP "
                                             f"{response.status_code}")
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if total + size >= TOTAL_LIMIT:
                        raise bad_request(21620, f"Total media size reached {total + size} bytes; it must be "
                                                 f"below {TOTAL_LIMIT} bytes.")
                content_type = _type(response)
        except httpx.HTTPError as exc:
            raise bad_request(21620, f"Invalid media URL(s): {url} could not be fetched "
                                     f"({type(exc).__name__})") from exc
        if content_type is None or content_type != _type(head):
            raise ApiError(400, 12300, f"Invalid Content-Type for {url}: HEAD {_type(head)!r}, GET {content_type!r}")
        if size == 0:
            raise ApiError(400, 63019, f"Media {url} is empty (0 bytes).")
        total += size
        out.append((url, content_type, size))
    return out


def over_carrier_limit(media: list[tuple[str, str, int]], limit: int) -> bool:
    """Non-image media over the carrier limit ends ``undelivered`` (§8, §10.9)."""
    return sum(size for _, ctype, size in media if ctype not in IMAGE_TYPES) > limit
