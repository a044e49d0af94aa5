"""Replay: the telemetry an edge agent would have published for a period, generated without any waiting.

Each machine is "polled" at its poll interval from the period's start. A poll reads the registers the simulated
PLC shows (its signal values encoded through the device profile) and hands them to the agent's own reporting code
(shopfloor.reporting.MachineReporter: decoding, counter unwrapping, report by exception, batching, link status),
so replayed messages are what an agent would have published. Polls that fall in an unreachable or exception
window, or whose reply would come after the machine's timeout, fail as they would for the agent. Messages carry
scenario time; they go to MQTT (QoS1, as fast as the broker acknowledges; statuses retained) or to a JSON-lines
file.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import os
import sys
import time
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO

from shopfloor.codec import ReadBlock, value_encoder
from shopfloor.config import DeviceProfile, Machine, RegisterSpec, SiteConfig
from shopfloor.contracts import (
    MAX_SAMPLES_PER_BATCH,
    Sample,
    SignalValue,
    StatusMessage,
    TelemetryBatch,
    Topic,
    is_valid_id,
    printable,
)
from shopfloor.health import Transition
from shopfloor.modbus import describe_block
from shopfloor.reporting import MachineReporter
from simulators.plan import FaultKind
from simulators.scenario import load_scenario
from simulators.world import World

log = logging.getLogger(__name__)
# Replay publishes like an agent with --publish-interval 60: a message per machine per minute at most.
DEFAULT_PUBLISH_INTERVAL_S = 60.0
INFLIGHT = 1000  # QoS1 messages awaiting PUBACK before we wait for the oldest


@dataclass(frozen=True, slots=True)
class Message:
    """One message as an agent would publish it: a telemetry batch, or a retained machine status."""

    topic: str
    batch: TelemetryBatch | None = None
    status: StatusMessage | None = None

    def __post_init__(self) -> None:
        if (self.batch is None) == (self.status is None):
            raise ValueError("a replay message carries exactly one of a telemetry batch or a status")

    @property
    def ts(self) -> int:
        """Scenario time of the message: its first sample's, or the status change's."""
        if self.batch is not None:
            return self.batch.samples[0].ts
        assert self.status is not None
        return self.status.ts

    @property
    def retain(self) -> bool:
        """Statuses are retained (the broker keeps the latest per machine), telemetry is not."""
        return self.status is not None

    def payload_json(self) -> str:
        """The payload as JSON text, exactly as published."""
        payload = self.batch if self.batch is not None else self.status
        assert payload is not None
        return payload.model_dump_json()


@dataclass
class ReplayStats:
    """What a replay produced."""

    messages: int = 0
    samples: int = 0
    statuses: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for humans."""
        rate = self.samples / self.seconds if self.seconds > 0 else 0.0
        return (
            f"replay: {self.messages} messages ({self.messages - self.statuses} telemetry, {self.statuses} status), "
            f"{self.samples} samples in {self.seconds:.1f} s "
            f"({rate:,.0f} samples/s, {self.messages / max(self.seconds, 1e-9):,.0f} messages/s)"
        )


class _Collected:
    """A reporter sink that turns what the agent's code hands over into the messages an agent publishes."""

    def __init__(self, agent: str, site: str, machine: str, heartbeat_ms: int) -> None:
        self.agent, self.site, self.machine, self.heartbeat_ms = agent, site, machine, heartbeat_ms
        self.topic = str(Topic.telemetry(site, machine))
        self.status_topic = str(Topic.machine_status(site, machine))
        self.seq = 0
        self.out: list[Message] = []

    def samples(self, machine: Machine, samples: list[Sample]) -> None:
        fields = {"v": 1, "agent": self.agent, "site": self.site, "machine": self.machine, "seq": self.seq}
        # The reporter built every sample with the contract's check; the header is checked on the first batch.
        if self.seq == 0:
            batch = TelemetryBatch.model_validate({**fields, "samples": samples})
        else:
            batch = TelemetryBatch.model_construct(**fields, samples=samples)  # type: ignore[arg-type]
        self.seq += 1
        self.out.append(Message(self.topic, batch))

    def status(self, machine: Machine, transition: Transition) -> None:
        status = StatusMessage(
            status=transition.status,
            ts=transition.ts,
            agent=self.agent,
            detail=printable(transition.detail),
            heartbeat_ms=self.heartbeat_ms,
        )
        self.out.append(Message(self.status_topic, status=status))

    def offset(self, machine: Machine, signal: str, value: float) -> None:
        """Counter offsets live in the reporter for the whole replay; nothing to persist."""


