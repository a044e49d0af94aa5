"""billing.yaml: tenants, badges, API keys, bookings, tariffs, cost pools and policy in one file.

`shopfloor db import` reads it into the business database, and the offline auditor computes invoices from it
without one, through the same objects (BillingData) the API builds from the database. A site file may be given
instead: only its `tenants:` (badges valid from 1970-01-01, open-ended) and `api_keys:` are read, so a site set up
before the business database keeps working.

Money is int rupiah (floats, booleans and strings refused), calendar dates are YYYY-MM-DD in the site's zone
(validity runs from local midnight of valid_from to local midnight of valid_to, exclusive), booking times are ISO
8601 with an offset, or naive and then in the site's zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from api.core.billing.model import NEVER_BILLABLE, Booking, Category, CostPool, Policy, PoolCategory, Tariff
from api.core.owners import BadgeSpan
from shopfloor.calendar import local_ms
from shopfloor.config import ApiKey
from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS, Id
from shopfloor.yamlfile import ConfigError, Loc, read_yaml, validation_message

MAX_MONEY = 10**15  # rupiah; far above any real price, far below int64
MAX_MINUTES = 100_000
MAX_BADGE = 2**31 - 1  # as in the site file
DEFAULT_GRACE_MIN = 60  # watermark grace when the file (or the database) sets none
SITE_EPOCH = date(1970, 1, 1)  # a site file's badges are valid from this date, open-ended
DEFAULT_BILLABLE = (Category.RUNNING, Category.SETUP, Category.IDLE, Category.STOPPED)
_PERIOD_RE = re.compile(r"(\d{4})-(\d{2})\Z")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_INSTANT_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Keys only a site file has: a file with one of these is read as a site file (its tenants and api_keys only).
SITE_KEYS = frozenset({"site", "machines", "profiles"})


def _no_float(value: Any) -> Any:
    # Strict ints already refuse floats and bools; this says why, since money must never be a float.
    if isinstance(value, float):
        raise ValueError(f"{value!r} is a float: money is whole rupiah (an int, e.g. 150000)")
    return value


def _text(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters (NUL, newlines, tabs)")
    return value


def _date(value: Any) -> Any:
    """YAML reads an unquoted 2026-11-01 as a date, a quoted one as text: take both, nothing else."""
    if isinstance(value, datetime):
        raise ValueError(f"{value.isoformat()} is a date and time; give a date YYYY-MM-DD")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a calendar date") from exc
    raise ValueError(f"{value!r} is not a date YYYY-MM-DD")


def _instant(value: Any) -> Any:
    """A date and time: from YAML (a datetime) or ISO 8601 text; with an offset, or naive (site local time)."""
    example = "e.g. 2026-11-03T08:00:00+07:00"
    if isinstance(value, str):
        if len(value) > 40 or not _INSTANT_RE.match(value):
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 date and time ({example})")
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date and time ({example})") from exc
    if not isinstance(value, datetime):
        raise ValueError(f"{str(value)[:40]!r} is not a date and time ({example})")
    if value.tzinfo is not None and value.utcoffset() is None:
        raise ValueError(f"{value!r} has a time zone without an offset")
    return value


def _period(value: str) -> str:
    m = _PERIOD_RE.match(value)
    if m is None or not 1 <= int(m.group(2)) <= 12 or not 2000 <= int(m.group(1)) <= 2099:
        raise ValueError(f"{value!r} is not a period YYYY-MM (2000-01..2099-12)")
    return value


Money = Annotated[StrictInt, BeforeValidator(_no_float), Field(ge=0, le=MAX_MONEY)]
Minutes = Annotated[StrictInt, Field(ge=0, le=MAX_MINUTES)]
Name = Annotated[StrictStr, Field(max_length=200), AfterValidator(_text)]
Day = Annotated[date, BeforeValidator(_date)]
Instant = Annotated[datetime, BeforeValidator(_instant)]
Period = Annotated[StrictStr, AfterValidator(_period)]
BadgeNumber = Annotated[StrictInt, Field(ge=1, le=MAX_BADGE)]

_Forbid = ConfigDict(extra="forbid", frozen=True)


class BadgeEntry(BaseModel):
    """A badge a tenant holds from valid_from (inclusive) to valid_to (exclusive; None: open-ended)."""

    model_config = _Forbid

    number: BadgeNumber
    valid_from: Day
    valid_to: Day | None = None

    @model_validator(mode="after")
    def _check(self) -> BadgeEntry:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(f"badge {self.number}: valid_to {self.valid_to} is not after valid_from {self.valid_from}")
        return self


def _badge_entry(value: Any) -> Any:
    # A bare number is the site file's form: held since 1970-01-01, open-ended.
    if isinstance(value, int) and not isinstance(value, bool):
        return {"number": value, "valid_from": SITE_EPOCH}
    return value


class TenantEntry(BaseModel):
    """A tenant and its badges."""

    model_config = _Forbid

    id: Id
    name: Name = ""
    badges: list[Annotated[BadgeEntry, BeforeValidator(_badge_entry)]] = Field(default_factory=list, max_length=10000)


class BookingEntry(BaseModel):
    """A tenant's reservation of a machine for [start, end)."""

    model_config = _Forbid

    machine: Id
    tenant: Id
    start: Instant
    end: Instant


