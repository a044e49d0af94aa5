"""The one module that speaks HTTP to the time-series store: line protocol to /write, InfluxQL on /query.

InfluxDB 1.x serves both natively, 2.x through its v1 compatibility API and 3.x natively.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from shopfloor.contracts import CANONICAL_SIGNALS, SignalKind, SignalValue

TELEMETRY = "telemetry"
MACHINE_STATUS = "machine_status"


class StoreError(Exception):
    """Base class for store failures."""


class StoreUnavailable(StoreError):
    """The store could not be reached or failed temporarily: retry later, keep the data."""


class StoreRejected(StoreError):
    """The store refused the data itself (bad points, type conflict): retrying will not help."""


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


def _field_value(name: str, value: SignalValue) -> str:
    kind = CANONICAL_SIGNALS.get(name)
    # Field types are fixed per shard in InfluxDB: canonical signals always get the same type.
    if kind is SignalKind.FLOAT and isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {name!r}: {value!r} cannot be stored")
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_line(point: Point) -> str:
    """Render one point as InfluxDB line protocol with millisecond precision."""
    if not point.fields:
        raise ValueError("a point needs at least one field")
    tags = "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(point.tags.items()) if v)
    fields = ",".join(f"{_escape_key(k)}={_field_value(k, v)}" for k, v in sorted(point.fields.items()))
    return f"{_escape_measurement(point.measurement)}{tags} {fields} {point.ts_ms}"


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


def _unprefix(series: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The series with prefix taken off its column names (last(*) names its columns last_<field>)."""
    columns = [c.removeprefix(prefix) for c in series["columns"]]
    return {**series, "columns": columns}


class InfluxStore:
    """Write points to and query rows from an InfluxDB-compatible /write + /query endpoint."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        auth = (username, password or "") if username else None
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, auth=auth)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> InfluxStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"time-series store at {self.url} unreachable: {exc}") from exc
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise StoreUnavailable(f"time-series store at {self.url} answered {resp.status_code}: {resp.text[:300]}")
        return resp

    def ping(self) -> bool:
        """Return whether the store answers."""
        try:
            return self._client.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def ensure_database(self) -> None:
        """Create the database if it does not exist (InfluxDB 1.x; harmless elsewhere)."""
        resp = self._request("POST", "/query", data={"q": f"CREATE DATABASE {quote_ident(self.database)}"})
        if resp.status_code >= 400:
            raise StoreRejected(f"cannot create database {self.database!r}: {resp.text[:300]}")

    def write_lines(self, lines: Sequence[str]) -> None:
        """Write line-protocol lines; raise StoreUnavailable (retry) or StoreRejected (do not retry)."""
        if not lines:
            return
        body = "\n".join(lines).encode()
        resp = self._request("POST", "/write", params={"db": self.database, "precision": "ms"}, content=body)
        if resp.status_code == 204:
            return
        if resp.status_code == 404:
            raise StoreUnavailable(f"database {self.database!r} not found at {self.url}: {resp.text[:300]}")
        raise StoreRejected(f"store refused write ({resp.status_code}): {resp.text[:300]}")

    def write(self, points: Iterable[Point]) -> None:
        """Write points; see write_lines for the errors."""
        self.write_lines([to_line(p) for p in points])

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
