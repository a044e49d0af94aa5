"""Business data over a Session: import billing.yaml / a site file, API keys, badge owners, billing data, settings.

Functions never commit (the caller does, once, so an import lands whole or not at all), except principal_for_key,
which records a key's use. Clashes raise Conflict naming both sides; unknown names raise NotFound.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.core.billing.model import Category, CostPool, Policy, PoolCategory, Tariff
from api.core.owners import BadgeSpan
from api.db import billingfile as bfm
from api.db.billingfile import BillingData, BillingFile, TariffEntry
from api.db.engine import Conflict, NotFound
from api.db.models import ApiKey, Badge, Booking, Invoice, InvoiceLine, Setting, Tenant, WebSession
from api.db.models import CostPool as CostPoolRow
from api.db.models import Tariff as TariffRow
from shopfloor.config import ApiKey as KeySpec
from shopfloor.keys import hash_key, new_key

LAST_USED_EVERY_MS = 60_000  # a key's last-used time is written at most once a minute
KINDS = ("tenants", "badges", "api_keys", "bookings", "tariffs", "cost_pools", "settings")
SETTING_KEYS = ("facility_name", "policy", "watermark_grace_min")
_CATEGORY_ORDER = {c: i for i, c in enumerate(Category)}


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """The key a request presented: its name, role and (tenant keys) tenant."""

    name: str
    role: str
    tenant: str | None


@dataclass
class ImportReport:
    """How many rows of each kind an import created, updated and found unchanged."""

    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    updated: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    unchanged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def changed(self) -> int:
        """Rows created or updated."""
        return sum(self.created.values()) + sum(self.updated.values())

    def summary(self) -> str:
        """One line per kind with anything in it: 'tenants: 3 created, 0 updated, 1 unchanged'."""
        out = []
        for kind in KINDS:
            c, u, n = self.created[kind], self.updated[kind], self.unchanged[kind]
            if c or u or n:
                out.append(f"{kind}: {c} created, {u} updated, {n} unchanged")
        return "\n".join(out) or "nothing to import"


def serialize(session: Session, what: str) -> None:
    """Take a transaction-long lock on what (PostgreSQL advisory lock), so that check-then-write sequences on the
    same thing (a machine's bookings, a badge number) run one at a time. SQLite: write sessions already hold the
    database's write lock from their first statement (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(what.encode()).digest()[:8], "big", signed=True)
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


# ---- import --------------------------------------------------------------------------------------------------


def import_billing(session: Session, bf: BillingFile, *, now_ms: int, zone: ZoneInfo | None = None) -> ImportReport:
    """Take a billing file's (or site file's) entries over: rows with the same natural key are updated, others
    created, none deleted; importing the same file twice changes nothing. The caller commits.

    zone: the site's time zone, needed only for booking times without an offset. Raise Conflict when an entry
    clashes with what is stored (overlapping badge or booking, a key name with another hash, a tariff version an
    invoice priced with changed), ValueError for an entry that cannot be read.
    """
    report = ImportReport()
    _import_tenants(session, bf, now_ms, report)
    _import_badges(session, bf, report)
    _import_keys(session, bf, now_ms, report)
    _import_bookings(session, bf, now_ms, zone, report)
    _import_tariffs(session, bf, now_ms, report)
    _import_pools(session, bf, report)
    for key, value in (
        ("facility_name", bf.facility_name),
        ("policy", None if bf.policy is None else bf.policy.value),
        ("watermark_grace_min", None if bf.watermark_grace_min is None else str(bf.watermark_grace_min)),
    ):
        if value is not None:
            before = get_setting(session, key)
            set_setting(session, key, value)
            _count(report, "settings", before is None, before == value)
    session.flush()
    return report


def _count(report: ImportReport, kind: str, created: bool, same: bool) -> None:
    if created:
        report.created[kind] += 1
    elif same:
        report.unchanged[kind] += 1
    else:
        report.updated[kind] += 1


def _import_tenants(session: Session, bf: BillingFile, now_ms: int, report: ImportReport) -> None:
    for entry in bf.tenants:
        row = session.get(Tenant, entry.id)
        if row is None:
            session.add(Tenant(id=entry.id, name=entry.name, created_ms=now_ms))
            _count(report, "tenants", True, False)
        else:
            _count(report, "tenants", False, row.name == entry.name)
            row.name = entry.name
    session.flush()


def _import_badges(session: Session, bf: BillingFile, report: ImportReport) -> None:
    numbers: set[int] = set()
    for tenant in bf.tenants:
        for entry in tenant.badges:
            numbers.add(entry.number)
            start, end = entry.valid_from.isoformat(), None if entry.valid_to is None else entry.valid_to.isoformat()
            row = session.scalars(
                sa.select(Badge).where(Badge.number == entry.number, Badge.valid_from == start)
            ).first()
            if row is None:
                session.add(Badge(number=entry.number, tenant_id=tenant.id, valid_from=start, valid_to=end))
                _count(report, "badges", True, False)
            else:
                _count(report, "badges", False, (row.tenant_id, row.valid_to) == (tenant.id, end))
                row.tenant_id, row.valid_to = tenant.id, end
    session.flush()
    for number in sorted(numbers):
        check_badge(session, number)


def check_badge(session: Session, number: int) -> None:
    """Raise Conflict if two stored validities of badge number overlap (call after flushing a change)."""
    serialize(session, f"badge/{number}")
    rows = list(session.scalars(sa.select(Badge).where(Badge.number == number).order_by(Badge.valid_from)))
    for a, b in itertools.pairwise(rows):  # sorted by start: an overlap shows between neighbours
        if a.valid_to is None or a.valid_to > b.valid_from:
            until = a.valid_to or "open-ended"
            raise Conflict(
                f"badge {number}: {b.tenant_id!r} from {b.valid_from} overlaps {a.tenant_id!r} "
                f"({a.valid_from} to {until}); end one before the other begins"
            )


def _import_keys(session: Session, bf: BillingFile, now_ms: int, report: ImportReport) -> None:
    for entry in bf.api_keys:
        row = session.scalars(sa.select(ApiKey).where(ApiKey.name == entry.name)).first()
        other = session.scalars(sa.select(ApiKey).where(ApiKey.sha256 == entry.sha256)).first()
        if other is not None and other.name != entry.name:
            raise Conflict(f"API key {entry.name!r}: the same key is stored as {other.name!r}; import it once")
        if row is None:
            session.add(
                ApiKey(
                    name=entry.name,
                    sha256=entry.sha256,
                    role=entry.role.value,
                    tenant_id=entry.tenant,
                    created_ms=now_ms,
                )
            )
            _count(report, "api_keys", True, False)
            continue
        if row.sha256 != entry.sha256:
            # Swapping the secret behind a name silently would lock its holder out (or let another in).
            raise Conflict(
                f"API key {entry.name!r} is stored with another hash; revoke it and import the new key under a new name"
            )
        # A revoked key stays revoked: re-importing an old site file must not bring it back.
        _count(report, "api_keys", False, (row.role, row.tenant_id) == (entry.role.value, entry.tenant))
        row.role, row.tenant_id = entry.role.value, entry.tenant
    session.flush()


def _import_bookings(
    session: Session, bf: BillingFile, now_ms: int, zone: ZoneInfo | None, report: ImportReport
) -> None:
    if zone is None:
        naive = next((i for i, b in enumerate(bf.bookings) if b.start.tzinfo is None or b.end.tzinfo is None), None)
        if naive is not None:
            raise ValueError(f"bookings[{naive}]: a time without an offset needs the site's time zone")
    times = bfm.booking_times(bf, zone or ZoneInfo("UTC"))
    machines: set[str] = set()
    for entry, (start, end) in zip(bf.bookings, times, strict=True):
        machines.add(entry.machine)
        row = session.scalars(
            sa.select(Booking).where(Booking.machine == entry.machine, Booking.start_ms == start)
        ).first()
        if row is None:
            session.add(
                Booking(machine=entry.machine, tenant_id=entry.tenant, start_ms=start, end_ms=end, created_ms=now_ms)
            )
            _count(report, "bookings", True, False)
        else:
            _count(report, "bookings", False, (row.tenant_id, row.end_ms) == (entry.tenant, end))
            row.tenant_id, row.end_ms = entry.tenant, end
    session.flush()
    for machine in sorted(machines):
        check_bookings(session, machine)


def check_bookings(session: Session, machine: str) -> None:
    """Raise Conflict if two stored bookings of machine overlap (call after flushing a change)."""
    serialize(session, f"bookings/{machine}")
    rows = session.execute(
        sa.select(Booking.id, Booking.tenant_id, Booking.start_ms, Booking.end_ms)
        .where(Booking.machine == machine)
        .order_by(Booking.start_ms, Booking.id)
    ).all()
    reach: tuple[int, int, str] | None = None  # furthest end so far: (end_ms, booking id, tenant)
    for booking_id, tenant, start, end in rows:
        if reach is not None and start < reach[0]:
            raise Conflict(
                f"machine {machine}: booking {booking_id} of {tenant!r} starting {start} overlaps booking "
                f"{reach[1]} of {reach[2]!r} ending {reach[0]} (epoch ms)"
            )
        if reach is None or end > reach[0]:
            reach = (end, booking_id, tenant)


def _tariff_fields(entry: TariffEntry) -> dict[str, object]:
    return {
        "machine": entry.machine,
        "machine_class": entry.machine_class,
        "valid_from": entry.valid_from.isoformat(),
        "valid_to": None if entry.valid_to is None else entry.valid_to.isoformat(),
        "rate_per_hour": entry.rate_per_hour,
        "billable": ",".join(c.value for c in sorted(set(entry.billable), key=_CATEGORY_ORDER.__getitem__)),
        "increment_min": entry.increment_min,
        "minimum_min": entry.minimum_min,
        "grace_min": entry.grace_min,
        "max_booked_actual": entry.max_booked_actual,
        "no_show_charge": entry.no_show_charge,
        "energy_per_kwh": entry.energy_per_kwh,
        "per_part": entry.per_part,
        "tax_rate_bp": entry.tax_rate_bp,
    }


def tariff_in_use(session: Session, code: str, version: int) -> bool:
    """Whether a finalized (or voided) invoice priced a line with this tariff version."""
    used = session.execute(
        sa.select(InvoiceLine.id)
        .join(Invoice, InvoiceLine.invoice_id == Invoice.id)
        .where(InvoiceLine.tariff == f"{code}@{version}", Invoice.status != "draft")
        .limit(1)
    ).first()
    return used is not None


def _import_tariffs(session: Session, bf: BillingFile, now_ms: int, report: ImportReport) -> None:
    for entry in bf.tariffs:
        wanted = _tariff_fields(entry)
        row = session.scalars(
            sa.select(TariffRow).where(TariffRow.code == entry.code, TariffRow.version == entry.version)
        ).first()
        if row is None:
            session.add(TariffRow(code=entry.code, version=entry.version, created_ms=now_ms, **wanted))
            _count(report, "tariffs", True, False)
            continue
        same = all(getattr(row, name) == value for name, value in wanted.items())
        if not same and tariff_in_use(session, entry.code, entry.version):
            raise Conflict(
                f"tariff {entry.code}@{entry.version} priced finalized invoices and cannot change; "
                f"add version {entry.version + 1} instead"
            )
        _count(report, "tariffs", False, same)
        for name, value in wanted.items():
            setattr(row, name, value)
    session.flush()
    check_tariffs(session)


def check_tariffs(session: Session) -> None:
    """Raise Conflict if two stored tariff versions are valid at once for the same machine or machine class."""
    serialize(session, "tariffs")
    rows = session.scalars(sa.select(TariffRow).order_by(TariffRow.valid_from, TariffRow.code, TariffRow.version))
    reach: dict[tuple[str, str], TariffRow] = {}  # per target: the version reaching furthest so far
    for row in rows:
        target = ("machine", row.machine) if row.machine is not None else ("class", row.machine_class or "")
        prev = reach.get(target)
        if prev is not None and (prev.valid_to is None or prev.valid_to > row.valid_from):
            raise Conflict(
                f"tariffs {row.code}@{row.version} and {prev.code}@{prev.version} are both valid for {target[0]} "
                f"{target[1]} from {row.valid_from}; close one (valid_to) before the other begins"
            )
        if prev is None or row.valid_to is None or (prev.valid_to is not None and row.valid_to > prev.valid_to):
            reach[target] = row


def _import_pools(session: Session, bf: BillingFile, report: ImportReport) -> None:
    for entry in bf.cost_pools:
        category = entry.category.value
        row = session.scalars(
            sa.select(CostPoolRow).where(
                CostPoolRow.machine == entry.machine,
                CostPoolRow.period == entry.period,
                CostPoolRow.category == category,
            )
        ).first()
        if row is None:
            session.add(CostPoolRow(machine=entry.machine, period=entry.period, category=category, amount=entry.amount))
            _count(report, "cost_pools", True, False)
        else:
            _count(report, "cost_pools", False, row.amount == entry.amount)
            row.amount = entry.amount
    session.flush()


# ---- API keys ------------------------------------------------------------------------------------------------


def create_key(session: Session, *, name: str, role: str, tenant: str | None = None, now_ms: int) -> tuple[ApiKey, str]:
    """Make a new API key; return its row and the clear key (shown once, never stored). The caller commits.

    Raise ValueError for a bad name/role/tenant combination, NotFound for an unknown tenant, Conflict for a name
    in use (revoked keys keep their names).
    """
    clear = new_key()
    try:
        spec = KeySpec.model_validate({"name": name, "sha256": hash_key(clear), "role": role, "tenant": tenant})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ValueError(f"API key {str(name)[:100]!r}: {where + ': ' if where else ''}{msg}") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in spec.name):
        raise ValueError(f"key name {spec.name[:100]!r} must not contain control characters")
    if spec.tenant is not None and session.get(Tenant, spec.tenant) is None:
        raise NotFound(f"tenant {spec.tenant!r} does not exist")
    if session.scalars(sa.select(ApiKey.id).where(ApiKey.name == spec.name)).first() is not None:
        raise Conflict(f"an API key named {spec.name!r} exists already (revoked keys keep their names)")
    row = ApiKey(name=spec.name, sha256=spec.sha256, role=spec.role.value, tenant_id=spec.tenant, created_ms=now_ms)
    session.add(row)
    session.flush()
    return row, clear


