"""Read raw facts from the store, through the TimeSeriesStore interface, and hand them to the core as plain data."""

from __future__ import annotations

from dataclasses import dataclass

from api.core import DEFAULT_MAX_RATE_PER_H, CounterLimits, Timeline
from api.core.pieces import BASELINE_SIGNALS, HOUR_MS, HourlyTimeline, context_ms, hour_of, hour_timelines
from api.core.timeline import StatusEvent
from shopfloor.config import Machine, SiteConfig
from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS
from shopfloor.store import TimeSeriesStore

# Statuses are few (one per outage or loss), so they are read from well before a fetch: an outbox loss reported
# before it may reach into it, and the newest status of each kind before it decides the link at its start.
STATUS_LOOKBACK_MS = 8 * 24 * HOUR_MS


def agents_of(site: SiteConfig, machine: Machine) -> list[str]:
    """The agents the site registry says serve machine (empty when the registry is open)."""
    return [a.id for a in site.agents if machine.id in a.machines]


def status_events(
    store: TimeSeriesStore, site: SiteConfig, machine: Machine, start_ms: int, end_ms: int
) -> list[StatusEvent]:
    """The machine's and its agents' statuses that shape [start_ms, end_ms), from STATUS_LOOKBACK_MS before it.

    The newest status of each source before that comes too, so the link at the start is known.
    """
    sid = site.site.id
    lo = max(MIN_TS_MS, start_ms - STATUS_LOOKBACK_MS)
    events: list[StatusEvent] = []
    before = store.status_before(sid, machine.id, lo)
    agents = set(agents_of(site, machine))
    for row in [*([before] if before is not None else []), *store.statuses(sid, machine.id, lo, end_ms)]:
        events.append(StatusEvent.from_fields(row.ts_ms, "machine", row.fields))
        if not site.agents and isinstance(row.fields.get("agent"), str):
            agents.add(str(row.fields["agent"]))  # an open registry: the agent that reported the machine
    for agent in sorted(agents):
        previous = store.agent_status_before(sid, agent, lo)
        for row in [*([previous] if previous is not None else []), *store.agent_statuses(sid, agent, lo, end_ms)]:
            events.append(StatusEvent.from_fields(row.ts_ms, "agent", row.fields))
    events.sort(key=lambda e: e.ts_ms)
    return events


@dataclass(frozen=True, slots=True)
class RawTimeline:
    """One machine's block-local timeline over a window, the silence allowance it used and the samples read."""

    timeline: HourlyTimeline
    max_gap_ms: int
    samples: int


def raw_timeline(
    store: TimeSeriesStore, site: SiteConfig, machine: Machine, start_ms: int, end_ms: int
) -> RawTimeline:
    """Classify one machine's raw data for [start_ms, end_ms) hour by hour (api.core.pieces: block-local).

    Every hour touching the window is classified with its context around it and with the heartbeat the agent
    reported by the hour's end: samples from the context before the first hour through the context after the last,
    after the newest sample before that holding each baseline signal, and the statuses that shape them. The same
    rule builds the roll-ups, so both give the same figures.
    """
    sid = site.site.id
    first_hour, last_hour = hour_of(start_ms), hour_of(end_ms - 1)
    first_end = min(first_hour + HOUR_MS, MAX_TS_MS)
    # The heartbeat the agent reported with the machine's status: how long it may stay silent while polling fine.
    heartbeat = store.heartbeat_ms(sid, machine.id, first_end)
    changes: list[tuple[int, int]] = []
    if last_hour > first_hour:
        for row in store.statuses(sid, machine.id, first_end + 1, min(last_hour + HOUR_MS, MAX_TS_MS) + 1):
            value = row.fields.get("heartbeat_ms")
            if type(value) is int:
                changes.append((row.ts_ms, value))
    gaps: dict[int, int] = {}
    k = 0
    for hour in range(first_hour, last_hour + HOUR_MS, HOUR_MS):
        while k < len(changes) and changes[k][0] <= hour + HOUR_MS:
            heartbeat = changes[k][1]
            k += 1
        gaps[hour] = max_gap_ms(site, machine, heartbeat)
    ctx = max(context_ms(g) for g in gaps.values())
    lo = max(MIN_TS_MS, first_hour - ctx)
    hi = min(MAX_TS_MS, last_hour + HOUR_MS + ctx)
    baseline = store.last_before(sid, machine.id, lo, BASELINE_SIGNALS)
    samples = [*baseline, *store.samples(sid, machine.id, lo, hi + 1)]
    statuses = status_events(store, site, machine, lo, hi + 1)
    timeline = hour_timelines(samples, statuses, start_ms, end_ms, gaps.__getitem__, counter_limits(site, machine))
    return RawTimeline(timeline, gaps[last_hour], len(samples))


def fetch_timeline(store: TimeSeriesStore, site: SiteConfig, machine: Machine, start_ms: int, end_ms: int) -> Timeline:
    """One machine's timeline over [start_ms, end_ms), classified block-locally from raw data (raw_timeline)."""
    return raw_timeline(store, site, machine, start_ms, end_ms).timeline


# A machine cannot make parts faster than its ideal cycle (DESIGN.md: a rise beyond that is a counter anomaly). Twice
# as fast leaves room for an ideal cycle set too slow, which shows as effectiveness over 100 % (flagged), before real
# parts would be taken for an anomaly.
CYCLE_HEADROOM = 2.0


def counter_limits(site: SiteConfig, machine: Machine) -> CounterLimits:
    """The machine's counter limits: parts from its fastest ideal cycle, energy from the generous default.

    A profile's max_rate_per_h overrides either (for energy_kwh it is the meter's maximum power in kW).
    """
    per_h = dict(DEFAULT_MAX_RATE_PER_H)
    fastest_s = min([machine.ideal_cycle_time_s, *machine.job_cycle_times_s.values()])
    for signal in ("good_count", "reject_count"):
        per_h[signal] = CYCLE_HEADROOM * 3600 / fastest_s
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
