"""The board's shift figures (api.live.shift_figures) read the shift's closed hours from the roll-ups: the same
figures as from raw samples, for a fraction of the raw reads (every API process recomputes them every 30 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.core.owners import Owners
from api.core.pieces import HOUR_MS
from api.live import shift_figures
from api.rollups import job
from api.rollups.store import RollupStore
from collector.convert import batch_to_points, status_to_point
from shopfloor.config import SiteConfig, default_site_path, load_site
from shopfloor.contracts import Topic
from shopfloor.memstore import MemoryStore
from shopfloor.store import Sample
from simulators.replay import ReplayOptions, replay_messages
from simulators.scenario import load_scenario, scenarios_dir
from simulators.world import World

pytestmark = pytest.mark.integration

# Monday 2026-11-02 05:00 Asia/Jakarta; the morning shift runs 06:00-14:00 (examples/site.yaml).
START = 1_793_466_000_000 + 29 * HOUR_MS
END = START + 8 * HOUR_MS
# 12:40 local, 6 h 40 min into the shift: 06:00-12:00 is closed (an hour closes 20 min after its end), the rest open.
NOW = START + 7 * HOUR_MS + 40 * 60_000


class CountingStore(MemoryStore):
    """A MemoryStore that counts the raw samples it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.samples_read = 0

    def samples(self, site: str, machine: str, start_ms: int, end_ms: int) -> list[Sample]:
        found = super().samples(site, machine, start_ms, end_ms)
        self.samples_read += len(found)
        return found


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site(default_site_path())


@pytest.fixture(scope="module")
def store(site: SiteConfig) -> CountingStore:
    """The month scenario's Monday morning at 1 s polls, as the collector stores it."""
    filled = CountingStore()
    world = World(site, load_scenario(scenarios_dir() / "month.yaml", site), 1, START, END)
    for message in replay_messages(world, "replay", ReplayOptions(poll_ms=1000)):
        if message.batch is not None:
            filled.write(batch_to_points(message.batch))
        else:
            assert message.status is not None
            filled.write([status_to_point(Topic.parse(message.topic), message.status)])
    return filled


@pytest.fixture
def rollups(store: CountingStore, site: SiteConfig, tmp_path: Path) -> Iterator[RollupStore]:
    built = RollupStore(f"sqlite:///{tmp_path / 'rollups.db'}")
    report = job.run_until_done(store, built, site, clock=lambda: NOW)
    assert report.built > 0
    yield built
    built.close()


def test_shift_figures_from_rollups_equal_raw_and_read_less(
    store: CountingStore, rollups: RollupStore, site: SiteConfig
) -> None:
    owners = Owners()
    made: list[int] = []
    for machine in site.machines:
        store.samples_read = 0
        raw = shift_figures(site, store, machine, NOW, owners)
        from_raw = store.samples_read
        store.samples_read = 0
        rolled = shift_figures(site, store, machine, NOW, owners, rollups)
        from_rollups = store.samples_read
        assert raw is not None and raw.name == "morning"
        assert rolled == raw, machine.id
        made.append(raw.good + raw.reject)
        # 40 of the shift's 400 minutes are open (plus the classification context before them): far fewer rows.
        assert from_rollups < from_raw / 2, (machine.id, from_rollups, from_raw)
    assert sum(made) > 0  # the morning made parts: the comparison is of real figures, not of empty ones
