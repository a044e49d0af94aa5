"""The admin endpoints under /v1: tenants, badges, API keys, bookings, tariffs, cost pools and billing settings.

Who may do what is api.policy's (ACCESS, may, booking_changeable); this module asks it and answers:
- a kind the caller's role may not read or write at all: 403;
- an object of another tenant: the same 404 as an object that does not exist (ids cannot be probed);
- a body that does not fit the caller's model (a tenant's booking naming `tenant_id`, a float price, a naive
  time): 422 naming the field. Bodies are read here (at most MAX_BODY_BYTES), after the caller is known, and
  validated as JSON by the model the caller's access picks;
- a write that clashes (an overlap, a duplicate, a referenced tenant): 409 naming the clash.
Writes commit here, after crud made them (crud never commits).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from api import admin_models as am
from api.core.billing.model import PoolCategory
from api.db import crud, models
from api.db.engine import Conflict, NotFound
from api.deps import DbDep, NowDep, PrincipalDep, SiteDep
from api.params import MAX_PARAM_CHARS, parse_instant
from api.policy import (
    Access,
    Action,
    Kind,
    Principal,
    access,
    booking_changeable,
    listing_tenant,
    may,
    sees_everything,
)
from shopfloor.config import SiteConfig
from shopfloor.contracts import is_valid_id

MAX_BODY_BYTES = 64 * 1024  # the largest valid body (a tariff) is well under 2 KiB
MAX_ECHO = 100  # characters of a refused input echoed back
MAX_OFFSET = 10**6

ModelT = TypeVar("ModelT", bound=BaseModel)
router = APIRouter(tags=["admin"])

NOUNS = {
    Kind.TENANT: "tenants",
    Kind.BADGE: "badges",
    Kind.KEY: "API keys",
    Kind.BOOKING: "bookings",
    Kind.TARIFF: "tariffs",
    Kind.COST_POOL: "cost pools",
    Kind.BILLING_SETTINGS: "billing settings",
    Kind.INVOICE: "invoices",
}


def include(parent: APIRouter) -> None:
    """Register the admin routes on parent (the /v1 router, which authenticates every request)."""
    parent.include_router(router)


# -- request plumbing -------------------------------------------------------------------------------------------------


async def read_body(request: Request) -> bytes:
    """The raw request body; 413 when it is longer than MAX_BODY_BYTES (checked while reading, not trusted)."""
    too_long = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, detail=f"request body longer than {MAX_BODY_BYTES} bytes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_long
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_long
    return bytes(body)


BodyDep = Annotated[bytes, Depends(read_body)]


def _echo(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "..."
    if value is None or isinstance(value, bool | int | float):
        return value
    return None  # objects and lists are not echoed: they may be large, and the location says enough


def _error(loc: Sequence[str | int], kind: str, msg: str, value: Any) -> dict[str, Any]:
    where = ".".join(str(p) for p in loc) or "body"
    return {"type": kind, "loc": ("body", *loc), "msg": f"{where}: {msg}", "input": _echo(value)}


def field_error(field: str, msg: str, value: Any = None) -> RequestValidationError:
    """Return a 422 naming a body field."""
    return RequestValidationError([_error((field,), "value_error", msg, value)])


def parse(model: type[ModelT], raw: bytes) -> ModelT:
    """Validate a JSON body against model; raise a 422 naming every offending field."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            _error(e["loc"], e["type"], e["msg"].removeprefix("Value error, "), e.get("input"))
            for e in exc.errors(include_url=False, include_context=False)
        ]
        raise RequestValidationError(errors) from None


def require(principal: Principal, kind: Kind, action: Action) -> Access:
    """Return the caller's access to kind; 403 when it has none."""
    granted = access(principal, kind, action)
    if granted is Access.NONE:
        verb = "read" if action is Action.READ else "change"
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"a {principal.role} key may not {verb} {NOUNS[kind]}")
    return granted


