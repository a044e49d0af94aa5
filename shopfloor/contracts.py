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
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
TOPIC_ROOT = "shopfloor/v1"
ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_ID_RE = re.compile(rf"^{ID_PATTERN}\Z")  # \Z: "$" would let a trailing newline through
# Signal names become InfluxDB field keys and JSON keys: keep them boring.
SIGNAL_PATTERN = r"[a-z][a-z0-9_]{0,62}"
_SIGNAL_RE = re.compile(rf"^{SIGNAL_PATTERN}\Z")
# Names the store and the analytics use for themselves (InfluxDB's time column, the tags, the reporting agent):
# a signal of that name would shadow them. Names starting with "_" are reserved too (SIGNAL_PATTERN excludes them).
RESERVED_SIGNALS = frozenset({"time", "site", "machine", "agent"})

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_SAMPLES_PER_BATCH = 1000
MAX_SIGNALS_PER_SAMPLE = 64
MAX_STRING_VALUE = 256
MAX_DETAIL = 500  # characters of a status detail
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


def _shorten(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_signal_value(name: str, value: SignalValue) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"signal {name!r}: {value!r} is not a finite number")
    if isinstance(value, str):
        if len(value) > MAX_STRING_VALUE:
            raise ValueError(f"signal {name!r}: string longer than {MAX_STRING_VALUE} characters")
        if not value.isprintable():
            # Control characters (newline, tab, escape, ...) would reach logs, CSV and invoices; the store keeps
            # a newline as a backslash and an n. No PLC string decodes to one (shopfloor.codec refuses them).
            raise ValueError(f"signal {name!r}: {_shorten(value)} holds control or other non-printable characters")
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
    detail: str = Field(default="", max_length=MAX_DETAIL)
    # Machine statuses: the longest the agent stays silent about this machine while polling it fine (report by
    # exception sends every signal at least this often), so consumers learn the allowance from the data.
    heartbeat_ms: StrictInt | None = Field(default=None, ge=MIN_HEARTBEAT_MS, le=MAX_HEARTBEAT_MS)
    # An outbox loss (a machine status unreachable, not retained): ts is the first dropped sample's, until the last
    # one's, so consumers show [ts, first sample after until) as lost even where samples of it reached the store.
    until: StrictInt | None = Field(default=None, ge=MIN_TS_MS, le=MAX_TS_MS)

    @field_validator("detail")
    @classmethod
    def _printable_detail(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError(f"detail {_shorten(value)} holds control or other non-printable characters")
        return value

    @model_validator(mode="after")
    def _until_ends_a_loss(self) -> StatusMessage:
        if self.until is not None:
            if self.status is not LinkStatus.UNREACHABLE:
                raise ValueError(
                    f"until is only meaningful on status unreachable (an outbox loss), not on {self.status.value}"
                )
            if self.until < self.ts:
                raise ValueError(f"until {self.until} is before ts {self.ts}: a loss cannot end before it begins")
        return self

    def to_json(self) -> bytes:
        """Serialise compactly for the wire."""
        return self.model_dump_json(exclude_none=True).encode()


def printable(text: str, limit: int = MAX_DETAIL) -> str:
    """Return text fit for a status detail: each run of non-printable characters one space, at most limit long."""
    if text.isprintable() and len(text) <= limit:
        return text
    out: list[str] = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif not out or out[-1] != " ":
            out.append(" ")
    return "".join(out).strip()[:limit]


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
    if isinstance(data, dict) and (type(data.get("v")) is not int or data.get("v") != SCHEMA_VERSION):
        # An int 1 exactly: true and 1.0 compare equal to 1 but are not this version's marker.
        raise PayloadError("unknown-version", f"v={data.get('v')!r}, this collector speaks v{SCHEMA_VERSION}")
    return data


# ---- the fast pass: telemetry validated by hand ------------------------------------------------------------------
#
# Every message goes through here, so TelemetryBatch.model_validate (and Sample's per-signal validator, called back
# from pydantic-core once per sample) is too slow. The pass below checks the decoded JSON against the same rules and
# builds the models without validating them again. It is only ever a shortcut to acceptance: it returns None at the
# first thing it is not sure of (including what the models would accept after coercing it, e.g. "v": 1.0), and the
# caller then runs the models, which accept or say what is wrong exactly as before.

_SEQ_MAX = 2**63 - 1
_STATES = MachineState.__members__
_CANONICAL_KIND = CANONICAL_SIGNALS.get
_isfinite = math.isfinite
# Signal names seen valid: few distinct strings, checked by regex once each (bounded; a racy insert is harmless).
_VALID_SIGNALS: dict[str, bool] = {}
_MAX_VALID_SIGNALS = 10_000
_setattr = object.__setattr__
_new = object.__new__


def _construct_exact(cls: type[BaseModel], fields: dict[str, Any]) -> Any:
    """What model_construct(**fields) builds when fields holds every field of cls, without its per-field loop."""
    model = _new(cls)
    _setattr(model, "__dict__", fields)
    _setattr(model, "__pydantic_fields_set__", set(fields))
    _setattr(model, "__pydantic_extra__", None)
    _setattr(model, "__pydantic_private__", None)
    return model


def _model_state(model: BaseModel) -> tuple[Any, ...]:
    return (
        type(model),
        model.__dict__,
        model.__pydantic_fields_set__,
        model.__pydantic_extra__,
        model.__pydantic_private__,
    )


def _construct_is_exact() -> bool:
    """Whether _construct_exact builds what pydantic's own constructors do (checked once, for this pydantic)."""
    try:
        fields: dict[str, Any] = {"ts": MIN_TS_MS, "values": {"x": 1}}
        by_hand = _construct_exact(Sample, dict(fields))
        return (
            not Sample.__private_attributes__
            and not TelemetryBatch.__private_attributes__
            and not Sample.__pydantic_post_init__
            and not TelemetryBatch.__pydantic_post_init__
            and set(Sample.model_fields) == set(fields)
            and _model_state(by_hand) == _model_state(Sample.model_construct(**dict(fields)))
            and _model_state(by_hand) == _model_state(Sample.model_validate(dict(fields)))
        )
    except Exception:  # a pydantic that works otherwise inside: use its model_construct
        return False


if _construct_is_exact():

    def trusted_sample(ts: int, values: dict[str, SignalValue]) -> Sample:
        """A Sample of values the caller has checked as Sample validation would (nothing is checked here)."""
        model: Sample = _construct_exact(Sample, {"ts": ts, "values": values})
        return model

    def trusted_batch(agent: str, site: str, machine: str, seq: int, samples: list[Sample]) -> TelemetryBatch:
        """A TelemetryBatch the caller has checked as its validation would (nothing is checked here)."""
        fields = {"v": 1, "agent": agent, "site": site, "machine": machine, "seq": seq, "samples": samples}
        model: TelemetryBatch = _construct_exact(TelemetryBatch, fields)
        return model

else:  # pragma: no cover - another pydantic's internals

    def trusted_sample(ts: int, values: dict[str, SignalValue]) -> Sample:
        """A Sample of values the caller has checked as Sample validation would (nothing is checked here)."""
        return Sample.model_construct(ts=ts, values=values)

    def trusted_batch(agent: str, site: str, machine: str, seq: int, samples: list[Sample]) -> TelemetryBatch:
        """A TelemetryBatch the caller has checked as its validation would (nothing is checked here)."""
        return TelemetryBatch.model_construct(v=1, agent=agent, site=site, machine=machine, seq=seq, samples=samples)


def fast_header(data: Any) -> tuple[str, str, str, int, list[Any]] | None:
    """agent, site, machine, seq and samples of a dict that has exactly TelemetryBatch's keys, each plainly valid
    (samples: a list of 1..MAX_SAMPLES_PER_BATCH items, not checked further); None if anything is less plain."""
    if type(data) is not dict or len(data) != 6:
        return None
    v, agent, site, machine = data.get("v"), data.get("agent"), data.get("site"), data.get("machine")
    seq, samples = data.get("seq"), data.get("samples")
    if (
        type(v) is not int
        or v != SCHEMA_VERSION
        or type(agent) is not str
        or type(site) is not str
        or type(machine) is not str
        or type(seq) is not int
        or not 0 <= seq <= _SEQ_MAX
        or type(samples) is not list
        or not 1 <= len(samples) <= MAX_SAMPLES_PER_BATCH
        or not _ID_RE.match(agent)
        or not _ID_RE.match(site)
        or not _ID_RE.match(machine)
    ):
        return None
    return agent, site, machine, seq, samples


def _plain_signal(name: str, value: Any) -> bool:
    """Whether value passes Sample's field types (StrictBool | StrictInt | StrictFloat | StrictStr) and check_signal."""
    if type(name) is not str:
        return False
    if name not in _VALID_SIGNALS:
        if not _SIGNAL_RE.match(name):
            return False
        if len(_VALID_SIGNALS) < _MAX_VALID_SIGNALS:
            _VALID_SIGNALS[name] = True
    t = type(value)
    kind = _CANONICAL_KIND(name)
    if kind is None:
        if t is float:
            return _isfinite(value)
        if t is str:
            return len(value) <= MAX_STRING_VALUE and value.isprintable()
        return t is int or t is bool
    if kind is SignalKind.INT:
        return t is int and value >= 0
    if kind is SignalKind.FLOAT:
        return (t is int and value >= 0) or (t is float and _isfinite(value) and value >= 0)
    if kind is SignalKind.STATE:
        return t is str and value in _STATES
    return t is str and len(value) <= MAX_STRING_VALUE and value.isprintable()  # SignalKind.STR


def fast_telemetry(data: Any) -> TelemetryBatch | None:
    """The TelemetryBatch that TelemetryBatch.model_validate(data) returns, if data is plainly valid; else None.

    None does not say data is invalid, only that the models must decide. Does not modify data.
    """
    header = fast_header(data)
    if header is None:
        return None
    agent, site, machine, seq, raw_samples = header
    samples: list[Sample] = []
    append = samples.append
    for raw in raw_samples:
        if type(raw) is not dict or len(raw) != 2:
            return None
        ts, values = raw.get("ts"), raw.get("values")
        if type(ts) is not int or not MIN_TS_MS <= ts <= MAX_TS_MS:
            return None
        if type(values) is not dict or len(values) > MAX_SIGNALS_PER_SAMPLE:
            return None
        for name, value in values.items():
            if not _plain_signal(name, value):
                return None
        append(trusted_sample(ts, dict(values)))
    return trusted_batch(agent, site, machine, seq, samples)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "payload"
    return f"{loc}: {err['msg']} ({exc.error_count()} error(s))"


def validate_telemetry(topic: Topic, data: Any) -> TelemetryBatch:
    """Validate decoded telemetry (see decode_payload) from topic; raise PayloadError if it must not be written.

    Accepts and refuses exactly what validate_telemetry_model does (tests/unit/test_contracts_fast.py): a hand-written
    pass over the JSON accepts what plainly holds, anything else goes to the model, which says what is wrong.
    """
    batch = fast_telemetry(data)
    if batch is None or batch.site != topic.site or batch.machine != topic.machine:
        return validate_telemetry_model(topic, data)
    return batch


def validate_telemetry_model(topic: Topic, data: Any) -> TelemetryBatch:
    """validate_telemetry through the pydantic models only: the reference the fast pass is tested against."""
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
