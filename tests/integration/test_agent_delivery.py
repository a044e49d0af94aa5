"""Delivery against a real Mosquitto and a small "collector" built on a real MqttLink that commits what it receives."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from collector.convert import Written, commit_messages
from edge_agent.delivery import Delivery, DeliveryOptions, parse_commit
from edge_agent.outbox import Outbox
from launcher.services import Mosquitto
from shopfloor.contracts import (
    LinkStatus,
    Sample,
    SignalValue,
    StatusMessage,
    TelemetryBatch,
    Topic,
    TopicKind,
    parse_status,
    parse_telemetry,
)
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings

pytestmark = pytest.mark.integration

T0 = 1_764_291_600_000
AGENT = "edge-1"


class FakeCollector:
    """Subscribes to a site's telemetry and statuses and, while committing, commits each batch at once."""

    def __init__(self, url: str, site: str, *, commit: bool = True) -> None:
        self.site = site
        self.commit = commit
        self._lock = threading.Lock()
        self.batches: list[TelemetryBatch] = []
        self.statuses: list[tuple[str, StatusMessage, bool]] = []
        self.link = MqttLink(MqttSettings.from_url(url), f"collector-{uuid.uuid4().hex[:8]}", on_message=self._on)
        self.link.subscribe([f"shopfloor/v1/{site}/+/telemetry", f"shopfloor/v1/{site}/+/status"])
        self.link.start()
        assert self.link.wait_connected(10)
        time.sleep(0.2)  # the SUBACK

    def _on(self, msg: InboundMessage) -> None:
        topic = Topic.parse(msg.topic)
        if topic.kind is TopicKind.MACHINE_STATUS:
            with self._lock:
                self.statuses.append((topic.machine, parse_status(topic, msg.payload), msg.retain))
            return
        batch = parse_telemetry(topic, msg.payload)
        with self._lock:
            self.batches.append(batch)
        if self.commit:
            for commit_topic, body in commit_messages(
                [Written(batch.site, batch.agent, batch.machine, batch.seq)]
            ).items():
                self.link.publish(str(commit_topic), body, qos=1)

    def seqs(self, machine: str) -> list[int]:
        with self._lock:
            return [b.seq for b in self.batches if b.machine == machine]

    def close(self) -> None:
        self.link.stop()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Agent:
    """The agent's side: outbox, link and delivery, as the edge agent wires them."""

    def __init__(self, url: str, data_dir: Path, site: str, options: DeliveryOptions, **outbox_kw: int) -> None:
        self.site = site
        self.outbox = Outbox(data_dir, AGENT, **outbox_kw)
        settings = MqttSettings.from_url(url, reconnect_min_s=1.0, reconnect_max_s=1.0, reconnect_jitter=0.0)
        self.link = MqttLink(settings, f"agent-{uuid.uuid4().hex[:8]}")
        self.delivery = Delivery(self.outbox, self.link, AGENT, [site], options=options)
        self.link.start()
        self.task = asyncio.create_task(self.delivery.run())
        self.ts = T0

    def submit(self, machine: str = "cnc-01", **values: SignalValue) -> int:
        self.ts += 1000
        sample = Sample(ts=self.ts, values=values or {"good_count": 1})
        [sealed] = self.delivery.submit(self.site, machine, [sample])
        return sealed.seq

    @property
    def depth(self) -> int:
        return int(self.delivery.stats["depth"])

    async def close(self, clean: bool = True) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        if clean:
            await asyncio.to_thread(self.link.stop)
        else:
            # "Dies": no final message, the outbox is simply dropped (its lock released with the process).
            await asyncio.to_thread(self.link._client.loop_stop)
        self.outbox.close()


def site_id() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


def test_commit_payload_validation() -> None:
    assert parse_commit(b'{"v":1,"machines":{"cnc-01":[[0,2],[5,5]]}}') == {"cnc-01": [(0, 2), (5, 5)]}
    for bad in (
        b"nope",
        b"[]",
        b'{"v":2,"machines":{}}',
        b'{"v":1,"machines":{"CNC":[[0,1]]}}',
        b'{"v":1,"machines":{"cnc-01":[[2,1]]}}',
        b'{"v":1,"machines":{"cnc-01":[[true,1]]}}',
        b'{"v":1,"machines":{"cnc-01":[[0,1,2]]}}',
        b'{"v":1,"machines":{"cnc-01":[[-1,1]]}}',
        b'{"v":1,"machines":{"cnc-01":[[0,1]]},"x":1}',
    ):
        with pytest.raises(ValueError):
            parse_commit(bad)


def test_broker_killed_while_collector_down_every_batch_arrives(fresh_mosquitto: Mosquitto, tmp_path: Path) -> None:
    site = site_id()

    async def main() -> None:
        collector = FakeCollector(fresh_mosquitto.url, site)
        agent = Agent(fresh_mosquitto.url, tmp_path, site, DeliveryOptions(commit_timeout_s=10))
        await until(lambda: agent.link.connected, "agent connected")
        sealed = [agent.submit() for _ in range(5)]
        await until(lambda: agent.depth == 0, "first five committed")
        collector.close()
        sealed += [agent.submit() for _ in range(5)]  # the broker takes them; nobody commits
        await until(lambda: agent.link.stats["awaiting_ack"] == 0, "broker acked the five")
        assert agent.depth == 5
        await asyncio.to_thread(fresh_mosquitto.kill)
        await until(lambda: not agent.link.connected, "agent saw the broker go")
        sealed += [agent.submit() for _ in range(5)]  # sealed while the broker is down
        assert agent.depth == 10
        await asyncio.to_thread(fresh_mosquitto.start)
        collector = await asyncio.to_thread(FakeCollector, fresh_mosquitto.url, site)
        await until(lambda: agent.depth == 0, "the backlog resent and committed")
        assert set(collector.seqs("cnc-01")) >= set(sealed[5:])
        assert sealed == list(range(15))
        stats = agent.delivery.stats
        assert stats["resent"] >= 10
        assert stats["reconnects"] == 1
        assert stats["commits_received"] >= 15
        live = agent.submit()
        await until(lambda: live in collector.seqs("cnc-01") and agent.depth == 0, "live data flows again")
        collector.close()
        await agent.close()

    run(main)


