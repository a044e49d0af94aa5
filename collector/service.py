"""The collector: validate MQTT messages, write them to the store in batches, ack only what the store accepted.

Two threads share one bounded queue. The MQTT client's thread validates each message (pure work), refuses the
invalid ones at once (count, log once per kind, dead-letter, ack) and enqueues the valid ones as line protocol.
It never blocks: when the queue is full the collector *pauses*: it stops taking messages (those arriving are
neither queued nor acked, so the broker keeps them for this session), lets the writer drain and ack what it holds,
then *resumes* with a clean reconnect on the same persistent session, after which the broker redelivers every
unacked message. The MQTT connection stays up through a store outage of any length (keepalives keep flowing);
the broker holds the backlog. The writer thread takes batches, checks the messages that may land on stored time
against the store (collector.history: stored samples are never rewritten) and hands each chunk to one of a few
store threads, which write it (the store narrows a refusal down to its bad lines), retry with jittered backoff
(honouring Retry-After) while the store is down, and mark late hours for the roll-ups. Up to writes_in_flight
chunks are with the store at once, so the store's round trip overlaps the writer's work on the next chunk; the
writer completes them in the order it handed them over (acks every message, publishes commits for the agents),
and a chunk that checks a machine's stored history, or overlaps what a chunk in flight writes for it, waits until
that chunk is complete. A monitor thread logs the periodic summary and tracks the broker connection for the
health check. Nothing is kept per message beyond the queue (the history check reads the store), so any number of
collectors can share one subscription (`$share/<group>/` topic prefix, one client id each).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from collector.convert import Written, agent_status_to_point, commit_messages, status_to_point
from collector.deadletter import DEFAULT_MAX_BYTES, DeadLetter, DeadLetterFile
from collector.history import DEFAULT_REFRESH_S, SAMPLE_CONFLICT, Conflict, History, chunks
from collector.metrics import WRITE_BUCKETS, CollectorSnapshot, SeqTracker
from collector.registry import CheckedLines, Recent, Registry, SeqMemory, payload_digest
from shopfloor.contracts import PayloadError, Topic, TopicKind, parse_status, parse_telemetry, subscription_filters
from shopfloor.influx import RejectedLine, StoreRejected, StoreUnavailable, to_line
from shopfloor.metrics import LatencyHistogram
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings, PublishHandle
from shopfloor.store import HOUR_MS, LineStore

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
BACKOFF_JITTER = 0.2  # each wait is the doubling delay +-20 %, so replicas do not retry in step
RETRY_AFTER_CAP_S = 60.0  # the most a store's Retry-After may make us wait at once
# Pauses closer together than this are logged at DEBUG (counted all the same): a store slower than the stream
# makes them routine.
PAUSE_LOG_QUIET_S = 60.0
MONITOR_TICK_S = 1.0
STORE_REJECTED = "store-rejected"
# How long stop() waits for the broker to confirm the last commits before disconnecting.
COMMIT_WAIT_S = 2.0
SEQ_CONFLICT = "seq-conflict"
QUEUE_BATCHES = 10  # the default queue: this many batches of points
# Receive Maximum: messages of this many samples in flight fill the queue; never fewer than the floor, which keeps
# 1-sample streams well clear of the rate a small in-flight window caps them at (20 in flight: ~2.4k msg/s).
SAMPLES_PER_MESSAGE = 100
MIN_RECEIVE_MAXIMUM = 500
# Refused retained messages remembered, so the broker's resending them on every reconnect is not refused again.
REFUSED_RETAINED_MEMORY = 10_000
# Late data (for the roll-ups of closed hours): a sample or machine status written more than this after its own
# timestamp may land in an hour already rolled up, so its hour is marked in the store (mark_late_hours) and the
# roll-up job rebuilds it. The job builds an hour only LATE_AFTER_MS + 5 min (its grace, for clocks that disagree)
# after the hour's classification context ends, so data written sooner than this cannot be missing from a roll-up;
# the stream's normal case (an agent publishes every minute) is never late and costs one comparison per message.
# Agent statuses are stamped when received, so they are never late.
LATE_AFTER_MS = 300_000
# Late messages remembered by payload, so a resend (the broker's retained statuses on every reconnect, an agent's
# outbox after a lost commit) of what was marked already, the same points again, is not marked again.
LATE_MEMORY = 10_000
LATE_RETRY_MAX_S = 30.0  # a failed mark is retried with the next flush after at most this long
LATE_SPAN_MAX_MS = 8 * 24 * HOUR_MS  # the most hours one status's outbox loss (ts..until) marks
# Chunks handed to the store at once: while the store answers one, the writer checks and prepares the next. Two
# keep the store busy (it answers a 5,000-point write in about as long as the writer takes to prepare one).
WRITES_IN_FLIGHT = 2


class _Pending(NamedTuple):
    """A valid message waiting to be written and acked (a named tuple: one is made per message)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    lines: tuple[str, ...]  # line protocol, one per point
    written: Written | None
    received_at: float
    first_ts: int | None = None  # telemetry: the oldest and newest ts of the samples with lines
    last_ts: int | None = None

    @property
    def history_key(self) -> tuple[str, str] | None:
        """(site, machine) of a telemetry message with something to write: what collector.history checks."""
        w = self.written
        return None if w is None or self.first_ts is None else (w.site, w.machine)

    @property
    def weight(self) -> int:
        # A batch without points still takes a queue slot, or an empty flood could bypass the bound.
        return max(1, len(self.lines))


class _Abandoned(Exception):
    """Stopping while the store is still unavailable: leave the batch unacked for redelivery."""


