"""What an edge agent makes of one machine's polls, with no I/O: decode, unwrap counters, report by exception,
batch, and track the link.

The agent runs it on real Modbus reads; the simulator's replay runs the very same code on simulated reads, so
replayed telemetry is what an agent would have published.

Report by exception (DESIGN.md): a sample carries only the signals that changed (beyond their deadband, for
signals that declare one; any change for states, badges, jobs, stop reasons, counters and every signal without a
deadband), and every signal at least once per heartbeat: when a heartbeat is due, the sample carries every signal
(a key frame). The first sample, and the first after the PLC was unreachable, is a key frame too.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from shopfloor.batching import Batcher
from shopfloor.codec import ProfileDecoder, ReadBlock, plan_reads
from shopfloor.config import DeviceProfile, Machine
from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS, LinkStatus, Sample, SignalValue
from shopfloor.counters import CounterSpec, CounterUnwrapper
from shopfloor.health import LinkTracker, SignalErrors, Transition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Deadband:
    """How far a signal may move before it is sent: absolute, or percent of the last sent value."""

    absolute: float = 0.0
    percent: float = 0.0

    def exceeded(self, last: float, value: float) -> bool:
        """Whether value differs from last by more than the deadband."""
        change = abs(value - last)
        if self.percent:
            return change > abs(last) * self.percent / 100 if last else change > 0
        return change > self.absolute


def deadbands(profile: DeviceProfile) -> dict[str, Deadband]:
    """The deadband of every signal of profile that declares one."""
    out: dict[str, Deadband] = {}
    for spec in profile.registers:
        if spec.deadband is not None:
            out[spec.signal] = Deadband(absolute=spec.deadband)
        elif spec.deadband_pct is not None:
            out[spec.signal] = Deadband(percent=spec.deadband_pct)
    return out


class ExceptionFilter:
    """Decides which of a poll's values go out (report by exception with a heartbeat)."""

    def __init__(
        self, heartbeat_ms: int, bands: Mapping[str, Deadband] | None = None, riders: frozenset[str] = frozenset()
    ) -> None:
        if heartbeat_ms <= 0:
            raise ValueError(f"heartbeat must be positive, got {heartbeat_ms} ms")
        self.heartbeat_ms = heartbeat_ms
        self.bands = dict(bands or {})
        # Meters with a deadband: on their own they wait for the deadband, but any change of theirs rides along
        # with every sample that goes out, so what they counted is attributed exactly at every change of state.
        self.riders = riders
        self._sent: dict[str, SignalValue] = {}  # last value sent per signal
        self._keyframe_ts: int | None = None
        self._last_input: dict[str, SignalValue] | None = None
        self.suppressed = 0  # values not sent because they had not changed enough

    def reset(self) -> None:
        """Forget what was sent: the next sample is a key frame (after an outage, a restart, a loss)."""
        self._sent = {}
        self._keyframe_ts = None
        self._last_input = None

    def unchanged(self, ts: int) -> bool:
        """For a poll whose values equal the previous poll's: whether nothing is to be sent (no key frame due)."""
        keyframe = self._keyframe_ts
        return keyframe is not None and ts - keyframe < self.heartbeat_ms and self._last_input is not None

    def filter(self, ts: int, values: dict[str, SignalValue]) -> dict[str, SignalValue] | None:
        """Return the values of this poll to send (None: nothing); values is not modified."""
        keyframe = self._keyframe_ts
        if keyframe is None or ts - keyframe >= self.heartbeat_ms:
            self._keyframe_ts = ts
            self._sent = dict(values)
            self._last_input = self._sent
            return dict(values) if values else None
        last_input = self._last_input
        # Same as the previous poll (the common case); == treats 1, 1.0 and True alike, so types are compared too.
        if values == last_input and all(type(v) is type(last_input[k]) for k, v in values.items()):
            self.suppressed += len(values)
            return None
        sent = self._sent
        bands = self.bands
        out: dict[str, SignalValue] = {}
        for name, value in values.items():
            last = sent.get(name, _MISSING)
            if last is _MISSING or type(last) is not type(value):
                out[name] = value
            elif last != value:
                band = bands.get(name)
                if band is None or band.exceeded(last, value):  # type: ignore[arg-type]
                    out[name] = value
        if out and self.riders:
            for name in self.riders:
                if name not in out and name in values and sent.get(name, _MISSING) != values[name]:
                    out[name] = values[name]
        if len(sent) > len(values) or any(name not in values for name in sent):
            # A signal that stopped decoding is sent again as soon as it decodes again.
            for name in [n for n in sent if n not in values]:
                del sent[name]
        sent.update(out)
        self._last_input = dict(values)
        self.suppressed += len(values) - len(out)
        return out or None


