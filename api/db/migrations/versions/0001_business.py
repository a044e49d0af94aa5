"""The business schema: tenants, badges, API keys, bookings, tariffs, cost pools, settings, invoices.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Written out in full (no import of api.db.models), so the revision stays what it was when models.py changes; a test
compares the migrated schema with models.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the business tables."""
    op.create_table(
        "cost_pools",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_cost_pools_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_pools")),
        sa.UniqueConstraint("machine", "period", "category", name=op.f("uq_cost_pools_machine_period_category")),
    )
    op.create_table(
        "invoice_counters",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("site", "year", name=op.f("pk_invoice_counters")),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_settings")),
    )
    op.create_table(
        "tariffs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=True),
        sa.Column("machine_class", sa.String(length=64), nullable=True),
        sa.Column("valid_from", sa.String(length=10), nullable=False),
        sa.Column("valid_to", sa.String(length=10), nullable=True),
        sa.Column("rate_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("billable", sa.String(length=200), nullable=False),
        sa.Column("increment_min", sa.Integer(), nullable=False),
        sa.Column("minimum_min", sa.Integer(), nullable=False),
        sa.Column("grace_min", sa.Integer(), nullable=False),
        sa.Column("max_booked_actual", sa.Boolean(), nullable=False),
        sa.Column("no_show_charge", sa.BigInteger(), nullable=False),
        sa.Column("energy_per_kwh", sa.BigInteger(), nullable=False),
        sa.Column("per_part", sa.BigInteger(), nullable=False),
        sa.Column("tax_rate_bp", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("(machine IS NULL) <> (machine_class IS NULL)", name=op.f("ck_tariffs_target")),
        sa.CheckConstraint("tax_rate_bp >= 0 AND tax_rate_bp <= 10000", name=op.f("ck_tariffs_tax_rate")),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name=op.f("ck_tariffs_validity")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tariffs")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_tariffs_code_version")),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_used_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("(role = 'tenant') = (tenant_id IS NOT NULL)", name=op.f("ck_api_keys_tenant_key")),
        sa.CheckConstraint("role IN ('admin', 'operator', 'auditor', 'tenant')", name=op.f("ck_api_keys_role")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
        sa.UniqueConstraint("sha256", name=op.f("uq_api_keys_sha256")),
    )
    op.create_table(
        "badges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.String(length=10), nullable=False),
        sa.Column("valid_to", sa.String(length=10), nullable=True),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name=op.f("ck_badges_validity")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_badges_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badges")),
        sa.UniqueConstraint("number", "valid_from", name=op.f("uq_badges_number_valid_from")),
    )
    op.create_index(op.f("ix_badges_number"), "badges", ["number"], unique=False)
    op.create_index(op.f("ix_badges_tenant_id"), "badges", ["tenant_id"], unique=False)

    op.create_table(
        "bookings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("end_ms > start_ms", name=op.f("ck_bookings_span")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_bookings_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bookings")),
    )
    op.create_index("ix_bookings_machine_start", "bookings", ["machine", "start_ms"], unique=True)
    op.create_index(op.f("ix_bookings_tenant_id"), "bookings", ["tenant_id"], unique=False)

    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("credit_for_id", sa.Integer(), nullable=True),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("chain_seq", sa.Integer(), nullable=True),
        sa.Column("hash", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("override", sa.Text(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("finalized_ms", sa.BigInteger(), nullable=True),
        sa.Column("voided_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["credit_for_id"], ["invoices.id"], name=op.f("fk_invoices_credit_for_id_invoices")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_invoices_tenant_id_tenants"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("site", "chain_seq", name=op.f("uq_invoices_site_chain_seq")),
        sa.UniqueConstraint("site", "year", "seq", name=op.f("uq_invoices_site_year_seq")),
        sqlite_autoincrement=True,  # an id is never reused, so a deleted draft's id never names another invoice
    )
    op.create_index("ix_invoices_tenant_period", "invoices", ["tenant_id", "period"], unique=False)

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_rate_bp", sa.Integer(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("tariff", sa.String(length=80), nullable=True),
        sa.Column("record", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
    )
    op.create_index(op.f("ix_invoice_lines_invoice_id"), "invoice_lines", ["invoice_id"], unique=False)

    op.create_table(
        "usage_records",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_usage_records_invoice_id_invoices"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    op.create_index(op.f("ix_usage_records_invoice_id"), "usage_records", ["invoice_id"], unique=False)


def downgrade() -> None:
    """Drop the business tables."""
    op.drop_index(op.f("ix_usage_records_invoice_id"), table_name="usage_records")

    op.drop_table("usage_records")
    op.drop_index(op.f("ix_invoice_lines_invoice_id"), table_name="invoice_lines")

    op.drop_table("invoice_lines")
    op.drop_index("ix_invoices_tenant_period", table_name="invoices")

    op.drop_table("invoices")
    op.drop_index(op.f("ix_bookings_tenant_id"), table_name="bookings")
    op.drop_index("ix_bookings_machine_start", table_name="bookings")

    op.drop_table("bookings")
    op.drop_index(op.f("ix_badges_tenant_id"), table_name="badges")
    op.drop_index(op.f("ix_badges_number"), table_name="badges")

    op.drop_table("badges")
    op.drop_table("api_keys")
    op.drop_table("tenants")
    op.drop_table("tariffs")
    op.drop_table("settings")
    op.drop_table("invoice_counters")
    op.drop_table("cost_pools")
