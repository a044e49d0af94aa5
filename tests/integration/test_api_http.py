"""The HTTP API against a real InfluxDB: machines, timelines, usage, roles, tenant masking, hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shopfloor.config import ApiKey, Role, SiteConfig
from shopfloor.influx import InfluxStore, Point
from shopfloor.keys import hash_key
from shopfloor.services import free_port

pytestmark = pytest.mark.integration

T0_DT = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
T0 = int(T0_DT.timestamp() * 1000)
NOW = T0 + 6000
KEYS = {
    "admin": ("sfk_test_admin", Role.ADMIN, None),
    "operator": ("sfk_test_operator", Role.OPERATOR, None),
    "acme": ("sfk_test_acme", Role.TENANT, "acme"),
    "batik": ("sfk_test_batik", Role.TENANT, "batik"),
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
    # Heartbeat 1 s and gap factor 2 on 1 s polls: silence longer than 1 + 2 x 1 + 1 = 4 s is UNKNOWN.
    machines = [m.model_copy(update={"heartbeat_s": 1.0}) for m in example_site.machines]
    info = example_site.site.model_copy(update={"max_gap_factor": 2.0})
    return example_site.model_copy(update={"api_keys": keys, "machines": machines, "site": info})


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


def test_machines_mask_other_tenants(client: TestClient) -> None:
    acme = machines_by_id(client, "acme")["cnc-01"]
    assert (acme["tenant"], acme["badge"], acme["occupied"], acme["job"]) == (None, None, True, None)
    assert acme["counters"]["good_count"] == 8
    batik = machines_by_id(client, "batik")["cnc-01"]
    assert (batik["tenant"], batik["badge"], batik["occupied"], batik["job"]) == ("batik", 2001, True, "J-1")
    assert machines_by_id(client, "operator")["laser-01"]["tenant"] == "cipta"
    free = machines_by_id(client, "acme")["cnc-02"]
    assert (free["tenant"], free["badge"], free["occupied"]) == (None, None, False)


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
    assert body["unattributed"] == {"good": 0, "reject": 0, "kwh": 0.0}


def test_timeline_masks_other_tenants(client: TestClient) -> None:
    resp = client.get("/v1/machines/cnc-01/timeline", params={"from": at(0), "to": at(10)}, headers=auth("acme"))
    got = [(i["state"], i["tenant"], i["badge"], i["occupied"], i["job"]) for i in resp.json()["intervals"]]
    assert got == [
        ("IDLE", "acme", 1001, True, "J-1"),
        ("RUNNING", "acme", 1001, True, "J-1"),
        ("RUNNING", None, None, True, None),
        ("IDLE", None, None, True, None),
        ("UNKNOWN", None, None, False, None),
    ]


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

    assert states() == [(at(0), at(4), "RUNNING"), (at(4), at(30), "UNKNOWN"), (at(30), at(31), "RUNNING")]
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
    assert rows["acme", "cnc-01"] == {
        "tenant": "acme",
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
    ("who", "tenants"), [("acme", ["acme"]), ("batik", ["batik"]), ("operator", ["acme", "batik", "cipta"])]
)
def test_usage_rows_per_role(client: TestClient, who: str, tenants: list[str]) -> None:
    body = client.get("/v1/usage", params={"from": at(0), "to": at(10)}, headers=auth(who)).json()
    assert [r["tenant"] for r in body["rows"]] == tenants
    assert bool(body["machines"]) is (who == "operator")


def test_unknown_badge_visible_to_operator_not_to_tenants(client: TestClient, influx_store: InfluxStore) -> None:
    influx_store.write([tel("brake-01", 0, state="RUNNING", badge=4242), tel("brake-01", 1, state="IDLE", badge=4242)])
    params = {"from": at(0), "to": at(10)}
    assert ("unknown", "brake-01") in [
        (r["tenant"], r["machine"])
        for r in client.get("/v1/usage", params=params, headers=auth("operator")).json()["rows"]
    ]
    assert [r["tenant"] for r in client.get("/v1/usage", params=params, headers=auth("acme")).json()["rows"]] == [
        "acme"
    ]
    interval = client.get("/v1/machines/brake-01/timeline", params=params, headers=auth("acme")).json()["intervals"][0]
    assert (interval["tenant"], interval["badge"], interval["occupied"]) == (None, None, True)


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
    assert set(spec["paths"]) == {"/healthz", "/v1/machines", "/v1/machines/{machine_id}/timeline", "/v1/usage"}
    params = {p["name"] for p in spec["paths"]["/v1/usage"]["get"]["parameters"]}
    assert params == {"from", "to"}
