"""Reachability of a PLC and decodability of its signals: transitions that are logged once, not per poll."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shopfloor.contracts import LinkStatus

_BLOCK_RE = re.compile(r"(holding registers|input registers|coils|discrete inputs) \d+\.\.\d+")
MAX_DETAIL = 500  # StatusMessage.detail limit


def describe_failure(error: str) -> str:
    """Phrase a PlcError text as 'what read failed (why)'."""
    what, sep, why = error.partition(": ")
    if sep and _BLOCK_RE.fullmatch(what):
        return f"{what} read failed ({why})"
    return f"read failed ({error})"


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a machine's link status, with the log line and the status detail to publish."""

    status: LinkStatus
    ts: int
    message: str
    detail: str


class LinkTracker:
    """Turns poll outcomes into online/unreachable transitions of one machine."""

    def __init__(self, machine_id: str, retry_s: float) -> None:
        self.machine_id = machine_id
        self.retry_s = retry_s
        self.status: LinkStatus | None = None
        self.since_ms: int | None = None

    def succeeded(self, now_ms: int) -> Transition | None:
        """Record a successful poll; return the transition to online, if this is one."""
        previous, since = self.status, self.since_ms
        if previous is LinkStatus.ONLINE:
            return None
        self.status, self.since_ms = LinkStatus.ONLINE, now_ms
        if previous is LinkStatus.UNREACHABLE and since is not None:
            seconds = max(0, now_ms - since) / 1000
            message = f"machine {self.machine_id!r}: reachable again after {seconds:.1f} s"
        else:
            message = f"machine {self.machine_id!r}: reachable"
        return Transition(LinkStatus.ONLINE, now_ms, message, "")

    def failed(self, now_ms: int, error: str) -> Transition | None:
        """Record a failed poll; return the transition to unreachable, if this is one."""
        if self.status is LinkStatus.UNREACHABLE:
            return None
        self.status, self.since_ms = LinkStatus.UNREACHABLE, now_ms
        what = describe_failure(error)
        message = f"machine {self.machine_id!r}: {what}; marked unreachable, retrying every {float(self.retry_s)} s"
        return Transition(LinkStatus.UNREACHABLE, now_ms, message, what[:MAX_DETAIL])


class SignalErrors:
    """Remembers which signals of one machine fail to decode, so each failure is logged once."""

    def __init__(self, machine_id: str) -> None:
        self.machine_id = machine_id
        self._failing: set[str] = set()

    @property
    def failing(self) -> frozenset[str]:
        """Signals currently failing."""
        return frozenset(self._failing)

    def update(self, errors: dict[str, str]) -> tuple[list[str], list[str]]:
        """Record one decoded poll's errors; return (log lines for new failures, log lines for recoveries)."""
        new = sorted(set(errors) - self._failing)
        recovered = sorted(self._failing - set(errors))
        self._failing = set(errors)
        failed_lines = [
            f"machine {self.machine_id!r}: signal {name!r} not decoded ({errors[name]}); "
            "omitted from samples until it decodes again"
            for name in new
        ]
        recovered_lines = [f"machine {self.machine_id!r}: signal {name!r} decodes again" for name in recovered]
        return failed_lines, recovered_lines