_MISSING: object = object()


def _validation_reason(exc: ValidationError) -> str:
    msg = str(exc.errors()[0]["msg"])
    return msg.removeprefix("Value error, ")


def build_sample(
    ts: int, values: dict[str, SignalValue], errors: dict[str, str]
) -> tuple[Sample | None, dict[str, str]]:
    """Make a sample of the values the contract accepts; move the others to errors. None if nothing is left."""
    errors = dict(errors)
    if not values:
        return None, errors
    try:
        return Sample(ts=ts, values=values), errors
    except ValidationError:
        pass
    # Rare path: find the offending values one by one, so one bad register cannot silence the rest.
    kept: dict[str, SignalValue] = {}
    for name, value in values.items():
        try:
            Sample(ts=ts, values={name: value})
        except ValidationError as exc:
            errors[name] = _validation_reason(exc)
        else:
            kept[name] = value
    return (Sample(ts=ts, values=kept) if kept else None), errors


class ReporterSink(Protocol):
    """Where a reporter hands its output (the agent: outbox and MQTT; the replay: a list)."""

    def samples(self, machine: Machine, samples: list[Sample]) -> None:
        """Take a complete batch of samples of machine."""

    def status(self, machine: Machine, transition: Transition) -> None:
        """Take a change of machine's link status."""

    def offset(self, machine: Machine, signal: str, value: float) -> None:
        """Persist a counter's new unwrap offset."""


def counter_specs(machine: Machine, profile: DeviceProfile) -> list[CounterSpec]:
    """The counters of profile with their wrap and physical limit."""
    return [CounterSpec(s.signal, s.modulus, s.max_rate_per_h) for s in profile.registers if s.counter]


