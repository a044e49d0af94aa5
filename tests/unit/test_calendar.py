"""The shift calendar: planned busy time, labels and boundaries, by hand-computed tables and properties.

Times are written as local ISO strings with their offset, so each expected instant can be checked by eye; lengths
are in hours with the arithmetic in the comment. 2026-11-30 is a Monday; Asia/Jakarta is UTC+7 all year.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopfloor.calendar import (
    ALWAYS,
    Calendar,
    Downtime,
    Label,
    PlannedPiece,
    ShiftPattern,
    Stretch,
    check_shifts,
    local_ms,
    local_windows,
    zone_of,
)
from simulators.plan import daily_windows

H = 3_600_000
M = 60_000
WEEKDAYS = frozenset(range(5))  # mon..fri
JKT = "Asia/Jakarta"


def ms(text: str) -> int:
    """Epoch ms of an ISO 8601 date and time with offset."""
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None, text
    return int(moment.timestamp() * 1000)


def jkt(text: str) -> int:
    """Epoch ms of a Jakarta wall time (UTC+7, no DST)."""
    return ms(text + "+07:00")


def pieces(cal: Calendar, start: int, end: int, machine: str | None = "cnc-01") -> list[tuple[int, int, str, date]]:
    return [(p.start_ms, p.end_ms, p.shift, p.day) for p in cal.planned(start, end, machine)]


def hours(cal: Calendar, start: int, end: int, machine: str | None = "cnc-01") -> float:
    return sum(p.duration_ms for p in cal.planned(start, end, machine)) / H


MORNING = ShiftPattern("morning", time(6), time(14), WEEKDAYS, ((time(10), time(10, 15)),))
NIGHT = ShiftPattern("night", time(22), time(6), WEEKDAYS)


# --- weekly pattern, night shift, breaks -------------------------------------------------------------------------


def test_weekly_pattern_plans_only_its_weekdays() -> None:
    day_shift = ShiftPattern("day", time(8), time(16), WEEKDAYS)
    cal = Calendar(JKT, (day_shift,))
    week = (jkt("2026-11-30T00:00:00"), jkt("2026-12-07T00:00:00"))
    # Mon..Fri 08:00-16:00, one piece each (8 h); Saturday and Sunday nothing: 5 x 8 = 40 h.
    assert pieces(cal, *week) == [
        (jkt(f"2026-12-0{d}T08:00:00") if d else jkt("2026-11-30T08:00:00"),
         jkt(f"2026-12-0{d}T16:00:00") if d else jkt("2026-11-30T16:00:00"),
         "day",
         date(2026, 12, d) if d else date(2026, 11, 30))
        for d in range(5)
    ]  # fmt: skip
    assert hours(cal, *week) == 40
    assert cal.label(jkt("2026-12-05T10:00:00"), "cnc-01") == Label(False, None, date(2026, 12, 5), None)  # Sat
    assert cal.label(jkt("2026-12-04T15:59:59.999"), "cnc-01") == Label(True, "day", date(2026, 12, 4), None)
    assert cal.label(jkt("2026-12-04T16:00:00"), "cnc-01").planned is False  # the end is exclusive


def test_night_shift_crossing_midnight_is_one_shift_of_its_start_day() -> None:
    cal = Calendar(JKT, (NIGHT,))
    # Friday 22:00 .. Saturday 06:00 is one piece of Friday's night: 2 h + 6 h = 8 h.
    assert pieces(cal, jkt("2026-12-04T12:00:00"), jkt("2026-12-06T00:00:00")) == [
        (jkt("2026-12-04T22:00:00"), jkt("2026-12-05T06:00:00"), "night", date(2026, 12, 4))
    ]
    # Saturday's local day holds only the tail of Friday's night (00:00-06:00, 6 h), still labelled Friday.
    sat = (jkt("2026-12-05T00:00:00"), jkt("2026-12-06T00:00:00"))
    assert pieces(cal, *sat) == [(sat[0], jkt("2026-12-05T06:00:00"), "night", date(2026, 12, 4))]
    assert cal.label(jkt("2026-12-05T03:00:00"), None) == Label(True, "night", date(2026, 12, 4), None)
    # Sunday has no night shift, so Monday 03:00 is outside any shift and its day is Monday's date.
    assert cal.label(jkt("2026-12-07T03:00:00"), None) == Label(False, None, date(2026, 12, 7), None)
    # Monday..Friday nights: 5 x 8 h = 40 h in the week from Monday 00:00 to the next Monday 06:00.
    assert hours(cal, jkt("2026-11-30T00:00:00"), jkt("2026-12-07T06:00:00")) == 40


def test_breaks_are_not_planned_but_stay_in_their_shift() -> None:
    night = ShiftPattern("night", time(22), time(6), WEEKDAYS, ((time(23, 45), time(0, 15)), (time(3), time(3, 30))))
    cal = Calendar(JKT, (MORNING, night))
    mon = date(2026, 11, 30)
    window = (jkt("2026-11-30T00:00:00"), jkt("2026-12-01T12:00:00"))
    assert pieces(cal, *window) == [
        (jkt("2026-11-30T06:00:00"), jkt("2026-11-30T10:00:00"), "morning", mon),  # 4 h
        (jkt("2026-11-30T10:15:00"), jkt("2026-11-30T14:00:00"), "morning", mon),  # 3 h 45 m
        (jkt("2026-11-30T22:00:00"), jkt("2026-11-30T23:45:00"), "night", mon),  # 1 h 45 m
        (jkt("2026-12-01T00:15:00"), jkt("2026-12-01T03:00:00"), "night", mon),  # 2 h 45 m, after midnight
        (jkt("2026-12-01T03:30:00"), jkt("2026-12-01T06:00:00"), "night", mon),  # 2 h 30 m
        (jkt("2026-12-01T06:00:00"), jkt("2026-12-01T10:00:00"), "morning", date(2026, 12, 1)),
        (jkt("2026-12-01T10:15:00"), jkt("2026-12-01T12:00:00"), "morning", date(2026, 12, 1)),  # clipped
    ]
    # morning 8 h - 15 m = 7.75 h; night 8 h - 30 m - 30 m = 7 h; Tuesday to noon 6 h - 15 m = 5.75 h.
    assert hours(cal, *window) == 7.75 + 7 + 5.75
    assert cal.label(jkt("2026-11-30T10:05:00"), None) == Label(False, "morning", mon, None)
    assert cal.label(jkt("2026-12-01T00:00:00"), None) == Label(False, "night", mon, None)  # break over midnight


def test_holiday_cancels_the_shifts_that_start_on_it() -> None:
    cal = Calendar(JKT, (MORNING, NIGHT), holidays=frozenset({date(2026, 12, 24)}))  # a Thursday
    thu = (jkt("2026-12-24T00:00:00"), jkt("2026-12-25T00:00:00"))
    # Wednesday's night still runs into Thursday (00:00-06:00, 6 h); Thursday's morning and night are cancelled.
    assert pieces(cal, *thu) == [(thu[0], jkt("2026-12-24T06:00:00"), "night", date(2026, 12, 23))]
    assert cal.label(jkt("2026-12-24T08:00:00"), None) == Label(False, None, date(2026, 12, 24), None)
    # Friday 00:00-06:00 would be Thursday's night: cancelled with it.
    assert cal.label(jkt("2026-12-25T03:00:00"), None) == Label(False, None, date(2026, 12, 25), None)
    # Friday's own shifts run: morning 7.75 h + night 22:00-24:00 2 h.
    assert hours(cal, jkt("2026-12-25T00:00:00"), jkt("2026-12-26T00:00:00")) == 7.75 + 2


def test_planned_downtime_of_one_machine() -> None:
    service = Downtime(jkt("2026-12-01T08:00:00"), jkt("2026-12-01T12:00:00"), frozenset({"cnc-01"}), "spindle")
    cal = Calendar(JKT, (MORNING,), downtime=(service,))
    tue, day = (jkt("2026-12-01T00:00:00"), jkt("2026-12-02T00:00:00")), date(2026, 12, 1)
    # cnc-01: 06:00-08:00 (2 h) and 12:00-14:00 (2 h); the 10:00 break lies inside the downtime.
    assert pieces(cal, *tue, "cnc-01") == [
        (jkt("2026-12-01T06:00:00"), jkt("2026-12-01T08:00:00"), "morning", day),
        (jkt("2026-12-01T12:00:00"), jkt("2026-12-01T14:00:00"), "morning", day),
    ]
    assert hours(cal, *tue, "cnc-02") == 7.75  # other machines: the whole morning less its break
    assert hours(cal, *tue, None) == 7.75  # no machine: only downtime of all machines applies
    assert cal.label(jkt("2026-12-01T09:00:00"), "cnc-01") == Label(False, "morning", day, "spindle")
    assert cal.label(jkt("2026-12-01T09:00:00"), "cnc-02") == Label(True, "morning", day, None)


def test_site_wide_and_overlapping_downtime() -> None:
    site_wide = Downtime(jkt("2026-12-01T07:00:00"), jkt("2026-12-01T09:00:00"), None, "power works")
    later = Downtime(jkt("2026-12-01T08:00:00"), jkt("2026-12-01T11:00:00"), frozenset({"cnc-01"}), "spindle")
    cal = Calendar(JKT, (MORNING,), downtime=(later, site_wide))
    labels = [
        (s.start_ms, s.end_ms, s.label.downtime)
        for s in cal.stretches(jkt("2026-12-01T06:00:00"), jkt("2026-12-01T12:00:00"), "cnc-01")
    ]
    # While both hold (08:00-09:00) the one that began first is reported; the break 10:00-10:15 is inside
    # "spindle" and changes nothing (not planned either way, same shift, same reason).
    assert labels == [
        (jkt("2026-12-01T06:00:00"), jkt("2026-12-01T07:00:00"), None),
        (jkt("2026-12-01T07:00:00"), jkt("2026-12-01T09:00:00"), "power works"),
        (jkt("2026-12-01T09:00:00"), jkt("2026-12-01T11:00:00"), "spindle"),
        (jkt("2026-12-01T11:00:00"), jkt("2026-12-01T12:00:00"), None),
    ]  # fmt: skip
    # cnc-02 loses only the site-wide 1 h of its morning (07:00-09:00 overlaps 06:00-14:00 by 2 h): 7.75 - 2.
    assert hours(cal, jkt("2026-12-01T00:00:00"), jkt("2026-12-02T00:00:00"), "cnc-02") == 5.75


def test_downtime_outside_shifts_is_labelled_but_changes_no_plan() -> None:
    night_work = Downtime(jkt("2026-12-01T18:00:00"), jkt("2026-12-01T20:00:00"), None, "roof")
    cal = Calendar(JKT, (MORNING,), downtime=(night_work,))
    assert cal.label(jkt("2026-12-01T19:00:00"), "m") == Label(False, None, date(2026, 12, 1), "roof")
    assert hours(cal, jkt("2026-12-01T00:00:00"), jkt("2026-12-02T00:00:00")) == 7.75


# --- always planned, local days ---------------------------------------------------------------------------------


def test_no_shifts_means_always_planned() -> None:
    cal = Calendar(JKT)
    assert cal.shifts == (ALWAYS,) and ALWAYS.name == "all"
    assert cal == Calendar(JKT, (ALWAYS,))
    day = (jkt("2026-12-01T00:00:00"), jkt("2026-12-02T00:00:00"))
    assert pieces(cal, *day) == [(*day, "all", date(2026, 12, 1))]
    # Two local days are two shifts "all", cut at local midnight (17:00 UTC), not at UTC midnight.
    assert cal.boundaries(jkt("2026-12-01T12:00:00"), jkt("2026-12-02T12:00:00"), None) == [day[1]]
    assert cal.label(ms("2026-12-01T20:00:00+00:00"), None) == Label(True, "all", date(2026, 12, 2), None)


def test_jakarta_days_are_all_24_hours() -> None:
    cal = Calendar(JKT)
    day = date(2026, 1, 1)
    while day.year == 2026:
        start, end = cal.day_bounds(day)
        assert end - start == 24 * H, day
        assert start == jkt(f"{day.isoformat()}T00:00:00")
        assert hours(cal, start, end) == 24
        assert cal.local_day(start) == day and cal.local_day(end - 1) == day
        day += timedelta(days=1)


# --- DST -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "length_h"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 23),  # 02:00 CET -> 03:00 CEST
        ("Europe/Berlin", date(2026, 10, 25), 25),  # 03:00 CEST -> 02:00 CET
        ("Europe/Berlin", date(2026, 7, 1), 24),
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("America/Havana", date(2026, 3, 8), 23),  # midnight does not exist: the day starts at 01:00 CDT
        ("America/Havana", date(2026, 11, 1), 25),  # 01:00 CDT -> 00:00 CST: the first midnight starts the day
        (JKT, date(2026, 3, 29), 24),
    ],
)
def test_dst_days_are_23_or_25_hours_and_a_24_7_calendar_plans_them_all(zone: str, day: date, length_h: int) -> None:
    cal = Calendar(zone)
    start, end = cal.day_bounds(day)
    assert end - start == length_h * H
    assert pieces(cal, start, end) == [(start, end, "all", day)]
    assert cal.local_day(start) == day and cal.local_day(end - 1) == day and cal.local_day(end) != day


def test_havana_day_starts_when_the_clock_jumps_over_midnight() -> None:
    start, _ = Calendar("America/Havana").day_bounds(date(2026, 3, 8))
    assert start == ms("2026-03-08T01:00:00-04:00")  # = 00:00 CST would be; 05:00 UTC


NY, BER = "America/New_York", "Europe/Berlin"


@pytest.mark.parametrize(
    ("zone", "start", "end", "day", "expected"),
    [
        # 01:30 EST .. 03:30 EDT: 07:30 - 06:30 UTC = 1 h (02:00-03:00 does not exist).
        (NY, "01:30", "03:30", date(2026, 3, 8), [("2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00")]),
        # 01:30 EDT (first of the two) .. 03:30 EST: 08:30 - 05:30 UTC = 3 h.
        (NY, "01:30", "03:30", date(2026, 11, 1), [("2026-11-01T01:30:00-04:00", "2026-11-01T03:30:00-05:00")]),
        (NY, "01:30", "03:30", date(2026, 6, 1), [("2026-06-01T01:30:00-04:00", "2026-06-01T03:30:00-04:00")]),
        # A start that does not exist (02:30) begins when the clock jumps, 03:00 EDT: 10:00 - 03:00 = 7 h.
        (NY, "02:30", "10:00", date(2026, 3, 8), [("2026-03-08T03:00:00-04:00", "2026-03-08T10:00:00-04:00")]),
        # A shift lying wholly in the skipped hour does not happen that day.
        (NY, "02:00", "02:30", date(2026, 3, 8), []),
        # Night shifts over the switch: 22:00 CET .. 06:00 CEST = 7 h; 22:00 CEST .. 06:00 CET = 9 h.
        (BER, "22:00", "06:00", date(2026, 3, 28), [("2026-03-28T22:00:00+01:00", "2026-03-29T06:00:00+02:00")]),
        (BER, "22:00", "06:00", date(2026, 10, 24), [("2026-10-24T22:00:00+02:00", "2026-10-25T06:00:00+01:00")]),
    ],
)
def test_dst_rule_for_skipped_and_repeated_wall_times(
    zone: str, start: str, end: str, day: date, expected: list[tuple[str, str]]
) -> None:
    cal = Calendar(zone, (ShiftPattern("s", time.fromisoformat(start), time.fromisoformat(end)),))
    lo, hi = cal.day_bounds(day)
    got = [(p.start_ms, p.end_ms) for p in cal.planned(lo, hi + 12 * H, None) if p.day == day]
    assert got == [(ms(a), ms(b)) for a, b in expected]


def test_local_ms_never_goes_backwards_across_transitions() -> None:
    # Every minute of the NY spring-forward and fall-back nights, as wall times, maps to non-decreasing instants.
    zone = zone_of("America/New_York")
    for day in (date(2026, 3, 8), date(2026, 11, 1)):
        walls = [datetime(day.year, day.month, day.day) + timedelta(minutes=m) for m in range(0, 5 * 60)]
        instants = [local_ms(zone, w) for w in walls]
        assert instants == sorted(instants)
    skipped = [local_ms(zone, datetime(2026, 3, 8, 2, m)) for m in range(60)]
    assert set(skipped) == {ms("2026-03-08T03:00:00-04:00")}  # every skipped minute is the jump itself


def test_breaks_on_a_dst_night_keep_their_wall_times() -> None:
    night = ShiftPattern("night", time(22), time(6), breaks=((time(1, 30), time(2, 30)),))
    cal = Calendar("Europe/Berlin", (night,))
    got = pieces(cal, ms("2026-10-24T12:00:00+02:00"), ms("2026-10-25T12:00:00+01:00"))
    # Fall back at 03:00 CEST: 22:00-01:30 CEST (3.5 h), break, 02:30 CEST .. 06:00 CET (4.5 h): 8 h of 9.
    assert got == [
        (ms("2026-10-24T22:00:00+02:00"), ms("2026-10-25T01:30:00+02:00"), "night", date(2026, 10, 24)),
        (ms("2026-10-25T02:30:00+02:00"), ms("2026-10-25T06:00:00+01:00"), "night", date(2026, 10, 24)),
    ]


# --- boundaries ------------------------------------------------------------------------------------------------


def test_boundaries_table() -> None:
    service = Downtime(jkt("2026-12-01T12:00:00"), jkt("2026-12-01T15:00:00"), frozenset({"cnc-01"}), "spindle")
    cal = Calendar(JKT, (MORNING, NIGHT), downtime=(service,))
    window = (jkt("2026-12-01T00:00:00"), jkt("2026-12-02T00:00:00"))
    assert cal.boundaries(*window, "cnc-01") == [
        jkt("2026-12-01T06:00:00"),  # Monday's night ends, Tuesday's morning begins
        jkt("2026-12-01T10:00:00"),  # break
        jkt("2026-12-01T10:15:00"),
        jkt("2026-12-01T12:00:00"),  # downtime
        jkt("2026-12-01T14:00:00"),  # morning ends inside the downtime: the shift changes
        jkt("2026-12-01T15:00:00"),  # downtime ends
        jkt("2026-12-01T22:00:00"),  # night begins (local midnight 00:00 is inside it: no change)
    ]
    # cnc-02 has no downtime: only shift and break edges (06:00, 10:00, 10:15, 14:00, 22:00).
    assert len(cal.boundaries(*window, "cnc-02")) == 5
    # Outside shifts the label's day is the local date, so local midnight (not UTC midnight) is a boundary.
    weekend = Calendar(JKT, (MORNING,))
    assert weekend.boundaries(jkt("2026-12-05T12:00:00"), jkt("2026-12-06T12:00:00"), None) == [
        jkt("2026-12-06T00:00:00")
    ]
    assert cal.boundaries(window[0], window[0], None) == [] and cal.planned(window[1], window[0], None) == []


# --- properties ------------------------------------------------------------------------------------------------

BERLIN = Calendar(
    "Europe/Berlin",
    (
        ShiftPattern("early", time(6), time(14), frozenset(range(6)), ((time(9), time(9, 15)), (time(12), time(13)))),
        ShiftPattern("late", time(14), time(22), WEEKDAYS),
        ShiftPattern("night", time(22), time(6), frozenset({0, 1, 2, 3, 6}), ((time(1, 30), time(2, 30)),)),
    ),
    holidays=frozenset({date(2026, 10, 26), date(2026, 3, 30)}),
    downtime=(
        Downtime(ms("2026-10-24T20:00:00+02:00"), ms("2026-10-25T04:00:00+01:00"), frozenset({"a"}), "clocks"),
        Downtime(ms("2026-10-24T21:00:00+02:00"), ms("2026-10-24T23:00:00+02:00"), None, "fire drill"),
        Downtime(ms("2026-03-29T01:00:00+01:00"), ms("2026-03-29T05:00:00+02:00"), frozenset({"b"}), "relining"),
    ),
)  # fmt: skip
# Eight days around each of Berlin's (and, a fortnight earlier and a week later, New York's) DST switches.
RANGES = [
    (ms("2026-03-05T00:00:00+01:00"), ms("2026-04-02T00:00:00+02:00")),
    (ms("2026-10-21T00:00:00+02:00"), ms("2026-11-04T00:00:00+01:00")),
]
SPAN = st.sampled_from(RANGES).flatmap(lambda r: st.integers(*r))


def instants(n: int) -> st.SearchStrategy[list[int]]:
    """n distinct instants, sorted, within one of the ranges and at most 8 days apart."""
    return (
        st.sampled_from(RANGES)
        .flatmap(lambda r: st.integers(r[0], r[1] - 8 * 24 * H))
        .flatmap(lambda lo: st.lists(st.integers(lo, lo + 8 * 24 * H), min_size=n, max_size=n, unique=True))
        .map(sorted)
    )


MACHINE = st.sampled_from(["a", "b", "c", None])
CALENDARS = st.sampled_from([BERLIN, Calendar("America/New_York", BERLIN.shifts), Calendar(JKT, BERLIN.shifts)])


def _rejoin(first: list[PlannedPiece], second: list[PlannedPiece], cut: int) -> list[PlannedPiece]:
    """Join two windows' pieces, rejoining the piece the cut went through."""
    if first and second and first[-1].end_ms == cut == second[0].start_ms:
        a, b = first[-1], second[0]
        if (a.shift, a.day) == (b.shift, b.day):
            return [*first[:-1], PlannedPiece(a.start_ms, b.end_ms, a.shift, a.day), *second[1:]]
    return first + second


