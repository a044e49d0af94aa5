"""Block-local classification and pieces: hand-computed tables, and window independence as properties.

Times are minutes after T0 (an hour start, 2025-11-28 01:00 UTC). The agent polls once a minute and max_gap is
60 s, so a sample holds exactly until the next one; the context around each hour is then MIN_CONTEXT_MS (10 min).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.core import (
    UNKNOWN,
    Anomaly,
    CounterLimits,
    HourlyTimeline,
    OeeRow,
    Piece,
    StatusEvent,
    StopSpan,
    UsageRow,
    classify,
    clip,
    context_ms,
    cut,
    hour_summaries,
    hour_summary,
    hour_timelines,
    oee,
    pieces,
    usage_from_pieces,
)
from api.core.pieces import BASELINE_SIGNALS, HOUR_MS, MIN_CONTEXT_MS, UNATTRIBUTED, _Statuses, hour_of, marks
from api.core.timeline import StatusIn

T0 = 1_764_291_600_000
assert T0 % HOUR_MS == 0
MIN = 60_000
GAP = 60_000
Sample = tuple[int, Mapping[str, object]]


def m(minutes: float) -> int:
    return T0 + int(minutes * MIN)


def day_table() -> list[Sample]:
    """Samples every minute from -15 to 125 (the changes are listed; values hold between them).

    state   RUNNING  -15..20, STOPPED(3) 20..25, RUNNING 25..59, STOPPED(4) 59..61, RUNNING 61..90,
            no samples 90..100 (silence), IDLE 100..125
    badge   1001 until 61, 2002 from 61, 0 from 100;  job "A" until 100, then none
    good    +1 for every RUNNING minute (the increment at sample m is made in [m-1, m)); 7 more made in the silence
    reject  +1 at 30;  energy: 0.25 kWh a part
    """
    out: list[Sample] = []
    good, reject = 100, 0
    previous: str | None = None
    for minute in range(-15, 126):
        if 90 <= minute < 100:
            continue
        if minute == 100:
            good += 7 - 1  # 7 parts after the last sample at 89: the one of [89, 90) and 6 in the silence
        if previous == "RUNNING":
            good += 1
        if minute == 30:
            reject += 1
        if minute < 20 or 25 <= minute < 59 or 61 <= minute < 90:
            state, stop = "RUNNING", None
        elif minute < 25:
            state, stop = "STOPPED", 3
        elif minute < 61:
            state, stop = "STOPPED", 4
        else:
            state, stop = "IDLE", None
        values: dict[str, object] = {
            "state": state,
            "badge": 1001 if minute < 61 else 2002 if minute < 100 else 0,
            "job": "A" if minute < 100 else "",
            "good_count": good,
            "reject_count": reject,
            "energy_kwh": good * 0.25,
        }
        values["stop_reason"] = stop or 0  # as PLCs report it: 0 while not stopped
        out.append((m(minute), values))
        previous = state
    return out


DAY = day_table()


def piece(at: float, state: str, duration_min: float, **kw: object) -> Piece:
    fields: dict[str, object] = {"reason": None, "badge": 0, "job": None, "stop_reason": None, "stop_ms": 0}
    fields.update(kw)
    return Piece("cnc-01", m(at), state, duration_ms=int(duration_min * MIN), **fields)  # type: ignore[arg-type]


HOUR0 = [
    # [0,20) + [25,59): 54 min. Increments at samples 1..20 and 26..59 (made in RUNNING minutes): 20 + 34 = 54
    # parts, 13.5 kWh; the reject at 30 (made in [29, 30)).
    piece(0, "RUNNING", 54, badge=1001, job="A", good=54, reject=1, kwh=13.5),
    # The stop 20..25 (5 min) and the part in this hour, 59..60, of the stop 59..61 (2 min, a microstop in both hours).
    piece(0, "STOPPED", 5, badge=1001, job="A", stop_reason=3, stop_ms=5 * MIN),
    piece(0, "STOPPED", 1, badge=1001, job="A", stop_reason=4, stop_ms=2 * MIN),
]
HOUR1 = [
    piece(60, "STOPPED", 1, badge=1001, job="A", stop_reason=4, stop_ms=2 * MIN),
    # 61..90: 29 min, badge 2002 logs in at 61 (one session begins). Increments at 62..89: 28 parts, 7 kWh.
    piece(60, "RUNNING", 29, badge=2002, job="A", good=28, kwh=7.0, opens=1),
    # 90..100: nothing known. The 7 parts at sample 100 crossed that gap: unattributed, on the UNKNOWN piece.
    piece(60, UNKNOWN, 10, reason="silence", good=7, kwh=1.75),
    piece(60, "IDLE", 20),
]


def test_two_hours_of_pieces() -> None:
    timeline = hour_timelines(DAY, [], m(0), m(120), GAP)
    assert pieces(timeline, "cnc-01") == HOUR0 + HOUR1


def test_on_ordinary_data_block_local_equals_classifying_everything() -> None:
    whole = cut(classify(DAY, [], GAP), m(0), m(120))
    hourly = hour_timelines(DAY, [], m(0), m(120), GAP)
    assert hourly.intervals == whole.intervals
    assert hourly.increments == whole.increments
    assert hourly.totals() == whole.totals()
    # 54 + 28 + 7 (unattributed) good parts, 1 reject; the silence 90..100 is the only unknown time.
    assert (hourly.totals().good, hourly.totals().reject) == (89, 1)
    assert hourly.coverage == pytest.approx(110 / 120)


def test_calendar_cuts_split_an_hour_into_stretches() -> None:
    timeline = hour_timelines(DAY, [], m(0), m(60), GAP)
    assert pieces(timeline, "cnc-01", [m(30)]) == [
        # [0,30): RUNNING 0..20 and 25..30 = 25 min; parts at 1..20 and 26..30 = 25; the reject at 30 is in (0, 30].
        piece(0, "RUNNING", 25, badge=1001, job="A", good=25, reject=1, kwh=6.25),
        piece(0, "STOPPED", 5, badge=1001, job="A", stop_reason=3, stop_ms=5 * MIN),
        # [30,60): RUNNING 30..59 = 29 min, parts at 31..59 = 29.
        piece(30, "RUNNING", 29, badge=1001, job="A", good=29, kwh=7.25),
        piece(30, "STOPPED", 1, badge=1001, job="A", stop_reason=4, stop_ms=2 * MIN),
    ]


def test_a_window_edge_inside_a_stop_keeps_the_whole_stop_length() -> None:
    # The window starts at 22, inside the 5-minute stop 20..25: its 3 minutes here are still of a 5-minute stop.
    timeline = hour_timelines(DAY, [], m(22), m(40), GAP)
    assert pieces(timeline, "cnc-01")[:2] == [
        piece(22, "STOPPED", 3, badge=1001, job="A", stop_reason=3, stop_ms=5 * MIN),
        # 25..40: 15 min, parts at 26..40.
        piece(22, "RUNNING", 15, badge=1001, job="A", good=15, reject=1, kwh=3.75),
    ]
    assert timeline.stops == (StopSpan(m(22), m(25), 5 * MIN),)


def test_a_session_running_at_the_window_start_begins_there_only_for_a_plain_timeline() -> None:
    # Badge 2002 logs in at 61. A window from 70: block-locally nothing begins in it (additive over windows)...
    hourly = hour_timelines(DAY, [], m(70), m(80), GAP)
    assert sum(p.opens for p in pieces(hourly, "cnc-01")) == 0
    assert sum(p.opens for p in pieces(hour_timelines(DAY, [], m(60), m(70), GAP), "cnc-01")) == 1
    # ... while a plain timeline cut to the window cannot see before it: the session begins at the window start.
    plain = cut(classify(DAY, [], GAP), m(70), m(80))
    assert sum(p.opens for p in pieces(plain, "cnc-01")) == 1
    # clip() of a plain timeline keeps what the whole timeline saw.
    assert sum(p.opens for p in pieces(clip(classify(DAY, [], GAP), m(70), m(80)), "cnc-01")) == 0


def test_a_long_stop_across_an_hour_is_longer_than_any_microstop_from_both_hours() -> None:
    # STOPPED 50..75 (25 min), one sample a minute. Hour 0's context reaches 70: it sees 50..71 (the sample at 70
    # holds its 60 s), 21 min. Hour 1's context starts at 50: it sees the whole 25 min. Both far above 10 min.
    samples = [(m(t), {"state": "STOPPED" if 50 <= t < 75 else "RUNNING"}) for t in range(30, 100)]
    got = pieces(hour_timelines(samples, [], m(40), m(90), GAP), "cnc-01")
    stops = [(p.at_ms, p.duration_ms, p.stop_ms) for p in got if p.state == "STOPPED"]
    assert stops == [(m(40), 10 * MIN, 21 * MIN), (m(60), 15 * MIN, 25 * MIN)]
    assert all(s > MIN_CONTEXT_MS for _, _, s in stops)


def test_counter_baseline_before_the_context() -> None:
    # good_count is reported by exception: 10 at -30, 12 at 5 (two parts made in [4, 5)? no: in the interval of
    # the sample at 4, which is RUNNING). The hour's context starts at -10, so the reading at -30 is its baseline.
    samples: list[Sample] = [(m(-30), {"state": "RUNNING", "good_count": 10})]
    samples += [(m(t), {"state": "RUNNING"}) for t in range(-29, 61) if t != 5]
    samples.append((m(5), {"state": "RUNNING", "good_count": 12}))
    samples.sort(key=lambda s: s[0])
    got = pieces(hour_timelines(samples, [], m(0), m(60), GAP), "cnc-01")
    assert got == [piece(0, "RUNNING", 60, good=2)]
    # The caller fetched from the context start only, with the store's last-before rows: the same figures.
    fetched = [samples[0]] + [s for s in samples if s[0] >= m(-10)]
    assert pieces(hour_timelines(fetched, [], m(0), m(60), GAP), "cnc-01") == got


def test_a_baseline_enters_with_its_own_signal_only() -> None:
    # The baselines of the hour (context from -10): state at -30 (with a power reading), good_count at -20 (with a
    # badge that the samples from -10 on report again). Whole or stripped to their baseline signal, the same hour.
    samples: list[Sample] = [
        (m(-30), {"state": "RUNNING", "power_kw": 3.5}),
        (m(-20), {"state": "RUNNING", "badge": 7, "good_count": 10}),
    ]
    samples += [(m(t), {"state": "RUNNING", "badge": 0, "good_count": 10 + max(0, t)}) for t in range(-10, 61)]
    stripped: list[Sample] = [(m(-20), {"state": "RUNNING", "good_count": 10}), *samples[2:]]
    a = pieces(hour_timelines(samples, [], m(0), m(60), GAP), "cnc-01")
    b = pieces(hour_timelines(stripped, [], m(0), m(60), GAP), "cnc-01")
    assert a == b == [piece(0, "RUNNING", 60, good=60)]


def test_a_value_not_reported_again_lapses_as_in_the_whole_timeline() -> None:
    # The badge is reported once, at -15, before the context: it lapses 60 s later, and with it the known state
    # (api.core.timeline: a value holds max_gap at most). The hour is silence, as classifying everything says.
    samples: list[Sample] = [(m(-15), {"state": "RUNNING", "badge": 7})]
    samples += [(m(t), {"state": "RUNNING"}) for t in range(-14, 61)]
    got = pieces(hour_timelines(samples, [], m(0), m(60), GAP), "cnc-01")
    assert got == [piece(0, UNKNOWN, 60, reason="silence")]
    assert (
        cut(classify(samples, [], GAP), m(0), m(60)).intervals
        == hour_timelines(samples, [], m(0), m(60), GAP).intervals
    )


def test_counter_reset_and_anomaly_hours() -> None:
    # At most 120 parts an hour: in one minute 2, plus 1 part of slack, so +3 at most between two readings.
    limits = CounterLimits({"good_count": 120.0})
    values = {t: 500 + t for t in range(-15, 20)}  # +1 a minute
    values.update({t: t - 19 for t in range(20, 45)})  # a PLC restart at 20: the counter starts again, 1 at 20
    values[45] = 10**9  # a forged reading
    values.update({t: t - 19 for t in range(46, 61)})  # 27 at 46
    samples = [(m(t), {"state": "RUNNING", "good_count": v}) for t, v in sorted(values.items())]
    timeline = hour_timelines(samples, [], m(0), m(60), GAP, limits)
    # 1..19: +1 each (19); 20: a reset, its new value 1 counts (1); 21..44: +1 each (24); 45: +999,999,975 in a
    # minute is an anomaly, not counted; 46: 27 is +2 in 2 min from 25 at 44 (<= 4 + 1): counted (2), the spike is
    # dropped; 47..60: +1 each (14). 19 + 1 + 24 + 2 + 14 = 60.
    # Read while RUNNING with nobody logged in: badge 0.
    assert timeline.anomalies == (Anomaly(m(45), "good_count", 25, 10**9, MIN, badge=0),)
    assert pieces(timeline, "cnc-01") == [piece(0, "RUNNING", 60, good=60)]
    summary = hour_summary(timeline, "cnc-01", m(0))
    assert summary.anomalies == timeline.anomalies
    assert list(summary.pieces) == [piece(0, "RUNNING", 60, good=60)]
    # The next hour does not see the anomaly again (it lies in (0, 60], once).
    later = hour_timelines(samples, [], m(60), m(61), GAP, limits)
    assert later.anomalies == ()


def test_unattributed_parts_land_on_the_gap_they_crossed() -> None:
    # 0..10 RUNNING, silence, then a sample at 20 with 5 more parts: nobody knows whose.
    samples = [(m(t), {"state": "RUNNING", "badge": 9, "good_count": t}) for t in range(-10, 11)]
    samples.append((m(20), {"state": "RUNNING", "badge": 9, "good_count": 15}))
    got = pieces(hour_timelines(samples, [], m(0), m(30), GAP), "cnc-01")
    assert got == [
        # 0..11 (the sample at 10 holds 60 s) and 20..21: 12 min; parts at 1..10. Badge 9 was logged in before the
        # window; the UNKNOWN stretch 11..20 ended that session, so one begins at 20.
        piece(0, "RUNNING", 12, badge=9, good=10, opens=1),
        # 11..20 and 21..30: 18 min. The 5 parts at 20 crossed the first: unattributed.
        piece(0, UNKNOWN, 18, reason="silence", good=5),
    ]


def test_an_increment_the_timeline_leaves_unowned_before_known_time_gets_its_own_piece() -> None:
    from api.core import Counts, Increment, Interval

    interval = Interval(m(0), m(10), "RUNNING", 1, None, None)
    timeline = HourlyTimeline(m(0), m(10), (interval,), (Increment(m(5), Counts(good=3), None),))
    assert pieces(timeline, "cnc-01") == [
        piece(0, "RUNNING", 10, badge=1),
        piece(0, UNKNOWN, 0, reason=UNATTRIBUTED, good=3),
    ]


def test_a_dark_status_cuts_the_hold_of_a_sample() -> None:
    # No samples 30..34; the PLC is reported unreachable at 29.5, so the sample at 29 holds only until then.
    samples = [(m(t), {"state": "RUNNING"}) for t in range(-10, 61) if not 30 <= t < 35]
    got = pieces(hour_timelines(samples, [(m(29.5), "unreachable")], m(0), m(60), GAP), "cnc-01")
    # RUNNING 0..29.5 and 35..60: 29.5 + 25 = 54.5 min; UNKNOWN 29.5..35: 5.5 min.
    assert [(p.state, p.duration_ms) for p in got] == [("RUNNING", 54.5 * MIN), (UNKNOWN, 5.5 * MIN)]


def test_each_hour_gets_the_statuses_in_its_context_and_those_before_it_that_shape_it() -> None:
    def ev(minute: float, kind: str, agent: str | None, status: str, until: float | None = None) -> StatusEvent:
        return StatusEvent(m(minute), kind, status, None if until is None else m(until), agent)  # type: ignore[arg-type]

    events = [
        ev(-300, "agent", "edge-2", "online"),
        ev(-200, "machine", "edge-1", "unreachable", until=-5),  # an outbox loss reaching into the context
        ev(-150, "agent", "edge-1", "offline"),  # edge-1's newest (and newest dark)
        ev(-130, "machine", "edge-1", "offline"),  # the machine's newest "offline"
        ev(-125, "agent", "edge-2", "offline"),  # edge-2's newest dark
        ev(-120, "agent", "edge-2", "online"),  # edge-2's newest
        ev(-110, "machine", "edge-1", "unreachable", until=-50),  # a loss the sample at -40 ended; as a status,
        ev(-105, "machine", "edge-1", "unreachable"),  # ... superseded by the machine's newest "unreachable"
        ev(-100, "machine", "edge-2", "online"),  # the machine's newest, whichever agent reported it
        ev(-10, "agent", "edge-1", "online"),  # at the context start: in it
        ev(70, "machine", "edge-2", "online"),  # at the context end: in it
        ev(71, "machine", "edge-2", "online"),  # after it
    ]
    # The newest sample before the context that the hour sees (its newest baseline) is at -40.
    around = _Statuses(reversed(events)).around(m(-10), m(70), m(-40))
    assert [e.ts_ms for e in around] == [m(t) for t in (-200, -150, -130, -125, -120, -105, -100, -10, 70)]
    # With no sample before the context, nothing ends a loss before it.
    around = _Statuses(events).around(m(-10), m(70), None)
    assert [e.ts_ms for e in around] == [m(t) for t in (-200, -150, -130, -125, -120, -110, -105, -100, -10, 70)]
    # Plain (ts, status) pairs are the machine's statuses.
    assert _Statuses([(m(-30), "offline"), (m(-25), "unreachable"), (m(-20), "online"), (m(5), "offline")]).around(
        m(0), m(9), None
    ) == [(m(-30), "offline"), (m(-25), "unreachable"), (m(-20), "online"), (m(5), "offline")]
    assert _Statuses([(m(-30), "online"), (m(-20), "online")]).around(m(0), m(9), None) == [(m(-20), "online")]


def test_hour_summaries_are_the_hours_of_the_timeline() -> None:
    timeline = hour_timelines(DAY, [], m(0), m(120), GAP)
    first, second = hour_summaries(timeline, "cnc-01")
    assert (first.hour_ms, list(first.pieces)) == (m(0), HOUR0)
    assert (second.hour_ms, list(second.pieces)) == (m(60), HOUR1)
    # A window not on hour edges has only its whole hours.
    assert [s.hour_ms for s in hour_summaries(hour_timelines(DAY, [], m(30), m(125), GAP), "cnc-01")] == [m(60)]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: hour_timelines(DAY, [], m(10), m(10), GAP), "window end"),
        (lambda: hour_timelines(DAY, [], m(10), m(0), GAP), "window end"),
        (lambda: hour_timelines(DAY, [], m(0), m(10), 0), "max_gap_ms"),
        (lambda: hour_timelines(DAY, [("soon", "online")], m(0), m(10), GAP), "integer time"),
        (lambda: hour_timelines(DAY, [object()], m(0), m(10), GAP), "integer time"),
        (lambda: hour_summary(hour_timelines(DAY, [], m(0), m(60), GAP), "x", m(1)), "not the start"),
        (lambda: hour_summary(hour_timelines(DAY, [], m(0), m(30), GAP), "x", m(0)), "not wholly inside"),
    ],
)
def test_bad_arguments_are_refused_by_name(call: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call()  # type: ignore[operator]


def test_hostile_samples_do_not_break_classification() -> None:
    # Unsorted and duplicated samples (the later one given wins, as classify has it), counters that are not numbers,
    # negative or boolean: none is a reading, none counts, none is a baseline.
    samples: list[Sample] = [(m(t), {"state": "RUNNING", "good_count": t + 10}) for t in range(-10, 61)]
    hostile = list(reversed(samples))
    hostile += [(m(-20), {"good_count": "lots"}), (m(-21), {"good_count": -5}), (m(-22), {"good_count": True})]
    # Given after the sample at 5 it replaces it: the same count, and a reject count that is not a number.
    hostile += [(m(5), {"state": "RUNNING", "good_count": 15, "reject_count": float("nan")})]
    got = pieces(hour_timelines(hostile, [], m(0), m(60), GAP), "cnc-01")
    assert got == pieces(hour_timelines(samples, [], m(0), m(60), GAP), "cnc-01") == [piece(0, "RUNNING", 60, good=60)]


def test_empty_data_is_unknown_time() -> None:
    nothing = pieces(hour_timelines([], [], m(0), m(90), GAP), "cnc-01")
    assert nothing == [piece(0, UNKNOWN, 60, reason="no-data"), piece(60, UNKNOWN, 30, reason="no-data")]
    assert pieces(HourlyTimeline(m(0), m(0), ()), "cnc-01") == []


# --- window independence (properties) --------------------------------------------------------------------------

STATES = ["RUNNING", "STOPPED", "IDLE", "SETUP"]
SEGMENT = st.tuples(
    st.sampled_from(STATES),
    st.integers(1, 40),  # samples in the segment
    st.sampled_from([1_000, 30_000, 59_000, 60_000, 61_000, 180_000]),  # between them: some exceed max_gap
    st.sampled_from([0, 1, 2, 3]),  # badge
    st.integers(0, 2),  # parts per sample
    st.sampled_from([None, 1, 2]),  # stop reason
    st.integers(0, 20),  # 0: the segment starts with a counter reset
)


@st.composite
def telemetry(draw: st.DrawFn, by_exception: bool = True) -> list[Sample]:
    """Up to about 4 h of samples from 30 min before T0, in segments of one state and badge.

    by_exception: the state, badge and stop reason only when they change and every 4th sample (the heartbeat), so
    some samples carry counters only, or nothing but power.
    """
    out: list[Sample] = []
    ts = m(-30)
    good = reject = 0
    kwh = 0.0
    rbe = by_exception and draw(st.booleans())
    for state, count, step, badge, parts, stop, reset in draw(st.lists(SEGMENT, min_size=2, max_size=12)):
        if reset == 0:
            good = 0
        for i in range(count):
            ts += step
            good += parts if state == "RUNNING" else 0
            reject += 1 if parts and i % 7 == 3 else 0
            kwh += 0.25 * parts  # dyadic: float sums are exact in any order
            values: dict[str, object] = {"power_kw": 1.5}
            if not rbe or i % 4 == 0:
                values.update(state=state, badge=badge, stop_reason=stop or 0)
            if i % 3 != 2:
                values.update(good_count=good, reject_count=reject)
            if i % 2 == 0:
                values["energy_kwh"] = kwh
            out.append((ts, values))
    return out


def _event(ts: int, kind: str, agent: str, status: str, loss: int | None) -> StatusEvent | tuple[int, str]:
    if kind == "plain":
        return (ts, status)
    until = ts + loss if loss is not None and status == "unreachable" else None
    return StatusEvent(ts, kind, status, until, agent)  # type: ignore[arg-type]


STATUSES = st.lists(
    st.builds(
        _event,
        st.integers(m(-40), m(200)),
        st.sampled_from(["plain", "machine", "agent"]),
        st.sampled_from(["edge-1", "edge-2"]),
        st.sampled_from(["online", "unreachable", "offline"]),
        st.sampled_from([None, None, 0, 90_000, 1_800_000]),  # an outbox loss of up to 30 min
    ),
    max_size=5,
)
MINUTES = st.integers(0, 180).map(m)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fetched_from(samples: Sequence[Sample], start: int) -> list[Sample]:
    """What a caller reading from start gets: the store's last-before rows (whole samples), then the samples."""
    found: dict[int, Sample] = {}
    for signal in BASELINE_SIGNALS:
        older = [s for s in samples if s[0] < start and signal in s[1]]
        if older:
            found[older[-1][0]] = older[-1]
    return [found[ts] for ts in sorted(found)] + [s for s in samples if s[0] >= start]


