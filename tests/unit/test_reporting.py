"""A machine reporter's handling of poll outcomes (shopfloor/reporting.py), without I/O and with a frozen clock.

Polls are 1 s apart from T0 on cnc-01 of the example site (cnc-mill-v1 profile); the heartbeat is 10 s.
"""

from __future__ import annotations

import logging
import math
import struct
from collections import Counter
from typing import Any

import pytest

from shopfloor.codec import ReadBlock, encode
from shopfloor.config import Machine, SiteConfig, Table
from shopfloor.contracts import LinkStatus, Sample, SignalValue
from shopfloor.health import Transition
from shopfloor.reporting import MachineReporter, build_sample

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
    """A sink that keeps what the reporter hands over."""

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []
        self.statuses: list[Transition] = []
        self.offsets: list[tuple[str, float]] = []

    def samples(self, machine: Machine, samples: list[Sample]) -> None:
        self.batches.append(samples)

    def status(self, machine: Machine, transition: Transition) -> None:
        self.statuses.append(transition)

    def offset(self, machine: Machine, signal: str, value: float) -> None:
        self.offsets.append((signal, value))


def make(example_site: SiteConfig, publish_s: float | None = None, **machine: Any) -> tuple[MachineReporter, Collect]:
    m = example_site.machines[0].model_copy(update={"heartbeat_s": 10.0, **machine})
    sink = Collect()
    reporter = MachineReporter(m, example_site.profile(m.profile), sink, publish_interval_s=publish_s, stats=Counter())
    return reporter, sink


def registers(
    reporter: MachineReporter, values: dict[str, Any], raw: dict[tuple[Table, int], int] | None = None
) -> dict[ReadBlock, list[int]]:
    memory = encode(reporter.profile, values)
    memory.update(raw or {})
    return {b: [memory.get((b.table, a), 0) for a in range(b.start, b.end)] for b in reporter.blocks}


def poll(reporter: MachineReporter, k: int, values: dict[str, Any], raw: dict[tuple[Table, int], int] | None = None):  # type: ignore[no-untyped-def]
    sample = reporter.read(T0 + k * 1000, registers(reporter, values, raw))
    reporter.tick(T0 + k * 1000 + 10)
    return sample


def test_first_read_is_a_key_frame_and_online(example_site: SiteConfig) -> None:
    reporter, sink = make(example_site)
    sample = poll(reporter, 0, GOOD)
    assert sample == Sample(ts=T0, values=GOOD)
    assert sink.batches == [[sample]]
    assert [(s.status, s.ts) for s in sink.statuses] == [(LinkStatus.ONLINE, T0)]
    assert reporter.stats["samples"] == 1 and reporter.stats["values_sent"] == len(GOOD)


def test_only_changes_then_a_key_frame_at_the_heartbeat(example_site: SiteConfig) -> None:
    reporter, sink = make(example_site)
    poll(reporter, 0, GOOD)
    assert poll(reporter, 1, GOOD) is None  # nothing changed: nothing sent, nothing published
    one_more = {**GOOD, "good_count": 813}
    assert poll(reporter, 2, one_more) == Sample(ts=T0 + 2000, values={"good_count": 813})
    stopped = {**one_more, "state": "STOPPED", "stop_reason": 4, "power_kw": 0.5}
    assert poll(reporter, 3, stopped) == Sample(
        ts=T0 + 3000, values={"state": "STOPPED", "stop_reason": 4, "power_kw": 0.5}
    )
    for k in range(4, 10):
        assert poll(reporter, k, stopped) is None
    # 10 s after the last key frame every signal goes out again.
    assert poll(reporter, 10, stopped) == Sample(ts=T0 + 10_000, values=stopped)
    assert [len(b[0].values) for b in sink.batches] == [10, 1, 3, 10]
    # Suppressed: poll 1 all 10; poll 2: 9; poll 3: 7; polls 4..9: 6 x 10 = 60; total 86.
    assert reporter.stats["values_suppressed"] == 86
    assert reporter.stats["quiet_polls"] == 7


def test_counter_wrap_is_unwrapped_and_persisted(example_site: SiteConfig) -> None:
    # good_count is a uint32 register: it wraps at 2**32.
    reporter, sink = make(example_site)
    poll(reporter, 0, {**GOOD, "good_count": 2**32 - 1})
    sample = poll(reporter, 1, {**GOOD, "good_count": 1})
    assert sample is not None
    assert sample.values == {"good_count": 2**32 + 1}  # 4294967295 -> 1 is +2 parts
    assert sink.offsets == [("good_count", float(2**32))]