class TariffEntry(BaseModel):
    """One version of a tariff for one machine or one machine class (api.core.billing.model.Tariff)."""

    model_config = _Forbid

    code: Id
    version: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    machine: Id | None = None
    machine_class: Id | None = None
    valid_from: Day
    valid_to: Day | None = None
    rate_per_hour: Money
    billable: list[Category] = Field(default_factory=lambda: list(DEFAULT_BILLABLE), max_length=len(Category))
    increment_min: Annotated[StrictInt, Field(ge=1, le=MAX_MINUTES)] = 1
    minimum_min: Minutes = 0
    grace_min: Minutes = 0
    max_booked_actual: StrictBool = False
    no_show_charge: Money = 0
    energy_per_kwh: Money = 0
    per_part: Money = 0
    tax_rate_bp: Annotated[StrictInt, Field(ge=0, le=10_000)] = 1100

    @model_validator(mode="after")
    def _check(self) -> TariffEntry:
        where = f"tariff {self.code}@{self.version}"
        if (self.machine is None) == (self.machine_class is None):
            raise ValueError(f"{where}: give exactly one of machine and machine_class")
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(f"{where}: valid_to {self.valid_to} is not after valid_from {self.valid_from}")
        never = sorted(c.value for c in set(self.billable) & NEVER_BILLABLE)
        if never:
            raise ValueError(f"{where}: {', '.join(never)} time is never billable (the machine's fault or no data)")
        if len(set(self.billable)) != len(self.billable):
            raise ValueError(f"{where}: billable lists a category twice")
        return self

    @property
    def target(self) -> str:
        """What the tariff applies to, for messages: 'machine cnc-01' or 'class cnc-mill-v1'."""
        return f"machine {self.machine}" if self.machine is not None else f"class {self.machine_class}"


class CostPoolEntry(BaseModel):
    """One machine's cost of one category for one period."""

    model_config = _Forbid

    machine: Id
    period: Period
    category: PoolCategory
    amount: Money


class BillingFile(BaseModel):
    """billing.yaml, validated; facility settings left out (None) are not changed by an import."""

    model_config = _Forbid

    facility_name: Name | None = None
    policy: Policy | None = None
    watermark_grace_min: Minutes | None = None
    tenants: list[TenantEntry] = Field(default_factory=list, max_length=10000)
    api_keys: list[ApiKey] = Field(default_factory=list, max_length=10000)
    bookings: list[BookingEntry] = Field(default_factory=list, max_length=100_000)
    tariffs: list[TariffEntry] = Field(default_factory=list, max_length=10000)
    cost_pools: list[CostPoolEntry] = Field(default_factory=list, max_length=100_000)

    @model_validator(mode="after")
    def _check(self) -> BillingFile:
        check_file(self)
        return self


def _overlaps(a_from: Any, a_to: Any | None, b_from: Any, b_to: Any | None) -> bool:
    """Whether half-open [a_from, a_to) and [b_from, b_to) overlap; None: open-ended."""
    return (b_to is None or a_from < b_to) and (a_to is None or b_from < a_to)