def revoke_key(session: Session, name: str, now_ms: int) -> ApiKey:
    """Revoke the key called name (a revoked key stays revoked, at its first revocation time); NotFound if none.
    The caller commits."""
    row = session.scalars(sa.select(ApiKey).where(ApiKey.name == name)).first()
    if row is None:
        raise NotFound(f"no API key named {name[:100]!r}")
    if row.revoked_ms is None:
        row.revoked_ms = now_ms
    session.execute(sa.delete(WebSession).where(WebSession.key_id == row.id))  # its browser sessions end too
    session.flush()
    return row


def list_keys(session: Session) -> list[ApiKey]:
    """Every API key, revoked ones too, by name."""
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.name)))


def principal_for_key(session: Session, presented: str, now_ms: int) -> KeyInfo | None:
    """The unrevoked key whose hash is that of presented, or None; note its use at most once a minute.

    Recording the use commits the session when nothing else is pending in it (call this before other writes);
    otherwise it is flushed and lands with the caller's commit.
    """
    digest = hash_key(presented)
    row = session.execute(
        sa.select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.tenant_id, ApiKey.revoked_ms, ApiKey.last_used_ms).where(
            ApiKey.sha256 == digest
        )
    ).first()
    if row is None or row.revoked_ms is not None:
        return None
    if row.last_used_ms is None or now_ms - row.last_used_ms >= LAST_USED_EVERY_MS:
        pending = bool(session.new or session.dirty or session.deleted)
        if not pending:
            # A GET reads in a plain (deferred) transaction; on SQLite turning it into a write fails at once with
            # "database is locked" when another connection wrote since it began (no busy wait for that). So end it
            # and write in a transaction that takes the write lock when it begins, waiting its turn.
            session.commit()
            session.connection(execution_options={"immediate": True})
        # Conditional, so two requests of one key at once write once, and a clock running behind never lowers it.
        session.execute(
            sa.update(ApiKey)
            .where(
                ApiKey.id == row.id,
                sa.or_(ApiKey.last_used_ms.is_(None), ApiKey.last_used_ms <= now_ms - LAST_USED_EVERY_MS),
            )
            .values(last_used_ms=now_ms)
            .execution_options(synchronize_session=False)
        )
        if pending:
            session.flush()
        else:
            session.commit()
    return KeyInfo(row.name, row.role, row.tenant_id)