def test_counter_reset_is_passed_on(example_site: SiteConfig) -> None:
    reporter, sink = make(example_site)
    poll(reporter, 0, GOOD)
    sample = poll(reporter, 1, {**GOOD, "good_count": 0, "reject_count": 0})
    assert sample is not None and sample.values == {"good_count": 0, "reject_count": 0}
    assert sink.offsets == []


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
    reporter, _ = make(example_site)
    with caplog.at_level(logging.WARNING, logger="shopfloor"):
        sample = poll(reporter, 0, GOOD, raw)
        assert poll(reporter, 1, GOOD, raw) is None  # unchanged: nothing more to send
    assert sample is not None
    assert sample.values == {k: v for k, v in GOOD.items() if k not in omitted}
    # Logged once per signal, not once per poll.
    lines = [r.getMessage() for r in caplog.records if "not decoded" in r.getMessage()]
    assert sorted(line.split("signal ")[1].split(" ")[0] for line in lines) == sorted(f"'{s}'" for s in omitted)
    assert reporter.stats["omitted_values"] == 2 * len(omitted)
    # When the registers decode again, the signal is sent again.
    sample = poll(reporter, 2, GOOD)
    assert sample is not None and set(sample.values) == omitted


def test_all_signals_undecodable_gives_no_sample(example_site: SiteConfig) -> None:
    machine = example_site.machines[0]
    profile = example_site.profile(machine.profile)
    profile = profile.model_copy(update={"registers": [r for r in profile.registers if r.signal == "state"]})
    sink = Collect()
    reporter = MachineReporter(machine, profile, sink)
    assert reporter.read(T0, registers(reporter, {}, {(Table.HOLDING, 0): 77})) is None
    assert sink.batches == []
    assert [s.status for s in sink.statuses] == [LinkStatus.ONLINE]  # it answered: reachable, just nonsense


def test_failure_flushes_marks_unreachable_once_and_the_next_read_is_a_key_frame(example_site: SiteConfig) -> None:
    reporter, sink = make(example_site, publish_s=5.0)
    poll(reporter, 0, GOOD)
    poll(reporter, 1, {**GOOD, "good_count": 813})
    assert sink.batches == []  # batched: 1.01 s + 1 s <= 5 s
    for k in range(2, 6):
        reporter.failed(T0 + k * 1000, "holding registers 0..27: no reply within 2.0 s")
        reporter.tick(T0 + k * 1000 + 10)
    # Pending samples went out before the unreachable status, and nothing after it.
    assert [len(b) for b in sink.batches] == [2]
    assert [(s.status, s.ts) for s in sink.statuses] == [(LinkStatus.ONLINE, T0), (LinkStatus.UNREACHABLE, T0 + 2000)]
    sample = poll(reporter, 6, {**GOOD, "good_count": 813})
    assert sink.statuses[-1].status is LinkStatus.ONLINE
    assert sink.statuses[-1].message == "machine 'cnc-01': reachable again after 4.0 s"
    # After an outage nothing is assumed: every signal is sent again.
    assert sample is not None and set(sample.values) == set(GOOD)
    assert reporter.stats["failures"] == 4 and reporter.stats["outages"] == 1


def test_publish_interval_batches_polls(example_site: SiteConfig) -> None:
    reporter, sink = make(example_site, publish_s=3.0)
    for k in range(6):
        poll(reporter, k, {**GOOD, "good_count": 812 + k})
    # Due when holding for one more poll would pass 3 s: at 2.01 s (2010 + 1000 > 3000) and at 5.01 s.
    assert [[s.ts - T0 for s in b] for b in sink.batches] == [[0, 1000, 2000], [3000, 4000, 5000]]


@pytest.mark.parametrize("ts", [0, -1, 10**15])
def test_implausible_clock_reports_nothing(example_site: SiteConfig, ts: int) -> None:
    reporter, sink = make(example_site)
    assert reporter.read(ts, registers(reporter, GOOD)) is None
    reporter.failed(ts, "boom")
    assert (sink.batches, sink.statuses) == ([], [])
    assert reporter.stats["clock_errors"] == 2


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
