"""The HTTP API against a real InfluxDB: machines, timelines, usage, roles, tenant masking, hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from launcher.services import free_port
from shopfloor.config import ApiKey, Role, SiteConfig, Tenant
from shopfloor.influx import InfluxStore, Point
from shopfloor.keys import hash_key

pytestmark = pytest.mark.integration

T0_DT = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
T0 = int(T0_DT.timestamp() * 1000)
NOW = T0 + 6000
KEYS = {
    "admin": ("sfk_test_admin", Role.ADMIN, None),
    "operator": ("sfk_test_operator", Role.OPERATOR, None),
    "acme": ("sfk_test_acme", Role.TENANT, "acme"),
    "batik": ("sfk_test_batik", Role.TENANT, "batik"),
    "cipta": ("sfk_test_cipta", Role.TENANT, "cipta"),
    # A tenant may be called "unknown": it must get neither the unowned badges' figures nor lose its own.
    "unknown": ("sfk_test_unknown", Role.TENANT, "unknown"),
}


def at(sec: float) -> str:
    return datetime.fromtimestamp((T0 + sec * 1000) / 1000, UTC).isoformat().replace("+00:00", "Z")


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who][0]}"}


def tel(machine: str, sec: float, **fields: Any) -> Point:
    return Point("telemetry", {"site": "bdg", "machine": machine}, fields, T0 + int(sec * 1000))


def status(machine: str, sec: float, value: str) -> Point:
    fields: dict[str, Any] = {"status": value, "agent": "edge-1", "detail": ""}
    return Point("machine_status", {"site": "bdg", "machine": machine}, fields, T0 + int(sec * 1000))


def cnc(sec: float, state: str, badge: int, good: int, rej: int, kwh: float, power: float = 1.5) -> Point:
    return tel(
        "cnc-01",
        sec,
        state=state,
        badge=badge,
        job="J-1",
        stop_reason=0,
        good_count=good,
        reject_count=rej,
        energy_kwh=kwh,
        power_kw=power,
    )


DATA = [
    cnc(0, "IDLE", 1001, 0, 0, 10.0),
    cnc(1, "RUNNING", 1001, 0, 0, 10.0),
    cnc(2, "RUNNING", 1001, 5, 1, 10.5),
    cnc(3, "RUNNING", 2001, 5, 1, 10.5),
    cnc(4, "RUNNING", 2001, 8, 1, 11.0),
    cnc(5, "IDLE", 2001, 8, 1, 11.0, power=0.5),
    tel("laser-01", 0, state="RUNNING", badge=3001, good_count=0, energy_kwh=0.0),
    tel("laser-01", 1, state="RUNNING", badge=3001, good_count=2, energy_kwh=1.0),
    status("laser-01", 1.5, "unreachable"),
    tel("cnc-02", -100, state="OFF", badge=0),
    status("brake-01", -50, "unreachable"),
]


@pytest.fixture
def site(example_site: SiteConfig) -> SiteConfig:
    keys = [
        ApiKey(name=name, sha256=hash_key(key), role=role, tenant=tenant) for name, (key, role, tenant) in KEYS.items()
    ]
    # Heartbeat 1 s and gap factor 2 on 1 s polls: silence longer than 1 + 2 x 1 + 1 = 4 s is UNKNOWN. A 0.01 s
    # ideal cycle (100 parts a second) keeps the tests' parts per second plausible, not counter anomalies.
    machines = [m.model_copy(update={"heartbeat_s": 1.0, "ideal_cycle_time_s": 0.01}) for m in example_site.machines]
    info = example_site.site.model_copy(update={"max_gap_factor": 2.0})
    tenants = [*example_site.tenants, Tenant(id="unknown", name="Unknown Industries", badges=[5555])]
    return example_site.model_copy(update={"api_keys": keys, "machines": machines, "site": info, "tenants": tenants})


@pytest.fixture
def client(site: SiteConfig, influx_store: InfluxStore) -> Iterator[TestClient]:
    influx_store.write(DATA)
    app = create_app(site, influx_store, clock=lambda: datetime.fromtimestamp(NOW / 1000, UTC))
    with TestClient(app) as c:
        yield c


def machines_by_id(client: TestClient, who: str) -> dict[str, dict[str, Any]]:
    resp = client.get("/v1/machines", headers=auth(who))
    assert resp.status_code == 200, resp.text
    return {m["id"]: m for m in resp.json()["machines"]}


def test_healthz(client: TestClient) -> None:
    resp = client.get("/healthz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok", "store": True})


def test_healthz_and_routes_when_the_store_is_down(site: SiteConfig) -> None:
    with InfluxStore(f"http://127.0.0.1:{free_port()}", "x", timeout_s=1) as store:
        client = TestClient(create_app(site, store))
        resp = client.get("/healthz")
        assert (resp.status_code, resp.json()["status"]) == (503, "unavailable")
        resp = client.get("/v1/machines", headers=auth("operator"))
        assert resp.status_code == 503
        assert "retry" in resp.json()["detail"]


def test_machines_latest_state_for_admin(client: TestClient) -> None:
    machines = machines_by_id(client, "admin")
    assert list(machines) == ["cnc-01", "cnc-02", "laser-01", "press-01", "brake-01"]
    assert machines["cnc-01"] == {
        "id": "cnc-01",
        "name": "VMC 850 no. 1",
        "profile": "cnc-mill-v1",
        "state": "IDLE",
        "last_state": "IDLE",
        "link": "online",
        "last_seen": "2026-11-28T01:00:05Z",
        "age_s": 1.0,
        "tenant": "batik",
        "occupied": True,
        "unowned": False,
        "badge": 2001,
        "job": "J-1",
        "stop_reason": 0,
        "counters": {"good_count": 8, "reject_count": 1, "energy_kwh": 11.0},
        "power_kw": 0.5,
    }
    laser = machines["laser-01"]
    assert (laser["link"], laser["state"], laser["last_state"], laser["tenant"]) == (
        "unreachable",
        "UNKNOWN",
        "RUNNING",
        "cipta",
    )
    assert (machines["cnc-02"]["link"], machines["cnc-02"]["state"], machines["cnc-02"]["age_s"]) == (
        "stale",
        "UNKNOWN",
        106.0,
    )
    assert machines["press-01"]["link"] == "stale"
    assert machines["press-01"]["last_seen"] is None
    assert machines["press-01"]["counters"] == {"good_count": None, "reject_count": None, "energy_kwh": None}
    assert machines["brake-01"]["link"] == "unreachable"


def test_a_machine_whose_agent_went_offline_is_unreachable(client: TestClient, influx_store: InfluxStore) -> None:
    # cnc-01's newest sample is at 5 s; edge-1 (its agent) goes offline at 5.5 s: nothing it says since is known.
    assert machines_by_id(client, "admin")["cnc-01"]["link"] == "online"
    agent = {"status": "offline", "detail": "last will"}
    influx_store.write([Point("agent_status", {"site": "bdg", "agent": "edge-1"}, agent, T0 + 5_500)])
    cnc = machines_by_id(client, "admin")["cnc-01"]
    assert (cnc["link"], cnc["state"], cnc["last_state"]) == ("unreachable", "UNKNOWN", "IDLE")
    # A sample after the agent's offline status: it is back.
    influx_store.write([cnc_sample := tel("cnc-01", 5.8, state="RUNNING")])
    assert cnc_sample.ts_ms > T0 + 5_500
    assert machines_by_id(client, "admin")["cnc-01"]["link"] == "online"


NO_COUNTERS = {"good_count": None, "reject_count": None, "energy_kwh": None}


def test_machines_mask_other_tenants(client: TestClient) -> None:
    # batik is at cnc-01: acme sees only that the machine is occupied (and its link).
    acme = machines_by_id(client, "acme")["cnc-01"]
    assert acme == {
        "id": "cnc-01",
        "name": "VMC 850 no. 1",
        "profile": "cnc-mill-v1",
        "state": None,
        "last_state": None,
        "link": "online",
        "last_seen": None,
        "age_s": None,
        "tenant": None,
        "occupied": True,
        "unowned": False,
        "badge": None,
        "job": None,
        "stop_reason": None,
        "counters": NO_COUNTERS,
        "power_kw": None,
    }
    # batik sees its own session, but not the machine's cumulative counters (every tenant's history).
    batik = machines_by_id(client, "batik")["cnc-01"]
    assert (batik["tenant"], batik["badge"], batik["occupied"], batik["job"]) == ("batik", 2001, True, "J-1")
    assert (batik["state"], batik["stop_reason"], batik["power_kw"], batik["age_s"]) == ("IDLE", 0, 0.5, 1.0)
    assert batik["counters"] == NO_COUNTERS
    assert machines_by_id(client, "operator")["laser-01"]["tenant"] == "cipta"
    # Nobody at cnc-02: its state and link, nothing of whoever used it before.
    free = machines_by_id(client, "acme")["cnc-02"]
    assert (free["tenant"], free["badge"], free["occupied"], free["state"], free["last_state"]) == (
        None,
        None,
        False,
        "UNKNOWN",
        "OFF",
    )


def test_timeline_intervals(client: TestClient) -> None:
    resp = client.get("/v1/machines/cnc-01/timeline", params={"from": at(0), "to": at(10)}, headers=auth("operator"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["from"], body["to"], body["coverage"], body["max_gap_s"]) == (at(0), at(10), 0.9, 4.0)
    got = [(i["start"], i["end"], i["state"], i["tenant"], i["badge"], i["job"]) for i in body["intervals"]]
    assert got == [
        (at(0), at(1), "IDLE", "acme", 1001, "J-1"),
        (at(1), at(3), "RUNNING", "acme", 1001, "J-1"),
        (at(3), at(5), "RUNNING", "batik", 2001, "J-1"),
        (at(5), at(9), "IDLE", "batik", 2001, "J-1"),
        (at(9), at(10), "UNKNOWN", None, None, None),
    ]
    assert body["totals"] == {"good": 8, "reject": 1, "kwh": 1.0}
    assert body["totals_scope"] == "machine"
    assert body["unattributed"] == {"good": 0, "reject": 0, "kwh": 0.0}


def test_timeline_masks_other_tenants(client: TestClient) -> None:
    resp = client.get("/v1/machines/cnc-01/timeline", params={"from": at(0), "to": at(10)}, headers=auth("acme"))
    body = resp.json()
    got = [
        (i["start"], i["end"], i["state"], i["tenant"], i["badge"], i["occupied"], i["job"]) for i in body["intervals"]
    ]
    assert got == [
        (at(0), at(1), "IDLE", "acme", 1001, True, "J-1"),
        (at(1), at(3), "RUNNING", "acme", 1001, True, "J-1"),
        # batik's running 3-5 s and idle 5-9 s: one "occupied" stretch, nothing else of batik's.
        (at(3), at(9), None, None, None, True, None),
        (at(9), at(10), "UNKNOWN", None, None, False, None),
    ]
    assert all(i["stop_reason"] is None for i in body["intervals"][2:])
    # acme's own session only: +5 good +1 reject +0.5 kWh at 2 s; batik's +3 good +0.5 kWh at 4 s is not acme's.
    assert (body["totals"], body["totals_scope"], body["unattributed"]) == (
        {"good": 5, "reject": 0 + 1, "kwh": 0.5},
        "own_sessions",
        None,
    )


@pytest.mark.parametrize(
    ("start", "end", "first", "totals"),
    [
        (2.5, 10, ("RUNNING", at(2.5), at(3)), {"good": 3, "reject": 0, "kwh": 0.5}),
        (7, 8, ("IDLE", at(7), at(8)), {"good": 0, "reject": 0, "kwh": 0.0}),
        (-10, 0.5, ("UNKNOWN", at(-10), at(0)), {"good": 0, "reject": 0, "kwh": 0.0}),
    ],
)
def test_timeline_state_at_window_start_comes_from_the_look_back(
    client: TestClient, start: float, end: float, first: tuple[str, str, str], totals: dict[str, Any]
) -> None:
    body = client.get(
        "/v1/machines/cnc-01/timeline", params={"from": at(start), "to": at(end)}, headers=auth("admin")
    ).json()
    head = body["intervals"][0]
    assert (head["state"], head["start"], head["end"]) == first
    assert body["totals"] == totals


def test_delta_across_a_long_gap_is_not_lost_in_a_short_window(client: TestClient, influx_store: InfluxStore) -> None:
    influx_store.write(
        [tel("press-01", 0, state="RUNNING", good_count=10), tel("press-01", 60, state="RUNNING", good_count=15)]
    )
    body = client.get(
        "/v1/machines/press-01/timeline", params={"from": at(59), "to": at(61)}, headers=auth("admin")
    ).json()
    assert body["totals"]["good"] == 5
    assert body["unattributed"]["good"] == 5
    assert [i["state"] for i in body["intervals"]] == ["UNKNOWN", "RUNNING"]


def test_heartbeat_reported_by_the_agent_sets_the_allowance(client: TestClient, influx_store: InfluxStore) -> None:
    # Report by exception: nothing changed on press-01 for 30 s. The site file's heartbeat (1 s, allowance 4 s)
    # makes 4..30 s UNKNOWN; an agent that says (in the machine's status) it stays silent up to 60 s covers it.
    influx_store.write([tel("press-01", 0, state="RUNNING", good_count=10), tel("press-01", 30, good_count=11)])

    def states() -> list[tuple[str, str, str]]:
        body = client.get(
            "/v1/machines/press-01/timeline", params={"from": at(0), "to": at(31)}, headers=auth("admin")
        ).json()
        return [(i["start"], i["end"], i["state"]) for i in body["intervals"]]

    # The sample at 30 s carries only good_count: state was last reported 30 s before, past the allowance, so it no
    # longer holds (a value holds at most the allowance after its last report) and 30..31 s is UNKNOWN too.
    assert states() == [(at(0), at(4), "RUNNING"), (at(4), at(31), "UNKNOWN")]
    online = Point(
        "machine_status",
        {"site": "bdg", "machine": "press-01"},
        {"status": "online", "agent": "edge-1", "detail": "", "heartbeat_ms": 60_000},
        T0 - 1000,
    )
    influx_store.write([online])
    # 60 s heartbeat + 2 x 1 s + 1 s = 63 s allowance: the state held all along.
    assert states() == [(at(0), at(31), "RUNNING")]


def test_usage_for_admin(client: TestClient) -> None:
    resp = client.get("/v1/usage", params={"from": at(0), "to": at(10)}, headers=auth("admin"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rows = {(r["tenant"], r["machine"]): r for r in body["rows"]}
    assert list(rows) == [("acme", "cnc-01"), ("batik", "cnc-01"), ("cipta", "laser-01")]
    acme = rows["acme", "cnc-01"]
    assert {k: acme[k] for k in ("breakdown", "oee", "availability", "effectiveness", "quality", "flags")} == {
        # 3 s of session, its own PBT: 0-1 s IDLE, 1-3 s RUNNING; 5 good + 1 reject at the fixture's 10 ms ideal cycle.
        "breakdown": {
            "running_hours": round(2 / 3600, 6),
            "setup_hours": 0.0,
            "idle_hours": round(1 / 3600, 6),
            "stopped_hours": {},
            "off_hours": 0.0,
            "maintenance_hours": 0.0,
            "unknown_hours": 0.0,
        },
        "availability": round(2 / 3, 6),  # APT 2 s / PBT 3 s
        "effectiveness": round(0.01 * 6 / 2, 6),  # ideal x produced / APT
        "quality": round(5 / 6, 6),
        "oee": round(2 / 3 * 0.03 * 5 / 6, 6),
        "flags": ["ideal_cycle_default"],  # job J-1 has no ideal cycle of its own: the machine's stands in
    }
    extended = ("breakdown", "oee", "availability", "effectiveness", "quality", "flags")
    assert {k: v for k, v in acme.items() if k not in extended} == {
        "tenant": "acme",
        "unowned": False,
        "machine": "cnc-01",
        "session_hours": round(3 / 3600, 6),
        "running_hours": round(2 / 3600, 6),
        "good": 5,
        "reject": 1,
        "kwh": 0.5,
        "sessions": 1,
        "coverage": 0.9,
    }
    batik = rows["batik", "cnc-01"]
    assert (batik["session_hours"], batik["running_hours"], batik["good"], batik["reject"], batik["kwh"]) == (
        round(6 / 3600, 6),
        round(2 / 3600, 6),
        3,
        0,
        0.5,
    )
    cipta = rows["cipta", "laser-01"]
    assert (cipta["session_hours"], cipta["good"], cipta["kwh"], cipta["coverage"]) == (
        round(1.5 / 3600, 6),
        2,
        1.0,
        0.15,
    )
    totals = {m["machine"]: m for m in body["machines"]}
    assert totals["cnc-01"]["total"] == {"good": 8, "reject": 1, "kwh": 1.0}
    assert totals["press-01"]["coverage"] == 0.0


@pytest.mark.parametrize(
    ("who", "tenants"),
    [
        ("acme", ["acme"]),
        ("batik", ["batik"]),
        ("unknown", []),
        ("operator", ["acme", "batik", "cipta"]),
        ("admin", ["acme", "batik", "cipta"]),
    ],
)
def test_usage_rows_per_role(client: TestClient, who: str, tenants: list[str]) -> None:
    body = client.get("/v1/usage", params={"from": at(0), "to": at(10)}, headers=auth(who)).json()
    assert [r["tenant"] for r in body["rows"]] == tenants
    assert bool(body["machines"]) is (who in ("operator", "admin"))
    assert all(r["unowned"] is False for r in body["rows"])


@pytest.mark.parametrize("who", ["acme", "unknown"])
def test_unowned_badge_visible_to_operator_not_to_tenants(
    client: TestClient, influx_store: InfluxStore, who: str
) -> None:
    influx_store.write([tel("brake-01", 0, state="RUNNING", badge=4242), tel("brake-01", 1, state="IDLE", badge=4242)])
    params = {"from": at(0), "to": at(10)}
    rows = client.get("/v1/usage", params=params, headers=auth("operator")).json()["rows"]
    unowned = [r for r in rows if r["machine"] == "brake-01"]
    assert [(r["tenant"], r["unowned"], r["session_hours"]) for r in unowned] == [(None, True, round(5 / 3600, 6))]
    assert all(r["unowned"] is False for r in rows if r["machine"] != "brake-01")
    mine = [r["tenant"] for r in client.get("/v1/usage", params=params, headers=auth(who)).json()["rows"]]
    assert mine == (["acme"] if who == "acme" else [])
    interval = client.get("/v1/machines/brake-01/timeline", params=params, headers=auth(who)).json()["intervals"][0]
    assert (interval["tenant"], interval["badge"], interval["occupied"], interval["unowned"]) == (
        None,
        None,
        True,
        False,
    )
    seen = machines_by_id(client, "admin")["brake-01"]
    assert (seen["tenant"], seen["badge"], seen["occupied"], seen["unowned"]) == (None, 4242, True, True)


# --- tenant isolation: nothing of another tenant anywhere in a tenant key's JSON ---------------------------------


def sample(machine: str, sec: float, state: str, badge: int, job: str, **fields: Any) -> Point:
    return tel(machine, sec, state=state, badge=badge, job=job, stop_reason=fields.pop("stop", 0), **fields)


# Five machines at t = 0..5 s (window 0..10 s, now 6 s), with values distinctive enough to search for:
#   cnc-01   acme 1001 at 0-2 s (+4 good +1 reject +0.5 kWh), then batik 2001, running then stopped (reason 177):
#            +37 good +29 reject +0.437 kWh at 3 s. Machine: 41 good, 30 reject, 0.937 kWh.
#   cnc-02   the tenant called "unknown" (5555) at 0-2 s (+21 +22 = 43 good, +0.25 kWh), then acme 1002 (+6 good).
#   laser-01 cipta 3001 all along: +31 +21 = 52 good.
#   press-01 cipta 3002 at 0-2 s (+19 good, +0.125 kWh), then nobody, cipta's job left in the register, 3.125 kW.
#   brake-01 badge 4242, owned by no tenant: +30 +31 = 61 good, +0.375 kWh.
LEAK_DATA = [
    sample(
        "cnc-01",
        0,
        "RUNNING",
        1001,
        "JOB-ACME-A",
        good_count=910000,
        reject_count=91000,
        energy_kwh=9100.0,
        power_kw=11.5,
    ),
    sample(
        "cnc-01",
        1,
        "RUNNING",
        1001,
        "JOB-ACME-A",
        good_count=910004,
        reject_count=91001,
        energy_kwh=9100.5,
        power_kw=11.5,
    ),
    sample(
        "cnc-01",
        2,
        "RUNNING",
        2001,
        "JOB-BATIK-B",
        good_count=910004,
        reject_count=91001,
        energy_kwh=9100.5,
        power_kw=27.25,
    ),
    sample(
        "cnc-01",
        3,
        "RUNNING",
        2001,
        "JOB-BATIK-B",
        good_count=910041,
        reject_count=91030,
        energy_kwh=9100.937,
        power_kw=27.25,
    ),
    sample(
        "cnc-01",
        4,
        "STOPPED",
        2001,
        "JOB-BATIK-B",
        stop=177,
        good_count=910041,
        reject_count=91030,
        energy_kwh=9100.937,
        power_kw=27.25,
    ),
    sample(
        "cnc-01",
        5,
        "STOPPED",
        2001,
        "JOB-BATIK-B",
        stop=177,
        good_count=910041,
        reject_count=91030,
        energy_kwh=9100.937,
        power_kw=27.25,
    ),
    sample("cnc-02", 0, "RUNNING", 5555, "JOB-UNK-F", good_count=810000, energy_kwh=8100.0, power_kw=6.75),
    sample("cnc-02", 1, "RUNNING", 5555, "JOB-UNK-F", good_count=810021, energy_kwh=8100.0, power_kw=6.75),
    sample("cnc-02", 2, "RUNNING", 1002, "JOB-ACME-E", good_count=810043, energy_kwh=8100.25, power_kw=5.5),
    *[
        sample("cnc-02", t, "RUNNING", 1002, "JOB-ACME-E", good_count=810049, energy_kwh=8100.25, power_kw=5.5)
        for t in (3, 4, 5)
    ],
    sample("laser-01", 0, "RUNNING", 3001, "JOB-CIPTA-C", good_count=720000, energy_kwh=7200.0, power_kw=33.75),
    sample("laser-01", 2, "RUNNING", 3001, "JOB-CIPTA-C", good_count=720031, energy_kwh=7200.25, power_kw=33.75),
    *[
        sample("laser-01", t, "RUNNING", 3001, "JOB-CIPTA-C", good_count=720052, energy_kwh=7200.5, power_kw=33.75)
        for t in (4, 5)
    ],
    sample("press-01", 0, "RUNNING", 3002, "JOB-CIPTA-OLD", good_count=530000, energy_kwh=5300.0, power_kw=61.5),
    sample("press-01", 1, "RUNNING", 3002, "JOB-CIPTA-OLD", good_count=530019, energy_kwh=5300.125, power_kw=61.5),
    *[
        sample("press-01", t, "IDLE", 0, "JOB-CIPTA-OLD", good_count=530019, energy_kwh=5300.125, power_kw=3.125)
        for t in (2, 4, 5)
    ],
    sample("brake-01", 0, "RUNNING", 4242, "JOB-ANON-D", good_count=640000, energy_kwh=6400.0, power_kw=44.5),
    sample("brake-01", 1, "RUNNING", 4242, "JOB-ANON-D", good_count=640030, energy_kwh=6400.0, power_kw=44.5),
    *[
        sample("brake-01", t, "RUNNING", 4242, "JOB-ANON-D", good_count=640061, energy_kwh=6400.375, power_kw=44.5)
        for t in (2, 3, 4, 5)
    ],
]
# What belongs to whom, as it appears in an admin's JSON: ids, badges, jobs, parts, kWh, power, stop reasons.
# "machine": the cumulative counters (everyone's history), machine totals and a free machine's meter.
SECRETS: dict[str | None, tuple[set[str], set[float]]] = {
    "acme": ({"acme", "JOB-ACME-A", "JOB-ACME-E"}, {1001, 1002, 5.5}),
    "batik": ({"batik", "JOB-BATIK-B"}, {2001, 37, 29, 0.437, 27.25, 177}),
    "cipta": ({"cipta", "JOB-CIPTA-C", "JOB-CIPTA-OLD"}, {3001, 3002, 52, 19, 33.75}),
    "unknown": ({"unknown", "JOB-UNK-F"}, {5555, 43}),
    None: ({"JOB-ANON-D"}, {4242, 61, 0.375, 44.5}),
    "machine": (
        set(),
        {910041, 91030, 9100.937, 810049, 8100.25, 720052, 7200.5, 530019, 5300.125, 640061, 6400.375}
        | {41, 30, 0.937, 3.125},
    ),
}
MACHINES = ["cnc-01", "cnc-02", "laser-01", "press-01", "brake-01"]


@pytest.fixture
def leak_client(site: SiteConfig, influx_store: InfluxStore) -> Iterator[TestClient]:
    influx_store.write(LEAK_DATA)
    app = create_app(site, influx_store, clock=lambda: datetime.fromtimestamp(NOW / 1000, UTC))
    with TestClient(app) as c:
        yield c


def bodies(client: TestClient, who: str) -> list[Any]:
    """Every JSON body a key gets from the routes: machines, usage and each machine's timeline, window 0..10 s."""
    params = {"from": at(0), "to": at(10)}
    paths = ["/v1/machines", "/v1/usage", *[f"/v1/machines/{m}/timeline" for m in MACHINES]]
    out = []
    for path in paths:
        resp = client.get(path, params=params if path != "/v1/machines" else None, headers=auth(who))
        assert resp.status_code == 200, (path, resp.text)
        out.append(resp.json())
    return out


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def found(json_bodies: list[Any], strings: set[str], numbers: set[float]) -> set[str | float]:
    """The secrets that occur anywhere: strings as substrings of any string, numbers as any numeric value."""
    hits: set[str | float] = set()
    for leaf in leaves(json_bodies):
        if isinstance(leaf, str):
            hits |= {s for s in strings if s in leaf}
        elif isinstance(leaf, int | float) and not isinstance(leaf, bool):
            hits |= {n for n in numbers if leaf == n}
    return hits