# ---- reading for the core ------------------------------------------------------------------------------------


def owners(session: Session, zone: ZoneInfo) -> list[BadgeSpan]:
    """Every badge validity as a BadgeSpan (dates as local midnights in zone), by number then start."""
    rows = session.execute(sa.select(Badge.number, Badge.tenant_id, Badge.valid_from, Badge.valid_to)).all()
    entries = [
        (number, tenant, date.fromisoformat(start), None if end is None else date.fromisoformat(end))
        for number, tenant, start, end in rows
    ]
    return list(bfm.spans_of(entries, zone))


def _core_tariff(row: TariffRow, zone: ZoneInfo) -> Tariff:
    return Tariff(
        code=row.code,
        version=row.version,
        machine=row.machine,
        machine_class=row.machine_class,
        valid_from_ms=bfm.day_ms(zone, date.fromisoformat(row.valid_from)),
        valid_to_ms=None if row.valid_to is None else bfm.day_ms(zone, date.fromisoformat(row.valid_to)),
        rate_per_hour=row.rate_per_hour,
        billable=frozenset(Category(c) for c in row.billable.split(",") if c),
        increment_min=row.increment_min,
        minimum_min=row.minimum_min,
        grace_min=row.grace_min,
        max_booked_actual=row.max_booked_actual,
        no_show_charge=row.no_show_charge,
        energy_per_kwh=row.energy_per_kwh,
        per_part=row.per_part,
        tax_rate_bp=row.tax_rate_bp,
    )


