"""Site config loading: the shipped example, and errors that name file, line and key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shopfloor.config import (
    ByteOrder,
    DataType,
    RegisterSpec,
    Role,
    WordOrder,
    default_site_path,
    load_profile,
    load_site,
)
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
    assert {r.value for r in Role} == {"admin", "operator", "tenant"}


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
