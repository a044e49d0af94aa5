"""OEE per ISO 22400-2 from pieces: hand-computed tables (the arithmetic in the comments) and properties.

Durations are in minutes unless said otherwise; 1 min = 60,000 ms. Label functions are made by hand here, as the
shift calendar (shopfloor.calendar) would answer: planned or not, the shift, its day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core import UNKNOWN, CounterLimits, LossMap, OeeRow, Piece, hour_timelines, oee, pieces
from api.core.oee import BASE_LOSSES, DEFAULT_STATES

MIN = 60_000
HOUR = 3_600_000
T0 = 1_764_291_600_000  # 2025-11-28 01:00 UTC, an hour start
GAP = 60_000
Label = tuple[bool, str | None, date]


def m(minutes: float) -> int:
    return T0 + int(minutes * MIN)


def cycle(ms: int, per_job: Mapping[str, int] | None = None) -> Callable[[str, str | None], int | None]:
    """An ideal cycle of ms per part on every machine, overridden per job."""
    jobs = per_job or {}

    def ideal(machine: str, job: str | None) -> int | None:
        return ms if job is None else jobs.get(job)

    return ideal


def window_labels(
    start: int, end: int, shift: str = "morning", day: date = date(2025, 11, 28)
) -> Callable[[int, str], Label]:
    """Planned busy time [start, end), one shift; everything else unplanned."""

    def label(at_ms: int, machine: str) -> Label:
        return (True, shift, day) if start <= at_ms < end else (False, None, day)

    return label


def piece(state: str, minutes: float, *, at: float = 0, **kw: object) -> Piece:
    machine = str(kw.pop("machine", "cnc-01"))
    fields: dict[str, object] = {"reason": None, "badge": 0, "job": None, "stop_reason": None, "stop_ms": 0}
    fields.update(kw)
    return Piece(machine, m(at), state, duration_ms=int(minutes * MIN), **fields)  # type: ignore[arg-type]


def check_sums(row: OeeRow) -> None:
    """What holds for every row: losses and the good parts' ideal time make PBT; APT and availability losses too."""
    assert sum(row.losses.values()) + row.ideal_good_ms == row.pbt_ms
    availability_losses = sum(v for k, v in row.losses.items() if k not in ("microstops", "speed_loss", "rejects"))
    assert row.apt_ms + availability_losses == row.pbt_ms
    for value in (row.availability, row.effectiveness, row.quality, row.oee, row.coverage):
        assert value is None or value == value  # never NaN


# --- one 8-hour shift, from raw samples --------------------------------------------------------------------------

SHIFT_START, SHIFT_END = m(0), m(480)
IDEAL = cycle(60_000, {"P-100": 30_000})  # the job's own ideal cycle: 30 s a part
MICROSTOPS = [220 + 20 * i for i in range(10)]  # 220, 240, ..., 400: one minute STOPPED each


def shift_state(minute: int) -> tuple[str, int]:
    """The state in [minute, minute + 1) and its stop reason (0 when not stopped, as PLCs report it)."""
    if minute < 0 or minute >= 480:
        return "IDLE", 0
    if minute < 30:
        return "SETUP", 0
    if minute < 130:
        return "RUNNING", 0
    if minute < 175:
        return "STOPPED", 3
    if minute < 210:
        return "IDLE", 0  # 175..185 has no samples: UNKNOWN (see shift_samples)
    return ("STOPPED", 7) if minute in MICROSTOPS else ("RUNNING", 0)


def shift_samples() -> list[tuple[int, Mapping[str, object]]]:
    """One sample a minute from -75 to 540, but none in 176..184 (the sample at 175 holds 60 s: silent 176..185).

    Parts: the increment at sample k is made in [k-1, k). The 360 RUNNING minutes make 2 parts each, except the
    first 40 (1 each): 40 + 320 * 2 = 680 parts; in the last 20 RUNNING minutes one of the two is a reject.
    """
    running = [k for k in range(480) if shift_state(k)[0] == "RUNNING"]
    assert len(running) == 360
    made = {k: (1 if i < 40 else 2, 1 if i >= 340 else 0) for i, k in enumerate(running)}
    out: list[tuple[int, Mapping[str, object]]] = []
    good = reject = 0
    for k in range(-75, 541):
        parts, rejects = made.get(k - 1, (0, 0))
        good, reject = good + parts - rejects, reject + rejects
        if 176 <= k < 185:
            continue
        state, stop = shift_state(k)
        out.append(
            (m(k), {"state": state, "stop_reason": stop, "job": "P-100", "good_count": good, "reject_count": reject})
        )
    return out


