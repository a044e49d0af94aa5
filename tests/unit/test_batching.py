"""Batching of one machine's samples: out at least every publish interval, or when the batch is full."""

from __future__ import annotations

import pytest

from shopfloor.batching import Batcher
from shopfloor.contracts import Sample

T0 = 1_764_291_600_000


def sample(offset_ms: int) -> Sample:
    return Sample(ts=T0 + offset_ms, values={"good_count": offset_ms})


def test_publish_interval_equal_to_poll_interval_sends_right_after_each_poll() -> None:
    batcher = Batcher(publish_interval_ms=1000, poll_interval_ms=1000)
    batcher.add(sample(0))
    # Checked 20 ms after the poll: 20 + 1000 (the next poll) >= 1000, so waiting would make it too old; and
    # so does a read that finished within its own millisecond.
    assert batcher.due(T0 + 20) == [sample(0)]
    batcher.add(sample(1000))
    assert batcher.due(T0 + 1000) == [sample(1000)]
    assert len(batcher) == 0


def test_longer_publish_interval_batches_several_polls() -> None:
    batcher = Batcher(publish_interval_ms=5000, poll_interval_ms=1000)
    for i in range(4):
        batcher.add(sample(i * 1000))
        # At 3.01 s: 3010 - 0 + 1000 = 4010 < 5000, keep waiting.
        assert batcher.due(T0 + i * 1000 + 10) is None
    batcher.add(sample(4000))
    # At 4.01 s: 4010 + 1000 = 5010 >= 5000: out, five samples in one message.
    assert batcher.due(T0 + 4010) == [sample(i * 1000) for i in range(5)]


def test_due_with_nothing_pending_is_none() -> None:
    batcher = Batcher(publish_interval_ms=1000, poll_interval_ms=100)
    assert batcher.due(T0 + 99_000) is None


def test_full_batch_goes_out_at_once() -> None:
    batcher = Batcher(publish_interval_ms=60_000, poll_interval_ms=1000, max_samples=2)
    assert batcher.add(sample(0)) is None
    assert batcher.add(sample(1)) == [sample(0), sample(1)]
    assert batcher.take() == []


@pytest.mark.parametrize(
    ("publish_ms", "poll_ms", "max_samples", "match"),
    [
        (-1, 1000, 10, "negative"),
        (1000, 0, 10, "poll interval must be positive"),
        (1000, 1000, 0, "max_batch_samples"),
        (1000, 1000, 1001, "max_batch_samples"),
    ],
)
def test_rejects_bad_settings(publish_ms: int, poll_ms: int, max_samples: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Batcher(publish_ms, poll_ms, max_samples)
