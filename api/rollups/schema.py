"""The roll-up tables (SQLAlchemy Core): the one place their layout lives.

Roll-ups are a cache of closed machine-hours (DESIGN.md, Analytics): every row here can be deleted and built again
from the time-series store. `rollup_hours` says which hours are built and from data as of when; an hour's pieces and
counter anomalies hang off it (deleting the hour deletes them: ON DELETE CASCADE). `rollup_state` keeps the build
job's progress (when it last read the late marks), so it survives restarts.

Tables are created at open (`create_all`): acceptable for a cache, whose cure for any schema change is to drop and
rebuild. The business data of issue 9 brings Alembic migrations; these tables then join its first revision.
"""

from __future__ import annotations

import sqlalchemy as sa

MAX_ID = 63  # shopfloor.contracts ids: [a-z0-9][a-z0-9-]{0,62}

metadata = sa.MetaData()

HOUR_KEY = ("site", "machine", "hour_ms")

hours = sa.Table(
    "rollup_hours",
    metadata,
    sa.Column("site", sa.String(MAX_ID), primary_key=True),
    sa.Column("machine", sa.String(MAX_ID), primary_key=True),
    sa.Column("hour_ms", sa.BigInteger, primary_key=True, autoincrement=False),
    # Wall-clock time the raw read for this hour began: data written after it may be missing (see job.py).
    sa.Column("built_at_ms", sa.BigInteger, nullable=False),
    # What else the hour was computed from (site file settings, code version): a mismatch makes it stale.
    sa.Column("fingerprint", sa.String(64), nullable=False, server_default=""),
    sa.Column("n_pieces", sa.Integer, nullable=False),
    sa.Column("n_anomalies", sa.Integer, nullable=False),
    sa.Index("ix_rollup_hours_fingerprint", "site", "machine", "fingerprint"),
)

# One row per api.core.pieces.Piece; seq keeps the pieces' order, so sums over them are bit-identical to raw.
pieces = sa.Table(
    "rollup_pieces",
    metadata,
    sa.Column("site", sa.String(MAX_ID), primary_key=True),
    sa.Column("machine", sa.String(MAX_ID), primary_key=True),
    sa.Column("hour_ms", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("badge", sa.BigInteger, nullable=False),
    sa.Column("job", sa.Text, nullable=True),
    sa.Column("stop_reason", sa.BigInteger, nullable=True),
    sa.Column("stop_ms", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.BigInteger, nullable=False),
    sa.Column("good", sa.BigInteger, nullable=False),
    sa.Column("reject", sa.BigInteger, nullable=False),
    sa.Column("kwh", sa.Double, nullable=False),  # 8-byte float on both backends: kWh round-trips exactly
    sa.Column("opens", sa.Integer, nullable=False),
    sa.ForeignKeyConstraint(HOUR_KEY, [f"rollup_hours.{c}" for c in HOUR_KEY], ondelete="CASCADE"),
)

anomalies = sa.Table(
    "rollup_anomalies",
    metadata,
    sa.Column("site", sa.String(MAX_ID), primary_key=True),
    sa.Column("machine", sa.String(MAX_ID), primary_key=True),
    sa.Column("hour_ms", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("signal", sa.String(MAX_ID), nullable=False),
    # Readings as text (repr of a float, digits of an int): both come back exactly and with their type.
    sa.Column("previous", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("elapsed_ms", sa.BigInteger, nullable=False),
    sa.Column("badge", sa.BigInteger, nullable=True),  # logged in just before the reading; NULL: UNKNOWN time
    sa.ForeignKeyConstraint(HOUR_KEY, [f"rollup_hours.{c}" for c in HOUR_KEY], ondelete="CASCADE"),
)

# The late marks the job has acted on, with when it first saw each (its own clock): read again, a mark unbuilds only
# what was built before that (api.rollups.plan.stale_before). Pruned once older than the marks the job reads.
late_marks = sa.Table(
    "rollup_late_marks",
    metadata,
    sa.Column("site", sa.String(MAX_ID), primary_key=True),
    sa.Column("machine", sa.String(MAX_ID), primary_key=True),
    sa.Column("hour_ms", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("received_ms", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seen_ms", sa.BigInteger, nullable=False),
)

state = sa.Table(
    "rollup_state",
    metadata,
    sa.Column("site", sa.String(MAX_ID), primary_key=True),
    sa.Column("key", sa.String(MAX_ID + 16), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