def test_admin_json_holds_every_secret(leak_client: TestClient) -> None:
    # The positive control: every value searched for below is really in the API's answers.
    got = bodies(leak_client, "admin")
    for owner, (strings, numbers) in SECRETS.items():
        assert found(got, strings, numbers) == strings | numbers, owner


@pytest.mark.parametrize("who", ["acme", "batik", "cipta", "unknown"])
def test_tenant_json_holds_nothing_of_anyone_else(leak_client: TestClient, who: str) -> None:
    got = bodies(leak_client, who)
    for owner, (strings, numbers) in SECRETS.items():
        if owner != who:
            assert found(got, strings, numbers) == set(), f"{who} sees {owner}'s"
    # Its own ids, badges, jobs and figures it does see (so the search above would have found them).
    strings, numbers = SECRETS[who]
    assert found(got, strings, numbers) == strings | numbers


def test_tenant_sees_its_own_figures(leak_client: TestClient) -> None:
    acme = bodies(leak_client, "acme")
    machines = {m["id"]: m for m in acme[0]["machines"]}
    assert [(m, v["occupied"], v["tenant"], v["state"]) for m, v in machines.items()] == [
        ("cnc-01", True, None, None),  # batik's
        ("cnc-02", True, "acme", "RUNNING"),
        ("laser-01", True, None, None),  # cipta's
        ("press-01", False, None, "IDLE"),  # nobody's: state, not cipta's job left in the register
        ("brake-01", True, None, None),  # an unowned badge
    ]
    assert (machines["cnc-02"]["job"], machines["cnc-02"]["power_kw"], machines["cnc-02"]["counters"]) == (
        "JOB-ACME-E",
        5.5,
        NO_COUNTERS,
    )
    assert (machines["press-01"]["job"], machines["press-01"]["power_kw"], machines["press-01"]["age_s"]) == (
        None,
        None,
        1.0,
    )
    usage = acme[1]
    assert [(r["machine"], r["good"], r["reject"], r["kwh"]) for r in usage["rows"]] == [
        ("cnc-01", 4, 1, 0.5),
        ("cnc-02", 6, 0, 0.0),
    ]
    assert usage["machines"] == []
    cnc01 = acme[2]
    assert [(i["start"], i["end"], i["state"], i["tenant"], i["job"]) for i in cnc01["intervals"]] == [
        (at(0), at(2), "RUNNING", "acme", "JOB-ACME-A"),
        (at(2), at(9), None, None, None),  # batik running, then stopped: one occupied stretch
        (at(9), at(10), "UNKNOWN", None, None),
    ]
    # The timeline's totals are acme's own session: the usage row's figures, not the machine's 41 / 30 / 0.937.
    assert (cnc01["totals"], cnc01["totals_scope"], cnc01["unattributed"]) == (
        {"good": 4, "reject": 1, "kwh": 0.5},
        "own_sessions",
        None,
    )


