"""Ground-truth OEE (ISO 22400-2) straight from the true intervals: hand-computed tables, then whole simulated runs."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shopfloor.calendar import Calendar, Downtime, PlannedPiece, ShiftPattern
from shopfloor.cli import main
from shopfloor.config import LossCategory, LossMapSpec, SiteConfig, default_site_path, load_site
from shopfloor.contracts import MachineState
from simulators.cli import oee_table
from simulators.machine import Interval
from simulators.scenario import Scenario, load_scenario, scenarios_dir
from simulators.truth import LOSSES, GroundTruth, MachineTruth, TruthOee
from simulators.world import World

S = MachineState
JKT = "Asia/Jakarta"  # UTC+7 all year
H, MIN = 3_600_000, 60_000
LOSS = LossMapSpec()  # the defaults: a stop of up to 120 s is a microstop; STOPPED is a breakdown
OWNERS = {1001: "acme", 2001: "batik"}


def at(day: date, hh: int, mm: int = 0, ss: int = 0, zone: str = JKT) -> int:
    """Epoch ms of a local wall time."""
    return int(datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def every(start_ms: int, end_ms: int, step_ms: int) -> list[int]:
    """Part completions each step_ms after start_ms, up to and including end_ms."""
    return list(range(start_ms + step_ms, end_ms + 1, step_ms))


def machine(
    rows: list[tuple[int, int, S, int, str, int]],
    good: Sequence[tuple[int, int]],
    reject: Sequence[tuple[int, int]] = (),
) -> MachineTruth:
    """A machine's truth from (start, end, state, badge, job, stop reason) rows and (ts, ideal_ms) parts."""
    return MachineTruth(
        model="test",
        power_kw={s.value: 1.0 for s in S},
        intervals=[Interval(*r) for r in rows],
        good_ts=[t for t, _ in good],
        reject_ts=[t for t, _ in reject],
        good_ideal_ms=[i for _, i in good],
        reject_ideal_ms=[i for _, i in reject],
    )


def truth(machines: dict[str, MachineTruth], start_ms: int, end_ms: int) -> GroundTruth:
    return GroundTruth("site", "hand", 1, start_ms, end_ms, dict(OWNERS), machines)


def losses_add_up(row: TruthOee, ideal_good_s: float) -> None:
    assert sum(row.losses.values()) + ideal_good_s == pytest.approx(row.pbt_s, abs=1e-6)


# -- an 8 h day shift with a break, a breakdown, setup, microstops and rejects -------------------------------------
MON = date(2026, 11, 2)
DAY_CAL = Calendar(JKT, (ShiftPattern("day", time(6), time(14), breaks=((time(10), time(10, 30)),)),))


def day_shift_truth() -> GroundTruth:
    def t(hh: int, mm: int = 0, ss: int = 0) -> int:
        return at(MON, hh, mm, ss)

    rows = [
        (t(5), t(6), S.RUNNING, 1001, "J1", 0),  # before the shift: not planned
        (t(6), t(6, 30), S.SETUP, 1001, "J1", 0),  # 1800 s setup
        (t(6, 30), t(8), S.RUNNING, 1001, "J1", 0),  # 5400 s
        (t(8), t(8, 0, 20), S.STOPPED, 1001, "J1", 7),  # 20 s: a microstop
        (t(8, 0, 20), t(9), S.RUNNING, 1001, "J1", 0),  # 3580 s
        (t(9), t(9, 45), S.STOPPED, 1001, "J1", 4),  # 2700 s: a breakdown, reason 4
        (t(9, 45), t(10), S.RUNNING, 1001, "J1", 0),  # 900 s
        (t(10), t(10, 30), S.IDLE, 1001, "", 0),  # the break: not planned
        (t(10, 30), t(11), S.RUNNING, 1001, "J1", 0),  # 1800 s
        (t(11), t(11, 0, 10), S.STOPPED, 1001, "J1", 7),  # 10 s: a microstop
        (t(11, 0, 10), t(13), S.RUNNING, 1001, "J1", 0),  # 7190 s
        (t(13), t(13, 30), S.IDLE, 0, "", 0),  # 1800 s nobody there
        (t(13, 30), t(15), S.OFF, 0, "", 0),  # 1800 s in the shift, 3600 s after it
    ]
    ideal = 60_000
    # Parts one a minute while RUNNING; a part counts where the last millisecond of its cycle lies (ts - 1).
    before = every(t(5), t(6), MIN)  # 60 parts, the last at 06:00 exactly: made before the shift, not counted
    runs = [(t(6, 30), t(8)), (t(8, 0, 20), t(9)), (t(9, 45), t(10)), (t(10, 30), t(11)), (t(11, 0, 10), t(13))]
    made = [ts for a, b in runs for ts in every(a, b, MIN)]  # 90 + 59 + 15 (the last at 10:00) + 30 + 119 = 313
    assert len(made) == 313
    rejects = set(made[:13])
    good = [(ts, ideal) for ts in before + made if ts not in rejects]
    return truth({"m1": machine(rows, good, [(ts, ideal) for ts in sorted(rejects)])}, t(5), t(15))


