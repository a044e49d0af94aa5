"""One coordinator per machine: poll the PLC on its schedule and hand each outcome to the machine's reporter.

All decisions (decode, counters, report by exception, batching, link status) are made by
shopfloor.reporting.MachineReporter, which the simulator's replay runs too; this module only does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from edge_agent.schedule import Schedule
from shopfloor.codec import ReadBlock
from shopfloor.modbus import PlcError
from shopfloor.reporting import MachineReporter

log = logging.getLogger(__name__)

Clock = Callable[[], int]


class Reader(Protocol):
    """Reads a machine's register blocks (shopfloor.modbus.PlcReader)."""

    async def read(self, blocks: list[ReadBlock]) -> dict[ReadBlock, list[int]]:
        """Read every block; raise PlcError if the PLC does not answer properly."""

    def close(self) -> None:
        """Drop the connection."""


class Timings(Protocol):
    """Where poll latency and start jitter go (the agent's metrics)."""

    def poll(self, latency_s: float, jitter_s: float) -> None:
        """Record one poll."""


def error_kind(error: PlcError) -> str:
    """The kind of a read failure, for counting: timeout, refused, exception, bad-reply, ..."""
    kind = getattr(error, "kind", None)
    return kind if isinstance(kind, str) and kind else "read"


class MachineCoordinator:
    """Polls one machine on a drift-free schedule; the reporter does the rest."""

    def __init__(
        self, reporter: MachineReporter, reader: Reader, errors: Counter[str], timings: Timings | None = None
    ) -> None:
        self.reporter = reporter
        self.machine = reporter.machine
        self.blocks = reporter.blocks
        self.reader = reader
        self.errors = errors
        self.timings = timings

    async def run(self, clock: Clock) -> None:
        """Poll until cancelled."""
        loop = asyncio.get_running_loop()
        stats = self.reporter.stats
        schedule = Schedule(loop.time(), self.machine.poll_interval_s)
        try:
            while True:
                tick = schedule.advance(loop.time())
                stats["skipped_ticks"] += tick.skipped
                delay = tick.due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                due = tick.due
                try:
                    await self.poll_once(clock, loop.time() - due)
                except Exception:
                    # A bug in handling one poll must not stop this machine's polling for good.
                    stats["internal_errors"] += 1
                    log.exception("machine %r: internal error while handling a poll; polling goes on", self.machine.id)
                # A reader that turns a cancellation into its own error (pymodbus did, under load) would swallow
                # our cancel and keep polling: honour a pending cancel here whatever the reader does.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError
        finally:
            self.reader.close()

    async def poll_once(self, clock: Clock, jitter_s: float = 0.0) -> None:
        """Read every block once and hand the outcome to the reporter."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        ts = clock()
        try:
            registers = await self.reader.read(self.blocks)
        except PlcError as exc:
            self.errors[error_kind(exc)] += 1
            self.reporter.failed(ts, str(exc))
        except Exception as exc:
            # Every library error means "unreachable", as for a real outage; keep the traceback for debugging.
            log.debug("machine %r: unexpected error while reading", self.machine.id, exc_info=True)
            self.errors["unexpected"] += 1
            self.reporter.failed(ts, f"unexpected {type(exc).__name__}: {exc}")
        else:
            self.reporter.read(ts, registers)
        if self.timings is not None:
            self.timings.poll(loop.time() - started, max(0.0, jitter_s))
        self.reporter.tick(clock())
