"""The live hub: one MQTT subscription per API process, folded into per-machine live state, fanned out to streams.

Threads: paho's network thread folds each message (validated with shopfloor.contracts and checked against the site
file, as the collector checks it; the invalid ones are counted and dropped), a ticker thread re-evaluates links once
a tick (a silent machine turns stale) and refreshes badge owners, a figures thread recomputes every machine's
current-shift figures from the store. None of them ever waits on a viewer: each change becomes an Event in a ring
buffer and is handed to every subscriber's event loop with call_soon_threadsafe, where it goes into that subscriber's
bounded asyncio queue (full: the queue is emptied and the subscriber is told to take a fresh snapshot). So a
hundred open boards are a hundred queues on the API's event loop, not a hundred threads.

Entries are unmasked: what a viewer sees of them is decided per connection by api.policy (api/routes/stream.py).

Event ids are increasing integers taken from the wall clock in microseconds (bumped by one when two would collide),
not a counter: a tenant's stream skips events it may not see, and gaps in a counter would tell it how often other
tenants' machines changed. Ids from the clock also keep increasing across API restarts, so a Last-Event-ID from
before a restart is simply older than anything buffered (a new snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from api import analytics
from api.core.owners import Owners
from api.core.timeline import AGENT_OFFLINE, NO_DATA, SILENCE, UNKNOWN, UNREACHABLE
from api.figures import RollupReader
from api.policy import MachineView
from api.reader import agents_of
from api.routes.machines import agent_offline, machine_view
from shopfloor.config import Machine, SiteConfig
from shopfloor.contracts import (
    CANONICAL_SIGNALS,
    PayloadError,
    StatusMessage,
    TelemetryBatch,
    Topic,
    TopicKind,
    parse_status,
    parse_telemetry,
    subscription_filters,
)
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings
from shopfloor.store import Row, StoreError, TimeSeriesStore

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # events waiting for one subscriber before it is sent a fresh snapshot instead
RING_SIZE = 1000  # events kept for Last-Event-ID resume
TICK_S = 1.0
SHIFT_EVERY_S = 30.0
# The collector's skew window (collector.registry): a message stamped outside it is not data.
MAX_AHEAD_MS = 300_000
MAX_BEHIND_MS = 7 * 86_400_000
OEE_DIGITS = 3  # the shift's OEE is rounded so that time passing alone does not emit an event every 30 s
DAY_MS = 86_400_000
# The signals a live view reads (api.routes.machine_view): the only ones kept, so a hostile batch of many
# distinct signal names cannot grow the hub's memory.
LIVE_SIGNALS = frozenset(CANONICAL_SIGNALS)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ShiftFigures:
    """A machine's current shift so far: its name, parts good and reject, OEE (calendar basis; None: undefined)."""

    name: str
    good: int
    reject: int
    oee: float | None


@dataclass(frozen=True, slots=True)
class LiveMachine:
    """One machine as the hub holds it now, unmasked: its view, why it is UNKNOWN, its shift figures."""

    machine: str
    name: str
    profile: str
    view: MachineView
    reason: str | None = None  # why the state is UNKNOWN (agent-offline, unreachable, silence, no-data)
    shift: ShiftFigures | None = None  # None: outside any shift, or not computed yet


@dataclass(slots=True, eq=False)
class Event:
    """A change of one machine: its id, the new entry and when it happened (epoch ms).

    cache: renderings per kind of viewer, filled by the stream (on the event loop) so a hundred boards of one
    role mask and encode each event once.
    """

    id: int
    entry: LiveMachine
    at_ms: int
    cache: dict[Any, Any] = field(default_factory=dict)


RESYNC: Literal["resync"] = "resync"  # in a subscriber's queue: it fell behind, send a fresh snapshot
CLOSED: Literal["closed"] = "closed"  # in a subscriber's queue: the hub stopped
QueueItem = Event | Literal["resync", "closed"]


