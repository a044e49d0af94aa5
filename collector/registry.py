"""The site registry: what the collector accepts, checked against the site file before anything is written.

Built once from a SiteConfig: per machine, the agent that serves it and its profile's signals, each with the kind
and range its values must have. Applied to every message, so everything is precomputed into dicts and the checks
are plain comparisons. Pure: no I/O and no clock (callers pass the time).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, NoReturn

from collector.convert import batch_to_lines, field_start, stored_as_float, string_field, telemetry_prefix
from shopfloor.config import DataType, RegisterSpec, SiteConfig
from shopfloor.contracts import (
    CANONICAL_SIGNALS,
    MAX_SIGNALS_PER_SAMPLE,
    MAX_STRING_VALUE,
    MAX_TS_MS,
    MIN_TS_MS,
    MachineState,
    PayloadError,
    Sample,
    SignalKind,
    StatusMessage,
    TelemetryBatch,
    Topic,
    TopicKind,
    decode_payload,
    fast_header,
    is_reserved_signal,
    is_valid_id,
    is_valid_signal,
    trusted_batch,
    trusted_sample,
    validate_status,
    validate_telemetry_model,
)

DEFAULT_MAX_AHEAD_MS = 300_000  # 5 min
DEFAULT_MAX_BEHIND_MS = 7 * 86_400_000  # 7 days
# Beyond 2**53 a float no longer holds every integer: a reading there could not be exact downstream (JSON
# consumers, the analytics' float arithmetic), and no machine counts that far.
MAX_EXACT = float(2**53)
# The agent rounds scaled values to 6 decimals, which may put the top of a register's range a hair further out.
_ROUNDING = 1e-6
DEFAULT_SEQ_MEMORY = 100_000


class ValueKind(StrEnum):
    """The JSON type a signal's values must have (an int is also a valid float; a bool is never an int)."""

    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STR = "str"


_ARTICLE = {ValueKind.BOOL: "a bool", ValueKind.INT: "an int", ValueKind.FLOAT: "a float", ValueKind.STR: "a str"}
_TYPE_NAME = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True, slots=True)
class SignalRule:
    """What one signal's values must be: a kind, and a range (numbers) or labels and a length (strings)."""

    kind: ValueKind
    low: float = -MAX_EXACT
    high: float = MAX_EXACT
    labels: frozenset[str] | None = None
    max_length: int = MAX_STRING_VALUE
    ascii: bool = False  # strings from string registers: the codec decodes printable ASCII only

    @classmethod
    def of(cls, spec: RegisterSpec) -> SignalRule:
        """The rule for values of a register as the agent decodes them (see shopfloor.codec)."""
        if spec.states is not None:
            return cls(ValueKind.STR, labels=frozenset(state.value for state in spec.states.values()))
        if spec.enum is not None:
            return cls(ValueKind.STR, labels=frozenset(spec.enum.values()))
        t = spec.type
        if t is DataType.STRING:
            return cls(ValueKind.STR, max_length=min(2 * spec.count, MAX_STRING_VALUE), ascii=True)
        if t in (DataType.BIT, DataType.BOOL):
            return cls(ValueKind.BOOL)
        canonical = CANONICAL_SIGNALS.get(spec.signal)
        # The store writes canonical float signals as floats whatever the register: the wire may carry either.
        kind = ValueKind.FLOAT if spec.is_float or canonical is SignalKind.FLOAT else ValueKind.INT
        if spec.counter and spec.counter_width is not None:
            # The agent unwraps wraps, so a counter outgrows its register; whether a jump is plausible is the
            # analytics' question (counter anomalies), not a reason to lose the reading.
            low, high = min(0.0, spec.offset), MAX_EXACT
        elif t.is_float:
            low, high = -MAX_EXACT, MAX_EXACT
        else:
            if t.is_signed:
                raw_low, raw_high = -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
            else:  # unsigned and bits16
                raw_low, raw_high = 0, (1 << t.bits) - 1
            a, b = raw_low * spec.scale + spec.offset, raw_high * spec.scale + spec.offset
            low, high = min(a, b), max(a, b)
            if kind is ValueKind.FLOAT:
                low, high = low - _slack(low), high + _slack(high)
        if canonical in (SignalKind.INT, SignalKind.FLOAT):
            low = max(low, 0.0)  # canonical counts, codes and meters are never negative
        return cls(kind, max(low, -MAX_EXACT), min(high, MAX_EXACT))

    def describe(self) -> str:
        """Say what this rule allows, for error messages."""
        if self.labels is not None:
            return f"one of {', '.join(sorted(self.labels))}"
        if self.kind is ValueKind.STR:
            return f"a {'printable ASCII' if self.ascii else 'printable'} str of at most {self.max_length} characters"
        if self.kind is ValueKind.BOOL:
            return "a bool"
        return f"{_ARTICLE[self.kind]} in {_number(self.low)}..{_number(self.high)}"


