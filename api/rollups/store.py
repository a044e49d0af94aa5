"""RollupStore: closed machine-hours (api.core.pieces.HourSummary) kept in a SQL database, SQLite or PostgreSQL.

An hour is written whole or not at all: save() replaces each hour it is given in one transaction (its row upserted
first, which locks it, then its pieces and anomalies replaced), so two builders saving the same hour at once leave
one of their copies, never a mix. Deleting an hour deletes its pieces (ON DELETE CASCADE; SQLite connections turn
foreign keys on). SQLite runs in WAL mode (readers never wait for the builder) and takes its write lock at the start
of each write transaction (BEGIN IMMEDIATE), so concurrent writers queue instead of failing half-way.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from api.core.counters import Anomaly
from api.core.pieces import HOUR_MS, HourSummary, Piece
from api.rollups import schema
from api.rollups.schema import anomalies, hours, late_marks, pieces, state
from shopfloor.gcpause import GC_PAUSE

log = logging.getLogger(__name__)

DB_FILE = "shopfloor.db"
SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another's transaction before giving up
RETRIES = 5  # transient failures (deadlock, lock timeout) retried this many times, jittered
_UNKNOWN = "UNKNOWN"
_T = TypeVar("_T")

# Piece fields in declaration order: the columns load() selects, so a row is a Piece's arguments as they stand.
_PIECE_FIELDS = (
    "machine",
    "at_ms",
    "state",
    "reason",
    "badge",
    "job",
    "stop_reason",
    "stop_ms",
    "duration_ms",
    "good",
    "reject",
    "kwh",
    "opens",
)


def _piece_maker() -> Callable[..., Piece]:
    """A constructor taking Piece's fields in order that builds an equal Piece in half the time.

    A frozen dataclass sets each field through object.__setattr__: 100,000 Pieces took 0.35 s here against 0.20 s
    setting the slots directly, the largest part of a month's load. Used only while Piece has no __post_init__ (that
    would be skipped) and its fields are the columns; tests/integration/test_rollups.py compares the two.
    """
    names = [f.name for f in dataclasses.fields(Piece)]
    if names != list(_PIECE_FIELDS) or hasattr(Piece, "__post_init__") or not hasattr(Piece, "__slots__"):
        return Piece
    new = object.__new__
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12 = (getattr(Piece, name).__set__ for name in names)

    def make(
        machine: str,
        at_ms: int,
        state: str,
        reason: str | None,
        badge: int,
        job: str | None,
        stop_reason: int | None,
        stop_ms: int,
        duration_ms: int,
        good: int,
        reject: int,
        kwh: float,
        opens: int,
    ) -> Piece:
        piece: Piece = new(Piece)
        s0(piece, machine)
        s1(piece, at_ms)
        s2(piece, state)
        s3(piece, reason)
        s4(piece, badge)
        s5(piece, job)
        s6(piece, stop_reason)
        s7(piece, stop_ms)
        s8(piece, duration_ms)
        s9(piece, good)
        s10(piece, reject)
        s11(piece, kwh)
        s12(piece, opens)
        return piece

    return make


class RollupError(Exception):
    """The roll-up database could not be opened or used; the message is one line saying which and why."""


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the hours table holds for one machine: first and last built hour, and how many hours are built."""

    first_ms: int
    last_ms: int
    hours: int

    @property
    def contiguous(self) -> bool:
        """Whether every hour from first to last is built."""
        return self.hours == (self.last_ms - self.first_ms) // HOUR_MS + 1


def default_url(data_dir: Path) -> str:
    """The default roll-up database: a SQLite file in the data directory."""
    return f"sqlite:///{data_dir / DB_FILE}"


_new_piece = _piece_maker()




def _one_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _number_text(value: float) -> str:
    # Counter readings may be ints or floats; as text both come back exactly, with their type (an int above 2**53
    # would not survive a float column).
    if not (type(value) is int or (type(value) is float and math.isfinite(value))):
        raise ValueError(f"anomaly reading {value!r} is not a finite number")
    return repr(value) if isinstance(value, float) else str(value)


