"""A machine coordinator's handling of poll outcomes, without I/O and with a frozen clock."""

from __future__ import annotations

import logging
import math
import struct
from collections import Counter
from typing import Any

import pytest

from edge_agent.batcher import Batcher
from edge_agent.coordinator import MachineCoordinator, build_sample
from edge_agent.health import Transition
from shopfloor.codec import ReadBlock, encode
from shopfloor.config import Machine, SiteConfig, Table
from shopfloor.contracts import LinkStatus, Sample, SignalValue

T0 = 1_764_291_600_000
GOOD: dict[str, SignalValue] = {
    "state": "RUNNING",
    "stop_reason": 0,
    "alarms": 0,
    "badge": 1001,
    "good_count": 812,
    "reject_count": 3,
    "spindle_rpm": 9000,
    "job": "J-42",
    "energy_kwh": 12.5,
    "power_kw": 7.25,
}


class Collect:
    """A sink that keeps what the coordinator hands over."""

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []
        self.statuses: list[Transition] = []

    def samples(self, machine: Machine, samples: list[Sample]) -> None:
        self.batches.append(samples)

    def status(self, machine: Machine, transition: Transition) -> None:
        self.statuses.append(transition)


def make(example_site: SiteConfig, per_batch: int = 1, max_age_ms: int = 1000) -> tuple[MachineCoordinator, Collect]:
    machine = example_site.machines[0]
    sink = Collect()
    coordinator = MachineCoordinator(
        machine, example_site.profile(machine.profile), Batcher(per_batch, max_age_ms), sink, Counter()
    )
    return coordinator, sink


def registers(
    coordinator: MachineCoordinator, values: dict[str, Any], raw: dict[tuple[Table, int], int] | None = None
) -> dict[ReadBlock, list[int]]:
    memory = encode(coordinator.profile, values)
    memory.update(raw or {})
    return {b: [memory.get((b.table, a), 0) for a in range(b.start, b.end)] for b in coordinator.blocks}


def test_good_read_becomes_one_sample_and_online(example_site: SiteConfig) -> None:
    coordinator, sink = make(example_site)
    sample = coordinator.handle_read(T0, registers(coordinator, GOOD))
    assert sample == Sample(ts=T0, values=GOOD)
    assert sink.batches == [[sample]]
    assert [(s.status, s.ts) for s in sink.statuses] == [(LinkStatus.ONLINE, T0)]
    assert coordinator.stats == Counter(polls=1, samples=1)


