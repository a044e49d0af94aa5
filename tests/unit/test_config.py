"""Site config loading: the shipped example, and errors that name file, line and key."""

from __future__ import annotations

import re
import textwrap
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.core.pieces import MIN_CONTEXT_MS
from shopfloor.calendar import ALWAYS, Calendar, Downtime, ShiftPattern
from shopfloor.config import (
    MAX_MICROSTOP_S,
    ByteOrder,
    DataType,
    LossCategory,
    RegisterSpec,
    Role,
    SiteConfig,
    WordOrder,
    default_site_path,
    load_plant,
    load_profile,
    load_site,
)
from shopfloor.contracts import MachineState
from shopfloor.yamlfile import ConfigError

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
site:
  id: bdg
  timezone: Asia/Jakarta
profiles:
  - model: mini
    registers:
      - {signal: state, address: 0, type: uint16, states: {0: OFF, 1: IDLE, 3: RUNNING}}
      - {signal: good_count, address: 1, type: uint32}
machines:
  - {id: m-1, profile: mini, port: 15020}
tenants:
  - {id: acme, badges: [1001]}
"""


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_example_site_loads() -> None:
    site = load_site(default_site_path())
    assert site.site.id == "bdg"
    assert len(site.machines) >= 4
    assert len({m.profile for m in site.machines}) >= 2
    assert site.badge_owner()[1001] == "acme"


def test_examples_symlink_points_at_packaged_copy() -> None:
    assert (REPO / "examples" / "site.yaml").resolve() == default_site_path().resolve()


def test_yaml_off_is_a_state_not_false(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, MINIMAL))
    state = site.profiles[0].register("state")
    assert state is not None and state.states is not None
    assert state.states[0] == "OFF"


def test_profile_files_resolve_relative_to_site_file(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    write(tmp_path, "model: filed\nregisters:\n  - {signal: power_kw, address: 5, type: float32, word_order: little}\n",
          "p/filed.yaml")
    text = MINIMAL.replace("profiles:\n", "profiles:\n  - p/filed.yaml\n")
    site = load_site(write(tmp_path, text))
    reg = site.profile("filed").register("power_kw")
    assert reg is not None and reg.type is DataType.FLOAT32 and reg.word_order is WordOrder.LITTLE


def test_agents_and_collectors_load_the_plant_without_tenants_or_key_hashes(tmp_path: Path) -> None:
    # Business entries, even broken ones, are the business DB's: the plant loader never reads them.
    text = MINIMAL.replace("badges: [1001]", "badges: [0]") + "api_keys: [{name: x, sha256: nothex, role: god}]\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="badges"):
        load_site(path)
    plant = load_plant(path)
    assert (plant.tenants, plant.api_keys) == ([], [])
    assert [m.id for m in plant.machines] == [m.id for m in load_site(write(tmp_path, MINIMAL)).machines]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port: 15020", "port: 70000", r"site\.yaml:10: machines\[0\]\.port: .*less than or equal to 65535"),
        ("id: bdg", "id: BDG", r"site\.yaml:2: site\.id: 'BDG' is not a valid id"),
        ("Asia/Jakarta", "Mars/Olympus", r"site\.yaml:3: site\.timezone: .*not an IANA time zone"),
        ("profile: mini", "profile: maxi", r"profile 'maxi' is not defined"),
        ("badges: [1001]", "badges: [0]", r"tenants\[0\]\.badges\[0\]: .*greater than or equal to 1"),
        ("type: uint32}", "type: float32}", r"registers\[1\]: .*integer signal"),
        ("type: uint32}", "type: string}", r"registers\[1\]: .*needs 'length'"),
        ("address: 1,", "address: 0,", r"holding register 0 is used by both 'state' and 'good_count'"),
        ("address: 1,", "address: 65535,", r"runs past register 65535"),
        ("{id: m-1, profile: mini, port: 15020}", "{id: m-1, profile: mini, port: 15020, colour: red}",
         r"machines\[0\]\.colour: Extra inputs are not permitted"),
        ("{id: acme, badges: [1001]}", "{id: acme, badges: [1001]}\n  - {id: acme2, badges: [1001]}",
         r"badge 1001 belongs to both 'acme' and 'acme2'"),
        ("  - {id: m-1, profile: mini, port: 15020}",
         "  - {id: m-1, profile: mini, port: 15020}\n  - {id: m-1, profile: mini, port: 15021}",
         r"duplicate machine id 'm-1'"),
        ("  - {id: m-1, profile: mini, port: 15020}",
         "  - {id: m-1, profile: mini, port: 15020}\n  - {id: m-2, profile: mini, port: 15020}",
         r"share 127\.0\.0\.1:15020 unit 1"),
        ("tenants:", "api_keys:\n  - {name: k, sha256: abc, role: admin}\ntenants:", r"api_keys\[0\]\.sha256"),
        ("tenants:", "api_keys:\n  - {name: k, sha256: " + "a" * 64 + ", role: tenant}\ntenants:",
         r"a tenant key needs 'tenant'"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(expected, message), message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "file is empty"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("site: [unclosed\n", r"site\.yaml:\d+: invalid YAML"),
        ("site: !!python/object/apply:os.system ['echo hi']\n", "invalid YAML"),
        ("site: &a [*a]\n", r"site\.yaml:1: site: "),
        ("a: &a [x, x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\nd: [*c, *c, *c]\n", "Extra inputs"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert re.search(expected, str(info.value))


def test_binary_and_missing_and_oversized_files(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_site(binary)
    with pytest.raises(ConfigError, match="cannot read file"):
        load_site(tmp_path / "missing.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (5 * 1024 * 1024))
    with pytest.raises(ConfigError, match="larger than"):
        load_site(big)


def test_profile_file_errors_name_the_profile_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("model: bad\nregisters:\n  - {signal: state, address: 0, type: uint16}\n")
    with pytest.raises(ConfigError) as info:
        load_site(write(tmp_path, MINIMAL.replace("profiles:\n", "profiles:\n  - bad.yaml\n")))
    assert re.search(r"bad\.yaml:3: registers\[0\]: .*needs a 'states' map", str(info.value))


def test_every_shipped_profile_loads() -> None:
    files = sorted((REPO / "shopfloor" / "examples" / "profiles").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        assert load_profile(path).model == path.stem


def test_roles() -> None:
    assert {r.value for r in Role} == {"admin", "operator", "auditor", "tenant"}


PROFILE = "model: p\nregisters:\n  - {REG}\n  - {signal: other, address: 100, type: uint16}\n"


def profile_error(tmp_path: Path, reg: str) -> str:
    path = write(tmp_path, PROFILE.replace("{REG}", reg), "p.yaml")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("reg", "expected"),
    [
        # bit
        ("{signal: x, address: 0, type: bit, bit: 16}", r"registers\[0\]\.bit: .*less than or equal to 15"),
        ("{signal: x, address: 0, type: bit, bit: -1}", r"registers\[0\]\.bit: .*greater than or equal to 0"),
        ("{signal: x, address: 0, type: bit, bit: true}", r"registers\[0\]\.bit: .*valid integer"),
        ("{signal: x, address: 0, type: bit, bit: '3'}", r"registers\[0\]\.bit: .*valid integer"),
        ("{signal: x, address: 0, type: bit}", r"type bit needs 'bit'"),
        ("{signal: x, address: 0, type: uint16, bit: 3}", r"'bit' is only for type bit"),
        # tables and types
        ("{signal: x, address: 0, type: bool}", r"type bool is only for the coil and discrete tables"),
        ("{signal: x, address: 0, table: coil, type: uint16}", r"type uint16 cannot be read from the coil table"),
        ("{signal: x, address: 0, table: discrete, type: bit, bit: 1}", r"cannot be read from the discrete table"),
        ("{signal: x, address: 0, table: coils, type: bool}", r"registers\[0\]\.table: .*'holding', 'input', 'coil'"),
        ("{signal: x, address: 0, table: coil, type: bool, byte_order: DCBA}", r"'byte_order' has no meaning"),
        ("{signal: x, address: 0, type: float128}", r"registers\[0\]\.type: "),
        ("{signal: x, address: 65533, type: int64}", r"runs past register 65535"),
        # byte order
        ("{signal: x, address: 0, type: uint32, byte_order: XYZW}", r"registers\[0\]\.byte_order: .*'ABCD'"),
        ("{signal: x, address: 0, type: uint32, byte_order: abcd}", r"registers\[0\]\.byte_order: "),
        ("{signal: x, address: 0, type: uint32, word_order: little, byte_order: CDAB}",
         r"either 'byte_order' or the legacy 'word_order', not both"),
        ("{signal: x, address: 0, type: uint32, word_order: middle}", r"'word_order' must be big or little"),
        ("{signal: x, address: 0, type: uint32, word_order: [big]}", r"'word_order' must be big or little"),
        # scale and offset
        ("{signal: x, address: 0, type: uint16, scale: 0}", r"'scale' must not be 0"),
        ("{signal: x, address: 0, type: uint16, scale: .nan}", r"registers\[0\]\.scale: .*finite"),
        ("{signal: x, address: 0, type: uint16, offset: .inf}", r"registers\[0\]\.offset: .*finite"),
        ("{signal: x, address: 0, type: uint16, offset: '5'}", r"registers\[0\]\.offset: .*valid number"),
        ("{signal: x, address: 0, type: string, length: 2, scale: 2}", r"'scale' and 'offset' are only for numbers"),
        ("{signal: x, address: 0, type: bit, bit: 0, offset: 1}", r"'scale' and 'offset' are only for numbers"),
        ("{signal: x, address: 0, type: uint16, enum: {0: a}, scale: 2}", r"not for an enum"),
        ("{signal: good_count, address: 0, type: uint32, offset: 1}", r"integer signal: .*offset 0"),
        ("{signal: badge, address: 0, type: uint32, scale: -1}", r"integer signal: .*scale 1"),
        # enum
        ("{signal: x, address: 0, type: string, length: 2, enum: {0: a}}", r"'enum' is only for integer types"),
        ("{signal: x, address: 0, type: float32, enum: {0: a}}", r"'enum' is only for integer types"),
        ("{signal: x, address: 0, type: uint16, enum: {}}", r"registers\[0\]\.enum: .*at least 1"),
        ("{signal: x, address: 0, type: uint16, enum: {70000: a}}", r"'enum' code 70000 does not fit type uint16"),
        ("{signal: x, address: 0, type: int16, enum: {-40000: a}}", r"'enum' code -40000 does not fit type int16"),
        ("{signal: x, address: 0, type: uint16, enum: {0: ''}}", r"'enum' label '' must be"),
        ("{signal: x, address: 0, type: uint16, enum: {0: \"a\\x01\"}}", r"'enum' label .* printable"),
        ("{signal: x, address: 0, type: uint16, enum: {0: " + "a" * 65 + "}}", r"'enum' label .* 1\.\.64"),
        ("{signal: x, address: 0, type: uint16, enum: {0: 5}}", r"registers\[0\]\.enum\[0\]: .*valid string"),
        ("{signal: stop_reason, address: 0, type: uint16, enum: {0: none}}", r"'stop_reason' must be numeric"),
        ("{signal: state, address: 0, type: uint16, states: {0: OFF}, enum: {0: off}}", r"use 'states'"),
        # report by exception
        ("{signal: good_count, address: 0, type: uint32, deadband: 1}", r"'deadband' is not allowed on signal "
         r"'good_count' \(a counter"),
        ("{signal: x, address: 0, type: uint32, counter: true, deadband_pct: 1}", r"'deadband_pct' is not allowed"),
        ("{signal: badge, address: 0, type: uint32, deadband: 1}", r"'deadband' is not allowed on signal 'badge'"),
        # A meter may have an absolute deadband (see below), but not a percent one: it only ever grows.
        ("{signal: energy_kwh, address: 0, type: float32, deadband_pct: 1}",
         r"'deadband_pct' is not allowed on signal 'energy_kwh' \(a counter"),
        # An integer counter (parts) is sent on every change.
        ("{signal: x, address: 0, type: uint32, counter: true, deadband: 1}",
         r"'deadband' is not allowed on signal 'x'"),
        ("{signal: job, address: 0, type: string, length: 2, deadband: 1}", r"not allowed on signal 'job'"),
        ("{signal: x, address: 0, type: string, length: 2, deadband: 1}", r"'deadband' is only for numbers"),
        ("{signal: x, address: 0, type: bit, bit: 2, deadband_pct: 5}", r"'deadband_pct' is only for numbers"),
        ("{signal: x, address: 0, type: uint16, enum: {0: a}, deadband: 1}", r"'deadband' is only for numbers"),
        ("{signal: x, address: 0, type: bits16, deadband: 1}", r"'deadband' is only for numbers"),
        ("{signal: power_kw, address: 0, type: float32, deadband: 0.1, deadband_pct: 1}",
         r"either 'deadband' or 'deadband_pct', not both"),
        ("{signal: power_kw, address: 0, type: float32, deadband: -0.1}", r"registers\[0\]\.deadband: .*greater"),
        ("{signal: power_kw, address: 0, type: float32, deadband_pct: .nan}", r"registers\[0\]\.deadband_pct: "),
        ("{signal: power_kw, address: 0, type: float32, deadband: true}", r"registers\[0\]\.deadband: .*number"),
        # counters
        ("{signal: good_count, address: 0, type: uint32, counter_width: 65}",
         r"registers\[0\]\.counter_width: .*less than or equal to 64"),
        ("{signal: good_count, address: 0, type: uint16, counter_width: 17}", r"'counter_width' 17 is wider"),
        ("{signal: good_count, address: 0, type: uint32, counter_width: 0}", r"registers\[0\]\.counter_width: "),
        ("{signal: energy_kwh, address: 0, type: float32, counter_width: 32}",
         r"'counter_width' is only for integer counters"),
        ("{signal: x, address: 0, type: uint32, counter_width: 16}", r"'counter_width' is only for counters"),
        ("{signal: x, address: 0, type: uint32, max_rate_per_h: 5}", r"'max_rate_per_h' is only for counters"),
        ("{signal: energy_kwh, address: 0, type: uint32, max_rate_per_h: 0}",
         r"registers\[0\]\.max_rate_per_h: .*greater than 0"),
        ("{signal: energy_kwh, address: 0, type: uint32, max_rate_per_h: .inf}", r"registers\[0\]\.max_rate_per_h"),
        ("{signal: x, address: 0, type: uint16, counter: yes}", r"registers\[0\]\.counter: .*valid boolean"),
        ("{signal: power_kw, address: 0, type: float32, counter: true}", r"'power_kw' cannot be a 'counter'"),
        ("{signal: x, address: 0, type: string, length: 1, counter: true}", r"'counter' is only for numbers"),
        ("{signal: x, address: 0, type: uint16, counter: true, scale: -1}", r"'counter' needs a positive 'scale'"),
    ],
)
def test_register_fields_refuse_bad_values(tmp_path: Path, reg: str, expected: str) -> None:
    message = profile_error(tmp_path, reg)
    assert "p.yaml:3" in message, message
    assert re.search(expected, message), message


def test_bit_signals_share_a_register_but_not_a_bit(tmp_path: Path) -> None:
    regs = "  - {signal: a, address: 0, type: bit, bit: 0}\n  - {signal: b, address: 0, type: bit, bit: 1}\n"
    ok = write(tmp_path, f"model: p\nregisters:\n{regs}", "ok.yaml")
    assert [r.bit for r in load_profile(ok).registers] == [0, 1]
    for extra, what in [
        ("  - {signal: c, address: 0, type: bit, bit: 1}\n", r"register 0 bit 1 is used by both 'b' and 'c'"),
        ("  - {signal: c, address: 0, type: uint16}\n", r"register 0 is used by both 'a' and 'c'"),
    ]:
        bad = write(tmp_path, f"model: p\nregisters:\n{regs}{extra}", "bad.yaml")
        with pytest.raises(ConfigError, match=what):
            load_profile(bad)
    # Tables are separate address spaces: coil 0 and holding register 0 do not collide.
    both = write(tmp_path, f"model: p\nregisters:\n{regs}  - {{signal: c, address: 0, table: coil, type: bool}}\n")
    assert len(load_profile(both).registers) == 3


def test_counter_defaults_and_modulus() -> None:
    def reg(**kw: Any) -> RegisterSpec:
        return RegisterSpec.model_validate({"address": 0, **kw})

    good = reg(signal="good_count", type="uint16")
    assert good.counter and good.counter_width == 16 and good.modulus == 65536
    energy = reg(signal="energy_kwh", type="uint32", scale=0.01, max_rate_per_h=50.0)
    assert energy.counter_width == 32 and energy.modulus == pytest.approx(42949672.96)
    assert energy.max_rate_per_h == 50.0
    assert reg(signal="energy_kwh", type="float32").counter_width is None  # floats do not wrap
    assert reg(signal="energy_kwh", type="float32").modulus is None
    assert reg(signal="good_count", type="int16").counter_width == 15  # a signed counter wraps to 0 at 32768
    assert reg(signal="good_count", type="uint32", counter_width=20).modulus == 2**20
    assert reg(signal="good_count", type="uint32", counter=False).modulus is None
    assert not reg(signal="power_kw", type="float32").counter
    custom = reg(signal="strokes", type="uint64", counter=True)
    assert custom.counter_width == 64 and custom.modulus == 2**64
    assert reg(signal="power_kw", type="float32", deadband=0.5).deadband == 0.5
    assert reg(signal="spindle_rpm", type="uint16", deadband_pct=2).deadband_pct == 2.0


def test_byte_order_and_legacy_word_order() -> None:
    def reg(**kw: Any) -> RegisterSpec:
        return RegisterSpec.model_validate({"signal": "x", "address": 0, "type": "uint32", **kw})

    assert reg().byte_order is ByteOrder.ABCD and reg().word_order is WordOrder.BIG
    assert reg(word_order="little").byte_order is ByteOrder.CDAB
    assert reg(word_order="big").byte_order is ByteOrder.ABCD
    assert reg(byte_order="DCBA").word_order is WordOrder.LITTLE
    assert reg(byte_order="BADC").word_order is WordOrder.BIG
    # A dump validates again: word_order is a view, not a second field.
    dumped = reg(word_order="little").model_dump()
    assert "word_order" not in dumped and RegisterSpec.model_validate(dumped).byte_order is ByteOrder.CDAB


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port: 15020}", "port: 15020, heartbeat_s: 0.5}", r"machines\[0\]\.heartbeat_s: .*greater than or equal to 1"),
        ("port: 15020}", "port: 15020, heartbeat_s: 3601}", r"machines\[0\]\.heartbeat_s: .*less than or equal"),
        ("port: 15020}", "port: 15020, heartbeat_s: .nan}", r"machines\[0\]\.heartbeat_s: "),
        ("port: 15020}", "port: 15020, heartbeat_s: '60'}", r"machines\[0\]\.heartbeat_s: .*valid number"),
        ("port: 15020}", "port: 15020, poll_interval_s: 30, heartbeat_s: 10}",
         r"machines\[0\] \(m-1\): heartbeat_s 10 is shorter than poll_interval_s 30"),
        ("port: 15020}", "port: 15020, poll_interval_s: 120}", r"heartbeat_s 60 is shorter than poll_interval_s 120"),
        ("port: 15020}", "port: 15020, request_delay_s: -0.1}", r"machines\[0\]\.request_delay_s: .*greater"),
        ("port: 15020}", "port: 15020, request_delay_s: 11}", r"machines\[0\]\.request_delay_s: .*less than"),
        ("  - model: mini\n", "  - model: mini\n    read_gap: 125\n", r"profiles\[0\]\.read_gap: .*less than or equal"),
        ("  - model: mini\n", "  - model: mini\n    read_gap: -1\n", r"profiles\[0\]\.read_gap: .*greater"),
        ("  - model: mini\n", "  - model: mini\n    read_gap: 2.5\n", r"profiles\[0\]\.read_gap: .*valid integer"),
    ],
)
def test_machine_and_profile_timing_fields(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in MINIMAL
    with pytest.raises(ConfigError) as info:
        load_site(write(tmp_path, MINIMAL.replace(old, new, 1)))
    assert re.search(expected, str(info.value)), str(info.value)


def test_machine_timing_defaults(tmp_path: Path) -> None:
    text = MINIMAL.replace("port: 15020}", "port: 15020, poll_interval_s: 5, heartbeat_s: 5, request_delay_s: 0.05}")
    machine = load_site(write(tmp_path, text)).machines[0]
    assert (machine.heartbeat_s, machine.request_delay_s) == (5.0, 0.05)
    default = load_site(write(tmp_path, MINIMAL))
    assert (default.machines[0].heartbeat_s, default.machines[0].request_delay_s) == (60.0, 0.0)
    assert default.profiles[0].read_gap == 10


def test_a_meter_may_have_an_absolute_deadband() -> None:
    # Energy is cumulative: skipping steps below 0.01 kWh loses nothing, the next value carries them.
    spec = RegisterSpec.model_validate({"signal": "energy_kwh", "address": 0, "type": "float32", "deadband": 0.01})
    assert spec.counter and spec.deadband == 0.01


# ---- agents: which agent serves which machines -------------------------------------------------------------------

TWO_MACHINES = MINIMAL.replace(
    "  - {id: m-1, profile: mini, port: 15020}\n",
    "  - {id: m-1, profile: mini, port: 15020}\n  - {id: m-2, profile: mini, port: 15021}\n",
)


def test_example_site_declares_one_agent_serving_every_machine() -> None:
    site = load_site(default_site_path())
    assert [a.id for a in site.agents] == ["edge-1"]
    assert site.machines_of("edge-1") == [m.id for m in site.machines]
    assert {site.agent_of(m.id) for m in site.machines} == {"edge-1"}


def test_agents_section_is_optional_and_helpers_answer_for_it(tmp_path: Path) -> None:
    assert load_site(write(tmp_path, MINIMAL)).agents == []
    text = TWO_MACHINES + "agents:\n  - {id: edge-1, machines: [m-2]}\n  - {id: edge-2}\n"
    site = load_site(write(tmp_path, text))
    assert (site.agent_of("m-1"), site.agent_of("m-2"), site.agent_of("nope")) == (None, "edge-1", None)
    assert (site.machines_of("edge-1"), site.machines_of("edge-2"), site.machines_of("edge-9")) == (["m-2"], [], [])


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        ("  - {id: Edge_1, machines: [m-1]}", r"site\.yaml:\d+: agents\[0\]\.id: .*not a valid id"),
        ("  - {id: edge-1, machines: [m-9]}", r"agents\[0\] \(edge-1\): machine 'm-9' is not defined"),
        ("  - {id: edge-1, machines: [m-1]}\n  - {id: edge-1, machines: [m-2]}", r"duplicate agent id 'edge-1'"),
        (
            "  - {id: edge-1, machines: [m-1]}\n  - {id: edge-2, machines: [m-1]}",
            r"agents\[1\] \(edge-2\): machine 'm-1' is served by one agent only, but 'edge-2' and 'edge-1' both",
        ),
        ("  - {id: edge-1, machines: [m-1, m-1]}", r"'edge-1' lists it twice"),
        ("  - {id: edge-1, machines: [m-1], extra: 1}", r"agents\[0\]\.extra"),
        ("  - {id: edge-1, machines: m-1}", r"agents\[0\]\.machines"),
    ],
)
def test_agents_section_errors(tmp_path: Path, agents: str, expected: str) -> None:
    path = write(tmp_path, TWO_MACHINES + "agents:\n" + agents + "\n")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert str(path) in str(info.value)
    assert re.search(expected, str(info.value)), info.value


@pytest.mark.parametrize("name", ["time", "site", "machine", "agent"])
def test_profiles_may_not_declare_reserved_signal_names(tmp_path: Path, name: str) -> None:
    text = MINIMAL.replace(
        "      - {signal: good_count, address: 1, type: uint32}\n",
        "      - {signal: good_count, address: 1, type: uint32}\n"
        f"      - {{signal: {name}, address: 5, type: uint16}}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_site(write(tmp_path, text))
    message = str(info.value)
    assert re.search(rf"profiles\[0\]\.registers\[2\]\.signal: .*signal name '{name}' is reserved", message), message


def test_underscore_signal_names_are_refused_too() -> None:
    with pytest.raises(ValueError, match="'_x' is reserved"):
        RegisterSpec.model_validate({"signal": "_x", "address": 0, "type": "uint16"})


# ---- shift calendar and OEE settings -----------------------------------------------------------------------------

CALENDAR = """\
calendar:
  shifts:
    - {name: morning, start: "06:00", end: "14:00", days: [mon, tue, wed, thu, fri, sat],
       breaks: [{start: "10:00", end: "10:15"}]}
    - {name: night, start: "22:00", end: "06:00"}
  holidays: ["2026-12-25", 2026-12-31]
  downtime:
    - {machines: [m-1], start: "2026-12-03T08:00:00+07:00", end: "2026-12-03T12:00:00+07:00",
       reason: "spindle service"}
    - {start: 2026-12-04T00:00:00Z, end: "2026-12-04T02:00:00+00:00"}
