"""Alembic environment of the business schema, run only through api.db.migrate (which passes the connection).

Only the business tables (api.db.models) are Alembic's: the roll-up cache shares the database and creates its own
tables, so every table not in the business metadata is left out of autogenerate and comparisons.
"""

from __future__ import annotations

from alembic import context

from api.db.migrate import include_name
from api.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run business migrations through api.db.migrate (`shopfloor db upgrade`), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    include_name=include_name,
    render_as_batch=True,  # later ALTERs on SQLite go through batch mode (copy and swap the table)
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