class MachineReporter:
    """Turns one machine's poll outcomes into batches and link transitions for a sink. Pure: no I/O, no clock."""

    def __init__(
        self,
        machine: Machine,
        profile: DeviceProfile,
        sink: ReporterSink,
        *,
        publish_interval_s: float | None = None,
        max_batch_samples: int = 100,
        heartbeat_s: float | None = None,
        offsets: dict[str, float] | None = None,
        stats: Counter[str] | None = None,
    ) -> None:
        self.machine = machine
        self.profile = profile
        self.sink = sink
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self.blocks: list[ReadBlock] = plan_reads(profile)
        self.decoder = ProfileDecoder(profile, self.blocks)
        self.heartbeat_ms = max(1, round((heartbeat_s if heartbeat_s is not None else machine.heartbeat_s) * 1000))
        bands = deadbands(profile)
        riders = frozenset(s.signal for s in profile.registers if s.counter and s.signal in bands)
        self.filter = ExceptionFilter(self.heartbeat_ms, bands, riders)
        self.unwrapper = CounterUnwrapper(counter_specs(machine, profile), offsets)
        poll_ms = max(1, round(machine.poll_interval_s * 1000))
        publish_ms = round((publish_interval_s or machine.poll_interval_s) * 1000)
        self.batcher = Batcher(publish_ms, poll_ms, max_batch_samples)
        self.link = LinkTracker(machine.id, machine.poll_interval_s)
        self.signal_errors = SignalErrors(machine.id)
        self._clock_warned = False
        self._last_decoded: dict[str, SignalValue] | None = None

    def read(self, ts: int, registers: dict[ReadBlock, list[int]]) -> Sample | None:
        """Process a successful read taken at ts; return the sample it produced, if any."""
        if not self._check_clock(ts):
            return None
        stats = self.stats
        stats["polls"] += 1
        if self.link.status is not _ONLINE:
            self._transition(self.link.succeeded(ts))
        values, errors = self.decoder.decode(registers)
        if (
            values is self._last_decoded
            and not errors
            and not self.signal_errors.failing
            and self.filter.unchanged(ts)
        ):
            # The same registers as the previous poll (the common case), and no heartbeat due: nothing to send.
            stats["values_suppressed"] += len(values)
            stats["quiet_polls"] += 1
            return None
        self._last_decoded = values
        if errors or self.signal_errors.failing:
            values, errors = self._contract_check(ts, values, errors)
        if self.unwrapper.specs:
            values = dict(values)  # the decoder's dict is read-only
            for signal, offset in self.unwrapper.apply(ts, values).items():  # type: ignore[arg-type]
                self.sink.offset(self.machine, signal, offset)
        suppressed = self.filter.suppressed
        out = self.filter.filter(ts, values)
        stats["values_suppressed"] += self.filter.suppressed - suppressed
        if out is None:
            stats["quiet_polls"] += 1
            return None
        sample, bad = build_sample(ts, out, {})
        if bad:
            # Values the decoder let through but the contract refuses (rare): never sent, logged once.
            stats["omitted_values"] += len(bad)
            self._log_errors({**errors, **bad})
        if sample is None:
            return None
        stats["samples"] += 1
        stats["values_sent"] += len(sample.values)
        batch = self.batcher.add(sample)
        if batch:
            self.sink.samples(self.machine, batch)
        return sample

    def _contract_check(
        self, ts: int, values: dict[str, SignalValue], errors: dict[str, str]
    ) -> tuple[dict[str, SignalValue], dict[str, str]]:
        sample, errors = build_sample(ts, values, errors)
        self.stats["omitted_values"] += len(errors)
        self._log_errors(errors)
        return (dict(sample.values) if sample is not None else {}), errors

    def _log_errors(self, errors: dict[str, str]) -> None:
        failed, recovered = self.signal_errors.update(errors)
        for line in failed:
            log.warning(line)
        for line in recovered:
            log.info(line)

    def failed(self, ts: int, error: str) -> None:
        """Process a failed read at ts: no sample, and a transition to unreachable if this is one."""
        if not self._check_clock(ts):
            return
        self.stats["polls"] += 1
        self.stats["failures"] += 1
        transition = self.link.failed(ts, error)
        if transition is not None:
            # Samples taken before the outage go out before the status that ends them.
            self.flush()
            self.filter.reset()
            self._transition(transition)

    def tick(self, now_ms: int) -> None:
        """Publish the pending batch if it is due."""
        if len(self.batcher):
            batch = self.batcher.due(now_ms)
            if batch:
                self.sink.samples(self.machine, batch)

    def flush(self) -> None:
        """Publish whatever is pending."""
        if len(self.batcher):
            self.sink.samples(self.machine, self.batcher.take())

    def _transition(self, transition: Transition | None) -> None:
        if transition is None:
            return
        if transition.detail:
            self.stats["outages"] += 1
            log.warning(transition.message)
        else:
            log.info(transition.message)
        self.sink.status(self.machine, transition)

    def _check_clock(self, ts: int) -> bool:
        if MIN_TS_MS <= ts <= MAX_TS_MS:
            self._clock_warned = False
            return True
        self.stats["clock_errors"] += 1
        if not self._clock_warned:
            self._clock_warned = True
            log.error(
                "machine %r: system clock reads %d ms since 1970, outside 2000..2100; "
                "polls are not reported until the clock is set",
                self.machine.id,
                ts,
            )
        return False


_ONLINE = LinkStatus.ONLINE
