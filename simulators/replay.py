"""Replay: the telemetry an edge agent would have published for a period, generated without any waiting.

Each machine is "polled" at its poll interval from the period's start; each poll goes through the device
profile (encode, then decode, like a real register read), so values carry the same precision an agent sees.
Polls that fall in an unreachable or exception window, or whose reply would come after the machine's timeout,
give no sample, as with a real agent, and, as the agent does, the machine's retained status goes `unreachable`
at the first such poll and `online` again at the first poll that succeeds (and `online` at the first poll of
the replay). Samples are batched into TelemetryBatch messages stamped with scenario time; they and the status
messages go to MQTT (QoS1, as fast as the broker acknowledges; statuses retained) or to a JSON-lines file.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import os
import struct
import sys
import time
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, cast

from pydantic import ValidationError

from shopfloor.codec import DecodeError, decode_value, encode_value, plan_reads
from shopfloor.config import DataType, DeviceProfile, RegisterSpec, SiteConfig
from shopfloor.contracts import (
    COUNTER_SIGNALS,
    MAX_SAMPLES_PER_BATCH,
    MAX_SIGNALS_PER_SAMPLE,
    LinkStatus,
    Sample,
    SignalValue,
    StatusMessage,
    TelemetryBatch,
    Topic,
    check_signal,
    is_valid_id,
)
from simulators.plan import FaultKind
from simulators.scenario import load_scenario
from simulators.world import World

log = logging.getLogger(__name__)
DEFAULT_BATCH = 60  # samples per message: one minute of 1 s polls
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


@dataclass(frozen=True, slots=True)
class _Outage:
    start_ms: int
    end_ms: int
    detail: str


def _outages(world: World, machine_id: str) -> list[_Outage]:
    """Windows in which every poll of machine fails, overlapping ones merged, with the agent's failure text."""
    machine = world.site.machine(machine_id)
    assert machine is not None
    first = plan_reads(world.site.profile(machine.profile))[0]
    what = f"{first.table} registers {first.start}..{first.end - 1} read failed"
    texts = {
        FaultKind.UNREACHABLE: f"read failed (cannot connect to {machine.host}:{machine.port} (connection refused))",
        FaultKind.MODBUS_EXCEPTION: f"{what} (PLC replied with Modbus exception {{code}})",
        FaultKind.SLOW_REPLIES: f"{what} (no reply within {machine.timeout_s} s)",
    }
    out: list[_Outage] = []
    for fault in world.plan.faults_in(world.start_ms, world.end_ms):
        if fault.machine != machine_id:
            continue
        if fault.kind is FaultKind.SLOW_REPLIES and fault.delay_s < machine.timeout_s:
            continue  # late but within the agent's timeout: polls succeed
        detail = texts[fault.kind].format(code=fault.code)
        if out and fault.start_ms <= out[-1].end_ms:
            last = out[-1]
            out[-1] = _Outage(last.start_ms, max(last.end_ms, fault.end_ms), last.detail)
        else:
            out.append(_Outage(fault.start_ms, fault.end_ms, detail))
    return out


def _machine_messages(
    world: World, machine_id: str, agent: str, batch_size: int, poll_ms: int | None
) -> Iterator[Message]:
    """One machine's messages in the order an agent publishes them.

    Like the agent: the first poll's outcome publishes online or unreachable; afterwards only changes are
    published, each stamped with the time of the poll that saw it; pending samples go out before an
    unreachable status, and an online status before the samples that follow it.
    """
    site = world.site
    machine = site.machine(machine_id)
    assert machine is not None
    profile = site.profile(machine.profile)
    step = poll_ms if poll_ms is not None else max(1, round(machine.poll_interval_s * 1000))
    sim = world.machines[machine_id]
    last_poll = world.start_ms + (world.end_ms - 1 - world.start_ms) // step * step
    roundtrip = _Roundtrip(profile, _ts_range(world.start_ms, last_poll))
    outages = _outages(world, machine_id)
    topic = str(Topic.telemetry(site.site.id, machine_id))
    status_topic = str(Topic.machine_status(site.site.id, machine_id))
    seq = 0
    pending: list[Sample] = []
    link: LinkStatus | None = None
    next_outage = 0
    t = world.start_ms
    while t < world.end_ms:
        while next_outage < len(outages) and outages[next_outage].end_ms <= t:
            next_outage += 1
        outage = outages[next_outage] if next_outage < len(outages) else None
        if outage is not None and outage.start_ms <= t:
            if link is not LinkStatus.UNREACHABLE:
                if pending:
                    yield Message(topic, _batch(agent, site.site.id, machine_id, seq, pending))
                    seq, pending = seq + 1, []
                link = LinkStatus.UNREACHABLE
                yield Message(status_topic, status=StatusMessage(status=link, ts=t, agent=agent, detail=outage.detail))
        else:
            if link is not LinkStatus.ONLINE:
                link = LinkStatus.ONLINE
                yield Message(status_topic, status=StatusMessage(status=link, ts=t, agent=agent))
            # world.values(machine_id, t) without its clamp: t is always inside the run here.
            sim.advance(t)
            pending.append(roundtrip(t, sim.values(t)))
            if len(pending) >= batch_size:
                yield Message(topic, _batch(agent, site.site.id, machine_id, seq, pending))
                seq, pending = seq + 1, []
        t += step
    if pending:
        yield Message(topic, _batch(agent, site.site.id, machine_id, seq, pending))