def not_found(what: str, key: int | str) -> HTTPException:
    """Return the 404 for what key: identical for a nonexistent object and another tenant's."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(crud.missing(what, key)))


def check_owner(principal: Principal, kind: Kind, action: Action, owner: str | None, what: str, key: int | str) -> None:
    """Answer 404 (as for a nonexistent object) unless principal may act on this object of owner."""
    if not may(principal, kind, action, owner):
        raise not_found(what, key)


@contextmanager
def answers(principal: Principal) -> Iterator[None]:
    """Turn crud's refusals into HTTP answers: 404, 409 naming the clash, 422 naming the field."""
    try:
        yield
    except crud.BookingOverlap as exc:
        detail = str(exc)
        if sees_everything(principal):  # who holds it is not another tenant's to know
            detail += f" by tenant {exc.clash.tenant_id!r} (booking {exc.clash.id})"
        raise HTTPException(status.HTTP_409_CONFLICT, detail=detail) from None
    except crud.BadReference as exc:
        raise field_error(exc.field, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None


def tenant_key(tenant_id: str) -> str:
    """A tenant id from a path as shown in messages (escaped and cut when it is not an id)."""
    return tenant_id if is_valid_id(tenant_id) else tenant_id[:64].encode("unicode_escape").decode()


def listing(principal: Principal, kind: Kind, requested: str | None) -> tuple[str | None, bool]:
    """Return (tenant filter, empty) of a listing: a tenant key's own; another tenant's answers as none exist."""
    own = listing_tenant(principal, kind)
    if own is None:
        return requested, False
    return own, requested is not None and requested != own


def page(
    limit: Annotated[int, Query(ge=1, le=crud.MAX_LIMIT, description="at most this many rows")] = crud.DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="skip this many rows first")] = 0,
) -> crud.Page:
    """The page of a listing."""
    return crud.Page(limit, offset)


PageDep = Annotated[crud.Page, Depends(page)]
Filter = Annotated[str | None, Query(max_length=MAX_PARAM_CHARS)]


def now_ms(now: NowDep) -> int:
    """The current time, epoch ms."""
    return am.to_ms(now)


NowMsDep = Annotated[int, Depends(now_ms)]


def machine_ids(site: SiteConfig) -> frozenset[str]:
    """The site's machine ids."""
    return frozenset(m.id for m in site.machines)


# -- public views -----------------------------------------------------------------------------------------------------


def tenant_public(row: models.Tenant) -> am.TenantPublic:
    """The public view of a tenant row."""
    return am.TenantPublic(id=row.id, name=row.name, created=am.utc(row.created_ms))


def badge_public(row: models.Badge) -> am.BadgePublic:
    """The public view of a badge row."""
    return am.BadgePublic(
        id=row.id, number=row.number, tenant_id=row.tenant_id, valid_from=row.valid_from, valid_to=row.valid_to
    )


def _opt(ms: int | None) -> Any:
    return None if ms is None else am.utc(ms)


