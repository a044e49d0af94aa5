"""The pure machine model: hand-computed timelines, counters, energy, injected events and determinism."""

from __future__ import annotations

from typing import Any

import pytest

from shopfloor.config import DataType, RegisterSpec, SiteConfig
from shopfloor.contracts import MachineState
from simulators.scenario import Scenario
from simulators.truth import GroundTruth
from simulators.world import World

T0 = 1_800_000_000_000
S = MachineState


def world(site: SiteConfig, extra: dict[str, Any] | None = None, seed: int = 1, **job: Any) -> World:
    job_spec = {"id": "J1", "cycle_s": 2, "jitter": 0, "reject_rate": 0, "setup": "4s", **job}
    data: dict[str, Any] = {
        "duration": "60s",
        "machines": ["cnc-01", "laser-01"],
        "random_stops": False,
        "sessions": [{"machine": "cnc-01", "badge": 1001, "at": "10s", "until": "40s", "jobs": [job_spec]}],
        **(extra or {}),
    }
    return World(site, Scenario.model_validate(data, context={"site": site}), seed, T0)


def rows(truth: GroundTruth, machine: str = "cnc-01") -> list[tuple[int, int, str, int, str, int]]:
    return [(a - T0, b - T0, s.value, g, j, r) for a, b, s, g, j, r in truth.intervals[machine]]


def test_session_timeline_parts_and_energy(example_site: SiteConfig) -> None:
    w = world(example_site)
    truth = w.ground_truth()
    assert rows(truth) == [
        (0, 10_000, "IDLE", 0, "", 0),
        (10_000, 14_000, "SETUP", 1001, "J1", 0),
        (14_000, 38_000, "RUNNING", 1001, "J1", 0),  # stops 2 s before logout ...
        (38_000, 40_000, "IDLE", 1001, "", 0),  # ... and is IDLE before the badge is cleared
        (40_000, 60_000, "IDLE", 0, "", 0),
    ]
    cnc = truth.machines["cnc-01"]
    assert [t - T0 for t in cnc.good_ts] == list(range(16_000, 38_001, 2000))  # 12 parts, one per 2 s
    assert cnc.reject_ts == []
    # cnc-mill-v1: IDLE 1.5 kW, SETUP 2.5 kW, RUNNING 11 kW
    kwh = (1.5 * 10 + 2.5 * 4 + 11 * 24 + 1.5 * 2 + 1.5 * 20) / 3600
    assert cnc.kwh(T0, T0 + 60_000) == pytest.approx(kwh)
    assert truth.sessions == [
        truth.sessions[0]._replace(
            tenant="acme", badge=1001, machine="cnc-01", start_ms=T0 + 10_000, end_ms=T0 + 40_000, good=12, reject=0
        )
    ]
    assert truth.sessions[0].kwh == pytest.approx((2.5 * 4 + 11 * 24 + 1.5 * 2) / 3600)


def test_register_values_follow_the_timeline(example_site: SiteConfig) -> None:
    w = world(example_site)
    first = w.values("cnc-01", T0)
    assert first["state"] == "IDLE" and first["badge"] == 0 and first["power_kw"] == 1.5
    g0 = first["good_count"]
    assert isinstance(g0, int)
    setup = w.values("cnc-01", T0 + 12_000)
    assert (setup["state"], setup["badge"], setup["job"], setup["good_count"]) == ("SETUP", 1001, "J1", g0)
    running = w.values("cnc-01", T0 + 21_000)
    assert (running["state"], running["good_count"], running["spindle_rpm"]) == ("RUNNING", g0 + 3, 8000)
    assert w.values("cnc-01", T0 + 50_000)["good_count"] == g0 + 12
    # After the end the machine keeps its last registers.
    assert w.values("cnc-01", T0 + 3_600_000) == w.values("cnc-01", T0 + 59_999)


