"""Register codec: plan coalesced reads, decode registers into signals, encode signals into registers.

Pure functions shared by the edge agent (decode) and the simulator (encode), so the two cannot drift.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shopfloor.config import DataType, DeviceProfile, RegisterSpec, Table, WordOrder
from shopfloor.contracts import SignalValue

MAX_READ_REGISTERS = 125  # Modbus limit for one read of holding/input registers
DEFAULT_MAX_GAP = 10  # read across holes of up to this many unused registers rather than issue another request


class DecodeError(ValueError):
    """A register value cannot be turned into a signal value."""


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One Modbus read request: count registers from start in table."""

    table: Table
    start: int
    count: int

    @property
    def end(self) -> int:
        """One past the last register read."""
        return self.start + self.count


def plan_reads(
    profile: DeviceProfile, max_count: int = MAX_READ_REGISTERS, max_gap: int = DEFAULT_MAX_GAP
) -> list[ReadBlock]:
    """Coalesce a profile's registers into as few reads as the Modbus limit allows."""
    blocks: list[ReadBlock] = []
    for table in Table:
        regs = sorted((r for r in profile.registers if r.table is table), key=lambda r: r.address)
        current: ReadBlock | None = None
        for reg in regs:
            reg_end = reg.address + reg.count
            if (
                current is not None
                and reg.address - current.end <= max_gap
                and max(reg_end, current.end) - current.start <= max_count
            ):
                current = ReadBlock(table, current.start, max(reg_end, current.end) - current.start)
                continue
            if current is not None:
                blocks.append(current)
            current = ReadBlock(table, reg.address, reg.count)
        if current is not None:
            blocks.append(current)
    return blocks


def _words_to_bytes(words: list[int], order: WordOrder) -> bytes:
    seq = list(reversed(words)) if order is WordOrder.LITTLE else words
    return b"".join(struct.pack(">H", w & 0xFFFF) for w in seq)


def _bytes_to_words(data: bytes, order: WordOrder) -> list[int]:
    words = [struct.unpack(">H", data[i : i + 2])[0] for i in range(0, len(data), 2)]
    return list(reversed(words)) if order is WordOrder.LITTLE else words


def decode_value(spec: RegisterSpec, words: list[int]) -> SignalValue:
    """Decode the registers of one value; raise DecodeError if they do not make a valid value."""
    if len(words) != spec.count:
        raise DecodeError(f"{spec.signal}: expected {spec.count} registers, got {len(words)}")
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise DecodeError(f"{spec.signal}: register value out of 16-bit range")
    t = spec.type
    if t is DataType.STRING:
        raw = b"".join(struct.pack(">H", w) for w in words).split(b"\x00", 1)[0]
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{spec.signal}: string registers hold non-ASCII bytes") from exc
        if not text.isprintable():
            raise DecodeError(f"{spec.signal}: string registers hold control characters")
        return text.strip()
    data = _words_to_bytes(words, spec.word_order)
    number: int | float
    if t is DataType.UINT16 or t is DataType.BITS16:
        number = struct.unpack(">H", data)[0]
    elif t is DataType.INT16:
        number = struct.unpack(">h", data)[0]
    elif t is DataType.UINT32:
        number = struct.unpack(">I", data)[0]
    elif t is DataType.INT32:
        number = struct.unpack(">i", data)[0]
    else:
        number = struct.unpack(">f", data)[0]
        if number != number or number in (float("inf"), float("-inf")):
            raise DecodeError(f"{spec.signal}: float32 register holds NaN or infinity")
    if spec.states is not None:
        assert isinstance(number, int)
        state = spec.states.get(number)
        if state is None:
            raise DecodeError(f"{spec.signal}: raw code {number} is not in the profile's states map")
        return state.value
    if spec.is_float:
        # Round away float32/scale noise: 6 significant decimals is well beyond any PLC's resolution.
        return round(float(number) * spec.scale, 6)
    return int(number)


def decode(
    profile: DeviceProfile, blocks: dict[ReadBlock, list[int]]
) -> tuple[dict[str, SignalValue], dict[str, str]]:
    """Decode every register of profile from read blocks; return values and per-signal errors."""
    values: dict[str, SignalValue] = {}
    errors: dict[str, str] = {}
    for spec in profile.registers:
        block = next(
            (
                b
                for b in blocks
                if b.table is spec.table and b.start <= spec.address and spec.address + spec.count <= b.end
            ),
            None,
        )
        if block is None:
            errors[spec.signal] = f"{spec.signal}: no read covers register {spec.address}"
            continue
        words = blocks[block]
        offset = spec.address - block.start
        try:
            values[spec.signal] = decode_value(spec, words[offset : offset + spec.count])
        except DecodeError as exc:
            errors[spec.signal] = str(exc)
    return values, errors


def encode_value(spec: RegisterSpec, value: SignalValue) -> list[int]:
    """Encode a signal value into the registers a PLC would hold for spec."""
    t = spec.type
    if t is DataType.STRING:
        data = str(value).encode("ascii")[: spec.count * 2].ljust(spec.count * 2, b"\x00")
        return [struct.unpack(">H", data[i : i + 2])[0] for i in range(0, len(data), 2)]
    if spec.states is not None:
        codes = {state.value: code for code, state in spec.states.items()}
        if value not in codes:
            raise ValueError(f"{spec.signal}: {value!r} has no code in the profile's states map")
        raw: int | float = codes[str(value)]
    elif isinstance(value, str):
        raise ValueError(f"{spec.signal}: cannot encode string {value!r} into a {t} register")
    else:
        raw = float(value) / spec.scale if spec.scale != 1.0 else value
    if t is DataType.FLOAT32:
        data = struct.pack(">f", float(raw))
    else:
        n = round(raw)
        fmt = {
            DataType.UINT16: ">H",
            DataType.BITS16: ">H",
            DataType.INT16: ">h",
            DataType.UINT32: ">I",
            DataType.INT32: ">i",
        }[t]
        bits = 16 if t.width == 1 else 32
        # PLC counters wrap at their width, as real ones do.
        if t in (DataType.UINT16, DataType.BITS16, DataType.UINT32):
            n %= 1 << bits
        data = struct.pack(fmt, n)
    return _bytes_to_words(data, spec.word_order)


def encode(profile: DeviceProfile, values: dict[str, SignalValue]) -> dict[tuple[Table, int], int]:
    """Encode signal values into a map (table, address) -> register value."""
    out: dict[tuple[Table, int], int] = {}
    for spec in profile.registers:
        if spec.signal not in values:
            continue
        for i, word in enumerate(encode_value(spec, values[spec.signal])):
            out[(spec.table, spec.address + i)] = word
    return out
