"""Charging: one hand-computed invoice per rule (api.core.billing.charging's docstring), the arithmetic in comments."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core.billing.charging import FACILITY, BillingError, Inputs, charge, rupiah, tariff_at
from api.core.billing.model import (
    Booking,
    Capacity,
    Category,
    Charges,
    CostPool,
    Line,
    LineKind,
    Policy,
    PoolCategory,
    Tariff,
    UsageRecord,
)
from api.core.billing.money import split, tax

S = 1000
MIN = 60_000
H = 3_600_000
P0 = 1_735_664_400_000  # 2025-01-01 00:00 Asia/Jakarta
P1 = P0 + 31 * 24 * H
D = P0 + 9 * 24 * H  # 2025-01-10 00:00, a day to put sessions in
RUN, SETUP, IDLE, STOP, BRK, OFF, UNK = (
    Category.RUNNING,
    Category.SETUP,
    Category.IDLE,
    Category.STOPPED,
    Category.BREAKDOWN,
    Category.OFF,
    Category.UNKNOWN,
)


def at(hh: int, mm: int = 0, ss: int = 0, ms: int = 0) -> int:
    return D + hh * H + mm * MIN + ss * S + ms


def rec(
    start: int,
    *times: tuple[Category, int],
    tenant: str = "acme",
    machine: str = "cnc-01",
    machine_class: str = "mill",
    badge: int = 7,
    end: int | None = None,
    good: int = 0,
    reject: int = 0,
    energy_wh: int = 0,
    anomalies: int = 0,
) -> UsageRecord:
    """A record of the given time per category (in Category order), lasting exactly that long unless end is given."""
    ordered = tuple(sorted(times, key=lambda cm: list(Category).index(cm[0])))
    stop = start + sum(ms for _, ms in ordered) if end is None else end
    return UsageRecord(
        id=f"{machine}/{badge}/{start}",
        tenant=tenant,
        machine=machine,
        machine_class=machine_class,
        badge=badge,
        start_ms=start,
        end_ms=stop,
        time_ms=ordered,
        good=good,
        reject=reject,
        energy_wh=energy_wh,
        anomalies=anomalies,
    )


def mill(**kw: object) -> Tariff:
    """The class tariff of mills: Rp 60 000/h, PPN 11 %, minute increments, no minimum, valid all period."""
    base = Tariff(
        code="mill",
        version=1,
        machine=None,
        machine_class="mill",
        valid_from_ms=P0 - 365 * 24 * H,
        valid_to_ms=None,
        rate_per_hour=60_000,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def inputs(
    records: tuple[UsageRecord, ...] = (),
    *,
    bookings: tuple[Booking, ...] = (),
    tariffs: tuple[Tariff, ...] | None = None,
    pools: tuple[CostPool, ...] = (),
    capacity: tuple[Capacity, ...] = (),
    policy: Policy = Policy.CAPACITY,
    machine_classes: tuple[tuple[str, str], ...] = (("cnc-01", "mill"), ("cnc-02", "mill")),
) -> Inputs:
    return Inputs(
        period="2025-01",
        period_start_ms=P0,
        period_end_ms=P1,
        records=records,
        bookings=bookings,
        tariffs=(mill(),) if tariffs is None else tariffs,
        pools=pools,
        capacity=capacity,
        policy=policy,
        loss_map_version="loss-map@3",
        machine_classes=machine_classes,
    )


def of(charges: Charges, kind: LineKind, tenant: str | None = None) -> list[Line]:
    return [x for x in charges.lines if x.kind == kind and (tenant is None or x.tenant == tenant)]


def only(charges: Charges, kind: LineKind, tenant: str | None = None) -> Line:
    found = of(charges, kind, tenant)
    assert len(found) == 1, found
    return found[0]


# --- rule 3: machine time, increment and minimum ------------------------------------------------------------------


def test_increment_rounds_billable_time_up() -> None:
    # 47 min 12 s running -> 48 whole minutes -> 5 min increments: 50 min. 60 000 x 50 / 60 = Rp 50 000,
    # PPN 11 % = 5 500.
    c = charge(inputs((rec(at(10), (RUN, 47 * MIN + 12 * S)),), tariffs=(mill(increment_min=5),)))
    line = only(c, LineKind.MACHINE_TIME)
    assert (line.quantity, line.unit, line.unit_price, line.amount, line.tax) == (50, "min", 60_000, 50_000, 5_500)
    assert line.tariff == "mill@1" and line.record == f"cnc-01/7/{at(10)}"
    assert line.note == "47 min 12 s billable (running) -> 50 min; 5 min increments, no minimum"


@pytest.mark.parametrize(
    ("running_ms", "minutes"),
    [
        (45 * MIN, 45),  # exactly 45 min: already a multiple of 5
        (45 * MIN + 1, 50),  # one ms more -> 46 whole minutes -> 50
        (1, 5),  # 1 ms -> 1 minute -> 5
    ],
)
def test_increment_edges(running_ms: int, minutes: int) -> None:
    c = charge(inputs((rec(at(10), (RUN, running_ms)),), tariffs=(mill(increment_min=5),)))
    assert only(c, LineKind.MACHINE_TIME).quantity == minutes


def test_minimum_applies_only_to_a_session_with_billable_time() -> None:
    # 10 min running -> 6 min increments: 12 -> minimum 30: 30 min, Rp 30 000.
    # The second session was OFF only (not billable in this tariff): 0 min, no minimum, but still listed.
    t = mill(increment_min=6, minimum_min=30, billable=frozenset({RUN, SETUP, IDLE}))
    c = charge(inputs((rec(at(10), (RUN, 10 * MIN)), rec(at(14), (OFF, 20 * MIN))), tariffs=(t,)))
    first, second = of(c, LineKind.MACHINE_TIME)
    assert (first.quantity, first.amount, first.tax) == (30, 30_000, 3_300)
    assert first.note == "10 min billable (running) -> 30 min; 6 min increments, minimum 30 min"
    assert (second.quantity, second.amount, second.tax) == (0, 0, 0)
    assert second.note == "0 min billable (none) -> 0 min; 6 min increments, minimum 30 min; not billed: off 20 min"


# --- rule 2: breakdown and unknown are never billed ---------------------------------------------------------------


def test_breakdown_time_is_not_billed() -> None:
    # 30 min running + 20 min breakdown: 30 min billed, Rp 30 000; the 20 min are shown, not billed.
    c = charge(inputs((rec(at(10), (RUN, 30 * MIN), (BRK, 20 * MIN)),)))
    line = only(c, LineKind.MACHINE_TIME)
    assert (line.quantity, line.amount) == (30, 30_000)
    assert line.end_ms - line.start_ms == 50 * MIN
    assert "not billed: breakdown 20 min" in line.note


def test_unknown_time_is_not_billed() -> None:
    # setup 10 + unknown 15 + idle 5: 15 min billed (setup, idle), Rp 15 000.
    c = charge(inputs((rec(at(10), (SETUP, 10 * MIN), (IDLE, 5 * MIN), (UNK, 15 * MIN)),)))
    line = only(c, LineKind.MACHINE_TIME)
    assert (line.quantity, line.amount, line.tax) == (15, 15_000, 1_650)
    assert (
        line.note == "15 min billable (setup, idle) -> 15 min; 1 min increments, no minimum; not billed: unknown 15 min"
    )


@pytest.mark.parametrize("never", [BRK, UNK])
def test_a_tariff_that_bills_breakdown_or_unknown_is_refused(never: Category) -> None:
    t = mill(billable=frozenset({RUN, never}))
    with pytest.raises(BillingError, match=rf"tariffs\[0\] \(mill@1\): {never.value} time is never billable"):
        charge(inputs((rec(at(10), (RUN, MIN)),), tariffs=(t,)))


# --- rule 4: bookings -------------------------------------------------------------------------------------------


def booking(start: int, end: int, *, id: int = 1, tenant: str = "acme", machine: str = "cnc-01") -> Booking:
    return Booking(id=id, tenant=tenant, machine=machine, start_ms=start, end_ms=end)


def test_max_booked_actual_bills_the_booked_time_not_used() -> None:
    # Booked 10:00-12:00 (120 min). Session 10:05-11:05: 50 min running + 10 min breakdown.
    # Breakdown inside the booking is the facility's: booked = 120 - 10 = 110 min. Used 50 min.
    # BOOKED_MINIMUM = 110 - 50 = 60 min at Rp 60 000/h = Rp 60 000, PPN 6 600.
    t = mill(max_booked_actual=True)
    c = charge(
        inputs(
            (rec(at(10, 5), (RUN, 50 * MIN), (BRK, 10 * MIN)),),
            bookings=(booking(at(10), at(12), id=41),),
            tariffs=(t,),
        )
    )
    assert only(c, LineKind.MACHINE_TIME).amount == 50_000
    line = only(c, LineKind.BOOKED_MINIMUM)
    assert (line.quantity, line.unit_price, line.amount, line.tax) == (60, 60_000, 60_000, 6_600)
    assert (line.start_ms, line.end_ms, line.record) == (at(10), at(12), "booking/41")
    assert line.note == (
        "booked 2 h less 10 min breakdown/unknown -> 110 min (1 min increments); used 50 min; "
        "the difference is billed (max(booked, actual))"
    )
    assert c.totals[0].subtotal == 110_000  # 50 000 + 60 000: 110 min in all, the booked time less the breakdown


def test_breakdown_counts_inside_the_booking_only_as_far_as_the_session_overlaps_it() -> None:
    # Booked 10:00-12:00. Session 11:30-12:30: 20 min running, 40 min breakdown. It overlaps the booking 30 min,
    # so at most 30 of the 40 breakdown minutes lie inside it: booked = 120 - 30 = 90 min; used 20 -> 70 min.
    c = charge(
        inputs(
            (rec(at(11, 30), (RUN, 20 * MIN), (BRK, 40 * MIN)),),
            bookings=(booking(at(10), at(12)),),
            tariffs=(mill(max_booked_actual=True),),
        )
    )
    assert only(c, LineKind.BOOKED_MINIMUM).quantity == 70


def test_max_booked_actual_rounds_booked_time_to_the_increment() -> None:
    # Booked 10:00-10:47 (47 min), 6 min increments: booked -> 48. Session 10:00-10:20 running: 20 -> 24 min.
    # BOOKED_MINIMUM = 48 - 24 = 24 min -> Rp 24 000.
    c = charge(
        inputs(
            (rec(at(10), (RUN, 20 * MIN)),),
            bookings=(booking(at(10), at(10, 47)),),
            tariffs=(mill(max_booked_actual=True, increment_min=6),),
        )
    )
    assert only(c, LineKind.MACHINE_TIME).quantity == 24
    line = only(c, LineKind.BOOKED_MINIMUM)
    assert (line.quantity, line.amount) == (24, 24_000)


def test_no_booked_minimum_when_use_reaches_the_booking() -> None:
    # Booked 60 min, used 61 min: actual wins, no extra line.
    c = charge(
        inputs(
            (rec(at(10), (RUN, 61 * MIN)),),
            bookings=(booking(at(10), at(11)),),
            tariffs=(mill(max_booked_actual=True),),
        )
    )
    assert of(c, LineKind.BOOKED_MINIMUM) == []
    assert of(c, LineKind.NO_SHOW) == []


def test_a_session_spanning_two_bookings_counts_once() -> None:
    # Bookings 08:00-10:00 and 10:00-12:00; one session 09:30-10:30 (60 min) overlaps each by 30 min, so its
    # minutes are shared 30/30. Each booking: 120 - 30 = 90 min extra. Billed 60 + 90 + 90 = 240 min = booked.
    c = charge(
        inputs(
            (rec(at(9, 30), (RUN, 60 * MIN)),),
            bookings=(booking(at(8), at(10), id=1), booking(at(10), at(12), id=2)),
            tariffs=(mill(max_booked_actual=True),),
        )
    )
    assert [x.quantity for x in of(c, LineKind.BOOKED_MINIMUM)] == [90, 90]
    assert c.totals[0].subtotal == 240_000


def test_no_show() -> None:
    # Nobody came to booking 9: Rp 25 000 no-show charge, PPN 2 750. Another tenant's session does not attend it.
    t = mill(no_show_charge=25_000)
    c = charge(
        inputs(
            (rec(at(10), (RUN, 30 * MIN), tenant="bravo", badge=8),),
            bookings=(booking(at(10), at(11), id=9),),
            tariffs=(t,),
        )
    )
    line = only(c, LineKind.NO_SHOW, "acme")
    assert (line.quantity, line.unit, line.unit_price, line.amount, line.tax) == (1, "booking", 25_000, 25_000, 2_750)
    assert line.record == "booking/9"
    assert [(x.tenant, x.subtotal, x.tax) for x in c.totals] == [("acme", 25_000, 2_750), ("bravo", 30_000, 3_300)]


def test_no_show_without_a_charge_gives_no_line() -> None:
    c = charge(inputs(bookings=(booking(at(10), at(11)),)))
    assert c.lines == () and c.totals == ()


def test_no_show_under_max_booked_actual_is_charged_once() -> None:
    # Nobody came: the no-show charge (Rp 10 000) is the whole charge, not also the 60 booked minutes.
    c = charge(
        inputs(
            bookings=(booking(at(10), at(11)),),
            tariffs=(mill(no_show_charge=10_000, max_booked_actual=True),),
        )
    )
    assert [(x.kind, x.amount) for x in c.lines] == [(LineKind.NO_SHOW, 10_000)]
    # Without a no-show charge, max(booked, actual) bills the booked hour: 60 min x Rp 60 000 / h = Rp 60 000.
    c = charge(
        inputs(
            bookings=(booking(at(10), at(11)),),
            tariffs=(mill(no_show_charge=0, max_booked_actual=True),),
        )
    )
    assert [(x.kind, x.quantity, x.amount) for x in c.lines] == [(LineKind.BOOKED_MINIMUM, 60, 60_000)]


def test_a_booking_on_a_machine_nobody_used_needs_its_class() -> None:
    bookings = (booking(at(10), at(11), machine="cnc-09"),)
    with pytest.raises(BillingError, match=r"no tariff for machine 'cnc-09' \(class None\) is valid at"):
        charge(inputs(bookings=bookings, tariffs=(mill(no_show_charge=5_000),)))
    c = charge(inputs(bookings=bookings, tariffs=(mill(no_show_charge=5_000),), machine_classes=(("cnc-09", "mill"),)))
    assert only(c, LineKind.NO_SHOW).amount == 5_000


# Grace: a session attends when it overlaps [start - grace, end + grace), half-open. Booking 10:00-11:00, grace
# 10 min: the window is [09:50, 11:10).
GRACE_CASES = [
    (at(9, 40), at(9, 50), False),  # ends exactly at 09:50: touches the window, does not overlap it
    (at(9, 40), at(9, 50, 0, 1), True),  # ends 1 ms later: attends
    (at(11, 10), at(11, 20), False),  # starts exactly at 11:10: outside
    (at(11, 9, 59, 999), at(11, 20), True),  # starts 1 ms before: attends
]


@pytest.mark.parametrize(("start", "end", "attends"), GRACE_CASES)
def test_grace_edge(start: int, end: int, attends: bool) -> None:
    t = mill(grace_min=10, no_show_charge=25_000)
    c = charge(inputs((rec(start, (RUN, end - start)),), bookings=(booking(at(10), at(11)),), tariffs=(t,)))
    assert (of(c, LineKind.NO_SHOW) == []) is attends


# --- rule 5: energy and parts -----------------------------------------------------------------------------------


def test_energy_line() -> None:
    # 12 345 Wh at Rp 1 500/kWh = 18 517.5 -> Rp 18 518 (half away from zero); PPN 11 % = 2 036.98 -> 2 037.
    c = charge(inputs((rec(at(10), (RUN, 60 * MIN), energy_wh=12_345),), tariffs=(mill(energy_per_kwh=1_500),)))
    line = only(c, LineKind.ENERGY)
    assert (line.quantity, line.unit, line.unit_price, line.amount, line.tax) == (12_345, "Wh", 1_500, 18_518, 2_037)
    assert line.note == "12345 Wh at Rp 1.500 per kWh"


def test_no_energy_line_without_a_price_or_energy() -> None:
    c1 = charge(inputs((rec(at(10), (RUN, 60 * MIN), energy_wh=12_345),)))
    c2 = charge(inputs((rec(at(10), (RUN, 60 * MIN)),), tariffs=(mill(energy_per_kwh=1_500),)))
    assert of(c1, LineKind.ENERGY) == [] and of(c2, LineKind.ENERGY) == []


def test_parts_line_bills_good_parts_only() -> None:
    # 812 good x Rp 250 = Rp 203 000, PPN 22 330; 17 rejects and 3 anomalies are shown, not billed.
    c = charge(inputs((rec(at(10), (RUN, 60 * MIN), good=812, reject=17, anomalies=3),), tariffs=(mill(per_part=250),)))
    line = only(c, LineKind.PARTS)
    assert (line.quantity, line.unit, line.amount, line.tax) == (812, "part", 203_000, 22_330)
    assert line.note == "812 good parts at Rp 250 each; not billed: 17 rejects, 3 counter anomalies"
    assert c.totals[0].subtotal == 60_000 + 203_000


# --- rule 6: capacity ---------------------------------------------------------------------------------------------


def pools_3m(machine: str = "cnc-01") -> tuple[CostPool, ...]:
    return (
        CostPool(machine, "2025-01", PoolCategory.DEPRECIATION, 2_000_000),
        CostPool(machine, "2025-01", PoolCategory.MAINTENANCE, 1_000_000),
    )


def two_tenants() -> tuple[UsageRecord, ...]:
    # acme 10 h billable (plus 1 h breakdown, which weighs nothing), bravo 5 h 30 min.
    return (
        rec(at(0), (RUN, 10 * H), (BRK, H)),
        rec(at(12), (RUN, 5 * H), (IDLE, 30 * MIN), tenant="bravo", badge=8),
    )


def test_capacity_policy_leaves_unused_capacity_to_the_facility() -> None:
    # Pool 2 000 000 + 1 000 000 = 3 000 000 over 100 h capacity: rate 30 000/h.
    # Weights: acme 36 000 000 ms, bravo 19 800 000 ms, facility 360 000 000 - 55 800 000 = 304 200 000.
    # acme 3 000 000 x 36/360 = 300 000; bravo 3 000 000 x 19.8/360 = 165 000; facility 2 535 000.
    c = charge(inputs(two_tenants(), pools=pools_3m(), capacity=(Capacity("cnc-01", 100 * H),)))
    acme, bravo = only(c, LineKind.CAPACITY, "acme"), only(c, LineKind.CAPACITY, "bravo")
    assert (acme.quantity, acme.unit_price, acme.amount, acme.tax) == (600, 30_000, 300_000, 33_000)
    assert (bravo.quantity, bravo.amount) == (330, 165_000)
    assert (acme.start_ms, acme.end_ms, acme.record, acme.tariff) == (P0, P1, None, "mill@1")
    assert (
        acme.note
        == "share of cost pool Rp 3.000.000 by billable time (policy capacity); 10 h billable of 100 h capacity"
    )
    (pool,) = c.pools
    assert (pool.machine, pool.pool, pool.capacity_ms, pool.rate_per_hour) == ("cnc-01", 3_000_000, 100 * H, 30_000)
    assert pool.allocated == (("acme", 300_000), ("bravo", 165_000))
    assert pool.unallocated == c.unallocated == 2_535_000


def test_capacity_tie_goes_to_the_facility_first() -> None:
    # Pool 1 000 000, capacity 3 h; acme 1 h, bravo 1 h, facility 1 h: 333 333 each, remainders equal,
    # the 1 rupiah left goes to the smallest key, the facility's "\x00facility".
    records = (rec(at(0), (RUN, H)), rec(at(2), (RUN, H), tenant="bravo", badge=8))
    pools = (CostPool("cnc-01", "2025-01", PoolCategory.SPACE, 1_000_000),)
    c = charge(inputs(records, pools=pools, capacity=(Capacity("cnc-01", 3 * H),)))
    assert c.pools[0].allocated == (("acme", 333_333), ("bravo", 333_333))
    assert c.pools[0].unallocated == 333_334
    assert c.pools[0].rate_per_hour == 333_333  # 1 000 000 x 3 600 000 / 10 800 000 = 333 333.33
    assert split(1_000_000, [("acme", H), ("bravo", H), (FACILITY, H)])[FACILITY] == 333_334


def test_capacity_policy_when_use_exceeds_capacity_recovers_everything() -> None:
    # Capacity 10 h but 15 h 30 min used: facility weight max(0, 10 h - 15.5 h) = 0; all 3 000 000 is shared.
    c = charge(inputs(two_tenants(), pools=pools_3m(), capacity=(Capacity("cnc-01", 10 * H),)))
    assert c.pools[0].unallocated == 0
    assert sum(a for _, a in c.pools[0].allocated) == 3_000_000


def test_full_recovery_spreads_the_whole_pool() -> None:
    # W = 36 000 000 + 19 800 000 = 55 800 000. acme 3 000 000 x 36/55.8 = 1 935 483.87, bravo 1 064 516.13:
    # floors 1 935 483 + 1 064 516 = 2 999 999; the rupiah left goes to the larger remainder (acme).
    c = charge(
        inputs(two_tenants(), pools=pools_3m(), capacity=(Capacity("cnc-01", 100 * H),), policy=Policy.FULL_RECOVERY)
    )
    assert only(c, LineKind.CAPACITY, "acme").amount == 1_935_484
    assert only(c, LineKind.CAPACITY, "bravo").amount == 1_064_516
    assert c.pools[0].unallocated == 0
    assert c.pools[0].rate_per_hour == 30_000  # the printed basis is still pool / capacity
    assert "(policy full_recovery)" in only(c, LineKind.CAPACITY, "acme").note


def test_full_recovery_with_no_use_leaves_the_pool_unallocated() -> None:
    # A breakdown-only session weighs 0; nobody else used cnc-01: the whole 3 000 000 is the facility's.
    c = charge(
        inputs(
            (rec(at(0), (BRK, H)),),
            pools=pools_3m(),
            capacity=(Capacity("cnc-01", 100 * H),),
            policy=Policy.FULL_RECOVERY,
        )
    )
    assert of(c, LineKind.CAPACITY) == []
    assert (c.pools[0].allocated, c.pools[0].unallocated) == ((), 3_000_000)


def test_a_pool_without_capacity_is_refused() -> None:
    with pytest.raises(BillingError, match=r"capacity of machine 'cnc-01': it has a cost pool of Rp 3\.000\.000"):
        charge(inputs(two_tenants(), pools=pools_3m()))
    with pytest.raises(BillingError, match="no capacity"):
        charge(inputs(two_tenants(), pools=pools_3m(), capacity=(Capacity("cnc-01", 0),)))


def test_capacity_line_taxed_by_the_tariff_at_the_period_start_or_first_record() -> None:
    # v1 (PPN 11 %) ends at the period start; v2 (PPN 12 %) starts then: the capacity line uses v2.
    # Pool 300 000 over 10 h, acme 1 h: 30 000, PPN 12 % = 3 600.
    v1 = mill(valid_to_ms=P0)
    v2 = mill(version=2, valid_from_ms=P0, tax_rate_bp=1200)
    pools = (CostPool("cnc-01", "2025-01", PoolCategory.STAFF, 300_000),)
    c = charge(inputs((rec(at(0), (RUN, H)),), tariffs=(v1, v2), pools=pools, capacity=(Capacity("cnc-01", 10 * H),)))
    line = only(c, LineKind.CAPACITY)
    assert (line.amount, line.tax_rate_bp, line.tax, line.tariff) == (30_000, 1200, 3_600, "mill@2")
    # No version valid at the period start (v3 starts on the 5th): the tenant's first record's tariff prices it.
    v3 = mill(version=3, valid_from_ms=P0 + 4 * 24 * H, tax_rate_bp=1000)
    c = charge(inputs((rec(at(0), (RUN, H)),), tariffs=(v3,), pools=pools, capacity=(Capacity("cnc-01", 10 * H),)))
    assert (only(c, LineKind.CAPACITY).tariff, only(c, LineKind.CAPACITY).tax) == ("mill@3", 3_000)


# --- rule 1: which tariff -----------------------------------------------------------------------------------------


def test_tariff_version_change_mid_period_the_record_start_decides() -> None:
    # v1 Rp 60 000/h until 2025-01-10 12:00, v2 Rp 90 000/h from then. A session 11:00-13:00 started under v1:
    # 120 min x 60 000 = 120 000. One at 14:00 for 60 min: 60 min x 90 000 = 90 000.
    v1 = mill(valid_to_ms=at(12))
    v2 = mill(version=2, valid_from_ms=at(12), rate_per_hour=90_000)
    c = charge(inputs((rec(at(11), (RUN, 2 * H)), rec(at(14), (RUN, H))), tariffs=(v2, v1)))
    assert [(x.tariff, x.quantity, x.amount) for x in c.lines] == [("mill@1", 120, 120_000), ("mill@2", 60, 90_000)]


def test_machine_tariff_beats_class_tariff() -> None:
    # cnc-01 has its own Rp 120 000/h; cnc-02 (also a mill) falls back to the class's Rp 60 000/h.
    own = Tariff("cnc01", 1, "cnc-01", None, P0, None, 120_000)
    c = charge(inputs((rec(at(10), (RUN, H)), rec(at(10), (RUN, H), machine="cnc-02")), tariffs=(mill(), own)))
    assert [(x.machine, x.tariff, x.amount) for x in c.lines] == [
        ("cnc-01", "cnc01@1", 120_000),
        ("cnc-02", "mill@1", 60_000),
    ]
    assert tariff_at((mill(), own), "cnc-01", "mill", at(10)) == own


def test_missing_tariff_names_the_machine_and_time() -> None:
    r = rec(at(10), (RUN, H), machine="laser-1", machine_class="laser")
    with pytest.raises(
        BillingError, match=rf"no tariff for machine 'laser-1' \(class 'laser'\) is valid at {at(10)} ms"
    ):
        charge(inputs((r,)))
    # A version ending before the session does not cover it either (valid_to is exclusive).
    with pytest.raises(BillingError, match="no tariff for machine 'cnc-01'"):
        charge(inputs((rec(at(10), (RUN, H)),), tariffs=(mill(valid_to_ms=at(10)),)))


def test_two_versions_valid_at_once_are_refused() -> None:
    v1 = mill()  # open-ended
    v2 = mill(version=2, valid_from_ms=at(0))
    with pytest.raises(BillingError, match=r"mill@1 and mill@2 for machine class 'mill' are valid at the same time"):
        charge(inputs((rec(at(10), (RUN, H)),), tariffs=(v1, v2)))
    # Back to back is fine: [.., 00:00) and [00:00, ..).
    charge(inputs((rec(at(10), (RUN, H)),), tariffs=(mill(valid_to_ms=at(0)), v2)))


# --- rule 7: PPN per line, totals, order --------------------------------------------------------------------------


def test_tax_is_per_line_and_totals_are_sums_of_lines() -> None:
    # Rp 3 000/h: a 1 min session costs 3 000 / 60 = Rp 50, PPN 11 % = 5.5 -> 6. Two of them: subtotal 100,
    # tax 6 + 6 = 12 (not 11 % of 100 = 11: tax is per line).
    c = charge(inputs((rec(at(10), (RUN, MIN)), rec(at(11), (RUN, MIN))), tariffs=(mill(rate_per_hour=3_000),)))
    assert [(x.amount, x.tax) for x in c.lines] == [(50, 6), (50, 6)]
    (totals,) = c.totals
    assert (totals.subtotal, totals.tax, totals.total) == (100, 12, 112)


def test_each_line_keeps_its_own_tariffs_tax_rate() -> None:
    # cnc-01's own tariff has PPN 0 % (exempt), the class's 11 %: Rp 60 000 + 0 and Rp 60 000 + 6 600.
    own = Tariff("cnc01", 1, "cnc-01", None, P0, None, 60_000, tax_rate_bp=0)
    c = charge(inputs((rec(at(10), (RUN, H)), rec(at(10), (RUN, H), machine="cnc-02")), tariffs=(mill(), own)))
    assert [(x.tax_rate_bp, x.tax) for x in c.lines] == [(0, 0), (1100, 6_600)]
    assert c.totals[0].tax == 6_600


def test_lines_sorted_by_tenant_machine_start_kind() -> None:
    t = mill(per_part=10, energy_per_kwh=1_000, no_show_charge=5_000)
    records = (
        rec(at(14), (RUN, H), tenant="bravo", badge=8, good=3),
        rec(at(10), (RUN, H), machine="cnc-02", energy_wh=1_000),
        rec(at(12), (RUN, H), good=2, energy_wh=500),
        rec(at(9), (RUN, H)),
    )
    c = charge(inputs(records, bookings=(booking(at(20), at(21)),), tariffs=(t,)))
    got = [(x.tenant, x.machine, x.start_ms, x.kind) for x in c.lines]
    assert got == [
        ("acme", "cnc-01", at(9), LineKind.MACHINE_TIME),
        ("acme", "cnc-01", at(12), LineKind.MACHINE_TIME),
        ("acme", "cnc-01", at(12), LineKind.ENERGY),
        ("acme", "cnc-01", at(12), LineKind.PARTS),
        ("acme", "cnc-01", at(20), LineKind.NO_SHOW),
        ("acme", "cnc-02", at(10), LineKind.MACHINE_TIME),
        ("acme", "cnc-02", at(10), LineKind.ENERGY),
        ("bravo", "cnc-01", at(14), LineKind.MACHINE_TIME),
        ("bravo", "cnc-01", at(14), LineKind.PARTS),
    ]
    # Charging does not depend on the order of its inputs.
    assert charge(inputs(records[::-1], bookings=(booking(at(20), at(21)),), tariffs=(t,))) == c


# --- rule 8 and validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(tenant=""), r"records\[0\] .*: tenant is empty"),
        (dict(tenant="\x00facility"), "control characters"),
        (dict(badge=0), "badge must be > 0"),
        (dict(end_ms=at(10) - 1), "is before start_ms"),
        (dict(start_ms=P0 - 1), "is not inside the period"),
        (dict(end_ms=P1 + 1), "is not inside the period"),
        (dict(time_ms=((RUN, 2 * H),)), "adds up to more than the record lasts"),
        (dict(time_ms=((RUN, -1),)), r"time_ms\[running\] must be >= 0"),
        (dict(time_ms=((IDLE, 1), (RUN, 1))), "in Category order"),
        (dict(time_ms=((RUN, 1), (RUN, 1))), "in Category order"),
        (dict(good=-1), "good must be >= 0"),
        (dict(energy_wh=-5), "energy_wh must be >= 0"),
    ],
)
def test_bad_records_are_refused(bad: dict[str, object], message: str) -> None:
    r = replace(rec(at(10), (RUN, H)), **bad)  # type: ignore[arg-type]
    with pytest.raises(BillingError, match=message):
        charge(inputs((r,)))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(version=0), "version must be >= 1"),
        (dict(machine="cnc-01"), "exactly one of machine and machine_class"),
        (dict(machine_class=None), "exactly one of machine and machine_class"),
        (dict(valid_to_ms=P0 - 365 * 24 * H), "must be after valid_from_ms"),
        (dict(increment_min=0), "increment_min must be >= 1"),
        (dict(rate_per_hour=-1), "rate_per_hour must be >= 0"),
        (dict(no_show_charge=-1), "no_show_charge must be >= 0"),
        (dict(tax_rate_bp=10_001), "tax_rate_bp must be within 0..10000"),
    ],
)
def test_bad_tariffs_are_refused(bad: dict[str, object], message: str) -> None:
    with pytest.raises(BillingError, match=message):
        charge(inputs((rec(at(10), (RUN, H)),), tariffs=(mill(**bad),)))


def test_other_bad_inputs_are_refused() -> None:
    r = rec(at(10), (RUN, H))
    with pytest.raises(BillingError, match=r"id 'cnc-01/7/\d+' appears twice"):
        charge(inputs((r, r)))
    with pytest.raises(BillingError, match="does not start in the period"):
        charge(inputs(bookings=(booking(P1, P1 + H),)))
    with pytest.raises(BillingError, match="must be after start_ms"):
        charge(inputs(bookings=(booking(at(10), at(10)),)))
    with pytest.raises(BillingError, match="is for period '2024-12', not '2025-01'"):
        charge(
            inputs(
                (r,), pools=(CostPool("cnc-01", "2024-12", PoolCategory.SPACE, 1),), capacity=(Capacity("cnc-01", H),)
            )
        )
    with pytest.raises(BillingError, match="amount must be >= 0"):
        charge(
            inputs(
                (r,), pools=(CostPool("cnc-01", "2025-01", PoolCategory.SPACE, -1),), capacity=(Capacity("cnc-01", H),)
            )
        )
    with pytest.raises(BillingError, match="period: '2025-13' is not YYYY-MM"):
        charge(replace(inputs(), period="2025-13"))
    with pytest.raises(BillingError, match="machine 'cnc-01' is of class 'lathe' elsewhere in the inputs, not 'mill'"):
        charge(inputs((r,), machine_classes=(("cnc-01", "lathe"),)))


# --- properties ---------------------------------------------------------------------------------------------------

record_strategy = st.builds(
    lambda tenant, machine, day, run, brk, unk, good: rec(
        P0 + day * 24 * H,
        *((c, ms) for c, ms in ((RUN, run), (BRK, brk), (UNK, unk)) if ms),
        tenant=tenant,
        machine=machine,
        badge=1 + day,
        good=good,
    ),
    st.sampled_from(["acme", "bravo", "citra"]),
    st.sampled_from(["cnc-01", "cnc-02"]),
    st.integers(0, 29),
    st.integers(0, 10 * H),
    st.integers(0, H),
    st.integers(0, H),
    st.integers(0, 1000),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(record_strategy, max_size=12, unique_by=lambda r: r.id),
    st.integers(0, 10**9),
    st.integers(1, 1000 * H),
    st.sampled_from(list(Policy)),
    st.integers(1, 15),
    st.integers(0, 60),
)
def test_figures_always_add_up(
    records: list[UsageRecord], pool: int, cap: int, policy: Policy, increment: int, minimum: int
) -> None:
    t = mill(increment_min=increment, minimum_min=minimum, per_part=7, rate_per_hour=75_000)
    c = charge(
        inputs(
            tuple(records),
            tariffs=(t,),
            pools=(CostPool("cnc-01", "2025-01", PoolCategory.DEPRECIATION, pool),),
            capacity=(Capacity("cnc-01", cap),),
            policy=policy,
        )
    )
    # One machine-time line per record; every line's tax is its own; totals are sums of lines.
    assert len(of(c, LineKind.MACHINE_TIME)) == len(records)
    for line in c.lines:
        assert line.tax == tax(line.amount, line.tax_rate_bp)
        if line.kind == LineKind.MACHINE_TIME:
            assert line.quantity == 0 or (
                line.quantity >= minimum and (line.quantity % increment == 0 or line.quantity == minimum)
            )
    for totals in c.totals:
        mine = [x for x in c.lines if x.tenant == totals.tenant]
        assert (totals.subtotal, totals.tax) == (sum(x.amount for x in mine), sum(x.tax for x in mine))
    # The pool is always shared out exactly: tenants' shares plus the facility's part.
    (share,) = c.pools
    assert sum(a for _, a in share.allocated) + share.unallocated == pool
    assert sum(x.amount for x in of(c, LineKind.CAPACITY)) == pool - share.unallocated
    if policy == Policy.FULL_RECOVERY and share.allocated:
        assert share.unallocated == 0
    # Breakdown and unknown never change the bill: the same records without them cost the same.
    clean = tuple(replace(r, time_ms=tuple((k, v) for k, v in r.time_ms if k == RUN)) for r in records)
    c2 = charge(inputs(clean, tariffs=(t,)))
    assert sum(x.amount for x in of(c2, LineKind.MACHINE_TIME)) == sum(x.amount for x in of(c, LineKind.MACHINE_TIME))


def test_rupiah_format() -> None:
    assert (rupiah(0), rupiah(1_234_567), rupiah(-500)) == ("Rp 0", "Rp 1.234.567", "-Rp 500")