class Subscription:
    """One viewer's queue of events, on its own event loop; read it with get()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize=size)
        self.overflows = 0

    def offer(self, item: QueueItem) -> None:
        """Queue item without waiting (event loop only); when full, empty the queue and ask for a snapshot."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.overflows += 1
            self.queue.put_nowait(CLOSED if item == CLOSED else RESYNC)

    async def get(self) -> QueueItem:
        """Wait for the next item."""
        return await self.queue.get()


@dataclass(frozen=True, slots=True)
class Opening:
    """What a new subscriber starts from.

    resume False: a snapshot of current at id. resume True (a Last-Event-ID still covered by the ring): prior holds
    each machine as it was at that id, current as it is now, changed the machines with events since, with the id of
    each one's newest event.
    """

    id: int
    current: Mapping[str, LiveMachine]
    resume: bool = False
    prior: Mapping[str, LiveMachine] = field(default_factory=dict)
    changed: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _State:
    """What the hub knows of one machine: its merged latest sample and machine status, its shift figures."""

    sample: Row | None = None
    status: Row | None = None
    shift: ShiftFigures | None = None


def unknown_reason(view: MachineView, agent_offline: bool) -> str | None:
    """Return why view's state is UNKNOWN (timeline reason names), None when it is known."""
    if view.state != UNKNOWN:
        return None
    if agent_offline:
        return AGENT_OFFLINE
    if view.link == "unreachable":
        return UNREACHABLE
    if view.last_seen_ms is None or view.link == "online":
        return NO_DATA  # never reported, or reporting but never a state
    return SILENCE


def parse_last_event_id(value: str | None) -> int | None:
    """Return a Last-Event-ID header as an int, None when absent or not a plain non-negative integer."""
    if value is None or not 0 < len(value) <= 20 or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def shift_start_ms(site: SiteConfig, machine: str, now_ms: int) -> tuple[str, int] | None:
    """Return the current shift at now_ms and when its occurrence began; None outside any shift."""
    calendar = site.calendar_model()
    stretches = calendar.stretches(now_ms - DAY_MS, now_ms + 1, machine)
    if not stretches:
        return None
    label = stretches[-1].label
    shift = label.shift
    if shift is None:
        return None
    start = stretches[-1].start_ms
    # Breaks and planned downtime cut a shift into stretches; its occurrence is the run of one (shift, day).
    for stretch in reversed(stretches[:-1]):
        if stretch.label.shift != shift or stretch.label.day != label.day:
            break
        start = stretch.start_ms
    return shift, start


def shift_figures(
    site: SiteConfig,
    store: TimeSeriesStore,
    machine: Machine,
    now_ms: int,
    owners: Owners,
    rollups: RollupReader | None = None,
) -> ShiftFigures | None:
    """Return machine's figures for its current shift so far (api.analytics, calendar basis); None outside one.

    With rollups, the shift's closed hours come from them (exact, as for every query) and only the rest from raw.
    """
    current = shift_start_ms(site, machine.id, now_ms)
    if current is None:
        return None
    name, start_ms = current
    if now_ms <= start_ms:
        return ShiftFigures(name, 0, 0, None)
    data = analytics.window(store, site, start_ms, now_ms, machines=[machine], owners=owners, rollups=rollups)
    rows = analytics.oee_rows(site, data, group_by=("machine",), owners=owners)
    if not rows:
        return ShiftFigures(name, 0, 0, None)
    row = rows[0]
    oee = None if row.oee is None else round(row.oee, OEE_DIGITS)
    return ShiftFigures(name, row.good, row.reject, oee)