def hourly_totals(got: Sequence[Piece]) -> dict[tuple[object, ...], tuple[int, int, int, float, int]]:
    """Pieces summed per hour and key, so that a stretch split in two compares equal to the stretch."""
    out: dict[tuple[object, ...], tuple[int, int, int, float, int]] = {}
    for p in got:
        key = (p.machine, p.at_ms - p.at_ms % HOUR_MS, p.state, p.reason, p.badge, p.job, p.stop_reason, p.stop_ms)
        d, g, r, k, n = out.get(key, (0, 0, 0, 0.0, 0))
        out[key] = (d + p.duration_ms, g + p.good, r + p.reject, k + p.kwh, n + p.opens)
    return out


@SETTINGS
@given(samples=telemetry(), statuses=STATUSES, data=st.data())
def test_a_window_is_the_sum_of_its_parts(samples: list[Sample], statuses: list[StatusIn], data: st.DataObject) -> None:
    a, b, c = sorted(data.draw(st.lists(MINUTES, min_size=3, max_size=3, unique=True)))
    whole = pieces(hour_timelines(samples, statuses, a, c, GAP), "cnc-01", [b])
    left = pieces(hour_timelines(samples, statuses, a, b, GAP), "cnc-01")
    right = pieces(hour_timelines(samples, statuses, b, c, GAP), "cnc-01")
    # Cut at b, the window's pieces are exactly the two parts' pieces, one after the other.
    assert whole == left + right
    # Not cut at b, they are equal hour by hour once the stretch split at b is added up.
    assert hourly_totals(pieces(hour_timelines(samples, statuses, a, c, GAP), "cnc-01")) == hourly_totals(left + right)


