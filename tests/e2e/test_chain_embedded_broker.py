"""The chain through the embedded broker: simulator -> agent -> EmbeddedBroker (MQTT 3.1.1) -> collector -> InfluxDB.

Every sample the agent published (a tap on the broker sees them) lands in the store, and the agent's outbox ends
empty (the collectors committed every batch). Collectors with a `$share/` prefix fall back to plain subscriptions
(each replica gets every message, writes it again, harmlessly) and still land everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from collector.registry import Registry
from collector.service import Collector
from edge_agent.agent import EdgeAgent
from launcher.demo import DemoKeys, prepare_site
from shopfloor.config import SiteConfig
from shopfloor.contracts import subscription_filters
from shopfloor.embedded_broker import EmbeddedBroker
from shopfloor.influx import InfluxStore
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings
from simulators.runtime import Simulator
from simulators.scenario import load_scenario

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).resolve().parents[2] / "simulators" / "scenarios" / "e2e-two-tenants.yaml"
POLL_S = 0.25
RUN_S = 4.0


class Tap:
    """Every telemetry sample published on the broker: machine -> sample timestamps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ts: dict[str, set[int]] = defaultdict(set)

    def __call__(self, msg: InboundMessage) -> None:
        if not msg.topic.endswith("/telemetry"):
            return
        body = json.loads(msg.payload)
        with self.lock:
            self.ts[body["machine"]].update(s["ts"] for s in body["samples"])


def stored_ts(store: InfluxStore, site: str, machine: str, published: set[int]) -> set[int]:
    return {ts for ts, _fields in store.samples(site, machine, min(published), max(published) + 1)}


@pytest.mark.parametrize("replicas", [1, 2], ids=["one collector", "two collectors on $share"])
def test_everything_published_lands(
    replicas: int,
    tmp_path: Path,
    influx_store: InfluxStore,
    example_site: SiteConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    fast = example_site.model_copy(
        update={"machines": [m.model_copy(update={"poll_interval_s": POLL_S}) for m in example_site.machines]}
    )
    site = prepare_site(fast, DemoKeys())
    site_id = site.site.id
    prefix = "$share/collectors/" if replicas > 1 else ""
    with EmbeddedBroker() as broker:
        mqtt = MqttSettings.from_url(broker.url)
        tap = Tap()
        tap_link = MqttLink(mqtt, "e2e-tap", on_message=tap)
        tap_link.subscribe(subscription_filters(site_id))
        tap_link.start()
        collectors = [
            Collector(
                mqtt,
                influx_store,
                client_id=f"e2e-embedded-{n}",
                topic_prefix=prefix,
                dead_letter=tmp_path / f"dl-{n}.jsonl",
                registry=Registry.from_site(site),
                summary_interval_s=0,
            )
            for n in range(replicas)
        ]
        for collector in collectors:
            collector.start()
        agent = EdgeAgent(site, "edge-1", mqtt, tmp_path / "agent")
        drained: list[int] = []

        async def run_chain() -> None:
            sim = Simulator(site, load_scenario(SCENARIO), seed=7, speed=1.0)
            await sim.start()
            task = asyncio.create_task(agent.run())
            await asyncio.sleep(RUN_S)
            # Wait until every batch is committed (the outbox empty) before stopping the agent.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                outbox = agent._outbox
                if outbox is not None and outbox.stats()["depth"] == 0:
                    break
                await asyncio.sleep(0.1)
            outbox = agent._outbox
            drained.append(-1 if outbox is None else outbox.stats()["depth"])
            agent.stop()
            await asyncio.wait_for(task, 10)
            await sim.stop()

        try:
            assert all(c.wait_connected(10) for c in collectors) and tap_link.wait_connected(10)
            asyncio.run(run_chain())
        finally:
            tap_link.stop()
            for collector in collectors:
                collector.stop()
    assert drained == [0], "the agent's outbox did not drain: batches left uncommitted"
    with tap.lock:
        published = {m: set(ts) for m, ts in tap.ts.items()}
    assert set(published) == {m.id for m in site.machines}, "a machine published nothing"
    for machine, ts in published.items():
        missing = ts - stored_ts(influx_store, site_id, machine, ts)
        assert not missing, f"{machine}: {len(missing)} of {len(ts)} published samples not in the store"
    stats = [c.stats for c in collectors]
    assert all(s["written_points"] > 0 for s in stats)
    assert all(not any(s["invalid"].values()) for s in stats), stats
    fallbacks = [r.getMessage() for r in caplog.records if "has no shared subscriptions" in r.getMessage()]
    assert len(fallbacks) == (replicas if prefix else 0)
    if prefix:
        # No sharing: each replica got (and wrote) every telemetry message.
        assert stats[0]["received"] > 0 and stats[1]["received"] > 0
        assert "replicas will each get every message" in fallbacks[0]
