"""Billing documents: exact JSON round trips, canonical bytes, hostile input refused by path, tenant isolation."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core.billing.charging import BillingError, Inputs, charge
from api.core.billing.document import (
    canonical,
    chain_hash,
    credit_note_document,
    inputs_from_json,
    inputs_to_json,
    invoice_document,
    report_document,
)
from api.core.billing.model import (
    Booking,
    Capacity,
    Category,
    CostPool,
    Policy,
    PoolCategory,
    Tariff,
    UsageRecord,
)

MIN = 60_000
H = 3_600_000
P0 = 1_735_664_400_000  # 2025-01-01 00:00 Asia/Jakarta
P1 = P0 + 31 * 24 * H
D = P0 + 9 * 24 * H


def record(tenant: str, badge: int, start: int, *times: tuple[Category, int], **kw: Any) -> UsageRecord:
    return UsageRecord(
        id=f"cnc-01/{badge}/{start}",
        tenant=tenant,
        machine="cnc-01",
        machine_class="mill",
        badge=badge,
        start_ms=start,
        end_ms=start + sum(ms for _, ms in times),
        time_ms=times,
        **kw,
    )


TARIFF = Tariff(
    code="mill",
    version=2,
    machine=None,
    machine_class="mill",
    valid_from_ms=P0,
    valid_to_ms=None,
    rate_per_hour=60_000,
    increment_min=6,
    minimum_min=30,
    grace_min=10,
    max_booked_actual=True,
    no_show_charge=25_000,
    energy_per_kwh=1_500,
    per_part=250,
    tax_rate_bp=1100,
)
OLD = Tariff("mill", 1, None, "mill", P0 - 365 * 24 * H, P0, 50_000)
OWN = Tariff("laser", 1, "laser-1", None, P0, P1, 90_000, billable=frozenset({Category.RUNNING}), tax_rate_bp=0)


def rich() -> Inputs:
    """Two tenants, every line kind; bravo's figures are odd numbers found nowhere else."""
    return Inputs(
        period="2025-01",
        period_start_ms=P0,
        period_end_ms=P1,
        records=(
            record(
                "acme",
                7,
                D,
                (Category.RUNNING, 50 * MIN),
                (Category.BREAKDOWN, 10 * MIN),
                good=800,
                reject=4,
                energy_wh=12_000,
                oee_bp=6150,
            ),
            record(
                "bravo",
                8,
                D + 5 * H + 37 * MIN,
                (Category.RUNNING, 97 * MIN),
                (Category.SETUP, 13 * MIN),
                (Category.UNKNOWN, 3 * MIN),
                good=4_321,
                energy_wh=98_765,
                anomalies=2,
            ),
        ),
        bookings=(
            Booking(31, "acme", "cnc-01", D, D + 2 * H),
            Booking(32, "bravo", "cnc-01", D + 20 * H, D + 20 * H + 47 * MIN),
        ),
        tariffs=(OLD, TARIFF, OWN),
        pools=(
            CostPool("cnc-01", "2025-01", PoolCategory.DEPRECIATION, 2_000_000),
            CostPool("cnc-01", "2025-01", PoolCategory.MAINTENANCE, 1_000_000),
        ),
        capacity=(Capacity("cnc-01", 100 * H), Capacity("laser-1", 50 * H)),
        policy=Policy.CAPACITY,
        loss_map_version="loss-map@3",
        machine_classes=(("cnc-01", "mill"),),
    )


def invoice(inputs: Inputs, tenant: str = "acme", **kw: Any) -> dict[str, object]:
    return invoice_document(
        inputs,
        charge(inputs),
        tenant=tenant,
        tenant_name=f"PT {tenant.title()}",
        site_id="bdg",
        site_name="Bandung",
        facility_name="Rumah Produksi Bersama",
        time_zone="Asia/Jakarta",
        **kw,
    )


def ints(obj: object) -> list[int]:
    """Every int in a JSON value."""
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int):
        return [obj]
    if isinstance(obj, dict):
        return [i for v in obj.values() for i in ints(v)]
    if isinstance(obj, list):
        return [i for v in obj for i in ints(v)]
    return []


# --- round trips and canonical bytes ------------------------------------------------------------------------------


def test_inputs_round_trip_exactly() -> None:
    inputs = rich()
    doc = inputs_to_json(inputs)
    assert inputs_from_json(doc) == inputs
    # Through bytes too, and the bytes are stable: same inputs, same bytes, whatever the dict order was.
    again = inputs_from_json(json.loads(canonical(doc)))
    assert again == inputs
    assert canonical(inputs_to_json(again)) == canonical(doc)
    assert canonical(dict(reversed(list(doc.items())))) == canonical(doc)


