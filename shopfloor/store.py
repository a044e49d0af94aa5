"""The time-series store interface (`TimeSeriesStore`), its schema and its value types.

Everything that reads raw facts (the API's reader, the collector's history check, roll-ups) goes through the
Protocol below, so the embedded SQLite store (`shopfloor.sqlitestore`) can replace InfluxDB (`shopfloor.influx`)
without touching the analytics. Both pass tests/integration/test_store_contract.py. The collector writes line
protocol: `LineStore` is what it needs of either.

Schema: one series per measurement and key tags; a point written again at the same series and time merges its
fields into the stored one (later values win), so a resent sample is harmless.

| measurement      | tags            | fields                                                                  |
|------------------|-----------------|-------------------------------------------------------------------------|
| `telemetry`      | site, machine   | the machine profile's signals (canonical ones typed as CANONICAL_SIGNALS) |
| `machine_status` | site, machine   | status (str), agent (str), detail (str), heartbeat_ms (int, optional)   |
| `agent_status`   | site, agent     | status (str), detail (str); stamped when the collector received it     |
| `late_hours`     | site, machine   | received_ms (int); time = the UTC hour start that received late data    |

Rules every implementation keeps (the contract suite checks them):
- windows are [start_ms, end_ms), answers oldest first; a field a sample did not carry is absent, never None;
- values come back with the type they were written with (bool, int, float, str), whole floats stay floats;
- a partial or truncated answer is an error (StoreRejected), never data; a store that cannot be reached raises
  StoreUnavailable;
- bad arguments (a window ending before it starts, an id that is not an id, a time outside the contract's
  MIN_TS_MS..MAX_TS_MS, a signal name that is not one) raise ValueError naming the argument, before any I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shopfloor.contracts import (
    CANONICAL_SIGNALS,
    ID_PATTERN,
    MAX_TS_MS,
    MIN_TS_MS,
    SIGNAL_PATTERN,
    SignalKind,
    SignalValue,
    is_reserved_signal,
    is_valid_id,
    is_valid_signal,
)

TELEMETRY = "telemetry"
MACHINE_STATUS = "machine_status"
AGENT_STATUS = "agent_status"  # tags site and agent; stamped when the collector received it
LATE_HOURS = "late_hours"  # one point per machine-hour that received data after it closed (roll-ups rebuild it)

HOUR_MS = 3_600_000
# An exclusive bound (a window's end, "before ts") may be one past the last valid time, so that a sample stamped
# MAX_TS_MS can still be read.
MAX_END_MS = MAX_TS_MS + 1


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement of the schema: its name, the tags that make its series, and its field types.

    fields maps a field to its type; None for telemetry, whose fields are the machine profile's signals
    (the canonical ones always of the type CANONICAL_SIGNALS gives).
    """

    name: str
    tags: tuple[str, ...]
    fields: Mapping[str, type] | None
    key_tag: str  # the tag that tells the series of one site apart (machine or agent)


