"""End-to-end delivery: seal into the outbox, publish live, delete what collectors commit, resend the rest, paced.

Everything here runs on the agent's asyncio loop. paho calls back on its own thread; those callbacks only hand
over to the loop (call_soon_threadsafe), so the outbox is only ever touched from the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.outbox import Loss, Outbox, OutboxError, Pending, Sealed
from shopfloor.contracts import LinkStatus, Sample, StatusMessage, Topic, is_valid_id
from shopfloor.mqtt import InboundMessage, MqttLink

log = logging.getLogger(__name__)

MAX_COMMIT_RANGES = 10_000
_Key = tuple[str, str, int]  # site, machine, seq


def epoch_ms() -> int:
    """Return the current time in epoch milliseconds, UTC."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """Pacing of resends and how long a published batch may wait for its commit."""

    commit_timeout_s: float = 30.0
    resend_inflight: int = 50  # resent messages awaiting the broker's PUBACK
    resend_rate: float = 200.0  # resent messages per second
    tick_s: float = 0.05
    loss_interval_s: float = 5.0  # least time between two statuses of one growing loss
    enforce_interval_s: float = 60.0  # how often the age bound is applied when nothing is sealed

    def __post_init__(self) -> None:
        for name in ("commit_timeout_s", "resend_rate", "tick_s", "loss_interval_s", "enforce_interval_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"delivery: {name} must be positive, got {value!r}")
        if self.resend_inflight < 1:
            raise ValueError(f"delivery: resend_inflight must be at least 1, got {self.resend_inflight!r}")


class CommitError(ValueError):
    """A commit message that does not follow the contract."""


def parse_commit(payload: bytes) -> dict[str, list[tuple[int, int]]]:
    """Validate a commit payload {"v": 1, "machines": {machine: [[first, last], ...]}}; raise CommitError."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CommitError(f"not JSON ({str(exc)[:100]})") from exc
    if not isinstance(data, dict) or set(data) != {"v", "machines"}:
        raise CommitError("expected exactly the keys 'v' and 'machines'")
    if data["v"] != 1 or isinstance(data["v"], bool):
        raise CommitError(f"unknown version v={data['v']!r}")
    machines = data["machines"]
    if not isinstance(machines, dict):
        raise CommitError("'machines' is not an object")
    out: dict[str, list[tuple[int, int]]] = {}
    count = 0
    for machine, ranges in machines.items():
        if not is_valid_id(machine):
            raise CommitError(f"machine id {machine!r} is invalid")
        if not isinstance(ranges, list):
            raise CommitError(f"machine {machine!r}: ranges are not a list")
        parsed: list[tuple[int, int]] = []
        for r in ranges:
            count += 1
            if count > MAX_COMMIT_RANGES:
                raise CommitError(f"more than {MAX_COMMIT_RANGES} ranges")
            if (
                not isinstance(r, list)
                or len(r) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                or not 0 <= r[0] <= r[1] <= 2**63 - 1
            ):
                raise CommitError(f"machine {machine!r}: {r!r} is not a range [first, last] of seqs")
            parsed.append((r[0], r[1]))
        out[machine] = parsed
    return out


