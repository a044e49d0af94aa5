"""The API's OEE against the simulator's ground-truth OEE (simulators.truth, an implementation of its own), end to end.

Two runs through the real chain, each compared with GroundTruth.oee for the same window, calendar and loss map:
- a replay of the packaged demo scenario for 12 hours, Monday 18:00 to Tuesday 06:00 Asia/Jakarta on the example
  site (its afternoon shift's end and a whole night shift across midnight), published by the simulator's replay
  (the agent's own polling and reporting code on simulated reads) to Mosquitto, taken by the collector to InfluxDB,
  and read from the API over HTTP, grouped by machine, shift and day, tenant and job;
- a live run: the simulator serving Modbus TCP, the edge agent polling it every 0.5 s, Mosquitto, the collector,
  InfluxDB, the API; a derived 30 s scenario with two tenants, a setup each, a breakdown with a stop reason, a
  microstop, rejects and a job run faster than its ideal cycle.

How close they must agree, derived from the truth ("within one poll per state change"):
- The agent sees a change at the first poll after it, so every edge of a true interval moves later by less than one
  poll interval P (live: plus the agent's scheduling delay, 0.25 s allowed). Moving an edge by d moves d of time from
  the group (and loss) of the interval after it to the group of the interval before it, both labelled by the
  calendar somewhere in [t, t + P). So for each true change at t, on each side of it (on the session basis only the
  sides with a badge logged in), for the calendar's label at t and at t + P, the group that side belongs to gets P
  of tolerance. A figure of a group made of times (PBT where not the calendar's alone, APT, each loss) may differ
  from the truth by at most its group's tolerance. PBT grouped by machine, shift and day is the calendar's: exact.
- A stop whose true length is within P of the loss map's microstop threshold may be measured on the other side of
  it and move whole between the microstops and its breakdown loss: its length plus P is added to its groups'
  tolerance (the test counts such stops; none may be needed, but the rule holds either way).
- Parts exactly: an increment is read at the first poll after the part and belongs to the interval holding at the
  poll before, which is where the truth puts the part (at its last millisecond of cycle), because a part takes a
  whole cycle (at least 1.5 s, longer than P) of RUNNING after any change of state, job or badge but a badge swap
  within one tenant; shift boundaries lie on the replay's poll grid (whole hours, polls on whole seconds). So
  produced, good and, with them, the ideal time are exact, and speed_loss (RUNNING - ideal) is within the tolerance.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from replaying import publish_replay

from api.app import create_app
from api.server import serve, stop
from collector.registry import Registry
from collector.service import Collector
from edge_agent.agent import EdgeAgent
from launcher.demo import DemoKeys, prepare_site
from launcher.services import InfluxDB, Mosquitto, free_port, temp_workdir
from shopfloor.calendar import Calendar
from shopfloor.config import AgentSpec, LossMapSpec, Role, SiteConfig
from shopfloor.contracts import Topic
from shopfloor.influx import InfluxStore
from shopfloor.mqtt import MqttLink, MqttSettings
from simulators.machine import Interval
from simulators.replay import Message, ReplayOptions, replay_messages
from simulators.runtime import Simulator
from simulators.scenario import load_scenario, scenarios_dir
from simulators.truth import GroundTruth, TruthOee
from simulators.world import World

pytestmark = pytest.mark.e2e

JKT = ZoneInfo("Asia/Jakarta")
REPLAY_FROM = int(datetime(2026, 11, 2, 18, 0, tzinfo=JKT).timestamp() * 1000)
REPLAY_TO = int(datetime(2026, 11, 3, 6, 0, tzinfo=JKT).timestamp() * 1000)
REPLAY_POLL_MS = 1000  # the example site's poll interval
LIVE_POLL_S = 0.5
LIVE_SLACK_MS = 250  # how late the agent's poll loop may run behind its schedule
TIME_LOSSES = ("setup", "no_operator", "no_material", "off", "maintenance", "other", "microstops", "unknown")


# ---- the tolerance, from the truth -----------------------------------------------------------------------------

Key = tuple[str | None, ...]


def _group_key(groups: tuple[str, ...], machine: str, iv: Interval, owners: dict[int, str], label: Any) -> Key:
    values = {
        "machine": machine,
        "tenant": owners.get(iv.badge),
        "job": iv.job or None,
        "shift": label.shift,
        "day": str(label.day),
    }
    return tuple(values[g] for g in groups)


def tolerances(
    truth: GroundTruth, calendar: Calendar, loss_map: LossMapSpec, groups: tuple[str, ...], w0: int, w1: int, p: int
) -> tuple[dict[Key, int], int]:
    """Per group, how far (ms) a time figure may be from the truth's; and how many stops were near the threshold."""
    session = "tenant" in groups
    micro_ms = round(loss_map.microstop_max_s * 1000)
    out: dict[Key, int] = {}

    def add(machine: str, sides: list[Interval], t0: int, t1: int, amount: int) -> None:
        labels = {calendar.label(t0, machine), calendar.label(t1, machine)}
        for iv in sides:
            if session and not iv.badge:
                continue  # outside every session: in no group's PBT
            for label in labels:
                if not session and not label.planned:
                    continue  # outside planned time: in no group's PBT
                key = _group_key(groups, machine, iv, truth.badge_owner, label)
                out[key] = out.get(key, 0) + amount

    near = 0
    for machine, mt in truth.machines.items():
        ivs = mt.intervals
        for before, after in itertools.pairwise(ivs):
            t = after.start_ms
            if w0 < t < w1:
                add(machine, [before, after], t, min(t + p - 1, w1 - 1), p)
        i = 0
        while i < len(ivs):
            if ivs[i].state.value != "STOPPED":
                i += 1
                continue
            j = i
            while j + 1 < len(ivs) and ivs[j + 1].state.value == "STOPPED" and ivs[j + 1].start_ms == ivs[j].end_ms:
                j += 1
            length = ivs[j].end_ms - ivs[i].start_ms
            if abs(length - micro_ms) < p and ivs[j].end_ms > w0 and ivs[i].start_ms < w1:
                near += 1
                add(machine, ivs[i : j + 1], max(ivs[i].start_ms, w0), min(ivs[j].end_ms, w1) - 1, length + p)
            i = j + 1
    return out, near