def test_inputs_json_shape() -> None:
    doc = inputs_to_json(rich())
    first: Any = doc["records"]
    assert first[1]["time_ms"] == {"running": 97 * MIN, "setup": 13 * MIN, "unknown": 3 * MIN}
    tariffs: Any = doc["tariffs"]
    assert tariffs[2]["billable"] == ["running"]
    assert tariffs[1]["billable"] == ["running", "setup", "idle", "stopped"]  # Category order, not set order
    assert doc["machine_classes"] == [["cnc-01", "mill"]]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["acme", "bravo", "Ünïcode tenant"]),
            st.integers(1, 99),
            st.integers(0, 29 * 24 * H),
            st.lists(st.tuples(st.sampled_from(list(Category)), st.integers(0, 5 * H)), unique_by=lambda c: c[0]),
            st.integers(0, 10**6),
            st.none() | st.integers(0, 20_000),
        ),
        max_size=8,
        unique_by=lambda r: (r[1], r[2]),
    )
)
def test_round_trip_property(rows: list[tuple[str, int, int, list[tuple[Category, int]], int, int | None]]) -> None:
    order = list(Category)
    records = tuple(
        record(t, b, P0 + s, *sorted(times, key=lambda c: order.index(c[0])), energy_wh=e, oee_bp=o)
        for t, b, s, times, e, o in rows
    )
    inputs = Inputs("2025-01", P0, P1, records, (), (TARIFF,), (), (), Policy.FULL_RECOVERY, "")
    assert inputs_from_json(json.loads(canonical(inputs_to_json(inputs)))) == inputs


def test_huge_lists_are_fine() -> None:
    records = tuple(record("acme", 1 + i % 50, D + i * MIN, (Category.RUNNING, MIN)) for i in range(5000))
    inputs = Inputs("2025-01", P0, P1, records, (), (TARIFF,), (), (), Policy.CAPACITY, "v1")
    assert inputs_from_json(inputs_to_json(inputs)) == inputs


def test_canonical_bytes() -> None:
    # Sorted keys, no spaces, UTF-8 (not \\u escapes).
    assert canonical({"b": 1, "a": [True, None, "é"]}) == b'{"a":[true,null,"\xc3\xa9"],"b":1}'


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        (1.0, r"\$"),
        ({"a": [1, 2.5]}, r"\$\.a\[1\]"),
        ({"lines": [{"amount": float("nan")}]}, r"\$\.lines\[0\]\.amount"),
    ],
)
def test_canonical_refuses_floats_by_path(obj: object, path: str) -> None:
    with pytest.raises(TypeError, match=rf"^{path}: a float"):
        canonical(obj)


def test_canonical_refuses_non_json_values() -> None:
    with pytest.raises(TypeError, match=r"\$: key 1 is not a string"):
        canonical({1: "a"})
    with pytest.raises(TypeError, match=r"\$\.a: tuple is not a JSON value"):
        canonical({"a": (1, 2)})


def test_chain_hash() -> None:
    doc, inp = b'{"a":1}', b'{"b":2}'
    assert chain_hash(None, doc, inp) == hashlib.sha256(b'\n{"a":1}\n{"b":2}').hexdigest()
    first = chain_hash(None, doc, inp)
    second = chain_hash(first, doc, inp)
    assert second == hashlib.sha256(first.encode() + b'\n{"a":1}\n{"b":2}').hexdigest()
    assert len({first, second, chain_hash(first, doc, b'{"b":3}'), chain_hash(first, b'{"a":2}', inp)}) == 4


# --- hostile and malformed input ----------------------------------------------------------------------------------


def _set(doc: dict[str, Any], path: str, value: object) -> None:
    """Set doc at a path like records.0.start_ms; value DELETE removes the key."""
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


DELETE = object()

