"""Register codec: plan coalesced reads, decode registers into signals, encode signals into registers.

Pure functions shared by the edge agent (decode) and the simulator (encode), so the two cannot drift.
The agent builds one ProfileDecoder per machine at start-up: every signal's block, offset, struct and
arithmetic are chosen there, so a poll only unpacks, and a block whose words did not change is not decoded.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shopfloor.config import ByteOrder, DataType, DeviceProfile, RegisterSpec, Table
from shopfloor.contracts import SignalValue

MAX_READ_REGISTERS = 125  # Modbus limit for one read of holding/input registers
MAX_READ_BITS = 2000  # Modbus limit for one read of coils/discrete inputs
DEFAULT_MAX_GAP = 10  # read across holes of up to this many unused registers rather than issue another request
BITS_PER_REGISTER = 16  # a gap of n registers is worth a gap of 16 * n bits


class DecodeError(ValueError):
    """A register value cannot be turned into a signal value."""


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One Modbus read request: count registers (coil/discrete tables: bits) from start in table."""

    table: Table
    start: int
    count: int

    @property
    def end(self) -> int:
        """One past the last register read."""
        return self.start + self.count


# --- read planning ---------------------------------------------------------------------------------------------


def plan_reads(
    profile: DeviceProfile,
    max_count: int = MAX_READ_REGISTERS,
    max_gap: int | None = None,
    max_bits: int = MAX_READ_BITS,
) -> list[ReadBlock]:
    """Coalesce a profile's values into as few reads as the Modbus limits allow, never splitting a value.

    Register tables bridge up to max_gap unused registers (default: the profile's read_gap) in reads of at most
    max_count registers; bit tables bridge 16 times as many bits in reads of at most max_bits bits.
    """
    gap = profile.read_gap if max_gap is None else max_gap
    blocks: list[ReadBlock] = []
    for table in Table:
        limit, bridge = (max_bits, gap * BITS_PER_REGISTER) if table.is_bits else (max_count, gap)
        # Bit signals on one register share its span: one read serves them all.
        spans = sorted({(r.address, r.address + r.count, r.signal if r.count > limit else "") for r in
                        profile.registers if r.table is table})
        start = end = -1
        for lo, hi, too_big in spans:
            if too_big:
                raise ValueError(f"{too_big}: {hi - lo} {table} values do not fit one read of at most {limit}")
            if start >= 0 and lo - end <= bridge and max(hi, end) - start <= limit:
                end = max(hi, end)
                continue
            if start >= 0:
                blocks.append(ReadBlock(table, start, end - start))
            start, end = lo, hi
        if start >= 0:
            blocks.append(ReadBlock(table, start, end - start))
    return blocks


def _covering(spec: RegisterSpec, blocks: Sequence[ReadBlock]) -> ReadBlock | None:
    return next(
        (b for b in blocks if b.table is spec.table and b.start <= spec.address and spec.address + spec.count <= b.end),
        None,
    )


def signals_by_block(profile: DeviceProfile, blocks: Sequence[ReadBlock]) -> dict[ReadBlock, list[str]]:
    """Map each block to the signals it serves, in profile order."""
    out: dict[ReadBlock, list[str]] = {b: [] for b in blocks}
    for spec in profile.registers:
        block = _covering(spec, blocks)
        if block is not None:
            out[block].append(spec.signal)
    return out


def describe_plan(profile: DeviceProfile, blocks: Sequence[ReadBlock]) -> str:
    """Describe a read plan, one line per request: table, first..last address, count and the signals served."""
    served = signals_by_block(profile, blocks)
    lines = [f"{profile.model}: {len(blocks)} read request(s)"]
    for block in blocks:
        unit = "bits" if block.table.is_bits else "registers"
        names = ", ".join(served[block]) or "-"
        lines.append(f"  {block.table:<8} {block.start:>5}..{block.end - 1:<5} {block.count:>4} {unit:<9}  {names}")
    missing = [s.signal for s in profile.registers if _covering(s, blocks) is None]
    if missing:
        lines.append(f"  not read: {', '.join(missing)}")
    return "\n".join(lines)


