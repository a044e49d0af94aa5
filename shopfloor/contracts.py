"""The wire contract between edge agents and collectors: ids, topics and payloads.

Producer and consumer both import this module, so the two sides cannot drift.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

SCHEMA_VERSION = 1
TOPIC_ROOT = "shopfloor/v1"
ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_ID_RE = re.compile(rf"^{ID_PATTERN}$")
# Signal names become InfluxDB field keys and JSON keys: keep them boring.
SIGNAL_PATTERN = r"[a-z][a-z0-9_]{0,62}"
_SIGNAL_RE = re.compile(rf"^{SIGNAL_PATTERN}$")
# Names the store and the analytics use for themselves (InfluxDB's time column, the tags, the reporting agent):
# a signal of that name would shadow them. Names starting with "_" are reserved too (SIGNAL_PATTERN excludes them).
RESERVED_SIGNALS = frozenset({"time", "site", "machine", "agent"})

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_SAMPLES_PER_BATCH = 1000
MAX_SIGNALS_PER_SAMPLE = 64
MAX_STRING_VALUE = 256
# Sample timestamps must be plausible: 2000-01-01 .. 2100-01-01 in epoch ms.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000
# A machine's heartbeat (report by exception): every signal is sent at least this often.
MIN_HEARTBEAT_MS = 1_000
MAX_HEARTBEAT_MS = 3_600_000


class MachineState(StrEnum):
    """Canonical machine states (DESIGN.md)."""

    OFF = "OFF"
    IDLE = "IDLE"
    SETUP = "SETUP"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    MAINTENANCE = "MAINTENANCE"


class SignalKind(StrEnum):
    """Value type a canonical signal must carry."""

    STATE = "state"
    INT = "int"
    FLOAT = "float"
    STR = "str"


# Canonical signals and the type each must have on the wire and in the store.
CANONICAL_SIGNALS: dict[str, SignalKind] = {
    "state": SignalKind.STATE,
    "stop_reason": SignalKind.INT,
    "badge": SignalKind.INT,
    "job": SignalKind.STR,
    "good_count": SignalKind.INT,
    "reject_count": SignalKind.INT,
    "energy_kwh": SignalKind.FLOAT,
    "power_kw": SignalKind.FLOAT,
}
COUNTER_SIGNALS = ("good_count", "reject_count", "energy_kwh")


def is_valid_id(value: str) -> bool:
    """Return whether value is a valid site, machine or agent id."""
    return bool(_ID_RE.match(value))


def is_valid_signal(value: str) -> bool:
    """Return whether value is a valid signal name."""
    return bool(_SIGNAL_RE.match(value))


def is_reserved_signal(name: str) -> bool:
    """Return whether name is reserved and may not be a signal (time, site, machine, agent, or starting with _)."""
    return name in RESERVED_SIGNALS or name.startswith("_")


def _check_id(value: str) -> str:
    if not is_valid_id(value):
        raise ValueError(f"{value!r} is not a valid id (expected {ID_PATTERN})")
    return value


Id = Annotated[StrictStr, AfterValidator(_check_id)]
SignalValue = StrictBool | StrictInt | StrictFloat | StrictStr


class Sample(BaseModel):
    """One reading of a machine's signals at one instant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: StrictInt = Field(ge=MIN_TS_MS, le=MAX_TS_MS, description="epoch milliseconds, UTC")
    values: dict[str, SignalValue] = Field(max_length=MAX_SIGNALS_PER_SAMPLE)

    @model_validator(mode="after")
    def _check_values(self) -> Sample:
        for name, value in self.values.items():
            check_signal(name, value)
        return self


def check_signal(name: str, value: SignalValue) -> None:
    """Raise ValueError unless name and value are a valid signal of a Sample (the check Sample applies)."""
    if not is_valid_signal(name):
        raise ValueError(f"signal name {name!r} is invalid (expected {SIGNAL_PATTERN})")
    _check_signal_value(name, value)


def _check_signal_value(name: str, value: SignalValue) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"signal {name!r}: {value!r} is not a finite number")
    if isinstance(value, str) and len(value) > MAX_STRING_VALUE:
        raise ValueError(f"signal {name!r}: string longer than {MAX_STRING_VALUE} characters")
    kind = CANONICAL_SIGNALS.get(name)
    if kind is None:
        return
    if kind is SignalKind.STATE:
        if not isinstance(value, str) or value not in MachineState.__members__:
            raise ValueError(f"signal 'state': {value!r} is not one of {', '.join(MachineState)}")
    elif kind is SignalKind.INT:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"signal {name!r}: {value!r} is not a non-negative integer")
    elif kind is SignalKind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"signal {name!r}: {value!r} is not a non-negative number")
    elif kind is SignalKind.STR and not isinstance(value, str):
        raise ValueError(f"signal {name!r}: {value!r} is not a string")


class TelemetryBatch(BaseModel):
    """A batch of samples of one machine, as published on its telemetry topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    agent: Id
    site: Id
    machine: Id
    seq: StrictInt = Field(ge=0, le=2**63 - 1)
    samples: list[Sample] = Field(min_length=1, max_length=MAX_SAMPLES_PER_BATCH)

    def to_json(self) -> bytes:
        """Serialise compactly for the wire."""
        return self.model_dump_json().encode()


class LinkStatus(StrEnum):
    """What an agent can say about a PLC or about itself."""

    ONLINE = "online"
    UNREACHABLE = "unreachable"
    OFFLINE = "offline"


class StatusMessage(BaseModel):
    """Retained status of a machine (as the agent sees its PLC) or of an agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    status: LinkStatus
    ts: StrictInt = Field(ge=MIN_TS_MS, le=MAX_TS_MS)
    agent: Id
    detail: str = Field(default="", max_length=500)
    # Machine statuses: the longest the agent stays silent about this machine while polling it fine (report by
    # exception sends every signal at least this often), so consumers learn the allowance from the data.
    heartbeat_ms: StrictInt | None = Field(default=None, ge=MIN_HEARTBEAT_MS, le=MAX_HEARTBEAT_MS)

    def to_json(self) -> bytes:
        """Serialise compactly for the wire."""
        return self.model_dump_json(exclude_none=True).encode()


