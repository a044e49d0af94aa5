"""Collector metrics: seq gaps and duplicates by hand, exposition read back, health judgement."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.metrics import CollectorMetrics, CollectorSnapshot, SeqTracker, assess_health
from shopfloor.metrics import LatencyHistogram


@pytest.mark.parametrize(
    ("seqs", "gaps", "duplicates"),
    [
        ([], 0, 0),
        ([1, 2, 3], 0, 0),
        ([5], 0, 0),  # the first seq seen is no gap, whatever it is
        ([1, 3], 1, 0),  # 2 missing: one jump
        ([1, 10, 11, 20], 2, 0),
        ([1, 2, 2, 1], 0, 2),  # a resend and a late copy
        ([1, 3, 2], 1, 1),  # 2 arrives late: counted as a duplicate (at or below the highest seen)
    ],
)
def test_seq_tracker(seqs: list[int], gaps: int, duplicates: int) -> None:
    t = SeqTracker()
    for seq in seqs:
        t.observe("bdg", "edge-1", "cnc-01", seq)
    assert t.gaps().get(("bdg", "edge-1"), 0) == gaps
    assert t.duplicates().get(("bdg", "edge-1"), 0) == duplicates


def test_seq_tracker_keeps_machines_apart_and_sums_per_agent() -> None:
    t = SeqTracker()
    for machine, seq in [("a", 1), ("b", 1), ("a", 2), ("b", 3), ("a", 4)]:
        t.observe("bdg", "edge-1", machine, seq)
    t.observe("bdg", "edge-2", "c", 7)
    assert t.gaps() == {("bdg", "edge-1"): 2}
    assert t.duplicates() == {}


def _samples(metrics: CollectorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_exposition_reads_the_snapshot() -> None:
    hist = LatencyHistogram((0.01, 0.1))
    hist.observe(0.05)
    snap = CollectorSnapshot(
        counters={"messages_received": 12, "samples_written": 900, "pauses": 1},
        gauges={"queue_points": 40, "paused": 0, "mqtt_connected": 1},
        dead_letters={"malformed-json": 2, "store-rejected": 1},
        seq_gaps={("bdg", "edge-1"): 3},
        duplicates={("bdg", "edge-2"): 4},
    )
    s = _samples(CollectorMetrics(lambda: snap, hist, client_id="c-1", process=False))
    assert s[("shopfloor_collector_messages_received_total", ())] == 12
    assert s[("shopfloor_collector_samples_written_total", ())] == 900
    assert s[("shopfloor_collector_write_retries_total", ())] == 0
    assert s[("shopfloor_collector_dead_letters_total", (("reason", "store-rejected"),))] == 1
    assert s[("shopfloor_collector_seq_gaps_total", (("agent", "edge-1"), ("site", "bdg")))] == 3
    assert s[("shopfloor_collector_duplicates_total", (("agent", "edge-2"), ("site", "bdg")))] == 4
    assert s[("shopfloor_collector_queue_points", ())] == 40
    assert ("shopfloor_collector_store_down_seconds", ()) not in s  # not in the snapshot: not exported
    assert s[("shopfloor_collector_write_duration_seconds_bucket", (("le", "0.1"),))] == 1
    assert s[("shopfloor_collector_info", (("client_id", "c-1"),))] == 1


@pytest.mark.parametrize(
    ("store_down", "broker_down", "healthy", "reason"),
    [
        (None, None, True, None),
        (59.0, None, True, None),
        (61.0, None, False, "time-series store unreachable for 61 s (limit 60 s)"),
        (None, 61.0, False, "MQTT broker unreachable for 61 s (limit 60 s)"),
        (120.0, 90.0, False, "time-series store unreachable for 120 s (limit 60 s); MQTT broker unreachable"),
    ],
)
def test_health(store_down: float | None, broker_down: float | None, healthy: bool, reason: str | None) -> None:
    ok, details = assess_health(CollectorSnapshot(store_down_s=store_down, broker_down_s=broker_down))
    assert ok is healthy
    if reason is None:
        assert "reason" not in details
    else:
        assert str(details["reason"]).startswith(reason)
    assert details["store_reachable"] is (store_down is None)