def key_fields(row: models.ApiKey) -> dict[str, Any]:
    """The public fields of an API key row (never its hash)."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "tenant_id": row.tenant_id,
        "created": am.utc(row.created_ms),
        "revoked": _opt(row.revoked_ms),
        "last_used": _opt(row.last_used_ms),
    }


def booking_public(row: models.Booking) -> am.BookingPublic:
    """The public view of a booking row."""
    return am.BookingPublic(
        id=row.id,
        machine=row.machine,
        tenant_id=row.tenant_id,
        start=am.utc(row.start_ms),
        end=am.utc(row.end_ms),
        created=am.utc(row.created_ms),
    )


def tariff_public(row: models.Tariff) -> am.TariffPublic:
    """The public view of a tariff version."""
    return am.TariffPublic(
        id=row.id,
        code=row.code,
        version=row.version,
        ref=f"{row.code}@{row.version}",
        machine=row.machine,
        machine_class=row.machine_class,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        rate_per_hour=row.rate_per_hour,
        billable=crud.billable_of(row),
        increment_min=row.increment_min,
        minimum_min=row.minimum_min,
        grace_min=row.grace_min,
        max_booked_actual=row.max_booked_actual,
        no_show_charge=row.no_show_charge,
        energy_per_kwh=row.energy_per_kwh,
        per_part=row.per_part,
        tax_rate_bp=row.tax_rate_bp,
        created=am.utc(row.created_ms),
    )


def pool_public(row: models.CostPool) -> am.CostPoolPublic:
    """The public view of a cost pool row."""
    return am.CostPoolPublic(
        id=row.id, machine=row.machine, period=row.period, category=PoolCategory(row.category), amount=row.amount
    )


def settings_public(settings: crud.BillingSettings) -> am.BillingSettingsPublic:
    """The public view of the billing settings."""
    return am.BillingSettingsPublic(
        policy=settings.policy,
        facility_name=settings.facility_name,
        watermark_grace_min=settings.watermark_grace_min,
    )


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such object, or not the caller's (the same answer for both)"}
}
WRITE: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"description": "the caller's role may not change these"},
    409: {"description": "clashes with what is stored; the detail names the clash"},
    413: {"description": "body too long"},
    422: {"description": "invalid body; each error names its field"},
}


# -- tenants ----------------------------------------------------------------------------------------------------------


@router.get("/tenants", tags=["tenants"])
def list_tenants(principal: PrincipalDep, db: DbDep, page: PageDep) -> list[am.TenantPublic]:
    """List tenants (a tenant key: its own)."""
    require(principal, Kind.TENANT, Action.READ)
    tenant, empty = listing(principal, Kind.TENANT, None)
    return [] if empty else [tenant_public(r) for r in crud.list_tenants(db, tenant=tenant, page=page)]


@router.post("/tenants", tags=["tenants"], status_code=201, responses=WRITE)
def create_tenant(principal: PrincipalDep, db: DbDep, now: NowMsDep, body: BodyDep) -> am.TenantPublic:
    """Create a tenant."""
    require(principal, Kind.TENANT, Action.WRITE)
    spec = parse(am.TenantCreate, body)
    with answers(principal):
        row = crud.create_tenant(db, tenant_id=spec.id, name=spec.name, now_ms=now)
    db.commit()
    return tenant_public(row)


def _tenant(db: DbDep, principal: Principal, tenant_id: str, action: Action) -> models.Tenant:
    shown = tenant_key(tenant_id)
    if not is_valid_id(tenant_id):
        raise not_found("tenant", shown)
    check_owner(principal, Kind.TENANT, action, tenant_id, "tenant", shown)
    with answers(principal):
        return crud.get_tenant(db, tenant_id)


@router.get("/tenants/{tenant_id}", tags=["tenants"], responses=NOT_FOUND)
def get_tenant(principal: PrincipalDep, db: DbDep, tenant_id: str) -> am.TenantPublic:
    """Return one tenant."""
    require(principal, Kind.TENANT, Action.READ)
    return tenant_public(_tenant(db, principal, tenant_id, Action.READ))


@router.patch("/tenants/{tenant_id}", tags=["tenants"], responses=WRITE)
def update_tenant(principal: PrincipalDep, db: DbDep, tenant_id: str, body: BodyDep) -> am.TenantPublic:
    """Rename a tenant."""
    require(principal, Kind.TENANT, Action.WRITE)
    spec = parse(am.TenantUpdate, body)
    row = _tenant(db, principal, tenant_id, Action.WRITE)
    with answers(principal):
        crud.update_tenant(db, row.id, name=spec.name)
    db.commit()
    return tenant_public(row)


@router.delete("/tenants/{tenant_id}", tags=["tenants"], status_code=204, responses=WRITE)
def delete_tenant(principal: PrincipalDep, db: DbDep, tenant_id: str) -> Response:
    """Delete a tenant nothing refers to (409 names what still does)."""
    require(principal, Kind.TENANT, Action.WRITE)
    row = _tenant(db, principal, tenant_id, Action.WRITE)
    with answers(principal):
        crud.delete_tenant(db, row.id)
    db.commit()
    return Response(status_code=204)


# -- badges -----------------------------------------------------------------------------------------------------------


@router.get("/badges", tags=["badges"])
def list_badges(
    principal: PrincipalDep,
    db: DbDep,
    page: PageDep,
    tenant: Filter = None,
    number: Annotated[int | None, Query(ge=1, le=am.MAX_BADGE)] = None,
) -> list[am.BadgePublic]:
    """List badge rows, optionally of one tenant or number (a tenant key: its own)."""
    require(principal, Kind.BADGE, Action.READ)
    scope, empty = listing(principal, Kind.BADGE, tenant)
    if empty:
        return []
    return [badge_public(r) for r in crud.list_badges(db, tenant=scope, number=number, page=page)]


def _badge(db: DbDep, principal: Principal, badge_id: int, action: Action) -> models.Badge:
    with answers(principal):
        row = crud.get_badge(db, badge_id)
    check_owner(principal, Kind.BADGE, action, row.tenant_id, "badge", badge_id)
    return row


@router.post("/badges", tags=["badges"], status_code=201, responses=WRITE)
def create_badge(principal: PrincipalDep, db: DbDep, body: BodyDep) -> am.BadgePublic:
    """Give a badge number to a tenant over [valid_from, valid_to) (409 if that number is held then)."""
    require(principal, Kind.BADGE, Action.WRITE)
    spec = parse(am.BadgeCreate, body)
    with answers(principal):
        row = crud.create_badge(
            db, number=spec.number, tenant_id=spec.tenant_id, valid_from=spec.valid_from, valid_to=spec.valid_to
        )
    db.commit()
    return badge_public(row)


@router.get("/badges/{badge_id}", tags=["badges"], responses=NOT_FOUND)
def get_badge(principal: PrincipalDep, db: DbDep, badge_id: int) -> am.BadgePublic:
    """Return one badge row."""
    require(principal, Kind.BADGE, Action.READ)
    return badge_public(_badge(db, principal, badge_id, Action.READ))


@router.patch("/badges/{badge_id}", tags=["badges"], responses=WRITE)
def update_badge(principal: PrincipalDep, db: DbDep, badge_id: int, body: BodyDep) -> am.BadgePublic:
    """Change a badge row's validity (valid_to null: open-ended)."""
    require(principal, Kind.BADGE, Action.WRITE)
    spec = parse(am.BadgeUpdate, body)
    row = _badge(db, principal, badge_id, Action.WRITE)
    given = spec.model_fields_set
    valid_from = spec.valid_from if spec.valid_from is not None else row.valid_from
    valid_to = spec.valid_to if "valid_to" in given else row.valid_to
    if valid_to is not None and valid_to <= valid_from:
        field = "valid_to" if "valid_to" in given else "valid_from"
        raise field_error(field, f"valid_to {valid_to} must be after valid_from {valid_from}")
    with answers(principal):
        crud.update_badge(db, row.id, valid_from=valid_from, valid_to=valid_to)
    db.commit()
    return badge_public(row)