HOSTILE = [
    ("records.0.start_ms", 1.5, r"\$\.records\[0\]\.start_ms: must be an integer, got float"),
    ("records.0.start_ms", True, r"\$\.records\[0\]\.start_ms: must be an integer, got bool"),
    ("records.0.start_ms", "0", r"\$\.records\[0\]\.start_ms: must be an integer, got str"),
    ("records.0.start_ms", -1, r"\$\.records\[0\]\.start_ms: must be within 0\.\."),
    ("records.0.end_ms", 2**64, r"\$\.records\[0\]\.end_ms: must be within 0\.\.9223372036854775807"),
    ("records.0.end_ms", D - 1, r"\$\.records\[0\]\.end_ms: \d+ must be at or after start_ms"),
    ("records.0.badge", 0, r"\$\.records\[0\]\.badge: must be within 1\.\."),
    ("records.0.good", -5, r"\$\.records\[0\]\.good: must be within"),
    ("records.0.energy_wh", None, r"\$\.records\[0\]\.energy_wh: must be an integer, got NoneType"),
    ("records.0.oee_bp", 61.5, r"\$\.records\[0\]\.oee_bp: must be an integer"),
    ("records.0.tenant", "", r"\$\.records\[0\]\.tenant: must not be empty"),
    ("records.0.tenant", "acme\x00", r"\$\.records\[0\]\.tenant: holds control characters"),
    ("records.0.tenant", "\ud800", r"\$\.records\[0\]\.tenant: holds control characters or unpaired surrogates"),
    ("records.0.tenant", "x" * 201, r"\$\.records\[0\]\.tenant: is longer than 200 characters"),
    ("records.0.tenant", ["acme"], r"\$\.records\[0\]\.tenant: must be a string, got list"),
    ("records.0.time_ms", [["running", 1]], r"\$\.records\[0\]\.time_ms: must be an object"),
    ("records.0.time_ms", {"coffee": 1}, r"\$\.records\[0\]\.time_ms: 'coffee' is not one of running, "),
    ("records.0.time_ms", {"running": 1.0}, r"\$\.records\[0\]\.time_ms\.running: must be an integer"),
    ("records.0.time_ms", {"running": 10 * H}, r"\$\.records\[0\] .*: time_ms adds up to more than the record lasts"),
    ("records.0.extra", 1, r"\$\.records\[0\]: unknown field\(s\) 'extra'"),
    ("records.0.id", DELETE, r"\$\.records\[0\]: missing id"),
    ("records.0", "x", r"\$\.records\[0\]: must be an object, got str"),
    ("records", {}, r"\$\.records: must be a list, got dict"),
    ("records.1.id", "cnc-01/7/" + str(D), r"\$\.records\[1\]: id '.*' appears twice"),
    ("bookings.0.end_ms", D, r"\$\.bookings\[0\]\.end_ms: \d+ must be after start_ms"),
    ("bookings.0.start_ms", P0 - H, r"\$\.bookings\[0\] \(id 31\): does not start in the period"),
    ("tariffs.1.billable", ["running", "breakdown"], r"\$\.tariffs\[1\]\.billable: breakdown time is never billable"),
    ("tariffs.1.billable", ["running", "running"], r"\$\.tariffs\[1\]\.billable: lists a category twice"),
    ("tariffs.1.billable", "running", r"\$\.tariffs\[1\]\.billable: must be a list"),
    ("tariffs.1.tax_rate_bp", 20_000, r"\$\.tariffs\[1\]\.tax_rate_bp: must be within 0\.\.10000"),
    ("tariffs.1.rate_per_hour", -60_000, r"\$\.tariffs\[1\]\.rate_per_hour: must be within 0\.\."),
    ("tariffs.1.increment_min", 0, r"\$\.tariffs\[1\]\.increment_min: must be within 1\.\."),
    ("tariffs.1.max_booked_actual", 1, r"\$\.tariffs\[1\]\.max_booked_actual: must be true or false, got int"),
    ("tariffs.1.valid_to_ms", P0, r"\$\.tariffs\[1\]\.valid_to_ms: \d+ must be after valid_from_ms"),
    ("tariffs.1.machine", "cnc-01", r"\$\.tariffs\[1\] \(mill@2\): give exactly one of machine and machine_class"),
    ("tariffs.0.valid_to_ms", P0 + 1, r"\$\.tariffs\[0\]: mill@1 and mill@2 for machine class 'mill' are valid at"),
    ("pools.0.amount", -1, r"\$\.pools\[0\]\.amount: must be within 0\.\."),
    ("pools.0.category", "coffee", r"\$\.pools\[0\]\.category: 'coffee' is not one of depreciation, "),
    ("pools.0.period", "2024-12", r"\$\.pools\[0\] \('cnc-01'\): is for period '2024-12', not '2025-01'"),
    ("capacity.0.capacity_ms", -1, r"\$\.capacity\[0\]\.capacity_ms: must be within 0\.\."),
    ("machine_classes.0", ["cnc-01"], r"\$\.machine_classes\[0\]: must be \[machine, machine class\]"),
    ("policy", "free", r"\$\.policy: 'free' is not one of capacity, full_recovery"),
    ("period", "2025-1", r"\$\.period: '2025-1' is not YYYY-MM"),
    ("period_end_ms", P0, r"\$\.period_end_ms: \d+ must be after period_start_ms"),
    ("schema", 2, r"\$\.schema: this reader knows schema 1, got 2"),
    ("loss_map_version", DELETE, r"\$: missing loss_map_version"),
]


