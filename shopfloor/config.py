"""Site configuration: site, device profiles, machines, tenants and API keys, validated once at start-up."""

from __future__ import annotations

import math
import re
import zoneinfo
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shopfloor.contracts import CANONICAL_SIGNALS, Id, MachineState, SignalKind, is_valid_signal
from shopfloor.yamlfile import ConfigError, load_model, read_yaml, validation_message

MAX_REGISTER_ADDRESS = 65535


class Table(StrEnum):
    """Modbus register table a value is read from."""

    HOLDING = "holding"
    INPUT = "input"


class DataType(StrEnum):
    """How a value is laid out in 16-bit registers."""

    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    FLOAT32 = "float32"
    STRING = "string"
    BITS16 = "bits16"

    @property
    def width(self) -> int:
        """Registers the type occupies (strings: see RegisterSpec.length)."""
        return 2 if self in (DataType.UINT32, DataType.INT32, DataType.FLOAT32) else 1


class WordOrder(StrEnum):
    """Order of the two 16-bit words of a 32-bit value (bytes within a word are always big-endian)."""

    BIG = "big"
    LITTLE = "little"


_Strict = ConfigDict(extra="forbid", frozen=True)


class RegisterSpec(BaseModel):
    """One value in a device's register map and the signal it maps onto."""

    model_config = _Strict

    signal: StrictStr
    address: int = Field(ge=0, le=MAX_REGISTER_ADDRESS)
    table: Table = Table.HOLDING
    type: DataType
    word_order: WordOrder = WordOrder.BIG
    scale: float = Field(default=1.0, gt=0)
    length: int | None = Field(default=None, ge=1, le=64, description="registers; strings only")
    states: dict[int, MachineState] | None = Field(
        default=None, description="raw code -> state; required for the 'state' signal"
    )
    unit: str = ""
    description: str = ""

    @property
    def count(self) -> int:
        """Registers this value occupies."""
        return (self.length or 1) if self.type is DataType.STRING else self.type.width

    @property
    def is_float(self) -> bool:
        """Whether decoded values are floats (float32 or a fractional scale)."""
        return self.type is DataType.FLOAT32 or self.scale != 1.0

    @model_validator(mode="after")
    def _check(self) -> RegisterSpec:
        if not is_valid_signal(self.signal):
            raise ValueError(f"signal {self.signal!r} is not a valid name (lower case, digits, _)")
        if self.type is DataType.STRING:
            if self.length is None:
                raise ValueError("a string register needs 'length' (number of 16-bit registers)")
            if self.scale != 1.0:
                raise ValueError("a string register cannot have a scale")
        elif self.length is not None:
            raise ValueError("'length' is only for string registers")
        if self.address + self.count - 1 > MAX_REGISTER_ADDRESS:
            raise ValueError(f"value runs past register {MAX_REGISTER_ADDRESS}")
        kind = CANONICAL_SIGNALS.get(self.signal)
        if self.signal == "state":
            if not self.states:
                raise ValueError("the 'state' signal needs a 'states' map from raw code to state")
            if self.type not in (DataType.UINT16, DataType.INT16):
                raise ValueError("the 'state' signal must be a 16-bit integer register")
        elif self.states is not None:
            raise ValueError("'states' is only for the 'state' signal")
        if kind is SignalKind.STR and self.type is not DataType.STRING:
            raise ValueError(f"signal {self.signal!r} must be a string register")
        if kind in (SignalKind.INT, SignalKind.FLOAT) and self.type is DataType.STRING:
            raise ValueError(f"signal {self.signal!r} must be numeric")
        if kind is SignalKind.INT and self.is_float:
            raise ValueError(f"signal {self.signal!r} is an integer signal: use an integer type and scale 1")
        return self


class DeviceProfile(BaseModel):
    """Register map of one machine model."""

    model_config = _Strict

    model: Id
    description: str = ""
    vendor: str = ""
    registers: list[RegisterSpec] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _check(self) -> DeviceProfile:
        seen: dict[str, int] = {}
        used: dict[tuple[Table, int], str] = {}
        for index, reg in enumerate(self.registers):
            if reg.signal in seen:
                raise ValueError(f"signal {reg.signal!r} is mapped twice (registers {seen[reg.signal]} and {index})")
            seen[reg.signal] = index
            for addr in range(reg.address, reg.address + reg.count):
                other = used.get((reg.table, addr))
                if other is not None:
                    raise ValueError(
                        f"{reg.table} register {addr} is used by both {other!r} and {reg.signal!r}"
                    )
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
    timezone: str = "UTC"
    max_gap_factor: float = Field(
        default=3.0,
        ge=1.0,
        le=100.0,
        description="a gap between samples longer than this many poll intervals (+1 s) is UNKNOWN",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Asia/Jakarta)") from exc
        return value


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


class SiteConfig(BaseModel):
    """Everything Shopfloor needs to know about one site."""

    model_config = _Strict

    site: SiteInfo
    profiles: list[DeviceProfile] = Field(min_length=1)
    machines: list[Machine] = Field(min_length=1, max_length=10000)
    tenants: list[Tenant] = Field(default_factory=list)
    api_keys: list[ApiKey] = Field(default_factory=list)

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
        return self

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
        """Longest gap between samples that still counts as covered, in ms."""
        return math.ceil((machine.poll_interval_s * self.site.max_gap_factor + 1.0) * 1000)


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


def load_profile(path: str | Path) -> DeviceProfile:
    """Load and validate one device profile file."""
    return load_model(Path(path), DeviceProfile)


def default_site_path() -> Path:
    """The example site shipped with the package (used by the demo)."""
    return Path(__file__).parent / "examples" / "site.yaml"


__all__ = [
    "ApiKey",
    "ConfigError",
    "DataType",
    "DeviceProfile",
    "Machine",
    "RegisterSpec",
    "Role",
    "SiteConfig",
    "SiteInfo",
    "Table",
    "Tenant",
    "WordOrder",
    "default_site_path",
    "load_profile",
    "load_site",
]
