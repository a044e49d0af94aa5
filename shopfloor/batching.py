"""Per-machine batching of samples: out at least every publish interval, or as soon as a batch is full."""

from __future__ import annotations

from shopfloor.contracts import MAX_SAMPLES_PER_BATCH, Sample


class Batcher:
    """Collects one machine's samples until a batch is due.

    A batch is due when waiting for the next poll would make its oldest sample as old as the publish interval,
    so with the default (publish interval = poll interval) every sample goes out right after the poll that made it,
    and with a longer interval several polls' samples share one message.
    """

    def __init__(
        self, publish_interval_ms: int, poll_interval_ms: int, max_samples: int = MAX_SAMPLES_PER_BATCH
    ) -> None:
        if not 1 <= max_samples <= MAX_SAMPLES_PER_BATCH:
            raise ValueError(f"max_batch_samples must be 1..{MAX_SAMPLES_PER_BATCH}, got {max_samples}")
        if publish_interval_ms < 0:
            raise ValueError(f"publish interval must not be negative, got {publish_interval_ms} ms")
        if poll_interval_ms <= 0:
            raise ValueError(f"poll interval must be positive, got {poll_interval_ms} ms")
        self.publish_interval_ms = publish_interval_ms
        self.poll_interval_ms = poll_interval_ms
        self.max_samples = max_samples
        self._pending: list[Sample] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, sample: Sample) -> list[Sample] | None:
        """Queue sample; return the batch if it is now full."""
        self._pending.append(sample)
        if len(self._pending) >= self.max_samples:
            return self.take()
        return None

    def due(self, now_ms: int) -> list[Sample] | None:
        """Return the pending batch if holding it for another poll would reach or pass the publish interval."""
        pending = self._pending
        if pending and now_ms - pending[0].ts + self.poll_interval_ms >= self.publish_interval_ms:
            return self.take()
        return None

    def take(self) -> list[Sample]:
        """Remove and return every pending sample."""
        out, self._pending = self._pending, []
        return out
