"""Open the business database (SQLite or PostgreSQL) and say, in one line, why not when it cannot be opened.

SQLite connections turn foreign keys on, run in WAL mode (readers never wait for a writer) with a busy timeout, and
sessions made by `sessions(engine)` take the write lock when their transaction begins (BEGIN IMMEDIATE), so two
writers queue instead of one failing half-way when it upgrades its read lock. Same shape as api/rollups/store.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another's transaction before giving up
BACKENDS = ("sqlite", "postgresql")


class DbError(Exception):
    """The business database could not be opened or used; the message is one line saying which and why."""


class BadUrl(DbError):
    """The database URL cannot work: not a URL, an unsupported backend, a missing folder or driver (a config error,
    where a plain DbError is a database that cannot be reached or used)."""


class Conflict(DbError):
    """A write clashes with what is stored (an overlap, a duplicate name); the message names the clash."""


class NotFound(DbError):
    """The object asked for does not exist; the message names it."""


class NotMigrated(DbError):
    """The business database is not at the newest schema revision; the message says how to migrate it."""


def one_line(error: BaseException) -> str:
    """The first line of an error (the driver's own message when SQLAlchemy wraps one)."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def normalize_url(url: str) -> sa.URL:
    """Parse a database URL, choosing the installed PostgreSQL driver (psycopg 3) for bare postgresql:// URLs."""
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise BadUrl(f"business database URL {url!r} is not a database URL ({one_line(error)})") from error
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver installed with shopfloor
    return parsed


def display_url(engine_or_url: Engine | sa.URL) -> str:
    """The URL as shown in messages: password hidden."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else engine_or_url
    return url.render_as_string(hide_password=True)


def open_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for the business database at url and check that it answers; raise DbError if not."""
    parsed = normalize_url(url)
    shown = display_url(parsed)
    try:
        backend = parsed.get_backend_name()
    except exc.ArgumentError as error:  # pragma: no cover - make_url accepts only names it can split
        raise BadUrl(f"business database {shown}: {one_line(error)}") from error
    if backend not in BACKENDS:
        raise BadUrl(f"business database {shown}: only sqlite and postgresql are supported, not {backend!r}")
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise BadUrl(f"business database {shown}: directory {str(folder)!r} does not exist; create it first")
    try:
        if backend == "sqlite":
            engine = sa.create_engine(
                parsed, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
            )
            _sqlite_events(engine)
        else:
            engine = sa.create_engine(parsed, echo=echo, pool_pre_ping=True)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
        raise BadUrl(f"business database {shown}: {one_line(error)}") from error
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except exc.SQLAlchemyError as error:
        engine.dispose()
        raise DbError(f"business database {shown}: cannot connect ({one_line(error)})") from error
    return engine


def writer(engine: Engine) -> Engine:
    """The engine whose transactions take SQLite's write lock when they begin (same pool; no-op on PostgreSQL)."""
    return engine.execution_options(immediate=True)


def sessions(engine: Engine, *, write: bool = True) -> sessionmaker[Session]:
    """A session factory over engine; write sessions begin with SQLite's write lock (BEGIN IMMEDIATE).

    expire_on_commit is off so rows read in a session stay readable after it commits (the API returns them).
    """
    bind = writer(engine) if write else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


def check_current(engine: Engine) -> None:
    """Raise NotMigrated unless the business schema of engine's database is at the newest migration."""
    from api.db import migrate  # migrate imports this module

    try:
        with engine.connect() as conn:
            found = migrate.revision_of(conn)
    except exc.SQLAlchemyError as error:
        shown = display_url(engine)
        raise DbError(f"business database {shown}: cannot read its revision ({one_line(error)})") from error
    needed = migrate.head()
    if found == needed:
        return
    shown = display_url(engine)
    fix = f"run `shopfloor db upgrade --db-url {shown}`"
    if found is not None and found not in migrate.revisions():
        raise NotMigrated(
            f"business database {shown} is at revision {found}, which this version of shopfloor does not know "
            f"(needs {needed}): it was migrated by a newer version; run that version"
        )
    raise NotMigrated(f"business database {shown} is not migrated (revision {found or 'none'}, needs {needed}): {fix}")


def _sqlite_events(engine: Engine) -> None:
    """Foreign keys on, WAL, and write transactions that take the lock when they begin."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling is switched off, so that BEGIN below is the one that counts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")  # money: a commit survives a power cut
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")