def float_words(value: float) -> tuple[int, int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return hi, lo


@pytest.mark.parametrize(
    ("raw", "omitted"),
    [
        ({(Table.HOLDING, 0): 99}, {"state"}),  # state code not in the profile's map
        (dict(zip([(Table.INPUT, 2), (Table.INPUT, 3)], float_words(math.nan), strict=True)), {"power_kw"}),
        (dict(zip([(Table.INPUT, 2), (Table.INPUT, 3)], float_words(math.inf), strict=True)), {"power_kw"}),
        # Negative power decodes but the contract refuses it: dropped, not invented.
        (dict(zip([(Table.INPUT, 2), (Table.INPUT, 3)], float_words(-3.5), strict=True)), {"power_kw"}),
        ({(Table.HOLDING, 20): 0xC3A9}, {"job"}),  # non-ASCII bytes
        ({(Table.HOLDING, 20): 0x0741}, {"job"}),  # control character
        ({(Table.HOLDING, 0): 0xFFFF, (Table.HOLDING, 20): 0xFFFF}, {"state", "job"}),
    ],
)
def test_garbage_registers_omit_only_their_signal(
    example_site: SiteConfig, raw: dict[tuple[Table, int], int], omitted: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    coordinator, sink = make(example_site)
    with caplog.at_level(logging.WARNING, logger="edge_agent"):
        sample = coordinator.handle_read(T0, registers(coordinator, GOOD, raw))
        coordinator.handle_read(T0 + 1000, registers(coordinator, GOOD, raw))
    assert sample is not None
    assert set(sample.values) == set(GOOD) - omitted
    assert {k: v for k, v in sample.values.items()} == {k: v for k, v in GOOD.items() if k not in omitted}
    assert len(sink.batches) == 2
    # Logged once per signal, not once per poll.
    lines = [r.getMessage() for r in caplog.records if "not decoded" in r.getMessage()]
    assert sorted(line.split("signal ")[1].split(" ")[0] for line in lines) == sorted(f"'{s}'" for s in omitted)
    assert coordinator.stats["omitted_values"] == 2 * len(omitted)


def test_all_signals_undecodable_gives_no_sample(example_site: SiteConfig) -> None:
    coordinator, sink = make(example_site)
    profile = coordinator.profile.model_copy(
        update={"registers": [r for r in coordinator.profile.registers if r.signal == "state"]}
    )
    coordinator = MachineCoordinator(coordinator.machine, profile, Batcher(1, 1000), sink, Counter())
    assert coordinator.handle_read(T0, registers(coordinator, {}, {(Table.HOLDING, 0): 77})) is None
    assert sink.batches == []
    assert [s.status for s in sink.statuses] == [LinkStatus.ONLINE]  # it answered: reachable, just nonsense
    assert coordinator.stats["empty_polls"] == 1


def test_failure_marks_unreachable_once_and_produces_no_samples(example_site: SiteConfig) -> None:
    coordinator, sink = make(example_site, per_batch=5, max_age_ms=5000)
    coordinator.handle_read(T0, registers(coordinator, GOOD))
    coordinator.handle_read(T0 + 1000, registers(coordinator, GOOD))
    assert sink.batches == []
    for k in range(2, 6):
        coordinator.handle_failure(T0 + k * 1000, "holding registers 0..27: no reply within 2.0 s")
        coordinator.handle_tick(T0 + k * 1000 + 10)
    # Pending samples went out before the unreachable status, and nothing after it.
    assert [len(b) for b in sink.batches] == [2]
    assert [(s.status, s.ts) for s in sink.statuses] == [
        (LinkStatus.ONLINE, T0),
        (LinkStatus.UNREACHABLE, T0 + 2000),
    ]
    coordinator.handle_read(T0 + 6000, registers(coordinator, GOOD))
    assert sink.statuses[-1].status is LinkStatus.ONLINE
    assert sink.statuses[-1].message == "machine 'cnc-01': reachable again after 4.0 s"
    assert coordinator.stats["failures"] == 4
    assert coordinator.stats["outages"] == 1


def test_tick_publishes_batch_by_age(example_site: SiteConfig) -> None:
    coordinator, sink = make(example_site, per_batch=5, max_age_ms=5000)
    coordinator.handle_read(T0, registers(coordinator, GOOD))
    coordinator.handle_tick(T0 + 4999)
    assert sink.batches == []
    coordinator.handle_tick(T0 + 5000)
    assert [len(b) for b in sink.batches] == [1]


@pytest.mark.parametrize("ts", [0, -1, 10**15])
def test_implausible_clock_reports_nothing(example_site: SiteConfig, ts: int) -> None:
    coordinator, sink = make(example_site)
    assert coordinator.handle_read(ts, registers(coordinator, GOOD)) is None
    coordinator.handle_failure(ts, "boom")
    assert (sink.batches, sink.statuses) == ([], [])
    assert coordinator.stats["clock_errors"] == 2


@pytest.mark.parametrize(
    ("values", "kept", "dropped"),
    [
        ({"state": "RUNNING", "good_count": 1}, {"state": "RUNNING", "good_count": 1}, set()),
        ({"stop_reason": -3, "good_count": 1}, {"good_count": 1}, {"stop_reason"}),
        ({"energy_kwh": -0.5, "job": "x" * 300, "badge": 7}, {"badge": 7}, {"energy_kwh", "job"}),
        ({"state": "EXPLODED"}, None, {"state"}),
        ({}, None, set()),
    ],
)
def test_build_sample(values: dict[str, SignalValue], kept: dict[str, SignalValue] | None, dropped: set[str]) -> None:
    sample, errors = build_sample(T0, values, {"alarms": "earlier error"})
    assert (sample.values if sample else None) == kept
    assert set(errors) == dropped | {"alarms"}
    for name in dropped:
        assert name in errors[name]
