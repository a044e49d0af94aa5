"""Site config loading: the shipped example, and errors that name file, line and key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from shopfloor.config import DataType, Role, WordOrder, default_site_path, load_profile, load_site
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
