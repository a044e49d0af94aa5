"""The site registry: every hostile message seen so far refused with its kind, valid ones accepted unchanged."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from collector import cli as collector_cli
from collector.registry import MAX_EXACT, Recent, Registry, SeqMemory, SignalRule, ValueKind
from collector.service import Collector
from shopfloor.config import RegisterSpec, SiteConfig, default_site_path, load_site
from shopfloor.contracts import (
    CANONICAL_SIGNALS,
    LinkStatus,
    PayloadError,
    SignalKind,
    StatusMessage,
    TelemetryBatch,
    Topic,
)
from shopfloor.influx import InfluxStore
from shopfloor.mqtt import MqttSettings
from shopfloor.settings import Settings

NOW = 1_764_291_600_000  # the collector's clock in every test
DAY = 86_400_000
EXAMPLE = load_site(default_site_path())  # agent edge-1 serves all five machines
REGISTRY = Registry.from_site(EXAMPLE)
CNC = Topic.telemetry("bdg", "cnc-01")
LASER = Topic.telemetry("bdg", "laser-01")


def _open_site() -> SiteConfig:
    data = EXAMPLE.model_dump()
    data["agents"] = []
    return SiteConfig.model_validate({**data, "profiles": EXAMPLE.profiles})


def _two_agent_site() -> SiteConfig:
    agents = [
        {"id": "edge-1", "machines": ["cnc-01", "laser-01", "press-01"]},
        {"id": "edge-2", "machines": ["cnc-02"]},  # brake-01: served by nobody
    ]
    return SiteConfig.model_validate({**EXAMPLE.model_dump(), "profiles": EXAMPLE.profiles, "agents": agents})


TWO_AGENTS = Registry.from_site(_two_agent_site())


def body(values: dict[str, Any] | None = None, ts: int = NOW, **changes: Any) -> dict[str, Any]:
    """A valid cnc-01 batch from edge-1, as a dict so tests can break it."""
    sample = {"ts": ts, "values": {"state": "RUNNING", "good_count": 812} if values is None else values}
    return {"v": 1, "agent": "edge-1", "site": "bdg", "machine": "cnc-01", "seq": 4711, "samples": [sample]} | changes


def raw(data: Any) -> bytes:
    return json.dumps(data).encode()


def refused(registry: Registry, topic: Topic, payload: bytes, now_ms: int = NOW) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        registry.check_telemetry(topic, payload, now_ms)
    return info.value


# ---- telemetry: hostile cases ----------------------------------------------------------------------------------

FOUR_SAMPLES = [{"ts": NOW + i, "values": {"good_count": i}} for i in range(3)] + [
    {"ts": NOW + 3, "values": {"good_count": "x"}}
]

HOSTILE: list[tuple[str, bytes, str, str]] = [
    # (case, payload on cnc-01's topic, kind, what the detail must say)
    (
        "count-as-string",
        raw(body(samples=FOUR_SAMPLES)),
        "wrong-type",
        "sample 3: signal 'good_count': 'x' is a str, profile cnc-mill-v1 declares an int",
    ),
    (
        "signal-machine",
        raw(body({"machine": "cnc-02"})),
        "reserved-name",
        "sample 0: signal name 'machine' is reserved",
    ),
    ("signal-site", raw(body({"site": "x"})), "reserved-name", "'site' is reserved"),
    ("signal-time", raw(body({"time": 1})), "reserved-name", "'time' is reserved"),
    ("signal-agent", raw(body({"agent": "edge-2"})), "reserved-name", "'agent' is reserved"),
    (
        "junk-field-name",
        raw(body({"junk_1": 1})),
        "undeclared-signal",
        "signal 'junk_1' is not declared by profile cnc-mill-v1 of machine 'cnc-01'",
    ),
    ("invalid-name", raw(body({"Good Count": 1})), "undeclared-signal", "'Good Count' is not declared"),
    (
        "float-for-int",
        raw(body({"good_count": 1.5})),
        "wrong-type",
        "1.5 is a float, profile cnc-mill-v1 declares an int",
    ),
    ("whole-float-for-int", raw(body({"badge": 1001.0})), "wrong-type", "1001.0 is a float"),
    (
        "bool-for-int",
        raw(body({"good_count": True})),
        "wrong-type",
        "True is a bool, profile cnc-mill-v1 declares an int",
    ),
    ("bool-for-float", raw(body({"energy_kwh": False})), "wrong-type", "False is a bool"),
    (
        "string-for-float",
        raw(body({"power_kw": "1.5"})),
        "wrong-type",
        "'1.5' is a str, profile cnc-mill-v1 declares a float",
    ),
    ("int-for-string", raw(body({"job": 5})), "wrong-type", "5 is an int, profile cnc-mill-v1 declares a str"),
    ("trillion-parts", raw(body({"good_count": 10**16})), "out-of-range", "10000000000000000 is out of range"),
    ("counter-negative", raw(body({"good_count": -1})), "out-of-range", "-1 is out of range"),
    ("energy-1.7e308", raw(body({"energy_kwh": 1.7e308})), "out-of-range", "1.7e+308 is out of range"),
    ("energy-negative", raw(body({"energy_kwh": -0.5})), "out-of-range", "-0.5 is out of range"),
    ("uint16-above-range", raw(body({"spindle_rpm": 65536})), "out-of-range", "allows an int in 0..65535"),
    ("bits16-negative", raw(body({"alarms": -1})), "out-of-range", "allows an int in 0..65535"),
    ("state-unknown", raw(body({"state": "EXPLODED"})), "out-of-range", "allows one of IDLE, MAINTENANCE, OFF"),
    ("job-too-long", raw(body({"job": "J" * 17})), "out-of-range", "a printable ASCII str of at most 16 characters"),
    ("job-newline", raw(body({"job": "a\nb"})), "out-of-range", "'a\\nb' holds control or other non-printable"),
    ("job-terminal-escape", raw(body({"job": "\x1b[2J"})), "out-of-range", "holds control or other non-printable"),
    ("job-tab", raw(body({"job": "A\tB"})), "out-of-range", "holds control or other non-printable"),
    ("job-nul", raw(body({"job": "A\x00"})), "out-of-range", "holds control or other non-printable"),
    ("job-del", raw(body({"job": "A\x7f"})), "out-of-range", "holds control or other non-printable"),
    ("job-line-separator", raw(body({"job": "A\u2028B"})), "out-of-range", "holds control or other non-printable"),
    ("job-bidi-override", raw(body({"job": "\u202eCBA"})), "out-of-range", "holds control or other non-printable"),
    ("job-non-ascii", raw(body({"job": "J\u00e9"})), "out-of-range", "'J\u00e9' holds non-ASCII characters"),
    (
        "nan",
        b'{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,'
        b'"samples":[{"ts":%d,"values":{"power_kw":NaN}}]}' % NOW,
        "out-of-range",
        "nan is not a finite number",
    ),
    (
        "infinity",
        b'{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,'
        b'"samples":[{"ts":%d,"values":{"energy_kwh":-Infinity}}]}' % NOW,
        "out-of-range",
        "-inf is not a finite number",
    ),
    (
        "overflow-to-inf",
        raw(body({})).replace(b'"values": {}', b'"values": {"power_kw": 1e999}'),
        "out-of-range",
        "inf",
    ),
    ("ts-next-week", raw(body(ts=NOW + 7 * DAY)), "too-new", "sample 0: ts"),
    ("ts-six-minutes-ahead", raw(body(ts=NOW + 360_000)), "too-new", "360 s ahead"),
    ("ts-2099", raw(body(ts=4_070_908_800_000)), "too-new", "ahead of the collector's clock"),
    ("ts-8-days-old", raw(body(ts=NOW - 8 * DAY)), "too-old", "--backfill"),
    ("ts-2100-plus", raw(body(ts=4_102_444_800_001)), "invalid-payload", "samples.0.ts"),
    ("unknown-agent", raw(body(agent="edge-9")), "unknown-agent", "agent 'edge-9' is not declared"),
    ("topic-mismatch", raw(body(machine="cnc-02")), "topic-mismatch", "payload is for bdg/cnc-02"),
    ("nested-value", raw(body({"job": {"id": 1}})), "invalid-payload", "samples.0.values.job"),
    ("not-json", b"\x00garbage", "malformed-json", ""),
    ("v2", raw(body(v=2)), "unknown-version", "v=2"),
]


@pytest.mark.parametrize(("payload", "kind", "detail"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_telemetry_is_refused_with_its_kind(payload: bytes, kind: str, detail: str) -> None:
    error = refused(REGISTRY, CNC, payload)
    assert error.kind == kind, error
    assert detail in error.detail, error.detail


@pytest.mark.parametrize(
    ("topic", "kind", "detail"),
    [
        (Topic.telemetry("jkt", "cnc-01"), "unknown-site", "site 'jkt'"),
        (Topic.telemetry("bdg", "cnc-99"), "unknown-machine", "machine 'cnc-99'"),
    ],
)
def test_unknown_site_and_machine_are_refused(topic: Topic, kind: str, detail: str) -> None:
    data = body(site=topic.site, machine=topic.machine)
    error = refused(REGISTRY, topic, raw(data))
    assert (error.kind, detail in error.detail) == (kind, True), error


def test_an_agent_may_report_only_the_machines_it_serves() -> None:
    # edge-2 serves cnc-02; cnc-01 is edge-1's.
    error = refused(TWO_AGENTS, CNC, raw(body(agent="edge-2")))
    assert (error.kind, error.detail) == (
        "agent-not-serving",
        "agent 'edge-2' does not serve machine 'cnc-01' (served by 'edge-1')",
    )
    brake = Topic.telemetry("bdg", "brake-01")
    error = refused(TWO_AGENTS, brake, raw(body({"good_count": 1}, machine="brake-01")))
    assert (error.kind, error.detail) == (
        "agent-not-serving",
        "agent 'edge-1' does not serve machine 'brake-01' (no agent serves it)",
    )
    # The agent check comes before the signal checks: a forger learns nothing about the profile.
    assert refused(TWO_AGENTS, CNC, raw(body({"junk": 1}, agent="edge-2"))).kind == "agent-not-serving"
    cnc2 = Topic.telemetry("bdg", "cnc-02")
    assert TWO_AGENTS.check_telemetry(cnc2, raw(body(agent="edge-2", machine="cnc-02")), NOW).agent == "edge-2"


def test_open_registry_lets_any_agent_report_any_machine_but_checks_everything_else() -> None:
    registry = Registry.from_site(_open_site())
    assert registry.open and not REGISTRY.open
    assert registry.check_telemetry(CNC, raw(body(agent="edge-anything")), NOW).agent == "edge-anything"
    assert refused(registry, CNC, raw(body({"machine": "x"}, agent="edge-anything"))).kind == "reserved-name"
    assert refused(registry, CNC, raw(body({"junk_1": 1}))).kind == "undeclared-signal"
    assert refused(registry, Topic.telemetry("bdg", "cnc-99"), raw(body(machine="cnc-99"))).kind == "unknown-machine"


def test_backfill_accepts_old_samples_but_never_future_ones() -> None:
    backfill = Registry.from_site(EXAMPLE, backfill=True)
    old = raw(body(ts=NOW - 8 * DAY))
    assert backfill.check_telemetry(CNC, old, NOW).samples[0].ts == NOW - 8 * DAY
    assert refused(backfill, CNC, raw(body(ts=NOW + 7 * DAY))).kind == "too-new"


@pytest.mark.parametrize(
    ("ts", "ok"),
    [
        (NOW + 300_000, True),  # exactly 5 min ahead: allowed
        (NOW + 300_001, False),
        (NOW - 7 * DAY, True),  # exactly 7 days back: allowed
        (NOW - 7 * DAY - 1, False),
    ],
)
def test_skew_window_edges(ts: int, ok: bool) -> None:
    payload = raw(body(ts=ts))
    if ok:
        assert REGISTRY.check_telemetry(CNC, payload, NOW).samples[0].ts == ts
    else:
        refused(REGISTRY, CNC, payload)


def test_skew_window_is_configurable() -> None:
    tight = Registry.from_site(EXAMPLE, max_ahead_ms=1000, max_behind_ms=60_000)
    assert refused(tight, CNC, raw(body(ts=NOW + 1001))).kind == "too-new"
    assert refused(tight, CNC, raw(body(ts=NOW - 60_001))).kind == "too-old"
    assert tight.check_telemetry(CNC, raw(body(ts=NOW - 60_000)), NOW)


# ---- telemetry: valid messages ---------------------------------------------------------------------------------

VALID: list[tuple[str, str, dict[str, Any]]] = [
    ("cnc-01", "cnc-mill", {"state": "RUNNING", "good_count": 812, "reject_count": 0, "badge": 1001, "job": "J-1"}),
    ("cnc-01", "counter-past-its-register", {"good_count": 2**32 + 5, "energy_kwh": 50_000_000.25}),
    ("cnc-01", "largest-exact", {"good_count": 2**53}),
    ("cnc-01", "int-where-float-declared", {"energy_kwh": 12, "power_kw": 3}),
    ("cnc-01", "bits-and-float32", {"alarms": 65535, "spindle_rpm": 0, "power_kw": 1e9}),
    ("cnc-01", "empty-values", {}),
    ("laser-01", "scaled-int16", {"power_kw": 3276.7, "laser_power_pct": 100, "job": "0123456789" * 2}),
    ("press-01", "negative-scaled", {"mould_temp_c": -3276.8, "state": "MAINTENANCE"}),
    ("brake-01", "int16-states", {"state": "OFF", "badge": 2**31 - 1, "tonnage_t": 6553.5}),
]


@pytest.mark.parametrize(("machine", "values"), [(v[0], v[2]) for v in VALID], ids=[v[1] for v in VALID])
def test_valid_telemetry_is_accepted_unchanged(machine: str, values: dict[str, Any]) -> None:
    data = body(values, machine=machine)
    batch = REGISTRY.check_telemetry(Topic.telemetry("bdg", machine), raw(data), NOW)
    assert batch == TelemetryBatch.model_validate(data)
    assert batch.samples[0].values == values


def test_an_int_where_a_float_is_declared_comes_back_a_float() -> None:
    # The store keeps one type per field and shard: an integer written to a float field is refused, or, first in a
    # new shard, makes every real float of that shard refused.
    batch = REGISTRY.check_telemetry(LASER, raw(body({"power_kw": 3}, machine="laser-01")), NOW)
    assert [(v, type(v)) for v in batch.samples[0].values.values()] == [(3.0, float)]
    batch = REGISTRY.check_telemetry(
        Topic.telemetry("bdg", "brake-01"), raw(body({"tonnage_t": 12}, machine="brake-01")), NOW
    )
    assert type(batch.samples[0].values["tonnage_t"]) is float


# ---- statuses ----------------------------------------------------------------------------------------------------


def status(agent: str = "edge-1", ts: int = NOW, status: LinkStatus = LinkStatus.ONLINE) -> bytes:
    return StatusMessage(status=status, ts=ts, agent=agent, heartbeat_ms=60_000).to_json()


MACHINE_STATUS = Topic.machine_status("bdg", "cnc-01")


@pytest.mark.parametrize(
    ("registry", "topic", "payload", "kind"),
    [
        (TWO_AGENTS, MACHINE_STATUS, status("edge-2"), "agent-not-serving"),
        (TWO_AGENTS, MACHINE_STATUS, status("edge-9"), "unknown-agent"),
        (REGISTRY, Topic.machine_status("bdg", "cnc-99"), status(), "unknown-machine"),
        (REGISTRY, Topic.machine_status("jkt", "cnc-01"), status(), "unknown-site"),
        (REGISTRY, MACHINE_STATUS, status(ts=NOW + DAY), "too-new"),
        (REGISTRY, MACHINE_STATUS, status(ts=NOW - 8 * DAY), "too-old"),
        (REGISTRY, MACHINE_STATUS, b'{"v":1,"status":"asleep","ts":1,"agent":"edge-1"}', "invalid-payload"),
        (REGISTRY, MACHINE_STATUS, b"{", "malformed-json"),
    ],
)
def test_bad_machine_statuses_are_refused(registry: Registry, topic: Topic, payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as info:
        registry.check_machine_status(topic, payload, NOW)
    assert info.value.kind == kind, info.value


def test_machine_status_of_the_serving_agent_is_accepted() -> None:
    accepted = TWO_AGENTS.check_machine_status(MACHINE_STATUS, status(), NOW)
    assert accepted == StatusMessage.model_validate_json(status())


def loss(ts: int = NOW - 60_000, until: object = NOW - 1000, status: str = "unreachable") -> bytes:
    """An outbox-loss status of cnc-01 from edge-1 as bytes (json, so tests can send what the model refuses)."""
    body = {"v": 1, "status": status, "ts": ts, "agent": "edge-1", "detail": "outbox full: ...", "until": until}
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("ts", "until"),
    [
        (NOW - 60_000, NOW - 1000),
        (NOW - 60_000, NOW - 60_000),  # one sample lost
        (NOW - 7 * DAY, NOW + 5 * 60_000),  # the whole window: a week back to the 5 min ahead allowed
    ],
)
def test_an_outbox_loss_status_is_accepted_with_its_until(ts: int, until: int) -> None:
    accepted = REGISTRY.check_machine_status(MACHINE_STATUS, loss(ts, until), NOW)
    assert (accepted.status, accepted.ts, accepted.until) == (LinkStatus.UNREACHABLE, ts, until)


@pytest.mark.parametrize(
    ("payload", "kind", "detail"),
    [
        pytest.param(loss(until=NOW + DAY), "too-new", "status until: ts 1764378000000 is 86400 s ahead", id="future"),
        pytest.param(loss(until=NOW - 120_000), "invalid-payload", "is before ts", id="before-ts"),
        pytest.param(loss(until=2**63), "invalid-payload", "until: Input should be less than", id="out-of-range"),
        pytest.param(loss(until="soon"), "invalid-payload", "until: Input should be a valid integer", id="wrong-type"),
        pytest.param(loss(status="online"), "invalid-payload", "only meaningful on status unreachable", id="online"),
    ],
)
def test_a_bad_until_is_refused_with_its_kind(payload: bytes, kind: str, detail: str) -> None:
    with pytest.raises(PayloadError) as info:
        REGISTRY.check_machine_status(MACHINE_STATUS, payload, NOW)
    assert (info.value.kind, detail in info.value.detail) == (kind, True), info.value


def test_an_agent_status_with_until_is_refused() -> None:
    # until means an outbox loss of one machine; an agent's own status has none (and is restamped on receipt).
    with pytest.raises(PayloadError) as info:
        REGISTRY.check_agent_status(Topic.agent_status("bdg", "edge-1"), loss(), NOW)
    assert info.value.kind == "invalid-payload"
    assert "until: only a machine's status reports an outbox loss, not agent 'edge-1'" in info.value.detail


def test_agent_status_is_stamped_with_the_time_it_was_received() -> None:
    # A last will carries the agent's connect time, days ago: the loss happened when the broker published it.
    will = status(ts=NOW - 30 * DAY, status=LinkStatus.OFFLINE)
    accepted = REGISTRY.check_agent_status(Topic.agent_status("bdg", "edge-1"), will, NOW)
    assert (accepted.status, accepted.ts, accepted.agent) == (LinkStatus.OFFLINE, NOW, "edge-1")


@pytest.mark.parametrize(
    ("registry", "topic", "payload", "kind"),
    [
        (REGISTRY, Topic.agent_status("bdg", "edge-9"), status("edge-9"), "unknown-agent"),
        (REGISTRY, Topic.agent_status("jkt", "edge-1"), status(), "unknown-site"),
        (REGISTRY, Topic.agent_status("bdg", "edge-1"), status("edge-2"), "topic-mismatch"),
        (REGISTRY, Topic.agent_status("bdg", "edge-1"), b"[]", "invalid-payload"),
    ],
)
def test_bad_agent_statuses_are_refused(registry: Registry, topic: Topic, payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as info:
        registry.check_agent_status(topic, payload, NOW)
    assert info.value.kind == kind, info.value


def test_open_registry_accepts_any_agents_status() -> None:
    registry = Registry.from_site(_open_site())
    assert registry.check_agent_status(Topic.agent_status("bdg", "edge-9"), status("edge-9"), NOW).agent == "edge-9"


# ---- rules derived from register specs ---------------------------------------------------------------------------


def spec(**fields: Any) -> RegisterSpec:
    return RegisterSpec.model_validate({"address": 0, **fields})


@pytest.mark.parametrize(
    ("fields", "kind", "low", "high"),
    [
        ({"signal": "rpm", "type": "uint16"}, ValueKind.INT, 0, 65535),
        ({"signal": "t", "type": "int16"}, ValueKind.INT, -32768, 32767),
        ({"signal": "big", "type": "uint64"}, ValueKind.INT, 0, MAX_EXACT),  # 2**64 - 1 could not be exact
        ({"signal": "neg", "type": "int64"}, ValueKind.INT, -MAX_EXACT, MAX_EXACT),
        ({"signal": "word", "type": "bits16"}, ValueKind.INT, 0, 65535),
        # 65535 * 2 + 10 = 131080; 0 * 2 + 10 = 10
        ({"signal": "s", "type": "uint16", "scale": 2, "offset": 10.0}, ValueKind.FLOAT, 10, 131080),
        # A negative scale turns the range over: 65535 * -0.5 = -32767.5 .. 0
        ({"signal": "s", "type": "uint16", "scale": -0.5}, ValueKind.FLOAT, -32767.5, 0),
        ({"signal": "f", "type": "float32"}, ValueKind.FLOAT, -MAX_EXACT, MAX_EXACT),
        # Counters are unwrapped by the agent: only >= 0.
        ({"signal": "good_count", "type": "uint16"}, ValueKind.INT, 0, MAX_EXACT),
        ({"signal": "energy_kwh", "type": "uint32", "scale": 0.01}, ValueKind.FLOAT, 0, MAX_EXACT),
        ({"signal": "energy_kwh", "type": "float32"}, ValueKind.FLOAT, 0, MAX_EXACT),
        # Canonical floats are floats even on an integer register (the store writes them as floats).
        ({"signal": "power_kw", "type": "int16"}, ValueKind.FLOAT, 0, 32767),
        ({"signal": "badge", "type": "int32"}, ValueKind.INT, 0, 2**31 - 1),
    ],
)
def test_numeric_rules(fields: dict[str, Any], kind: ValueKind, low: float, high: float) -> None:
    rule = SignalRule.of(spec(**fields))
    assert rule.kind is kind
    assert rule.low == pytest.approx(low, abs=1e-5)
    assert rule.high == pytest.approx(high, abs=1e-5)


def test_string_and_label_rules() -> None:
    assert SignalRule.of(spec(signal="door", type="bit", bit=3)) == SignalRule(ValueKind.BOOL)
    assert SignalRule.of(spec(signal="door", table="coil", type="bool")) == SignalRule(ValueKind.BOOL)
    assert SignalRule.of(spec(signal="job", type="string", length=4)).max_length == 8
    mode = SignalRule.of(spec(signal="mode", type="uint16", enum={0: "manual", 1: "auto"}))
    assert (mode.kind, mode.labels) == (ValueKind.STR, frozenset({"manual", "auto"}))
    state = SignalRule.of(spec(signal="state", type="uint16", states={0: "OFF", 3: "RUNNING"}))
    assert state.labels == frozenset({"OFF", "RUNNING"})


def test_two_profiles_giving_one_signal_two_store_types_are_refused() -> None:
    data = EXAMPLE.model_dump()
    profiles = [
        {"model": "a", "registers": [{"signal": "mode", "address": 0, "type": "string", "length": 2}]},
        {"model": "b", "registers": [{"signal": "mode", "address": 0, "type": "uint16"}]},
    ]
    machines = [{"id": "m-1", "profile": "a", "port": 1}, {"id": "m-2", "profile": "b", "port": 2}]
    site = SiteConfig.model_validate({"site": data["site"], "profiles": profiles, "machines": machines})
    with pytest.raises(ValueError, match="signal 'mode' is a str in profile a but an int in profile b"):
        Registry.from_site(site)


# ---- memories ----------------------------------------------------------------------------------------------------


def test_seq_memory_flags_only_a_seq_reused_for_other_content() -> None:
    memory = SeqMemory(capacity=2)
    first, other = raw(body({"good_count": 1})), raw(body({"good_count": 2}))
    batch = TelemetryBatch.model_validate_json(first)
    assert not memory.conflicts(batch, first)
    assert not memory.conflicts(batch, first)  # a resent batch: normal
    assert memory.conflicts(batch, other)
    for seq in (1, 2):  # bounded: the oldest key is forgotten
        memory.conflicts(batch.model_copy(update={"seq": seq}), first)
    assert not memory.conflicts(batch, first)


def test_recent_is_bounded_and_forgets_the_least_recently_used() -> None:
    recent = Recent(2)
    recent.put("a")
    recent.put("b")
    assert "a" in recent  # a is now the most recent
    recent.put("c")
    assert ("a" in recent, "b" in recent, "c" in recent, len(recent)) == (True, False, True, 2)


# ---- property: nothing but PayloadError, and what is accepted holds every invariant ------------------------------

SIGNAL_NAMES = [
    *sorted({r.signal for p in EXAMPLE.profiles for r in p.registers}),
    *["time", "site", "machine", "agent", "junk_1", "_x", "Bad", ""],
]
AGENTS = ["edge-1", "edge-1", "edge-1", "edge-2", "edge-9", "Edge 1", ""]
MACHINES = [*(m.id for m in EXAMPLE.machines), "cnc-99"]
# Mostly plausible values, so that many messages pass and the invariants are tested on them, plus the hostile ones.
VALUES: list[Any] = [
    *[0, 1, 812, 65535, 65536, 2**31, 2**53, 2**53 + 1, 10**12, -1, -32768],
    *[0.0, 1.5, 12.0, 3276.7, 6553.5, -0.5, 1e9, 1.7e308, math.nan, math.inf, -math.inf],
    *["RUNNING", "OFF", "IDLE", "MAINTENANCE", "J-1", "", "x" * 17, "x" * 300, "EXPLODED", "12"],
    *["a\nb", "\x1b[2J", "J\u00e9", "\u2028", "A\x00"],
    *[True, False, None, [1], {"a": 1}],
]
json_values = st.one_of(
    st.sampled_from(VALUES),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=3), lambda inner: st.lists(inner, max_size=2), max_leaves=3
    ),
)
timestamps = st.one_of(
    st.sampled_from([NOW, NOW + 300_000, NOW + 300_001, NOW - 7 * DAY, NOW - 7 * DAY - 1, 4_070_908_800_000]),
    st.integers(min_value=NOW - 9 * DAY, max_value=NOW + 600_000),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
)
samples = st.fixed_dictionaries(
    {
        "ts": timestamps,
        "values": st.dictionaries(st.sampled_from(SIGNAL_NAMES) | st.text(max_size=8), json_values, max_size=4),
    }
)


def _plausible(rule: SignalRule) -> list[Any]:
    """Values the rule allows, to build valid batches from (which the faults below then break)."""
    if rule.kind is ValueKind.BOOL:
        return [True, False]
    if rule.kind is ValueKind.STR:
        return sorted(rule.labels) if rule.labels is not None else ["", "J-1"[: rule.max_length]]
    if rule.kind is ValueKind.INT:
        return [int(rule.low), int(rule.low) + 1, int(rule.high)]
    return [rule.low, (rule.low + rule.high) / 2, rule.high, int(rule.low)]


FAULTS = ["none"] * 8 + [
    *["site", "version", "agent", "machine-field", "seq", "ts", "signal-name", "value", "value", "samples"],
    *["replace-field", "drop-field", "add-field", "bytes", "truncate", "flip"],
]


@st.composite
def messages(draw: st.DrawFn, registry: Registry) -> tuple[Topic, bytes]:
    """A valid batch of a random machine, with at most one fault."""
    machine = draw(st.sampled_from(MACHINES[:-1]))
    rules = registry.machines[machine]
    fault = draw(st.sampled_from(FAULTS))

    def sample() -> dict[str, Any]:
        names = draw(st.lists(st.sampled_from(sorted(rules.signals)), max_size=5, unique=True))
        values = {name: draw(st.sampled_from(_plausible(rules.signals[name]))) for name in names}
        return {"ts": draw(st.integers(min_value=NOW - 7 * DAY, max_value=NOW + 300_000)), "values": values}

    data: dict[str, Any] = {
        "v": 1,
        "agent": rules.agent,
        "site": "bdg",
        "machine": machine,
        "seq": draw(st.integers(min_value=0, max_value=2**63 - 1)),
        "samples": [sample() for _ in range(draw(st.integers(min_value=1, max_value=3)))],
    }
    topic = Topic.telemetry("bdg", machine)
    chosen = draw(st.sampled_from(data["samples"]))
    if fault == "site":
        topic = Topic.telemetry(draw(st.sampled_from(["jkt", "bdg"])), draw(st.sampled_from(MACHINES)))
    elif fault == "version":
        data["v"] = draw(json_values)
    elif fault == "agent":
        data["agent"] = draw(st.sampled_from(AGENTS) | st.text(max_size=8))
    elif fault == "machine-field":
        data["machine"] = draw(st.sampled_from(MACHINES))
    elif fault == "seq":
        data["seq"] = draw(st.integers(min_value=-(2**65), max_value=2**65) | json_values)
    elif fault == "ts":
        chosen["ts"] = draw(timestamps | json_values)
    elif fault == "signal-name":
        chosen["values"][draw(st.sampled_from(SIGNAL_NAMES) | st.text(max_size=8))] = draw(json_values)
    elif fault == "value" and chosen["values"]:
        chosen["values"][draw(st.sampled_from(sorted(chosen["values"])))] = draw(json_values)
    elif fault == "samples":
        data["samples"] = draw(st.lists(samples, max_size=3))
    elif fault == "replace-field":
        data[draw(st.sampled_from(sorted(data)))] = draw(json_values)
    elif fault == "drop-field":
        data.pop(draw(st.sampled_from(sorted(data))))
    elif fault == "add-field":
        data[draw(st.text(max_size=5))] = draw(json_values)
    payload = json.dumps(data, allow_nan=True).encode()
    if fault == "bytes":
        payload = draw(st.binary(max_size=200))
    elif fault == "truncate":
        payload = payload[: draw(st.integers(min_value=0, max_value=len(payload)))]
    elif fault == "flip":
        at = draw(st.integers(min_value=0, max_value=len(payload) - 1))
        payload = payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1 :]
    return topic, payload


def _allowed(rule: SignalRule, value: Any) -> bool:
    if rule.kind is ValueKind.BOOL:
        return type(value) is bool
    if rule.kind is ValueKind.STR:
        return (
            type(value) is str
            and len(value) <= rule.max_length
            and (rule.labels is None or value in rule.labels)
            and value.isprintable()
            and (value.isascii() or not rule.ascii)
        )
    if rule.kind is ValueKind.INT and type(value) is not int:
        return False
    if rule.kind is ValueKind.FLOAT and type(value) is not float:
        return False
    return math.isfinite(value) and rule.low <= value <= rule.high and abs(value) <= 2**53


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from([REGISTRY, TWO_AGENTS]))
def test_registry_refuses_with_payload_error_or_accepts_only_what_holds(
    data: st.DataObject, registry: Registry
) -> None:
    topic, payload = data.draw(messages(registry))
    try:
        batch = registry.check_telemetry(topic, payload, NOW)
    except PayloadError as exc:
        assert exc.kind and exc.detail
        event(exc.kind)
        return
    event("accepted")
    rules = registry.machines[topic.machine]
    assert (batch.site, batch.machine) == (topic.site, topic.machine) == (registry.site_id, rules.machine)
    assert batch.agent == rules.agent  # both registries declare agents
    for sample in batch.samples:
        assert NOW - registry.max_behind_ms <= sample.ts <= NOW + registry.max_ahead_ms
        for name, value in sample.values.items():
            assert name in rules.signals, name
            assert _allowed(rules.signals[name], value), (name, value)
            if CANONICAL_SIGNALS.get(name) in (SignalKind.INT, SignalKind.FLOAT):
                assert value >= 0


# ---- shopfloor collect: skew options and SIGHUP reload -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [("300", 300_000), ("90s", 90_000), ("5m", 300_000), ("12h", 43_200_000), ("7d", 7 * DAY), ("250ms", 250)],
)
def test_durations(text: str, ms: int) -> None:
    assert collector_cli._duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "five", "-1s", "5w", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        collector_cli._duration_ms(text)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shopfloor")
    collector_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["collect", *argv])


def test_collect_defaults_to_the_design_skew_window_and_the_settings_site() -> None:
    args = _parse()
    assert (args.max_ahead, args.max_behind, args.backfill) == (300_000, 7 * DAY, False)
    assert Path(args.site) == Settings().site
    args = _parse("--site", "/etc/sf/site.yaml", "--max-ahead", "1m", "--max-behind", "2d", "--backfill")
    assert (args.site, args.max_ahead, args.max_behind, args.backfill) == ("/etc/sf/site.yaml", 60_000, 2 * DAY, True)


def test_reload_swaps_the_registry_and_keeps_the_old_one_if_the_file_is_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = tmp_path / "site.yaml"
    profile = "{model: p, registers: [{signal: good_count, address: 0, type: uint32}]}"
    site.write_text(f"site: {{id: bdg}}\nprofiles: [{profile}]\nmachines: [{{id: m-1, profile: p}}]\n")
    args = _parse("--site", str(site), "--max-ahead", "1m")
    with InfluxStore("http://127.0.0.1:9", "x") as store:  # never contacted
        collector = Collector(MqttSettings(), store, registry=REGISTRY)
    caplog.set_level(logging.INFO)
    collector_cli._reload(collector, args)
    reloaded = collector.registry
    assert reloaded is not None and reloaded is not REGISTRY
    assert (sorted(reloaded.machines), reloaded.open, reloaded.max_ahead_ms) == (["m-1"], True, 60_000)
    assert "site registry reloaded: 1 machines; site has no agents: section" in caplog.text

    site.write_text(site.read_text() + "agents: [{id: edge-1, machines: [m-9]}]\n")
    collector_cli._reload(collector, args)
    assert collector.registry is reloaded
    assert "site registry not reloaded, keeping the previous one" in caplog.text
    assert "machine 'm-9' is not defined" in caplog.text
