"""Charging: one site's usage records, bookings, tariffs and cost pools for one period in, charge lines out.

Pure and exact: every figure is an integer (rupiah, ms, minutes, Wh, basis points), so the same inputs always give
the same lines. The rules, as an auditor checks them:

1. Tariff. A record (or booking) is priced by the tariff version valid at its start (valid_from <= start <
   valid_to). A tariff for the machine itself beats one for its machine class. No valid version -> error naming
   the machine and the time; two versions of one key (machine, or machine class) valid at the same time -> error.
2. Billable time of a record = its time in the categories its tariff lists as billable. BREAKDOWN (the machine's
   fault) and UNKNOWN (no data) are never billable: a tariff listing them is refused.
3. Machine time. Billable minutes = billable ms rounded up to whole minutes, then up to the tariff's increment,
   then at least the tariff's minimum, the minimum only when there is billable time at all. Amount = rate per
   hour x minutes / 60, rounded half away from zero. Every record gets its MACHINE_TIME line, even at 0 minutes,
   so every session shows on the invoice with the time that was not billed.
4. Bookings. A record attends a booking when it is the same tenant's, on the same machine, and overlaps
   [booking start - grace, booking end + grace) (half-open: a record ending exactly at start - grace, or starting
   exactly at end + grace, does not attend). A booking nobody attends costs the tariff's no-show charge (a
   NO_SHOW line, only when that charge is above 0). With max(booked, actual) on the booking's tariff:
   booked minutes = the booking's length less the BREAKDOWN and UNKNOWN time of the attending records inside it,
   rounded up to whole minutes and to the increment. Records carry time per category, not where it fell, so a
   record's fault time counts as inside the booking as far as the record overlaps it (in the tenant's favour).
   A record attending several bookings shares its billable minutes among them by its overlap with each (largest
   remainder, the earlier booking first on ties), so one session never satisfies two bookings twice. When booked
   minutes exceed the attending minutes, a BOOKED_MINIMUM line bills the difference at the booking's tariff rate.
   A booking nobody attends is charged once: the no-show charge when the tariff has one, else (under
   max(booked, actual)) its booked time.
5. Energy: Wh x rate per kWh / 1000 (half away from zero), when both are above 0. Parts: good parts x the
   per-part price, when both are above 0. Rejects and counter anomalies are never billed.
6. Capacity. A machine's cost pool = the sum of its cost pools for the period; its capacity (planned time) must
   be above 0. Rate per hour = pool x 3 600 000 / capacity ms (the basis printed). A tenant's weight = its
   billable ms on the machine (rule 2, before any rounding). Policy CAPACITY: the pool is split over the tenants'
   weights plus the facility's unused capacity (capacity less all tenants' billable ms, at least 0): the unused
   part stays the facility's. FULL_RECOVERY: the pool is split over the tenants' weights only; with no use at all
   the whole pool stays the facility's. Splits are largest remainder (api.core.billing.money.split); the
   facility's key sorts before every tenant's, so it takes a tied leftover rupiah first. A tenant with billable
   time on the machine gets one CAPACITY line: its share; quantity its billable minutes (half up, display only).
   Its tax rate is the machine's tariff at the period's start, or at the tenant's first record on the machine.
7. Tax (PPN) per line: amount x the rate of the line's tariff, half away from zero. Lines are sorted by tenant,
   machine, start, kind (in LineKind order), record. A tenant's subtotal is the sum of its line amounts, its tax
   the sum of its line taxes.
8. Records without a tenant never reach charging; a record with an empty tenant is refused.

Inputs are checked first (validate); a bad one raises BillingError naming the field, the record and what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from api.core.billing.model import (
    BP,
    MS_PER_MIN,
    NEVER_BILLABLE,
    Booking,
    Capacity,
    Category,
    Charges,
    CostPool,
    Line,
    LineKind,
    Policy,
    PoolCategory,
    PoolShare,
    Tariff,
    TenantTotals,
    UsageRecord,
)
from api.core.billing.money import ceil_div, ceil_to, mul_div, split, tax

MS_PER_HOUR = 3_600_000
FACILITY = "\x00facility"  # the split key of unused capacity: sorts before any tenant id
PERIOD_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_KIND_ORDER = {kind: i for i, kind in enumerate(LineKind)}
_CATEGORY_ORDER = {category: i for i, category in enumerate(Category)}

__all__ = [
    "FACILITY",
    "BillingError",
    "Inputs",
    "billable_minutes",
    "billable_ms",
    "charge",
    "rupiah",
    "tariff_at",
    "validate",
]


class BillingError(ValueError):
    """Inputs that cannot be billed: says which field of which record is wrong, and why."""


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything charging reads for one site and period: frozen with a finalized invoice, so it can be re-run."""

    period: str  # "YYYY-MM"
    period_start_ms: int
    period_end_ms: int
    records: tuple[UsageRecord, ...]
    bookings: tuple[Booking, ...]  # those starting in the period
    tariffs: tuple[Tariff, ...]
    pools: tuple[CostPool, ...]
    capacity: tuple[Capacity, ...]
    policy: Policy
    loss_map_version: str
    # machine -> machine class, for machines a booking names but no record does (a no-show on an unused machine)
    machine_classes: tuple[tuple[str, str], ...] = ()