# --- converters, chosen once per signal --------------------------------------------------------------------------

# A converter turns a block's words (and the block packed as big-endian and as byte-swapped words) into a value.
_Convert = Callable[[Sequence[int], bytes, bytes], SignalValue]

_CODES = {
    DataType.UINT16: "H",
    DataType.BITS16: "H",
    DataType.INT16: "h",
    DataType.UINT32: "I",
    DataType.INT32: "i",
    DataType.UINT64: "Q",
    DataType.INT64: "q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


def _layout(order: ByteOrder) -> tuple[bool, str]:
    """(pack the words byte-swapped?, endianness to read the value in) that realise order.

    ABCD: the words as sent, read big-endian. DCBA: the same bytes read little-endian. BADC: each word's bytes
    swapped, read big-endian. CDAB: each word's bytes swapped, read little-endian (which reverses the words).
    """
    return order in (ByteOrder.BADC, ByteOrder.CDAB), "<" if order in (ByteOrder.DCBA, ByteOrder.CDAB) else ">"


def _value_struct(spec: RegisterSpec) -> tuple[bool, struct.Struct]:
    swapped, endian = _layout(spec.byte_order)
    return swapped, struct.Struct(endian + _CODES[spec.type])


def _converter(spec: RegisterSpec, offset: int) -> _Convert:
    """Build the function that decodes spec from a block whose words start offset registers before it."""
    name, t = spec.signal, spec.type
    if t is DataType.BOOL:

        def coil(words: Sequence[int], be: bytes, sw: bytes) -> SignalValue:
            v = words[offset]
            if v in (0, 1):  # also True/False from a bit reader
                return bool(v)
            raise DecodeError(f"{name}: {spec.table} value {v!r} is not 0 or 1")

        return coil
    if t is DataType.BIT:
        assert spec.bit is not None
        # Bit n of the register as the device means it: a byte-swapped register has that bit in the other byte.
        mask = 1 << ((spec.bit + 8) % 16 if spec.byte_order.swaps_bytes else spec.bit)

        def bit(words: Sequence[int], be: bytes, sw: bytes) -> SignalValue:
            return bool(words[offset] & mask)

        return bit
    if t is DataType.STRING:
        lo, hi, swap = 2 * offset, 2 * (offset + spec.count), spec.byte_order.swaps_bytes

        def string(words: Sequence[int], be: bytes, sw: bytes) -> SignalValue:
            raw = (sw if swap else be)[lo:hi].split(b"\x00", 1)[0]
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"{name}: string registers hold non-ASCII bytes") from exc
            if not text.isprintable():
                raise DecodeError(f"{name}: string registers hold control characters")
            return text.strip()

        return string
    swapped, st = _value_struct(spec)
    unpack, at = st.unpack_from, 2 * offset
    if spec.states is not None or spec.enum is not None:
        labels: dict[int, str] = dict(spec.enum or {})
        if spec.states is not None:
            labels = {code: state.value for code, state in spec.states.items()}
        what = "states" if spec.states is not None else "enum"

        def coded(words: Sequence[int], be: bytes, sw: bytes) -> SignalValue:
            code: int = unpack(sw if swapped else be, at)[0]
            label = labels.get(code)
            if label is None:
                raise DecodeError(f"{name}: raw code {code} is not in the profile's {what} map")
            return label

        return coded
    scale, offset_eng = spec.scale, spec.offset
    if t.is_float:
        kind = t.value

        def real(words: Sequence[int], be: bytes, sw: bytes) -> SignalValue:
            number: float = unpack(sw if swapped else be, at)[0]
            if not math.isfinite(number):
                raise DecodeError(f"{name}: {kind} register holds NaN or infinity")
            # Round away float32/scale noise: 6 significant decimals is well beyond any PLC's resolution.
            value = number * scale + offset_eng if offset_eng else number * scale
            if not math.isfinite(value):
                raise DecodeError(f"{name}: {number!r} * scale {scale:g} overflows")
            return round(value, 6)

        return real
    if spec.is_float:

        def scaled(words: Sequence[int], be: bytes, sw: bytes) -> SignalValue:
            number: int = unpack(sw if swapped else be, at)[0]
            value = float(number) * scale
            return round(value + offset_eng if offset_eng else value, 6)

        return scaled
    if not swapped and st.format == ">H":

        def word(words: Sequence[int], be: bytes, sw: bytes) -> SignalValue:
            return words[offset]  # range checked for the whole block

        return word

    def integer(words: Sequence[int], be: bytes, sw: bytes) -> SignalValue:
        number: int = unpack(sw if swapped else be, at)[0]
        return number

    return integer