def compare(
    rows: list[dict[str, Any]],
    truth_rows: list[TruthOee],
    tolerance: dict[Key, int],
    groups: tuple[str, ...],
) -> list[str]:
    """Every difference beyond the tolerance, as text (empty: they agree)."""
    # PBT is the calendar's, exact, when the groups are cut by the calendar alone (machine, shift, day); grouped by
    # job or tenant it also depends on when the job or the badge changed.
    exact_pbt = set(groups) <= {"machine", "shift", "day"}
    api = {tuple(r[g] for g in groups): r for r in rows}
    problems: list[str] = []
    truth_keys = {tuple(t.group[g] for g in groups) for t in truth_rows}
    # Groups the API has and the truth has not may only be empty of planned time.
    for key in set(api) - truth_keys:
        if api[key]["pbt_s"] > 0:
            problems.append(f"{key}: the API has {api[key]['pbt_s']} s of PBT the truth does not know")
    for t in truth_rows:
        key = tuple(t.group[g] for g in groups)
        row = api.get(key)
        if row is None:
            problems.append(f"{key}: no API row for the truth's {t.pbt_s} s of PBT")
            continue
        tol_s = tolerance.get(key, 0) / 1000
        bad: dict[str, tuple[float, float]] = {}
        if exact_pbt and row["pbt_s"] != pytest.approx(t.pbt_s, abs=1e-6):
            bad["pbt_s"] = (row["pbt_s"], t.pbt_s)
        figures = {"pbt_s": (row["pbt_s"], t.pbt_s), "apt_s": (row["apt_s"], t.apt_s)}
        figures["speed_loss"] = (row["losses"]["speed_loss"], t.losses["speed_loss"])
        for name in TIME_LOSSES:
            figures[name] = (row["losses"][name], t.losses[name])
        # Breakdowns by stop reason ("none": a stop without one, which the simulator never makes).
        api_bd = {k.split(":", 1)[1]: v for k, v in row["losses"].items() if k.startswith("breakdown:")}
        truth_bd = {str(r): v for r, v in t.breakdowns.items()}
        for reason in set(api_bd) | set(truth_bd):
            figures[f"breakdown:{reason}"] = (api_bd.get(reason, 0.0), truth_bd.get(reason, 0.0))
        for name, (got, want) in figures.items():
            if abs(got - want) > tol_s + 1e-6:
                bad[name] = (got, want)
        # Parts exactly, and so the ideal time and the rejects loss.
        for name, got, want in (
            ("produced", row["produced"], t.produced),
            ("good", row["good"], t.good),
            ("rejects", row["losses"]["rejects"], t.losses["rejects"]),
        ):
            if got != pytest.approx(want, abs=1e-6):
                bad[name] = (got, want)
        if row["loss_map_version"] != t.loss_map_version or row["unknown_s"] != 0:
            bad["version/unknown"] = (row["unknown_s"], 0)
        if ("effectiveness_over_100" in row["flags"]) != ("effectiveness_over_100" in t.flags):
            bad["flag effectiveness_over_100"] = (row["effectiveness"] or 0, t.effectiveness or 0)
        if bad:
            problems.append(f"{key} (tolerance {tol_s} s): {bad}")
    return problems