def test_tenant_called_unknown_gets_its_own_row_and_not_the_unowned_one(leak_client: TestClient) -> None:
    params = {"from": at(0), "to": at(10)}
    admin = leak_client.get("/v1/usage", params=params, headers=auth("admin")).json()["rows"]
    assert {(r["tenant"], r["machine"]): (r["unowned"], r["good"]) for r in admin} == {
        ("acme", "cnc-01"): (False, 4),
        ("acme", "cnc-02"): (False, 6),
        ("batik", "cnc-01"): (False, 37),
        ("cipta", "laser-01"): (False, 52),
        ("cipta", "press-01"): (False, 19),
        ("unknown", "cnc-02"): (False, 43),
        (None, "brake-01"): (True, 61),  # the unowned badge: tenant null, never a name
    }
    mine = leak_client.get("/v1/usage", params=params, headers=auth("unknown")).json()["rows"]
    assert [(r["tenant"], r["machine"], r["unowned"], r["good"]) for r in mine] == [("unknown", "cnc-02", False, 43)]
    brake = leak_client.get("/v1/machines/brake-01/timeline", params=params, headers=auth("unknown")).json()
    assert brake["totals"] == {"good": 0, "reject": 0, "kwh": 0.0}
    cnc02 = leak_client.get("/v1/machines/cnc-02/timeline", params=params, headers=auth("unknown")).json()
    assert cnc02["totals"] == {"good": 43, "reject": 0, "kwh": 0.25}