def test_energy_register_grows_with_power(example_site: SiteConfig) -> None:
    w = world(example_site)
    e0 = w.values("cnc-01", T0)["energy_kwh"]
    e1 = w.values("cnc-01", T0 + 10_000)["energy_kwh"]
    assert isinstance(e0, float) and isinstance(e1, float)
    assert e1 - e0 == pytest.approx(1.5 * 10 / 3600)


@pytest.mark.parametrize(
    ("job", "good", "reject"),
    [({"reject_rate": 1}, 0, 12), ({"reject_rate": 0}, 12, 0), ({"cycle_s": 3}, 8, 0)],
)
def test_reject_rate_and_cycle_time(example_site: SiteConfig, job: dict[str, Any], good: int, reject: int) -> None:
    truth = world(example_site, **job).ground_truth()
    assert (truth.sessions[0].good, truth.sessions[0].reject) == (good, reject)


def test_jobs_with_quantity_set_up_in_turn(example_site: SiteConfig) -> None:
    jobs = [
        {"id": "A", "cycle_s": 2, "jitter": 0, "reject_rate": 0, "setup": "4s", "quantity": 3},
        {"id": "B", "cycle_s": 2, "jitter": 0, "reject_rate": 0, "setup": "4s", "quantity": 3},
    ]
    sessions = [{"machine": "cnc-01", "badge": 1001, "at": "10s", "until": "40s", "jobs": jobs}]
    truth = world(example_site, {"sessions": sessions}).ground_truth()
    assert rows(truth)[1:5] == [
        (10_000, 14_000, "SETUP", 1001, "A", 0),
        (14_000, 20_000, "RUNNING", 1001, "A", 0),
        (20_000, 24_000, "SETUP", 1001, "B", 0),
        (24_000, 30_000, "RUNNING", 1001, "B", 0),
    ]
    assert rows(truth)[5] == (30_000, 40_000, "IDLE", 1001, "", 0)  # all jobs done, still logged in
    assert truth.sessions[0].good == 6


def test_breakdown_abandons_the_cycle_and_resumes(example_site: SiteConfig) -> None:
    events = [{"at": "21s", "machine": "cnc-01", "event": "breakdown", "reason": 1, "duration": "5s"}]
    truth = world(example_site, {"events": events}).ground_truth()
    assert rows(truth)[2:5] == [
        (14_000, 21_000, "RUNNING", 1001, "J1", 0),
        (21_000, 26_000, "STOPPED", 1001, "J1", 1),
        (26_000, 38_000, "RUNNING", 1001, "J1", 0),
    ]
    # parts at 16, 18, 20; the cycle begun at 20 is lost; then 28 .. 38
    assert [t - T0 for t in truth.machines["cnc-01"].good_ts] == [16_000, 18_000, 20_000, *range(28_000, 38_001, 2000)]


def test_maintenance_outranks_a_breakdown_and_power_off_outranks_both(example_site: SiteConfig) -> None:
    events = [
        {"at": "15s", "machine": "cnc-01", "event": "maintenance", "duration": "10s"},
        {"at": "17s", "machine": "cnc-01", "event": "breakdown", "reason": 4, "duration": "2s"},  # ignored
        {"at": "50s", "machine": "cnc-01", "event": "power_off", "duration": "5s"},
    ]
    truth = world(example_site, {"events": events}).ground_truth()
    states = [(a, b, s) for a, b, s, *_ in rows(truth)]
    assert (15_000, 25_000, "MAINTENANCE") in states
    assert (50_000, 55_000, "OFF") in states
    assert not any(s == "STOPPED" for *_, s in states)