SCHEMA: Mapping[str, Measurement] = {
    m.name: m
    for m in (
        Measurement(TELEMETRY, ("site", "machine"), None, "machine"),
        Measurement(
            MACHINE_STATUS,
            ("site", "machine"),
            {"status": str, "agent": str, "detail": str, "heartbeat_ms": int},
            "machine",
        ),
        Measurement(AGENT_STATUS, ("site", "agent"), {"status": str, "detail": str}, "agent"),
        Measurement(LATE_HOURS, ("site", "machine"), {"received_ms": int}, "machine"),
    )
}
# Telemetry signals the store keeps as floats even when a value comes as a whole number.
FLOAT_SIGNALS = frozenset(name for name, kind in CANONICAL_SIGNALS.items() if kind is SignalKind.FLOAT)


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
    """The store refused the data or the query itself (bad points, type conflict, a partial answer): retrying
    will not help.

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


Sample = tuple[int, dict[str, SignalValue]]  # (ts_ms, the signals the sample carried)
LateHour = tuple[str, int, int]  # (machine, hour_ms, received_ms)


class TimeSeriesStore(Protocol):
    """What the analytics and the collector need from a time-series store (module docstring: the rules)."""

    def ping(self) -> bool:
        """Return whether the store answers."""
        ...

    def ensure_database(self) -> None:
        """Create what the store needs (database, tables) if missing; raise StoreRejected if it cannot."""
        ...

    def write(self, points: Iterable[Point]) -> None:
        """Write points; a point at the series and time of a stored one merges its fields into it."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...

    def samples(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Sample]:
        """Telemetry of one machine with start_ms <= ts < end_ms, oldest first, each with the fields it carried."""
        ...

    def last_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> list[Sample]:
        """For each of signals, the newest sample before ts_ms holding it: whole samples, each once, oldest first.

        The state and counter baselines of a window: samples are reported by exception, so the single newest
        sample may hold none of them.
        """
        ...

    def statuses(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Machine statuses (online/unreachable) with start_ms <= ts < end_ms, oldest first."""
        ...

    def status_before(self, site: str, machine: str, ts_ms: int) -> Row | None:
        """The newest machine status before ts_ms, None if there is none."""
        ...

    def agent_statuses(self, site: str, agent: str, start_ms: int, end_ms: int) -> list[Row]:
        """An agent's statuses (online/offline, last will) with start_ms <= ts < end_ms, oldest first."""
        ...

    def agent_status_before(self, site: str, agent: str, ts_ms: int) -> Row | None:
        """The newest status of an agent before ts_ms, None if there is none."""
        ...

    def heartbeat_ms(self, site: str, machine: str, end_ms: int) -> int | None:
        """The last heartbeat_ms the agent reported in the machine's status at or before end_ms."""
        ...

    def latest(self, site: str) -> dict[str, Row]:
        """Per machine of site: the time of its newest sample, with the last value of every field."""
        ...

    def latest_statuses(self, site: str) -> dict[str, Row]:
        """Per machine of site: its newest status, with the last value of every field (heartbeat_ms may be older)."""
        ...

    def latest_agent_statuses(self, site: str) -> dict[str, Row]:
        """Per agent of site: its newest status."""
        ...

    def newest_ts(self, site: str) -> dict[str, int]:
        """Per machine of site: the time of its newest sample."""
        ...

    def values_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> dict[str, SignalValue]:
        """The last value of each of signals before ts_ms (signals never reported before are absent)."""
        ...

    def mark_late_hours(self, site: str, marks: Mapping[str, Iterable[int]], received_ms: int) -> None:
        """Record that machine-hours (machine -> UTC hour starts) received data late, at received_ms.

        One point per machine-hour; marking it again overwrites received_ms.
        """
        ...

    def late_hours(self, site: str, since_received_ms: int) -> list[LateHour]:
        """(machine, hour_ms, received_ms) of every machine-hour marked after since_received_ms, oldest hour first."""
        ...


class LineStore(TimeSeriesStore, Protocol):
    """What the collector needs of a store besides the reads: line-protocol writes and telemetry rows.

    Implemented by InfluxStore (shopfloor.influx) and SqliteStore (shopfloor.sqlitestore).
    """

    @property
    def url(self) -> str:
        """Where the store is (a URL or a file path), for log lines."""
        ...

    @property
    def database(self) -> str:
        """The database written to, for log lines."""
        ...

    def write_lines(self, lines: Sequence[str]) -> list[RejectedLine]:
        """Write line-protocol lines (ms timestamps); return those refused for good, every other line is written.

        Raise StoreUnavailable when the store cannot take them now (retry later), StoreRejected when it refuses the
        request itself.
        """
        ...

    def telemetry(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Telemetry rows of one machine with start_ms <= ts < end_ms, oldest first (samples() as rows)."""
        ...

    def __enter__(self) -> LineStore: ...

    def __exit__(self, *_exc: object) -> None: ...


# ---- argument checks shared by every implementation (bad arguments fail before any I/O) -------------------------


def check_id(what: str, value: object) -> str:
    """Return value if it is a valid id, else raise ValueError naming what it was."""
    if not isinstance(value, str) or not is_valid_id(value):
        raise ValueError(f"{what} {value!r} is not a valid id (expected {ID_PATTERN})")
    return value


def check_ts(what: str, value: object, *, exclusive: bool = False) -> int:
    """Return value if it is epoch ms (an int) within the contract's range, else raise ValueError.

    An exclusive bound may be MAX_END_MS, one past the last valid time.
    """
    if type(value) is not int:
        raise ValueError(f"{what} must be epoch milliseconds as an int, got {value!r}")
    top = MAX_END_MS if exclusive else MAX_TS_MS
    if not MIN_TS_MS <= value <= top:
        raise ValueError(f"{what} {value} is outside {MIN_TS_MS}..{top} (epoch ms, 2000-01-01..2100-01-01)")
    return value


def check_window(start_ms: object, end_ms: object) -> tuple[int, int]:
    """Return (start_ms, end_ms) if they make a window [start, end), else raise ValueError."""
    start = check_ts("start_ms", start_ms)
    end = check_ts("end_ms", end_ms, exclusive=True)
    if end < start:
        raise ValueError(f"window end_ms {end} is before its start_ms {start}")
    return start, end


def check_signals(signals: Iterable[str]) -> list[str]:
    """Return signals sorted and deduplicated if each is a signal name, else raise ValueError naming it."""
    if isinstance(signals, str):
        raise ValueError(f"signals must be a collection of names, not the string {signals!r}")
    names = sorted(set(signals))
    for name in names:
        if not isinstance(name, str) or not is_valid_signal(name) or is_reserved_signal(name):
            raise ValueError(f"signal {name!r} is not a signal name (expected {SIGNAL_PATTERN}, not reserved)")
    return names


def check_marks(marks: Mapping[str, Iterable[int]]) -> list[tuple[str, int]]:
    """Return (machine, hour_ms) of marks sorted and deduplicated, else raise ValueError naming the bad entry."""
    out: set[tuple[str, int]] = set()
    for machine, hours in marks.items():
        check_id("machine", machine)
        if isinstance(hours, int | str):
            raise ValueError(f"late hours of machine {machine!r} must be a collection of hour starts, got {hours!r}")
        for hour in hours:
            check_ts(f"late hour of machine {machine!r}", hour)
            if hour % HOUR_MS:
                raise ValueError(
                    f"late hour {hour} of machine {machine!r} is not a UTC hour start (a multiple of {HOUR_MS})"
                )
            out.add((machine, hour))
    return sorted(out)