@router.delete("/badges/{badge_id}", tags=["badges"], status_code=204, responses=WRITE)
def delete_badge(principal: PrincipalDep, db: DbDep, badge_id: int) -> Response:
    """Delete a badge row."""
    require(principal, Kind.BADGE, Action.WRITE)
    row = _badge(db, principal, badge_id, Action.WRITE)
    with answers(principal):
        crud.delete_badge(db, row.id)
    db.commit()
    return Response(status_code=204)


# -- API keys ---------------------------------------------------------------------------------------------------------


@router.get("/keys", tags=["keys"])
def list_keys(principal: PrincipalDep, db: DbDep, page: PageDep, tenant: Filter = None) -> list[am.KeyPublic]:
    """List API keys, never their hashes (a tenant key: its tenant's)."""
    require(principal, Kind.KEY, Action.READ)
    scope, empty = listing(principal, Kind.KEY, tenant)
    return [] if empty else [am.KeyPublic(**key_fields(r)) for r in crud.list_keys(db, tenant=scope, page=page)]


def _key(db: DbDep, principal: Principal, key_id: int, action: Action) -> models.ApiKey:
    with answers(principal):
        row = crud.get_key(db, key_id)
    check_owner(principal, Kind.KEY, action, row.tenant_id, "API key", key_id)
    return row


@router.post("/keys", tags=["keys"], status_code=201, responses=WRITE)
def create_key(principal: PrincipalDep, db: DbDep, now: NowMsDep, body: BodyDep) -> am.KeyCreated:
    """Create an API key; the answer holds the key, this once (only its hash is stored)."""
    require(principal, Kind.KEY, Action.WRITE)
    spec = parse(am.KeyCreate, body)
    with answers(principal):
        row, clear = crud.create_key(db, name=spec.name, role=spec.role, tenant_id=spec.tenant_id, now_ms=now)
    db.commit()
    return am.KeyCreated(**key_fields(row), key=clear)


