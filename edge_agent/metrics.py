"""Prometheus metrics and a health endpoint for the edge agent, at near-zero cost on the poll path.

Nothing here runs per poll but `LatencyHistogram.observe` (a bisect and two additions). The agent keeps plain
counters (a `collections.Counter`, as it already does) and `AgentMetrics`, a custom collector, reads them only
when Prometheus scrapes. `serve_metrics` serves `/metrics` and `/healthz` from the agent's own event loop, so a
scrape reads the counters on the thread that writes them (no locks), and a wedged loop fails its health check.
The histogram and the HTTP server are shared with the collector: they live in `shopfloor.metrics` (their names
are re-exported here); this module holds what is the agent's own.

Provider interface: `MetricsSource`, a frozen dataclass of zero-argument callables (each called once per scrape,
on the event loop; return the live objects, they are copied) and histogram objects. Every field is optional:

- `counters() -> Mapping[str, int]`: keys of `COUNTERS` (`polls`, `samples_sent`, `values_sent`,
  `values_suppressed`, `batches_sent`, `reconnects`, `refused_publishes`, `resent`, `dropped_batches`,
  `dropped_samples`); a missing key reads 0, other keys are ignored. Exported as `shopfloor_agent_<key>_total`.
- `poll_errors() -> Mapping[str, int]`: failed polls by kind (`POLL_ERROR_KINDS`: timeout, refused, exception,
  bad_reply, decode, internal; other kinds are exported too, so keep them few).
  Exported as `shopfloor_agent_poll_errors_total{kind=...}`.
- `gauges() -> Mapping[str, float]`: keys of `GAUGES` (`outbox_depth`, `outbox_bytes`,
  `outbox_oldest_age_seconds`, `machines_online`, `machines_unreachable`, `mqtt_connected`); a missing key is
  not exported, except `machines_online`/`machines_unreachable`, which are then counted from `machines_up`.
- `machines_up() -> Mapping[str, bool]`: link status per machine id, for machines polled at least once.
  Exported as `shopfloor_agent_machine_up{machine=...}` 1/0 (the only per-machine series).
- `poll_duration`, `poll_lateness`: `LatencyHistogram`s the agent observes into (seconds a poll's reads took;
  seconds a poll started after its scheduled tick). Exported as `shopfloor_agent_poll_duration_seconds` and
  `shopfloor_agent_poll_lateness_seconds`.

Wiring, in the agent (sketch):

    metrics = AgentMetrics(
        MetricsSource(counters=lambda: self._stats, poll_errors=lambda: self._poll_errors,
                      gauges=self._gauges, machines_up=self._machines_up,
                      poll_duration=self.poll_duration, poll_lateness=self.poll_lateness),
        agent_id=self.agent_id, site_id=self.site.site.id)
    health = make_health(broker_down_s=self._broker_down_s, machines_up=self._machines_up)
    server = await serve_metrics("0.0.0.0", port, metrics, health)  # port 0: server.port is the bound one
    ...
    await server.close()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from shopfloor.metrics import (
    DEFAULT_BUCKETS,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    HealthCheck,
    LatencyHistogram,
    MetricsServer,
    histogram_family,
)
from shopfloor.metrics import serve_metrics as _serve_metrics

PREFIX: Final = "shopfloor_agent_"

COUNTERS: Final[tuple[tuple[str, str], ...]] = (
    ("polls", "Device polls attempted, successful or not."),
    ("samples_sent", "Samples sealed into telemetry batches."),
    ("values_sent", "Signal values carried by the samples sent."),
    ("values_suppressed", "Signal values polled but not sent: unchanged within their deadband (report by exception)."),
    ("batches_sent", "Telemetry batches published for the first time (resends are counted in resent)."),
    ("reconnects", "Connections to the MQTT broker made again after a lost connection."),
    ("refused_publishes", "Publishes the MQTT client refused (not connected, or its queue full); kept in the outbox."),
    ("resent", "Telemetry batches published again: no collector commit in time, or after a reconnect."),
    ("dropped_batches", "Telemetry batches dropped from the outbox uncommitted (outbox bounds on bytes or age)."),
    ("dropped_samples", "Samples dropped before or in the outbox; their time shows as UNKNOWN downstream."),
)

POLL_ERROR_KINDS: Final = ("timeout", "refused", "exception", "bad_reply", "decode", "internal")

GAUGES: Final[tuple[tuple[str, str], ...]] = (
    ("outbox_depth", "Telemetry batches in the outbox, not yet committed by a collector."),
    ("outbox_bytes", "Bytes of the telemetry batches in the outbox."),
    ("outbox_oldest_age_seconds", "Age of the oldest uncommitted batch in the outbox (0 when empty)."),
    ("machines_online", "Machines whose last poll succeeded."),
    ("machines_unreachable", "Machines whose last poll failed."),
    ("mqtt_connected", "1 while the agent is connected to the MQTT broker, else 0."),
)


def _no_values() -> Mapping[str, int]:
    return {}


def _no_gauges() -> Mapping[str, float]:
    return {}


def _no_machines() -> Mapping[str, bool]:
    return {}


@dataclass(frozen=True, slots=True)
class MetricsSource:
    """Where AgentMetrics reads the agent's figures at scrape time (see the module docstring)."""

    counters: Callable[[], Mapping[str, int]] = _no_values
    poll_errors: Callable[[], Mapping[str, int]] = _no_values
    gauges: Callable[[], Mapping[str, float]] = _no_gauges
    machines_up: Callable[[], Mapping[str, bool]] = _no_machines
    poll_duration: LatencyHistogram | None = None
    poll_lateness: LatencyHistogram | None = None


