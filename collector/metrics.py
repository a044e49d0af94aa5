"""Prometheus metrics and a health check for the collector, read from its counters only when scraped.

The collector keeps plain counters under its own locks (`Collector.metrics_snapshot()` copies them); the only
work on the message path is `SeqTracker.observe` (a dict lookup) and one `LatencyHistogram.observe` per batch
written. `CollectorMetrics` turns a snapshot into metric families; `assess_health` judges it. Both are served by
`shopfloor.metrics.ThreadedMetricsServer` (`/metrics`, `/healthz`).

Exported (prefix `shopfloor_collector_`): counters `messages_received`, `messages_written`, `samples_written`,
`batches_written`, `write_retries`, `store_failures`, `acked`, `commits_published`, `pauses`, `deferred`,
`dead_letters{reason}`, `seq_gaps{site,agent}`, `duplicates{site,agent}`; gauges `queue_messages`,
`queue_points`, `paused`, `mqtt_connected`, `store_down_seconds`; histogram `write_duration_seconds`; and the
process collector's `process_*` series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from shopfloor.metrics import LatencyHistogram, ThreadedMetricsServer, histogram_family

if TYPE_CHECKING:
    from collector.service import Collector

PREFIX: Final = "shopfloor_collector_"

# One batch write to the store: a few ms when well; seconds mean a slow or struggling store (or retries).
WRITE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

COUNTERS: Final[tuple[tuple[str, str], ...]] = (
    ("messages_received", "MQTT messages received (valid or not, paused deferrals not included)."),
    ("messages_written", "Messages whose points the store accepted."),
    ("samples_written", "Points (samples and statuses) the store accepted."),
    ("batches_written", "Batches written to the store (one or more write requests each)."),
    ("write_retries", "Write attempts retried after the store was unavailable."),
    ("store_failures", "Write attempts that failed because the store was unavailable or unusable."),
    ("acked", "MQTT messages acknowledged to the broker."),
    ("commits_published", "Commit messages published to agents."),
    ("pauses", "Times the collector stopped taking messages because its queue was full."),
    ("deferred", "Messages received while paused: not acked, redelivered by the broker after the resume."),
)

GAUGES: Final[tuple[tuple[str, str], ...]] = (
    ("queue_messages", "Messages held in memory (queued or being written), not yet acked."),
    ("queue_points", "Points held in memory (queued or being written)."),
    ("paused", "1 while the collector takes no messages (queue full), else 0."),
    ("mqtt_connected", "1 while connected to the MQTT broker, else 0."),
    ("store_down_seconds", "Seconds since the store became unreachable (0 while it answers)."),
)


class SeqTracker:
    """Per (site, agent, machine), the highest seq seen; counts jumps (seq gaps) and repeats (duplicates).

    With a shared subscription each replica sees only part of the stream, so gaps are normal there; duplicates
    are resent batches (no commit in time, a reconnect) or broker redeliveries. Keys come only from messages
    that passed validation, so their number is bounded by the site registry.
    """

    __slots__ = ("_duplicates", "_gaps", "_last")

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str], int] = {}
        self._gaps: Counter[tuple[str, str]] = Counter()
        self._duplicates: Counter[tuple[str, str]] = Counter()

    def observe(self, site: str, agent: str, machine: str, seq: int) -> None:
        """Record one telemetry batch's seq."""
        key = (site, agent, machine)
        last = self._last.get(key)
        if last is None or seq > last:
            if last is not None and seq > last + 1:
                self._gaps[(site, agent)] += 1
            self._last[key] = seq
        else:
            self._duplicates[(site, agent)] += 1

    def gaps(self) -> dict[tuple[str, str], int]:
        """Seq jumps larger than one, per (site, agent)."""
        return dict(self._gaps)

    def duplicates(self) -> dict[tuple[str, str], int]:
        """Seqs at or below one already seen, per (site, agent)."""
        return dict(self._duplicates)