def _needs_swapped(spec: RegisterSpec) -> bool:
    if spec.type is DataType.STRING:
        return spec.byte_order.swaps_bytes
    return (spec.type.is_number or spec.type is DataType.BITS16) and _layout(spec.byte_order)[0]


_CONVERTERS: dict[int, tuple[RegisterSpec, _Convert]] = {}  # id(spec) -> (spec, converter at offset 0)


def _converter_for(spec: RegisterSpec) -> _Convert:
    """The offset-0 converter of spec, remembered (the simulator and replay decode the same specs over and over)."""
    hit = _CONVERTERS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_CONVERTERS) >= 4096:
        _CONVERTERS.clear()
    convert = _converter(spec, 0)
    _CONVERTERS[id(spec)] = (spec, convert)
    return convert


def decode_value(spec: RegisterSpec, words: Sequence[int]) -> SignalValue:
    """Decode the registers (or bits) of one value; raise DecodeError if they do not make a valid value."""
    if len(words) != spec.count:
        unit = "bits" if spec.table.is_bits else "registers"
        raise DecodeError(f"{spec.signal}: expected {spec.count} {unit}, got {len(words)}")
    if spec.table.is_bits:
        return _converter_for(spec)(words, b"", b"")
    try:
        be = struct.pack(f">{len(words)}H", *words)
    except struct.error as exc:
        raise DecodeError(f"{spec.signal}: register value out of 16-bit range") from exc
    sw = struct.pack(f"<{len(words)}H", *words) if _needs_swapped(spec) else b""
    return _converter_for(spec)(words, be, sw)


# --- whole-profile decoding ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Slot:
    spec: RegisterSpec
    offset: int
    convert: _Convert


class _BlockDecoder:
    """The signals one read block serves, with everything needed to decode them chosen up front."""

    __slots__ = ("block", "missing", "pack_be", "pack_sw", "slots")

    def __init__(self, block: ReadBlock, specs: list[RegisterSpec]) -> None:
        self.block = block
        self.slots = [_Slot(s, s.address - block.start, _converter(s, s.address - block.start)) for s in specs]
        registers = not block.table.is_bits
        self.pack_be = struct.Struct(f">{block.count}H").pack if registers else None
        self.pack_sw = struct.Struct(f"<{block.count}H").pack if any(_needs_swapped(s) for s in specs) else None
        self.missing = {s.signal: f"{s.signal}: no read covers register {s.address}" for s in specs}

    def decode(self, words: Sequence[int] | None) -> tuple[dict[str, SignalValue], dict[str, str]]:
        if words is None:
            return {}, dict(self.missing)
        values: dict[str, SignalValue] = {}
        errors: dict[str, str] = {}
        be = sw = b""
        try:
            if len(words) != self.block.count:
                raise struct.error("short read")
            if self.pack_be is not None:
                be = self.pack_be(*words)
            if self.pack_sw is not None:
                sw = self.pack_sw(*words)
        except struct.error:
            # A short read or a word out of range: decode value by value, so good ones still come through.
            for slot in self.slots:
                part = words[slot.offset : slot.offset + slot.spec.count]
                try:
                    values[slot.spec.signal] = decode_value(slot.spec, part)
                except DecodeError as exc:
                    errors[slot.spec.signal] = str(exc)
            return values, errors
        for slot in self.slots:
            try:
                values[slot.spec.signal] = slot.convert(words, be, sw)
            except DecodeError as exc:
                errors[slot.spec.signal] = str(exc)
        return values, errors