# What a chunk writes, per telemetry machine ((site, machine)) or status topic ((topic,)): see _reach.
_ReachKey = tuple[str, ...]
_ALL_TIME = (-(2**63), 2**63)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What the store made of a chunk handed to it."""

    rejected: list[RejectedLine]  # lines refused for good
    duration_s: float  # the write, retries included
    unmarked: dict[str, dict[str, set[int]]]  # late marks that failed (site -> machine -> hours)
    mark_error: str | None


@dataclass(slots=True, eq=False)
class _Write:
    """A chunk handed to the store: what it holds, what to do once the store answered, and the answer to come."""

    chunk: list[_Pending]
    conflicts: list[tuple[_Pending, Conflict]]
    kept: list[_Pending]  # the chunk less its conflicts: what was sent
    reach: dict[_ReachKey, tuple[int, int]]
    late: dict[str, dict[str, set[int]]]  # late hours of kept (site -> machine -> hours)
    late_seen: list[tuple[str, bytes]]  # (topic, digest) of the messages those hours come from
    mark_now: bool  # whether the store thread marks `late` after the write (else they join the pending marks)
    future: Future[_Answer]
    released: bool = field(default=False)


class _StoreThreads:
    """A few daemon threads running store writes in the order handed over (one each at a time).

    Daemon threads, unlike a ThreadPoolExecutor's: a process that ends without stop() is not held up by a write
    retrying on a store that is down (stop() is what leaves nothing behind).
    """

    def __init__(self, n: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{k}", daemon=True) for k in range(n)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], _T]) -> Future[_T]:
        """Run fn on the next free thread; its result or exception goes to the future returned."""
        future: Future[_T] = Future()
        self._jobs.put((future, fn))
        return future

    def stop(self, timeout_s: float) -> None:
        """Let each thread end after the jobs handed over; wait up to timeout_s for them."""
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # whatever it is, the writer waiting on the future must hear of it
                future.set_exception(exc)
            else:
                future.set_result(result)


class Collector:
    """Subscribe to telemetry and machine status, write them to the store, ack MQTT after the store accepted."""

    def __init__(
        self,
        mqtt: MqttSettings,
        store: LineStore,
        client_id: str = "shopfloor-collector",
        batch_points: int = 5000,
        flush_interval_s: float = 0.2,
        dead_letter: Path | None = None,
        topic_prefix: str = "",
        *,
        max_queue_points: int | None = None,
        dead_letter_max_bytes: int = DEFAULT_MAX_BYTES,
        summary_interval_s: float = 60.0,
        registry: Registry | None = None,
        rng: Callable[[], float] = random.random,
        history_refresh_s: float = DEFAULT_REFRESH_S,
        writes_in_flight: int = WRITES_IN_FLIGHT,
    ) -> None:
        if batch_points < 1:
            raise ValueError(f"collector: batch_points must be at least 1, got {batch_points}")
        if not flush_interval_s > 0:
            raise ValueError(f"collector: flush_interval_s must be positive, got {flush_interval_s}")
        if max_queue_points is not None and max_queue_points < 1:
            raise ValueError(f"collector: max_queue_points must be at least 1, got {max_queue_points}")
        if writes_in_flight < 1:
            raise ValueError(f"collector: writes_in_flight must be at least 1, got {writes_in_flight}")
        self.mqtt = mqtt
        self.store = store
        self.client_id = client_id
        self.batch_points = batch_points
        self.flush_interval_s = flush_interval_s
        # Only this site's topics: on a broker that carries several sites, another site's messages are not ours to
        # refuse (and in a $share group that spans sites, refusing one would ack it away from its own collector).
        self.site = registry.site_id if registry is not None else "+"
        self.filters = [topic_prefix + f for f in subscription_filters(self.site)]
        self.max_queue_points = max_queue_points or QUEUE_BATCHES * batch_points
        # The broker sends at most receive_maximum unacked messages, and acks come only after a write: once the queue
        # holds that many, waiting for batch_points or the flush age would leave the link idle (1-sample messages
        # never make a batch of points: a broker that keeps to the window would cap us at the window per flush age).
        self.flush_messages = receive_maximum(self.max_queue_points)
        self.summary_interval_s = summary_interval_s
        self.writes_in_flight = writes_in_flight
        self._dead_letter = DeadLetterFile(dead_letter, dead_letter_max_bytes) if dead_letter else None
        # Swapped whole by set_registry (SIGHUP); each message reads it once. Both memories below belong to the
        # MQTT thread, the only one that validates.
        self._registry = registry
        self._seqs = SeqMemory()
        self._refused_retained = Recent(REFUSED_RETAINED_MEMORY)
        self._seq_tracker = SeqTracker()  # MQTT thread only; read under the stats lock
        self._rng = rng
        self.write_duration = LatencyHistogram(WRITE_BUCKETS)
        self._history = History(store, refresh_s=history_refresh_s)  # writer thread only
        # Chunks handed to the store threads, oldest first; the writer thread's own (completed in this order).
        self._inflight: deque[_Write] = deque()
        self._store_threads: _StoreThreads | None = None

        self._link: MqttLink | None = None
        self._writer: threading.Thread | None = None
        self._stopped = False
        # Guards the queue, the generation and the stop state; the writer and the MQTT thread wait on it.
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._queued_points = 0
        self._held_points = 0  # queued plus the chunks being written: what the bound applies to
        self._generation = 0
        self._stopping = False
        self._deadline = math.inf
        self._gave_up = False
        # Backpressure: while paused, arriving messages are neither queued nor acked (the broker keeps them).
        self._paused = False
        self._paused_since = 0.0
        self._last_resume = -math.inf
        self._monitor: threading.Thread | None = None
        self._monitor_stop = threading.Event()
        self._broker_down_since: float | None = None
        self._resuming = False
        self._writing_messages = 0

        self._stats_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._invalid: Counter[str] = Counter()
        self._flagged: Counter[str] = Counter()
        self._logged_kinds: set[str] = set()
        self._store_down_since: float | None = None
        self._store_failures_in_row = 0
        self._commit_handles: deque[PublishHandle] = deque(maxlen=1000)
        # Late marks not yet in the store: site -> machine -> hour starts. Writer thread only (and stop(), after the
        # writer ended). Kept until written: the roll-ups would otherwise keep a stale hour.
        self._late: dict[str, dict[str, set[int]]] = {}
        self._late_seen = Recent(LATE_MEMORY)
        self._late_pending = 0  # machine-hours in _late, for stats (read from other threads)
        self._late_retry_at = 0.0
        self._late_delay = 0.0
        self._late_failing_since: float | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker, subscribe (QoS1, persistent session) and start the writer."""
        if self._link is not None:
            raise RuntimeError(f"collector {self.client_id!r} was already started; make a new Collector")
        link = self._new_link()
        self._link = link
        self._store_threads = _StoreThreads(self.writes_in_flight, f"collector-store-{self.client_id}")
        self._writer = threading.Thread(target=self._run_writer, name=f"collector-writer-{self.client_id}", daemon=True)
        self._writer.start()
        self._monitor = threading.Thread(
            target=self._run_monitor, name=f"collector-monitor-{self.client_id}", daemon=True
        )
        self._monitor.start()
        link.start()
        registry = self._registry
        if registry is None:
            log.warning(
                "collector %r: no site registry: messages are checked against the wire contract only (any agent, "
                "machine and signal is written, agent statuses are not); give the collector its site",
                self.client_id,
            )
        elif registry.open:
            log.warning(
                "collector %r: site has no agents: section, any agent may report any machine; declare agents to "
                "enforce",
                self.client_id,
            )
        log.info(
            "collector %r: subscribing to %s on %s, writing to %s database %r",
            self.client_id,
            ", ".join(self.filters),
            self.mqtt,
            self.store.url,
            self.store.database,
        )

    def _new_link(self) -> MqttLink:
        # A persistent session (session expiry from the MQTT settings) with manual acks: what is not acked is
        # redelivered to the next connection with this client id, whoever makes it.
        link = MqttLink(
            self.mqtt,
            self.client_id,
            persistent_session=True,
            manual_ack=True,
            on_message=self._on_message,
            on_connect=self._on_connect,
            receive_maximum=receive_maximum(self.max_queue_points),
        )
        link.subscribe(self.filters, qos=1)
        return link

    @property
    def registry(self) -> Registry | None:
        """The site registry messages are checked against."""
        return self._registry

    def set_registry(self, registry: Registry) -> None:
        """Check every message from now on against registry (a reloaded site file); one swap, nothing mixed.

        The site is what the collector subscribed to, so a registry of another site is refused (ValueError): changing
        site takes a restart.
        """
        if self.site != "+" and registry.site_id != self.site:
            raise ValueError(
                f"the site file is now of site {registry.site_id!r}, but this collector subscribes to site "
                f"{self.site!r}'s topics: restart it to change site"
            )
        self._registry = registry

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected to the broker; return whether it happened in time."""
        return self._link is not None and self._link.wait_connected(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write and ack what is queued (giving up after timeout_s if the store is down), then disconnect."""
        link, writer = self._link, self._writer
        if link is None or writer is None or self._stopped:
            return
        self._stopped = True
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify_all()
        # A write already in progress may take the store client's own timeout on top.
        writer.join(timeout_s + 15.0)
        if writer.is_alive():
            log.error(
                "collector %r: writer did not finish; disconnecting anyway, unacked messages are redelivered",
                self.client_id,
            )
        if not writer.is_alive():
            self._write_late_marks(final=True)
            if self._store_threads is not None:
                self._store_threads.stop(5.0)  # idle: the writer completed every chunk it handed over
        self._wait_for_commits()
        self._monitor_stop.set()
        if self._monitor is not None:
            self._monitor.join(5.0)
        link = self._link or link  # a resume may have replaced it
        link.stop()
        log.info("collector %r stopped: %s", self.client_id, self.summary())

    def _wait_for_commits(self) -> None:
        deadline = time.monotonic() + COMMIT_WAIT_S
        for handle in list(self._commit_handles):
            if not handle.wait(max(0.0, deadline - time.monotonic())):
                break

    # ---- reporting -------------------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since start: received, written, acked, invalid per kind, store failures, queue depth."""
        with self._cond:
            queued_messages, queued_points, paused = len(self._queue), self._queued_points, self._paused
        with self._stats_lock:
            c = self._counts
            return {
                "received": c["received"],
                "written_points": c["written_points"],
                "written_messages": c["written_messages"],
                "acked": c["acked"],
                "invalid": dict(self._invalid),
                "flagged": dict(self._flagged),
                "retained_repeats": c["retained_repeats"],
                "ignored": c["ignored"],
                "store_rejected": c["store_rejected"],
                "store_failures": c["store_failures"],
                "dead_lettered": c["dead_lettered"],
                "dead_letter_errors": c["dead_letter_errors"],
                "commits_published": c["commits_published"],
                "stale_acks_skipped": c["stale_acks_skipped"],
                "abandoned": c["abandoned"],
                "connects": c["connects"],
                "queued_messages": queued_messages,
                "queued_points": queued_points,
                "batches_written": c["batches_written"],
                "write_retries": c["write_retries"],
                "pauses": c["pauses"],
                "resumes": c["resumes"],
                "deferred": c["deferred"],
                "paused": paused,
                "late_hours_marked": c["late_hours_marked"],
                "late_hours_pending": self._late_pending,
            }

    def summary(self) -> str:
        """One line with the main counters, for the periodic log."""
        s = self.stats
        invalid = sum(s["invalid"].values())
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(s["invalid"].items()))
        return (
            f"received {s['received']}, wrote {s['written_messages']} messages ({s['written_points']} points), "
            f"invalid {invalid}{f' ({kinds})' if kinds else ''}, store rejected {s['store_rejected']}, "
            f"store failures {s['store_failures']}, queued {s['queued_messages']}, pauses {s['pauses']}"
            f"{' (paused now)' if s['paused'] else ''}"
        )

    def metrics_snapshot(self) -> CollectorSnapshot:
        """The figures the metrics endpoint and the health check read (thread-safe copies)."""
        now = time.monotonic()
        with self._cond:
            held_messages = len(self._queue) + self._writing_messages
            held_points, paused = self._held_points, self._paused
        link = self._link
        with self._stats_lock:
            c = self._counts
            counters = {
                "messages_received": c["received"],
                "messages_written": c["written_messages"],
                "samples_written": c["written_points"],
                "batches_written": c["batches_written"],
                "write_retries": c["write_retries"],
                "store_failures": c["store_failures"],
                "acked": c["acked"],
                "commits_published": c["commits_published"],
                "pauses": c["pauses"],
                "deferred": c["deferred"],
            }
            dead = Counter(self._invalid)
            dead[STORE_REJECTED] += c["store_rejected"]
            gaps, duplicates = self._seq_tracker.gaps(), self._seq_tracker.duplicates()
            store_since, broker_since = self._store_down_since, self._broker_down_since
        connected = link is not None and link.connected
        return CollectorSnapshot(
            counters=counters,
            gauges={
                "queue_messages": held_messages,
                "queue_points": held_points,
                "paused": 1 if paused else 0,
                "mqtt_connected": 1 if connected else 0,
                "store_down_seconds": 0.0 if store_since is None else now - store_since,
            },
            dead_letters=dict(dead),
            seq_gaps=gaps,
            duplicates=duplicates,
            store_down_s=None if store_since is None else now - store_since,
            broker_down_s=None if broker_since is None or connected else now - broker_since,
        )

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._counts[key] += n

    def _first_time(self, kind: str) -> bool:
        with self._stats_lock:
            if kind in self._logged_kinds:
                return False
            self._logged_kinds.add(kind)
            return True

    # ---- MQTT thread -----------------------------------------------------------------------------------------

    def _on_connect(self) -> None:
        # After a reconnect the broker redelivers every unacked message with its old id. Acking a copy received
        # before the reconnect could then ack a newer message that reuses that id, so only current copies are acked.
        with self._cond:
            self._generation += 1
        self._count("connects")
        link = self._link
        shared = [f for f in self.filters if f.startswith("$share/")]
        # MqttLink subscribed them without the prefix: losing nothing beats sharing nothing ($share/ filters match
        # no message on a broker without shared subscriptions).
        unshared = shared and link is not None and link.shared_subscriptions is False
        if unshared and link is not None and self._first_time("no-shared-subscriptions"):
            log.warning(
                "collector %r: broker %s has no shared subscriptions (MQTT %s); subscribed to %s without the "
                "$share/ prefix, so replicas will each get every message (and write it again)",
                self.client_id,
                self.mqtt,
                link.protocol,
                ", ".join(f.split("/", 2)[2] for f in shared),
            )

    def _on_message(self, msg: InboundMessage) -> None:
        # An exception escaping here would stop the MQTT client's thread: nothing may escape.
        try:
            self._handle(msg)
        except Exception as exc:
            log.exception("collector %r: unexpected error handling a message on %s", self.client_id, msg.topic)
            try:
                self._refuse(msg, "internal-error", f"{type(exc).__name__}: {exc}"[:300])
            except Exception:
                log.exception("collector %r: could not refuse the message either; left unacked", self.client_id)

    def _handle(self, msg: InboundMessage) -> None:
        with self._cond:
            if self._stopping:
                return  # not acked: the broker redelivers it to the next collector with this client id
            if self._paused:
                self._defer()
                return
            generation = self._generation
        self._count("received")
        retained_key = (msg.topic, payload_digest(msg.payload)) if msg.retain else None
        if retained_key is not None and retained_key in self._refused_retained:
            # The broker resends retained messages on every (re)subscribe: refused once is enough.
            self._count("retained_repeats")
            self._ack_now(msg)
            return
        try:
            pending = self._validate(msg, generation)
        except PayloadError as exc:
            if retained_key is not None:
                self._refused_retained.put(retained_key)
            self._refuse(msg, exc.kind, exc.detail)
            return
        if pending is None:
            self._count("ignored")
            self._ack_now(msg)
            return
        self._enqueue(pending)

    def _validate(self, msg: InboundMessage, generation: int) -> _Pending | None:
        topic = _parse_topic(msg.topic)
        registry = self._registry  # read once: a reload mid-message cannot mix two registries
        now_ms = int(time.time() * 1000)
        written: Written | None = None
        first_ts = last_ts = None
        if topic.kind is TopicKind.TELEMETRY:
            if registry is None:
                batch = parse_telemetry(topic, msg.payload)
                checked = _render(lambda: CheckedLines.of(batch))
            else:  # checked and rendered in one pass
                checked = _render(lambda: registry.check_telemetry_lines(topic, msg.payload, now_ms))
            if self._seqs.conflicts(checked, msg.payload):
                self._flag(
                    msg,
                    SEQ_CONFLICT,
                    f"agent {checked.agent!r} sent seq {checked.seq} of machine {checked.machine!r} again with "
                    "different content; written (every sample passed the checks), but the agent's seq or outbox is "
                    "broken",
                )
            lines = checked.lines
            written = Written(checked.site, checked.agent, checked.machine, checked.seq)
            first_ts, last_ts = checked.first_ts, checked.last_ts
        elif topic.kind is TopicKind.MACHINE_STATUS:
            if not msg.payload:
                return None  # someone cleared the retained status: nothing happened on the machine
            if registry is None:
                status = parse_status(topic, msg.payload)
            else:
                status = registry.check_machine_status(topic, msg.payload, now_ms)
            lines = _render(lambda: [to_line(status_to_point(topic, status))])
        elif topic.kind is TopicKind.AGENT_STATUS and registry is not None:
            if not msg.payload:
                return None  # a cleared retained status
            agent_status = registry.check_agent_status(topic, msg.payload, now_ms)
            lines = _render(lambda: [to_line(agent_status_to_point(topic, agent_status, now_ms))])
        else:
            return None  # commits are not stored (filters rarely match them)
        return _Pending(
            msg.topic,
            msg.payload,
            msg.mid,
            msg.qos,
            generation,
            tuple(lines),
            written,
            time.monotonic(),
            first_ts,
            last_ts,
        )

    def _refuse(self, msg: InboundMessage, kind: str, detail: str) -> None:
        with self._stats_lock:
            self._invalid[kind] += 1
        self._report(msg, kind, detail, "refused a message", "not written, {where}, acked", "the periodic summary")
        self._ack_now(msg)

    def _flag(self, msg: InboundMessage, kind: str, detail: str) -> None:
        """Count, dead-letter a copy of and log once a message that is written all the same."""
        with self._stats_lock:
            self._flagged[kind] += 1
        self._report(msg, kind, detail, "flagged a message", "written all the same, copy {where}", "stats")

    def _report(self, msg: InboundMessage, kind: str, detail: str, what: str, outcome: str, counted_in: str) -> None:
        """Dead-letter msg with its reason; log the first of each kind (the rest are only counted)."""
        where = self._dead_letter_to(msg.topic, msg.payload, kind, detail)
        if self._first_time(kind):
            log.warning(
                "collector %r: %s on %s (%s: %s); %s. Further %r messages are only counted (see %s)",
                self.client_id,
                what,
                msg.topic,
                kind,
                detail,
                outcome.format(where=where),
                kind,
                counted_in,
            )

    def _dead_letter_to(self, topic: str, payload: bytes, kind: str, detail: str) -> str:
        if self._dead_letter is None:
            return "no dead-letter file configured"
        try:
            self._dead_letter.append(DeadLetter(int(time.time() * 1000), topic, kind, detail, payload))
        except OSError as exc:
            self._count("dead_letter_errors")
            if self._first_time("dead-letter-error"):
                log.error(
                    "collector %r: cannot append to dead-letter file %s (%s); refused messages are only "
                    "counted until this is fixed",
                    self.client_id,
                    self._dead_letter.path,
                    exc,
                )
            return "dead-lettering failed"
        self._count("dead_lettered")
        return f"dead-lettered to {self._dead_letter.path}"

    def _ack_now(self, msg: InboundMessage) -> None:
        if msg.qos > 0 and self._link is not None:
            self._link.ack(msg.mid, msg.qos)
            self._count("acked")

    def _enqueue(self, pending: _Pending) -> None:
        with self._cond:
            if self._stopping:
                return  # not acked: redelivered later
            # Backpressure without blocking paho's thread (a blocked thread sends no keepalive and the broker drops
            # us): a message that does not fit pauses the collector and is left unacked, as is every message until
            # the resume.
            weight = pending.weight
            if self._paused or (self._held_points > 0 and self._held_points + weight > self.max_queue_points):
                self._pause()
                self._defer()
                return
            self._queue.append(pending)
            self._queued_points += weight
            self._held_points += weight
            # The writer times a batch from its first message and cuts it when full; waking it for every message in
            # between costs a thread switch each.
            queued = len(self._queue)
            if (
                queued == 1
                or queued == self.flush_messages
                or self._queued_points - weight < self.batch_points <= self._queued_points
            ):
                self._cond.notify_all()
        if pending.written is not None:
            w = pending.written
            with self._stats_lock:
                self._seq_tracker.observe(w.site, w.agent, w.machine, w.seq)

    def _pause(self) -> None:
        """Stop taking messages (caller holds _cond); the writer resumes once everything held is written."""
        if self._paused:
            return
        self._paused = True
        now = time.monotonic()
        self._paused_since = now
        self._count("pauses")
        level = logging.DEBUG if now - self._last_resume < PAUSE_LOG_QUIET_S else logging.WARNING
        log.log(
            level,
            "collector %r: queue full (%d points held, limit %d); paused: messages arriving now stay unacked at the "
            "broker, which redelivers them once the queue has drained and the collector reconnects",
            self.client_id,
            self._held_points,
            self.max_queue_points,
        )

    def _defer(self) -> None:
        # Received while paused: forgotten, never acked. The broker keeps it in this session's in-flight window and
        # sends it again after the resume's reconnect.
        self._count("deferred")

    # ---- writer thread ---------------------------------------------------------------------------------------
    # The writer checks and prepares each chunk, hands it to a store thread and goes on with the next one while the
    # store answers (up to writes_in_flight chunks at once). It completes chunks strictly in the order it handed
    # them over, so acks and commits keep the order the messages came in; a chunk that checks a machine's stored
    # history, or overlaps what a chunk in flight writes for the machine, waits until those chunks are complete.

    def _run_writer(self) -> None:
        try:
            while True:
                batch = self._take()
                self._complete_answered()
                if batch is None:
                    return
                if batch:
                    self._flush(batch)
                elif not self._inflight and self._late:
                    self._write_late_marks()  # an idle tick: nothing else may come to carry a failed mark's retry
                self._maybe_resume()
        finally:
            # Stopping (or a bug): every chunk handed over is completed (acked, or abandoned) before the writer ends.
            while self._inflight:
                self._complete(self._inflight.popleft())

    def _maybe_resume(self) -> None:
        """Once paused and everything held is written and acked, reconnect so the broker redelivers the rest."""
        with self._cond:
            if not self._paused or self._held_points > 0 or self._stopping:
                return
            paused_for = time.monotonic() - self._paused_since
            quiet = self._paused_since - self._last_resume < PAUSE_LOG_QUIET_S
        old = self._link
        self._wait_for_commits()  # commits of the written batches go out on the old connection
        self._resuming = True
        try:
            if old is not None:
                old.stop()  # a clean DISCONNECT after the acks already queued: the session keeps the rest
            link = self._new_link()
            with self._cond:
                if self._stopping:
                    return
                self._paused = False
                self._last_resume = time.monotonic()
                self._link = link
            link.start()
        finally:
            self._resuming = False
        self._count("resumes")
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "collector %r: queue drained after a %.1f s pause; resumed with a reconnect (the broker redelivers what "
            "arrived meanwhile)",
            self.client_id,
            paused_for,
        )

    def _take(self) -> list[_Pending] | None:
        """Wait for a batch worth writing; [] on a timeout tick or once the oldest write in flight is answered, None
        when stopping with nothing left."""
        with self._cond:
            while True:
                if self._queue and self._gave_up:
                    self._count("abandoned", len(self._queue))
                    dropped = list(self._queue)
                    self._queue.clear()
                    self._queued_points = 0
                    self._held_points -= sum(p.weight for p in dropped)
                    self._cond.notify_all()
                timeout = 1.0
                if self._queue:
                    age = time.monotonic() - self._queue[0].received_at
                    # While paused nothing more arrives: flush at once rather than wait for the age.
                    if (
                        self._stopping
                        or self._paused
                        or self._queued_points >= self.batch_points
                        or len(self._queue) >= self.flush_messages
                        or age >= self.flush_interval_s
                    ):
                        return self._pop_batch()
                    timeout = self.flush_interval_s - age
                elif self._stopping:
                    return None
                elif self._paused and self._held_points == 0:
                    return []  # let the writer resume
                if self._inflight and self._inflight[0].future.done():
                    return []  # complete it: its acks free room at the broker and in the queue
                if not self._cond.wait(timeout) and not self._queue:
                    return []

    def _pop_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        points = 0
        while self._queue and (not batch or points + self._queue[0].weight <= self.batch_points):
            item = self._queue.popleft()
            batch.append(item)
            points += item.weight
        self._queued_points -= points
        self._writing_messages += len(batch)
        return batch

    def _release(self, chunk: list[_Pending]) -> None:
        with self._cond:
            self._held_points -= sum(p.weight for p in chunk)
            self._writing_messages -= len(chunk)
            self._cond.notify_all()

    def _flush(self, batch: list[_Pending]) -> None:
        # Chunks: a message resending time an earlier message of the batch covers is checked after that one is written.
        parts = chunks(batch)
        handed = 0
        try:
            for chunk in parts:
                self._submit(chunk)
                handed += 1
        except _Abandoned:
            # Everything handed over before is older: completed first, so what is acked stays a prefix.
            while self._inflight:
                self._complete(self._inflight.popleft())
            self._give_up(sum(len(part) for part in parts[handed:]))
        except Exception:
            # Unexpected (a bug): keep the writer alive; the rest stays unacked and comes back on reconnect.
            log.exception("collector %r: writing a batch failed unexpectedly; left unacked", self.client_id)
        finally:
            for part in parts[handed:]:
                self._release(part)

    def _submit(self, chunk: list[_Pending]) -> None:
        """Check chunk against stored history (after the writes it depends on) and hand what passes to the store."""
        history = self._history
        reach = _reach(chunk)
        checked = self._retrying(lambda: history.suspects(chunk), reads=lambda: history.reads)
        self._settle(reach, checked)
        conflicts = self._retrying(lambda: history.conflicts(chunk, refresh=False), reads=lambda: history.reads)
        refused = {id(item) for item, _ in conflicts}
        kept = [item for item in chunk if id(item) not in refused] if refused else chunk
        lines = [line for item in kept for line in item.lines]
        late, seen = self._late_hours(kept)
        # While marks fail, new ones wait for the pending marks' retry (as they did before writes overlapped).
        mark_now = bool(late) and time.monotonic() >= self._late_retry_at
        while len(self._inflight) >= self.writes_in_flight:
            self._complete(self._inflight.popleft())
        marks = late if mark_now else {}
        threads = self._store_threads
        if threads is None:
            raise RuntimeError(f"collector {self.client_id!r}: writing before start()")
        future = threads.submit(lambda: self._store_write(lines, marks))
        self._inflight.append(_Write(chunk, conflicts, kept, reach, late, seen, mark_now, future))
        future.add_done_callback(self._answered)

    def _settle(self, reach: dict[_ReachKey, tuple[int, int]], checked: set[tuple[str, str]]) -> None:
        """Complete, in order, the writes in flight that a chunk reaching `reach` depends on.

        It depends on a write of the same machine (or status topic) if it checks that machine's stored history, or
        starts at or before the newest sample the write holds for it: the check must see what the write stores.
        """
        last = -1
        for n, write in enumerate(self._inflight):
            for key, (first, _) in reach.items():
                theirs = write.reach.get(key)
                if theirs is not None and (key in checked or first <= theirs[1]):
                    last = n
                    break
        for _ in range(last + 1):
            self._complete(self._inflight.popleft())

    def _answered(self, _future: Future[_Answer]) -> None:
        # A store thread finished a write: wake the writer, which may be waiting for a batch.
        with self._cond:
            self._cond.notify_all()

    def _complete_answered(self) -> None:
        """Complete the oldest writes in flight that the store has answered (in order: stop at one still out)."""
        while self._inflight and self._inflight[0].future.done():
            self._complete(self._inflight.popleft())

    def _complete(self, write: _Write) -> None:
        """Wait for the store's answer to write, then record it and ack its messages (or leave them unacked)."""
        answer: _Answer | None = None
        try:
            answer = write.future.result()
        except _Abandoned:
            self._give_up(len(write.chunk))
        except Exception:
            log.exception("collector %r: writing a batch failed unexpectedly; left unacked", self.client_id)
        try:
            if answer is not None:
                if self._gave_up:
                    # Answered after an earlier write was abandoned: left unacked too, so acks stay in order.
                    self._count("abandoned", len(write.chunk))
                else:
                    self._landed(write, answer)
        except Exception:
            log.exception("collector %r: completing a write failed unexpectedly; left unacked", self.client_id)
        finally:
            if not write.released:
                write.released = True
                self._release(write.chunk)

    def _landed(self, write: _Write, answer: _Answer) -> None:
        self.write_duration.observe(answer.duration_s)
        self._count("batches_written")
        self._history.wrote(write.kept)
        for seen in write.late_seen:
            self._late_seen.put(seen)  # the same points again are not marked again
        if write.late and not write.mark_now:
            self._add_late(write.late)  # marks are failing: these wait with the pending ones for the retry
        elif write.late:
            marked = [hours for site, ms in write.late.items() if site not in answer.unmarked for hours in ms.values()]
            if marked:
                self._count("late_hours_marked", sum(map(len, marked)))
            if answer.unmarked:
                self._add_late(answer.unmarked)
                self._late_failed(answer.mark_error, time.monotonic())
        if self._late:
            self._write_late_marks()  # marks that failed before: retried when due
        # Released before the acks: the broker sends more as soon as it has them, and they must fit.
        write.released = True
        self._release(write.chunk)
        self._finish(write.chunk, write.conflicts, _refused_items(write.kept, answer.rejected))

    def _give_up(self, messages: int) -> None:
        """Leave messages unacked for good: stopping while the store is unavailable (logged once)."""
        with self._cond:
            first = not self._gave_up
            self._gave_up = True
            queued = len(self._queue)
        self._count("abandoned", messages)
        if first:
            held = messages + queued + sum(len(w.chunk) for w in self._inflight)
            log.warning(
                "collector %r: stopping while the store is unavailable; %d message(s) left unacked, the broker "
                "redelivers them to the next collector with this client id",
                self.client_id,
                held,
            )

    def _store_write(self, lines: list[str], marks: dict[str, dict[str, set[int]]]) -> _Answer:
        """Write lines, retrying while the store is unavailable, then mark their late hours (on a store thread)."""
        started = time.monotonic()
        rejected = self._retrying(lambda: self.store.write_lines(lines)) if lines else []
        duration = time.monotonic() - started
        unmarked: dict[str, dict[str, set[int]]] = {}
        error: str | None = None
        received_ms = int(time.time() * 1000)
        for site in sorted(marks):
            try:
                self.store.mark_late_hours(site, {m: sorted(hours) for m, hours in marks[site].items()}, received_ms)
            except Exception as exc:
                unmarked[site] = marks[site]
                error = str(exc)
        return _Answer(rejected, duration, unmarked, error)

    def _retrying(self, call: Callable[[], _T], *, reads: Callable[[], int] | None = None) -> _T:
        """Return call(), retrying while the store is unavailable; raise _Abandoned once stopping past the deadline.

        reads: how many times the caller has read the store so far; a call that read nothing says nothing about
        whether the store is back.
        """
        attempt = 0
        while True:
            before = reads() if reads is not None else 0
            try:
                result = call()
            except StoreUnavailable as exc:
                delay = self._retry_delay(attempt, exc.retry_after_s)
                self._store_failed(str(exc), delay)
            except StoreRejected as exc:
                # The request itself was refused (credentials, permissions, a store setting), not any line: the
                # data is good, so keep it unacked and retry until the operator fixes the store or our options.
                delay = self._retry_delay(attempt, None)
                self._store_failed(f"{exc}; check the store's credentials and settings", delay, error=True)
            else:
                if reads is None or reads() != before:
                    self._store_answered()
                return result
            self._count("write_retries")
            if not self._sleep(delay):
                raise _Abandoned
            attempt += 1

    def _retry_delay(self, attempt: int, retry_after_s: float | None) -> float:
        """0.5 s doubling to 10 s, +-20 % jitter; at least what the store asked for (up to 60 s)."""
        base = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2.0 ** min(attempt, 30))
        delay = base * (1 + BACKOFF_JITTER * (2 * self._rng() - 1))
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, RETRY_AFTER_CAP_S))
        return delay

    def _sleep(self, delay: float) -> bool:
        """Wait delay seconds (less if stopping); return False once stopping and past the stop deadline."""
        end = time.monotonic() + delay
        with self._cond:
            while True:
                now = time.monotonic()
                if self._stopping and now >= self._deadline:
                    return False
                remaining = min(end, self._deadline) - now
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)

    def _store_failed(self, reason: str, delay: float, *, error: bool = False) -> None:
        with self._stats_lock:
            self._counts["store_failures"] += 1
            self._store_failures_in_row += 1
            first = self._store_down_since is None
            if first:
                self._store_down_since = time.monotonic()
        if first:
            log.log(
                logging.ERROR if error else logging.WARNING,
                "collector %r: %s; keeping %d point(s) unacked and retrying in %.1f s (backoff up to %.0f s)",
                self.client_id,
                reason,
                self._held_points,
                delay,
                MAX_BACKOFF_S,
            )

    def _store_answered(self) -> None:
        with self._stats_lock:
            since, failures = self._store_down_since, self._store_failures_in_row
            self._store_down_since = None
            self._store_failures_in_row = 0
        if since is not None:
            log.info(
                "collector %r: time-series store %s is back after %.1f s and %d failed attempt(s); writing resumes",
                self.client_id,
                self.store.url,
                time.monotonic() - since,
                failures,
            )

    # ---- late marks (writer thread) -------------------------------------------------------------------------

    def _late_hours(self, items: list[_Pending]) -> tuple[dict[str, dict[str, set[int]]], list[tuple[str, bytes]]]:
        """The hours (site -> machine -> hour starts) of samples and statuses older than LATE_AFTER_MS in items, and
        the (topic, digest) keys of the messages they come from; messages marked before are left out."""
        cutoff = int(time.time() * 1000) - LATE_AFTER_MS
        marks: dict[str, dict[str, set[int]]] = {}
        seen: list[tuple[str, bytes]] = []
        for item in items:
            first, last = item.first_ts, item.last_ts
            if first is not None:
                if first >= cutoff:
                    continue  # new data, the normal case: nothing else to look at
            elif item.written is not None or not item.lines:
                continue
            topic = _parse_topic(item.topic)
            if topic.kind is TopicKind.TELEMETRY:
                if first is not None and last is not None and last < cutoff and _hour(first) == _hour(last):
                    hours = {_hour(first)}  # every sample late and in one hour: no need to read each line
                else:
                    hours = {_hour(ts) for ts in map(_line_ts, item.lines) if ts < cutoff}
            elif topic.kind is TopicKind.MACHINE_STATUS:
                hours = _status_hours(item.payload, cutoff)
            else:
                continue  # agent statuses are stamped when received: never late
            if not hours:
                continue
            key = (item.topic, payload_digest(item.payload))
            if key in self._late_seen:
                continue  # the same points again: the roll-ups know of them already
            seen.append(key)
            marks.setdefault(topic.site, {}).setdefault(topic.machine, set()).update(hours)
        return marks, seen

    def _add_late(self, marks: dict[str, dict[str, set[int]]]) -> None:
        """Add marks to the pending ones (written with the next flush that is due)."""
        for site, machines in marks.items():
            for machine, hours in machines.items():
                pending = self._late.setdefault(site, {}).setdefault(machine, set())
                before = len(pending)
                pending.update(hours)
                self._late_pending += len(pending) - before

    def _late_failed(self, error: object, now: float) -> None:
        """Back off the pending marks' retry; warn the first time in a row."""
        self._late_delay = min(LATE_RETRY_MAX_S, max(1.0, self._late_delay * 2))
        self._late_retry_at = now + self._late_delay
        if self._late_failing_since is None:
            self._late_failing_since = now
            log.warning(
                "collector %r: could not mark %d machine-hour(s) of late data for the roll-ups (%s); the data "
                "is written and acked, the marks are kept and retried with the next flush",
                self.client_id,
                self._late_pending,
                error,
            )

    def _write_late_marks(self, *, final: bool = False) -> None:
        """Write the pending late marks, one request per site; on failure keep them and retry later (logged once)."""
        now = time.monotonic()
        if not self._late or (now < self._late_retry_at and not final):
            return
        received_ms = int(time.time() * 1000)
        for site in sorted(self._late):
            marks = self._late[site]
            n = sum(len(hours) for hours in marks.values())
            try:
                self.store.mark_late_hours(site, {m: sorted(hours) for m, hours in marks.items()}, received_ms)
            except Exception as exc:
                if final:
                    listing = "; ".join(
                        f"{s}/{m}: {', '.join(str(h) for h in sorted(hours))}"
                        for s, machines in sorted(self._late.items())
                        for m, hours in sorted(machines.items())
                    )
                    log.error(
                        "collector %r: stopping with %d late machine-hour(s) not marked for the roll-ups (%s); "
                        "rebuild them with `shopfloor rollup rebuild`: %s",
                        self.client_id,
                        self._late_pending,
                        exc,
                        listing[:2000],
                    )
                else:
                    self._late_failed(exc, now)
                return
            del self._late[site]
            self._late_pending -= n
            self._count("late_hours_marked", n)
        self._late_delay = 0.0
        self._late_retry_at = 0.0
        if self._late_failing_since is not None:
            log.info(
                "collector %r: late data marked for the roll-ups again after %.1f s",
                self.client_id,
                now - self._late_failing_since,
            )
            self._late_failing_since = None

    def _finish(
        self,
        batch: list[_Pending],
        conflicts: list[tuple[_Pending, Conflict]],
        refused: list[tuple[_Pending, str]],
    ) -> None:
        for item, conflict in conflicts:
            with self._stats_lock:
                self._invalid[SAMPLE_CONFLICT] += 1
            detail = conflict.describe()
            where = self._dead_letter_to(item.topic, item.payload, SAMPLE_CONFLICT, detail)
            if self._first_time(SAMPLE_CONFLICT):
                log.warning(
                    "collector %r: refused a message on %s (%s: %s); not written, %s, acked. Further %r messages "
                    "are only counted (see the periodic summary)",
                    self.client_id,
                    item.topic,
                    SAMPLE_CONFLICT,
                    detail,
                    where,
                    SAMPLE_CONFLICT,
                )
        refused_ids = {id(item) for item, _ in refused} | {id(item) for item, _ in conflicts}
        for item, reason in refused:
            where = self._dead_letter_to(item.topic, item.payload, STORE_REJECTED, reason)
            if self._first_time(STORE_REJECTED):
                log.warning(
                    "collector %r: the store refused the message on %s (%s); not written, %s, acked. Further "
                    "refusals are only counted (see the periodic summary)",
                    self.client_id,
                    item.topic,
                    reason,
                    where,
                )
        written = [item for item in batch if id(item) not in refused_ids]
        with self._stats_lock:
            self._counts["store_rejected"] += len(refused)
            self._counts["written_messages"] += len(written)
            self._counts["written_points"] += sum(len(item.lines) for item in written)
        self._ack_batch(batch)
        # Refused batches (by the store, or for rewriting history) are committed too: they are dead-lettered for
        # good, and an agent resending them on every reconnect would never get them stored.
        link = self._link
        if link is None:
            return
        for topic, body in commit_messages(item.written for item in batch if item.written is not None).items():
            self._commit_handles.append(link.publish(str(topic), body, qos=1))
            self._count("commits_published")

    def _ack_batch(self, batch: list[_Pending]) -> None:
        """Ack the batch's messages in order, in one write; skip those received before a reconnect."""
        link = self._link
        if link is None:
            return
        with self._cond:
            generation = self._generation
        acked = [item for item in batch if item.qos > 0 and item.generation == generation]
        stale = sum(1 for item in batch if item.qos > 0 and item.generation != generation)
        if acked and not link.connected:
            # The broker redelivers them after the reconnect, and the new copies get acked instead.
            stale, acked = stale + len(acked), []
        link.ack_many([item.mid for item in acked if item.qos == 1])
        for item in acked:
            if item.qos > 1:
                link.ack(item.mid, item.qos)
        if acked:
            self._count("acked", len(acked))
        if stale:
            self._count("stale_acks_skipped", stale)

    # ---- monitor thread --------------------------------------------------------------------------------------

    def _run_monitor(self) -> None:
        """Log the summary every summary_interval_s (also while the writer waits on the store); track the broker."""
        next_summary = time.monotonic() + self.summary_interval_s
        while not self._monitor_stop.wait(MONITOR_TICK_S):
            now = time.monotonic()
            link = self._link
            down = link is None or (not link.connected and not self._resuming)
            with self._stats_lock:
                if not down:
                    self._broker_down_since = None
                elif self._broker_down_since is None:
                    self._broker_down_since = now
            if self.summary_interval_s > 0 and now >= next_summary:
                next_summary = now + self.summary_interval_s
                log.info("collector %r: %s", self.client_id, self.summary())


