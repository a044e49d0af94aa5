"""The business schema, as SQLAlchemy 2 ORM classes. Alembic migrations (api/db/migrations) create it; a test
checks that the newest migration and these classes agree.

Instants are epoch ms (BigInteger, UTC): SQLite has no time zones and ms is what the time-series side uses.
Calendar dates (badge validity, tariff validity) are in the site's time zone and turned into instants by the shell.
Money is BigInteger rupiah; tax rates are basis points. No Float column exists in this schema.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ID_LEN = 64  # shopfloor.contracts ids are at most this long


# Named constraints: later migrations can drop or alter them by name on every backend (SQLite's batch mode needs it).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the business schema."""

    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    """A business that uses the machines."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Badge(Base):
    """A badge number held by a tenant from valid_from (inclusive) to valid_to (exclusive, None: open-ended).

    Dates are ISO 'YYYY-MM-DD' in the site's zone; a badge moves to another tenant on a date by closing one row and
    opening another. Rows of one number never overlap (checked on write).
    """

    __tablename__ = "badges"
    __table_args__ = (
        UniqueConstraint("number", "valid_from"),  # the natural key an import updates by
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[int] = mapped_column(BigInteger, index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    valid_from: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    valid_to: Mapped[str | None] = mapped_column(String(10), nullable=True)


class ApiKey(Base):
    """An API key, stored as the SHA-256 of the key (shown once at creation); revocable."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'operator', 'auditor', 'tenant')", name="role"),
        CheckConstraint("(role = 'tenant') = (tenant_id IS NOT NULL)", name="tenant_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin, operator, auditor, tenant
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_used_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lang: Mapped[str | None] = mapped_column(String(2), nullable=True)  # the holder's language (en, id); None: default


class WebSession(Base):
    """A browser's sign-in with an API key (api.web.auth): id is the SHA-256 of the cookie value, never the value."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    lang: Mapped[str | None] = mapped_column(String(2), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger, index=True)  # the purge deletes by it
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)


class Booking(Base):
    """A tenant's reservation of a machine for [start_ms, end_ms); bookings of one machine never overlap."""

    __tablename__ = "bookings"
    __table_args__ = (
        # Unique: bookings of one machine never overlap, so none share a start; also the key an import updates by.
        Index("ix_bookings_machine_start", "machine", "start_ms", unique=True),
        CheckConstraint("end_ms > start_ms", name="span"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    machine: Mapped[str] = mapped_column(String(ID_LEN))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Tariff(Base):
    """One version of a tariff (api.core.billing.model.Tariff); rows are never changed once an invoice used them."""

    __tablename__ = "tariffs"
    __table_args__ = (
        UniqueConstraint("code", "version"),
        CheckConstraint("(machine IS NULL) <> (machine_class IS NULL)", name="target"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity"),
        CheckConstraint("tax_rate_bp >= 0 AND tax_rate_bp <= 10000", name="tax_rate"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(ID_LEN))
    version: Mapped[int] = mapped_column(Integer)
    machine: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    machine_class: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    valid_from: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, site zone
    valid_to: Mapped[str | None] = mapped_column(String(10), nullable=True)
    rate_per_hour: Mapped[int] = mapped_column(BigInteger)
    billable: Mapped[str] = mapped_column(String(200))  # comma-separated api.core.billing.model.Category values
    increment_min: Mapped[int] = mapped_column(Integer, default=1)
    minimum_min: Mapped[int] = mapped_column(Integer, default=0)
    grace_min: Mapped[int] = mapped_column(Integer, default=0)
    max_booked_actual: Mapped[bool] = mapped_column(Boolean, default=False)
    no_show_charge: Mapped[int] = mapped_column(BigInteger, default=0)
    energy_per_kwh: Mapped[int] = mapped_column(BigInteger, default=0)
    per_part: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_rate_bp: Mapped[int] = mapped_column(Integer, default=1100)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class CostPool(Base):
    """One machine's cost of one category for one period (YYYY-MM)."""

    __tablename__ = "cost_pools"
    __table_args__ = (
        UniqueConstraint("machine", "period", "category"),
        CheckConstraint("amount >= 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    machine: Mapped[str] = mapped_column(String(ID_LEN))
    period: Mapped[str] = mapped_column(String(7))
    category: Mapped[str] = mapped_column(String(32))  # api.core.billing.model.PoolCategory
    amount: Mapped[int] = mapped_column(BigInteger)


class Setting(Base):
    """Facility-wide billing settings: 'policy' (capacity | full_recovery), 'facility_name', 'watermark_grace_min'."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Invoice(Base):
    """An invoice or credit note of one tenant for one period: draft -> finalized -> void.

    A finalized document is frozen: `document` is its canonical JSON (lines, totals, and the inputs it was computed
    from), `hash` = SHA-256 over prev_hash and document, `prev_hash` the hash of the site's previous finalized
    document (the chain). Numbers run without gaps per site and year (sequence allocated at finalize).
    """

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("site", "year", "seq"),
        UniqueConstraint("site", "chain_seq"),
        Index("ix_invoices_tenant_period", "tenant_id", "period"),
        {"sqlite_autoincrement": True},  # ids are never reused: a deleted draft's id never names another invoice
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(ID_LEN))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    period: Mapped[str] = mapped_column(String(7))
    kind: Mapped[str] = mapped_column(String(16))  # invoice | credit_note
    status: Mapped[str] = mapped_column(String(16))  # draft | finalized | void
    year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    number: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    credit_for_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), nullable=True)
    subtotal: Mapped[int] = mapped_column(BigInteger, default=0)
    tax: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    document: Mapped[str] = mapped_column(Text)  # canonical JSON of what the tenant reads (its lines only)
    inputs: Mapped[str] = mapped_column(Text)  # canonical JSON of everything the period's charges came from
    chain_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)  # position in the site's hash chain
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    override: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it was finalized before the watermark
    void_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    finalized_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    voided_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", cascade="all, delete-orphan", order_by="InvoiceLine.position"
    )


class InvoiceCounter(Base):
    """The next invoice number of a site and year, and the site's chain head: locked while a document is finalized,
    so numbers never skip or repeat even when two admins finalize at once."""

    __tablename__ = "invoice_counters"

    site: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0: the site's chain row
    next_seq: Mapped[int] = mapped_column(Integer, default=1)
    head_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # year 0 only


class InvoiceLine(Base):
    """One charge line of an invoice (a copy of the document's, for queries)."""

    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    machine: Mapped[str] = mapped_column(String(ID_LEN))
    kind: Mapped[str] = mapped_column(String(32))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(16))
    unit_price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    tax_rate_bp: Mapped[int] = mapped_column(Integer)
    tax: Mapped[int] = mapped_column(BigInteger)
    tariff: Mapped[str | None] = mapped_column(String(80), nullable=True)
    record: Mapped[str | None] = mapped_column(String(200), nullable=True)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class UsageRecordRow(Base):
    """An immutable usage record (api.core.billing.model.UsageRecord) as a finalized invoice froze it."""

    __tablename__ = "usage_records"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(ID_LEN))
    machine: Mapped[str] = mapped_column(String(ID_LEN))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[str] = mapped_column(Text)  # canonical JSON of the record