class AgentMetrics:
    """A Prometheus collector over a MetricsSource, in a registry of its own (not the global one)."""

    def __init__(self, source: MetricsSource, *, agent_id: str, site_id: str, process: bool = True) -> None:
        self.source = source
        self.agent_id = agent_id
        self.site_id = site_id
        self.registry = CollectorRegistry()
        self.registry.register(self)
        if process:
            # process_cpu_seconds_total, process_resident_memory_bytes, ...: read from /proc at scrape time.
            ProcessCollector(registry=self.registry)

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family, read from the source now."""
        src = self.source
        info = GaugeMetricFamily(PREFIX + "info", "The agent's identity; always 1.", labels=["agent", "site"])
        info.add_metric([self.agent_id, self.site_id], 1)
        yield info

        counters = dict(src.counters())
        for key, help_text in COUNTERS:
            yield CounterMetricFamily(PREFIX + key, help_text, value=counters.get(key, 0))

        errors = dict(src.poll_errors())
        family = CounterMetricFamily(PREFIX + "poll_errors", "Failed polls by kind of error.", labels=["kind"])
        for kind in (*POLL_ERROR_KINDS, *sorted(set(errors) - set(POLL_ERROR_KINDS))):
            family.add_metric([kind], errors.get(kind, 0))
        yield family

        machines = dict(src.machines_up())
        gauges = dict(src.gauges())
        gauges.setdefault("machines_online", sum(1 for up in machines.values() if up))
        gauges.setdefault("machines_unreachable", sum(1 for up in machines.values() if not up))
        for key, help_text in GAUGES:
            if key in gauges:
                yield GaugeMetricFamily(PREFIX + key, help_text, value=gauges[key])
        up = GaugeMetricFamily(
            PREFIX + "machine_up", "1 if the machine's last poll succeeded, 0 if it failed.", labels=["machine"]
        )
        for machine_id in sorted(machines):
            up.add_metric([machine_id], 1 if machines[machine_id] else 0)
        yield up

        for name, help_text, histogram in (
            ("poll_duration_seconds", "Time a poll's register reads took, failed polls included.", src.poll_duration),
            ("poll_lateness_seconds", "How late a poll started after its scheduled tick.", src.poll_lateness),
        ):
            if histogram is not None:
                yield histogram_family(PREFIX + name, help_text, histogram)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Render the registry for an Accept header (text format, or OpenMetrics if asked); return (body, type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


# ---- health ---------------------------------------------------------------------------------------------------


def assess_health(
    broker_down_s: float | None,
    machines_up: Mapping[str, bool],
    *,
    max_broker_down_s: float = 60.0,
) -> tuple[bool, dict[str, object]]:
    """Judge the agent: unhealthy if the broker has been lost too long or every machine polled is unreachable.

    broker_down_s is None while connected, else seconds since the connection was lost (or since start, if it
    never connected). Machines not polled yet are left out of machines_up and do not count either way.
    """
    online = sum(1 for up in machines_up.values() if up)
    details: dict[str, object] = {
        "mqtt_connected": broker_down_s is None,
        "machines_online": online,
        "machines_unreachable": len(machines_up) - online,
    }
    reasons = []
    if broker_down_s is not None:
        details["mqtt_down_seconds"] = round(broker_down_s, 1)
        if broker_down_s > max_broker_down_s:
            reasons.append(f"MQTT broker unreachable for {broker_down_s:.0f} s (limit {max_broker_down_s:g} s)")
    if machines_up and not online:
        reasons.append(f"all {len(machines_up)} machine(s) unreachable")
    if reasons:
        details["reason"] = "; ".join(reasons)
    return not reasons, details


def make_health(
    broker_down_s: Callable[[], float | None],
    machines_up: Callable[[], Mapping[str, bool]],
    *,
    max_broker_down_s: float = 60.0,
) -> HealthCheck:
    """Return a health check for serve_metrics that applies assess_health to the agent's live state."""

    def check() -> tuple[bool, Mapping[str, object]]:
        return assess_health(broker_down_s(), machines_up(), max_broker_down_s=max_broker_down_s)

    return check


async def serve_metrics(
    host: str,
    port: int,
    metrics: AgentMetrics,
    health: HealthCheck,
    *,
    head_timeout_s: float = 5.0,
    write_timeout_s: float = 10.0,
    max_connections: int = 16,
) -> MetricsServer:
    """Serve the agent's /metrics and /healthz on host:port from the running event loop (see shopfloor.metrics)."""
    return await _serve_metrics(
        host,
        port,
        metrics,
        health,
        head_timeout_s=head_timeout_s,
        write_timeout_s=write_timeout_s,
        max_connections=max_connections,
        component="edge agent",
    )


__all__ = [
    "COUNTERS",
    "DEFAULT_BUCKETS",
    "GAUGES",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "POLL_ERROR_KINDS",
    "AgentMetrics",
    "HealthCheck",
    "LatencyHistogram",
    "MetricsServer",
    "MetricsSource",
    "assess_health",
    "make_health",
    "serve_metrics",
]