class SimulatedPlc:
    """The registers a machine's PLC shows for the simulator's signal values, block by block, as the agent reads
    them: exactly encode() of the values (each signal's registers ORed into zeroed blocks), worked out only for
    the signals whose value changed since the previous read."""

    def __init__(self, profile: DeviceProfile, blocks: list[ReadBlock]) -> None:
        self.blocks = blocks
        self._slots: list[tuple[str, RegisterSpec, int, int]] = []  # signal, spec, block index, offset in block
        for spec in profile.registers:
            index = next(
                i
                for i, b in enumerate(blocks)
                if b.table is spec.table and b.start <= spec.address and spec.address + spec.count <= b.end
            )
            self._slots.append((spec.signal, spec, index, spec.address - blocks[index].start))
        self._by_block = [[i for i, slot in enumerate(self._slots) if slot[2] == b] for b in range(len(blocks))]
        self._encoders = [value_encoder(spec) for _, spec, _, _ in self._slots]
        self._memo: list[dict[tuple[type, SignalValue], list[int] | None]] = [{} for _ in self._slots]
        self._values: list[object] = [_MISSING] * len(self._slots)  # each slot's last value
        self._words: list[list[int] | None] = [None] * len(self._slots)  # each slot's encoded registers
        self._registers: dict[ReadBlock, list[int]] = {b: [0] * b.count for b in blocks}

    def read(self, values: dict[str, SignalValue]) -> dict[ReadBlock, list[int]]:
        """Registers for values; blocks whose registers did not change are the same list objects as last time."""
        dirty: set[int] | None = None
        last_values, slot_words = self._values, self._words
        for n, (signal, _, index, _) in enumerate(self._slots):
            value = values.get(signal)
            last = last_values[n]
            if value is last or (value == last and type(value) is type(last)):
                continue
            last_values[n] = value
            if value is None:
                encoded = None
            else:
                memo = self._memo[n]
                key = (value.__class__, value)
                if key in memo:
                    encoded = memo[key]
                else:
                    try:
                        encoded = self._encoders[n](value)
                    except ValueError:
                        encoded = None  # a value the PLC cannot show: its registers stay 0
                    if len(memo) >= _CACHE_LIMIT:
                        memo.clear()
                    memo[key] = encoded
            if encoded == slot_words[n]:
                continue
            slot_words[n] = encoded
            if dirty is None:
                dirty = set()
            dirty.add(index)
        if dirty:
            registers = self._registers = dict(self._registers)
            for index in dirty:
                block = self.blocks[index]
                words = [0] * block.count
                for n in self._by_block[index]:
                    encoded = slot_words[n]
                    if encoded is not None:
                        offset = self._slots[n][3]
                        for i, word in enumerate(encoded):
                            words[offset + i] |= word
                registers[block] = words
        return self._registers


def _failure_texts(machine: Machine, blocks: list[ReadBlock]) -> dict[FaultKind, str]:
    """What the agent's reader reports for each kind of network fault (PlcError texts)."""
    what = describe_block(blocks[0])
    return {
        FaultKind.UNREACHABLE: f"cannot connect to {machine.host}:{machine.port} (connection refused)",
        FaultKind.MODBUS_EXCEPTION: f"{what}: PLC replied with Modbus exception {{code}}",
        FaultKind.SLOW_REPLIES: f"{what}: no reply within {machine.timeout_s} s",
    }


