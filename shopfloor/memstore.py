"""A time-series store held in memory: for offline reports over a file of wire messages, and as a reference.

It keeps InfluxDB's semantics where the analytics depend on them: a series is (measurement, site, machine or agent);
a point written again at the same time merges its fields into the stored one (later values win); reads are
[start, end) and oldest first. Nothing is persisted.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shopfloor.contracts import SignalValue
from shopfloor.store import (
    AGENT_STATUS,
    LATE_HOURS,
    MACHINE_STATUS,
    MAX_END_MS,
    TELEMETRY,
    LateHour,
    Point,
    Row,
    Sample,
    check_id,
    check_marks,
    check_signals,
    check_ts,
    check_window,
)


@dataclass
class _Series:
    """One series: fields by time, with the times kept sorted for range reads."""

    rows: dict[int, dict[str, SignalValue]] = field(default_factory=dict)
    times: list[int] = field(default_factory=list)

    def put(self, ts: int, fields: Mapping[str, SignalValue]) -> None:
        row = self.rows.get(ts)
        if row is None:
            self.rows[ts] = dict(fields)
            if not self.times or self.times[-1] < ts:
                self.times.append(ts)
            else:
                bisect.insort(self.times, ts)
        else:
            row.update(fields)

    def between(self, start_ms: int, end_ms: int) -> list[int]:
        lo = bisect.bisect_left(self.times, start_ms)
        return self.times[lo : bisect.bisect_left(self.times, end_ms, lo=lo)]

    def before(self, ts_ms: int) -> list[int]:
        """Times before ts_ms, oldest first."""
        return self.times[: bisect.bisect_left(self.times, ts_ms)]


def _key_tag(measurement: str) -> str:
    return "agent" if measurement == AGENT_STATUS else "machine"


class MemoryStore:
    """Points in memory, read like the InfluxDB store."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def ping(self) -> bool:
        """Always reachable."""
        return True

    def ensure_database(self) -> None:
        """Nothing to create."""

    def close(self) -> None:
        """Nothing to release."""

    # ---- writes ----------------------------------------------------------------------------------------------

    def write(self, points: Iterable[Point]) -> None:
        """Store points; a point at the time of a stored one of its series merges into it."""
        with self._lock:
            for point in points:
                tag = _key_tag(point.measurement)
                key = (point.measurement, point.tags.get("site", ""), point.tags.get(tag, ""))
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series()
                series.put(point.ts_ms, point.fields)

    def mark_late_hours(self, site: str, marks: Mapping[str, Iterable[int]], received_ms: int) -> None:
        """Record that these machine-hours received data late (one point per machine-hour, latest mark wins)."""
        check_id("site", site)
        received = check_ts("received_ms", received_ms)
        self.write(
            Point(LATE_HOURS, {"site": site, "machine": machine}, {"received_ms": received}, hour)
            for machine, hour in check_marks(marks)
        )

    # ---- reads -----------------------------------------------------------------------------------------------

    def _get(self, measurement: str, site: str, key: str) -> _Series:
        return self._series.get((measurement, site, key)) or _Series()

    def _rows(self, measurement: str, site: str, key: str, times: Iterable[int]) -> list[Row]:
        series = self._get(measurement, site, key)
        tags = {"site": site, _key_tag(measurement): key}
        return [Row(ts, dict(tags), dict(series.rows[ts])) for ts in times]

    def samples(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Sample]:
        """Telemetry of one machine with start_ms <= ts < end_ms, oldest first."""
        series = self._get(TELEMETRY, check_id("site", site), check_id("machine", machine))
        start, end = check_window(start_ms, end_ms)
        return [(ts, dict(series.rows[ts])) for ts in series.between(start, end)]

    def last_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> list[Sample]:
        """For each of signals, the newest sample before ts_ms that holds it (whole rows, deduplicated, in order)."""
        series = self._get(TELEMETRY, check_id("site", site), check_id("machine", machine))
        before = check_ts("ts_ms", ts_ms, exclusive=True)
        wanted = set(check_signals(signals))
        found: set[int] = set()
        for ts in reversed(series.before(before)):
            if not wanted:
                break
            held = wanted & series.rows[ts].keys()
            if held:
                found.add(ts)
                wanted -= held
        return [(ts, dict(series.rows[ts])) for ts in sorted(found)]

    def values_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> dict[str, SignalValue]:
        """The last value of each of signals before ts_ms (signals never reported before are absent)."""
        names = set(check_signals(signals))
        out: dict[str, SignalValue] = {}
        for _ts, fields in self.last_before(site, machine, ts_ms, names):
            out.update({k: v for k, v in fields.items() if k in names})
        return out

    def statuses(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]:
        """Machine statuses with start_ms <= ts < end_ms, oldest first."""
        key = (check_id("site", site), check_id("machine", machine))
        start, end = check_window(start_ms, end_ms)
        return self._rows(MACHINE_STATUS, *key, self._get(MACHINE_STATUS, *key).between(start, end))

    def status_before(self, site: str, machine: str, ts_ms: int) -> Row | None:
        """The newest machine status before ts_ms."""
        key = (check_id("site", site), check_id("machine", machine))
        times = self._get(MACHINE_STATUS, *key).before(check_ts("ts_ms", ts_ms, exclusive=True))
        return self._rows(MACHINE_STATUS, *key, times[-1:])[0] if times else None

    def agent_statuses(self, site: str, agent: str, start_ms: int, end_ms: int) -> list[Row]:
        """An agent's statuses with start_ms <= ts < end_ms, oldest first."""
        key = (check_id("site", site), check_id("agent", agent))
        start, end = check_window(start_ms, end_ms)
        return self._rows(AGENT_STATUS, *key, self._get(AGENT_STATUS, *key).between(start, end))

    def agent_status_before(self, site: str, agent: str, ts_ms: int) -> Row | None:
        """The newest status of an agent before ts_ms."""
        key = (check_id("site", site), check_id("agent", agent))
        times = self._get(AGENT_STATUS, *key).before(check_ts("ts_ms", ts_ms, exclusive=True))
        return self._rows(AGENT_STATUS, *key, times[-1:])[0] if times else None

    def heartbeat_ms(self, site: str, machine: str, end_ms: int) -> int | None:
        """The last heartbeat_ms the agent reported for machine at or before end_ms."""
        series = self._get(MACHINE_STATUS, check_id("site", site), check_id("machine", machine))
        for ts in reversed(series.before(check_ts("end_ms", end_ms) + 1)):
            value = series.rows[ts].get("heartbeat_ms")
            if type(value) is int:
                return value
        return None

    def _latest(self, measurement: str, site: str) -> dict[str, Row]:
        check_id("site", site)
        out: dict[str, Row] = {}
        with self._lock:
            chosen = [(key, series) for (m, s, key), series in self._series.items() if m == measurement and s == site]
        for key, series in sorted(chosen, key=lambda item: item[0]):
            if not series.times:
                continue
            fields: dict[str, SignalValue] = {}
            for ts in series.times:  # each field's last value: report by exception
                fields.update(series.rows[ts])
            out[key] = Row(series.times[-1], {"site": site, _key_tag(measurement): key}, fields)
        return out

    def latest(self, site: str) -> dict[str, Row]:
        """Per machine: the time of its newest sample, with the last value of every field."""
        return self._latest(TELEMETRY, site)

    def latest_statuses(self, site: str) -> dict[str, Row]:
        """Per machine: its newest status, with the last value of every field."""
        return self._latest(MACHINE_STATUS, site)

    def latest_agent_statuses(self, site: str) -> dict[str, Row]:
        """Per agent: its newest status, with the last value of every field."""
        return self._latest(AGENT_STATUS, site)

    def newest_ts(self, site: str) -> dict[str, int]:
        """Per machine of site: the time of its newest sample."""
        check_id("site", site)
        with self._lock:
            return {
                key: series.times[-1]
                for (m, s, key), series in sorted(self._series.items())
                if m == TELEMETRY and s == site and series.times
            }

    def late_hours(self, site: str, since_received_ms: int) -> list[LateHour]:
        """(machine, hour_ms, received_ms) of machine-hours marked late after since_received_ms, oldest hour first."""
        check_id("site", site)
        if type(since_received_ms) is not int or not 0 <= since_received_ms <= MAX_END_MS:
            raise ValueError(
                f"since_received_ms must be epoch ms as an int in 0..{MAX_END_MS}, got {since_received_ms!r}"
            )
        out: list[LateHour] = []
        with self._lock:
            for (m, s, machine), series in self._series.items():
                if m != LATE_HOURS or s != site:
                    continue
                for hour in series.times:
                    received = series.rows[hour].get("received_ms")
                    if type(received) is int and received > since_received_ms:
                        out.append((machine, hour, received))
        return sorted(out, key=lambda t: (t[1], t[0]))