@router.get("/keys/{key_id}", tags=["keys"], responses=NOT_FOUND)
def get_key(principal: PrincipalDep, db: DbDep, key_id: int) -> am.KeyPublic:
    """Return one API key (never its hash)."""
    require(principal, Kind.KEY, Action.READ)
    return am.KeyPublic(**key_fields(_key(db, principal, key_id, Action.READ)))


@router.post("/keys/{key_id}/revoke", tags=["keys"], responses=WRITE)
def revoke_key(principal: PrincipalDep, db: DbDep, now: NowMsDep, key_id: int) -> am.KeyPublic:
    """Revoke an API key at once (revoking again keeps the first time)."""
    require(principal, Kind.KEY, Action.WRITE)
    row = _key(db, principal, key_id, Action.WRITE)
    with answers(principal):
        crud.revoke_key(db, row.id, now_ms=now)
    db.commit()
    return am.KeyPublic(**key_fields(row))


# -- bookings ---------------------------------------------------------------------------------------------------------


def _instant_param(name: str, text: str | None) -> int | None:
    return None if text is None else parse_instant(name, text)


@router.get("/bookings", tags=["bookings"])
def list_bookings(
    principal: PrincipalDep,
    db: DbDep,
    page: PageDep,
    machine: Filter = None,
    tenant: Filter = None,
    from_: Annotated[str | None, Query(alias="from", max_length=MAX_PARAM_CHARS)] = None,
    to: Annotated[str | None, Query(max_length=MAX_PARAM_CHARS)] = None,
) -> list[am.BookingPublic]:
    """List bookings by start, optionally of one machine or tenant, overlapping [from, to) (a tenant key: its own)."""
    require(principal, Kind.BOOKING, Action.READ)
    start_ms, end_ms = _instant_param("from", from_), _instant_param("to", to)
    scope, empty = listing(principal, Kind.BOOKING, tenant)
    if empty:
        return []
    rows = crud.list_bookings(db, tenant=scope, machine=machine, start_ms=start_ms, end_ms=end_ms, page=page)
    return [booking_public(r) for r in rows]


def _booking(db: DbDep, principal: Principal, booking_id: int, action: Action) -> models.Booking:
    with answers(principal):
        row = crud.get_booking(db, booking_id)
    check_owner(principal, Kind.BOOKING, action, row.tenant_id, "booking", booking_id)
    return row


def _started(row: models.Booking) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        detail=f"booking {row.id} started at {am.utc(row.start_ms).isoformat()}: it is billed as booked; "
        "only the admin can change it now",
    )


def _future_start(principal: Principal, start_ms: int, now: int) -> None:
    if not booking_changeable(principal, start_ms, now):
        raise field_error("start", "must be in the future: time that has begun cannot be booked (ask the admin)", None)


@router.post("/bookings", tags=["bookings"], status_code=201, responses=WRITE)
def create_booking(principal: PrincipalDep, db: DbDep, site: SiteDep, now: NowMsDep, body: BodyDep) -> am.BookingPublic:
    """Book a machine for [start, end); a tenant key books for itself (its body names no tenant)."""
    granted = require(principal, Kind.BOOKING, Action.WRITE)
    if granted is Access.OWN:
        spec: am.TenantBookingCreate = parse(am.TenantBookingCreate, body)
        tenant_id = principal.tenant
    else:
        admin_spec = parse(am.AdminBookingCreate, body)
        spec, tenant_id = admin_spec, admin_spec.tenant_id
    assert tenant_id is not None  # a principal with OWN access has a tenant (Principal checks it)
    start_ms, end_ms = am.to_ms(spec.start), am.to_ms(spec.end)
    _future_start(principal, start_ms, now)
    with answers(principal):
        row = crud.create_booking(
            db,
            machine=spec.machine,
            tenant_id=tenant_id,
            start_ms=start_ms,
            end_ms=end_ms,
            now_ms=now,
            machines=machine_ids(site),
        )
    db.commit()
    return booking_public(row)