class LiveHub:
    """Per-machine live state of one site, fed by one MQTT subscription, fanned out to asyncio subscribers.

    mqtt None: no broker (the state comes from the store at start and the ticker only); owners_provider gives the
    badge owners (called once a tick, from the ticker thread: let it cache); clock gives the current time (aware).
    """

    def __init__(
        self,
        site: SiteConfig,
        store: TimeSeriesStore,
        mqtt: MqttSettings | None,
        *,
        owners_provider: Callable[[], Owners] = Owners,
        clock: Callable[[], datetime] = _now,
        queue_size: int = QUEUE_SIZE,
        ring_size: int = RING_SIZE,
        tick_s: float = TICK_S,
        shift_every_s: float = SHIFT_EVERY_S,
        rollups: RollupReader | None = None,
    ) -> None:
        if queue_size < 2:
            raise ValueError(f"live hub: queue_size must be at least 2, got {queue_size}")
        if ring_size < 1:
            raise ValueError(f"live hub: ring_size must be at least 1, got {ring_size}")
        if not tick_s > 0 or not shift_every_s > 0:
            raise ValueError(f"live hub: tick_s and shift_every_s must be positive, got {tick_s}, {shift_every_s}")
        self.site = site
        self.store = store
        self.rollups = rollups  # closed hours of the shift figures (None: all from raw samples)
        self.mqtt = mqtt
        self.queue_size = queue_size
        self.tick_s = tick_s
        self.shift_every_s = shift_every_s
        self.client_id = f"shopfloor-api-live-{secrets.token_hex(6)}"
        self._owners_provider = owners_provider
        self._clock = clock
        self._site_id = site.site.id
        self._machines = {m.id: m for m in site.machines}
        self._served_by = {m.id: agents_of(site, m) for m in site.machines}
        self._signals = {m.id: {r.signal for r in site.profile(m.profile).registers} for m in site.machines}
        self._declared_agents = frozenset(a.id for a in site.agents) if site.agents else None

        self._lock = threading.Lock()  # guards everything below
        self._owners = Owners()
        self._state = {m: _State() for m in self._machines}
        self._agents: dict[str, Row] = {}
        self._entries: dict[str, LiveMachine] = {}
        self._ring: deque[Event] = deque()
        self._ring_size = ring_size
        self._last_id = 0
        self._start_id = 0
        self._base: dict[str, LiveMachine] = {}  # each machine as of _dropped_upto (resume starts from there)
        self._dropped_upto = 0
        self._loops: dict[asyncio.AbstractEventLoop, set[Subscription]] = {}
        self._counts: Counter[str] = Counter()
        self._invalid: Counter[str] = Counter()

        self._link: MqttLink | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False

    # ---- life cycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Seed the state from the store, then subscribe and start the ticker and figures threads."""
        if self._started:
            raise RuntimeError("live hub already started")
        self._started = True
        self._refresh_owners()
        self._seed()
        if self.mqtt is not None:
            link = MqttLink(self.mqtt, self.client_id, persistent_session=False, on_message=self.feed)
            link.subscribe(subscription_filters(self._site_id), qos=1)
            link.start()
            self._link = link
        for name, target in (("ticker", self._tick_loop), ("figures", self._figures_loop)):
            thread = threading.Thread(target=target, name=f"live-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Unsubscribe, stop the threads and end every subscriber's stream."""
        self._stop.set()
        if self._link is not None:
            self._link.stop()
            self._link = None
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        with self._lock:
            self._dispatch(CLOSED)

    @property
    def connected(self) -> bool:
        """Whether the hub's MQTT link is up."""
        return self._link is not None and self._link.connected

    def stats(self) -> dict[str, Any]:
        """Counters: messages folded, events, invalid messages by kind, subscribers, overflows (snapshots resent)."""
        with self._lock:
            return {
                "messages": self._counts["messages"],
                "events": self._counts["events"],
                "invalid": dict(self._invalid),
                "subscribers": sum(len(s) for s in self._loops.values()),
                "overflows": sum(sub.overflows for subs in self._loops.values() for sub in subs)
                + self._counts["overflows_gone"],
                "connected": self.connected,
            }

    # ---- subscribers (on their event loop) -------------------------------------------------------------------

    def subscribe(self, last_event_id: int | None = None) -> tuple[Subscription, Opening]:
        """Register a subscriber on the running loop; return it and what it starts from (snapshot or resume)."""
        loop = asyncio.get_running_loop()
        sub = Subscription(loop, self.queue_size)
        with self._lock:
            self._loops.setdefault(loop, set()).add(sub)
            return sub, self._opening(last_event_id)

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscriber."""
        with self._lock:
            subs = self._loops.get(sub.loop)
            if subs is not None and sub in subs:
                subs.discard(sub)
                self._counts["overflows_gone"] += sub.overflows
                if not subs:
                    del self._loops[sub.loop]

    def snapshot(self) -> Opening:
        """Every machine as it is now, with the id of the newest event."""
        with self._lock:
            return Opening(self._last_id, dict(self._entries))

    def _opening(self, last_event_id: int | None) -> Opening:
        current = dict(self._entries)
        if last_event_id is None or not self._dropped_upto <= last_event_id <= self._last_id:
            return Opening(self._last_id, current)
        prior = dict(self._base)
        changed: dict[str, int] = {}
        for event in self._ring:
            if event.id <= last_event_id:
                prior[event.entry.machine] = event.entry
            else:
                changed[event.entry.machine] = event.id
        return Opening(self._last_id, current, resume=True, prior=prior, changed=changed)

    # ---- state (any thread, under the lock) ------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def _next_id(self) -> int:
        self._last_id = max(self._last_id + 1, time.time_ns() // 1000)
        return self._last_id

    def _seed(self) -> None:
        try:
            latest = self.store.latest(self._site_id)
            statuses = self.store.latest_statuses(self._site_id)
            agents = self.store.latest_agent_statuses(self._site_id)
        except StoreError as exc:
            log.warning("live board: cannot read the latest state from the store (%s); starting empty", exc)
            latest, statuses, agents = {}, {}, {}
        now_ms = self._now_ms()
        with self._lock:
            for machine, state in self._state.items():
                sample = latest.get(machine)
                if sample is not None:
                    fields = {k: v for k, v in sample.fields.items() if k in LIVE_SIGNALS}
                    state.sample = Row(sample.ts_ms, sample.tags, fields)
                state.status = statuses.get(machine)
            self._agents = dict(agents)
            self._start_id = self._dropped_upto = self._next_id()
            for config in self._machines.values():
                self._entries[config.id] = self._base[config.id] = self._entry(config, now_ms)

    def _entry(self, machine: Machine, now_ms: int) -> LiveMachine:
        state = self._state[machine.id]
        # The same view GET /v1/machines gives (an agent gone offline after the last sample: unreachable).
        view = machine_view(self.site, machine, state.sample, state.status, now_ms, self._owners, self._agents)
        offline = agent_offline(self.site, machine, state.sample, state.status, self._agents)
        return LiveMachine(machine.id, machine.name, machine.profile, view, unknown_reason(view, offline), state.shift)

    def _update(self, machine_id: str, now_ms: int) -> None:
        """Re-evaluate one machine; emit an event if its entry changed."""
        entry = self._entry(self._machines[machine_id], now_ms)
        if entry != self._entries.get(machine_id):
            self._entries[machine_id] = entry
            self._emit(entry, now_ms)

    def _emit(self, entry: LiveMachine, now_ms: int) -> None:
        event = Event(self._next_id(), entry, now_ms)
        self._counts["events"] += 1
        self._ring.append(event)
        if len(self._ring) > self._ring_size:
            old = self._ring.popleft()
            self._base[old.entry.machine] = old.entry
            self._dropped_upto = old.id
        self._dispatch(event)

    def _dispatch(self, item: QueueItem) -> None:
        for loop, subs in list(self._loops.items()):
            try:
                loop.call_soon_threadsafe(_deliver, subs, item)
            except RuntimeError:  # the loop is closed: its subscribers are gone
                self._counts["overflows_gone"] += sum(s.overflows for s in subs)
                del self._loops[loop]

    # ---- MQTT (paho's thread) --------------------------------------------------------------------------------

    def feed(self, message: InboundMessage) -> None:
        """Fold one MQTT message into the state (invalid ones are counted and dropped; never raises)."""
        try:
            self._feed(message)
        except PayloadError as exc:
            self._refuse(exc.kind, exc.detail, message.topic)
        except Exception:  # a bug must cost one message, not the subscription
            log.exception("live board: failed to fold a message on %r; dropped", message.topic[:200])
            self._refuse("internal-error", "", message.topic)

    def _refuse(self, kind: str, detail: str, topic: str) -> None:
        with self._lock:
            self._invalid[kind] += 1
            first = self._invalid[kind] == 1
        if first:  # once per kind: a flood must not flood the log
            log.warning(
                "live board: ignored a message on %r (%s: %s); counting further ones", topic[:200], kind, detail
            )

    def _feed(self, message: InboundMessage) -> None:
        try:
            topic = Topic.parse(message.topic)
        except ValueError as exc:
            raise PayloadError("bad-topic", str(exc)[:200]) from exc
        if topic.site != self._site_id:
            raise PayloadError("unknown-site", f"site {topic.site!r} is not this site ({self._site_id!r})")
        now_ms = self._now_ms()
        if topic.kind is TopicKind.TELEMETRY:
            batch = parse_telemetry(topic, message.payload)
            self._check_telemetry(batch, now_ms)
            with self._lock:
                self._fold_telemetry(batch)
                self._counts["messages"] += 1
                self._update(batch.machine, now_ms)
        elif topic.kind is TopicKind.MACHINE_STATUS:
            status = parse_status(topic, message.payload)
            self._check_machine_status(topic, status, now_ms)
            with self._lock:
                self._fold_status(topic.machine, status)
                self._counts["messages"] += 1
                self._update(topic.machine, now_ms)
        elif topic.kind is TopicKind.AGENT_STATUS:
            status = parse_status(topic, message.payload)
            self._check_agent_status(topic, status)
            with self._lock:
                # Stamped when received, as the collector stores it: a last will carries the agent's connect time.
                self._agents[topic.agent] = Row(
                    now_ms, {"site": topic.site, "agent": topic.agent}, {"status": status.status.value}
                )
                self._counts["messages"] += 1
                for machine in self._machines:
                    self._update(machine, now_ms)
        else:
            raise PayloadError("bad-topic", f"{message.topic[:200]!r} is not a topic the live board reads")

    def _machine(self, machine: str) -> Machine:
        found = self._machines.get(machine)
        if found is None:
            raise PayloadError("unknown-machine", f"machine {machine!r} is not in site {self._site_id!r}")
        return found

    def _check_agent(self, agent: str, machine: str) -> None:
        if self._declared_agents is None:
            return
        if agent not in self._served_by[machine]:
            raise PayloadError("agent-not-serving", f"agent {agent!r} does not serve machine {machine!r}")

    @staticmethod
    def _check_ts(ts: int, now_ms: int) -> None:
        if ts > now_ms + MAX_AHEAD_MS:
            raise PayloadError("too-new", f"ts {ts} is more than {MAX_AHEAD_MS // 1000} s ahead of this clock")
        if ts < now_ms - MAX_BEHIND_MS:
            raise PayloadError("too-old", f"ts {ts} is more than {MAX_BEHIND_MS // 86_400_000} days behind")

    def _check_telemetry(self, batch: TelemetryBatch, now_ms: int) -> None:
        self._machine(batch.machine)
        self._check_agent(batch.agent, batch.machine)
        declared = self._signals[batch.machine]
        for sample in batch.samples:
            self._check_ts(sample.ts, now_ms)
            unknown = set(sample.values) - declared
            if unknown:
                raise PayloadError("unknown-signal", f"{sorted(unknown)[:3]} not in the profile of {batch.machine!r}")

    def _check_machine_status(self, topic: Topic, status: StatusMessage, now_ms: int) -> None:
        self._machine(topic.machine)
        self._check_agent(status.agent, topic.machine)
        self._check_ts(status.ts, now_ms)

    def _check_agent_status(self, topic: Topic, status: StatusMessage) -> None:
        if self._declared_agents is not None and topic.agent not in self._declared_agents:
            raise PayloadError("unknown-agent", f"agent {topic.agent!r} is not declared in the site file")
        if status.agent != topic.agent:
            raise PayloadError("topic-mismatch", f"status of agent {status.agent!r} arrived on {topic}")
        if status.until is not None:
            raise PayloadError("invalid-payload", "until: only a machine's status reports an outbox loss")

    def _fold_telemetry(self, batch: TelemetryBatch) -> None:
        state = self._state[batch.machine]
        tags = {"site": batch.site, "machine": batch.machine}
        ts = state.sample.ts_ms if state.sample is not None else None
        fields: dict[str, Any] = dict(state.sample.fields) if state.sample is not None else {}
        for sample in sorted(batch.samples, key=lambda s: s.ts):
            values = {k: v for k, v in sample.values.items() if k in LIVE_SIGNALS}
            if ts is None or sample.ts >= ts:
                fields.update(values)
                ts = sample.ts
            else:  # a resend from the agent's outbox: older than what is held, it fills only what is missing
                for name, value in values.items():
                    fields.setdefault(name, value)
        if ts is not None:
            state.sample = Row(ts, tags, fields)

    def _fold_status(self, machine: str, status: StatusMessage) -> None:
        state = self._state[machine]
        heartbeat = status.heartbeat_ms
        if heartbeat is None and state.status is not None:
            kept = state.status.fields.get("heartbeat_ms")  # as store.latest_statuses: heartbeat_ms may be older
            heartbeat = kept if isinstance(kept, int) else None
        if status.until is not None:
            # An outbox loss describes the past (ts..until), not the link now: only its heartbeat is news.
            if heartbeat is not None and state.status is not None:
                state.status = Row(
                    state.status.ts_ms, state.status.tags, {**state.status.fields, "heartbeat_ms": heartbeat}
                )
            return
        fields: dict[str, Any] = {"status": status.status.value, "agent": status.agent, "detail": status.detail}
        if heartbeat is not None:
            fields["heartbeat_ms"] = heartbeat
        state.status = Row(status.ts, {"site": self._site_id, "machine": machine}, fields)

    # ---- ticker and figures threads --------------------------------------------------------------------------

    def _refresh_owners(self) -> bool:
        try:
            owners = self._owners_provider()
        except Exception as exc:  # the business DB may be away: keep the owners known
            with self._lock:
                self._counts["owner_failures"] += 1
                first = self._counts["owner_failures"] == 1
            if first:
                log.warning("live board: cannot read badge owners (%s); keeping the last known", exc)
            return False
        with self._lock:
            changed = owners is not self._owners
            self._owners = owners
        return changed

    def tick(self) -> None:
        """Refresh owners and re-evaluate every machine's link (stale when silent past its max gap)."""
        self._refresh_owners()
        now_ms = self._now_ms()
        with self._lock:
            for machine in self._machines:
                self._update(machine, now_ms)

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:
                log.exception("live board: tick failed; trying again next tick")

    def refresh_figures(self) -> None:
        """Recompute every machine's current-shift figures from the store; emit where they changed."""
        with self._lock:
            owners = self._owners
        for machine in self._machines.values():
            if self._stop.is_set():
                return
            now_ms = self._now_ms()
            try:
                figures = shift_figures(self.site, self.store, machine, now_ms, owners, self.rollups)
            except StoreError as exc:
                with self._lock:
                    self._counts["figure_failures"] += 1
                    first = self._counts["figure_failures"] == 1
                if first:
                    log.warning("live board: cannot compute shift figures (%s); keeping the last ones", exc)
                continue
            with self._lock:
                self._state[machine.id].shift = figures
                self._update(machine.id, now_ms)

    def _figures_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_figures()
            except Exception:
                log.exception("live board: shift figures failed; trying again in %.0f s", self.shift_every_s)
            self._stop.wait(self.shift_every_s)


def _deliver(subs: set[Subscription], item: QueueItem) -> None:
    """Offer item to every subscriber of one loop (runs on that loop)."""
    for sub in tuple(subs):
        with contextlib.suppress(RuntimeError):
            sub.offer(item)
