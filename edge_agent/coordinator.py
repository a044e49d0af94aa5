"""One coordinator per machine: poll the PLC on its schedule, decode, batch, and report reachability."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from pydantic import ValidationError

from edge_agent.batcher import Batcher
from edge_agent.health import LinkTracker, SignalErrors, Transition
from edge_agent.schedule import Schedule
from shopfloor.codec import ReadBlock, decode, plan_reads
from shopfloor.config import DeviceProfile, Machine
from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS, Sample, SignalValue
from shopfloor.modbus import PlcError, PlcReader

log = logging.getLogger(__name__)

Clock = Callable[[], int]


class Sink(Protocol):
    """Where a coordinator hands its output (the agent: outbox and MQTT)."""

    def samples(self, machine: Machine, samples: list[Sample]) -> None:
        """Take a complete batch of samples of machine."""

    def status(self, machine: Machine, transition: Transition) -> None:
        """Take a change of machine's link status."""


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


class MachineCoordinator:
    """Polls one machine; the handling of each outcome is plain code, testable without I/O."""

    def __init__(
        self,
        machine: Machine,
        profile: DeviceProfile,
        batcher: Batcher,
        sink: Sink,
        stats: Counter[str],
    ) -> None:
        self.machine = machine
        self.profile = profile
        self.blocks: list[ReadBlock] = plan_reads(profile)
        self.batcher = batcher
        self.sink = sink
        self.stats = stats
        self.link = LinkTracker(machine.id, machine.poll_interval_s)
        self.signal_errors = SignalErrors(machine.id)
        self._clock_warned = False

    def handle_read(self, ts: int, registers: dict[ReadBlock, list[int]]) -> Sample | None:
        """Process a successful read taken at ts; return the sample it produced, if any."""
        if not self._check_clock(ts):
            return None
        self.stats["polls"] += 1
        self._transition(self.link.succeeded(ts))
        values, errors = decode(self.profile, registers)
        sample, errors = build_sample(ts, values, errors)
        self.stats["omitted_values"] += len(errors)
        failed, recovered = self.signal_errors.update(errors)
        for line in failed:
            log.warning(line)
        for line in recovered:
            log.info(line)
        if sample is None:
            self.stats["empty_polls"] += 1
            return None
        self.stats["samples"] += 1
        batch = self.batcher.add(sample)
        if batch:
            self.sink.samples(self.machine, batch)
        return sample

    def handle_failure(self, ts: int, error: str) -> None:
        """Process a failed read at ts: no sample, and a transition to unreachable if this is one."""
        if not self._check_clock(ts):
            return
        self.stats["polls"] += 1
        self.stats["failures"] += 1
        transition = self.link.failed(ts, error)
        if transition is not None:
            # Samples taken before the outage go out before the status that ends them.
            self.flush()
            self._transition(transition)

    def handle_tick(self, now_ms: int) -> None:
        """Publish the pending batch if it has waited a publish interval."""
        batch = self.batcher.due(now_ms)
        if batch:
            self.sink.samples(self.machine, batch)

    def flush(self) -> None:
        """Publish whatever is pending."""
        batch = self.batcher.take()
        if batch:
            self.sink.samples(self.machine, batch)

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

    async def run(self, clock: Clock) -> None:
        """Poll on a drift-free schedule until cancelled."""
        loop = asyncio.get_running_loop()
        reader = PlcReader(self.machine.host, self.machine.port, self.machine.unit_id, self.machine.timeout_s)
        schedule = Schedule(loop.time(), self.machine.poll_interval_s)
        try:
            while True:
                tick = schedule.advance(loop.time())
                self.stats["skipped_ticks"] += tick.skipped
                delay = tick.due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    await self.poll_once(reader, clock)
                except Exception:
                    # A bug in handling one poll must not stop this machine's polling for good.
                    self.stats["internal_errors"] += 1
                    log.exception("machine %r: internal error while handling a poll; polling goes on", self.machine.id)
                # pymodbus turns a cancellation during a read into its own error, which would swallow our
                # cancel and keep polling (seen under load in bench/e2e_throughput.py): honour it here.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError
        finally:
            reader.close()

    async def poll_once(self, reader: PlcReader, clock: Clock) -> None:
        """Read every block once and process the outcome."""
        ts = clock()
        try:
            registers = await reader.read(self.blocks)
        except PlcError as exc:
            self.handle_failure(ts, str(exc))
        except Exception as exc:
            # Every library error means "unreachable", as for a real outage; keep the traceback for debugging.
            log.debug("machine %r: unexpected error while reading", self.machine.id, exc_info=True)
            self.handle_failure(ts, f"unexpected {type(exc).__name__}: {exc}")
        else:
            self.handle_read(ts, registers)
        self.handle_tick(clock())