def _first_overlap(items: Sequence[tuple[Any, Any | None, int]]) -> tuple[int, int] | None:
    """Of spans (from, to|None, index), the indexes of an overlapping pair (earlier-starting first), or None."""
    ordered = sorted(items, key=lambda s: (s[0], s[2]))
    reach: tuple[Any, int] | None = None  # the furthest end so far (None value: open-ended) and whose
    for start, end, index in ordered:
        if reach is not None and (reach[0] is None or start < reach[0]):
            return reach[1], index
        if reach is None or end is None or (reach[0] is not None and end > reach[0]):
            reach = (end, index)
    return None


def check_file(bf: BillingFile) -> None:
    """Check what no single entry can: duplicates, overlaps and references; raise ValueError naming the entries."""
    tenants = _check_tenants(bf.tenants)
    _check_keys(bf.api_keys, tenants)
    for i, booking in enumerate(bf.bookings):
        if booking.tenant not in tenants:
            raise ValueError(
                f"bookings[{i}] ({booking.machine}): tenant {booking.tenant!r} is not defined under tenants:"
            )
    _check_tariffs(bf.tariffs)
    pools: dict[tuple[str, str, str], int] = {}
    for i, pool in enumerate(bf.cost_pools):
        key = (pool.machine, pool.period, pool.category.value)
        if key in pools:
            raise ValueError(
                f"cost_pools[{i}]: {pool.category.value} of {pool.machine} for {pool.period} is given twice "
                f"(also cost_pools[{pools[key]}])"
            )
        pools[key] = i


def _check_tenants(entries: Sequence[TenantEntry]) -> set[str]:
    tenants: dict[str, int] = {}
    for i, tenant in enumerate(entries):
        if tenant.id in tenants:
            raise ValueError(
                f"tenants[{i}]: tenant {tenant.id!r} is defined twice (also tenants[{tenants[tenant.id]}])"
            )
        tenants[tenant.id] = i
    spans: dict[int, list[tuple[date, date | None, int]]] = {}
    owner: list[tuple[str, int]] = []  # per span: (tenant, index in its badges)
    for tenant in entries:
        for j, badge in enumerate(tenant.badges):
            spans.setdefault(badge.number, []).append((badge.valid_from, badge.valid_to, len(owner)))
            owner.append((tenant.id, j))
    for number, mine in spans.items():
        pair = _first_overlap(mine)
        if pair is not None:
            (ta, ja), (tb, jb) = owner[pair[0]], owner[pair[1]]
            raise ValueError(
                f"badge {number}: validity of tenant {ta!r} (badges[{ja}]) and tenant {tb!r} (badges[{jb}]) "
                "overlap; end one before the other begins"
            )
    return set(tenants)


def _check_keys(entries: Sequence[ApiKey], tenants: set[str]) -> None:
    names: set[str] = set()
    hashes: set[str] = set()
    for i, key in enumerate(entries):
        if key.name in names:
            raise ValueError(f"api_keys[{i}]: key name {key.name!r} is used twice")
        if key.sha256 in hashes:
            raise ValueError(f"api_keys[{i}] ({key.name}): the same key hash is listed twice")
        names.add(key.name)
        hashes.add(key.sha256)
        if key.tenant is not None and key.tenant not in tenants:
            raise ValueError(f"api_keys[{i}] ({key.name}): tenant {key.tenant!r} is not defined under tenants:")


def _check_tariffs(entries: Sequence[TariffEntry]) -> None:
    seen: dict[tuple[str, int], int] = {}
    by_target: dict[str, list[tuple[date, date | None, int]]] = {}
    for i, tariff in enumerate(entries):
        key = (tariff.code, tariff.version)
        if key in seen:
            raise ValueError(
                f"tariffs[{i}]: tariff {tariff.code}@{tariff.version} is defined twice (also tariffs[{seen[key]}])"
            )
        seen[key] = i
        by_target.setdefault(tariff.target, []).append((tariff.valid_from, tariff.valid_to, i))
    for target, mine in by_target.items():
        pair = _first_overlap(mine)
        if pair is not None:
            a, b = entries[pair[0]], entries[pair[1]]
            raise ValueError(
                f"tariffs[{pair[1]}] ({b.code}@{b.version}) and tariffs[{pair[0]}] ({a.code}@{a.version}) are both "
                f"valid for {target} from {b.valid_from}; close one (valid_to) before the other begins"
            )