@router.get("/bookings/{booking_id}", tags=["bookings"], responses=NOT_FOUND)
def get_booking(principal: PrincipalDep, db: DbDep, booking_id: int) -> am.BookingPublic:
    """Return one booking."""
    require(principal, Kind.BOOKING, Action.READ)
    return booking_public(_booking(db, principal, booking_id, Action.READ))


@router.patch("/bookings/{booking_id}", tags=["bookings"], responses=WRITE)
def update_booking(
    principal: PrincipalDep, db: DbDep, site: SiteDep, now: NowMsDep, booking_id: int, body: BodyDep
) -> am.BookingPublic:
    """Move a booking to another machine or time (the admin: also to another tenant)."""
    granted = require(principal, Kind.BOOKING, Action.WRITE)
    spec = parse(am.TenantBookingUpdate if granted is Access.OWN else am.AdminBookingUpdate, body)
    row = _booking(db, principal, booking_id, Action.WRITE)
    if not booking_changeable(principal, row.start_ms, now):
        raise _started(row)
    start = spec.start if spec.start is not None else am.utc(row.start_ms)
    end = spec.end if spec.end is not None else am.utc(row.end_ms)
    problem = am.check_span(start, end)
    if problem is not None:
        raise field_error("end" if spec.end is not None else "start", problem)
    _future_start(principal, am.to_ms(start), now)
    tenant_id = spec.tenant_id if isinstance(spec, am.AdminBookingUpdate) and spec.tenant_id else row.tenant_id
    with answers(principal):
        crud.update_booking(
            db,
            row.id,
            machine=spec.machine or row.machine,
            tenant_id=tenant_id,
            start_ms=am.to_ms(start),
            end_ms=am.to_ms(end),
            machines=machine_ids(site),
        )
    db.commit()
    return booking_public(row)


@router.delete("/bookings/{booking_id}", tags=["bookings"], status_code=204, responses=WRITE)
def delete_booking(principal: PrincipalDep, db: DbDep, now: NowMsDep, booking_id: int) -> Response:
    """Cancel a booking (a tenant key: only before it starts)."""
    require(principal, Kind.BOOKING, Action.WRITE)
    row = _booking(db, principal, booking_id, Action.WRITE)
    if not booking_changeable(principal, row.start_ms, now):
        raise _started(row)
    with answers(principal):
        crud.delete_booking(db, row.id)
    db.commit()
    return Response(status_code=204)


# -- tariffs ----------------------------------------------------------------------------------------------------------


@router.get("/tariffs", tags=["tariffs"])
def list_tariffs(
    principal: PrincipalDep,
    db: DbDep,
    page: PageDep,
    code: Filter = None,
    machine: Filter = None,
    machine_class: Filter = None,
) -> list[am.TariffPublic]:
    """List tariff versions by code and version."""
    require(principal, Kind.TARIFF, Action.READ)
    rows = crud.list_tariffs(db, code=code, machine=machine, machine_class=machine_class, page=page)
    return [tariff_public(r) for r in rows]


@router.post("/tariffs", tags=["tariffs"], status_code=201, responses=WRITE)
def create_tariff(principal: PrincipalDep, db: DbDep, site: SiteDep, now: NowMsDep, body: BodyDep) -> am.TariffPublic:
    """Add a tariff version (version max + 1 of its code); 409 if it overlaps another for the same target."""
    require(principal, Kind.TARIFF, Action.WRITE)
    spec = parse(am.TariffCreate, body)
    classes = frozenset(p.model for p in site.profiles)
    with answers(principal):
        row = crud.create_tariff(db, spec, now_ms=now, machines=machine_ids(site), classes=classes)
    db.commit()
    return tariff_public(row)


@router.get("/tariffs/{tariff_id}", tags=["tariffs"], responses=NOT_FOUND)
def get_tariff(principal: PrincipalDep, db: DbDep, tariff_id: int) -> am.TariffPublic:
    """Return one tariff version."""
    require(principal, Kind.TARIFF, Action.READ)
    with answers(principal):
        return tariff_public(crud.get_tariff(db, tariff_id))