def test_counter_reset_and_wrap(example_site: SiteConfig) -> None:
    events = [
        {"at": "25s", "machine": "cnc-01", "event": "counter_reset"},
        {"at": "5s", "machine": "laser-01", "event": "counter_wrap"},
    ]
    w = world(example_site, {"events": events})
    assert w.values("cnc-01", T0 + 25_500)["good_count"] == 0
    assert w.values("cnc-01", T0 + 25_500)["energy_kwh"] == pytest.approx(11 * 0.5 / 3600)  # restarted at 0
    assert w.values("cnc-01", T0 + 26_500)["good_count"] == 1
    assert w.values("laser-01", T0 + 6_000)["good_count"] == 65533  # 16-bit register, 3 below the wrap
    truth = w.ground_truth()
    assert truth.sessions[0].good == 12  # the truth counts real parts, not register values
    assert [e.kind for e in truth.machines["cnc-01"].events] == ["counter_reset"]


def test_badge_swap_splits_the_session_without_setup(example_site: SiteConfig) -> None:
    events = [{"at": "25s", "machine": "cnc-01", "event": "badge_swap", "badge": 2001}]
    truth = world(example_site, {"events": events}).ground_truth()
    assert [(s.tenant, s.start_ms - T0, s.end_ms - T0, s.good) for s in truth.sessions] == [
        ("acme", 10_000, 25_000, 5),  # parts at 16, 18, 20, 22, 24
        ("batik", 25_000, 40_000, 7),  # parts at 26 .. 38
    ]
    assert rows(truth)[3] == (25_000, 38_000, "RUNNING", 2001, "J1", 0)


def test_truth_usage_windows(example_site: SiteConfig) -> None:
    truth = world(example_site).ground_truth()
    usage = truth.usage(T0 + 20_000, T0 + 30_000)
    assert list(usage) == ["acme"]
    u = usage["acme"]["cnc-01"]
    assert (u.session_s, u.running_s, u.good, u.reject) == (10.0, 10.0, 5, 0)  # parts at 20, 22, 24, 26, 28
    assert u.kwh == pytest.approx(11 * 10 / 3600)
    assert truth.usage(T0, T0 + 5_000) == {}


@pytest.mark.parametrize("seed", [1, 2, 99])
def test_same_seed_same_run_whatever_the_query_pattern(example_site: SiteConfig, seed: int) -> None:
    extra = {"random_stops": True, "machine_options": {"cnc-01": {"mtbf": "20s", "microstop_rate": 0.3}}}
    a = world(example_site, extra, seed=seed, jitter=0.2, reject_rate=0.3)
    b = world(example_site, extra, seed=seed, jitter=0.2, reject_rate=0.3)
    # a is queried every 137 ms, b only at the end: the run must not depend on when it is looked at.
    values_a = [a.values("cnc-01", T0 + t) for t in range(0, 60_000, 137)]
    assert a.ground_truth().to_json() == b.ground_truth().to_json()
    c = world(example_site, extra, seed=seed, jitter=0.2, reject_rate=0.3)
    assert values_a == [c.values("cnc-01", T0 + t) for t in range(0, 60_000, 137)]


def test_different_seeds_differ(example_site: SiteConfig) -> None:
    a = world(example_site, seed=1, jitter=0.2, reject_rate=0.3).ground_truth()
    b = world(example_site, seed=2, jitter=0.2, reject_rate=0.3).ground_truth()
    assert a.to_json() != b.to_json()


def test_truth_json_round_trip_and_rejects_garbage(example_site: SiteConfig) -> None:
    truth = world(example_site).ground_truth()
    again = GroundTruth.from_json(truth.to_json())
    assert again.to_json() == truth.to_json()
    assert again.sessions == truth.sessions
    for bad in ["[]", "{}", '{"v": 3}', '{"v": 2}', "not json", '{"v": 1, "machines": 5}']:
        with pytest.raises(ValueError):
            GroundTruth.from_json(bad)


