"""Stored samples are history: a message may add samples, never rewrite one the store already holds.

InfluxDB merges a point written again at the same (measurement, tags, time): fields sent again overwrite, new
fields join. An agent's resend is the same sample again (harmless), but a forged one could put another tenant's
badge on a stored sample and, badges being reported by exception, move the rest of a session to that tenant.

So before a write the collector checks every telemetry sample that may land on stored time, against the store:
- a signal the stored point holds must come again with the same value;
- a signal the stored point lacks may join only with the value already in effect there (the last one before it):
  that is what an agent's outbox does when it folds the values of samples it had to drop into the first sample of
  its oldest batch; anything else would change what the machine was doing at that time.
A message breaking either is refused as `sample-conflict` (dead-lettered, acknowledged, committed, never written).

Which samples "may land on stored time": those at or before the newest time the store holds for the machine, as
far as this collector knows (what it wrote itself, and the store's newest time per machine, read at start and
every `refresh_s`). New data, the stream's normal case, costs no query. With replicas on a shared subscription,
each learns the others' writes at the next refresh, so a rewrite of samples another replica wrote in the last
`refresh_s` goes unnoticed: no worse than a fresh forged sample, which only the broker's ACL can keep out.

The writer thread owns a History; nothing here is thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from shopfloor.contracts import SignalValue, decode_payload
from shopfloor.store import Row

SAMPLE_CONFLICT = "sample-conflict"
DEFAULT_REFRESH_S = 30.0
# Resent messages close in time are read back with one query, up to this many samples (the store's row limit
# must not cut an answer short) and this far apart.
MAX_READ_SAMPLES = 5000
MAX_READ_GAP_MS = 600_000


class HistoryStore(Protocol):
    """What History reads from the time-series store."""

    def newest_ts(self, site: str) -> dict[str, int]: ...

    def telemetry(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Row]: ...

    def values_before(self, site: str, machine: str, ts_ms: int, signals: Iterable[str]) -> dict[str, SignalValue]: ...


class Checked(Protocol):
    """A telemetry message ready to be written, as History sees it."""

    @property
    def payload(self) -> bytes: ...

    @property
    def history_key(self) -> tuple[str, str] | None: ...  # (site, machine) of telemetry with lines, else None

    @property
    def first_ts(self) -> int | None: ...

    @property
    def last_ts(self) -> int | None: ...

    @property
    def weight(self) -> int: ...


T = TypeVar("T", bound=Checked)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A sample that would rewrite stored history: what it sent, and what the store holds (or holds in effect)."""

    ts: int
    signal: str
    sent: SignalValue
    stored: SignalValue | None
    in_effect: bool  # the stored point lacks the signal: stored is the value before it (None: never reported)

    def describe(self) -> str:
        """Say what the message would have changed, for the dead letter and the log."""
        if not self.in_effect:
            return (
                f"sample at ts {self.ts} is stored with {self.signal} = {self.stored!r}; this message would change "
                f"it to {self.sent!r}: stored history is never rewritten"
            )
        held = "no value" if self.stored is None else f"{self.signal} = {self.stored!r}"
        return (
            f"sample at ts {self.ts} is stored without {self.signal}, where {held} was in effect; this message would "
            f"add {self.signal} = {self.sent!r}: stored history is never rewritten"
        )


def same_value(a: SignalValue, b: SignalValue) -> bool:
    """Whether two signal values are the same reading (an int and a float of one number are; a bool is no number)."""
    if type(a) is bool or type(b) is bool or type(a) is str or type(b) is str:
        return type(a) is type(b) and a == b
    return float(a) == float(b)


def sample_conflict(
    ts: int,
    sent: Mapping[str, SignalValue],
    stored: Mapping[str, SignalValue],
    in_effect: Mapping[str, SignalValue],
) -> Conflict | None:
    """The first signal of sent that would rewrite the stored point at ts, or None if it only repeats it."""
    for name in sorted(sent):
        value = sent[name]
        if name in stored:
            if not same_value(stored[name], value):
                return Conflict(ts, name, value, stored[name], in_effect=False)
        else:
            held = in_effect.get(name)
            if held is None or not same_value(held, value):
                return Conflict(ts, name, value, held, in_effect=True)
    return None


def chunks(items: Sequence[T]) -> list[list[T]]:
    """Split items so that no telemetry message overlaps an earlier one of its machine in the same chunk.

    A chunk is written before the next is checked, so each check sees in the store everything before it.
    """
    out: list[list[T]] = []
    current: list[T] = []
    newest: dict[tuple[str, str], int] = {}
    for item in items:
        key, first, last = item.history_key, item.first_ts, item.last_ts
        if key is not None and first is not None and last is not None:
            if current and first <= newest.get(key, first - 1):
                out.append(current)
                current, newest = [], {}
            newest[key] = max(last, newest.get(key, last))
        current.append(item)
    if current:
        out.append(current)
    return out


