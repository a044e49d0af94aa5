"""The API shell's calendar labeller: the calendar's own labels, computed once per window."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from api.analytics import labeller
from shopfloor.calendar import Calendar, Downtime, ShiftPattern

H = 3_600_000
T0 = int(datetime(2026, 11, 30, 0, 0, tzinfo=UTC).timestamp() * 1000)  # a Monday, 07:00 in Jakarta

CALENDAR = Calendar(
    "Asia/Jakarta",
    shifts=(
        ShiftPattern("morning", time(6), time(14), breaks=((time(10), time(10, 15)),)),
        ShiftPattern("night", time(22), time(6), weekdays=frozenset({0, 1, 2, 3})),
    ),
    holidays=frozenset({date(2026, 12, 1)}),
    downtime=(
        Downtime(T0 + 2 * H, T0 + 5 * H, frozenset({"cnc-01"}), "spindle service"),
        Downtime(T0 + 30 * H, T0 + 31 * H, None, "power works"),
    ),
)


def test_labels_equal_the_calendars_own_for_every_machine_inside_and_outside_the_window() -> None:
    label = labeller(CALENDAR, T0, T0 + 72 * H)
    # Every 5 minutes over the window and a day either side (outside it the calendar itself answers), for a machine
    # with downtime of its own, one without and one the site does not have.
    for ts in range(T0 - 24 * H, T0 + 96 * H, 300_000):
        for machine in ("cnc-01", "cnc-02", "other"):
            assert label(ts, machine) == CALENDAR.label(ts, machine), (ts, machine)


def test_a_machines_own_downtime_is_not_shared() -> None:
    label = labeller(CALENDAR, T0, T0 + 24 * H)
    # 09:00 Jakarta on Monday: the morning shift, but cnc-01 is in its spindle service (02:00-05:00 UTC).
    at = T0 + 2 * H
    assert (label(at, "cnc-01").planned, label(at, "cnc-01").downtime) == (False, "spindle service")
    assert (label(at, "cnc-02").planned, label(at, "cnc-02").shift) == (True, "morning")
