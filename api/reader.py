"""Read raw facts from the store and hand them to the core as plain data."""

from __future__ import annotations

from collections.abc import Mapping

from api.core import Timeline, build_timeline
from shopfloor.config import Machine, SiteConfig
from shopfloor.influx import TELEMETRY, InfluxStore, quote_literal


def fetch_timeline(store: InfluxStore, site: SiteConfig, machine: Machine, start_ms: int, end_ms: int) -> Timeline:
    """Fetch one machine's samples and statuses around [start_ms, end_ms) and build its timeline.

    The fetch looks back max_gap before start (so the state at start is known) and takes the newest sample before
    that too (the baseline of the first counter increment); it includes a sample at end_ms, whose increment counts.
    """
    gap = site.max_gap_ms(machine)
    lookback = start_ms - gap
    rows = store.telemetry(site.site.id, machine.id, lookback, end_ms + 1)
    older = store.rows(
        f"SELECT * FROM {TELEMETRY} WHERE site = {quote_literal(site.site.id)}"
        f" AND machine = {quote_literal(machine.id)} AND time < {int(lookback)}ms ORDER BY time DESC LIMIT 1"
    )
    statuses = store.statuses(site.site.id, machine.id, lookback, end_ms + 1)
    samples: list[tuple[int, Mapping[str, object]]] = [(r.ts_ms, r.fields) for r in [*older, *rows]]
    status_events = [(r.ts_ms, str(r.fields.get("status", ""))) for r in statuses]
    return build_timeline(samples, status_events, start_ms, end_ms, gap)
