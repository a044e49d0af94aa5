"""The fast telemetry pass accepts and refuses exactly what the pydantic models (and the registry's checks) do.

validate_telemetry and Registry.check_telemetry take a hand-written pass over the decoded JSON and fall back to
the models (validate_telemetry_model, Registry.check_telemetry_model) whenever it is not sure. These differential
tests feed both paths the same payloads, valid ones and every kind of breakage, and require the same batch (types
included: 1, 1.0 and True differ) or the same refusal (kind and detail).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_collector_registry import EXAMPLE, HOSTILE, NOW, REGISTRY, TWO_AGENTS, VALID, _open_site, body
from test_collector_registry import messages as registry_messages

from collector.convert import batch_to_lines, batch_to_lines_reference
from collector.registry import CheckedLines, MachineRules, Registry, SignalRule, ValueKind
from shopfloor.contracts import (
    CANONICAL_SIGNALS,
    MAX_SAMPLES_PER_BATCH,
    MAX_TS_MS,
    MIN_TS_MS,
    MachineState,
    PayloadError,
    Sample,
    TelemetryBatch,
    Topic,
    _construct_is_exact,
    decode_payload,
    fast_telemetry,
    parse_telemetry,
    validate_telemetry,
    validate_telemetry_model,
)

TOPIC = Topic.telemetry("bdg", "cnc-01")
TS = 1_764_291_600_123
DAY = 86_400_000
EXAMPLES = 1000  # per differential test; the registry property test runs 2,000 more
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ---- raw JSON text: literals json.loads accepts that json.dumps never writes, and duplicate keys ----------------


@dataclass(frozen=True)
class Raw:
    """JSON text written as is (NaN, -Infinity, 1e999, 1.0E2, a 400-digit integer ...)."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object written pair by pair, so that a key may occur twice (json.loads keeps the last)."""

    items: tuple[tuple[str, Any], ...]


def to_json(x: Any) -> str:
    if isinstance(x, Raw):
        return x.text
    if isinstance(x, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in x.items) + "}"
    if isinstance(x, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in x.items()) + "}"
    if isinstance(x, list):
        return "[" + ",".join(to_json(v) for v in x) + "]"
    return json.dumps(x)  # NaN and Infinity for non-finite floats


# ---- outcomes ----------------------------------------------------------------------------------------------------


def typed(x: Any) -> Any:
    """x with every leaf tagged with its type: 1, 1.0 and True must not compare equal."""
    if isinstance(x, dict):
        return {k: typed(v) for k, v in x.items()}
    if isinstance(x, list):
        return [typed(v) for v in x]
    return (type(x).__name__, repr(x))


def outcome(run: Any) -> tuple[Any, ...]:
    try:
        batch = run()
    except PayloadError as exc:
        return ("refused", exc.kind, exc.detail)
    except Exception as exc:  # neither path may crash differently either
        return ("raised", type(exc).__name__, str(exc))
    assert type(batch) is TelemetryBatch
    assert all(type(s) is Sample for s in batch.samples)
    return ("accepted", typed(batch.model_dump()), batch.model_fields_set, batch.to_json())


def same_batch(a: TelemetryBatch, b: TelemetryBatch) -> None:
    assert a == b
    assert a.model_fields_set == b.model_fields_set
    assert [s.model_fields_set for s in a.samples] == [s.model_fields_set for s in b.samples]
    assert (a.__pydantic_extra__, a.__pydantic_private__) == (b.__pydantic_extra__, b.__pydantic_private__)


# ---- values of every JSON type, the awkward ones often -------------------------------------------------------

SIGNED_BOUNDS = [2**31 - 1, 2**31, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30]
INTS = st.one_of(
    st.integers(min_value=-5, max_value=70_000),
    st.sampled_from([*SIGNED_BOUNDS, *(-b for b in SIGNED_BOUNDS), 0, 1, -1, 65535, 65536, 32767, -32768]),
    st.integers(min_value=-(2**80), max_value=2**80),
)
FLOATS = st.one_of(
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN and Infinity
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 12.5, -0.5, 65535.0, 65536.0, 2.0**53, 2.0**53 + 2, 1.7e308, 5e-324]),
    st.floats(min_value=-1e6, max_value=1e6),
)
LITERALS = st.sampled_from(
    [
        Raw("NaN"),
        Raw("Infinity"),
        Raw("-Infinity"),
        Raw("1e999"),
        Raw("-1e999"),
        Raw("-0"),
        Raw("-0.0"),
        Raw("1.0"),
        Raw("1E2"),
        Raw("1e0"),
        Raw("12.50"),
        Raw("1" + "0" * 400),  # an int beyond every float
        Raw("-" + "9" * 310),
        Raw("1764291600123.0"),
        Raw("true"),
        Raw("null"),
    ]
)
STATES = [s.value for s in MachineState]
STRINGS = st.one_of(
    st.sampled_from([*STATES, "running", "EXPLODED", "", "J-1", "12", "1.5", "true", "x" * 16, "x" * 17]),
    st.sampled_from(["x" * 255, "x" * 256, "x" * 257, "ä" * 256, "é" * 257, "RUNNING\n", "RUNNING "]),
    st.text(max_size=12),
    st.text(min_size=250, max_size=260),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, STRINGS, LITERALS)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