# ---- to the core's objects ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BillingData:
    """What charging needs from the business data, in the core's types; the same from billing.yaml and the DB."""

    facility_name: str
    policy: Policy
    watermark_grace_min: int
    tenants: Mapping[str, str]  # id -> name
    owners: tuple[BadgeSpan, ...]  # by number, then from_ms
    bookings: tuple[Booking, ...]
    tariffs: tuple[Tariff, ...]  # by code, then version
    pools: tuple[CostPool, ...]  # by machine, period, category
    machines: frozenset[str] = field(default=frozenset())  # machines any booking, tariff or pool names

    def __post_init__(self) -> None:
        object.__setattr__(self, "tenants", MappingProxyType(dict(self.tenants)))
        named = {b.machine for b in self.bookings} | {p.machine for p in self.pools}
        named |= {t.machine for t in self.tariffs if t.machine is not None}
        object.__setattr__(self, "machines", frozenset(named))


def day_ms(zone: ZoneInfo, day: date) -> int:
    """Local midnight of day in zone as epoch ms (a skipped midnight: the instant the clock jumps)."""
    return local_ms(zone, datetime(day.year, day.month, day.day))


def instant_ms(zone: ZoneInfo, value: datetime) -> int:
    """An aware datetime as epoch ms; a naive one read as local time in zone."""
    if value.tzinfo is None:
        return local_ms(zone, value)
    return (value - _EPOCH) // _MS


def booking_times(bf: BillingFile, zone: ZoneInfo) -> list[tuple[int, int]]:
    """Each booking's [start, end) as epoch ms (naive times in zone); ValueError if one is empty, out of range or
    two overlap on one machine."""
    out: list[tuple[int, int]] = []
    for i, b in enumerate(bf.bookings):
        start, end = instant_ms(zone, b.start), instant_ms(zone, b.end)
        where = f"bookings[{i}] ({b.machine}, {b.tenant}, {b.start.isoformat()})"
        if not (MIN_TS_MS <= start <= MAX_TS_MS and MIN_TS_MS <= end <= MAX_TS_MS):
            raise ValueError(f"{where}: times must lie in the years 2000..2099")
        if end <= start:
            raise ValueError(f"{where}: end {b.end.isoformat()} is not after start")
        out.append((start, end))
    by_machine: dict[str, list[tuple[int, int | None, int]]] = {}
    for i, (b, (start, end)) in enumerate(zip(bf.bookings, out, strict=True)):
        by_machine.setdefault(b.machine, []).append((start, end, i))
    for machine, mine in by_machine.items():
        pair = _first_overlap(mine)
        if pair is not None:
            a, b = bf.bookings[pair[0]], bf.bookings[pair[1]]
            raise ValueError(
                f"bookings[{pair[1]}] ({b.tenant}, {b.start.isoformat()}..{b.end.isoformat()}) overlaps "
                f"bookings[{pair[0]}] ({a.tenant}, {a.start.isoformat()}..{a.end.isoformat()}) on machine {machine}"
            )
    return out


def check_machines(bf: BillingFile, machine_classes: Mapping[str, str]) -> None:
    """Check that every machine (and machine class) the file names is in the site (machine id -> profile)."""
    known = set(machine_classes)
    classes = set(machine_classes.values())

    def unknown(what: str, name: str) -> ValueError:
        return ValueError(f"{what}: machine {name!r} is not in the site (known: {', '.join(sorted(known))})")

    for i, b in enumerate(bf.bookings):
        if b.machine not in known:
            raise unknown(f"bookings[{i}]", b.machine)
    for i, t in enumerate(bf.tariffs):
        if t.machine is not None and t.machine not in known:
            raise unknown(f"tariffs[{i}] ({t.code}@{t.version})", t.machine)
        if t.machine_class is not None and t.machine_class not in classes:
            raise ValueError(
                f"tariffs[{i}] ({t.code}@{t.version}): machine class {t.machine_class!r} is no machine's profile "
                f"(known: {', '.join(sorted(classes))})"
            )
    for i, p in enumerate(bf.cost_pools):
        if p.machine not in known:
            raise unknown(f"cost_pools[{i}]", p.machine)


