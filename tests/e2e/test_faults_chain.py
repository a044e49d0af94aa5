"""The packaged `faults` scenario through the real chain: one test per kind of trouble it injects, against the truth.

Chain: the simulator's replay (the agent's own polling and reporting code on simulated reads: no live Modbus is
needed to fail a poll the way the agent would) -> Mosquitto -> collector (site registry) -> InfluxDB -> the API served
over HTTP. The scenario runs at a fixed instant (Monday 2026-11-02 09:00 Asia/Jakarta, in the example site's morning
shift), so the seeded run and its truth are the same every time; the collector takes it as a backfill the operator
started (its skew window would refuse data a month old otherwise).

Polls come every P = 1 s from the scenario's start (the example site's poll interval) and every event is on a whole
second, so a change at t is first seen by the poll at t. Where a figure could differ from the truth it is by the part
of a poll interval the agent could not see: parts made between the last poll before a counter jump (a reset, a
preset) and the jump are in no reading at all; those, taken from the truth, are the only parts allowed to be missing.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from replaying import publish_replay

from api.app import create_app
from api.server import serve, stop
from collector.registry import Registry
from collector.service import Collector
from launcher.demo import DemoKeys, prepare_site
from launcher.services import InfluxDB, Mosquitto, free_port, temp_workdir
from shopfloor.config import Role, SiteConfig
from shopfloor.contracts import Topic
from shopfloor.influx import InfluxStore
from shopfloor.mqtt import MqttLink, MqttSettings
from simulators.replay import Message, ReplayOptions, replay_messages
from simulators.scenario import load_scenario, scenarios_dir
from simulators.truth import GroundTruth
from simulators.world import World

pytestmark = pytest.mark.e2e

SCENARIO = scenarios_dir() / "faults.yaml"
T0 = int(datetime(2026, 11, 2, 9, 0, tzinfo=ZoneInfo("Asia/Jakarta")).timestamp() * 1000)
SEED = 1
P = 1000  # ms: the example site's poll interval


@dataclass
class Chain:
    """The chain after the replay landed: the API's address, keys, and what really happened."""

    base: str
    keys: dict[str, str]
    truth: GroundTruth
    site: SiteConfig
    collector_stats: dict[str, Any]

    def get(self, path: str, who: str = "admin", **params: Any) -> Any:
        resp = httpx.get(
            f"{self.base}{path}", params=params, headers={"Authorization": f"Bearer {self.keys[who]}"}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    def window(self, start_ms: int | None = None, end_ms: int | None = None) -> dict[str, str]:
        return {"from": iso(start_ms or self.truth.start_ms), "to": iso(end_ms or self.truth.end_ms)}

    def oee(self, group_by: str = "machine", who: str = "admin") -> dict[tuple[Any, ...], dict[str, Any]]:
        body = self.get("/v1/oee", who, **self.window(), group_by=group_by)
        keys = group_by.split(",")
        return {tuple(r[k] for k in keys): r for r in body["rows"]}

    def usage(self, who: str = "admin") -> dict[str, Any]:
        body: dict[str, Any] = self.get("/v1/usage", who, **self.window())
        return body

    def totals(self, machine: str) -> dict[str, Any]:
        [found] = [m for m in self.usage()["machines"] if m["machine"] == machine]
        return dict(found)

    def intervals(self, machine: str, start_ms: int | None = None, end_ms: int | None = None) -> list[dict[str, Any]]:
        body = self.get(f"/v1/machines/{machine}/timeline", **self.window(start_ms, end_ms))
        return [{**i, "start_ms": ms_of(i["start"]), "end_ms": ms_of(i["end"])} for i in body["intervals"]]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_of(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def last_poll_before(t: int) -> int:
    """The last poll strictly before t: the last reading of the world as it was before something happened at t."""
    return T0 + (t - T0 - 1) // P * P


def first_poll_from(t: int) -> int:
    """The first poll at or after t."""
    return T0 - (T0 - t) // P * P


def parts(ts: list[int], lo: int, hi: int) -> int:
    """Parts completed in (lo, hi]."""
    return sum(1 for t in ts if lo < t <= hi)


def wait_for(check: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _sync(url: str, collector: Collector, site: str) -> None:
    """Publish probes (the agent's 'online', stamped now: after the scenario, so it shapes none of its figures) until
    the collector's subscription receives one."""
    link = MqttLink(MqttSettings.from_url(url), f"probe-{uuid.uuid4().hex[:8]}")
    link.start()
    try:
        assert link.wait_connected(10)
        start = collector.stats["received"]
        deadline = time.monotonic() + 15
        while collector.stats["received"] == start:
            assert time.monotonic() < deadline, "the collector never received a probe"
            payload = {"v": 1, "status": "online", "ts": int(time.time() * 1000), "agent": "edge-1"}
            assert link.publish(str(Topic.agent_status(site, "edge-1")), json.dumps(payload).encode(), qos=1).wait(10)
            time.sleep(0.1)
    finally:
        link.stop()


@pytest.fixture(scope="module")
def chain(example_site: SiteConfig, influxdb: InfluxDB) -> Iterator[Chain]:
    keys = DemoKeys()
    keys.add("admin", Role.ADMIN)
    keys.add("cipta", Role.TENANT, "cipta")
    site = prepare_site(example_site, keys, fresh_ports=False)
    workdir = temp_workdir("sf-faults-")
    broker = Mosquitto(workdir).start()  # a broker of its own: no other test's retained statuses
    store = InfluxStore(influxdb.url, f"test_faults_{uuid.uuid4().hex[:10]}")
    store.ensure_database()
    collector = Collector(
        MqttSettings.from_url(broker.url),
        store,
        client_id=f"faults-collector-{uuid.uuid4().hex[:8]}",
        flush_interval_s=0.05,
        dead_letter=workdir / "dead.jsonl",
        registry=Registry.from_site(site, backfill=True),
    )
    server = thread = None
    try:
        collector.start()
        assert collector.wait_connected(10)
        _sync(broker.url, collector, site.site.id)
        world = World(site, load_scenario(SCENARIO, site), SEED, T0)
        messages: list[Message] = list(replay_messages(world, "edge-1", ReplayOptions()))
        want = publish_replay(broker.url, messages, "faults-replay")  # wait until the store holds them all
        end = world.end_ms + 60_000
        wait_for(
            lambda: all(len(store.samples(site.site.id, m, T0, end)) == n for m, n in want.items()),
            "the replay's samples in InfluxDB",
        )
        wait_for(lambda: collector.stats["queued_messages"] == 0, "the collector's queue to drain")
        stats = collector.stats
        app = create_app(site, InfluxStore(store.url, store.database), clock=lambda: datetime(2026, 11, 3, tzinfo=UTC))
        port = free_port()
        server, thread = serve(app, "127.0.0.1", port)
        yield Chain(
            f"http://127.0.0.1:{port}", {k: v[0] for k, v in keys.keys.items()}, world.ground_truth(), site, stats
        )
    finally:
        if server is not None and thread is not None:
            stop(server, thread)
        collector.stop()
        broker.stop()
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_whole_replay_landed_and_nothing_was_refused(chain: Chain) -> None:
    assert not any(chain.collector_stats["invalid"].values()), chain.collector_stats["invalid"]
    assert chain.collector_stats["store_rejected"] == 0
    # What the scenario injects, as the truth records it: three network faults and three counter/badge events.
    assert sorted(f.kind for f in chain.truth.faults) == ["modbus_exception", "slow_replies", "unreachable"]
    events = sorted(e.kind for t in chain.truth.machines.values() for e in t.events)
    assert events == ["badge_swap", "counter_reset", "counter_wrap"]


# ---- the PLC's network faults (simulators.plan.FaultKind): UNKNOWN, reason unreachable, parts unattributed ------


@pytest.mark.parametrize("kind", ["unreachable", "modbus_exception", "slow_replies"])
def test_a_network_fault_is_unknown_time_and_its_parts_are_nobodys(chain: Chain, kind: str) -> None:
    [fault] = [f for f in chain.truth.faults if f.kind == kind]
    machine = fault.machine
    # The first failed poll marks the PLC unreachable; the first poll that succeeds again ends it.
    start, end = first_poll_from(fault.start_ms), first_poll_from(fault.end_ms)
    around = chain.intervals(machine, fault.start_ms - 5000, fault.end_ms + 5000)
    unknown = [(i["start_ms"], i["end_ms"], i["reason"]) for i in around if i["state"] == "UNKNOWN"]
    assert unknown == [(start, end, "unreachable")], around
    # Nothing is known before or after: the known state runs right up to the fault and resumes right after it.
    assert around[0]["state"] != "UNKNOWN" and around[-1]["state"] != "UNKNOWN"
    # The parts made while nobody could read the PLC arrive with the first reading after it: real, counted in the
    # machine's totals, but in no session (unattributed). They are the truth's parts in (last good poll, first
    # good poll again].
    body = chain.get(f"/v1/machines/{machine}/timeline", **chain.window(fault.start_ms - 5000, fault.end_ms + 5000))
    truth = chain.truth.machines[machine]
    lo = last_poll_before(fault.start_ms)
    assert body["unattributed"]["good"] == parts(truth.good_ts, lo, end)
    assert body["unattributed"]["reject"] == parts(truth.reject_ts, lo, end)
    assert body["unattributed"]["good"] > 0  # the machine kept working: there is something to misattribute
    # OEE: the fault's time is the row's unknown loss; the truth knew the machine was running all along.
    row = chain.oee()[machine,]
    faults = [f for f in chain.truth.faults if f.machine == machine]
    dark = sum(first_poll_from(f.end_ms) - first_poll_from(f.start_ms) for f in faults)
    assert row["unknown_s"] == row["losses"]["unknown"] == dark / 1000
    assert "low_coverage" in row["flags"] and "unattributed_parts" in row["flags"]


# ---- the machine's own events ----------------------------------------------------------------------------------


def _runs(chain: Chain, machine: str, state: str) -> list[tuple[int, int, int]]:
    """The truth's runs of one state on machine: (start, end, stop reason of the first interval)."""
    out: list[tuple[int, int, int]] = []
    for iv in chain.truth.machines[machine].intervals:
        if iv.state.value != state:
            continue
        if out and out[-1][1] == iv.start_ms:
            out[-1] = (out[-1][0], iv.end_ms, out[-1][2])
        else:
            out.append((iv.start_ms, iv.end_ms, iv.stop_reason))
    return out


@pytest.mark.parametrize(
    ("machine", "state", "loss"),
    [
        ("cnc-01", "STOPPED", "microstops"),  # breakdown, reason 4, 10 s: no longer than 120 s, so a microstop
        ("press-01", "MAINTENANCE", "maintenance"),  # maintenance, 20 s
        ("brake-01", "OFF", "off"),  # power_off, 15 s
    ],
)
def test_a_stop_maintenance_or_power_off_is_its_state_and_its_loss(
    chain: Chain, machine: str, state: str, loss: str
) -> None:
    [(start, end, reason)] = _runs(chain, machine, state)
    got = [i for i in chain.intervals(machine) if i["state"] == state]
    # Each edge seen by the first poll at or after it.
    assert [(i["start_ms"], i["end_ms"]) for i in got] == [(first_poll_from(start), first_poll_from(end))]
    if state == "STOPPED":
        assert [i["stop_reason"] for i in got] == [reason] == [4]
    row = chain.oee()[machine,]
    [truth] = [
        t
        for t in chain.truth.oee(chain.site.calendar_model(), chain.site.oee.loss_map, T0, chain.truth.end_ms)
        if t.group["machine"] == machine
    ]
    assert row["losses"][loss] == pytest.approx(truth.losses[loss], abs=2 * P / 1000)  # two edges, a poll each
    assert not [k for k in row["losses"] if k.startswith("breakdown:")]  # nothing here is a breakdown loss
    # The tenant's usage row shows the same time in its state breakdown.
    usage = {r["machine"]: r for r in chain.usage()["rows"]}[machine]["breakdown"]
    hours = {"STOPPED": usage["stopped_hours"].get(str(reason), 0.0), "MAINTENANCE": usage["maintenance_hours"]}
    hours["OFF"] = usage["off_hours"]
    assert hours[state] == round((first_poll_from(end) - first_poll_from(start)) / 3_600_000, 6)


def _event(chain: Chain, machine: str, kind: str) -> int:
    [at] = [e.at_ms for e in chain.truth.machines[machine].events if e.kind == kind]
    return at


def test_a_counter_reset_is_not_counted_as_negative(chain: Chain) -> None:
    # cnc-01's PLC restarts at 70 s: part and energy counters start again from 0. The rise from 0 is new
    # production; nothing is subtracted. Only the parts made between the last poll before the restart and the
    # restart were in no reading.
    at = _event(chain, "cnc-01", "counter_reset")
    truth = chain.truth.machines["cnc-01"]
    lost_good, lost_reject = (parts(ts, last_poll_before(at), at) for ts in (truth.good_ts, truth.reject_ts))
    totals = chain.totals("cnc-01")
    assert (totals["total"]["good"], totals["total"]["reject"]) == (
        len(truth.good_ts) - lost_good,
        len(truth.reject_ts) - lost_reject,
    )
    assert lost_good + lost_reject <= 1  # a 2 s cycle: at most one part in the second before
    assert totals["anomalies"] == []  # a reset is no anomaly
    assert totals["total"]["kwh"] == pytest.approx(truth.kwh(chain.truth.start_ms, chain.truth.end_ms), abs=0.01)
    # The figures agree: what the OEE row scores plus what it could not attribute is the machine's total.
    row = chain.oee()["cnc-01",]
    assert row["good"] + row["unattributed_good"] == totals["total"]["good"]
    assert row["reject"] + row["unattributed_reject"] == totals["total"]["reject"]


def test_a_counter_preset_is_an_anomaly_reported_and_never_counted(chain: Chain) -> None:
    # laser-01's part counters are preset to 65533 (3 below the 16-bit wrap) at 30 s: a jump of some 60,000 parts
    # in a second, which the issue saw billed as 59,794 good and 65,373 rejected parts. It is an anomaly, listed
    # with the machine's totals and counted nowhere; the counters' real wrap just after it counts as it should.
    at = _event(chain, "laser-01", "counter_wrap")
    truth = chain.truth.machines["laser-01"]
    totals = chain.totals("laser-01")
    got = [(a["signal"], ms_of(a["time"]), a["value"]) for a in totals["anomalies"]]
    assert got == [("good_count", at, 65533.0), ("reject_count", at, 65533.0)]
    assert parts(truth.good_ts, at, chain.truth.end_ms) > 3  # so the counter really wrapped afterwards
    lost_good, lost_reject = (parts(ts, last_poll_before(at), at) for ts in (truth.good_ts, truth.reject_ts))
    want = (len(truth.good_ts) - lost_good, len(truth.reject_ts) - lost_reject)
    assert (totals["total"]["good"], totals["total"]["reject"]) == want
    # cipta's bill (two badges of cipta on laser-01) holds the parts made, flagged; its key sees no anomaly list.
    mine = chain.usage("cipta")
    row = {r["machine"]: r for r in mine["rows"]}["laser-01"]
    assert (row["good"], row["reject"]) == want
    assert "counter_anomalies" in row["flags"] and mine["machines"] == []
    oee = chain.oee()["laser-01",]
    assert (oee["produced"], oee["anomalies"], "counter_anomalies" in oee["flags"]) == (sum(want), 2, True)


def test_a_badge_swap_is_a_new_session_of_the_same_job_without_setup(chain: Chain) -> None:
    # At 90 s badge 3002 takes over laser-01 from 3001 (both cipta's) mid-job: two sessions, no setup between.
    at = _event(chain, "laser-01", "badge_swap")
    got = [(i["state"], i["badge"], i["job"]) for i in chain.intervals("laser-01", at - 10_000, at + 10_000)]
    assert got == [("RUNNING", 3001, "F-LASER"), ("RUNNING", 3002, "F-LASER")]
    swap = chain.intervals("laser-01", at - 10_000, at + 10_000)[1]["start_ms"]
    assert swap == first_poll_from(at)
    sessions = [s for s in chain.truth.sessions if s.machine == "laser-01"]
    assert [s.badge for s in sessions] == [3001, 3002]
    row = {r["machine"]: r for r in chain.usage("cipta")["rows"]}["laser-01"]
    assert row["sessions"] == len(sessions) == 2
    assert row["breakdown"]["setup_hours"] == pytest.approx(
        sum(e - s for s, e, _ in _runs(chain, "laser-01", "SETUP")) / 3_600_000, abs=2 * P / 3_600_000
    )


def test_machines_without_network_faults_agree_with_the_truth(chain: Chain) -> None:
    # press-01 and brake-01 had no fault the chain could miss, laser-01 only its preset: every time figure within a
    # poll per state change (P is 1 s and every change falls on a poll: the figures are exact), parts exactly but
    # for the part the preset swallowed.
    truth_rows = {
        t.group["machine"]: t
        for t in chain.truth.oee(chain.site.calendar_model(), chain.site.oee.loss_map, T0, chain.truth.end_ms)
    }
    rows = chain.oee()
    preset = _event(chain, "laser-01", "counter_wrap")
    for machine in ("laser-01", "press-01", "brake-01"):
        row, want = rows[machine,], truth_rows[machine]
        truth = chain.truth.machines[machine]
        swallowed = [
            parts(ts, last_poll_before(preset), preset) if machine == "laser-01" else 0
            for ts in (truth.good_ts, truth.reject_ts)
        ]
        assert (row["pbt_s"], row["apt_s"], row["unknown_s"]) == (want.pbt_s, want.apt_s, 0.0), machine
        assert (row["produced"], row["good"]) == (want.produced - sum(swallowed), want.good - swallowed[0]), machine
        for name in ("setup", "no_operator", "off", "maintenance", "microstops"):
            assert row["losses"][name] == pytest.approx(want.losses[name], abs=1e-6), (machine, name)
