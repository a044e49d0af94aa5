"""The edge agent: one coordinator task per machine, an outbox that keeps every batch until a collector commits
it, retained machine and agent status with a last will, and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.coordinator import MachineCoordinator
from edge_agent.delivery import Delivery, DeliveryOptions
from edge_agent.metrics import AgentMetrics, LatencyHistogram, MetricsServer, MetricsSource, make_health, serve_metrics
from edge_agent.outbox import DEFAULT_MAX_AGE_S, DEFAULT_MAX_BYTES, Outbox, OutboxError
from shopfloor.config import Machine, SiteConfig
from shopfloor.contracts import (
    MAX_HEARTBEAT_MS,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES_PER_BATCH,
    MAX_SIGNALS_PER_SAMPLE,
    LinkStatus,
    Sample,
    StatusMessage,
    TelemetryBatch,
    Topic,
    is_valid_id,
    printable,
)
from shopfloor.health import Transition
from shopfloor.modbus import EndpointPool, PlcReader
from shopfloor.mqtt import MqttLink, MqttSettings, Will
from shopfloor.reporting import MachineReporter

log = logging.getLogger(__name__)

STAT_KEYS = (
    "polls",
    "samples",
    "values_sent",
    "values_suppressed",
    "quiet_polls",
    "messages",
    "failures",
    "outages",
    "omitted_values",
    "skipped_ticks",
    "clock_errors",
    "dropped_samples",
    "status_messages",
    "mqtt_connects",
    "internal_errors",
)


def epoch_ms() -> int:
    """Return the current time in epoch milliseconds, UTC."""
    return time.time_ns() // 1_000_000


class AgentError(Exception):
    """The agent cannot start; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """How the agent publishes, how much its outbox may hold, and where its metrics are served."""

    publish_interval_s: float = 1.0
    max_batch_samples: int = 100
    heartbeat_s: float | None = None  # None: each machine's heartbeat_s from the site file
    outbox_max_bytes: int = DEFAULT_MAX_BYTES
    outbox_max_age_s: float = DEFAULT_MAX_AGE_S
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: no metrics server; 0: any free port

    def __post_init__(self) -> None:
        if not 0 < self.publish_interval_s <= 3600:
            raise ValueError(f"publish interval must be in (0, 3600] s, got {self.publish_interval_s!r}")
        if not 1 <= self.max_batch_samples <= MAX_SAMPLES_PER_BATCH:
            raise ValueError(f"max batch samples must be 1..{MAX_SAMPLES_PER_BATCH}, got {self.max_batch_samples!r}")
        if self.heartbeat_s is not None and not 1 <= self.heartbeat_s <= MAX_HEARTBEAT_MS / 1000:
            raise ValueError(f"heartbeat must be 1..{MAX_HEARTBEAT_MS // 1000} s, got {self.heartbeat_s!r}")
        if self.outbox_max_bytes < 64 * 1024:
            raise ValueError(f"outbox size limit must be at least 64 KiB, got {self.outbox_max_bytes!r} bytes")
        if not self.outbox_max_age_s >= 60:
            raise ValueError(f"outbox age limit must be at least 60 s, got {self.outbox_max_age_s!r}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics port must be 0..65535, got {self.metrics_port!r}")


def select_machines(site: SiteConfig, machine_ids: list[str] | None, agent_id: str | None = None) -> list[Machine]:
    """Return the machines to poll; raise ValueError naming unknown ids or machines another agent serves.

    When the site declares its agents, an agent polls the machines declared for it (collectors refuse the rest);
    otherwise every machine of the site, or the ones given.
    """
    served: list[str] | None = None
    if site.agents and agent_id is not None:
        declared = [a.id for a in site.agents]
        if agent_id not in declared:
            raise ValueError(
                f"agent id {agent_id!r} is not declared under agents: in site {site.site.id!r} "
                f"(declared: {', '.join(declared)}); collectors would refuse everything it sends"
            )
        served = site.machines_of(agent_id)
    if machine_ids is None:
        machine_ids = served
        if machine_ids is None:
            return list(site.machines)
    if not machine_ids:
        raise ValueError("no machine ids given; leave the list out to poll every machine of the site")
    unknown = [m for m in machine_ids if site.machine(m) is None]
    if unknown:
        known = ", ".join(m.id for m in site.machines)
        raise ValueError(
            f"unknown machine id(s) {', '.join(map(repr, unknown))} in site {site.site.id!r} (known: {known})"
        )
    if served is not None:
        foreign = [m for m in machine_ids if m not in served]
        if foreign:
            raise ValueError(
                f"machine(s) {', '.join(map(repr, foreign))} are not served by agent {agent_id!r} in the site's "
                f"agents: section (it serves: {', '.join(served) or 'nothing'})"
            )
    chosen = list(dict.fromkeys(machine_ids))
    return [m for m in site.machines if m.id in chosen]