def test_day_shift_with_breakdown_setup_microstops_and_rejects() -> None:
    gt = day_shift_truth()
    (row,) = gt.oee(DAY_CAL, LOSS, gt.start_ms, gt.end_ms)
    # PBT = 06:00-14:00 less the 10:00-10:30 break = 8 h - 0.5 h = 27000 s.
    # RUNNING = 5400 + 3580 + 900 + 1800 + 7190 = 18870 s; microstops 20 + 10 = 30 s; APT = 18900 s.
    # Produced 313 (13 rejects, 300 good), ideal 60 s: ideal x produced = 18780 s, ideal x good = 18000 s.
    assert row.group == {"machine": "m1"}
    assert (row.pbt_s, row.apt_s, row.unknown_s, row.produced, row.good) == (27000, 18900, 0, 313, 300)
    assert row.availability == pytest.approx(18900 / 27000)  # 0.7
    assert row.effectiveness == pytest.approx(18780 / 18900)  # 0.9937
    assert row.quality == pytest.approx(300 / 313)
    assert row.oee == pytest.approx(18000 / 27000)  # 0.7 x 0.9937 x 0.9585 = 2/3
    assert row.losses == {
        "breakdown": 2700,
        "setup": 1800,
        "no_operator": 1800,  # 13:00-13:30 IDLE
        "no_material": 0,
        "off": 1800,  # 13:30-14:00
        "maintenance": 0,
        "other": 0,
        "microstops": 30,
        "speed_loss": 90,  # RUNNING 18870 - ideal x produced 18780
        "rejects": 780,  # 13 x 60
        "unknown": 0,
    }
    assert row.breakdowns == {4: 2700}
    # 2700 + 1800 + 1800 + 1800 + 30 + 90 + 780 = 9000, + ideal x good 18000 = 27000 = PBT
    losses_add_up(row, 18000)
    assert list(row.losses) == list(LOSSES)  # every category, always, in one order
    assert row.flags == () and row.coverage == 1.0 and row.loss_map_version == "default-1"
    assert list(row.row())[:3] == ["machine", "pbt_s", "apt_s"] and "group" not in row.row()


@pytest.mark.parametrize(
    ("microstop_max_s", "microstops", "breakdowns"),
    [
        (120.0, 30, {4: 2700}),  # the 20 s and 10 s stops are microstops
        (20.0, 30, {4: 2700}),  # a stop of exactly the threshold is still one ("at most")
        (19.999, 10, {4: 2700, 7: 20}),
        (5.0, 0, {4: 2700, 7: 30}),
    ],
)
def test_the_microstop_threshold_moves_stops_between_apt_and_breakdowns(
    microstop_max_s: float, microstops: int, breakdowns: dict[int, int]
) -> None:
    gt = day_shift_truth()
    (row,) = gt.oee(DAY_CAL, LossMapSpec(version="t", microstop_max_s=microstop_max_s), gt.start_ms, gt.end_ms)
    assert row.losses["microstops"] == microstops
    assert row.breakdowns == breakdowns and row.losses["breakdown"] == sum(breakdowns.values())
    assert row.apt_s == 18870 + microstops  # RUNNING plus microstops
    assert row.loss_map_version == "t"
    losses_add_up(row, 18000)


def test_stop_reasons_and_states_book_their_own_losses() -> None:
    gt = day_shift_truth()
    states = {**LossMapSpec().states, S.IDLE: LossCategory.OTHER, S.SETUP: LossCategory.OTHER}
    loss = LossMapSpec(version="site-2", states=states, stop_reasons={4: LossCategory.NO_MATERIAL})
    (row,) = gt.oee(DAY_CAL, loss, gt.start_ms, gt.end_ms)
    # reason 4's 2700 s is waiting for material, not a breakdown; setup 1800 + idle 1800 booked as "other"
    assert (row.losses["no_material"], row.losses["breakdown"], row.breakdowns) == (2700, 0, {})
    assert (row.losses["other"], row.losses["setup"], row.losses["no_operator"]) == (3600, 0, 0)
    assert row.loss_map_version == "site-2"
    losses_add_up(row, 18000)