def rupiah(amount: int) -> str:
    """Format integer rupiah the Indonesian way: Rp 1.234.567."""
    sign = "-" if amount < 0 else ""
    return f"{sign}Rp {abs(amount):,}".replace(",", ".")


def _duration(ms: int) -> str:
    hours, rest = divmod(ms, MS_PER_HOUR)
    minutes, rest = divmod(rest, MS_PER_MIN)
    seconds, millis = divmod(rest, 1000)
    parts = [f"{hours} h"] if hours else []
    if minutes or not hours:
        parts.append(f"{minutes} min")
    if seconds or millis:
        parts.append(f"{seconds}.{millis:03d} s" if millis else f"{seconds} s")
    return " ".join(parts)


def _valid_at(tariff: Tariff, at_ms: int) -> bool:
    return tariff.valid_from_ms <= at_ms and (tariff.valid_to_ms is None or at_ms < tariff.valid_to_ms)


def _lookup(tariffs: Iterable[Tariff], machine: str, machine_class: str | None, at_ms: int) -> Tariff | None:
    for own in (True, False):
        if not own and machine_class is None:
            break
        found = [
            t
            for t in tariffs
            if (t.machine == machine if own else t.machine_class == machine_class) and _valid_at(t, at_ms)
        ]
        if len(found) > 1:
            key = f"machine {machine!r}" if own else f"machine class {machine_class!r}"
            refs = ", ".join(sorted(t.ref for t in found))
            raise BillingError(f"two tariff versions for {key} are valid at {at_ms} ms: {refs}; end one of them")
        if found:
            return found[0]
    return None


def tariff_at(tariffs: Iterable[Tariff], machine: str, machine_class: str | None, at_ms: int) -> Tariff:
    """Return the tariff version pricing machine at at_ms: the machine's own beats its class's (rule 1)."""
    found = _lookup(tuple(tariffs), machine, machine_class, at_ms)
    if found is None:
        raise BillingError(
            f"no tariff for machine {machine!r} (class {machine_class!r}) is valid at {at_ms} ms: "
            "add a tariff version for the machine or its class covering that time"
        )
    return found


def billable_ms(record: UsageRecord, tariff: Tariff) -> int:
    """Return a record's billable time: its time in the tariff's billable categories, never BREAKDOWN or UNKNOWN."""
    return sum(ms for c, ms in record.time_ms if c in tariff.billable and c not in NEVER_BILLABLE)