@dataclass(frozen=True, slots=True)
class MachineRules:
    """Everything the registry checks about one machine's messages."""

    machine: str
    profile: str
    agent: str | None  # the agent that serves it; None: none declared
    signals: Mapping[str, SignalRule]


def payload_digest(payload: bytes) -> bytes:
    """A short, collision-resistant digest of a payload, for remembering what was seen."""
    return hashlib.blake2b(payload, digest_size=16).digest()


class Recent:
    """A bounded map that forgets the least recently used key first. Not thread-safe: one thread owns it."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Hashable] = OrderedDict()

    def put(self, key: Hashable, value: Hashable = True) -> Hashable | None:
        """Remember value for key; return the value remembered before, if any."""
        previous = self._items.pop(key, None)
        self._items[key] = value
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return previous

    def __contains__(self, key: Hashable) -> bool:
        if key not in self._items:
            return False
        self._items.move_to_end(key)
        return True

    def __len__(self) -> int:
        return len(self._items)


class CheckedLines(NamedTuple):
    """A telemetry batch that passed every check, as line protocol: its header and one line per sample with values.

    A named tuple: one is made per message.
    """

    agent: str
    site: str
    machine: str
    seq: int
    lines: list[str]
    first_ts: int | None  # the earliest ts of the samples that gave a line; None: no lines
    last_ts: int | None  # the latest

    @classmethod
    def of(cls, batch: TelemetryBatch) -> CheckedLines:
        """Render a checked batch (batch_to_lines; raises ValueError for a value line protocol cannot hold)."""
        lines = batch_to_lines(batch)
        stamps = [sample.ts for sample in batch.samples if sample.values]
        first, last = (min(stamps), max(stamps)) if stamps else (None, None)
        return cls(batch.agent, batch.site, batch.machine, batch.seq, lines, first, last)


class SeqMemory:
    """Flag a telemetry seq that arrives again with different content (a resent batch with the same bytes is normal).

    Bounded: remembers the last `capacity` (site, agent, machine, seq) keys. Collectors on a shared subscription
    each see only their share of the messages, so each one flags only the conflicts within its share; and a
    restart forgets. It is a tripwire for a broken or forged agent, not a guarantee.
    """

    def __init__(self, capacity: int = DEFAULT_SEQ_MEMORY) -> None:
        self._seen = Recent(capacity)

    def conflicts(self, batch: TelemetryBatch | CheckedLines, payload: bytes) -> bool:
        """Remember the batch's content; return whether its seq was seen before with other content."""
        digest = payload_digest(payload)
        previous = self._seen.put((batch.site, batch.agent, batch.machine, batch.seq), digest)
        return previous is not None and previous != digest