_T = TypeVar("_T")
# Topics parsed, by name: a collector sees the same few over and over. Shared by the collectors of a process
# (parsing is pure); bounded: once full it starts over.
_TOPICS: dict[str, Topic] = {}
_MAX_TOPICS = 10_000


def _parse_topic(name: str) -> Topic:
    """Topic.parse, remembered; an unknown topic is a refusal (unknown-topic)."""
    topic = _TOPICS.get(name)
    if topic is None:
        try:
            topic = Topic.parse(name)
        except ValueError as exc:
            raise PayloadError("unknown-topic", str(exc)) from exc
        if len(_TOPICS) >= _MAX_TOPICS:
            _TOPICS.clear()
        _TOPICS[name] = topic
    return topic


def receive_maximum(max_queue_points: int) -> int:
    """How many unacked messages the broker may have in flight to us: as many as the queue holds when they carry
    SAMPLES_PER_MESSAGE samples each, never more messages than points (a message has >= 1), at least a floor.

    More in flight than the queue holds makes the collector pause, and paho still parses every message that arrives
    while paused before it is dropped for redelivery: with 100-sample messages and one in flight per queued point
    (20,000 messages for 20,000 points) a drain deferred 10,000 messages for 4,000 written.
    """
    return min(65535, max_queue_points, max(MIN_RECEIVE_MAXIMUM, max_queue_points // SAMPLES_PER_MESSAGE))


def _hour(ts_ms: int) -> int:
    """The start of the UTC hour holding ts_ms."""
    return ts_ms - ts_ms % HOUR_MS


def _reach(chunk: Sequence[_Pending]) -> dict[_ReachKey, tuple[int, int]]:
    """Per machine of its telemetry, the oldest and newest ts chunk writes; per status topic, all time (a status
    may rewrite one stored at any time: one in flight is completed before another of its topic is written)."""
    out: dict[_ReachKey, tuple[int, int]] = {}
    for item in chunk:
        if not item.lines:
            continue
        key: _ReachKey | None = item.history_key
        first, last = item.first_ts, item.last_ts
        if key is None or first is None or last is None:
            key, (first, last) = (item.topic,), _ALL_TIME
        known = out.get(key)
        out[key] = (first, last) if known is None else (min(first, known[0]), max(last, known[1]))
    return out


def _line_ts(line: str) -> int:
    """The timestamp (epoch ms) a line protocol line ends with."""
    return int(line[line.rindex(" ") + 1 :])


def _status_hours(payload: bytes, cutoff_ms: int) -> set[int]:
    """The hours a machine status stamped before cutoff_ms shapes: its own, through its until (an outbox loss)."""
    status = json.loads(payload)  # validated already: ts and until are epoch ms ints
    ts, until = status["ts"], status.get("until")
    if ts >= cutoff_ms:
        return set()
    last = max(ts, until) if isinstance(until, int) else ts
    # A loss spans [ts, until]; bounded (the registry's skew window is 7 days) so no status marks without end.
    last = min(last, ts + LATE_SPAN_MAX_MS)
    return set(range(ts - ts % HOUR_MS, last + 1, HOUR_MS))


def _render(make: Callable[[], _T]) -> _T:
    """Line protocol for a validated message; a value it cannot express is a refusal, never a crash."""
    try:
        return make()
    except ValueError as exc:
        raise PayloadError("invalid-payload", f"cannot render as line protocol: {exc}") from exc


def _refused_items(batch: list[_Pending], rejected: list[RejectedLine]) -> list[tuple[_Pending, str]]:
    """The messages owning the refused lines, each with the store's reason for its first refused line."""
    if not rejected:
        return []
    owners: list[int] = []  # owners[i]: index in batch of the message that line i belongs to
    for n, item in enumerate(batch):
        owners.extend([n] * len(item.lines))
    refused: dict[int, tuple[_Pending, str]] = {}
    for line in rejected:
        owner = owners[line.index]
        refused.setdefault(owner, (batch[owner], line.reason))
    return [refused[i] for i in sorted(refused)]