class ProfileDecoder:
    """Decode one profile's read blocks with converters chosen once, reusing blocks whose words did not change.

    Not thread-safe: one decoder per machine, used by that machine's poll loop.
    """

    def __init__(self, profile: DeviceProfile, blocks: Sequence[ReadBlock]) -> None:
        self.profile = profile
        self.blocks = list(blocks)
        by_block: dict[ReadBlock, list[RegisterSpec]] = {b: [] for b in self.blocks}
        self._uncovered: dict[str, str] = {}
        for spec in profile.registers:
            block = _covering(spec, self.blocks)
            if block is None:
                self._uncovered[spec.signal] = f"{spec.signal}: no read covers register {spec.address}"
            else:
                by_block[block].append(spec)
        self._decoders = [_BlockDecoder(b, by_block[b]) for b in self.blocks if by_block[b]]
        self._order = [s.signal for s in profile.registers]
        self._memo: list[tuple[Sequence[int] | None, dict[str, SignalValue], dict[str, str]] | None] = [
            None for _ in self._decoders
        ]
        self._values: dict[str, SignalValue] = {}
        self._errors: dict[str, str] = dict(self._uncovered)

    def decode(self, registers: dict[ReadBlock, list[int]]) -> tuple[dict[str, SignalValue], dict[str, str]]:
        """Decode the words read for each block; return values and per-signal error text, in profile order.

        The returned dicts are read-only; they are the same objects as last time if no block's words changed.
        """
        changed = False
        memo = self._memo
        for i, block_decoder in enumerate(self._decoders):
            words = registers.get(block_decoder.block)
            last = memo[i]
            if last is not None and words == last[0]:
                continue
            values, errors = block_decoder.decode(words)
            memo[i] = (None if words is None else words[:], values, errors)
            changed = True
        if changed:
            merged_values: dict[str, SignalValue] = {}
            merged_errors: dict[str, str] = dict(self._uncovered)
            for entry in memo:
                assert entry is not None
                merged_values.update(entry[1])
                merged_errors.update(entry[2])
            self._values = {n: merged_values[n] for n in self._order if n in merged_values}
            self._errors = {n: merged_errors[n] for n in self._order if n in merged_errors}
        # The decoder's own dicts, not copies: when no block changed they are the very objects of the previous
        # call, which lets a caller skip a poll that shows nothing new. Callers must not modify them.
        return self._values, self._errors


def decode(
    profile: DeviceProfile, blocks: dict[ReadBlock, list[int]]
) -> tuple[dict[str, SignalValue], dict[str, str]]:
    """Decode every register of profile from read blocks; return values and per-signal errors.

    One-off form of ProfileDecoder (which a poll loop should keep instead, for its memo).
    """
    return ProfileDecoder(profile, list(blocks)).decode(blocks)


# --- encoding (the simulator's side) -----------------------------------------------------------------------------


def _to_words(data: bytes, swapped: bool) -> list[int]:
    return list(struct.unpack(f"{'<' if swapped else '>'}{len(data) // 2}H", data))


