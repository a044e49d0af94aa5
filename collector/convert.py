"""Pure conversions: wire messages to store points, written seqs to commit messages. No I/O."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import NamedTuple

from shopfloor.contracts import (
    CANONICAL_SIGNALS,
    SCHEMA_VERSION,
    SignalKind,
    SignalValue,
    StatusMessage,
    TelemetryBatch,
    Topic,
    TopicKind,
)
from shopfloor.influx import AGENT_STATUS, MACHINE_STATUS, TELEMETRY, Point, line_prefix, render_line
from shopfloor.influx import _field_value as field_value
from shopfloor.influx import _key as field_key

_FLOAT_SIGNALS = frozenset(name for name, kind in CANONICAL_SIGNALS.items() if kind is SignalKind.FLOAT)
_isfinite = math.isfinite


class Written(NamedTuple):
    """One telemetry batch the store has accepted (or dead-lettered for good): what a commit reports.

    A named tuple (one is made per message): hashed and ordered by its fields in this order.
    """

    site: str
    agent: str
    machine: str
    seq: int


def batch_to_points(batch: TelemetryBatch) -> list[Point]:
    """Turn a telemetry batch into one point per sample (samples without values carry nothing to write)."""
    tags = {"site": batch.site, "machine": batch.machine}
    return [Point(TELEMETRY, dict(tags), dict(sample.values), sample.ts) for sample in batch.samples if sample.values]


def telemetry_prefix(site: str, machine: str) -> str:
    """The measurement and tags every telemetry line of one machine starts with."""
    return line_prefix(TELEMETRY, {"site": site, "machine": machine})


def field_start(name: str) -> str:
    """How signal name's field starts in a line: its escaped key and "="."""
    return field_key(name) + "="


def stored_as_float(name: str) -> bool:
    """Whether the store keeps signal name as a float, so that an int of it is written as one (canonical floats)."""
    return name in _FLOAT_SIGNALS


def string_field(name: str, value: str) -> str:
    """A string value of signal name as a line's field value: quoted and escaped."""
    return field_value(name, value)


def batch_to_lines(batch: TelemetryBatch) -> list[str]:
    """Render a telemetry batch straight to line protocol: the lines of batch_to_points, without the copies.

    Every line is render_line's (tests/unit/test_contracts_fast.py): the per-field calls are inlined for floats and
    ints, and worked out once per batch for each sample layout (field order, escaped keys) and each string value.
    """
    prefix = line_prefix(TELEMETRY, {"site": batch.site, "machine": batch.machine})
    layouts: dict[tuple[str, ...], tuple[tuple[str, str, bool], ...]] = {}  # names -> sorted (name, "key=", float?)
    texts: dict[str, str] = {}  # string value -> its quoted, escaped field value
    lines: list[str] = []
    for sample in batch.samples:
        values = sample.values
        if not values:
            continue
        names = tuple(values)
        layout = layouts.get(names)
        if layout is None:
            layout = layouts[names] = tuple((n, field_key(n) + "=", n in _FLOAT_SIGNALS) for n in sorted(values))
        fields: list[str] = []
        for name, key, as_float in layout:
            value = values[name]
            t = type(value)
            if type(value) is float and _isfinite(value):
                fields.append(key + repr(value))
            elif t is int and not as_float:
                fields.append(f"{key}{value}i")
            elif type(value) is str:
                text = texts.get(value)
                if text is None:
                    text = texts[value] = field_value(name, value)
                fields.append(key + text)
            else:  # bools, ints written as floats, and what render_line refuses
                fields.append(key + field_value(name, value))
        lines.append(f"{prefix} {','.join(fields)} {sample.ts}")
    return lines


def batch_to_lines_reference(batch: TelemetryBatch) -> list[str]:
    """batch_to_lines through render_line: the reference it is tested against."""
    prefix = line_prefix(TELEMETRY, {"site": batch.site, "machine": batch.machine})
    return [render_line(prefix, sample.values, sample.ts) for sample in batch.samples if sample.values]


def status_to_point(topic: Topic, status: StatusMessage) -> Point:
    """Turn a machine status message received on topic into a machine_status point."""
    if topic.kind is not TopicKind.MACHINE_STATUS:
        raise ValueError(f"topic {topic} is not a machine status topic (agent statuses: agent_status_to_point)")
    fields: dict[str, SignalValue] = {"status": status.status.value, "agent": status.agent, "detail": status.detail}
    if status.heartbeat_ms is not None:
        fields["heartbeat_ms"] = status.heartbeat_ms
    if status.until is not None:
        fields["until"] = status.until
    return Point(MACHINE_STATUS, {"site": topic.site, "machine": topic.machine}, fields, status.ts)


def agent_status_to_point(topic: Topic, status: StatusMessage, received_ms: int) -> Point:
    """Turn an agent status received on topic into an agent_status point stamped received_ms.

    A last will carries the agent's connect time: when the collector received it is when the agent was lost.
    """
    if topic.kind is not TopicKind.AGENT_STATUS:
        raise ValueError(f"topic {topic} is not an agent status topic")
    fields: dict[str, SignalValue] = {"status": status.status.value, "detail": status.detail}
    return Point(AGENT_STATUS, {"site": topic.site, "agent": topic.agent}, fields, received_ms)


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Merge seqs into sorted, inclusive [first, last] ranges of consecutive numbers."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def commit_messages(written: Iterable[Written]) -> dict[Topic, bytes]:
    """Build one commit payload per (site, agent): {"v": 1, "machines": {machine: [[first, last], ...]}}."""
    per_agent: dict[tuple[str, str], dict[str, list[int]]] = {}
    for w in written:
        per_agent.setdefault((w.site, w.agent), {}).setdefault(w.machine, []).append(w.seq)
    out: dict[Topic, bytes] = {}
    for (site, agent), machines in sorted(per_agent.items()):
        body = {
            "v": SCHEMA_VERSION,
            "machines": {m: [list(r) for r in seq_ranges(seqs)] for m, seqs in sorted(machines.items())},
        }
        out[Topic.commits(site, agent)] = json.dumps(body, separators=(",", ":")).encode()
    return out
