"""Site configuration: site, device profiles, machines, tenants and API keys, validated once at start-up."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shopfloor.calendar import DEFAULT_REASON, WEEKDAY_NAMES, Calendar, Downtime, ShiftPattern, check_shifts, zone_of
from shopfloor.contracts import (
    CANONICAL_SIGNALS,
    COUNTER_SIGNALS,
    MAX_TS_MS,
    MIN_TS_MS,
    RESERVED_SIGNALS,
    Id,
    MachineState,
    SignalKind,
    is_reserved_signal,
    is_valid_signal,
)
from shopfloor.yamlfile import ConfigError, load_model, read_yaml, validation_message

MAX_REGISTER_ADDRESS = 65535
MAX_ENUM_LABEL = 64
# Canonical signals whose every change matters (codes, identities, counters): no report-by-exception deadband.
NO_DEADBAND_SIGNALS = frozenset({"state", "badge", "job", "stop_reason", "good_count", "reject_count"})
MAX_JOB_ID = 64
# The longest microstop threshold: api.core.pieces.MIN_CONTEXT_MS / 1000 (the kernel does not import api; a test
# keeps the two equal), so whether a stop is a microstop is decided the same from every hour it touches.
MAX_MICROSTOP_S = 600
MAX_SHIFTS = 32
MAX_BREAKS = 16
MAX_HOLIDAYS = 2000
MAX_DOWNTIME = 10000
MAX_STOP_REASONS = 4096


class Table(StrEnum):
    """Modbus table a value is read from: two of 16-bit registers, two of single bits."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        """Whether the table holds single bits (coils, discrete inputs) rather than 16-bit registers."""
        return self in (Table.COIL, Table.DISCRETE)


class DataType(StrEnum):
    """How a value is laid out in 16-bit registers (or, for bool, in one coil or discrete input)."""

    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    UINT64 = "uint64"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BITS16 = "bits16"
    BIT = "bit"
    BOOL = "bool"

    @property
    def width(self) -> int:
        """Registers (bool: bits) the type occupies (strings: see RegisterSpec.length)."""
        return _WIDTH.get(self, 1)

    @property
    def bits(self) -> int:
        """Width of the raw value in bits (strings: 16 per register)."""
        return 1 if self is DataType.BOOL else 16 * self.width

    @property
    def is_integer(self) -> bool:
        """Whether the type is a plain signed or unsigned integer (bits16, bit and bool are not)."""
        return self in _SIGNED or self in _UNSIGNED

    @property
    def is_signed(self) -> bool:
        """Whether the type is a two's complement signed integer."""
        return self in _SIGNED

    @property
    def is_float(self) -> bool:
        """Whether the type is an IEEE 754 float."""
        return self in (DataType.FLOAT32, DataType.FLOAT64)

    @property
    def is_number(self) -> bool:
        """Whether the type decodes to a number that scale and offset apply to."""
        return self.is_integer or self.is_float


_WIDTH = {
    DataType.UINT32: 2,
    DataType.INT32: 2,
    DataType.FLOAT32: 2,
    DataType.UINT64: 4,
    DataType.INT64: 4,
    DataType.FLOAT64: 4,
}
_SIGNED = frozenset({DataType.INT16, DataType.INT32, DataType.INT64})
_UNSIGNED = frozenset({DataType.UINT16, DataType.UINT32, DataType.UINT64})


class ByteOrder(StrEnum):
    """Order of the bytes of a value in its registers, as letters of the big-endian value ABCD."""

    ABCD = "ABCD"  # big-endian words, big-endian bytes (Modbus default)
    DCBA = "DCBA"  # fully little-endian
    BADC = "BADC"  # words in order, bytes swapped within each word
    CDAB = "CDAB"  # words reversed, bytes big-endian within each word

    @property
    def swaps_bytes(self) -> bool:
        """Whether the two bytes of each register are swapped (the only effect on a 16-bit value)."""
        return self in (ByteOrder.BADC, ByteOrder.DCBA)


class WordOrder(StrEnum):
    """Legacy spelling of byte_order for 32-bit values: big = ABCD, little = CDAB."""

    BIG = "big"
    LITTLE = "little"


_FROM_WORD_ORDER = {WordOrder.BIG: ByteOrder.ABCD, WordOrder.LITTLE: ByteOrder.CDAB}

_Strict = ConfigDict(extra="forbid", frozen=True)


