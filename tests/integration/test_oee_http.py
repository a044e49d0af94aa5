"""GET /v1/oee (and /v1/usage's breakdown and session OEE) against a real InfluxDB, checked with hand-computed tables.

The site (derived from the example site) works one shift, "morning" 06:00-14:00 Asia/Jakarta (UTC+7) with a break
10:00-10:30, Monday to Friday, and a night shift 22:00-06:00 on Mondays only. Planned busy time (PBT) of the morning
shift: 8 h - 30 min = 7.5 h = 27000 s per machine. The morning shift runs 23:00 UTC Sunday .. 07:00 UTC Monday: it
crosses UTC midnight; the night shift crosses local midnight. Both must stay one row of the local day they start on.

Data: Monday 2026-11-02, local time, one full sample (every signal) at each change and every 5 minutes in between
(heartbeat 900 s, so the 5-minute samples keep every value alive). Counter increments of a segment are spread over
its samples; the increment seen at a sample belongs to the segment holding just before it.

cnc-01 (ideal cycle: machine 60 s, job J-A 60 s, job J-B 40 s):
  05:40-06:00  IDLE     nobody                    before the shift: unplanned
  06:00-06:30  SETUP    acme 1001  J-A            1800 s setup
  06:30-08:00  RUNNING  acme       J-A            5400 s, 70 good + 2 reject
  08:00-08:01  STOPPED  acme       J-A  reason 5    60 s: a microstop (<= 120 s), performance loss
  08:01-09:30  RUNNING  acme       J-A            5340 s, 84 good
  09:30-09:50  STOPPED  acme       J-A  reason 4  1200 s: breakdown:4
  09:50-10:00  IDLE     acme       J-A             600 s no_operator (logs out at 10:00)
  10:00-10:30  IDLE     nobody                    the break: unplanned
  10:30-10:45  SETUP    batik 2001 J-B             900 s setup
  10:45-12:45  RUNNING  batik      J-B            7200 s, 160 good + 5 reject
  12:45-13:00  STOPPED  batik      J-B  reason 9   900 s: reason 9 maps to no_material in this loss map
  13:00-14:00  RUNNING  batik      J-B            3600 s, 80 good + 4 reject
  14:00-14:20  IDLE     nobody                    after the shift; silence (UNKNOWN) from 14:20 + 903 s on
laser-01 (ideal cycle 20 s; job J-C has none of its own, so the machine's stands in, flagged):
  05:50-06:00  IDLE nobody; 06:00-09:00 RUNNING cipta 3001 J-C, 720 good (a part every 15 s: faster than ideal);
  09:00-11:00  IDLE nobody; 11:00 PLC unreachable, no data until 11:10 (600 s UNKNOWN, reason unreachable);
  11:10-14:20  IDLE nobody.
cnc-02 (ideal cycle 30 s, job J-N 30 s): nothing on Monday morning (UNKNOWN, no-data); the night shift:
  21:50-22:00  IDLE nobody; 22:00-23:30 RUNNING batik 2001 J-N, 150 good; 23:30-00:30 STOPPED reason 4 (3600 s,
  across local midnight); 00:30-06:00 RUNNING batik J-N, 550 good + 10 reject; 06:00-06:20 (Tuesday) IDLE nobody.

Every test runs twice: figures from raw data only, and with closed hours answered from roll-ups (SQLite).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.rollups import job
from api.rollups.store import RollupStore
from launcher.services import InfluxDB
from shopfloor.config import AgentSpec, ApiKey, Role, SiteConfig
from shopfloor.contracts import SignalValue
from shopfloor.influx import InfluxStore, Point
from shopfloor.keys import hash_key

pytestmark = pytest.mark.integration

JKT = ZoneInfo("Asia/Jakarta")
MON = date(2026, 11, 2)
TUE = MON + timedelta(days=1)
WED = MON + timedelta(days=2)
STEP = timedelta(minutes=5)
KEYS = {
    "admin": ("sfk_oee_admin", Role.ADMIN, None),
    "operator": ("sfk_oee_operator", Role.OPERATOR, None),
    "auditor": ("sfk_oee_auditor", Role.AUDITOR, None),
    "acme": ("sfk_oee_acme", Role.TENANT, "acme"),
    "batik": ("sfk_oee_batik", Role.TENANT, "batik"),
    "cipta": ("sfk_oee_cipta", Role.TENANT, "cipta"),
}
BASE_LOSSES = ("setup", "no_operator", "no_material", "off", "maintenance", "other", "unknown", "microstops")


def local(day: date, hhmm: str) -> datetime:
    """A site-local wall time "HH:MM" or "HH:MM:SS" on day, as an aware datetime."""
    hh, mm, *ss = (int(p) for p in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hh, mm, ss[0] if ss else 0, tzinfo=JKT)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def iso(when: datetime) -> str:
    return when.isoformat()


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who][0]}"}


# ---- the data ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seg:
    """A stretch of constant signals from start to the next segment's start (or end, for the last one)."""

    start: datetime
    state: str | None  # None: no data at all (a gap), announced by a machine status "unreachable" at its start
    badge: int = 0
    job: str = ""
    stop: int = 0
    good: int = 0
    reject: int = 0


def telemetry(machine: str, when: datetime, values: dict[str, SignalValue]) -> Point:
    return Point("telemetry", {"site": "bdg", "machine": machine}, values, ms(when))


def machine_status(machine: str, when: datetime, value: str) -> Point:
    fields: dict[str, SignalValue] = {"status": value, "agent": "edge-1", "detail": "", "heartbeat_ms": 900_000}
    return Point("machine_status", {"site": "bdg", "machine": machine}, fields, ms(when))