class Registry:
    """Check every message against the site: machines, which agent serves them, signals, types, ranges and time.

    With no agents declared in the site file the registry is open: any valid agent id may report any machine of
    the site (development setups); every other check still applies.
    """

    def __init__(
        self,
        site_id: str,
        machines: Mapping[str, MachineRules],
        agents: frozenset[str] | None,
        *,
        max_ahead_ms: int = DEFAULT_MAX_AHEAD_MS,
        max_behind_ms: int = DEFAULT_MAX_BEHIND_MS,
        backfill: bool = False,
    ) -> None:
        if max_ahead_ms < 0 or max_behind_ms < 0:
            raise ValueError(f"skew limits must not be negative, got ahead {max_ahead_ms}, behind {max_behind_ms} ms")
        self.site_id = site_id
        self.machines: Mapping[str, MachineRules] = dict(machines)
        self.agents = agents
        self.max_ahead_ms = max_ahead_ms
        self.max_behind_ms = max_behind_ms
        self.backfill = backfill
        # Per machine: per signal the fast pass's rule (signals the fast pass leaves to the model are absent).
        self._fast_rules: dict[str, dict[str, _FastRule]] = {
            machine: {name: fast for name, rule in r.signals.items() if (fast := _fast_rule(name, rule)) is not None}
            for machine, r in self.machines.items()
        }
        # Per machine: what the fused pass (check_telemetry_lines) checks and writes.
        self._line_plans = {
            machine: _LinePlan(
                telemetry_prefix(site_id, machine), {name: _line_rule(name, fast) for name, fast in rules.items()}
            )
            for machine, rules in self._fast_rules.items()
        }

    @classmethod
    def from_site(
        cls,
        site: SiteConfig,
        *,
        max_ahead_ms: int = DEFAULT_MAX_AHEAD_MS,
        max_behind_ms: int = DEFAULT_MAX_BEHIND_MS,
        backfill: bool = False,
    ) -> Registry:
        """Build the registry of a site; raise ValueError if two profiles give one signal two store types."""
        rules_of = {p.model: {r.signal: SignalRule.of(r) for r in p.registers} for p in site.profiles}
        _check_store_types(site, rules_of)
        served = {machine: a.id for a in site.agents for machine in a.machines}
        machines = {m.id: MachineRules(m.id, m.profile, served.get(m.id), rules_of[m.profile]) for m in site.machines}
        agents = frozenset(a.id for a in site.agents) if site.agents else None
        return cls(
            site.site.id,
            machines,
            agents,
            max_ahead_ms=max_ahead_ms,
            max_behind_ms=max_behind_ms,
            backfill=backfill,
        )

    @property
    def open(self) -> bool:
        """Whether any agent may report any machine (the site file declares no agents)."""
        return self.agents is None

    def describe(self) -> str:
        """One line for the log: site, machines, agents, skew window."""
        agents = "open: no agents declared" if self.agents is None else f"{len(self.agents)} agents"
        behind = "any age (backfill)" if self.backfill else f"{self.max_behind_ms / 1000:g} s back"
        return (
            f"site {self.site_id!r}: {len(self.machines)} machines, {agents}; timestamps up to "
            f"{self.max_ahead_ms / 1000:g} s ahead and {behind}"
        )

    # ---- checks ----------------------------------------------------------------------------------------------

    def check_telemetry(self, topic: Topic, payload: bytes, now_ms: int) -> TelemetryBatch:
        """Return the batch if every check passes (an int where a float is declared comes back a float).

        Raise PayloadError otherwise. The registry's own kinds are checked on the decoded JSON before the
        payload model, so a value the profile types differently says wrong-type rather than invalid-payload.

        Accepts and refuses exactly what check_telemetry_model does (tests/unit/test_contracts_fast.py): one pass
        over the samples accepts what plainly holds; anything else is decoded again and goes through the model.
        """
        if topic.kind is not TopicKind.TELEMETRY:
            raise ValueError(f"{topic} is not a telemetry topic")
        rules = self._machine(topic)
        batch = self._fast_telemetry(topic, decode_payload(payload), rules, now_ms)
        if batch is not None:
            return batch
        # The fast pass may have turned ints into floats before it stopped: the model gets the payload as sent.
        return self._check_telemetry_data(topic, decode_payload(payload), rules, now_ms)

    def check_telemetry_model(self, topic: Topic, payload: bytes, now_ms: int) -> TelemetryBatch:
        """check_telemetry through the registry's checks and the pydantic models only: the reference."""
        if topic.kind is not TopicKind.TELEMETRY:
            raise ValueError(f"{topic} is not a telemetry topic")
        rules = self._machine(topic)
        return self._check_telemetry_data(topic, decode_payload(payload), rules, now_ms)

    def check_telemetry_lines(self, topic: Topic, payload: bytes, now_ms: int) -> CheckedLines:
        """Check telemetry as check_telemetry does and render its lines in the same pass; raise PayloadError.

        Returns exactly CheckedLines.of(check_telemetry_model(...)), or raises what it raises (same kind and detail;
        tests/unit/test_contracts_fast.py): one pass over the samples checks and renders what plainly holds;
        anything else goes through the model and batch_to_lines.
        """
        if topic.kind is not TopicKind.TELEMETRY:
            raise ValueError(f"{topic} is not a telemetry topic")
        rules = self._machine(topic)
        data = decode_payload(payload)
        checked = self._fast_lines(topic, data, rules, now_ms)
        if checked is not None:
            return checked
        # The fused pass leaves data as decoded: the model gets the payload as sent.
        return CheckedLines.of(self._check_telemetry_data(topic, data, rules, now_ms))

    def _fast_envelope(
        self, topic: Topic, data: Any, rules: MachineRules
    ) -> tuple[str, str, str, int, list[Any]] | None:
        """The header of data if it plainly matches the topic and the serving agent; None: let the model decide."""
        header = fast_header(data)
        if header is None:
            return None
        agent, site, machine, _seq, _samples = header
        if site != topic.site or machine != topic.machine:
            return None
        if self.agents is not None and (agent != rules.agent or agent not in self.agents):
            return None
        return header

    def _fast_lines(self, topic: Topic, data: Any, rules: MachineRules, now_ms: int) -> CheckedLines | None:
        """check_telemetry_lines' result if data plainly passes every check; None: let the model decide.

        The checks of _fast_telemetry; each value is written as batch_to_lines writes it once checked (an int where
        a float is declared as that float). Every sample's checked values go into one list, and one % of the
        samples' templates (see _LinePlan.layout) renders them all. Does not modify data.
        """
        header = self._fast_envelope(topic, data, rules)
        if header is None:
            return None
        agent, site, machine, seq, raw_samples = header
        plan = self._line_plans.get(machine)
        if plan is None:
            return None
        layouts = plan.layouts
        low_ts = MIN_TS_MS if self.backfill else max(MIN_TS_MS, now_ms - self.max_behind_ms)
        high_ts = min(MAX_TS_MS, now_ms + self.max_ahead_ms)
        first, last = MAX_TS_MS + 1, MIN_TS_MS - 1
        templates: list[str] = []
        use = templates.append
        checked: list[Any] = []  # what the templates take, in order: per sample its values, then its ts
        add = checked.append
        for raw in raw_samples:
            if type(raw) is not dict or len(raw) != 2:
                return None
            ts, values = raw.get("ts"), raw.get("values")
            if type(ts) is not int or not low_ts <= ts <= high_ts or type(values) is not dict:
                return None
            if not values:
                continue  # valid, and nothing to write
            layout = layouts.get(tuple(values))
            if layout is None:
                layout = plan.layout(values)
                if layout is None:
                    return None
            template, fields = layout
            for name, code, low, high, texts, max_length, ascii_only in fields:
                value = values[name]
                t = type(value)
                if code is _LINE_FLOAT:
                    if t is not float:
                        if t is not int:
                            return None
                        try:
                            value = float(value)
                        except OverflowError:
                            return None
                    if not low <= value <= high:
                        return None
                    add(value)
                elif code is _LINE_INT:
                    if t is not int or not low <= value <= high:
                        return None
                    add(value)
                elif code is _LINE_LABEL:
                    text = texts.get(value) if t is str else None
                    if text is None:
                        return None
                    add(text)
                elif code is _LINE_BOOL:
                    if t is not bool:
                        return None
                    add("true" if value else "false")
                elif code is _LINE_STR:
                    if (
                        t is not str
                        or len(value) > max_length
                        or not value.isprintable()
                        or (ascii_only and not value.isascii())
                    ):
                        return None
                    add(string_field(name, value))
                else:  # _LINE_INT_AS_FLOAT: an int rule on a signal the store keeps as a float
                    if t is not int or not low <= value <= high:
                        return None
                    add(float(value))
            add(ts)
            use(template)
            if ts < first:
                first = ts
            if ts > last:
                last = ts
        if not templates:
            return CheckedLines(agent, site, machine, seq, [], None, None)
        # No line holds a newline (names and ids are plain, strings printable): the text splits into its lines.
        lines = ("\n".join(templates) % tuple(checked)).split("\n")
        if len(lines) != len(templates):  # pragma: no cover - cannot happen (see above); the model decides
            return None
        return CheckedLines(agent, site, machine, seq, lines, first, last)

    def _fast_telemetry(self, topic: Topic, data: Any, rules: MachineRules, now_ms: int) -> TelemetryBatch | None:
        """The batch check_telemetry_model returns, if data plainly passes every check; None: let the model decide.

        One pass: per sample its ts (contract bounds and skew window), per value the profile's rule folded with
        the contract's (see _fast_rule). Turns ints where a float is declared into floats in data, as the model
        path does, and keeps data's values dicts in the batch (data is this message's own).
        """
        header = self._fast_envelope(topic, data, rules)
        if header is None:
            return None
        agent, site, machine, seq, raw_samples = header
        fast = self._fast_rules.get(topic.machine)
        if fast is None:
            return None
        low_ts = MIN_TS_MS if self.backfill else max(MIN_TS_MS, now_ms - self.max_behind_ms)
        high_ts = min(MAX_TS_MS, now_ms + self.max_ahead_ms)
        samples: list[Sample] = []
        append = samples.append
        for raw in raw_samples:
            if type(raw) is not dict or len(raw) != 2:
                return None
            ts, values = raw.get("ts"), raw.get("values")
            if type(ts) is not int or not low_ts <= ts <= high_ts:
                return None
            if type(values) is not dict or len(values) > MAX_SIGNALS_PER_SAMPLE:
                return None
            for name, value in values.items():
                rule = fast.get(name)
                if rule is None:
                    return None
                code, low, high, labels, max_length, ascii_only = rule
                t = type(value)
                if code is _FAST_FLOAT:
                    if t is int:
                        try:
                            values[name] = value = float(value)
                        except OverflowError:
                            return None
                    elif t is not float:
                        return None
                    if not low <= value <= high:
                        return None
                elif code is _FAST_INT:
                    if t is not int or not low <= value <= high:
                        return None
                elif code is _FAST_STR:
                    if (
                        t is not str
                        or len(value) > max_length
                        or (labels is not None and value not in labels)
                        or not value.isprintable()
                        or (ascii_only and not value.isascii())
                    ):
                        return None
                elif t is not bool:
                    return None
            append(trusted_sample(ts, values))
        return trusted_batch(agent, site, machine, seq, samples)

    def _check_telemetry_data(self, topic: Topic, data: Any, rules: MachineRules, now_ms: int) -> TelemetryBatch:
        if isinstance(data, dict):
            agent = data.get("agent")
            if isinstance(agent, str) and is_valid_id(agent):
                self._check_agent(agent, rules)
            samples = data.get("samples")
            if isinstance(samples, list):
                self._check_samples(samples, rules)
        batch = validate_telemetry_model(topic, data)
        for index, sample in enumerate(batch.samples):
            self._check_ts(sample.ts, now_ms, f"sample {index}")
        return batch

    def check_machine_status(self, topic: Topic, payload: bytes, now_ms: int) -> StatusMessage:
        """Return the status of a machine if its agent serves the machine and its ts is in the window."""
        if topic.kind is not TopicKind.MACHINE_STATUS:
            raise ValueError(f"{topic} is not a machine status topic")
        rules = self._machine(topic)
        status = validate_status(decode_payload(payload))
        self._check_agent(status.agent, rules)
        self._check_ts(status.ts, now_ms, "status")
        if status.until is not None:
            # A loss cannot end in the future: else it would blank out data not yet received.
            self._check_ts(status.until, now_ms, "status until")
        return status

    def check_agent_status(self, topic: Topic, payload: bytes, received_ms: int) -> StatusMessage:
        """Return an agent's status stamped with received_ms, when the collector got it.

        A last will carries the agent's connect time, so its own ts says nothing about when the agent was lost.
        """
        if topic.kind is not TopicKind.AGENT_STATUS:
            raise ValueError(f"{topic} is not an agent status topic")
        self._check_site(topic)
        if self.agents is not None and topic.agent not in self.agents:
            raise PayloadError("unknown-agent", f"agent {topic.agent!r} is not declared under agents: in the site file")
        status = validate_status(decode_payload(payload))
        if status.agent != topic.agent:
            raise PayloadError("topic-mismatch", f"status is of agent {status.agent!r} but arrived on {topic}")
        if status.until is not None:
            raise PayloadError(
                "invalid-payload", f"until: only a machine's status reports an outbox loss, not agent {topic.agent!r}'s"
            )
        return status.model_copy(update={"ts": received_ms})

    # ---- parts -----------------------------------------------------------------------------------------------

    def _check_site(self, topic: Topic) -> None:
        if topic.site != self.site_id:
            raise PayloadError("unknown-site", f"site {topic.site!r} in {topic} is not this site ({self.site_id!r})")

    def _machine(self, topic: Topic) -> MachineRules:
        self._check_site(topic)
        rules = self.machines.get(topic.machine)
        if rules is None:
            raise PayloadError(
                "unknown-machine", f"machine {topic.machine!r} in {topic} is not in site {self.site_id!r}"
            )
        return rules

    def _check_agent(self, agent: str, rules: MachineRules) -> None:
        if self.agents is None:
            return
        if agent not in self.agents:
            raise PayloadError("unknown-agent", f"agent {agent!r} is not declared under agents: in the site file")
        if rules.agent != agent:
            by = f"served by {rules.agent!r}" if rules.agent else "no agent serves it"
            raise PayloadError("agent-not-serving", f"agent {agent!r} does not serve machine {rules.machine!r} ({by})")

    def _check_ts(self, ts: int, now_ms: int, where: str) -> None:
        if ts > now_ms + self.max_ahead_ms:
            raise PayloadError(
                "too-new",
                f"{where}: ts {ts} is {(ts - now_ms) / 1000:.0f} s ahead of the collector's clock (at most "
                f"{self.max_ahead_ms / 1000:g} s allowed); check the agent's clock",
            )
        if not self.backfill and ts < now_ms - self.max_behind_ms:
            raise PayloadError(
                "too-old",
                f"{where}: ts {ts} is {(now_ms - ts) / 1000:.0f} s behind the collector's clock (at most "
                f"{self.max_behind_ms / 1000:g} s allowed); older data is accepted only by a backfill "
                "(shopfloor collect --backfill)",
            )

    def _check_samples(self, samples: list[Any], rules: MachineRules) -> None:
        signals = rules.signals
        for index, sample in enumerate(samples):
            values = sample.get("values") if isinstance(sample, dict) else None
            if not isinstance(values, dict):
                continue  # the payload model says what is wrong
            for name, value in values.items():
                rule = signals.get(name)
                if rule is None:
                    self._unknown_signal(index, name, rules)
                t = type(value)
                if t not in _TYPE_NAME:
                    continue  # not a signal value at all (object, array, null): the payload model refuses it
                kind = rule.kind
                if kind is ValueKind.FLOAT:
                    if t is int:
                        try:
                            values[name] = value = float(value)  # the store keeps one type per field: float
                        except OverflowError:  # beyond any float (1e308): out of every range
                            self._out_of_range(index, name, value, rule, rules)
                    elif t is not float:
                        self._wrong_type(index, name, value, rule, rules)
                    if not rule.low <= value <= rule.high:
                        self._out_of_range(index, name, value, rule, rules)
                elif kind is ValueKind.INT:
                    if t is not int:
                        self._wrong_type(index, name, value, rule, rules)
                    if not rule.low <= value <= rule.high:
                        self._out_of_range(index, name, value, rule, rules)
                elif kind is ValueKind.STR:
                    if t is not str:
                        self._wrong_type(index, name, value, rule, rules)
                    if (
                        (rule.labels is not None and value not in rule.labels)
                        or len(value) > rule.max_length
                        or not value.isprintable()
                        or (rule.ascii and not value.isascii())
                    ):
                        self._out_of_range(index, name, value, rule, rules)
                elif t is not bool:
                    self._wrong_type(index, name, value, rule, rules)

    @staticmethod
    def _unknown_signal(index: int, name: str, rules: MachineRules) -> NoReturn:
        if is_reserved_signal(name):
            raise PayloadError(
                "reserved-name", f"sample {index}: signal name {name!r} is reserved (the store's own columns and tags)"
            )
        raise PayloadError(
            "undeclared-signal",
            f"sample {index}: signal {name[:70]!r} is not declared by profile {rules.profile} of machine "
            f"{rules.machine!r}",
        )

    @staticmethod
    def _wrong_type(index: int, name: str, value: Any, rule: SignalRule, rules: MachineRules) -> NoReturn:
        raise PayloadError(
            "wrong-type",
            f"sample {index}: signal {name!r}: {_show(value)} is {_ARTICLE[ValueKind(_TYPE_NAME[type(value)])]}, "
            f"profile {rules.profile} declares {_ARTICLE[rule.kind]}",
        )

    @staticmethod
    def _out_of_range(index: int, name: str, value: Any, rule: SignalRule, rules: MachineRules) -> NoReturn:
        if isinstance(value, float) and not math.isfinite(value):
            what = "is not a finite number"
        elif isinstance(value, str) and not value.isprintable():
            what = "holds control or other non-printable characters"
        elif isinstance(value, str) and rule.ascii and not value.isascii():
            what = "holds non-ASCII characters"
        else:
            what = "is out of range"
        raise PayloadError(
            "out-of-range",
            f"sample {index}: signal {name!r}: {_show(value)} {what}; profile {rules.profile} allows {rule.describe()}",
        )