@pytest.mark.parametrize(("path", "value", "message"), HOSTILE, ids=[f"{p}={v!r}"[:60] for p, v, _ in HOSTILE])
def test_hostile_inputs_are_refused_with_their_path(path: str, value: object, message: str) -> None:
    doc: Any = inputs_to_json(rich())
    _set(doc, path, value)
    with pytest.raises(BillingError, match=message):
        inputs_from_json(doc)


@pytest.mark.parametrize("doc", [None, [], "inputs", 1, 1.5])
def test_a_document_that_is_not_an_object_is_refused(doc: object) -> None:
    with pytest.raises(BillingError, match=r"^\$: must be an object"):
        inputs_from_json(doc)


# --- invoices -----------------------------------------------------------------------------------------------------


def test_invoice_holds_the_tenants_lines_sessions_tariffs_and_pool_basis() -> None:
    inputs = rich()
    doc: Any = invoice(inputs, number="BDG-2025-0001")
    charges = charge(inputs)
    mine = [x for x in charges.lines if x.tenant == "acme"]
    assert [line["amount"] for line in doc["lines"]] == [x.amount for x in mine]
    assert {line["kind"] for line in doc["lines"]} == {"capacity", "machine_time", "booked_minimum", "energy", "parts"}
    assert doc["totals"] == {
        "subtotal": sum(x.amount for x in mine),
        "tax": sum(x.tax for x in mine),
        "total": sum(x.amount + x.tax for x in mine),
    }
    assert (doc["schema"], doc["kind"], doc["number"], doc["currency"], doc["policy"]) == (
        1,
        "invoice",
        "BDG-2025-0001",
        "IDR",
        "capacity",
    )
    assert doc["site"] == {"id": "bdg", "name": "Bandung"} and doc["tenant"] == {"id": "acme", "name": "PT Acme"}
    # The session: 50 min running (+ 10 min breakdown, not billed) -> 6 min increments 54 -> minimum 30: 54.
    (session,) = doc["sessions"]
    assert session["billable_ms"] == 50 * MIN and session["billable_min"] == 54 and session["tariff"] == "mill@2"
    assert session["time_ms"] == {"running": 50 * MIN, "breakdown": 10 * MIN} and session["oee_bp"] == 6150
    assert [t["code"] + "@" + str(t["version"]) for t in doc["tariffs"]] == ["mill@2"]  # not the unused ones
    assert doc["pools"] == [{"machine": "cnc-01", "pool": 3_000_000, "capacity_ms": 100 * H, "rate_per_hour": 30_000}]
    assert doc["credit_for"] is None and doc["override"] is None
    canonical(doc)  # a valid, float-free document


def test_invoice_holds_no_other_tenants_figures() -> None:
    inputs = rich()
    doc = invoice(inputs)
    raw = canonical(doc).decode()
    assert "bravo" not in raw.lower()
    # bravo's own figures (its no-show line is the tariff's price, which acme's invoice shows as a tariff term).
    bravo = [x for x in charge(inputs).lines if x.tenant == "bravo" and x.kind != "no_show"]
    bravo_figures = {98_765, 4_321} | {x.amount for x in bravo} | {x.tax for x in bravo}
    assert {114_000, 148_148, 1_080_250, 55_000} <= bravo_figures  # 114 min, 98.765 kWh, 4 321 parts, its share
    bravo_figures |= {r.start_ms for r in inputs.records if r.tenant == "bravo"} | {D + 20 * H}  # its booking
    assert bravo_figures.isdisjoint(ints(doc)), bravo_figures & set(ints(doc))
    assert "allocated" not in raw and "unallocated" not in raw
    # And the other way round.
    assert "acme" not in canonical(invoice(inputs, "bravo")).decode().lower()


def test_invoice_of_a_tenant_without_lines_is_empty() -> None:
    doc: Any = invoice(rich(), "citra")
    assert (doc["lines"], doc["sessions"], doc["pools"], doc["tariffs"]) == ([], [], [], [])
    assert doc["totals"] == {"subtotal": 0, "tax": 0, "total": 0}


def test_invoice_carries_the_override_reason() -> None:
    doc: Any = invoice(rich(), override="finalized before the watermark: meter swap")
    assert doc["override"] == "finalized before the watermark: meter swap"
    assert invoice(rich())["override"] is None


