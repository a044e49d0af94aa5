"""Timeline core: samples -> intervals, UNKNOWN with its reason, report by exception, counters, window independence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.core import UNKNOWN, Counts, Increment, Interval, build_timeline, classify, cut
from api.core.counters import counter_delta
from api.core.timeline import (
    AGENT_OFFLINE,
    FOREVER_MS,
    NO_DATA,
    OUTBOX_LOSS,
    REASONS,
    SILENCE,
    UNREACHABLE,
    StatusEvent,
    StatusIn,
    StatusKind,
    Timeline,
    _owned,
    merge,
)

T0 = 1_764_291_600_000
GAP = 4000  # max_gap_ms of a 1 s poll with factor 3 (+1 s)

Samples = list[tuple[int, Mapping[str, object]]]


def s(sec: float) -> int:
    return T0 + int(sec * 1000)


def sample(sec: float, **values: object) -> tuple[int, Mapping[str, object]]:
    return (s(sec), values)


def iv(
    a: float, b: float, state: str = UNKNOWN, badge: int = 0, job: str | None = None, stop: int | None = None
) -> Interval:
    return Interval(s(a), s(b), state, badge, job, stop)


def unk(a: float, b: float, reason: str) -> Interval:
    return Interval(s(a), s(b), reason=reason)


def ev(sec: float, kind: str, status: str, until: float | None = None) -> StatusEvent:
    return StatusEvent(s(sec), kind, status, None if until is None else s(until))  # type: ignore[arg-type]


def run(n: int, state: str = "RUNNING") -> Samples:
    """A sample each second 0..n-1 with the state and a good count rising by one each."""
    return [sample(t, state=state, good_count=t) for t in range(n)]


BASIC = [
    sample(0, state="RUNNING", badge=1001, job="J1", good_count=10, reject_count=0, energy_kwh=5.0),
    sample(1, state="RUNNING", badge=1001, job="J1", good_count=12, reject_count=0, energy_kwh=5.5),
    sample(2, state="IDLE", badge=1001, job="J1", good_count=12, reject_count=0, energy_kwh=5.75),
    sample(3, state="IDLE", badge=0, job="J1", good_count=12, reject_count=0, energy_kwh=5.75),
]


def test_basic_intervals_merge_and_hold_until_max_gap() -> None:
    tl = build_timeline(BASIC, [], s(0), s(10), GAP)
    assert tl.intervals == (
        iv(0, 2, "RUNNING", 1001, "J1"),
        iv(2, 3, "IDLE", 1001, "J1"),
        iv(3, 7, "IDLE", 0, "J1"),  # every value last came at 3 s: they hold to 3 + 4
        unk(7, 10, SILENCE),
    )
    assert tl.known_ms == 7000
    assert tl.coverage == pytest.approx(0.7)
    assert tl.unknown_by_reason() == {NO_DATA: 0, SILENCE: 3000, UNREACHABLE: 0, AGENT_OFFLINE: 0, OUTBOX_LOSS: 0}


def test_increments_belong_to_the_interval_before_the_sample() -> None:
    tl = build_timeline(BASIC, [], s(0), s(5), GAP)
    assert tl.increments == (
        Increment(s(1), Counts(good=2, kwh=0.5), iv(0, 1, "RUNNING", 1001, "J1")),
        Increment(s(2), Counts(kwh=0.25), iv(1, 2, "RUNNING", 1001, "J1")),
    )
    assert tl.totals() == Counts(good=2, kwh=0.75)
    assert tl.unattributed() == Counts()


@pytest.mark.parametrize(
    ("samples", "statuses", "expected"),
    [
        pytest.param(
            [sample(0, state="RUNNING"), sample(10, state="RUNNING")],
            [],
            [iv(0, 4, "RUNNING"), unk(4, 10, SILENCE), iv(10, 12, "RUNNING")],
            id="gap-beyond-max-gap-is-silence",
        ),
        pytest.param(
            [sample(0, state="RUNNING"), sample(4, state="RUNNING")],
            [],
            [iv(0, 8, "RUNNING"), unk(8, 12, SILENCE)],
            id="gap-of-exactly-max-gap-is-covered",
        ),
        pytest.param(
            [sample(0, state="RUNNING"), sample(3, state="RUNNING")],
            [(s(1), "unreachable"), (s(2), "online")],
            # The online status at 2 s does not end it: only the sample at 3 s does.
            [iv(0, 1, "RUNNING"), unk(1, 3, UNREACHABLE), iv(3, 7, "RUNNING"), unk(7, 12, SILENCE)],
            id="unreachable-until-next-sample",
        ),
        pytest.param(
            [sample(0, state="IDLE"), sample(2, state="IDLE")],
            [(s(0.5), "offline")],
            # A machine status "offline" (the agent stops watching it) counts as the agent's own.
            [iv(0, 0.5, "IDLE"), unk(0.5, 2, AGENT_OFFLINE), iv(2, 6, "IDLE"), unk(6, 12, SILENCE)],
            id="machine-status-offline-is-agent-offline",
        ),
        pytest.param(
            [sample(0, state="IDLE"), sample(2, state="IDLE")],
            [(s(0), "unreachable"), (s(1), "online")],
            [iv(0, 6, "IDLE"), unk(6, 12, SILENCE)],
            id="status-at-sample-time-is-before-the-sample",
        ),
        pytest.param(
            [sample(1, state="STOPPED", stop_reason=7), sample(2, badge=1001), sample(3, state="OFF", job="x")],
            [],
            [
                unk(0, 1, NO_DATA),  # before the first sample
                iv(1, 2, "STOPPED", 0, None, 7),
                iv(2, 3, "STOPPED", 1001, None, 7),
                # state 3 + 4 = 7, badge 2 + 4 = 6, job 3 + 4 = 7, stop reason 1 + 4 = 5: the oldest lapses first.
                iv(3, 5, "OFF", 1001, "x", 7),
                unk(5, 12, SILENCE),
            ],
            id="missing-signals-carry-forward-each-for-its-own-allowance",
        ),
        pytest.param(
            [sample(0, badge=1001), sample(1, state="EXPLODED"), sample(2, state="IDLE", badge=-5, job=3)],
            [],
            # 0..1: no state has come yet; 1..2: a state that is not one.
            [unk(0, 2, NO_DATA), iv(2, 6, "IDLE"), unk(6, 12, SILENCE)],
            id="missing-or-invalid-state-is-no-data",
        ),
        pytest.param(
            [sample(0, state="IDLE", badge=True), sample(1, state="IDLE", badge="1001", stop_reason=1.5)],
            [],
            [iv(0, 5, "IDLE"), unk(5, 12, SILENCE)],
            id="wrongly-typed-values-are-ignored",
        ),
        pytest.param(
            [sample(2, state="IDLE"), sample(0, state="RUNNING"), sample(2, state="SETUP")],
            [],
            [iv(0, 2, "RUNNING"), iv(2, 6, "SETUP"), unk(6, 12, SILENCE)],
            id="unsorted-and-duplicate-timestamps",
        ),
        pytest.param([], [(s(1), "online")], [unk(0, 12, NO_DATA)], id="no-samples"),
    ],
)
def test_intervals_table(samples: Samples, statuses: list[StatusIn], expected: list[Interval]) -> None:
    tl = build_timeline(samples, statuses, s(0), s(12), GAP)
    assert list(tl.intervals) == expected
    assert tl.intervals[0].start_ms == s(0) and tl.intervals[-1].end_ms == s(12)


# ---- report by exception: each value holds until that signal's next value, at most GAP after it ------------------


def test_a_value_holds_across_samples_without_it_and_lapses_after_its_allowance() -> None:
    samples = [
        sample(0, state="RUNNING", badge=1001, good_count=0),
        sample(2, good_count=1),  # counters only: state and badge hold
        sample(3.5, state="IDLE"),
        sample(5, good_count=2),  # proves the link alive, but the badge of 0 s lapsed at 0 + 4
        sample(6, badge=1001),
    ]
    tl = build_timeline(samples, [], s(0), s(10), GAP)
    assert tl.intervals == (
        iv(0, 3.5, "RUNNING", 1001),
        iv(3.5, 4, "IDLE", 1001),  # badge 0 + 4 = 4 < state 3.5 + 4
        unk(4, 6, SILENCE),  # no badge value younger than 4 s until the badge comes again at 6 s
        iv(6, 7.5, "IDLE", 1001),  # the badge is fresh (6 + 4 = 10), the state of 3.5 s lapses at 7.5
        unk(7.5, 10, SILENCE),
    )
    # The part at 2 s was made in [0, 2) RUNNING 1001; the one at 5 s after the badge lapsed: unattributed.
    assert tl.increments == (
        Increment(s(2), Counts(good=1), iv(0, 2, "RUNNING", 1001)),
        Increment(s(5), Counts(good=1), None),
    )


def test_samples_of_other_signals_do_not_renew_a_value() -> None:
    # One state value, then a counter every second: the state still holds only 0 + 4 s.
    samples = [sample(0, state="RUNNING", good_count=0), *[sample(t, good_count=t) for t in range(1, 8)]]
    tl = build_timeline(samples, [], s(0), s(10), GAP)
    assert tl.intervals == (iv(0, 4, "RUNNING"), unk(4, 10, SILENCE))
    # Parts at 1..4 s: made while RUNNING held (the previous sample's stretch reaches each); 5..7 s: unattributed.
    assert tl.totals() == Counts(good=7)
    assert tl.unattributed() == Counts(good=3)


def test_a_value_renewed_by_its_heartbeat_holds_on() -> None:
    # Every signal again at its heartbeat (3 s), counters in between: known throughout.
    samples = [sample(t, good_count=t) for t in range(10)]
    for t in (0, 3, 6, 9):
        samples[t] = sample(t, state="RUNNING", badge=1001, job="J1", stop_reason=0, good_count=t)
    tl = build_timeline(samples, [], s(0), s(14), GAP)
    assert tl.intervals == (iv(0, 13, "RUNNING", 1001, "J1", 0), unk(13, 14, SILENCE))  # 9 + 4 = 13
    assert tl.unattributed() == Counts()


# ---- reasons -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "statuses", "expected"),
    [
        pytest.param(
            [sample(0, state="RUNNING"), sample(1, state="RUNNING"), sample(5, state="RUNNING")],
            # The will, stamped when the broker published it; the agent back (online) at 4 s; its resent sample at 5 s.
            [ev(3, "agent", "offline"), ev(4, "agent", "online")],
            [iv(0, 3, "RUNNING"), unk(3, 5, AGENT_OFFLINE), iv(5, 9, "RUNNING"), unk(9, 12, SILENCE)],
            id="agent-offline-by-last-will-until-the-next-sample",
        ),
        pytest.param(
            [sample(0, state="IDLE"), sample(2, state="IDLE")],
            [ev(1, "machine", "unreachable")],
            [iv(0, 1, "IDLE"), unk(1, 2, UNREACHABLE), iv(2, 6, "IDLE"), unk(6, 12, SILENCE)],
            id="unreachable-as-a-status-event",
        ),
        pytest.param(
            run(9),
            # Lost from 2 s to 5 s: [2, 6) (6 s is the first sample after 5 s), though 2..5 s are stored.
            [ev(2, "machine", "unreachable", until=5)],
            [iv(0, 2, "RUNNING"), unk(2, 6, OUTBOX_LOSS), iv(6, 12, "RUNNING")],  # 8 + 4 = 12
            id="outbox-loss-over-stored-samples",
        ),
        pytest.param(
            run(9),
            [ev(2.5, "machine", "unreachable", until=3.2)],
            [iv(0, 2.5, "RUNNING"), unk(2.5, 4, OUTBOX_LOSS), iv(4, 12, "RUNNING")],
            id="outbox-loss-until-between-samples-ends-at-the-next",
        ),
        pytest.param(
            run(9),
            [ev(2, "machine", "unreachable", until=2)],
            [iv(0, 2, "RUNNING"), unk(2, 3, OUTBOX_LOSS), iv(3, 12, "RUNNING")],
            id="outbox-loss-of-one-sample-at-its-own-ts",
        ),
        pytest.param(
            run(9),
            [ev(2, "machine", "unreachable", until=1)],  # until before ts counts as ts: the sample at 2 s is lost
            [iv(0, 2, "RUNNING"), unk(2, 3, OUTBOX_LOSS), iv(3, 12, "RUNNING")],
            id="outbox-loss-until-before-ts",
        ),
        pytest.param(
            run(4),
            # After the last sample (3 s, holding to 7 s): a loss with nothing after it holds open-ended.
            [ev(5, "machine", "unreachable", until=6)],
            [iv(0, 5, "RUNNING"), unk(5, 12, OUTBOX_LOSS)],
            id="outbox-loss-after-the-last-sample",
        ),
        pytest.param(
            run(9),
            [ev(1, "machine", "online", until=5), ev(1.5, "agent", "unreachable", until=5)],
            [iv(0, 1.5, "RUNNING"), unk(1.5, 2, AGENT_OFFLINE), iv(2, 12, "RUNNING")],
            id="until-counts-only-on-a-machine-unreachable",
        ),
        pytest.param(
            [sample(3, state="RUNNING")],
            [ev(1, "machine", "unreachable")],
            [unk(0, 1, NO_DATA), unk(1, 3, UNREACHABLE), iv(3, 7, "RUNNING"), unk(7, 12, SILENCE)],
            id="status-before-the-first-sample",
        ),
        pytest.param(
            [],
            [ev(2, "agent", "offline"), ev(5, "agent", "online")],
            [unk(0, 2, NO_DATA), unk(2, 12, AGENT_OFFLINE)],
            id="statuses-without-samples",
        ),
        pytest.param(
            [sample(0, state="RUNNING")],
            [ev(6, "machine", "unreachable")],
            [iv(0, 4, "RUNNING"), unk(4, 6, SILENCE), unk(6, 12, UNREACHABLE)],
            id="status-after-the-last-sample-holds-open-ended",
        ),
    ],
)
def test_unknown_reasons_table(samples: Samples, statuses: list[StatusIn], expected: list[Interval]) -> None:
    assert list(build_timeline(samples, statuses, s(0), s(12), GAP).intervals) == expected


@pytest.mark.parametrize(
    ("samples", "statuses", "expected"),
    [
        pytest.param(
            [sample(0, state="RUNNING"), sample(10, state="RUNNING")],
            [ev(5, "machine", "unreachable"), ev(7, "agent", "offline")],
            # 0 + 4 = 4: silence; then each stronger status from its own time until the sample at 10 s.
            [iv(0, 4, "RUNNING"), unk(4, 5, SILENCE), unk(5, 7, UNREACHABLE), unk(7, 10, AGENT_OFFLINE)],
            id="silence-then-unreachable-then-agent-offline",
        ),
        pytest.param(
            [sample(0, state="RUNNING"), sample(10, state="RUNNING")],
            [ev(5, "agent", "offline"), ev(7, "machine", "unreachable")],
            # The weaker status later in the same gap changes nothing.
            [iv(0, 4, "RUNNING"), unk(4, 5, SILENCE), unk(5, 10, AGENT_OFFLINE)],
            id="agent-offline-outranks-a-later-unreachable",
        ),
        pytest.param(
            run(11),
            [ev(1.5, "machine", "unreachable"), ev(3, "machine", "unreachable", until=6), ev(4.5, "agent", "offline")],
            # 1.5..2 unreachable (ended by the sample at 2 s); 3..7 the loss, the agent offline inside it outranked.
            [
                iv(0, 1.5, "RUNNING"),
                unk(1.5, 2, UNREACHABLE),
                iv(2, 3, "RUNNING"),
                unk(3, 7, OUTBOX_LOSS),
                iv(7, 10, "RUNNING"),
            ],
            id="a-loss-outranks-every-status",
        ),
        pytest.param(
            run(11),
            [ev(2, "machine", "unreachable", until=4), ev(3, "machine", "unreachable", until=6)],
            [
                iv(0, 2, "RUNNING"),
                unk(2, 7, OUTBOX_LOSS),
                iv(7, 10, "RUNNING"),
            ],  # the later one extends the first: to 6 + 1
            id="overlapping-losses-join",
        ),
        pytest.param(
            run(11),
            [ev(2, "machine", "unreachable", until=7), ev(3, "machine", "unreachable", until=4)],
            [iv(0, 2, "RUNNING"), unk(2, 8, OUTBOX_LOSS), iv(8, 10, "RUNNING")],  # a loss inside another ends nothing
            id="nested-losses",
        ),
        pytest.param(
            [sample(0, state="RUNNING", badge=1001), *[sample(t, state="RUNNING") for t in range(1, 10)]],
            [ev(6.5, "machine", "unreachable")],
            # The badge of 0 s lapses at 4 s while states keep coming: silence, unreachable from 6.5 s to the
            # sample at 7 s, then silence again (the badge is still missing).
            [iv(0, 4, "RUNNING", 1001), unk(4, 6.5, SILENCE), unk(6.5, 7, UNREACHABLE), unk(7, 10, SILENCE)],
            id="a-lapsed-value-with-a-status-inside",
        ),
    ],
)
def test_overlapping_reasons_table(samples: Samples, statuses: list[StatusIn], expected: list[Interval]) -> None:
    tl = build_timeline(samples, statuses, s(0), s(10), GAP)
    assert list(tl.intervals) == expected
    assert sum(tl.unknown_by_reason().values()) == tl.window_ms - tl.known_ms


def test_a_loss_span_keeps_its_increments_unattributed() -> None:
    samples = [sample(t, state="RUNNING", badge=1001, good_count=t) for t in range(9)]
    tl = build_timeline(samples, [ev(2, "machine", "unreachable", until=5)], s(0), s(12), GAP)
    assert tl.intervals == (iv(0, 2, "RUNNING", 1001), unk(2, 6, OUTBOX_LOSS), iv(6, 12, "RUNNING", 1001))
    owners = [(i.ts_ms, i.owner) for i in tl.increments]
    assert owners == [
        (s(1), iv(0, 1, "RUNNING", 1001)),
        (s(2), iv(1, 2, "RUNNING", 1001)),  # made in [1, 2), before the loss began
        (s(3), None),  # the samples at 2..5 s are inside the loss: what follows them is nobody's
        (s(4), None),
        (s(5), None),
        (s(6), None),  # made in [5, 6), still inside the loss
        (s(7), iv(6, 7, "RUNNING", 1001)),
        (s(8), iv(7, 8, "RUNNING", 1001)),
    ]
    # 8 parts in all (0 -> 8), 4 of them across the loss.
    assert (tl.totals(), tl.unattributed()) == (Counts(good=8), Counts(good=4))


def test_unknown_by_reason_sums_the_unknown_time_per_reason() -> None:
    samples = [sample(3, state="RUNNING"), sample(13, state="RUNNING")]
    statuses = [ev(8, "machine", "unreachable"), ev(10, "agent", "offline"), ev(15, "machine", "unreachable", until=16)]
    tl = build_timeline(samples, statuses, s(0), s(20), GAP)
    # 0..3 before any data; 3..7 RUNNING; 7..8 silence; 8..10 unreachable; 10..13 agent offline; 13..15 RUNNING;
    # 15..20 the loss (nothing after it).
    assert tl.unknown_by_reason() == {
        NO_DATA: 3000,
        SILENCE: 1000,
        UNREACHABLE: 2000,
        AGENT_OFFLINE: 3000,
        OUTBOX_LOSS: 5000,
    }
    assert list(tl.unknown_by_reason()) == list(REASONS)
    assert tl.known_ms == 4000 + 2000
    assert tl.coverage == pytest.approx(6 / 20)


def test_old_status_tuples_mean_machine_statuses() -> None:
    samples = [sample(t, state="IDLE") for t in range(6)]
    as_tuples: list[StatusIn] = [(s(1.5), "unreachable"), (s(3.5), "offline"), (s(4.5), "online")]
    as_events: list[StatusIn] = [ev(1.5, "machine", "unreachable"), ev(3.5, "agent", "offline")]
    assert classify(samples, as_tuples, GAP) == classify(samples, as_events, GAP)


def test_status_event_refuses_an_unknown_kind_and_reads_stored_fields() -> None:
    with pytest.raises(ValueError, match="kind must be 'machine' or 'agent', got 'plc'"):
        StatusEvent(s(0), "plc", "online")  # type: ignore[arg-type]
    fields = {"status": "unreachable", "agent": "edge-1", "detail": "outbox full", "until": s(5), "heartbeat_ms": 1}
    assert StatusEvent.from_fields(s(1), "machine", fields) == StatusEvent(
        s(1), "machine", "unreachable", s(5), "edge-1"
    )
    # Whatever else a row holds (a float, a bool, a string until) is not an until.
    for until in (5.0, True, "5"):
        assert StatusEvent.from_fields(s(1), "machine", {"status": "unreachable", "until": until}).until_ms is None
    assert StatusEvent.from_fields(s(1), "agent", {}) == StatusEvent(s(1), "agent", "")
    # An agent status row keeps the agent as a tag: given, it wins over a field.
    offline = StatusEvent.from_fields(s(1), "agent", {"status": "offline", "agent": "x"}, agent="edge-2")
    assert offline == StatusEvent(s(1), "agent", "offline", None, "edge-2")


def test_the_classified_timeline_is_open_ended() -> None:
    tl = classify([sample(0, state="RUNNING")], [], GAP)
    assert tl.intervals == (iv(0, 4, "RUNNING"), Interval(s(4), FOREVER_MS, reason=SILENCE))
    assert (tl.start_ms, tl.end_ms) == (s(0), FOREVER_MS)
    assert classify([], [], GAP) == Timeline(0, 0, ())


# ---- counters ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "delta"),
    [(10, 12, 2), (12, 12, 0), (100, 3, 3), (5, 0, 0), (10.5, 0.5, 0.5), (1.25, 2.0, 0.75)],
)
def test_counter_delta_resets_never_negative(previous: float, current: float, delta: float) -> None:
    assert counter_delta(previous, current) == delta


def test_counter_reset_counts_from_new_value() -> None:
    samples = [
        sample(0, state="RUNNING", good_count=100, reject_count=4, energy_kwh=10.5),
        sample(1, state="RUNNING", good_count=3, reject_count=5, energy_kwh=0.5),
        sample(2, state="RUNNING", good_count=4, reject_count=5, energy_kwh=0.75),
    ]
    tl = build_timeline(samples, [], s(0), s(3), GAP)
    assert [i.counts for i in tl.increments] == [Counts(3, 1, 0.5), Counts(1, 0, 0.25)]
    assert all(i.counts.good >= 0 and i.counts.reject >= 0 and i.counts.kwh >= 0 for i in tl.increments)


@pytest.mark.parametrize(
    ("samples", "statuses"),
    [
        pytest.param(
            [sample(0, state="RUNNING", good_count=1), sample(10, state="RUNNING", good_count=6)], [], id="long-gap"
        ),
        pytest.param(
            [sample(0, state="RUNNING", good_count=1), sample(2, state="RUNNING", good_count=6)],
            [(s(1), "unreachable")],
            id="unreachable",
        ),
        pytest.param(
            [sample(0, state="RUNNING", good_count=1), sample(2, state="RUNNING", good_count=6)],
            [ev(1, "agent", "offline")],
            id="agent-offline",
        ),
        pytest.param(
            [sample(0, good_count=1), sample(2, state="RUNNING", good_count=6)], [], id="previous-state-unknown"
        ),
    ],
)
def test_delta_across_unknown_is_counted_but_unattributed(samples: Samples, statuses: list[StatusIn]) -> None:
    tl = build_timeline(samples, statuses, s(0), s(12), GAP)
    assert tl.increments == (Increment(samples[1][0], Counts(good=5), None),)
    assert tl.totals() == tl.unattributed() == Counts(good=5)


def test_increment_counts_in_window_when_its_sample_is_in_start_exclusive_end_inclusive() -> None:
    samples = [sample(t, state="RUNNING", good_count=t) for t in range(6)]
    full = classify(samples, [], GAP)
    assert [i.ts_ms for i in cut(full, s(1), s(3)).increments] == [s(2), s(3)]
    assert [i.ts_ms for i in cut(full, s(3), s(5)).increments] == [s(4), s(5)]


# ---- window independence -------------------------------------------------------------------------------------------

WINDOW_DATA = [
    sample(0, state="IDLE", badge=1001, good_count=0, energy_kwh=0.0),
    sample(1, state="RUNNING", badge=1001, good_count=0, energy_kwh=0.0),
    sample(2, state="RUNNING", badge=1001, good_count=2, energy_kwh=0.5),
    sample(3, state="RUNNING", badge=1001, good_count=4, energy_kwh=1.0),
    sample(9, state="RUNNING", badge=1001, good_count=9, energy_kwh=1.5),
    sample(10, state="STOPPED", badge=2001, stop_reason=3, good_count=9, energy_kwh=1.5),
    sample(11, state="STOPPED", badge=2001, stop_reason=3, good_count=1, energy_kwh=1.75),
    sample(12, state="OFF", badge=0, good_count=1, energy_kwh=1.75),
]
SHAPING_AND_COUNTERS = ("state", "badge", "job", "stop_reason", "good_count", "reject_count", "energy_kwh")


def _loss_until(status: StatusIn) -> int | None:
    if isinstance(status, StatusEvent) and status.kind == "machine" and status.status == "unreachable":
        return None if status.until_ms is None else max(status.until_ms, status.ts_ms)
    return None


def fetch(
    samples: Samples, statuses: Sequence[StatusIn], start: int, end: int, gap: int
) -> tuple[Samples, list[StatusIn]]:
    """What the shell must fetch for [start, end) (the module docstring's rule), from data sorted by time.

    Samples from start - gap through end, each signal's newest value before that and the newest sample before it;
    the statuses after that newest sample through end, and every outbox loss still open at that sample.
    """
    lookback = start - gap
    older = [x for x in samples if x[0] < lookback]
    baselines: dict[int, dict[str, object]] = {}
    for signal in SHAPING_AND_COUNTERS:
        holding = [x for x in older if signal in x[1]]
        if holding:
            baselines.setdefault(holding[-1][0], {})[signal] = holding[-1][1][signal]
    fetched: Samples = [(ts, baselines[ts]) for ts in sorted(baselines)]
    fetched += older[-1:]  # given after its baseline of the same ts, it replaces it: it holds all of it
    fetched += [x for x in samples if lookback <= x[0] <= end]
    last = older[-1][0] if older else None
    wanted: list[StatusIn] = []
    for status in statuses:
        ts = status.ts_ms if isinstance(status, StatusEvent) else status[0]
        until = _loss_until(status)
        if ts <= end and (last is None or ts > last or (until is not None and until >= last)):
            wanted.append(status)
    return fetched, wanted


@pytest.mark.parametrize(("start", "end"), [(0, 20), (0.5, 2.5), (2, 10.5), (5, 9), (9.5, 11), (10.25, 30)])
def test_result_does_not_depend_on_the_query_window(start: float, end: float) -> None:
    full = cut(classify(WINDOW_DATA, [], GAP), s(-5), s(40))
    fetched, statuses = fetch(WINDOW_DATA, [], s(start), s(end), GAP)
    assert build_timeline(fetched, statuses, s(start), s(end), GAP) == cut(full, s(start), s(end))


@pytest.mark.parametrize(
    ("samples", "statuses", "window", "expected"),
    [
        pytest.param(
            run(21),
            # Look-back 10 - 4 = 6; the newest sample before it is at 5 s, inside the loss (5..12 s, to 13 s).
            [ev(5, "machine", "unreachable", until=12)],
            (10, 15),
            [unk(10, 13, OUTBOX_LOSS), iv(13, 15, "RUNNING")],
            id="a-loss-begun-before-the-look-back",
        ),
        pytest.param(
            [sample(0, state="RUNNING")],
            # Look-back 8 - 4 = 4; the status at 2 s, after the newest sample before it, still holds.
            [ev(2, "machine", "unreachable")],
            (8, 12),
            [unk(8, 12, UNREACHABLE)],
            id="a-status-after-the-newest-sample-before-the-look-back",
        ),
        pytest.param(
            [sample(0, state="RUNNING"), sample(1, power_kw=1.0)],
            # The sample at 1 s (no signal of the timeline's) ends the unreachable of 0.5 s: silence after 0 + 4.
            [ev(0.5, "machine", "unreachable")],
            (8, 12),
            [unk(8, 12, SILENCE)],
            id="a-status-ended-before-the-look-back",
        ),
    ],
)
def test_the_look_back_fetch_keeps_what_reaches_into_the_window(
    samples: Samples, statuses: list[StatusIn], window: tuple[float, float], expected: list[Interval]
) -> None:
    start, end = s(window[0]), s(window[1])
    whole = cut(classify(samples, statuses, GAP), start, end)
    assert list(whole.intervals) == expected
    fetched, wanted = fetch(samples, statuses, start, end, GAP)
    assert build_timeline(fetched, wanted, start, end, GAP) == whole


def test_window_cuts_add_up() -> None:
    full = classify(WINDOW_DATA, [], GAP)
    whole = cut(full, s(0), s(20))
    parts = [cut(full, s(a), s(b)) for a, b in [(0, 2.5), (2.5, 9.5), (9.5, 20)]]
    # Known: 0..7 (samples to 3 s, then GAP), 9..15 (samples to 12 s; the stop reason last came at 11 s and lapses at
    # 11 + 4 = 15, before the state and badge of 12 s do); 7..9 and 15..20 are silence.
    assert sum(p.known_ms for p in parts) == whole.known_ms == 7000 + 6000
    assert whole.unknown_by_reason()[SILENCE] == 2000 + 5000
    # 2 + 2 + 5 (across the gap) + 1 (after the reset at 11 s) parts.
    assert sum((p.totals() for p in parts), Counts()) == whole.totals() == Counts(good=10, kwh=1.75)
    assert whole.unattributed() == Counts(good=5, kwh=0.5)


STATES = st.sampled_from(["RUNNING", "IDLE", "STOPPED", "EXPLODED"])


@st.composite
def machine_data(draw: st.DrawFn) -> tuple[Samples, list[StatusIn], int]:
    """Report-by-exception samples of random signals at half seconds over 0..30 s, random statuses and losses."""
    times = sorted(draw(st.sets(st.integers(0, 60), max_size=25)))
    samples: Samples = []
    good = 0
    for t in times:
        values: dict[str, object] = {}
        if draw(st.booleans()):
            values["state"] = draw(STATES)
        if draw(st.integers(0, 3)) == 0:
            values["badge"] = draw(st.sampled_from([0, 1001, 2002]))
        if draw(st.integers(0, 4)) == 0:
            values["job"] = draw(st.sampled_from(["J1", "J2", ""]))
        if draw(st.integers(0, 4)) == 0:
            values["stop_reason"] = draw(st.sampled_from([1, 2]))
        if draw(st.booleans()):
            good = draw(st.sampled_from([good, good + 1, good + 2, 0]))  # 0: a reset
            values["good_count"] = good
        samples.append((T0 + t * 500, values))
    statuses: list[StatusIn] = []
    for _ in range(draw(st.integers(0, 4))):
        ts = T0 + draw(st.integers(-4, 64)) * 500
        kind: StatusKind = draw(st.sampled_from(["machine", "agent"]))
        status = draw(st.sampled_from(["online", "unreachable", "offline"]))
        until = ts + draw(st.integers(-2, 20)) * 500 if kind == "machine" and draw(st.booleans()) else None
        statuses.append(StatusEvent(ts, kind, status, until))
        if draw(st.integers(0, 3)) == 0:
            statuses.append((ts + 250, draw(st.sampled_from(["online", "unreachable", "offline"]))))
    return samples, statuses, draw(st.sampled_from([1000, 2000, 4000]))


@settings(max_examples=300, deadline=None)
@given(data=machine_data(), edges=st.lists(st.integers(-10, 80), min_size=3, max_size=3, unique=True))
def test_cutting_a_classified_timeline_is_additive(data: tuple[Samples, list[StatusIn], int], edges: list[int]) -> None:
    samples, statuses, gap = data
    a, b, c = (T0 + e * 500 for e in sorted(edges))
    full = classify(samples, statuses, gap)
    left, right, whole = cut(full, a, b), cut(full, b, c), cut(full, a, c)
    assert tuple(merge([*left.intervals, *right.intervals])) == whole.intervals
    assert (*left.increments, *right.increments) == whole.increments
    assert (*left.anomalies, *right.anomalies) == whole.anomalies
    assert left.known_ms + right.known_ms == whole.known_ms
    assert {r: left.unknown_by_reason()[r] + right.unknown_by_reason()[r] for r in REASONS} == whole.unknown_by_reason()


@settings(max_examples=300, deadline=None)
@given(data=machine_data(), window=st.lists(st.integers(-10, 80), min_size=2, max_size=2, unique=True))
def test_a_window_fetched_with_its_look_back_equals_the_window_of_everything(
    data: tuple[Samples, list[StatusIn], int], window: list[int]
) -> None:
    samples, statuses, gap = data
    start, end = (T0 + e * 500 for e in sorted(window))
    fetched, wanted = fetch(samples, statuses, start, end, gap)
    assert build_timeline(fetched, wanted, start, end, gap) == cut(classify(samples, statuses, gap), start, end)


def test_window_must_not_be_empty_and_max_gap_positive() -> None:
    with pytest.raises(ValueError, match="after its start"):
        build_timeline(BASIC, [], s(5), s(5), GAP)
    with pytest.raises(ValueError, match="max_gap_ms"):
        classify(BASIC, [], 0)


def test_empty_job_register_means_no_job() -> None:
    tl = build_timeline([sample(0, state="IDLE", job=""), sample(1, state="SETUP", job="J2")], [], s(0), s(2), GAP)
    assert tl.intervals == (iv(0, 1, "IDLE"), iv(1, 2, "SETUP", job="J2"))


@pytest.mark.parametrize(
    "key",
    [("RUNNING", 1001, "J1", None, None), ("STOPPED", 0, None, 3, None), ("IDLE", 7, "", 0, "silence")],
)
def test_an_owned_increment_is_the_dataclass_one(key: tuple[str, int, str | None, int | None, str | None]) -> None:
    # classify builds owner Interval and Increment slot by slot (timeline._owned): the same value, as immutable.
    made = _owned(5000, Counts(good=2, kwh=0.5), 4000, 5000, key)
    expected = Increment(5000, Counts(good=2, kwh=0.5), Interval(4000, 5000, *key))
    assert made == expected
    assert hash(made) == hash(expected)
    assert repr(made) == repr(expected)
    assert made.owner is not None
    with pytest.raises(FrozenInstanceError):
        made.owner.badge = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        made.ts_ms = 1  # type: ignore[misc]