def points_of(machine: str, segs: list[Seg], end: datetime, good0: int, reject0: int) -> list[Point]:
    """Full samples at each segment's start and every STEP inside it, counters spread over the segment's samples."""
    out: list[Point] = []
    good, reject = good0, reject0
    ends = [s.start for s in segs[1:]] + [end]
    previous: Seg | None = None
    for seg, seg_end in zip(segs, ends, strict=True):
        if seg.state is None:
            out.append(machine_status(machine, seg.start, "unreachable"))
            previous = seg
            continue
        times = []
        t = seg.start
        while t < seg_end:
            times.append(t)
            t += STEP
        # The increments seen at the samples after the start and at the next segment's start (or the final sample):
        # they all happened while this segment held.
        steps = len(times)
        g_each, g_rest = divmod(seg.good, steps)
        r_each, r_rest = divmod(seg.reject, steps)
        for k, when in enumerate(times):
            if k > 0:
                good += g_each + (1 if k - 1 < g_rest else 0)
                reject += r_each + (1 if k - 1 < r_rest else 0)
            out.append(telemetry(machine, when, _values(seg, good, reject)))
        good += g_each + (1 if steps - 1 < g_rest else 0)
        reject += r_each + (1 if steps - 1 < r_rest else 0)
        previous = seg
    assert previous is not None and previous.state is not None
    out.append(telemetry(machine, end, _values(previous, good, reject)))
    return out


def _values(seg: Seg, good: int, reject: int) -> dict[str, SignalValue]:
    assert seg.state is not None
    return {
        "state": seg.state,
        "badge": seg.badge,
        "job": seg.job,
        "stop_reason": seg.stop,
        "good_count": good,
        "reject_count": reject,
    }


def m(hhmm: str, state: str | None, badge: int = 0, job: str = "", **kw: int) -> Seg:
    return Seg(local(MON, hhmm), state, badge, job, **kw)


CNC01 = [
    m("05:40", "IDLE"),
    m("06:00", "SETUP", 1001, "J-A"),
    m("06:30", "RUNNING", 1001, "J-A", good=70, reject=2),
    m("08:00", "STOPPED", 1001, "J-A", stop=5),
    m("08:01", "RUNNING", 1001, "J-A", good=84),
    m("09:30", "STOPPED", 1001, "J-A", stop=4),
    m("09:50", "IDLE", 1001, "J-A"),
    m("10:00", "IDLE"),
    m("10:30", "SETUP", 2001, "J-B"),
    m("10:45", "RUNNING", 2001, "J-B", good=160, reject=5),
    m("12:45", "STOPPED", 2001, "J-B", stop=9),
    m("13:00", "RUNNING", 2001, "J-B", good=80, reject=4),
    m("14:00", "IDLE"),
]
LASER = [
    m("05:50", "IDLE"),
    m("06:00", "RUNNING", 3001, "J-C", good=720),
    m("09:00", "IDLE"),
    m("11:00", None),
    m("11:10", "IDLE"),
]
CNC02 = [
    m("21:50", "IDLE"),
    m("22:00", "RUNNING", 2001, "J-N", good=150),
    m("23:30", "STOPPED", 2001, "J-N", stop=4),
    Seg(local(TUE, "00:30"), "RUNNING", 2001, "J-N", good=550, reject=10),
    Seg(local(TUE, "06:00"), "IDLE"),
]
DATA = [
    *points_of("cnc-01", CNC01, local(MON, "14:20"), 52_000, 3_100),
    *points_of("laser-01", LASER, local(MON, "14:20"), 910_000, 0),
    *points_of("cnc-02", CNC02, local(TUE, "06:20"), 7_000, 40),
]
# The windows: the morning shift with an hour either side; Monday 05:00 to Tuesday 07:00 (= Tuesday 00:00 UTC).
MORNING = {"from": iso(local(MON, "05:00")), "to": iso(local(MON, "15:00"))}
WHOLE_FROM, WHOLE_TO = local(MON, "05:00"), local(TUE, "07:00")
WHOLE = {"from": iso(WHOLE_FROM), "to": iso(WHOLE_TO)}
NOW = local(WED, "12:00")  # everything above is closed (the roll-ups build it)


@pytest.fixture(scope="module")
def site(example_site: SiteConfig) -> SiteConfig:
    keys = [ApiKey(name=n, sha256=hash_key(k), role=r, tenant=t) for n, (k, r, t) in KEYS.items()]
    machines = []
    for machine_id, ideal, jobs in (
        ("cnc-01", 60.0, {"J-A": 60.0, "J-B": 40.0}),
        ("cnc-02", 30.0, {"J-N": 30.0}),
        ("laser-01", 20.0, {}),
    ):
        found = example_site.machine(machine_id)
        assert found is not None
        machines.append(
            found.model_copy(
                update={
                    "ideal_cycle_time_s": ideal,
                    "job_cycle_times_s": jobs,
                    "heartbeat_s": 900.0,
                    "poll_interval_s": 1.0,
                }
            )
        )
    data = example_site.model_dump(mode="json")
    data.update(
        site={**data["site"], "max_gap_factor": 2.0},  # silence > 900 s + 2 x 1 s + 1 s = 903 s is UNKNOWN
        machines=[mm.model_dump(mode="json") for mm in machines],
        agents=[AgentSpec(id="edge-1", machines=[mm.id for mm in machines]).model_dump()],
        api_keys=[k.model_dump(mode="json") for k in keys],
        calendar={
            "shifts": [
                {
                    "name": "morning",
                    "start": "06:00",
                    "end": "14:00",
                    "days": ["mon", "tue", "wed", "thu", "fri"],
                    "breaks": [{"start": "10:00", "end": "10:30"}],
                },
                {"name": "night", "start": "22:00", "end": "06:00", "days": ["mon"]},
            ]
        },
        oee={"loss_map": {"version": "test-2", "microstop_max_s": 120.0, "stop_reasons": {9: "no_material"}}},
    )
    # Validated again as a whole, so the derived site obeys every rule of a site file.
    return SiteConfig.model_validate(data, context={"base_dir": Path(__file__).parent})


