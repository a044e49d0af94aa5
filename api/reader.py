"""Read raw facts from the store and hand them to the core as plain data."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from api.core import DEFAULT_MAX_RATE_PER_H, CounterLimits, Timeline, build_timeline
from shopfloor.config import Machine, SiteConfig
from shopfloor.influx import MACHINE_STATUS, TELEMETRY, InfluxStore, quote_literal


def fetch_timeline(store: InfluxStore, site: SiteConfig, machine: Machine, start_ms: int, end_ms: int) -> Timeline:
    """Fetch one machine's samples and statuses around [start_ms, end_ms) and build its timeline.

    The fetch looks back max_gap before start (so the state at start is known) and takes the newest sample before
    that too (the baseline of the first counter increment); it includes a sample at end_ms, whose increment counts.
    """
    where = f"site = {quote_literal(site.site.id)} AND machine = {quote_literal(machine.id)}"
    # The heartbeat the agent reported with the machine's status: how long it may stay silent while polling fine.
    reported = store.field_rows(
        f"SELECT last(heartbeat_ms) FROM {MACHINE_STATUS} WHERE {where} AND time <= {int(end_ms)}ms"
    )
    gap = max_gap_ms(site, machine, reported[0][1].get("last") if reported else None)
    lookback = start_ms - gap
    # Samples come as (ts_ms, fields) straight away: long windows hold many of them, Row objects are not needed.
    older = store.field_rows(
        f"SELECT * FROM {TELEMETRY} WHERE {where} AND time < {int(lookback)}ms ORDER BY time DESC LIMIT 1"
    )
    rows = store.field_rows(
        f"SELECT * FROM {TELEMETRY} WHERE {where}"
        f" AND time >= {int(lookback)}ms AND time < {int(end_ms + 1)}ms ORDER BY time ASC"
    )
    statuses = store.field_rows(
        f"SELECT * FROM {MACHINE_STATUS} WHERE {where}"
        f" AND time >= {int(lookback)}ms AND time < {int(end_ms + 1)}ms ORDER BY time ASC"
    )
    samples: list[tuple[int, Mapping[str, object]]] = [*older, *rows]
    status_events = [(ts, str(fields.get("status", ""))) for ts, fields in statuses]
    return build_timeline(samples, status_events, start_ms, end_ms, gap, counter_limits(site, machine))


def counter_limits(site: SiteConfig, machine: Machine) -> CounterLimits:
    """The machine's counter limits: its profile's max_rate_per_h where declared, else the generous defaults."""
    per_h = dict(DEFAULT_MAX_RATE_PER_H)
    for spec in site.profile(machine.profile).registers:
        if spec.signal in per_h and spec.max_rate_per_h is not None:
            per_h[spec.signal] = spec.max_rate_per_h
    return CounterLimits(per_h)


def max_gap_ms(site: SiteConfig, machine: Machine, heartbeat_ms: object = None) -> int:
    """The longest silence that still counts as covered: the heartbeat the agent reported, else the site file's."""
    fallback = site.max_gap_ms(machine)
    if isinstance(heartbeat_ms, int) and not isinstance(heartbeat_ms, bool) and heartbeat_ms > 0:
        return max(fallback, site.gap_for_heartbeat_ms(machine, heartbeat_ms))
    return fallback


# The store answers several queries at once; fetching machines in parallel overlaps its work with ours.
MAX_FETCH_THREADS = 8


def fetch_timelines(store: InfluxStore, site: SiteConfig, start_ms: int, end_ms: int) -> dict[str, Timeline]:
    """Fetch every machine's timeline over [start_ms, end_ms), several machines at a time, in site order."""
    machines = site.machines
    if len(machines) <= 1:
        return {m.id: fetch_timeline(store, site, m, start_ms, end_ms) for m in machines}
    with ThreadPoolExecutor(max_workers=min(len(machines), MAX_FETCH_THREADS)) as pool:
        fetched = pool.map(lambda m: fetch_timeline(store, site, m, start_ms, end_ms), machines)
        return {m.id: timeline for m, timeline in zip(machines, fetched, strict=True)}
