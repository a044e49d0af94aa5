"""Create, read, update and delete the business objects one at a time, with the checks the schema cannot make.

Bookings of one machine never overlap (half-open: [a, b) and [b, c) do not); badge rows of one number never
overlap in validity; tariff versions for one machine (or one machine class) never overlap in validity, a version is
never edited except to close it earlier, and a new one is version max + 1 of its code; a tenant is deleted only
when nothing refers to it; machines and machine classes must be the site's (the caller passes them in).

Every function works inside the caller's transaction and never commits: a route commits after it, an import commits
once after many. A refused write raises Conflict (the message names the clash), NotFound or BadReference (a field
names something that does not exist) and leaves the transaction usable (writes that can clash run in a savepoint).
On PostgreSQL an overlap check first takes a transaction-scoped advisory lock on what it checks (one machine's
bookings, one badge number, one tariff target), so two concurrent writers cannot both pass it; SQLite's write
transactions (BEGIN IMMEDIATE, api.db.engine.sessions) already run one at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.admin_models import TariffCreate, utc
from api.core.billing.model import Category, Policy
from api.db import models, repo
from api.db.engine import Conflict, DbError, NotFound
from api.policy import Role

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
DEFAULT_POLICY = Policy.CAPACITY
DEFAULT_FACILITY_NAME = ""
DEFAULT_WATERMARK_GRACE_MIN = 60
SETTING_KEYS = ("policy", "facility_name", "watermark_grace_min")

RowT = TypeVar("RowT", bound=models.Base)


class BadReference(DbError):
    """A field of a write names something that does not exist (a tenant, a machine): the caller's input is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class BookingOverlap(Conflict):
    """A booking would overlap another booking of the same machine: `clash` is that one."""

    def __init__(self, message: str, clash: models.Booking) -> None:
        super().__init__(message)
        self.clash = clash


@dataclass(frozen=True, slots=True)
class Page:
    """Which rows of a listing: at most limit rows after skipping offset, in id order."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _lock(session: Session, *parts: str) -> None:
    """Hold a PostgreSQL advisory lock on parts until the transaction ends (no-op on SQLite: writers queue)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256("\x1f".join(("shopfloor", *parts)).encode()).digest()
    session.execute(sa.select(sa.func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True))))


def _insert(session: Session, row: models.Base, clash: str) -> None:
    """Add row in a savepoint; a unique clash (a concurrent twin) becomes Conflict(clash)."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(clash) from exc


def _flush(session: Session, clash: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(clash) from exc


def _page(query: sa.Select[Any], page: Page) -> sa.Select[Any]:
    return query.limit(min(max(page.limit, 0), MAX_LIMIT)).offset(max(page.offset, 0))


def missing(what: str, key: int | str) -> NotFound:
    """Return the NotFound for object what with id key: one message for nonexistent and not-the-caller's alike."""
    return NotFound(f"{what} {key!r} not found" if isinstance(key, str) else f"{what} {key} not found")


def _get(session: Session, model: type[RowT], key: int | str, what: str) -> RowT:
    # Ids beyond the column's range cannot exist (and PostgreSQL would refuse to compare them): not found.
    if isinstance(key, int) and not 1 <= key <= 2**31 - 1:
        raise missing(what, key)
    row = session.get(model, key)
    if row is None:
        raise missing(what, key)
    return row


def _check_machine(machine: str, machines: Collection[str], field: str = "machine") -> None:
    if machine not in machines:
        raise BadReference(field, f"machine {machine!r} is not a machine of this site")


def _check_tenant(session: Session, tenant_id: str, field: str = "tenant_id") -> None:
    if session.get(models.Tenant, tenant_id) is None:
        raise BadReference(field, f"tenant {tenant_id!r} does not exist")


def _dates_overlap(a_from: str, a_to: str | None, b_from: str, b_to: str | None) -> bool:
    # ISO dates compare as strings; None is open-ended.
    return (b_to is None or a_from < b_to) and (a_to is None or b_from < a_to)


def _shown(valid_from: str, valid_to: str | None) -> str:
    return f"[{valid_from}, {valid_to or 'open-ended'})"


# -- tenants ----------------------------------------------------------------------------------------------------------


def list_tenants(session: Session, *, tenant: str | None = None, page: Page = Page()) -> list[models.Tenant]:
    """Return tenants in id order (tenant: only that one)."""
    query = sa.select(models.Tenant).order_by(models.Tenant.id)
    if tenant is not None:
        query = query.where(models.Tenant.id == tenant)
    return list(session.scalars(_page(query, page)))