ANY_VALUE = st.one_of(SCALARS, SCALARS, JUNK)

# ---- ids and signal names -------------------------------------------------------------------------------------

IDS = st.one_of(
    st.sampled_from(["edge-1", "bdg", "cnc-01", "a", "0", "a" * 63, "a" * 64, "a" + "-" * 62, "x-" * 20]),
    st.sampled_from(["", "-a", "Edge-1", "edge_1", "edge 1", "edge-1\n", "\nedge-1", "edge-1 ", "édge", "ｅdge"]),
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True),
    st.text(max_size=8),
)
SIGNALS = st.one_of(
    st.sampled_from(sorted(CANONICAL_SIGNALS)),
    st.sampled_from(["x", "a" * 63, "a" * 64, "a_1", "time", "machine", "site", "agent", "junk_1"]),
    st.sampled_from(["", "_x", "_", "1a", "Bad", "bad name", "good_count\n", "good-count", "ß", "good_count "]),
    st.from_regex(r"[a-z][a-z0-9_]{0,62}", fullmatch=True),
    st.text(max_size=6),
)


def canonical_value(name: str) -> st.SearchStrategy[Any]:
    """Values close to what signal name must carry, so that many samples pass and the edges are near."""
    kind = CANONICAL_SIGNALS.get(name)
    if kind is None:
        return st.one_of(
            st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text()
        )
    if kind.value == "state":
        return st.sampled_from(STATES)
    if kind.value == "str":
        return st.text(max_size=20)
    if kind.value == "int":
        return st.integers(min_value=0, max_value=2**64)
    return st.one_of(st.integers(min_value=0, max_value=2**60), st.floats(min_value=0.0, max_value=1e300))


VALID_SIGNALS = st.one_of(
    st.sampled_from(sorted(CANONICAL_SIGNALS)), st.from_regex(r"[a-z][a-z0-9_]{0,62}", fullmatch=True)
)


