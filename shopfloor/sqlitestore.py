"""The embedded time-series store: one SQLite file, InfluxDB's semantics (shopfloor.store), nothing to install.

The one module that imports sqlite3 for time series. `SqliteStore` implements `shopfloor.store.TimeSeriesStore`
and the collector's `LineStore` (it parses the line protocol `shopfloor.influx` renders).

Layout (InfluxDB's own, TSM: one sorted run of values per series and field):
- `series`  (id, measurement, site, key): key is the machine (the agent for agent statuses);
- `fields`  (id, sid, name, type): a field of one series and the type its first value gave it ("float",
  "integer", "string", "boolean"); a value of another type is refused, never coerced;
- `points`  (fid, ts, value) keyed (fid, ts), WITHOUT ROWID: writing a field again at the same time replaces its
  value and a new field joins, so a point written again merges into the stored one, later values win.
Reading a window is one range scan per field; the newest value of a field before a time is one index lookup
(baselines, heartbeats, latest), whatever the age of the data. Measured against one JSON document per point,
keyed (series, ts): a day of 1 s samples of one machine read in 88 ms against 184 ms, and the file is 30 % smaller.

Concurrency: a pool of connections, one per call in progress (WAL: readers never wait for the writer), writes of
this process one at a time, and SQLite's busy timeout between processes (`shopfloor collect` and `shopfloor api`
on one file). A read of several statements is one read transaction, so it sees one state of the file: an answer
is whole or an error.
Writes are committed with synchronous=FULL: the collector acknowledges what the store accepted, so a power cut
must not lose it.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS, SignalValue, is_reserved_signal, is_valid_id, is_valid_signal
from shopfloor.gcpause import GC_PAUSE
from shopfloor.store import (
    AGENT_STATUS,
    LATE_HOURS,
    MACHINE_STATUS,
    MAX_END_MS,
    SCHEMA,
    TELEMETRY,
    LateHour,
    Measurement,
    Point,
    RejectedLine,
    Row,
    Sample,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    check_id,
    check_marks,
    check_signals,
    check_ts,
    check_window,
)

if TYPE_CHECKING:
    from shopfloor.store import LineStore

log = logging.getLogger(__name__)

# PRAGMA application_id of a Shopfloor time-series file ("SFTS"): a SQLite file of anything else (the business DB,
# an agent's outbox) is refused rather than written into.
APPLICATION_ID = 0x53465453
SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE series (id INTEGER PRIMARY KEY, measurement TEXT NOT NULL, site TEXT NOT NULL, key TEXT NOT NULL,"
    " UNIQUE (measurement, site, key))",
    "CREATE TABLE fields (id INTEGER PRIMARY KEY, sid INTEGER NOT NULL REFERENCES series (id), name TEXT NOT NULL,"
    " type TEXT NOT NULL, UNIQUE (sid, name))",
    "CREATE TABLE points (fid INTEGER NOT NULL, ts INTEGER NOT NULL, value, PRIMARY KEY (fid, ts)) WITHOUT ROWID",
)

# Limits on one line: InfluxDB refuses string values over 64 KiB; nothing the collector writes comes near either.
MAX_LINE_BYTES = 1 << 20
MAX_STRING_BYTES = 65_535
MAX_FIELDS = 1_000
INT64 = (-(2**63), 2**63 - 1)

FLOAT, INTEGER, STRING, BOOLEAN = "float", "integer", "string", "boolean"
_TYPES = {float: FLOAT, int: INTEGER, str: STRING, bool: BOOLEAN}
MAX_IDLE = 8  # open connections kept for the next call
# Times in one SQL IN list: well below SQLite's default limit of 32766 variables.
_CHUNK = 500

# ---- line protocol --------------------------------------------------------------------------------------------

_KEY = r"(?:[^,=\s\\]|\\.)+"
_STRING = r'"(?:[^"\\]|\\.)*"'
_FIELD = rf'{_KEY}=(?:{_STRING}|[^,\s"\\]+)'
_LINE = re.compile(
    rf"((?:[^,\s\\]|\\.)+)((?:,{_KEY}={_KEY})*) ({_FIELD}(?:,{_FIELD})*) (-?[0-9]+)",
    re.DOTALL,
)
_TAG_RE = re.compile(rf",({_KEY})=({_KEY})", re.DOTALL)
_FIELD_RE = re.compile(rf'({_KEY})=({_STRING}|[^,\s"\\]+)', re.DOTALL)
_FLOAT_RE = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_INT_RE = re.compile(r"[-+]?[0-9]+i")
_BOOLS = {"t": True, "T": True, "true": True, "True": True, "TRUE": True}
_BOOLS.update({"f": False, "F": False, "false": False, "False": False, "FALSE": False})
_KEY_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_STRING_ESCAPE = re.compile(r'\\([\\"])')


class LineError(ValueError):
    """A line the store cannot take: the message says why."""


def _unescape_key(text: str) -> str:
    return _KEY_ESCAPE.sub(r"\1", text) if "\\" in text else text


def _field_value(name: str, text: str) -> SignalValue:
    """The value of one field as written in a line (InfluxDB's rules: "string", 5i, 5, 5.0, t/false ...)."""
    if text[0] == '"':
        body = text[1:-1]
        # InfluxDB unescapes \\ and \" in string values and keeps any other backslash as it is.
        value = _STRING_ESCAPE.sub(r"\1", body) if "\\" in body else body
        if len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES:
            raise LineError(f"field {name!r}: string value longer than {MAX_STRING_BYTES} bytes")
        return value
    last = text[-1]
    if last == "i":
        if not _INT_RE.fullmatch(text):
            raise LineError(f"field {name!r}: {text[:40]!r} is not an integer (digits then i)")
        number = int(text[:-1])
        if not INT64[0] <= number <= INT64[1]:
            raise LineError(f"field {name!r}: integer {text[:40]} is out of the 64-bit range")
        return number
    flag = _BOOLS.get(text)
    if flag is not None:
        return flag
    if not _FLOAT_RE.fullmatch(text):
        raise LineError(f"field {name!r}: {text[:40]!r} is not a value (a float, an integer with i, a bool, a string)")
    value_f = float(text)
    if not math.isfinite(value_f):
        raise LineError(f"field {name!r}: {text[:40]} is out of the float range")
    return value_f


ParsedLine = tuple[str, str, str, int, dict[str, SignalValue]]  # measurement, site, key, ts_ms, fields

# Series (measurement and tags) and field keys repeat from line to line: each distinct text is checked once
# (bounded; a dict's get and set are atomic, so threads may share them).
_MAX_CACHED = 10_000
_HEADS: dict[str, tuple[str, str, str, Measurement] | str] = {}
_NAMES: dict[tuple[str, str], str | LineError] = {}


def _head(measurement_text: str, tags_text: str) -> tuple[str, str, str, Measurement]:
    """(measurement, site, key, schema) of a line's measurement and tags text; raise LineError saying why not."""
    measurement = _unescape_key(measurement_text)
    schema = SCHEMA.get(measurement)
    if schema is None:
        raise LineError(f"measurement {measurement[:60]!r} is not in the schema (one of {', '.join(SCHEMA)})")
    tags: dict[str, str] = {}
    for key_text, value_text in _TAG_RE.findall(tags_text):
        key, tag = _unescape_key(key_text), _unescape_key(value_text)
        if key not in schema.tags:
            raise LineError(f"tag {key[:60]!r} is not a tag of {measurement} (its tags: {', '.join(schema.tags)})")
        if key in tags:
            raise LineError(f"tag {key!r} given twice")
        if not is_valid_id(tag):
            raise LineError(f"tag {key}={tag[:70]!r} is not a valid id")
        tags[key] = tag
    missing = [t for t in schema.tags if t not in tags]
    if missing:
        raise LineError(f"{measurement} needs the tag(s) {', '.join(missing)}")
    return measurement, tags["site"], tags[schema.key_tag], schema


def _name(schema: Measurement, key_text: str) -> str:
    """The field name of a field key's text in a line of schema's measurement; raise LineError saying why not."""
    name = _unescape_key(key_text)
    declared = schema.fields
    if declared is None:
        if not is_valid_signal(name) or is_reserved_signal(name):
            raise LineError(f"field {name[:60]!r} is not a signal name")
    elif name not in declared:
        raise LineError(f"field {name[:60]!r} is not a field of {schema.name} (its fields: {', '.join(declared)})")
    return name


def parse_line(line: str) -> ParsedLine:
    """Parse one line of line protocol (millisecond timestamps) against the schema; raise LineError saying why."""
    if len(line) > MAX_LINE_BYTES or len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        raise LineError(f"line longer than {MAX_LINE_BYTES} bytes")
    if "\n" in line or "\r" in line:
        raise LineError("line holds a line break (one point per line)")
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            raise LineError("line is not valid UTF-8 text (it holds a lone surrogate)") from None
    match = _LINE.fullmatch(line)
    if match is None:
        raise LineError(
            "not line protocol: expected 'measurement,tag=value,... field=value,... timestamp' (escaped keys, "
            "quoted strings, one space between the parts, a timestamp in ms)"
        )
    head_text = line[: match.end(2)]
    head = _HEADS.get(head_text)
    if head is None:
        try:
            head = _head(match.group(1), match.group(2))
        except LineError as exc:
            head = str(exc)
        if len(_HEADS) < _MAX_CACHED:
            _HEADS[head_text] = head
    if isinstance(head, str):
        raise LineError(head)
    measurement, site, key, schema = head
    declared = schema.fields
    fields: dict[str, SignalValue] = {}
    for key_text, value_text in _FIELD_RE.findall(match.group(3)):
        name = _NAMES.get((measurement, key_text))
        if name is None:
            try:
                name = _name(schema, key_text)
            except LineError as exc:
                name = exc
            if len(_NAMES) < _MAX_CACHED:
                _NAMES[(measurement, key_text)] = name
        if isinstance(name, LineError):
            raise LineError(str(name))
        if name in fields:
            raise LineError(f"field {name!r} given twice")
        value = _field_value(name, value_text)
        if declared is not None and type(value) is not declared[name]:
            raise LineError(
                f"field type conflict: {measurement} field {name!r} is {_TYPES[declared[name]]}, "
                f"this line has {_TYPES[type(value)]}"
            )
        fields[name] = value
    if len(fields) > MAX_FIELDS:
        raise LineError(f"{len(fields)} fields: more than {MAX_FIELDS} in one line")
    ts_ms = int(match.group(4))
    if not MIN_TS_MS <= ts_ms <= MAX_TS_MS:
        raise LineError(f"timestamp {match.group(4)[:30]} is outside {MIN_TS_MS}..{MAX_TS_MS} (epoch ms)")
    return measurement, site, key, ts_ms, fields


# ---- the store ------------------------------------------------------------------------------------------------


class SqliteStore:
    """A TimeSeriesStore (and the collector's LineStore) in one SQLite file, shared by threads and processes.

    path: the database file (created with its tables if missing; its directory must exist). timeout_s: how long a
    write waits for another process's write lock before StoreUnavailable. The file is opened on first use, so a
    store whose file cannot be opened is still constructed, and every call then raises StoreUnavailable.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 10.0) -> None:
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise ValueError(f"SQLite store: {str(path)!r} is not a file path")
        if not timeout_s > 0:
            raise ValueError(f"SQLite store {path}: timeout_s must be positive, got {timeout_s!r}")
        self.path = Path(path)
        self.url = str(self.path)  # where the store is, for log lines (InfluxStore's url)
        self.database = self.path.name
        self.timeout_s = float(timeout_s)
        self._idle: list[sqlite3.Connection] = []  # open connections no thread is using
        self._lock = threading.Lock()  # the idle connections and the caches
        self._write_lock = threading.Lock()  # this process's writes, one at a time
        self._checked = False  # the file's schema was checked (or created) by this store
        # Insert-only rows, so a cached id stays true: (measurement, site, key) -> series id; (sid, name) -> field.
        self._series: dict[tuple[str, str, str], int] = {}
        self._fields: dict[tuple[int, str], tuple[int, str]] = {}
        self._closed = False

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # ---- connections and errors -----------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        where = f"SQLite time-series store {str(self.path)!r}"
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            return StoreUnavailable(
                f"{where}: busy ({text}): another connection held the write lock longer than {self.timeout_s:g} s"
            )
        if "unable to open" in lowered:
            return StoreUnavailable(f"{where}: cannot open the file ({text}); check the path and its directory")
        if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
            return StoreRejected(f"{where}: {text}: not a SQLite database, or damaged; point the store at another file")
        if "readonly" in lowered:
            return StoreRejected(f"{where}: {text}; check the permissions of the file and its directory")
        if isinstance(exc, sqlite3.OperationalError):  # I/O errors, a full disk, ...: may pass
            return StoreUnavailable(f"{where}: {text}")
        return StoreRejected(f"{where}: {text}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _open(self) -> sqlite3.Connection:
        """A new connection, the file's schema checked (or created) on the first."""
        with self._errors():
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
                if not self._checked:
                    self._check_schema(conn)
                conn.execute("PRAGMA synchronous = FULL")
            except BaseException:
                conn.close()
                raise
        return conn

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """A connection for this thread's use until the block ends (an idle one, else a new one).

        Pooled rather than one per thread: the API fetches machines on short-lived threads, whose connections would
        otherwise pile up.
        """
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"SQLite time-series store {str(self.path)!r} is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            with self._lock:
                keep = not self._closed and len(self._idle) < MAX_IDLE and not conn.in_transaction
                if keep:
                    self._idle.append(conn)
            if not keep:
                with suppress(sqlite3.Error):
                    conn.close()

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """Create the tables in a new file; refuse a SQLite file that is not a Shopfloor time-series store."""
        [(app,)] = conn.execute("PRAGMA application_id").fetchall()
        if app == APPLICATION_ID:
            [(version,)] = conn.execute("PRAGMA user_version").fetchall()
            if version != SCHEMA_VERSION:
                raise StoreRejected(
                    f"SQLite time-series store {str(self.path)!r} has schema version {version}, this Shopfloor "
                    f"reads version {SCHEMA_VERSION}"
                )
        else:
            if app != 0 or conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreRejected(
                    f"SQLite time-series store {str(self.path)!r}: the file is another SQLite database (it has "
                    "tables of its own); give the time-series store a file of its own"
                )
            # journal_mode cannot change inside a transaction; WAL stays set in the file once set.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                [(app,)] = conn.execute("PRAGMA application_id").fetchall()
                if app != APPLICATION_ID:  # another process may have created it meanwhile
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        [(mode,)] = conn.execute("PRAGMA journal_mode").fetchall()
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        self._checked = True

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement in it sees the same state of the file."""
        with self._conn() as conn, self._errors():
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def ping(self) -> bool:
        """Return whether the file opens as a time-series store."""
        try:
            with self._read() as conn:
                conn.execute("SELECT 1 FROM series LIMIT 1").fetchall()
        except StoreError:
            return False
        return True

    def ensure_database(self) -> None:
        """Create the file's tables if missing; raise StoreRejected for a file that is not a time-series store."""
        with self._conn():
            pass

    def close(self) -> None:
        """Close the connections (one in use closes when its call ends); every later call is StoreUnavailable."""
        with self._lock:
            self._closed = True
            conns, self._idle = self._idle, []
        for conn in conns:
            with suppress(sqlite3.Error):  # closing what failed is best effort
                conn.close()

    # ---- writes ---------------------------------------------------------------------------------------------

    def write_lines(self, lines: Sequence[str]) -> list[RejectedLine]:
        """Write line-protocol lines (ms timestamps); return the lines refused for good, each with its reason.

        Every other line is written, in one transaction: all of them or, on StoreUnavailable (busy past the
        timeout, I/O), none. Empty lines and comments are skipped, as InfluxDB does.
        """
        rejected: list[RejectedLine] = []
        parsed: list[tuple[int, ParsedLine]] = []
        with GC_PAUSE.paused():
            self._parse(lines, parsed, rejected)
        if parsed:
            for i, reason in self._write_parsed(parsed):
                rejected.append(RejectedLine(i, lines[i], reason))
        rejected.sort(key=lambda r: r.index)
        return rejected

    @staticmethod
    def _parse(lines: Sequence[str], parsed: list[tuple[int, ParsedLine]], rejected: list[RejectedLine]) -> None:
        for i, line in enumerate(lines):
            if not isinstance(line, str):
                rejected.append(RejectedLine(i, str(line)[:200], f"not a line of text: {type(line).__name__}"))
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                parsed.append((i, parse_line(line)))
            except LineError as exc:
                rejected.append(RejectedLine(i, line, str(exc)))

    def _write_parsed(self, parsed: Sequence[tuple[int, ParsedLine]]) -> list[tuple[int, str]]:
        """Write parsed lines in one transaction; return (index, reason) of those refused for a field type conflict."""
        refused: list[tuple[int, str]] = []
        with self._write_lock, self._conn() as conn, self._errors():
            conn.execute("BEGIN IMMEDIATE")
            new_series: dict[tuple[str, str, str], int] = {}
            new_fields: dict[tuple[int, str], tuple[int, str]] = {}
            try:
                rows: list[tuple[int, int, SignalValue]] = []
                for i, (measurement, site, key, ts, fields) in parsed:
                    sid = self._series_id(conn, (measurement, site, key), new_series)
                    resolved: list[tuple[int, SignalValue]] = []
                    pending: dict[str, str] = {}
                    conflict = None
                    for name, value in fields.items():
                        kind = _TYPES[type(value)]
                        known = self._field(conn, sid, name, new_fields)
                        if known is None:
                            pending[name] = kind
                        elif known[1] != kind:
                            conflict = (
                                f"field type conflict: field {name!r} of {measurement} {site}/{key} is {known[1]}, "
                                f"this line has {kind}"
                            )
                            break
                        else:
                            resolved.append((known[0], value))
                    if conflict is not None:
                        refused.append((i, conflict))
                        continue
                    for name, kind in pending.items():
                        fid = conn.execute(
                            "INSERT INTO fields (sid, name, type) VALUES (?, ?, ?)", (sid, name, kind)
                        ).lastrowid
                        assert fid is not None
                        new_fields[(sid, name)] = (fid, kind)
                        resolved.append((fid, fields[name]))
                    rows.extend((fid, ts, value) for fid, value in resolved)
                conn.executemany("INSERT OR REPLACE INTO points (fid, ts, value) VALUES (?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        # Only ids the file now holds for good join the caches.
        with self._lock:
            self._series.update(new_series)
            self._fields.update(new_fields)
        return refused

    def _series_id(
        self, conn: sqlite3.Connection, series: tuple[str, str, str], new: dict[tuple[str, str, str], int]
    ) -> int:
        """The id of a series, created if missing (inside the write transaction)."""
        sid = self._series.get(series) or new.get(series)
        if sid is None:
            found = conn.execute(
                "SELECT id FROM series WHERE measurement = ? AND site = ? AND key = ?", series
            ).fetchone()
            if found is None:
                sid = conn.execute("INSERT INTO series (measurement, site, key) VALUES (?, ?, ?)", series).lastrowid
                assert sid is not None
            else:
                sid = int(found[0])
            new[series] = sid
        return sid

    def _field(
        self, conn: sqlite3.Connection, sid: int, name: str, new: dict[tuple[int, str], tuple[int, str]]
    ) -> tuple[int, str] | None:
        """(field id, type) of a series' field, None if the series never had it (inside the write transaction)."""
        key = (sid, name)
        known = self._fields.get(key) or new.get(key)
        if known is None:
            found = conn.execute("SELECT id, type FROM fields WHERE sid = ? AND name = ?", key).fetchone()
            if found is not None:
                known = new[key] = (int(found[0]), str(found[1]))
        return known

    def write(self, points: Iterable[Point]) -> None:
        """Write points (rendered and parsed as the collector's lines are); raise StoreRejected listing refused ones."""
        from shopfloor.influx import to_line  # one rendering for both stores: the same point, the same values

        rejected = self.write_lines([to_line(p) for p in points])
        if rejected:
            first = rejected[0]
            raise StoreRejected(
                f"store refused {len(rejected)} line(s), wrote the rest; first: line {first.index}: {first.reason}",
                rejected,
            )

    def mark_late_hours(self, site: str, marks: Mapping[str, Iterable[int]], received_ms: int) -> None:
        """Record that machine-hours (machine -> UTC hour starts) received data late, at received_ms.

        One point per machine-hour, at the hour start; marking it again overwrites received_ms (same point).
        """
        check_id("site", site)
        received = check_ts("received_ms", received_ms)
        points = [
            Point(LATE_HOURS, {"site": site, "machine": machine}, {"received_ms": received}, hour)
            for machine, hour in check_marks(marks)
        ]
        if points:
            self.write(points)

    # ---- reads ----------------------------------------------------------------------------------------------

    def _sid(self, conn: sqlite3.Connection, measurement: str, site: str, key: str) -> int | None:
        series = (measurement, site, key)
        sid = self._series.get(series)
        if sid is None:
            found = conn.execute(
                "SELECT id FROM series WHERE measurement = ? AND site = ? AND key = ?", series
            ).fetchone()
            if found is None:
                return None
            sid = int(found[0])
            with self._lock:
                self._series[series] = sid
        return sid

    @staticmethod
    def _series_fields(conn: sqlite3.Connection, sid: int | None) -> list[tuple[int, str, bool]]:
        """(field id, name, is boolean) of every field of a series, as the file holds them now."""
        if sid is None:
            return []
        return [
            (int(fid), str(name), kind == BOOLEAN)
            for fid, name, kind in conn.execute("SELECT id, name, type FROM fields WHERE sid = ? ORDER BY name", (sid,))
        ]

    @staticmethod
    def _window(
        conn: sqlite3.Connection, fields: Sequence[tuple[int, str, bool]], start: int, end: int
    ) -> list[Sample]:
        """The rows of a series with start <= ts < end, oldest first: one range scan per field, joined by time."""
        rows: dict[int, dict[str, SignalValue]] = {}
        get = rows.get
        for fid, name, boolean in fields:
            cursor = conn.execute(
                "SELECT ts, value FROM points WHERE fid = ? AND ts >= ? AND ts < ?", (fid, start, end)
            )
            for ts, value in cursor:
                if boolean:
                    value = bool(value)
                row = get(ts)
                if row is None:
                    rows[ts] = {name: value}
                else:
                    row[name] = value
        return sorted(rows.items()) if rows else []

    @staticmethod
    def _at(conn: sqlite3.Connection, fields: Sequence[tuple[int, str, bool]], times: Iterable[int]) -> list[Sample]:
        """The whole rows of a series at the given times, oldest first."""
        wanted = sorted(set(times))
        if not wanted:
            return []
        rows: dict[int, dict[str, SignalValue]] = {}
        for fid, name, boolean in fields:
            for k in range(0, len(wanted), _CHUNK):
                part = wanted[k : k + _CHUNK]
                marks = ",".join("?" * len(part))
                for ts, value in conn.execute(
                    f"SELECT ts, value FROM points WHERE fid = ? AND ts IN ({marks})", (fid, *part)
                ):
                    rows.setdefault(ts, {})[name] = bool(value) if boolean else value
        return sorted(rows.items())

    @staticmethod
    def _newest_before(conn: sqlite3.Connection, fid: int, before: int) -> tuple[int, SignalValue] | None:
        """(ts, value) of a field's newest value with ts < before."""
        found = conn.execute(
            "SELECT ts, value FROM points WHERE fid = ? AND ts < ? ORDER BY ts DESC LIMIT 1", (fid, before)
        ).fetchone()
        return (int(found[0]), found[1]) if found is not None else None

    def _rows_window(self, measurement: str, site: str, key: str, start: int, end: int) -> list[Sample]:
        # A month of samples is millions of acyclic dicts: the cyclic GC would walk them again and again for nothing.
        with GC_PAUSE.paused(), self._read() as conn:
            return self._window(conn, self._series_fields(conn, self._sid(conn, measurement, site, key)), start, end)

    def _row_before(self, measurement: str, site: str, key: str, before: int) -> Sample | None:
        """The newest whole row of a series with ts < before."""
        with self._read() as conn:
            fields = self._series_fields(conn, self._sid(conn, measurement, site, key))
            times = [found[0] for fid, _, _ in fields if (found := self._newest_before(conn, fid, before))]
            if not times:
                return None
            return self._at(conn, fields, [max(times)])[0]

    def samples(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Sample]:
        """Telemetry of one machine with start_ms <= ts < end_ms, oldest first, each with the fields it carried."""
        check_id("site", site)
        check_id("machine", machine)
        start, end = check_window(start_ms, end_ms)
        return self._rows_window(TELEMETRY, site, machine, start, end)

    def telemetry(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Telemetry rows of one machine with start_ms <= ts < end_ms, oldest first (samples() as rows)."""
        tags = {"site": site, "machine": machine}
        return [Row(ts, dict(tags), fields) for ts, fields in self.samples(site, machine, start_ms, end_ms)]

    def last_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> list[Sample]:
        """For each of signals, the newest sample before ts_ms holding it: whole samples, each once, oldest first."""
        check_id("site", site)
        check_id("machine", machine)
        before = check_ts("ts_ms", ts_ms, exclusive=True)
        names = set(check_signals(signals))
        if not names:
            return []
        with self._read() as conn:
            fields = self._series_fields(conn, self._sid(conn, TELEMETRY, site, machine))
            times = [
                found[0]
                for fid, name, _ in fields
                if name in names and (found := self._newest_before(conn, fid, before)) is not None
            ]
            return self._at(conn, fields, times)

    def values_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> dict[str, SignalValue]:
        """The last value of each of signals before ts_ms (signals never reported before are absent)."""
        check_id("site", site)
        check_id("machine", machine)
        before = check_ts("ts_ms", ts_ms, exclusive=True)
        names = set(check_signals(signals))
        if not names:
            return {}
        out: dict[str, SignalValue] = {}
        with self._read() as conn:
            for fid, name, boolean in self._series_fields(conn, self._sid(conn, TELEMETRY, site, machine)):
                if name in names and (found := self._newest_before(conn, fid, before)) is not None:
                    out[name] = bool(found[1]) if boolean else found[1]
        return out

    def statuses(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Machine statuses (online/unreachable) with start_ms <= ts < end_ms, oldest first."""
        tags = {"site": check_id("site", site), "machine": check_id("machine", machine)}
        start, end = check_window(start_ms, end_ms)
        return [Row(ts, dict(tags), f) for ts, f in self._rows_window(MACHINE_STATUS, site, machine, start, end)]

    def status_before(self, site: str, machine: str, ts_ms: int) -> Row | None:
        """The newest machine status before ts_ms, None if there is none."""
        tags = {"site": check_id("site", site), "machine": check_id("machine", machine)}
        found = self._row_before(MACHINE_STATUS, site, machine, check_ts("ts_ms", ts_ms, exclusive=True))
        return Row(found[0], tags, found[1]) if found is not None else None

    def agent_statuses(self, site: str, agent: str, start_ms: int, end_ms: int) -> list[Row]:
        """An agent's statuses (online/offline, last will) with start_ms <= ts < end_ms, oldest first."""
        tags = {"site": check_id("site", site), "agent": check_id("agent", agent)}
        start, end = check_window(start_ms, end_ms)
        return [Row(ts, dict(tags), f) for ts, f in self._rows_window(AGENT_STATUS, site, agent, start, end)]

    def agent_status_before(self, site: str, agent: str, ts_ms: int) -> Row | None:
        """The newest status of an agent before ts_ms, None if there is none."""
        tags = {"site": check_id("site", site), "agent": check_id("agent", agent)}
        found = self._row_before(AGENT_STATUS, site, agent, check_ts("ts_ms", ts_ms, exclusive=True))
        return Row(found[0], tags, found[1]) if found is not None else None

    def heartbeat_ms(self, site: str, machine: str, end_ms: int) -> int | None:
        """The last heartbeat_ms the agent reported in the machine's status at or before end_ms."""
        check_id("site", site)
        check_id("machine", machine)
        end = check_ts("end_ms", end_ms)
        with self._read() as conn:
            for fid, name, _ in self._series_fields(conn, self._sid(conn, MACHINE_STATUS, site, machine)):
                if name == "heartbeat_ms":
                    found = self._newest_before(conn, fid, end + 1)
                    if found is not None and type(found[1]) is int:
                        return found[1]
        return None

    def _latest(self, measurement: str, site: str) -> dict[str, Row]:
        """Per series of measurement on site: its newest time, with the last value of every field."""
        check_id("site", site)
        key_tag = SCHEMA[measurement].key_tag
        out: dict[str, Row] = {}
        with self._read() as conn:
            found = conn.execute(
                "SELECT s.key, f.name, f.type, (SELECT ts FROM points p WHERE p.fid = f.id ORDER BY ts DESC LIMIT 1),"
                " (SELECT value FROM points p WHERE p.fid = f.id ORDER BY ts DESC LIMIT 1)"
                " FROM series s JOIN fields f ON f.sid = s.id WHERE s.measurement = ? AND s.site = ?"
                " ORDER BY s.key, f.name",
                (measurement, site),
            ).fetchall()
        newest: dict[str, int] = {}
        values: dict[str, dict[str, SignalValue]] = {}
        for key, name, kind, ts, value in found:
            if ts is None:
                continue
            newest[key] = max(newest.get(key, ts), ts)
            values.setdefault(key, {})[name] = bool(value) if kind == BOOLEAN else value
        for key in sorted(newest):
            out[key] = Row(newest[key], {"site": site, key_tag: key}, values[key])
        return out

    def latest(self, site: str) -> dict[str, Row]:
        """Per machine of site: the time of its newest sample, with the last value of every field."""
        return self._latest(TELEMETRY, site)

    def latest_statuses(self, site: str) -> dict[str, Row]:
        """Per machine of site: its newest status, with the last value of every field (heartbeat_ms may be older)."""
        return self._latest(MACHINE_STATUS, site)

    def latest_agent_statuses(self, site: str) -> dict[str, Row]:
        """Per agent of site: its newest status."""
        return self._latest(AGENT_STATUS, site)

    def newest_ts(self, site: str) -> dict[str, int]:
        """Per machine of site: the time of its newest sample."""
        check_id("site", site)
        with self._read() as conn:
            found = conn.execute(
                "SELECT s.key, max((SELECT ts FROM points p WHERE p.fid = f.id ORDER BY ts DESC LIMIT 1))"
                " FROM series s JOIN fields f ON f.sid = s.id WHERE s.measurement = ? AND s.site = ?"
                " GROUP BY s.key ORDER BY s.key",
                (TELEMETRY, site),
            ).fetchall()
        return {str(key): int(ts) for key, ts in found if ts is not None}

    def late_hours(self, site: str, since_received_ms: int) -> list[LateHour]:
        """(machine, hour_ms, received_ms) of every machine-hour marked after since_received_ms, oldest hour first."""
        check_id("site", site)
        if type(since_received_ms) is not int or not 0 <= since_received_ms <= MAX_END_MS:
            raise ValueError(
                f"since_received_ms must be epoch ms as an int in 0..{MAX_END_MS}, got {since_received_ms!r}"
            )
        with self._read() as conn:
            found = conn.execute(
                "SELECT s.key, p.ts, p.value FROM series s JOIN fields f ON f.sid = s.id JOIN points p ON p.fid = f.id"
                " WHERE s.measurement = ? AND s.site = ? AND f.name = 'received_ms' AND p.value > ?",
                (LATE_HOURS, site, since_received_ms),
            ).fetchall()
        return sorted(
            ((str(m), int(h), int(r)) for m, h, r in found if type(r) is int and r > since_received_ms),
            key=lambda mark: (mark[1], mark[0]),
        )


if TYPE_CHECKING:

    def _implements_the_interface(store: SqliteStore) -> LineStore:
        return store  # mypy fails here if SqliteStore stops matching the interface the collector needs