def billable_minutes(ms: int, tariff: Tariff) -> int:
    """Round billable ms up to whole minutes and the increment, then to the minimum if there is any (rule 3)."""
    if ms <= 0:
        return 0
    return max(ceil_to(ceil_div(ms, MS_PER_MIN), tariff.increment_min), tariff.minimum_min)


def _overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return max(0, min(a_end, b_end) - max(a_start, b_start))


def _fail(where: str, what: str) -> BillingError:
    return BillingError(f"{where}: {what}")


def _printable(text: str) -> bool:
    # Tenant ids are split keys: a control character could collide with FACILITY (or hide in a printout).
    return all(ch >= " " and ch != "\x7f" for ch in text)


def _validate_record(i: int, r: UsageRecord, inputs: Inputs) -> None:
    where = f"records[{i}] ({r.id!r})"
    for name in ("id", "tenant", "machine", "machine_class"):
        if not getattr(r, name):
            raise _fail(where, f"{name} is empty (records without a tenant are dropped before charging)")
    if not _printable(r.tenant):
        raise _fail(where, f"tenant {r.tenant!r} holds control characters")
    if r.badge <= 0:
        raise _fail(where, f"badge must be > 0, got {r.badge}")
    if r.end_ms < r.start_ms:
        raise _fail(where, f"end_ms {r.end_ms} is before start_ms {r.start_ms}")
    if r.start_ms < inputs.period_start_ms or r.end_ms > inputs.period_end_ms:
        raise _fail(where, f"[{r.start_ms}, {r.end_ms}) is not inside the period; cut records at the period's bounds")
    last = -1
    for category, ms in r.time_ms:
        if not isinstance(category, Category):
            raise _fail(where, f"time_ms holds {category!r}, not a Category")
        if _CATEGORY_ORDER[category] <= last:
            raise _fail(where, "time_ms must list each category once, in Category order")
        last = _CATEGORY_ORDER[category]
        if ms < 0:
            raise _fail(where, f"time_ms[{category.value}] must be >= 0, got {ms}")
    if sum(ms for _, ms in r.time_ms) > r.end_ms - r.start_ms:
        raise _fail(where, "time_ms adds up to more than the record lasts")
    for name in ("good", "reject", "energy_wh", "anomalies"):
        if getattr(r, name) < 0:
            raise _fail(where, f"{name} must be >= 0, got {getattr(r, name)}")


def _validate_tariff(i: int, t: Tariff) -> None:
    where = f"tariffs[{i}] ({t.code}@{t.version})"
    if not t.code:
        raise _fail(where, "code is empty")
    if t.version < 1:
        raise _fail(where, f"version must be >= 1, got {t.version}")
    if (t.machine is None) == (t.machine_class is None) or t.machine == "" or t.machine_class == "":
        raise _fail(where, "give exactly one of machine and machine_class")
    if t.valid_to_ms is not None and t.valid_to_ms <= t.valid_from_ms:
        raise _fail(where, f"valid_to_ms {t.valid_to_ms} must be after valid_from_ms {t.valid_from_ms}")
    if not all(isinstance(c, Category) for c in t.billable):
        raise _fail(where, "billable holds something that is not a Category")
    never = sorted(c.value for c in t.billable & NEVER_BILLABLE)
    if never:
        raise _fail(where, f"{', '.join(never)} time is never billable; remove it from billable")
    if t.increment_min < 1:
        raise _fail(where, f"increment_min must be >= 1, got {t.increment_min}")
    for name in ("rate_per_hour", "minimum_min", "grace_min", "no_show_charge", "energy_per_kwh", "per_part"):
        if getattr(t, name) < 0:
            raise _fail(where, f"{name} must be >= 0, got {getattr(t, name)}")
    if not 0 <= t.tax_rate_bp <= BP:
        raise _fail(where, f"tax_rate_bp must be within 0..{BP}, got {t.tax_rate_bp}")