@settings(max_examples=300, deadline=None)
@given(CALENDARS, instants(3), MACHINE)
def test_window_independence(cal: Calendar, times: list[int], machine: str | None) -> None:
    a, b, c = times
    assert cal.planned(a, c, machine) == _rejoin(cal.planned(a, b, machine), cal.planned(b, c, machine), b)
    total = cal.stretches(a, c, machine)
    left, right = cal.stretches(a, b, machine), cal.stretches(b, c, machine)
    if left[-1].label == right[0].label:
        left[-1:] = []
        right[0] = Stretch(total[len(left)].start_ms, right[0].end_ms, right[0].label)
    assert total == left + right


@settings(max_examples=300, deadline=None)
@given(CALENDARS, instants(2), MACHINE, st.lists(st.floats(0, 1), max_size=10))
def test_boundaries_are_where_the_label_changes(
    cal: Calendar, window: list[int], machine: str | None, fractions: list[float]
) -> None:
    start, end = window
    probes = [start + int((end - start) * f) for f in fractions]
    cuts = cal.boundaries(start, end, machine)
    assert cuts == sorted(set(cuts)) and all(start < t < end for t in cuts)
    for t in cuts:
        assert cal.label(t, machine) != cal.label(t - 1, machine), t
    edges = [start, *cuts]
    for t in [p for p in probes if start <= p < end] + [end - 1]:
        held_from = max(e for e in edges if e <= t)
        assert cal.label(t, machine) == cal.label(held_from, machine)
    planned = cal.planned(start, end, machine)
    for p, q in itertools.pairwise(planned):
        assert p.end_ms <= q.start_ms  # ascending, non-overlapping
    for p in planned:
        assert start <= p.start_ms < p.end_ms <= end
        label = cal.label(p.start_ms, machine)
        assert label.planned and (label.shift, label.day) == (p.shift, p.day)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["Europe/Berlin", "America/New_York", "America/Havana", JKT, "Australia/Lord_Howe"]), SPAN)