def _batch(agent: str, site: str, machine: str, seq: int, samples: list[Sample]) -> TelemetryBatch:
    """A batch as the collector's model accepts it: replay never emits a bad payload."""
    fields = {"v": 1, "agent": agent, "site": site, "machine": machine, "seq": seq, "samples": samples}
    if seq == 0:
        # The header (ids) is the same in every batch of a machine: the first batch checks it, and its samples
        # again. Later batches differ only in seq (counting up from 0) and in samples that _Roundtrip has
        # checked, 1..batch_size of them, so validating them whole again would change nothing but the time.
        return TelemetryBatch.model_validate(fields)
    return TelemetryBatch.model_construct(**fields)  # type: ignore[arg-type]


_CACHE_LIMIT = 4096  # distinct values remembered per signal; counters and energy keep producing new ones
_INT_FORMATS = {
    DataType.UINT16: ">H",
    DataType.BITS16: ">H",
    DataType.INT16: ">h",
    DataType.UINT32: ">I",
    DataType.INT32: ">i",
}
_UNSIGNED = (DataType.UINT16, DataType.BITS16, DataType.UINT32)
_INFINITIES = (float("inf"), float("-inf"))


def _signal_roundtrip(spec: RegisterSpec) -> Callable[[SignalValue], SignalValue | None]:
    """What an agent decodes for spec after the PLC shows value (None: the agent reports a decode error).

    Exactly decode_value(spec, encode_value(spec, value)); for plain numbers the same arithmetic without the
    register lists in between (word order cancels out: encode splits the bytes, decode joins them back the
    same way). tests/unit/test_sim_replay_speed.py holds this against the codec.
    """
    t, scale, is_float = spec.type, spec.scale, spec.is_float

    def via_codec(value: SignalValue) -> SignalValue | None:
        try:
            return decode_value(spec, encode_value(spec, value))
        except (DecodeError, ValueError):
            return None

    if t is DataType.STRING or spec.states is not None:
        return via_codec
    if t is DataType.FLOAT32:
        f32 = struct.Struct(">f")
        pack_f, unpack_f = f32.pack, f32.unpack

        def float32(value: SignalValue) -> SignalValue | None:
            if isinstance(value, str):
                return None  # encode_value: a string cannot go into a number register
            raw = float(value) / scale if scale != 1.0 else value
            number: float = unpack_f(pack_f(float(raw)))[0]
            if number != number or number in _INFINITIES:
                return None  # decode_value: NaN or infinity
            return round(float(number) * scale, 6)

        return float32

    word = struct.Struct(_INT_FORMATS[t])
    pack_i, unpack_i = word.pack, word.unpack
    modulus = (1 << (16 if t.width == 1 else 32)) if t in _UNSIGNED else None

    def integer(value: SignalValue) -> SignalValue | None:
        if isinstance(value, str):
            return None
        raw = float(value) / scale if scale != 1.0 else value
        try:
            n = round(raw)
        except ValueError:
            return None  # NaN
        if modulus is not None:
            n %= modulus  # PLC counters wrap at their width
        number: int = unpack_i(pack_i(n))[0]
        return round(float(number) * scale, 6) if is_float else int(number)

    return integer