def test_default_window_is_the_last_24_hours(client: TestClient) -> None:
    body = client.get("/v1/usage", headers=auth("admin")).json()
    assert body["to"] == at(6)
    assert body["from"] == at(6 - 86400)
    assert len(body["rows"]) == 3


# --- authentication ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "sfk_test_admin",  # no scheme
        "Basic c2ZrX3Rlc3RfYWRtaW4=",  # wrong scheme
        "Token sfk_test_admin",
        "Bearer sfk_test_admin_",  # almost
        "Bearer SFK_TEST_ADMIN",
        "Bearer " + "A" * 10_000,  # 10 kB
        "Bearer sfk_test_admin' OR '1'='1",
        "Bearer \u00e9\u00e9".encode(),  # UTF-8 bytes in a header
        b"Bearer \xff\xfe",  # not even UTF-8
        "Bearer " + hash_key("sfk_test_admin"),  # the stored hash is not a key
    ],
)
@pytest.mark.parametrize("path", ["/v1/machines", "/v1/usage", "/v1/machines/cnc-01/timeline"])
def test_bad_authorization_is_401_with_bearer_challenge(
    client: TestClient, header: str | bytes | None, path: str
) -> None:
    raw = header if isinstance(header, bytes | None) else header.encode("latin-1")
    headers: dict[bytes, bytes] = {} if raw is None else {b"Authorization": raw}
    resp = client.get(path, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"


def test_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    assert client.get("/v1/machines", headers={"Authorization": "bearer sfk_test_admin"}).status_code == 200


def test_auth_comes_before_validation_and_lookup(client: TestClient) -> None:
    assert client.get("/v1/machines/nope/timeline", params={"from": "x"}).status_code == 401


# --- hostile input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "machine_id",
    [
        "nope",
        "CNC-01",
        "cnc-01' OR machine =~ /.*/ --",
        'cnc-01" OR 1=1',
        "cnc-01;DROP MEASUREMENT telemetry",
        "cnc-01\n",
        "cnc-０１",
        "-cnc",
        "x" * 5000,
        "%00",
        "..",
    ],
)
def test_unknown_or_malformed_machine_is_404(client: TestClient, machine_id: str) -> None:
    resp = client.get(f"/v1/machines/{quote(machine_id, safe='')}/timeline", headers=auth("admin"))
    assert resp.status_code == 404
    assert len(resp.text) < 500


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"from": "2026-11-28T08:00:00"}, "from"),
        ({"from": at(0) + "' OR 1=1 --"}, "from"),
        ({"to": "2026-11-28T01:00:00Z; DROP DATABASE x"}, "to"),
        ({"from": "x" * 60_000}, "from"),
        ({"to": "２０２６-11-28T01:00:00Z"}, "to"),
        ({"from": at(5), "to": at(5)}, "from"),
        ({"from": at(5), "to": at(1)}, "from"),
        ({"from": "2026-01-01T00:00:00Z", "to": at(0)}, "from"),
        ({"from": "1970-01-01T00:00:00Z", "to": "1970-01-02T00:00:00Z"}, "from"),
        ({"to": "2100-01-01T00:00:00Z", "from": "2099-12-31T00:00:00Z"}, "to"),
        ([("from", at(0)), ("from", at(1)), ("to", at(10))], "from"),
        ([("to", at(9)), ("to", at(10))], "to"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/usage", "/v1/machines/cnc-01/timeline"])
def test_bad_query_values_are_422_naming_the_parameter(client: TestClient, params: Any, param: str, path: str) -> None:
    resp = client.get(path, params=params, headers=auth("operator"))
    assert resp.status_code == 422, resp.text
    locs = [e["loc"] for e in resp.json()["detail"]]
    assert ["query", param] in locs
    assert len(resp.text) < 2000  # a huge input is not echoed back whole


def test_unknown_query_parameters_are_ignored(client: TestClient) -> None:
    resp = client.get(
        "/v1/usage", params={"from": at(0), "to": at(10), "tenant": "batik", "x" * 1000: "y"}, headers=auth("acme")
    )
    assert resp.status_code == 200
    assert [r["tenant"] for r in resp.json()["rows"]] == ["acme"]


def test_openapi_documents_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/healthz",
        "/v1/machines",
        "/v1/machines/{machine_id}/timeline",
        "/v1/usage",
        "/v1/oee",
        "/v1/sessions",
        "/v1/invoices",
        "/v1/invoices/{invoice_id}",
        "/v1/invoices/{invoice_id}.pdf",
        "/v1/invoices/{invoice_id}.csv",
        "/v1/invoices/{period}/draft",
        "/v1/invoices/{invoice_id}/finalize",
        "/v1/invoices/{invoice_id}/void",
    }
    params = {p["name"] for p in spec["paths"]["/v1/usage"]["get"]["parameters"]}
    assert params == {"from", "to"}