def validate(inputs: Inputs) -> None:
    """Check inputs for everything charging relies on; raise BillingError naming the bad field."""
    if not PERIOD_RE.fullmatch(inputs.period):
        raise BillingError(f"period: {inputs.period!r} is not YYYY-MM")
    if inputs.period_end_ms <= inputs.period_start_ms:
        raise BillingError("period_end_ms: must be after period_start_ms")
    if not isinstance(inputs.policy, Policy):
        raise BillingError(f"policy: {inputs.policy!r} is not one of {', '.join(p.value for p in Policy)}")
    ids: set[str] = set()
    for i, r in enumerate(inputs.records):
        _validate_record(i, r, inputs)
        if r.id in ids:
            raise _fail(f"records[{i}]", f"id {r.id!r} appears twice")
        ids.add(r.id)
    booking_ids: set[int] = set()
    for i, b in enumerate(inputs.bookings):
        where = f"bookings[{i}] (id {b.id})"
        if b.id in booking_ids:
            raise _fail(where, "id appears twice")
        booking_ids.add(b.id)
        if not b.tenant or not b.machine:
            raise _fail(where, "tenant and machine must not be empty")
        if not _printable(b.tenant):
            raise _fail(where, f"tenant {b.tenant!r} holds control characters")
        if b.end_ms <= b.start_ms:
            raise _fail(where, f"end_ms {b.end_ms} must be after start_ms {b.start_ms}")
        if not inputs.period_start_ms <= b.start_ms < inputs.period_end_ms:
            raise _fail(where, "does not start in the period; pass only bookings starting in it")
    refs: set[tuple[str, int]] = set()
    for i, t in enumerate(inputs.tariffs):
        _validate_tariff(i, t)
        if (t.code, t.version) in refs:
            raise _fail(f"tariffs[{i}]", f"{t.ref} appears twice")
        refs.add((t.code, t.version))
    for i, a in enumerate(inputs.tariffs):
        for b2 in inputs.tariffs[i + 1 :]:
            same_key = (a.machine, a.machine_class) == (b2.machine, b2.machine_class)
            if same_key and _overlaps(a, b2):
                key = f"machine {a.machine!r}" if a.machine is not None else f"machine class {a.machine_class!r}"
                raise _fail(f"tariffs[{i}]", f"{a.ref} and {b2.ref} for {key} are valid at the same time")
    for i, p in enumerate(inputs.pools):
        where = f"pools[{i}] ({p.machine!r})"
        if not p.machine:
            raise _fail(where, "machine is empty")
        if p.period != inputs.period:
            raise _fail(where, f"is for period {p.period!r}, not {inputs.period!r}")
        if not isinstance(p.category, PoolCategory):
            raise _fail(where, f"category {p.category!r} is not a PoolCategory")
        if p.amount < 0:
            raise _fail(where, f"amount must be >= 0, got {p.amount}")
    machines: set[str] = set()
    for i, c in enumerate(inputs.capacity):
        if c.machine in machines:
            raise _fail(f"capacity[{i}]", f"machine {c.machine!r} appears twice")
        machines.add(c.machine)
        if c.capacity_ms < 0:
            raise _fail(f"capacity[{i}] ({c.machine!r})", f"capacity_ms must be >= 0, got {c.capacity_ms}")
    _machine_classes(inputs)


def _overlaps(a: Tariff, b: Tariff) -> bool:
    a_end = a.valid_to_ms if a.valid_to_ms is not None else b.valid_to_ms
    b_end = b.valid_to_ms if b.valid_to_ms is not None else a.valid_to_ms
    if a_end is None or b_end is None:  # both open-ended
        return True
    return a.valid_from_ms < b_end and b.valid_from_ms < a_end