class EdgeAgent:
    """Polls the site's machines and publishes their telemetry and status to MQTT, losing nothing."""

    def __init__(
        self,
        site: SiteConfig,
        agent_id: str,
        mqtt: MqttSettings,
        data_dir: Path,
        machine_ids: list[str] | None = None,
        *,
        options: AgentOptions | None = None,
        clock: Callable[[], int] = epoch_ms,
    ) -> None:
        if not is_valid_id(agent_id):
            raise ValueError(f"agent id {agent_id!r} is invalid: use 1-63 of a-z, 0-9 and '-', starting alphanumeric")
        self.site = site
        self.agent_id = agent_id
        self.mqtt = mqtt
        self.data_dir = Path(data_dir)
        self.options = options or AgentOptions()
        self.clock = clock
        self.machines = select_machines(site, machine_ids, agent_id)
        for machine in self.machines:
            profile = site.profile(machine.profile)
            if len(profile.registers) > MAX_SIGNALS_PER_SAMPLE:
                raise ValueError(
                    f"machine {machine.id!r}: profile {profile.model!r} maps {len(profile.registers)} signals, "
                    f"a sample carries at most {MAX_SIGNALS_PER_SAMPLE}"
                )
            heartbeat = self.heartbeat_s(machine)
            if heartbeat < machine.poll_interval_s:
                raise ValueError(
                    f"machine {machine.id!r}: heartbeat {heartbeat} s is shorter than its poll interval "
                    f"{machine.poll_interval_s} s"
                )
        self._stats: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._agent_topic = str(Topic.agent_status(site.site.id, agent_id))
        self._machine_status: dict[str, StatusMessage] = {}
        self._stop = asyncio.Event()
        self._outbox: Outbox | None = None
        self._link: MqttLink | None = None
        self._delivery: Delivery | None = None
        self._pending: list[tuple[str, str, list[Sample]]] = []
        self._flush_scheduled = False
        self._broker_down_since: float | None = time.monotonic()
        self.poll_duration = LatencyHistogram()
        self.poll_lateness = LatencyHistogram()
        self.metrics_port: int | None = None

    def heartbeat_s(self, machine: Machine) -> float:
        """The machine's heartbeat: the agent's option if given, else the site file's."""
        return self.options.heartbeat_s if self.options.heartbeat_s is not None else machine.heartbeat_s

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start: polls, samples, messages, failures and more."""
        return {key: self._stats[key] for key in STAT_KEYS}

    def stop(self) -> None:
        """Ask run() to finish: flush pending batches into the outbox, publish offline, disconnect."""
        self._stop.set()

    def _status_message(
        self, status: LinkStatus, ts: int, detail: str = "", machine: Machine | None = None
    ) -> StatusMessage:
        heartbeat = round(self.heartbeat_s(machine) * 1000) if machine is not None else None
        return StatusMessage(
            status=status, ts=ts, agent=self.agent_id, detail=printable(detail), heartbeat_ms=heartbeat
        )

    async def run(self) -> None:
        """Poll and publish until stop() is called."""
        loop = asyncio.get_running_loop()
        try:
            self._outbox = Outbox(
                self.data_dir,
                self.agent_id,
                max_bytes=self.options.outbox_max_bytes,
                max_age_s=self.options.outbox_max_age_s,
            )
        except OutboxError as exc:
            raise AgentError(str(exc)) from exc
        try:
            await self._serve(loop, self._outbox)
        finally:
            self._outbox.close()
            self._outbox = None
            self._stop.clear()
            log.info("agent %r: stopped (%s)", self.agent_id, self.stats)

    async def _serve(self, loop: asyncio.AbstractEventLoop, outbox: Outbox) -> None:
        # The broker fixes the will when we connect, so its ts is the start time; the collector stamps the will
        # with the time it received it.
        will = self._status_message(LinkStatus.OFFLINE, self.clock(), "connection lost (last will)")
        link = MqttLink(
            self.mqtt,
            f"shopfloor-agent-{self.site.site.id}-{self.agent_id}",
            will=Will(self._agent_topic, will.to_json(), qos=1, retain=True),
            persistent_session=True,
            on_connect=lambda: self._from_mqtt_thread(loop, self._announce),
        )
        self._link = link
        delivery = Delivery(outbox, link, self.agent_id, [self.site.site.id], options=self.options.delivery, loop=loop)
        self._delivery = delivery
        pool = EndpointPool()
        coordinators = [self._coordinator(m, outbox, pool) for m in self.machines]
        server = await self._start_metrics(coordinators)
        link.start()
        log.info(
            "agent %r: polling %d machine(s) of site %r, publishing to %s%s",
            self.agent_id,
            len(self.machines),
            self.site.site.id,
            self.mqtt,
            f", metrics on http://{self.options.metrics_host}:{self.metrics_port}/metrics" if server else "",
        )
        tasks = [asyncio.create_task(c.run(self.clock), name=f"poll-{c.machine.id}") for c in coordinators]
        tasks.append(asyncio.create_task(delivery.run(), name="delivery"))
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for coordinator in coordinators:
                coordinator.reporter.flush()
            self._flush_pending()
            pool.close()
            if server is not None:
                await server.close()
            offline = self._status_message(LinkStatus.OFFLINE, self.clock(), "stopped")
            # stop() waits for the broker's PUBACK of the final status: keep the event loop free meanwhile.
            await asyncio.to_thread(link.stop, (self._agent_topic, offline.to_json()))
            self._link = None
            self._delivery = None

    def _coordinator(self, machine: Machine, outbox: Outbox, pool: EndpointPool) -> MachineCoordinator:
        reporter = MachineReporter(
            machine,
            self.site.profile(machine.profile),
            self,
            publish_interval_s=max(self.options.publish_interval_s, machine.poll_interval_s),
            max_batch_samples=self.options.max_batch_samples,
            heartbeat_s=self.heartbeat_s(machine),
            offsets=outbox.offsets(self.site.site.id, machine.id),
            stats=self._stats,
        )
        endpoint = pool.get(machine.host, machine.port, machine.request_delay_s)
        reader = PlcReader(endpoint, machine.unit_id, machine.timeout_s)
        return MachineCoordinator(reporter, reader, self._errors, self)

    async def _start_metrics(self, coordinators: list[MachineCoordinator]) -> MetricsServer | None:
        if self.options.metrics_port is None:
            return None
        links = {c.machine.id: c.reporter.link for c in coordinators}

        def machines_up() -> Mapping[str, bool]:
            return {m: t.status is LinkStatus.ONLINE for m, t in links.items() if t.status is not None}

        source = MetricsSource(
            counters=self._counters,
            poll_errors=lambda: self._errors,
            gauges=self._gauges,
            machines_up=machines_up,
            poll_duration=self.poll_duration,
            poll_lateness=self.poll_lateness,
        )
        metrics = AgentMetrics(source, agent_id=self.agent_id, site_id=self.site.site.id)
        try:
            server = await serve_metrics(
                self.options.metrics_host,
                self.options.metrics_port,
                metrics,
                make_health(self._broker_down_s, machines_up),
            )
        except OSError as exc:
            raise AgentError(
                f"cannot serve metrics on {self.options.metrics_host}:{self.options.metrics_port} ({exc}); "
                "choose another --metrics-port"
            ) from exc
        self.metrics_port = server.port
        return server

    def _counters(self) -> Mapping[str, int]:
        d = self._delivery.stats if self._delivery is not None else {}
        return {
            "polls": self._stats["polls"],
            "samples_sent": self._stats["samples"],
            "values_sent": self._stats["values_sent"],
            "values_suppressed": self._stats["values_suppressed"],
            "batches_sent": int(d.get("published", 0)),
            "reconnects": int(d.get("reconnects", 0)),
            "refused_publishes": int(d.get("refused_publishes", 0)),
            "resent": int(d.get("resent", 0)),
            "dropped_batches": int(d.get("dropped_batches", 0)),
            "dropped_samples": int(d.get("dropped_samples", 0)),
        }

    def _gauges(self) -> Mapping[str, float]:
        d = self._delivery.stats if self._delivery is not None else {}
        return {
            "outbox_depth": float(d.get("depth", 0)),
            "outbox_bytes": float(d.get("bytes", 0)),
            "outbox_oldest_age_seconds": float(d.get("oldest_age_s", 0)),
            "mqtt_connected": 1.0 if self._link is not None and self._link.connected else 0.0,
        }

    def _broker_down_s(self) -> float | None:
        """How long the broker has been out of reach (None: connected)."""
        if self._link is not None and self._link.connected:
            self._broker_down_since = None
            return None
        if self._broker_down_since is None:
            self._broker_down_since = time.monotonic()
        return time.monotonic() - self._broker_down_since

    # Timings for the coordinators.
    def poll(self, latency_s: float, jitter_s: float) -> None:
        """Record one poll's read latency and how late it started."""
        self.poll_duration.observe(latency_s)
        self.poll_lateness.observe(jitter_s)

    @staticmethod
    def _from_mqtt_thread(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        # paho calls back on its own thread; agent state belongs to the event loop.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback)

    def _announce(self) -> None:
        """Publish online for the agent and the current status of every machine (after each connect)."""
        link = self._link
        if link is None:
            return
        self._broker_down_since = None
        self._stats["mqtt_connects"] += 1
        online = self._status_message(LinkStatus.ONLINE, self.clock())
        link.publish(self._agent_topic, online.to_json(), qos=1, retain=True)
        for machine_id, message in self._machine_status.items():
            self._publish_status(machine_id, message)

    def _publish_status(self, machine_id: str, message: StatusMessage) -> None:
        if self._link is None or not self._link.connected:
            return  # announced again after the next connect
        topic = str(Topic.machine_status(self.site.site.id, machine_id))
        self._link.publish(topic, message.to_json(), qos=1, retain=True)
        self._stats["status_messages"] += 1

    # Sink for the reporters.
    def status(self, machine: Machine, transition: Transition) -> None:
        """Publish machine's new link status, retained, and remember it for reconnects."""
        message = self._status_message(transition.status, transition.ts, transition.detail, machine)
        self._machine_status[machine.id] = message
        self._publish_status(machine.id, message)

    def samples(self, machine: Machine, samples: list[Sample]) -> None:
        """Queue samples to be sealed into the outbox; batches due in one loop iteration share one transaction."""
        for part in _split(samples):
            self._pending.append((self.site.site.id, machine.id, part))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_pending)

    def offset(self, machine: Machine, signal: str, value: float) -> None:
        """Persist a counter's unwrap offset, so the value keeps rising across agent restarts."""
        if self._outbox is not None:
            try:
                self._outbox.set_offset(self.site.site.id, machine.id, signal, value)
            except OutboxError as exc:
                log.error("machine %r: cannot persist the wrap offset of %r (%s)", machine.id, signal, exc)

    def _flush_pending(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self._delivery is None:
            self._stats["dropped_samples"] += sum(len(p[2]) for p in pending)
            return
        sealed = self._delivery.submit_many(pending)
        self._stats["messages"] += len(sealed)
        if len(sealed) < len(pending):
            self._stats["dropped_samples"] += sum(len(p[2]) for p in pending) - sum(s.n_samples for s in sealed)


def _split(samples: list[Sample]) -> list[list[Sample]]:
    """Cut samples into parts whose batches fit the payload limit."""
    # The common case is far below the limit: an upper bound of the JSON size settles it without serialising.
    bound = 400 + sum(
        40 + sum(len(k) + 8 + (len(v) * 6 if isinstance(v, str) else 24) for k, v in s.values.items())
        for s in samples
    )
    if bound <= MAX_PAYLOAD_BYTES:
        return [samples]
    probe = TelemetryBatch(v=1, agent="a", site="s", machine="m", seq=2**63 - 1, samples=samples)
    # Ids are at most 63 characters each; leave room for them on top of the probe's size.
    if len(probe.to_json()) + 3 * 63 <= MAX_PAYLOAD_BYTES or len(samples) == 1:
        return [samples]
    half = len(samples) // 2
    return _split(samples[:half]) + _split(samples[half:])
