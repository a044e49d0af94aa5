"""Invoice exports: canonical JSON and RFC 4180 CSV, byte for byte, in both languages, safe against CSV injection."""

from __future__ import annotations

import copy
import csv
import io
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.core.billing.export import COLUMNS, to_csv, to_json

P0 = 1_793_466_000_000  # 1 Nov 2026 00:00 WIB (UTC+7)
P1 = 1_796_058_000_000  # 1 Dec 2026 00:00 WIB
S0 = 1_793_581_200_000  # 2 Nov 2026 08:00 WIB
S1 = 1_793_593_800_000  # 2 Nov 2026 11:30 WIB


def line(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenant": "t-maju",
        "machine": "cnc-01",
        "kind": "machine_time",
        "start_ms": S0,
        "end_ms": S1,
        "quantity": 195,
        "unit": "min",
        "unit_price": 150_000,
        "amount": 487_500,  # 195 min x 150.000 / 60
        "tax_rate_bp": 1100,
        "tax": 53_625,  # 11 % of 487.500
        "tariff": "cnc-std@1",
        "record": f"cnc-01/1001/{S0}",
        "note": "",
    }
    return base | fields


def invoice(**fields: Any) -> dict[str, Any]:
    """A two-line invoice: machine time and the capacity share (65.000 + 7.150 PPN)."""
    lines = [
        line(),
        line(
            kind="capacity",
            start_ms=P0,
            end_ms=P1,
            unit_price=20_000,
            amount=65_000,  # 195 min x 20.000 / 60
            tax=7_150,
            tariff=None,
            record=None,
            note="capacity share",
        ),
    ]
    doc: dict[str, Any] = {
        "schema": 1,
        "kind": "invoice",
        "number": None,
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
        "sessions": [],
        "tariffs": [],
        "pools": [],
        # 487.500 + 65.000 = 552.500; 53.625 + 7.150 = 60.775; total 613.275
        "totals": {"subtotal": 552_500, "tax": 60_775, "total": 613_275},
    }
    return doc | fields


def report() -> dict[str, Any]:
    """The whole-period view: two tenants' lines, totals per tenant, the facility's unused capacity."""
    return {
        "period": "2026-11",
        "policy": "capacity",
        "loss_map_version": "1",
        "lines": [line(), line(tenant="t-sinar", machine="laser-01", amount=100, tax=11, record="r2")],
        "totals": {
            "tenants": [
                {"tenant": "t-maju", "subtotal": 487_500, "tax": 53_625, "total": 541_125},
                {"tenant": "t-sinar", "subtotal": 100, "tax": 11, "total": 111},
            ],
            "facility": {"unallocated": 7_135_000, "pools": []},
        },
    }


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


# -- JSON ---------------------------------------------------------------------------------------------------------


def test_json_is_canonical_bytes() -> None:
    doc = {"b": [1, -2, None, True], "a": {"z": "Café Ñ", "y": ""}, "c": 'x\ny"z'}
    # keys sorted at every level, no spaces, non-ASCII kept as UTF-8, escapes as JSON requires, final newline
    expected = '{"a":{"y":"","z":"Café Ñ"},"b":[1,-2,null,true],"c":"x\\ny\\"z"}\n'.encode()
    assert to_json(doc) == expected


def test_json_of_equal_documents_is_identical() -> None:
    doc = invoice()
    shuffled = dict(reversed(list(copy.deepcopy(doc).items())))
    assert to_json(shuffled) == to_json(doc)
    # stored and read back (what a recompute from the ledger does): the very same bytes
    assert to_json(json.loads(to_json(doc))) == to_json(doc)
    assert to_json(doc).endswith(b"}\n") and b" " not in to_json({"a": [1, 2]})


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"lines": [{"amount": 1.0}]}, r"\$\.lines\[0\]\.amount"),
        ({"totals": {"tax": float("nan")}}, r"\$\.totals\.tax"),
        ({"x": {1, 2}}, r"\$\.x"),
        ({"x": b"bytes"}, r"\$\.x"),
        ({1: "int key"}, r"\$: key 1"),
    ],
)
def test_json_refuses_what_is_not_a_document_naming_the_path(bad: dict[Any, Any], path: str) -> None:
    with pytest.raises(TypeError, match=path):
        to_json(bad)