def _machine_classes(inputs: Inputs) -> dict[str, str]:
    classes: dict[str, str] = {}
    for i, (machine, machine_class) in enumerate(inputs.machine_classes):
        if not machine or not machine_class:
            raise _fail(f"machine_classes[{i}]", "machine and class must not be empty")
        if machine in classes:
            raise _fail(f"machine_classes[{i}]", f"machine {machine!r} appears twice")
        classes[machine] = machine_class
    for i, r in enumerate(inputs.records):
        known = classes.setdefault(r.machine, r.machine_class)
        if known != r.machine_class:
            raise _fail(
                f"records[{i}] ({r.id!r})",
                f"machine {r.machine!r} is of class {known!r} elsewhere in the inputs, not {r.machine_class!r}",
            )
    return classes


def _line(
    *,
    tenant: str,
    machine: str,
    kind: LineKind,
    start_ms: int,
    end_ms: int,
    quantity: int,
    unit: str,
    unit_price: int,
    amount: int,
    tariff: Tariff,
    record: str | None,
    note: str,
) -> Line:
    return Line(
        tenant=tenant,
        machine=machine,
        kind=kind,
        start_ms=start_ms,
        end_ms=end_ms,
        quantity=quantity,
        unit=unit,
        unit_price=unit_price,
        amount=amount,
        tax_rate_bp=tariff.tax_rate_bp,
        tax=tax(amount, tariff.tax_rate_bp),
        tariff=tariff.ref,
        record=record,
        note=note,
    )


def _time_note(record: UsageRecord, tariff: Tariff, ms: int, minutes: int) -> str:
    billed = [c.value for c, v in record.time_ms if v and c in tariff.billable]
    rounding = f"{tariff.increment_min} min increments, "
    rounding += f"minimum {tariff.minimum_min} min" if tariff.minimum_min else "no minimum"
    note = f"{_duration(ms)} billable ({', '.join(billed) or 'none'}) -> {minutes} min; {rounding}"
    not_billed = [f"{c.value} {_duration(v)}" for c, v in record.time_ms if v and c not in tariff.billable]
    if not_billed:
        note += f"; not billed: {', '.join(not_billed)}"
    return note


def _record_lines(record: UsageRecord, tariff: Tariff, ms: int, minutes: int) -> list[Line]:
    lines = [
        _line(
            tenant=record.tenant,
            machine=record.machine,
            kind=LineKind.MACHINE_TIME,
            start_ms=record.start_ms,
            end_ms=record.end_ms,
            quantity=minutes,
            unit="min",
            unit_price=tariff.rate_per_hour,
            amount=mul_div(tariff.rate_per_hour, minutes, 60),
            tariff=tariff,
            record=record.id,
            note=_time_note(record, tariff, ms, minutes),
        )
    ]
    if tariff.energy_per_kwh > 0 and record.energy_wh > 0:
        lines.append(
            _line(
                tenant=record.tenant,
                machine=record.machine,
                kind=LineKind.ENERGY,
                start_ms=record.start_ms,
                end_ms=record.end_ms,
                quantity=record.energy_wh,
                unit="Wh",
                unit_price=tariff.energy_per_kwh,
                amount=mul_div(tariff.energy_per_kwh, record.energy_wh, 1000),
                tariff=tariff,
                record=record.id,
                note=f"{record.energy_wh} Wh at {rupiah(tariff.energy_per_kwh)} per kWh",
            )
        )
    if tariff.per_part > 0 and record.good > 0:
        note = f"{record.good} good parts at {rupiah(tariff.per_part)} each"
        if record.reject or record.anomalies:
            note += f"; not billed: {record.reject} rejects, {record.anomalies} counter anomalies"
        lines.append(
            _line(
                tenant=record.tenant,
                machine=record.machine,
                kind=LineKind.PARTS,
                start_ms=record.start_ms,
                end_ms=record.end_ms,
                quantity=record.good,
                unit="part",
                unit_price=tariff.per_part,
                amount=tariff.per_part * record.good,
                tariff=tariff,
                record=record.id,
                note=note,
            )
        )
    return lines


