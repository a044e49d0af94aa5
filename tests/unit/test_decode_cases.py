"""Golden register layouts: one folder per case under tests/cases/, hand-computed values in expected.yaml.

decode/<case>/: profile.yaml (a profile), registers.yaml (raw words per table and address; unlisted words
are 0) and expected.yaml (signal -> value, or {error: substring}; `_encode_skip` lists signals whose decoded
value does not encode back to the same words). plan/<case>/: profile.yaml and expected.yaml (the blocks).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from shopfloor.codec import ProfileDecoder, ReadBlock, decode, describe_plan, encode, plan_reads, signals_by_block
from shopfloor.config import DeviceProfile, Table, load_profile
from shopfloor.contracts import SignalValue
from shopfloor.yamlfile import read_yaml

CASES = Path(__file__).resolve().parents[1] / "cases"
DECODE_CASES = sorted(p for p in (CASES / "decode").iterdir() if p.is_dir())
PLAN_CASES = sorted(p for p in (CASES / "plan").iterdir() if p.is_dir())


def _yaml(path: Path) -> Any:
    return read_yaml(path)[0]


def _registers(path: Path) -> dict[tuple[Table, int], int]:
    return {(Table(table), int(addr)): word for table, words in _yaml(path).items() for addr, word in words.items()}


def _read(profile: DeviceProfile, registers: dict[tuple[Table, int], int]) -> dict[ReadBlock, list[int]]:
    return {b: [registers.get((b.table, a), 0) for a in range(b.start, b.end)] for b in plan_reads(profile)}


def test_there_are_cases() -> None:
    assert len(DECODE_CASES) >= 10 and len(PLAN_CASES) >= 5


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda p: p.name)
def test_decode_case(case: Path) -> None:
    profile = load_profile(case / "profile.yaml")
    registers = _registers(case / "registers.yaml")
    expected: dict[str, Any] = _yaml(case / "expected.yaml")
    skip = set(expected.pop("_encode_skip", []))
    assert set(expected) == {r.signal for r in profile.registers}, "expected.yaml must cover every signal"
    blocks = _read(profile, registers)
    decoder = ProfileDecoder(profile, list(blocks))
    values, errors = decoder.decode(blocks)
    for signal, want in expected.items():
        if isinstance(want, dict):
            assert signal not in values, (signal, values.get(signal))
            assert want["error"] in errors[signal], errors[signal]
        else:
            assert signal not in errors, errors[signal]
            got = values[signal]
            assert (got, type(got)) == (want, type(want)), signal  # 1 and 1.0, True and 1 must not pass as equal
    # The memo (same words again) and the one-off decode give the same answer.
    assert decoder.decode({b: list(w) for b, w in blocks.items()}) == (values, errors)
    assert decode(profile, blocks) == (values, errors)
    # What the simulator encodes for these values is what the PLC held.
    good: dict[str, SignalValue] = {s: v for s, v in values.items() if s not in skip}
    spans = {
        (r.table, a) for r in profile.registers if r.signal in good for a in range(r.address, r.address + r.count)
    }
    assert encode(profile, good) == {k: registers.get(k, 0) for k in spans}


@pytest.mark.parametrize("case", PLAN_CASES, ids=lambda p: p.name)
def test_plan_case(case: Path) -> None:
    profile = load_profile(case / "profile.yaml")
    expected = _yaml(case / "expected.yaml")["blocks"]
    blocks = plan_reads(profile)
    served = signals_by_block(profile, blocks)
    got = [{"table": b.table.value, "start": b.start, "count": b.count, "signals": served[b]} for b in blocks]
    assert got == expected
    text = describe_plan(profile, blocks)
    assert len(text.splitlines()) == len(blocks) + 1
    for block in blocks:
        assert f"{block.start}..{block.end - 1}" in text
    # Every value lies whole inside one block.
    for spec in profile.registers:
        assert any(b.table is spec.table and b.start <= spec.address and spec.address + spec.count <= b.end
                   for b in blocks)


_PROBES: list[SignalValue] = [
    0, 1, 7, 255, 256, 32767, 32768, 65535, 65536, 70000, 2**31 - 1, 2**31, 2**32 - 1, 2**32 + 5, 2**63 + 9,
    -1, -32768, -70000, 0.0, 0.004, 0.005, 0.015, 1.5, 12.34, -7.25, 3.14159, 1e30, -1e-30, True, False, "x",
]


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda p: p.name)
def test_value_encoder_equals_encode_value(case: Path) -> None:
    # The replay's compiled encoders must give exactly encode_value's registers, or its error.
    from shopfloor.codec import encode_value, value_encoder

    profile = load_profile(case / "profile.yaml")
    for spec in profile.registers:
        fast = value_encoder(spec)
        for value in _PROBES:
            try:
                expected: list[int] | str = encode_value(spec, value)
            except (ValueError, OverflowError, struct.error) as exc:
                expected = type(exc).__name__
            try:
                got: list[int] | str = fast(value)
            except (ValueError, OverflowError, struct.error) as exc:
                got = type(exc).__name__
            assert got == expected, (spec.signal, value)
