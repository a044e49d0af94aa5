"""The pure parts of collector.history: what counts as rewriting a stored sample, and how a batch is chunked."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from collector.history import Conflict, _groups, chunks, same_value, sample_conflict
from shopfloor.contracts import SignalValue


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (5, 5, True),
        (5, 5.0, True),  # the store reads a whole float back as an int
        (12.5, 12.5, True),
        (12.5, 12.500001, False),
        (1, True, False),  # a bool is no number
        (True, True, True),
        (False, 0, False),
        ("RUNNING", "RUNNING", True),
        ("12", 12, False),
    ],
)
def test_same_value(a: SignalValue, b: SignalValue, same: bool) -> None:
    assert same_value(a, b) is same
    assert same_value(b, a) is same


STORED = {"state": "RUNNING", "good_count": 812, "power_kw": 3.5}


@pytest.mark.parametrize(
    ("sent", "in_effect", "want"),
    [
        # The agent's resend: the same sample again.
        ({"state": "RUNNING", "good_count": 812, "power_kw": 3.5}, {}, None),
        ({"good_count": 812}, {}, None),  # a subset repeats it too
        ({"good_count": 812.0}, {}, None),  # int and float of one number
        # A stored value changed.
        ({"good_count": 900}, {}, Conflict(100, "good_count", 900, 812, in_effect=False)),
        ({"state": "STOPPED", "good_count": 812}, {}, Conflict(100, "state", "STOPPED", "RUNNING", in_effect=False)),
        # A signal the stored point lacks, with the value already in effect there: an outbox fold, accepted.
        ({"good_count": 812, "badge": 1001}, {"badge": 1001}, None),
        # ... with another value: another tenant's badge put on acme's sample.
        ({"badge": 2001}, {"badge": 1001}, Conflict(100, "badge", 2001, 1001, in_effect=True)),
        # ... where the signal was never reported before: it would appear in history.
        ({"badge": 2001}, {}, Conflict(100, "badge", 2001, None, in_effect=True)),
    ],
)
def test_sample_conflict(
    sent: dict[str, SignalValue], in_effect: dict[str, SignalValue], want: Conflict | None
) -> None:
    assert sample_conflict(100, sent, STORED, in_effect) == want


def test_conflicts_say_what_would_change() -> None:
    changed = Conflict(100, "good_count", 900, 812, in_effect=False).describe()
    assert "stored with good_count = 812" in changed and "change it to 900" in changed
    added = Conflict(100, "badge", 2001, 1001, in_effect=True).describe()
    assert "stored without badge, where badge = 1001 was in effect" in added and "add badge = 2001" in added
    assert "where no value was in effect" in Conflict(100, "badge", 2001, None, in_effect=True).describe()


@dataclass(frozen=True)
class Item:
    name: str
    history_key: tuple[str, str] | None
    first_ts: int | None
    last_ts: int | None
    weight: int = 1
    payload: bytes = b""


def _names(parts: list[list[Item]]) -> list[list[str]]:
    return [[item.name for item in part] for part in parts]


def test_chunks_split_only_where_a_message_overlaps_an_earlier_one_of_its_machine() -> None:
    a, b = ("bdg", "cnc-01"), ("bdg", "cnc-02")
    items = [
        Item("a1", a, 100, 200),
        Item("b1", b, 150, 250),  # another machine: no overlap
        Item("a2", a, 201, 300),  # after a1: the stream's normal case
        Item("status", None, None, None),  # statuses never split
        Item("a3", a, 300, 300),  # starts at a2's last ts: may land on it
        Item("b2", b, 260, 270),
        Item("a4", a, 50, 60),  # a resend from before everything in the chunk
        Item("empty", a, None, None),  # no lines
    ]
    #: a3 overlaps a2 (300 <= 300) and starts chunk 2; a4 (50 <= 300) starts chunk 3.
    assert _names(chunks(items)) == [["a1", "b1", "a2", "status"], ["a3", "b2"], ["a4", "empty"]]
    assert chunks([]) == []


def test_reads_are_grouped_by_time_and_size() -> None:
    key = ("bdg", "cnc-01")
    items = [
        Item("late", key, 10_000_000, 10_000_100, weight=10),
        Item("one", key, 1_000, 2_000, weight=2_000),
        Item("two", key, 2_500, 3_000, weight=2_000),
        Item("three", key, 3_500, 4_000, weight=2_000),  # would make 6,000 samples in one read: a new group
    ]
    assert _names(_groups(items)) == [["one", "two"], ["three"], ["late"]]  # "late" is > 10 min after "three"