oee:
  loss_map:
    version: "plant-2"
    microstop_max_s: 90
    states: {SETUP: setup, IDLE: no_operator, OFF: off, MAINTENANCE: maintenance, STOPPED: breakdown}
    stop_reasons: {7: no_material, 14: other}
"""
# MINIMAL is 12 lines: CALENDAR's first line is line 13 of the site file.
CAL_LINE = {
    "calendar": 13, "shifts[0]": 15, "breaks": 16, "shifts[1]": 17, "holidays": 18, "downtime[0]": 20, "reason": 21,
    "downtime[1]": 22, "loss_map": 24, "version": 25, "inserted": 25, "microstop": 26, "states": 27, "stop_reasons": 28,
}  # fmt: skip


def test_calendar_and_oee_blocks_become_the_pure_calendar(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, MINIMAL + CALENDAR))
    cal = site.calendar_model()
    assert cal == Calendar(
        "Asia/Jakarta",
        (
            ShiftPattern("morning", time(6), time(14), frozenset(range(6)), ((time(10), time(10, 15)),)),
            ShiftPattern("night", time(22), time(6)),
        ),
        frozenset({date(2026, 12, 25), date(2026, 12, 31)}),
        (
            # 08:00+07:00 is 01:00 UTC: 1_796_259_600_000 ms; four hours later 1_796_274_000_000.
            Downtime(1_796_259_600_000, 1_796_274_000_000, frozenset({"m-1"}), "spindle service"),
            Downtime(1_796_342_400_000, 1_796_349_600_000, None, "planned downtime"),  # the default reason
        ),
    )
    assert site.calendar_model() is cal  # built once, at load time
    loss = site.oee.loss_map
    assert (loss.version, loss.microstop_max_s) == ("plant-2", 90.0)
    assert loss.stop_reasons == {7: LossCategory.NO_MATERIAL, 14: LossCategory.OTHER}
    assert loss.states[MachineState.IDLE] is LossCategory.NO_OPERATOR


def test_without_calendar_every_hour_is_planned_and_the_loss_map_is_the_default(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, MINIMAL))
    cal = site.calendar_model()
    assert cal.shifts == (ALWAYS,) and cal.zone == "Asia/Jakarta"
    start, end = cal.day_bounds(date(2026, 12, 1))
    assert [(p.start_ms, p.end_ms, p.shift) for p in cal.planned(start, end, "m-1")] == [(start, end, "all")]
    loss = site.oee.loss_map
    assert loss.version == "default-1" and loss.microstop_max_s == 120 and loss.stop_reasons == {}
    assert {k.value: v.value for k, v in loss.states.items()} == {
        "SETUP": "setup", "IDLE": "no_operator", "OFF": "off", "MAINTENANCE": "maintenance", "STOPPED": "breakdown"
    }  # fmt: skip


def test_microstop_limit_is_the_pieces_context() -> None:
    assert MAX_MICROSTOP_S * 1000 == MIN_CONTEXT_MS


def test_example_site_calendar_runs_around_the_clock() -> None:
    site = load_site(default_site_path())
    cal = site.calendar_model()
    assert [s.name for s in cal.shifts] == ["morning", "afternoon", "night"]
    start, end = cal.day_bounds(date(2026, 12, 1))
    # 06-14, 14-22 and 22-06: the 24 h of 1 December are the tail of 30 November's night (6 h), morning (8 h),
    # afternoon (8 h) and the head of 1 December's night (2 h).
    assert [(p.shift, p.day.day, p.duration_ms // 3_600_000) for p in cal.planned(start, end, "cnc-01")] == [
        ("night", 30, 6), ("morning", 1, 8), ("afternoon", 1, 8), ("night", 1, 2)
    ]  # fmt: skip
    assert site.oee.loss_map.version == "default-1"
    cnc_01 = site.machine("cnc-01")
    assert cnc_01 is not None
    assert site.ideal_cycle_s(cnc_01, "ACME-HSG") == 55 and site.ideal_cycle_s(cnc_01, "OTHER") == 45
    assert site.ideal_cycle_s(cnc_01, None) == 45


def test_a_dumped_site_validates_again_to_the_same_calendar(tmp_path: Path) -> None:
    # shopfloor demo re-validates a dump of the site: times and instants must survive it.
    site = load_site(write(tmp_path, MINIMAL + CALENDAR))
    again = SiteConfig.model_validate(site.model_dump())
    assert again.calendar_model() == site.calendar_model() and again.oee == site.oee


def test_calendar_follows_a_copied_site_with_another_zone(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, MINIMAL + CALENDAR))
    berlin = site.model_copy(update={"site": site.site.model_copy(update={"timezone": "Europe/Berlin"})})
    assert berlin.calendar_model().zone == "Europe/Berlin" and site.calendar_model().zone == "Asia/Jakarta"


def test_24_00_is_an_end_and_a_24_h_shift_is_allowed(tmp_path: Path) -> None:
    text = MINIMAL + CALENDAR.replace('end: "14:00"', 'end: "24:00"').replace(
        '{name: night, start: "22:00", end: "06:00"}', '{name: sunday, start: "06:00", end: "06:00", days: [sun]}'
    )  # fmt: skip
    cal = load_site(write(tmp_path, text)).calendar_model()
    assert cal.shifts[0].end == time(0) and cal.shifts[0].length_s == 18 * 3600
    assert cal.shifts[1].length_s == 24 * 3600


def _calendar_error(tmp_path: Path, old: str, new: str) -> str:
    text = MINIMAL + CALENDAR
    assert old in text, old
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    message = str(info.value)
    assert str(path) in message
    return message


S0 = '{name: morning, start: "06:00", end: "14:00"'
B0 = 'breaks: [{start: "10:00", end: "10:15"}]'
DT0 = 'start: "2026-12-03T08:00:00+07:00"'
ST0 = "states: {SETUP: setup,"
SR0 = "stop_reasons: {7: no_material"


def s0(old: str, new: str) -> tuple[str, str]:
    """Replace old by new in the first shift."""
    return S0, S0.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        # times
        (*s0('"06:00"', '"6:00"'), "shifts[0]", r"shifts\[0\]\.start: '6:00' is not a time \"HH:MM\" with two-digit"),
        (*s0('"06:00"', '"25:00"'), "shifts[0]", r"shifts\[0\]\.start: '25:00' is not a time of day \(00:00\.\.23:59"),
        (*s0('"06:00"', '"24:00"'), "shifts[0]", r"shifts\[0\]\.start: '24:00' is not a time of day"),
        (*s0('"14:00"', '"24:01"'), "shifts[0]", r"shifts\[0\]\.end: '24:01' is not a time of day \(00:00\.\.24:00\)"),
        (*s0('"06:00"', '"06:60"'), "shifts[0]", r"shifts\[0\]\.start: '06:60' is not a time of day"),
        (*s0('"06:00"', '"06:00:30"'), "shifts[0]", r"shifts\[0\]\.start: '06:00:30' is not a time"),
        (*s0('"06:00"', '"٠٦:٠٠"'), "shifts[0]", r"shifts\[0\]\.start: .* is not a time"),  # Arabic-Indic digits
        (*s0('"14:00"', "14:00"), "shifts[0]", r"shifts\[0\]\.end: 840 is a number, not a time.*quote"),
        (*s0('"06:00"', "[6]"), "shifts[0]", r"shifts\[0\]\.start: \[6\] is not a time"),
        (*s0('"06:00"', ".nan"), "shifts[0]", r"shifts\[0\]\.start: nan is not a time"),
        (*s0('"06:00"', "true"), "shifts[0]", r"shifts\[0\]\.start: True is not a time"),
        # names and days
        (*s0("morning", "Morning"), "shifts[0]", r"shifts\[0\]\.name: 'Morning' is not a valid id"),
        (*s0("morning", "night"), "calendar", r"calendar: duplicate shift name 'night'"),
        ("days: [mon, tue", "days: [mon, mon", "shifts[0]", r"shifts\[0\]: .*duplicate day in 'days' 'mon'"),
        ("days: [mon, tue", "days: [monday, tue", "shifts[0]", r"shifts\[0\]\.days\[0\]: Input should be 'mon'"),
        ("days: [mon, tue, wed, thu, fri, sat]", "days: []", "shifts[0]", r"shifts\[0\]\.days: .*at least 1"),
        ("days: [mon, tue, wed, thu, fri, sat]", "days: mon", "shifts[0]", r"shifts\[0\]\.days: .*valid list"),
        (S0, S0 + ", colour: red", "shifts[0]", r"shifts\[0\]\.colour: Extra inputs are not permitted"),
        # breaks and overlaps
        (B0, 'breaks: [{start: "05:00", end: "05:15"}]', "shifts[0]",
         r"calendar\.shifts\[0\]: shift 'morning': break 05:00-05:15 is not inside the shift \(06:00-14:00\)"),
        (B0, 'breaks: [{start: "10:00", end: "10:00"}]', "shifts[0]", r"break 10:00-10:00 has no length"),
        (B0, 'breaks: [{start: "10:00"}]', "breaks", r"shifts\[0\]\.breaks\[0\]\.end: Field required"),
        (B0, "breaks: [" + ", ".join([B0[9:-1]] * 17) + "]", "breaks", r"shifts\[0\]\.breaks: .*at most 16"),
        ('{name: night, start: "22:00"', '{name: night, start: "13:00"', "calendar",
         r"calendar: shifts 'morning' and 'night' overlap on mon 13:00-14:00"),
        # holidays
        ('["2026-12-25"', '["2026-02-30"', "holidays", r"calendar\.holidays\[0\]: '2026-02-30' is not a date YYYY-MM"),
        ('["2026-12-25"', '["25.12.2026"', "holidays", r"holidays\[0\]: '25\.12\.2026' is not a date"),
        ('["2026-12-25"', "[2026-12-25T00:00:00+07:00", "holidays", r"holidays\[0\]: .* is not a date"),
        ('["2026-12-25"', "[20261225", "holidays", r"holidays\[0\]: '20261225' is not a date"),
        ('["2026-12-25"', '["2026-12-31"', "calendar", r"calendar: duplicate holiday '2026-12-31'"),
        # downtime
        (DT0, 'start: "2026-12-03T08:00:00"', "downtime[0]", r"downtime\[0\]\.start: 2026-12-03T08:00:00 has no UTC"),
        (DT0, "start: 2026-12-03", "downtime[0]", r"downtime\[0\]\.start: '2026-12-03' is not a date and time with"),
        (DT0, "start: 1764748800", "downtime[0]", r"downtime\[0\]\.start: '1764748800' is not"),
        (DT0, 'start: "tomorrow"', "downtime[0]", r"downtime\[0\]\.start: 'tomorrow' is not an ISO 8601"),
        (DT0, 'start: "1970-01-01T00:00:00+00:00"', "downtime[0]", r"outside the years 2000\.\.2099"),
        (DT0, 'start: "2026-12-03T13:00:00+07:00"', "downtime[0]",
         r"downtime\[0\]: end 2026-12-03T12:00:00\+07:00 is not after start 2026-12-03T13:00:00\+07:00"),
        ("machines: [m-1]", "machines: [m-9]", None, r"calendar\.downtime\[0\]: machine 'm-9' is not defined under"),
        ("machines: [m-1]", "machines: []", "downtime[0]", r"downtime\[0\]\.machines: .*at least 1"),
        ("machines: [m-1]", "machines: [m-1, m-1]", "downtime[0]", r"duplicate machine in 'machines' 'm-1'"),
        ('"spindle service"', '"bad\\x07bell"', "downtime[0]", r"downtime\[0\]: 'reason' must be printable"),
        ('"spindle service"', "x" * 201, "reason", r"downtime\[0\]\.reason: .*at most 200"),
        ('"spindle service"', '""', "reason", r"downtime\[0\]\.reason: .*at least 1"),
        # loss map
        ('version: "plant-2"', 'version: ""', "version", r"loss_map\.version: .*at least 1"),
        ('version: "plant-2"', 'version: " v1"', "version", r"loss_map\.version: .*surrounding spaces"),
        ("microstop_max_s: 90", "microstop_max_s: 0", "microstop", r"loss_map\.microstop_max_s: .*greater than 0"),
        ("microstop_max_s: 90", "microstop_max_s: 601", "microstop", r"microstop_max_s: .*less than or equal to 600"),
        ("microstop_max_s: 90", "microstop_max_s: .nan", "microstop", r"microstop_max_s: .*finite"),
        ("microstop_max_s: 90", "microstop_max_s: '90'", "microstop", r"microstop_max_s: .*valid number"),
        (ST0, "states: {RUNNING: setup, SETUP: setup,", "states", r"loss_map\.states: RUNNING is always production"),
        (ST0, "states: {UNKNOWN: other, SETUP: setup,", "states", r"UNKNOWN is always unknown time"),
        (ST0 + " IDLE: no_operator,", ST0, "loss_map", r"loss_map: .*missing IDLE"),
        (ST0, "states: {SETUP: production,", "states", r"states\.SETUP: Input should be 'breakdown'"),
        (ST0, "states: {setup: setup,", "states", r"states\.setup\.\[key\]: Input should be 'OFF'"),
        (SR0, 'stop_reasons: {"7": no_material', "stop_reasons", r"stop_reasons\.7\.\[key\]: .*valid integer"),
        (SR0, "stop_reasons: {-1: no_material", "stop_reasons", r"stop_reasons\[-1\]\.\[key\]: .*greater than or"),
        (SR0, "stop_reasons: {7: speed", "stop_reasons", r"stop_reasons\[7\]: Input should be"),
        ("loss_map:", "loss_map:\n    colour: red", "inserted", r"loss_map\.colour: Extra inputs"),
        ("oee:", "oee:\n  target: 0.85", None, r"oee\.target: Extra inputs"),
        ("calendar:", "calendar:\n  weeks: 2", None, r"calendar\.weeks: Extra inputs"),
    ],
)  # fmt: skip
def test_calendar_and_oee_errors_name_file_line_and_key(
    tmp_path: Path, old: str, new: str, line: str | None, expected: str
) -> None:
    message = _calendar_error(tmp_path, old, new)
    assert re.search(expected, message), message
    if line is not None:
        assert f"site.yaml:{CAL_LINE[line]}:" in message, message


def _many_holidays(n: int) -> str:
    return "[" + ", ".join(f'"{date(2030, 1, 1) + timedelta(days=i)}"' for i in range(n)) + "]"


def _many_shifts(n: int) -> str:
    return "".join(f'    - {{name: s{i}, start: "00:00", end: "00:01", days: [sun]}}\n' for i in range(n))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('["2026-12-25", 2026-12-31]', _many_holidays(2001), r"calendar\.holidays: List should have at most 2000"),
        ("  holidays:", _many_shifts(31) + "  holidays:", r"calendar\.shifts: List should have at most 32 items"),
        ("{7: no_material, 14: other}", "{" + ", ".join(f"{i}: other" for i in range(4097)) + "}",
         r"stop_reasons: Dictionary should have at most 4096 items"),
    ],
)  # fmt: skip
def test_huge_calendar_lists_are_capped(tmp_path: Path, old: str, new: str, expected: str) -> None:
    message = _calendar_error(tmp_path, old, new)
    assert re.search(expected, message), message


@pytest.mark.parametrize(
    ("cycle", "expected"),
    [
        ("{ACME-HSG: 55, '1234': 30}", None),
        ("{1234: 30}", r"machines\[0\]\.job_cycle_times_s\[1234\]\.\[key\]: job id 1234 is a number: quote it"),
        ("{JOB: 0}", r"job_cycle_times_s\.JOB: .*greater than 0"),
        ("{JOB: 86401}", r"job_cycle_times_s\.JOB: .*less than or equal to 86400"),
        ("{JOB: .nan}", r"job_cycle_times_s\.JOB: .*finite"),
        ("{JOB: '30'}", r"job_cycle_times_s\.JOB: .*valid number"),
        ("{JOB: true}", r"job_cycle_times_s\.JOB: .*valid number"),
        ("{" + "J" * 65 + ": 30}", r"job id 'J{64}' must be 1\.\.64 printable characters"),
        ("{' JOB': 30}", r"job id ' JOB' must be .* without surrounding spaces"),
        ('{"JOB\\x00": 30}', r"job id 'JOB\\x00' must be"),
        ("[JOB, 30]", r"job_cycle_times_s: .*valid dictionary"),
    ],
)
def test_job_cycle_times(tmp_path: Path, cycle: str, expected: str | None) -> None:
    text = MINIMAL.replace("port: 15020}", f"port: 15020, ideal_cycle_time_s: 40, job_cycle_times_s: {cycle}}}")
    path = write(tmp_path, text)
    if expected is None:
        site = load_site(path)
        machine = site.machines[0]
        assert machine.job_cycle_times_s == {"ACME-HSG": 55.0, "1234": 30.0}
        assert (site.ideal_cycle_s(machine, "ACME-HSG"), site.ideal_cycle_s(machine, "1234")) == (55.0, 30.0)
        assert site.ideal_cycle_s(machine, "NEW") == 40.0  # the machine's own ideal cycle
        return
    with pytest.raises(ConfigError) as info:
        load_site(path)
    message = str(info.value)
    assert "site.yaml:10:" in message and re.search(expected, message), message


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("../../etc/passwd", r"site\.timezone: '\.\./\.\./etc/passwd' is not an IANA time zone"),
        ("/etc/passwd", r"site\.timezone: '/etc/passwd' is not an IANA time zone"),
        ("asia/jakarta", r"site\.timezone: 'asia/jakarta' is not an IANA time zone"),
        ("zone.tab", r"site\.timezone: 'zone\.tab' is not an IANA time zone"),
        ("A" * 65, r"site\.timezone: String should have at most 64 characters"),
        ("7", r"site\.timezone: '7' is not an IANA time zone"),
    ],
)
def test_site_timezone_is_validated(tmp_path: Path, zone: str, expected: str) -> None:
    path = write(tmp_path, MINIMAL.replace("Asia/Jakarta", f'"{zone}"'))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert "site.yaml:3:" in str(info.value) and re.search(expected, str(info.value)), info.value


def test_site_timezone_must_be_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"site\.yaml:3: site\.timezone: Input should be a valid string"):
        load_site(write(tmp_path, MINIMAL.replace("Asia/Jakarta", "7")))
