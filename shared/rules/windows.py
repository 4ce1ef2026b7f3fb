"""Delivery time windows: the days and hours of a time zone in which a leg may be handed to the provider
(Infobip's ``deliveryTimeWindow``, plus the time zone Infobip fixes to UTC).

A window is defined on the wall clock of its zone: it is open at an instant when, in that zone, the clock
shows a listed weekday and a time of day in ``[from, to)``. That one definition settles every daylight-saving
case without special rules: on the night clocks go forward, a window that starts inside the skipped hour
opens the moment the clock jumps past its start (and a window lying wholly inside the skipped hour does not
open that day); on the night they go back, a window covering the repeated hour is open for both passes.

``next_opening`` is pure and exact to the second: the instants a closed window can open at are the
instants the wall clock reaches ``from`` on a listed day (one or, in a repeated hour, two of them), and the
instants the clock jumps (a zone transition); it takes the earliest that is open.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from shared.rules.frozen import frozen

if TYPE_CHECKING:
    import zoneinfo  # at run time only where a window is read: it reads sysconfig to find the zone database

DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MINUTES_PER_DAY = 24 * 60
MIN_LENGTH_MINUTES = 60  # Infobip: "from" and "to" at least one hour apart
# A week, plus slack for days a transition swallows: enough to meet every listed day at least once.
_HORIZON = dt.timedelta(days=9)
# Zone transitions are found by comparing offsets at this step; no zone changes its offset twice this fast.
_PROBE = dt.timedelta(minutes=30)
_GIVE_UP_AFTER = dt.timedelta(days=400)


class UnknownTimeZone(ValueError):
    pass


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name`` (``UnknownTimeZone`` for anything else, paths included)."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name or "\\" in name:
        raise UnknownTimeZone(name)
    import zoneinfo  # noqa: PLC0415 - see the module's imports

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZone(name) from None


@frozen
class Window:
    """Listed weekdays (0 = Monday) and ``[start, end)`` in minutes of the day on the zone's wall clock.
    ``whole_day`` windows were given without ``from``/``to`` (``start`` 0, ``end`` 1440)."""

    days: frozenset[int]
    start: int = 0
    end: int = MINUTES_PER_DAY
    timezone: str = "UTC"
    whole_day: bool = False

    def __post_init__(self) -> None:
        if not self.days or not self.days <= set(range(7)):
            raise ValueError("days must be a non-empty set of weekdays 0-6")
        if not 0 <= self.start < self.end <= MINUTES_PER_DAY:
            raise ValueError("start and end must satisfy 0 <= start < end <= 1440")
        zone(self.timezone)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zone(self.timezone)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"days": [DAYS[d] for d in sorted(self.days)], "timezone": self.timezone}
        if not self.whole_day:
            doc["from"] = {"hour": self.start // 60, "minute": self.start % 60}
            doc["to"] = {"hour": self.end // 60, "minute": self.end % 60}
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Window:
        days = frozenset(DAYS.index(d) for d in doc["days"])
        timezone = doc.get("timezone") or "UTC"
        if doc.get("from") is None:
            return cls(days=days, timezone=timezone, whole_day=True)
        start = doc["from"]["hour"] * 60 + doc["from"]["minute"]
        end = doc["to"]["hour"] * 60 + doc["to"]["minute"]
        return cls(days=days, start=start, end=end, timezone=timezone)


def is_open(window: Window, at: dt.datetime) -> bool:
    local = at.astimezone(window.tz)
    minute = local.hour * 60 + local.minute
    return local.weekday() in window.days and window.start <= minute < window.end


def next_opening(window: Window, at: dt.datetime) -> dt.datetime:
    """The earliest instant at or after ``at`` (timezone-aware) when ``window`` is open, in UTC. ``at``
    itself when the window is open then."""
    if at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    at = at.astimezone(dt.UTC)
    if is_open(window, at):
        return at
    tz = window.tz
    since = at
    while since - at < _GIVE_UP_AFTER:
        until = since + _HORIZON
        candidates = [c for c in (*_starts(window, tz, since, until), *_transitions(tz, since, until))
                      if since <= c and is_open(window, c)]
        if candidates:
            return min(candidates)
        since = until
    raise ValueError("the window never opens")  # unreachable for a valid window: it opens every week


def _starts(window: Window, tz: zoneinfo.ZoneInfo, since: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """Every instant in [since - 1 day, until] at which the wall clock shows ``start`` on a listed day (both
    passes of a repeated time; a time the clock skips yields instants that ``is_open`` then judges)."""
    found = []
    day = since.astimezone(tz).date() - dt.timedelta(days=1)
    last = until.astimezone(tz).date() + dt.timedelta(days=1)
    start = dt.time(window.start // 60, window.start % 60) if window.start < MINUTES_PER_DAY else dt.time(0)
    while day <= last:
        if day.weekday() in window.days:
            for fold in (0, 1):
                local = dt.datetime.combine(day, start, tzinfo=tz).replace(fold=fold)
                found.append(local.astimezone(dt.UTC))
        day += dt.timedelta(days=1)
    return found


def _transitions(tz: zoneinfo.ZoneInfo, since: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """The instants in [since, until] at which the zone's UTC offset changes. Transitions fall on whole
    seconds, so the search runs over whole seconds."""
    def offset(second: int) -> dt.timedelta | None:
        return dt.datetime.fromtimestamp(second, tz).utcoffset()

    found = []
    step = int(_PROBE.total_seconds())
    t, end = int(since.timestamp()), int(until.timestamp()) + 1
    current = offset(t)
    while t < end:
        nxt = t + step
        nxt_offset = offset(nxt)
        if nxt_offset != current:
            lo, hi = t, nxt  # offset(lo) is the old one, offset(hi) the new one
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == current:
                    lo = mid
                else:
                    hi = mid
            found.append(dt.datetime.fromtimestamp(hi, dt.UTC))
        t, current = nxt, nxt_offset
    return found
