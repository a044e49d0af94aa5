"""Billing documents: charging inputs, invoices, credit notes and the period report as plain JSON values.

Documents hold only dicts (str keys), lists, str, int, bool and None: never a float, so canonical() bytes (and so
the hash chain over finalized invoices) are exact and stable. A tenant's invoice holds only its own lines,
sessions and the shared basis of the machines it used (pool, capacity, rate), never another tenant's figures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import TypeVar

from api.core.billing.charging import BillingError, Inputs, billable_minutes, billable_ms, tariff_at, validate
from api.core.billing.model import (
    BP,
    Booking,
    Capacity,
    Category,
    Charges,
    CostPool,
    Line,
    Policy,
    PoolCategory,
    Tariff,
    UsageRecord,
)

SCHEMA = 1
CURRENCY = "IDR"
MAX_INT = 2**63 - 1  # the business DB's BIGINT: nothing larger is a real amount, time or count
MAX_STR = 200  # ids, codes and names
_CATEGORIES = tuple(Category)

__all__ = [
    "CURRENCY",
    "SCHEMA",
    "canonical",
    "chain_hash",
    "credit_note_document",
    "inputs_from_json",
    "inputs_to_json",
    "invoice_document",
    "report_document",
]

Json = dict[str, object]
T = TypeVar("T")


# --- inputs -> JSON ---------------------------------------------------------------------------------------------


def _record_json(r: UsageRecord) -> Json:
    return {
        "id": r.id,
        "tenant": r.tenant,
        "machine": r.machine,
        "machine_class": r.machine_class,
        "badge": r.badge,
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "time_ms": {c.value: ms for c, ms in r.time_ms},
        "good": r.good,
        "reject": r.reject,
        "energy_wh": r.energy_wh,
        "anomalies": r.anomalies,
        "oee_bp": r.oee_bp,
    }


def _tariff_json(t: Tariff) -> Json:
    return {
        "code": t.code,
        "version": t.version,
        "machine": t.machine,
        "machine_class": t.machine_class,
        "valid_from_ms": t.valid_from_ms,
        "valid_to_ms": t.valid_to_ms,
        "rate_per_hour": t.rate_per_hour,
        "billable": [c.value for c in _CATEGORIES if c in t.billable],
        "increment_min": t.increment_min,
        "minimum_min": t.minimum_min,
        "grace_min": t.grace_min,
        "max_booked_actual": t.max_booked_actual,
        "no_show_charge": t.no_show_charge,
        "energy_per_kwh": t.energy_per_kwh,
        "per_part": t.per_part,
        "tax_rate_bp": t.tax_rate_bp,
    }


def inputs_to_json(inputs: Inputs) -> Json:
    """Return charging inputs as a JSON document (inputs_from_json reads it back exactly)."""
    return {
        "schema": SCHEMA,
        "period": inputs.period,
        "period_start_ms": inputs.period_start_ms,
        "period_end_ms": inputs.period_end_ms,
        "policy": inputs.policy.value,
        "loss_map_version": inputs.loss_map_version,
        "records": [_record_json(r) for r in inputs.records],
        "bookings": [
            {"id": b.id, "tenant": b.tenant, "machine": b.machine, "start_ms": b.start_ms, "end_ms": b.end_ms}
            for b in inputs.bookings
        ],
        "tariffs": [_tariff_json(t) for t in inputs.tariffs],
        "pools": [
            {"machine": p.machine, "period": p.period, "category": p.category.value, "amount": p.amount}
            for p in inputs.pools
        ],
        "capacity": [{"machine": c.machine, "capacity_ms": c.capacity_ms} for c in inputs.capacity],
        "machine_classes": [[m, c] for m, c in inputs.machine_classes],
    }


# --- JSON -> inputs: every value checked, every error with its path ---------------------------------------------


def _bad(path: str, what: str) -> BillingError:
    return BillingError(f"{path}: {what}")


def _obj(value: object, path: str, keys: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise _bad(path, f"must be an object, got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise _bad(path, f"missing {', '.join(missing)}")
    extra = sorted(str(k) for k in value if k not in keys)
    if extra:
        raise _bad(path, f"unknown field(s) {', '.join(repr(k) for k in extra[:5])}")
    return value


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise _bad(path, f"must be a list, got {type(value).__name__}")
    return value


def _int(value: object, path: str, lo: int = 0, hi: int = MAX_INT) -> int:
    # bool is an int in Python; true/false is never a figure.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(path, f"must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _bad(path, f"must be within {lo}..{hi}, got {value}")
    return value


def _opt_int(value: object, path: str, lo: int = 0) -> int | None:
    return None if value is None else _int(value, path, lo)


def _str(value: object, path: str, *, empty: bool = False, limit: int = MAX_STR) -> str:
    if not isinstance(value, str):
        raise _bad(path, f"must be a string, got {type(value).__name__}")
    if not value and not empty:
        raise _bad(path, "must not be empty")
    if len(value) > limit:
        raise _bad(path, f"is longer than {limit} characters")
    if any(ch < " " or ch == "\x7f" or "\ud800" <= ch <= "\udfff" for ch in value):
        raise _bad(path, "holds control characters or unpaired surrogates")
    return value


def _opt_str(value: object, path: str) -> str | None:
    return None if value is None else _str(value, path)


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(path, f"must be true or false, got {type(value).__name__}")
    return value


def _enum(kind: Callable[[str], T], value: object, path: str, choices: str) -> T:
    text = _str(value, path)
    try:
        return kind(text)
    except ValueError:
        raise _bad(path, f"{text!r} is not one of {choices}") from None


_CATEGORY_CHOICES = ", ".join(c.value for c in Category)


def _category(value: object, path: str) -> Category:
    return _enum(Category, value, path, _CATEGORY_CHOICES)


def _span(start: int, end: int, path: str, *, strict: bool) -> None:
    if end < start or (strict and end == start):
        raise _bad(f"{path}.end_ms", f"{end} must be {'after' if strict else 'at or after'} start_ms {start}")


_RECORD_KEYS = tuple(f.name for f in fields(UsageRecord))
_TARIFF_KEYS = tuple(f.name for f in fields(Tariff))
_INPUT_KEYS = ("schema", *(f.name for f in fields(Inputs)))


def _record_from(value: object, path: str) -> UsageRecord:
    o = _obj(value, path, _RECORD_KEYS)
    start, end = _int(o["start_ms"], f"{path}.start_ms"), _int(o["end_ms"], f"{path}.end_ms")
    _span(start, end, path, strict=False)
    times = o["time_ms"]
    if not isinstance(times, dict):
        raise _bad(f"{path}.time_ms", "must be an object of category: ms")
    by_category = {_category(k, f"{path}.time_ms"): _int(v, f"{path}.time_ms.{k}") for k, v in times.items()}
    return UsageRecord(
        id=_str(o["id"], f"{path}.id"),
        tenant=_str(o["tenant"], f"{path}.tenant"),
        machine=_str(o["machine"], f"{path}.machine"),
        machine_class=_str(o["machine_class"], f"{path}.machine_class"),
        badge=_int(o["badge"], f"{path}.badge", 1),
        start_ms=start,
        end_ms=end,
        time_ms=tuple((c, by_category[c]) for c in _CATEGORIES if c in by_category),
        good=_int(o["good"], f"{path}.good"),
        reject=_int(o["reject"], f"{path}.reject"),
        energy_wh=_int(o["energy_wh"], f"{path}.energy_wh"),
        anomalies=_int(o["anomalies"], f"{path}.anomalies"),
        oee_bp=_opt_int(o["oee_bp"], f"{path}.oee_bp"),
    )


def _booking_from(value: object, path: str) -> Booking:
    o = _obj(value, path, ("id", "tenant", "machine", "start_ms", "end_ms"))
    start, end = _int(o["start_ms"], f"{path}.start_ms"), _int(o["end_ms"], f"{path}.end_ms")
    _span(start, end, path, strict=True)
    return Booking(
        id=_int(o["id"], f"{path}.id"),
        tenant=_str(o["tenant"], f"{path}.tenant"),
        machine=_str(o["machine"], f"{path}.machine"),
        start_ms=start,
        end_ms=end,
    )


def _tariff_from(value: object, path: str) -> Tariff:
    o = _obj(value, path, _TARIFF_KEYS)
    start = _int(o["valid_from_ms"], f"{path}.valid_from_ms")
    end = _opt_int(o["valid_to_ms"], f"{path}.valid_to_ms")
    if end is not None and end <= start:
        raise _bad(f"{path}.valid_to_ms", f"{end} must be after valid_from_ms {start}")
    billable = [_category(c, f"{path}.billable[{i}]") for i, c in enumerate(_list(o["billable"], f"{path}.billable"))]
    never = [c.value for c in billable if c in (Category.BREAKDOWN, Category.UNKNOWN)]
    if never:
        raise _bad(f"{path}.billable", f"{', '.join(never)} time is never billable")
    if len(set(billable)) != len(billable):
        raise _bad(f"{path}.billable", "lists a category twice")
    return Tariff(
        code=_str(o["code"], f"{path}.code"),
        version=_int(o["version"], f"{path}.version", 1),
        machine=_opt_str(o["machine"], f"{path}.machine"),
        machine_class=_opt_str(o["machine_class"], f"{path}.machine_class"),
        valid_from_ms=start,
        valid_to_ms=end,
        rate_per_hour=_int(o["rate_per_hour"], f"{path}.rate_per_hour"),
        billable=frozenset(billable),
        increment_min=_int(o["increment_min"], f"{path}.increment_min", 1),
        minimum_min=_int(o["minimum_min"], f"{path}.minimum_min"),
        grace_min=_int(o["grace_min"], f"{path}.grace_min"),
        max_booked_actual=_bool(o["max_booked_actual"], f"{path}.max_booked_actual"),
        no_show_charge=_int(o["no_show_charge"], f"{path}.no_show_charge"),
        energy_per_kwh=_int(o["energy_per_kwh"], f"{path}.energy_per_kwh"),
        per_part=_int(o["per_part"], f"{path}.per_part"),
        tax_rate_bp=_int(o["tax_rate_bp"], f"{path}.tax_rate_bp", 0, BP),
    )


def _pool_from(value: object, path: str) -> CostPool:
    o = _obj(value, path, ("machine", "period", "category", "amount"))
    return CostPool(
        machine=_str(o["machine"], f"{path}.machine"),
        period=_str(o["period"], f"{path}.period"),
        category=_enum(PoolCategory, o["category"], f"{path}.category", ", ".join(p.value for p in PoolCategory)),
        amount=_int(o["amount"], f"{path}.amount"),
    )


def _capacity_from(value: object, path: str) -> Capacity:
    o = _obj(value, path, ("machine", "capacity_ms"))
    return Capacity(
        machine=_str(o["machine"], f"{path}.machine"), capacity_ms=_int(o["capacity_ms"], f"{path}.capacity_ms")
    )


def _pair_from(value: object, path: str) -> tuple[str, str]:
    pair = _list(value, path)
    if len(pair) != 2:
        raise _bad(path, "must be [machine, machine class]")
    return _str(pair[0], f"{path}[0]"), _str(pair[1], f"{path}[1]")


def _each(value: object, path: str, read: Callable[[object, str], T]) -> tuple[T, ...]:
    return tuple(read(item, f"{path}[{i}]") for i, item in enumerate(_list(value, path)))


def inputs_from_json(obj: object) -> Inputs:
    """Read charging inputs from a JSON document; raise BillingError naming the path of a bad field."""
    o = _obj(obj, "$", _INPUT_KEYS)
    if _int(o["schema"], "$.schema") != SCHEMA:
        raise _bad("$.schema", f"this reader knows schema {SCHEMA}, got {o['schema']}")
    start, end = _int(o["period_start_ms"], "$.period_start_ms"), _int(o["period_end_ms"], "$.period_end_ms")
    if end <= start:
        raise _bad("$.period_end_ms", f"{end} must be after period_start_ms {start}")
    inputs = Inputs(
        period=_str(o["period"], "$.period"),
        period_start_ms=start,
        period_end_ms=end,
        records=_each(o["records"], "$.records", _record_from),
        bookings=_each(o["bookings"], "$.bookings", _booking_from),
        tariffs=_each(o["tariffs"], "$.tariffs", _tariff_from),
        pools=_each(o["pools"], "$.pools", _pool_from),
        capacity=_each(o["capacity"], "$.capacity", _capacity_from),
        policy=_enum(Policy, o["policy"], "$.policy", ", ".join(p.value for p in Policy)),
        loss_map_version=_str(o["loss_map_version"], "$.loss_map_version", empty=True),
        machine_classes=_each(o["machine_classes"], "$.machine_classes", _pair_from),
    )
    try:
        validate(inputs)
    except BillingError as e:
        raise BillingError(f"$.{e}") from None
    return inputs


# --- invoices, credit notes, the period report ------------------------------------------------------------------


def _line_json(line: Line) -> Json:
    out: Json = {f.name: getattr(line, f.name) for f in fields(Line)}
    out["kind"] = line.kind.value
    return out


def _plain(value: object, path: str) -> None:
    if isinstance(value, float):
        raise TypeError(f"{path}: a float ({value!r}) cannot go into a billing document; use integers")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} is not a string")
            _plain(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain(item, f"{path}[{i}]")
    elif not (value is None or isinstance(value, str | int)):
        raise TypeError(f"{path}: {type(value).__name__} is not a JSON value (dict, list, str, int, bool, None)")


def invoice_document(
    inputs: Inputs,
    charges: Charges,
    *,
    tenant: str,
    tenant_name: str,
    site_id: str,
    site_name: str,
    facility_name: str,
    time_zone: str,
    number: str | None = None,
    kind: str = "invoice",
    credit_for: str | None = None,
    override: str | None = None,
) -> Json:
    """Return one tenant's invoice for the period: its lines, sessions, tariffs used and pool basis, and totals."""
    lines = [line for line in charges.lines if line.tenant == tenant]
    sessions = []
    for r in sorted((r for r in inputs.records if r.tenant == tenant), key=lambda r: (r.start_ms, r.id)):
        tariff = tariff_at(inputs.tariffs, r.machine, r.machine_class, r.start_ms)
        ms = billable_ms(r, tariff)
        session = _record_json(r)
        del session["tenant"]
        session |= {"billable_ms": ms, "billable_min": billable_minutes(ms, tariff), "tariff": tariff.ref}
        sessions.append(session)
    used = {line.tariff for line in lines if line.tariff is not None} | {str(s["tariff"]) for s in sessions}
    machines = {line.machine for line in lines}
    totals = next((t for t in charges.totals if t.tenant == tenant), None)
    subtotal, tax = (totals.subtotal, totals.tax) if totals else (0, 0)
    document: Json = {
        "schema": SCHEMA,
        "kind": kind,
        "number": number,
        "site": {"id": site_id, "name": site_name},
        "facility_name": facility_name,
        "tenant": {"id": tenant, "name": tenant_name},
        "period": inputs.period,
        "period_start_ms": inputs.period_start_ms,
        "period_end_ms": inputs.period_end_ms,
        "time_zone": time_zone,
        "currency": CURRENCY,
        "policy": inputs.policy.value,
        "loss_map_version": inputs.loss_map_version,
        "lines": [_line_json(line) for line in lines],
        "sessions": sessions,
        "tariffs": [
            _tariff_json(t) for t in sorted(inputs.tariffs, key=lambda t: (t.code, t.version)) if t.ref in used
        ],
        "pools": [
            {"machine": p.machine, "pool": p.pool, "capacity_ms": p.capacity_ms, "rate_per_hour": p.rate_per_hour}
            for p in charges.pools
            if p.machine in machines
        ],
        "totals": {"subtotal": subtotal, "tax": tax, "total": subtotal + tax},
        "credit_for": credit_for,
        "override": override,
    }
    _plain(document, "$")
    return document