# The fast pass's rule of one signal: (code, low, high, labels, max_length), the profile's rule with the contract's
# check_signal folded in, so that a value passing it passes both (see Registry._fast_telemetry).
_FastRule = tuple[object, float, float, frozenset[str] | None, int, bool]
_FAST_BOOL, _FAST_INT, _FAST_FLOAT, _FAST_STR = object(), object(), object(), object()
# Profile kind and canonical kind whose values the contract takes if they are not negative (the registry turns an
# int where a float is declared into a float, which a canonical int refuses: not here).
_NON_NEGATIVE = {
    (ValueKind.INT, SignalKind.INT),
    (ValueKind.INT, SignalKind.FLOAT),
    (ValueKind.FLOAT, SignalKind.FLOAT),
}
_FAST_CODE = {
    ValueKind.BOOL: _FAST_BOOL,
    ValueKind.INT: _FAST_INT,
    ValueKind.FLOAT: _FAST_FLOAT,
    ValueKind.STR: _FAST_STR,
}


def _fast_rule(name: str, rule: SignalRule) -> _FastRule | None:
    """The rule values of signal name must pass both the profile (rule) and the contract (check_signal) by.

    The registry's checks run first, on the JSON; then the models, on what they left (ints where a float is
    declared are floats by then). None when the combination is not a plain check (the model path decides).
    """
    if not is_valid_signal(name):
        return None
    kind, low, high, labels, max_length = rule.kind, rule.low, rule.high, rule.labels, rule.max_length
    if not (-MAX_EXACT <= low <= high <= MAX_EXACT):  # finite, not NaN
        return None
    canonical = CANONICAL_SIGNALS.get(name)
    if kind is ValueKind.STR:
        if canonical is SignalKind.STATE:
            labels = (
                frozenset(MachineState.__members__) if labels is None else labels & frozenset(MachineState.__members__)
            )
        elif canonical is not None and canonical is not SignalKind.STR:
            return None
        max_length = min(max_length, MAX_STRING_VALUE)
    elif canonical is None:
        pass  # bools, ints and (finite: the range is) floats pass check_signal
    elif (kind, canonical) in _NON_NEGATIVE:
        low = max(low, 0.0)
    else:
        return None  # e.g. a canonical int declared as a float: the contract refuses every value it leaves
    if low > high:
        return None
    return (_FAST_CODE[kind], low, high, labels, max_length, rule.ascii)