class _Roundtrip:
    """One poll as an agent sees it: signal values encoded into the registers and decoded back, as a Sample.

    Everything but the counters (state, stop reason, badge, job, power, alarms, ...) changes only when the
    machine's situation does, so the decoded form of those signals is remembered per combination of values
    they come in; the counters go through each signal's own memo of recent values. Every decoded value passes
    the contract's Sample check (with the poll's timestamp) the first time it is produced, so samples can be
    built without validating them whole again: the output is the same as validating every sample.
    """

    def __init__(self, profile: DeviceProfile, ts_valid: tuple[int, int] = (0, -1)) -> None:
        self.ts_valid = ts_valid  # polls in this range have a timestamp the contract accepts (see _ts_range)
        self.signals = [_SignalMemo(spec) for spec in profile.registers]
        self.counters = [memo for memo in self.signals if memo.signal in COUNTER_SIGNALS]
        self.steady_names = tuple(memo.signal for memo in self.signals if memo.signal not in COUNTER_SIGNALS)
        self.templates: dict[tuple[tuple[object, ...], tuple[type, ...]], _Template] = {}

    def __call__(self, ts: int, values: dict[str, SignalValue]) -> Sample:
        steady = tuple(map(values.get, self.steady_names))  # None: the machine does not show that signal
        # Keyed by type too: 1, 1.0 and True are equal but encode differently.
        key = (steady, tuple(map(type, steady)))
        template = self.templates.get(key)
        if template is None or (template.zeros and _negative_zero(steady, template.zeros)):
            template = self._template(ts, values, steady, key)
        # Every signal in register-map order; the counters' placeholders are replaced or removed below.
        out = cast(dict[str, SignalValue], template.out.copy())
        fresh: dict[str, SignalValue] = {}
        for memo in self.counters:
            signal = memo.signal
            value = values.get(signal)
            if value is None:
                del out[signal]  # the machine does not show it
                continue
            decoded = memo.cache.get((value.__class__, value), _MISSING)  # lookup(), inline: the common case
            if decoded is _MISSING:
                decoded = memo.lookup(value, fresh)
            if decoded is None:
                del out[signal]  # a decode error an agent would report: the signal is left out
            else:
                out[signal] = decoded  # type: ignore[assignment]
        ts_ok = self.ts_valid[0] <= ts <= self.ts_valid[1]
        if fresh or not ts_ok or len(out) > MAX_SIGNALS_PER_SAMPLE:
            _check_sample(ts, ts_ok, fresh, out)
        return Sample.model_construct(ts=ts, values=out)

    def _template(
        self, ts: int, values: dict[str, SignalValue], steady: tuple[object, ...], key: tuple[object, ...]
    ) -> _Template:
        out: dict[str, object] = {}
        fresh: dict[str, SignalValue] = {}
        for memo in self.signals:
            if memo.signal in COUNTER_SIGNALS:
                out[memo.signal] = _MISSING  # filled in (or removed) on every poll
                continue
            if memo.signal not in values:
                continue
            decoded = memo.lookup(values[memo.signal], fresh)
            if decoded is not None:
                out[memo.signal] = decoded
        Sample.model_validate({"ts": ts, "values": fresh})  # raises ValidationError
        # 0.0 == -0.0 but they print differently: remember where the template's key has a float zero, and
        # only reuse it for +0.0 there (a -0.0, never seen in practice, is decoded afresh every time).
        zeros = tuple(i for i, v in enumerate(steady) if isinstance(v, float) and v == 0)
        template = _Template(out, zeros)
        if _negative_zero(steady, zeros):
            return template
        if len(self.templates) >= _CACHE_LIMIT:
            self.templates.clear()
        self.templates[key] = template  # type: ignore[index]
        return template


def _negative_zero(steady: tuple[object, ...], zeros: tuple[int, ...]) -> bool:
    return any(math.copysign(1.0, steady[i]) < 0 for i in zeros)  # type: ignore[arg-type]


def _check_sample(ts: int, ts_ok: bool, fresh: dict[str, SignalValue], out: dict[str, SignalValue]) -> None:
    """Check the values not seen before with the contract; on any doubt, validate the whole sample (may raise)."""
    try:
        for name, value in fresh.items():
            check_signal(name, value)
    except ValueError:
        pass
    else:
        if ts_ok and len(out) <= MAX_SIGNALS_PER_SAMPLE:
            return
    Sample.model_validate({"ts": ts, "values": out})  # raises ValidationError, as replay always has


