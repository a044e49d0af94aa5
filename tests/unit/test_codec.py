"""Register decoding and encoding, with hand-computed register values, and read planning."""

from __future__ import annotations

import re
import struct
from typing import Any

import pytest

from shopfloor.codec import (
    DecodeError,
    ProfileDecoder,
    ReadBlock,
    decode,
    decode_value,
    describe_plan,
    encode,
    encode_value,
    plan_reads,
)
from shopfloor.config import DeviceProfile, RegisterSpec, Table
from shopfloor.contracts import SignalValue

STATES = {0: "OFF", 1: "IDLE", 3: "RUNNING"}


def spec(**kw: Any) -> RegisterSpec:
    base: dict[str, Any] = {"signal": "x", "address": 0}
    base.update(kw)
    return RegisterSpec.model_validate(base)


@pytest.mark.parametrize(
    ("kw", "words", "value"),
    [
        ({"type": "uint16"}, [0xFFFF], 65535),
        ({"type": "int16"}, [0xFFFF], -1),
        ({"type": "int16"}, [0x8000], -32768),
        ({"type": "uint32"}, [0x0001, 0x0002], 65538),
        ({"type": "uint32", "word_order": "little"}, [0x0002, 0x0001], 65538),
        ({"type": "int32"}, [0xFFFF, 0xFFFE], -2),
        ({"type": "int32", "word_order": "little"}, [0xFFFE, 0xFFFF], -2),
        ({"type": "float32"}, [0x4148, 0x0000], 12.5),  # 0x41480000 = 12.5
        ({"type": "float32", "word_order": "little"}, [0x0000, 0x4148], 12.5),
        ({"type": "uint16", "scale": 0.1}, [1234], 123.4),
        ({"type": "int16", "scale": 0.1}, [0xFFE7], -2.5),  # -25 * 0.1
        ({"type": "uint32", "scale": 0.01, "word_order": "little"}, [0x3039, 0x0000], 123.45),  # 12345
        ({"type": "bits16"}, [0b101], 5),
        ({"type": "string", "length": 3}, [0x4A2D, 0x3432, 0x0000], "J-42"),
        ({"type": "string", "length": 2}, [0x4142, 0x4344], "ABCD"),
        ({"type": "string", "length": 2}, [0x0000, 0x4344], ""),
        ({"signal": "state", "type": "uint16", "states": STATES}, [3], "RUNNING"),
    ],
)
def test_decode_value(kw: dict[str, Any], words: list[int], value: SignalValue) -> None:
    s = spec(**kw)
    assert decode_value(s, words) == value
    # What the simulator encodes is what the agent decodes.
    assert decode_value(s, encode_value(s, value)) == value