# ---- /v1/sessions ---------------------------------------------------------------------------------------------------


def test_sessions_for_admin(client: TestClient) -> None:
    resp = client.get("/v1/sessions", params={"from": at(0), "to": at(10)}, headers=auth("admin"))
    assert resp.status_code == 200, resp.text
    got = [
        (s["machine"], s["tenant"], s["badge"], s["start"], s["end"], s["good"], s["reject"], s["kwh"])
        for s in resp.json()["sessions"]
    ]
    assert got == [
        # acme 0-3 s (badge 2001 from 3 s); its parts: the +5 good +1 reject +0.5 kWh seen at 2 s.
        ("cnc-01", "acme", 1001, at(0), at(3), 5, 1, 0.5),
        # cipta until the PLC went unreachable at 1.5 s: +2 good +1 kWh at 1 s.
        ("laser-01", "cipta", 3001, at(0), at(1.5), 2, 0, 1.0),
        # batik from 3 s; its last sample (5 s) holds for the 4 s allowance: to 9 s. +3 good +0.5 kWh at 4 s.
        ("cnc-01", "batik", 2001, at(3), at(9), 3, 0, 0.5),
    ]
    batik = resp.json()["sessions"][2]
    assert batik["hours"] == round(6 / 3600, 6)
    # RUNNING 3-5 s, IDLE 5-9 s; the session is its own PBT (6 s), APT 2 s.
    assert (batik["breakdown"]["running_hours"], batik["breakdown"]["idle_hours"]) == (
        round(2 / 3600, 6),
        round(4 / 3600, 6),
    )
    assert batik["oee"]["basis"] == "session"
    assert (batik["oee"]["pbt_s"], batik["oee"]["apt_s"], batik["oee"]["availability"]) == (6.0, 2.0, round(2 / 6, 6))


