"""The one module that speaks HTTP to the time-series store: line protocol to /write, InfluxQL on /query.

InfluxDB 1.x serves both natively, 2.x through its v1 compatibility API and 3.x natively.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from shopfloor.contracts import CANONICAL_SIGNALS, SignalKind, SignalValue

# httpx logs every request at INFO: one line per batch written would drown the collector's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)

TELEMETRY = "telemetry"
MACHINE_STATUS = "machine_status"
AGENT_STATUS = "agent_status"  # tags site and agent; stamped when the collector received it


class StoreError(Exception):
    """Base class for store failures."""


class StoreUnavailable(StoreError):
    """The store could not be reached or failed temporarily: retry later, keep the data.

    retry_after_s is the wait the store asked for (a Retry-After header), None if it did not say.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """One line the store refused for good: its index in the batch written, the line and the store's reason."""

    index: int
    line: str
    reason: str


class StoreRejected(StoreError):
    """The store refused the data itself (bad points, type conflict): retrying will not help.

    When raised by a write, rejected lists the refused lines; every other line of the batch was written.
    """

    def __init__(self, message: str, rejected: Sequence[RejectedLine] = ()) -> None:
        super().__init__(message)
        self.rejected = tuple(rejected)


@dataclass(frozen=True, slots=True)
class Point:
    """One point: measurement, tags, fields and a timestamp in epoch ms."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, SignalValue]
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Row:
    """One row read back from the store: timestamp, tags and non-null fields."""

    ts_ms: int
    tags: dict[str, str]
    fields: dict[str, SignalValue] = field(default_factory=dict)


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


# Keys and tag values are signal names and ids: few distinct strings, escaped once each (bounded, thread-safe).
_KEYS: dict[str, str] = {}
_MAX_KEYS = 10_000
_FLOAT_SIGNALS = frozenset(name for name, kind in CANONICAL_SIGNALS.items() if kind is SignalKind.FLOAT)


def _key(text: str) -> str:
    escaped = _KEYS.get(text)
    if escaped is None:
        escaped = _escape_key(text)
        if len(_KEYS) < _MAX_KEYS:
            _KEYS[text] = escaped
    return escaped


def _field_value(name: str, value: SignalValue) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    # Field types are fixed per shard in InfluxDB: canonical signals always get the same type.
    if isinstance(value, int) and name not in _FLOAT_SIGNALS:
        return f"{value}i"
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"field {name!r}: {value!r} cannot be stored")
    return repr(number)


def line_prefix(measurement: str, tags: dict[str, str]) -> str:
    """The measurement and tags part of a line, shared by every point of one series."""
    return _escape_measurement(measurement) + "".join(f",{_key(k)}={_key(v)}" for k, v in sorted(tags.items()) if v)


def render_line(prefix: str, fields: dict[str, SignalValue], ts_ms: int) -> str:
    """Render one line from a line_prefix, fields and a timestamp in epoch ms."""
    if not fields:
        raise ValueError("a point needs at least one field")
    return f"{prefix} {','.join([f'{_key(k)}={_field_value(k, fields[k])}' for k in sorted(fields)])} {ts_ms}"


def to_line(point: Point) -> str:
    """Render one point as InfluxDB line protocol with millisecond precision."""
    return render_line(line_prefix(point.measurement, point.tags), point.fields, point.ts_ms)


def quote_literal(value: str) -> str:
    """Quote a string literal for InfluxQL."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(value: str) -> str:
    """Quote an identifier for InfluxQL."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TAG_COLUMNS = ("site", "machine")


def _decode_series(series: dict[str, Any]) -> Iterator[tuple[int, dict[str, SignalValue], list[Any]]]:
    """Yield (ts_ms, non-null fields, raw values) per row of one query series."""
    columns: list[str] = series["columns"]
    # Column roles are worked out once per series: the row loop runs for every sample of long windows.
    time_index = columns.index("time")
    field_cols = [(i, c) for i, c in enumerate(columns) if i != time_index and c not in _TAG_COLUMNS]
    # JSON drops the ".0" of whole floats; restore the canonical type.
    float_cols = [c for _, c in field_cols if CANONICAL_SIGNALS.get(c) is SignalKind.FLOAT]
    for values in series.get("values", []):
        fields: dict[str, SignalValue] = {c: values[i] for i, c in field_cols if values[i] is not None}
        for c in float_cols:
            val = fields.get(c)
            if isinstance(val, int) and not isinstance(val, bool):
                fields[c] = float(val)
        yield int(values[time_index]), fields, values


def _runs(indexes: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Group sorted indexes into [start, end) runs of consecutive numbers."""
    start = prev = -2
    for i in indexes:
        if i != prev + 1:
            if prev >= 0:
                yield start, prev + 1
            start = i
        prev = i
    if prev >= 0:
        yield start, prev + 1


