"""Fetch MMS media the way Telnyx does at send time: every URL, GET, no redirects, total below a limit."""

from __future__ import annotations

import hashlib

import httpx

from .wire import invalid_mms


def fetch_all(client: httpx.Client, urls: list[str], limit: int) -> list[dict]:
    """Return the ``media`` entries, or raise 40317 when a fetch fails or the total reaches ``limit``."""
    total = 0
    media: list[dict] = []
    for i, url in enumerate(urls):
        pointer = f"/media_urls/{i}"
        digest = hashlib.sha256()
        size = 0
        try:
            with client.stream("GET", url) as response:
                if not 200 <= response.status_code < 300:
                    raise invalid_mms(
                        f"Media URL {url} could not be fetched: HTTP {response.status_code}.", pointer)
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    total += len(chunk)
                    digest.update(chunk)
                    if total >= limit:
                        raise invalid_mms(
                            f"Total media size is at least {total} bytes (after {url}); "
                            f"it must be less than {limit} bytes."
                        )
                content_type = response.headers.get("content-type")
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise invalid_mms(f"Media URL {url} could not be fetched: {reason}", pointer) from exc
        media.append({
            "url": url,
            "content_type": content_type.split(";")[0].strip() if content_type else None,
            "sha256": digest.hexdigest(),
            "size": size,
        })
    return media
