"""Labels and number/date formats in English and Bahasa Indonesia, for invoices, exports and the board.

Pure and exact: amounts are integer rupiah and every figure is formatted from integers (ms, Wh, basis points) by
integer arithmetic, rounding half away from zero, so a printed figure never depends on float rounding.

Conventions (chosen here, once):
- Money: en "Rp 1,234,567", id "Rp 1.234.567", negatives "-Rp 1.234.567"; always whole rupiah.
- Decimals: en "1,234.5", id "1.234,5"; trailing zeros trimmed ("2", not "2.00").
- Percent: no space in either language ("11%", "85,33%"), as the Indonesian spelling rules (PUEBI) and English
  usage both write it.
- Dates: en "1 Nov 2026", id "1 November 2026"; date and time "1 Nov 2026 08:30" (abbreviated month in both,
  24-hour clock with a colon); a period "November 2026".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LANGS = ("en", "id")
MS_PER_HOUR = 3_600_000
MAX_PLACES = 6

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")

# One table: every key in every language (a test checks). Placeholders in braces are filled by str.format.
LABELS: Mapping[str, Mapping[str, str]] = {
    # documents
    "invoice": {"en": "INVOICE", "id": "FAKTUR"},
    "credit_note": {"en": "CREDIT NOTE", "id": "NOTA KREDIT"},
    "draft": {"en": "DRAFT", "id": "DRAF"},
    "facility": {"en": "Facility", "id": "Fasilitas"},
    "site": {"en": "Site", "id": "Lokasi"},
    "period": {"en": "Period", "id": "Periode"},
    "tenant": {"en": "Tenant", "id": "Penyewa"},
    "number": {"en": "Number", "id": "Nomor"},
    "status": {"en": "Status", "id": "Status"},
    "status_draft": {"en": "Draft", "id": "Draf"},
    "status_finalized": {"en": "Finalized", "id": "Final"},
    "status_void": {"en": "Void", "id": "Batal"},
    "credit_for": {"en": "Credit for invoice", "id": "Nota kredit atas faktur"},
    "override": {"en": "Override", "id": "Penyesuaian"},
    "reason": {"en": "Reason", "id": "Alasan"},
    "policy": {"en": "Cost sharing", "id": "Pembagian biaya"},
    "policy_capacity": {"en": "Capacity", "id": "Kapasitas"},
    "policy_full_recovery": {"en": "Full recovery", "id": "Pemulihan biaya penuh"},
    "currency": {"en": "Currency", "id": "Mata uang"},
    "time_zone": {"en": "Time zone", "id": "Zona waktu"},
    # sessions
    "machine": {"en": "Machine", "id": "Mesin"},
    "session": {"en": "Session", "id": "Sesi"},
    "badge": {"en": "Badge", "id": "Kartu"},
    "hours_by_state": {"en": "Hours by state", "id": "Jam per status"},
    "state_running": {"en": "Running", "id": "Berjalan"},
    "state_setup": {"en": "Setup", "id": "Penyetelan"},
    "state_idle": {"en": "Idle", "id": "Menganggur"},
    "state_stopped": {"en": "Stopped", "id": "Berhenti"},
    "state_breakdown": {"en": "Breakdown", "id": "Kerusakan"},
    "state_off": {"en": "Off", "id": "Mati"},
    "state_maintenance": {"en": "Maintenance", "id": "Perawatan"},
    "state_unknown": {"en": "Unknown (no data)", "id": "Tidak diketahui (tanpa data)"},
    "billable_hours": {"en": "Billable hours", "id": "Jam ditagih"},
    "energy": {"en": "Energy", "id": "Energi"},
    "parts": {"en": "Parts", "id": "Produk"},
    "good": {"en": "good", "id": "baik"},
    "reject": {"en": "reject", "id": "cacat"},
    "oee": {"en": "OEE", "id": "OEE"},
    "anomalies": {"en": "Counter anomalies (not billed)", "id": "Anomali penghitung (tidak ditagih)"},
    "not_available": {"en": "n/a", "id": "t/a"},
    # lines
    "charge": {"en": "Charge", "id": "Biaya"},
    "kind": {"en": "Kind", "id": "Jenis"},
    "kind_machine_time": {"en": "Machine time", "id": "Waktu mesin"},
    "kind_booked_minimum": {"en": "Booked minimum", "id": "Minimum pemesanan"},
    "kind_no_show": {"en": "No-show", "id": "Tidak hadir"},
    "kind_energy": {"en": "Energy", "id": "Energi"},
    "kind_parts": {"en": "Parts", "id": "Produk"},
    "kind_capacity": {"en": "Capacity share", "id": "Bagian biaya kapasitas"},
    "kind_credit": {"en": "Credit", "id": "Kredit"},
    "other_charges": {"en": "Other charges", "id": "Biaya lainnya"},
    "quantity": {"en": "Quantity", "id": "Kuantitas"},
    "unit": {"en": "Unit", "id": "Satuan"},
    "unit_price": {"en": "Unit price", "id": "Harga satuan"},
    "amount": {"en": "Amount", "id": "Jumlah"},
    "tax_rate": {"en": "Tax rate (bp)", "id": "Tarif PPN (bp)"},
    "ppn_rate": {"en": "PPN rate", "id": "Tarif PPN"},
    "tax": {"en": "PPN (VAT)", "id": "PPN"},
    "tariff": {"en": "Tariff", "id": "Tarif"},
    "record": {"en": "Record", "id": "Rekaman"},
    "session_start": {"en": "Session start", "id": "Mulai sesi"},
    "session_end": {"en": "Session end", "id": "Akhir sesi"},
    # capacity basis and totals
    "capacity_basis": {"en": "Capacity cost basis", "id": "Dasar biaya kapasitas"},
    "pool": {"en": "Machine cost pool", "id": "Biaya mesin"},
    "capacity": {"en": "Capacity", "id": "Kapasitas"},
    "rate_per_hour": {"en": "Rate per hour", "id": "Tarif per jam"},
    "subtotal": {"en": "Subtotal", "id": "Subtotal"},
    "total": {"en": "Total", "id": "Total"},
    "unallocated": {"en": "Unused capacity (facility)", "id": "Kapasitas tak terpakai (fasilitas)"},
    # footer
    "hash": {"en": "Hash (SHA-256)", "id": "Hash (SHA-256)"},
    "not_finalized": {"en": "none: not finalized", "id": "tidak ada: belum final"},
    "page_of": {"en": "Page {page} of {pages}", "id": "Halaman {page} dari {pages}"},
    # units (quantities and unit prices)
    "unit_min": {"en": "min", "id": "menit"},
    "unit_hour": {"en": "h", "id": "jam"},
    "unit_kwh": {"en": "kWh", "id": "kWh"},
    "unit_part": {"en": "part", "id": "buah"},
    "unit_parts": {"en": "parts", "id": "buah"},
    "unit_booking": {"en": "booking", "id": "pemesanan"},
    "unit_bookings": {"en": "bookings", "id": "pemesanan"},
}

_MONTHS = {
    "en": (
        (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    ),
    "id": (
        (
            "Januari",
            "Februari",
            "Maret",
            "April",
            "Mei",
            "Juni",
            "Juli",
            "Agustus",
            "September",
            "Oktober",
            "November",
            "Desember",
        ),
        ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"),
    ),
}
_SEPARATORS = {"en": (",", "."), "id": (".", ",")}  # (thousands, decimal)


def check_lang(lang: str) -> str:
    """Return lang if it is supported, else raise ValueError listing the supported ones."""
    if lang not in LANGS:
        raise ValueError(f"language {lang!r} not supported ({', '.join(LANGS)})")
    return lang


def label(key: str, lang: str) -> str:
    """Return the label for key in lang."""
    check_lang(lang)
    entry = LABELS.get(key)
    if entry is None:
        raise ValueError(f"no label {key!r}")
    return entry[lang]


def _int(value: object, name: str) -> int:
    # bool is an int subclass: True must not print as 1 rupiah
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def integer(n: int, lang: str) -> str:
    """Format an integer with the language's thousands separator: en "1,234,567", id "1.234.567"."""
    n = _int(n, "n")
    sep = _SEPARATORS[check_lang(lang)][0]
    digits = str(abs(n))
    groups = [digits[max(0, i - 3) : i] for i in range(len(digits), 0, -3)][::-1]
    return ("-" if n < 0 else "") + sep.join(groups)


