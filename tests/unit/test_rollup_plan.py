"""The roll-up job's planning (api.rollups.plan): which hours are closed, missing, unbuilt by late data, built next.

Times are written as hours: D is a UTC midnight, D + 10 * H is 10:00 that day.
"""

from __future__ import annotations

import pytest

from api.rollups.plan import (
    DAY_MS,
    DEFAULT_GRACE_MS,
    Run,
    Span,
    closed_end,
    heartbeat_runs,
    late_span,
    merge_marks,
    missing_around,
    missing_hours,
    neighbours,
    plan_runs,
    stale_before,
)

H = 3_600_000
M = 60_000
D = 1_764_547_200_000  # 2025-12-01T00:00Z
GAP = 64_000  # a 60 s heartbeat, polled every 1 s with gap factor 3: 60 s + (1 s * 3 + 1 s)


@pytest.mark.parametrize(
    ("now", "gap", "grace", "expected"),
    [
        # context = max(64 s, 10 min) = 10 min; hour 09:00 is closed at 10:00 + 10 min + 10 min = 10:20.
        (D + 10 * H + 20 * M, GAP, 10 * M, D + 10 * H),  # 09:00 closed (first not closed: 10:00)
        (D + 10 * H + 20 * M - 1, GAP, 10 * M, D + 9 * H),  # 1 ms earlier: 09:00 is not
        (D + 10 * H + 59 * M, GAP, 10 * M, D + 10 * H),  # still only up to 09:00
        # A 1 h gap (heartbeat 3600 s): context 1 h, so 09:00 closes at 10:00 + 1 h + 10 min = 11:10.
        (D + 11 * H + 10 * M, H, 10 * M, D + 10 * H),
        (D + 11 * H + 9 * M, H, 10 * M, D + 9 * H),
        # No grace: 09:00 closes at 10:10.
        (D + 10 * H + 10 * M, GAP, 0, D + 10 * H),
    ],
)
def test_an_hour_closes_when_its_context_and_the_grace_have_passed(
    now: int, gap: int, grace: int, expected: int
) -> None:
    assert closed_end(now, gap, grace) == expected


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (GAP, 1),  # context 10 min: the hour before and after
        (H, 1),  # context exactly 1 h still reaches only the next hour's start
        (H + 1, 2),  # 1 h + 1 ms reaches into the hour after next
        (90 * M, 2),
        (2 * H, 2),
        (2 * H + 1, 3),
    ],
)
def test_neighbours_are_the_hours_a_context_reaches(gap: int, expected: int) -> None:
    assert neighbours(gap) == expected


def test_missing_hours_are_the_hours_of_the_range_not_built() -> None:
    built = {D + 1 * H, D + 2 * H, D + 4 * H}
    # [00:00, 06:00) minus 01, 02, 04 -> 00, 03, 05.
    assert missing_hours(D, D + 6 * H, built) == [D, D + 3 * H, D + 5 * H]
    # A start inside an hour counts that hour: 00:30 -> from 00:00.
    assert missing_hours(D + 30 * M, D + 2 * H, built) == [D]
    # An end inside an hour counts the hour it starts in (hours starting before the end): 05:30 -> 05:00 included.
    assert missing_hours(D + 5 * H, D + 5 * H + 30 * M, built) == [D + 5 * H]
    assert missing_hours(D + 3 * H, D + 3 * H, built) == []  # empty range
    assert missing_hours(D + 5 * H, D + 3 * H, built) == []  # reversed range: nothing


def test_missing_around_equals_missing_hours_when_the_built_stretch_is_contiguous() -> None:
    # Built 03:00..06:00 (4 hours). Range 00:00..10:00 -> 00, 01, 02 and 07, 08, 09.
    first, last = D + 3 * H, D + 6 * H
    built = set(range(first, last + H, H))
    for start, end in [(D, D + 10 * H), (D + 4 * H, D + 10 * H), (D, D + 4 * H), (D + 8 * H, D + 9 * H), (D, D)]:
        assert missing_around(start, end, first, last) == missing_hours(start, end, built), (start - D, end - D)
    assert missing_around(D, D + 10 * H, first, last) == [D, D + H, D + 2 * H, D + 7 * H, D + 8 * H, D + 9 * H]


def test_late_marks_merge_into_spans_with_their_neighbours_and_latest_stale_time() -> None:
    marks = [
        ("m1", D + 10 * H, 100),  # -> [09, 11]
        ("m1", D + 11 * H, 200),  # -> [10, 12]: overlaps, merged [09, 12], latest stale time 200
        ("m1", D + 14 * H, 150),  # -> [13, 15]: touches 12 (13 = 12 + 1 h), merged [09, 15]
        ("m1", D + 20 * H, 300),  # -> [19, 21]: 19 > 15 + 1 h, a span of its own
        ("m2", D + 5 * H, 50),  # m2 reaches 2 hours either side -> [03, 07]
        ("ghost", D, 10),  # not a machine we build: skipped
        ("m1", D + 3 * H + 1, 10),  # not an hour start: skipped
    ]
    spans = merge_marks(marks, {"m1": 1, "m2": 2})
    assert spans == {
        "m1": [(D + 9 * H, D + 15 * H, 200), (D + 19 * H, D + 21 * H, 300)],
        "m2": [(D + 3 * H, D + 7 * H, 50)],
    }
    assert merge_marks([], {"m1": 1}) == {}