@pytest.fixture(scope="module")
def oee_store(influxdb: InfluxDB) -> Iterator[InfluxStore]:
    store = InfluxStore(influxdb.url, f"test_api_oee_{uuid.uuid4().hex[:10]}")
    store.ensure_database()
    store.write(DATA)
    yield store
    store.close()


@pytest.fixture(scope="module", params=["raw", "rollups"])
def client(
    request: pytest.FixtureRequest, site: SiteConfig, oee_store: InfluxStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    rollups = None
    if request.param == "rollups":
        rollups = RollupStore(f"sqlite:///{tmp_path_factory.mktemp('rollups') / 'rollups.db'}")
        report = job.run_until_done(oee_store, rollups, site, clock=lambda: ms(NOW))
        assert report.built > 0
    app = create_app(site, oee_store, clock=lambda: NOW, rollups=rollups)
    with TestClient(app) as c:
        yield c
    if rollups is not None:
        rollups.close()


def oee(client: TestClient, who: str = "admin", **params: str) -> dict[str, Any]:
    resp = client.get("/v1/oee", params=params, headers=auth(who))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def rows_by(body: dict[str, Any], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in keys): r for r in body["rows"]}


def losses(**named: float) -> dict[str, float]:
    """Every loss a row carries: the base ones (0 unless named) and the named breakdowns."""
    out = {k: 0.0 for k in (*BASE_LOSSES, "speed_loss", "rejects")}
    for key, value in named.items():
        out[key.replace("breakdown_", "breakdown:")] = float(value)
    return out


def check_row(row: dict[str, Any], want: dict[str, Any]) -> None:
    """Compare the figures named in want (ratios to 6 places, as the API rounds them)."""
    got = {k: row[k] for k in want}
    for key in ("availability", "effectiveness", "quality", "oee", "coverage"):
        if key in want and want[key] is not None:
            got[key] = pytest.approx(row[key], abs=1.5e-6)
    assert got == want
    # The loss breakdown and the ideal time of the good parts make up PBT, exactly.
    assert sum(row["losses"].values()) + row["ideal_good_s"] == pytest.approx(row["pbt_s"], abs=1e-6)


# ---- hand-computed tables ----------------------------------------------------------------------------------------