def _machine_messages(
    world: World, machine_id: str, agent: str, options: ReplayOptions
) -> Iterator[Message]:
    """One machine's messages in the order an agent publishes them, made by the agent's own reporting code."""
    site = world.site
    machine = site.machine(machine_id)
    assert machine is not None
    profile = site.profile(machine.profile)
    step = options.poll_ms if options.poll_ms is not None else max(1, round(machine.poll_interval_s * 1000))
    if options.poll_ms is not None:
        machine = machine.model_copy(update={"poll_interval_s": step / 1000})
    heartbeat_s = options.heartbeat_s if options.heartbeat_s is not None else machine.heartbeat_s
    sink = _Collected(agent, site.site.id, machine_id, round(heartbeat_s * 1000))
    reporter = MachineReporter(
        machine,
        profile,
        sink,
        publish_interval_s=options.publish_interval_s,
        max_batch_samples=options.max_batch_samples,
        heartbeat_s=heartbeat_s,
    )
    plc = SimulatedPlc(profile, reporter.blocks)
    texts = _failure_texts(machine, reporter.blocks)
    sim = world.machines[machine_id]
    faults = [
        f
        for f in world.plan.faults_in(world.start_ms, world.end_ms)
        if f.machine == machine_id and not (f.kind is FaultKind.SLOW_REPLIES and f.delay_s < machine.timeout_s)
    ]
    next_fault = 0
    out = sink.out
    t = world.start_ms
    while t < world.end_ms:
        while next_fault < len(faults) and faults[next_fault].end_ms <= t:
            next_fault += 1
        fault = None
        for candidate in itertools.islice(faults, next_fault, None):
            if candidate.start_ms > t:
                break
            if t < candidate.end_ms:
                fault = candidate
                break
        if fault is not None:
            reporter.failed(t, texts[fault.kind].format(code=fault.code))
        else:
            # world.values(machine_id, t) without its clamp: t is always inside the run here.
            sim.advance(t)
            reporter.read(t, plc.read(sim.values(t)))
        reporter.tick(t)
        if out:
            yield from out
            out.clear()
        t += step
    reporter.flush()
    yield from out


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How the replayed agent publishes: its poll step, publish interval, batch size and heartbeat."""

    poll_ms: int | None = None  # None: each machine's poll_interval_s
    publish_interval_s: float = DEFAULT_PUBLISH_INTERVAL_S
    max_batch_samples: int = MAX_SAMPLES_PER_BATCH
    heartbeat_s: float | None = None  # None: each machine's heartbeat_s

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_samples <= MAX_SAMPLES_PER_BATCH:
            raise ValueError(f"batch size must be 1..{MAX_SAMPLES_PER_BATCH}, got {self.max_batch_samples}")
        if not 0 < self.publish_interval_s <= 3600:
            raise ValueError(f"publish interval must be in (0, 3600] s, got {self.publish_interval_s}")
        if self.heartbeat_s is not None and not 1 <= self.heartbeat_s <= 3600:
            raise ValueError(f"heartbeat must be 1..3600 s, got {self.heartbeat_s}")
        if self.poll_ms is not None and self.poll_ms < 1:
            raise ValueError(f"poll interval must be at least 1 ms, got {self.poll_ms}")


_CACHE_LIMIT = 4096  # distinct values remembered per signal; counters and energy keep producing new ones
_MISSING = object()


def agent_of(world: World, machine_id: str) -> str:
    """The agent the site registry says serves machine_id; "replay" where the registry names none."""
    served = {m: a.id for a in world.site.agents for m in a.machines}
    return served.get(machine_id, "replay")


def replay_messages(
    world: World, agent: str | None = None, options: ReplayOptions | None = None
) -> Iterator[Message]:
    """Every message an agent would have published over the world's period, in time order across machines.

    agent: the agent id in every message; None: each machine's agent from the site registry (agent_of), so a
    collector checking the registry accepts the replay.
    """
    if agent is not None and not is_valid_id(agent):
        raise ValueError(f"agent id {agent!r} is not valid (expected [a-z0-9][a-z0-9-]{{0,62}})")
    opts = options or ReplayOptions()
    streams = [_machine_messages(world, m, agent or agent_of(world, m), opts) for m in world.machines]
    yield from heapq.merge(*streams, key=lambda msg: msg.ts)


class _Progress:
    """A progress bar on stderr, by simulated time."""

    def __init__(self, start_ms: int, end_ms: int, stream: IO[str]) -> None:
        self.start_ms, self.end_ms, self.stream = start_ms, end_ms, stream
        self._last = 0.0
        self._t0 = time.monotonic()

    def update(self, ts_ms: int, stats: ReplayStats, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        frac = min(1.0, max(0.0, (ts_ms - self.start_ms) / max(1, self.end_ms - self.start_ms)))
        bar = "#" * int(frac * 30)
        rate = stats.samples / max(now - self._t0, 1e-9)
        day = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        self.stream.write(
            f"\r[{bar:<30}] {frac:6.1%} {day}  {stats.messages} msgs  {stats.samples} samples  {rate:,.0f}/s "
        )
        self.stream.flush()


def run_replay(
    world: World,
    send: Callable[[Message], None],
    agent: str | None = None,
    options: ReplayOptions | None = None,
    progress: IO[str] | None = None,
) -> ReplayStats:
    """Generate every message and hand it to send; return the counts."""
    stats = ReplayStats()
    bar = _Progress(world.start_ms, world.end_ms, progress) if progress is not None else None
    t0 = time.monotonic()
    for message in replay_messages(world, agent, options):
        send(message)
        stats.messages += 1
        if message.batch is not None:
            stats.samples += len(message.batch.samples)
        else:
            stats.statuses += 1
        if bar is not None:
            bar.update(message.ts, stats)
    stats.seconds = time.monotonic() - t0
    if bar is not None:
        bar.update(world.end_ms, stats, force=True)
        progress.write("\n")  # type: ignore[union-attr]
    return stats


class JsonlSink:
    """Writes messages as JSON lines, one per message, in publishing order.

    Each line is {"topic": "shopfloor/v1/{site}/{machine}/telemetry" or ".../status", "retain": false|true,
    "payload": {...}}; the payload is exactly what would be published (a TelemetryBatch, or a retained
    StatusMessage), so `parse_telemetry` / `parse_status` accept it with the line's topic.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, message: Message) -> None:
        topic, retain = json.dumps(message.topic), "true" if message.retain else "false"
        self.stream.write(f'{{"topic":{topic},"retain":{retain},"payload":{message.payload_json()}}}\n')