@st.composite
def plain_values(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(
        st.lists(VALID_SIGNALS | SIGNALS if draw(st.integers(0, 4)) == 0 else VALID_SIGNALS, max_size=6, unique=True)
    )
    return {name: draw(canonical_value(name)) for name in names}


# ---- whole payloads -------------------------------------------------------------------------------------------

FIELDS = ["v", "agent", "site", "machine", "seq", "samples"]
WRONG_FOR_INT = st.sampled_from([True, False, 1.0, 4711.0, "1", "4711", None, [1], {"n": 1}, Raw("1.0"), Raw("1e0")])


@st.composite
def samples(draw: st.DrawFn) -> Any:
    ts = draw(
        st.one_of(
            st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS),
            st.sampled_from([MIN_TS_MS - 1, MIN_TS_MS, MAX_TS_MS, MAX_TS_MS + 1, TS]),
        )
    )
    values: Any = draw(plain_values())
    sample: Any = {"ts": ts, "values": values}
    fault = draw(st.sampled_from(["none"] * 28 + ["ts", "ts-type", "values", "value", "name", "extra", "missing"]))
    if fault == "ts":
        sample["ts"] = draw(ANY_VALUE)
    elif fault == "ts-type":
        sample["ts"] = draw(st.sampled_from([float(TS), True, str(TS), Raw(f"{TS}.0"), Raw(f"{TS}e0")]))
    elif fault == "values":
        sample["values"] = draw(
            st.one_of(
                ANY_VALUE,
                st.just({f"s{i}": i for i in range(64)}),
                st.just({f"s{i}": i for i in range(65)}),
                st.just(Pairs(tuple((f"s{i % 64}", i) for i in range(70)))),  # 64 distinct after duplicates
            )
        )
    elif fault == "value" and values:
        values[draw(st.sampled_from(sorted(values)))] = draw(ANY_VALUE)
    elif fault == "name":
        values[draw(SIGNALS)] = draw(ANY_VALUE)
    elif fault == "extra":
        sample[draw(st.sampled_from(["extra", "TS", "Values", "v", ""]))] = draw(ANY_VALUE)
    elif fault == "missing":
        del sample[draw(st.sampled_from(["ts", "values"]))]
    if draw(st.integers(0, 19)) == 0:  # a duplicate key: the last one counts
        key = draw(st.sampled_from(sorted(sample)))
        second = draw(ANY_VALUE)
        return Pairs((*sample.items(), (key, second)) if draw(st.booleans()) else ((key, second), *sample.items()))
    return sample


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    data: dict[str, Any] = {
        "v": 1,
        "agent": draw(st.sampled_from(["edge-1", "edge-2"])) if draw(st.integers(0, 3)) else draw(IDS),
        "site": "bdg" if draw(st.integers(0, 9)) else draw(IDS),
        "machine": "cnc-01" if draw(st.integers(0, 9)) else draw(IDS),
        "seq": draw(st.integers(min_value=0, max_value=2**63 - 1) | st.sampled_from([0, 2**63 - 1])),
        "samples": draw(st.lists(samples(), min_size=1, max_size=4)),
    }
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        fault = draw(
            st.sampled_from(
                ["none", "replace", "wrong-int", "drop", "extra", "samples-count", "samples-type", "version", "dup"]
            )
        )
        if fault == "replace":
            data[draw(st.sampled_from(FIELDS))] = draw(ANY_VALUE)
        elif fault == "wrong-int":
            data[draw(st.sampled_from(["v", "seq"]))] = draw(WRONG_FOR_INT | INTS)
        elif fault == "drop":
            data.pop(draw(st.sampled_from(FIELDS)), None)
        elif fault == "extra":
            data[draw(st.sampled_from(["extra", "V", "samples ", "sample", ""]) | st.text(max_size=4))] = draw(
                ANY_VALUE
            )
        elif fault == "samples-count":
            n = draw(st.sampled_from([0, MAX_SAMPLES_PER_BATCH, MAX_SAMPLES_PER_BATCH + 1]))
            data["samples"] = [{"ts": TS + i, "values": {"good_count": i}} for i in range(n)]
        elif fault == "samples-type":
            data["samples"] = draw(
                st.sampled_from([{}, {"ts": TS, "values": {}}, "[]", None, [None], [[]], [1], Pairs(())])
            )
        elif fault == "version":
            data["v"] = draw(st.sampled_from([True, 1.0, Raw("1.0"), Raw("1e0"), Raw("1E0"), 2, 0, -1, "1", None]))
    text = to_json(data)
    if draw(st.integers(0, 19)) == 0:  # a duplicate top-level key, before or after the first
        key, value = draw(st.sampled_from(FIELDS)), draw(ANY_VALUE | st.sampled_from([1, "edge-1", "cnc-01"]))
        pair = f"{json.dumps(key)}:{to_json(value)}"
        text = "{" + pair + "," + text[1:] if draw(st.booleans()) and len(text) > 2 else text[:-1] + "," + pair + "}"
    return text.encode()


def both_contract_paths(payload: bytes, topic: Topic = TOPIC) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    def new() -> TelemetryBatch:
        data = decode_payload(payload)
        before = repr(data)
        try:
            return validate_telemetry(topic, data)
        finally:
            assert repr(data) == before  # the fast pass leaves the caller's data alone

    return outcome(new), outcome(lambda: validate_telemetry_model(topic, decode_payload(payload)))


# ---- the contract --------------------------------------------------------------------------------------------


@SETTINGS
@given(payloads())
def test_fast_validation_agrees_with_the_models(payload: bytes) -> None:
    new, reference = both_contract_paths(payload)
    assert new == reference
    try:
        fast = fast_telemetry(decode_payload(payload))
    except PayloadError:
        fast = None
    event(f"{new[0]} {new[1] if new[0] != 'accepted' else ''} fast={fast is not None}")
    if fast is not None:  # the shortcut itself only ever accepts what the models accept, and builds the same
        same_batch(fast, TelemetryBatch.model_validate(decode_payload(payload)))