# cnc-01, morning shift, calendar basis. PBT 27000 s =
#   setup 1800 + 900 = 2700; RUNNING 5400 + 5340 + 7200 + 3600 = 21540; microstop 60; breakdown:4 1200;
#   no_operator 600; no_material 900.  2700 + 21540 + 60 + 1200 + 600 + 900 = 27000.
# APT = RUNNING + microstops = 21600. Produced 72 + 84 + 165 + 84 = 405, good 70 + 84 + 160 + 80 = 394, reject 11.
# Ideal: J-A (72 + 84) x 60 = 9360, J-B (165 + 84) x 40 = 9960: 19320 s; of the good parts 154 x 60 + 240 x 40 = 18840.
# speed_loss = RUNNING - ideal = 21540 - 19320 = 2220; rejects = ideal x reject = 2 x 60 + 9 x 40 = 480.
# Losses 2700 + 600 + 900 + 1200 + 60 + 2220 + 480 = 8160; + 18840 = 27000 = PBT.
# Outside PBT (window 05:00-15:00 = 36000 s): 36000 - 27000 = 9000 s unplanned (05:00-06:00, break, 14:00-15:00).
CNC01_MORNING = {
    "basis": "calendar",
    "pbt_s": 27000.0,
    "apt_s": 21600.0,
    "running_s": 21540.0,
    "unknown_s": 0.0,
    "coverage": 1.0,
    "produced": 405,
    "good": 394,
    "reject": 11,
    "ideal_s": 19320.0,
    "ideal_good_s": 18840.0,
    "unattributed_good": 0,
    "unattributed_reject": 0,
    "unplanned_produced": 0,
    "availability": 21600 / 27000,  # 0.8
    "effectiveness": 19320 / 21600,  # 0.894444
    "quality": 394 / 405,
    "oee": 21600 / 27000 * 19320 / 21600 * 394 / 405,
    "losses": losses(
        setup=2700, no_operator=600, no_material=900, breakdown_4=1200, microstops=60, speed_loss=2220, rejects=480
    ),
    "flags": [],
    "anomalies": 0,
    "loss_map_version": "test-2",
}
# laser-01, morning shift: RUNNING 06:00-09:00 = 10800; IDLE 09:00-10:00 + 10:30-14:00 less the 600 s unreachable
# = 3600 + 12600 - 600 = 15600 no_operator; unknown 600. 10800 + 15600 + 600 = 27000.
# 720 parts x 20 s = 14400 s ideal in 10800 s of running: effectiveness 14400 / 10800 = 1.333333, returned and
# flagged, not capped; speed_loss = 10800 - 14400 = -3600 (negative: faster than ideal). Losses 15600 + 600 - 3600
# = 12600; + 14400 = 27000. Coverage (27000 - 600) / 27000 = 0.977778: not low (>= 0.95).
LASER_MORNING = {
    "basis": "calendar",
    "pbt_s": 27000.0,
    "apt_s": 10800.0,
    "running_s": 10800.0,
    "unknown_s": 600.0,
    "coverage": 26400 / 27000,
    "produced": 720,
    "good": 720,
    "reject": 0,
    "ideal_s": 14400.0,
    "ideal_good_s": 14400.0,
    "availability": 0.4,
    "effectiveness": 14400 / 10800,
    "quality": 1.0,
    "oee": 0.4 * 14400 / 10800,
    "losses": losses(no_operator=15600, unknown=600, speed_loss=-3600),
    "flags": ["effectiveness_over_100", "ideal_cycle_default"],
}
# cnc-02 has no data on Monday morning: PBT 27000 s, all UNKNOWN.
CNC02_MORNING = {
    "pbt_s": 27000.0,
    "apt_s": 0.0,
    "unknown_s": 27000.0,
    "coverage": 0.0,
    "produced": 0,
    "availability": 0.0,
    "effectiveness": None,
    "quality": None,
    "oee": None,
    "losses": losses(unknown=27000),
    "flags": ["no_production_time", "no_parts", "low_coverage"],
}
# Sessions (session basis: PBT is the session's time).
# acme on cnc-01, 06:00-10:00 = 14400 s: setup 1800, RUNNING 5400 + 5340 = 10740, microstop 60, breakdown:4 1200,
# no_operator 600. APT 10800. 156 produced (154 good) x 60 = 9360 ideal, 9240 of good; speed 10740 - 9360 = 1380;
# rejects 2 x 60 = 120. 1800 + 60 + 1200 + 600 + 1380 + 120 = 5160; + 9240 = 14400.
ACME = {
    "basis": "session",
    "pbt_s": 14400.0,
    "apt_s": 10800.0,
    "running_s": 10740.0,
    "unplanned_s": 0.0,
    "produced": 156,
    "good": 154,
    "reject": 2,
    "ideal_s": 9360.0,
    "ideal_good_s": 9240.0,
    "availability": 10800 / 14400,
    "effectiveness": 9360 / 10800,
    "quality": 154 / 156,
    "oee": 10800 / 14400 * 9360 / 10800 * 154 / 156,
    "losses": losses(setup=1800, no_operator=600, breakdown_4=1200, microstops=60, speed_loss=1380, rejects=120),
    "flags": [],
}
# batik on cnc-01, 10:30-14:00 = 12600 s: setup 900, RUNNING 7200 + 3600 = 10800, no_material 900. 249 produced
# (240 good) x 40 = 9960 ideal, 9600 of good; speed 10800 - 9960 = 840; rejects 9 x 40 = 360.
# 900 + 900 + 840 + 360 = 3000; + 9600 = 12600.
BATIK = {
    "basis": "session",
    "pbt_s": 12600.0,
    "apt_s": 10800.0,
    "running_s": 10800.0,
    "produced": 249,
    "good": 240,
    "reject": 9,
    "ideal_s": 9960.0,
    "ideal_good_s": 9600.0,
    "availability": 10800 / 12600,
    "effectiveness": 9960 / 10800,
    "quality": 240 / 249,
    "oee": 10800 / 12600 * 9960 / 10800 * 240 / 249,
    "losses": losses(setup=900, no_material=900, speed_loss=840, rejects=360),
    "flags": [],
}
# cipta on laser-01, 06:00-09:00 = 10800 s, all RUNNING: 720 x 20 = 14400 ideal; speed 10800 - 14400 = -3600.
CIPTA = {
    "basis": "session",
    "pbt_s": 10800.0,
    "apt_s": 10800.0,
    "produced": 720,
    "good": 720,
    "ideal_s": 14400.0,
    "availability": 1.0,
    "effectiveness": 14400 / 10800,
    "oee": 14400 / 10800,
    "losses": losses(speed_loss=-3600),
    "flags": ["effectiveness_over_100", "ideal_cycle_default"],
}
# batik on cnc-02, the night 22:00-06:00 = 28800 s: RUNNING 5400 + 19800 = 25200, breakdown:4 3600. 710 produced
# (700 good) x 30 = 21300 ideal, 21000 of good; speed 25200 - 21300 = 3900; rejects 10 x 30 = 300.
# 3600 + 3900 + 300 = 7800; + 21000 = 28800. Calendar basis, the night shift: the same figures.
NIGHT = {
    "pbt_s": 28800.0,
    "apt_s": 25200.0,
    "running_s": 25200.0,
    "unknown_s": 0.0,
    "produced": 710,
    "good": 700,
    "reject": 10,
    "ideal_s": 21300.0,
    "ideal_good_s": 21000.0,
    "availability": 25200 / 28800,
    "effectiveness": 21300 / 25200,
    "quality": 700 / 710,
    "losses": losses(breakdown_4=3600, speed_loss=3900, rejects=300),
    "flags": [],
}


def test_one_shift_by_machine(client: TestClient) -> None:
    body = oee(client, **MORNING)
    assert (body["group_by"], body["tenant"], body["loss_map_version"]) == (["machine"], None, "test-2")
    assert (body["from"], body["to"]) == ("2026-11-01T22:00:00Z", "2026-11-02T08:00:00Z")
    rows = rows_by(body, "machine")
    assert list(rows) == [("cnc-01",), ("cnc-02",), ("laser-01",)]
    check_row(rows["cnc-01",], {**CNC01_MORNING, "unplanned_s": 9000.0})
    check_row(rows["laser-01",], {**LASER_MORNING, "unplanned_s": 9000.0})
    check_row(rows["cnc-02",], CNC02_MORNING)
    # Only the keys grouped by, then the figures.
    assert "tenant" not in rows["cnc-01",] and "shift" not in rows["cnc-01",]


