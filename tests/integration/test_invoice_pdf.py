"""The invoice PDF, read back by a real `pdftotext -layout`: the same figures as the document, in both languages.

Documents are dict literals built here (the shape api.core.billing.document produces), so these tests run against
any producer of that shape. Every figure is checked in the extracted text as the i18n module formats it.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from api.core.i18n import hours, kwh, label, percent_bp, quantity, rupiah, unit_price
from api.invoice_pdf import render_pdf

pytestmark = pytest.mark.integration

PDFTOTEXT = shutil.which("pdftotext") or "/usr/bin/pdftotext"
P0 = 1_793_466_000_000  # 1 Nov 2026 00:00 WIB (UTC+7)
P1 = 1_796_058_000_000  # 1 Dec 2026 00:00 WIB
S0, S1 = 1_793_581_200_000, 1_793_593_800_000  # 2 Nov 2026 08:00-11:30 WIB
L0, L1 = 1_793_685_600_000, 1_793_689_200_000  # 3 Nov 2026 13:00-14:00 WIB
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
CNC = f"cnc-01/1001/{S0}"
LASER = f"laser-01/1001/{L0}"


def line(
    machine: str,
    kind: str,
    record: str | None,
    quantity: int,
    unit: str,
    price: int,
    amount: int,
    tax: int,
    **more: Any,
) -> dict[str, Any]:
    return {
        "tenant": "t-maju",
        "machine": machine,
        "kind": kind,
        "start_ms": S0 if machine == "cnc-01" else L0,
        "end_ms": S1 if machine == "cnc-01" else L1,
        "quantity": quantity,
        "unit": unit,
        "unit_price": price,
        "amount": amount,
        "tax_rate_bp": 1100,
        "tax": tax,
        "tariff": "cnc-std@1" if machine == "cnc-01" else "laser@2",
        "record": record,
        "note": "",
    } | more


def invoice() -> dict[str, Any]:
    """Two sessions on two machines, every line kind but credit, a capacity pool; figures worked out below."""
    lines = [
        line("cnc-01", "machine_time", CNC, 195, "min", 150_000, 487_500, 53_625),  # 195/60 h x 150.000; 11 %
        line("cnc-01", "energy", CNC, 12_500, "Wh", 1_500, 18_750, 2_063),  # 12,5 kWh x 1.500; 2.062,5 -> 2.063
        line("cnc-01", "parts", CNC, 120, "part", 500, 60_000, 6_600),  # 120 x 500
        # the capacity share: 195 min x 20.000/h (pool 7.200.000 / 360 h)
        line("cnc-01", "capacity", None, 195, "min", 20_000, 65_000, 7_150, start_ms=P0, end_ms=P1, tariff=None),
        line("laser-01", "machine_time", LASER, 60, "min", 240_000, 240_000, 26_400, note="minimum 60 min"),
        line("laser-01", "no_show", "booking/7", 1, "booking", 100_000, 100_000, 11_000),
    ]
    return {
        "schema": 1,
        "kind": "invoice",
        "number": "INV-2026-0007",
        "hash": HASH,
        "status": "finalized",
        "site": {"id": "bdg", "name": "Bandung"},
        "facility_name": "Pusat Berbagi Pabrik Bandung",
        "tenant": {"id": "t-maju", "name": "CV Maju Jaya"},
        "period": "2026-11",
        "period_start_ms": P0,
        "period_end_ms": P1,
        "time_zone": "Asia/Jakarta",
        "currency": "IDR",
        "policy": "capacity",
        "loss_map_version": "1",
        "credit_for": None,
        "override": None,
        "lines": lines,
        "sessions": [
            {
                "id": CNC,
                "machine": "cnc-01",
                "machine_class": "cnc-mill",
                "badge": 1001,
                "start_ms": S0,
                "end_ms": S1,
                # 2,5 h running + 0,5 h setup + 0,25 h idle + 0,25 h breakdown = 3,5 h; billable 3,25 h = 195 min
                "time_ms": {"running": 9_000_000, "setup": 1_800_000, "idle": 900_000, "breakdown": 900_000},
                "billable_ms": 11_700_000,
                "billable_min": 195,
                "good": 120,
                "reject": 3,
                "energy_wh": 12_500,
                "anomalies": 0,
                "oee_bp": 6842,
                "tariff": "cnc-std@1",
            },
            {
                "id": LASER,
                "machine": "laser-01",
                "machine_class": "laser",
                "badge": 1001,
                "start_ms": L0,
                "end_ms": L1,
                "time_ms": {"running": 3_000_000, "unknown": 600_000},  # 50 min running, 10 min no data
                "billable_ms": 3_000_000,
                "billable_min": 50,
                "good": 0,
                "reject": 0,
                "energy_wh": 0,
                "anomalies": 2,
                "oee_bp": None,
                "tariff": "laser@2",
            },
        ],
        "tariffs": [],
        "pools": [{"machine": "cnc-01", "pool": 7_200_000, "capacity_ms": 1_296_000_000, "rate_per_hour": 20_000}],
        # 487.500 + 18.750 + 60.000 + 65.000 + 240.000 + 100.000 = 971.250
        # 53.625 + 2.063 + 6.600 + 7.150 + 26.400 + 11.000 = 106.838; total 1.078.088
        "totals": {"subtotal": 971_250, "tax": 106_838, "total": 1_078_088},
    }


def text_of(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(pdf)
    assert Path(PDFTOTEXT).exists(), "pdftotext (poppler-utils) is needed: apt-get install poppler-utils"
    done = subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return done.stdout


def rows_with(text: str, *parts: str) -> list[str]:
    return [row for row in text.splitlines() if all(p in row for p in parts)]


@pytest.mark.parametrize("lang", ["en", "id"])
def test_pdf_text_carries_the_documents_figures(lang: str, tmp_path: Path) -> None:
    doc = invoice()
    text = text_of(render_pdf(doc, lang), tmp_path)
    for item in doc["lines"]:
        # each line is one row of the table: its quantity, unit price, amount and PPN side by side
        figures = (
            quantity(item["quantity"], item["unit"], lang),
            unit_price(item["unit_price"], item["unit"], lang),
            rupiah(item["amount"], lang),
            percent_bp(item["tax_rate_bp"], lang),
            rupiah(item["tax"], lang),
        )
        assert rows_with(text, label(f"kind_{item['kind']}", lang), *figures), (item, text)
    for key in ("subtotal", "tax", "total"):
        pattern = rf"^\s*{re.escape(label(key, lang))}\s+{re.escape(rupiah(doc['totals'][key], lang))}\s*$"
        assert re.search(pattern, text, re.MULTILINE), (key, text)
    first = doc["sessions"][0]
    for state, ms in first["time_ms"].items():
        assert f"{label(f'state_{state}', lang)} {hours(ms, lang)}" in text
    assert f"{label('billable_hours', lang)}: {hours(first['billable_ms'], lang)}" in text
    assert f"{label('energy', lang)}: {kwh(first['energy_wh'], lang)}" in text
    assert f"{label('oee', lang)}: {percent_bp(first['oee_bp'], lang)}" in text
    assert f"{label('oee', lang)}: {label('not_available', lang)}" in text  # the laser session's OEE is None
    assert f"{label('anomalies', lang)}: 2" in text
    assert rows_with(
        text, "cnc-01", rupiah(7_200_000, lang), hours(1_296_000_000, lang), unit_price(20_000, "min", lang)
    )
    for fact in ("Pusat Berbagi Pabrik Bandung", "INV-2026-0007", "CV Maju Jaya (t-maju)", HASH, "Asia/Jakarta"):
        assert fact in text
    assert label("invoice", lang) in text
    assert label("page_of", lang).format(page=1, pages=1) in text


def test_pdf_in_indonesian(tmp_path: Path) -> None:
    text = text_of(render_pdf(invoice(), "id"), tmp_path)
    for phrase in (
        "FAKTUR",
        "Periode",
        "November 2026",
        "Penyewa",
        "Sesi 2 Nov 2026 08:00-11:30",
        "Berjalan 2,5 jam; Penyetelan 0,5 jam; Menganggur 0,25 jam; Kerusakan 0,25 jam",
        "Jam ditagih: 3,25 jam",
        "Energi: 12,5 kWh",
        "Produk: 120 baik / 3 cacat",
        "OEE: 68,42%",
        "Rp 487.500",
        "Rp 1.078.088",
        "Halaman 1 dari 1",
        "Dasar biaya kapasitas (Kapasitas)",
        "Status",
        "Final",
    ):
        assert phrase in text, phrase
    assert "INVOICE" not in text and "Rp 487,500" not in text


def test_draft_and_credit_note(tmp_path: Path) -> None:
    draft = invoice() | {"number": None, "hash": None, "status": "draft"}
    text = text_of(render_pdf(draft, "id"), tmp_path)
    assert re.search(r"^FAKTUR\s+DRAF$", text, re.MULTILINE) and "tidak ada: belum final" in text
    credit = invoice() | {"kind": "credit_note", "number": "CN-2026-0002", "credit_for": "INV-2026-0007"}
    credit["reason"] = "salah tarif"
    credit["override"] = {"reason": "data mesin terlambat", "by": "admin"}  # recorded at finalize
    for item in credit["lines"]:
        item["amount"], item["tax"] = -item["amount"], -item["tax"]
    credit["totals"] = {"subtotal": -971_250, "tax": -106_838, "total": -1_078_088}
    text = text_of(render_pdf(credit, "id"), tmp_path)
    assert "NOTA KREDIT" in text and "CN-2026-0002" in text
    assert rows_with(text, "Nota kredit atas faktur", "INV-2026-0007")
    assert rows_with(text, "Alasan", "salah tarif")
    assert rows_with(text, "Penyesuaian", "by: admin; reason: data mesin terlambat")
    assert rows_with(text, "Waktu mesin", "-Rp 487.500", "-Rp 53.625")
    assert re.search(r"^\s*Total\s+-Rp 1\.078\.088\s*$", text, re.MULTILINE)


def test_hostile_names_do_not_crash_and_print_as_question_marks(tmp_path: Path) -> None:
    doc = invoice()
    doc["tenant"]["name"] = "PT 🔥 Jaya\x00\x1b[31m {nb} \u202eevil"
    doc["facility_name"] = "Fasilitas " + "X" * 10_000
    doc["site"]["name"] = "Ωmega\r\nsite"
    for item in doc["lines"] + doc["sessions"]:
        if item["machine"] == "laser-01":
            item["machine"] = "laser-" + "y" * 500
    pdf = render_pdf(doc, "en")
    text = text_of(pdf, tmp_path)
    # the emoji, NUL, ESC and the RTL override are outside latin-1 or control characters: each is one "?"
    assert "PT ? Jaya??[31m {nb} ?evil (t-maju)" in text  # and "{nb}" is not replaced by the page count
    assert "?mega??site" in text
    assert "X" * 60 in text and "X" * 200 not in text.replace("\n", "")  # cut, not 10 000 characters
    assert "laser-yyyy" in text and "y" * 300 not in text
    assert rows_with(text, rupiah(240_000, "en"))  # the figures are all still there
    assert HASH in text


def test_malformed_documents_name_the_field() -> None:
    cases: list[tuple[dict[str, Any], str]] = []
    doc = invoice()
    del doc["time_zone"]
    cases.append((doc, r"\$\.time_zone must be a string"))
    doc = invoice()
    doc["lines"][2]["amount"] = "60000"
    cases.append((doc, r"\$\.lines\[\]\.amount must be an integer, got str"))
    doc = invoice()
    doc["sessions"][0]["oee_bp"] = 0.68
    cases.append((doc, r"oee_bp must be an integer or null, got float"))
    cases.append((invoice() | {"kind": "report"}, r"\$\.kind must be 'invoice' or 'credit_note'"))
    cases.append((invoice() | {"time_zone": "Mars/Olympus"}, "time zone 'Mars/Olympus' unknown"))
    cases.append((invoice() | {"totals": {"subtotal": 1}}, r"\$\.totals\.tax must be an integer"))
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            render_pdf(bad, "en")
    with pytest.raises(ValueError, match=r"language 'fr' not supported \(en, id\)"):
        render_pdf(invoice(), "fr")


def test_three_hundred_lines_paginate_with_footer_on_every_page(tmp_path: Path) -> None:
    doc = invoice()
    template = doc["lines"][0]
    # distinct amounts Rp 1.000.007, 1.001.007, ... so each row is found exactly once
    extra = [template | {"amount": 1_000_007 + 1000 * i, "tax": i, "note": "n" * 80 * (i % 5)} for i in range(300)]
    doc["lines"] = doc["lines"] + extra
    pdf = render_pdf(doc, "en")
    text = text_of(pdf, tmp_path)
    pages = text.count("\f")  # pdftotext ends every page with a form feed
    assert pages >= 5
    for n in range(1, pages + 1):
        assert f"Page {n} of {pages}" in text
    assert text.count(HASH) == pages
    for i in range(300):
        assert len(rows_with(text, rupiah(1_000_007 + 1000 * i, "en"), rupiah(i, "en"))) == 1, i
    # the table header is repeated after each break inside a session's lines
    assert len(rows_with(text, "Charge", "Quantity", "Unit price", "Amount")) >= pages - 1


def test_same_document_same_bytes(tmp_path: Path) -> None:
    doc = invoice()
    first = render_pdf(doc, "id")
    assert render_pdf(copy.deepcopy(doc), "id") == first
    assert b"/CreationDate (D:20261130170000Z)" in first  # the period's end (1 Dec 00:00 WIB), not the clock
    assert b"/Producer (Shopfloor)" in first
    assert render_pdf(doc, "en") != first
    changed = copy.deepcopy(doc)
    changed["lines"][0]["amount"] += 1
    assert render_pdf(changed, "id") != first


# The tests above use hand-built documents; these two run the billing core itself (imported inside them, so a
# broken core fails only these): its document's JSON, CSV and PDF must agree and be reproducible from stored inputs.


def core_inputs() -> Any:
    """Charging inputs for the billing core itself: two tenants on one CNC mill, a capacity pool, a no-show."""
    from api.core.billing.charging import Inputs
    from api.core.billing.model import Booking, Capacity, Category, CostPool, Policy, PoolCategory, Tariff, UsageRecord

    def record(tenant: str, badge: int, start: int, running_ms: int, good: int) -> UsageRecord:
        return UsageRecord(
            id=f"cnc-01/{badge}/{start}",
            tenant=tenant,
            machine="cnc-01",
            machine_class="cnc-mill",
            badge=badge,
            start_ms=start,
            end_ms=start + running_ms + 900_000,
            time_ms=((Category.RUNNING, running_ms), (Category.BREAKDOWN, 900_000)),
            good=good,
            reject=1,
            energy_wh=4_321,
            oee_bp=7_125,
        )

    tariff = Tariff(
        code="cnc-std",
        version=1,
        machine=None,
        machine_class="cnc-mill",
        valid_from_ms=0,
        valid_to_ms=None,
        rate_per_hour=150_000,
        increment_min=6,
        no_show_charge=75_000,
        energy_per_kwh=1_500,
        per_part=250,
    )
    return Inputs(
        period="2026-11",
        period_start_ms=P0,
        period_end_ms=P1,
        records=(record("t-maju", 1001, S0, 7_000_000, 40), record("t-sinar", 2002, L0, 2_000_000, 7)),
        bookings=(Booking(id=7, tenant="t-maju", machine="cnc-01", start_ms=P1 - 7_200_000, end_ms=P1 - 3_600_000),),
        tariffs=(tariff,),
        pools=(CostPool(machine="cnc-01", period="2026-11", category=PoolCategory.DEPRECIATION, amount=7_200_000),),
        capacity=(Capacity(machine="cnc-01", capacity_ms=1_296_000_000),),
        policy=Policy.CAPACITY,
        loss_map_version="1",
    )


def core_document(inputs: Any) -> dict[str, Any]:
    from api.core.billing.charging import charge
    from api.core.billing.document import invoice_document

    doc: dict[str, Any] = invoice_document(
        inputs,
        charge(inputs),
        tenant="t-maju",
        tenant_name="CV Maju Jaya",
        site_id="bdg",
        site_name="Bandung",
        facility_name="Pusat Berbagi Pabrik Bandung",
        time_zone="Asia/Jakarta",
    )
    return doc


@pytest.mark.parametrize("lang", ["en", "id"])
def test_the_billing_cores_document_prints_the_same_figures_as_its_json(lang: str, tmp_path: Path) -> None:
    import json

    from api.core.billing.export import to_json

    doc = json.loads(to_json(core_document(core_inputs())))  # what the JSON export says, read back
    assert doc["lines"] and doc["sessions"] and doc["pools"]
    assert all(line["tenant"] == "t-maju" for line in doc["lines"])
    text = text_of(render_pdf(doc, lang), tmp_path)
    for item in doc["lines"]:
        figures = (quantity(item["quantity"], item["unit"], lang), rupiah(item["amount"], lang))
        assert rows_with(text, label(f"kind_{item['kind']}", lang), *figures, rupiah(item["tax"], lang)), item
    for key in ("subtotal", "tax", "total"):
        pattern = rf"^\s*{re.escape(label(key, lang))}\s+{re.escape(rupiah(doc['totals'][key], lang))}\s*$"
        assert re.search(pattern, text, re.MULTILINE), key
    for session in doc["sessions"]:
        assert f"{label('billable_hours', lang)}: {hours(session['billable_ms'], lang)}" in text
        assert f"{label('energy', lang)}: {kwh(session['energy_wh'], lang)}" in text
    assert "t-sinar" not in text  # the other tenant's session is on the same machine, not on this invoice


def test_recomputing_from_stored_inputs_gives_identical_json_and_csv() -> None:
    import json

    from api.core.billing.document import inputs_from_json, inputs_to_json
    from api.core.billing.export import to_csv, to_json

    inputs = core_inputs()
    first = core_document(inputs)
    stored = json.loads(json.dumps(inputs_to_json(inputs)))  # as the ledger keeps them
    again = core_document(inputs_from_json(stored))
    assert to_json(again) == to_json(first)
    for lang in ("en", "id"):
        assert to_csv(again, lang) == to_csv(first, lang)
    assert render_pdf(again, "id") == render_pdf(first, "id")
