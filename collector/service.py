"""The collector: validate MQTT messages, write them to the store in batches, ack only what the store accepted.

Two threads share one bounded queue. The MQTT client's thread validates each message (pure work), refuses the
invalid ones at once (count, log once per kind, dead-letter, ack) and enqueues the valid ones, blocking while the
queue is full so the broker keeps the rest unacked. The writer thread takes batches, writes them, retries with
backoff while the store is down, splits a refused batch to find its poison messages, then acks every message of
the batch and publishes commits for the agents. Nothing is kept per message beyond the queue, so any number of
collectors can share one subscription.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.convert import Written, batch_to_points, commit_messages, status_to_point
from collector.deadletter import DEFAULT_MAX_BYTES, DeadLetter, DeadLetterFile
from shopfloor.contracts import PayloadError, Topic, TopicKind, parse_status, parse_telemetry, subscription_filters
from shopfloor.influx import InfluxStore, Point, StoreRejected, StoreUnavailable
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings, PublishHandle

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
STORE_REJECTED = "store-rejected"
# How long stop() waits for the broker to confirm the last commits before disconnecting.
COMMIT_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class _Pending:
    """A valid message waiting to be written and acked."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    points: tuple[Point, ...]
    written: Written | None
    received_at: float

    @property
    def weight(self) -> int:
        # A batch without points still takes a queue slot, or an empty flood could bypass the bound.
        return max(1, len(self.points))


class _Abandoned(Exception):
    """Stopping while the store is still unavailable: leave the batch unacked for redelivery."""