class History:
    """Find the telemetry messages of a chunk that would rewrite stored samples (see the module docstring)."""

    def __init__(
        self,
        store: HistoryStore,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._clock = clock
        self._newest: dict[tuple[str, str], int] = {}  # (site, machine) -> newest ts known stored
        self._read_at: dict[str, float] = {}  # site -> when its newest times were last read from the store
        self.queries = 0  # store reads for checks (not refreshes): for the metrics and the tests
        self.reads = 0  # store reads that answered, refreshes included: whether a check heard from the store

    def newest(self, site: str, machine: str) -> int | None:
        """The newest ts known stored for the machine."""
        return self._newest.get((site, machine))

    def suspects(self, chunk: Sequence[T]) -> set[tuple[str, str]]:
        """The (site, machine)s whose stored samples checking chunk reads: those with a message at or before the
        machine's newest stored time (after refreshing those times, when due).

        Raises what the store raises (StoreUnavailable, StoreRejected): the caller retries as for a write.
        """
        self._refresh({key[0] for item in chunk if (key := item.history_key) is not None})
        return set(self._suspects(chunk))

    def conflicts(self, chunk: Sequence[T], *, refresh: bool = True) -> list[tuple[T, Conflict]]:
        """The messages of chunk that would rewrite stored samples, each with its first conflict.

        refresh=False: use the newest times as they are (a caller that has just asked for suspects, and waited for
        what they depend on, checks exactly those). Raises what the store raises (StoreUnavailable, StoreRejected):
        the caller retries as for a write.
        """
        if refresh:
            self._refresh({key[0] for item in chunk if (key := item.history_key) is not None})
        out: list[tuple[T, Conflict]] = []
        for (site, machine), items in self._suspects(chunk).items():
            for group in _groups(items):
                stored = self._stored(site, machine, group)
                for item in group:
                    conflict = self._first_conflict(site, machine, item, stored)
                    if conflict is not None:
                        out.append((item, conflict))
        return out

    def _suspects(self, chunk: Sequence[T]) -> dict[tuple[str, str], list[T]]:
        """The messages of chunk at or before their machine's newest known stored time, per machine."""
        suspects: dict[tuple[str, str], list[T]] = {}
        for item in chunk:
            key, first = item.history_key, item.first_ts
            if key is None or first is None:
                continue
            newest = self._newest.get(key)
            if newest is not None and first <= newest:
                suspects.setdefault(key, []).append(item)
        return suspects

    def wrote(self, items: Iterable[Checked]) -> None:
        """Remember what was written: its time is stored time from now on."""
        for item in items:
            key, last = item.history_key, item.last_ts
            if key is not None and last is not None and last > self._newest.get(key, last - 1):
                self._newest[key] = last

    def _refresh(self, sites: Iterable[str]) -> None:
        now = self._clock()
        for site in sites:
            read_at = self._read_at.get(site)
            if read_at is not None and now - read_at < self.refresh_s:
                continue
            newest = self.store.newest_ts(site)
            self.reads += 1
            for machine, ts in newest.items():
                key = (site, machine)
                if ts > self._newest.get(key, ts - 1):
                    self._newest[key] = ts
            self._read_at[site] = now

    def _stored(self, site: str, machine: str, group: Sequence[Checked]) -> dict[int, dict[str, SignalValue]]:
        start = min(item.first_ts for item in group if item.first_ts is not None)
        end = max(item.last_ts for item in group if item.last_ts is not None)
        self.queries += 1
        rows = self.store.telemetry(site, machine, start, end + 1)
        self.reads += 1
        return {row.ts_ms: row.fields for row in rows}

    def _first_conflict(
        self, site: str, machine: str, item: Checked, stored: Mapping[int, Mapping[str, SignalValue]]
    ) -> Conflict | None:
        for ts, values in _samples(item.payload):
            fields = stored.get(ts)
            if fields is None:
                continue  # late data on time nothing was stored at: new
            missing = [name for name in values if name not in fields]
            in_effect: dict[str, SignalValue] = {}
            if missing:
                self.queries += 1
                in_effect = self.store.values_before(site, machine, ts, missing)
                self.reads += 1
            conflict = sample_conflict(ts, values, fields, in_effect)
            if conflict is not None:
                return conflict
        return None


def _groups(items: Sequence[T]) -> list[list[T]]:
    """Items of one machine in ts order, grouped so that one read returns each group's stored samples."""
    ordered = sorted(items, key=lambda item: item.first_ts or 0)
    out: list[list[T]] = []
    samples = 0
    end = 0
    for item in ordered:
        first, last = item.first_ts or 0, item.last_ts or 0
        if out and (samples + item.weight > MAX_READ_SAMPLES or first - end > MAX_READ_GAP_MS):
            out.append([])
            samples = 0
        if not out:
            out.append([])
        out[-1].append(item)
        samples += item.weight
        end = max(end, last)
    return out


def _samples(payload: bytes) -> list[tuple[int, dict[str, SignalValue]]]:
    """(ts, values) of every sample with values of an already validated telemetry payload."""
    data: Any = decode_payload(payload)
    return [(s["ts"], s["values"]) for s in data["samples"] if s["values"]]
