"""Telnyx's capabilities as data (its report parsing: ``shared.carriers.telnyx_events``; its HTTP client:
``infra.telnyx``). Sources are the sections of docs/reference ``telnyx.md``."""

from __future__ import annotations

from shared.carriers.provider import Capabilities

TELNYX_CAPABILITIES = Capabilities(
    name="telnyx",
    mms=True,
    # POST /v2/messages/group_mms: at most 8 recipients, US/CA only (telnyx.md §0.6, §1.10).
    group_mms=True,
    # "The total media size must be less than 1 MB" (telnyx.md §0.5, §1 media_urls; MEDIA_MAX_BYTES' default).
    max_media_bytes=1_048_576,
    max_media_count=10,  # "up to 10 media URLs" (telnyx.md §0.5)
    # "MMS only on US/CA long code, toll-free and short code" (telnyx.md, mms-transcoding page).
    countries=frozenset({"US", "CA"}),
)
GROUP_MMS_MAX_RECIPIENTS = 8  # telnyx.md §1.10