def test_a_tenant_key_gets_only_its_own_sessions(client: TestClient) -> None:
    resp = client.get("/v1/sessions", params={"from": at(0), "to": at(10)}, headers=auth("acme"))
    assert resp.status_code == 200
    assert [(s["tenant"], s["badge"]) for s in resp.json()["sessions"]] == [("acme", 1001)]
    assert "batik" not in resp.text and "2001" not in resp.text and "cipta" not in resp.text
    # Another tenant's sessions and a tenant that does not exist: the same 404.
    for tenant in ("batik", "nobody"):
        other = client.get("/v1/sessions", params={"tenant": tenant}, headers=auth("acme"))
        assert (other.status_code, other.json()["detail"]) == (404, f"tenant {tenant!r} not found")


@pytest.mark.parametrize(
    ("params", "status_code"),
    [
        ({"machine": "nope"}, 404),
        ({"machine": "cnc-01\x00"}, 404),
        ({"machine": "m" * 65}, 422),
        ({"tenant": "nobody"}, 404),
        ({"from": "yesterday"}, 422),
    ],
)
def test_sessions_refuse_bad_queries(client: TestClient, params: dict[str, str], status_code: int) -> None:
    assert client.get("/v1/sessions", params=params, headers=auth("admin")).status_code == status_code


def test_sessions_refuse_a_repeated_parameter(client: TestClient) -> None:
    resp = client.get("/v1/sessions?machine=cnc-01&machine=cnc-02", headers=auth("admin"))
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["query", "machine"]