@SETTINGS
@given(st.data())
def test_fast_validation_takes_plainly_valid_batches_itself(data: st.DataObject) -> None:
    # Not vacuous: what is valid and plain (exact types, every rule met) never needs the models.
    values = data.draw(
        st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,62}", fullmatch=True), st.just(None), max_size=64)
    )
    plain = {name: data.draw(canonical_value(name)) for name in values}
    plain = {k: v for k, v in plain.items() if not (type(v) is float and not math.isfinite(v))}
    plain = {k: v for k, v in plain.items() if not (type(v) is str and (len(v) > 256 or not v.isprintable()))}
    body = {
        "v": 1,
        "agent": data.draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)),
        "site": "bdg",
        "machine": "cnc-01",
        "seq": data.draw(st.integers(0, 2**63 - 1)),
        "samples": [{"ts": data.draw(st.integers(MIN_TS_MS, MAX_TS_MS)), "values": plain}],
    }
    payload = json.dumps(body).encode()
    fast = fast_telemetry(decode_payload(payload))
    assert fast is not None
    same_batch(fast, TelemetryBatch.model_validate(decode_payload(payload)))
    assert parse_telemetry(TOPIC, payload) == fast


@pytest.mark.parametrize(
    "text",
    [
        # What the models accept by coercion (so the fast pass leaves it to them): the same batch comes out.
        '{"v":true,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{}}]}',
        '{"v":1.0,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{}}]}',
        '{"v":1,"agent":"edge-1\\n","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{"a\\n":1}}]}',
        # Refused: each with the models' own detail.
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":true,"samples":[{"ts":%d,"values":{}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1.0,"samples":[{"ts":%d,"values":{}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d.0,"values":{}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{"x":NaN}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{"x":1e999}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{"job":1}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{},"x":1}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{}}],"x":0}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","samples":[{"ts":%d,"values":{}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-02","seq":1,"samples":[{"ts":%d,"values":{}}]}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{}}],"seq":-1}',
        '{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{"a":{}}}]}',
    ],
)
def test_known_edges_agree(text: str) -> None:
    new, reference = both_contract_paths((text % TS).encode())
    assert new == reference


def test_a_true_or_float_version_is_refused_and_the_fast_pass_leaves_that_to_the_slow_one() -> None:
    # True and 1.0 compare equal to 1 but are not the version marker: refused, by the same path as before.
    for v in ("true", "1.0"):
        text = '{"v":%s,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,"samples":[{"ts":%d,"values":{}}]}'
        payload = (text % (v, TS)).encode()
        with pytest.raises(PayloadError) as info:
            parse_telemetry(TOPIC, payload)
        assert info.value.kind == "unknown-version"


def test_fast_models_are_the_models() -> None:
    assert _construct_is_exact()  # this pydantic: the fast constructor is in use
    payload = json.dumps(
        {
            "v": 1,
            "agent": "edge-1",
            "site": "bdg",
            "machine": "cnc-01",
            "seq": 7,
            "samples": [{"ts": TS, "values": {"state": "RUNNING", "good_count": 3, "energy_kwh": 1.5, "x": True}}],
        }
    ).encode()
    fast = fast_telemetry(decode_payload(payload))
    assert fast is not None
    model = TelemetryBatch.model_validate_json(payload)
    same_batch(fast, model)
    assert fast.to_json() == model.to_json()
    assert TelemetryBatch.model_validate_json(fast.to_json()) == fast
    assert fast.model_copy(update={"seq": 8}).seq == 8 and fast.seq == 7
    assert hash(fast.samples[0].ts) == hash(model.samples[0].ts)
    with pytest.raises(ValueError):
        fast.seq = 9  # type: ignore[misc]
    with pytest.raises(ValueError):
        fast.samples[0].ts = 9  # type: ignore[misc]
    assert repr(fast) == repr(model)


# ---- the registry --------------------------------------------------------------------------------------------


def _odd_registry() -> Registry:
    """The example site with rules no example profile has, on cnc-01: a bool, labels that need escaping (or that no
    value may be: too long, not printable, not ASCII), a free non-ASCII string, a canonical float declared an int."""
    odd = {
        "door_open": SignalRule(ValueKind.BOOL),
        "mode": SignalRule(
            ValueKind.STR,
            labels=frozenset(['a"b', "c\\d", "A B,C=D", "x\ny", "\u00e9t\u00e9", "M" * 17, "ok"]),
            max_length=16,
            ascii=True,
        ),
        "note": SignalRule(ValueKind.STR, max_length=40),
        "energy_kwh": SignalRule(ValueKind.INT, 0.0, 1e12),
        "temp_c": SignalRule(ValueKind.FLOAT, -50.0, 200.5),
    }
    machines = dict(REGISTRY.machines)
    cnc = machines["cnc-01"]
    machines["cnc-01"] = MachineRules(cnc.machine, cnc.profile, cnc.agent, {**cnc.signals, **odd})
    return Registry(REGISTRY.site_id, machines, REGISTRY.agents)


OPEN = Registry.from_site(_open_site())
BACKFILL = Registry.from_site(EXAMPLE, backfill=True)
TIGHT = Registry.from_site(EXAMPLE, max_ahead_ms=1000, max_behind_ms=60_000)
ODD = _odd_registry()
REGISTRIES = [REGISTRY, TWO_AGENTS, OPEN, BACKFILL, TIGHT, ODD]
REGISTRY_IDS = ["example", "two-agents", "open", "backfill", "tight", "odd"]
MACHINES = sorted(REGISTRY.machines)


def both_registry_paths(registry: Registry, topic: Topic, payload: bytes) -> tuple[tuple[Any, ...], ...]:
    return (
        outcome(lambda: registry.check_telemetry(topic, payload, NOW)),
        outcome(lambda: registry.check_telemetry_model(topic, payload, NOW)),
    )


def edges(rule: SignalRule) -> tuple[list[Any], list[Any]]:
    """Values on and inside the rule's edges (mostly allowed), and beyond them or of other types (refused)."""
    if rule.kind is ValueKind.BOOL:
        return [True, False], [0, 1, "true", None]
    if rule.kind is ValueKind.STR:
        labels = (
            sorted(rule.labels) if rule.labels is not None else ["", "J-1"[: rule.max_length], "x" * rule.max_length]
        )
        if rule.labels is None:
            labels += ['a "b\\c', "\u00e9"]
        return labels, ["x" * (rule.max_length + 1), "running", 0, True, None]
    low, high = rule.low, rule.high
    ints = [int(low), int(high), int(low) + 1, int(high) - 1, int((low + high) / 2)]
    wrong = [True, False, str(high), None, [1]]
    if rule.kind is ValueKind.INT:
        outside = [int(low) - 1, int(high) + 1, float(int(low)), low + 0.5, 2**53 + 1, -(2**53) - 1]
        return ints, [*outside, *wrong]
    floats = [low, high, low + 0.5, high - 0.5, (low + high) / 2, max(low, min(high, 0.0)), max(low, min(high, -0.0))]
    outside = [low - 1, high + 1, low - 1e-9 * abs(low) - 1e-9, high + 1e-9 * abs(high) + 1e-9, 2**53 + 2, 1e300]
    return [*floats, *ints], [*outside, *wrong]


@st.composite
def registry_payloads(draw: st.DrawFn) -> tuple[Registry, Topic, bytes]:
    registry = draw(st.sampled_from(REGISTRIES))
    machine = draw(st.sampled_from(MACHINES))
    rules = registry.machines[machine]
    names = sorted(rules.signals)

    def sample() -> Any:
        chosen = draw(st.lists(st.sampled_from(names), max_size=6, unique=True))
        values: dict[str, Any] = {}
        for n in chosen:
            good, bad = edges(rules.signals[n])
            values[n] = draw(st.sampled_from(bad if draw(st.integers(0, 15)) == 0 else good))
        if draw(st.integers(0, 19)) == 0:
            values[draw(SIGNALS)] = draw(ANY_VALUE)
        if draw(st.integers(0, 19)) == 0 and values:
            values[draw(st.sampled_from(sorted(values)))] = draw(ANY_VALUE)
        ts: Any = draw(
            st.one_of(
                st.integers(min_value=NOW - 60_000, max_value=NOW + 1000),
                st.integers(min_value=NOW - 8 * DAY, max_value=NOW + 400_000),
                st.sampled_from([NOW + 300_000, NOW + 300_001, NOW - 7 * DAY, NOW - 7 * DAY - 1, NOW + 1000]),
                st.sampled_from([NOW + 1001, NOW - 60_000, NOW - 60_001, MIN_TS_MS - 1, MAX_TS_MS + 1]),
            )
        )
        if draw(st.integers(0, 29)) == 0:
            ts = draw(ANY_VALUE)
        return {"ts": ts, "values": values}

    data: dict[str, Any] = {
        "v": 1,
        "agent": draw(st.sampled_from([rules.agent or "edge-1"] * 12 + ["edge-1", "edge-2", "edge-9", "Edge-1"])),
        "site": "bdg",
        "machine": machine,
        "seq": draw(st.integers(min_value=0, max_value=2**63 - 1)),
        "samples": [sample() for _ in range(draw(st.integers(min_value=1, max_value=4)))],
    }
    topic = Topic.telemetry("bdg", machine)
    fault = draw(st.sampled_from(["none"] * 20 + ["field", "wrong-int", "drop", "extra", "topic", "many", "contract"]))
    if fault == "field":
        data[draw(st.sampled_from(FIELDS))] = draw(ANY_VALUE)
    elif fault == "wrong-int":
        data[draw(st.sampled_from(["v", "seq"]))] = draw(WRONG_FOR_INT)
    elif fault == "drop":
        data.pop(draw(st.sampled_from(FIELDS)))
    elif fault == "extra":
        data[draw(st.text(max_size=4))] = draw(ANY_VALUE)
    elif fault == "topic":
        topic = Topic.telemetry(draw(st.sampled_from(["bdg", "jkt"])), draw(st.sampled_from([*MACHINES, "cnc-99"])))
    elif fault == "many":  # the registry's checks run over every sample, the models stop at 1000
        bad = draw(st.sampled_from([{"good_count": 1}, {"good_count": "x"}, {"junk": 1}, {"time": 1}]))
        n = draw(st.sampled_from([MAX_SAMPLES_PER_BATCH, MAX_SAMPLES_PER_BATCH + 1]))
        data["samples"] = [{"ts": NOW, "values": {}}] * (n - 1) + [{"ts": NOW, "values": bad}]
    elif fault == "contract":
        data["samples"] = draw(st.lists(samples(), min_size=1, max_size=3))
    return registry, topic, to_json(data).encode()


@SETTINGS
@given(registry_payloads())
def test_fast_registry_agrees_with_the_model_path(case: tuple[Registry, Topic, bytes]) -> None:
    registry, topic, payload = case
    new, reference = both_registry_paths(registry, topic, payload)
    assert new == reference
    event(f"{new[0]} {new[1] if new[0] != 'accepted' else ''}")


@SETTINGS
@given(st.data(), st.sampled_from([REGISTRY, TWO_AGENTS]))
def test_fast_registry_agrees_on_the_registry_property_test_messages(data: st.DataObject, registry: Registry) -> None:
    topic, payload = data.draw(registry_messages(registry))
    new, reference = both_registry_paths(registry, topic, payload)
    assert new == reference
    event(f"{new[0]} {new[1] if new[0] != 'accepted' else ''}")


@pytest.mark.parametrize("payload", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("registry", REGISTRIES, ids=REGISTRY_IDS)
def test_hostile_cases_agree(registry: Registry, payload: bytes) -> None:
    new, reference = both_registry_paths(registry, Topic.telemetry("bdg", "cnc-01"), payload)
    assert new == reference


@pytest.mark.parametrize(("machine", "values"), [(v[0], v[2]) for v in VALID], ids=[v[1] for v in VALID])
def test_valid_cases_take_the_fast_pass(machine: str, values: dict[str, Any]) -> None:
    topic = Topic.telemetry("bdg", machine)
    payload = json.dumps(body(values, machine=machine)).encode()
    rules = REGISTRY.machines[machine]
    fast = REGISTRY._fast_telemetry(topic, decode_payload(payload), rules, NOW)
    assert fast is not None
    same_batch(fast, REGISTRY.check_telemetry_model(topic, payload, NOW))


def test_ints_beyond_every_float_where_a_float_is_declared_are_out_of_range() -> None:
    # float(10**400) overflows: both paths refuse the value instead of raising OverflowError.
    payload = json.dumps(body({"energy_kwh": 10**400})).encode()
    new, reference = both_registry_paths(REGISTRY, TOPIC, payload)
    assert new == reference
    assert new[:2] == ("refused", "out-of-range")


def test_every_declared_signal_of_the_example_site_has_a_fast_rule() -> None:
    # Otherwise every message with that signal would take the slow path (correct, but slow).
    for machine, rules in REGISTRY.machines.items():
        assert sorted(REGISTRY._fast_rules[machine]) == sorted(rules.signals), machine


# ---- the fused pass: check_telemetry_lines checks and renders in one pass ------------------------------------------


def lines_outcome_of(run: Any) -> tuple[Any, ...]:
    """What a telemetry check gave: the header and lines (types included), or the refusal."""
    try:
        checked = run()
    except PayloadError as exc:
        return ("refused", exc.kind, exc.detail)
    except Exception as exc:  # neither path may crash differently either
        return ("raised", type(exc).__name__, str(exc))
    header = (checked.agent, checked.site, checked.machine, checked.seq, checked.first_ts, checked.last_ts)
    assert all(type(line) is str for line in checked.lines)
    return ("accepted", typed(header), checked.lines)


def model_lines(registry: Registry, topic: Topic, payload: bytes) -> Any:
    """The reference: the model path's batch, rendered by batch_to_lines, with the ts span worked out here."""
    batch = registry.check_telemetry_model(topic, payload, NOW)
    lines = batch_to_lines(batch)
    assert lines == batch_to_lines_reference(batch)  # and so render_line's, byte for byte
    stamps = [s.ts for s in batch.samples if s.values]
    first, last = (min(stamps), max(stamps)) if stamps else (None, None)
    return CheckedLines(batch.agent, batch.site, batch.machine, batch.seq, lines, first, last)


def both_line_paths(registry: Registry, topic: Topic, payload: bytes) -> tuple[tuple[Any, ...], ...]:
    try:
        data = decode_payload(payload)
    except PayloadError:
        pass
    else:
        if topic.machine in registry.machines and topic.site == registry.site_id:
            before = repr(data)
            registry._fast_lines(topic, data, registry.machines[topic.machine], NOW)
            assert repr(data) == before  # the fused pass leaves data alone: the fallback reuses it
    return (
        lines_outcome_of(lambda: registry.check_telemetry_lines(topic, payload, NOW)),
        lines_outcome_of(lambda: model_lines(registry, topic, payload)),
    )


@SETTINGS
@given(registry_payloads())
def test_fused_lines_agree_with_the_model_path(case: tuple[Registry, Topic, bytes]) -> None:
    registry, topic, payload = case
    new, reference = both_line_paths(registry, topic, payload)
    assert new == reference
    event(f"{new[0]} {new[1] if new[0] != 'accepted' else ''}")


@SETTINGS
@given(st.data(), st.sampled_from([REGISTRY, TWO_AGENTS]))
def test_fused_lines_agree_on_the_registry_property_test_messages(data: st.DataObject, registry: Registry) -> None:
    topic, payload = data.draw(registry_messages(registry))
    new, reference = both_line_paths(registry, topic, payload)
    assert new == reference
    event(f"{new[0]} {new[1] if new[0] != 'accepted' else ''}")


@pytest.mark.parametrize("payload", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("registry", REGISTRIES, ids=REGISTRY_IDS)
def test_hostile_cases_give_the_same_refusal_or_lines(registry: Registry, payload: bytes) -> None:
    new, reference = both_line_paths(registry, Topic.telemetry("bdg", "cnc-01"), payload)
    assert new == reference


@pytest.mark.parametrize("topic", [Topic.telemetry("jkt", "cnc-01"), Topic.telemetry("bdg", "cnc-99")])
def test_unknown_site_and_machine_give_the_same_refusal(topic: Topic) -> None:
    payload = json.dumps(body(site=topic.site, machine=topic.machine)).encode()
    new, reference = both_line_paths(REGISTRY, topic, payload)
    assert new == reference and new[0] == "refused"


ODD_VALUES = [  # cnc-01 of ODD: each sample's values, written by the fused pass itself
    {"door_open": True, "mode": 'a"b', "note": 'say "hi" \\ \u00e9', "energy_kwh": 12, "temp_c": -0.0},
    {"door_open": False, "mode": "c\\d", "note": "", "energy_kwh": 2**39, "temp_c": 200},
    {"mode": "A B,C=D", "state": "RUNNING", "good_count": 2**53, "power_kw": 2**53 + 1},
    {},
    {"temp_c": 1e-300, "job": 'J "1"'},
]


@pytest.mark.parametrize(
    ("registry", "machine", "samples"),
    [
        *[(REGISTRY, v[0], [{"ts": NOW, "values": v[2]}]) for v in VALID],
        (ODD, "cnc-01", [{"ts": NOW - i, "values": v} for i, v in enumerate(ODD_VALUES)]),
        (ODD, "cnc-01", [{"ts": NOW + i, "values": v} for i, v in enumerate(reversed(ODD_VALUES))]),
        (REGISTRY, "cnc-01", [{"ts": NOW + 5, "values": {}}, {"ts": NOW - 5, "values": {}}]),
    ],
    ids=[*(v[1] for v in VALID), "odd", "odd-reversed", "only-empty"],
)
def test_valid_cases_take_the_fused_pass(registry: Registry, machine: str, samples: list[dict[str, Any]]) -> None:
    topic = Topic.telemetry("bdg", machine)
    payload = json.dumps(body(machine=machine, samples=samples)).encode()
    fast = registry._fast_lines(topic, decode_payload(payload), registry.machines[machine], NOW)
    assert fast is not None
    assert fast == model_lines(registry, topic, payload)
    assert [type(t) for t in (fast.first_ts, fast.last_ts)] == ([int, int] if fast.lines else [type(None)] * 2)


def test_labels_no_value_may_be_are_left_to_the_model() -> None:
    # Too long, not printable, not ASCII: the model path says which (out-of-range); the fused pass never writes them.
    for label in ["M" * 17, "x\ny", "\u00e9t\u00e9"]:
        payload = json.dumps(body({"mode": label})).encode()
        assert ODD._fast_lines(TOPIC, decode_payload(payload), ODD.machines["cnc-01"], NOW) is None
        new, reference = both_line_paths(ODD, TOPIC, payload)
        assert new == reference and new[:2] == ("refused", "out-of-range"), new


def test_more_than_64_values_are_left_to_the_model_even_if_the_profile_declares_them() -> None:
    machines = dict(REGISTRY.machines)
    cnc = machines["cnc-01"]
    wide = {f"s{i}": SignalRule(ValueKind.INT, 0.0, 9.0) for i in range(70)}
    machines["cnc-01"] = MachineRules(cnc.machine, cnc.profile, cnc.agent, wide)
    registry = Registry(REGISTRY.site_id, machines, REGISTRY.agents)
    for n in (64, 65):
        payload = json.dumps(body({f"s{i}": 1 for i in range(n)})).encode()
        fast = registry._fast_lines(TOPIC, decode_payload(payload), registry.machines["cnc-01"], NOW)
        assert (fast is not None) == (n == 64)
        new, reference = both_line_paths(registry, TOPIC, payload)
        assert new == reference and new[0] == ("accepted" if n == 64 else "refused"), new


def test_layouts_are_remembered_boundedly() -> None:
    registry = _odd_registry()
    plan = registry._line_plans["cnc-01"]
    names = sorted(registry.machines["cnc-01"].signals)
    k = len(names)
    for n in range(1500):  # more distinct layouts (names in JSON order) than remembered
        values = dict.fromkeys([names[n % k], names[n // k % k], names[n // k // k % k]])
        assert plan.layout(values) is not None
        assert len(plan.layouts) <= 1024
    assert 0 < len(plan.layouts) < 1024  # started over once full
    assert plan.layout({"state": "RUNNING", "junk": 1}) is None  # a name without a rule: the model decides


# ---- line protocol: batch_to_lines renders what render_line does -------------------------------------------------

RENDER_NAMES = st.one_of(SIGNALS, st.sampled_from(["a b", "a,b", "a=b", "a\\b", 'a"b', "a\nb"]))
RENDER_VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400)]),  # a float signal's int beyond every float: OverflowError, as before
    st.floats(),
    st.sampled_from([*STATES, "", 'say "hi"', "back\\slash", "new\nline", "a,b c=d", "ünï"]),
    st.text(max_size=10),
)


def lines_outcome(run: Any) -> tuple[Any, ...]:
    try:
        return ("lines", run())
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS),
            st.one_of(
                st.dictionaries(RENDER_NAMES, RENDER_VALUES, max_size=6),
                st.sampled_from([{"state": "RUNNING", "good_count": 1}, {"good_count": 2, "state": "IDLE"}]),
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["cnc-01", "a b", "a,b=c"]),
)
def test_batch_to_lines_renders_what_render_line_does(rows: list[tuple[int, dict[str, Any]]], machine: str) -> None:
    from collector.convert import batch_to_lines, batch_to_lines_reference
    from shopfloor.contracts import trusted_batch, trusted_sample

    batch = trusted_batch("edge-1", "bdg", machine, 1, [trusted_sample(ts, values) for ts, values in rows])
    assert lines_outcome(lambda: batch_to_lines(batch)) == lines_outcome(lambda: batch_to_lines_reference(batch))