class RegisterSpec(BaseModel):
    """One value in a device's register map and the signal it maps onto."""

    model_config = _Strict

    signal: StrictStr
    address: int = Field(ge=0, le=MAX_REGISTER_ADDRESS)
    table: Table = Table.HOLDING
    type: DataType
    byte_order: ByteOrder = Field(default=ByteOrder.ABCD, description="legacy alias: word_order big | little")
    scale: float = Field(default=1.0, allow_inf_nan=False, description="engineering = raw * scale + offset")
    offset: StrictFloat = Field(default=0.0, allow_inf_nan=False)
    length: int | None = Field(default=None, ge=1, le=64, description="registers; strings only")
    bit: StrictInt | None = Field(default=None, ge=0, le=15, description="bit number; type bit only")
    states: dict[int, MachineState] | None = Field(
        default=None, description="raw code -> state; required for the 'state' signal"
    )
    enum: dict[StrictInt, StrictStr] | None = Field(
        default=None, min_length=1, max_length=4096, description="raw code -> label; integer types only"
    )
    deadband: StrictFloat | None = Field(default=None, ge=0, allow_inf_nan=False, description="engineering units")
    deadband_pct: StrictFloat | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="percent of the last value sent"
    )
    counter: StrictBool = Field(default=False, description="default: true for good_count, reject_count, energy_kwh")
    counter_width: StrictInt | None = Field(
        default=None, ge=1, le=64, description="bits at which the raw value wraps; default: the type's width"
    )
    max_rate_per_h: StrictFloat | None = Field(default=None, gt=0, allow_inf_nan=False)
    unit: str = ""
    description: str = ""

    @field_validator("signal")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if is_reserved_signal(value):
            raise ValueError(
                f"signal name {value!r} is reserved ({', '.join(sorted(RESERVED_SIGNALS))} and names starting "
                "with _ are the store's own columns and tags): rename the signal"
            )
        return value

    @property
    def count(self) -> int:
        """Registers (in coil and discrete tables: bits) this value occupies."""
        return (self.length or 1) if self.type is DataType.STRING else self.type.width

    @property
    def word_order(self) -> WordOrder:
        """Legacy view of byte_order: whether the words of a multi-word value are reversed."""
        return WordOrder.LITTLE if self.byte_order in (ByteOrder.CDAB, ByteOrder.DCBA) else WordOrder.BIG

    @property
    def is_float(self) -> bool:
        """Whether decoded values are floats (a float type, or a number with a scale or offset)."""
        if self.type.is_float:
            return True
        scalable = self.type.is_number or self.type is DataType.BITS16
        return scalable and self.enum is None and (self.scale != 1.0 or self.offset != 0.0)

    @property
    def modulus(self) -> int | float | None:
        """Engineering units per counter wrap (2**counter_width * scale), or None if the value never wraps."""
        if not self.counter or self.counter_width is None:
            return None
        wrap = 1 << self.counter_width
        return wrap if self.scale == 1.0 else wrap * self.scale

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Map the legacy word_order onto byte_order; default counter and counter_width."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "word_order" in data:
            if "byte_order" in data:
                raise ValueError("give either 'byte_order' or the legacy 'word_order', not both")
            legacy = data.pop("word_order")
            try:
                data["byte_order"] = _FROM_WORD_ORDER[WordOrder(legacy)]
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"'word_order' must be big or little, not {legacy!r} (or use byte_order: ABCD | DCBA | BADC | CDAB)"
                ) from exc
        if "counter" not in data and data.get("signal") in COUNTER_SIGNALS:
            data["counter"] = True
        if data.get("counter") is True and data.get("counter_width") is None:
            try:
                t = DataType(data.get("type"))
            except ValueError:
                return data  # the type's own error says what is wrong
            if t.is_integer:
                # A signed counter that must not go negative wraps to 0 at 2**(bits-1).
                data["counter_width"] = t.bits - 1 if t.is_signed else t.bits
        return data

    @model_validator(mode="after")
    def _check(self) -> RegisterSpec:
        if not is_valid_signal(self.signal):
            raise ValueError(f"signal {self.signal!r} is not a valid name (lower case, digits, _)")
        self._check_layout()
        self._check_meaning()
        self._check_reporting()
        return self

    def _check_layout(self) -> None:
        t = self.type
        if self.table.is_bits and t is not DataType.BOOL:
            raise ValueError(
                f"type {t} cannot be read from the {self.table} table, which holds single bits: use type: bool"
            )
        if t is DataType.BOOL and not self.table.is_bits:
            raise ValueError(
                f"type bool is only for the coil and discrete tables (a bit of a {self.table} register: "
                "type: bit with bit: 0..15)"
            )
        if t is DataType.BOOL and self.byte_order is not ByteOrder.ABCD:
            raise ValueError("'byte_order' has no meaning for a single bit (type bool)")
        if t is DataType.STRING:
            if self.length is None:
                raise ValueError("a string register needs 'length' (number of 16-bit registers)")
        elif self.length is not None:
            raise ValueError("'length' is only for string registers")
        if t is DataType.BIT:
            if self.bit is None:
                raise ValueError("type bit needs 'bit' (0..15: which bit of the register)")
        elif self.bit is not None:
            raise ValueError("'bit' is only for type bit")
        if self.address + self.count - 1 > MAX_REGISTER_ADDRESS:
            raise ValueError(f"value runs past register {MAX_REGISTER_ADDRESS}")

    def _check_meaning(self) -> None:
        t = self.type
        if self.scale == 0.0:
            raise ValueError("'scale' must not be 0")
        if (self.scale != 1.0 or self.offset != 0.0) and (
            (not t.is_number and t is not DataType.BITS16) or self.states is not None or self.enum is not None
        ):
            what = "an enum" if self.enum is not None else "a states map" if self.states is not None else f"type {t}"
            raise ValueError(f"'scale' and 'offset' are only for numbers, not for {what}")
        if self.enum is not None:
            if not t.is_integer:
                raise ValueError(f"'enum' is only for integer types, not {t}")
            if self.states is not None or self.signal == "state":
                raise ValueError("'enum' cannot be used on the 'state' signal: use 'states'")
            low, high = (-(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1) if t.is_signed else (0, (1 << t.bits) - 1)
            for code, label in self.enum.items():
                if not low <= code <= high:
                    raise ValueError(f"'enum' code {code} does not fit type {t} ({low}..{high})")
                if not (0 < len(label) <= MAX_ENUM_LABEL and label.isprintable() and label == label.strip()):
                    raise ValueError(
                        f"'enum' label {label[:MAX_ENUM_LABEL]!r} must be 1..{MAX_ENUM_LABEL} printable characters "
                        "without surrounding spaces"
                    )
        kind = CANONICAL_SIGNALS.get(self.signal)
        if self.signal == "state":
            if not self.states:
                raise ValueError("the 'state' signal needs a 'states' map from raw code to state")
            if self.type not in (DataType.UINT16, DataType.INT16):
                raise ValueError("the 'state' signal must be a 16-bit integer register")
        elif self.states is not None:
            raise ValueError("'states' is only for the 'state' signal")
        if kind is SignalKind.STR and t is not DataType.STRING:
            raise ValueError(f"signal {self.signal!r} must be a string register")
        numeric = t.is_number or t is DataType.BITS16
        if kind in (SignalKind.INT, SignalKind.FLOAT) and (not numeric or self.enum is not None):
            raise ValueError(f"signal {self.signal!r} must be numeric (an integer or float type without 'enum')")
        if kind is SignalKind.INT and self.is_float:
            raise ValueError(f"signal {self.signal!r} is an integer signal: use an integer type, scale 1 and offset 0")

    def _check_reporting(self) -> None:
        t = self.type
        if self.counter:
            if not t.is_number or self.enum is not None:
                raise ValueError(f"'counter' is only for numbers, not for {'an enum' if self.enum else f'type {t}'}")
            if self.signal in CANONICAL_SIGNALS and self.signal not in COUNTER_SIGNALS:
                raise ValueError(f"signal {self.signal!r} cannot be a 'counter'")
            if self.scale < 0:
                raise ValueError("a 'counter' needs a positive 'scale'")
            if self.counter_width is not None:
                if t.is_float:
                    raise ValueError(f"'counter_width' is only for integer counters: a {t} counter does not wrap")
                if self.counter_width > t.bits:
                    raise ValueError(f"'counter_width' {self.counter_width} is wider than type {t} ({t.bits} bits)")
        else:
            for name in ("counter_width", "max_rate_per_h"):
                if getattr(self, name) is not None:
                    raise ValueError(f"'{name}' is only for counters (counter: true)")
        for name in ("deadband", "deadband_pct"):
            if getattr(self, name) is None:
                continue
            if self.deadband is not None and self.deadband_pct is not None:
                raise ValueError("give either 'deadband' or 'deadband_pct', not both")
            if self.counter and self.is_float and name == "deadband":
                # A meter (energy): skipping its small steps loses nothing, the next value carries them; and it
                # rides along with every sample that goes out anyway, so attribution stays exact at each change.
                continue
            if self.signal in NO_DEADBAND_SIGNALS or self.counter:
                why = (
                    "a counter: only a meter with fractional values may have an absolute 'deadband'"
                    if self.counter
                    else "every change of it is reported"
                )
                raise ValueError(f"'{name}' is not allowed on signal {self.signal!r} ({why})")
            if not t.is_number or self.enum is not None:
                raise ValueError(f"'{name}' is only for numbers, not for {'an enum' if self.enum else f'type {t}'}")


class DeviceProfile(BaseModel):
    """Register map of one machine model."""

    model_config = _Strict

    model: Id
    description: str = ""
    vendor: str = ""
    read_gap: StrictInt = Field(default=10, ge=0, le=124, description="unused registers one read may bridge")
    registers: list[RegisterSpec] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _check(self) -> DeviceProfile:
        seen: dict[str, int] = {}
        used: dict[tuple[Table, int], str] = {}
        bits: dict[tuple[Table, int, int], str] = {}
        for index, reg in enumerate(self.registers):
            if reg.signal in seen:
                raise ValueError(f"signal {reg.signal!r} is mapped twice (registers {seen[reg.signal]} and {index})")
            seen[reg.signal] = index
            if reg.type is DataType.BIT:
                assert reg.bit is not None
                # Several bit signals may share a register, one bit each.
                other = used.get((reg.table, reg.address))
                if other is None or other.startswith("bit:"):
                    other = bits.get((reg.table, reg.address, reg.bit))
                    if other is None:
                        bits[(reg.table, reg.address, reg.bit)] = reg.signal
                        used[(reg.table, reg.address)] = "bit:"
                        continue
                raise ValueError(
                    f"{reg.table} register {reg.address} bit {reg.bit} is used by both {other!r} and {reg.signal!r}"
                )
            for addr in range(reg.address, reg.address + reg.count):
                other = used.get((reg.table, addr))
                if other == "bit:":
                    other = next(s for (t, a, _), s in bits.items() if (t, a) == (reg.table, addr))
                if other is not None:
                    raise ValueError(f"{reg.table} register {addr} is used by both {other!r} and {reg.signal!r}")
                used[(reg.table, addr)] = reg.signal
        return self

    def register(self, signal: str) -> RegisterSpec | None:
        """The register spec for signal, if this profile has it."""
        return next((r for r in self.registers if r.signal == signal), None)


class SiteInfo(BaseModel):
    """The facility itself."""

    model_config = _Strict

    id: Id
    name: str = ""
    timezone: str = Field(default="UTC", max_length=64)
    max_gap_factor: float = Field(
        default=3.0,
        ge=1.0,
        le=100.0,
        description="a gap between samples longer than this many poll intervals (+1 s) is UNKNOWN",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        zone_of(value)  # raises ValueError naming the zone
        return value


def _check_job_id(value: str) -> str:
    if not (0 < len(value) <= MAX_JOB_ID and value.isprintable() and value == value.strip()):
        raise ValueError(
            f"job id {value[:MAX_JOB_ID]!r} must be 1..{MAX_JOB_ID} printable characters without surrounding spaces"
        )
    return value


def _job_key(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML reads an unquoted 1234 (or 007) as a number; the job signal is a string, so it could never match.
        raise ValueError(f'job id {value!r} is a number: quote it ("{value}") so it matches the job signal')
    return value


JobId = Annotated[StrictStr, BeforeValidator(_job_key), AfterValidator(_check_job_id)]
CycleTime = Annotated[StrictFloat, Field(gt=0, le=86400, allow_inf_nan=False)]


class Machine(BaseModel):
    """One machine instance: where its PLC is and which profile decodes it."""

    model_config = _Strict

    id: Id
    name: str = ""
    profile: Id
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=247)
    poll_interval_s: float = Field(default=1.0, ge=0.05, le=3600)
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    ideal_cycle_time_s: float = Field(default=60.0, gt=0, le=86400)
    heartbeat_s: StrictFloat = Field(
        default=60.0, ge=1, le=3600, description="longest silence while polling fine; >= poll_interval_s"
    )
    request_delay_s: StrictFloat = Field(
        default=0.0, ge=0, le=10, description="pause between requests on a shared Modbus TCP gateway connection"
    )
    job_cycle_times_s: dict[JobId, CycleTime] = Field(
        default_factory=dict, max_length=10000, description="ideal cycle per job, overriding ideal_cycle_time_s"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.\-:\[\]]+", value):
            raise ValueError(f"{value!r} is not a host name or address")
        return value


class Tenant(BaseModel):
    """A business that uses the machines, identified at a machine by its badges."""

    model_config = _Strict

    id: Id
    name: str = ""
    badges: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(default_factory=list, max_length=10000)


class Role(StrEnum):
    """What an API key may see."""

    ADMIN = "admin"
    OPERATOR = "operator"
    AUDITOR = "auditor"  # read-only usage and invoices
    TENANT = "tenant"


class ApiKey(BaseModel):
    """An API key, stored as the SHA-256 of the key; tenant keys belong to one tenant."""

    model_config = _Strict

    name: str = Field(min_length=1, max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role
    tenant: Id | None = None

    @model_validator(mode="after")
    def _check(self) -> ApiKey:
        if self.role is Role.TENANT and self.tenant is None:
            raise ValueError("a tenant key needs 'tenant'")
        if self.role is not Role.TENANT and self.tenant is not None:
            raise ValueError(f"a {self.role} key must not name a tenant")
        return self


class AgentSpec(BaseModel):
    """An edge agent and the machines it serves: the only agent the collector accepts their data from."""

    model_config = _Strict

    id: Id
    machines: list[Id] = Field(default_factory=list, max_length=10000)


_CLOCK_RE = re.compile(r"([0-9]{2}):([0-9]{2})\Z")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def _clock(value: Any, *, end: bool) -> time:
    """A local wall time "HH:MM"; "24:00" only as an end (it is the next day's 00:00)."""
    if isinstance(value, time):  # a dumped SiteConfig validated again (shopfloor demo does)
        if value.tzinfo is not None or value.second or value.microsecond:
            raise ValueError(f"{value.isoformat()} is not a local time in whole minutes")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f'{value!r} is a number, not a time "HH:MM": quote times ("14:00"); unquoted, YAML reads 14:00 as 840'
        )
    if not isinstance(value, str):
        raise ValueError(f'{value!r} is not a time "HH:MM" (e.g. "06:00")')
    match = _CLOCK_RE.match(value)
    if match is None:
        raise ValueError(f'{value[:20]!r} is not a time "HH:MM" with two-digit hours and minutes (e.g. "06:00")')
    hours, minutes = int(match[1]), int(match[2])
    if end and (hours, minutes) == (24, 0):
        return time(0)
    if hours > 23 or minutes > 59:
        allowed = "00:00..24:00" if end else "00:00..23:59"
        raise ValueError(f"{value!r} is not a time of day ({allowed})")
    return time(hours, minutes)


def _start_time(value: Any) -> time:
    return _clock(value, end=False)


def _end_time(value: Any) -> time:
    return _clock(value, end=True)


def _holiday(value: Any) -> date:
    # YAML reads an unquoted 2026-12-25 as a date, a quoted one as text; a datetime or a number is a mistake.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{str(value)[:40]!r} is not a date YYYY-MM-DD (e.g. 2026-12-25)")


def _instant(value: Any) -> datetime:
    if isinstance(value, str) and len(value) <= 40:
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date and time (e.g. 2026-12-03T08:00:00+07:00)") from exc
    if not isinstance(value, datetime):
        raise ValueError(f"{str(value)[:40]!r} is not a date and time with offset (e.g. 2026-12-03T08:00:00+07:00)")
    if value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no UTC offset; write it with one, e.g. 2026-12-03T08:00:00+07:00")
    if not MIN_TS_MS <= _epoch_ms(value) < MAX_TS_MS:
        raise ValueError(f"{value.isoformat()} is outside the years 2000..2099")
    return value


def _epoch_ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)  # exact, unlike float timestamp()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _clock_text(value: time) -> str:
    """A wall time as the site file writes it ("HH:MM"), so a dumped SiteConfig validates again (JSON too)."""
    return value.strftime("%H:%M")


StartTime = Annotated[time, BeforeValidator(_start_time), PlainSerializer(_clock_text, when_used="json")]
EndTime = Annotated[time, BeforeValidator(_end_time), PlainSerializer(_clock_text, when_used="json")]
Holiday = Annotated[date, BeforeValidator(_holiday)]
Instant = Annotated[datetime, BeforeValidator(_instant)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class BreakSpec(BaseModel):
    """A break inside a shift, in local wall time (it may cross midnight inside a night shift)."""

    model_config = _Strict

    start: StartTime
    end: EndTime


class ShiftSpec(BaseModel):
    """A weekly shift in site-local time; end at or before start crosses midnight (equal: 24 h)."""

    model_config = _Strict

    name: Id
    start: StartTime
    end: EndTime
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAY_NAMES), min_length=1, max_length=7)  # type: ignore[arg-type]
    breaks: list[BreakSpec] = Field(default_factory=list, max_length=MAX_BREAKS)

    @model_validator(mode="after")
    def _check(self) -> ShiftSpec:
        _unique("day in 'days'", list(self.days))
        self.pattern()  # the pattern's own checks: breaks inside the shift, in order
        return self

    def pattern(self) -> ShiftPattern:
        """The shift as the calendar's pure pattern."""
        return ShiftPattern(
            name=self.name,
            start=self.start,
            end=self.end,
            weekdays=frozenset(WEEKDAY_NAMES.index(d) for d in self.days),
            breaks=tuple((b.start, b.end) for b in self.breaks),
        )