class Delivery:
    """Glue between the outbox and the MQTT link; call submit() and run() from the agent's event loop."""

    def __init__(
        self,
        outbox: Outbox,
        link: MqttLink,
        agent: str,
        sites: Sequence[str],
        *,
        options: DeliveryOptions | None = None,
        clock: Callable[[], int] = epoch_ms,
        monotonic: Callable[[], float] = time.monotonic,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.agent = agent
        self.options = options or DeliveryOptions()
        self.clock = clock
        self.monotonic = monotonic
        self._loop = loop or asyncio.get_running_loop()
        self._commit_topics = {str(Topic.commits(site, agent)): site for site in sites}
        self._telemetry_topics: dict[tuple[str, str], str] = {}
        # Published on this connection and not yet committed, by time of publish (oldest first).
        self._sent_at: OrderedDict[_Key, float] = OrderedDict()
        self._due: deque[_Key] = deque()  # commit timed out: resend
        self._resend_mids: dict[int, _Key] = {}
        self._pass_cursor: int | None = None  # row id the resend pass has reached, None when no pass runs
        self._pass_buffer: deque[Pending] = deque()
        self._pass_again = False
        self._tokens = 0.0
        self._last_tick = monotonic()
        self._next_enforce = self._last_tick + self.options.enforce_interval_s
        self._losses: list[Loss] = outbox.losses()
        self._seen_dropped = outbox.stats()["dropped_batches"]
        self._loss_published: dict[int, tuple[int, float]] = {}  # loss id -> (batches, when) on this connection
        self._loss_mids: dict[int, Loss] = {}
        self._loss_acked: dict[int, int] = {}  # loss id -> batches the broker acknowledged on this connection
        self._connects = 0
        self._counts: dict[str, int] = {
            "sealed": 0,
            "published": 0,
            "resent": 0,
            "commits_received": 0,
            "bad_commits": 0,
            "seal_failures": 0,
            "loss_statuses": 0,
            "queue_full": 0,
        }
        self._logged: set[str] = set()
        link.add_connect_listener(lambda: self._from_mqtt(self._on_connected))
        link.add_message_listener(self._message_from_mqtt)
        link.on_publish_done(lambda mid, ok, reason: self._from_mqtt(self._on_publish_done, mid, ok, reason))
        link.subscribe(list(self._commit_topics), qos=1)

    # ---- paho's thread: hand over only ----------------------------------------------------------------------

    def _from_mqtt(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are shutting down
            self._loop.call_soon_threadsafe(callback, *args)

    def _message_from_mqtt(self, msg: InboundMessage) -> None:
        if msg.topic in self._commit_topics:
            self._from_mqtt(self._on_commit, msg.topic, msg.payload)

    # ---- event loop ------------------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, float]:
        """Figures for metrics: outbox depth, bytes and age, resends, drops, commits, refusals, reconnects."""
        box = self.outbox.stats(self.clock())
        link = self.link.stats
        return {
            "depth": box["depth"],
            "bytes": box["bytes"],
            "oldest_age_s": box["oldest_age_ms"] / 1000,
            "dropped_batches": box["dropped_batches"],
            "dropped_samples": box["dropped_samples"],
            "losses_pending": len(self._losses),
            "refused_publishes": sum(link["refused_publishes"].values()),
            "reconnects": max(0, self._connects - 1),
            **self._counts,
        }

    def submit(self, site: str, machine: str, samples: list[Sample]) -> list[Sealed]:
        """Seal samples as machine's next batch and publish it now if connected; return what was sealed."""
        return self.submit_many([(site, machine, samples)])

    def submit_many(self, items: Sequence[tuple[str, str, list[Sample]]]) -> list[Sealed]:
        """Seal several machines' batches in one transaction, then publish them live if connected."""
        try:
            sealed = self.outbox.seal_many(items, self.clock())
        except OutboxError as exc:
            self._counts["seal_failures"] += 1
            self._log_once(
                type(exc).__name__,
                logging.ERROR,
                "outbox %s: %s; further failures are only counted (seal_failures)",
                self.outbox.path,
                exc,
            )
            self._check_losses()
            return []
        self._counts["sealed"] += len(sealed)
        self._check_losses()
        if self.link.connected:
            for s in sealed:
                if self._publish((s.site, s.machine, s.seq), s.payload, resend=False):
                    self._counts["published"] += 1
        return sealed

    async def run(self) -> None:
        """Resend, time out commits, publish losses and apply the age bound until cancelled."""
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("delivery: unexpected error; continuing")
            await asyncio.sleep(self.options.tick_s)

    def tick(self) -> None:
        """Do one round of the background work (run() calls this every tick_s)."""
        now = self.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        if now >= self._next_enforce:
            self._next_enforce = now + self.options.enforce_interval_s
            try:
                self.outbox.enforce(self.clock())
            except OutboxError as exc:  # pragma: no cover - enforce raises sqlite errors as OutboxError only
                self._log_once("enforce", logging.ERROR, "outbox %s: %s", self.outbox.path, exc)
            self._check_losses()
        if not self.link.connected:
            return
        self._publish_losses(now)
        deadline = now - self.options.commit_timeout_s
        while self._sent_at:
            key, sent = next(iter(self._sent_at.items()))
            if sent > deadline:
                break
            del self._sent_at[key]
            self._due.append(key)
        rate = self.options.resend_rate
        self._tokens = min(max(1.0, rate * self.options.tick_s * 2), self._tokens + rate * dt)
        while self._tokens >= 1 and len(self._resend_mids) < self.options.resend_inflight:
            row = self._next_resend()
            if row is None:
                break
            if not self._publish((row.site, row.machine, row.seq), row.payload, resend=True):
                break
            self._tokens -= 1

    def _next_resend(self) -> Pending | None:
        while self._due:
            site, machine, seq = self._due.popleft()
            row = self.outbox.get(site, machine, seq)
            if row is not None:
                return row
        while self._pass_cursor is not None:
            if not self._pass_buffer:
                self._pass_buffer.extend(self.outbox.pending(64, after_id=self._pass_cursor))
                if not self._pass_buffer:
                    self._pass_cursor = 0 if self._pass_again else None
                    self._pass_again = False
                    return None
            row = self._pass_buffer.popleft()
            self._pass_cursor = row.id
            if (row.site, row.machine, row.seq) not in self._sent_at:
                return row
        return None

    def _topic(self, site: str, machine: str) -> str:
        topic = self._telemetry_topics.get((site, machine))
        if topic is None:
            topic = self._telemetry_topics[(site, machine)] = str(Topic.telemetry(site, machine))
        return topic

    def _publish(self, key: _Key, payload: bytes, *, resend: bool) -> bool:
        handle = self.link.publish(self._topic(key[0], key[1]), payload, qos=1, retain=False)
        if not handle.queued:
            # paho's queue is full: the row stays in the outbox; a later pass sends it.
            self._counts["queue_full"] += 1
            self._pass_again = True
            if self._pass_cursor is None:
                self._pass_cursor = 0
            return False
        self._sent_at[key] = self.monotonic()
        self._sent_at.move_to_end(key)
        if resend:
            self._resend_mids[handle.mid] = key
            self._counts["resent"] += 1
        return True

    def _on_connected(self) -> None:
        self._connects += 1
        # Whatever was in flight on the old connection may be lost: resend every uncommitted row, oldest first.
        self._sent_at.clear()
        self._due.clear()
        self._resend_mids.clear()
        self._pass_buffer.clear()
        self._pass_cursor = 0
        self._pass_again = False
        self._loss_published.clear()
        self._loss_mids.clear()
        self._loss_acked.clear()
        self._publish_losses(self.monotonic())

    def _on_publish_done(self, mid: int, ok: bool, _reason: str) -> None:
        self._resend_mids.pop(mid, None)
        loss = self._loss_mids.pop(mid, None)
        if loss is not None and ok:
            self._loss_acked[loss.id] = loss.batches

    def _on_commit(self, topic: str, payload: bytes) -> None:
        site = self._commit_topics[topic]
        try:
            machines = parse_commit(payload)
        except CommitError as exc:
            self._counts["bad_commits"] += 1
            self._log_once(
                "bad-commit",
                logging.WARNING,
                "ignored a commit on %s (%s); further bad commits are only counted (bad_commits)",
                topic,
                exc,
            )
            return
        self._counts["commits_received"] += 1
        try:
            deleted = self.outbox.commit_many(site, machines)
        except Exception as exc:
            self._log_once(
                "commit-failed", logging.ERROR, "outbox %s: cannot apply a commit (%s)", self.outbox.path, exc
            )
            return
        for machine, seq in deleted:
            self._sent_at.pop((site, machine, seq), None)
        self._forget_delivered_losses(site, machines)

    # ---- losses ----------------------------------------------------------------------------------------------

    def _check_losses(self) -> None:
        dropped = self.outbox.stats()["dropped_batches"]
        if dropped != self._seen_dropped:
            self._seen_dropped = dropped
            self._losses = self.outbox.losses()
            if self.link.connected:
                self._publish_losses(self.monotonic())

    def _publish_losses(self, now: float) -> None:
        for loss in self._losses:
            published = self._loss_published.get(loss.id)
            if published is not None and (
                published[0] == loss.batches or now - published[1] < self.options.loss_interval_s
            ):
                continue
            message = StatusMessage(
                status=LinkStatus.UNREACHABLE,
                ts=loss.first_ts,
                # Consumers show [ts, first sample after until) as lost, samples of it that reached the store too:
                # dropped batches may have been written while their commit did not come back.
                until=max(loss.first_ts, loss.last_ts),
                agent=self.agent,
                detail=(
                    f"outbox full: {loss.batches} batches ({loss.samples} samples) from {_iso(loss.first_ts)} "
                    f"to {_iso(loss.last_ts)} dropped"
                ),
            )
            topic = str(Topic.machine_status(loss.site, loss.machine))
            handle = self.link.publish(topic, message.to_json(), qos=1, retain=False)
            if not handle.queued:
                return
            self._loss_published[loss.id] = (loss.batches, now)
            self._loss_mids[handle.mid] = loss
            self._counts["loss_statuses"] += 1

    def _forget_delivered_losses(self, site: str, machines: dict[str, list[tuple[int, int]]]) -> None:
        # A commit for a batch sealed after the loss, received after the broker took the loss status: the collector
        # has handled the status too (it processes one agent's messages in order).
        changed = False
        for loss in self._losses:
            ranges = machines.get(loss.machine)
            if loss.site != site or not ranges or self._loss_acked.get(loss.id) != loss.batches:
                continue
            if any(last >= loss.after_seq for _, last in ranges) and self.outbox.forget_loss(loss):
                changed = True
        if changed:
            self._losses = self.outbox.losses()

    def _log_once(self, kind: str, level: int, msg: str, *args: Any) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.log(level, msg, *args)


def _iso(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}Z"