def test_a_stop_is_measured_whole_across_reasons_and_windows() -> None:
    # STOPPED reason 1 for 20 s then reason 2 for 20 s: one 40 s stop, not two 20 s microstops.
    t0 = at(MON, 7)
    rows = [
        (t0, t0 + 20_000, S.STOPPED, 0, "", 1),
        (t0 + 20_000, t0 + 40_000, S.STOPPED, 0, "", 2),
        (t0 + 40_000, t0 + H, S.RUNNING, 0, "J", 0),
    ]
    gt = truth({"m1": machine(rows, [])}, t0, t0 + H)
    loss = LossMapSpec(microstop_max_s=30.0)
    (row,) = gt.oee(DAY_CAL, loss, t0, t0 + H)
    assert (row.losses["breakdown"], row.breakdowns, row.losses["microstops"]) == (40, {1: 20, 2: 20}, 0)
    # A window holding only its first 10 s still sees a 40 s stop: classify whole, then cut.
    (cut,) = gt.oee(DAY_CAL, loss, t0, t0 + 10_000)
    assert (cut.pbt_s, cut.breakdowns, cut.losses["microstops"], cut.apt_s) == (10, {1: 10}, 0, 0)
    assert cut.effectiveness is None and cut.quality is None and cut.oee == 0.0  # nothing could be made


def test_windows_add_up_to_the_shift() -> None:
    gt = day_shift_truth()
    (whole,) = gt.oee(DAY_CAL, LOSS, gt.start_ms, gt.end_ms)
    cuts = [gt.start_ms, at(MON, 8), at(MON, 8, 0, 10), at(MON, 10, 15), at(MON, 12, 59, 59), gt.end_ms]
    parts = [r for a, b in itertools.pairwise(cuts) for r in gt.oee(DAY_CAL, LOSS, a, b)]
    assert sum(r.pbt_s for r in parts) == whole.pbt_s
    assert sum(r.apt_s for r in parts) == pytest.approx(whole.apt_s)
    assert (sum(r.produced for r in parts), sum(r.good for r in parts)) == (313, 300)
    for key in whole.losses:  # every loss is additive, speed loss too (RUNNING and ideal x produced both are)
        assert sum(r.losses.get(key, 0) for r in parts) == pytest.approx(whole.losses[key]), key


# -- a night shift crossing midnight is one shift, on the day it starts ----------------------------------------------
def test_night_shift_crossing_midnight_is_one_shift_of_its_start_day() -> None:
    cal = Calendar(JKT, (ShiftPattern("night", time(22), time(6), breaks=((time(2), time(2, 30)),)),))
    start, end = at(MON, 20), at(date(2026, 11, 3), 8)
    # RUNNING the whole 12 h; a part every 10 min with an ideal cycle of 500 s.
    parts = [(ts, 500_000) for ts in every(start, end, 10 * MIN)]
    gt = truth({"m1": machine([(start, end, S.RUNNING, 0, "N", 0)], parts)}, start, end)
    rows = gt.oee(cal, LOSS, start, end, ("machine", "shift", "day"))
    # PBT = 22:00-06:00 less 02:00-02:30 = 8 h - 0.5 h = 27000 s, all RUNNING.
    # Parts with ts - 1 in planned time: 22:10 .. 02:00 (24) and 02:40 .. 06:00 (21) = 45; 45 x 500 = 22500 s.
    assert [r.group for r in rows] == [{"machine": "m1", "shift": "night", "day": "2026-11-02"}]
    (row,) = rows
    assert (row.pbt_s, row.apt_s, row.produced, row.good) == (27000, 27000, 45, 45)
    assert row.effectiveness == pytest.approx(22500 / 27000)  # 0.8333
    assert row.losses["speed_loss"] == 4500  # 27000 - 22500
    losses_add_up(row, 22500)
    # Cut at local midnight: both halves still belong to Monday's night shift, and they add up.
    midnight = at(date(2026, 11, 3), 0)
    first, second = gt.oee(cal, LOSS, start, midnight, ("day",)), gt.oee(cal, LOSS, midnight, end, ("day",))
    assert [r.group for r in first + second] == [{"day": "2026-11-02"}] * 2
    # 22:00-24:00 = 7200 s with 12 parts; 00:00-06:00 less the break = 19800 s with 12 + 21 = 33 parts
    assert [(r.pbt_s, r.produced) for r in first + second] == [(7200, 12), (19800, 33)]