def test_local_days_partition_time(zone: str, t: int) -> None:
    cal = Calendar(zone)
    day = cal.local_day(t)
    start, end = cal.day_bounds(day)
    assert start <= t < end
    assert cal.day_bounds(day + timedelta(days=1))[0] == end


def test_shared_with_the_simulator() -> None:
    # The simulator's daily windows are the calendar's local windows: a Berlin fall-back week, night 22:00-06:00.
    frm, to = ms("2026-10-22T00:00:00+02:00"), ms("2026-10-28T00:00:00+01:00")
    windows = local_windows("Europe/Berlin", time(22), time(6), frozenset({4, 5}), frm, to)
    assert [(w.start_ms, w.end_ms) for w in windows] == daily_windows(["fri", "sat"], time(22), time(6),
                                                                      "Europe/Berlin", frm, to)  # fmt: skip
    assert [(w.day, (w.end_ms - w.start_ms) / H) for w in windows] == [
        (date(2026, 10, 23), 8),
        (date(2026, 10, 24), 9),  # fall back at 03:00 CEST: one hour more
    ]


# --- construction errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shifts", "message"),
    [
        ([("a", "06:00", "14:00", range(7)), ("b", "13:00", "18:00", range(7))], "'a' and 'b' overlap on mon 13:00-14"),
        # Monday's night reaches Tuesday 04:00-06:00, where the Tuesday-only early shift begins.
        ([("night", "22:00", "06:00", [0]), ("early", "04:00", "12:00", [1])], "'early' and 'night' overlap on tue 04"),
        # Sunday's night wraps into Monday morning.
        ([("night", "22:00", "06:00", [6]), ("early", "05:00", "12:00", [0])], "'early' and 'night' overlap on mon 05"),
        ([("a", "00:00", "00:00", [2]), ("b", "23:00", "01:00", [1])], r"'a' and 'b' overlap on wed 00:00-01:00"),
        ([("a", "06:00", "14:00", [0]), ("a", "15:00", "16:00", [0])], r"two shifts are named 'a'"),
    ],
)  # fmt: skip
def test_overlapping_shifts_are_refused(shifts: list[tuple[str, str, str, list[int]]], message: str) -> None:
    patterns = tuple(
        ShiftPattern(n, time.fromisoformat(s), time.fromisoformat(e), frozenset(d)) for n, s, e, d in shifts
    )
    with pytest.raises(ValueError, match=message):
        check_shifts(patterns)
    with pytest.raises(ValueError, match=message):
        Calendar(JKT, patterns)