@SETTINGS
@given(samples=telemetry(), statuses=STATUSES, data=st.data())
def test_a_day_is_the_sum_of_its_hours(samples: list[Sample], statuses: list[StatusIn], data: st.DataObject) -> None:
    hours = data.draw(st.integers(1, 3))
    first = data.draw(st.integers(0, 1)) * HOUR_MS + T0
    timeline = hour_timelines(samples, statuses, first, first + hours * HOUR_MS, GAP)
    summaries = hour_summaries(timeline, "cnc-01")
    assert [s.hour_ms for s in summaries] == [first + i * HOUR_MS for i in range(hours)]
    assert [p for s in summaries for p in s.pieces] == pieces(timeline, "cnc-01")
    # Each hour alone (its own fetch and classification) gives that hour's summary: what a roll-up stores.
    for summary in summaries:
        alone = hour_timelines(samples, statuses, summary.hour_ms, summary.hour_ms + HOUR_MS, GAP)
        assert hour_summary(alone, "cnc-01", summary.hour_ms) == summary
    assert tuple(a for s in summaries for a in s.anomalies) == timeline.anomalies


@SETTINGS
@given(samples=telemetry(), statuses=STATUSES, data=st.data())
def test_results_do_not_depend_on_where_the_fetch_starts(
    samples: list[Sample], statuses: list[StatusIn], data: st.DataObject
) -> None:
    start = m(data.draw(st.integers(0, 120)))
    end = start + data.draw(st.integers(1, 90)) * MIN
    earliest = hour_of(start) - context_ms(GAP)  # the first hour's context start: the latest a fetch may begin
    offset = data.draw(st.integers(0, 60)) * MIN
    status_from = earliest - offset

    def status_fetch(since: int) -> list[StatusIn]:
        """The documented status fetch from since, written out plainly: what a store query would return."""

        def ts_of(e: StatusIn) -> int:
            return e.ts_ms if isinstance(e, StatusEvent) else e[0]

        def source(e: StatusIn) -> tuple[str, str | None]:
            return ("agent", e.agent) if isinstance(e, StatusEvent) and e.kind == "agent" else ("machine", None)

        def status(e: StatusIn) -> str:
            return e.status if isinstance(e, StatusEvent) else e[1]

        older = sorted((e for e in statuses if ts_of(e) < since), key=ts_of)
        picked: dict[object, StatusIn] = {}
        for e in older:  # oldest first: the newest of each wins
            picked[source(e)] = e
            if status(e) in ("unreachable", "offline"):
                picked[(source(e), status(e))] = e
        baselines = [ts for ts, _ in fetched_from(samples, since) if ts < since]
        settled = max(baselines, default=-(2**63))
        losses = [e for e in older if isinstance(e, StatusEvent) and e.until_ms is not None and e.until_ms >= settled]
        chosen = {id(e): e for e in [*picked.values(), *losses]}
        return sorted(chosen.values(), key=ts_of) + [e for e in statuses if ts_of(e) >= since]

    expected = pieces(hour_timelines(samples, statuses, start, end, GAP), "cnc-01")
    got = hour_timelines(fetched_from(samples, earliest - offset), status_fetch(status_from), start, end, GAP)
    assert pieces(got, "cnc-01") == expected