def billing_data(session: Session, zone: ZoneInfo) -> BillingData:
    """Everything charging reads from the database, as the same objects billingfile.to_core makes from a file."""
    from api.core.billing.model import Booking as CoreBooking  # the ORM Booking is imported under that name here

    settings = get_settings(session)
    grace = settings.get("watermark_grace_min")
    bookings = tuple(
        CoreBooking(b.id, b.tenant_id, b.machine, b.start_ms, b.end_ms)
        for b in session.scalars(sa.select(Booking).order_by(Booking.id))
    )
    tariffs = tuple(
        _core_tariff(row, zone)
        for row in session.scalars(sa.select(TariffRow).order_by(TariffRow.code, TariffRow.version))
    )
    pools = tuple(
        CostPool(p.machine, p.period, PoolCategory(p.category), p.amount)
        for p in session.scalars(
            sa.select(CostPoolRow).order_by(CostPoolRow.machine, CostPoolRow.period, CostPoolRow.category)
        )
    )
    return BillingData(
        facility_name=settings.get("facility_name", ""),
        policy=Policy(settings.get("policy", Policy.CAPACITY.value)),
        watermark_grace_min=bfm.DEFAULT_GRACE_MIN if grace is None else int(grace),
        tenants={t.id: t.name for t in session.scalars(sa.select(Tenant).order_by(Tenant.id))},
        owners=tuple(owners(session, zone)),
        bookings=bookings,
        tariffs=tariffs,
        pools=pools,
    )