def _booking_lines(
    bookings: Sequence[Booking],
    records: Sequence[UsageRecord],
    minutes: dict[str, int],
    price: dict[int, Tariff],
) -> list[Line]:
    # Which bookings each record attends, and by how much it overlaps each (with grace) for sharing its minutes.
    attends: dict[int, list[UsageRecord]] = {b.id: [] for b in bookings}
    weights: dict[str, list[tuple[str, int]]] = {}
    key_of: dict[str, int] = {}
    by_user: dict[tuple[str, str], list[UsageRecord]] = {}
    for r in records:
        by_user.setdefault((r.tenant, r.machine), []).append(r)
    for n, b in enumerate(bookings):  # bookings in (start, id) order: the key's order breaks ties
        grace = price[b.id].grace_min * MS_PER_MIN
        lo, hi = b.start_ms - grace, b.end_ms + grace
        key = f"{n:09d}"
        key_of[key] = b.id
        for r in by_user.get((b.tenant, b.machine), ()):
            if r.start_ms < hi and r.end_ms > lo:
                attends[b.id].append(r)
                # A record of zero length strictly inside still attends: give it weight 1.
                weights.setdefault(r.id, []).append((key, max(1, _overlap(r.start_ms, r.end_ms, lo, hi))))
    counted: dict[int, int] = dict.fromkeys(attends, 0)
    for record_id, shares in weights.items():
        for key, part in split(minutes[record_id], shares).items():
            counted[key_of[key]] += part
    lines: list[Line] = []
    for b in bookings:
        tariff = price[b.id]
        ref = f"booking/{b.id}"
        if not attends[b.id] and tariff.no_show_charge > 0:
            lines.append(
                _line(
                    tenant=b.tenant,
                    machine=b.machine,
                    kind=LineKind.NO_SHOW,
                    start_ms=b.start_ms,
                    end_ms=b.end_ms,
                    quantity=1,
                    unit="booking",
                    unit_price=tariff.no_show_charge,
                    amount=tariff.no_show_charge,
                    tariff=tariff,
                    record=ref,
                    note=f"booking {b.id} not attended (grace {tariff.grace_min} min): no-show charge",
                )
            )
        if not tariff.max_booked_actual or (not attends[b.id] and tariff.no_show_charge > 0):
            continue  # a booking nobody attended is charged once: its no-show charge, if the tariff has one
        length = b.end_ms - b.start_ms
        fault = sum(
            min(r.ms(Category.BREAKDOWN) + r.ms(Category.UNKNOWN), _overlap(r.start_ms, r.end_ms, b.start_ms, b.end_ms))
            for r in attends[b.id]
        )
        fault = min(fault, length)
        booked = ceil_to(ceil_div(length - fault, MS_PER_MIN), tariff.increment_min)
        used = counted[b.id]
        if booked <= used:
            continue
        less = f" less {_duration(fault)} breakdown/unknown" if fault else ""
        lines.append(
            _line(
                tenant=b.tenant,
                machine=b.machine,
                kind=LineKind.BOOKED_MINIMUM,
                start_ms=b.start_ms,
                end_ms=b.end_ms,
                quantity=booked - used,
                unit="min",
                unit_price=tariff.rate_per_hour,
                amount=mul_div(tariff.rate_per_hour, booked - used, 60),
                tariff=tariff,
                record=ref,
                note=(
                    f"booked {_duration(length)}{less} -> {booked} min ({tariff.increment_min} min increments); "
                    f"used {used} min; the difference is billed (max(booked, actual))"
                ),
            )
        )
    return lines