def encode_value(spec: RegisterSpec, value: SignalValue) -> list[int]:
    """Encode a signal value into the registers (coil/discrete: the 0/1 bit) a PLC would hold for spec."""
    t = spec.type
    if t is DataType.BOOL or t is DataType.BIT:
        if isinstance(value, str):
            raise ValueError(f"{spec.signal}: cannot encode string {value!r} into a {t}")
        if t is DataType.BOOL:
            return [1 if value else 0]
        assert spec.bit is not None
        return [(1 << ((spec.bit + 8) % 16 if spec.byte_order.swaps_bytes else spec.bit)) if value else 0]
    if t is DataType.STRING:
        data = str(value).encode("ascii")[: spec.count * 2].ljust(spec.count * 2, b"\x00")
        return _to_words(data, spec.byte_order.swaps_bytes)
    raw: int | float
    if spec.states is not None or spec.enum is not None:
        codes = (
            {state.value: code for code, state in spec.states.items()}
            if spec.states is not None
            else {label: code for code, label in (spec.enum or {}).items()}
        )
        if not isinstance(value, str) or value not in codes:
            what = "states" if spec.states is not None else "enum"
            raise ValueError(f"{spec.signal}: {value!r} has no code in the profile's {what} map")
        raw = codes[value]
    elif isinstance(value, str):
        raise ValueError(f"{spec.signal}: cannot encode string {value!r} into a {t} register")
    elif spec.offset != 0.0:
        raw = (float(value) - spec.offset) / spec.scale
    else:
        raw = float(value) / spec.scale if spec.scale != 1.0 else value
    swapped, st = _value_struct(spec)
    if t.is_float:
        data = st.pack(float(raw))
    else:
        n = round(raw)
        bits = t.bits
        wrap = spec.counter_width if spec.counter and spec.counter_width is not None else None
        if wrap is None and not t.is_signed:
            wrap = bits
        # PLC counters wrap at their width, as real ones do.
        if wrap is not None:
            n %= 1 << wrap
            if t.is_signed and n >= 1 << (bits - 1):
                n -= 1 << bits
        data = st.pack(n)
    return _to_words(data, swapped)


def value_encoder(spec: RegisterSpec) -> Callable[[SignalValue], list[int]]:
    """encode_value for spec with its arithmetic chosen once (numbers); the simulator's replay encodes every poll."""
    t = spec.type
    if not t.is_number or spec.states is not None or spec.enum is not None or t is DataType.BIT:
        return lambda value: encode_value(spec, value)
    swapped, st = _value_struct(spec)
    words = struct.Struct(f"{'<' if swapped else '>'}{st.size // 2}H")
    pack, unpack = st.pack, words.unpack
    scale, offset = spec.scale, spec.offset

    def raw_of(value: int | float) -> int | float:
        # As encode_value: (value - offset) / scale, without touching a plain value.
        if offset != 0.0:
            return (float(value) - offset) / scale
        return float(value) / scale if scale != 1.0 else value

    if t.is_float:

        def float_words(value: SignalValue) -> list[int]:
            if isinstance(value, str):
                return encode_value(spec, value)  # raises the error encode_value gives
            return list(unpack(pack(float(raw_of(value)))))

        return float_words
    bits = t.bits
    wrap = spec.counter_width if spec.counter and spec.counter_width is not None else None
    if wrap is None and not t.is_signed:
        wrap = bits
    modulus = None if wrap is None else 1 << wrap
    signed_top = 1 << (bits - 1) if t.is_signed else None

    def int_words(value: SignalValue) -> list[int]:
        if isinstance(value, str):
            return encode_value(spec, value)  # raises the error encode_value gives
        n = round(raw_of(value))
        if modulus is not None:
            n %= modulus
            if signed_top is not None and n >= signed_top:
                n -= 1 << bits
        return list(unpack(pack(n)))

    return int_words


def encode(profile: DeviceProfile, values: dict[str, SignalValue]) -> dict[tuple[Table, int], int]:
    """Encode signal values into a map (table, address) -> register value (coil/discrete: 0 or 1)."""
    out: dict[tuple[Table, int], int] = {}
    for spec in profile.registers:
        if spec.signal not in values:
            continue
        words = encode_value(spec, values[spec.signal])
        if spec.type is DataType.BIT:
            key = (spec.table, spec.address)
            out[key] = out.get(key, 0) | words[0]  # bit signals sharing a register
            continue
        for i, word in enumerate(words):
            out[(spec.table, spec.address + i)] = word
    return out


__all__ = [
    "BITS_PER_REGISTER",
    "DEFAULT_MAX_GAP",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "DecodeError",
    "ProfileDecoder",
    "ReadBlock",
    "decode",
    "decode_value",
    "describe_plan",
    "encode",
    "encode_value",
    "plan_reads",
    "signals_by_block",
    "value_encoder",
]