def test_json_refuses_lone_surrogates_and_absurd_nesting() -> None:
    with pytest.raises(ValueError, match=r"\$\.tenant\.name: text is not valid Unicode"):
        to_json({"tenant": {"name": "x\ud800"}})
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper than 64"):
        to_json({"x": deep})


# -- CSV ----------------------------------------------------------------------------------------------------------

HEADER_EN = (
    b"Tenant,Machine,Session start,Session end,Kind,Quantity,Unit,Unit price,Amount,Tax rate (bp),PPN (VAT),"
    b"Tariff,Record\r\n"
)
EXPECTED_EN = HEADER_EN + (
    b"t-maju,cnc-01,2026-11-02T08:00:00+07:00,2026-11-02T11:30:00+07:00,machine_time,195,min,150000,487500,1100,53625,"
    b"cnc-std@1,cnc-01/1001/1793581200000\r\n"
    b"t-maju,cnc-01,2026-11-01T00:00:00+07:00,2026-12-01T00:00:00+07:00,capacity,195,min,20000,65000,1100,7150,,\r\n"
    b"t-maju,,,,subtotal,,,,552500,,,,\r\n"
    b"t-maju,,,,tax,,,,60775,,,,\r\n"
    b"t-maju,,,,total,,,,613275,,,,\r\n"
)


def test_csv_bytes_en() -> None:
    assert to_csv(invoice(), "en") == EXPECTED_EN


def test_csv_bytes_id_translates_the_header_only() -> None:
    header = "Penyewa,Mesin,Mulai sesi,Akhir sesi,Jenis,Kuantitas,Satuan,Harga satuan,Jumlah,Tarif PPN (bp),PPN,"
    header += "Tarif,Rekaman\r\n"
    body = EXPECTED_EN.split(b"\r\n", 1)[1]  # kind values, numbers and times are the same in both languages
    assert to_csv(invoice(), "id") == header.encode() + body


def test_csv_of_a_stored_and_reloaded_document_is_identical() -> None:
    doc = invoice()
    reloaded = json.loads(to_json(doc))
    assert to_csv(reloaded, "id") == to_csv(doc, "id")
    assert to_csv(copy.deepcopy(doc)) == to_csv(doc)


def test_csv_credit_note_negative_numbers_stay_numbers() -> None:
    doc = invoice(kind="credit_note", lines=[line(amount=-487_500, tax=-53_625)])
    doc["totals"] = {"subtotal": -487_500, "tax": -53_625, "total": -541_125}
    got = rows(to_csv(doc))
    assert got[1][COLUMNS.index("amount")] == "-487500"
    assert got[1][COLUMNS.index("tax")] == "-53625"
    assert [r[COLUMNS.index("amount")] for r in got[2:]] == ["-487500", "-53625", "-541125"]


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ('=HYPERLINK("http://x","pay")', '\'=HYPERLINK("http://x","pay")'),
        ("+62 811", "'+62 811"),
        ("-5", "'-5"),  # a tenant called "-5" is text, not a number: escaped
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("CV =Maju", "CV =Maju"),  # only the first character matters
        ("'quoted", "'quoted"),
    ],
)
def test_csv_injection_text_cells_are_escaped(name: str, cell: str) -> None:
    doc = invoice(lines=[line(tenant=name, machine=name, record=name)], tenant={"id": name, "name": name})
    got = rows(to_csv(doc))
    assert got[1][0] == got[1][1] == got[1][COLUMNS.index("record")] == cell
    assert got[2][0] == cell  # the total rows' tenant too


def test_csv_quotes_commas_quotes_and_newlines_rfc4180() -> None:
    name = 'PT "Besi, Baja"\nTbk'
    data = to_csv(invoice(lines=[line(tenant=name)]))
    assert b'"PT ""Besi, Baja""\nTbk",cnc-01,' in data
    assert rows(data)[1][0] == name