def _version(tariff: Tariff) -> tuple[str, int]:
    return (tariff.code, tariff.version)


def _figure(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(path, f"must be an integer, got {type(value).__name__}")
    return value


def credit_note_document(original: Mapping[str, object], *, reason: str) -> Json:
    """Return the credit note cancelling a finalized invoice: every line and total negated exactly, unnumbered."""
    if original.get("kind") != "invoice":
        raise _bad("$.kind", f"only an invoice can be credited, got {original.get('kind')!r}")
    number = original.get("number")
    if not isinstance(number, str) or not number:
        raise _bad("$.number", "the invoice has no number: only a finalized invoice can be credited")
    if not isinstance(reason, str) or not reason.strip():
        raise BillingError("reason: say why the invoice is credited")
    _plain(dict(original), "$")
    note: Json = json.loads(canonical(dict(original)))  # a deep copy that cannot share anything with the original
    lines = []
    for i, line in enumerate(_list(note.get("lines"), "$.lines")):
        if not isinstance(line, dict):
            raise _bad(f"$.lines[{i}]", "must be an object")
        line["amount"] = -_figure(line.get("amount"), f"$.lines[{i}].amount")
        line["tax"] = -_figure(line.get("tax"), f"$.lines[{i}].tax")
        lines.append(line)
    totals = note.get("totals")
    if not isinstance(totals, dict):
        raise _bad("$.totals", "must be an object")
    note["totals"] = {k: -_figure(totals.get(k), f"$.totals.{k}") for k in ("subtotal", "tax", "total")}
    note |= {"kind": "credit_note", "number": None, "credit_for": number, "reason": reason, "lines": lines}
    return note


def report_document(inputs: Inputs, charges: Charges) -> Json:
    """Return the whole period for the facility: every tenant's lines and totals, and how each pool was shared."""
    document: Json = {
        "schema": SCHEMA,
        "period": inputs.period,
        "period_start_ms": inputs.period_start_ms,
        "period_end_ms": inputs.period_end_ms,
        "currency": CURRENCY,
        "policy": charges.policy.value,
        "loss_map_version": inputs.loss_map_version,
        "lines": [_line_json(line) for line in charges.lines],
        "totals": {
            "tenants": [
                {"tenant": t.tenant, "subtotal": t.subtotal, "tax": t.tax, "total": t.total} for t in charges.totals
            ],
            "facility": {
                "unallocated": charges.unallocated,
                "pools": [
                    {
                        "machine": p.machine,
                        "pool": p.pool,
                        "capacity_ms": p.capacity_ms,
                        "rate_per_hour": p.rate_per_hour,
                        "allocated": dict(p.allocated),
                        "unallocated": p.unallocated,
                    }
                    for p in charges.pools
                ],
            },
        },
    }
    _plain(document, "$")
    return document


# --- bytes and the hash chain -----------------------------------------------------------------------------------


def canonical(obj: object) -> bytes:
    """Return the canonical UTF-8 JSON bytes of a document (sorted keys, no spaces); refuse floats by path."""
    _plain(obj, "$")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str | None, document: bytes, inputs: bytes) -> str:
    """Return sha256 hex of the previous hash, the document's and the inputs' canonical bytes, newline-separated."""
    return hashlib.sha256((prev_hash or "").encode() + b"\n" + document + b"\n" + inputs).hexdigest()
