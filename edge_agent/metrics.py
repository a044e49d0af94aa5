"""Prometheus metrics and a health endpoint for the edge agent, at near-zero cost on the poll path.

Nothing here runs per poll but `LatencyHistogram.observe` (a bisect and two additions). The agent keeps plain
counters (a `collections.Counter`, as it already does) and `AgentMetrics`, a custom collector, reads them only
when Prometheus scrapes. `serve_metrics` serves `/metrics` and `/healthz` from the agent's own event loop, so a
scrape reads the counters on the thread that writes them (no locks), and a wedged loop fails its health check.

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

import asyncio
import json
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

PREFIX: Final = "shopfloor_agent_"

# Poll duration and start lateness, seconds: a PLC answers in ms; 1 s and above is a stall or a timeout.
DEFAULT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

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


class LatencyHistogram:
    """Counts observations (seconds) in fixed buckets with plain ints; cheap enough for every poll."""

    __slots__ = ("_counts", "_sum", "bounds")

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(b != b or b == float("inf") for b in bounds):
            raise ValueError(f"histogram buckets must be finite numbers, at least one; got {buckets!r}")
        if any(a >= b for a, b in pairwise(bounds)):
            raise ValueError(f"histogram buckets must increase strictly; got {buckets!r}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation; a value equal to a bound falls in that bound's bucket (le is inclusive)."""
        self._counts[bisect_left(self.bounds, seconds)] += 1
        self._sum += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """Return (upper bound, observations <= bound) per bucket, ending with (+Inf, count)."""
        counts = list(self._counts)  # one copy, so a concurrent observe cannot make buckets disagree
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self._counts)

    @property
    def sum(self) -> float:
        """Sum of the observations so far, in seconds."""
        return self._sum


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
                yield _histogram_family(PREFIX + name, help_text, histogram)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Render the registry for an Accept header (text format, or OpenMetrics if asked); return (body, type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def _histogram_family(name: str, help_text: str, histogram: LatencyHistogram) -> HistogramMetricFamily:
    buckets = [("+Inf" if bound == float("inf") else repr(bound), n) for bound, n in histogram.cumulative()]
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=histogram.sum)


# ---- health ---------------------------------------------------------------------------------------------------

HealthCheck = Callable[[], tuple[bool, Mapping[str, object]]]


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


# ---- HTTP -----------------------------------------------------------------------------------------------------

MAX_HEAD_BYTES: Final = 8192
MAX_HEADERS: Final = 64
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    extra: tuple[tuple[str, str], ...] = ()


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class MetricsServer:
    """A running /metrics and /healthz endpoint on the event loop; close() stops it and its connections."""

    def __init__(
        self,
        metrics: AgentMetrics,
        health: HealthCheck,
        *,
        head_timeout_s: float,
        write_timeout_s: float,
        max_connections: int,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.head_timeout_s = head_timeout_s
        self.write_timeout_s = write_timeout_s
        self.max_connections = max_connections
        self.host = ""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._failing: set[str] = set()  # what is failing now, so each failure is logged once

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0: any free port; self.port is the bound one)."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD_BYTES)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info("agent metrics: serving http://%s:%d/metrics and /healthz", self.host, self.port)

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        if len(self._connections) > self.max_connections:
            # Shed load: every slot is taken, maybe by slow clients.
            self._connections.discard(task)
            writer.transport.abort()
            return
        try:
            try:
                # One deadline for the whole head: a client dripping a byte a second cannot hold a slot longer.
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout_s)
                method, path, headers = _parse_head(head)
                response = self._respond(method, path, headers)
            except TimeoutError:
                response, method = _text(408, "request head not complete in time\n"), "GET"
            except asyncio.LimitOverrunError:
                response, method = _text(431, f"request head over {MAX_HEAD_BYTES} bytes\n"), "GET"
            except asyncio.IncompleteReadError:
                return  # the client went away mid-request
            except _BadRequest as exc:
                response, method = _text(exc.status, f"{exc}\n"), "GET"
            await self._send(writer, response, head_only=method == "HEAD")
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                # Let the transport hand the rest of the response to the kernel, but not for ever.
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (Exception, asyncio.CancelledError):
                writer.transport.abort()

    async def _send(self, writer: asyncio.StreamWriter, response: _Response, *, head_only: bool) -> None:
        lines = [
            f"HTTP/1.1 {response.status} {_REASONS[response.status]}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{k}: {v}" for k, v in response.extra),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(response.body)
        await asyncio.wait_for(writer.drain(), self.write_timeout_s)

    def _respond(self, method: str, path: str, headers: Mapping[str, str]) -> _Response:
        if method not in ("GET", "HEAD"):
            return _Response(405, b"only GET and HEAD\n", extra=(("Allow", "GET, HEAD"),))
        if path == "/metrics":
            try:
                body, content_type = self.metrics.exposition(headers.get("accept", ""))
            except Exception as exc:
                self._failed("metrics", "agent metrics: collecting metrics failed; /metrics answers 500", exc)
                return _text(500, f"collecting metrics failed: {type(exc).__name__}: {exc}\n")
            self._recovered("metrics", "agent metrics: collecting metrics works again")
            return _Response(200, body, content_type)
        if path == "/healthz":
            return self._healthz()
        if path == "/":
            return _text(200, "shopfloor edge agent: /metrics (Prometheus), /healthz\n")
        return _text(404, "not found; try /metrics or /healthz\n")

    def _healthz(self) -> _Response:
        try:
            ok, details = self.health()
            payload = {"status": "ok" if ok else "unhealthy", **{k: v for k, v in details.items() if k != "status"}}
            body = json.dumps(payload, default=str).encode()
        except Exception as exc:
            self._failed("health", "agent metrics: the health check failed; /healthz answers 503", exc)
            ok, body = False, json.dumps({"status": "error", "reason": f"health check failed: {exc!r}"}).encode()
        else:
            self._recovered("health", "agent metrics: the health check works again")
        return _Response(200 if ok else 503, body, "application/json")

    def _failed(self, what: str, message: str, exc: Exception) -> None:
        if what not in self._failing:
            self._failing.add(what)
            log.error("%s (%s: %s)", message, type(exc).__name__, exc, exc_info=exc)

    def _recovered(self, what: str, message: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info(message)


def _text(status: int, text: str) -> _Response:
    return _Response(status, text.encode())


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Split a request head into (method, path without query, lower-cased headers); raise _BadRequest."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise _BadRequest(400, "malformed request line; expected e.g. 'GET /metrics HTTP/1.1'")
    if len(lines) - 1 > MAX_HEADERS:
        raise _BadRequest(431, f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, "malformed header line")
        headers[name.lower()] = value.strip()
    return parts[0], parts[1].partition("?")[0], headers


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
    """Serve /metrics and /healthz on host:port from the running event loop; return the started server."""
    server = MetricsServer(
        metrics,
        health,
        head_timeout_s=head_timeout_s,
        write_timeout_s=write_timeout_s,
        max_connections=max_connections,
    )
    await server.start(host, port)
    return server


__all__ = [
    "COUNTERS",
    "DEFAULT_BUCKETS",
    "GAUGES",
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
