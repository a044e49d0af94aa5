"""Per-machine batching of samples: flush by count, by age, or when the batch is full."""

from __future__ import annotations

from shopfloor.contracts import MAX_SAMPLES_PER_BATCH, Sample


def samples_per_batch(publish_interval_s: float, poll_interval_s: float, max_samples: int) -> int:
    """Return how many polls make one batch: one per poll by default, never more than max_samples."""
    return max(1, min(max_samples, round(publish_interval_s / poll_interval_s)))


class Batcher:
    """Collects one machine's samples until a batch is due."""

    def __init__(self, per_batch: int, max_age_ms: int, max_samples: int = MAX_SAMPLES_PER_BATCH) -> None:
        if not 1 <= max_samples <= MAX_SAMPLES_PER_BATCH:
            raise ValueError(f"max_batch_samples must be 1..{MAX_SAMPLES_PER_BATCH}, got {max_samples}")
        if per_batch < 1:
            raise ValueError(f"samples per batch must be at least 1, got {per_batch}")
        if max_age_ms < 0:
            raise ValueError(f"publish interval must not be negative, got {max_age_ms} ms")
        self.per_batch = min(per_batch, max_samples)
        self.max_age_ms = max_age_ms
        self.max_samples = max_samples
        self._pending: list[Sample] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, sample: Sample) -> list[Sample] | None:
        """Queue sample; return the batch if it is now complete."""
        self._pending.append(sample)
        if len(self._pending) >= self.per_batch:
            return self.take()
        return None

    def due(self, now_ms: int) -> list[Sample] | None:
        """Return the pending batch if its oldest sample has waited a publish interval."""
        if self._pending and now_ms - self._pending[0].ts >= self.max_age_ms:
            return self.take()
        return None

    def take(self) -> list[Sample]:
        """Remove and return every pending sample."""
        out, self._pending = self._pending, []
        return out
