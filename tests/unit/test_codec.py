"""Register decoding and encoding, with hand-computed register values, and read planning."""

from __future__ import annotations

from typing import Any

import pytest

from shopfloor.codec import DecodeError, ReadBlock, decode, decode_value, encode, encode_value, plan_reads
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