@dataclass(frozen=True, slots=True)
class CollectorSnapshot:
    """The collector's figures at one moment (see the module docstring for what each becomes)."""

    counters: Mapping[str, int] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)
    dead_letters: Mapping[str, int] = field(default_factory=dict)
    seq_gaps: Mapping[tuple[str, str], int] = field(default_factory=dict)
    duplicates: Mapping[tuple[str, str], int] = field(default_factory=dict)
    store_down_s: float | None = None  # None while the store answers
    broker_down_s: float | None = None  # None while connected (a pause's reconnect is not counted)


class CollectorMetrics:
    """A Prometheus collector over a snapshot function, in a registry of its own."""

    def __init__(
        self,
        snapshot: Callable[[], CollectorSnapshot],
        write_duration: LatencyHistogram,
        *,
        client_id: str,
        process: bool = True,
    ) -> None:
        self.snapshot = snapshot
        self.write_duration = write_duration
        self.client_id = client_id
        self.registry = CollectorRegistry()
        self.registry.register(self)
        if process:
            ProcessCollector(registry=self.registry)

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family, read from a fresh snapshot."""
        snap = self.snapshot()
        info = GaugeMetricFamily(PREFIX + "info", "The collector's identity; always 1.", labels=["client_id"])
        info.add_metric([self.client_id], 1)
        yield info
        for key, help_text in COUNTERS:
            yield CounterMetricFamily(PREFIX + key, help_text, value=snap.counters.get(key, 0))
        dead = CounterMetricFamily(
            PREFIX + "dead_letters", "Messages refused (acked, never written), by reason.", labels=["reason"]
        )
        for reason in sorted(snap.dead_letters):
            dead.add_metric([reason], snap.dead_letters[reason])
        yield dead
        for name, help_text, values in (
            ("seq_gaps", "Seq jumps larger than one seen by this replica, per agent.", snap.seq_gaps),
            ("duplicates", "Telemetry seqs seen again by this replica, per agent.", snap.duplicates),
        ):
            family = CounterMetricFamily(PREFIX + name, help_text, labels=["site", "agent"])
            for (site, agent), n in sorted(values.items()):
                family.add_metric([site, agent], n)
            yield family
        for key, help_text in GAUGES:
            if key in snap.gauges:
                yield GaugeMetricFamily(PREFIX + key, help_text, value=snap.gauges[key])
        yield histogram_family(
            PREFIX + "write_duration_seconds",
            "Time to write one batch to the store, retries included.",
            self.write_duration,
        )

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Render the registry for an Accept header; return (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def assess_health(snap: CollectorSnapshot, *, unhealthy_after_s: float = 60.0) -> tuple[bool, dict[str, object]]:
    """Judge the collector: unhealthy once the store or the broker has been unreachable longer than the limit."""
    details: dict[str, object] = {
        "mqtt_connected": snap.broker_down_s is None,
        "store_reachable": snap.store_down_s is None,
        "paused": bool(snap.gauges.get("paused", 0)),
        "queue_points": snap.gauges.get("queue_points", 0),
    }
    reasons = []
    for what, down in (("time-series store", snap.store_down_s), ("MQTT broker", snap.broker_down_s)):
        if down is None:
            continue
        details[f"{'store' if what.startswith('time') else 'mqtt'}_down_seconds"] = round(down, 1)
        if down > unhealthy_after_s:
            reasons.append(f"{what} unreachable for {down:.0f} s (limit {unhealthy_after_s:g} s)")
    if reasons:
        details["reason"] = "; ".join(reasons)
    return not reasons, details


def start_metrics_server(
    collector: Collector, host: str, port: int, *, unhealthy_after_s: float = 60.0
) -> ThreadedMetricsServer:
    """Serve the collector's /metrics and /healthz on host:port (0: any free port) from a thread of its own."""
    metrics = CollectorMetrics(collector.metrics_snapshot, collector.write_duration, client_id=collector.client_id)

    def health() -> tuple[bool, Mapping[str, object]]:
        return assess_health(collector.metrics_snapshot(), unhealthy_after_s=unhealthy_after_s)

    server = ThreadedMetricsServer(metrics, health, component="collector")
    server.start(host, port)
    return server


__all__ = [
    "COUNTERS",
    "GAUGES",
    "WRITE_BUCKETS",
    "CollectorMetrics",
    "CollectorSnapshot",
    "SeqTracker",
    "assess_health",
    "start_metrics_server",
]
