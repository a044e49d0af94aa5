"""Functional core of the API: pure functions over plain data (no I/O, no web framework).

Timelines are built first (block-local, hour by hour: api.core.pieces), then cut into pieces; sessions, usage and
OEE are computed from them (and later billing).
"""

from api.core.counters import DEFAULT_MAX_RATE_PER_H, Anomaly, CounterLimits, Counts
from api.core.oee import LossMap, OeeRow, oee
from api.core.pieces import (
    HOUR_MS,
    HourlyTimeline,
    HourSummary,
    Piece,
    StopSpan,
    clip,
    context_ms,
    hour_of,
    hour_summaries,
    hour_summary,
    hour_timelines,
    pieces,
)
from api.core.sessions import Breakdown, Session, breakdown, sessions, tenant_of
from api.core.timeline import UNKNOWN, Increment, Interval, StatusEvent, Timeline, build_timeline, classify, cut
from api.core.usage import MachineTotals, UsageRow, machine_totals, usage, usage_from_pieces

__all__ = [
    "DEFAULT_MAX_RATE_PER_H",
    "HOUR_MS",
    "UNKNOWN",
    "Anomaly",
    "Breakdown",
    "CounterLimits",
    "Counts",
    "HourSummary",
    "HourlyTimeline",
    "Increment",
    "Interval",
    "LossMap",
    "MachineTotals",
    "OeeRow",
    "Piece",
    "Session",
    "StatusEvent",
    "StopSpan",
    "Timeline",
    "UsageRow",
    "breakdown",
    "build_timeline",
    "classify",
    "clip",
    "context_ms",
    "cut",
    "hour_of",
    "hour_summaries",
    "hour_summary",
    "hour_timelines",
    "machine_totals",
    "oee",
    "pieces",
    "sessions",
    "tenant_of",
    "usage",
    "usage_from_pieces",
]
