"""Scenario files: durations, validation against the site, errors naming file, line and field."""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path

import pytest

from shopfloor.config import SiteConfig
from shopfloor.yamlfile import ConfigError
from simulators.plan import build_plan, daily_windows
from simulators.scenario import load_scenario, parse_duration_ms, scenarios_dir
from simulators.world import World

T0 = 1_800_000_000_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        (90, 90_000),
        (1.5, 1500),
        ("90", 90_000),
        ("30s", 30_000),
        ("2m", 120_000),
        ("1h30m", 5_400_000),
        ("500ms", 500),
        ("2d", 172_800_000),
        ("1h 5s", 3_605_000),
        ("0s", 0),
    ],
)
def test_durations(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "s", "5 parsecs", "-5s", "1e3", True, None, [1], "401d", "5s5"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


@pytest.mark.parametrize("path", sorted(scenarios_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_load_and_run(example_site: SiteConfig, path: Path) -> None:
    scenario = load_scenario(path, example_site)
    world = World(example_site, scenario, 1, T0, T0 + min(scenario.duration, 86_400_000))
    truth = world.ground_truth()
    assert truth.sessions, f"{path.name} produces no sessions"
    assert all(s.good + s.reject >= 0 for s in truth.sessions)


def test_e2e_scenario_shape(example_site: SiteConfig) -> None:
    scenario = load_scenario(scenarios_dir() / "e2e-two-tenants.yaml", example_site)
    truth = World(example_site, scenario, 1, T0).ground_truth()
    got = [(s.machine, s.tenant, s.badge, (s.start_ms - T0) // 1000, (s.end_ms - T0) // 1000) for s in truth.sessions]
    assert got == [
        ("cnc-01", "acme", 1001, 2, 28),
        ("laser-01", "cipta", 3001, 5, 45),
        ("cnc-01", "batik", 2001, 32, 56),
    ]
    assert all(s.good >= 5 for s in truth.sessions)
    assert any(s.reject > 0 for s in truth.sessions if s.machine == "cnc-01")
    stops = [iv for iv in truth.intervals["laser-01"] if iv.state.value == "STOPPED"]
    assert [(iv.stop_reason, (iv.end_ms - iv.start_ms) // 1000) for iv in stops] == [(12, 4)]
    assert truth.end_ms - truth.start_ms == 60_000


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


GOOD_SESSION = "  - {machine: cnc-01, badge: 1001, at: 2s, duration: 20s, jobs: [{id: J1}]}\n"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("duration: 60s\nsessions:\n" + GOOD_SESSION.replace("1001", "9999"), ":3:", "badge 9999 belongs to no"),
        ("duration: 60s\nsessions:\n" + GOOD_SESSION.replace("cnc-01", "cnc-99"), ":3:", "cnc-99"),
        ("duration: 60s\nsessions:\n" + GOOD_SESSION.replace("J1", "much-too-long-job"), ":3:", "jobs[0].id"),
        ("duration: 60s\nsessions:\n" + GOOD_SESSION.replace("at: 2s", "at: soon"), ":3:", "sessions[0].at"),
        (
            "duration: 60s\nsessions:\n" + GOOD_SESSION.replace("duration: 20s", "until: 9s, duration: 5s"),
            ":3:",
            "exactly one",
        ),
        ("duration: 60s\nsessions:\n" + GOOD_SESSION.replace("{id: J1}", "{id: J1, setup: 1s}"), ":3:", "at least 2s"),
        (
            "duration: 60s\nsessions:\n" + GOOD_SESSION.replace("{id: J1}", "{id: J1, reject_rate: 2}"),
            ":3:",
            "reject_rate",
        ),
        (
            "duration: 60s\nsessions:\n" + GOOD_SESSION.replace("at: 2s", "at: 2026-11-01T08:00:00"),
            ":3:",
            "no time zone",
        ),
        ("duration: 60s\nbogus: 1\n", ":2:", "bogus"),
        ("duration: forever\n", ":1:", "duration"),
        (
            "duration: 9\nmachines: [cnc-01]\nevents:\n  - {at: 1, machine: laser-01, event: power_off, duration: 1}\n",
            ":4: events[0].machine",
            "not in 'machines'",
        ),
        (
            "duration: 9\nmachines: [cnc-01]\nmachine_options:\n  laser-01: {mtbf: 1h}\n",
            ":4: machine_options.laser-01",
            "not in 'machines'",
        ),
        (
            "duration: 60s\nsessions:\n" + GOOD_SESSION.replace("{id: J1}", "{id: J1, power_factor: 0}"),
            ":3: sessions[0].jobs[0].power_factor",
            "greater than 0",
        ),
        (
            "duration: 60s\nevents:\n  - {at: 1s, machine: cnc-01, event: breakdown, duration: 5s}\n",
            ":3:",
            "needs 'reason'",
        ),
        (
            "duration: 60s\nevents:\n  - {at: 1s, machine: cnc-01, event: counter_reset, duration: 5s}\n",
            ":3:",
            "'duration' does not apply",
        ),
        ("duration: 60s\nevents:\n  - {at: 1s, machine: cnc-01, event: explode}\n", ":3:", "event"),
        (
            "duration: 60s\nevents:\n  - {at: 1s, machine: cnc-01, event: slow_replies, delay_s: 99, duration: 2s}\n",
            ":3:",
            "delay_s",
        ),
        (
            'duration: 60s\ndaily:\n  - {machine: cnc-01, start: "25:00", end: "08:00", badge: 1001, jobs: []}\n',
            ":3:",
            "time of day",
        ),
        (
            'duration: 60s\ndaily:\n  - {machine: cnc-01, kind: off, start: "08:00", end: "09:00", badge: 1001}\n',
            ":3:",
            "takes no",
        ),
        (
            'duration: 60s\ndaily:\n  - {machine: cnc-01, days: [someday], start: "08:00", end: "09:00"}\n',
            ":3:",
            "days",
        ),
        ("- just a list\n", ":1:", "mapping"),
        ("duration: [60s\n", ":", "invalid YAML"),
        ("", "", "empty"),
    ],
)
def test_malformed_scenarios_name_file_line_and_field(
    example_site: SiteConfig, tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_scenario(path, example_site)
    assert f"{path}{where}" in str(err.value)
    assert message in str(err.value)


def test_hostile_files(example_site: SiteConfig, tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (5 * 1024 * 1024))
    with pytest.raises(ConfigError, match="larger than"):
        load_scenario(path, example_site)
    path.write_bytes(b"duration: 60s\nname: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_scenario(path, example_site)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_scenario(path, example_site)
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml", example_site)


def test_overlapping_sessions_are_refused(example_site: SiteConfig, tmp_path: Path) -> None:
    # Sessions given as offsets are checked when the file is loaded, naming the line of the later one ...
    text = (
        "duration: 60s\nsessions:\n" + GOOD_SESSION + GOOD_SESSION.replace("at: 2s", "at: 10s").replace("1001", "2001")
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"{path}:4: sessions\[1\]\.at: on cnc-01, .*must not overlap"):
        load_scenario(path, example_site)
    # ... a daily window against a one-off session only once the run's start is known.
    text = (
        "duration: 2d\nsessions:\n" + GOOD_SESSION.replace("at: 2s", "at: 2026-11-02T08:30:00+07:00") + "daily:\n"
        '  - {machine: cnc-01, start: "08:00", end: "09:00", badge: 2001, jobs: [{id: J2}]}\n'
    )
    scenario = load_scenario(write(tmp_path, text), example_site)
    start = int(datetime.fromisoformat("2026-11-02T00:00:00+07:00").timestamp() * 1000)
    with pytest.raises(ConfigError, match=r"on cnc-01, sessions\[0\] \(badge 1001\).*must not overlap"):
        build_plan(example_site, scenario, start)


def test_absolute_times(example_site: SiteConfig, tmp_path: Path) -> None:
    text = GOOD_SESSION.replace("at: 2s", "at: 2026-11-02T08:00:00+07:00")
    scenario = load_scenario(write(tmp_path, "duration: 2d\nsessions:\n" + text), example_site)
    start = int(datetime.fromisoformat("2026-11-01T00:00:00+07:00").timestamp() * 1000)
    truth = World(example_site, scenario, 1, start).ground_truth()
    assert [s.start_ms - start for s in truth.sessions] == [32 * 3_600_000]


# Daily windows: 2026-11-02 is a Monday. Europe/Berlin leaves summer time on 2026-10-25.
@pytest.mark.parametrize(
    ("tz", "days", "start", "end", "frm", "to", "expected"),
    [
        (
            "Asia/Jakarta",
            ["mon"],
            "08:00",
            "12:00",
            "2026-11-02T00:00:00+07:00",
            "2026-11-09T00:00:00+07:00",
            [("2026-11-02T08:00:00+07:00", "2026-11-02T12:00:00+07:00")],
        ),
        (
            "Asia/Jakarta",
            ["mon", "tue"],
            "22:00",
            "06:00",
            "2026-11-02T00:00:00+07:00",
            "2026-11-04T00:00:00+07:00",
            [
                ("2026-11-02T22:00:00+07:00", "2026-11-03T06:00:00+07:00"),
                ("2026-11-03T22:00:00+07:00", "2026-11-04T06:00:00+07:00"),
            ],
        ),
        (
            "Europe/Berlin",
            ["sat", "sun"],
            "01:00",
            "05:00",
            "2026-10-24T00:00:00+02:00",
            "2026-10-26T00:00:00+01:00",
            [
                ("2026-10-24T01:00:00+02:00", "2026-10-24T05:00:00+02:00"),
                ("2026-10-25T01:00:00+02:00", "2026-10-25T05:00:00+01:00"),
            ],
        ),  # 5 h long: the clock went back
    ],
)
def test_daily_windows(
    tz: str, days: list[str], start: str, end: str, frm: str, to: str, expected: list[tuple[str, str]]
) -> None:
    def ms(text: str) -> int:
        return int(datetime.fromisoformat(text).timestamp() * 1000)

    got = daily_windows(days, time.fromisoformat(start), time.fromisoformat(end), tz, ms(frm), ms(to))
    assert got == [(ms(a), ms(b)) for a, b in expected]
