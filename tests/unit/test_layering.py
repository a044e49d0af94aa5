"""The layering rules, read off the source (DESIGN.md, Layout):

- the kernel (`shopfloor/`) imports no component and not the launcher;
- components (`simulators`, `edge_agent`, `collector`, `api`) import the kernel and themselves, never each other;
- `launcher/` is the composition root and may import anything;
- each external library of the field sits behind its adapter module(s) (MQTT, Modbus, the broker, the store);
- the `shopfloor` command finds component commands through entry points, and every entry point loads.

Every import counts, also those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "shopfloor"
COMPONENTS = ("simulators", "edge_agent", "collector", "api")
LAUNCHER = "launcher"
PACKAGES = (KERNEL, *COMPONENTS, LAUNCHER)
# library -> the only modules that may import it
ADAPTERS = {
    "paho": {"shopfloor/mqtt.py"},
    "pymodbus": {"shopfloor/modbus.py"},
    "amqtt": {"shopfloor/embedded_broker.py"},
    "httpx": {"shopfloor/influx.py", "launcher/services.py"},
    "fpdf": {"api/invoice_pdf.py"},
    "grafana_client": {"launcher/dashboards.py"},
    "testcontainers": {"launcher/containers.py"},
    "docker": {"launcher/containers.py"},
}


def imports_of(source: str, filename: str = "<source>") -> set[str]:
    """Every absolute module name imported anywhere in source (relative imports are within the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def allowed_roots(package: str) -> set[str]:
    """The project packages a module of package may import."""
    if package == LAUNCHER:
        return set(PACKAGES)
    if package == KERNEL:
        return {KERNEL}
    return {KERNEL, package}


def violations(package: str, source: str) -> set[str]:
    """Project imports in source that the layering forbids for package."""
    roots = {name.split(".")[0]: name for name in imports_of(source)}
    return {name for root, name in roots.items() if root in PACKAGES and root not in allowed_roots(package)}


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


ALL = [(pkg, path) for pkg in PACKAGES for path in sources(pkg)]


@pytest.mark.parametrize(("package", "path"), ALL, ids=[str(p.relative_to(ROOT)) for _, p in ALL])
def test_module_respects_the_layers(package: str, path: Path) -> None:
    found = violations(package, path.read_text())
    assert found == set(), f"{path.relative_to(ROOT)} ({package}) imports {sorted(found)}"


def test_the_checker_catches_each_kind_of_violation() -> None:
    # a kernel module importing a component inside a function, a component importing another, under TYPE_CHECKING
    assert violations("shopfloor", "def f():\n    from api.app import create_app\n") == {"api.app"}
    assert violations("shopfloor", "import launcher.demo\n") == {"launcher.demo"}
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from collector.service import Collector\n"
    assert violations("api", typed) == {"collector.service"}
    assert violations("edge_agent", "import simulators\n") == {"simulators"}
    # what is allowed
    assert violations("api", "from shopfloor.config import SiteConfig\nfrom api.core import oee\n") == set()
    assert violations("launcher", "import api.app, collector.service, simulators.runtime\n") == set()
    assert violations("collector", "from . import convert\n") == set()


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_external_library_sits_behind_its_adapter(library: str) -> None:
    users = {
        str(path.relative_to(ROOT))
        for _, path in ALL
        if any(name.split(".")[0] == library for name in imports_of(path.read_text()))
    }
    assert users <= ADAPTERS[library], f"{library} is imported outside its adapter: {sorted(users - ADAPTERS[library])}"


def test_every_adapter_module_exists() -> None:
    missing = sorted({m for mods in ADAPTERS.values() for m in mods if not (ROOT / m).is_file()})
    assert missing == []


def test_commands_are_entry_points_and_each_loads() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["shopfloor.commands"]
    installed = {ep.name: ep for ep in metadata.entry_points(group="shopfloor.commands")}
    assert set(installed) == set(declared), "reinstall the package (pip install -e .) after changing entry points"
    for name, target in declared.items():
        assert installed[name].value == target
        assert callable(installed[name].load()), name
    # the kernel's command module names no component
    assert violations("shopfloor", (ROOT / "shopfloor" / "cli.py").read_text()) == set()


def test_every_command_registers_the_subcommand_it_is_named_for() -> None:
    from shopfloor.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = getattr(sub, "choices", None) or {}
    assert set(choices) == {ep.name for ep in metadata.entry_points(group="shopfloor.commands")}
