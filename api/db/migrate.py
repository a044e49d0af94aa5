"""Migrate the business schema with Alembic, configured in code (no alembic.ini at run time).

The migration scripts live in api/db/migrations and ship with the package. Alembic records the revision in its
alembic_version table; the roll-up cache's tables in the same database are not Alembic's and are never touched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import exc, text
from sqlalchemy.engine import Connection, Engine

from api.db.engine import DbError, display_url, one_line, open_engine, writer
from api.db.models import Base

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
# Two `shopfloor db upgrade` at once on PostgreSQL: the second waits for the first, then finds nothing to do.
# (SQLite: the migration runs in one BEGIN IMMEDIATE transaction, which does the same.)
_PG_LOCK_KEY = 0x5F0B_DB01
# Alembic logs each plugin it sets up and each step at INFO; `shopfloor db upgrade` prints what it did instead.
logging.getLogger("alembic").setLevel(logging.WARNING)


def include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    """Whether Alembic looks at this schema object: only tables of the business metadata (and their parts)."""
    if type_ == "table":
        return name in Base.metadata.tables
    return True


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["connection"] = connection
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision of the business schema."""
    found = _scripts().get_current_head()
    if found is None:  # pragma: no cover - the package ships its revisions
        raise DbError(f"no business migrations found in {MIGRATIONS}")
    return found


def revisions() -> set[str]:
    """Every revision this version of shopfloor knows."""
    return {script.revision for script in _scripts().walk_revisions()}


def revision_of(conn: Connection) -> str | None:
    """The revision the database of conn is at (None: never migrated)."""
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def current(url: str) -> str | None:
    """The revision of the business database at url (None: never migrated)."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return revision_of(conn)
    except exc.SQLAlchemyError as error:
        shown = display_url(engine)
        raise DbError(f"business database {shown}: cannot read its revision ({one_line(error)})") from error
    finally:
        engine.dispose()


def upgrade_engine(engine: Engine, revision: str = "head") -> str | None:
    """Migrate engine's database to revision in one transaction; return the revision it is at afterwards."""
    return _run(engine, "upgrade", revision)


def downgrade_engine(engine: Engine, revision: str) -> str | None:
    """Migrate engine's database down to revision ("base": empty) in one transaction; return where it is now."""
    return _run(engine, "downgrade", revision)


def upgrade(url: str, revision: str = "head") -> str | None:
    """Migrate the business database at url to revision (default: the newest); return the revision it is at."""
    engine = open_engine(url)
    try:
        return upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def _run(engine: Engine, direction: Literal["upgrade", "downgrade"], revision: str) -> str | None:
    shown = display_url(engine)
    try:
        with writer(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            cfg = _config(conn)
            if direction == "upgrade":
                command.upgrade(cfg, revision)
            else:
                command.downgrade(cfg, revision)
            return revision_of(conn)
    except CommandError as error:
        raise DbError(f"business database {shown}: cannot {direction} to {revision!r} ({one_line(error)})") from error
    except exc.SQLAlchemyError as error:
        raise DbError(f"business database {shown}: {direction} failed, nothing changed ({one_line(error)})") from error
