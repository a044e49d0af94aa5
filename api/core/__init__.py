"""Functional core of the API: pure functions over plain data (no I/O, no web framework).

Timelines are built first; sessions, usage and (later) OEE and billing are computed from them.
"""

from api.core.counters import DEFAULT_MAX_RATE_PER_H, Anomaly, CounterLimits, Counts
from api.core.sessions import Session, sessions
from api.core.timeline import UNKNOWN, Increment, Interval, Timeline, build_timeline, classify, cut
from api.core.usage import MachineTotals, UsageRow, machine_totals, usage

__all__ = [
    "DEFAULT_MAX_RATE_PER_H",
    "UNKNOWN",
    "Anomaly",
    "CounterLimits",
    "Counts",
    "Increment",
    "Interval",
    "MachineTotals",
    "Session",
    "Timeline",
    "UsageRow",
    "build_timeline",
    "classify",
    "cut",
    "machine_totals",
    "sessions",
    "usage",
]
