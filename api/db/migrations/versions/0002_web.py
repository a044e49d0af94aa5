"""Web sign-in: the web_sessions table and each API key's language.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08

Written out in full (no import of api.db.models), like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add api_keys.lang and create web_sessions."""
    # Batch mode: SQLite adds a nullable column in place; the same code drops it again by copying the table.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("lang", sa.String(length=2), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("lang", sa.String(length=2), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_web_sessions_key_id_api_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_key_id"), "web_sessions", ["key_id"], unique=False)
    op.create_index(op.f("ix_web_sessions_expires_ms"), "web_sessions", ["expires_ms"], unique=False)


def downgrade() -> None:
    """Drop web_sessions and api_keys.lang (every browser session ends; keys forget their language)."""
    op.drop_index(op.f("ix_web_sessions_expires_ms"), table_name="web_sessions")
    op.drop_index(op.f("ix_web_sessions_key_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("lang")
