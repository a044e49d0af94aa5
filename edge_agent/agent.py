"""The edge agent: one coordinator task per machine, batches to MQTT with seq, retained status and last will."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.batcher import Batcher, samples_per_batch
from edge_agent.coordinator import MachineCoordinator
from edge_agent.health import Transition
from edge_agent.outbox import Outbox
from shopfloor.config import Machine, SiteConfig
from shopfloor.contracts import (
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES_PER_BATCH,
    MAX_SIGNALS_PER_SAMPLE,
    LinkStatus,
    Sample,
    StatusMessage,
    TelemetryBatch,
    Topic,
    is_valid_id,
)
from shopfloor.mqtt import MqttLink, MqttSettings, Will

log = logging.getLogger(__name__)

STAT_KEYS = (
    "polls",
    "samples",
    "messages",
    "failures",
    "outages",
    "omitted_values",
    "empty_polls",
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
    """Tuning of publishing; None for publish_interval_s means one message per poll."""

    publish_interval_s: float | None = None
    max_batch_samples: int = 100

    def __post_init__(self) -> None:
        if self.publish_interval_s is not None and not 0 < self.publish_interval_s <= 3600:
            raise ValueError(f"publish interval must be in (0, 3600] s, got {self.publish_interval_s!r}")
        if not 1 <= self.max_batch_samples <= MAX_SAMPLES_PER_BATCH:
            raise ValueError(f"max batch samples must be 1..{MAX_SAMPLES_PER_BATCH}, got {self.max_batch_samples!r}")


def select_machines(site: SiteConfig, machine_ids: list[str] | None) -> list[Machine]:
    """Return the machines to poll; raise ValueError naming unknown ids."""
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
    chosen = list(dict.fromkeys(machine_ids))
    return [m for m in site.machines if m.id in chosen]


class EdgeAgent:
    """Polls the site's machines and publishes their telemetry and status to MQTT."""

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
        self.machines = select_machines(site, machine_ids)
        for machine in self.machines:
            profile = site.profile(machine.profile)
            if len(profile.registers) > MAX_SIGNALS_PER_SAMPLE:
                raise ValueError(
                    f"machine {machine.id!r}: profile {profile.model!r} maps {len(profile.registers)} signals, "
                    f"a sample carries at most {MAX_SIGNALS_PER_SAMPLE}"
                )
        self._stats: Counter[str] = Counter()
        self.coordinators = [self._coordinator(m) for m in self.machines]
        self._agent_topic = str(Topic.agent_status(site.site.id, agent_id))
        self._machine_status: dict[str, StatusMessage] = {}
        self._stop = asyncio.Event()
        self._outbox: Outbox | None = None
        self._link: MqttLink | None = None

    def _coordinator(self, machine: Machine) -> MachineCoordinator:
        publish_s = self.options.publish_interval_s or machine.poll_interval_s
        max_samples = self.options.max_batch_samples
        batcher = Batcher(
            samples_per_batch(publish_s, machine.poll_interval_s, max_samples),
            round(publish_s * 1000),
            max_samples,
        )
        return MachineCoordinator(machine, self.site.profile(machine.profile), batcher, self, self._stats)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start: polls, samples, messages, failures and more."""
        return {key: self._stats[key] for key in STAT_KEYS}

    def stop(self) -> None:
        """Ask run() to finish: flush pending batches, publish offline, disconnect."""
        self._stop.set()

    def _status_message(self, status: LinkStatus, ts: int, detail: str = "") -> StatusMessage:
        return StatusMessage(status=status, ts=ts, agent=self.agent_id, detail=detail)

    async def run(self) -> None:
        """Poll and publish until stop() is called."""
        loop = asyncio.get_running_loop()
        try:
            self._outbox = Outbox(self.data_dir, self.agent_id)
        except Exception as exc:
            raise AgentError(str(exc)) from exc
        try:
            await self._serve(loop)
        finally:
            self._outbox.close()
            self._outbox = None
            self._stop.clear()
            log.info("agent %r: stopped (%s)", self.agent_id, self.stats)

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        # The broker fixes the will when we connect, so its ts is the start time; the retained message
        # then says since when the agent was last connected, and the broker logs when it fired.
        will = self._status_message(LinkStatus.OFFLINE, self.clock(), "connection lost (last will)")
        link = MqttLink(
            self.mqtt,
            f"shopfloor-agent-{self.site.site.id}-{self.agent_id}",
            will=Will(self._agent_topic, will.to_json(), qos=1, retain=True),
            on_connect=lambda: self._from_mqtt_thread(loop, self._announce),
        )
        self._link = link
        link.start()
        log.info(
            "agent %r: polling %d machine(s) of site %r, publishing to %s",
            self.agent_id,
            len(self.machines),
            self.site.site.id,
            self.mqtt,
        )
        tasks = [asyncio.create_task(c.run(self.clock), name=f"poll-{c.machine.id}") for c in self.coordinators]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for coordinator in self.coordinators:
                coordinator.flush()
            self._link = None
            offline = self._status_message(LinkStatus.OFFLINE, self.clock(), "stopped")
            # stop() waits for the broker's PUBACK of the final status: keep the event loop free meanwhile.
            await asyncio.to_thread(link.stop, (self._agent_topic, offline.to_json()))

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
        self._stats["mqtt_connects"] += 1
        online = self._status_message(LinkStatus.ONLINE, self.clock())
        link.publish(self._agent_topic, online.to_json(), qos=1, retain=True)
        for machine_id, message in self._machine_status.items():
            self._publish_status(machine_id, message)

    def _publish_status(self, machine_id: str, message: StatusMessage) -> None:
        if self._link is None:
            return
        topic = str(Topic.machine_status(self.site.site.id, machine_id))
        self._link.publish(topic, message.to_json(), qos=1, retain=True)
        self._stats["status_messages"] += 1

    # Sink for the coordinators.
    def status(self, machine: Machine, transition: Transition) -> None:
        """Publish machine's new link status, retained, and remember it for reconnects."""
        message = self._status_message(transition.status, transition.ts, transition.detail)
        self._machine_status[machine.id] = message
        self._publish_status(machine.id, message)

    def samples(self, machine: Machine, samples: list[Sample]) -> None:
        """Seal samples into batches with seq and publish them (QoS1)."""
        if self._outbox is None or self._link is None:
            self._stats["dropped_samples"] += len(samples)
            return
        topic = str(Topic.telemetry(self.site.site.id, machine.id))
        for part in _split(samples):
            try:
                batch = self._outbox.seal(self.agent_id, self.site.site.id, machine.id, part)
            except sqlite3.Error as exc:
                self._stats["dropped_samples"] += len(part)
                log.error(
                    "machine %r: cannot store seq in %s (%s); %d sample(s) dropped",
                    machine.id,
                    self._outbox.path,
                    exc,
                    len(part),
                )
                continue
            self._link.publish(topic, batch.to_json(), qos=1, retain=False)
            self._stats["messages"] += 1


def _split(samples: list[Sample]) -> list[list[Sample]]:
    """Cut samples into parts whose batches fit the payload limit."""
    probe = TelemetryBatch(v=1, agent="a", site="s", machine="m", seq=2**63 - 1, samples=samples)
    # Ids are at most 63 characters each; leave room for them on top of the probe's size.
    if len(probe.to_json()) + 3 * 63 <= MAX_PAYLOAD_BYTES or len(samples) == 1:
        return [samples]
    half = len(samples) // 2
    return _split(samples[:half]) + _split(samples[half:])
