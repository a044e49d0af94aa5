"""The billing core's value objects: what charging reads (usage records, bookings, tariffs, cost pools, policy)
and what it writes (charge lines). Plain frozen dataclasses of ints and strings: no floats anywhere (money is
integer rupiah, time is epoch ms, energy is integer Wh, rates are basis points), so every figure is exact and the
same inputs always give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

MS_PER_MIN = 60_000
BP = 10_000  # basis points in one: a tax rate of 1100 bp is 11 %


class Category(StrEnum):
    """What a stretch of session time was, for billing. The shell maps timeline states (and, for STOPPED, the loss
    map's category of the stop reason) onto these; BREAKDOWN and UNKNOWN can never be billable."""

    RUNNING = "running"
    SETUP = "setup"
    IDLE = "idle"
    STOPPED = "stopped"  # stopped for a reason the loss map does not call a breakdown
    BREAKDOWN = "breakdown"  # the machine's fault: never billed to the tenant
    OFF = "off"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"  # no data: never billed, always shown


NEVER_BILLABLE = frozenset({Category.BREAKDOWN, Category.UNKNOWN})


class LineKind(StrEnum):
    """What a charge line charges for, in the order lines of one session are listed."""

    MACHINE_TIME = "machine_time"  # billable session time x the tariff's hourly rate
    BOOKED_MINIMUM = "booked_minimum"  # max(booked, actual): booked time the sessions did not reach
    NO_SHOW = "no_show"  # a booking no session attended
    ENERGY = "energy"  # pass-through per kWh
    PARTS = "parts"  # per good part
    CAPACITY = "capacity"  # the tenant's share of the machine's cost pool
    CREDIT = "credit"  # a credit note's line: the negation of an invoiced line


class Policy(StrEnum):
    """How a machine's cost pool is shared."""

    CAPACITY = "capacity"  # rate = pool / practical capacity hours; capacity nobody used stays the facility's
    FULL_RECOVERY = "full_recovery"  # the whole pool spread over the tenants by billable time


class PoolCategory(StrEnum):
    """What a cost pool pays for."""

    DEPRECIATION = "depreciation"
    MAINTENANCE = "maintenance"
    SPACE = "space"
    STAFF = "staff"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One tenant session on one machine within one billing period: immutable once an invoice is finalized.

    Made by the shell from the usage core's sessions (api.core.sessions), cut at the period's bounds and at badge
    transfers. Sessions of one badge separated only by UNKNOWN time are one record (the gap is UNKNOWN time in it).
    """

    id: str  # deterministic: f"{site}/{machine}/{badge}/{start_ms}"
    tenant: str
    machine: str
    machine_class: str  # the machine's profile
    badge: int
    start_ms: int
    end_ms: int
    time_ms: tuple[tuple[Category, int], ...]  # ms per category, categories in Category order, zeros left out
    good: int = 0
    reject: int = 0
    energy_wh: int = 0
    anomalies: int = 0  # counter readings not counted (the machine could not have made them): shown, never billed
    oee_bp: int | None = None  # the session's OEE in basis points (informational), None when not computable

    def ms(self, category: Category) -> int:
        """Time of this record in one category."""
        return sum(ms for c, ms in self.time_ms if c == category)


@dataclass(frozen=True, slots=True)
class Booking:
    """A tenant's reservation of a machine for [start_ms, end_ms)."""

    id: int
    tenant: str
    machine: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Tariff:
    """One version of a tariff, valid for [valid_from_ms, valid_to_ms) on one machine or one machine class.

    A machine's own tariff beats its class's. Versions never change once an invoice used them: a change is a new
    version (same code, version + 1).
    """

    code: str
    version: int
    machine: str | None  # exactly one of machine, machine_class
    machine_class: str | None
    valid_from_ms: int
    valid_to_ms: int | None  # None: open-ended
    rate_per_hour: int  # rupiah per billable hour
    billable: frozenset[Category] = frozenset({Category.RUNNING, Category.SETUP, Category.IDLE, Category.STOPPED})
    increment_min: int = 1  # billable time is rounded up to this per session
    minimum_min: int = 0  # per session with any billable time
    grace_min: int = 0  # a session within this of a booking attends it
    max_booked_actual: bool = False  # bill max(booked, actual) per booking
    no_show_charge: int = 0  # rupiah per booking nobody attended
    energy_per_kwh: int = 0  # rupiah per kWh
    per_part: int = 0  # rupiah per good part
    tax_rate_bp: int = 1100  # PPN, basis points

    @property
    def ref(self) -> str:
        """How invoices name this version: code@version."""
        return f"{self.code}@{self.version}"


@dataclass(frozen=True, slots=True)
class CostPool:
    """One machine's cost of one kind for one period (YYYY-MM), integer rupiah."""

    machine: str
    period: str
    category: PoolCategory
    amount: int


@dataclass(frozen=True, slots=True)
class Capacity:
    """A machine's practical capacity in a period: planned (shift calendar) time, ms."""

    machine: str
    capacity_ms: int


@dataclass(frozen=True, slots=True)
class Line:
    """One charge line. amount and tax are integer rupiah; tax is per line, half away from zero.

    quantity is exact in its unit's smallest part: minutes for time lines (unit "min", unit_price per hour),
    Wh for energy (unit "Wh", unit_price per kWh), parts and bookings as counts (unit_price per one).
    """

    tenant: str
    machine: str
    kind: LineKind
    start_ms: int  # the session's (or booking's) start; the period's start for capacity lines
    end_ms: int
    quantity: int
    unit: str  # "min", "Wh", "part", "booking"
    unit_price: int
    amount: int
    tax_rate_bp: int
    tax: int
    tariff: str | None = None  # code@version the line was priced by
    record: str | None = None  # the usage record (or "booking/<id>") it charges for
    note: str = ""  # how the amount came about, for the reader (e.g. "6 min increments, minimum 30 min")


@dataclass(frozen=True, slots=True)
class TenantTotals:
    """Sum of one tenant's lines."""

    tenant: str
    subtotal: int
    tax: int

    @property
    def total(self) -> int:
        """Subtotal plus tax."""
        return self.subtotal + self.tax


@dataclass(frozen=True, slots=True)
class PoolShare:
    """How one machine's cost pool was shared in a period."""

    machine: str
    pool: int  # rupiah, all categories
    capacity_ms: int
    rate_per_hour: int  # pool / capacity hours, half up: the basis printed on invoices
    allocated: tuple[tuple[str, int], ...]  # (tenant, rupiah), tenants ascending
    unallocated: int  # the facility's (subsidy): capacity nobody used


@dataclass(frozen=True, slots=True)
class Charges:
    """Everything charging computes for one site and period."""

    period: str
    policy: Policy
    lines: tuple[Line, ...]
    totals: tuple[TenantTotals, ...]  # tenants ascending
    pools: tuple[PoolShare, ...] = field(default=())  # machines ascending

    @property
    def unallocated(self) -> int:
        """Capacity cost nobody used: the facility's."""
        return sum(p.unallocated for p in self.pools)