def _unprefix(series: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The series with prefix taken off its column names (last(*) names its columns last_<field>)."""
    columns = [c.removeprefix(prefix) for c in series["columns"]]
    return {**series, "columns": columns}


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means the zone was left off
        return None
    return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s))


def _error_text(body: str) -> str:
    """The store's error message: the "error" (1.x, 3.x) or "message" (2.x) of a JSON body, else the body."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(doc, dict):
        for key in ("error", "message"):
            if isinstance(doc.get(key), str):
                return str(doc[key]).strip()
    return body.strip()[:300]


# A 400 that is about the request, not about any line: bisecting the batch could not help.
_REQUEST_ERRORS = ("database is required", "database name required", "invalid precision", "bucket not found")


def named_lines(body: str, lines: Sequence[str]) -> dict[int, str]:
    """Indexes of the lines a refusal names, with the reason for each.

    InfluxDB 3.x lists them ({"data": [{"line_number": 1-based, "error_message": ...}]}); 1.x and 2.x quote an
    unparsable line (`unable to parse 'LINE': why`). A field type conflict names no line: nothing comes back.
    """
    out: dict[int, str] = {}
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, list):
        for entry in data:
            if not isinstance(entry, dict):
                continue
            number = entry.get("line_number")
            if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= len(lines):
                out[number - 1] = str(entry.get("error_message") or "refused by the store")[:300]
        return out
    text = _error_text(body)
    if "unable to parse '" in text:
        # The line is quoted as is (quotes inside it unescaped), so look for each line rather than parse the text.
        for i, line in enumerate(lines):
            if f"unable to parse '{line}'" in text:
                out[i] = text[:300]
    return out