@pytest.mark.parametrize("group_by", ["tenant", "machine,tenant", "tenant,machine"])
def test_by_tenant_is_the_session_basis(client: TestClient, group_by: str) -> None:
    body = oee(client, **MORNING, group_by=group_by)
    keys = group_by.split(",")
    assert body["group_by"] == keys
    rows = rows_by(body, "tenant")
    # Sorted by the keys in the order asked for; either way acme, batik, cipta here.
    assert [r["tenant"] for r in body["rows"]] == ["acme", "batik", "cipta"]
    check_row(rows["acme",], ACME)
    check_row(rows["batik",], BATIK)
    check_row(rows["cipta",], CIPTA)
    assert all(r["unowned"] is False for r in body["rows"])
    if "machine" in keys:
        assert [(r["machine"], r["tenant"]) for r in body["rows"]] == [
            ("cnc-01", "acme"),
            ("cnc-01", "batik"),
            ("laser-01", "cipta"),
        ]


def test_by_job(client: TestClient) -> None:
    # Calendar basis: each job's planned time. J-A is acme's session (06:00-10:00 all in PBT), J-B batik's, J-C
    # cipta's; the rest (no job: laser-01 idle 09:00-14:00 less the break, and cnc-02's UNKNOWN morning) is job null.
    rows = rows_by(oee(client, **MORNING, group_by="job"), "job")
    assert list(rows) == [(None,), ("J-A",), ("J-B",), ("J-C",)]
    strip = ("basis",)
    check_row(rows["J-A",], {k: v for k, v in ACME.items() if k not in strip})
    check_row(rows["J-B",], {k: v for k, v in BATIK.items() if k not in strip})
    check_row(rows["J-C",], {k: v for k, v in CIPTA.items() if k not in strip})
    # job null: laser-01 15600 no_operator + 600 unknown, cnc-02 27000 unknown: PBT 43200, unknown 27600.
    # Unplanned: per machine 05:00-06:00, the break and 14:00-15:00 (9000 s) x 3.
    check_row(
        rows[None,],
        {
            "pbt_s": 43200.0,
            "unknown_s": 27600.0,
            "unplanned_s": 27000.0,
            "coverage": 15600 / 43200,
            "produced": 0,
            "losses": losses(no_operator=15600, unknown=27600),
            "flags": ["no_production_time", "no_parts", "low_coverage"],
        },
    )


def test_by_shift_and_by_day(client: TestClient) -> None:
    # The three machines' morning: PBT 3 x 27000 = 81000; APT 21600 + 10800; parts 405 + 720; ideal 19320 + 14400.
    # Effectiveness 33720 / 32400 = 1.040741: over 100 % (laser-01's), flagged. Coverage (81000 - 27600) / 81000.
    morning = {
        "pbt_s": 81000.0,
        "apt_s": 32400.0,
        "unknown_s": 27600.0,
        "produced": 1125,
        "good": 1114,
        "ideal_s": 33720.0,
        "ideal_good_s": 33240.0,
        "effectiveness": 33720 / 32400,
        "coverage": 53400 / 81000,
        "losses": losses(
            setup=2700,
            no_operator=16200,
            no_material=900,
            breakdown_4=1200,
            microstops=60,
            unknown=27600,
            speed_loss=2220 - 3600,
            rejects=480,
        ),
        "flags": ["low_coverage", "effectiveness_over_100", "ideal_cycle_default"],
    }
    shifts = rows_by(oee(client, **MORNING, group_by="shift"), "shift")
    assert list(shifts) == [(None,), ("morning",)]
    check_row(shifts["morning",], {**morning, "unplanned_s": 3 * 1800.0})  # the break is the shift's, unplanned
    # No shift: 05:00-06:00 and 14:00-15:00 of three machines, nothing planned.
    check_row(
        shifts[None,],
        {"pbt_s": 0.0, "unplanned_s": 3 * 7200.0, "availability": None, "coverage": None, "flags": ["no_planned_time"]},
    )
    days = oee(client, **MORNING, group_by="day")["rows"]
    assert [r["day"] for r in days] == ["2026-11-02"]
    check_row(days[0], {**morning, "unplanned_s": 27000.0})


def test_shifts_crossing_midnight_are_one_row_of_their_start_day(client: TestClient) -> None:
    # The morning shift crosses UTC midnight (23:00-07:00 UTC), the night shift local midnight: one row each, of the
    # local day the shift starts on. Tuesday 06:00-07:00 is Tuesday's morning shift.
    rows = rows_by(oee(client, **WHOLE, group_by="machine,shift,day"), "machine", "shift", "day")
    assert [k for k in rows if k[0] == "cnc-02"] == [
        ("cnc-02", None, "2026-11-02"),
        ("cnc-02", "morning", "2026-11-02"),
        ("cnc-02", "morning", "2026-11-03"),
        ("cnc-02", "night", "2026-11-02"),
    ]
    check_row(rows["cnc-02", "night", "2026-11-02"], {**NIGHT, "basis": "calendar", "unplanned_s": 0.0})
    check_row(rows["cnc-01", "morning", "2026-11-02"], {**CNC01_MORNING, "unplanned_s": 1800.0})
    check_row(rows["laser-01", "morning", "2026-11-02"], {**LASER_MORNING, "unplanned_s": 1800.0})
    # The night shift's row is the same whichever window holds it whole, and so is its session.
    night = {"from": iso(local(MON, "22:00")), "to": iso(local(TUE, "06:00"))}
    alone = oee(client, **night, machine="cnc-02", group_by="shift,day")["rows"]
    assert [(r["shift"], r["day"]) for r in alone] == [("night", "2026-11-02")]
    assert alone[0] == {k: v for k, v in rows["cnc-02", "night", "2026-11-02"].items() if k != "machine"}
    session = rows_by(oee(client, **WHOLE, group_by="machine,tenant,day"), "machine", "tenant", "day")
    assert list(session) == [
        ("cnc-01", "acme", "2026-11-02"),
        ("cnc-01", "batik", "2026-11-02"),
        ("cnc-02", "batik", "2026-11-02"),
        ("laser-01", "cipta", "2026-11-02"),
    ]
    check_row(session["cnc-02", "batik", "2026-11-02"], {**NIGHT, "basis": "session"})