def _ts_range(first: int, last: int) -> tuple[int, int]:
    """first..last if the contract accepts both as sample timestamps (and so every poll between), else empty."""
    try:
        for ts in (first, last):
            Sample.model_validate({"ts": ts, "values": {}})
    except ValidationError:
        return (0, -1)  # every poll validates its own timestamp and fails as it always did
    return (first, last)


@dataclass(frozen=True, slots=True)
class _Template:
    out: dict[str, object]  # decoded steady signals, counters as placeholders, in register-map order
    zeros: tuple[int, ...]  # positions of float zeros in the key


class _SignalMemo:
    """One signal's round trip, remembering what its recent values decode to."""

    __slots__ = ("cache", "roundtrip", "signal")

    def __init__(self, spec: RegisterSpec) -> None:
        self.signal = spec.signal
        self.roundtrip = _signal_roundtrip(spec)
        self.cache: dict[tuple[type, SignalValue], SignalValue | None] = {}

    def lookup(self, value: SignalValue, fresh: dict[str, SignalValue]) -> SignalValue | None:
        """The decoded value (None: decode error); a value not decoded before is also put in fresh."""
        key = (value.__class__, value)  # 1, 1.0 and True are equal but encode differently
        decoded = self.cache.get(key, _MISSING)
        if decoded is not _MISSING:
            return decoded  # type: ignore[return-value]
        decoded = self.roundtrip(value)
        if decoded is not None:
            fresh[self.signal] = decoded
        # 0.0 == -0.0 but they print differently: do not let one stand in for the other.
        if not (isinstance(value, float) and value == 0):
            if len(self.cache) >= _CACHE_LIMIT:
                self.cache.clear()  # counters move on: keep the memo small and recent
            self.cache[key] = decoded
        return decoded


_MISSING = object()


def replay_messages(
    world: World, agent: str = "replay", batch_size: int = DEFAULT_BATCH, poll_ms: int | None = None
) -> Iterator[Message]:
    """Every message an agent would have published over the world's period, in time order across machines."""
    if not is_valid_id(agent):
        raise ValueError(f"agent id {agent!r} is not valid (expected [a-z0-9][a-z0-9-]{{0,62}})")
    if not 1 <= batch_size <= MAX_SAMPLES_PER_BATCH:
        raise ValueError(f"batch size must be 1..{MAX_SAMPLES_PER_BATCH}, got {batch_size}")
    streams = [_machine_messages(world, m, agent, batch_size, poll_ms) for m in world.machines]
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
    agent: str = "replay",
    batch_size: int = DEFAULT_BATCH,
    poll_ms: int | None = None,
    progress: IO[str] | None = None,
) -> ReplayStats:
    """Generate every message and hand it to send; return the counts."""
    stats = ReplayStats()
    bar = _Progress(world.start_ms, world.end_ms, progress) if progress is not None else None
    t0 = time.monotonic()
    for message in replay_messages(world, agent, batch_size, poll_ms):
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
    if not is_valid_id(args.agent_id):
        print(f"shopfloor simulate --replay: --agent-id {args.agent_id!r} is not a valid id", file=sys.stderr)
        return 2
    scenario = load_scenario(Path(args.replay), site)
    world = World(site, scenario, args.seed, start_ms, end_ms)
    progress = sys.stderr
    if args.out is not None:
        with Path(args.out).open("w") as stream:
            stats = run_replay(world, JsonlSink(stream), args.agent_id, args.batch, args.poll_ms, progress)
    else:
        try:
            sink = MqttSink(args.mqtt, f"{args.agent_id}-replay-{os.getpid()}")
        except (ConnectionError, ValueError) as exc:
            print(f"shopfloor simulate --replay: {exc}", file=sys.stderr)
            return 1
        try:
            stats = run_replay(world, sink, args.agent_id, args.batch, args.poll_ms, progress)
        finally:
            sink.close()
    print(stats.summary(), file=sys.stderr)
    if args.ground_truth is not None:
        Path(args.ground_truth).write_text(world.ground_truth().to_json())
        print(f"ground truth written to {args.ground_truth}", file=sys.stderr)
    return 0