class MqttSink:
    """Publishes messages QoS1, keeping at most INFLIGHT unacknowledged."""

    def __init__(self, url: str, client_id: str, timeout_s: float = 30.0) -> None:
        from shopfloor.mqtt import MqttLink, MqttSettings, PublishHandle

        self.link = MqttLink(MqttSettings.from_url(url), client_id, max_inflight=INFLIGHT)
        self.timeout_s = timeout_s
        self._handles: deque[PublishHandle] = deque()
        self.link.start()
        if not self.link.wait_connected(timeout_s):
            self.link.stop()
            raise ConnectionError(f"MQTT broker {self.link.settings} did not accept a connection within {timeout_s} s")

    def __call__(self, message: Message) -> None:
        payload = message.payload_json().encode()
        self._handles.append(self.link.publish(message.topic, payload, qos=1, retain=message.retain))
        while len(self._handles) > INFLIGHT:
            self._wait(self._handles.popleft())

    def _wait(self, handle: object) -> None:
        if not handle.wait(self.timeout_s):  # type: ignore[attr-defined]
            raise ConnectionError(f"MQTT broker {self.link.settings} did not acknowledge within {self.timeout_s} s")

    def close(self) -> None:
        """Wait for every acknowledgement, then disconnect."""
        try:
            while self._handles:
                self._wait(self._handles.popleft())
        finally:
            self.link.stop()


def parse_when(text: str, tz: str) -> int:
    """Parse a date (midnight, site time) or an ISO datetime (site time if it has no zone) into epoch ms."""
    zone = zoneinfo.ZoneInfo(tz)
    try:
        if len(text.strip()) == 10:
            moment = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time(), tzinfo=zone)
        else:
            moment = datetime.fromisoformat(text.strip())
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date (2026-11-01) or ISO datetime (2026-11-01T08:00+07:00)") from exc
    return int(moment.timestamp() * 1000)


def run_replay_cli(site: SiteConfig, args: argparse.Namespace) -> int:
    """`shopfloor simulate --replay`: check the options, generate, publish or write, report."""
    if not args.from_ or not args.to:
        print("shopfloor simulate --replay needs --from and --to", file=sys.stderr)
        return 2
    if (args.mqtt is None) == (args.out is None):
        print("shopfloor simulate --replay needs exactly one of --mqtt URL or --out FILE", file=sys.stderr)
        return 2
    try:
        start_ms, end_ms = parse_when(args.from_, site.site.timezone), parse_when(args.to, site.site.timezone)
    except ValueError as exc:
        print(f"shopfloor simulate --replay: {exc}", file=sys.stderr)
        return 2
    if end_ms <= start_ms:
        print("shopfloor simulate --replay: --to must be after --from", file=sys.stderr)
        return 2
    if args.agent_id is not None and not is_valid_id(args.agent_id):
        print(f"shopfloor simulate --replay: --agent-id {args.agent_id!r} is not a valid id", file=sys.stderr)
        return 2
    try:
        options = ReplayOptions(
            poll_ms=args.poll_ms,
            publish_interval_s=args.publish_interval,
            max_batch_samples=args.batch,
            heartbeat_s=args.heartbeat,
        )
    except ValueError as exc:
        print(f"shopfloor simulate --replay: {exc}", file=sys.stderr)
        return 2
    scenario = load_scenario(Path(args.replay), site)
    world = World(site, scenario, args.seed, start_ms, end_ms)
    progress = sys.stderr
    if args.out is not None:
        with Path(args.out).open("w") as stream:
            stats = run_replay(world, JsonlSink(stream), args.agent_id, options, progress)
    else:
        try:
            sink = MqttSink(args.mqtt, f"{args.agent_id or 'shopfloor'}-replay-{os.getpid()}")
        except (ConnectionError, ValueError) as exc:
            print(f"shopfloor simulate --replay: {exc}", file=sys.stderr)
            return 1
        try:
            stats = run_replay(world, sink, args.agent_id, options, progress)
        finally:
            sink.close()
    print(stats.summary(), file=sys.stderr)
    if args.ground_truth is not None:
        Path(args.ground_truth).write_text(world.ground_truth().to_json())
        print(f"ground truth written to {args.ground_truth}", file=sys.stderr)
    return 0