class InfluxStore:
    """Write points to and query rows from an InfluxDB-compatible /write + /query endpoint.

    Auth: username/password (1.x, 2.x v1 compatibility) or token (2.x, 3.x: `Authorization: Token ...`), not both.
    retention_policy goes to /write as `rp=` (the database's default policy when None).
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        retention_policy: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if token and username:
            raise ValueError(f"InfluxDB {url}: give a username/password or a token, not both")
        if password and not username:
            raise ValueError(f"InfluxDB {url}: a password needs a username")
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy or None
        auth = (username, password or "") if username else None
        headers = {"Authorization": f"Token {token}"} if token else None
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, auth=auth, headers=headers)
        self._write_params = {"db": database, "precision": "ms"}
        if self.retention_policy:
            self._write_params["rp"] = self.retention_policy
        self._counts: Counter[str] = Counter()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> InfluxStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, int]:
        """Write counters since start: requests, splits (413), bisections (400/422), rejected lines."""
        counts = self._counts.copy()
        return {k: counts[k] for k in ("write_requests", "splits", "bisections", "rejected_lines")}

    def _unavailable(self, resp: httpx.Response) -> StoreUnavailable:
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        wait = f"; it asks to retry after {retry_after:.0f} s" if retry_after is not None else ""
        return StoreUnavailable(
            f"time-series store at {self.url} answered {resp.status_code}: {_error_text(resp.text)}{wait}",
            retry_after,
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"time-series store at {self.url} unreachable: {exc}") from exc
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise self._unavailable(resp)
        return resp

    def ping(self) -> bool:
        """Return whether the store answers."""
        try:
            return self._client.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def ensure_database(self) -> None:
        """Create the database if it does not exist and check the retention policy (InfluxDB 1.x)."""
        resp = self._request("POST", "/query", data={"q": f"CREATE DATABASE {quote_ident(self.database)}"})
        if resp.status_code >= 400:
            raise StoreRejected(f"cannot create database {self.database!r}: {_error_text(resp.text)}")
        if self.retention_policy is None:
            return
        policies = {
            row[0]
            for s in self.query(f"SHOW RETENTION POLICIES ON {quote_ident(self.database)}")
            for row in s.get("values", [])
        }
        if self.retention_policy not in policies:
            raise StoreRejected(
                f"retention policy {self.retention_policy!r} does not exist on database {self.database!r} "
                f"(it has {', '.join(sorted(map(str, policies))) or 'none'})"
            )

    def write_lines(self, lines: Sequence[str]) -> list[RejectedLine]:
        """Write line-protocol lines; return the lines the store refused for good (every other line is written).

        A body over the store's size limit (413) is split in halves until each part fits. A refusal of some lines
        (400/422: unparsable line, field type conflict, partial write) is narrowed down by bisection, so only the
        lines the store refuses on their own are reported; lines it has already taken are rewritten (same point,
        same result). Raise StoreUnavailable (429, 5xx, unreachable: retry later, honouring retry_after_s; some
        lines may have been written) or StoreRejected (the request itself refused: auth, no such database setting).
        """
        rejected: list[RejectedLine] = []
        if lines:
            self._write_part(lines, 0, len(lines), rejected)
        rejected.sort(key=lambda r: r.index)
        self._counts["rejected_lines"] += len(rejected)
        return rejected

    def _write_part(self, lines: Sequence[str], start: int, end: int, rejected: list[RejectedLine]) -> None:
        body = "\n".join(lines[start:end]).encode()
        self._counts["write_requests"] += 1
        resp = self._request("POST", "/write", params=self._write_params, content=body)
        status = resp.status_code
        if status in (200, 204):
            return
        if status == 404:
            raise StoreUnavailable(f"database {self.database!r} not found at {self.url}: {_error_text(resp.text)}")
        reason = _error_text(resp.text)
        if status == 413:
            if end - start == 1:
                rejected.append(RejectedLine(start, lines[start], f"line larger than the store accepts: {reason}"))
                return
            self._counts["splits"] += 1
            self._halves(lines, start, end, rejected)
            return
        if status in (400, 422) and not any(marker in reason for marker in _REQUEST_ERRORS):
            if end - start == 1:
                rejected.append(RejectedLine(start, lines[start], reason))
                return
            named = named_lines(resp.text, lines[start:end])
            if named:
                rejected.extend(RejectedLine(start + i, lines[start + i], why) for i, why in named.items())
                rest = [i for i in range(start, end) if i - start not in named]
                # Write the rest again as runs of consecutive lines, so a further bad line is still found.
                for run_start, run_end in _runs(rest):
                    self._write_part(lines, run_start, run_end, rejected)
                return
            self._counts["bisections"] += 1
            self._halves(lines, start, end, rejected)
            return
        raise StoreRejected(f"store refused write ({status}): {reason}")

    def _halves(self, lines: Sequence[str], start: int, end: int, rejected: list[RejectedLine]) -> None:
        middle = (start + end) // 2
        self._write_part(lines, start, middle, rejected)
        self._write_part(lines, middle, end, rejected)

    def write(self, points: Iterable[Point]) -> None:
        """Write points; raise StoreRejected listing the refused lines after writing the rest (see write_lines)."""
        rejected = self.write_lines([to_line(p) for p in points])
        if rejected:
            first = rejected[0]
            raise StoreRejected(
                f"store refused {len(rejected)} line(s), wrote the rest; first: line {first.index}: {first.reason}",
                rejected,
            )

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement and return its series (name, tags, columns, values)."""
        resp = self._request("GET", "/query", params={"db": self.database, "q": q, "epoch": "ms"})
        if resp.status_code >= 400:
            raise StoreRejected(f"query failed ({resp.status_code}): {resp.text[:300]}")
        body = resp.json()
        results = body.get("results", [])
        if not results:
            return []
        first = results[0]
        if "error" in first:
            raise StoreRejected(f"query failed: {first['error']}")
        series: list[dict[str, Any]] = first.get("series", [])
        if first.get("partial") or any(s.get("partial") for s in series):
            # The store's row limit (max-row-limit) cut the answer short: a figure from it would be wrong.
            raise StoreRejected(
                f"query answer is partial (the store's max-row-limit cut it short); refusing to use it: {q[:200]}"
            )
        return series

    def rows(self, q: str) -> list[Row]:
        """Run a query and flatten its series into rows ordered as returned."""
        out: list[Row] = []
        for series in self.query(q):
            group_tags: dict[str, str] = series.get("tags") or {}
            tag_cols = [(i, c) for i, c in enumerate(series["columns"]) if c in _TAG_COLUMNS]
            for ts, fields, values in _decode_series(series):
                tags = dict(group_tags)
                for i, c in tag_cols:
                    if values[i] is not None:
                        tags[c] = str(values[i])
                out.append(Row(ts, tags, fields))
        return out

    def field_rows(self, q: str) -> list[tuple[int, dict[str, SignalValue]]]:
        """Run a query and return (ts_ms, fields) per row: rows() without tags, for reads of many samples."""
        return [(ts, fields) for series in self.query(q) for ts, fields, _ in _decode_series(series)]

    def telemetry(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Telemetry rows of one machine with start_ms <= ts < end_ms, oldest first."""
        return self.rows(
            f"SELECT * FROM {TELEMETRY} WHERE site = {quote_literal(site)} AND machine = {quote_literal(machine)}"
            f" AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms ORDER BY time ASC"
        )

    def statuses(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Machine status rows (online/unreachable) with start_ms <= ts < end_ms, oldest first."""
        return self.rows(
            f"SELECT * FROM {MACHINE_STATUS} WHERE site = {quote_literal(site)}"
            f" AND machine = {quote_literal(machine)}"
            f" AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms ORDER BY time ASC"
        )

    def newest_ts(self, site: str, measurement: str = TELEMETRY) -> dict[str, int]:
        """Per machine of site: the time of its newest row."""
        rows = self.rows(
            f"SELECT * FROM {quote_ident(measurement)} WHERE site = {quote_literal(site)} GROUP BY machine"
            " ORDER BY time DESC LIMIT 1"
        )
        return {r.tags["machine"]: r.ts_ms for r in rows if "machine" in r.tags}

    def values_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> dict[str, SignalValue]:
        """The last value of each of signals before ts_ms (signals never reported before are absent)."""
        names = sorted(set(signals))
        if not names:
            return {}
        select = ", ".join(f"last({quote_ident(n)}) AS {quote_ident(n)}" for n in names)
        return {
            name: value
            for _, fields in self.field_rows(
                f"SELECT {select} FROM {TELEMETRY} WHERE site = {quote_literal(site)}"
                f" AND machine = {quote_literal(machine)} AND time < {int(ts_ms)}ms"
            )
            for name, value in fields.items()
        }

    def latest(self, site: str, measurement: str = TELEMETRY) -> dict[str, Row]:
        """Per machine of site: the time of its newest row, with the last value of every field.

        Samples are reported by exception (a value holds until the next value of that signal), so the newest row
        alone carries only what changed last; each field's last value is what the machine shows now.
        """
        where = f"FROM {quote_ident(measurement)} WHERE site = {quote_literal(site)} GROUP BY machine"
        newest = {r.tags["machine"]: r for r in self.rows(f"SELECT * {where} ORDER BY time DESC LIMIT 1")}
        out: dict[str, Row] = {}
        for series in self.query(f"SELECT last(*) {where}"):
            machine = (series.get("tags") or {}).get("machine")
            row = newest.get(machine) if isinstance(machine, str) else None
            if row is None or not isinstance(machine, str):
                continue
            fields = dict(row.fields)
            for _, last_fields, _ in _decode_series(_unprefix(series, "last_")):
                fields = {**last_fields, **fields}
            out[machine] = Row(row.ts_ms, row.tags, fields)
        return out