def _text_number(text: str) -> float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


_INT64 = (-(2**63), 2**63 - 1)
_STATE_LENGTH = 16


def _int64(what: str, value: object, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if type(value) is not int or not _INT64[0] <= value <= _INT64[1]:
        raise ValueError(f"{what} {value!r} is not a 64-bit integer")
    return value


def _text(what: str, value: object, max_length: int | None = None, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    # PostgreSQL text cannot hold NUL: refused here on every backend alike.
    if not isinstance(value, str) or "\x00" in value or (max_length is not None and len(value) > max_length):
        limit = f", at most {max_length} characters" if max_length is not None else ""
        raise ValueError(f"{what} {value!r} is not a text without NUL{limit}")
    return value


def _piece_row(where: str, p: Piece) -> dict[str, Any]:
    """The columns of one piece, each checked to fit its column on both backends (a ValueError names the field)."""
    kwh = p.kwh
    if not ((type(kwh) is float and math.isfinite(kwh)) or (type(kwh) is int and abs(kwh) <= 2**53)):
        raise ValueError(f"{where}: kwh {kwh!r} is not a finite number")
    return {
        "machine": p.machine,
        "at_ms": p.at_ms,
        "state": _text(f"{where}: state", p.state, _STATE_LENGTH),
        "reason": _text(f"{where}: reason", p.reason, nullable=True),
        "badge": _int64(f"{where}: badge", p.badge),
        "job": _text(f"{where}: job", p.job, nullable=True),
        "stop_reason": _int64(f"{where}: stop_reason", p.stop_reason, nullable=True),
        "stop_ms": _int64(f"{where}: stop_ms", p.stop_ms),
        "duration_ms": _int64(f"{where}: duration_ms", p.duration_ms),
        "good": _int64(f"{where}: good", p.good),
        "reject": _int64(f"{where}: reject", p.reject),
        "kwh": p.kwh,
        "opens": _int64(f"{where}: opens", p.opens),
    }


def _check_id(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > schema.MAX_ID:
        raise ValueError(f"{what} {value!r} is not a valid id (1..{schema.MAX_ID} characters)")
    return value


def _check_hour(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be epoch ms as an int, got {value!r}")
    if value % HOUR_MS:
        raise ValueError(f"{what} {value} is not the start of a UTC hour")
    return value


class RollupStore:
    """Roll-ups of one or more sites in a SQL database at url (sqlite:///file or postgresql://...)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            parsed = sa.make_url(url)
        except exc.ArgumentError as error:
            raise RollupError(f"roll-up database URL {url!r} is not a database URL ({_one_line(error)})") from error
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")  # the driver installed with shopfloor
        self.url = parsed.render_as_string(hide_password=True)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise RollupError(f"roll-up database {self.url}: only sqlite and postgresql are supported")
        if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            folder = Path(parsed.database).parent
            if not folder.is_dir():
                raise RollupError(f"roll-up database {self.url}: directory {str(folder)!r} does not exist")
        try:
            if backend == "sqlite":
                self.engine = sa.create_engine(
                    parsed, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
                )
                _sqlite_events(self.engine)
            else:
                self.engine = sa.create_engine(parsed, echo=echo, pool_pre_ping=True)
        except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
            raise RollupError(f"roll-up database {self.url}: {_one_line(error)}") from error
        self.backend = backend
        self._writer = self.engine.execution_options(immediate=True)
        try:
            schema.metadata.create_all(self._writer)
        except exc.SQLAlchemyError as error:
            self.engine.dispose()
            raise RollupError(f"roll-up database {self.url}: cannot open ({_one_line(error)})") from error

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> RollupStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- transactions ----------------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except exc.SQLAlchemyError as error:
            raise RollupError(f"roll-up database {self.url}: {_one_line(error)}") from error

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A read transaction whose statements all see one snapshot (SQLite WAL: always; PostgreSQL: asked for)."""
        try:
            with self.engine.connect() as conn:
                if self.backend == "postgresql":
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except exc.SQLAlchemyError as error:
            raise RollupError(f"roll-up database {self.url}: {_one_line(error)}") from error

    def _write(self, work: Callable[[Connection], _T]) -> _T:
        """Run work in one write transaction, retrying transient failures (deadlock, lock timeout)."""
        for attempt in range(RETRIES + 1):
            try:
                with self._writer.begin() as conn:
                    return work(conn)
            except exc.OperationalError as error:
                if attempt == RETRIES:
                    raise RollupError(f"roll-up database {self.url}: {_one_line(error)}") from error
                log.debug("roll-up write failed transiently (%s); retrying", _one_line(error))
                time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
            except exc.SQLAlchemyError as error:
                raise RollupError(f"roll-up database {self.url}: {_one_line(error)}") from error
        raise AssertionError("unreachable")

    def _upsert(self, table: sa.Table, keys: Sequence[str], updates: Sequence[str]) -> Any:
        dialect = postgresql if self.backend == "postgresql" else sqlite
        stmt = dialect.insert(table)
        return stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in updates})

    # ---- writes ----------------------------------------------------------------------------------------------

    def save(
        self,
        site: str,
        summaries: Iterable[HourSummary],
        built_at_ms: int,
        fingerprints: Mapping[str, str] | None = None,
    ) -> int:
        """Store each summary as its machine-hour, replacing what was there, all in one transaction; return how many.

        built_at_ms: when the raw read these summaries come from began (data written later may be missing from
        them). fingerprints: per machine, what else they were computed from (see job.fingerprint).
        """
        _check_id("site", site)
        fps = fingerprints or {}
        hour_rows: list[dict[str, Any]] = []
        piece_rows: list[dict[str, Any]] = []
        anomaly_rows: list[dict[str, Any]] = []
        seen: set[tuple[str, int]] = set()
        # One order for every writer: two saves of overlapping hours lock them in the same order, never deadlock.
        for s in sorted(summaries, key=lambda s: (s.machine, s.hour_ms)):
            machine = _check_id("machine", s.machine)
            hour = _check_hour(f"hour of machine {machine!r}", s.hour_ms)
            if (machine, hour) in seen:
                raise ValueError(f"machine {machine!r} hour {hour} is given twice")
            seen.add((machine, hour))
            key = {"site": site, "machine": machine, "hour_ms": hour}
            hour_rows.append(
                {
                    **key,
                    "built_at_ms": int(built_at_ms),
                    "fingerprint": fps.get(machine, ""),
                    "n_pieces": len(s.pieces),
                    "n_anomalies": len(s.anomalies),
                }
            )
            for seq, p in enumerate(s.pieces):
                where = f"piece {seq} of machine {machine!r} hour {hour}"
                if p.machine != machine or not isinstance(p.at_ms, int) or not hour <= p.at_ms < hour + HOUR_MS:
                    raise ValueError(f"{where} belongs to machine {p.machine!r} at {p.at_ms!r}, not to this hour")
                piece_rows.append({**_piece_row(where, p), **key, "seq": seq})
            for seq, a in enumerate(s.anomalies):
                where = f"anomaly {seq} of machine {machine!r} hour {hour}"
                anomaly_rows.append(
                    {
                        **key,
                        "seq": seq,
                        "ts_ms": _int64(f"{where}: ts_ms", a.ts_ms),
                        "signal": _text(f"{where}: signal", a.signal, schema.MAX_ID),
                        "previous": _number_text(a.previous),
                        "value": _number_text(a.value),
                        "elapsed_ms": _int64(f"{where}: elapsed_ms", a.elapsed_ms),
                        "badge": None if a.badge is None else _int64(f"{where}: badge", a.badge),
                    }
                )
        if not hour_rows:
            return 0
        keys = [{"k_site": r["site"], "k_machine": r["machine"], "k_hour": r["hour_ms"]} for r in hour_rows]

        def work(conn: Connection) -> int:
            # Upserting the hour rows first locks them (PostgreSQL): a concurrent save of the same hours waits here.
            upsert = self._upsert(hours, schema.HOUR_KEY, ("built_at_ms", "fingerprint", "n_pieces", "n_anomalies"))
            conn.execute(upsert, hour_rows)
            for table in (pieces, anomalies):
                conn.execute(
                    sa.delete(table).where(
                        table.c.site == sa.bindparam("k_site"),
                        table.c.machine == sa.bindparam("k_machine"),
                        table.c.hour_ms == sa.bindparam("k_hour"),
                    ),
                    keys,
                )
            if piece_rows:
                conn.execute(sa.insert(pieces), piece_rows)
            if anomaly_rows:
                conn.execute(sa.insert(anomalies), anomaly_rows)
            return len(hour_rows)

        return self._write(work)

    def invalidate(self, site: str, keys: Iterable[tuple[str, int]]) -> int:
        """Delete the roll-ups of these (machine, hour_ms); return how many were stored."""
        by_machine: dict[str, set[int]] = {}
        for machine, hour in keys:
            by_machine.setdefault(_check_id("machine", machine), set()).add(_check_hour("hour", hour))
        if not by_machine:
            return 0

        def work(conn: Connection) -> int:
            n = 0
            for machine, hour_set in sorted(by_machine.items()):
                ordered = sorted(hour_set)
                for i in range(0, len(ordered), 500):  # bound the IN list
                    n += conn.execute(
                        sa.delete(hours).where(
                            hours.c.site == site, hours.c.machine == machine, hours.c.hour_ms.in_(ordered[i : i + 500])
                        )
                    ).rowcount
            return n

        return self._write(work)

    def invalidate_built_before(self, site: str, spans: Iterable[tuple[str, int, int, int]]) -> int:
        """For each (machine, first_hour, last_hour, before_ms): delete those hours built before before_ms.

        Hours built after it already hold what arrived before it, and stay.
        """
        items = [(_check_id("machine", m), int(lo), int(hi), int(before)) for m, lo, hi, before in spans]
        if not items:
            return 0

        def work(conn: Connection) -> int:
            n = 0
            for machine, lo, hi, before in sorted(items):
                n += conn.execute(
                    sa.delete(hours).where(
                        hours.c.site == site,
                        hours.c.machine == machine,
                        hours.c.hour_ms >= lo,
                        hours.c.hour_ms <= hi,
                        hours.c.built_at_ms < before,
                    )
                ).rowcount
            return n

        return self._write(work)

    def delete(
        self,
        site: str,
        machines: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> int:
        """Delete roll-ups of site (only these machines, only hours starting in [start_ms, end_ms)); return how many."""
        _check_id("site", site)
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ValueError(f"delete: end {end_ms} is before start {start_ms}")
        cond = self._where(site, machines, start_ms, end_ms)

        def work(conn: Connection) -> int:
            return int(conn.execute(sa.delete(hours).where(*cond)).rowcount)

        return self._write(work)

    def drop_stale(self, site: str, fingerprints: Mapping[str, str]) -> int:
        """Delete the hours of these machines computed with another fingerprint than theirs (machine -> fingerprint):
        the site file or the code changed. Return how many."""

        def work(conn: Connection) -> int:
            n = 0
            for machine, fingerprint in sorted(fingerprints.items()):
                n += conn.execute(
                    sa.delete(hours).where(
                        hours.c.site == site,
                        hours.c.machine == machine,
                        # Two index ranges (ix_rollup_hours_fingerprint) rather than a scan of the machine's hours.
                        sa.or_(hours.c.fingerprint < fingerprint, hours.c.fingerprint > fingerprint),
                    )
                ).rowcount
            return n

        return self._write(work) if fingerprints else 0

    def seen_marks(
        self, site: str, marks: Sequence[tuple[str, int, int]], seen_ms: int, prune_before_ms: int
    ) -> dict[tuple[str, int, int], int]:
        """When each late mark (machine, hour, received) was first seen: now (seen_ms) if never; forget marks
        received before prune_before_ms."""
        wanted = set(marks)

        def work(conn: Connection) -> dict[tuple[str, int, int], int]:
            conn.execute(
                sa.delete(late_marks).where(late_marks.c.site == site, late_marks.c.received_ms < prune_before_ms)
            )
            if not wanted:
                return {}
            rows = [
                {"site": site, "machine": m, "hour_ms": h, "received_ms": r, "seen_ms": seen_ms}
                for m, h, r in sorted(wanted)
            ]
            dialect = postgresql if self.backend == "postgresql" else sqlite
            conn.execute(dialect.insert(late_marks).on_conflict_do_nothing(), rows)  # a concurrent job's sighting stays
            low = min(r for _, _, r in wanted)
            found = conn.execute(
                sa.select(
                    late_marks.c.machine, late_marks.c.hour_ms, late_marks.c.received_ms, late_marks.c.seen_ms
                ).where(late_marks.c.site == site, late_marks.c.received_ms >= low)
            )
            return {(m, h, r): int(seen) for m, h, r, seen in found if (m, h, r) in wanted}

        return self._write(work)

    def set_state(self, site: str, key: str, value: str) -> None:
        """Remember a value of the build job for site."""

        def work(conn: Connection) -> None:
            conn.execute(self._upsert(state, ("site", "key"), ("value",)), [{"site": site, "key": key, "value": value}])

        self._write(work)

    # ---- reads -----------------------------------------------------------------------------------------------

    @staticmethod
    def _where(
        site: str, machines: Sequence[str] | None, start_ms: int | None, end_ms: int | None
    ) -> list[sa.ColumnElement[bool]]:
        cond: list[sa.ColumnElement[bool]] = [hours.c.site == site]
        if machines is not None:
            cond.append(hours.c.machine.in_(list(machines)))
        if start_ms is not None:
            cond.append(hours.c.hour_ms >= int(start_ms))
        if end_ms is not None:
            cond.append(hours.c.hour_ms < int(end_ms))
        return cond

    def load(
        self, site: str, machines: Sequence[str], start_hour_ms: int, end_hour_ms: int
    ) -> dict[tuple[str, int], HourSummary]:
        """The stored hours of machines that start in [start_hour_ms, end_hour_ms), by (machine, hour_ms).

        Two queries in one snapshot (the hours, then all their pieces in the same order, as plain DBAPI rows sliced
        by each hour's piece count), a third only if some hour has anomalies: no ORM objects, no per-hour queries.
        """
        if end_hour_ms < start_hour_ms:
            raise ValueError(f"load: end {end_hour_ms} is before start {start_hour_ms}")
        wanted = list(dict.fromkeys(machines))
        if not wanted or end_hour_ms == start_hour_ms:
            return {}
        h, p, a = hours, pieces, anomalies
        span = (start_hour_ms, end_hour_ms)
        hour_stmt = (
            sa.select(h.c.machine, h.c.hour_ms, h.c.n_pieces, h.c.n_anomalies)
            .where(*self._where(site, wanted, *span))
            .order_by(h.c.machine, h.c.hour_ms)
        )
        piece_stmt = (
            sa.select(*(p.c[name] for name in _PIECE_FIELDS))
            .where(p.c.site == site, p.c.machine.in_(wanted), p.c.hour_ms >= span[0], p.c.hour_ms < span[1])
            .order_by(p.c.machine, p.c.hour_ms, p.c.seq)
        )
        found: dict[tuple[str, int], list[Anomaly]] = {}
        with GC_PAUSE.paused(), self._snapshot() as conn:
            # .cursor: the driver's own rows. Every column type here comes back from both drivers as the Python
            # value itself (no result processing to skip), and building a Row per piece would double the time.
            hour_rows = conn.execute(hour_stmt).cursor.fetchall()
            piece_rows = conn.execute(piece_stmt).cursor.fetchall()
            if any(row[3] for row in hour_rows):
                anomaly_stmt = (
                    sa.select(
                        a.c.machine,
                        a.c.hour_ms,
                        a.c.ts_ms,
                        a.c.signal,
                        a.c.previous,
                        a.c.value,
                        a.c.elapsed_ms,
                        a.c.badge,
                    )
                    .where(a.c.site == site, a.c.machine.in_(wanted), a.c.hour_ms >= span[0], a.c.hour_ms < span[1])
                    .order_by(a.c.machine, a.c.hour_ms, a.c.seq)
                )
                rows = conn.execute(anomaly_stmt).cursor.fetchall()
                for machine, hour, ts, signal, previous, value, elapsed, badge in rows:
                    anomaly = Anomaly(ts, signal, _text_number(previous), _text_number(value), elapsed, badge)
                    found.setdefault((machine, hour), []).append(anomaly)
        if sum(row[2] for row in hour_rows) != len(piece_rows):
            raise RollupError(f"roll-up database {self.url}: hours and pieces of site {site!r} disagree; delete them")
        out: dict[tuple[str, int], HourSummary] = {}
        with GC_PAUSE.paused():
            made = list(itertools.starmap(_new_piece, piece_rows))
            i = 0
            for machine, hour, n, _ in hour_rows:
                key = (machine, hour)
                out[key] = HourSummary(machine, hour, tuple(made[i : i + n]), tuple(found.get(key, ())))
                i += n
        return out

    def built_hours(
        self, site: str, machines: Sequence[str] | None = None, start_ms: int | None = None, end_ms: int | None = None
    ) -> dict[str, list[int]]:
        """The built hours per machine (only these machines, hours starting in [start_ms, end_ms)), oldest first."""
        out: dict[str, list[int]] = {}
        stmt = (
            sa.select(hours.c.machine, hours.c.hour_ms)
            .where(*self._where(site, machines, start_ms, end_ms))
            .order_by(hours.c.machine, hours.c.hour_ms)
        )
        with self._read() as conn:
            for machine, hour in conn.execute(stmt):
                out.setdefault(machine, []).append(hour)
        return out

    def coverage(self, site: str, machines: Sequence[str] | None = None) -> dict[str, Coverage]:
        """Per machine with built hours: its first and last built hour and how many are built."""
        stmt = (
            sa.select(hours.c.machine, sa.func.min(hours.c.hour_ms), sa.func.max(hours.c.hour_ms), sa.func.count())
            .where(*self._where(site, machines, None, None))
            .group_by(hours.c.machine)
        )
        with self._read() as conn:
            return {m: Coverage(int(lo), int(hi), int(n)) for m, lo, hi, n in conn.execute(stmt)}

    def oldest_build(self, site: str) -> int | None:
        """When the oldest-built hour of site was built (None: nothing built)."""
        with self._read() as conn:
            value = conn.execute(sa.select(sa.func.min(hours.c.built_at_ms)).where(hours.c.site == site)).scalar()
        return None if value is None else int(value)

    def next_busy_hour(self, site: str, machine: str, after_hour_ms: int) -> int | None:
        """The first built hour after after_hour_ms with known time, counted parts or energy, or anomalies."""
        p, h = pieces, hours
        busy = (
            sa.select(p.c.hour_ms)
            .where(
                p.c.site == site,
                p.c.machine == machine,
                p.c.hour_ms > after_hour_ms,
                sa.or_(p.c.state != _UNKNOWN, p.c.good != 0, p.c.reject != 0, p.c.kwh != 0),
            )
            .order_by(p.c.hour_ms)
            .limit(1)
        )
        flagged = (
            sa.select(h.c.hour_ms)
            .where(h.c.site == site, h.c.machine == machine, h.c.hour_ms > after_hour_ms, h.c.n_anomalies > 0)
            .order_by(h.c.hour_ms)
            .limit(1)
        )
        with self._read() as conn:
            found = [conn.execute(busy).scalar(), conn.execute(flagged).scalar()]
        values = [int(v) for v in found if v is not None]
        return min(values) if values else None

    def get_state(self, site: str, key: str) -> str | None:
        """A value the build job remembered for site, None if never set."""
        with self._read() as conn:
            value = conn.execute(sa.select(state.c.value).where(state.c.site == site, state.c.key == key)).scalar()
        return None if value is None else str(value)


def _sqlite_events(engine: Engine) -> None:
    """Foreign keys on, WAL, and write transactions that take the lock when they begin."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling is switched off, so that BEGIN below is the one that counts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # a cache: a power cut may lose the last build, never corrupt
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")
