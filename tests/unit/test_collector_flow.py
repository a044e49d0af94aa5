"""The writer's flow control: how many unacknowledged messages the broker may send (MQTT v5 Receive Maximum), and
what a chunk handed to the store reaches (which chunks in flight a later one must wait for)."""

from __future__ import annotations

import pytest

from collector.convert import Written
from collector.service import _ALL_TIME, _Pending, _reach, receive_maximum


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


def _item(topic: str, lines: int, first: int | None = None, last: int | None = None) -> _Pending:
    """A queued message as the writer sees it; telemetry (first/last given) names its machine in the topic."""
    written = None
    if first is not None:
        machine = topic.split("/")[3]
        written = Written("bdg", "edge-1", machine, 1)
    return _Pending(topic, b"{}", 1, 1, 0, tuple(["x"] * lines), written, 0.0, first, last)


T1 = "shopfloor/v1/bdg/m1/telemetry"
T2 = "shopfloor/v1/bdg/m2/telemetry"
S1 = "shopfloor/v1/bdg/m1/status"


@pytest.mark.parametrize(
    ("chunk", "want"),
    [
        ([], {}),
        # One machine: the oldest first ts and the newest last ts over its messages (100..250, 300..400).
        ([_item(T1, 2, 100, 250), _item(T1, 1, 300, 400)], {("bdg", "m1"): (100, 400)}),
        # Out of order: min(300, 100) = 100, max(400, 250) = 400.
        ([_item(T1, 1, 300, 400), _item(T1, 2, 100, 250)], {("bdg", "m1"): (100, 400)}),
        # Two machines kept apart.
        ([_item(T1, 1, 5, 5), _item(T2, 1, 7, 9)], {("bdg", "m1"): (5, 5), ("bdg", "m2"): (7, 9)}),
        # A status has no range: it spans all time under its own topic (apart from the machine's telemetry).
        ([_item(S1, 1), _item(T1, 1, 5, 5)], {(S1,): _ALL_TIME, ("bdg", "m1"): (5, 5)}),
        # Nothing to write (a telemetry batch whose samples carry no values, a status without lines): no reach.
        ([_item(T1, 0, None, None), _item(S1, 0)], {}),
    ],
)
def test_reach_is_what_a_chunk_writes_per_machine_and_status_topic(
    chunk: list[_Pending], want: dict[tuple[str, ...], tuple[int, int]]
) -> None:
    assert _reach(chunk) == want