def test_tenant_and_job_combined(client: TestClient) -> None:
    rows = rows_by(oee(client, **WHOLE, group_by="tenant,job"), "tenant", "job")
    assert list(rows) == [("acme", "J-A"), ("batik", "J-B"), ("batik", "J-N"), ("cipta", "J-C")]
    check_row(rows["acme", "J-A"], ACME)
    check_row(rows["batik", "J-B"], BATIK)
    check_row(rows["batik", "J-N"], {**NIGHT, "basis": "session"})
    check_row(rows["cipta", "J-C"], CIPTA)


FIGURES = ("pbt_s", "apt_s", "running_s", "unknown_s", "unplanned_s", "produced", "good", "reject", "ideal_s")


def test_a_day_is_the_sum_of_its_hours(client: TestClient) -> None:
    # Window independence through the API: Monday 05:00 to Tuesday 07:00 at once, and hour by hour, grouped by
    # machine, shift and day: every figure and every loss of each row is the sum of that row's hourly figures.
    keys = ("machine", "shift", "day")
    whole = rows_by(oee(client, **WHOLE, group_by=",".join(keys)), *keys)
    summed: dict[tuple[Any, ...], dict[str, float]] = {}
    hour = WHOLE_FROM
    while hour < WHOLE_TO:
        part = oee(client, **{"from": iso(hour), "to": iso(hour + timedelta(hours=1))}, group_by=",".join(keys))
        for key, row in rows_by(part, *keys).items():
            acc = summed.setdefault(key, {})
            for name in FIGURES:
                acc[name] = acc.get(name, 0) + row[name]
            for name, value in row["losses"].items():
                acc[f"loss:{name}"] = acc.get(f"loss:{name}", 0) + value
        hour += timedelta(hours=1)
    assert set(summed) == set(whole)
    assert whole["cnc-02", "night", "2026-11-02"]["produced"] == 710  # not a sum of nothing
    for key, row in whole.items():
        want = {name: row[name] for name in FIGURES} | {f"loss:{k}": v for k, v in row["losses"].items()}
        got = {name: pytest.approx(summed[key].get(name, 0), abs=1e-6) for name in want}
        assert want == got, key
    # And by day alone: Monday (everything of it up to Tuesday 06:00, the night shift included) and Tuesday.
    days = rows_by(oee(client, **WHOLE, group_by="day"), "day")
    assert list(days) == [("2026-11-02",), ("2026-11-03",)]
    monday = [row for key, row in whole.items() if key[2] == "2026-11-02"]
    assert days["2026-11-02",]["pbt_s"] == sum(r["pbt_s"] for r in monday) == 3 * 27000 + 3 * 28800
    assert days["2026-11-02",]["produced"] == 405 + 720 + 710


# ---- usage: the state breakdown and the session OEE ------------------------------------------------------------


def test_usage_rows_carry_the_breakdown_and_the_session_oee(client: TestClient) -> None:
    resp = client.get("/v1/usage", params=MORNING, headers=auth("admin"))
    assert resp.status_code == 200, resp.text
    rows = {(r["tenant"], r["machine"]): r for r in resp.json()["rows"]}
    assert list(rows) == [("acme", "cnc-01"), ("batik", "cnc-01"), ("cipta", "laser-01")]
    h = 3600
    acme = rows["acme", "cnc-01"]
    assert acme["breakdown"] == {
        "running_hours": round(10740 / h, 6),
        "setup_hours": 0.5,
        "idle_hours": round(600 / h, 6),
        "stopped_hours": {"4": round(1200 / h, 6), "5": round(60 / h, 6)},
        "off_hours": 0.0,
        "maintenance_hours": 0.0,
        "unknown_hours": 0.0,
    }
    assert (acme["session_hours"], acme["running_hours"], acme["good"], acme["reject"], acme["sessions"]) == (
        4.0,
        round(10740 / h, 6),
        154,
        2,
        1,
    )
    batik = rows["batik", "cnc-01"]
    assert batik["breakdown"]["stopped_hours"] == {"9": 0.25}
    assert (batik["breakdown"]["setup_hours"], batik["session_hours"]) == (0.25, 3.5)
    # The session OEE is the OEE route's session-basis row of the same tenant and machine.
    by_tenant = rows_by(oee(client, **MORNING, group_by="machine,tenant"), "tenant", "machine")
    for key, row in rows.items():
        figures = by_tenant[key]
        assert {k: row[k] for k in ("oee", "availability", "effectiveness", "quality", "flags")} == {
            k: figures[k] for k in ("oee", "availability", "effectiveness", "quality", "flags")
        }, key
    assert rows["cipta", "laser-01"]["flags"] == ["effectiveness_over_100", "ideal_cycle_default"]


