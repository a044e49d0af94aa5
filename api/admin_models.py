"""Request and response models of the admin endpoints: a Create, an Update and a Public model per object.

Create and Update models are strict and forbid unknown fields, so a body that tries to set what its sender may not
(a tenant's booking naming a `tenant_id`, a price, a role) is refused with a 422 naming the field, never silently
ignored. Money is int rupiah (floats, bools and numeric strings are refused), ids follow shopfloor.contracts,
calendar dates are 'YYYY-MM-DD' (site zone), instants are ISO 8601 with an explicit offset (naive times refused).
Public models never carry a key's hash; KeyCreated carries the clear key, once.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from api.core.billing.model import NEVER_BILLABLE, Category, Policy, PoolCategory
from api.policy import Role
from shopfloor.contracts import ID_PATTERN, MAX_TS_MS, MIN_TS_MS

MAX_MONEY = 10**15  # rupiah: far above any machine's cost, far below 2**63
MAX_TAX_BP = 10_000
MAX_MINUTES = 100_000
MAX_BADGE = 2**31 - 1  # the badge register is a 32-bit signed int (shopfloor.config.Tenant)
MAX_ROW_ID = 2**31 - 1  # Integer primary keys
MAX_BOOKING = timedelta(days=31)  # one booking cannot hold a machine away from the other tenants for longer
MIN_DATE, MAX_DATE = date(1970, 1, 1), date(2099, 12, 31)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_PERIOD_RE = re.compile(r"\d{4}-\d{2}", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _plain_text(value: str) -> str:
    # Control characters break logs and CSV exports; lone surrogates cannot be stored (PostgreSQL refuses them).
    bad = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"must not contain control characters or lone surrogates (found U+{ord(bad):04X})")
    return value


def _date(value: str) -> str:
    if not _DATE_RE.fullmatch(value):
        raise ValueError("expected a date YYYY-MM-DD, e.g. 2026-11-01")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"not a calendar date ({exc})") from None
    if not MIN_DATE <= day <= MAX_DATE:
        raise ValueError(f"must be between {MIN_DATE} and {MAX_DATE}")
    return value


def _period(value: str) -> str:
    if not _PERIOD_RE.fullmatch(value) or not 1 <= int(value[5:]) <= 12:
        raise ValueError("expected a month YYYY-MM, e.g. 2026-11")
    if not 2000 <= int(value[:4]) <= 2099:
        raise ValueError("must be between 2000-01 and 2099-12")
    return value


def _instant(value: datetime) -> datetime:
    ms = to_ms(value)
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise ValueError("must be between 2000-01-01 and 2100-01-01")
    return value


def to_ms(when: datetime) -> int:
    """Return an aware datetime as epoch ms (sub-millisecond digits dropped)."""
    return (when - _EPOCH) // timedelta(milliseconds=1)


def utc(ms: int) -> datetime:
    """Return epoch ms as an aware UTC datetime."""
    return _EPOCH + timedelta(milliseconds=ms)


Id = Annotated[StrictStr, Field(pattern=rf"^{ID_PATTERN}$", max_length=63)]  # Rust regex: $ is the very end
Name = Annotated[StrictStr, Field(max_length=200), AfterValidator(_plain_text)]
KeyName = Annotated[StrictStr, Field(min_length=1, max_length=100), AfterValidator(_plain_text)]
Day = Annotated[StrictStr, Field(max_length=10), AfterValidator(_date)]
Period = Annotated[StrictStr, Field(max_length=7), AfterValidator(_period)]
Instant = Annotated[AwareDatetime, AfterValidator(_instant)]
Money = Annotated[StrictInt, Field(ge=0, le=MAX_MONEY)]
TaxBp = Annotated[StrictInt, Field(ge=0, le=MAX_TAX_BP)]
Minutes = Annotated[StrictInt, Field(ge=0, le=MAX_MINUTES)]
BadgeNumber = Annotated[StrictInt, Field(ge=1, le=MAX_BADGE)]
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class _In(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


def _not_null(value: Any, info: ValidationInfo) -> Any:
    # Field validators run only on values the body gave: a null here was sent, not defaulted.
    if value is None:
        raise ValueError("must not be null (leave it out to keep it)")
    return value


def _after_from(value: str | None, info: ValidationInfo) -> str | None:
    valid_from = info.data.get("valid_from")
    if value is not None and isinstance(valid_from, str) and value <= valid_from:
        raise ValueError(f"must be after valid_from ({valid_from}): validity is [valid_from, valid_to)")
    return value


def check_span(start: datetime, end: datetime) -> str | None:
    """Return what is wrong with a booking [start, end), None if nothing."""
    if end <= start:
        return "must be after start: a booking is [start, end)"
    if end - start > MAX_BOOKING:
        return f"a booking is at most {MAX_BOOKING.days} days long"
    return None


def _after_start(value: datetime | None, info: ValidationInfo) -> datetime | None:
    start = info.data.get("start")
    if value is not None and isinstance(start, datetime):
        problem = check_span(start, value)
        if problem is not None:
            raise ValueError(problem)
    return value


# -- tenants ----------------------------------------------------------------------------------------------------------


class TenantCreate(_In):
    """A new tenant."""

    id: Id
    name: Name = ""


class TenantUpdate(_In):
    """A tenant's changeable fields (its id never changes: figures and invoices refer to it)."""

    name: Name


