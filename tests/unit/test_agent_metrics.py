"""Agent metrics: histogram buckets by hand, exposition read back from the provider, health judgement."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.metrics import (
    COUNTERS,
    POLL_ERROR_KINDS,
    AgentMetrics,
    LatencyHistogram,
    MetricsSource,
    assess_health,
    make_health,
)


def samples(metrics: AgentMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the exposition text into {(sample name, sorted labels): value}."""
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.parametrize(
    ("observations", "expected"),
    [
        # bounds 0.01, 0.1, 1: le is inclusive, so 0.01 counts in le=0.01 and 1.0 in le=1.
        ([], [0, 0, 0, 0]),
        ([0.01], [1, 1, 1, 1]),
        ([0.0100001], [0, 1, 1, 1]),
        ([0.005, 0.05, 0.5, 5.0], [1, 2, 3, 4]),
        ([1.0, 1.0, 2.0], [0, 0, 2, 3]),
        ([-0.001], [1, 1, 1, 1]),  # a clock step back: the lowest bucket, never lost
    ],
)
def test_histogram_buckets_are_cumulative(observations: list[float], expected: list[int]) -> None:
    h = LatencyHistogram((0.01, 0.1, 1.0))
    for x in observations:
        h.observe(x)
    assert h.cumulative() == list(zip((0.01, 0.1, 1.0, float("inf")), expected, strict=True))
    assert h.count == len(observations)
    assert h.sum == pytest.approx(sum(observations))


@pytest.mark.parametrize("buckets", [(), (0.1, 0.1), (0.2, 0.1), (0.1, float("inf")), (float("nan"),)])
def test_histogram_refuses_bad_buckets(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets"):
        LatencyHistogram(buckets)


def test_exposition_carries_the_providers_values() -> None:
    stats: Counter[str] = Counter(polls=1500, samples_sent=1400, values_sent=4200, unrelated=7)
    errors = {"timeout": 60, "refused": 40, "weird": 1}
    up = {"cnc-02": False, "cnc-01": True, "laser-01": True}
    duration = LatencyHistogram((0.005, 0.05))
    for x in (0.002, 0.004, 0.03, 0.2):  # buckets 2, 3, 4; sum 0.236
        duration.observe(x)
    source = MetricsSource(
        counters=lambda: stats,
        poll_errors=lambda: errors,
        gauges=lambda: {"outbox_depth": 12, "outbox_oldest_age_seconds": 3.5, "mqtt_connected": 1},
        machines_up=lambda: up,
        poll_duration=duration,
    )
    got = samples(AgentMetrics(source, agent_id="edge-1", site_id="bdg"))

    assert got[("shopfloor_agent_info", (("agent", "edge-1"), ("site", "bdg")))] == 1
    assert got[("shopfloor_agent_polls_total", ())] == 1500
    assert got[("shopfloor_agent_samples_sent_total", ())] == 1400
    assert got[("shopfloor_agent_values_sent_total", ())] == 4200
    assert got[("shopfloor_agent_resent_total", ())] == 0  # missing key: 0, so rate() works from the start
    assert not any("unrelated" in name for name, _ in got)
    for key, _ in COUNTERS:
        assert (f"shopfloor_agent_{key}_total", ()) in got
    assert got[("shopfloor_agent_poll_errors_total", (("kind", "timeout"),))] == 60
    assert got[("shopfloor_agent_poll_errors_total", (("kind", "refused"),))] == 40
    assert got[("shopfloor_agent_poll_errors_total", (("kind", "weird"),))] == 1
    assert got[("shopfloor_agent_poll_errors_total", (("kind", "decode"),))] == 0
    assert {labels for name, labels in got if name == "shopfloor_agent_poll_errors_total"} >= {
        (("kind", k),) for k in POLL_ERROR_KINDS
    }
    assert got[("shopfloor_agent_outbox_depth", ())] == 12
    assert got[("shopfloor_agent_outbox_oldest_age_seconds", ())] == 3.5
    assert got[("shopfloor_agent_mqtt_connected", ())] == 1
    assert ("shopfloor_agent_outbox_bytes", ()) not in got  # not provided: not exported rather than a false 0
    # Derived from machines_up when the provider gives no such gauge: 2 online, 1 unreachable.
    assert got[("shopfloor_agent_machines_online", ())] == 2
    assert got[("shopfloor_agent_machines_unreachable", ())] == 1
    assert got[("shopfloor_agent_machine_up", (("machine", "cnc-01"),))] == 1
    assert got[("shopfloor_agent_machine_up", (("machine", "cnc-02"),))] == 0
    assert got[("shopfloor_agent_poll_duration_seconds_bucket", (("le", "0.005"),))] == 2
    assert got[("shopfloor_agent_poll_duration_seconds_bucket", (("le", "0.05"),))] == 3
    assert got[("shopfloor_agent_poll_duration_seconds_bucket", (("le", "+Inf"),))] == 4
    assert got[("shopfloor_agent_poll_duration_seconds_count", ())] == 4
    assert got[("shopfloor_agent_poll_duration_seconds_sum", ())] == pytest.approx(0.236)
    assert not any(name.startswith("shopfloor_agent_poll_lateness") for name, _ in got)  # no histogram given
    assert ("process_cpu_seconds_total", ()) in got


def test_scrape_reads_the_live_counters_each_time() -> None:
    stats: Counter[str] = Counter()
    metrics = AgentMetrics(MetricsSource(counters=lambda: stats), agent_id="a", site_id="s", process=False)
    assert samples(metrics)[("shopfloor_agent_polls_total", ())] == 0
    stats["polls"] += 3
    assert samples(metrics)[("shopfloor_agent_polls_total", ())] == 3
    assert not any(name.startswith("process_") for name, _ in samples(metrics))


def test_explicit_machine_gauges_win_over_derived_ones() -> None:
    source = MetricsSource(gauges=lambda: {"machines_online": 7, "machines_unreachable": 0})
    got = samples(AgentMetrics(source, agent_id="a", site_id="s", process=False))
    assert got[("shopfloor_agent_machines_online", ())] == 7
    assert got[("shopfloor_agent_machines_unreachable", ())] == 0


def test_openmetrics_on_request() -> None:
    metrics = AgentMetrics(MetricsSource(), agent_id="a", site_id="s", process=False)
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


@pytest.mark.parametrize(
    ("broker_down_s", "machines_up", "healthy", "reason"),
    [
        (None, {}, True, None),  # nothing polled yet: no verdict on machines
        (None, {"a": True, "b": False}, True, None),
        (59.0, {"a": True}, True, None),  # down, but within the 60 s allowance
        (61.0, {"a": True}, False, "MQTT broker unreachable for 61 s (limit 60 s)"),
        (None, {"a": False, "b": False}, False, "all 2 machine(s) unreachable"),
        (90.0, {"a": False}, False, "MQTT broker unreachable for 90 s (limit 60 s); all 1 machine(s) unreachable"),
    ],
)
def test_assess_health(
    broker_down_s: float | None, machines_up: dict[str, bool], healthy: bool, reason: str | None
) -> None:
    ok, details = assess_health(broker_down_s, machines_up, max_broker_down_s=60)
    assert ok is healthy
    assert details.get("reason") == reason
    assert details["mqtt_connected"] is (broker_down_s is None)


def test_make_health_reads_live_state() -> None:
    state: dict[str, float | None] = {"down": None}
    check = make_health(lambda: state["down"], lambda: {"a": True}, max_broker_down_s=10)
    assert check()[0] is True
    state["down"] = 11.0
    ok, details = check()
    assert ok is False
    assert details["mqtt_down_seconds"] == 11.0