# ---- the timeline's UNKNOWN reasons ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "start", "end", "want"),
    [
        # The PLC unreachable at 11:00 and data again at 11:10.
        (
            "laser-01",
            "10:50",
            "11:20",
            [("10:50", "IDLE", None), ("11:00", "UNKNOWN", "unreachable"), ("11:10", "IDLE", None)],
        ),
        # The last sample at 14:20; its values hold 903 s (the heartbeat allowance), then nothing is known.
        ("cnc-01", "14:10", "14:50", [("14:10", "IDLE", None), ("14:35:03", "UNKNOWN", "silence")]),
        # No data at all yet.
        ("cnc-02", "06:00", "07:00", [("06:00", "UNKNOWN", "no-data")]),
    ],
)
def test_timeline_gives_each_unknown_interval_its_reason(
    client: TestClient, machine: str, start: str, end: str, want: list[tuple[str, str, str | None]]
) -> None:
    params = {"from": iso(local(MON, start)), "to": iso(local(MON, end))}
    for who in ("admin", "cipta"):  # nobody is logged in: a tenant sees the state and why it is unknown, too
        resp = client.get(f"/v1/machines/{machine}/timeline", params=params, headers=auth(who))
        assert resp.status_code == 200, resp.text
        got = [
            (datetime.fromisoformat(i["start"]).astimezone(JKT).strftime("%H:%M:%S"), i["state"], i["reason"])
            for i in resp.json()["intervals"]
        ]
        assert got == [(t if t.count(":") == 2 else t + ":00", s, r) for t, s, r in want], who


# ---- tenant filter and visibility ------------------------------------------------------------------------------


def test_tenant_filter_gives_that_tenants_sessions(client: TestClient) -> None:
    body = oee(client, **MORNING, tenant="acme")
    assert body["tenant"] == "acme"
    [row] = body["rows"]
    check_row(row, {"machine": "cnc-01", **ACME})
    mine = oee(client, "acme", **MORNING)
    assert mine == body  # a tenant key gets its own sessions without asking, the same figures an admin gets
    assert oee(client, "acme", **MORNING, tenant="acme") == body
    assert [r["tenant"] for r in oee(client, "acme", **MORNING, group_by="tenant")["rows"]] == ["acme"]
    cipta = oee(client, "operator", **MORNING, tenant="cipta", group_by="job")
    assert [r["job"] for r in cipta["rows"]] == ["J-C"]


@pytest.mark.parametrize(
    ("who", "tenant"),
    [("acme", "batik"), ("acme", "nope"), ("acme", "unknown"), ("batik", "acme"), ("admin", "nope"), ("auditor", "x")],
)
def test_another_or_a_nonexistent_tenant_is_the_same_404(client: TestClient, who: str, tenant: str) -> None:
    resp = client.get("/v1/oee", params={**MORNING, "tenant": tenant}, headers=auth(who))
    assert (resp.status_code, resp.json()) == (404, {"detail": f"tenant {tenant!r} not found"})


# What belongs to batik and cipta, as an admin's JSON shows it (acme must see none of it): ids, badges, jobs, the
# machines only they used, and figures of their sessions no figure of acme's equals. (OEE and usage rows carry no
# badges.)
OTHERS_STRINGS = {"batik", "cipta", "J-B", "J-C", "J-N", "laser-01", "cnc-02"}
OTHERS_NUMBERS: set[float] = {12600, 249, 240, 9960, 9600, 840, 25200, 710, 21300, 21000, 3900, 720, -3600, 1.333333}
ACME_STRINGS: set[str] = {"acme", "J-A", "cnc-01"}
ACME_NUMBERS: set[float] = {14400, 156, 154, 9360, 9240, 1380}
LEAK_GROUPS = ["machine", "tenant", "job", "shift", "day", "machine,tenant,job,shift,day", "tenant,job"]


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def found(bodies: list[Any], strings: set[str], numbers: set[float]) -> set[str | float]:
    hits: set[str | float] = set()
    for leaf in leaves(bodies):
        if isinstance(leaf, str):
            hits |= {s for s in strings if s in leaf}
        elif isinstance(leaf, int | float) and not isinstance(leaf, bool):
            hits |= {n for n in numbers if leaf == n}
    return hits


def everything(client: TestClient, who: str) -> list[Any]:
    out: list[Any] = [oee(client, who, **WHOLE, group_by=g) for g in LEAK_GROUPS]
    resp = client.get("/v1/usage", params=WHOLE, headers=auth(who))
    assert resp.status_code == 200
    out.append(resp.json())
    return out


def test_a_tenant_keys_answers_hold_nothing_of_another_tenant(client: TestClient) -> None:
    admin = everything(client, "admin")
    # The positive control: each value searched for is really there for an all-seeing key.
    assert found(admin, OTHERS_STRINGS, OTHERS_NUMBERS) == OTHERS_STRINGS | OTHERS_NUMBERS
    acme = everything(client, "acme")
    assert found(acme, OTHERS_STRINGS, OTHERS_NUMBERS) == set()
    assert found(acme, ACME_STRINGS, ACME_NUMBERS) == ACME_STRINGS | ACME_NUMBERS
    assert "batik" not in json.dumps(acme) and "cipta" not in json.dumps(acme)


# ---- hostile query strings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "machine,colour"}, "group_by"),
        ({"group_by": "machine,machine"}, "group_by"),
        ({"group_by": ""}, "group_by"),
        ({"group_by": ","}, "group_by"),
        ({"group_by": "machine;DROP MEASUREMENT telemetry"}, "group_by"),
        ({"group_by": "tenant\x00"}, "group_by"),
        ({"group_by": "Machine"}, "group_by"),
        ({"group_by": "ｍachine"}, "group_by"),
        ([("group_by", "machine"), ("group_by", "tenant")], "group_by"),
        ([("machine", "cnc-01"), ("machine", "laser-01")], "machine"),
        ([("tenant", "acme"), ("tenant", "batik")], "tenant"),
        ([("from", MORNING["from"]), ("from", MORNING["from"]), ("to", MORNING["to"])], "from"),
        ({"group_by": "machine," * 1250}, "group_by"),  # 10 kB
        ({"machine": "x" * 10_000}, "machine"),
        ({"tenant": "a" * 10_000}, "tenant"),
        ({"from": "2" * 10_000}, "from"),
        ({"to": MORNING["to"] + " " * 10_000}, "to"),
    ],
)
@pytest.mark.parametrize("who", ["admin", "acme"])
def test_bad_query_strings_are_422_naming_the_parameter(client: TestClient, params: Any, param: str, who: str) -> None:
    if isinstance(params, dict):
        params = {**MORNING, **params}
    resp = client.get("/v1/oee", params=params, headers=auth(who))
    assert resp.status_code == 422, resp.text
    assert ["query", param] in [e["loc"] for e in resp.json()["detail"]]
    assert len(resp.text) < 2000  # a 10 kB input is not echoed back whole