def test_uncommitted_batch_is_resent_after_the_commit_timeout(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site = site_id()

    async def main() -> None:
        collector = FakeCollector(mosquitto.url, site, commit=False)
        agent = Agent(mosquitto.url, tmp_path, site, DeliveryOptions(commit_timeout_s=0.5))
        await until(lambda: agent.link.connected, "agent connected")
        seq = agent.submit()
        await until(lambda: collector.seqs("cnc-01").count(seq) >= 3, "two resends")
        assert agent.delivery.stats["resent"] >= 2
        assert agent.depth == 1
        collector.commit = True
        await until(lambda: agent.depth == 0, "committed at last")
        resent = agent.delivery.stats["resent"]
        await asyncio.sleep(1.0)
        assert agent.delivery.stats["resent"] == resent  # committed rows are not resent
        collector.close()
        await agent.close()

    run(main)


def test_bad_commits_are_counted_and_ignored(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site = site_id()

    async def main() -> None:
        agent = Agent(mosquitto.url, tmp_path, site, DeliveryOptions(commit_timeout_s=60))
        await until(lambda: agent.link.connected, "agent connected")
        await asyncio.sleep(0.2)
        agent.submit()
        topic = str(Topic.commits(site, AGENT))
        rogue = MqttLink(MqttSettings.from_url(mosquitto.url), f"rogue-{uuid.uuid4().hex[:6]}")
        rogue.start()
        assert rogue.wait_connected(10)
        for body in (b"garbage", b'{"v":1,"machines":{"cnc-01":[[5,1]]}}'):
            assert rogue.publish(topic, body).wait(5)
        await until(lambda: agent.delivery.stats["bad_commits"] == 2, "two bad commits counted")
        assert agent.depth == 1
        rogue.stop()
        await agent.close()

    run(main)


def test_outbox_bound_drops_oldest_and_publishes_the_loss(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site = site_id()
    one = len(
        TelemetryBatch(
            v=1, agent=AGENT, site=site, machine="cnc-01", seq=0, samples=[Sample(ts=T0, values={"good_count": 1})]
        ).to_json()
    )

    async def main() -> None:
        collector = FakeCollector(mosquitto.url, site, commit=False)
        # Room for about three batches.
        options = DeliveryOptions(commit_timeout_s=1.0, loss_interval_s=0.2)
        agent = Agent(mosquitto.url, tmp_path, site, options, max_bytes=3 * one + 10)
        await until(lambda: agent.link.connected, "agent connected")
        for i in range(5):
            agent.submit(good_count=i)  # ts T0+1000 .. T0+5000; seqs 0..4
        # Seqs 0 and 1 dropped (T0+1000 and T0+2000); one loss for cnc-01.
        assert [r.seq for r in agent.outbox.pending(10)] == [2, 3, 4]
        # The first drop is published at once; the loss grown by the second drop a loss interval later.
        await until(lambda: len(collector.statuses) >= 2, "the loss status, updated")
        assert "1 batches (1 samples)" in collector.statuses[0][1].detail
        machine, status, retained = collector.statuses[-1]
        assert (machine, status.status, status.ts, status.agent, retained) == (
            "cnc-01",
            LinkStatus.UNREACHABLE,
            T0 + 1000,
            AGENT,
            False,
        )
        assert status.detail == (
            "outbox full: 2 batches (2 samples) from 2025-11-28T01:00:01.000Z to 2025-11-28T01:00:02.000Z dropped"
        )
        assert agent.delivery.stats["dropped_batches"] == 2
        # The loss stays until a commit for a batch sealed after it (seq >= 2) arrives.
        assert len(agent.outbox.losses()) == 1
        collector.commit = True
        await until(lambda: agent.depth == 0, "the rest resent after the commit timeout and committed")
        agent.submit()
        await until(lambda: agent.outbox.losses() == [], "the loss forgotten after a later commit")
        # Not retained: a newcomer sees no status for the machine.
        late = FakeCollector(mosquitto.url, site, commit=False)
        await asyncio.sleep(0.3)
        assert late.statuses == []
        late.close()
        collector.close()
        await agent.close()

    run(main)


def test_reopen_after_death_resends_what_is_uncommitted(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site = site_id()

    async def main() -> None:
        collector = FakeCollector(mosquitto.url, site, commit=False)
        first = Agent(mosquitto.url, tmp_path, site, DeliveryOptions(commit_timeout_s=60))
        await until(lambda: first.link.connected, "agent connected")
        sealed = [first.submit(machine=m) for m in ("cnc-01", "cnc-02", "cnc-01")]
        await until(lambda: len(collector.batches) == 3, "three batches seen, none committed")
        await first.close(clean=False)
        collector.commit = True
        second = Agent(mosquitto.url, tmp_path, site, DeliveryOptions(commit_timeout_s=60))
        await until(lambda: second.depth == 0, "the three resent and committed after the restart")
        assert second.delivery.stats["resent"] == 3
        assert sealed == [0, 0, 1]
        assert second.submit() == 2  # seq survives the restart
        await until(lambda: second.depth == 0, "and the next one")
        collector.close()
        await second.close()

    run(main)