# --- credit notes -------------------------------------------------------------------------------------------------


def test_credit_note_negates_every_line_exactly() -> None:
    original = invoice(rich(), number="BDG-2025-0001")
    kept = copy.deepcopy(original)
    note: Any = credit_note_document(original, reason="meter read twice")
    assert original == kept  # the invoice is untouched
    assert (note["kind"], note["number"], note["credit_for"], note["reason"]) == (
        "credit_note",
        None,
        "BDG-2025-0001",
        "meter read twice",
    )
    lines: Any = original["lines"]
    assert len(note["lines"]) == len(lines) > 0
    for a, b in zip(lines, note["lines"], strict=True):
        assert (a["amount"] + b["amount"], a["tax"] + b["tax"]) == (0, 0)
        assert (a["quantity"], a["kind"], a["unit_price"], a["record"]) == (
            b["quantity"],
            b["kind"],
            b["unit_price"],
            b["record"],
        )
    totals: Any = original["totals"]
    assert {k: totals[k] + note["totals"][k] for k in totals} == {"subtotal": 0, "tax": 0, "total": 0}
    assert note["totals"]["subtotal"] == sum(line["amount"] for line in note["lines"])
    assert note["sessions"] == original["sessions"]
    canonical(note)


def test_credit_note_of_half_rupiah_taxes_is_exact() -> None:
    # Rp 3 000/h for 1 min = Rp 50, PPN 5.5 -> 6; the credit is -50, -6 (half away from zero: -5.5 -> -6).
    t = Tariff("mill", 1, None, "mill", P0, None, 3_000)
    inputs = Inputs(
        "2025-01", P0, P1, (record("acme", 7, D, (Category.RUNNING, MIN)),), (), (t,), (), (), Policy.CAPACITY, ""
    )
    note: Any = credit_note_document(invoice(inputs, number="N-1"), reason="test")
    assert [(x["amount"], x["tax"]) for x in note["lines"]] == [(-50, -6)]
    assert note["totals"] == {"subtotal": -50, "tax": -6, "total": -56}


def test_credit_note_refusals() -> None:
    with pytest.raises(BillingError, match=r"\$\.number: the invoice has no number"):
        credit_note_document(invoice(rich()), reason="x")
    note = credit_note_document(invoice(rich(), number="N-1"), reason="x")
    with pytest.raises(BillingError, match=r"\$\.kind: only an invoice can be credited, got 'credit_note'"):
        credit_note_document(note, reason="x")
    with pytest.raises(BillingError, match="reason: say why"):
        credit_note_document(invoice(rich(), number="N-1"), reason="  ")
    broken: Any = invoice(rich(), number="N-1")
    broken["lines"][0]["amount"] = "100"
    with pytest.raises(BillingError, match=r"\$\.lines\[0\]\.amount: must be an integer, got str"):
        credit_note_document(broken, reason="x")


# --- the period report --------------------------------------------------------------------------------------------


def test_report_document_has_everyone_and_the_facility() -> None:
    inputs = rich()
    charges = charge(inputs)
    doc: Any = report_document(inputs, charges)
    assert len(doc["lines"]) == len(charges.lines) and {x["tenant"] for x in doc["lines"]} == {"acme", "bravo"}
    assert [t["tenant"] for t in doc["totals"]["tenants"]] == ["acme", "bravo"]
    for t in doc["totals"]["tenants"]:
        mine = [x for x in doc["lines"] if x["tenant"] == t["tenant"]]
        assert (t["subtotal"], t["tax"]) == (sum(x["amount"] for x in mine), sum(x["tax"] for x in mine))
        assert t["total"] == t["subtotal"] + t["tax"]
    # cnc-01: 3 000 000 over 100 h. acme 50 min billable = 3 000 000 ms, bravo 110 min = 6 600 000 ms,
    # facility 360 000 000 - 9 600 000 = 350 400 000: acme 25 000, bravo 55 000, facility 2 920 000.
    (pool,) = doc["totals"]["facility"]["pools"]
    assert pool == {
        "machine": "cnc-01",
        "pool": 3_000_000,
        "capacity_ms": 100 * H,
        "rate_per_hour": 30_000,
        "allocated": {"acme": 25_000, "bravo": 55_000},
        "unallocated": 2_920_000,
    }
    assert doc["totals"]["facility"]["unallocated"] == 2_920_000
    assert (doc["period"], doc["policy"], doc["loss_map_version"]) == ("2025-01", "capacity", "loss-map@3")
    canonical(doc)