def core_tariff(t: TariffEntry, zone: ZoneInfo) -> Tariff:
    """The core Tariff of one entry, validity dates as local midnights in zone."""
    return Tariff(
        code=t.code,
        version=t.version,
        machine=t.machine,
        machine_class=t.machine_class,
        valid_from_ms=day_ms(zone, t.valid_from),
        valid_to_ms=None if t.valid_to is None else day_ms(zone, t.valid_to),
        rate_per_hour=t.rate_per_hour,
        billable=frozenset(t.billable),
        increment_min=t.increment_min,
        minimum_min=t.minimum_min,
        grace_min=t.grace_min,
        max_booked_actual=t.max_booked_actual,
        no_show_charge=t.no_show_charge,
        energy_per_kwh=t.energy_per_kwh,
        per_part=t.per_part,
        tax_rate_bp=t.tax_rate_bp,
    )


def spans_of(entries: Iterable[tuple[int, str, date, date | None]], zone: ZoneInfo) -> tuple[BadgeSpan, ...]:
    """BadgeSpans of (number, tenant, valid_from, valid_to) in zone, by number then start."""
    spans = [
        BadgeSpan(number, tenant, day_ms(zone, start), None if end is None else day_ms(zone, end))
        for number, tenant, start, end in entries
    ]
    return tuple(sorted(spans, key=lambda s: (s.number, s.from_ms)))


def to_core(bf: BillingFile, zone: ZoneInfo) -> BillingData:
    """The file's contents as the core's objects (bookings numbered 1..n in file order); raise ValueError on
    booking times that are wrong in zone."""
    times = booking_times(bf, zone)
    bookings = tuple(
        Booking(i + 1, b.tenant, b.machine, start, end)
        for i, (b, (start, end)) in enumerate(zip(bf.bookings, times, strict=True))
    )
    owners = spans_of(((b.number, t.id, b.valid_from, b.valid_to) for t in bf.tenants for b in t.badges), zone)
    tariffs = tuple(sorted((core_tariff(t, zone) for t in bf.tariffs), key=lambda t: (t.code, t.version)))
    pools = tuple(
        sorted(
            (CostPool(p.machine, p.period, p.category, p.amount) for p in bf.cost_pools),
            key=lambda p: (p.machine, p.period, p.category.value),
        )
    )
    return BillingData(
        facility_name=bf.facility_name or "",
        policy=bf.policy or Policy.CAPACITY,
        watermark_grace_min=DEFAULT_GRACE_MIN if bf.watermark_grace_min is None else bf.watermark_grace_min,
        tenants={t.id: t.name for t in bf.tenants},
        owners=owners,
        bookings=bookings,
        tariffs=tariffs,
        pools=pools,
    )


# ---- loading -----------------------------------------------------------------------------------------------------


def is_site_file(data: Mapping[str, Any]) -> bool:
    """Whether a parsed YAML mapping is a site file (has site:, machines: or profiles:) rather than billing.yaml."""
    return any(key in data for key in SITE_KEYS)


def parse_billing(data: Any, *, source: str = "billing data", lines: dict[Loc, int] | None = None) -> BillingFile:
    """Validate parsed YAML as billing.yaml, or as a site file's tenants and api_keys; raise ConfigError."""
    if data is None:
        raise ConfigError(f"{source}: file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: expected a mapping at the top level, found {type(data).__name__}")
    if is_site_file(data):
        data = {key: data[key] for key in ("tenants", "api_keys") if key in data and data[key] is not None}
    try:
        return BillingFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(Path(source), exc, lines or {})) from exc


def load_billing(path: Path, zone: ZoneInfo | None = None) -> BillingFile:
    """Load billing.yaml (or a site file's tenants and api_keys); with zone, check booking times too.

    Raise ConfigError naming the file, line and entry.
    """
    try:
        data, lines = read_yaml(path)
    except RecursionError as exc:  # nesting deeper than the YAML reader can follow: hostile, not a billing file
        raise ConfigError(f"{path}: nested too deeply to be a billing file") from exc
    bf = parse_billing(data, source=str(path), lines=lines)
    if zone is not None:
        try:
            booking_times(bf, zone)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return bf