def test_night_shift_on_the_fall_back_night_lasts_nine_hours() -> None:
    zone = "Europe/Berlin"  # clocks go back 03:00 CEST -> 02:00 CET on Sunday 2026-10-25
    cal = Calendar(zone, (ShiftPattern("night", time(22), time(6)),))
    sat = date(2026, 10, 24)
    start, end = at(sat, 22, zone=zone), at(date(2026, 10, 25), 6, zone=zone)
    assert end - start == 9 * H  # 22:00 CEST (20:00 UTC) to 06:00 CET (05:00 UTC)
    parts = [(ts, 10 * MIN) for ts in every(start, end, 10 * MIN)]  # 54 parts at exactly the ideal pace
    gt = truth({"m1": machine([(start, end, S.RUNNING, 0, "N", 0)], parts)}, start, end)
    (row,) = gt.oee(cal, LOSS, start, end, ("shift", "day"))
    assert row.group == {"shift": "night", "day": "2026-10-24"}
    assert (row.pbt_s, row.produced, row.effectiveness, row.oee) == (9 * 3600, 54, 1.0, 1.0)


# -- a tenant's basis is its session time -------------------------------------------------------------------------
def tenant_truth() -> GroundTruth:
    def t(hh: int, mm: int = 0) -> int:
        return at(MON, hh, mm)

    rows = [
        (t(6), t(8), S.IDLE, 0, "", 0),
        (t(8), t(8, 10), S.SETUP, 1001, "A", 0),  # acme 08:00-10:00
        (t(8, 10), t(9, 50), S.RUNNING, 1001, "A", 0),  # 6000 s
        (t(9, 50), t(10), S.IDLE, 1001, "", 0),
        (t(10), t(13), S.IDLE, 0, "", 0),
        (t(13), t(14, 30), S.RUNNING, 2001, "B", 0),  # batik 13:00-15:00, across the shift's end at 14:00
        (t(14, 30), t(15), S.STOPPED, 2001, "B", 3),  # 1800 s breakdown
        (t(15), t(16), S.IDLE, 0, "", 0),
        (t(16), t(16, 30), S.RUNNING, 9999, "X", 0),  # a badge nobody owns
        (t(16, 30), t(17), S.IDLE, 0, "", 0),
    ]
    good = [(ts, 100_000) for ts in every(t(8, 10), t(9, 50), 2 * MIN)]  # 50 parts, ideal 100 s
    good += [(ts, 60_000) for ts in every(t(13), t(14, 30), MIN)]  # 90 parts, ideal 60 s
    good += [(ts, 60_000) for ts in every(t(16), t(16, 30), MIN)]  # 30 parts
    return truth({"m1": machine(rows, sorted(good))}, t(6), t(17))


def test_tenant_basis_is_session_time_not_the_calendar() -> None:
    gt = tenant_truth()
    rows = {r.group["tenant"]: r for r in gt.oee(DAY_CAL, LOSS, gt.start_ms, gt.end_ms, ("tenant",))}
    assert list(rows) == [None, "acme", "batik"]  # the unowned badge is nobody's: None, not a name
    acme, batik, nobody = rows["acme"], rows["batik"], rows[None]
    # acme: PBT = its 2 h session; SETUP 600, RUNNING 6000, IDLE 600; 50 parts x 100 s = 5000 s ideal
    assert (acme.pbt_s, acme.apt_s, acme.produced) == (7200, 6000, 50)
    assert (acme.losses["setup"], acme.losses["no_operator"], acme.losses["speed_loss"]) == (600, 600, 1000)
    assert acme.oee == pytest.approx(5000 / 7200)
    # batik: 2 h although the shift ends at 14:00; RUNNING 5400, breakdown 1800; 90 x 60 = 5400 s ideal
    assert (batik.pbt_s, batik.apt_s, batik.breakdowns, batik.produced) == (7200, 5400, {3: 1800}, 90)
    assert (batik.availability, batik.effectiveness, batik.quality) == (0.75, 1.0, 1.0)
    assert (nobody.pbt_s, nobody.produced) == (1800, 30)
    for r, ideal_good in ((acme, 5000), (batik, 5400), (nobody, 1800)):
        losses_add_up(r, ideal_good)