def test_one_shift_with_a_breakdown_setup_microstops_rejects_and_speed_loss() -> None:
    timeline = hour_timelines(shift_samples(), [], m(-60), m(540), GAP)
    got = pieces(timeline, "cnc-01", [SHIFT_START, SHIFT_END])
    (row,) = oee(got, ideal_cycle_ms=IDEAL, labels=window_labels(SHIFT_START, SHIFT_END))
    # PBT 480 = SETUP 30 + RUNNING 100 + STOPPED(3) 45 + IDLE 1 + UNKNOWN 9 + IDLE 25 + RUNNING 260 + 10 microstops
    # of 1 min (each a whole stop of 60 s <= 120 s). The silence: the sample at 175 (IDLE) holds 60 s, then
    # nothing until 185: 176..185 is UNKNOWN (9 min), and IDLE is 1 + 25 = 26 min.
    assert row.pbt_ms == 480 * MIN
    assert row.running_ms == 360 * MIN
    assert row.microstop_ms == 10 * MIN
    assert row.apt_ms == 370 * MIN
    assert row.unknown_ms == 9 * MIN
    assert row.unplanned_ms == 120 * MIN  # -60..0 and 480..540
    assert (row.produced, row.good, row.reject) == (680, 660, 20)
    assert row.ideal_ms == 680 * 30_000  # 340 min
    assert row.ideal_good_ms == 660 * 30_000  # 330 min
    assert dict(row.losses) == {
        "breakdown:3": 45 * MIN,
        "setup": 30 * MIN,
        "no_operator": 26 * MIN,  # IDLE
        "no_material": 0,
        "off": 0,
        "maintenance": 0,
        "other": 0,
        "unknown": 9 * MIN,
        "microstops": 10 * MIN,
        "speed_loss": 360 * MIN - 680 * 30_000,  # 360 - 340 = 20 min
        "rejects": 20 * 30_000,  # 10 min
    }
    # 45 + 30 + 26 + 9 + 10 + 20 + 10 = 150 min of losses, + 330 min of good parts' ideal time = 480 = PBT.
    check_sums(row)
    assert row.availability == pytest.approx(370 / 480)  # 0.7708
    assert row.effectiveness == pytest.approx(340 / 370)  # 0.9189
    assert row.quality == pytest.approx(660 / 680)  # 0.9706
    assert row.oee == pytest.approx(330 / 480)  # one job: A x E x Q = ideal x good / PBT = 0.6875
    assert row.coverage == pytest.approx(471 / 480)  # 0.98: not low
    assert row.flags == ()
    assert (row.basis, row.loss_map_version, row.machine) == ("calendar", "default-1", "cnc-01")


def test_a_shorter_microstop_threshold_books_the_short_stops_as_breakdowns() -> None:
    timeline = hour_timelines(shift_samples(), [], m(-60), m(540), GAP)
    got = pieces(timeline, "cnc-01", [SHIFT_START, SHIFT_END])
    # The 45-minute stop can never be a microstop (at most 10 min); a 1-minute map keeps the 1-minute ones.
    (strict,) = oee(
        got, ideal_cycle_ms=IDEAL, labels=window_labels(SHIFT_START, SHIFT_END), loss_map=LossMap("one-minute", 59_999)
    )
    # No microstops: the 10 one-minute stops are breakdowns with reason 7; APT is RUNNING alone.
    assert strict.microstop_ms == 0
    assert strict.losses["breakdown:7"] == 10 * MIN
    assert strict.apt_ms == 360 * MIN
    assert strict.loss_map_version == "one-minute"
    check_sums(strict)


# --- hand-made pieces -------------------------------------------------------------------------------------------


def test_effectiveness_above_100_percent_is_returned_and_flagged() -> None:
    # One hour RUNNING, 72 parts at an ideal 60 s: 72 min of ideal time in 60 min.
    (row,) = oee([piece("RUNNING", 60, good=72)], ideal_cycle_ms=cycle(60_000), labels=window_labels(m(0), m(60)))
    assert row.effectiveness == pytest.approx(1.2)
    assert row.oee == pytest.approx(1.2)  # 1.0 x 1.2 x 1.0: not capped
    assert row.losses["speed_loss"] == -12 * MIN  # faster than ideal
    assert "effectiveness_over_100" in row.flags
    check_sums(row)  # -12 min + 72 min = 60 min


