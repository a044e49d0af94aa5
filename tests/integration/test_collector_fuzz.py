"""Fuzz the collector through a real broker into a real InfluxDB, with the registry as the oracle.

Hypothesis draws lists of ~90 messages per example (valid batches of the example site's machines from edge-1 with
current timestamps, every kind of mutation of them, statuses, random bytes, random topics under shopfloor/v1/);
about 30 examples make well over 2,000 messages. One collector (registry from the example site, a dead-letter file)
takes them all over one fresh Mosquitto and writes to one fresh database. After each example the test waits until
the collector has handled every message it was sent, then checks against what Registry.check_telemetry /
check_machine_status / check_agent_status (tested at unit level) say about each message:

- the collector is still connected, its writer thread alive, and nothing was an internal-error;
- every refused message was counted and dead-lettered with the registry's kind (and only those, plus the seq
  conflicts a SeqMemory of the test's own predicts, which are written all the same);
- every accepted message was written: the store holds exactly the accepted samples and statuses at their machine
  and ts, nothing else (no field, tag value or point of a refused message);
- received == written + refused + ignored.

Timestamps are drawn as offsets from the time the example is rendered, at least 10 minutes away from the skew
window's edges, so the few seconds between the test's oracle and the collector's clock cannot change a verdict.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from collector.convert import agent_status_to_point, batch_to_lines, status_to_point
from collector.history import SAMPLE_CONFLICT
from collector.registry import MAX_EXACT, Registry, SeqMemory, SignalRule, ValueKind
from collector.service import SEQ_CONFLICT, Collector
from launcher.services import Mosquitto
from shopfloor.config import SiteConfig
from shopfloor.contracts import (
    MAX_PAYLOAD_BYTES,
    RESERVED_SIGNALS,
    LinkStatus,
    PayloadError,
    StatusMessage,
    Topic,
    TopicKind,
    subscription_filters,
)
from shopfloor.influx import InfluxStore, to_line
from shopfloor.mqtt import MqttLink, MqttSettings

pytestmark = pytest.mark.integration

MIN = 60_000
DAY = 86_400_000
SITE = "bdg"
MIN_PAYLOADS = 2_000
EXAMPLES = 32
PER_EXAMPLE = (75, 100)
FILTERS = subscription_filters(SITE)  # what the collector subscribes to: its own site's topics

# ---- strategies ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rel:
    """A timestamp relative to the moment the example is rendered (resolved by render())."""

    offset_ms: int


# Inside the skew window (5 min ahead, 7 days back) with 10 minutes' margin at the back and 2 at the front.
VALID_OFFSETS = st.one_of(
    st.sampled_from([0, -1, 1, -1000, 2 * MIN, -7 * DAY + 10 * MIN]),
    st.integers(min_value=-10 * MIN, max_value=2 * MIN),
    st.integers(min_value=-7 * DAY + 10 * MIN, max_value=2 * MIN),
)
TOO_NEW = st.one_of(st.just(7 * DAY), st.integers(min_value=15 * MIN, max_value=365 * DAY))
TOO_OLD = st.one_of(st.just(-8 * DAY), st.integers(min_value=-20 * 365 * DAY, max_value=-7 * DAY - 15 * MIN))

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**53, 2**53 + 1, 2**63, 10**12, 10**16, 65535, 65536]),
    st.floats(),
    st.sampled_from([1.7e308, -0.0, 1e-300, 0.5]),
    st.text(max_size=20),
    st.sampled_from(["RUNNING", "running", "OFF", "", "J-1", "12", "1.5", "x" * 300]),
)
JSON_VALUES = st.one_of(
    JSON_SCALARS,
    st.recursive(
        JSON_SCALARS,
        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
        max_leaves=3,
    ),
)
TS_ANY = st.one_of(
    VALID_OFFSETS.map(Rel),
    TOO_NEW.map(Rel),
    TOO_OLD.map(Rel),
    st.sampled_from([4_070_908_800_000, 4_102_444_800_001, 946_684_799_999, 0, -1]),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    JSON_SCALARS,
)
# Mosquitto disconnects a client publishing to a topic with a control character or a Unicode noncharacter (it
# never reaches a subscriber): those are the broker's to refuse, not the collector's.
TOPIC_CHARS = st.characters(blacklist_characters="+#", blacklist_categories=["Cc", "Cs", "Cn"])


def _value_for(rule: SignalRule) -> st.SearchStrategy[Any]:
    """Values a registry rule accepts (the mutations below make the others)."""
    if rule.labels is not None:
        return st.sampled_from(sorted(rule.labels))
    if rule.kind is ValueKind.STR:
        # Quotes, backslashes, commas, equals signs, spaces, tabs, unicode: line protocol must escape them all.
        # Not a newline: the store keeps "a\nb" as "a\\nb" (test_a_newline_in_a_string_value_is_stored_verbatim).
        return st.text(
            st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=rule.max_length
        ) | st.sampled_from(['a"b', "a\\", "a\\n", "a,b=c d", '\\\\"', "é✓", "a\tb\rc"])
    if rule.kind is ValueKind.BOOL:
        return st.booleans()
    low, high = max(rule.low, -MAX_EXACT), min(rule.high, MAX_EXACT)
    if rule.kind is ValueKind.INT:
        return st.integers(min_value=int(low), max_value=int(high)) | st.sampled_from([int(low), int(high)])
    return st.floats(min_value=low, max_value=high, allow_nan=False) | st.integers(
        min_value=int(low), max_value=min(int(high), 2**31)
    )


def _outside(rule: SignalRule) -> st.SearchStrategy[Any]:
    """Values of the right type just outside what a rule allows (or not finite)."""
    if rule.labels is not None:
        return st.sampled_from([label.lower() for label in sorted(rule.labels)] + ["EXPLODED", ""])
    if rule.kind is ValueKind.STR:
        return st.just("x" * (rule.max_length + 1))
    if rule.kind is ValueKind.BOOL:
        return st.sampled_from([0, 1, "true"])  # wrong type rather: a bool has no range
    if rule.kind is ValueKind.INT:
        return st.sampled_from([int(rule.low) - 1, int(min(rule.high, MAX_EXACT)) + 1, 2**63, -(2**63)])
    return st.sampled_from([rule.low - 1.0, min(rule.high, MAX_EXACT) * 2 + 1, math.inf, -math.inf, math.nan, 1.7e308])


@dataclass(frozen=True)
class Spec:
    """One message to render: a topic and a JSON-like body (Rel timestamps inside), or bytes, plus byte edits."""

    topic: str
    body: Any  # a JSON-like object with Rel timestamps, or bytes to send as they are
    edit: tuple[str, float, int] | None = None  # ("truncate" | "flip", position 0..1, byte)


def _batch_strategy(registry: Registry) -> Callable[..., st.SearchStrategy[Spec]]:
    machines = sorted(registry.machines)
    names = sorted({n for rules in registry.machines.values() for n in rules.signals})
    any_name = st.one_of(
        st.sampled_from(names),
        st.sampled_from(sorted(RESERVED_SIGNALS | {"_x", "junk_0", "junk_199", "Good Count", "good count"})),
        st.text(max_size=8),
    )
    agents = st.sampled_from(["edge-1", "edge-2", "edge-9", "Edge_1", ""]) | st.text(max_size=8)
    agent_levels = st.sampled_from(["edge-1", "edge-2", "edge-9", "Edge_1", ""]) | st.text(TOPIC_CHARS, max_size=8)
    sites = st.sampled_from(["bdg", "jkt", "BDG", "bdg/../x"])
    machine_ids = st.sampled_from([*machines, "cnc-99", "agents", "CNC_01"])

    def random_topic() -> st.SearchStrategy[str]:
        levels = st.lists(st.text(TOPIC_CHARS, max_size=10), min_size=1, max_size=5)
        return st.one_of(
            levels.map(lambda ls: "shopfloor/v1/" + "/".join(ls)),
            st.tuples(
                sites | st.text(TOPIC_CHARS, max_size=6),
                machine_ids,
                st.sampled_from(["telemetry", "status", "commits", "x", ""]),
            ).map(lambda t: f"shopfloor/v1/{t[0]}/{t[1]}/{t[2]}"),
            st.tuples(sites, agent_levels, st.sampled_from(["status", "commits"])).map(
                lambda t: f"shopfloor/v1/{t[0]}/agents/{t[1]}/{t[2]}"
            ),
        )

    @st.composite
    def spec(draw: st.DrawFn) -> Spec:
        # Oversize payloads are 256 KiB each: rare, or they would be most of the bytes moved.
        shape = draw(
            st.sampled_from(
                ["batch"] * 24 + ["machine-status"] * 3 + ["agent-status"] * 2 + ["bytes"] * 3 + ["empty", "oversize"]
            )
        )
        machine = draw(st.sampled_from(machines))
        rules = registry.machines[machine].signals
        telemetry_topic = str(Topic.telemetry(SITE, machine))

        def sample() -> dict[str, Any]:
            chosen = draw(st.lists(st.sampled_from(sorted(rules)), max_size=5, unique=True))
            values = {name: draw(_value_for(rules[name])) for name in chosen}
            return {"ts": Rel(draw(VALID_OFFSETS)), "values": values}

        if shape == "empty":
            topic = draw(
                st.sampled_from(
                    [str(Topic.machine_status(SITE, machine)), telemetry_topic, str(Topic.agent_status(SITE, "edge-1"))]
                )
            )
            return Spec(topic, b"")
        if shape == "bytes":
            return Spec(draw(st.sampled_from([telemetry_topic]) | random_topic()), draw(st.binary(max_size=200)))
        if shape in ("machine-status", "agent-status"):
            body: dict[str, Any] = {
                "v": 1,
                "status": draw(st.sampled_from(["online", "unreachable", "offline"])),
                "ts": Rel(draw(VALID_OFFSETS)),
                "agent": "edge-1",
            }
            if draw(st.booleans()):
                body["detail"] = draw(st.text(max_size=30))
            if shape == "machine-status" and draw(st.booleans()):
                body["heartbeat_ms"] = draw(st.sampled_from([1000, 60_000, 3_600_000]))
            topic = (
                str(Topic.machine_status(SITE, machine))
                if shape == "machine-status"
                else str(Topic.agent_status(SITE, "edge-1"))
            )
            fault = draw(st.sampled_from(["none", "none", "agent", "ts", "status", "extra", "drop", "v", "topic"]))
            if fault == "agent":
                body["agent"] = draw(agents)
                if shape == "agent-status" and draw(st.booleans()):
                    topic = f"shopfloor/v1/{SITE}/agents/{draw(st.sampled_from(['edge-2', 'edge-9', 'x']))}/status"
            elif fault == "ts":
                body["ts"] = draw(TS_ANY)
            elif fault == "status":
                body["status"] = draw(JSON_VALUES)
            elif fault == "extra":
                body[draw(st.text(max_size=5))] = draw(JSON_VALUES)
            elif fault == "drop":
                body.pop(draw(st.sampled_from(sorted(body))))
            elif fault == "v":
                body["v"] = draw(JSON_VALUES)
            elif fault == "topic":
                topic = draw(random_topic())
            return Spec(topic, body)
        data: dict[str, Any] = {
            "v": 1,
            "agent": "edge-1",
            "site": SITE,
            "machine": machine,
            "seq": draw(st.integers(min_value=0, max_value=2**63 - 1) | st.integers(min_value=0, max_value=20)),
            "samples": [sample() for _ in range(draw(st.integers(min_value=1, max_value=3)))],
        }
        if shape == "oversize":
            return Spec(telemetry_topic, data, ("pad", 0.0, MAX_PAYLOAD_BYTES + draw(st.integers(1, 50_000))))
        topic = telemetry_topic
        fault = draw(
            st.sampled_from(
                ["none"] * 5
                + ["topic", "agent", "machine", "site", "seq", "ts", "add-value", "change-value", "samples"]
                + ["replace-field", "drop-field", "extra-field", "truncate", "flip", "many-samples", "many-values"]
                + ["out-of-range"] * 2
            )
        )
        chosen = draw(st.sampled_from(data["samples"]))
        if fault == "topic":
            topic = draw(
                st.sampled_from([str(Topic.telemetry("jkt", machine)), str(Topic.telemetry(SITE, "cnc-99"))])
                | random_topic()
            )
        elif fault == "agent":
            data["agent"] = draw(agents)
        elif fault == "machine":
            data["machine"] = draw(machine_ids)
        elif fault == "site":
            data["site"] = draw(sites)
        elif fault == "seq":
            data["seq"] = draw(st.integers(min_value=-(2**65), max_value=2**65) | JSON_VALUES)
        elif fault == "ts":
            chosen["ts"] = draw(TS_ANY)
        elif fault == "add-value":
            chosen["values"][draw(any_name)] = draw(
                JSON_VALUES | _value_for(rules[draw(st.sampled_from(sorted(rules)))])
            )
        elif fault == "change-value" and chosen["values"]:
            chosen["values"][draw(st.sampled_from(sorted(chosen["values"])))] = draw(JSON_VALUES)
        elif fault == "samples":
            data["samples"] = draw(
                st.lists(
                    st.fixed_dictionaries({"ts": TS_ANY, "values": st.dictionaries(any_name, JSON_VALUES, max_size=3)}),
                    max_size=3,
                )
            )
        elif fault == "out-of-range":
            name = draw(st.sampled_from(sorted(rules)))
            chosen["values"][name] = draw(_outside(rules[name]))
        elif fault == "replace-field":
            data[draw(st.sampled_from(sorted(data)))] = draw(JSON_VALUES)
        elif fault == "drop-field":
            data.pop(draw(st.sampled_from(sorted(data))))
        elif fault == "extra-field":
            data[draw(st.text(max_size=5))] = draw(JSON_VALUES)
        elif fault == "many-samples":
            data["samples"] = [chosen] * draw(st.sampled_from([1000, 1001]))
        elif fault == "many-values":
            chosen["values"] = {f"junk_{i}": i for i in range(draw(st.sampled_from([64, 65, 200])))}
        elif fault in ("truncate", "flip"):
            return Spec(topic, data, (fault, draw(st.floats(min_value=0, max_value=1)), draw(st.integers(0, 255))))
        return Spec(topic, data)

    return spec


def _resolve(obj: Any, now_ms: int) -> Any:
    if isinstance(obj, Rel):
        return now_ms + obj.offset_ms
    if isinstance(obj, dict):
        return {k: _resolve(v, now_ms) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, now_ms) for v in obj]
    return obj


def render(spec: Spec, now_ms: int) -> bytes:
    """The bytes of a spec at now_ms (NaN and Infinity are written as Python's json does: hostile, not JSON)."""
    payload = spec.body if isinstance(spec.body, bytes) else json.dumps(_resolve(spec.body, now_ms)).encode()
    if spec.edit is None:
        return payload
    kind, where, value = spec.edit
    if kind == "pad":
        return payload + b" " * (value - len(payload))
    if kind == "truncate":
        return payload[: int(where * len(payload))]
    at = min(len(payload) - 1, int(where * len(payload)))
    return payload[:at] + bytes([value]) + payload[at + 1 :]


# ---- the oracle ------------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    outcome: str  # "not-received" | "ignored" | "refused" | "accepted"
    kind: str | None = None
    lines: list[str] = field(default_factory=list)
    telemetry: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # (machine, ts, values)
    status: tuple[str, int, dict[str, Any]] | None = None  # machine status: (machine, ts, fields)
    agent_status: tuple[str, str, str] | None = None  # (agent, status, detail)
    flagged: bool = False


def expect(registry: Registry, seqs: SeqMemory, topic: str, payload: bytes, now_ms: int) -> Verdict:
    """What the collector must do with one message, from the registry (the collector's _validate, by hand)."""
    if not any(topic_matches_sub(f, topic) for f in FILTERS):
        return Verdict("not-received")
    try:
        parsed = Topic.parse(topic)
    except ValueError:
        return Verdict("refused", "unknown-topic")
    try:
        if parsed.kind is TopicKind.TELEMETRY:
            batch = registry.check_telemetry(parsed, payload, now_ms)
            try:
                lines = batch_to_lines(batch)
            except ValueError:
                return Verdict("refused", "invalid-payload")
            flagged = seqs.conflicts(batch, payload)
            samples = [(batch.machine, s.ts, dict(s.values)) for s in batch.samples if s.values]
            return Verdict("accepted", lines=lines, telemetry=samples, flagged=flagged)
        if parsed.kind is TopicKind.MACHINE_STATUS:
            if not payload:
                return Verdict("ignored")
            status = registry.check_machine_status(parsed, payload, now_ms)
            point = status_to_point(parsed, status)
            assert parsed.machine is not None
            return Verdict("accepted", lines=[to_line(point)], status=(parsed.machine, status.ts, dict(point.fields)))
        if parsed.kind is TopicKind.AGENT_STATUS:
            if not payload:
                return Verdict("ignored")
            agent = registry.check_agent_status(parsed, payload, now_ms)
            point = agent_status_to_point(parsed, agent, now_ms)
            assert parsed.agent is not None
            return Verdict(
                "accepted", lines=[to_line(point)], agent_status=(parsed.agent, agent.status.value, agent.detail)
            )
    except PayloadError as exc:
        return Verdict("refused", exc.kind)
    return Verdict("ignored")


def _same_reading(a: Any, b: Any) -> bool:
    if type(a) in (bool, str) or type(b) in (bool, str):
        return type(a) is type(b) and a == b
    return float(a) == float(b)


class History:
    """What the store holds, as the collector's history check sees it: per (machine, ts) each field's last value.

    A message the registry accepts is refused as sample-conflict if one of its samples lands on a stored point and
    changes a stored value, or adds a signal with a value other than the one in effect there (the signal's last
    value at an earlier ts). Within one write the later line of a point wins, so the last value is what is stored.
    """

    def __init__(self) -> None:
        self.points: dict[tuple[str, int], dict[str, Any]] = {}

    def rewrites(self, telemetry: list[tuple[str, int, dict[str, Any]]]) -> bool:
        for machine, ts, values in telemetry:
            point = self.points.get((machine, ts))
            if point is None:
                continue
            for name, value in values.items():
                held = point[name] if name in point else self._in_effect(machine, ts, name)
                if held is None or not _same_reading(held, value):
                    return True
        return False

    def _in_effect(self, machine: str, ts: int, name: str) -> Any:
        earlier = [t for (m, t), fields in self.points.items() if m == machine and t < ts and name in fields]
        return self.points[(machine, max(earlier))][name] if earlier else None

    def add(self, telemetry: list[tuple[str, int, dict[str, Any]]]) -> None:
        for machine, ts, values in telemetry:
            self.points.setdefault((machine, ts), {}).update(values)


def with_history(history: History, verdicts: list[Verdict]) -> list[Verdict]:
    """The verdicts with accepted telemetry that would rewrite stored samples refused, in the order they arrive."""
    out = []
    for verdict in verdicts:
        if verdict.outcome == "accepted" and verdict.telemetry:
            if history.rewrites(verdict.telemetry):
                verdict = Verdict("refused", SAMPLE_CONFLICT, flagged=verdict.flagged)
            else:
                history.add(verdict.telemetry)
        out.append(verdict)
    return out


# ---- the run ---------------------------------------------------------------------------------------------------


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _digest(topic: str, payload: bytes) -> tuple[str, str]:
    return topic, hashlib.sha256(payload[:MAX_PAYLOAD_BYTES]).hexdigest()


@dataclass
class Model:
    """Everything the store must hold: per (machine, ts), every value each field was given by an accepted message."""

    telemetry: dict[tuple[str, int], dict[str, list[Any]]] = field(default_factory=dict)
    statuses: dict[tuple[str, int], dict[str, list[Any]]] = field(default_factory=dict)
    agent_statuses: set[tuple[str, str, str]] = field(default_factory=set)
    last_agent_status: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def add(self, verdict: Verdict) -> None:
        for machine, ts, values in verdict.telemetry:
            point = self.telemetry.setdefault((machine, ts), {})
            for name, value in values.items():
                point.setdefault(name, []).append(value)
        if verdict.status is not None:
            machine, ts, fields = verdict.status
            point = self.statuses.setdefault((machine, ts), {})
            for name, value in fields.items():
                point.setdefault(name, []).append(value)
        if verdict.agent_status is not None:
            self.agent_statuses.add(verdict.agent_status)
            self.last_agent_status[verdict.agent_status[0]] = verdict.agent_status


def _same(got: Any, want: Any, float_fields: set[str], name: str) -> bool:
    if type(want) is float and type(got) is int and name in float_fields:
        # InfluxDB's JSON drops the ".0" of a whole float and the store's reader restores the type of canonical
        # signals only: a profile's own float signal (mould_temp_c) holding -1383.0 reads back as -1383. The field
        # itself is a float (SHOW FIELD KEYS), so compare the number.
        return float(got) == want
    return type(got) is type(want) and got == want


def check_points(
    stored: dict[tuple[str, int], dict[str, Any]],
    model: dict[tuple[str, int], dict[str, list[Any]]],
    what: str,
    float_fields: set[str],
) -> None:
    """The store holds exactly the model's points, each field with the value given (on a same-ms clash: one of them)."""
    assert set(stored) == set(model), (
        f"{what}: points not written: {sorted(set(model) - set(stored))[:5]}; "
        f"points nobody sent: {sorted(set(stored) - set(model))[:5]}"
    )
    for key, want in model.items():
        got = stored[key]
        assert set(got) == set(want), (what, key, got, want)
        for name, values in want.items():
            value = got[name]
            if len({json.dumps(v) + type(v).__name__ for v in values}) == 1:
                assert _same(value, values[0], float_fields, name), (what, key, name, value, values)
            else:  # two accepted messages gave one field two values at one ms: one of them wins
                assert any(_same(value, v, float_fields, name) for v in values), (what, key, name, value, values)


def _stored(store: InfluxStore, measurement: str) -> dict[tuple[str, int], dict[str, Any]]:
    rows = store.rows(f"SELECT * FROM {measurement} GROUP BY *")
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        assert row.tags.get("site") == SITE, row
        key = (row.tags["machine"], row.ts_ms)
        assert key not in out, f"two {measurement} rows for {key}"
        out[key] = dict(row.fields)
    return out


def dead_letters(path: Path) -> list[dict[str, Any]]:
    files = [path.with_name(path.name + ".1"), path]
    return [json.loads(line) for p in files if p.exists() for line in p.read_text().splitlines()]


def test_fuzzed_messages_are_refused_or_written_exactly_as_the_registry_says(
    tmp_path: Path, fresh_mosquitto: Mosquitto, influx_store: InfluxStore, example_site: SiteConfig
) -> None:
    registry = Registry.from_site(example_site)
    oracle = Registry.from_site(example_site)  # pure; a separate instance so nothing is shared with the collector
    oracle_seqs = SeqMemory()
    dl = tmp_path / "dl.jsonl"
    client_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    collector = Collector(
        MqttSettings.from_url(fresh_mosquitto.url),
        influx_store,
        client_id=client_id,
        flush_interval_s=0.05,
        dead_letter=dl,
        dead_letter_max_bytes=1 << 30,
        registry=registry,
    )
    collector.start()
    assert collector.wait_connected(10)
    publisher = MqttLink(MqttSettings.from_url(fresh_mosquitto.url), f"fuzzer-{uuid.uuid4().hex[:8]}")
    publisher.start()
    assert publisher.wait_connected(10)

    model = Model()
    history = History()
    expected_invalid: Counter[str] = Counter()
    totals = Counter[str]()
    timing: dict[str, float] = {}
    sentinel_seq = iter(range(10**9))

    def send_all(messages: list[tuple[str, bytes]]) -> None:
        handles = [publisher.publish(t, p, qos=1) for t, p in messages]
        for (topic, payload), handle in zip(messages, handles, strict=True):
            assert handle.wait(10), f"the broker did not acknowledge a publish on {topic!r} ({len(payload)} bytes)"

    # The subscription is live once a probe arrives (retained messages are off, so nothing else can come first).
    probe_ts = int(time.time() * 1000)
    probe = json.dumps({"v": 1, "status": "online", "ts": probe_ts, "agent": "edge-1"}).encode()
    probe_topic = str(Topic.machine_status(SITE, "cnc-01"))
    deadline = time.monotonic() + 15
    while collector.stats["received"] == 0:
        assert time.monotonic() < deadline, "collector never received a probe"
        send_all([(probe_topic, probe)])
        time.sleep(0.1)
    wait_for(lambda: collector.stats["written_messages"] == collector.stats["received"], "the probes written")
    probes = collector.stats["received"]
    for _ in range(probes):
        model.add(expect(oracle, oracle_seqs, probe_topic, probe, int(time.time() * 1000)))
    totals["received"] = probes
    totals["accepted"] = probes

    strategy = _batch_strategy(registry)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        # The collector and the store carry state from one example to the next, so a replay is not the same run:
        # shrinking would chase a different failure. The failing example is reported as drawn.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(specs=st.lists(strategy(), min_size=PER_EXAMPLE[0], max_size=PER_EXAMPLE[1]))
    def one_example(specs: list[Spec]) -> None:
        t_start = time.monotonic()
        now_ms = int(time.time() * 1000)
        messages = [(s.topic, render(s, now_ms)) for s in specs]
        # A valid batch at the end: once it is handled, everything before it is (one publisher, QoS1, in order).
        sentinel = {
            "v": 1,
            "agent": "edge-1",
            "site": SITE,
            "machine": "cnc-01",
            "seq": 10**15 + next(sentinel_seq),
            "samples": [{"ts": now_ms - DAY, "values": {"alarms": totals["examples"] % 65536}}],
        }
        messages.append((str(Topic.telemetry(SITE, "cnc-01")), json.dumps(sentinel).encode()))
        verdicts = with_history(history, [expect(oracle, oracle_seqs, t, p, now_ms) for t, p in messages])
        t_oracle = time.monotonic()
        before = collector.stats
        letters_before = len(dead_letters(dl))
        send_all(messages)

        received = sum(v.outcome != "not-received" for v in verdicts)
        accepted = sum(v.outcome == "accepted" for v in verdicts)
        ignored = sum(v.outcome == "ignored" for v in verdicts)
        refused = Counter(v.kind or "" for v in verdicts if v.outcome == "refused")
        wait_for(lambda: collector.stats["received"] == before["received"] + received, "every message handled")
        wait_for(
            lambda: (
                collector.stats["written_messages"] + collector.stats["store_rejected"]
                == before["written_messages"] + before["store_rejected"] + accepted
            ),
            "every accepted message written",
        )
        after = collector.stats
        t_sent = time.monotonic()

        # Never crashed: still connected, the writer alive, no internal error, nothing refused by the store.
        assert collector.metrics_snapshot().gauges["mqtt_connected"] == 1
        assert any(t.name == f"collector-writer-{client_id}" and t.is_alive() for t in threading.enumerate())
        assert "internal-error" not in after["invalid"]
        assert after["store_rejected"] == before["store_rejected"], "the store refused a registry-accepted message"

        # Refused with the registry's kind, counted, dead-lettered; accepted ones written; the counts add up.
        got_invalid = Counter(after["invalid"]) - Counter(before["invalid"])
        assert got_invalid == refused
        assert after["written_messages"] - before["written_messages"] == accepted
        assert after["ignored"] - before["ignored"] == ignored
        assert after["received"] - before["received"] == accepted + sum(refused.values()) + ignored
        flagged = sum(v.flagged for v in verdicts)
        assert after["flagged"].get(SEQ_CONFLICT, 0) - before["flagged"].get(SEQ_CONFLICT, 0) == flagged
        new_letters = dead_letters(dl)[letters_before:]
        # A refused message has its letter; a flagged one (a seq seen with other content) one more: flagging comes
        # first, so a flagged message refused for rewriting history has both.
        want_letters = Counter(
            (kind, *_digest(t, p))
            for (t, p), v in zip(messages, verdicts, strict=True)
            for kind in ([v.kind] if v.outcome == "refused" else []) + ([SEQ_CONFLICT] if v.flagged else [])
        )
        got_letters = Counter(
            (r["kind"], r["topic"], hashlib.sha256(base64.b64decode(r["payload_b64"])).hexdigest()) for r in new_letters
        )
        assert got_letters == want_letters
        assert all(r["detail"] for r in new_letters)

        # The store holds exactly what was accepted, at its machine and ts: nothing of a refused message.
        for verdict in verdicts:
            if verdict.outcome == "accepted":
                model.add(verdict)
        float_fields = {
            row[0]
            for s in influx_store.query("SHOW FIELD KEYS FROM telemetry")
            for row in s["values"]
            if row[1] == "float"
        }
        check_points(_stored(influx_store, "telemetry"), model.telemetry, "telemetry", float_fields)
        check_points(_stored(influx_store, "machine_status"), model.statuses, "machine_status", set())
        stored_agent = {
            (r.tags["agent"], r.fields.get("status"), r.fields.get("detail"))
            for r in influx_store.rows("SELECT * FROM agent_status GROUP BY *")
        }
        assert stored_agent <= model.agent_statuses
        assert set(model.last_agent_status.values()) <= stored_agent

        for step, seconds in (
            ("oracle", t_oracle - t_start),
            ("send", t_sent - t_oracle),
            ("check", time.monotonic() - t_sent),
        ):
            timing[step] = timing.get(step, 0.0) + seconds
        expected_invalid.update(refused)
        totals.update(received=received, accepted=accepted, ignored=ignored, refused=sum(refused.values()))
        totals.update(generated=len(specs), examples=1)
        for kind, n in refused.items():
            totals[f"kind:{kind}"] += n

    try:
        one_example()
    finally:
        publisher.stop()
        collector.stop()

    stats = collector.stats
    print(f"\nfuzz: {dict(totals)}; seconds: { {k: round(v, 1) for k, v in timing.items()} }")
    assert totals["generated"] >= MIN_PAYLOADS, totals
    assert stats["received"] == totals["received"]
    assert stats["received"] == stats["written_messages"] + sum(stats["invalid"].values()) + stats["ignored"]
    assert stats["invalid"] == dict(expected_invalid)
    # The fuzz reached every part of the checks: enough refusals of many kinds and enough writes.
    assert totals["accepted"] > 200 and totals["refused"] > 500, totals
    assert len(expected_invalid) >= 10, expected_invalid
    # No field, tag value or measurement a refused message carried.
    fields = {row[0] for s in influx_store.query("SHOW FIELD KEYS FROM telemetry") for row in s["values"]}
    declared = {n for rules in registry.machines.values() for n in rules.signals}
    assert fields <= declared, fields - declared
    machines = {row[1] for s in influx_store.query('SHOW TAG VALUES WITH KEY = "machine"') for row in s["values"]}
    assert machines <= set(registry.machines), machines
    sites = {row[1] for s in influx_store.query('SHOW TAG VALUES WITH KEY = "site"') for row in s["values"]}
    assert sites == {SITE}
    measurements = {row[0] for s in influx_store.query("SHOW MEASUREMENTS") for row in s["values"]}
    # late_hours: the collector marks machine-hours that received data after the hour closed (roll-ups rebuild them).
    assert measurements <= {"telemetry", "machine_status", "agent_status", "late_hours"}


def test_a_control_character_in_a_string_value_is_refused_and_nothing_of_it_stored(
    fresh_mosquitto: Mosquitto, influx_store: InfluxStore, example_site: SiteConfig, tmp_path: Path
) -> None:
    """Found by the fuzz above: a job 'a\\nb' was stored as a backslash and an n (InfluxDB 1.x keeps the escape), so
    it read back as a different job. No PLC string decodes to a control character (the codec refuses them), so
    the contract refuses them: a newline, a terminal escape, a bidi override. The valid job after them lands."""
    letters = tmp_path / "dead.jsonl"
    collector = Collector(
        MqttSettings.from_url(fresh_mosquitto.url),
        influx_store,
        client_id=f"fuzz-{uuid.uuid4().hex[:8]}",
        flush_interval_s=0.05,
        registry=Registry.from_site(example_site),
        dead_letter=letters,
    )
    collector.start()
    publisher = MqttLink(MqttSettings.from_url(fresh_mosquitto.url), f"fuzzer-{uuid.uuid4().hex[:8]}")
    publisher.start()
    hostile = ["a\nb", "\x1b[2J\x1b[H", "\u202eCBA", "A\tB"]
    now_ms = int(time.time() * 1000)
    topic = str(Topic.telemetry(SITE, "cnc-01"))
    try:
        assert collector.wait_connected(10) and publisher.wait_connected(10)
        # Connected is not yet subscribed: probe with the machine's status until the collector receives one, or
        # the first messages could reach the broker before the subscription does (and go nowhere).
        probe = StatusMessage(status=LinkStatus.ONLINE, ts=now_ms - 5000, agent="edge-1").to_json()
        deadline = time.monotonic() + 15
        while collector.stats["received"] == 0:
            assert time.monotonic() < deadline, "the collector never received a probe"
            publisher.publish(str(Topic.machine_status(SITE, "cnc-01")), probe, qos=1)
            time.sleep(0.1)
        for seq, job in enumerate([*hostile, "a-b"]):
            body = {"v": 1, "agent": "edge-1", "site": SITE, "machine": "cnc-01", "seq": seq,
                    "samples": [{"ts": now_ms + seq, "values": {"job": job}}]}  # fmt: skip
            assert publisher.publish(topic, json.dumps(body).encode(), qos=1).wait(10)
        deadline = time.monotonic() + 15
        while not influx_store.telemetry(SITE, "cnc-01", now_ms - 1000, now_ms + 1000):
            assert time.monotonic() < deadline, "nothing was written"
            time.sleep(0.1)
    finally:
        publisher.stop()
        collector.stop()
    rows = influx_store.telemetry(SITE, "cnc-01", now_ms - 1000, now_ms + 1000)
    assert [(r.ts_ms, r.fields) for r in rows] == [(now_ms + len(hostile), {"job": "a-b"})]
    assert collector.stats["invalid"] == {"out-of-range": len(hostile)}
    dead = [json.loads(line) for line in letters.read_text().splitlines()]
    assert [d["kind"] for d in dead] == ["out-of-range"] * len(hostile)
    assert all("non-printable" in d["detail"] for d in dead), dead