def test_tenant_by_shift_labels_session_time_outside_the_shifts() -> None:
    gt = tenant_truth()
    rows = gt.oee(DAY_CAL, LOSS, gt.start_ms, gt.end_ms, ("tenant", "shift", "day"))
    got = [(r.group["tenant"], r.group["shift"], r.group["day"], r.pbt_s, r.produced) for r in rows]
    assert got == [
        (None, None, "2026-11-02", 1800, 30),  # 16:00-16:30, outside the shift
        ("acme", "day", "2026-11-02", 7200, 50),
        ("batik", None, "2026-11-02", 3600, 30),  # 14:00-15:00 after the shift: 14:00-14:30 RUNNING, 30 parts
        ("batik", "day", "2026-11-02", 3600, 60),  # 13:00-14:00: 60 parts (the one at 14:00 made before 14:00)
    ]


def test_calendar_basis_of_the_same_machine() -> None:
    gt = tenant_truth()
    (row,) = gt.oee(DAY_CAL, LOSS, gt.start_ms, gt.end_ms, ("machine",))
    # PBT 27000 s (06:00-14:00 less the break). RUNNING 08:10-09:50 (6000) + 13:00-14:00 (3600) = 9600 s;
    # SETUP 600; IDLE the rest: 27000 - 9600 - 600 = 16800 s, of which 10:00-10:30 is the break: not in PBT.
    assert (row.pbt_s, row.apt_s, row.losses["setup"], row.losses["no_operator"]) == (27000, 9600, 600, 16800)
    # parts: 50 x 100 s + 60 x 60 s (up to 14:00) = 8600 s ideal
    assert row.produced == 110
    losses_add_up(row, 8600)


def test_planned_downtime_is_not_planned_busy_time() -> None:
    gt = day_shift_truth()
    down = Downtime(at(MON, 13), at(MON, 14), frozenset({"m1"}), "filter change")
    cal = Calendar(JKT, DAY_CAL.shifts, downtime=(down,))
    (row,) = gt.oee(cal, LOSS, gt.start_ms, gt.end_ms)
    # 27000 - 3600: the idle and off half hours after 13:00 were planned downtime, no loss
    assert (row.pbt_s, row.losses["no_operator"], row.losses["off"]) == (23400, 0, 0)
    losses_add_up(row, 18000)


# -- effectiveness above 100 % is returned and flagged, never capped ------------------------------------------------
def test_effectiveness_over_100_percent_is_flagged_not_capped() -> None:
    start = at(MON, 7)
    parts = [(ts, 60_000) for ts in every(start, start + H, 50_000)]  # one every 50 s against an ideal 60 s: 72
    gt = truth({"m1": machine([(start, start + H, S.RUNNING, 0, "J", 0)], parts)}, start, start + H)
    (row,) = gt.oee(DAY_CAL, LOSS, start, start + H)
    # ideal x produced = 72 x 60 = 4320 s in 3600 s of APT: 120 %
    assert row.produced == 72
    assert row.effectiveness == pytest.approx(1.2) and row.oee == pytest.approx(1.2)
    assert row.flags == ("effectiveness_over_100",)
    assert row.losses["speed_loss"] == -720  # negative: a gain, so that the losses still add up
    losses_add_up(row, 4320)
    assert "120.0%!" in oee_table(gt, DAY_CAL, LOSS) and "flagged, not capped" in oee_table(gt, DAY_CAL, LOSS)


def test_groups_by_job_count_parts_in_the_job_they_were_made_in() -> None:
    t0 = at(MON, 7)
    rows = [
        (t0, t0 + 10 * MIN, S.RUNNING, 1001, "A", 0),
        (t0 + 10 * MIN, t0 + 15 * MIN, S.SETUP, 1001, "B", 0),
        (t0 + 15 * MIN, t0 + 25 * MIN, S.RUNNING, 1001, "B", 0),
    ]
    # The last part of A completes at the same instant B's setup starts; it is still A's.
    good = [(ts, 50_000) for ts in every(t0, t0 + 10 * MIN, MIN)] + [
        (ts, 100_000) for ts in every(t0 + 15 * MIN, t0 + 25 * MIN, 2 * MIN)
    ]
    gt = truth({"m1": machine(rows, good)}, t0, t0 + 25 * MIN)
    got = {
        r.group["job"]: (r.pbt_s, r.produced, r.effectiveness)
        for r in gt.oee(DAY_CAL, LOSS, t0, t0 + 25 * MIN, ["job"])
    }
    assert got == {"A": (600, 10, 500 / 600), "B": (900, 5, 500 / 600)}