def test_back_to_back_shifts_are_fine() -> None:
    three = tuple(
        ShiftPattern(n, time(h), time((h + 8) % 24)) for n, h in (("morning", 6), ("afternoon", 14), ("night", 22))
    )
    cal = Calendar("Europe/Berlin", three)
    start, end = cal.day_bounds(date(2026, 10, 25))
    assert hours(cal, start, end) == 25  # three shifts around the clock on a 25 h day


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Morning"}, "not a valid id"),
        ({"name": ""}, "not a valid id"),
        ({"weekdays": frozenset()}, "non-empty"),
        ({"weekdays": frozenset({7})}, "must be 0..6"),
        ({"weekdays": [0, 1]}, "frozenset"),
        ({"start": time(6, tzinfo=UTC)}, "without tzinfo"),
        ({"start": time(6, 0, 0, 5)}, "whole seconds"),
        ({"start": "06:00"}, "datetime.time"),
        ({"breaks": ((time(5), time(5, 15)),)}, r"break 05:00-05:15 is not inside the shift \(06:00-14:00\)"),
        ({"breaks": ((time(13, 50), time(14, 10)),)}, "not inside the shift"),
        ({"breaks": ((time(10), time(10)),)}, "has no length"),
        ({"breaks": ((time(11), time(11, 15)), (time(10), time(10, 15)))}, "in time order"),
        ({"breaks": ((time(10), time(10, 30)), (time(10, 15), time(10, 45)))}, "overlaps"),
        ({"breaks": ((time(10),),)}, "pair"),
    ],
)
def test_bad_shift_patterns(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "morning", "start": time(6), "end": time(14), **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        ShiftPattern(**fields)  # type: ignore[arg-type]


def test_break_may_end_with_the_shift_and_cross_midnight() -> None:
    ShiftPattern("night", time(22), time(6), breaks=((time(23, 30), time(0, 30)), (time(5, 30), time(6))))
    ShiftPattern("day", time(0), time(0), breaks=((time(23), time(0)),))  # 24 h shift, break to its end


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, 10, None, "x"), "not after start"),
        ((10, 5, None, "x"), "not after start"),
        ((0, 10, frozenset(), "x"), "non-empty frozenset"),
        ((0, 10, frozenset({1}), "x"), "non-empty frozenset"),
        ((0, 10, None, "bad\nreason"), "printable"),
        ((0, 10, None, "x" * 201), "printable"),
        ((0, 10, None, ""), r"1\.\.200"),
        ((0.5, 10, None, "x"), "epoch ms as int"),
        ((True, 10, None, "x"), "epoch ms as int"),
        ((0, 10**20, None, "x"), "outside the calendar's range"),
    ],
)
def test_bad_downtime(args: tuple[object, ...], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Downtime(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "/etc/passwd", "x" * 5000, "UTC\x00"])
def test_bad_zone(zone: str) -> None:
    with pytest.raises(ValueError, match="not an IANA time zone"):
        Calendar(zone)


def test_bad_calendar_fields_and_instants() -> None:
    with pytest.raises(TypeError, match=r"datetime\.date"):
        Calendar(JKT, holidays=frozenset({datetime(2026, 12, 25)}))
    with pytest.raises(TypeError, match="tuple of ShiftPattern"):
        Calendar(JKT, [MORNING])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tuple of Downtime"):
        Calendar(JKT, downtime=[1])  # type: ignore[arg-type]
    cal = Calendar(JKT)
    with pytest.raises(ValueError, match="outside the calendar's range"):
        cal.planned(0, 10**18, None)
    with pytest.raises(ValueError, match="outside the calendar's range"):
        cal.day_bounds(date.max)
    with pytest.raises(TypeError, match="epoch ms as int"):
        cal.label(1.5, None)  # type: ignore[arg-type]