def test_marks_of_a_plain_timeline_come_from_its_own_intervals() -> None:
    plain = cut(classify(DAY, [], GAP), m(22), m(70))
    stops, opens = marks(plain)
    # Cut at 22, the first stop is 22..25 only: a plain timeline knows no more.
    assert stops[0] == StopSpan(m(22), m(25), 3 * MIN)
    assert opens == (m(22), m(61))
    assert isinstance(clip(plain, m(30), m(40)), HourlyTimeline)


@SETTINGS
@given(samples=telemetry(by_exception=False), statuses=STATUSES, data=st.data())
def test_where_every_sample_reports_the_state_block_local_is_classifying_everything(
    samples: list[Sample], statuses: list[StatusIn], data: st.DataObject
) -> None:
    # Without counter anomalies (the default limits are far above these rates) and with no sample that carries none
    # of the baseline signals, each hour's context holds all that shapes the hour: the same timeline as from all data.
    start = m(data.draw(st.integers(0, 150)))
    end = start + data.draw(st.integers(1, 150)) * MIN
    hourly = hour_timelines(samples, statuses, start, end, GAP)
    whole = cut(classify(samples, statuses, GAP), start, end)
    assert hourly.intervals == whole.intervals
    assert hourly.increments == whole.increments
    assert hourly.anomalies == whole.anomalies == ()


