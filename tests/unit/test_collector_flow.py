"""How many unacknowledged messages the collector lets the broker send it (MQTT v5 Receive Maximum)."""

from __future__ import annotations

import pytest

from collector.service import receive_maximum


@pytest.mark.parametrize(
    ("queue_points", "want"),
    [
        (50_000, 500),  # the default queue (10 batches of 5,000): 500 messages of 100 samples fill it
        (200_000, 2_000),  # 200,000 / 100
        (60_000, 600),
        (20_000, 500),  # 200 would fill it with 100-sample messages, but not fewer than 500 in flight
        (300, 300),  # never more messages than points: a message has at least one
        (4, 4),
        (1, 1),
        (10_000_000, 65_535),  # the protocol's most
    ],
)
def test_receive_maximum(queue_points: int, want: int) -> None:
    assert receive_maximum(queue_points) == want