class TopicKind(StrEnum):
    """The kinds of topic under shopfloor/v1."""

    TELEMETRY = "telemetry"
    MACHINE_STATUS = "status"
    AGENT_STATUS = "agent-status"
    COMMITS = "commits"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed Shopfloor topic; cannot hold an invalid id."""

    kind: TopicKind
    site: str
    machine: str = ""
    agent: str = ""

    def __post_init__(self) -> None:
        _check_id(self.site)
        if self.kind in (TopicKind.TELEMETRY, TopicKind.MACHINE_STATUS):
            _check_id(self.machine)
        else:
            _check_id(self.agent)

    def __str__(self) -> str:
        if self.kind is TopicKind.TELEMETRY:
            return f"{TOPIC_ROOT}/{self.site}/{self.machine}/telemetry"
        if self.kind is TopicKind.MACHINE_STATUS:
            return f"{TOPIC_ROOT}/{self.site}/{self.machine}/status"
        if self.kind is TopicKind.AGENT_STATUS:
            return f"{TOPIC_ROOT}/{self.site}/agents/{self.agent}/status"
        return f"{TOPIC_ROOT}/{self.site}/agents/{self.agent}/commits"

    @classmethod
    def telemetry(cls, site: str, machine: str) -> Topic:
        """Topic a machine's telemetry batches go to."""
        return cls(TopicKind.TELEMETRY, site, machine=machine)

    @classmethod
    def machine_status(cls, site: str, machine: str) -> Topic:
        """Retained topic with the agent's view of a PLC."""
        return cls(TopicKind.MACHINE_STATUS, site, machine=machine)

    @classmethod
    def agent_status(cls, site: str, agent: str) -> Topic:
        """Retained topic with an agent's own status (its last will)."""
        return cls(TopicKind.AGENT_STATUS, site, agent=agent)

    @classmethod
    def commits(cls, site: str, agent: str) -> Topic:
        """Topic on which collectors confirm what they have stored for an agent."""
        return cls(TopicKind.COMMITS, site, agent=agent)

    @classmethod
    def parse(cls, topic: str) -> Topic:
        """Parse a topic string; raise ValueError if it is not a Shopfloor topic."""
        parts = topic.split("/")
        if len(parts) < 5 or "/".join(parts[:2]) != TOPIC_ROOT:
            raise ValueError(f"topic {topic!r} is not under {TOPIC_ROOT}/")
        rest = parts[2:]
        if len(rest) == 3 and rest[2] == "telemetry":
            return cls.telemetry(rest[0], rest[1])
        if len(rest) == 3 and rest[2] == "status":
            return cls.machine_status(rest[0], rest[1])
        if len(rest) == 4 and rest[1] == "agents" and rest[3] == "status":
            return cls.agent_status(rest[0], rest[2])
        if len(rest) == 4 and rest[1] == "agents" and rest[3] == "commits":
            return cls.commits(rest[0], rest[2])
        raise ValueError(f"topic {topic!r} is not a known Shopfloor topic")


def subscription_filters(site: str = "+") -> list[str]:
    """Topic filters a collector subscribes to."""
    return [
        f"{TOPIC_ROOT}/{site}/+/telemetry",
        f"{TOPIC_ROOT}/{site}/+/status",
        f"{TOPIC_ROOT}/{site}/agents/+/status",
    ]


class PayloadError(Exception):
    """A message that must not be written; kind groups errors for counting and logging."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def decode_payload(payload: bytes) -> Any:
    """Decode a payload's JSON and check its schema version; raise PayloadError (oversize, malformed-json, ...)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("oversize", f"{len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError("malformed-json", str(exc)[:200]) from exc
    except RecursionError as exc:
        raise PayloadError("malformed-json", "nested too deeply") from exc
    if isinstance(data, dict) and data.get("v") != SCHEMA_VERSION:
        raise PayloadError("unknown-version", f"v={data.get('v')!r}, this collector speaks v{SCHEMA_VERSION}")
    return data


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "payload"
    return f"{loc}: {err['msg']} ({exc.error_count()} error(s))"


def validate_telemetry(topic: Topic, data: Any) -> TelemetryBatch:
    """Validate decoded telemetry (see decode_payload) from topic; raise PayloadError if it must not be written."""
    try:
        batch = TelemetryBatch.model_validate(data)
    except ValidationError as exc:
        raise PayloadError("invalid-payload", _first_error(exc)) from exc
    if (batch.site, batch.machine) != (topic.site, topic.machine):
        raise PayloadError(
            "topic-mismatch",
            f"payload is for {batch.site}/{batch.machine} but arrived on {topic}",
        )
    return batch


def validate_status(data: Any) -> StatusMessage:
    """Validate a decoded status payload (see decode_payload); raise PayloadError if it must not be written."""
    try:
        return StatusMessage.model_validate(data)
    except ValidationError as exc:
        raise PayloadError("invalid-payload", _first_error(exc)) from exc


def parse_telemetry(topic: Topic, payload: bytes) -> TelemetryBatch:
    """Validate a telemetry payload received on topic; raise PayloadError if it must not be written."""
    return validate_telemetry(topic, decode_payload(payload))


def parse_status(topic: Topic, payload: bytes) -> StatusMessage:
    """Validate a status payload; raise PayloadError if it must not be written."""
    return validate_status(decode_payload(payload))