class TenantPublic(_Out):
    """A tenant."""

    id: str
    name: str
    created: datetime


# -- badges -----------------------------------------------------------------------------------------------------------


class BadgeCreate(_In):
    """A badge number held by a tenant over [valid_from, valid_to) (valid_to null: open-ended)."""

    number: BadgeNumber
    tenant_id: Id
    valid_from: Day
    valid_to: Day | None = None

    _valid_to = field_validator("valid_to")(_after_from)


class BadgeUpdate(_In):
    """A badge's validity (a badge moves to another tenant by closing this row and creating another)."""

    valid_from: Day | None = None
    valid_to: Day | None = None  # explicit null: open-ended

    _valid_from = field_validator("valid_from")(_not_null)
    _valid_to = field_validator("valid_to")(_after_from)


class BadgePublic(_Out):
    """A badge number and its holder over [valid_from, valid_to)."""

    id: int
    number: int
    tenant_id: str
    valid_from: str
    valid_to: str | None


# -- API keys ---------------------------------------------------------------------------------------------------------


class KeyCreate(_In):
    """A new API key: tenant keys name their tenant, other roles must not."""

    name: KeyName
    role: Role
    tenant_id: Id | None = Field(default=None, validate_default=True)

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str | None, info: ValidationInfo) -> str | None:
        role = info.data.get("role")
        if role is Role.TENANT and value is None:
            raise ValueError("a tenant key needs its tenant's id")
        if role is not None and role is not Role.TENANT and value is not None:
            raise ValueError(f"a {role} key must not name a tenant")
        return value


class KeyPublic(_Out):
    """An API key as anyone may see it: never its hash, never the key."""

    id: int
    name: str
    role: Role
    tenant_id: str | None
    created: datetime
    revoked: datetime | None
    last_used: datetime | None


class KeyCreated(KeyPublic):
    """A key just created: the clear key, shown this once (only its hash is stored)."""

    key: str


# -- bookings ---------------------------------------------------------------------------------------------------------


class TenantBookingCreate(_In):
    """A booking a tenant makes for itself (its tenant is the caller's: the body cannot name one)."""

    machine: Id
    start: Instant
    end: Instant

    _end = field_validator("end")(_after_start)


class AdminBookingCreate(TenantBookingCreate):
    """A booking the admin makes for any tenant."""

    tenant_id: Id