# -- bad arguments are refused with what was wrong ------------------------------------------------------------------
class OverlappingCalendar:
    def planned(self, start_ms: int, end_ms: int, machine: str) -> list[PlannedPiece]:
        return [PlannedPiece(start_ms, start_ms + H, "a", MON), PlannedPiece(start_ms + H - 1, end_ms, "b", MON)]

    def label(self, ts_ms: int, machine: str) -> Any:
        raise AssertionError("not needed")

    def boundaries(self, start_ms: int, end_ms: int, machine: str) -> list[int]:
        return []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_by": ("machine", "shifts")}, "group_by: 'shifts' is not one of machine, tenant, job, shift, day"),
        ({"group_by": ("day", "day")}, "names a group twice"),
        ({"end_ms": 0}, "is not after start"),
        ({"calendar": OverlappingCalendar()}, "calendar: planned pieces of m1 overlap"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    gt = day_shift_truth()
    call: dict[str, Any] = {
        "calendar": DAY_CAL,
        "loss_map": LOSS,
        "start_ms": gt.start_ms,
        "end_ms": gt.end_ms,
        "group_by": ("machine",),
    }
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        gt.oee(**(call | kwargs))


# -- the ground truth file carries the ideal cycle per part ---------------------------------------------------------
def test_json_round_trip_keeps_the_ideal_cycles_run_length_encoded() -> None:
    gt = day_shift_truth()
    text = gt.to_json()
    data = json.loads(text)
    assert data["v"] == 2
    assert data["machines"]["m1"]["good_ideal_ms"] == [[60_000, 360]]  # 60 before the shift + 300 in it
    again = GroundTruth.from_json(text)
    assert again.to_json() == text
    assert again.oee(DAY_CAL, LOSS, gt.start_ms, gt.end_ms) == gt.oee(DAY_CAL, LOSS, gt.start_ms, gt.end_ms)


def test_version_1_files_load_but_have_no_oee() -> None:
    data = json.loads(day_shift_truth().to_json())
    data["v"] = 1
    for m in data["machines"].values():
        del m["good_ideal_ms"], m["reject_ideal_ms"]
    old = GroundTruth.from_json(json.dumps(data))
    assert old.sessions and not old.machines["m1"].knows_ideal_cycles
    with pytest.raises(ValueError, match="ground truth of m1 has no ideal cycle per part"):
        old.oee(DAY_CAL, LOSS, old.start_ms, old.end_ms)


@pytest.mark.parametrize(
    ("ideal", "message"),
    [
        (
            [[60_000, 10**12]],
            r"ideal cycles\[0\]: more ideal cycles than the 360 parts made",
        ),  # refused before allocating
        ([[60_000, 359]], "good_ideal_ms: 359 ideal cycles for 360 parts"),
        ([[0, 360]], r"\[0, 360\] is not \[ideal_ms > 0, parts > 0\]"),
        ([[60_000, -1]], "is not"),
        ([[True, 360]], "is not"),
        ([[60_000.0, 360]], "is not"),
        ([[60_000, 360, 1]], "is not"),
        ("60000", "must be a list"),
        ({"60000": 360}, "must be a list"),
    ],
)
def test_malformed_ideal_cycles_are_refused_naming_the_machine(ideal: object, message: str) -> None:
    data = json.loads(day_shift_truth().to_json())
    data["machines"]["m1"]["good_ideal_ms"] = ideal
    with pytest.raises(ValueError, match=f"ground truth machines.m1: .*{message}"):
        GroundTruth.from_json(json.dumps(data))


@pytest.mark.parametrize("version", [0, 3, True, "2", None])
def test_unknown_versions_are_refused(version: object) -> None:
    data = json.loads(day_shift_truth().to_json())
    data["v"] = version
    with pytest.raises(ValueError, match="ground truth version"):
        GroundTruth.from_json(json.dumps(data))


# -- whole simulated runs: invariants against the simulator's own records ----------------------------------------------
T0 = 1_800_000_000_000


def world(site: SiteConfig, name: str, seed: int = 1) -> World:
    return World(site, load_scenario(scenarios_dir() / f"{name}.yaml", site), seed, T0)


def ideal_good_s(gt: GroundTruth, rows: list[TruthOee]) -> float:
    """Ideal x good per row, recomputed from the parts (each row one machine, the whole run planned)."""
    return sum(sum(gt.machines[str(r.group["machine"])].good_ideal_ms) / 1000 for r in rows)


@pytest.mark.parametrize("name", ["faults", "e2e-two-tenants"])
def test_simulated_runs_add_up(example_site: SiteConfig, name: str) -> None:
    gt = world(example_site, name).ground_truth()
    always = Calendar(example_site.site.timezone)  # no shifts: every instant planned
    rows = gt.oee(always, LOSS, gt.start_ms, gt.end_ms)
    assert [r.group["machine"] for r in rows] == sorted(gt.machines)
    for r in rows:
        mt = gt.machines[str(r.group["machine"])]
        assert r.pbt_s == (gt.end_ms - gt.start_ms) / 1000
        assert (r.good, r.produced - r.good) == (len(mt.good_ts), len(mt.reject_ts))
        assert r.good == sum(s.good for s in gt.sessions if s.machine == r.group["machine"])
        losses_add_up(r, sum(mt.good_ideal_ms) / 1000)
        assert r.apt_s == pytest.approx(
            gt.state_seconds(str(r.group["machine"])).get("RUNNING", 0) + r.losses["microstops"]
        )
    # By tenant: each tenant's sessions are its PBT, and its parts are the sessions' parts.
    by_tenant = {r.group["tenant"]: r for r in gt.oee(always, LOSS, gt.start_ms, gt.end_ms, ("tenant",))}
    for tenant, r in by_tenant.items():
        sessions = [s for s in gt.sessions if s.tenant == tenant]
        assert r.pbt_s == pytest.approx(sum(s.end_ms - s.start_ms for s in sessions) / 1000)
        assert r.good == sum(s.good for s in sessions) and r.produced == sum(s.good + s.reject for s in sessions)


def test_faults_scenario_figures(example_site: SiteConfig) -> None:
    gt = world(example_site, "faults").ground_truth()
    rows = {r.group["machine"]: r for r in gt.oee(Calendar(example_site.site.timezone), LOSS, gt.start_ms, gt.end_ms)}
    # every part carries its job's ideal cycle (faults.yaml: F-CNC 2 s, F-LASER 1.5 s)
    assert set(gt.machines["cnc-01"].good_ideal_ms + gt.machines["cnc-01"].reject_ideal_ms) == {2000}
    assert set(gt.machines["laser-01"].good_ideal_ms) == {1500}
    # laser-01: 91 good and 4 rejected in the 3 minutes (the figure for this run)
    assert (rows["laser-01"].good, rows["laser-01"].produced) == (91, 95)
    # the 10 s breakdown of cnc-01 is at most 120 s: a microstop; press-01's 20 s maintenance; brake-01 off 15 s
    assert rows["cnc-01"].losses["microstops"] == 10
    assert rows["press-01"].losses["maintenance"] == 20 and rows["brake-01"].losses["off"] == 15
    # cycle 2.2 s against an ideal 2 s: effectiveness 2 / 2.2 = 90.9 %, less the cycles cut short by stops
    assert 0.8 < rows["cnc-01"].effectiveness < 2 / 2.2  # type: ignore[operator]


def test_jobs_with_different_ideal_cycles_record_theirs(example_site: SiteConfig) -> None:
    jobs = [
        {"id": "A", "ideal_cycle_s": 1, "cycle_s": 1, "jitter": 0, "quantity": 3, "setup": "2s"},
        {"id": "B", "ideal_cycle_s": 2, "cycle_s": 2.5, "jitter": 0, "quantity": 2, "setup": "2s"},
    ]
    data = {
        "duration": "30s",
        "machines": ["cnc-01"],
        "random_stops": False,
        "sessions": [{"machine": "cnc-01", "badge": 1001, "at": "1s", "until": "29s", "jobs": jobs}],
    }
    gt = World(example_site, Scenario.model_validate(data, context={"site": example_site}), 1, T0).ground_truth()
    cnc = gt.machines["cnc-01"]
    assert cnc.good_ideal_ms == [1000, 1000, 1000, 2000, 2000]
    # setup A 1-3 s, parts at 4, 5, 6 s; setup B 6-8 s, parts at 10.5 and 13 s
    assert [t - T0 for t in cnc.good_ts] == [4000, 5000, 6000, 10_500, 13_000]
    by_job = {r.group["job"]: r for r in gt.oee(Calendar("UTC"), LOSS, gt.start_ms, gt.end_ms, ("job",))}
    assert (by_job["A"].produced, by_job["A"].effectiveness) == (3, 1.0)
    assert by_job["B"].produced == 2 and by_job["B"].effectiveness == pytest.approx(4 / 5)  # 2 x 2 s in 5 s


def test_a_shift_calendar_splits_a_simulated_run(example_site: SiteConfig) -> None:
    gt = world(example_site, "e2e-two-tenants").ground_truth()
    zone = example_site.site.timezone
    cut = datetime.fromtimestamp(T0 / 1000, ZoneInfo(zone)) + timedelta(seconds=30)  # 30 s into the run
    pause = ((cut + timedelta(seconds=10)).time(), (cut + timedelta(seconds=15)).time())  # a 5 s break in "b"
    assert cut.date() == (cut + timedelta(minutes=5)).date()  # the run does not reach local midnight
    cal = Calendar(
        zone, (ShiftPattern("a", time(0), cut.time()), ShiftPattern("b", cut.time(), time(0), breaks=(pause,)))
    )
    by_shift = gt.oee(cal, LOSS, gt.start_ms, gt.end_ms, ("machine", "shift"))
    by_machine = {r.group["machine"]: r for r in gt.oee(cal, LOSS, gt.start_ms, gt.end_ms)}
    run_s = (gt.end_ms - gt.start_ms) / 1000
    for m, total in by_machine.items():
        shifts = [r for r in by_shift if r.group["machine"] == m]
        assert [r.group["shift"] for r in shifts] == ["a", "b"]
        assert [r.pbt_s for r in shifts] == [30, run_s - 30 - 5]
        assert sum(r.pbt_s for r in shifts) == total.pbt_s
        assert sum(r.produced for r in shifts) == total.produced
        assert sum(r.apt_s for r in shifts) == pytest.approx(total.apt_s)


# -- the command line prints it ------------------------------------------------------------------------------------
def test_cli_replay_prints_the_ground_truth_oee(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, truth_path = tmp_path / "s.jsonl", tmp_path / "truth.json"
    # The example site works three shifts; 05:59-06:02 spans the end of the night shift and the start of the morning.
    args = ["simulate", "--site", str(default_site_path()), "--replay", "faults", "--from", "2026-11-01T05:59"]
    args += ["--to", "2026-11-01T06:02", "--out", str(out)]
    assert main([*args, "--ground-truth", str(truth_path), "--print-oee"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0] == (
        "ground-truth OEE of 'faults' (seed 1), 2026-11-01 05:59:00 .. 2026-11-01 06:02:00 Asia/Jakarta, "
        "loss map default-1"
    )
    assert lines[1].split()[:4] == ["MACHINE", "SHIFT", "PBT", "APT"] and lines[1].endswith("REJECT  TOP LOSSES")
    laser = [line.split()[:3] + line.split()[8:10] for line in lines if line.startswith("laser-01")]
    gt = GroundTruth.from_json(truth_path.read_text())  # still written, and what was printed comes from it
    laser_truth, six = gt.machines["laser-01"], gt.start_ms + MIN

    def made(ts: list[int], a: int, b: int) -> str:
        return str(sum(a < t <= b for t in ts))  # a part counts where its cycle's last ms (ts - 1) lies

    night = [made(laser_truth.good_ts, gt.start_ms, six), made(laser_truth.reject_ts, gt.start_ms, six)]
    morning = [made(laser_truth.good_ts, six, gt.end_ms), made(laser_truth.reject_ts, six, gt.end_ms)]
    assert laser == [
        ["laser-01", "night", "0:01:00", *night],  # in time order, not by name
        ["laser-01", "morning", "0:02:00", *morning],
        ["laser-01", "(total)", "0:03:00", "91", "4"],  # the 91 good and 4 rejected parts
    ]
    assert [line.split()[:2] for line in lines if line.startswith("(total)")] == [
        ["(total)", "night"],
        ["(total)", "morning"],
        ["(total)", "(total)"],
    ]
    site = load_site(default_site_path())
    assert printed.strip() == oee_table(gt, site.calendar_model(), site.oee.loss_map)
    # without --ground-truth the table is the same and no file is left behind
    assert main([*args, "--print-oee"]) == 0
    assert capsys.readouterr().out == printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl", "truth.json"]
    # and without --print-oee nothing is printed to stdout
    assert main(args) == 0
    assert capsys.readouterr().out == ""


def test_table_says_when_nothing_was_planned() -> None:
    gt = day_shift_truth()
    nights = Calendar(JKT, (ShiftPattern("night", time(22), time(2)),))
    assert oee_table(gt, nights, LOSS).endswith("no planned busy time in the run (the calendar plans none of it)")