def decimal(numerator: int, denominator: int, lang: str, places: int = 2) -> str:
    """Format numerator / denominator rounded half away from zero to places, trailing zeros trimmed."""
    numerator, denominator, places = (
        _int(numerator, "numerator"),
        _int(denominator, "denominator"),
        _int(places, "places"),
    )
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    if not 0 <= places <= MAX_PLACES:
        raise ValueError(f"places must be 0..{MAX_PLACES}, got {places}")
    scale = 10**places
    q, r = divmod(abs(numerator) * scale, denominator)
    if 2 * r >= denominator:
        q += 1
    whole, frac = divmod(q, scale)
    text = integer(whole, lang)
    digits = str(frac).rjust(places, "0").rstrip("0") if places else ""
    if digits:
        text += _SEPARATORS[lang][1] + digits
    return ("-" if numerator < 0 and q else "") + text


def rupiah(amount: int, lang: str) -> str:
    """Format whole rupiah: en "Rp 1,234,567", id "Rp 1.234.567", negatives "-Rp 1.234.567"."""
    amount = _int(amount, "amount")
    return ("-" if amount < 0 else "") + "Rp " + integer(abs(amount), lang)


def hours(ms: int, lang: str, places: int = 2) -> str:
    """Format a duration in hours: en "1.5 h", id "1,5 jam"."""
    return f"{decimal(_int(ms, 'ms'), MS_PER_HOUR, lang, places)} {label('unit_hour', lang)}"