# The fused pass's rule of one signal: (code, low, high, texts, max_length, ascii, field), its fast rule with how its
# values are written: field is its part of a line's template, texts the written form of each label a value may be.
_LineRule = tuple[object, float, float, dict[str, str], int, bool, str]
# A sample layout: the template of its line and, in the order the template takes them, its signals' checks.
_Layout = tuple[str, tuple[tuple[str, object, float, float, dict[str, str], int, bool], ...]]
_LINE_BOOL, _LINE_INT, _LINE_INT_AS_FLOAT, _LINE_FLOAT = object(), object(), object(), object()
_LINE_LABEL, _LINE_STR = object(), object()
# The % conversion each code's checked value takes: str() of ints and floats is what batch_to_lines writes (f"{n}i",
# repr(x)); bools, labels and strings are added as their written text.
_CONVERSION = {_LINE_FLOAT: "%r", _LINE_INT_AS_FLOAT: "%r", _LINE_INT: "%di"}
# Distinct sample layouts (signal names in JSON order) remembered per machine: an agent reporting by exception
# sends a few; more (a hostile agent) start the memory over rather than grow it.
_MAX_LAYOUTS = 1024


def _literal(text: str) -> str:
    """text as a literal part of a % template."""
    return text.replace("%", "%%")


def _line_rule(name: str, fast: _FastRule) -> _LineRule:
    """The fused pass's rule of signal name: its fast rule, and how batch_to_lines writes the values it passes."""
    code, low, high, labels, max_length, ascii_only = fast
    if code is _FAST_STR:
        if labels is None:
            line_code, texts = _LINE_STR, {}
        else:
            line_code = _LINE_LABEL
            texts = {
                label: string_field(name, label)
                for label in labels
                if len(label) <= max_length and label.isprintable() and (label.isascii() or not ascii_only)
            }
    elif code is _FAST_FLOAT:
        line_code, texts = _LINE_FLOAT, {}  # checked as floats: written as floats
    elif code is _FAST_INT:
        line_code, texts = (_LINE_INT_AS_FLOAT if stored_as_float(name) else _LINE_INT), {}
    else:
        line_code, texts = _LINE_BOOL, {}
    field = _literal(field_start(name)) + _CONVERSION.get(line_code, "%s")
    return (line_code, low, high, texts, max_length, ascii_only, field)