def _capacity(
    inputs: Inputs,
    classes: dict[str, str],
    used_ms: dict[tuple[str, str], int],
    first_tariff: dict[tuple[str, str], Tariff],
) -> tuple[list[Line], list[PoolShare]]:
    pools: dict[str, int] = {}
    for p in inputs.pools:
        pools[p.machine] = pools.get(p.machine, 0) + p.amount
    capacity = {c.machine: c.capacity_ms for c in inputs.capacity}
    lines: list[Line] = []
    shares: list[PoolShare] = []
    for machine in sorted(pools):
        pool = pools[machine]
        cap = capacity.get(machine, 0)
        if cap <= 0:
            raise BillingError(
                f"capacity of machine {machine!r}: it has a cost pool of {rupiah(pool)} but no capacity; "
                "give its planned time for the period"
            )
        rate = mul_div(pool, MS_PER_HOUR, cap)
        used = {t: ms for (t, m), ms in sorted(used_ms.items()) if m == machine and ms > 0}
        total_used = sum(used.values())
        weights = list(used.items())
        parts: dict[str, int]
        if inputs.policy == Policy.CAPACITY:
            parts = split(pool, [*weights, (FACILITY, max(0, cap - total_used))])
        else:
            parts = split(pool, weights) if total_used > 0 else {}
        at_start = _lookup(inputs.tariffs, machine, classes.get(machine), inputs.period_start_ms)
        allocated = []
        for tenant, ms in used.items():
            tariff = at_start or first_tariff[(tenant, machine)]
            allocated.append((tenant, parts[tenant]))
            lines.append(
                _line(
                    tenant=tenant,
                    machine=machine,
                    kind=LineKind.CAPACITY,
                    start_ms=inputs.period_start_ms,
                    end_ms=inputs.period_end_ms,
                    quantity=mul_div(ms, 1, MS_PER_MIN),
                    unit="min",
                    unit_price=rate,
                    amount=parts[tenant],
                    tariff=tariff,
                    record=None,
                    note=(
                        f"share of cost pool {rupiah(pool)} by billable time (policy {inputs.policy.value}); "
                        f"{_duration(ms)} billable of {_duration(cap)} capacity"
                    ),
                )
            )
        shares.append(PoolShare(machine, pool, cap, rate, tuple(allocated), pool - sum(a for _, a in allocated)))
    return lines, shares


def charge(inputs: Inputs) -> Charges:
    """Compute the charge lines, tenant totals and pool shares of one site and period (rules in the module doc)."""
    validate(inputs)
    classes = _machine_classes(inputs)
    lines: list[Line] = []
    minutes: dict[str, int] = {}
    used_ms: dict[tuple[str, str], int] = {}
    first_tariff: dict[tuple[str, str], Tariff] = {}
    for r in sorted(inputs.records, key=lambda r: (r.start_ms, r.id)):
        tariff = tariff_at(inputs.tariffs, r.machine, r.machine_class, r.start_ms)
        ms = billable_ms(r, tariff)
        minutes[r.id] = billable_minutes(ms, tariff)
        used_ms[(r.tenant, r.machine)] = used_ms.get((r.tenant, r.machine), 0) + ms
        first_tariff.setdefault((r.tenant, r.machine), tariff)
        lines.extend(_record_lines(r, tariff, ms, minutes[r.id]))
    bookings = sorted(inputs.bookings, key=lambda b: (b.start_ms, b.id))
    price = {b.id: tariff_at(inputs.tariffs, b.machine, classes.get(b.machine), b.start_ms) for b in bookings}
    lines.extend(_booking_lines(bookings, inputs.records, minutes, price))
    capacity_lines, pools = _capacity(inputs, classes, used_ms, first_tariff)
    lines.extend(capacity_lines)
    lines.sort(key=lambda x: (x.tenant, x.machine, x.start_ms, _KIND_ORDER[x.kind], x.record or ""))
    totals: dict[str, list[int]] = {}
    for line in lines:
        acc = totals.setdefault(line.tenant, [0, 0])
        acc[0] += line.amount
        acc[1] += line.tax
    return Charges(
        period=inputs.period,
        policy=inputs.policy,
        lines=tuple(lines),
        totals=tuple(TenantTotals(t, s, x) for t, (s, x) in sorted(totals.items())),
        pools=tuple(pools),
    )