def get_tenant(session: Session, tenant_id: str) -> models.Tenant:
    """Return a tenant; raise NotFound."""
    return _get(session, models.Tenant, tenant_id, "tenant")


def create_tenant(session: Session, *, tenant_id: str, name: str, now_ms: int) -> models.Tenant:
    """Create a tenant; raise Conflict if the id is taken."""
    clash = f"tenant {tenant_id!r} already exists"
    if session.get(models.Tenant, tenant_id) is not None:
        raise Conflict(clash)
    row = models.Tenant(id=tenant_id, name=name, created_ms=now_ms)
    _insert(session, row, clash)
    return row


def update_tenant(session: Session, tenant_id: str, *, name: str) -> models.Tenant:
    """Rename a tenant; raise NotFound."""
    row = get_tenant(session, tenant_id)
    row.name = name
    session.flush()
    return row


def delete_tenant(session: Session, tenant_id: str) -> None:
    """Delete a tenant nothing refers to; raise NotFound, or Conflict naming what still refers to it."""
    row = get_tenant(session, tenant_id)
    refs: list[tuple[Any, str]] = [
        (models.Badge.tenant_id, "badge"),
        (models.ApiKey.tenant_id, "API key"),
        (models.Booking.tenant_id, "booking"),
        (models.Invoice.tenant_id, "invoice"),
        (models.UsageRecordRow.tenant_id, "usage record"),
    ]
    held = []
    for column, what in refs:
        count = session.scalar(sa.select(sa.func.count()).where(column == tenant_id))
        if count:
            held.append(f"{count} {what}{'s' if count != 1 else ''}")
    if held:
        raise Conflict(
            f"tenant {tenant_id!r} is still referred to by {', '.join(held)}: delete or move those first "
            "(invoiced tenants are kept for the record)"
        )
    session.delete(row)
    _flush(session, f"tenant {tenant_id!r} is still referred to; delete or move what refers to it first")


# -- badges -----------------------------------------------------------------------------------------------------------


def list_badges(
    session: Session, *, tenant: str | None = None, number: int | None = None, page: Page = Page()
) -> list[models.Badge]:
    """Return badge rows in id order, optionally of one tenant and/or one number."""
    query = sa.select(models.Badge).order_by(models.Badge.id)
    if tenant is not None:
        query = query.where(models.Badge.tenant_id == tenant)
    if number is not None:
        query = query.where(models.Badge.number == number)
    return list(session.scalars(_page(query, page)))


def get_badge(session: Session, badge_id: int) -> models.Badge:
    """Return a badge row; raise NotFound."""
    return _get(session, models.Badge, badge_id, "badge")


def _check_badge(session: Session, number: int, valid_from: str, valid_to: str | None, exclude: int | None) -> None:
    if valid_to is not None and valid_to <= valid_from:
        raise BadReference("valid_to", f"valid_to {valid_to} must be after valid_from {valid_from}")
    _lock(session, "badge", str(number))
    query = sa.select(models.Badge).where(models.Badge.number == number).order_by(models.Badge.valid_from)
    for other in session.scalars(query):
        if other.id != exclude and _dates_overlap(valid_from, valid_to, other.valid_from, other.valid_to):
            raise Conflict(
                f"badge {number} is held by {other.tenant_id!r} {_shown(other.valid_from, other.valid_to)} "
                f"(badge row {other.id}), overlapping {_shown(valid_from, valid_to)}; close that row first"
            )


def create_badge(
    session: Session, *, number: int, tenant_id: str, valid_from: str, valid_to: str | None
) -> models.Badge:
    """Give badge number to a tenant over [valid_from, valid_to); raise BadReference, or Conflict on an overlap."""
    _check_tenant(session, tenant_id)
    _check_badge(session, number, valid_from, valid_to, None)
    row = models.Badge(number=number, tenant_id=tenant_id, valid_from=valid_from, valid_to=valid_to)
    _insert(session, row, f"badge {number}: a concurrent write clashed; retry")
    return row


def update_badge(session: Session, badge_id: int, *, valid_from: str, valid_to: str | None) -> models.Badge:
    """Change a badge row's validity; raise NotFound, or Conflict on an overlap with another row of its number."""
    row = get_badge(session, badge_id)
    _check_badge(session, row.number, valid_from, valid_to, row.id)
    row.valid_from, row.valid_to = valid_from, valid_to
    session.flush()
    return row


def delete_badge(session: Session, badge_id: int) -> None:
    """Delete a badge row; raise NotFound."""
    session.delete(get_badge(session, badge_id))
    session.flush()


