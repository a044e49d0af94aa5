"""Invoice and report documents as bytes for machines: canonical JSON and CSV (RFC 4180).

Both are functions of the document alone, so a finalized invoice recomputed from its stored inputs exports to the
very same bytes. Numbers are plain integers (no separators, no floats: rupiah, minutes, Wh, basis points); the
CSV's header is translated but its ``kind`` values are the stable identifiers of the document (``machine_time``,
``subtotal``, ...), so a spreadsheet or a script reads both languages alike.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

from api.core.billing.document import canonical
from api.core.i18n import check_lang, label, local

COLUMNS = (
    "tenant",
    "machine",
    "session_start",
    "session_end",
    "kind",
    "quantity",
    "unit",
    "unit_price",
    "amount",
    "tax_rate",
    "tax",
    "tariff",
    "record",
)
TOTAL_KINDS = ("subtotal", "tax", "total")  # the kind cell of an invoice's (or a tenant's) total rows
UNALLOCATED = "unallocated"  # the kind cell of a report's facility row: capacity nobody used
MAX_DEPTH = 64
# A spreadsheet runs a text cell starting with one of these as a formula: tenant and machine names are user data.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int


def to_json(doc: Mapping[str, object]) -> bytes:
    """Return doc as canonical JSON: sorted keys, compact, UTF-8, a final newline; floats refused."""
    _check_json(doc, "$", 0)
    # The very bytes the ledger hashes (api.core.billing.document.canonical), plus the final newline.
    return canonical(doc) + b"\n"


def _check_json(value: object, path: str, depth: int) -> None:
    # A float (or NaN) in a money document is a bug upstream; refuse it here too rather than print 1e+21.
    if depth > MAX_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} is not a string")
            _check_text(key, path)
            _check_json(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
    else:
        raise TypeError(f"{path}: {type(value).__name__} is not a JSON value (dict, list, str, int, bool, None)")


def _check_text(value: str, path: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{path}: text is not valid Unicode (lone surrogate)") from None


def to_csv(doc: Mapping[str, object], lang: str = "en", *, time_zone: str | None = None) -> bytes:
    """Return an invoice (or the whole-period report) as CSV: one row per line, then its total rows.

    Columns are COLUMNS, headed in lang. session_start and session_end are ISO 8601 with the offset, in time_zone,
    else the document's time_zone, else UTC (the report document carries no zone). Total rows have the tenant,
    a kind from TOTAL_KINDS and the figure in the amount column; a report adds one row per tenant per total and
    a facility row (no tenant, kind "unallocated"). UTF-8 without a BOM, CRLF line ends.
    """
    check_lang(lang)
    zone = time_zone if time_zone is not None else _opt_str(doc, "time_zone", "$") or "UTC"
    local(0, zone)  # refuse an unknown zone before writing anything
    rows: list[Sequence[Cell]] = [[label(c, lang) for c in COLUMNS]]
    for i, line in enumerate(_list(doc, "lines", "$")):
        rows.append(_line_row(_mapping(line, f"$.lines[{i}]"), f"$.lines[{i}]", zone))
    totals = _mapping(doc.get("totals"), "$.totals")
    if "tenants" in totals:
        for i, item in enumerate(_list(totals, "tenants", "$.totals")):
            path = f"$.totals.tenants[{i}]"
            entry = _mapping(item, path)
            rows.extend(_total_rows(_str(entry, "tenant", path), entry, path))
        facility = _mapping(totals.get("facility"), "$.totals.facility")
        rows.append(_total_row("", UNALLOCATED, _int(facility, "unallocated", "$.totals.facility")))
    else:
        tenant = _str(_mapping(doc.get("tenant"), "$.tenant"), "id", "$.tenant")
        rows.extend(_total_rows(tenant, totals, "$.totals"))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([_cell(c) for c in row] for row in rows)
    return out.getvalue().encode()


def _line_row(line: Mapping[str, object], path: str, zone: str) -> list[Cell]:
    return [
        _str(line, "tenant", path),
        _str(line, "machine", path),
        _iso(_int(line, "start_ms", path), zone),
        _iso(_int(line, "end_ms", path), zone),
        _str(line, "kind", path),
        _int(line, "quantity", path),
        _str(line, "unit", path),
        _int(line, "unit_price", path),
        _int(line, "amount", path),
        _int(line, "tax_rate_bp", path),
        _int(line, "tax", path),
        _opt_str(line, "tariff", path) or "",
        _opt_str(line, "record", path) or "",
    ]


def _total_rows(tenant: str, totals: Mapping[str, object], path: str) -> list[list[Cell]]:
    return [_total_row(tenant, kind, _int(totals, kind, path)) for kind in TOTAL_KINDS]


def _total_row(tenant: str, kind: str, amount: int) -> list[Cell]:
    row: list[Cell] = [""] * len(COLUMNS)
    row[COLUMNS.index("tenant")] = tenant
    row[COLUMNS.index("kind")] = kind
    row[COLUMNS.index("amount")] = amount
    return row


def _cell(value: Cell) -> str:
    # Only text is escaped: a negative amount is a number and must stay one.
    if isinstance(value, int):
        return str(value)
    if value.startswith(FORMULA_START):
        return "'" + value
    return value


def _iso(ms: int, zone: str) -> str:
    # Whole seconds print without ".000": both forms are ISO 8601 and exact, and most boundaries are whole.
    return local(ms, zone).isoformat(timespec="milliseconds" if ms % 1000 else "seconds")


def _mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be an object, got {type(value).__name__}")
    return value


def _list(obj: Mapping[str, object], key: str, path: str) -> Sequence[object]:
    value = obj.get(key)
    if not isinstance(value, list | tuple):
        raise ValueError(f"{path}.{key} must be a list, got {type(value).__name__}")
    return value


def _int(obj: Mapping[str, object], key: str, path: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{path}.{key} must be an integer, got {type(value).__name__}")
    return value


def _str(obj: Mapping[str, object], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{path}.{key} must be a string, got {type(value).__name__}")
    _check_text(value, f"{path}.{key}")
    return value


def _opt_str(obj: Mapping[str, object], key: str, path: str) -> str | None:
    return None if obj.get(key) is None else _str(obj, key, path)
