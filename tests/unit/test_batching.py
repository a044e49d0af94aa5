"""Batching of one machine's samples: by count, by age, and bounded in size."""

from __future__ import annotations

import pytest

from edge_agent.batcher import Batcher, samples_per_batch
from shopfloor.contracts import Sample

T0 = 1_764_291_600_000


def sample(offset_ms: int) -> Sample:
    return Sample(ts=T0 + offset_ms, values={"good_count": offset_ms})


@pytest.mark.parametrize(
    ("publish_s", "poll_s", "max_samples", "expected"),
    [
        (1.0, 1.0, 100, 1),  # default: one message per poll
        (5.0, 1.0, 100, 5),
        (0.2, 1.0, 100, 1),  # publishing faster than polling still means one per poll
        (60.0, 0.1, 100, 100),  # capped by max_batch_samples
        (2.5, 1.0, 100, 2),
        (1.0, 0.05, 1, 1),
    ],
)
def test_samples_per_batch(publish_s: float, poll_s: float, max_samples: int, expected: int) -> None:
    assert samples_per_batch(publish_s, poll_s, max_samples) == expected


def test_one_per_poll_flushes_each_sample() -> None:
    batcher = Batcher(per_batch=1, max_age_ms=1000)
    assert batcher.add(sample(0)) == [sample(0)]
    assert batcher.add(sample(1000)) == [sample(1000)]
    assert len(batcher) == 0


def test_flush_by_count() -> None:
    batcher = Batcher(per_batch=3, max_age_ms=3000)
    assert batcher.add(sample(0)) is None
    assert batcher.add(sample(1000)) is None
    assert batcher.add(sample(2000)) == [sample(0), sample(1000), sample(2000)]
    assert batcher.take() == []


def test_flush_by_age_when_polls_fail() -> None:
    batcher = Batcher(per_batch=5, max_age_ms=5000)
    batcher.add(sample(0))
    batcher.add(sample(1000))
    assert batcher.due(T0 + 4999) is None
    assert batcher.due(T0 + 5000) == [sample(0), sample(1000)]
    assert batcher.due(T0 + 99_000) is None  # nothing pending, nothing published


def test_max_samples_caps_per_batch() -> None:
    batcher = Batcher(per_batch=50, max_age_ms=60_000, max_samples=2)
    assert batcher.add(sample(0)) is None
    assert batcher.add(sample(1)) == [sample(0), sample(1)]


@pytest.mark.parametrize(
    ("per_batch", "max_age_ms", "max_samples", "match"),
    [
        (0, 1000, 10, "at least 1"),
        (1, -1, 10, "negative"),
        (1, 1000, 0, "max_batch_samples"),
        (1, 1000, 1001, "max_batch_samples"),
    ],
)
def test_rejects_bad_settings(per_batch: int, max_age_ms: int, max_samples: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Batcher(per_batch, max_age_ms, max_samples)