# -- API keys ---------------------------------------------------------------------------------------------------------


def list_keys(session: Session, *, tenant: str | None = None, page: Page = Page()) -> list[models.ApiKey]:
    """Return API keys in id order (tenant: only that tenant's keys)."""
    query = sa.select(models.ApiKey).order_by(models.ApiKey.id)
    if tenant is not None:
        query = query.where(models.ApiKey.tenant_id == tenant)
    return list(session.scalars(_page(query, page)))


def get_key(session: Session, key_id: int) -> models.ApiKey:
    """Return an API key row; raise NotFound."""
    return _get(session, models.ApiKey, key_id, "API key")


def create_key(
    session: Session, *, name: str, role: Role, tenant_id: str | None, now_ms: int
) -> tuple[models.ApiKey, str]:
    """Create an API key; return its row and the clear key (stored only as its hash). Raise Conflict, BadReference."""
    if (role is Role.TENANT) != (tenant_id is not None):
        raise BadReference("tenant_id", "tenant keys, and only they, name a tenant")
    if tenant_id is not None:
        _check_tenant(session, tenant_id)
    try:
        return repo.create_key(session, name=name, role=role.value, tenant=tenant_id, now_ms=now_ms)
    except ValueError as exc:
        raise BadReference("name", str(exc)) from None


def revoke_key(session: Session, key_id: int, *, now_ms: int) -> models.ApiKey:
    """Revoke an API key (at once; revoking again keeps the first time); raise NotFound."""
    row = get_key(session, key_id)
    if row.revoked_ms is None:
        row.revoked_ms = now_ms
    # Its browser sessions end with it, at once.
    session.execute(sa.delete(models.WebSession).where(models.WebSession.key_id == row.id))
    session.flush()
    return row


# -- bookings ---------------------------------------------------------------------------------------------------------


def list_bookings(
    session: Session,
    *,
    tenant: str | None = None,
    machine: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    page: Page = Page(),
) -> list[models.Booking]:
    """Return bookings by start, optionally of one tenant, one machine, overlapping [start_ms, end_ms)."""
    query = sa.select(models.Booking).order_by(models.Booking.start_ms, models.Booking.id)
    if tenant is not None:
        query = query.where(models.Booking.tenant_id == tenant)
    if machine is not None:
        query = query.where(models.Booking.machine == machine)
    if end_ms is not None:
        query = query.where(models.Booking.start_ms < end_ms)
    if start_ms is not None:
        query = query.where(models.Booking.end_ms > start_ms)
    return list(session.scalars(_page(query, page)))


def get_booking(session: Session, booking_id: int) -> models.Booking:
    """Return a booking; raise NotFound."""
    return _get(session, models.Booking, booking_id, "booking")


def _check_booking(
    session: Session, machine: str, start_ms: int, end_ms: int, exclude: int | None, machines: Collection[str]
) -> None:
    _check_machine(machine, machines)
    if end_ms <= start_ms:
        raise BadReference("end", "end must be after start: a booking is [start, end)")
    _lock(session, "booking", machine)
    clash = session.scalars(
        sa.select(models.Booking)
        .where(
            models.Booking.machine == machine,
            models.Booking.start_ms < end_ms,
            models.Booking.end_ms > start_ms,
            models.Booking.id != (exclude if exclude is not None else -1),
        )
        .order_by(models.Booking.start_ms)
        .limit(1)
    ).first()
    if clash is not None:
        raise BookingOverlap(
            f"machine {machine!r} is already booked from {utc(clash.start_ms).isoformat()} to "
            f"{utc(clash.end_ms).isoformat()}",
            clash,
        )


def create_booking(
    session: Session,
    *,
    machine: str,
    tenant_id: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    machines: Collection[str],
) -> models.Booking:
    """Book machine for tenant over [start_ms, end_ms); raise BadReference, or BookingOverlap naming the clash."""
    _check_tenant(session, tenant_id)
    _check_booking(session, machine, start_ms, end_ms, None, machines)
    row = models.Booking(machine=machine, tenant_id=tenant_id, start_ms=start_ms, end_ms=end_ms, created_ms=now_ms)
    _insert(session, row, f"machine {machine!r}: a concurrent booking clashed; retry")
    return row