def kwh(wh: int, lang: str, places: int = 3) -> str:
    """Format energy given in Wh as kWh: en "1,234.5 kWh", id "1.234,5 kWh"."""
    return f"{decimal(_int(wh, 'wh'), 1000, lang, places)} kWh"


def percent_bp(bp: int, lang: str) -> str:
    """Format basis points as a percentage without a space: 1100 -> "11%", 8533 -> en "85.33%", id "85,33%"."""
    return decimal(_int(bp, "bp"), 100, lang, 2) + "%"


def quantity(q: int, unit: str, lang: str) -> str:
    """Format a charge line's quantity in its unit: minutes, Wh (shown as kWh), parts or bookings."""
    q = _int(q, "quantity")
    if unit == "min":
        return f"{integer(q, lang)} {label('unit_min', lang)}"
    if unit == "Wh":
        return kwh(q, lang)
    if unit in ("part", "booking"):
        return f"{integer(q, lang)} {label('unit_' + unit + ('' if abs(q) == 1 else 's'), lang)}"
    raise ValueError(f"unit {unit!r} unknown (min, Wh, part, booking)")


def unit_price(price: int, unit: str, lang: str) -> str:
    """Format a line's unit price: per hour for "min", per kWh for "Wh", per one otherwise."""
    per = {"min": "unit_hour", "Wh": "unit_kwh", "part": "unit_part", "booking": "unit_booking"}.get(unit)
    if per is None:
        raise ValueError(f"unit {unit!r} unknown (min, Wh, part, booking)")
    return f"{rupiah(price, lang)}/{label(per, lang)}"


def zone_info(zone: str) -> ZoneInfo:
    """Return the IANA time zone named zone, or raise ValueError naming it."""
    if not isinstance(zone, str) or not zone:
        raise ValueError(f"time zone {zone!r} unknown (an IANA name such as 'Asia/Jakarta')")
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"time zone {zone!r} unknown (an IANA name such as 'Asia/Jakarta')") from None


def local(ms: int, zone: str) -> datetime:
    """Return epoch ms as an aware datetime in zone."""
    return (_EPOCH + timedelta(milliseconds=_int(ms, "ms"))).astimezone(zone_info(zone))


def date(ms: int, zone: str, lang: str) -> str:
    """Format the local date of ms: en "1 Nov 2026", id "1 November 2026"."""
    full, short = _MONTHS[check_lang(lang)]
    t = local(ms, zone)
    return f"{t.day} {(short if lang == 'en' else full)[t.month - 1]} {t.year}"


def datetime_(ms: int, zone: str, lang: str) -> str:
    """Format the local date and time of ms: "1 Nov 2026 08:30" (id months: "1 Agu 2026 08:30")."""
    short = _MONTHS[check_lang(lang)][1]
    t = local(ms, zone)
    return f"{t.day} {short[t.month - 1]} {t.year} {t:%H:%M}"


def span(start_ms: int, end_ms: int, zone: str, lang: str) -> str:
    """Format a time range: "1 Nov 2026 08:30-12:00" within a local day, else both ends in full."""
    a, b = local(start_ms, zone), local(end_ms, zone)
    if a.date() == b.date():
        return f"{datetime_(start_ms, zone, lang)}-{b:%H:%M}"
    return f"{datetime_(start_ms, zone, lang)} - {datetime_(end_ms, zone, lang)}"


def period(value: str, lang: str) -> str:
    """Format a billing period "YYYY-MM" as "November 2026" (id "Agustus 2026")."""
    full = _MONTHS[check_lang(lang)][0]
    m = _PERIOD.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"period {value!r} is not YYYY-MM")
    return f"{full[int(m.group(2)) - 1]} {m.group(1)}"