class Collector:
    """Subscribe to telemetry and machine status, write them to the store, ack MQTT after the store accepted."""

    def __init__(
        self,
        mqtt: MqttSettings,
        store: InfluxStore,
        client_id: str = "shopfloor-collector",
        batch_points: int = 5000,
        flush_interval_s: float = 0.2,
        dead_letter: Path | None = None,
        topic_prefix: str = "",
        *,
        max_queue_points: int | None = None,
        dead_letter_max_bytes: int = DEFAULT_MAX_BYTES,
        summary_interval_s: float = 60.0,
    ) -> None:
        if batch_points < 1:
            raise ValueError(f"collector: batch_points must be at least 1, got {batch_points}")
        if not flush_interval_s > 0:
            raise ValueError(f"collector: flush_interval_s must be positive, got {flush_interval_s}")
        if max_queue_points is not None and max_queue_points < 1:
            raise ValueError(f"collector: max_queue_points must be at least 1, got {max_queue_points}")
        self.mqtt = mqtt
        self.store = store
        self.client_id = client_id
        self.batch_points = batch_points
        self.flush_interval_s = flush_interval_s
        self.filters = [topic_prefix + f for f in subscription_filters()]
        self.max_queue_points = max_queue_points or 4 * batch_points
        self.summary_interval_s = summary_interval_s
        self._dead_letter = DeadLetterFile(dead_letter, dead_letter_max_bytes) if dead_letter else None

        self._link: MqttLink | None = None
        self._writer: threading.Thread | None = None
        self._stopped = False
        # Guards the queue, the generation and the stop state; the writer and the MQTT thread wait on it.
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._queued_points = 0
        self._held_points = 0  # queued plus the batch being written: what the bound applies to
        self._generation = 0
        self._stopping = False
        self._deadline = math.inf
        self._gave_up = False

        self._stats_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._invalid: Counter[str] = Counter()
        self._logged_kinds: set[str] = set()
        self._store_down_since: float | None = None
        self._store_failures_in_row = 0
        self._commit_handles: deque[PublishHandle] = deque(maxlen=1000)

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker, subscribe (QoS1, persistent session) and start the writer."""
        if self._link is not None:
            raise RuntimeError(f"collector {self.client_id!r} was already started; make a new Collector")
        link = MqttLink(
            self.mqtt,
            self.client_id,
            persistent_session=True,
            manual_ack=True,
            on_message=self._on_message,
            on_connect=self._on_connect,
        )
        link.subscribe(self.filters, qos=1)
        self._link = link
        self._writer = threading.Thread(target=self._run_writer, name=f"collector-writer-{self.client_id}", daemon=True)
        self._writer.start()
        link.start()
        log.info(
            "collector %r: subscribing to %s on %s, writing to %s database %r",
            self.client_id,
            ", ".join(self.filters),
            self.mqtt,
            self.store.url,
            self.store.database,
        )

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
        deadline = time.monotonic() + COMMIT_WAIT_S
        for handle in list(self._commit_handles):
            if not handle.wait(max(0.0, deadline - time.monotonic())):
                break
        link.stop()
        log.info("collector %r stopped: %s", self.client_id, self.summary())

    # ---- reporting -------------------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since start: received, written, acked, invalid per kind, store failures, queue depth."""
        with self._cond:
            queued_messages, queued_points = len(self._queue), self._queued_points
        with self._stats_lock:
            c = self._counts
            return {
                "received": c["received"],
                "written_points": c["written_points"],
                "written_messages": c["written_messages"],
                "acked": c["acked"],
                "invalid": dict(self._invalid),
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
            }

    def summary(self) -> str:
        """One line with the main counters, for the periodic log."""
        s = self.stats
        invalid = sum(s["invalid"].values())
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(s["invalid"].items()))
        return (
            f"received {s['received']}, wrote {s['written_messages']} messages ({s['written_points']} points), "
            f"invalid {invalid}{f' ({kinds})' if kinds else ''}, store rejected {s['store_rejected']}, "
            f"store failures {s['store_failures']}, queued {s['queued_messages']}"
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
            generation = self._generation
        self._count("received")
        try:
            pending = self._validate(msg, generation)
        except PayloadError as exc:
            self._refuse(msg, exc.kind, exc.detail)
            return
        if pending is None:
            self._count("ignored")
            self._ack_now(msg)
            return
        self._enqueue(pending)

    def _validate(self, msg: InboundMessage, generation: int) -> _Pending | None:
        try:
            topic = Topic.parse(msg.topic)
        except ValueError as exc:
            raise PayloadError("unknown-topic", str(exc)) from exc
        written: Written | None = None
        if topic.kind is TopicKind.TELEMETRY:
            batch = parse_telemetry(topic, msg.payload)
            points = batch_to_points(batch)
            written = Written(batch.site, batch.agent, batch.machine, batch.seq)
        elif topic.kind is TopicKind.MACHINE_STATUS:
            if not msg.payload:
                return None  # someone cleared the retained status: nothing happened on the machine
            points = [status_to_point(topic, parse_status(topic, msg.payload))]
        else:
            return None  # agent statuses and commits have no machine tag: not stored (filters rarely match them)
        return _Pending(msg.topic, msg.payload, msg.mid, msg.qos, generation, tuple(points), written, time.monotonic())

    def _refuse(self, msg: InboundMessage, kind: str, detail: str) -> None:
        with self._stats_lock:
            self._invalid[kind] += 1
        where = self._dead_letter_to(msg.topic, msg.payload, kind, detail)
        if self._first_time(kind):
            log.warning(
                "collector %r: refused a message on %s (%s: %s); not written, %s, acked. Further %r messages are "
                "only counted (see the periodic summary)",
                self.client_id,
                msg.topic,
                kind,
                detail,
                where,
                kind,
            )
        self._ack_now(msg)

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
            # Backpressure: while full, block the MQTT thread; the broker keeps the rest unacked meanwhile.
            while (
                not self._stopping
                and self._held_points > 0
                and self._held_points + pending.weight > self.max_queue_points
            ):
                self._cond.wait(1.0)
            if self._stopping:
                return  # not acked: redelivered later
            self._queue.append(pending)
            self._queued_points += pending.weight
            self._held_points += pending.weight
            self._cond.notify_all()

    # ---- writer thread ---------------------------------------------------------------------------------------

    def _run_writer(self) -> None:
        next_summary = time.monotonic() + self.summary_interval_s
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                try:
                    self._flush(batch)
                except Exception:
                    # Unexpected (a bug): keep the writer alive; the batch stays unacked and comes back on reconnect.
                    log.exception("collector %r: writing a batch failed unexpectedly; left unacked", self.client_id)
                finally:
                    self._release(batch)
            if self.summary_interval_s > 0 and time.monotonic() >= next_summary:
                next_summary = time.monotonic() + self.summary_interval_s
                log.info("collector %r: %s", self.client_id, self.summary())

    def _take(self) -> list[_Pending] | None:
        """Wait for a batch worth writing; [] on a timeout tick, None when stopping with nothing left."""
        with self._cond:
            while True:
                if self._queue and self._gave_up:
                    self._count("abandoned", len(self._queue))
                    dropped = list(self._queue)
                    self._queue.clear()
                    self._queued_points = 0
                    self._held_points -= sum(p.weight for p in dropped)
                    self._cond.notify_all()
                if self._queue:
                    age = time.monotonic() - self._queue[0].received_at
                    if self._stopping or self._queued_points >= self.batch_points or age >= self.flush_interval_s:
                        return self._pop_batch()
                    timeout = self.flush_interval_s - age
                elif self._stopping:
                    return None
                else:
                    timeout = 1.0
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
        return batch

    def _release(self, batch: list[_Pending]) -> None:
        with self._cond:
            self._held_points -= sum(p.weight for p in batch)
            self._cond.notify_all()

    def _flush(self, batch: list[_Pending]) -> None:
        try:
            reason = self._write([p for item in batch for p in item.points])
            refused: list[tuple[_Pending, str]] = []
            if reason is not None and len(batch) == 1:
                refused = [(batch[0], reason)]
            elif reason is not None:
                # Find the poison messages: one write each. Bounded: every message is tried once.
                for item in batch:
                    item_reason = self._write(list(item.points))
                    if item_reason is not None:
                        refused.append((item, item_reason))
        except _Abandoned:
            with self._cond:
                self._gave_up = True
            self._count("abandoned", len(batch))
            log.warning(
                "collector %r: stopping while the store is unavailable; %d message(s) left unacked, the broker "
                "redelivers them to the next collector with this client id",
                self.client_id,
                len(batch) + len(self._queue),
            )
            return
        self._finish(batch, refused)

    def _write(self, points: list[Point]) -> str | None:
        """Write points, retrying while the store is unavailable; return None, or why the store refused them."""
        delay = FIRST_BACKOFF_S
        while True:
            try:
                self.store.write(points)
            except StoreUnavailable as exc:
                self._store_failed(exc, delay)
                if not self._sleep(delay):
                    raise _Abandoned from exc
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            except StoreRejected as exc:
                self._store_answered()
                return str(exc).strip()
            except ValueError as exc:  # a point line protocol cannot express; the contract should prevent it
                return f"cannot render as line protocol: {exc}"
            self._store_answered()
            return None

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

    def _store_failed(self, exc: StoreUnavailable, delay: float) -> None:
        with self._stats_lock:
            self._counts["store_failures"] += 1
            self._store_failures_in_row += 1
            first = self._store_down_since is None
            if first:
                self._store_down_since = time.monotonic()
        if first:
            log.warning(
                "collector %r: %s; keeping %d point(s) unacked and retrying in %.1f s (backoff up to %.0f s)",
                self.client_id,
                exc,
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

    def _finish(self, batch: list[_Pending], refused: list[tuple[_Pending, str]]) -> None:
        refused_ids = {id(item) for item, _ in refused}
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
            self._counts["written_points"] += sum(len(item.points) for item in written)
        for item in batch:
            self._ack_pending(item)
        # Refused batches are committed too: they are dead-lettered for good, and an agent resending them on every
        # reconnect would never get them stored.
        link = self._link
        if link is None:
            return
        for topic, body in commit_messages(item.written for item in batch if item.written is not None).items():
            self._commit_handles.append(link.publish(str(topic), body, qos=1))
            self._count("commits_published")

    def _ack_pending(self, item: _Pending) -> None:
        link = self._link
        if item.qos == 0 or link is None:
            return
        with self._cond:
            current = item.generation == self._generation
        if current and link.connected:
            link.ack(item.mid, item.qos)
            self._count("acked")
        else:
            # Received before a reconnect: the broker has redelivered it and the new copy gets acked instead.
            self._count("stale_acks_skipped")
