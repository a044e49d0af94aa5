"""Timeline core: samples -> intervals with UNKNOWN for gaps and unreachable spells, counters, window independence."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from api.core import UNKNOWN, Counts, Increment, Interval, build_timeline, classify, cut
from api.core.counters import counter_delta

T0 = 1_764_291_600_000
GAP = 4000  # max_gap_ms of a 1 s poll with factor 3 (+1 s)


def s(sec: float) -> int:
    return T0 + int(sec * 1000)


def sample(sec: float, **values: object) -> tuple[int, Mapping[str, object]]:
    return (s(sec), values)


def iv(
    a: float, b: float, state: str = UNKNOWN, badge: int = 0, job: str | None = None, stop: int | None = None
) -> Interval:
    return Interval(s(a), s(b), state, badge, job, stop)


BASIC = [
    sample(0, state="RUNNING", badge=1001, job="J1", good_count=10, reject_count=0, energy_kwh=5.0),
    sample(1, state="RUNNING", badge=1001, job="J1", good_count=12, reject_count=0, energy_kwh=5.5),
    sample(2, state="IDLE", badge=1001, job="J1", good_count=12, reject_count=0, energy_kwh=5.75),
    sample(3, state="IDLE", badge=0, job="J1", good_count=12, reject_count=0, energy_kwh=5.75),
]


def test_basic_intervals_merge_and_hold_until_max_gap() -> None:
    tl = build_timeline(BASIC, [], s(0), s(10), GAP)
    assert tl.intervals == (
        iv(0, 2, "RUNNING", 1001, "J1"),
        iv(2, 3, "IDLE", 1001, "J1"),
        iv(3, 7, "IDLE", 0, "J1"),
        iv(7, 10),
    )
    assert tl.known_ms == 7000
    assert tl.coverage == pytest.approx(0.7)


def test_increments_belong_to_the_interval_before_the_sample() -> None:
    tl = build_timeline(BASIC, [], s(0), s(5), GAP)
    assert tl.increments == (
        Increment(s(1), Counts(good=2, kwh=0.5), iv(0, 1, "RUNNING", 1001, "J1")),
        Increment(s(2), Counts(kwh=0.25), iv(1, 2, "RUNNING", 1001, "J1")),
    )
    assert tl.totals() == Counts(good=2, kwh=0.75)
    assert tl.unattributed() == Counts()


@pytest.mark.parametrize(
    ("samples", "statuses", "expected"),
    [
        pytest.param(
            [sample(0, state="RUNNING"), sample(10, state="RUNNING")],
            [],
            [iv(0, 4, "RUNNING"), iv(4, 10), iv(10, 12, "RUNNING")],
            id="gap-beyond-max-gap-is-unknown",
        ),
        pytest.param(
            [sample(0, state="RUNNING"), sample(4, state="RUNNING")],
            [],
            [iv(0, 8, "RUNNING"), iv(8, 12)],
            id="gap-of-exactly-max-gap-is-covered",
        ),
        pytest.param(
            [sample(0, state="RUNNING"), sample(3, state="RUNNING")],
            [(s(1), "unreachable"), (s(2), "online")],
            [iv(0, 1, "RUNNING"), iv(1, 3), iv(3, 7, "RUNNING"), iv(7, 12)],
            id="unreachable-until-next-sample",
        ),
        pytest.param(
            [sample(0, state="IDLE"), sample(2, state="IDLE")],
            [(s(0.5), "offline")],
            [iv(0, 0.5, "IDLE"), iv(0.5, 2), iv(2, 6, "IDLE"), iv(6, 12)],
            id="agent-offline-is-unknown",
        ),
        pytest.param(
            [sample(0, state="IDLE"), sample(2, state="IDLE")],
            [(s(0), "unreachable"), (s(1), "online")],
            [iv(0, 6, "IDLE"), iv(6, 12)],
            id="status-at-sample-time-is-before-the-sample",
        ),
        pytest.param(
            [sample(1, state="STOPPED", stop_reason=7), sample(2, badge=1001), sample(3, state="OFF", job="x")],
            [],
            [
                iv(0, 1),
                iv(1, 2, "STOPPED", 0, None, 7),
                iv(2, 3, "STOPPED", 1001, None, 7),
                iv(3, 7, "OFF", 1001, "x", 7),
                iv(7, 12),
            ],
            id="missing-signals-carry-forward",
        ),
        pytest.param(
            [sample(0, badge=1001), sample(1, state="EXPLODED"), sample(2, state="IDLE", badge=-5, job=3)],
            [],
            [iv(0, 2), iv(2, 6, "IDLE"), iv(6, 12)],
            id="missing-or-invalid-state-is-unknown",
        ),
        pytest.param(
            [sample(0, state="IDLE", badge=True), sample(1, state="IDLE", badge="1001", stop_reason=1.5)],
            [],
            [iv(0, 5, "IDLE"), iv(5, 12)],
            id="wrongly-typed-values-are-ignored",
        ),
        pytest.param(
            [sample(2, state="IDLE"), sample(0, state="RUNNING"), sample(2, state="SETUP")],
            [],
            [iv(0, 2, "RUNNING"), iv(2, 6, "SETUP"), iv(6, 12)],
            id="unsorted-and-duplicate-timestamps",
        ),
        pytest.param([], [(s(1), "online")], [iv(0, 12)], id="no-samples"),
    ],
)
def test_intervals_table(
    samples: list[tuple[int, Mapping[str, object]]], statuses: list[tuple[int, str]], expected: list[Interval]
) -> None:
    tl = build_timeline(samples, statuses, s(0), s(12), GAP)
    assert list(tl.intervals) == expected
    assert tl.intervals[0].start_ms == s(0) and tl.intervals[-1].end_ms == s(12)


@pytest.mark.parametrize(
    ("previous", "current", "delta"),
    [(10, 12, 2), (12, 12, 0), (100, 3, 3), (5, 0, 0), (10.5, 0.5, 0.5), (1.25, 2.0, 0.75)],
)
def test_counter_delta_resets_never_negative(previous: float, current: float, delta: float) -> None:
    assert counter_delta(previous, current) == delta


def test_counter_reset_counts_from_new_value() -> None:
    samples = [
        sample(0, state="RUNNING", good_count=100, reject_count=4, energy_kwh=10.5),
        sample(1, state="RUNNING", good_count=3, reject_count=5, energy_kwh=0.5),
        sample(2, state="RUNNING", good_count=4, reject_count=5, energy_kwh=0.75),
    ]
    tl = build_timeline(samples, [], s(0), s(3), GAP)
    assert [i.counts for i in tl.increments] == [Counts(3, 1, 0.5), Counts(1, 0, 0.25)]
    assert all(i.counts.good >= 0 and i.counts.reject >= 0 and i.counts.kwh >= 0 for i in tl.increments)


@pytest.mark.parametrize(
    ("samples", "statuses"),
    [
        pytest.param(
            [sample(0, state="RUNNING", good_count=1), sample(10, state="RUNNING", good_count=6)], [], id="long-gap"
        ),
        pytest.param(
            [sample(0, state="RUNNING", good_count=1), sample(2, state="RUNNING", good_count=6)],
            [(s(1), "unreachable")],
            id="unreachable",
        ),
        pytest.param(
            [sample(0, good_count=1), sample(2, state="RUNNING", good_count=6)], [], id="previous-state-unknown"
        ),
    ],
)
def test_delta_across_unknown_is_counted_but_unattributed(
    samples: list[tuple[int, Mapping[str, object]]], statuses: list[tuple[int, str]]
) -> None:
    tl = build_timeline(samples, statuses, s(0), s(12), GAP)
    assert tl.increments == (Increment(samples[1][0], Counts(good=5), None),)
    assert tl.totals() == tl.unattributed() == Counts(good=5)


def test_increment_counts_in_window_when_its_sample_is_in_start_exclusive_end_inclusive() -> None:
    samples = [sample(t, state="RUNNING", good_count=t) for t in range(6)]
    full = classify(samples, [], GAP)
    assert [i.ts_ms for i in cut(full, s(1), s(3)).increments] == [s(2), s(3)]
    assert [i.ts_ms for i in cut(full, s(3), s(5)).increments] == [s(4), s(5)]


WINDOW_DATA = [
    sample(0, state="IDLE", badge=1001, good_count=0, energy_kwh=0.0),
    sample(1, state="RUNNING", badge=1001, good_count=0, energy_kwh=0.0),
    sample(2, state="RUNNING", badge=1001, good_count=2, energy_kwh=0.5),
    sample(3, state="RUNNING", badge=1001, good_count=4, energy_kwh=1.0),
    sample(9, state="RUNNING", badge=1001, good_count=9, energy_kwh=1.5),
    sample(10, state="STOPPED", badge=2001, stop_reason=3, good_count=9, energy_kwh=1.5),
    sample(11, state="STOPPED", badge=2001, stop_reason=3, good_count=1, energy_kwh=1.75),
    sample(12, state="OFF", badge=0, good_count=1, energy_kwh=1.75),
]


@pytest.mark.parametrize(("start", "end"), [(0, 20), (0.5, 2.5), (2, 10.5), (5, 9), (9.5, 11), (10.25, 30)])
def test_result_does_not_depend_on_the_query_window(start: float, end: float) -> None:
    full = cut(classify(WINDOW_DATA, [], GAP), s(-5), s(40))
    # What the shell fetches for [start, end]: a look-back of max_gap plus the newest sample before it.
    lookback = s(start) - GAP
    fetched = [x for x in WINDOW_DATA if lookback <= x[0] <= s(end)]
    older = [x for x in WINDOW_DATA if x[0] < lookback]
    fetched = older[-1:] + fetched
    windowed = build_timeline(fetched, [], s(start), s(end), GAP)
    assert windowed == cut(full, s(start), s(end))


def test_window_cuts_add_up() -> None:
    full = classify(WINDOW_DATA, [], GAP)
    whole = cut(full, s(0), s(20))
    parts = [cut(full, s(a), s(b)) for a, b in [(0, 2.5), (2.5, 9.5), (9.5, 20)]]
    # Known: 0..7 (3 s of samples, then max_gap), 9..16 (samples to 12, then max_gap); 7..9 is a gap.
    assert sum(p.known_ms for p in parts) == whole.known_ms == 14000
    # 2 + 2 + 5 (across the gap) + 1 (after the reset at 11 s) parts.
    assert sum((p.totals() for p in parts), Counts()) == whole.totals() == Counts(good=10, kwh=1.75)
    assert whole.unattributed() == Counts(good=5, kwh=0.5)


def test_window_must_not_be_empty_and_max_gap_positive() -> None:
    with pytest.raises(ValueError, match="after its start"):
        build_timeline(BASIC, [], s(5), s(5), GAP)
    with pytest.raises(ValueError, match="max_gap_ms"):
        classify(BASIC, [], 0)


def test_empty_job_register_means_no_job() -> None:
    tl = build_timeline([sample(0, state="IDLE", job=""), sample(1, state="SETUP", job="J2")], [], s(0), s(2), GAP)
    assert tl.intervals == (iv(0, 1, "IDLE"), iv(1, 2, "SETUP", job="J2"))