@SETTINGS
@given(samples=telemetry(), data=st.data())
def test_usage_and_oee_of_a_window_are_the_sums_of_its_parts(samples: list[Sample], data: st.DataObject) -> None:
    a, b, c = sorted(data.draw(st.lists(MINUTES, min_size=3, max_size=3, unique=True)))
    owners = {1: "acme", 2: "batik"}  # badge 3 is nobody's

    def figures(lo: int, hi: int) -> tuple[list[UsageRow], list[OeeRow]]:
        # Cut at the calendar's boundary (90): a piece must lie wholly inside or outside planned time.
        got = pieces(hour_timelines(samples, [], lo, hi, GAP), "cnc-01", [m(90)])
        ideal = lambda machine, job: 20_000  # noqa: E731
        rows = oee(got, ideal_cycle_ms=ideal, labels=lambda at, machine: (at < m(90), None, date(2025, 11, 28)))
        return usage_from_pieces(got, owners, ideal_cycle_ms=ideal), rows

    def add(rows: Sequence[UsageRow]) -> dict[object, tuple[float, ...]]:
        out: dict[object, tuple[float, ...]] = {}
        for r in rows:
            assert r.oee is not None
            mine = (r.session_hours * HOUR_MS, r.good, r.reject, r.kwh, r.sessions, r.oee.pbt_ms, r.oee.ideal_ms)
            out[r.tenant] = tuple(x + y for x, y in zip(out.get(r.tenant, (0,) * 7), mine, strict=True))
        return {k: (round(v[0]), *v[1:]) for k, v in out.items()}

    (whole_usage, whole_oee), (left_usage, left_oee), (right_usage, right_oee) = (
        figures(a, c),
        figures(a, b),
        figures(b, c),
    )
    assert add(whole_usage) == add([*left_usage, *right_usage])
    (whole,) = whole_oee
    parts = [*left_oee, *right_oee]
    for field in ("pbt_ms", "apt_ms", "unknown_ms", "produced", "good", "ideal_ms", "ideal_good_ms", "unplanned_ms"):
        assert getattr(whole, field) == sum(getattr(r, field) for r in parts), field
    for loss, ms in whole.losses.items():
        assert ms == sum(r.losses.get(loss, 0) for r in parts), loss