# ---- the chain -------------------------------------------------------------------------------------------------


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wait_for(check: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def settle(collector: Collector, quiet_s: float = 0.5) -> None:
    """Wait until the collector has received nothing new for quiet_s and acknowledged (so written) all it received."""
    deadline = time.monotonic() + 30
    last = -1
    while True:
        stats = collector.stats
        if stats["received"] == last == stats["acked"] and stats["queued_messages"] == 0:
            return
        assert time.monotonic() < deadline, "the collector never went quiet"
        last = stats["received"]
        time.sleep(quiet_s)


@dataclass
class Services:
    broker: Mosquitto
    store: InfluxStore
    workdir: Path
    collector: Collector | None = None  # started by the test, stopped by the fixture


@pytest.fixture
def services(influxdb: InfluxDB) -> Iterator[Services]:
    """A broker of the test's own (no other test's retained messages), a fresh database; the collector comes later."""
    workdir = temp_workdir("sf-oee-truth-")
    broker = Mosquitto(workdir).start()
    store = InfluxStore(influxdb.url, f"test_oee_truth_{uuid.uuid4().hex[:10]}")
    store.ensure_database()
    holder = Services(broker, store, workdir)
    yield holder
    if holder.collector is not None:
        holder.collector.stop()
    broker.stop()
    store.close()
    shutil.rmtree(workdir, ignore_errors=True)


def start_collector(services: Services, site: SiteConfig, *, backfill: bool) -> Collector:
    collector = Collector(
        MqttSettings.from_url(services.broker.url),
        services.store,
        client_id=f"collector-{uuid.uuid4().hex[:8]}",
        flush_interval_s=0.05,
        dead_letter=services.workdir / "dead.jsonl",
        registry=Registry.from_site(site, backfill=backfill),
    )
    services.collector = collector
    collector.start()
    assert collector.wait_connected(10)
    # Probes (the agent's "online", stamped now: after every figure's window) until the subscription receives one.
    link = MqttLink(MqttSettings.from_url(services.broker.url), f"probe-{uuid.uuid4().hex[:8]}")
    link.start()
    try:
        assert link.wait_connected(10)
        start, deadline = collector.stats["received"], time.monotonic() + 15
        while collector.stats["received"] == start:
            assert time.monotonic() < deadline, "the collector never received a probe"
            payload = {"v": 1, "status": "online", "ts": int(time.time() * 1000), "agent": "edge-1"}
            topic = str(Topic.agent_status(site.site.id, "edge-1"))
            assert link.publish(topic, json.dumps(payload).encode(), qos=1).wait(10)
            time.sleep(0.1)
    finally:
        link.stop()
    return collector


def oee_over_http(site: SiteConfig, store: InfluxStore, queries: list[dict[str, str]], key: str) -> list[Any]:
    app = create_app(site, InfluxStore(store.url, store.database))
    port = free_port()
    server, thread = serve(app, "127.0.0.1", port)
    try:
        out = []
        for params in queries:
            resp = httpx.get(
                f"http://127.0.0.1:{port}/v1/oee", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
            assert resp.status_code == 200, resp.text
            out.append(resp.json())
        return out
    finally:
        stop(server, thread)


# ---- a replayed night --------------------------------------------------------------------------------------------

REPLAY_GROUPS = ["machine", "machine,shift,day", "tenant", "job", "machine,tenant,job"]


def test_a_replayed_night_agrees_with_the_ground_truth(example_site: SiteConfig, services: Services) -> None:
    keys = DemoKeys()
    keys.add("admin", Role.ADMIN)
    site = prepare_site(example_site, keys, fresh_ports=False)
    # A month-old night: the collector takes it as the backfill an operator starts (its skew window refuses it else).
    collector = start_collector(services, site, backfill=True)
    world = World(site, load_scenario(scenarios_dir() / "demo.yaml", site), 3, REPLAY_FROM, REPLAY_TO)
    messages: list[Message] = list(replay_messages(world, "edge-1", ReplayOptions()))
    want = publish_replay(services.broker.url, messages)
    sid = site.site.id
    wait_for(
        lambda: all(
            len(services.store.samples(sid, m, REPLAY_FROM, REPLAY_TO + 3_600_000)) == n for m, n in want.items()
        ),
        "the replay's samples in InfluxDB",
        timeout_s=60,
    )
    assert not any(collector.stats["invalid"].values()), collector.stats["invalid"]

    truth = world.ground_truth()
    calendar, loss_map = site.calendar_model(), site.oee.loss_map
    window = {"from": iso(truth.start_ms), "to": iso(truth.end_ms)}
    bodies = oee_over_http(
        site, services.store, [{**window, "group_by": g} for g in REPLAY_GROUPS], keys.keys["admin"][0]
    )
    problems: list[str] = []
    for group_by, body in zip(REPLAY_GROUPS, bodies, strict=True):
        groups = tuple(group_by.split(","))
        truth_rows = truth.oee(calendar, loss_map, truth.start_ms, truth.end_ms, groups)
        assert truth_rows and sum(t.produced for t in truth_rows) > 1000, group_by  # a busy night, not an empty one
        tolerance, near = tolerances(truth, calendar, loss_map, groups, truth.start_ms, truth.end_ms, REPLAY_POLL_MS)
        assert near <= 2, f"{near} stops within a poll of the microstop threshold: pick another seed"
        problems += [f"{group_by}: {p}" for p in compare(body["rows"], truth_rows, tolerance, groups)]
    assert problems == []
    # The night shift crosses local midnight: one row per machine, of Monday, holding all eight hours.
    nights = [r for r in bodies[1]["rows"] if r["shift"] == "night"]
    assert [(r["day"], r["pbt_s"]) for r in nights] == [("2026-11-02", 28800.0)] * 5


# ---- a live run --------------------------------------------------------------------------------------------------

LIVE_SCENARIO = textwrap.dedent(
    """\
    name: oee-live
    duration: 30s
    machines: [cnc-01, laser-01]
    random_stops: false
    sessions:
      - {machine: cnc-01, badge: 1001, at: 3s, until: 15s,
         jobs: [{id: ACME-001, ideal_cycle_s: 1.8, cycle_s: 2.0, jitter: 0.05, reject_rate: 0.15, setup: 2s}]}
      # faster than its ideal cycle: effectiveness above 100 %, flagged
      - {machine: cnc-01, badge: 2001, at: 17s, until: 28s,
         jobs: [{id: BATIK-07, ideal_cycle_s: 2.0, cycle_s: 1.2, jitter: 0.02, reject_rate: 0.1, setup: 2s}]}
      - {machine: laser-01, badge: 3001, at: 3s, until: 28s,
         jobs: [{id: CIPTA-LZ1, ideal_cycle_s: 1.5, cycle_s: 1.7, jitter: 0.05, reject_rate: 0.05, setup: 2s}]}
    events:
      - {at: 10s, machine: laser-01, event: breakdown, reason: 12, duration: 5s}   # a breakdown (> 2 s)
      - {at: 20s, machine: laser-01, event: breakdown, reason: 7, duration: 1s}    # a microstop (<= 2 s)
    """
)
LIVE_GROUPS = ["machine", "tenant", "machine,tenant,job"]


def test_a_live_run_agrees_with_the_ground_truth(tmp_path: Path, example_site: SiteConfig, services: Services) -> None:
    keys = DemoKeys()
    keys.add("admin", Role.ADMIN)
    served = [
        m.model_copy(update={"poll_interval_s": LIVE_POLL_S})
        for m in example_site.machines
        if m.id in ("cnc-01", "laser-01")
    ]
    data = example_site.model_copy(
        update={
            "machines": served,
            "agents": [AgentSpec(id="edge-1", machines=[m.id for m in served])],
            # Microstops up to 2 s: the 30 s scenario's 5 s stop is a breakdown, its 1 s stop a microstop.
            "oee": example_site.oee.model_copy(
                update={
                    "loss_map": example_site.oee.loss_map.model_copy(
                        update={"microstop_max_s": 2.0, "version": "live-1"}
                    )
                }
            ),
        }
    )
    site = prepare_site(data, keys)  # validated again, with free ports for the simulated PLCs
    path = tmp_path / "oee-live.yaml"
    path.write_text(LIVE_SCENARIO)
    scenario = load_scenario(path, site)
    collector = start_collector(services, site, backfill=False)
    mqtt = MqttSettings.from_url(services.broker.url)

    async def run() -> Simulator:
        sim = Simulator(site, scenario, seed=5, speed=1.0)
        await sim.start()
        agent = EdgeAgent(site, "edge-1", mqtt, tmp_path / "agent")
        task = asyncio.create_task(agent.run())
        await sim.wait_finished()
        await asyncio.sleep(3 * LIVE_POLL_S + 1.0)  # the last polls travel through the chain
        agent.stop()
        await asyncio.wait_for(task, 10)
        await sim.stop()
        return sim

    sim = asyncio.run(run())
    truth = sim.ground_truth()
    settle(collector)
    assert not any(collector.stats["invalid"].values()), collector.stats["invalid"]
    # Compared from 2 s in: the agent's first poll comes after the simulator starts (before that the API rightly
    # knows nothing); the first session begins at 3 s.
    w0, w1 = truth.start_ms + 2000, truth.end_ms
    calendar, loss_map = site.calendar_model(), site.oee.loss_map
    window = {"from": iso(w0), "to": iso(w1)}
    bodies = oee_over_http(
        site, services.store, [{**window, "group_by": g} for g in LIVE_GROUPS], keys.keys["admin"][0]
    )
    problems: list[str] = []
    p = round(LIVE_POLL_S * 1000) + LIVE_SLACK_MS
    for group_by, body in zip(LIVE_GROUPS, bodies, strict=True):
        groups = tuple(group_by.split(","))
        truth_rows = truth.oee(calendar, loss_map, w0, w1, groups)
        tolerance, near = tolerances(truth, calendar, loss_map, groups, w0, w1, p)
        assert near == 0
        problems += [f"{group_by}: {q}" for q in compare(body["rows"], truth_rows, tolerance, groups)]
    assert problems == []
    by_machine = {r["machine"]: r for r in bodies[0]["rows"]}
    # What the scenario was written to show is there: a breakdown by its reason, a microstop, rejects, and the
    # job run faster than ideal, flagged and not capped.
    laser = by_machine["laser-01"]
    assert laser["losses"]["breakdown:12"] == pytest.approx(5.0, abs=2 * p / 1000)
    assert laser["losses"]["microstops"] == pytest.approx(1.0, abs=2 * p / 1000)
    assert by_machine["cnc-01"]["reject"] > 0
    batik = {r["tenant"]: r for r in bodies[1]["rows"]}["batik"]
    assert batik["effectiveness"] > 1 and "effectiveness_over_100" in batik["flags"]
