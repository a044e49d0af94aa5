"""Grafana dashboards against a real InfluxDB filled by the simulator's replay, plus the derived measurement.

No Grafana runs here (none is installable): every panel query of every dashboard is run the way Grafana would run it
(template variables resolved by running the variables' own queries, $timeFilter and $__interval substituted) and its
answer must have the shape the panel needs. The data is 8 hours of the month scenario (the agent's own reporting
code on simulated reads, written as the collector writes it) and the machine_hour points the roll-up job's hook
(api.rollups.derived.Deriver) writes for those hours.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import time
from pathlib import Path
from typing import Any

import pytest

from api import analytics
from api.core.owners import Owners
from api.core.pieces import HOUR_MS, HourSummary, Piece
from api.rollups import derived, job
from collector.convert import agent_status_to_point, batch_to_lines, status_to_point
from launcher import dashboards
from launcher.services import InfluxDB, free_port
from shopfloor.calendar import Calendar, ShiftPattern
from shopfloor.config import BreakSpec, SiteConfig, default_site_path, load_site
from shopfloor.contracts import CANONICAL_SIGNALS, LinkStatus, StatusMessage, Topic
from shopfloor.influx import InfluxStore, quote_literal, to_line
from shopfloor.store import SCHEMA, Point
from simulators.replay import ReplayOptions, replay_messages
from simulators.scenario import load_scenario, scenarios_dir
from simulators.world import World

pytestmark = pytest.mark.integration

SID = "bdg"
# Monday 2026-11-02 05:00 Asia/Jakarta (22:00 UTC the day before), as tests/integration/test_rollups.py: the night
# shift ends at 06:00, machines come on from 06:00, sessions of three tenants; 8 hours of it.
REPLAY_START = 1_793_466_000_000 + 29 * HOUR_MS
REPLAY_END = REPLAY_START + 8 * HOUR_MS
INTERVAL = "1m"
PICK = "cnc-01"
DOCS = dashboards.load()

# What each panel's answer must hold: (dashboard, panel title, refId) -> (tags each series is grouped by, value
# columns after "time"). A new panel without an entry fails test_every_target_has_an_expectation.
EXPECT: dict[tuple[str, str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("fleet", "Machines now", "A"): (("machine",), ("state", "power_kw", "job", "badge")),
    ("fleet", "PLC link and agents", "A"): (("machine",), ("status", "agent", "detail")),
    ("fleet", "PLC link and agents", "B"): (("agent",), ("status", "detail")),
    ("fleet", "Power", "A"): (("machine",), ("mean",)),
    ("fleet", "State", "A"): (("machine",), ("last",)),
    ("fleet", "Time in state (hours)", "A"): (("state",), ("hours",)),
    ("fleet", "Good parts per hour", "A"): (("machine",), ("sum",)),
    ("fleet", "Fleet OEE", "A"): ((), ("oee",)),
    ("fleet", "Energy", "A"): ((), ("kwh",)),
    ("machine", "State timeline", "A"): ((), ("state",)),
    ("machine", "PLC link", "A"): ((), ("status",)),
    ("machine", "Counters", "A"): ((), ("good_count", "reject_count")),
    ("machine", "Parts per hour", "A"): ((), ("good", "reject")),
    ("machine", "Power", "A"): ((), ("power_kw",)),
    ("machine", "Energy per hour", "A"): ((), ("kwh",)),
    ("machine", "Time in state", "A"): (("state",), ("minutes",)),
    ("machine", "Stops by reason (minutes)", "A"): (("loss",), ("minutes",)),
    ("machine", "OEE by shift", "A"): (("shift",), ("planned_h", "availability", "performance", "quality", "oee")),
    ("machine", "Sessions by tenant", "A"): (("tenant", "job"), ("hours", "good", "reject", "kwh")),
    ("oee", "OEE by machine", "A"): (("machine",), ("planned_h", "availability", "performance", "quality", "oee")),
    ("oee", "OEE by shift", "A"): (("shift",), ("planned_h", "availability", "performance", "quality", "oee")),
    ("oee", "OEE by day", "A"): (("machine",), ("oee",)),
    ("oee", "OEE per hour", "A"): (("machine",), ("oee",)),
    ("oee", "Planned time by loss (hours)", "A"): (("loss",), ("hours",)),
    ("oee", "Availability, performance, quality", "A"): ((), ("availability", "performance", "quality")),
    ("tenant-usage", "Usage by tenant and machine", "A"): (
        ("tenant", "machine"),
        ("session_h", "good", "reject", "kwh"),
    ),
    ("tenant-usage", "Usage by tenant and machine", "B"): (("tenant", "machine"), ("running_h",)),
    ("tenant-usage", "Session hours by tenant", "A"): (("tenant",), ("hours",)),
    ("tenant-usage", "Parts by tenant", "A"): (("tenant",), ("good", "reject")),
    ("tenant-usage", "Energy by tenant (kWh)", "A"): (("tenant",), ("kwh",)),
    ("tenant-usage", "Session hours per day", "A"): (("tenant",), ("sum",)),
    ("tenant-usage", "Session time by state", "A"): (("tenant", "state"), ("hours",)),
}


def targets() -> list[tuple[str, str, str, str]]:
    """(dashboard, panel title, refId, query) of every panel target of every shipped dashboard."""
    return [
        (name, str(panel["title"]), str(t["refId"]), str(t["query"]))
        for name, doc in DOCS.items()
        for panel in dashboards.panels(doc)
        for t in panel["targets"]
    ]


# ---- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site(default_site_path())


@pytest.fixture(scope="module")
def owners(site: SiteConfig) -> Owners:
    return Owners.always(site.badge_owner())


@pytest.fixture(scope="module")
def filled(influxdb: InfluxDB, site: SiteConfig, owners: Owners) -> Iterator[InfluxStore]:
    """A database of the module's own holding the replay and the machine_hour points the job's hook writes."""
    store = InfluxStore(influxdb.url, f"test_dash_{uuid.uuid4().hex[:12]}")
    store.ensure_database()
    scenario = load_scenario(scenarios_dir() / "month.yaml", site)
    world = World(site, scenario, 1, REPLAY_START, REPLAY_END)
    lines: list[str] = []
    for message in replay_messages(world, "replay", ReplayOptions(poll_ms=1000)):
        if message.batch is not None:
            lines.extend(batch_to_lines(message.batch))
        else:
            assert message.status is not None
            lines.append(to_line(status_to_point(Topic.parse(message.topic), message.status)))
    # The agent's own status, as the collector stores it when the agent connects (the replay publishes none).
    online = StatusMessage(status=LinkStatus.ONLINE, ts=REPLAY_START, agent="replay")
    lines.append(to_line(agent_status_to_point(Topic.agent_status(SID, "replay"), online, REPLAY_START)))
    assert store.write_lines(lines) == []
    hook = derived.Deriver(store, site, lambda: owners)
    for machine in site.machines:
        # What the roll-up job computes for a run of hours and hands to the hook before saving it.
        summaries, _ = job.build_hours(store, site, machine, REPLAY_START, REPLAY_END)
        assert len(summaries) == 8
        assert hook(machine, summaries) > 0
    yield store
    store.close()


# ---- Grafana's substitution --------------------------------------------------------------------------------------


def _escape(value: str) -> str:
    return re.sub(r"[\\^$*+?.()|{}\[\]/]", lambda m: "\\" + m.group(0), value)


def _format(var: dict[str, Any], values: list[str]) -> str:
    """A variable's value as Grafana's InfluxDB datasource puts it into a query (interpolateQueryExpr)."""
    if not var.get("multi") and not var.get("includeAll"):
        return _escape(values[0])
    escaped = [_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _substitute(text: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError(f"${name} has no value")
        return values[name]

    return re.sub(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))", one, text)


def resolve(store: InfluxStore, doc: dict[str, Any], start_ms: int, end_ms: int) -> dict[str, str]:
    """The values of a dashboard's variables: each query variable's query run (as Grafana does), All selected."""
    values = {
        "timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__interval": INTERVAL,
    }
    for var in dashboards.variables(doc):
        if var["type"] == "constant":
            values[var["name"]] = str(var["query"])
            continue
        answer = store.query(_substitute(var["query"], values))
        options = sorted({str(row[1]) for series in answer for row in series["values"]})
        assert options, f"variable {var['name']!r} has no values: {var['query']}"
        if var["name"] == "site":
            options = [SID]
        elif not var.get("multi"):
            # One machine: cnc-01 (sessions, stops and parts in the replay) rather than Grafana's first option.
            assert PICK in options
            options = [PICK]
        values[var["name"]] = _format(var, options)
    return values


# ---- every panel query -------------------------------------------------------------------------------------------


def test_every_target_has_an_expectation() -> None:
    assert dashboards.DERIVED_MEASUREMENT == derived.MEASUREMENT
    found = {(d, title, ref) for d, title, ref, _ in targets()}
    assert found == set(EXPECT), f"missing: {found - set(EXPECT)}, stale: {set(EXPECT) - found}"
    assert set(DOCS) == {"fleet", "machine", "oee", "tenant-usage"}


@pytest.mark.parametrize(("board", "title", "ref", "query"), targets(), ids=lambda v: str(v)[:40])
def test_every_panel_query_returns_data_of_its_shape(
    filled: InfluxStore, board: str, title: str, ref: str, query: str
) -> None:
    values = resolve(filled, DOCS[board], REPLAY_START, REPLAY_END)
    series = filled.query(_substitute(query, values))
    assert series, f"{board} / {title}: no data"
    groups, columns = EXPECT[(board, title, ref)]
    for s in series:
        assert tuple(sorted((s.get("tags") or {}).keys())) == tuple(sorted(groups)), s.get("tags")
        assert s["columns"] == ["time", *columns]
    for k, column in enumerate(columns, start=1):
        assert any(row[k] is not None for s in series for row in s["values"]), f"{column} is always null"


def test_machine_variable_offers_every_machine_and_tenant_variable_every_tenant(
    filled: InfluxStore, site: SiteConfig
) -> None:
    values = resolve(filled, DOCS["tenant-usage"], REPLAY_START, REPLAY_END)
    assert values["machine"] == "(" + "|".join(sorted(m.id for m in site.machines)) + ")"
    # The scenario's morning sessions: acme (1001, 1002), cipta (3001, 3002); batik comes on at 13:00, after the end.
    assert values["tenant"] == "(acme|cipta)"
    assert values["tz"] == "Asia/Jakarta"


# ---- the dashboards name only what the schema has ----------------------------------------------------------------


def names_unknown_to_the_schema(query: str) -> list[str]:
    """Every double-quoted name in query that is neither its measurement, nor a tag or field of it, nor an alias."""
    [measurement] = set(re.findall(r'FROM "([A-Za-z0-9_]+)"', query))
    if measurement == derived.MEASUREMENT:
        tags, fields = set(derived.TAGS), set(derived.FIELDS)
    else:
        spec = SCHEMA[measurement]
        tags = set(spec.tags)
        fields = set(spec.fields) if spec.fields is not None else set(CANONICAL_SIGNALS)
    aliases = set(re.findall(r'AS "([A-Za-z_]+)"', query))
    quoted = set(re.findall(r'"([A-Za-z0-9_]+)"', query))
    return sorted(quoted - {measurement} - tags - fields - aliases)


def test_dashboards_refer_only_to_measurements_tags_and_fields_of_the_schema() -> None:
    for board, title, _ref, query in targets():
        assert names_unknown_to_the_schema(query) == [], (board, title, query)
    for doc in DOCS.values():
        for var in dashboards.variables(doc):
            if var["type"] == "query":
                assert names_unknown_to_the_schema(var["query"]) == [], var["query"]


def test_a_renamed_field_or_measurement_is_caught() -> None:
    query = DOCS["fleet"]["panels"][2]["targets"][0]["query"]
    assert '"power_kw"' in query
    assert names_unknown_to_the_schema(query.replace('"power_kw"', '"power"')) == ["power"]
    with pytest.raises(KeyError):
        names_unknown_to_the_schema(query.replace('"telemetry"', '"telemetry_v2"'))
    broken = json.loads(json.dumps(DOCS["fleet"]))
    broken["panels"][2]["targets"][0]["query"] = query.replace('"telemetry"', '"telemetry_v2"')
    assert any("telemetry_v2" in p for p in dashboards.check("fleet", broken))


# ---- the derived figures are the API's ---------------------------------------------------------------------------


def _window(filled: InfluxStore, site: SiteConfig, owners: Owners) -> analytics.Window:
    return analytics.window(filled, site, REPLAY_START, REPLAY_END, owners=owners)


def test_time_in_state_covers_every_machine_hour_exactly(filled: InfluxStore, site: SiteConfig) -> None:
    answer = filled.query(
        f"SELECT sum(duration_ms) FROM machine_hour WHERE site = 'bdg' AND time >= {REPLAY_START}ms"
        f" AND time < {REPLAY_END}ms GROUP BY machine"
    )
    # Pieces cover each machine's window: 8 h = 28 800 000 ms each, an integer sum, so exactly.
    assert {s["tags"]["machine"]: s["values"][0][1] for s in answer} == dict.fromkeys(
        (m.id for m in site.machines), 8 * HOUR_MS
    )


def _oee_rows(filled: InfluxStore, values: dict[str, str], group: str) -> dict[str, list[float]]:
    [target] = [t for b, title, _, t in targets() if b == "oee" and title == f"OEE by {group}"]
    return {s["tags"][group]: [float(v) for v in s["values"][0][1:]] for s in filled.query(_substitute(target, values))}


@pytest.mark.parametrize("group", ["machine", "shift"])
def test_oee_panels_equal_the_apis_oee(filled: InfluxStore, site: SiteConfig, owners: Owners, group: str) -> None:
    values = resolve(filled, DOCS["oee"], REPLAY_START, REPLAY_END - 1)
    shown = _oee_rows(filled, values, group)
    rows = analytics.oee_rows(site, _window(filled, site, owners), group_by=(group,), owners=owners)
    # The panels leave out groups without planned time ("pbt_ms" > 0), as the API has no ratio for them.
    expected = {
        getattr(r, group): [r.pbt_ms / HOUR_MS, r.availability, r.effectiveness, r.quality, r.oee]
        for r in rows
        if r.pbt_ms
    }
    assert set(expected) == set(shown)
    assert len(expected) >= 2  # by machine: 5 machines; by shift: night (05:00-06:00) and morning
    compared = 0
    for key, figures in expected.items():
        for got, want in zip(shown[key], figures, strict=True):
            if want is None:
                assert got == 0.0, key  # InfluxQL's x / 0 is 0 where the API says None (no production time, no parts)
            else:
                # The same integer sums on both sides; only the float division's rounding may differ.
                assert got == pytest.approx(want, rel=1e-12), key
                compared += want > 0
    assert compared >= 5


def test_tenant_usage_panel_equals_the_apis_usage(filled: InfluxStore, site: SiteConfig, owners: Owners) -> None:
    values = resolve(filled, DOCS["tenant-usage"], REPLAY_START, REPLAY_END - 1)
    [a, b] = [t for board, title, _, t in targets() if title == "Usage by tenant and machine"]
    shown = {
        (s["tags"]["tenant"], s["tags"]["machine"]): s["values"][0][1:] for s in filled.query(_substitute(a, values))
    }
    running = {
        (s["tags"]["tenant"], s["tags"]["machine"]): s["values"][0][1] for s in filled.query(_substitute(b, values))
    }
    rows = analytics.usage_rows(site, _window(filled, site, owners), owners)
    expected = {(r.tenant, r.machine): r for r in rows}
    assert len(expected) >= 3 and all(t is not None for t, _ in expected)
    assert set(shown) == set(expected)
    for key, row in expected.items():
        hours, good, reject, kwh = shown[key]
        assert (good, reject) == (row.good, row.reject), key
        assert hours == pytest.approx(row.session_hours, rel=1e-12)
        assert kwh == pytest.approx(row.kwh, rel=1e-9)
        assert running.get(key, 0.0) == pytest.approx(row.running_hours, rel=1e-12)


def test_an_hour_with_a_break_inside_is_cut_at_it(filled: InfluxStore, site: SiteConfig, owners: Owners) -> None:
    """With a break 09:00-09:20 local, the hour 02:00 UTC is classified from raw and split at the break."""
    pause = [BreakSpec.model_validate({"start": "09:00", "end": "09:20"})]
    shifts = [s.model_copy(update={"breaks": pause}) if s.name == "morning" else s for s in site.calendar.shifts]
    with_break = site.model_copy(update={"calendar": site.calendar.model_copy(update={"shifts": shifts})})
    assert with_break.calendar_model().boundaries(REPLAY_START + 4 * HOUR_MS, REPLAY_START + 5 * HOUR_MS, None)
    hour = REPLAY_START + 4 * HOUR_MS  # 09:00 local
    machine = with_break.machine("press-01")
    assert machine is not None
    summaries, _ = job.build_hours(filled, with_break, machine, hour, hour + HOUR_MS)
    points = derived.derive_window(
        filled, with_break, machine, hour, hour + HOUR_MS, owners, {(s.machine, s.hour_ms): s for s in summaries}
    )
    total = sum(int(p.fields["duration_ms"]) for p in points)
    planned = sum(int(p.fields["pbt_ms"]) for p in points)
    assert total == HOUR_MS
    assert planned == 40 * 60_000  # 60 min less the 20 min break
    rows = analytics.oee_rows(
        with_break,
        analytics.window(filled, with_break, hour, hour + HOUR_MS, owners=owners),
        group_by=("machine",),
        owners=owners,
    )
    [row] = [r for r in rows if r.machine == "press-01"]
    assert planned == row.pbt_ms
    assert sum(int(p.fields["ideal_ms"]) for p in points) == row.ideal_ms
    # Put the site's own figures back for the other tests (module-scoped data).
    derived.derive_window(filled, site, machine, hour, hour + HOUR_MS, owners, {})


# ---- derived_points and replace ----------------------------------------------------------------------------------

HOUR = 1_793_595_600_000  # 2026-11-02 05:00 UTC = 12:00 Asia/Jakarta
CAL = Calendar("Asia/Jakarta", (ShiftPattern("morning", time(6), time(14), breaks=((time(12), time(12, 30)),)),))


def piece(state: str, at: int, ms: int, **kw: Any) -> Piece:
    args: dict[str, Any] = {"reason": None, "badge": 0, "job": None, "stop_reason": None, "stop_ms": 0}
    args.update(kw)
    return Piece("cnc-01", at, state, duration_ms=ms, **args)


def test_derived_points_by_hand(site: SiteConfig) -> None:
    half = 1_800_000
    summary = HourSummary(
        "cnc-01",
        HOUR,
        (
            # 12:00-12:30 is the break (not planned), 12:30-13:00 planned; both RUNNING for acme's badge 1001.
            piece("RUNNING", HOUR, 1_000_000, badge=1001, good=5),
            piece("IDLE", HOUR, half - 1_000_000),
            piece("RUNNING", HOUR + half, 1_500_000, badge=1001, good=10, reject=2, kwh=0.25),
            piece("STOPPED", HOUR + half, 60_000, badge=9999, stop_reason=3, stop_ms=60_000),  # a microstop
            piece("STOPPED", HOUR + half, 200_000, badge=9999, stop_reason=3, stop_ms=200_000),  # a breakdown
            piece("UNKNOWN", HOUR + half, 40_000, reason="silence", good=1),
        ),
    )
    points = {
        (p.tags.get("state"), p.tags.get("loss"), p.tags.get("tenant", "")): p
        for p in derived.derived_points(site, summary, {1001: "acme"}, CAL)
    }
    assert set(points) == {
        ("RUNNING", "production", "acme"),
        ("IDLE", "no_operator", ""),
        ("STOPPED", "microstops", "_unowned"),
        ("STOPPED", "breakdown:3", "_unowned"),
        ("UNKNOWN", "unknown", ""),
    }
    run = points[("RUNNING", "production", "acme")]
    assert run.ts_ms == HOUR
    assert run.tags == {"site": "bdg", "machine": "cnc-01", "state": "RUNNING", "loss": "production", "tenant": "acme",
                        "shift": "morning"}  # fmt: skip
    assert run.fields == {
        "duration_ms": 2_500_000,  # 1 000 000 + 1 500 000
        "good": 15,  # 5 in the break + 10
        "reject": 2,
        "kwh": 0.25,
        "pbt_ms": 1_500_000,  # only the second half hour is planned
        "apt_ms": 1_500_000,
        "ideal_ms": 540_000,  # (10 + 2) parts x 45 s (cnc-01 without a job)
        "oee_good": 10,
        "oee_produced": 12,
    }
    assert points[("STOPPED", "microstops", "_unowned")].fields["apt_ms"] == 60_000  # a microstop is APT
    assert points[("STOPPED", "breakdown:3", "_unowned")].fields["apt_ms"] == 0
    unknown = points[("UNKNOWN", "unknown", "")]
    # Unknown time is planned (a loss), its part is not counted against PBT.
    assert (unknown.fields["pbt_ms"], unknown.fields["good"], unknown.fields["oee_good"]) == (40_000, 1, 0)
    assert sum(int(p.fields["duration_ms"]) for p in points.values()) == 1_000_000 + 800_000 + 1_500_000 + 300_000
    assert isinstance(points[("IDLE", "no_operator", "")].fields["kwh"], float)


def test_derived_points_refuse_a_piece_of_another_hour_or_a_bad_hour(site: SiteConfig) -> None:
    with pytest.raises(ValueError, match="not of this hour"):
        derived.derived_points(site, HourSummary("cnc-01", HOUR, (piece("IDLE", HOUR + HOUR_MS, 1),)), {}, CAL)
    with pytest.raises(ValueError, match="not of this hour"):
        derived.derived_points(site, HourSummary("cnc-02", HOUR, (piece("IDLE", HOUR, 1),)), {}, CAL)
    with pytest.raises(ValueError, match="not the start of a UTC hour"):
        derived.derived_points(site, HourSummary("cnc-01", HOUR + 1, ()), {}, CAL)


def _point(state: str, ms: int, hour: int = HOUR, machine: str = "cnc-01") -> Point:
    return Point(derived.MEASUREMENT, {"site": SID, "machine": machine, "state": state}, {"duration_ms": ms}, hour)


def _stored(store: InfluxStore, machine: str = "cnc-01") -> dict[str, int]:
    answer = store.query(
        f"SELECT sum(duration_ms) FROM machine_hour WHERE machine = {quote_literal(machine)} GROUP BY state"
    )
    return {s["tags"]["state"]: s["values"][0][1] for s in answer}


def test_replace_zeroes_series_a_rebuilt_hour_no_longer_has(influx_store: InfluxStore) -> None:
    first = [_point("RUNNING", 3_000_000), _point("IDLE", 600_000), _point("IDLE", 7, hour=HOUR + HOUR_MS)]
    assert derived.replace(influx_store, SID, "cnc-01", HOUR, HOUR + 2 * HOUR_MS, first) == first
    other = derived.replace(influx_store, SID, "cnc-02", HOUR, HOUR + HOUR_MS, [_point("OFF", 5, machine="cnc-02")])
    assert len(other) == 1
    # The hour is rebuilt: all RUNNING now. IDLE of that hour must not linger; the next hour is not touched.
    written = derived.replace(influx_store, SID, "cnc-01", HOUR, HOUR + HOUR_MS, [_point("RUNNING", HOUR_MS)])
    assert len(written) == 2 and written[1].tags["state"] == "IDLE" and written[1].fields["duration_ms"] == 0
    assert _stored(influx_store) == {"RUNNING": HOUR_MS, "IDLE": 7}
    assert _stored(influx_store, "cnc-02") == {"OFF": 5}
    # Replacing with the same points again writes them and nothing else (idempotent).
    again = derived.replace(influx_store, SID, "cnc-01", HOUR, HOUR + HOUR_MS, [_point("RUNNING", HOUR_MS)])
    assert len(again) == 2  # the IDLE zero point is still a stored series of the hour: it is written as zero again
    assert _stored(influx_store) == {"RUNNING": HOUR_MS, "IDLE": 7}


@pytest.mark.parametrize(
    ("site_id", "machine", "start", "end", "points", "message"),
    [
        ("bdg", "cnc-01", HOUR, HOUR + HOUR_MS, [_point("RUNNING", 1, hour=HOUR + HOUR_MS)], "outside the window"),
        ("bdg", "cnc-01", HOUR, HOUR + HOUR_MS, [_point("RUNNING", 1, machine="cnc-02")], "not a machine_hour point"),
        ("BDG;DROP", "cnc-01", HOUR, HOUR + HOUR_MS, [], "not a valid id"),
        ("bdg", "cnc-01' OR '1'='1", HOUR, HOUR + HOUR_MS, [], "not a valid id"),
        ("bdg", "cnc-01", HOUR + HOUR_MS, HOUR, [], "before its start"),
    ],
)
def test_replace_refuses_bad_arguments(
    influx_store: InfluxStore, site_id: str, machine: str, start: int, end: int, points: list[Point], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        derived.replace(influx_store, site_id, machine, start, end, points)


# ---- `shopfloor dashboards check|push` -----------------------------------------------------------------------------

SITE = dashboards.SiteInfo("bdg", "Bandung Shared Factory", "Asia/Makassar")


def test_shipped_dashboards_pass_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert dashboards.check_all(DOCS) == []
    assert dashboards.main(["dashboards", "check"]) == 0
    assert "4 dashboard(s), 0 problem(s)" in capsys.readouterr().out


def test_check_names_each_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(json.dumps(DOCS["machine"]))
    doc["panels"][0]["targets"][0]["query"] = 'SELECT "state" FROM "telemetry" WHERE "machine" = \'$nope\''
    doc["panels"][1]["targets"] = []
    doc["panels"][2]["datasource"] = {"type": "influxdb", "uid": "other"}
    doc["templating"]["list"].insert(0, doc["templating"]["list"].pop(1))  # machine before the site it uses
    (tmp_path / "machine.json").write_text(json.dumps(doc))
    (tmp_path / "copy.json").write_text(json.dumps(DOCS["machine"]))  # the same uid twice
    assert dashboards.main(["dashboards", "check", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "'State timeline' query 'A': uses $nope" in out
    assert "has no $timeFilter" in out
    assert "'PLC link': has no query" in out
    assert "'Counters': datasource must be" in out
    assert "variable 'machine' uses $site, not defined before it" in out
    assert "uid 'shopfloor-machine' is also" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not readable JSON"), ("[1, 2]", "must be a JSON object"), (None, "no *.json dashboards")],
)
def test_check_refuses_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "bad.json").write_text(content)
    assert dashboards.main(["dashboards", "check", "--dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_push_payload_is_templated_for_the_site() -> None:
    payload = dashboards.dashboard_payload(DOCS["oee"], SITE, datasource_uid="influx-prod")
    board = payload["dashboard"]
    assert payload["folderUid"] == "shopfloor-bdg" and payload["overwrite"] is True
    assert board["uid"] == "shopfloor-oee-bdg" and "id" not in board
    by_name = {v["name"]: v for v in board["templating"]["list"]}
    assert by_name["site"]["current"]["value"] == "bdg"
    assert by_name["tz"]["query"] == "Asia/Makassar"
    text = json.dumps(board)
    assert "shopfloor-influxdb" not in text and text.count('"influx-prod"') >= len(dashboards.panels(board))
    assert DOCS["oee"]["uid"] == "shopfloor-oee"  # the loaded document itself is left as it was
    assert dashboards.folder_payload(SITE) == {"uid": "shopfloor-bdg", "title": "Bandung Shared Factory"}


def test_push_payload_uids_fit_grafanas_limit() -> None:
    long_site = dashboards.SiteInfo("a" * 63, "", "UTC")
    uid = dashboards.dashboard_payload(DOCS["tenant-usage"], long_site)["dashboard"]["uid"]
    other = dashboards.dashboard_payload(DOCS["tenant-usage"], dashboards.SiteInfo("a" * 62 + "b", "", "UTC"))
    assert len(uid) <= 40 and uid != other["dashboard"]["uid"]  # shortened with a hash, still distinct
    assert len(dashboards.folder_uid("a" * 63)) <= 40
    assert dashboards.folder_payload(long_site)["title"] == "a" * 63  # no name: the id
    with pytest.raises(dashboards.UsageError, match="datasource-uid"):
        dashboards.dashboard_payload(DOCS["oee"], SITE, datasource_uid="bad uid/../")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "base URL"),
        ("ftp://grafana:3000", "http:// or https://"),
        ("grafana:3000", "http:// or https://"),
        ("http://", "with a host"),
        ("http://admin:admin@grafana:3000", "must not hold a user or password"),
        ("http://grafana:3000/?orgId=1", "query or fragment"),
        ("http://grafana:99999", "not a URL"),
        ("http://graf ana:3000", "base URL"),
        ("http://" + "g" * 3000, "base URL"),
    ],
)
def test_push_refuses_a_bad_url(url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(dashboards.UsageError, match=re.escape(message)):
        dashboards.check_url(url)
    assert dashboards.main(["dashboards", "push", "--grafana-url", url, "--token", "glsa_x"]) == 2
    assert message in capsys.readouterr().err


def test_push_refuses_a_missing_or_malformed_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(dashboards.TOKEN_ENV, raising=False)
    assert dashboards.main(["dashboards", "push", "--grafana-url", "http://grafana:3000"]) == 2
    assert "give a Grafana service-account token" in capsys.readouterr().err
    assert dashboards.main(["dashboards", "push", "--grafana-url", "http://g:3000", "--token", "a b"]) == 2
    assert "without spaces" in capsys.readouterr().err
    missing = tmp_path / "nope.txt"
    assert dashboards.main(["dashboards", "push", "--grafana-url", "http://g:3000", "--token-file", str(missing)]) == 2
    assert "--token-file" in capsys.readouterr().err
    assert dashboards.check_token(" glsa_abc \n") == "glsa_abc"


def test_push_to_a_grafana_that_is_not_there_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = dashboards.main(["dashboards", "push", "--grafana-url", url, "--token", "glsa_x", "--timeout", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"Grafana at {url} unreachable" in err and "glsa_x" not in err