def update_booking(
    session: Session,
    booking_id: int,
    *,
    machine: str,
    tenant_id: str,
    start_ms: int,
    end_ms: int,
    machines: Collection[str],
) -> models.Booking:
    """Move a booking (machine, tenant, time); raise NotFound, BadReference, or BookingOverlap naming the clash."""
    row = get_booking(session, booking_id)
    if tenant_id != row.tenant_id:
        _check_tenant(session, tenant_id)
    _check_booking(session, machine, start_ms, end_ms, row.id, machines)
    row.machine, row.tenant_id, row.start_ms, row.end_ms = machine, tenant_id, start_ms, end_ms
    session.flush()
    return row


def delete_booking(session: Session, booking_id: int) -> None:
    """Delete a booking; raise NotFound."""
    session.delete(get_booking(session, booking_id))
    session.flush()


# -- tariffs ----------------------------------------------------------------------------------------------------------


def billable_of(row: models.Tariff) -> list[Category]:
    """Return a tariff row's billable categories (stored comma-separated), in Category order."""
    named = {part for part in row.billable.split(",") if part}
    return [c for c in Category if c.value in named]


def list_tariffs(
    session: Session,
    *,
    code: str | None = None,
    machine: str | None = None,
    machine_class: str | None = None,
    page: Page = Page(),
) -> list[models.Tariff]:
    """Return tariff versions by code and version, optionally of one code, machine or machine class."""
    query = sa.select(models.Tariff).order_by(models.Tariff.code, models.Tariff.version)
    if code is not None:
        query = query.where(models.Tariff.code == code)
    if machine is not None:
        query = query.where(models.Tariff.machine == machine)
    if machine_class is not None:
        query = query.where(models.Tariff.machine_class == machine_class)
    return list(session.scalars(_page(query, page)))


def get_tariff(session: Session, tariff_id: int) -> models.Tariff:
    """Return a tariff version; raise NotFound."""
    return _get(session, models.Tariff, tariff_id, "tariff")


def _target(machine: str | None, machine_class: str | None) -> str:
    return f"machine {machine!r}" if machine is not None else f"machine class {machine_class!r}"


def create_tariff(
    session: Session, spec: TariffCreate, *, now_ms: int, machines: Collection[str], classes: Collection[str]
) -> models.Tariff:
    """Add version max + 1 of spec.code; raise BadReference, or Conflict naming an overlapping version."""
    if spec.machine is not None:
        _check_machine(spec.machine, machines)
    if spec.machine_class is not None and spec.machine_class not in classes:
        raise BadReference("machine_class", f"machine class {spec.machine_class!r} is not a profile of this site")
    target = _target(spec.machine, spec.machine_class)
    _lock(session, "tariff-code", spec.code)
    _lock(session, "tariff", target)
    versions = list(session.scalars(sa.select(models.Tariff).where(models.Tariff.code == spec.code)))
    for other in versions:
        if (other.machine, other.machine_class) != (spec.machine, spec.machine_class):
            raise Conflict(
                f"tariff {spec.code!r} is for {_target(other.machine, other.machine_class)}, not {target}: "
                "a new version keeps its code's machine or class; use another code"
            )
    same_target = session.scalars(
        sa.select(models.Tariff).where(
            models.Tariff.machine == spec.machine
            if spec.machine is not None
            else models.Tariff.machine_class == spec.machine_class
        )
    )
    for other in same_target:
        if _dates_overlap(spec.valid_from, spec.valid_to, other.valid_from, other.valid_to):
            raise Conflict(
                f"tariff {other.code}@{other.version} for {target} is valid {_shown(other.valid_from, other.valid_to)},"
                f" overlapping {_shown(spec.valid_from, spec.valid_to)}; close it first (PATCH its valid_to)"
            )
    version = max((v.version for v in versions), default=0) + 1
    row = models.Tariff(
        code=spec.code,
        version=version,
        machine=spec.machine,
        machine_class=spec.machine_class,
        valid_from=spec.valid_from,
        valid_to=spec.valid_to,
        rate_per_hour=spec.rate_per_hour,
        billable=",".join(c.value for c in Category if c in spec.billable),
        increment_min=spec.increment_min,
        minimum_min=spec.minimum_min,
        grace_min=spec.grace_min,
        max_booked_actual=spec.max_booked_actual,
        no_show_charge=spec.no_show_charge,
        energy_per_kwh=spec.energy_per_kwh,
        per_part=spec.per_part,
        tax_rate_bp=spec.tax_rate_bp,
        created_ms=now_ms,
    )
    _insert(session, row, f"tariff {spec.code!r}: a concurrent version {version} was added; retry")
    return row