class _LinePlan:
    """One machine's part of the fused pass: its signals' rules and the sample layouts seen, with their templates."""

    __slots__ = ("layouts", "prefix", "rules")

    def __init__(self, prefix: str, rules: dict[str, _LineRule]) -> None:
        self.prefix = _literal(prefix)
        self.rules = rules
        self.layouts: dict[tuple[str, ...], _Layout] = {}  # names in JSON order -> layout

    def layout(self, values: dict[str, Any]) -> _Layout | None:
        """The layout of a sample's values, remembered; None if it is too long or names a signal without a rule.

        Its template is render_line's: the prefix, the fields sorted by name, the ts.
        """
        if len(values) > MAX_SIGNALS_PER_SAMPLE:
            return None
        rules = self.rules
        fields = []
        parts = []
        for name in sorted(values):
            rule = rules.get(name)
            if rule is None:
                return None
            code, low, high, texts, max_length, ascii_only, field = rule
            fields.append((name, code, low, high, texts, max_length, ascii_only))
            parts.append(field)
        layout = (f"{self.prefix} {','.join(parts)} %d", tuple(fields))
        layouts = self.layouts
        if len(layouts) >= _MAX_LAYOUTS:
            layouts.clear()
        layouts[tuple(values)] = layout
        return layout


def _number(x: float) -> str:
    return str(int(x)) if x.is_integer() else f"{x:.15g}"


def _slack(bound: float) -> float:
    return _ROUNDING + abs(bound) * 1e-12


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_store_types(site: SiteConfig, rules_of: Mapping[str, Mapping[str, SignalRule]]) -> None:
    """Refuse a site where two machines' profiles give one signal two types: the store would refuse one of them."""
    seen: dict[str, tuple[ValueKind, str]] = {}
    for model in sorted({m.profile for m in site.machines}):
        for name, rule in rules_of[model].items():
            kind = ValueKind.FLOAT if CANONICAL_SIGNALS.get(name) is SignalKind.FLOAT else rule.kind
            first = seen.setdefault(name, (kind, model))
            if first[0] is not kind:
                raise ValueError(
                    f"signal {name!r} is {_ARTICLE[first[0]]} in profile {first[1]} but {_ARTICLE[kind]} in profile "
                    f"{model}: the store keeps one type per field, so one machine's data would be refused; rename "
                    "the signal in one of the profiles"
                )
