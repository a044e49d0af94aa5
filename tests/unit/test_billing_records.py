"""The billing shell (api.billing): periods, billing categories, usage records, capacities and the watermark.

Hand-computed tables with the arithmetic in comments. Timelines are built from samples by the timeline core (as in
test_api_timeline.py), with max_gap 4 s: a value holds 4 s after its sample unless a later one comes first.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

import pytest

from api.billing import Lag, PeriodError, capacities, category_of, lagging, machine_records, period_of
from api.core import CounterLimits, LossMap, Piece, classify, cut
from api.core.billing.model import Capacity, Category, UsageRecord
from api.core.owners import BadgeSpan, Owners
from api.core.timeline import Timeline
from shopfloor.config import Machine, SiteConfig
from shopfloor.memstore import MemoryStore
from shopfloor.store import MACHINE_STATUS, TELEMETRY, Point

H = 3_600_000
GAP = 4000
ZONE = "Asia/Jakarta"  # UTC+7 all year (no DST)


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


# --- period_of --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "start", "end", "year"),
    [
        # 2026-11-01T00:00+07:00 = 2026-10-31T17:00Z; 2026-12-01T00:00+07:00 = 2026-11-30T17:00Z (30 days).
        ("2026-11", utc_ms(2026, 10, 31, 17), utc_ms(2026, 11, 30, 17), 2026),
        # December ends at 2027-01-01T00:00+07:00 = 2026-12-31T17:00Z: the year rolls, the period's year does not.
        ("2026-12", utc_ms(2026, 11, 30, 17), utc_ms(2026, 12, 31, 17), 2026),
        # January begins in the previous UTC year: 2027-01-01T00:00+07:00 = 2026-12-31T17:00Z.
        ("2027-01", utc_ms(2026, 12, 31, 17), utc_ms(2027, 1, 31, 17), 2027),
        # 2028 is a leap year: February has 29 days.
        ("2028-02", utc_ms(2028, 1, 31, 17), utc_ms(2028, 2, 29, 17), 2028),
        ("2000-01", utc_ms(1999, 12, 31, 17), utc_ms(2000, 1, 31, 17), 2000),
        ("2099-12", utc_ms(2099, 11, 30, 17), utc_ms(2099, 12, 31, 17), 2099),
    ],
)
def test_period_of(name: str, start: int, end: int, year: int) -> None:
    period = period_of(name, ZONE)
    assert (period.name, period.start_ms, period.end_ms, period.year) == (name, start, end, year)


@pytest.mark.parametrize(
    ("name", "start", "end", "hours"),
    [
        # Europe/Berlin: 2026-03-01T00:00+01:00 = 02-28T23:00Z to 04-01T00:00+02:00 = 03-31T22:00Z, 31 x 24 - 1 h.
        ("2026-03", utc_ms(2026, 2, 28, 23), utc_ms(2026, 3, 31, 22), 743),
        # 2026-10-01T00:00+02:00 = 09-30T22:00Z to 11-01T00:00+01:00 = 10-31T23:00Z: 31 x 24 + 1 h.
        ("2026-10", utc_ms(2026, 9, 30, 22), utc_ms(2026, 10, 31, 23), 745),
    ],
)
def test_period_of_in_a_zone_with_dst(name: str, start: int, end: int, hours: int) -> None:
    period = period_of(name, "Europe/Berlin")
    assert (period.start_ms, period.end_ms, period.end_ms - period.start_ms) == (start, end, hours * H)


def test_consecutive_periods_meet() -> None:
    months = [f"2026-{m:02d}" for m in range(1, 13)] + ["2027-01"]
    periods = [period_of(m, ZONE) for m in months]
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(periods))
    # 2026 has 365 days of 24 h (no DST in Jakarta).
    assert periods[-1].start_ms - periods[0].start_ms == 365 * 24 * H


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("2026-13", "'2026-13'"),
        ("2026-00", "'2026-00'"),
        ("1999-12", "'1999-12'"),
        ("2100-01", "'2100-01'"),
        ("2026-1", "'2026-1'"),
        ("26-11", "'26-11'"),
        ("2026/11", "'2026/11'"),
        ("2026-11-01", "'2026-11-01'"),
        (" 2026-11", "' 2026-11'"),
        ("2026-11\n", "'2026-11\\n'"),  # a trailing newline ($ would match before it): refused, shown escaped
        ("2026-11\x00", "'2026-11\\x00'"),
        ("", "''"),
        (202611, "'202611'"),  # not text at all
        (None, "'None'"),
        ("2026-11' OR '1'='1' --", "'2026-11' OR '1'='1' '"),  # hostile: shown cut to 20 characters
    ],
)
def test_a_bad_period_is_refused_naming_it(name: object, shown: str) -> None:
    message = f"period {shown} is not a month YYYY-MM between 2000-01 and 2099-12"
    with pytest.raises(PeriodError, match=f"^{re.escape(message)}$"):
        period_of(name, ZONE)  # type: ignore[arg-type]


def test_an_oversize_period_is_refused_with_a_short_message() -> None:
    with pytest.raises(PeriodError) as caught:
        period_of("2026-11" * 100_000, ZONE)
    # The first 20 characters only.
    assert str(caught.value) == "period '2026-112026-112026-1' is not a month YYYY-MM between 2000-01 and 2099-12"


def test_a_period_with_non_ascii_digits_is_refused() -> None:
    with pytest.raises(PeriodError):
        period_of("20\u0662\u0666-11", ZONE)  # ARABIC-INDIC DIGIT TWO, SIX


def test_a_bad_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="'Asia/Nowhere' is not an IANA time zone"):
        period_of("2026-11", "Asia/Nowhere")


# --- category_of ------------------------------------------------------------------------------------------------

# Stop reason 7 is no material (the tenant's), 3 is a breakdown (the machine's); any other reason is what STOPPED is.
LOSSES = LossMap(version="t-1", stop_reasons={7: "no_material", 3: "breakdown"})
# A site that books plain STOPPED as "other" but stop reason 3 as a breakdown.
OTHER = LossMap(version="t-2", states={"STOPPED": "other"}, stop_reasons={3: "breakdown", 7: "no_material"})


def piece(state: str, stop_reason: int | None = None, stop_ms: int = 0, duration_ms: int = 1000) -> Piece:
    return Piece("cnc-01", 0, state, None, 1001, None, stop_reason, stop_ms, duration_ms)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("RUNNING", Category.RUNNING),
        ("SETUP", Category.SETUP),
        ("IDLE", Category.IDLE),
        ("OFF", Category.OFF),
        ("MAINTENANCE", Category.MAINTENANCE),
        ("UNKNOWN", Category.UNKNOWN),
        ("EXPLODED", Category.UNKNOWN),  # a state the timeline does not know is no data
    ],
)
def test_category_of_each_state(state: str, expected: Category) -> None:
    assert category_of(piece(state), LOSSES) == expected
    assert category_of(piece(state), OTHER) == expected


@pytest.mark.parametrize("stop_ms", [1000, 120_000, 120_001, 10 * H])  # microstop or not: the same category
@pytest.mark.parametrize(
    ("loss_map", "stop_reason", "expected"),
    [
        (LOSSES, 3, Category.BREAKDOWN),  # the reason is a breakdown
        (LOSSES, 7, Category.STOPPED),  # no material: stopped, not the machine's fault
        (LOSSES, 12, Category.BREAKDOWN),  # a reason not mapped: STOPPED's category, breakdown by default
        (LOSSES, None, Category.BREAKDOWN),  # no reason: STOPPED's category
        (LOSSES, 0, Category.BREAKDOWN),
        (OTHER, 3, Category.BREAKDOWN),  # a breakdown reason even where STOPPED is "other"
        (OTHER, 7, Category.STOPPED),
        (OTHER, 12, Category.STOPPED),  # STOPPED is "other" there
        (OTHER, None, Category.STOPPED),
    ],
)
def test_category_of_stopped_time(loss_map: LossMap, stop_reason: int | None, expected: Category, stop_ms: int) -> None:
    assert category_of(piece("STOPPED", stop_reason, stop_ms), loss_map) == expected


def test_a_microstop_is_speed_loss_in_oee_and_still_the_machines_fault_in_billing() -> None:
    short = piece("STOPPED", 3, stop_ms=1000)
    assert LOSSES.loss(short) == "microstops"
    assert category_of(short, LOSSES) == Category.BREAKDOWN


# --- machine_records --------------------------------------------------------------------------------------------

T0 = utc_ms(2026, 11, 10, 3)  # an hour start in 2026-11 (10:00 in Jakarta)
ACME_BATIK = Owners([BadgeSpan(1001, "acme", 0), BadgeSpan(2001, "batik", 0)])  # 9999: nobody's


def s(sec: float) -> int:
    return T0 + int(sec * 1000)


def sample(sec: float, state: str, badge: int, **values: object) -> tuple[int, Mapping[str, object]]:
    # Every sample carries every shaping signal, so none lapses between samples 2 s apart (max_gap 4 s).
    return (s(sec), {"state": state, "badge": badge, "job": "F-CNC", "stop_reason": 0, **values})


def timeline(
    samples: Sequence[tuple[int, Mapping[str, object]]], end: float, limits: CounterLimits | None = None
) -> Timeline:
    return cut(classify(samples, [], GAP, limits), s(0), s(end))


def records(
    tl: Timeline, site: SiteConfig, owners: Owners = ACME_BATIK, loss_map: LossMap = LOSSES
) -> list[UsageRecord]:
    return machine_records(tl, cnc01(site), owners, loss_map=loss_map, site=site)


def cnc01(site: SiteConfig) -> Machine:
    (machine,) = [m for m in site.machines if m.id == "cnc-01"]
    return machine


def times(record: UsageRecord) -> dict[Category, int]:
    # The record's time covers it exactly, in Category order without zeros.
    assert sum(ms for _, ms in record.time_ms) == record.end_ms - record.start_ms
    assert [c for c, _ in record.time_ms] == [c for c in Category if c in dict(record.time_ms)]
    assert all(ms > 0 for _, ms in record.time_ms)
    return dict(record.time_ms)


# Job F-CNC has an ideal cycle of 2 s on cnc-01 (the example site).
THREE_TENANTS = [
    sample(0, "SETUP", 1001, good_count=0, reject_count=0, energy_kwh=10.0),
    sample(2, "RUNNING", 1001, good_count=0, reject_count=0, energy_kwh=10.0),
    sample(4, "RUNNING", 1001, good_count=1, reject_count=0, energy_kwh=10.25),  # +1 good, +0.25 kWh
    sample(6, "STOPPED", 1001, stop_reason=7, good_count=2, reject_count=1, energy_kwh=10.2509765625),  # +2^-10 kWh
    sample(8, "STOPPED", 1001, stop_reason=3, good_count=2, reject_count=1, energy_kwh=10.2509765625),
    sample(10, "IDLE", 0, good_count=2, reject_count=1, energy_kwh=10.2509765625),  # acme logs out
    sample(12, "RUNNING", 2001, good_count=2, reject_count=1, energy_kwh=10.2509765625),
    sample(14, "RUNNING", 2001, good_count=3, reject_count=1, energy_kwh=10.5),  # +1 good, +0.2490234375 kWh
    sample(16, "IDLE", 9999, good_count=3, reject_count=1, energy_kwh=10.5),  # a badge nobody owns
    sample(18, "RUNNING", 9999, good_count=3, reject_count=1, energy_kwh=10.5),
    sample(20, "IDLE", 0, good_count=9, reject_count=1, energy_kwh=11.0),
]


def test_one_record_per_owned_session(example_site: SiteConfig) -> None:
    acme, batik = records(timeline(THREE_TENANTS, 30), example_site)
    # acme [0, 10): SETUP 0..2, RUNNING 2..6, STOPPED for no material 6..8, STOPPED for a breakdown 8..10.
    # Increments at 4 s (+1 good, +0.25 kWh) and 6 s (+1 good, +1 reject, +2^-10 kWh) belong to RUNNING 2..6.
    # 0.2509765625 kWh = 250.9765625 Wh, rounded: 251 (truncating would give 250).
    # OEE = ideal x good / PBT = 2 s x 2 / 10 s = 0.4 (the stops are 4 s: microstops, APT 8 s, A = 0.8,
    # E = 2 s x 3 / 8 s = 0.75, Q = 2/3; 0.8 x 0.75 x 2/3 = 0.4) = 4000 bp.
    assert acme == UsageRecord(
        id=f"bdg/cnc-01/1001/{s(0)}",
        tenant="acme",
        machine="cnc-01",
        machine_class="cnc-mill-v1",
        badge=1001,
        start_ms=s(0),
        end_ms=s(10),
        time_ms=(
            (Category.RUNNING, 4000),
            (Category.SETUP, 2000),
            (Category.STOPPED, 2000),
            (Category.BREAKDOWN, 2000),
        ),
        good=2,
        reject=1,
        energy_wh=251,
        anomalies=0,
        oee_bp=4000,
    )
    assert times(acme)[Category.BREAKDOWN] == 2000
    # batik [12, 16): RUNNING 12..16; +1 good and 0.2490234375 kWh (249.0234375 Wh -> 249) at 14 s.
    # OEE = 2 s x 1 / 4 s = 0.5 = 5000 bp. The unowned badge 9999 (16..20) makes no record.
    assert (batik.id, batik.tenant, batik.start_ms, batik.end_ms) == (f"bdg/cnc-01/2001/{s(12)}", "batik", s(12), s(16))
    assert (times(batik), batik.good, batik.reject, batik.energy_wh, batik.oee_bp) == (
        {Category.RUNNING: 4000},
        1,
        0,
        249,
        5000,
    )


def test_a_badge_nobody_owns_makes_no_record(example_site: SiteConfig) -> None:
    only_acme = records(timeline(THREE_TENANTS, 30), example_site, Owners([BadgeSpan(1001, "acme", 0)]))
    assert [(r.tenant, r.badge) for r in only_acme] == [("acme", 1001)]
    assert records(timeline(THREE_TENANTS, 30), example_site, Owners()) == []


def test_the_loss_map_decides_what_stopped_time_is(example_site: SiteConfig) -> None:
    # The example site's own map: STOPPED is a breakdown whatever the reason (no reason mapped).
    default = LossMap(version="default-1")
    acme = records(timeline(THREE_TENANTS, 30), example_site, loss_map=default)[0]
    assert times(acme) == {Category.RUNNING: 4000, Category.SETUP: 2000, Category.BREAKDOWN: 4000}


# One badge, then silence: samples at 0, 1, 2 s hold to 6 s; nothing until 20 s; 20, 21 s hold to 25 s.
GAPPED = [
    sample(0, "RUNNING", 1001, good_count=0, energy_kwh=1.0),
    sample(1, "RUNNING", 1001, good_count=1, energy_kwh=1.125),
    sample(2, "RUNNING", 1001, good_count=2, energy_kwh=1.25),
    sample(20, "RUNNING", 1001, good_count=9, energy_kwh=3.0),  # +7 good, +1.75 kWh across UNKNOWN: unattributed
    sample(21, "RUNNING", 1001, good_count=10, energy_kwh=3.0078125),
]


def test_sessions_separated_only_by_unknown_time_are_one_record(example_site: SiteConfig) -> None:
    (one,) = records(timeline(GAPPED, 30), example_site)
    # Sessions [0, 6) and [20, 25): one record [0, 25), RUNNING 6 + 5 = 11 s, the gap 6..20 UNKNOWN (14 s).
    assert (one.id, one.start_ms, one.end_ms) == (f"bdg/cnc-01/1001/{s(0)}", s(0), s(25))
    assert times(one) == {Category.RUNNING: 11_000, Category.UNKNOWN: 14_000}
    # Parts and energy of the sessions only: 2 + 1 good; 0.25 + 2^-7 kWh = 257.8125 Wh -> 258.
    assert (one.good, one.reject, one.energy_wh) == (3, 0, 258)
    # OEE by session time: 2 s x 2 / 6 s = 2/3 over 6 s, 2 s x 1 / 5 s = 0.4 over 5 s;
    # (2/3 x 6 + 0.4 x 5) / 11 = (4 + 2) / 11 = 0.545454... = 5455 bp.
    assert one.oee_bp == 5455


@pytest.mark.parametrize(
    "between",
    [
        pytest.param([sample(10, "IDLE", 0)], id="badge-0-inside-the-gap"),
        pytest.param([sample(10, "IDLE", 2001)], id="another-tenant-inside-the-gap"),
        pytest.param([sample(10, "IDLE", 9999)], id="an-unowned-badge-inside-the-gap"),
    ],
)
def test_a_known_stretch_between_sessions_keeps_them_apart(
    example_site: SiteConfig, between: list[tuple[int, Mapping[str, object]]]
) -> None:
    # 10 s holds to 14 s: known time [10, 14) between UNKNOWN [6, 10) and [14, 20).
    got = [r for r in records(timeline([*GAPPED[:3], *between, *GAPPED[3:]], 30), example_site) if r.badge == 1001]
    assert [(r.start_ms, r.end_ms, times(r)) for r in got] == [
        (s(0), s(6), {Category.RUNNING: 6000}),
        (s(20), s(25), {Category.RUNNING: 5000}),
    ]


def test_sessions_with_badge_0_between_are_not_merged(example_site: SiteConfig) -> None:
    samples = [
        sample(0, "RUNNING", 1001),
        sample(1, "RUNNING", 1001),
        sample(2, "IDLE", 0),
        sample(3, "IDLE", 0),
        sample(4, "RUNNING", 1001),
    ]
    got = records(timeline(samples, 30), example_site)
    # [0, 2) and [4, 8): the last sample holds 4 s.
    assert [(r.id, r.start_ms, r.end_ms) for r in got] == [
        (f"bdg/cnc-01/1001/{s(0)}", s(0), s(2)),
        (f"bdg/cnc-01/1001/{s(4)}", s(4), s(8)),
    ]


def test_a_transfer_inside_the_gap_keeps_the_records_apart(example_site: SiteConfig) -> None:
    moved = Owners([BadgeSpan(1001, "acme", 0, s(10)), BadgeSpan(1001, "batik", s(10))])
    got = records(timeline(GAPPED, 30), example_site, moved)
    assert [(r.tenant, r.start_ms, r.end_ms, times(r), r.good) for r in got] == [
        ("acme", s(0), s(6), {Category.RUNNING: 6000}, 2),
        ("batik", s(20), s(25), {Category.RUNNING: 5000}, 1),
    ]


def test_a_badge_lent_and_returned_inside_the_gap_is_not_merged(example_site: SiteConfig) -> None:
    # acme's, batik's for [10, 12), acme's again: acme's two sessions are apart, though nobody used it in between.
    lent = Owners(
        [BadgeSpan(1001, "acme", 0, s(10)), BadgeSpan(1001, "batik", s(10), s(12)), BadgeSpan(1001, "acme", s(12))]
    )
    got = records(timeline(GAPPED, 30), example_site, lent)
    assert [(r.tenant, r.start_ms, r.end_ms) for r in got] == [("acme", s(0), s(6)), ("acme", s(20), s(25))]


def test_a_validity_ending_inside_the_gap_leaves_the_first_record_only(example_site: SiteConfig) -> None:
    ended = Owners([BadgeSpan(1001, "acme", 0, s(10))])
    got = records(timeline(GAPPED, 30), example_site, ended)
    assert [(r.tenant, r.start_ms, r.end_ms, times(r)) for r in got] == [("acme", s(0), s(6), {Category.RUNNING: 6000})]


def test_a_session_across_a_transfer_is_two_records(example_site: SiteConfig) -> None:
    samples = [sample(k, "RUNNING", 1001, good_count=k) for k in range(7)]
    moved = Owners([BadgeSpan(1001, "acme", 0, s(3)), BadgeSpan(1001, "batik", s(3))])
    got = records(timeline(samples, 30), example_site, moved)
    # Increments at 1, 2, 3 s happened before 3 s (acme's); at 4, 5, 6 s after (batik's). Batik's holds to 10 s.
    assert [(r.id, r.tenant, r.start_ms, r.end_ms, r.good) for r in got] == [
        (f"bdg/cnc-01/1001/{s(0)}", "acme", s(0), s(3), 3),
        (f"bdg/cnc-01/1001/{s(3)}", "batik", s(3), s(10), 3),
    ]


def test_back_to_back_spans_of_one_tenant_leave_one_record(example_site: SiteConfig) -> None:
    samples = [sample(k, "RUNNING", 1001) for k in range(7)]
    renewed = Owners([BadgeSpan(1001, "acme", 0, s(3)), BadgeSpan(1001, "acme", s(3))])
    got = records(timeline(samples, 30), example_site, renewed)
    assert [(r.tenant, r.start_ms, r.end_ms) for r in got] == [("acme", s(0), s(10))]


# Limits of 1 part a second (+1 slack): a jump of 1000 parts in 1 s is an anomaly, never counted.
LIMITS = CounterLimits({"good_count": 3600.0})


def test_anomalies_are_counted_for_the_records_badge_only(example_site: SiteConfig) -> None:
    samples = [
        sample(0, "RUNNING", 1001, good_count=0),
        sample(1, "RUNNING", 1001, good_count=1000),  # anomaly, logged in just before: 1001
        sample(2, "RUNNING", 1001, good_count=1),  # +1 from 0 in 2 s: counted
        sample(3, "RUNNING", 2001, good_count=2),  # +1, badge 1001 just before: acme's; batik logs in
        sample(4, "RUNNING", 2001, good_count=5000),  # anomaly of 2001
        sample(5, "RUNNING", 2001, good_count=6000),  # anomaly of 2001 (+5998 from 2 in 2 s)
        sample(6, "IDLE", 0, good_count=3),  # +1 from 2 in 3 s: counted, batik's (2001 just before)
        sample(7, "IDLE", 0, good_count=8000),  # anomaly of badge 0: nobody's record
    ]
    tl = timeline(samples, 30, LIMITS)
    assert [(a.ts_ms, a.badge) for a in tl.anomalies] == [(s(1), 1001), (s(4), 2001), (s(5), 2001), (s(7), 0)]
    got = records(tl, example_site)
    assert [(r.tenant, r.start_ms, r.end_ms, r.good, r.anomalies) for r in got] == [
        ("acme", s(0), s(3), 2, 1),
        ("batik", s(3), s(6), 1, 2),
    ]


def test_energy_is_rounded_to_whole_wh(example_site: SiteConfig) -> None:
    # Dyadic steps, so every sum is exact: 2^-11 kWh = 0.48828125 Wh -> 0; 2^-11 + 2^-10 = 1.46484375 Wh -> 1;
    # 2^-11 + 2^-10 + 2^-9 = 3.41796875 Wh -> 3; 0.5 + 0.25 kWh = 750 Wh.
    def wh(*steps: float) -> int:
        readings, total = [], 1.0
        for k, step in enumerate([0.0, *steps]):
            total += step
            readings.append(sample(k, "RUNNING", 1001, energy_kwh=total))
        (record,) = records(timeline(readings, 30), example_site)
        return record.energy_wh

    assert wh(2**-11) == 0
    assert wh(2**-11, 2**-10) == 1
    assert wh(2**-11, 2**-10, 2**-9) == 3
    assert wh(0.5, 0.25) == 750


def test_a_job_without_its_own_ideal_cycle_is_scored_against_the_machines(example_site: SiteConfig) -> None:
    # cnc-01's ideal cycle is 45 s: 45 s x 2 good / 6 s = 15 (effectiveness far above 100 %: flagged, not capped).
    samples = [sample(k, "RUNNING", 1001, job="NOPE", good_count=k) for k in range(3)]
    (record,) = records(timeline(samples, 30), example_site)
    assert (record.good, record.oee_bp) == (2, 150_000)


def test_no_oee_for_a_session_without_production_time(example_site: SiteConfig) -> None:
    # IDLE for all of it: APT 0, so effectiveness (and with it OEE) is None, never 0 or NaN.
    (record,) = records(timeline([sample(k, "IDLE", 1001) for k in range(3)], 30), example_site)
    assert (dict(record.time_ms), record.oee_bp) == ({Category.IDLE: 6000}, None)


def test_an_empty_timeline_has_no_records(example_site: SiteConfig) -> None:
    assert records(timeline([], 30), example_site) == []
    assert records(timeline([sample(0, "RUNNING", 0)], 30), example_site) == []


# --- capacities -------------------------------------------------------------------------------------------------

NOVEMBER = period_of("2026-11", ZONE)


def test_capacity_of_the_example_site(example_site: SiteConfig) -> None:
    # Three 8 h shifts every day, 06-14, 14-22, 22-06: 24 h a day x 30 days = 720 h per machine. The night shift
    # of 31 Oct runs 00:00-06:00 into November (counted); that of 30 Nov 22:00-24:00 in it (the rest is December's).
    got = capacities(example_site, NOVEMBER.start_ms, NOVEMBER.end_ms)
    assert got == tuple(Capacity(m.id, 720 * H) for m in example_site.machines)
    assert len(got) == 5


def with_calendar(site: SiteConfig, **calendar: object) -> SiteConfig:
    spec = {**site.calendar.model_dump(), **calendar}
    return SiteConfig.model_validate({**site.model_dump(), "calendar": spec})


@pytest.mark.parametrize(
    ("holiday", "hours"),
    [
        # A holiday cancels the shifts that start on it: 06-14, 14-22 and 22-06 into the next day, 24 h.
        (date(2026, 11, 17), 720 - 24),
        # On the month's last day the night shift starting then has only 22-24 in November: 8 + 8 + 2 = 18 h.
        (date(2026, 11, 30), 720 - 18),
        # A holiday the day before the month: only its night shift reaches November (00-06 on 1 Nov), 6 h.
        (date(2026, 10, 31), 720 - 6),
        (date(2026, 12, 1), 720),  # after the month: nothing of it lies in November
    ],
)
def test_capacity_with_a_holiday(example_site: SiteConfig, holiday: date, hours: int) -> None:
    site = with_calendar(example_site, holidays=[holiday.isoformat()])
    assert capacities(site, NOVEMBER.start_ms, NOVEMBER.end_ms) == tuple(
        Capacity(m.id, hours * H) for m in site.machines
    )


def test_capacity_without_a_calendar_is_every_hour(example_site: SiteConfig) -> None:
    site = SiteConfig.model_validate({**example_site.model_dump(), "calendar": {}})
    assert {c.capacity_ms for c in capacities(site, NOVEMBER.start_ms, NOVEMBER.end_ms)} == {720 * H}


def test_capacity_across_a_dst_change(example_site: SiteConfig) -> None:
    # The same three shifts in Europe/Berlin: October 2026 is 745 h long (25 Oct has 25 h, its night shift 9 h).
    berlin = example_site.model_dump()
    berlin["site"]["timezone"] = "Europe/Berlin"
    site = SiteConfig.model_validate(berlin)
    october = period_of("2026-10", "Europe/Berlin")
    assert {c.capacity_ms for c in capacities(site, october.start_ms, october.end_ms)} == {745 * H}


def test_capacity_without_planned_downtime(example_site: SiteConfig) -> None:
    site = with_calendar(
        example_site,
        downtime=[{"machines": ["cnc-01"], "start": "2026-11-03T08:00:00+07:00", "end": "2026-11-03T12:00:00+07:00"}],
    )
    got = dict((c.machine, c.capacity_ms) for c in capacities(site, NOVEMBER.start_ms, NOVEMBER.end_ms))
    assert got == {"cnc-01": 716 * H, "cnc-02": 720 * H, "laser-01": 720 * H, "press-01": 720 * H, "brake-01": 720 * H}


def test_capacity_of_a_day_shift_week(example_site: SiteConfig) -> None:
    # Mon-Fri 07:00-16:00 with a 45 min lunch: 8.25 h a day. November 2026 has 21 weekdays (1 Nov is a Sunday:
    # weekends 1, 7-8, 14-15, 21-22, 28-29 = 9 days; 30 - 9 = 21). 21 x 8.25 h = 173.25 h.
    site = with_calendar(
        example_site,
        shifts=[
            {
                "name": "day",
                "start": "07:00",
                "end": "16:00",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "breaks": [{"start": "12:00", "end": "12:45"}],
            }
        ],
    )
    got = capacities(site, NOVEMBER.start_ms, NOVEMBER.end_ms)
    assert {c.capacity_ms for c in got} == {21 * (8 * H + H // 4)}


# --- lagging ----------------------------------------------------------------------------------------------------

GRACE_MIN = 30
MARK = NOVEMBER.end_ms + GRACE_MIN * 60_000  # 2026-11-30T17:30Z


def telemetry(site: str, machine: str, ts_ms: int) -> Point:
    return Point(TELEMETRY, {"site": site, "machine": machine}, {"state": "RUNNING"}, ts_ms)


def test_lagging_machines_are_those_not_past_the_watermark(example_site: SiteConfig) -> None:
    assert utc_ms(2026, 11, 30, 17, 30) == MARK
    store = MemoryStore()
    store.write(
        [
            telemetry("bdg", "cnc-01", NOVEMBER.end_ms - H),  # data in the period ...
            telemetry("bdg", "cnc-01", MARK + 60_000),  # ... and after end + grace: done
            telemetry("bdg", "cnc-02", NOVEMBER.end_ms + 60_000),  # after the end, within the grace: lagging
            telemetry("bdg", "cnc-02", MARK - 1),
            telemetry("bdg", "laser-01", MARK),  # at the watermark itself: done
            telemetry("bdg", "press-01", NOVEMBER.end_ms - 1),  # only data in the period: lagging
            telemetry("other", "brake-01", MARK + H),  # another site's machine of the same id does not count
        ]
    )
    assert lagging(store, example_site, NOVEMBER, GRACE_MIN) == [
        Lag("cnc-02", MARK - 1),
        Lag("press-01", NOVEMBER.end_ms - 1),
        Lag("brake-01", None),  # no data at all
    ]
    # Without grace the watermark is the period's end: cnc-02 is past it now.
    assert [lag.machine for lag in lagging(store, example_site, NOVEMBER, 0)] == ["press-01", "brake-01"]


def test_a_status_past_the_watermark_counts_as_data(example_site: SiteConfig) -> None:
    # press-01's PLC went unreachable before the period ended; its agent kept saying so past the watermark: the
    # agent has reported all there is of November for it. brake-01's newest status is inside the grace: lagging.
    store = MemoryStore()
    store.write(
        [telemetry("bdg", m.id, MARK + 1) for m in example_site.machines if m.id not in ("press-01", "brake-01")]
    )
    store.write(
        [
            telemetry("bdg", "press-01", NOVEMBER.end_ms - H),
            Point(MACHINE_STATUS, {"site": "bdg", "machine": "press-01"}, {"status": "unreachable"}, MARK + 5_000),
            Point(MACHINE_STATUS, {"site": "bdg", "machine": "brake-01"}, {"status": "unreachable"}, MARK - 5_000),
        ]
    )
    assert lagging(store, example_site, NOVEMBER, GRACE_MIN) == [Lag("brake-01", MARK - 5_000)]


def test_nothing_lags_once_every_machine_is_past_the_watermark(example_site: SiteConfig) -> None:
    store = MemoryStore()
    store.write([telemetry("bdg", m.id, MARK + 1) for m in example_site.machines])
    assert lagging(store, example_site, NOVEMBER, GRACE_MIN) == []
    # The next period is another matter: December's watermark is far ahead.
    assert len(lagging(store, example_site, period_of("2026-12", ZONE), GRACE_MIN)) == 5
