"""Delivery windows (shared/rules/windows.py), pure. Expected instants are worked out by hand from the zones' rules:

- America/New_York 2026: clocks go forward on Sunday 8 March at 02:00 EST (07:00 UTC) to 03:00 EDT, and
  back on Sunday 1 November at 02:00 EDT (06:00 UTC) to 01:00 EST. EST is UTC-5, EDT UTC-4.
- Europe/Berlin 2026: forward on Sunday 29 March at 01:00 UTC (02:00 CET -> 03:00 CEST), back on Sunday
  25 October at 01:00 UTC (03:00 CEST -> 02:00 CET). CET is UTC+1, CEST UTC+2.
- Asia/Tokyo is UTC+9 all year.

A window is open when the zone's wall clock shows a listed day and a time in [from, to).
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.rules.windows import UnknownTimeZone, Window, is_open, next_opening, zone

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
WEEKDAYS = frozenset({MON, TUE, WED, THU, FRI})


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def hm(hour: int, minute: int = 0) -> int:
    return hour * 60 + minute


OFFICE_UTC = Window(days=WEEKDAYS, start=hm(9), end=hm(17))
OFFICE_NY = Window(days=WEEKDAYS, start=hm(9), end=hm(17), timezone="America/New_York")
OFFICE_BERLIN = Window(days=WEEKDAYS, start=hm(9), end=hm(17), timezone="Europe/Berlin")


# -- plain UTC --------------------------------------------------------------------------------------------
def test_an_open_window_opens_at_once():
    at = utc(2026, 3, 4, 12, 30, 15)  # a Wednesday
    assert next_opening(OFFICE_UTC, at) == at


def test_from_is_inclusive_and_to_exclusive():
    assert is_open(OFFICE_UTC, utc(2026, 3, 4, 9, 0))
    assert not is_open(OFFICE_UTC, utc(2026, 3, 4, 8, 59, 59))
    assert is_open(OFFICE_UTC, utc(2026, 3, 4, 16, 59, 59))
    assert not is_open(OFFICE_UTC, utc(2026, 3, 4, 17, 0))


def test_before_the_window_it_opens_the_same_day():
    assert next_opening(OFFICE_UTC, utc(2026, 3, 4, 6, 0)) == utc(2026, 3, 4, 9, 0)


def test_after_friday_closing_it_opens_on_monday():
    assert next_opening(OFFICE_UTC, utc(2026, 3, 6, 17, 0)) == utc(2026, 3, 9, 9, 0)
    assert next_opening(OFFICE_UTC, utc(2026, 3, 7, 12, 0)) == utc(2026, 3, 9, 9, 0)


def test_a_single_day_window_can_be_almost_a_week_away():
    tuesdays = Window(days=frozenset({TUE}), start=hm(10), end=hm(11, 30))
    # Tuesday 3 March 2026 at 11:30 has just closed: the next Tuesday.
    assert next_opening(tuesdays, utc(2026, 3, 3, 11, 30)) == utc(2026, 3, 10, 10, 0)


def test_a_whole_day_window_opens_at_midnight_of_the_next_listed_day():
    weekend = Window(days=frozenset({SAT, SUN}), timezone="America/New_York", whole_day=True)
    # Friday 6 March 15:00 EST -> Saturday 7 March 00:00 EST = 05:00 UTC.
    assert next_opening(weekend, utc(2026, 3, 6, 20, 0)) == utc(2026, 3, 7, 5, 0)
    assert is_open(weekend, utc(2026, 3, 9, 3, 59))  # Sunday 23:59 EDT (after the change)
    assert not is_open(weekend, utc(2026, 3, 9, 4, 0))  # Monday 00:00 EDT


def test_the_weekday_is_the_zones_not_utcs():
    tokyo_monday_night = Window(days=frozenset({MON}), start=hm(0), end=hm(2), timezone="Asia/Tokyo")
    # Sunday 8 March 15:30 UTC is Monday 00:30 in Tokyo.
    assert is_open(tokyo_monday_night, utc(2026, 3, 8, 15, 30))
    # Monday 9 March 01:00 UTC is Monday 10:00 in Tokyo: closed until next Monday 00:00 JST (Sunday 15:00 UTC).
    assert next_opening(tokyo_monday_night, utc(2026, 3, 9, 1, 0)) == utc(2026, 3, 15, 15, 0)


# -- daylight saving time --------------------------------------------------------------------------------
def test_new_york_office_hours_follow_the_clock_change_over_a_weekend():
    # Friday 6 March 18:00 EST (23:00 UTC): Monday 9 March 09:00 is EDT by then, 13:00 UTC (not 14:00).
    assert next_opening(OFFICE_NY, utc(2026, 3, 6, 23, 0)) == utc(2026, 3, 9, 13, 0)
    # And back in November: Friday 30 October 18:00 EDT -> Monday 2 November 09:00 EST = 14:00 UTC.
    assert next_opening(OFFICE_NY, utc(2026, 10, 30, 22, 0)) == utc(2026, 11, 2, 14, 0)


def test_berlin_office_hours_after_the_autumn_change():
    # Friday 23 October 16:00 UTC = 18:00 CEST: Monday 26 October 09:00 CET = 08:00 UTC.
    assert next_opening(OFFICE_BERLIN, utc(2026, 10, 23, 16, 0)) == utc(2026, 10, 26, 8, 0)
    # In summer 09:00 CEST is 07:00 UTC.
    assert next_opening(OFFICE_BERLIN, utc(2026, 6, 1, 5, 0)) == utc(2026, 6, 1, 7, 0)


def test_a_window_starting_in_the_skipped_hour_opens_when_the_clock_jumps():
    # Sunday 02:30-04:00 New York. On 8 March the clock never shows 02:30: it jumps from 02:00 EST (07:00
    # UTC) to 03:00 EDT, which is inside the window, so the window opens at 07:00 UTC.
    night = Window(days=frozenset({SUN}), start=hm(2, 30), end=hm(4), timezone="America/New_York")
    assert next_opening(night, utc(2026, 3, 7, 12, 0)) == utc(2026, 3, 8, 7, 0)
    assert not is_open(night, utc(2026, 3, 8, 6, 59, 59))  # 01:59:59 EST
    # It closes at 04:00 EDT = 08:00 UTC: open for one hour that day, not one and a half.
    assert is_open(night, utc(2026, 3, 8, 7, 59)) and not is_open(night, utc(2026, 3, 8, 8, 0))


def test_a_window_wholly_inside_the_skipped_hour_does_not_open_that_day():
    # Sunday 02:00-03:00 New York: on 8 March the clock skips it; the next Sunday it is 02:00 EDT = 06:00 UTC.
    skipped = Window(days=frozenset({SUN}), start=hm(2), end=hm(3), timezone="America/New_York")
    assert next_opening(skipped, utc(2026, 3, 7, 12, 0)) == utc(2026, 3, 15, 6, 0)


def test_a_window_in_the_repeated_hour_is_open_on_both_passes():
    # Sunday 01:00-01:30 New York on 1 November: 01:00-01:30 EDT (05:00-05:30 UTC), then again 01:00-01:30 EST
    # (06:00-06:30 UTC).
    repeated = Window(days=frozenset({SUN}), start=hm(1), end=hm(1, 30), timezone="America/New_York")
    assert is_open(repeated, utc(2026, 11, 1, 5, 15))
    assert not is_open(repeated, utc(2026, 11, 1, 5, 45))  # 01:45 EDT
    assert is_open(repeated, utc(2026, 11, 1, 6, 15))
    assert not is_open(repeated, utc(2026, 11, 1, 6, 30))
    assert next_opening(repeated, utc(2026, 11, 1, 5, 45)) == utc(2026, 11, 1, 6, 0)


def test_the_clock_falling_back_into_a_window_reopens_it_at_the_change():
    # Sunday 00:30-01:30: at 01:40 EDT (05:40 UTC) it is closed; at 06:00 UTC the clock reads 01:00 EST,
    # inside the window again.
    early = Window(days=frozenset({SUN}), start=hm(0, 30), end=hm(1, 30), timezone="America/New_York")
    assert next_opening(early, utc(2026, 11, 1, 5, 40)) == utc(2026, 11, 1, 6, 0)


def test_a_leg_due_at_the_spring_change_in_berlin():
    # Sunday 02:00-05:00 Berlin on 29 March: 02:00 CET never shows; the jump at 01:00 UTC lands on 03:00 CEST.
    sunday = Window(days=frozenset({SUN}), start=hm(2), end=hm(5), timezone="Europe/Berlin")
    assert next_opening(sunday, utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1, 0)


# -- properties -----------------------------------------------------------------------------------------
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]


@st.composite
def windows(draw):
    days = frozenset(draw(st.lists(st.integers(0, 6), min_size=1, max_size=7)))
    start = draw(st.integers(0, 23 * 60 - 1))
    end = draw(st.integers(start + 60, 24 * 60))
    return Window(days=days, start=start, end=end, timezone=draw(st.sampled_from(ZONES)))


# Times around the 2026 changes of the zones above (Lord Howe moves by half an hour, on 5 April and 4 October).
AROUND_CHANGES = st.sampled_from([utc(2026, 3, 6), utc(2026, 3, 27), utc(2026, 4, 3), utc(2026, 10, 2),
                                  utc(2026, 10, 23), utc(2026, 10, 30), utc(2026, 7, 1)])


@settings(max_examples=25, deadline=None)
@given(window=windows(), base=AROUND_CHANGES, offset_minutes=st.integers(0, 4 * 24 * 60))
def test_the_opening_is_open_and_no_minute_before_it_is(window, base, offset_minutes):
    at = base + dt.timedelta(minutes=offset_minutes)
    opening = next_opening(window, at)
    assert opening >= at
    assert is_open(window, opening)
    # Every change and every window edge of these zones falls on a whole minute: checking each minute between
    # finds any earlier opening.
    t = at
    while t < opening:
        assert not is_open(window, t), f"{t} is open but the opening was given as {opening}"
        t = (t + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)


# -- the record ----------------------------------------------------------------------------------------------
def test_a_window_round_trips_through_its_document():
    for window in (OFFICE_NY, Window(days=frozenset({SAT}), timezone="Europe/Berlin", whole_day=True)):
        assert Window.from_doc(window.to_doc()) == window
    assert OFFICE_NY.to_doc() == {"days": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"],
                                  "from": {"hour": 9, "minute": 0}, "to": {"hour": 17, "minute": 0},
                                  "timezone": "America/New_York"}


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "/etc/passwd", "../../etc/passwd", "America/../UTC",
                                  "a" * 65, "America\\New_York"])
def test_unknown_zones_are_refused(name):
    with pytest.raises(UnknownTimeZone):
        zone(name)


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        next_opening(OFFICE_UTC, dt.datetime(2026, 3, 4, 12, 0))
