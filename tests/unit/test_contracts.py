"""The wire contract: topics and payload validation, including malformed and hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shopfloor.contracts import (
    MAX_PAYLOAD_BYTES,
    MAX_TS_MS,
    MIN_TS_MS,
    RESERVED_SIGNALS,
    LinkStatus,
    PayloadError,
    Sample,
    StatusMessage,
    TelemetryBatch,
    Topic,
    TopicKind,
    decode_payload,
    is_reserved_signal,
    is_valid_id,
    is_valid_signal,
    parse_status,
    parse_telemetry,
    printable,
    subscription_filters,
    validate_status,
    validate_telemetry,
)

TOPIC = Topic.telemetry("bdg", "cnc-01")
TS = 1764291600123


def batch(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "agent": "edge-1",
        "site": "bdg",
        "machine": "cnc-01",
        "seq": 4711,
        "samples": [{"ts": TS, "values": {"state": "RUNNING", "good_count": 812, "energy_kwh": 12.5, "job": "J-1"}}],
    }
    body.update(overrides)
    return body


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("topic", "kind", "site", "machine", "agent"),
    [
        ("shopfloor/v1/bdg/cnc-01/telemetry", TopicKind.TELEMETRY, "bdg", "cnc-01", ""),
        ("shopfloor/v1/bdg/cnc-01/status", TopicKind.MACHINE_STATUS, "bdg", "cnc-01", ""),
        ("shopfloor/v1/bdg/agents/edge-1/status", TopicKind.AGENT_STATUS, "bdg", "", "edge-1"),
        ("shopfloor/v1/bdg/agents/edge-1/commits", TopicKind.COMMITS, "bdg", "", "edge-1"),
    ],
)
def test_topic_round_trip(topic: str, kind: TopicKind, site: str, machine: str, agent: str) -> None:
    parsed = Topic.parse(topic)
    assert (parsed.kind, parsed.site, parsed.machine, parsed.agent) == (kind, site, machine, agent)
    assert str(parsed) == topic


@pytest.mark.parametrize(
    "topic",
    [
        "shopfloor/v2/bdg/cnc-01/telemetry",
        "shopfloor/v1/BDG/cnc-01/telemetry",
        "shopfloor/v1/bdg/cnc_01/telemetry",
        "shopfloor/v1/bdg/-cnc/telemetry",
        "shopfloor/v1/bdg/cnc-01/telemetry/extra",
        "shopfloor/v1/bdg/cnc-01/unknown",
        "shopfloor/v1/bdg/" + "a" * 64 + "/telemetry",
        "shopfloor/v1/bdg/+/telemetry",
        "",
        "shopfloor/v1/bdg/cnc-01/../telemetry",
    ],
)
def test_topic_rejects_invalid(topic: str) -> None:
    with pytest.raises(ValueError):
        Topic.parse(topic)


def test_topic_value_object_refuses_bad_ids() -> None:
    with pytest.raises(ValueError):
        Topic.telemetry("bdg", "Cnc 01")


def test_valid_batch_parses() -> None:
    parsed = parse_telemetry(TOPIC, raw(batch()))
    assert parsed.seq == 4711
    assert parsed.samples[0].values["good_count"] == 812
    assert TelemetryBatch.model_validate_json(parsed.to_json()) == parsed


def test_float_counter_accepts_integer_value() -> None:
    body = batch(samples=[{"ts": TS, "values": {"energy_kwh": 12}}])
    assert parse_telemetry(TOPIC, raw(body)).samples[0].values["energy_kwh"] == 12


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"not json", "malformed-json"),
        (b"\xff\xfe\x00garbage", "malformed-json"),
        (b"", "malformed-json"),
        (b"[]", "invalid-payload"),
        (b"null", "invalid-payload"),
        (raw(batch(v=2)), "unknown-version"),
        (raw(batch(v="1")), "unknown-version"),
        (raw({k: v for k, v in batch().items() if k != "v"}), "unknown-version"),
        (raw(batch(agent="Edge 1")), "invalid-payload"),
        (raw(batch(site="bdg'; DROP")), "invalid-payload"),
        (raw(batch(seq=-1)), "invalid-payload"),
        (raw(batch(seq=2**64)), "invalid-payload"),
        (raw(batch(seq="12")), "invalid-payload"),
        (raw(batch(samples=[])), "invalid-payload"),
        (raw(batch(extra="x")), "invalid-payload"),
        (raw(batch(machine="cnc-02")), "topic-mismatch"),
        (raw(batch(samples=[{"ts": 12, "values": {}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": 10**15, "values": {}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": 1.5e12, "values": {}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"state": "EXPLODED"}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"state": 3}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"good_count": -1}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"good_count": 1.5}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"badge": True}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"energy_kwh": "12"}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"job": 5}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"job": "x" * 300}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"job": "A\nB"}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"operator_note": "\x1b]0;pwned\x07"}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"stop_reason": "\u2028"}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"Bad Name": 1}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {"nested": {"a": 1}}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {f"s{i}": i for i in range(65)}}])), "invalid-payload"),
        (raw(batch(samples=[{"ts": TS, "values": {}}] * 1001)), "invalid-payload"),
        (b'{"v": 1, "power_kw": NaN}', "invalid-payload"),
        (
            b'{"v":1,"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,'
            b'"samples":[{"ts":1764291600123,"values":{"power_kw":NaN}}]}',
            "invalid-payload",
        ),
        (b"{" * 100_000, "malformed-json"),
        (b"[" * 100_000, "malformed-json"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "oversize"),
    ],
)
def test_bad_payloads_are_refused_with_a_kind(payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_telemetry(TOPIC, payload)
    assert info.value.kind == kind
    assert info.value.detail


def test_status_round_trip_and_rejection() -> None:
    msg = StatusMessage(status=LinkStatus.UNREACHABLE, ts=TS, agent="edge-1", detail="timeout")
    topic = Topic.machine_status("bdg", "cnc-01")
    assert parse_status(topic, msg.to_json()) == msg
    with pytest.raises(PayloadError):
        parse_status(topic, b'{"v":1,"status":"sleeping","ts":1764291600123,"agent":"edge-1"}')
    with pytest.raises(PayloadError):
        parse_status(topic, b'{"v":7}')


LOSS = {"v": 1, "status": "unreachable", "ts": TS, "agent": "edge-1", "detail": "outbox full: ..."}


@pytest.mark.parametrize(
    "until",
    [TS, TS + 1, TS + 86_400_000, MAX_TS_MS],
    ids=["one-sample", "one-ms", "a-day", "the-last-ms"],
)
def test_an_outbox_loss_status_carries_until(until: int) -> None:
    status = parse_status(Topic.machine_status("bdg", "cnc-01"), raw({**LOSS, "until": until}))
    assert (status.ts, status.until) == (TS, until)
    assert json.loads(status.to_json())["until"] == until  # round trip
    assert parse_status(Topic.machine_status("bdg", "cnc-01"), status.to_json()) == status


def test_a_status_without_until_is_unchanged_on_the_wire() -> None:
    status = StatusMessage(status=LinkStatus.UNREACHABLE, ts=TS, agent="edge-1")
    assert status.until is None
    assert "until" not in json.loads(status.to_json())


@pytest.mark.parametrize(
    ("until", "status", "message"),
    [
        pytest.param(TS - 1, "unreachable", "until 1764291600122 is before ts 1764291600123", id="before-ts"),
        pytest.param(MAX_TS_MS + 1, "unreachable", "until: Input should be less than or equal to", id="past-2100"),
        pytest.param(MIN_TS_MS - 1, "unreachable", "until: Input should be greater than or equal to", id="before-2000"),
        pytest.param(-1, "unreachable", "until: Input should be greater than or equal to", id="negative"),
        pytest.param(2**70, "unreachable", "until: Input should be less than or equal to", id="huge"),
        pytest.param(float(TS + 5), "unreachable", "until: Input should be a valid integer", id="float"),
        pytest.param(str(TS + 5), "unreachable", "until: Input should be a valid integer", id="string"),
        pytest.param(True, "unreachable", "until: Input should be a valid integer", id="bool"),
        pytest.param([TS], "unreachable", "until: Input should be a valid integer", id="list"),
        pytest.param(TS + 5, "online", "until is only meaningful on status unreachable", id="with-status-online"),
        pytest.param(TS + 5, "offline", "until is only meaningful on status unreachable", id="with-status-offline"),
    ],
)
def test_a_bad_until_is_refused_naming_it(until: Any, status: str, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_status(Topic.machine_status("bdg", "cnc-01"), raw({**LOSS, "status": status, "until": until}))
    assert info.value.kind == "invalid-payload"
    assert message in info.value.detail
    with pytest.raises(ValueError, match="until"):
        StatusMessage.model_validate({**LOSS, "status": status, "until": until})


def test_until_null_is_no_loss() -> None:
    status = parse_status(Topic.machine_status("bdg", "cnc-01"), raw({**LOSS, "until": None}))
    assert status.until is None


@pytest.mark.parametrize("detail", ["no reply\nin 2 s", "\x1b[2Jcleared", "tab\there", "\u202eesrever"])
def test_a_status_detail_with_control_characters_is_refused(detail: str) -> None:
    body = json.dumps({"v": 1, "status": "unreachable", "ts": TS, "agent": "edge-1", "detail": detail}).encode()
    with pytest.raises(PayloadError) as info:
        parse_status(Topic.machine_status("bdg", "cnc-01"), body)
    assert info.value.kind == "invalid-payload" and "non-printable" in info.value.detail


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("no reply in 2 s", "no reply in 2 s"),
        ("connection reset\n  by peer", "connection reset   by peer"),  # the newline is one space
        ("\x1b[2J\x1b[Hgone", "[2J [Hgone"),
        ("\t\r\n", ""),
        ("x" * 600, "x" * 500),
    ],
)
def test_printable_makes_any_text_a_valid_detail(text: str, want: str) -> None:
    assert printable(text) == want
    StatusMessage(status=LinkStatus.UNREACHABLE, ts=TS, agent="edge-1", detail=printable(text))


def test_sample_is_frozen() -> None:
    sample = Sample(ts=TS, values={"badge": 1})
    with pytest.raises(ValueError):
        sample.ts = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "reserved"),
    [
        *[("time", True), ("site", True), ("machine", True), ("agent", True), ("_x", True), ("_", True)],
        *[("good_count", False), ("machines", False), ("agent_id", False), ("timer", False)],
    ],
)
def test_reserved_signal_names(name: str, reserved: bool) -> None:
    assert is_reserved_signal(name) is reserved
    assert (name in RESERVED_SIGNALS) is (reserved and not name.startswith("_"))


def test_the_wire_contract_leaves_reserved_names_to_the_registry() -> None:
    # Sample cannot know a machine's profile; the collector's registry refuses reserved names with their own kind.
    body = batch(samples=[{"ts": TS, "values": {"machine": "cnc-02"}}])
    assert parse_telemetry(TOPIC, raw(body)).samples[0].values == {"machine": "cnc-02"}


def test_decode_and_validate_are_the_two_halves_of_parse() -> None:
    data = decode_payload(raw(batch()))
    assert validate_telemetry(TOPIC, data) == parse_telemetry(TOPIC, raw(batch()))
    for payload, kind in [(b"{", "malformed-json"), (raw(batch(v=2)), "unknown-version"), (b" " * 300_000, "oversize")]:
        with pytest.raises(PayloadError) as info:
            decode_payload(payload)
        assert info.value.kind == kind
    status = StatusMessage(status=LinkStatus.OFFLINE, ts=TS, agent="edge-1")
    assert validate_status(decode_payload(status.to_json())) == status
    with pytest.raises(PayloadError, match="invalid-payload"):
        validate_status({"v": 1})


def test_collectors_subscribe_to_telemetry_and_both_kinds_of_status() -> None:
    filters = subscription_filters()
    assert filters == ["shopfloor/v1/+/+/telemetry", "shopfloor/v1/+/+/status", "shopfloor/v1/+/agents/+/status"]
    assert subscription_filters("bdg")[2] == "shopfloor/v1/bdg/agents/+/status"


@pytest.mark.parametrize("value", ["edge-1\n", "cnc-01\n", "\nedge-1"])
def test_a_trailing_newline_is_not_part_of_a_valid_id(value: str) -> None:
    # "$" in a regex also matches before a final newline; an id with one would reach topics and store tags.
    assert not is_valid_id(value)
    assert not is_valid_signal(value.replace("-", "_"))


@pytest.mark.parametrize("v", ["true", "1.0", '"1"'])
def test_version_must_be_the_integer_1(v: str) -> None:
    payload = (
        f'{{"v":{v},"agent":"edge-1","site":"bdg","machine":"cnc-01","seq":1,'
        '"samples":[{"ts":1764291600123,"values":{"good_count":1}}]}'
    ).encode()
    with pytest.raises(PayloadError) as info:
        parse_telemetry(Topic.telemetry("bdg", "cnc-01"), payload)
    assert info.value.kind == "unknown-version"