@given(st.text(max_size=40), st.text(max_size=40))
def test_csv_round_trips_any_names(tenant: str, machine: str) -> None:
    tenant, machine = (s.replace("\x00", "") for s in (tenant, machine))  # csv.reader refuses NUL
    doc = invoice(lines=[line(tenant=tenant, machine=machine)], tenant={"id": tenant, "name": tenant})
    back = rows(to_csv(doc))
    escaped = [("'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s) for s in (tenant, machine)]
    assert back[1][:2] == escaped
    assert back[1][COLUMNS.index("amount")] == "487500"
    assert len(back) == 5 and all(len(r) == len(COLUMNS) for r in back)


def test_csv_of_the_report_document() -> None:
    expected = HEADER_EN + (
        b"t-maju,cnc-01,2026-11-02T01:00:00+00:00,2026-11-02T04:30:00+00:00,machine_time,195,min,150000,487500,1100,53625,"
        b"cnc-std@1,cnc-01/1001/1793581200000\r\n"
        b"t-sinar,laser-01,2026-11-02T01:00:00+00:00,2026-11-02T04:30:00+00:00,machine_time,195,min,150000,100,1100,11,"
        b"cnc-std@1,r2\r\n"
        b"t-maju,,,,subtotal,,,,487500,,,,\r\n"
        b"t-maju,,,,tax,,,,53625,,,,\r\n"
        b"t-maju,,,,total,,,,541125,,,,\r\n"
        b"t-sinar,,,,subtotal,,,,100,,,,\r\n"
        b"t-sinar,,,,tax,,,,11,,,,\r\n"
        b"t-sinar,,,,total,,,,111,,,,\r\n"
        b",,,,unallocated,,,,7135000,,,,\r\n"
    )
    # the report carries no zone: times are UTC, with their offset, unless the caller names the site's zone
    assert to_csv(report()) == expected
    jakarta = rows(to_csv(report(), "id", time_zone="Asia/Jakarta"))
    assert jakarta[1][2:4] == ["2026-11-02T08:00:00+07:00", "2026-11-02T11:30:00+07:00"]


def test_csv_keeps_milliseconds_when_there_are_some() -> None:
    got = rows(to_csv(invoice(lines=[line(start_ms=S0 + 123, end_ms=S1 + 1)])))
    assert got[1][2:4] == ["2026-11-02T08:00:00.123+07:00", "2026-11-02T11:30:00.001+07:00"]


def test_csv_unsupported_language_and_zone() -> None:
    with pytest.raises(ValueError, match=r"language 'fr' not supported \(en, id\)"):
        to_csv(invoice(), "fr")
    with pytest.raises(ValueError, match="time zone 'Mars/Olympus' unknown"):
        to_csv(invoice(time_zone="Mars/Olympus"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(lines="nope"), r"\$\.lines must be a list, got str"),
        (lambda d: d["lines"][1].update(amount="65000"), r"\$\.lines\[1\]\.amount must be an integer, got str"),
        (lambda d: d["lines"][0].update(amount=True), r"\$\.lines\[0\]\.amount must be an integer, got bool"),
        (lambda d: d["lines"][0].update(quantity=1.5), r"\$\.lines\[0\]\.quantity must be an integer, got float"),
        (lambda d: d["lines"][0].pop("start_ms"), r"\$\.lines\[0\]\.start_ms must be an integer, got NoneType"),
        (lambda d: d["lines"][0].update(tenant=None), r"\$\.lines\[0\]\.tenant must be a string"),
        (lambda d: d["lines"][0].update(tariff=7), r"\$\.lines\[0\]\.tariff must be a string, got int"),
        (lambda d: d.__setitem__("lines", [3]), r"\$\.lines\[0\] must be an object, got int"),
        (lambda d: d.pop("totals"), r"\$\.totals must be an object, got NoneType"),
        (lambda d: d["totals"].pop("total"), r"\$\.totals\.total must be an integer"),
        (lambda d: d.update(tenant="t-maju"), r"\$\.tenant must be an object, got str"),
    ],
)
def test_csv_malformed_document_names_the_field(change: Any, message: str) -> None:
    doc = invoice()
    change(doc)
    with pytest.raises(ValueError, match=message):
        to_csv(doc)


def test_csv_malformed_report_names_the_field() -> None:
    doc = report()
    doc["totals"]["tenants"][1]["tax"] = "11"
    with pytest.raises(ValueError, match=r"\$\.totals\.tenants\[1\]\.tax must be an integer"):
        to_csv(doc)
    doc = report()
    del doc["totals"]["facility"]
    with pytest.raises(ValueError, match=r"\$\.totals\.facility must be an object"):
        to_csv(doc)


def test_csv_of_many_lines_is_one_row_each() -> None:
    doc = invoice(lines=[line(amount=i, record=f"r{i}") for i in range(2000)])
    got = rows(to_csv(doc))
    assert len(got) == 1 + 2000 + 3
    assert [r[COLUMNS.index("amount")] for r in got[1:2001]] == [str(i) for i in range(2000)]
