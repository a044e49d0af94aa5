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
    # web pages (api/web): board, machine view, reports, tenant portal; the browser formats with the same table
    "web_lang_name": {"en": "English", "id": "Bahasa Indonesia"},
    "web_language": {"en": "Language", "id": "Bahasa"},
    "web_skip": {"en": "Skip to content", "id": "Lompat ke isi"},
    "web_signin_title": {"en": "Sign in", "id": "Masuk"},
    "web_key": {"en": "API key", "id": "Kunci API"},
    "web_signin": {"en": "Sign in", "id": "Masuk"},
    "web_signin_hint": {
        "en": "Paste the API key you were given. It is sent once; this browser keeps only a session cookie.",
        "id": "Tempel kunci API yang Anda terima. Kunci dikirim sekali; peramban ini hanya menyimpan cookie sesi.",
    },
    "web_signin_error": {
        "en": "That key was not accepted. Check it and try again.",
        "id": "Kunci itu tidak diterima. Periksa lalu coba lagi.",
    },
    "web_signout": {"en": "Sign out", "id": "Keluar"},
    "web_signed_in_as": {"en": "Signed in as {name}", "id": "Masuk sebagai {name}"},
    "web_board": {"en": "Fleet board", "id": "Papan mesin"},
    "web_reports": {"en": "Reports", "id": "Laporan"},
    "web_portal": {"en": "Tenant portal", "id": "Portal penyewa"},
    "web_kiosk": {"en": "Large type", "id": "Huruf besar"},
    "web_forbidden_title": {"en": "Not allowed", "id": "Tidak diizinkan"},
    "web_forbidden": {"en": "Your key may not open this page.", "id": "Kunci Anda tidak boleh membuka halaman ini."},
    "web_not_found_title": {"en": "Not found", "id": "Tidak ditemukan"},
    "web_not_found": {"en": "There is no such page or machine.", "id": "Halaman atau mesin itu tidak ada."},
    "web_home": {"en": "Home", "id": "Beranda"},
    "web_loading": {"en": "Loading...", "id": "Memuat..."},
    "web_load_error": {"en": "Could not load: {detail}", "id": "Gagal memuat: {detail}"},
    "web_none": {"en": "None", "id": "Tidak ada"},
    "web_connecting": {"en": "Connecting...", "id": "Menghubungkan..."},
    "web_live": {"en": "Live", "id": "Langsung"},
    "web_reconnecting": {"en": "Connection lost, reconnecting...", "id": "Koneksi terputus, menyambung ulang..."},
    "web_no_data_since": {"en": "No data since {time}", "id": "Tanpa data sejak {time}"},
    "web_no_data_ever": {"en": "No data yet", "id": "Belum ada data"},
    "web_reason_unreachable": {"en": "PLC unreachable", "id": "PLC tidak terjangkau"},
    "web_reason_agent_offline": {"en": "Agent offline", "id": "Agen luring"},
    "web_reason_silence": {"en": "Machine silent", "id": "Mesin tidak mengirim data"},
    "web_reason_no_data": {"en": "No data received", "id": "Tidak ada data diterima"},
    "web_reason_outbox_loss": {"en": "Data lost in transit", "id": "Data hilang dalam pengiriman"},
    "web_free": {"en": "Free", "id": "Kosong"},
    "web_occupied": {"en": "Occupied", "id": "Terpakai"},
    "web_unowned_badge": {"en": "Badge {badge} (no tenant)", "id": "Kartu {badge} (tanpa penyewa)"},
    "web_job": {"en": "Job", "id": "Pekerjaan"},
    "web_shift_parts": {"en": "Parts this shift", "id": "Produk shift ini"},
    "web_shift_oee": {"en": "OEE this shift", "id": "OEE shift ini"},
    "web_shift": {"en": "Shift", "id": "Shift"},
    "web_power": {"en": "Power", "id": "Daya"},
    "web_last_data": {"en": "Last data", "id": "Data terakhir"},
    "web_ago_s": {"en": "{n} s ago", "id": "{n} dtk lalu"},
    "web_ago_min": {"en": "{n} min ago", "id": "{n} mnt lalu"},
    "web_ago_h": {"en": "{n} h ago", "id": "{n} jam lalu"},
    "web_timeline_today": {"en": "State today", "id": "Status hari ini"},
    "web_counters": {"en": "Counters", "id": "Penghitung"},
    "web_good_count": {"en": "Good parts (counter)", "id": "Produk baik (penghitung)"},
    "web_reject_count": {"en": "Rejects (counter)", "id": "Produk cacat (penghitung)"},
    "web_energy_count": {"en": "Energy (meter)", "id": "Energi (meteran)"},
    "web_stop_reason": {"en": "Stop reason", "id": "Alasan berhenti"},
    "web_stop_reasons": {"en": "Stop reasons", "id": "Alasan berhenti"},
    "web_stop_reason_code": {"en": "Reason {code}", "id": "Alasan {code}"},
    "web_code": {"en": "Code", "id": "Kode"},
    "web_booked_as": {"en": "Booked as", "id": "Dicatat sebagai"},
    "web_sessions": {"en": "Sessions", "id": "Sesi"},
    "web_my_sessions": {"en": "My sessions", "id": "Sesi saya"},
    "web_oee_by_shift": {"en": "OEE by shift", "id": "OEE per shift"},
    "web_oee_by_machine": {"en": "OEE by machine", "id": "OEE per mesin"},
    "web_oee_by_day": {"en": "OEE by day", "id": "OEE per hari"},
    "web_losses": {"en": "Losses", "id": "Kerugian"},
    "web_availability": {"en": "Availability", "id": "Ketersediaan"},
    "web_effectiveness": {"en": "Performance", "id": "Kinerja"},
    "web_quality": {"en": "Quality", "id": "Kualitas"},
    "web_coverage": {"en": "Data coverage", "id": "Cakupan data"},
    "web_day": {"en": "Day", "id": "Hari"},
    "web_from": {"en": "From", "id": "Dari"},
    "web_to": {"en": "To (inclusive)", "id": "Sampai (termasuk)"},
    "web_show": {"en": "Show", "id": "Tampilkan"},
    "web_usage_by_tenant": {"en": "Usage by tenant", "id": "Pemakaian per penyewa"},
    "web_invoices": {"en": "Invoices", "id": "Faktur"},
    "web_pdf": {"en": "PDF", "id": "PDF"},
    "web_open_pdf": {"en": "PDF of {number}", "id": "PDF {number}"},
    "web_hours": {"en": "Hours", "id": "Jam"},
    "web_session_hours": {"en": "Session hours", "id": "Jam sesi"},
    "web_running_hours": {"en": "Running hours", "id": "Jam berjalan"},
    "web_machines": {"en": "Machines", "id": "Mesin"},
    "web_no_tenant": {"en": "No tenant (unowned badge)", "id": "Tanpa penyewa (kartu tak bertuan)"},
    "web_loss_breakdown": {"en": "Breakdown", "id": "Kerusakan"},
    "web_loss_setup": {"en": "Setup", "id": "Penyetelan"},
    "web_loss_no_operator": {"en": "No operator", "id": "Tanpa operator"},
    "web_loss_no_material": {"en": "No material", "id": "Tanpa bahan"},
    "web_loss_off": {"en": "Off", "id": "Mati"},
    "web_loss_maintenance": {"en": "Maintenance", "id": "Perawatan"},
    "web_loss_other": {"en": "Other", "id": "Lainnya"},
    "web_loss_unknown": {"en": "Unknown (no data)", "id": "Tidak diketahui (tanpa data)"},
    "web_loss_microstops": {"en": "Microstops", "id": "Henti singkat"},
    "web_loss_speed_loss": {"en": "Speed loss", "id": "Kehilangan kecepatan"},
    "web_loss_rejects": {"en": "Rejects", "id": "Produk cacat"},
    "web_chart_label": {"en": "{title}: bar chart", "id": "{title}: diagram batang"},
    "web_flag": {"en": "Flags", "id": "Tanda"},
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