# ---- settings ------------------------------------------------------------------------------------------------


def _check_setting(key: str, value: str) -> str:
    if key not in SETTING_KEYS:
        raise ValueError(f"unknown setting {key[:64]!r} (known: {', '.join(SETTING_KEYS)})")
    if not isinstance(value, str):
        raise ValueError(f"setting {key}: value must be text")
    if key == "policy" and value not in {p.value for p in Policy}:
        raise ValueError(f"setting policy: {value[:64]!r} is not one of {', '.join(p.value for p in Policy)}")
    if key == "watermark_grace_min" and not (value.isascii() and value.isdigit() and int(value) <= bfm.MAX_MINUTES):
        raise ValueError(f"setting watermark_grace_min: {value[:64]!r} is not whole minutes 0..{bfm.MAX_MINUTES}")
    if key == "facility_name" and (len(value) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise ValueError("setting facility_name: at most 200 characters, no control characters")
    return value


def get_setting(session: Session, key: str) -> str | None:
    """A facility setting, None when unset."""
    row = session.get(Setting, key)
    return None if row is None else row.value


def get_settings(session: Session) -> dict[str, str]:
    """Every facility setting that is set."""
    return {row.key: row.value for row in session.scalars(sa.select(Setting))}


def set_setting(session: Session, key: str, value: str) -> None:
    """Set a facility setting (facility_name, policy, watermark_grace_min); ValueError for a bad value."""
    _check_setting(key, value)
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value
    session.flush()