def close_tariff(session: Session, tariff_id: int, *, valid_to: str) -> models.Tariff:
    """End a tariff version's validity on valid_to (only ever earlier); raise NotFound, BadReference or Conflict."""
    row = get_tariff(session, tariff_id)
    if valid_to <= row.valid_from:
        raise BadReference("valid_to", f"valid_to {valid_to} must be after the version's valid_from {row.valid_from}")
    if row.valid_to is not None and valid_to > row.valid_to:
        raise Conflict(
            f"tariff {row.code}@{row.version} already ends on {row.valid_to}: a version is only ever closed "
            "earlier; post a new version to extend it"
        )
    row.valid_to = valid_to
    session.flush()
    return row


# -- cost pools -------------------------------------------------------------------------------------------------------


def list_cost_pools(
    session: Session, *, machine: str | None = None, period: str | None = None, page: Page = Page()
) -> list[models.CostPool]:
    """Return cost pools by period, machine and category, optionally of one machine and/or period."""
    query = sa.select(models.CostPool).order_by(
        models.CostPool.period, models.CostPool.machine, models.CostPool.category
    )
    if machine is not None:
        query = query.where(models.CostPool.machine == machine)
    if period is not None:
        query = query.where(models.CostPool.period == period)
    return list(session.scalars(_page(query, page)))


def get_cost_pool(session: Session, pool_id: int) -> models.CostPool:
    """Return a cost pool; raise NotFound."""
    return _get(session, models.CostPool, pool_id, "cost pool")


def create_cost_pool(
    session: Session, *, machine: str, period: str, category: str, amount: int, machines: Collection[str]
) -> models.CostPool:
    """Create one machine's cost of one category for one period; raise BadReference, or Conflict if it exists."""
    _check_machine(machine, machines)
    existing = session.scalar(
        sa.select(models.CostPool.id).where(
            models.CostPool.machine == machine,
            models.CostPool.period == period,
            models.CostPool.category == category,
        )
    )
    clash = f"machine {machine!r} already has a {category} cost pool for {period}"
    if existing is not None:
        raise Conflict(f"{clash} (cost pool {existing}); change its amount instead")
    row = models.CostPool(machine=machine, period=period, category=category, amount=amount)
    _insert(session, row, clash)
    return row


def update_cost_pool(session: Session, pool_id: int, *, amount: int) -> models.CostPool:
    """Change a cost pool's amount; raise NotFound."""
    row = get_cost_pool(session, pool_id)
    row.amount = amount
    session.flush()
    return row


def delete_cost_pool(session: Session, pool_id: int) -> None:
    """Delete a cost pool; raise NotFound."""
    session.delete(get_cost_pool(session, pool_id))
    session.flush()


# -- billing settings -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """Facility-wide billing settings (defaults where none is stored)."""

    policy: Policy = DEFAULT_POLICY
    facility_name: str = DEFAULT_FACILITY_NAME
    watermark_grace_min: int = DEFAULT_WATERMARK_GRACE_MIN


def get_settings(session: Session) -> BillingSettings:
    """Return the billing settings; raise DbError naming a stored value that is not valid."""
    stored = {s.key: s.value for s in session.scalars(sa.select(models.Setting))}
    policy_text = stored.get("policy", DEFAULT_POLICY.value)
    grace_text = stored.get("watermark_grace_min", str(DEFAULT_WATERMARK_GRACE_MIN))
    try:
        policy = Policy(policy_text)
    except ValueError:
        raise DbError(
            f"setting 'policy' holds {policy_text[:40]!r}, not one of {', '.join(Policy)}: set it again"
        ) from None
    if not grace_text.isascii() or not grace_text.isdigit():
        raise DbError(f"setting 'watermark_grace_min' holds {grace_text[:40]!r}, not minutes: set it again")
    return BillingSettings(policy, stored.get("facility_name", DEFAULT_FACILITY_NAME), int(grace_text))


def update_settings(
    session: Session,
    *,
    policy: Policy | None = None,
    facility_name: str | None = None,
    watermark_grace_min: int | None = None,
) -> BillingSettings:
    """Set the billing settings given (None: keep); return them all."""
    values = {"policy": policy.value if policy is not None else None, "facility_name": facility_name}
    values["watermark_grace_min"] = str(watermark_grace_min) if watermark_grace_min is not None else None
    for key, value in values.items():
        if value is None:
            continue
        row = session.get(models.Setting, key)
        if row is None:
            _insert(session, models.Setting(key=key, value=value), f"setting {key!r}: a concurrent write; retry")
        else:
            row.value = value
    session.flush()
    return get_settings(session)