class TenantBookingUpdate(_In):
    """A tenant's change to its own booking: another machine or time (fields left out stay)."""

    machine: Id | None = None
    start: Instant | None = None
    end: Instant | None = None

    _nulls = field_validator("machine", "start")(_not_null)

    @field_validator("end")
    @classmethod
    def _end(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return _after_start(_not_null(value, info), info)


class AdminBookingUpdate(TenantBookingUpdate):
    """The admin's change to a booking: also moving it to another tenant."""

    tenant_id: Id | None = None

    _tenant = field_validator("tenant_id")(_not_null)


class BookingPublic(_Out):
    """A reservation of a machine for [start, end)."""

    id: int
    machine: str
    tenant_id: str
    start: datetime
    end: datetime
    created: datetime


# -- tariffs ----------------------------------------------------------------------------------------------------------

DEFAULT_BILLABLE = (Category.RUNNING, Category.SETUP, Category.IDLE, Category.STOPPED)


class TariffCreate(_In):
    """A tariff version for one machine or one machine class (a device profile); POST makes version max + 1."""

    code: Id
    machine: Id | None = None
    machine_class: Id | None = Field(default=None, validate_default=True)
    valid_from: Day
    valid_to: Day | None = None
    rate_per_hour: Money
    billable: list[Category] = Field(default=list(DEFAULT_BILLABLE), min_length=1, max_length=len(Category))
    increment_min: Annotated[StrictInt, Field(ge=1, le=MAX_MINUTES)] = 1
    minimum_min: Minutes = 0
    grace_min: Minutes = 0
    max_booked_actual: StrictBool = False
    no_show_charge: Money = 0
    energy_per_kwh: Money = 0
    per_part: Money = 0
    tax_rate_bp: TaxBp = 1100

    _valid_to = field_validator("valid_to")(_after_from)

    @field_validator("machine_class")
    @classmethod
    def _one_target(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "machine" not in info.data:
            return value  # machine itself was refused: that error says enough
        if (info.data["machine"] is None) == (value is None):
            raise ValueError("give exactly one of machine and machine_class")
        return value

    @field_validator("billable")
    @classmethod
    def _billable(cls, value: list[Category]) -> list[Category]:
        never = sorted(c.value for c in set(value) & NEVER_BILLABLE)
        if never:
            raise ValueError(f"{', '.join(never)} time is never billed to a tenant")
        if len(set(value)) != len(value):
            raise ValueError("lists a category twice")
        return value


class TariffUpdate(_In):
    """Closing a tariff version: the only change a version ever takes (any other is a new version)."""

    valid_to: Day


class TariffPublic(_Out):
    """One version of a tariff."""

    id: int
    code: str
    version: int
    ref: str = Field(description="code@version, as invoices name it")
    machine: str | None
    machine_class: str | None
    valid_from: str
    valid_to: str | None
    rate_per_hour: int
    billable: list[Category]
    increment_min: int
    minimum_min: int
    grace_min: int
    max_booked_actual: bool
    no_show_charge: int
    energy_per_kwh: int
    per_part: int
    tax_rate_bp: int
    created: datetime


# -- cost pools -------------------------------------------------------------------------------------------------------


class CostPoolCreate(_In):
    """One machine's cost of one category for one month."""

    machine: Id
    period: Period
    category: PoolCategory
    amount: Money


class CostPoolUpdate(_In):
    """A cost pool's amount (machine, period and category are what it is)."""

    amount: Money


class CostPoolPublic(_Out):
    """One machine's cost of one category for one month, rupiah."""

    id: int
    machine: str
    period: str
    category: PoolCategory
    amount: int


# -- billing settings -------------------------------------------------------------------------------------------------


class BillingSettingsUpdate(_In):
    """Facility-wide billing settings; fields left out keep their value."""

    policy: Policy | None = None
    facility_name: Name | None = None
    watermark_grace_min: Minutes | None = None

    _nulls = field_validator("policy", "facility_name", "watermark_grace_min")(_not_null)


class BillingSettingsPublic(_Out):
    """Facility-wide billing settings."""

    policy: Policy
    facility_name: str
    watermark_grace_min: int