@router.patch("/tariffs/{tariff_id}", tags=["tariffs"], responses=WRITE)
def close_tariff(principal: PrincipalDep, db: DbDep, tariff_id: int, body: BodyDep) -> am.TariffPublic:
    """Close a tariff version on valid_to (only ever earlier: any other change is a new version)."""
    require(principal, Kind.TARIFF, Action.WRITE)
    spec = parse(am.TariffUpdate, body)
    with answers(principal):
        row = crud.close_tariff(db, tariff_id, valid_to=spec.valid_to)
    db.commit()
    return tariff_public(row)


# -- cost pools -------------------------------------------------------------------------------------------------------


@router.get("/cost-pools", tags=["cost pools"])
def list_cost_pools(
    principal: PrincipalDep,
    db: DbDep,
    page: PageDep,
    machine: Filter = None,
    period: Filter = None,
) -> list[am.CostPoolPublic]:
    """List cost pools by period, machine and category."""
    require(principal, Kind.COST_POOL, Action.READ)
    return [pool_public(r) for r in crud.list_cost_pools(db, machine=machine, period=period, page=page)]


@router.post("/cost-pools", tags=["cost pools"], status_code=201, responses=WRITE)
def create_cost_pool(principal: PrincipalDep, db: DbDep, site: SiteDep, body: BodyDep) -> am.CostPoolPublic:
    """Create one machine's cost of one category for one month (409 if it exists: change its amount)."""
    require(principal, Kind.COST_POOL, Action.WRITE)
    spec = parse(am.CostPoolCreate, body)
    with answers(principal):
        row = crud.create_cost_pool(
            db,
            machine=spec.machine,
            period=spec.period,
            category=spec.category.value,
            amount=spec.amount,
            machines=machine_ids(site),
        )
    db.commit()
    return pool_public(row)


@router.get("/cost-pools/{pool_id}", tags=["cost pools"], responses=NOT_FOUND)
def get_cost_pool(principal: PrincipalDep, db: DbDep, pool_id: int) -> am.CostPoolPublic:
    """Return one cost pool."""
    require(principal, Kind.COST_POOL, Action.READ)
    with answers(principal):
        return pool_public(crud.get_cost_pool(db, pool_id))


@router.patch("/cost-pools/{pool_id}", tags=["cost pools"], responses=WRITE)
def update_cost_pool(principal: PrincipalDep, db: DbDep, pool_id: int, body: BodyDep) -> am.CostPoolPublic:
    """Change a cost pool's amount."""
    require(principal, Kind.COST_POOL, Action.WRITE)
    spec = parse(am.CostPoolUpdate, body)
    with answers(principal):
        row = crud.update_cost_pool(db, pool_id, amount=spec.amount)
    db.commit()
    return pool_public(row)


@router.delete("/cost-pools/{pool_id}", tags=["cost pools"], status_code=204, responses=WRITE)
def delete_cost_pool(principal: PrincipalDep, db: DbDep, pool_id: int) -> Response:
    """Delete a cost pool."""
    require(principal, Kind.COST_POOL, Action.WRITE)
    with answers(principal):
        crud.delete_cost_pool(db, pool_id)
    db.commit()
    return Response(status_code=204)


# -- billing settings -------------------------------------------------------------------------------------------------


@router.get("/billing-settings", tags=["billing settings"])
def get_billing_settings(principal: PrincipalDep, db: DbDep) -> am.BillingSettingsPublic:
    """Return the facility-wide billing settings."""
    require(principal, Kind.BILLING_SETTINGS, Action.READ)
    return settings_public(crud.get_settings(db))


@router.patch("/billing-settings", tags=["billing settings"], responses=WRITE)
def update_billing_settings(principal: PrincipalDep, db: DbDep, body: BodyDep) -> am.BillingSettingsPublic:
    """Change the billing settings given; the rest keep their value."""
    require(principal, Kind.BILLING_SETTINGS, Action.WRITE)
    spec = parse(am.BillingSettingsUpdate, body)
    settings = crud.update_settings(
        db, policy=spec.policy, facility_name=spec.facility_name, watermark_grace_min=spec.watermark_grace_min
    )
    db.commit()
    return settings_public(settings)