@pytest.mark.parametrize(
    ("received", "seen", "expected"),
    [
        # The job first saw the mark 5 s after the collector stamped it: hours built before that sighting may lack
        # the data, hours built after it hold it.
        (1_000_000, 1_005_000, 1_005_000),  # min(1_005_000, 1_000_000 + 60_000) = the sighting
        # Seen 10 min after its receipt: hours built from 1 min after the receipt on hold the data already.
        (1_000_000, 1_600_000, 1_060_000),  # min(1_600_000, 1_060_000)
        # A collector clock running ahead (receipt "after" the sighting): the sighting bounds it.
        (2_000_000, 1_000_000, 1_000_000),
    ],
)
def test_a_mark_makes_stale_what_was_built_before_its_first_sighting_or_receipt_plus_tolerance(
    received: int, seen: int, expected: int
) -> None:
    assert stale_before(received, seen, tolerance_ms=60_000) == expected


@pytest.mark.parametrize(
    ("next_busy", "last_built", "expected_last"),
    [
        (D + 20 * H, D + 30 * H, D + 20 * H),  # silence 13..19 after the span, then an hour with data: up to it
        (None, D + 30 * H, D + 30 * H),  # only silence after the span: every built hour after it
        (None, None, D + 12 * H),  # nothing built: the span itself
        (None, D + 11 * H, D + 12 * H),  # the last built hour lies inside the span: the span itself
    ],
)
def test_late_span_runs_through_the_silence_after_it(
    next_busy: int | None, last_built: int | None, expected_last: int
) -> None:
    assert late_span("m1", D + 9 * H, D + 12 * H, 5, next_busy, last_built) == Span("m1", D + 9 * H, expected_last, 5)


def test_runs_go_day_by_day_across_machines_oldest_first() -> None:
    day1 = D + DAY_MS
    missing = {
        "a": [D + 22 * H, D + 23 * H, day1, day1 + H],
        "b": [D + 23 * H, day1 + 5 * H],
    }
    # Order by (day, machine, hour): day 0 a22 a23 b23, day 1 a00 a01 b05. A run never crosses midnight.
    assert plan_runs(missing, budget_hours=100) == [
        Run("a", D + 22 * H, D + 24 * H),
        Run("b", D + 23 * H, D + 24 * H),
        Run("a", day1, day1 + 2 * H),
        Run("b", day1 + 5 * H, day1 + 6 * H),
    ]
    # Budget 4 machine-hours: a22, a23, b23, a00.
    assert plan_runs(missing, budget_hours=4) == [
        Run("a", D + 22 * H, D + 24 * H),
        Run("b", D + 23 * H, D + 24 * H),
        Run("a", day1, day1 + H),
    ]
    # Runs of at most 1 hour: one run per hour.
    assert [r.hours for r in plan_runs(missing, budget_hours=100, run_hours=1)] == [1] * 6
    assert plan_runs({}, budget_hours=5) == []


def test_runs_are_cut_at_run_hours() -> None:
    missing = {"a": list(range(D, D + 24 * H, H))}
    # 24 hours in runs of at most 10: 10 + 10 + 4.
    assert [(r.start_ms - D) // H for r in plan_runs(missing, 100, run_hours=10)] == [0, 10, 20]
    assert [r.hours for r in plan_runs(missing, 100, run_hours=10)] == [10, 10, 4]


@pytest.mark.parametrize(("budget", "run_hours"), [(0, 24), (-1, 24), (10, 0)])
def test_plan_refuses_a_budget_or_run_length_below_one(budget: int, run_hours: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_runs({"a": [D]}, budget, run_hours)


def test_a_run_splits_where_the_heartbeat_in_effect_at_an_hours_end_changes() -> None:
    run = Run("a", D, D + 4 * H)
    # Hour h is classified with the heartbeat reported at or before h + 1 h.
    assert heartbeat_runs(run, 60_000, []) == [(run, 60_000)]
    # A change at 02:00 exactly is in effect at 01:00's end (02:00): hours 01..03 take it.
    assert heartbeat_runs(run, 60_000, [(D + 2 * H, 5_000)]) == [
        (Run("a", D, D + H), 60_000),
        (Run("a", D + H, D + 4 * H), 5_000),
    ]
    # 1 ms later it is first in effect at 02:00's end (03:00).
    assert heartbeat_runs(run, 60_000, [(D + 2 * H + 1, 5_000)]) == [
        (Run("a", D, D + 2 * H), 60_000),
        (Run("a", D + 2 * H, D + 4 * H), 5_000),
    ]
    # Back to 60 s at 03:30: hour 03 (ends 04:00) takes it; a repeat of the same value splits nothing.
    assert heartbeat_runs(run, None, [(D + 2 * H, 5_000), (D + 2 * H + 1, 5_000), (D + 3 * H + 30 * M, 60_000)]) == [
        (Run("a", D, D + H), None),
        (Run("a", D + H, D + 3 * H), 5_000),
        (Run("a", D + 3 * H, D + 4 * H), 60_000),
    ]


def test_the_grace_covers_the_collectors_late_threshold_and_clock_slack() -> None:
    # An hour is built only grace after its context ends; the collector marks data older than LATE_AFTER_MS. Data
    # written between those two would be missing from a roll-up and never marked: grace must exceed the
    # threshold by the clock difference the hosts may have (5 min).
    from collector.service import LATE_AFTER_MS

    assert DEFAULT_GRACE_MS >= LATE_AFTER_MS + 5 * M