@pytest.mark.parametrize(
    ("kw", "words", "message"),
    [
        ({"signal": "state", "type": "uint16", "states": STATES}, [2], "raw code 2 is not in"),
        ({"type": "float32"}, [0x7FC0, 0x0000], "NaN"),
        ({"type": "float32"}, [0x7F80, 0x0000], "infinity"),
        ({"type": "string", "length": 1}, [0xC3A9], "non-ASCII"),
        ({"type": "string", "length": 1}, [0x0741], "control characters"),
        ({"type": "uint32"}, [1], "expected 2 registers"),
        ({"type": "uint16"}, [70000], "out of 16-bit range"),
    ],
)
def test_decode_rejects_garbage(kw: dict[str, Any], words: list[int], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_value(spec(**kw), words)


def test_counters_wrap_at_their_width_like_a_plc() -> None:
    assert encode_value(spec(type="uint16"), 65536 + 7) == [7]
    assert encode_value(spec(type="uint32"), 2**32 + 1) == [0, 1]


def profile(registers: list[dict[str, Any]]) -> DeviceProfile:
    return DeviceProfile.model_validate({"model": "p", "registers": registers})


def test_plan_reads_coalesces_within_limits() -> None:
    p = profile(
        [
            {"signal": "a", "address": 0, "type": "uint16"},
            {"signal": "b", "address": 5, "type": "uint32"},  # gap of 4: coalesce
            {"signal": "c", "address": 50, "type": "uint16"},  # gap of 43: new read
            {"signal": "d", "address": 100, "type": "string", "length": 30},
            {"signal": "e", "address": 140, "type": "uint16"},  # would make 91 registers: still <= 125
            {"signal": "f", "address": 0, "table": "input", "type": "float32"},
        ]
    )
    assert plan_reads(p) == [
        ReadBlock(Table.HOLDING, 0, 7),
        ReadBlock(Table.HOLDING, 50, 1),
        ReadBlock(Table.HOLDING, 100, 41),
        ReadBlock(Table.INPUT, 0, 2),
    ]


def test_plan_reads_never_exceeds_125_registers() -> None:
    regs = [{"signal": f"s{i}", "address": i * 2, "type": "uint32"} for i in range(200)]
    blocks = plan_reads(profile(regs))
    assert all(b.count <= 125 for b in blocks)
    assert sum(b.count for b in blocks) == 400
    assert blocks[0] == ReadBlock(Table.HOLDING, 0, 124)


def test_decode_profile_keeps_good_values_when_one_is_garbage() -> None:
    p = profile(
        [
            {"signal": "state", "address": 0, "type": "uint16", "states": STATES},
            {"signal": "good_count", "address": 1, "type": "uint32"},
            {"signal": "power_kw", "address": 3, "type": "float32"},
        ]
    )
    (block,) = plan_reads(p)
    values, errors = decode(p, {block: [9, 0, 812, 0x7FC0, 0]})
    assert values == {"good_count": 812}
    assert set(errors) == {"state", "power_kw"}


def test_encode_profile_round_trip() -> None:
    p = profile(
        [
            {"signal": "state", "address": 0, "type": "uint16", "states": STATES},
            {"signal": "job", "address": 1, "type": "string", "length": 4},
            {"signal": "energy_kwh", "address": 0, "table": "input", "type": "uint32", "scale": 0.01},
        ]
    )
    values: dict[str, SignalValue] = {"state": "IDLE", "job": "J-7", "energy_kwh": 1.5}
    regs = encode(p, values)
    assert regs[(Table.INPUT, 1)] == 150
    blocks = {b: [regs.get((b.table, a), 0) for a in range(b.start, b.end)] for b in plan_reads(p)}
    assert decode(p, blocks) == (values, {})


def test_encode_refuses_unmapped_state() -> None:
    with pytest.raises(ValueError, match="no code"):
        encode_value(spec(signal="state", type="uint16", states=STATES), "SETUP")


@pytest.mark.parametrize(
    ("kw", "value"),
    [
        ({"type": t, "byte_order": order}, v)
        for t, v in [("int32", -7), ("uint32", 70000), ("int64", -(2**40) - 3), ("uint64", 2**63 + 5),
                     ("float32", -1.5), ("float64", 1e300), ("int16", -300), ("uint16", 0xABCD)]
        for order in ("ABCD", "DCBA", "BADC", "CDAB")
    ]
    + [
        ({"type": "bit", "bit": 9}, True),
        ({"type": "bit", "bit": 9, "byte_order": "DCBA"}, False),
        ({"type": "bool", "table": "coil"}, True),
        ({"type": "bool", "table": "discrete"}, False),
        ({"type": "uint16", "enum": {0: "a", 5: "b"}}, "b"),
        ({"type": "int64", "enum": {-(2**62): "low"}, "byte_order": "BADC"}, "low"),
        ({"type": "string", "length": 2, "byte_order": "BADC"}, "AbC"),
        ({"type": "uint16", "scale": 0.5, "offset": -10.0}, 2.5),
        ({"type": "int32", "scale": -2.0, "offset": 1.0}, 41.0),
        ({"type": "float64", "offset": 273.15}, 293.15),
    ],
)
def test_every_type_round_trips(kw: dict[str, Any], value: SignalValue) -> None:
    s = spec(**kw)
    got = decode_value(s, encode_value(s, value))
    assert (got, type(got)) == (value, type(value))


def test_bits_of_one_register_are_ored_together_and_coils_are_0_or_1() -> None:
    p = profile(
        [
            {"signal": "a", "address": 3, "type": "bit", "bit": 0},
            {"signal": "b", "address": 3, "type": "bit", "bit": 4},
            {"signal": "c", "address": 3, "type": "bit", "bit": 15},
            {"signal": "lamp", "address": 3, "table": "coil", "type": "bool"},
        ]
    )
    assert encode(p, {"a": True, "b": True, "c": False, "lamp": True}) == {
        (Table.HOLDING, 3): 0x0011,
        (Table.COIL, 3): 1,
    }
    assert encode(p, {"a": False, "b": False, "c": True, "lamp": False}) == {
        (Table.HOLDING, 3): 0x8000,
        (Table.COIL, 3): 0,
    }
    with pytest.raises(ValueError, match="cannot encode string"):
        encode_value(spec(type="bit", bit=1), "on")
    with pytest.raises(ValueError, match="no code in the profile's enum map"):
        encode_value(spec(type="uint16", enum={1: "on"}), "off")


def test_counters_wrap_at_their_declared_width() -> None:
    assert encode_value(spec(signal="good_count", type="uint32", counter_width=20), 2**20 + 3) == [0, 3]
    assert encode_value(spec(signal="good_count", type="int16"), 32768 + 2) == [2]  # 15 bits: wraps to 0
    assert encode_value(spec(signal="good_count", type="int16", counter_width=16), 32768) == [0x8000]
    assert encode_value(spec(type="uint64"), 2**64 + 1) == [0, 0, 0, 1]
    with pytest.raises(struct.error):
        encode_value(spec(type="int16"), 40000)  # not a counter: a signed value out of range is refused


def test_decoder_reuses_unchanged_blocks_and_sees_changed_ones() -> None:
    p = profile(
        [
            {"signal": "state", "address": 0, "type": "uint16", "states": STATES},
            {"signal": "power_kw", "address": 1, "type": "float32"},
            {"signal": "good_count", "address": 0, "table": "input", "type": "uint32"},
            {"signal": "far", "address": 500, "type": "uint16"},
        ]
    )
    blocks = plan_reads(p)
    hold, far, inp = blocks
    decoder = ProfileDecoder(p, blocks)
    words = {hold: [3, 0x4148, 0], far: [9], inp: [0, 5]}
    first = decoder.decode(words)
    assert first == ({"state": "RUNNING", "power_kw": 12.5, "good_count": 5, "far": 9}, {})
    assert list(first[0]) == ["state", "power_kw", "good_count", "far"]  # profile order
    first[0]["state"] = "tampered"  # the caller owns what it gets
    words[inp][1] = 6  # mutated in place: the memo kept its own copy
    assert decoder.decode(words) == ({"state": "RUNNING", "power_kw": 12.5, "good_count": 6, "far": 9}, {})
    words[hold] = [2, 0x4148, 0]
    values, errors = decoder.decode(words)
    assert "state" not in values and "raw code 2" in errors["state"] and values["good_count"] == 6
    del words[far]
    values, errors = decoder.decode(words)
    assert "far" not in values and errors["far"] == "far: no read covers register 500"
    words[far] = [70000]  # a word out of range spoils only its own value
    words[hold] = [3, 0x4148]  # a short read: what is there still decodes
    values, errors = decoder.decode(words)
    assert values == {"state": "RUNNING", "good_count": 6}
    assert "out of 16-bit range" in errors["far"] and "expected 2 registers, got 1" in errors["power_kw"]


def test_decoder_reports_signals_no_block_covers() -> None:
    p = profile([{"signal": "a", "address": 0, "type": "uint16"}, {"signal": "b", "address": 40, "type": "uint16"}])
    decoder = ProfileDecoder(p, [ReadBlock(Table.HOLDING, 0, 1)])
    assert decoder.decode({ReadBlock(Table.HOLDING, 0, 1): [4]}) == ({"a": 4}, {"b": "b: no read covers register 40"})


def test_plan_reads_limits_and_options() -> None:
    p = profile([{"signal": "a", "address": 0, "type": "uint16"}, {"signal": "b", "address": 30, "type": "uint16"}])
    assert len(plan_reads(p)) == 2
    assert plan_reads(p, max_gap=29) == [ReadBlock(Table.HOLDING, 0, 31)]
    assert plan_reads(p, max_gap=29, max_count=30) == [ReadBlock(Table.HOLDING, 0, 1), ReadBlock(Table.HOLDING, 30, 1)]
    big = profile([{"signal": "s", "address": 0, "type": "string", "length": 64}])
    with pytest.raises(ValueError, match="s: 64 holding values do not fit one read of at most 50"):
        plan_reads(big, max_count=50)
    coils = profile([{"signal": f"c{i}", "address": i * 100, "table": "coil", "type": "bool"} for i in range(30)])
    # 0..900 is 901 bits; 0..1000 would be 1001.
    assert plan_reads(coils, max_bits=1000) == [ReadBlock(Table.COIL, s, 901) for s in (0, 1000, 2000)]


def test_describe_plan_names_blocks_and_signals() -> None:
    p = profile(
        [
            {"signal": "state", "address": 0, "type": "uint16", "states": STATES},
            {"signal": "door", "address": 1, "type": "bit", "bit": 3},
            {"signal": "lamp", "address": 7, "table": "coil", "type": "bool"},
        ]
    )
    blocks = plan_reads(p)
    text = describe_plan(p, blocks)
    assert text.splitlines()[0] == "p: 2 read request(s)"
    assert re.search(r"holding\s+0\.\.1\s+2 registers\s+state, door$", text, re.M), text
    assert re.search(r"coil\s+7\.\.7\s+1 bits\s+lamp$", text, re.M), text
    assert "not read: lamp" in describe_plan(p, blocks[:1])