def test_job_power_factor_scales_running_power_only(example_site: SiteConfig) -> None:
    events = [{"at": "20s", "machine": "cnc-01", "event": "breakdown", "reason": 1, "duration": "3s"}]
    w = world(example_site, {"events": events}, power_factor=1.2)
    e0 = w.values("cnc-01", T0 + 10_000)["energy_kwh"]
    assert w.values("cnc-01", T0 + 12_000)["power_kw"] == pytest.approx(2.5)  # SETUP: unscaled
    assert w.values("cnc-01", T0 + 15_000)["power_kw"] == pytest.approx(13.2)  # RUNNING: 11 kW x 1.2
    assert w.values("cnc-01", T0 + 21_000)["power_kw"] == pytest.approx(1.2)  # STOPPED: the model's 1.2 kW
    e1 = w.values("cnc-01", T0 + 40_000)["energy_kwh"]
    truth = w.ground_truth()
    # SETUP 10..14 s at 2.5 kW, RUNNING 14..20 and 23..38 s at 13.2 kW, STOPPED 20..23 s at 1.2 kW,
    # IDLE 38..40 s at 1.5 kW; before and after the session IDLE at 1.5 kW.
    session_kwh = (2.5 * 4 + 13.2 * 6 + 1.2 * 3 + 13.2 * 15 + 1.5 * 2) / 3600
    assert truth.sessions[0].kwh == pytest.approx(session_kwh)
    assert truth.usage()["acme"]["cnc-01"].kwh == pytest.approx(session_kwh)
    assert truth.machines["cnc-01"].kwh(T0, T0 + 60_000) == pytest.approx(session_kwh + 1.5 * 30 / 3600)
    assert isinstance(e0, float) and isinstance(e1, float)
    assert e1 - e0 == pytest.approx(session_kwh)  # the served energy counter agrees with the truth
    again = GroundTruth.from_json(truth.to_json())
    assert again.sessions[0].kwh == pytest.approx(session_kwh)


@pytest.mark.parametrize("factor", [0, -1, 10.5, "much"])
def test_bad_power_factor_is_refused(example_site: SiteConfig, factor: object) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="power_factor"):
        world(example_site, power_factor=factor)


def test_part_counters_wrap_at_the_register_width(example_site: SiteConfig) -> None:
    # laser-01's counters are uint16: after the injected wrap (65533) three parts bring them to 0.
    session = {"machine": "laser-01", "badge": 3001, "at": "1s", "until": "59s"}
    job = {"id": "L1", "cycle_s": 2, "jitter": 0, "reject_rate": 0, "setup": "4s"}
    events = [{"at": "5s", "machine": "laser-01", "event": "counter_wrap"}]
    extra = {"events": events, "sessions": [{**session, "jobs": [job]}]}
    w = world(example_site, extra)
    # Parts complete at 7, 9, 11, 13 s.
    assert [w.values("laser-01", T0 + t)["good_count"] for t in (6_000, 7_000, 9_000, 11_000, 13_000)] == [
        65533,
        65534,
        65535,
        0,
        1,
    ]
    # A signed 16-bit counter (a profile this simulator must also serve) wraps at 32768, never beyond.
    from shopfloor.codec import encode

    cnc = example_site.profile("cnc-mill-v1")
    regs = [
        RegisterSpec.model_validate({**r.model_dump(exclude={"counter_width"}), "type": DataType.INT16})
        if r.signal == "good_count"
        else r
        for r in cnc.registers
    ]
    profiles = [
        p.model_copy(update={"registers": regs}) if p.model == "cnc-mill-v1" else p for p in example_site.profiles
    ]
    site = example_site.model_copy(update={"profiles": profiles})
    w = world(site, {"events": [{"at": "5s", "machine": "cnc-01", "event": "counter_wrap"}]})
    counts = [w.values("cnc-01", T0 + t)["good_count"] for t in (6_000, 16_000, 18_000, 20_000, 22_000)]
    assert counts == [32765, 32766, 32767, 0, 1]
    encode(site.profile("cnc-mill-v1"), w.values("cnc-01", T0 + 20_000))  # encodable, no overflow