OWNERS = {1001: "acme", 1002: "acme", 2001: "batik"}


def shared_machine() -> list[Piece]:
    """An 8 h planned shift: acme 3 h, batik 2 h, an unowned badge 1 h, nobody 2 h."""
    return [
        piece("SETUP", 30, badge=1001, job="J1", opens=1),
        piece("RUNNING", 150, badge=1001, job="J1", good=290, reject=10),  # 300 parts x 30 s = 150 min
        piece("RUNNING", 60, at=180, badge=2001, job="J2", good=100),  # 100 x 30 s = 50 min
        piece("STOPPED", 60, at=180, badge=2001, job="J2", stop_reason=5, stop_ms=60 * MIN, opens=1),
        piece("RUNNING", 60, at=300, badge=9999, good=60, opens=1),
        piece("IDLE", 120, at=360),
    ]


def test_tenants_are_scored_on_their_session_time() -> None:
    rows = oee(
        shared_machine(),
        ideal_cycle_ms=cycle(30_000),
        labels=window_labels(m(0), m(480)),
        badge_owner=OWNERS,
        group_by=("tenant",),
    )
    assert [(r.tenant, r.basis, r.pbt_ms // MIN, r.apt_ms // MIN) for r in rows] == [
        (None, "session", 60, 60),  # the unowned badge: nobody's, never a name
        ("acme", "session", 180, 150),
        ("batik", "session", 120, 60),
    ]
    _, acme, batik = rows
    # acme: A = 150/180, E = 150/150, Q = 290/300; OEE = 0.8333 x 1 x 0.9667 = 0.8056.
    assert (acme.availability, acme.effectiveness, acme.quality) == pytest.approx((150 / 180, 1.0, 290 / 300))
    assert acme.oee == pytest.approx(145 / 180)  # ideal x good / PBT = 290 x 0.5 min / 180 min
    # batik: A = 60/120, E = 50/60, Q = 1; OEE = 0.4167. Its stop is a breakdown with reason 5.
    assert batik.oee == pytest.approx(50 / 120)
    assert batik.losses["breakdown:5"] == 60 * MIN
    for row in rows:
        check_sums(row)
    # Filtered to one tenant (a tenant key's view), by machine: still its session time.
    (mine,) = oee(
        shared_machine(),
        ideal_cycle_ms=cycle(30_000),
        labels=window_labels(m(0), m(480)),
        badge_owner=OWNERS,
        tenant="acme",
    )
    assert (mine.machine, mine.tenant, mine.basis, mine.pbt_ms) == ("cnc-01", None, "session", 180 * MIN)
    # The machine on the calendar: all 480 planned minutes, nobody's idle time is a loss (no operator).
    (machine,) = oee(
        shared_machine(), ideal_cycle_ms=cycle(30_000), labels=window_labels(m(0), m(480)), badge_owner=OWNERS
    )
    assert (machine.basis, machine.pbt_ms, machine.losses["no_operator"]) == ("calendar", 480 * MIN, 120 * MIN)
    # Without a calendar, the session basis still answers.
    assert oee(shared_machine(), ideal_cycle_ms=cycle(30_000), badge_owner=OWNERS, group_by=("tenant",)) == rows


def test_a_tenant_called_unknown_is_an_ordinary_tenant() -> None:
    rows = oee(shared_machine(), ideal_cycle_ms=cycle(30_000), badge_owner={1001: "unknown"}, group_by=("tenant",))
    assert [(r.tenant, r.pbt_ms // MIN) for r in rows] == [(None, 180), ("unknown", 180)]  # batik's + 9999's


def test_group_by_job_with_a_per_job_ideal_cycle_and_the_default() -> None:
    ideal = cycle(30_000, {"J1": 20_000})  # J2 has none: the machine's 30 s is used, and flagged
    rows = oee(shared_machine(), ideal_cycle_ms=ideal, labels=window_labels(m(0), m(480)), group_by=("job",))
    assert [(r.job, r.ideal_ms, r.flags) for r in rows] == [
        (None, 60 * 30_000, ()),  # the unowned badge's 60 parts had no job: the machine's cycle, nothing to flag
        ("J1", 300 * 20_000, ()),  # 300 x 20 s = 100 min in 150 min of RUNNING: E = 0.67
        ("J2", 100 * 30_000, ("ideal_cycle_default",)),
    ]
    assert rows[1].effectiveness == pytest.approx(100 / 150)
    for row in rows:
        check_sums(row)


def test_flags_and_none_where_a_denominator_is_zero() -> None:
    labels = window_labels(m(0), m(60))
    # Nothing planned: every ratio None.
    (unplanned,) = oee([piece("RUNNING", 60, at=60, good=5)], ideal_cycle_ms=cycle(1000), labels=labels)
    assert (unplanned.pbt_ms, unplanned.availability, unplanned.oee, unplanned.coverage) == (0, None, None, None)
    assert unplanned.flags == ("no_planned_time",)
    assert unplanned.unplanned_produced == 5
    # Planned, but broken down throughout: availability 0, effectiveness and quality have no denominator.
    (broken,) = oee([piece("STOPPED", 60, stop_reason=1, stop_ms=HOUR)], ideal_cycle_ms=cycle(1000), labels=labels)
    assert (broken.availability, broken.effectiveness, broken.quality, broken.oee) == (0.0, None, None, None)
    assert broken.flags == ("no_production_time", "no_parts")
    # Mostly unknown, with parts that crossed the unknown time: low coverage, unattributed parts not scored.
    (dark,) = oee(
        [piece("RUNNING", 10, good=10), piece(UNKNOWN, 50, reason="silence", good=40)],
        ideal_cycle_ms=cycle(60_000),
        labels=labels,
    )
    assert (dark.coverage, dark.produced, dark.unattributed_good) == (pytest.approx(10 / 60), 10, 40)
    assert dark.flags == ("low_coverage", "unattributed_parts")
    check_sums(dark)
    # No ideal cycle at all: no effectiveness, no OEE; the losses still add up (speed loss is all RUNNING time).
    (blind,) = oee([piece("RUNNING", 60, good=10)], ideal_cycle_ms=lambda m, j: None, labels=labels)
    assert (blind.effectiveness, blind.oee, blind.flags) == (None, None, ("no_ideal_cycle",))
    assert blind.losses["speed_loss"] == 60 * MIN
    check_sums(blind)


def test_stop_reasons_map_to_their_loss() -> None:
    loss_map = LossMap("site-2", 120_000, DEFAULT_STATES, {12: "no_material", 3: "breakdown"})
    got = [
        piece("STOPPED", 20, stop_reason=12, stop_ms=20 * MIN),
        piece("STOPPED", 15, stop_reason=3, stop_ms=15 * MIN),
        piece("STOPPED", 10, stop_reason=None, stop_ms=10 * MIN),
        piece("STOPPED", 2, stop_reason=12, stop_ms=2 * MIN),  # 2 min: a microstop, whatever its reason
        piece("MAINTENANCE", 13),
    ]
    (row,) = oee(got, ideal_cycle_ms=cycle(1000), labels=window_labels(m(0), m(60)), loss_map=loss_map)
    assert {k: v // MIN for k, v in row.losses.items() if v} == {
        "no_material": 20,
        "breakdown:3": 15,
        "breakdown:none": 10,
        "microstops": 2,
        "maintenance": 13,
    }
    assert row.apt_ms == 2 * MIN
    assert row.loss_map_version == "site-2"


# --- calendars: a night across midnight, DST days ------------------------------------------------------------


def zone_labels(zone: str, shifts: Sequence[tuple[str, int, int]]) -> Callable[[int, str], Label]:
    """Shifts (name, start hour, end hour) in a zone, end <= start crossing midnight; a shift's day is its start's."""
    tz = ZoneInfo(zone)

    def label(at_ms: int, machine: str) -> Label:
        local = datetime.fromtimestamp(at_ms / 1000, tz)
        for name, start, end in shifts:
            if start < end and start <= local.hour < end:
                return True, name, local.date()
            if end <= start and local.hour >= start:
                return True, name, local.date()
            if end <= start and local.hour < end:
                return True, name, local.date() - timedelta(days=1)
        return False, None, local.date()

    return label


def running(start: int, end: int, per_min: int = 1) -> list[tuple[int, Mapping[str, object]]]:
    """RUNNING from start - 15 min to end + 15 min, a sample a minute, per_min parts a minute."""
    first = start - 15 * MIN
    return [
        (ts, {"state": "RUNNING", "good_count": per_min * ((ts - first) // MIN)})
        for ts in range(first, end + 15 * MIN + 1, MIN)
    ]


def test_a_night_shift_across_midnight_is_one_shift() -> None:
    # London in November is UTC+0: the night 22:00-06:00 crosses local and UTC midnight alike. Window 21:00-07:00.
    start = int(datetime(2025, 11, 27, 21, tzinfo=UTC).timestamp() * 1000)
    end = start + 10 * HOUR
    labels = zone_labels("Europe/London", [("night", 22, 6)])
    timeline = hour_timelines(running(start, end), [], start, end, GAP)
    got = pieces(timeline, "press-01", [start + HOUR, end - HOUR])  # the calendar's boundaries: 22:00, 06:00
    rows = oee(got, ideal_cycle_ms=cycle(60_000), labels=labels, group_by=("day", "shift"))
    assert [(r.day, r.shift, r.pbt_ms // HOUR, r.unplanned_ms // HOUR, r.produced) for r in rows] == [
        (date(2025, 11, 27), None, 0, 1, 0),  # 21:00-22:00 (its parts: unplanned_produced)
        (date(2025, 11, 27), "night", 8, 0, 480),  # one row: 22:00 on the 27th to 06:00 on the 28th
        (date(2025, 11, 28), None, 0, 1, 0),  # 06:00-07:00
    ]
    night = rows[1]
    assert (night.availability, night.effectiveness, night.oee) == (1.0, 1.0, 1.0)
    assert rows[0].flags == rows[2].flags == ("no_planned_time",)
    # Grouped by day alone (the calendar's day: a shift's start day), the night still lies in one day.
    by_day = oee(got, ideal_cycle_ms=cycle(60_000), labels=labels, group_by=("day",))
    assert [(r.day, r.pbt_ms // HOUR) for r in by_day] == [(date(2025, 11, 27), 8), (date(2025, 11, 28), 0)]


@pytest.mark.parametrize(
    ("local_day", "hours"),
    [
        (date(2026, 3, 29), 23),  # Berlin springs forward: 02:00 becomes 03:00
        (date(2026, 10, 25), 25),  # and falls back: 03:00 becomes 02:00 again
        (date(2026, 6, 1), 24),
    ],
)
def test_a_dst_day_is_as_long_as_the_clock_says(local_day: date, hours: int) -> None:
    tz = ZoneInfo("Europe/Berlin")
    midnight = int(datetime(local_day.year, local_day.month, local_day.day, tzinfo=tz).timestamp() * 1000)
    following = local_day + timedelta(days=1)
    next_midnight = int(datetime(following.year, following.month, following.day, tzinfo=tz).timestamp() * 1000)
    labels = zone_labels("Europe/Berlin", [("all", 0, 24)])
    # Two hours either side of the day, RUNNING throughout, one part a minute at an ideal 60 s.
    start, end = midnight - 2 * HOUR, next_midnight + 2 * HOUR
    got = pieces(hour_timelines(running(start, end), [], start, end, GAP), "laser-01", [midnight, next_midnight])
    rows = oee(got, ideal_cycle_ms=cycle(60_000), labels=labels, group_by=("day",))
    day = {r.day: r for r in rows}[local_day]
    assert day.pbt_ms == hours * HOUR
    assert day.produced == hours * 60
    assert day.oee == pytest.approx(1.0)


# --- counters --------------------------------------------------------------------------------------------------


def test_counter_anomaly_and_reset_hours() -> None:
    # Hour 0: a PLC restart at 30 (the counter drops to 1: counted). Hour 1: a forged reading at 90 (not counted).
    values = {k: 100 + k for k in range(-15, 30)}
    values.update({k: k - 29 for k in range(30, 131)})  # 1 at 30
    values[90] = 10**9
    samples = [(m(k), {"state": "RUNNING", "good_count": v}) for k, v in sorted(values.items())]
    limits = CounterLimits({"good_count": 120.0})  # 2 a minute at most (+1 of slack)
    timeline = hour_timelines(samples, [], m(0), m(120), GAP, limits)
    got = pieces(timeline, "cnc-01")
    hourly = lambda at, machine: (True, "h0" if at < m(60) else "h1", date(2025, 11, 28))  # noqa: E731
    rows = oee(
        got, ideal_cycle_ms=cycle(60_000), labels=hourly, group_by=("shift",), anomalies={"cnc-01": timeline.anomalies}
    )
    h0, h1 = rows
    # Hour 0: 1..29 +1 each (29), the reset at 30 counts its 1, 31..60 +1 each (30): 60 parts.
    assert (h0.produced, h0.anomalies, h0.flags) == (60, 0, ())
    # Hour 1: 61..89 (29), 90 not counted; 91 is 62, +2 in 2 min from 60 at 89: counted (2); 92..120 (29): 60.
    assert (h1.produced, h1.anomalies, h1.flags) == (60, 1, ("counter_anomalies",))
    # An anomaly of a machine the rows do not hold flags nothing.
    (whole,) = oee(
        got, ideal_cycle_ms=cycle(60_000), labels=hourly, group_by=(), anomalies={"other": timeline.anomalies}
    )
    assert whole.flags == ()


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": ""}, "version"),
        ({"version": "x" * 65}, "version"),
        ({"version": "tab\there"}, "version"),
        ({"microstop_max_ms": 600_001}, "microstop_max_ms"),
        ({"microstop_max_ms": -1}, "microstop_max_ms"),
        ({"microstop_max_ms": True}, "microstop_max_ms"),
        ({"microstop_max_ms": 1.5}, "microstop_max_ms"),
        ({"states": {"RUNNING": "setup"}}, "RUNNING is production"),
        ({"states": {"UNKNOWN": "other"}}, "RUNNING is production"),
        ({"states": {"IDLE": "coffee"}}, r"states\[IDLE\]"),
        ({"states": ["IDLE"]}, "states must be a mapping"),
        ({"stop_reasons": {-1: "setup"}}, "not a stop reason code"),
        ({"stop_reasons": {True: "setup"}}, "not a stop reason code"),
        ({"stop_reasons": {"3": "setup"}}, "not a stop reason code"),
        ({"stop_reasons": {3: "lunch"}}, r"stop_reasons\[3\]"),
    ],
)
def test_a_bad_loss_map_is_refused_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LossMap(**kwargs)  # type: ignore[arg-type]


def test_a_loss_map_is_frozen_and_takes_enum_keys() -> None:
    from shopfloor.config import LossCategory
    from shopfloor.contracts import MachineState

    states = {MachineState.IDLE: LossCategory.NO_MATERIAL}
    loss_map = LossMap("enum", 0, states)  # type: ignore[arg-type]
    states[MachineState.IDLE] = LossCategory.OTHER  # the caller's dict changes; the map does not
    assert dict(loss_map.states) == {"IDLE": "no_material"}
    with pytest.raises(TypeError):
        loss_map.states["IDLE"] = "other"  # type: ignore[index]
    # microstop_max_ms 0: no stop is a microstop; STOPPED, not named in this map, is "other".
    (row,) = oee(
        [piece("STOPPED", 1, stop_reason=1, stop_ms=1)],
        ideal_cycle_ms=cycle(1),
        loss_map=loss_map,
        labels=window_labels(m(0), m(1)),
    )
    assert row.losses["other"] == MIN
    assert set(BASE_LOSSES) <= set(row.losses)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"group_by": ("machine", "colour")}, ValueError, "group_by: 'colour'"),
        ({"group_by": ("machine", "machine")}, ValueError, "twice"),
        ({"basis": "booked"}, ValueError, "basis"),
        ({"labels": None}, ValueError, "labels"),
        ({"labels": None, "group_by": ("tenant", "shift")}, ValueError, "labels"),
        ({"labels": lambda at, machine: (1, "x", date(2025, 1, 1))}, TypeError, "planned"),
        ({"labels": lambda at, machine: (True, 7, date(2025, 1, 1))}, TypeError, "shift"),
        ({"labels": lambda at, machine: (True, None, "2025-01-01")}, TypeError, "day"),
        ({"ideal_cycle_ms": lambda machine, job: -5}, ValueError, "machine 'cnc-01', job None"),
        ({"ideal_cycle_ms": lambda machine, job: 2.5}, ValueError, "positive integer"),
        ({"ideal_cycle_ms": lambda machine, job: True}, ValueError, "positive integer"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    arguments: dict[str, object] = {"ideal_cycle_ms": cycle(1000), "labels": window_labels(m(0), m(60))}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        oee([piece("RUNNING", 60, good=1)], **arguments)  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------------------------------

PIECES = st.lists(
    st.builds(
        lambda state, minutes, hour, badge, job, reason, stop, good, reject: piece(
            state,
            minutes,
            at=hour * 60,
            badge=badge,
            job=job,
            reason="silence" if state == UNKNOWN else None,
            stop_reason=reason if state == "STOPPED" else None,
            stop_ms=stop * 1000 if state == "STOPPED" else 0,
            good=good,
            reject=reject,
        ),
        st.sampled_from(["RUNNING", "STOPPED", "IDLE", "SETUP", "OFF", "MAINTENANCE", UNKNOWN]),
        st.integers(0, 60),
        st.integers(0, 11),
        st.sampled_from([0, 1001, 2001, 9999]),
        st.sampled_from([None, "J1", "J2"]),
        st.sampled_from([None, 1, 12]),
        st.integers(1, 3600),
        st.integers(0, 200),
        st.integers(0, 20),
    ),
    max_size=30,
)
GROUPS = st.lists(st.sampled_from(["machine", "tenant", "job", "shift", "day"]), unique=True, max_size=3)
LOSS_MAPS = st.sampled_from([LossMap(), LossMap("m", 0, {"IDLE": "other"}, {12: "no_material"})])


def shifts(at_ms: int, machine: str) -> Label:
    hour = (at_ms - T0) // HOUR
    return (hour % 4 != 3, ["a", "b"][hour % 2] if hour % 4 != 3 else None, date(2025, 11, 28 + hour // 8))


@settings(max_examples=200, deadline=None)
@given(got=PIECES, group_by=GROUPS, loss_map=LOSS_MAPS)
def test_losses_and_the_ideal_time_of_good_parts_always_make_pbt(
    got: list[Piece], group_by: list[str], loss_map: LossMap
) -> None:
    ideal = cycle(45_000, {"J1": 30_000})
    rows = oee(got, ideal_cycle_ms=ideal, labels=shifts, loss_map=loss_map, badge_owner=OWNERS, group_by=group_by)
    for row in rows:
        check_sums(row)
        assert row.loss_map_version == loss_map.version
    # Splitting the pieces in two and adding the rows' sums gives the rows of all of them (OEE is window
    # independent: sums add, ratios are computed from the sums).
    half = len(got) // 2
    parts = [
        oee(p, ideal_cycle_ms=ideal, labels=shifts, loss_map=loss_map, badge_owner=OWNERS, group_by=group_by)
        for p in (got[:half], got[half:])
    ]
    summed: dict[tuple[object, ...], list[int]] = {}
    for row in (r for part in parts for r in part):
        key = tuple(getattr(row, k) for k in group_by)
        acc = summed.setdefault(key, [0, 0, 0, 0, 0])
        for i, v in enumerate((row.pbt_ms, row.apt_ms, row.produced, row.ideal_good_ms, sum(row.losses.values()))):
            acc[i] += v
    assert summed == {
        tuple(getattr(r, k) for k in group_by): [
            r.pbt_ms,
            r.apt_ms,
            r.produced,
            r.ideal_good_ms,
            sum(r.losses.values()),
        ]
        for r in rows
    }


def test_with_the_site_calendar_a_night_with_a_break_is_one_shift() -> None:
    from datetime import time

    from shopfloor.calendar import Calendar, ShiftPattern

    # Jakarta (UTC+7): the night 22:00-06:00 with a break 02:00-02:30 is 7.5 h of planned busy time.
    calendar = Calendar("Asia/Jakarta", (ShiftPattern("night", time(22), time(6), breaks=((time(2), time(2, 30)),)),))
    start = int(datetime(2025, 11, 27, 21, tzinfo=ZoneInfo("Asia/Jakarta")).timestamp() * 1000)
    end = start + 10 * HOUR
    timeline = hour_timelines(running(start, end), [], start, end, GAP)
    got = pieces(timeline, "cnc-01", calendar.boundaries(start, end, "cnc-01"))
    rows = oee(got, ideal_cycle_ms=cycle(60_000), labels=calendar.label, group_by=("day", "shift"))
    night = next(r for r in rows if r.shift == "night")
    assert (night.day, night.pbt_ms, night.produced) == (date(2025, 11, 27), 450 * MIN, 450)
    assert night.oee == pytest.approx(1.0)
    # The break and the hours around the shift: one unplanned row per local day, none of it in PBT.
    assert sum(r.unplanned_ms for r in rows) == 150 * MIN
