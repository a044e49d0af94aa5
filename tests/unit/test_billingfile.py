"""billing.yaml's schema (api.db.billingfile): what it takes, what it refuses and how it names the entry."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from api.core.billing.model import Category, Policy, PoolCategory
from api.core.owners import BadgeSpan
from api.db.billingfile import BillingFile, check_machines, load_billing, parse_billing, to_core
from shopfloor.config import load_site
from shopfloor.yamlfile import ConfigError

JAKARTA = ZoneInfo("Asia/Jakarta")  # UTC+7, no DST
EXAMPLE = Path(__file__).resolve().parents[2] / "shopfloor" / "examples"
SHA = "ab" * 32


def tariff(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": "cnc",
        "version": 1,
        "machine_class": "cnc-mill-v1",
        "valid_from": "2026-01-01",
        "rate_per_hour": 150000,
    }
    return {**base, **over}


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenants": [{"id": "acme", "name": "PT Acme", "badges": [1001]}, {"id": "batik", "badges": []}],
        "bookings": [],
        "tariffs": [tariff()],
        "cost_pools": [],
    }
    return {**base, **over}


def refused(data: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_billing(data)
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, text
    return text


def test_example_billing_file_loads_and_matches_the_example_site() -> None:
    bf = load_billing(EXAMPLE / "billing.yaml", JAKARTA)
    site = load_site(EXAMPLE / "site.yaml")
    check_machines(bf, {m.id: m.profile for m in site.machines})
    assert {t.id for t in bf.tenants} == {t.id for t in site.tenants}
    assert bf.policy is Policy.CAPACITY
    # Every machine class of the site has a tariff, every machine a pool of every category for 2026-11.
    assert {t.machine_class for t in bf.tariffs} == {m.profile for m in site.machines}
    pools = {(p.machine, p.category) for p in bf.cost_pools if p.period == "2026-11"}
    assert pools == {(m.id, c) for m in site.machines for c in PoolCategory}
    assert {t.tax_rate_bp for t in bf.tariffs} == {1100}


def test_site_file_gives_its_tenants_with_badges_held_since_1970() -> None:
    bf = load_billing(EXAMPLE / "site.yaml")
    assert [t.id for t in bf.tenants] == ["acme", "batik", "cipta"]
    assert bf.tenants[0].badges[0].number == 1001
    assert bf.tenants[0].badges[0].valid_from == date(1970, 1, 1)
    assert bf.tenants[0].badges[0].valid_to is None
    assert bf.policy is None and bf.tariffs == [] and bf.bookings == []


def test_to_core_turns_dates_into_local_midnights_and_numbers_bookings() -> None:
    data = doc(
        tenants=[
            {"id": "acme", "badges": [{"number": 7, "valid_from": "2026-11-01", "valid_to": "2026-11-16"}]},
            {"id": "batik", "badges": [{"number": 7, "valid_from": date(2026, 11, 16)}]},
        ],
        bookings=[
            # 08:00+07:00 = 01:00Z; naive 10:00 is site time, 03:00Z.
            {
                "machine": "cnc-01",
                "tenant": "acme",
                "start": "2026-11-03T08:00:00+07:00",
                "end": "2026-11-03T09:00:00+07:00",
            },
            {"machine": "cnc-01", "tenant": "batik", "start": "2026-11-03T10:00:00", "end": "2026-11-03T11:30:00"},
        ],
        policy="full_recovery",
    )
    core = to_core(parse_billing(data), JAKARTA)
    # 2026-11-01T00:00+07:00 = 2026-10-31T17:00Z = 1793466000000 ms; the 16th is 15 days (1296000000 ms) later.
    assert core.owners == (
        BadgeSpan(7, "acme", 1793466000000, 1794762000000),
        BadgeSpan(7, "batik", 1794762000000, None),
    )
    # 2026-11-03T01:00Z = 1793466000000 + 2 days 8 h (201600000 ms) = 1793667600000.
    assert [(b.id, b.tenant, b.start_ms, b.end_ms) for b in core.bookings] == [
        (1, "acme", 1793667600000, 1793667600000 + 3_600_000),
        (2, "batik", 1793667600000 + 2 * 3_600_000, 1793667600000 + 3 * 3_600_000 + 1_800_000),
    ]
    assert core.policy is Policy.FULL_RECOVERY
    assert core.watermark_grace_min == 60 and core.facility_name == ""
    (t,) = core.tariffs
    # 2026-01-01T00:00+07:00 = 2025-12-31T17:00Z = 1767200400000.
    assert t.valid_from_ms == 1767200400000 and t.valid_to_ms is None
    assert t.billable == frozenset({Category.RUNNING, Category.SETUP, Category.IDLE, Category.STOPPED})


@pytest.mark.parametrize(
    "value",
    [150000.0, 1.5e5, True, "150000", -1, 10**15 + 1, None],
    ids=["float", "exp-float", "bool", "string", "negative", "huge", "null"],
)
def test_money_must_be_whole_non_negative_rupiah(value: object) -> None:
    refused(doc(tariffs=[tariff(rate_per_hour=value)]), "tariffs[0].rate_per_hour")


def test_float_money_is_named_as_such() -> None:
    refused(doc(tariffs=[tariff(per_part=0.5)]), "tariffs[0].per_part", "float")
    pools = [{"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": 100.0}]
    refused(doc(cost_pools=pools), "cost_pools[0].amount", "float")


@pytest.mark.parametrize("bp", [-1, 10001, 11.0, "1100"])
def test_tax_rate_must_be_0_to_10000_basis_points(bp: object) -> None:
    refused(doc(tariffs=[tariff(tax_rate_bp=bp)]), "tariffs[0].tax_rate_bp")


@pytest.mark.parametrize("category", ["breakdown", "unknown"])
def test_breakdown_and_unknown_are_never_billable(category: str) -> None:
    refused(doc(tariffs=[tariff(billable=["running", category])]), "cnc@1", category, "never billable")


def test_tariff_needs_exactly_one_target() -> None:
    refused(doc(tariffs=[tariff(machine="cnc-01")]), "exactly one of machine and machine_class")
    refused(doc(tariffs=[tariff(machine_class=None)]), "exactly one of machine and machine_class")


def test_tariff_versions_may_follow_but_not_overlap() -> None:
    follow = [tariff(valid_to="2026-11-01"), tariff(version=2, valid_from="2026-11-01")]
    assert len(parse_billing(doc(tariffs=follow)).tariffs) == 2
    overlap = [tariff(valid_to="2026-11-02"), tariff(version=2, valid_from="2026-11-01")]
    refused(doc(tariffs=overlap), "cnc@2", "cnc@1", "class cnc-mill-v1")
    # An open-ended version overlaps every later one, whatever its code.
    refused(doc(tariffs=[tariff(), tariff(code="other", valid_from="2027-01-01")]), "other@1", "cnc@1")
    # Another class is another target.
    assert parse_billing(doc(tariffs=[tariff(), tariff(code="l", machine_class="fiber-laser-v1")]))
    refused(doc(tariffs=[tariff(), tariff()]), "cnc@1 is defined twice")


def test_duplicate_tenant_is_refused() -> None:
    refused(doc(tenants=[{"id": "acme"}, {"id": "acme"}]), "tenants[1]", "'acme' is defined twice")


def test_badge_validity_must_not_overlap() -> None:
    a = {"number": 5, "valid_from": "2026-01-01", "valid_to": "2026-06-01"}
    b_ok = {"number": 5, "valid_from": "2026-06-01"}
    assert parse_billing(doc(tenants=[{"id": "acme", "badges": [a]}, {"id": "batik", "badges": [b_ok]}]))
    b_bad = {"number": 5, "valid_from": "2026-05-31"}
    refused(
        doc(tenants=[{"id": "acme", "badges": [a]}, {"id": "batik", "badges": [b_bad]}]), "badge 5", "acme", "batik"
    )
    # A bare number is held for all time: it clashes with any other holder.
    refused(doc(tenants=[{"id": "acme", "badges": [5]}, {"id": "batik", "badges": [b_ok]}]), "badge 5")
    refused(
        doc(tenants=[{"id": "acme", "badges": [{"number": 5, "valid_from": "2026-02-01", "valid_to": "2026-01-01"}]}]),
        "not after",
    )


def test_unknown_tenants_are_refused() -> None:
    booking = {
        "machine": "cnc-01",
        "tenant": "ghost",
        "start": "2026-11-03T08:00:00+07:00",
        "end": "2026-11-03T09:00:00+07:00",
    }
    refused(doc(bookings=[booking]), "bookings[0]", "'ghost' is not defined")
    key = {"name": "k", "sha256": SHA, "role": "tenant", "tenant": "ghost"}
    refused(doc(api_keys=[key]), "api_keys[0]", "'ghost' is not defined")


def test_bookings_must_end_after_start_and_not_overlap_on_one_machine() -> None:
    def booking(machine: str, start: str, end: str, tenant: str = "acme") -> dict[str, str]:
        return {"machine": machine, "tenant": tenant, "start": start, "end": end}

    back = doc(bookings=[booking("cnc-01", "2026-11-03T09:00:00+07:00", "2026-11-03T09:00:00+07:00")])
    with pytest.raises(ValueError, match=r"bookings\[0\].*not after start"):
        to_core(parse_billing(back), JAKARTA)
    # [08:00, 09:00) and [09:00, 10:00) touch: fine. 08:30 naive (site time) = 01:30Z starts inside 01:00Z-02:00Z.
    touching = [
        booking("cnc-01", "2026-11-03T08:00:00+07:00", "2026-11-03T09:00:00+07:00"),
        booking("cnc-01", "2026-11-03T02:00:00+00:00", "2026-11-03T03:00:00+00:00", "batik"),
    ]
    assert len(to_core(parse_billing(doc(bookings=touching)), JAKARTA).bookings) == 2
    clash = [*touching, booking("cnc-01", "2026-11-03T08:30:00", "2026-11-03T08:45:00", "batik")]
    with pytest.raises(ValueError, match=r"bookings\[2\].*overlaps bookings\[0\].*cnc-01"):
        to_core(parse_billing(doc(bookings=clash)), JAKARTA)
    other_machine = [*touching, booking("cnc-02", "2026-11-03T08:30:00", "2026-11-03T08:45:00", "batik")]
    assert len(to_core(parse_billing(doc(bookings=other_machine)), JAKARTA).bookings) == 3


@pytest.mark.parametrize(
    "start",
    ["2026-11-03", "tomorrow", "2026-13-03T08:00:00", 1793667600000, "2026-11-03T08:00:00+07:00" + "0" * 100],
    ids=["date-only", "word", "bad-month", "epoch-int", "long"],
)
def test_booking_times_must_be_iso_date_times(start: object) -> None:
    b = {"machine": "cnc-01", "tenant": "acme", "start": start, "end": "2026-11-03T09:00:00+07:00"}
    refused(doc(bookings=[b]), "bookings[0].start")


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"machine": "cnc-01", "period": "2026-13", "category": "space", "amount": 1}, "period"),
        ({"machine": "cnc-01", "period": "26-11", "category": "space", "amount": 1}, "period"),
        ({"machine": "cnc-01", "period": "2026-11", "category": "coffee", "amount": 1}, "category"),
        ({"machine": "CNC 01", "period": "2026-11", "category": "space", "amount": 1}, "machine"),
        ({"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": 1, "extra": 1}, "extra"),
    ],
)
def test_cost_pool_fields(entry: dict[str, Any], where: str) -> None:
    refused(doc(cost_pools=[entry]), f"cost_pools[0].{where}")


def test_duplicate_cost_pool_is_refused() -> None:
    p = {"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": 1}
    refused(doc(cost_pools=[p, p]), "cost_pools[1]", "given twice")


def test_unknown_keys_and_wrong_shapes_are_refused() -> None:
    refused(doc(currency="IDR"), "currency")
    refused({"tenants": {"acme": {}}}, "tenants")
    refused(doc(policy="cheapest"), "policy")
    refused(doc(watermark_grace_min=-5), "watermark_grace_min")
    refused(doc(tenants=[{"id": "acme", "name": "PT\x00Acme"}]), "tenants[0].name", "control characters")
    with pytest.raises(ConfigError, match="mapping"):
        parse_billing(["tenants"])
    with pytest.raises(ConfigError, match="empty"):
        parse_billing(None)


def test_check_machines_names_the_unknown_machine_or_class() -> None:
    bf = parse_billing(doc(tariffs=[tariff(machine_class="robot-v9")]))
    with pytest.raises(ValueError, match=r"tariffs\[0\].*robot-v9"):
        check_machines(bf, {"cnc-01": "cnc-mill-v1"})
    pool = {"machine": "cnc-09", "period": "2026-11", "category": "space", "amount": 1}
    with pytest.raises(ValueError, match=r"cost_pools\[0\].*cnc-09"):
        check_machines(parse_billing(doc(cost_pools=[pool])), {"cnc-01": "cnc-mill-v1"})


def test_billing_file_is_immutable() -> None:
    bf = parse_billing(doc())
    assert isinstance(bf, BillingFile)
    with pytest.raises(ValueError):
        bf.policy = Policy.CAPACITY