class DowntimeSpec(BaseModel):
    """Planned downtime (maintenance plan) of some machines, or of all when machines is left out."""

    model_config = _Strict

    machines: list[Id] | None = Field(default=None, min_length=1, max_length=10000)
    start: Instant
    end: Instant
    reason: str = Field(default=DEFAULT_REASON, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _check(self) -> DowntimeSpec:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        if not self.reason.isprintable():
            raise ValueError("'reason' must be printable text (no control characters)")
        if self.machines is not None:
            _unique("machine in 'machines'", list(self.machines))
        return self

    def downtime(self) -> Downtime:
        """The window as the calendar's pure Downtime."""
        machines = frozenset(self.machines) if self.machines is not None else None
        return Downtime(_epoch_ms(self.start), _epoch_ms(self.end), machines, self.reason)


class CalendarSpec(BaseModel):
    """The site's shift calendar: no shifts means always planned (one shift 'all', every day 00:00-24:00)."""

    model_config = _Strict

    shifts: list[ShiftSpec] = Field(default_factory=list, max_length=MAX_SHIFTS)
    holidays: list[Holiday] = Field(default_factory=list, max_length=MAX_HOLIDAYS)
    downtime: list[DowntimeSpec] = Field(default_factory=list, max_length=MAX_DOWNTIME)

    @model_validator(mode="after")
    def _check(self) -> CalendarSpec:
        _unique("shift name", [s.name for s in self.shifts])
        _unique("holiday", [d.isoformat() for d in self.holidays])
        check_shifts([s.pattern() for s in self.shifts])  # names both shifts of an overlap
        return self

    def model(self, zone: str) -> Calendar:
        """The calendar as the pure Calendar the analytics use."""
        return Calendar(
            zone=zone,
            shifts=tuple(s.pattern() for s in self.shifts),
            holidays=frozenset(self.holidays),
            downtime=tuple(d.downtime() for d in self.downtime),
        )


class LossCategory(StrEnum):
    """What a non-running state (or a stop reason) costs OEE: the loss it is booked under."""

    BREAKDOWN = "breakdown"
    SETUP = "setup"
    NO_OPERATOR = "no_operator"
    NO_MATERIAL = "no_material"
    OFF = "off"
    MAINTENANCE = "maintenance"
    OTHER = "other"


MAPPED_STATES = (
    MachineState.SETUP,
    MachineState.IDLE,
    MachineState.OFF,
    MachineState.MAINTENANCE,
    MachineState.STOPPED,
)
DEFAULT_LOSS_STATES: dict[MachineState, LossCategory] = {
    MachineState.SETUP: LossCategory.SETUP,
    MachineState.IDLE: LossCategory.NO_OPERATOR,
    MachineState.OFF: LossCategory.OFF,
    MachineState.MAINTENANCE: LossCategory.MAINTENANCE,
    MachineState.STOPPED: LossCategory.BREAKDOWN,
}


class LossMapSpec(BaseModel):
    """Versioned map from machine state (and stop reason) to OEE loss; RUNNING is production, UNKNOWN unknown."""

    model_config = _Strict

    version: str = Field(default="default-1", min_length=1, max_length=64)
    microstop_max_s: StrictFloat = Field(
        default=120.0, gt=0, le=MAX_MICROSTOP_S, allow_inf_nan=False, description="shorter stops: speed loss"
    )
    states: dict[MachineState, LossCategory] = Field(default_factory=lambda: dict(DEFAULT_LOSS_STATES))
    stop_reasons: dict[Annotated[StrictInt, Field(ge=0, le=2**31 - 1)], LossCategory] = Field(
        default_factory=dict, max_length=MAX_STOP_REASONS, description="a STOPPED interval with this reason"
    )

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not (value.isprintable() and value == value.strip()):
            raise ValueError(f"version {value!r} must be printable, without surrounding spaces")
        return value

    @field_validator("states", mode="before")
    @classmethod
    def _fixed_states(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if key in ("RUNNING", "UNKNOWN"):
                    what = "production" if key == "RUNNING" else "unknown time"
                    raise ValueError(f"{key} is always {what} and cannot be remapped: leave it out of 'states'")
        return value

    @model_validator(mode="after")
    def _complete(self) -> LossMapSpec:
        missing = [s.value for s in MAPPED_STATES if s not in self.states]
        if missing:
            raise ValueError(
                f"states: give a loss for every state; missing {', '.join(missing)} "
                f"(the defaults: {', '.join(f'{k.value}: {v.value}' for k, v in DEFAULT_LOSS_STATES.items())})"
            )
        return self


class OeeSpec(BaseModel):
    """OEE settings of the site."""

    model_config = _Strict

    loss_map: LossMapSpec = Field(default_factory=LossMapSpec)


class SiteConfig(BaseModel):
    """Everything Shopfloor needs to know about one site."""

    model_config = _Strict

    site: SiteInfo
    profiles: list[DeviceProfile] = Field(min_length=1)
    machines: list[Machine] = Field(min_length=1, max_length=10000)
    tenants: list[Tenant] = Field(default_factory=list)
    api_keys: list[ApiKey] = Field(default_factory=list)
    # Empty: any agent may report any machine (development); declared: the collector enforces it.
    agents: list[AgentSpec] = Field(default_factory=list, max_length=10000)
    calendar: CalendarSpec = Field(default_factory=CalendarSpec)
    oee: OeeSpec = Field(default_factory=OeeSpec)
    # (zone, spec, calendar): built once; rebuilt if model_copy(update=...) swapped the zone or the spec.
    _calendar: tuple[str, CalendarSpec, Calendar] | None = PrivateAttr(default=None)

    @field_validator("profiles", mode="before")
    @classmethod
    def _load_profile_files(cls, value: Any, info: ValidationInfo) -> Any:
        """Profiles may be given inline or as paths to profile files, relative to the site file."""
        if not isinstance(value, list):
            return value
        base: Path = (info.context or {}).get("base_dir", Path.cwd())
        loaded = []
        for item in value:
            if isinstance(item, str):
                loaded.append(_read_profile_file(base / item))
            else:
                loaded.append(item)
        return loaded

    @model_validator(mode="after")
    def _check(self) -> SiteConfig:
        _unique("profile model", [p.model for p in self.profiles])
        _unique("machine id", [m.id for m in self.machines])
        _unique("tenant id", [t.id for t in self.tenants])
        _unique("API key name", [k.name for k in self.api_keys])
        _unique("API key hash", [k.sha256 for k in self.api_keys])
        models = {p.model for p in self.profiles}
        for index, machine in enumerate(self.machines):
            if machine.profile not in models:
                raise ValueError(
                    f"machines[{index}] ({machine.id}): profile {machine.profile!r} is not defined "
                    f"(known: {', '.join(sorted(models))})"
                )
            if machine.heartbeat_s < machine.poll_interval_s:
                raise ValueError(
                    f"machines[{index}] ({machine.id}): heartbeat_s {machine.heartbeat_s:g} is shorter than "
                    f"poll_interval_s {machine.poll_interval_s:g}; make heartbeat_s at least the poll interval"
                )
        endpoints: dict[tuple[str, int, int], str] = {}
        for machine in self.machines:
            key = (machine.host, machine.port, machine.unit_id)
            if key in endpoints:
                raise ValueError(
                    f"machines {endpoints[key]!r} and {machine.id!r} share {key[0]}:{key[1]} unit {key[2]}"
                )
            endpoints[key] = machine.id
        owner: dict[int, str] = {}
        for tenant in self.tenants:
            for badge in tenant.badges:
                if badge in owner:
                    raise ValueError(f"badge {badge} belongs to both {owner[badge]!r} and {tenant.id!r}")
                owner[badge] = tenant.id
        tenants = {t.id for t in self.tenants}
        for api_key in self.api_keys:
            if api_key.tenant is not None and api_key.tenant not in tenants:
                raise ValueError(f"API key {api_key.name!r}: tenant {api_key.tenant!r} is not defined")
        self._check_agents()
        self._check_calendar()
        return self

    def _check_calendar(self) -> None:
        machines = {m.id for m in self.machines}
        for index, spec in enumerate(self.calendar.downtime):
            for machine_id in spec.machines or ():
                if machine_id not in machines:
                    raise ValueError(
                        f"calendar.downtime[{index}]: machine {machine_id!r} is not defined under machines:"
                    )
        self.calendar_model()  # builds it now, so a bad calendar fails at load time

    def calendar_model(self) -> Calendar:
        """The site's shift calendar in its time zone (always planned when the site file has no calendar:)."""
        cached = self._calendar
        if cached is None or cached[0] != self.site.timezone or cached[1] is not self.calendar:
            cached = (self.site.timezone, self.calendar, self.calendar.model(self.site.timezone))
            self._calendar = cached
        return cached[2]

    def ideal_cycle_s(self, machine: Machine, job: str | None) -> float:
        """The ideal cycle time of machine for job: the job's own, else the machine's."""
        if job is not None and job in machine.job_cycle_times_s:
            return machine.job_cycle_times_s[job]
        return machine.ideal_cycle_time_s

    def _check_agents(self) -> None:
        _unique("agent id", [a.id for a in self.agents])
        machines = {m.id for m in self.machines}
        served_by: dict[str, str] = {}
        for index, agent in enumerate(self.agents):
            for machine_id in agent.machines:
                if machine_id not in machines:
                    raise ValueError(
                        f"agents[{index}] ({agent.id}): machine {machine_id!r} is not defined under machines:"
                    )
                if machine_id in served_by:
                    other = served_by[machine_id]
                    what = "lists it twice" if other == agent.id else f"and {other!r} both serve it"
                    raise ValueError(
                        f"agents[{index}] ({agent.id}): machine {machine_id!r} is served by one agent only, but "
                        f"{agent.id!r} {what}"
                    )
                served_by[machine_id] = agent.id

    def agent_of(self, machine_id: str) -> str | None:
        """The id of the agent that serves this machine, or None if no agent is declared for it."""
        return next((a.id for a in self.agents if machine_id in a.machines), None)

    def machines_of(self, agent_id: str) -> list[str]:
        """The ids of the machines this agent serves (empty for an unknown agent)."""
        return next((list(a.machines) for a in self.agents if a.id == agent_id), [])

    def profile(self, model: str) -> DeviceProfile:
        """The profile with this model name."""
        return next(p for p in self.profiles if p.model == model)

    def machine(self, machine_id: str) -> Machine | None:
        """The machine with this id, if any."""
        return next((m for m in self.machines if m.id == machine_id), None)

    def badge_owner(self) -> dict[int, str]:
        """Map badge number -> tenant id."""
        return {badge: t.id for t in self.tenants for badge in t.badges}

    def max_gap_ms(self, machine: Machine) -> int:
        """Longest gap between samples that still counts as covered, in ms, for the site file's heartbeat."""
        return self.gap_for_heartbeat_ms(machine, round(machine.heartbeat_s * 1000))

    def gap_for_heartbeat_ms(self, machine: Machine, heartbeat_ms: int) -> int:
        """Longest covered gap for a machine whose agent reports at least every heartbeat_ms (report by exception).

        The agent sends every signal at the first poll a heartbeat after the last time it did; allow
        max_gap_factor poll intervals (+1 s) on top for late polls and clock steps.
        """
        return heartbeat_ms + math.ceil((machine.poll_interval_s * self.site.max_gap_factor + 1.0) * 1000)


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


def _read_profile_file(path: Path) -> DeviceProfile:
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a profile file must hold a mapping")
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        # ConfigError is not a ValueError, so pydantic lets it through and the message names the profile file.
        raise ConfigError(validation_message(path, exc, lines)) from exc


def load_site(path: str | Path) -> SiteConfig:
    """Load and validate a site file; raise ConfigError naming the file, line and key."""
    p = Path(path)
    return load_model(p, SiteConfig, context={"base_dir": p.resolve().parent})


# What only the API needs (who the tenants are, API key hashes) lives in the business DB; a site file may still list
# it for `shopfloor db import`. Agents and collectors need the plant only, and never read those entries.
BUSINESS_KEYS = ("tenants", "api_keys")


def load_plant(path: str | Path) -> SiteConfig:
    """Load a site file's plant (site, profiles, machines, agents, calendar), without its tenants and API keys."""
    p = Path(path)
    return load_model(p, SiteConfig, context={"base_dir": p.resolve().parent}, ignore=BUSINESS_KEYS)


def load_profile(path: str | Path) -> DeviceProfile:
    """Load and validate one device profile file."""
    return load_model(Path(path), DeviceProfile)


def default_site_path() -> Path:
    """The example site shipped with the package (used by the demo)."""
    return Path(__file__).parent / "examples" / "site.yaml"


__all__ = [
    "DEFAULT_LOSS_STATES",
    "MAX_MICROSTOP_S",
    "NO_DEADBAND_SIGNALS",
    "AgentSpec",
    "ApiKey",
    "BreakSpec",
    "ByteOrder",
    "CalendarSpec",
    "ConfigError",
    "DataType",
    "DeviceProfile",
    "DowntimeSpec",
    "LossCategory",
    "LossMapSpec",
    "Machine",
    "OeeSpec",
    "RegisterSpec",
    "Role",
    "ShiftSpec",
    "SiteConfig",
    "SiteInfo",
    "Table",
    "Tenant",
    "WordOrder",
    "default_site_path",
    "load_plant",
    "load_profile",
    "load_site",
]