@pytest.mark.parametrize(
    "machine",
    [
        "nope",
        "press-01",
        "CNC-01",
        "cnc-01\n",
        "cnc-01\r\nX-Injected: 1",
        "cnc\x00-01",
        "\x1b[31mcnc-01",
        "cnc-０１",
        "..",
        "%00",
    ],
)
@pytest.mark.parametrize("who", ["admin", "acme"])
def test_an_unknown_or_malformed_machine_is_404(client: TestClient, machine: str, who: str) -> None:
    resp = client.get("/v1/oee", params={**MORNING, "machine": machine}, headers=auth(who))
    assert resp.status_code == 404, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("machine ") and detail.endswith(" not found")
    assert detail.isprintable()  # control characters come back escaped, never raw
    assert "X-Injected" not in resp.headers


def test_a_machine_filter_gives_that_machine_only(client: TestClient) -> None:
    rows = oee(client, **MORNING, machine="laser-01", group_by="machine,shift")["rows"]
    assert [(r["machine"], r["shift"]) for r in rows] == [("laser-01", None), ("laser-01", "morning")]
    check_row(rows[1], {**LASER_MORNING, "unplanned_s": 1800.0})
    # A tenant key's machine filter: acme never used laser-01, so there is nothing of it to show.
    assert oee(client, "acme", **MORNING, machine="laser-01")["rows"] == []


def test_auth_comes_first(client: TestClient) -> None:
    assert client.get("/v1/oee", params={"group_by": "colour", "machine": "nope"}).status_code == 401
    resp = client.get("/v1/oee", params=MORNING, headers={"Authorization": "Bearer " + "A" * 10_000})
    assert resp.status_code == 401


# ---- counter anomalies are machine-wide figures ----------------------------------------------------------------


@pytest.fixture
def anomaly_client(site: SiteConfig, influx_store: InfluxStore) -> Iterator[TestClient]:
    # Wednesday 06:00-07:00 on cnc-01, one hour, one stretch: acme runs 06:00-06:30 (20 good), batik 06:30-07:00;
    # in batik's session the counter jumps by 5000 at 06:45 (a preset): a counter anomaly, never counted.
    segs = [
        Seg(local(WED, "05:55"), "IDLE"),
        Seg(local(WED, "06:00"), "RUNNING", 1001, "J-A", good=20),
        Seg(local(WED, "06:30"), "RUNNING", 2001, "J-B", good=30),
        Seg(local(WED, "07:00"), "IDLE"),
    ]
    points = points_of("cnc-01", segs, local(WED, "07:10"), 1000, 0)
    jumped = []
    for p in points:
        if p.ts_ms >= ms(local(WED, "06:45")):
            good = p.fields["good_count"]
            assert isinstance(good, int)
            p = Point(p.measurement, p.tags, {**p.fields, "good_count": good + 5000}, p.ts_ms)
        jumped.append(p)
    influx_store.write(jumped)
    app = create_app(site, influx_store, clock=lambda: NOW)
    with TestClient(app) as c:
        yield c


WED_HOUR = {"from": iso(local(WED, "06:00")), "to": iso(local(WED, "07:00"))}


def test_a_counter_jump_is_an_anomaly_reported_to_admins_and_never_counted(anomaly_client: TestClient) -> None:
    body = anomaly_client.get("/v1/usage", params=WED_HOUR, headers=auth("admin")).json()
    [cnc] = [mm for mm in body["machines"] if mm["machine"] == "cnc-01"]
    assert [(a["signal"], a["value"] - a["previous"]) for a in cnc["anomalies"]] == [("good_count", 5000 + 5)]
    # 20 + 30 parts made; the jump's 5000 (and the 5 parts of its 5 minutes) are not.
    assert cnc["total"]["good"] == 20 + 30 - 5
    rows = rows_by(oee(anomaly_client, **WED_HOUR, group_by="machine"), "machine")
    assert (rows["cnc-01",]["good"], rows["cnc-01",]["anomalies"], rows["cnc-01",]["flags"][-1:]) == (
        45,
        1,
        ["counter_anomalies"],
    )
    batik = oee(anomaly_client, **WED_HOUR, tenant="batik")["rows"]
    assert (batik[0]["good"], batik[0]["anomalies"], "counter_anomalies" in batik[0]["flags"]) == (25, 1, True)


def test_a_tenant_key_sees_no_anomaly_of_another_tenants_session(anomaly_client: TestClient) -> None:
    acme = oee(anomaly_client, "acme", **WED_HOUR)["rows"]
    assert [(r["machine"], r["good"]) for r in acme] == [("cnc-01", 20)]
    usage = anomaly_client.get("/v1/usage", params=WED_HOUR, headers=auth("acme")).json()
    assert usage["machines"] == []
    assert [(r["tenant"], r["good"]) for r in usage["rows"]] == [("acme", 20)]
    assert (acme[0]["anomalies"], acme[0]["flags"], usage["rows"][0]["flags"]) == (0, [], [])
