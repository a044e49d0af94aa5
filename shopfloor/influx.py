"""The one module that speaks HTTP to the time-series store: line protocol to /write, InfluxQL on /query.

InfluxDB 1.x serves both natively, 2.x through its v1 compatibility API and 3.x natively. `InfluxStore` implements
`shopfloor.store.TimeSeriesStore`; the schema, the value types and the errors live there (and are re-exported here).

Reads stream the answer in chunks (`chunked=true`): the store sends it as it goes, without the row cap
(`max-row-limit`) it puts on a whole answer, and the rows of one chunk are decoded while the next is on its way. A
store that sends a whole, capped answer anyway (`"partial": true`) is paged by time where the read is one series in
time order, and refused (StoreRejected) everywhere else: a figure from a truncated answer would be wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

from shopfloor.contracts import SignalValue
from shopfloor.gcpause import GC_PAUSE
from shopfloor.store import (
    AGENT_STATUS,
    FLOAT_SIGNALS,
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
    TimeSeriesStore,
    check_id,
    check_marks,
    check_signals,
    check_ts,
    check_window,
)

__all__ = [
    "AGENT_STATUS",
    "LATE_HOURS",
    "MACHINE_STATUS",
    "TELEMETRY",
    "InfluxStore",
    "Point",
    "RejectedLine",
    "Row",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "line_prefix",
    "named_lines",
    "parse_retry_after",
    "quote_ident",
    "quote_literal",
    "render_line",
    "to_line",
]

# httpx logs every request at INFO: one line per batch written would drown the collector's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


# Keys and tag values are signal names and ids: few distinct strings, escaped once each (bounded, thread-safe).
_KEYS: dict[str, str] = {}
_MAX_KEYS = 10_000
_FLOAT_SIGNALS = FLOAT_SIGNALS


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


# ---- reading answers --------------------------------------------------------------------------------------------

# Rows per chunk of a streamed answer (InfluxDB's own default): per-chunk costs vanish, and the store's work on the
# next chunk overlaps the decoding of this one.
DEFAULT_CHUNK_ROWS = 10_000


class PartialAnswer(StoreRejected):
    """An answer the store cut short (its max-row-limit) or left unfinished: never to be used as data."""


_GC = GC_PAUSE


def _decode(
    series: Mapping[str, Any], floats: Iterable[str] = (), skip: Iterable[str] = (), out: list[Sample] | None = None
) -> list[Sample]:
    """Append (ts_ms, non-null fields) for each row of one series to out (a new list if None) and return it.

    floats: columns holding float fields (JSON drops the ".0" of a whole float: it comes back as an int); skip:
    columns that are not fields (tags). This loop runs for every sample of long windows: column roles are worked out
    once per series, and the dict of a row is built in one comprehension.
    """
    rows: list[list[Any]] = series.get("values") or []
    out = [] if out is None else out
    if not rows:
        return out
    columns: list[str] = series["columns"]
    ti = columns.index("time")
    skipped = set(skip)
    cols = [(i, c) for i, c in enumerate(columns) if i != ti and c not in skipped]
    float_set = set(floats)
    for i in [i for i, c in cols if c in float_set]:
        for row in rows:
            value = row[i]
            if type(value) is int:
                row[i] = float(value)
    out.extend([(row[ti], {c: row[i] for i, c in cols if row[i] is not None}) for row in rows])
    return out


# The tag columns rows() and field_rows() take out of a raw query's fields (as they always have: an agent_status's
# agent tag stays among its fields there; agent_statuses() reads it as the tag it is).
_TAG_COLUMNS = ("site", "machine")


def _where(tags: Mapping[str, str]) -> str:
    return " AND ".join(f"{quote_ident(k)} = {quote_literal(v)}" for k, v in tags.items())


def _measurement(name: str) -> Measurement:
    found = SCHEMA.get(name)
    if found is None:
        raise ValueError(f"measurement {name!r} is not in the schema (one of {', '.join(SCHEMA)})")
    return found


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
    """Write points to and query rows from an InfluxDB-compatible /write + /query endpoint (a TimeSeriesStore).

    Auth: username/password (1.x, 2.x v1 compatibility) or token (2.x, 3.x: `Authorization: Token ...`), not both.
    retention_policy goes to /write as `rp=` (the database's default policy when None). chunk_rows: rows per chunk
    of a streamed answer; None asks for whole answers, paged by time where the store caps them.
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
        chunk_rows: int | None = DEFAULT_CHUNK_ROWS,
    ) -> None:
        if token and username:
            raise ValueError(f"InfluxDB {url}: give a username/password or a token, not both")
        if password and not username:
            raise ValueError(f"InfluxDB {url}: a password needs a username")
        if chunk_rows is not None and (type(chunk_rows) is not int or chunk_rows < 1):
            raise ValueError(f"InfluxDB {url}: chunk_rows must be a positive int or None, got {chunk_rows!r}")
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy or None
        self.chunk_rows = chunk_rows
        auth = (username, password or "") if username else None
        # Uncompressed answers: the store is near (same host or network), and gunzipping a month of rows cost the
        # API about an eighth of its CPU (bench/oee_month.py --profile).
        headers = {"Accept-Encoding": "identity"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, auth=auth, headers=headers)
        self._write_params = {"db": database, "precision": "ms"}
        if self.retention_policy:
            self._write_params["rp"] = self.retention_policy
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()  # writes and reads run from several threads (collector, API)
        # Field name -> stored type ("float", "integer", ...; "mixed" when shards differ), per measurement.
        self._field_types: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> InfluxStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _count(self, key: str, n: int) -> None:
        with self._counts_lock:
            self._counts[key] += n

    @property
    def stats(self) -> dict[str, int]:
        """Write counters since start: requests, splits (413), bisections (400/422), rejected lines."""
        with self._counts_lock:
            counts = self._counts.copy()
        return {k: counts[k] for k in ("write_requests", "splits", "bisections", "rejected_lines")}

    @property
    def read_pages(self) -> int:
        """How many times a read went on past an answer the store had capped (paging by time)."""
        return self._counts["read_pages"]

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
        if 400 <= resp.status_code < 500 and self._database_visible():
            # The database exists: a user that is not an admin (InfluxDB 1.x creates as admin only), or a server
            # whose v1 API has no CREATE DATABASE (2.x maps databases to buckets).
            pass
        elif resp.status_code >= 400:
            hint = ""
            if resp.status_code == 403:
                hint = " (a user that is not an admin needs the database to exist already)"
            raise StoreRejected(f"cannot create database {self.database!r}: {_error_text(resp.text)}{hint}")
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

    def _database_visible(self) -> bool:
        """Whether SHOW DATABASES lists this database (to a user that is not an admin: those it has privileges on)."""
        try:
            series = self.query("SHOW DATABASES")
        except StoreError:
            return False
        return any(row and row[0] == self.database for s in series for row in s.get("values", []))

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
        self._count("rejected_lines", len(rejected))
        return rejected

    def _write_part(self, lines: Sequence[str], start: int, end: int, rejected: list[RejectedLine]) -> None:
        body = "\n".join(lines[start:end]).encode()
        self._count("write_requests", 1)
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
            self._count("splits", 1)
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
            self._count("bisections", 1)
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

    # ---- queries ------------------------------------------------------------------------------------------------

    def _answer(self, q: str, statements: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (statement index, series) of q's answer as it arrives; a long series comes in several parts.

        Raise PartialAnswer when the store cut the answer short (a statement missing, or still "partial" where the
        answer ends), StoreRejected for an error in it, StoreUnavailable when the store cannot be reached or fails
        on the way.
        """
        params = {"db": self.database, "q": q, "epoch": "ms"}
        if self.retention_policy:
            params["rp"] = self.retention_policy  # where unqualified measurements are read from, as written to
        if self.chunk_rows is not None:
            params["chunked"] = "true"
            params["chunk_size"] = str(self.chunk_rows)
        unfinished: dict[int, bool] = {}  # statement -> whether its last part said more was to come
        try:
            with self._open_answer(params) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    if resp.status_code >= 500 or resp.status_code in (408, 429):
                        raise self._unavailable(resp)
                    raise StoreRejected(f"query failed ({resp.status_code}): {_error_text(resp.text)}")
                for line in resp.iter_lines():
                    if not line or line.isspace():
                        continue
                    for sid, result in self._results(line):
                        series: list[dict[str, Any]] = result.get("series") or []
                        unfinished[sid] = bool(result.get("partial")) or any(s.get("partial") for s in series)
                        for part in series:
                            yield sid, part
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"time-series store at {self.url} unreachable or failed mid-answer: {exc}") from exc
        cut = sorted(
            {i for i in range(statements) if i not in unfinished} | {i for i, more in unfinished.items() if more}
        )
        if cut:
            # InfluxDB caps a whole answer at max-row-limit, marks it "partial" and drops the statements after it.
            raise PartialAnswer(
                f"query answer is partial (statement {cut[0]} cut short, e.g. by the store's max-row-limit); "
                f"refusing to use it: {q[:200]}"
            )

    @contextlib.contextmanager
    def _open_answer(self, params: dict[str, str]) -> Iterator[httpx.Response]:
        """GET /query as a stream; sent once more if the connection fails before the answer's status line.

        A pooled keep-alive connection can be dead when reused: the store closed it while idle, or httpcore's sync
        pool closed it under a request another thread had just been handed (encode/httpcore#1110). A query is safe
        to send again, and nothing of it was read yet. A failure after the status line is not retried.
        """
        request = self._client.build_request("GET", "/query", params=params)
        try:
            resp = self._client.send(request, stream=True)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            self._count("read_retries", 1)
            resp = self._client.send(request, stream=True)
        try:
            yield resp
        finally:
            resp.close()

    @property
    def read_retries(self) -> int:
        """How many queries were sent again because their connection failed before the answer began."""
        return self._counts["read_retries"]

    def _results(self, line: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """(statement index, result) of one JSON document of an answer; raise StoreRejected for an error in it."""
        try:
            doc = json.loads(line)
        except ValueError:
            raise StoreRejected(
                f"time-series store at {self.url} answered with what is not JSON: {line[:200]!r}"
            ) from None
        if not isinstance(doc, dict):
            raise StoreRejected(f"time-series store at {self.url} answered with an unexpected document: {line[:200]!r}")
        if "error" in doc:
            raise StoreRejected(f"query failed: {doc['error']}")
        results = doc.get("results") or []
        for result in results if isinstance(results, list) else [None]:
            if not isinstance(result, dict):
                raise StoreRejected(f"time-series store at {self.url} answered with a malformed result: {line[:200]!r}")
            if "error" in result:
                raise StoreRejected(f"query failed: {result['error']}")
            series = result.get("series") or []
            if not isinstance(series, list) or not all(
                isinstance(s, dict) and isinstance(s.get("columns"), list) and isinstance(s.get("values", []), list)
                for s in series
            ):
                raise StoreRejected(f"time-series store at {self.url} answered with a malformed series: {line[:200]!r}")
            sid = result.get("statement_id", 0)
            yield (sid if type(sid) is int else 0), result

    def _statements(self, q: str, statements: int = 1) -> list[list[dict[str, Any]]]:
        """Run q (statements joined by ";"): each statement's series, the parts of a streamed series joined."""
        out: list[list[dict[str, Any]]] = [[] for _ in range(statements)]
        with _GC.paused():
            for sid, part in self._answer(q, statements):
                if not 0 <= sid < statements:
                    continue
                done = out[sid]
                last = done[-1] if done else None
                if (
                    last is not None
                    and last.get("partial")
                    and last.get("name") == part.get("name")
                    and (last.get("tags") or {}) == (part.get("tags") or {})
                    and last["columns"] == part["columns"]
                ):
                    last["values"].extend(part.get("values") or [])
                    last["partial"] = part.get("partial", False)
                else:
                    done.append({**part, "values": list(part.get("values") or [])})
        return out

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement and return its series (name, tags, columns, values); refuse a partial answer."""
        return self._statements(q)[0]

    def _float_fields(self, measurement: str, columns: Sequence[str]) -> list[str]:
        """The columns of a series of measurement that hold float fields."""
        schema = SCHEMA.get(measurement)
        if schema is not None and schema.fields is not None:
            return [c for c in columns if schema.fields.get(c) is float]
        # Telemetry fields are the profiles' signals: ask the store for their types, again when a new one shows.
        names = [c for c in columns if c != "time"]
        types = self._field_types.get(measurement)
        if types is None or any(c not in types for c in names):
            types = self._load_field_types(measurement)
        return [c for c in names if c in FLOAT_SIGNALS or types.get(c) == "float"]

    def _load_field_types(self, measurement: str) -> dict[str, str]:
        types: dict[str, str] = {}
        for series in self.query(f"SHOW FIELD KEYS FROM {quote_ident(measurement)}"):
            for name, kind in series.get("values") or []:
                types[name] = kind if types.get(name, kind) == kind else "mixed"
        self._field_types[measurement] = types
        return types

    def _samples(self, measurement: str, series: Mapping[str, Any], out: list[Sample] | None = None) -> list[Sample]:
        """Decode one series of measurement's fields (no tag columns) into out."""
        return _decode(series, self._float_fields(measurement, series["columns"]), (), out)

    def rows(self, q: str) -> list[Row]:
        """Run a query and flatten its series into rows ordered as returned (tags: the series' and site, machine)."""
        out: list[Row] = []
        with _GC.paused():
            for series in self.query(q):
                group_tags: dict[str, str] = series.get("tags") or {}
                columns: list[str] = series["columns"]
                tag_cols = [(i, c) for i, c in enumerate(columns) if c in _TAG_COLUMNS]
                decoded = _decode(series, self._float_fields(str(series.get("name", "")), columns), _TAG_COLUMNS)
                for (ts, fields), values in zip(decoded, series.get("values") or [], strict=True):
                    tags = dict(group_tags)
                    for i, c in tag_cols:
                        if values[i] is not None:
                            tags[c] = str(values[i])
                    out.append(Row(ts, tags, fields))
        return out

    def field_rows(self, q: str) -> list[tuple[int, dict[str, SignalValue]]]:
        """Run a query and return (ts_ms, fields) per row: rows() without tags, for reads of many samples."""
        out: list[Sample] = []
        with _GC.paused():
            for series in self.query(q):
                _decode(series, self._float_fields(str(series.get("name", "")), series["columns"]), _TAG_COLUMNS, out)
        return out

    def _window(self, measurement: str, tags: Mapping[str, str], start_ms: int, end_ms: int) -> list[Sample]:
        """Fields of one series with start_ms <= ts < end_ms, oldest first, whatever the store's row cap."""
        out: list[Sample] = []
        start = start_ms
        with _GC.paused():
            while start < end_ms:
                q = (
                    f"SELECT *::field FROM {quote_ident(measurement)} WHERE {_where(tags)}"
                    f" AND time >= {start}ms AND time < {end_ms}ms ORDER BY time ASC"
                )
                had = len(out)
                try:
                    for _, series in self._answer(q):
                        self._samples(measurement, series, out)
                    break
                except PartialAnswer:
                    # A whole answer capped at max-row-limit is the oldest rows of the window, complete up to its
                    # last time (a series holds one point per time): go on after it.
                    if len(out) == had:
                        raise
                    start = out[-1][0] + 1
                    self._count("read_pages", 1)
        return out

    def _newest(self, measurement: str, tags: Mapping[str, str], before: str) -> Row | None:
        """The newest row of one series with a time condition (e.g. "time < 5ms"), whole."""
        [series] = self._statements(
            f"SELECT *::field FROM {quote_ident(measurement)} WHERE {_where(tags)} AND {before}"
            " ORDER BY time DESC LIMIT 1"
        )
        found = [row for s in series for row in self._samples(measurement, s)]
        return Row(found[0][0], dict(tags), found[0][1]) if found else None

    # ---- the TimeSeriesStore interface -------------------------------------------------------------------------

    def samples(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Sample]:
        """Telemetry of one machine with start_ms <= ts < end_ms, oldest first, each with the fields it carried."""
        tags = {"site": check_id("site", site), "machine": check_id("machine", machine)}
        start, end = check_window(start_ms, end_ms)
        return self._window(TELEMETRY, tags, start, end)

    def telemetry(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Telemetry rows of one machine with start_ms <= ts < end_ms, oldest first (samples() as rows)."""
        tags = {"site": site, "machine": machine}
        return [Row(ts, dict(tags), fields) for ts, fields in self.samples(site, machine, start_ms, end_ms)]

    def last_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> list[Sample]:
        """For each of signals, the newest sample before ts_ms holding it: whole samples, each once, oldest first."""
        tags = {"site": check_id("site", site), "machine": check_id("machine", machine)}
        before = check_ts("ts_ms", ts_ms, exclusive=True)
        names = check_signals(signals)
        if not names:
            return []
        where = f"FROM {TELEMETRY} WHERE {_where(tags)}"
        # Selecting one field skips the points without it; DESC LIMIT 1 reads back from ts_ms only as far as needed.
        found = self._statements(
            ";".join(
                f"SELECT {quote_ident(n)} {where} AND time < {before}ms ORDER BY time DESC LIMIT 1" for n in names
            ),
            len(names),
        )
        times = sorted({int(row[0]) for statement in found for s in statement for row in s.get("values") or []})
        if not times:
            return []
        # InfluxQL has no "time IN (...)" (an OR of times matches nothing): one statement per time, one request.
        rows = self._statements(";".join(f"SELECT *::field {where} AND time = {t}ms" for t in times), len(times))
        out: list[Sample] = []
        for statement in rows:
            for series in statement:
                self._samples(TELEMETRY, series, out)
        return sorted(out, key=lambda sample: sample[0])

    def values_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> dict[str, SignalValue]:
        """The last value of each of signals before ts_ms (signals never reported before are absent)."""
        tags = {"site": check_id("site", site), "machine": check_id("machine", machine)}
        before = check_ts("ts_ms", ts_ms, exclusive=True)
        names = check_signals(signals)
        if not names:
            return {}
        select = ", ".join(f"last({quote_ident(n)}) AS {quote_ident(n)}" for n in names)
        [series] = self._statements(f"SELECT {select} FROM {TELEMETRY} WHERE {_where(tags)} AND time < {before}ms")
        return {
            name: value for s in series for _, fields in self._samples(TELEMETRY, s) for name, value in fields.items()
        }

    def statuses(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Machine statuses (online/unreachable) with start_ms <= ts < end_ms, oldest first."""
        tags = {"site": check_id("site", site), "machine": check_id("machine", machine)}
        start, end = check_window(start_ms, end_ms)
        return [Row(ts, dict(tags), fields) for ts, fields in self._window(MACHINE_STATUS, tags, start, end)]

    def status_before(self, site: str, machine: str, ts_ms: int) -> Row | None:
        """The newest machine status before ts_ms, None if there is none."""
        tags = {"site": check_id("site", site), "machine": check_id("machine", machine)}
        return self._newest(MACHINE_STATUS, tags, f"time < {check_ts('ts_ms', ts_ms, exclusive=True)}ms")

    def agent_statuses(self, site: str, agent: str, start_ms: int, end_ms: int) -> list[Row]:
        """An agent's statuses (online/offline, last will) with start_ms <= ts < end_ms, oldest first."""
        tags = {"site": check_id("site", site), "agent": check_id("agent", agent)}
        start, end = check_window(start_ms, end_ms)
        return [Row(ts, dict(tags), fields) for ts, fields in self._window(AGENT_STATUS, tags, start, end)]

    def agent_status_before(self, site: str, agent: str, ts_ms: int) -> Row | None:
        """The newest status of an agent before ts_ms, None if there is none."""
        tags = {"site": check_id("site", site), "agent": check_id("agent", agent)}
        return self._newest(AGENT_STATUS, tags, f"time < {check_ts('ts_ms', ts_ms, exclusive=True)}ms")

    def heartbeat_ms(self, site: str, machine: str, end_ms: int) -> int | None:
        """The last heartbeat_ms the agent reported in the machine's status at or before end_ms."""
        tags = {"site": check_id("site", site), "machine": check_id("machine", machine)}
        end = check_ts("end_ms", end_ms)
        [series] = self._statements(
            f"SELECT heartbeat_ms FROM {MACHINE_STATUS} WHERE {_where(tags)} AND time <= {end}ms"
            " ORDER BY time DESC LIMIT 1"
        )
        for s in series:
            for _, fields in _decode(s):
                value = fields.get("heartbeat_ms")
                if type(value) is int:
                    return value
        return None

    def newest_ts(self, site: str, measurement: str = TELEMETRY) -> dict[str, int]:
        """Per machine (per agent for agent statuses) of site: the time of its newest row."""
        key = _measurement(measurement).key_tag
        [series] = self._statements(
            f"SELECT *::field FROM {quote_ident(measurement)} WHERE site = {quote_literal(check_id('site', site))}"
            f" GROUP BY {quote_ident(key)} ORDER BY time DESC LIMIT 1"
        )
        return {
            s["tags"][key]: int(s["values"][0][0]) for s in series if (s.get("tags") or {}).get(key) and s.get("values")
        }

    def latest(self, site: str, measurement: str = TELEMETRY) -> dict[str, Row]:
        """Per machine (per agent for agent statuses) of site: the time of its newest row, with the last value of
        every field.

        Samples are reported by exception (a value holds until the next value of that signal), so the newest row
        alone carries only what changed last; each field's last value is what the machine shows now.
        """
        key = _measurement(measurement).key_tag
        where = (
            f"FROM {quote_ident(measurement)} WHERE site = {quote_literal(check_id('site', site))}"
            f" GROUP BY {quote_ident(key)}"
        )
        newest, lasts = self._statements(
            f"SELECT *::field {where} ORDER BY time DESC LIMIT 1;SELECT last(*) {where}", 2
        )
        rows: dict[str, Sample] = {}
        for s in newest:
            name = (s.get("tags") or {}).get(key)
            found = self._samples(measurement, s)
            if isinstance(name, str) and found:
                rows[name] = found[0]
        out: dict[str, Row] = {}
        for s in lasts:
            name = (s.get("tags") or {}).get(key)
            if not isinstance(name, str) or name not in rows:
                continue
            ts, fields = rows[name]
            unprefixed = {**s, "columns": [c.removeprefix("last_") for c in s["columns"]]}
            for _, last_fields in self._samples(measurement, unprefixed):
                fields = {**last_fields, **fields}
            out[name] = Row(ts, {"site": site, key: name}, fields)
        return out

    def latest_statuses(self, site: str) -> dict[str, Row]:
        """Per machine of site: its newest status, with the last value of every field (heartbeat_ms may be older)."""
        return self.latest(site, MACHINE_STATUS)

    def latest_agent_statuses(self, site: str) -> dict[str, Row]:
        """Per agent of site: its newest status."""
        return self.latest(site, AGENT_STATUS)

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

    def late_hours(self, site: str, since_received_ms: int) -> list[LateHour]:
        """(machine, hour_ms, received_ms) of every machine-hour marked after since_received_ms, oldest hour first.

        InfluxDB indexes tags and time, not fields: the received_ms condition is a scan of the measurement. That is
        cheap because it holds one point per machine-hour that ever received late data (marking again overwrites),
        so the whole of it is read, over all time: a mark of an hour older than the collector's skew window (an
        operator's backfill) is found like any other. since_received_ms 0 returns every mark.
        """
        check_id("site", site)
        if type(since_received_ms) is not int or not 0 <= since_received_ms <= MAX_END_MS:
            raise ValueError(
                f"since_received_ms must be epoch ms as an int in 0..{MAX_END_MS}, got {since_received_ms!r}"
            )
        [series] = self._statements(
            f"SELECT received_ms FROM {LATE_HOURS} WHERE site = {quote_literal(site)}"
            f" AND received_ms > {since_received_ms} GROUP BY machine"
        )
        out: list[LateHour] = []
        for s in series:
            machine = (s.get("tags") or {}).get("machine")
            if not isinstance(machine, str):
                continue
            for hour, fields in _decode(s):
                received = fields.get("received_ms")
                if type(received) is int and received > since_received_ms:
                    out.append((machine, hour, received))
        return sorted(out, key=lambda mark: (mark[1], mark[0]))


if TYPE_CHECKING:

    def _implements_the_interface(store: InfluxStore) -> TimeSeriesStore:
        return store  # mypy fails here if InfluxStore stops matching TimeSeriesStore
