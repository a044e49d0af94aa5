"""The whole chain on real components: simulator -> agent -> Mosquitto -> collector -> InfluxDB -> API.

The simulator runs a short scenario with two tenants on one machine (and a third on another); the API's usage
figures must match the simulator's own ground truth: parts exactly, hours within one poll interval per session
boundary, energy within the meter's resolution.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.server import serve
from collector.registry import Registry
from collector.service import Collector
from edge_agent.agent import EdgeAgent
from launcher.demo import DemoKeys, prepare_site
from launcher.services import Mosquitto, free_port
from shopfloor.config import Role, SiteConfig
from shopfloor.influx import InfluxStore
from shopfloor.mqtt import MqttSettings
from simulators.runtime import Simulator
from simulators.scenario import load_scenario

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).resolve().parents[2] / "simulators" / "scenarios" / "e2e-two-tenants.yaml"
POLL_S = 0.5


def _site(example_site: SiteConfig, keys: DemoKeys) -> SiteConfig:
    fast = example_site.model_copy(
        update={"machines": [m.model_copy(update={"poll_interval_s": POLL_S}) for m in example_site.machines]}
    )
    return prepare_site(fast, keys)


def _get(url: str, key: str, params: dict[str, Any] | None = None) -> Any:
    resp = httpx.get(url, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def test_usage_matches_ground_truth(
    tmp_path: Path, fresh_mosquitto: Mosquitto, influx_store: InfluxStore, example_site: SiteConfig
) -> None:
    keys = DemoKeys()
    keys.add("admin", Role.ADMIN)
    keys.add("acme", Role.TENANT, "acme")
    site = _site(example_site, keys)
    scenario = load_scenario(SCENARIO)
    # A broker of its own: other tests' retained messages (other sites) would be refused, rightly, as unknown.
    mqtt = MqttSettings.from_url(fresh_mosquitto.url)
    collector = Collector(
        mqtt,
        influx_store,
        client_id=f"e2e-{free_port()}",
        dead_letter=tmp_path / "dl.jsonl",
        registry=Registry.from_site(site),
    )
    collector.start()

    async def run_chain() -> Simulator:
        sim = Simulator(site, scenario, seed=7, speed=1.0)
        await sim.start()
        agent = EdgeAgent(site, "edge-1", mqtt, tmp_path / "agent")  # the agent the site file declares
        task = asyncio.create_task(agent.run())
        await sim.wait_finished()
        # Let the last polls after the scenario's end travel through the chain.
        await asyncio.sleep(3 * POLL_S + 1.0)
        agent.stop()
        await asyncio.wait_for(task, 10)
        await sim.stop()
        return sim

    try:
        sim = asyncio.run(run_chain())
    finally:
        collector.stop()

    truth = sim.ground_truth()
    start_ms, end_ms = truth.start_ms, truth.end_ms
    expected = truth.usage(start_ms, end_ms)
    assert expected, "the scenario produced no tenant sessions"
    assert sum(u.good for per in expected.values() for u in per.values()) > 0
    assert collector.stats["invalid"] == {} or not any(collector.stats["invalid"].values())

    app_store = InfluxStore(influx_store.url, influx_store.database)
    server, thread = serve(create_app(site, app_store), "127.0.0.1", port := free_port())
    try:
        base = f"http://127.0.0.1:{port}"
        admin_key, acme_key = keys.keys["admin"][0], keys.keys["acme"][0]
        params = {"from": _iso(start_ms), "to": _iso(end_ms)}
        body = _get(f"{base}/v1/usage", admin_key, params)
        rows = {(r["tenant"], r["machine"]): r for r in body["rows"]}

        for tenant, per_machine in expected.items():
            for machine, want in per_machine.items():
                got = rows.get((tenant, machine))
                assert got is not None, f"no usage row for {tenant} on {machine}: {body}"
                sessions = max(1, got.get("sessions", 1))
                # Each session has two boundaries, each known to within one poll interval.
                tolerance_h = 2 * sessions * (POLL_S + 0.25) / 3600
                assert got["good"] == want.good, (tenant, machine, got, want)
                assert got["reject"] == want.reject, (tenant, machine, got, want)
                assert got["session_hours"] == pytest.approx(want.session_s / 3600, abs=tolerance_h)
                assert got["running_hours"] == pytest.approx(want.running_s / 3600, abs=tolerance_h)
                assert got["kwh"] == pytest.approx(want.kwh, abs=0.05 + 0.02 * want.kwh)
        real_tenants = set(expected)
        assert {t for (t, _m) in rows if t in real_tenants} == real_tenants

        # A tenant key sees its own rows only.
        mine = _get(f"{base}/v1/usage", acme_key, params)
        assert mine["rows"] and {r["tenant"] for r in mine["rows"]} == {"acme"}

        machines = _get(f"{base}/v1/machines", admin_key)
        by_id = {m["id"]: m for m in machines["machines"]}
        assert by_id["cnc-01"]["last_seen"] is not None

        timeline = _get(f"{base}/v1/machines/cnc-01/timeline", admin_key, params)
        states = {i["state"] for i in timeline["intervals"]}
        assert "RUNNING" in states
    finally:
        server.should_exit = True
        thread.join(10)
        app_store.close()
