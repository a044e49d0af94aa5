"""Repeating scenarios: every repetition happens again, exactly, with the random parts continuing the seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopfloor.config import SiteConfig
from shopfloor.yamlfile import ConfigError
from simulators.plan import REPEAT_HORIZON_MS
from simulators.scenario import Scenario, load_scenario, scenarios_dir
from simulators.world import World

T0 = 1_800_000_000_000
MIN = 60_000


def scenario(site: SiteConfig, **extra: Any) -> Scenario:
    data: dict[str, Any] = {
        "duration": "60s",
        "repeat": True,
        "machines": ["cnc-01", "laser-01"],
        "random_stops": False,
        "sessions": [
            {
                "machine": "cnc-01",
                "badge": 1001,
                "at": "10s",
                "until": "40s",
                "jobs": [{"id": "J1", "cycle_s": 2, "jitter": 0, "reject_rate": 0, "setup": "4s"}],
            },
            {
                "machine": "laser-01",
                "badge": 3001,
                "at": "0s",
                "until": "60s",
                "jobs": [{"id": "L1", "cycle_s": 3, "jitter": 0.2, "reject_rate": 0.3, "setup": "4s"}],
            },
        ],
        "events": [
            {"at": "20s", "machine": "cnc-01", "event": "breakdown", "reason": 4, "duration": "3s"},
            {"at": "45s", "machine": "cnc-01", "event": "unreachable", "duration": "5s"},
            {"at": "50s", "machine": "laser-01", "event": "badge_swap", "badge": 3002},
        ],
        **extra,
    }
    return Scenario.model_validate(data, context={"site": site})


def test_every_repetition_happens_again(example_site: SiteConfig) -> None:
    truth = World(example_site, scenario(example_site), 1, T0, T0 + 3 * MIN).ground_truth()
    cnc = [(s.start_ms - T0, s.end_ms - T0, s.tenant, s.good) for s in truth.sessions if s.machine == "cnc-01"]
    # Each repetition: SETUP 10..14 s, parts every 2 s from 16 s; breakdown 20..23 s abandons the cycle started at
    # 20 s (parts at 16, 18, 20, then 25, 27, .. 37 s: 10 parts); the machine is IDLE from 38 s, logged out at 40 s.
    assert cnc == [(r * MIN + 10_000, r * MIN + 40_000, "acme", 10) for r in range(3)]
    stops = [(iv.start_ms - T0, iv.end_ms - T0, iv.stop_reason) for iv in truth.intervals["cnc-01"] if iv.stop_reason]
    assert stops == [(r * MIN + 20_000, r * MIN + 23_000, 4) for r in range(3)]
    faults = [(f.machine, f.start_ms - T0, f.end_ms - T0, f.kind) for f in truth.faults]
    assert faults == [("cnc-01", r * MIN + 45_000, r * MIN + 50_000, "unreachable") for r in range(3)]
    laser = [(s.start_ms - T0, s.end_ms - T0, s.tenant) for s in truth.sessions if s.machine == "laser-01"]
    # The login at 0 s of each repetition follows the logout at 60 s of the one before: the badge changes hands.
    assert laser == [
        (0, 50_000, "cipta"),
        (50_000, 60_000, "cipta"),  # badge 3002 after the swap, same tenant
        (60_000, 110_000, "cipta"),
        (110_000, 120_000, "cipta"),
        (120_000, 170_000, "cipta"),
        (170_000, 180_000, "cipta"),
    ]
    badges = [s.badge for s in truth.sessions if s.machine == "laser-01"]
    assert badges == [3001, 3002] * 3


def test_repetitions_are_deterministic_and_continue_the_seed(example_site: SiteConfig) -> None:
    def run(seed: int) -> str:
        return World(example_site, scenario(example_site), seed, T0, T0 + 5 * MIN).ground_truth().to_json()

    assert run(3) == run(3)
    assert run(3) != run(4)
    truth = World(example_site, scenario(example_site), 3, T0, T0 + 5 * MIN).ground_truth()
    laser = truth.machines["laser-01"]
    per_rep = [laser.parts(T0 + r * MIN, T0 + (r + 1) * MIN) for r in range(5)]
    # Random parts (jitter, rejects) are drawn on, not replayed: repetitions are alike but not copies.
    assert len(set(per_rep)) > 1
    # Querying often or once gives the same run.
    w = World(example_site, scenario(example_site), 3, T0, T0 + 5 * MIN)
    for t in range(0, 5 * MIN, 777):
        w.values("laser-01", T0 + t)
        w.values("cnc-01", T0 + t)
    assert w.ground_truth().to_json() == truth.to_json()


def test_a_live_repeating_run_has_no_practical_end(example_site: SiteConfig) -> None:
    w = World(example_site, scenario(example_site), 1, T0)
    assert w.end_ms - w.start_ms == REPEAT_HORIZON_MS
    hour = 60 * MIN
    values = w.values("cnc-01", T0 + hour + 12_000)  # repetition 60, in its SETUP
    assert (values["state"], values["badge"], values["job"]) == ("SETUP", 1001, "J1")
    assert w.plan.faults_in(T0 + hour + 46_000, T0 + hour + 46_001)[0].start_ms == T0 + hour + 45_000
    truth = w.ground_truth(T0 + hour)
    assert len([s for s in truth.sessions if s.machine == "cnc-01"]) == 60
    assert len(truth.faults) == 60


def test_packaged_demo_repeats(example_site: SiteConfig) -> None:
    demo = load_scenario(scenarios_dir() / "demo.yaml", example_site)
    assert demo.repeat and demo.duration == 12 * 60 * MIN
    day = World(example_site, demo, 1, T0, T0 + 24 * 60 * MIN).ground_truth()
    first, second = (
        [
            (s.machine, s.badge, s.start_ms - T0 - r * demo.duration)
            for s in day.sessions
            if r * demo.duration <= s.start_ms - T0 < (r + 1) * demo.duration and s.badge
        ]
        for r in (0, 1)
    )
    assert first and sorted(first) == sorted(second)  # the same sessions, 12 h later (random stops aside)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "repeat.yaml"
    path.write_text(text)
    return path


SESSION = "  - {machine: cnc-01, badge: 1001, at: 2s, duration: 20s, jobs: [{id: J1}]}\n"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "duration: 60s\nrepeat: true\nsessions:\n" + SESSION.replace("duration: 20s", "duration: 70s"),
            ":4: sessions[0]",
            "ends at 1m12s, after 1m",
        ),
        (
            "duration: 60s\nrepeat: true\nsessions:\n" + SESSION.replace("at: 2s", "at: 2026-11-01T08:00:00+07:00"),
            ":4: sessions[0].at",
            "not a datetime",
        ),
        (
            "duration: 60s\nrepeat: true\nevents:\n"
            "  - {at: 1s, machine: laser-01, event: power_off, duration: 5s}\n"
            "  - {at: 50s, machine: cnc-01, event: unreachable, duration: 20s}\n",
            ":5: events[1]",
            "ends at 1m10s",
        ),
        (
            "duration: 60s\nrepeat: true\nevents:\n  - {at: 60s, machine: cnc-01, event: counter_reset}\n",
            ":4: events[0]",
            "within 'duration'",
        ),
        (
            "duration: 1d\nrepeat: true\nsessions:\n" + SESSION + "daily:\n"
            '  - {machine: cnc-01, start: "08:00", end: "09:00", badge: 1001, jobs: [{id: J2}]}\n',
            ":6: daily[0].machine",
            "not both",
        ),
        ("duration: 60s\nrepeat: sometimes\n", ":2: repeat", "boolean"),
    ],
)
def test_unrepeatable_scenarios_are_refused_with_file_and_line(
    example_site: SiteConfig, tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_scenario(path, example_site)
    assert f"{path}{where}" in str(err.value)
    assert message in str(err.value)
