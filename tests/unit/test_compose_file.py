"""docker-compose.yml, the Dockerfile and deploy/compose/ checked without a Docker engine.

Each rule is a function returning the problems it finds (empty: fine). The real files must give none; broken copies
(a bad option, a missing mount, an undefined variable, ...) must give the problem each rule is there for, so no rule
can pass by checking nothing. Compose's own rules are applied where they matter here: `$$` is a literal `$`,
`${VAR:?msg}` stops Compose when VAR is unset or empty, `${VAR:-x}` defaults, YAML merge keys (`<<: *anchor`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import yaml

from api.db.billingfile import check_machines, load_billing
from shopfloor.brokerconf import parse_conf
from shopfloor.cli import build_parser, main
from shopfloor.config import SiteConfig, load_site
from shopfloor.mqtt_cli import check_dir, load_users

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
EXAMPLE_SITE = ROOT / "examples" / "site.yaml"

# Directories the image itself provides (Dockerfile: install -d ...); paths under them need no mount.
IMAGE_DIRS = ("/var/lib/shopfloor", "/var/lib/shopfloor-broker", "/var/lib/shopfloor-ca", "/tmp")
SHELL_ENTRYPOINT = ["/bin/sh", "-ec"]
# What an init script may run besides `shopfloor ...`: copying the shipped files, modes, and mounted scripts.
SHELL_COMMANDS = {"cp", "chmod", "sh"}
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "http": 80, "https": 443, "postgresql": 5432}
URL_OPTIONS = ("--mqtt", "--influx-url", "--db-url")
URL_ENV = ("SHOPFLOOR_MQTT_URL", "SHOPFLOOR_INFLUX_URL", "SHOPFLOOR_DB_URL")


# ---- Compose interpolation -------------------------------------------------------------------------------------

_REF = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


@dataclass(frozen=True)
class Ref:
    """One `${...}` or `$NAME` in the compose file."""

    name: str
    op: str  # "" (plain), ":-", "-", ":?", "?", ":+", "+"
    arg: str


class Unset(ValueError):
    """A `${VAR:?message}` whose variable is unset or empty: Compose refuses to start with the message."""


def references(text: str) -> list[Ref]:
    """Every variable reference in text (`$$` is a literal dollar, not a reference)."""
    refs = []
    for m in _REF.finditer(text):
        if m.group("dollar"):
            continue
        if m.group("bare"):
            refs.append(Ref(m.group("bare"), "", ""))
            continue
        inner = _BRACED.match(m.group("braced"))
        if inner is None:
            refs.append(Ref(m.group("braced"), "invalid", ""))
        else:
            refs.append(Ref(inner.group("name"), inner.group("op") or "", inner.group("arg") or ""))
    return refs


def strings(node: Any) -> Iterator[str]:
    """Every string value of a loaded YAML tree (what Compose interpolates; comments are not)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)


def file_references(text: str) -> list[Ref]:
    """Every variable reference in the values of a compose file."""
    return [ref for value in strings(yaml.safe_load(text)) for ref in references(value)]


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute variables as Compose does; raise Unset for a required one that is unset or empty."""

    def one(m: re.Match[str]) -> str:
        if m.group("dollar"):
            return "$"
        if m.group("bare"):
            return env.get(m.group("bare"), "")
        inner = _BRACED.match(m.group("braced"))
        if inner is None:
            raise ValueError(f"invalid interpolation ${{{m.group('braced')}}}")
        name, op, arg = inner.group("name"), inner.group("op") or "", inner.group("arg") or ""
        value = env.get(name)
        empty = not value
        if op in (":?", "?") and (value is None or (op == ":?" and empty)):
            raise Unset(f"{name}: {arg}")
        if op in (":-", "-") and (value is None or (op == ":-" and empty)):
            return arg
        if op in (":+", "+"):
            return arg if value is not None and (op == "+" or not empty) else ""
        return value or ""

    return _REF.sub(one, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value of a loaded YAML tree."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def parse_env(text: str) -> dict[str, str]:
    """An env file's KEY=VALUE lines (comments and blank lines skipped)."""
    env = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f".env.example:{number}: not KEY=VALUE: {raw!r}"
        env[key] = value
    return env


def stand_in_env(example: Mapping[str, str], refs: list[Ref]) -> dict[str, str]:
    """The example env with a stand-in for each required variable it leaves empty (its passwords)."""
    env = dict(example)
    for ref in refs:
        if ref.op in (":?", "?") and not env.get(ref.name):
            env[ref.name] = f"test-{ref.name.lower().replace('_', '-')}"
    return env


# ---- the model -------------------------------------------------------------------------------------------------


@dataclass
class Model:
    """The compose file as Compose sees it (interpolated) and what it refers to."""

    text: str
    env_text: str
    compose: dict[str, Any]
    dockerfile: str
    dockerignore: str

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        """The services, by name."""
        services: dict[str, dict[str, Any]] = self.compose["services"]
        return services


def load_model(text: str | None = None, env_text: str | None = None) -> Model:
    """Load docker-compose.yml (or text) interpolated with the example env (or env_text)."""
    text = COMPOSE.read_text() if text is None else text
    env_text = ENV_EXAMPLE.read_text() if env_text is None else env_text
    env = stand_in_env(parse_env(env_text), file_references(text))
    compose = interpolate_tree(yaml.safe_load(text), env)
    return Model(text, env_text, compose, DOCKERFILE.read_text(), DOCKERIGNORE.read_text())


def ours(service: dict[str, Any]) -> bool:
    """Whether the service runs the Shopfloor image (built from ./Dockerfile)."""
    return "build" in service


def one_shot(service: dict[str, Any]) -> bool:
    """Whether the service runs once (an init step) rather than for good."""
    return str(service.get("restart", "no")) == "no"


def invocations(name: str, service: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """Each command line a service of our image runs: ("shopfloor", argv) or (shell command, argv)."""
    command = service.get("command")
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        yield "shopfloor", list(command) if isinstance(command, list) else shlex.split(command or "")
        return
    if entrypoint != SHELL_ENTRYPOINT or not isinstance(command, list) or len(command) != 1:
        yield "unsupported", [f"entrypoint {entrypoint!r} with command {command!r}"]
        return
    for line in command[0].splitlines():
        words = shlex.split(line, comments=True)
        if words:
            yield words[0], words[1:]


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, is_bind) of each volume entry, short or long syntax."""
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = str(entry.get("source", "")), str(entry["target"])
        found.append((source, target, source.startswith((".", "/"))))
    return found


def bind_source(service: dict[str, Any], path: str) -> Path | None:
    """The repository path that a container path of a bind mount comes from (None: not bind-mounted)."""
    for source, target, is_bind in mounts(service):
        if is_bind and (path == target or path.startswith(target.rstrip("/") + "/")):
            return ROOT / source / os.path.relpath(path, target) if path != target else ROOT / source
    return None


@functools.cache
def shopfloor_parser() -> argparse.ArgumentParser:
    """The `shopfloor` command's parser, with every installed component's subcommands (built once: it imports them)."""
    return build_parser()


def parse_shopfloor(argv: list[str]) -> tuple[Any, str]:
    """Parse argv as the `shopfloor` command does: (namespace or None, argparse's message)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return shopfloor_parser().parse_args(argv), ""
        except SystemExit:
            return None, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "exited"


# ---- the rules -------------------------------------------------------------------------------------------------


def command_problems(model: Model) -> list[str]:
    """Every command of our image is a real `shopfloor` subcommand with valid options (or an allowed shell step)."""
    problems = []
    for name, svc in model.services.items():
        if not ours(svc):
            continue
        steps = list(invocations(name, svc))
        if not any(program == "shopfloor" for program, _ in steps):
            problems.append(f"{name}: runs no shopfloor command ({steps})")
        for program, argv in steps:
            if program == "shopfloor":
                args, message = parse_shopfloor(argv)
                if args is None:
                    problems.append(f"{name}: shopfloor {' '.join(argv)}: {message}")
                elif not getattr(args, "command", None):
                    problems.append(f"{name}: shopfloor {' '.join(argv)}: no subcommand")
            elif program not in SHELL_COMMANDS:
                problems.append(f"{name}: {program} {' '.join(argv)}: not a shopfloor command nor {SHELL_COMMANDS}")
            elif program == "sh" and (not argv or bind_source(svc, argv[0]) is None):
                problems.append(f"{name}: sh {' '.join(argv)}: the script is not a file mounted from the repository")
    return problems


def _container_paths(argv: list[str]) -> Iterator[str]:
    for word in argv:
        value = word.partition("=")[2] if word.startswith("--") and "=" in word else word
        if value.startswith("/") and not value.startswith("//"):
            yield value


def path_problems(model: Model) -> list[str]:
    """Every absolute path a command names is mounted, a secret the service holds, or a directory of the image."""
    problems = []
    for name, svc in model.services.items():
        if not ours(svc):
            continue
        secrets = {s if isinstance(s, str) else s["source"] for s in svc.get("secrets", [])}
        targets = [target for _, target, _ in mounts(svc)]
        for program, argv in invocations(name, svc):
            for path in _container_paths(argv if program != "sh" else argv[1:]):
                if path.startswith("/run/secrets/"):
                    if PurePosixPath(path).name not in secrets:
                        problems.append(f"{name}: {path}: not one of the service's secrets {sorted(secrets)}")
                    continue
                source = bind_source(svc, path)
                if source is not None:
                    if not source.exists():
                        problems.append(f"{name}: {path}: mounted from {source.relative_to(ROOT)}, which is missing")
                    continue
                under_mount = any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)
                if not under_mount and not path.startswith(IMAGE_DIRS):
                    problems.append(f"{name}: {path}: neither mounted nor a directory of the image")
    return problems


def mount_problems(model: Model) -> list[str]:
    """Every bind mount's source exists in the repository; every named volume is declared, and used."""
    problems = []
    declared = set(model.compose.get("volumes") or {})
    used = set()
    for name, svc in model.services.items():
        for source, target, is_bind in mounts(svc):
            if is_bind:
                path = (ROOT / source).resolve()
                if not path.exists():
                    problems.append(f"{name}: bind mount {source} -> {target}: {source} does not exist")
                elif ROOT not in path.parents and path != ROOT:
                    problems.append(f"{name}: bind mount {source} is outside the repository")
            else:
                used.add(source)
                if source not in declared:
                    problems.append(f"{name}: volume {source!r} is not declared under the top-level volumes:")
    problems += [f"volume {v!r} is declared but no service mounts it" for v in sorted(declared - used)]
    return problems


def variable_problems(model: Model) -> list[str]:
    """Every variable is in .env.example, has a default or is required, and no password has a default."""
    problems = []
    example = parse_env(model.env_text)
    refs = file_references(model.text)
    required = {r.name for r in refs if r.op in (":?", "?")}
    for ref in refs:
        where = f"${{{ref.name}{ref.op}{ref.arg}}}"
        if ref.op == "invalid":
            problems.append(f"{ref.name}: not a valid interpolation")
            continue
        if ref.name not in example:
            problems.append(f"{ref.name}: used in docker-compose.yml ({where}) but not in deploy/compose/.env.example")
        if ref.op not in (":?", ":-"):
            problems.append(f"{where}: give a default (:-) or make it required with a message (:?)")
        if ref.op == ":?" and not ref.arg.strip():
            problems.append(f"{where}: a required variable needs a message saying what to set")
        if "PASSWORD" in ref.name and ref.op != ":?":
            problems.append(f"{where}: a password has no default; use ${{{ref.name}:?message}}")
        if ref.op == ":-" and ref.name in required:
            problems.append(f"{where}: required elsewhere, defaulted here")
    for name, value in example.items():
        if "PASSWORD" in name and value:
            problems.append(f".env.example: {name} has a value; ship passwords empty")
        if name not in {r.name for r in refs}:
            problems.append(f".env.example: {name} is not used by docker-compose.yml")
    for secret, spec in (model.compose.get("secrets") or {}).items():
        var = spec.get("environment")
        if var is not None and var not in required:
            problems.append(f"secret {secret}: from ${var}, which docker-compose.yml never requires with :?")
        if var is not None and var not in example:
            problems.append(f"secret {secret}: from ${var}, which is not in .env.example")
    return problems


def _depends(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "" for d in deps}
    return {d: str((spec or {}).get("condition", "")) for d, spec in deps.items()}


def _closure(model: Model, name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(_depends(model.services[name]))
    while todo:
        dep = todo.pop()
        if dep not in seen and dep in model.services:
            seen.add(dep)
            todo += list(_depends(model.services[dep]))
    return seen


def _exposed(svc: dict[str, Any]) -> set[int]:
    ports = {int(p) for p in svc.get("expose", [])}
    for entry in svc.get("ports", []):
        ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def _option(argv: list[str], option: str) -> str | None:
    for i, word in enumerate(argv):
        if word == option and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def _main_argv(name: str, svc: dict[str, Any]) -> list[str]:
    return next((argv for program, argv in invocations(name, svc) if program == "shopfloor"), [])


def _pointers(model: Model, site: SiteConfig) -> Iterator[tuple[str, str, str, int]]:
    """(service, what, host, port) for each address a service's command, environment or site file points at."""
    for name, svc in model.services.items():
        env = svc.get("environment") or {}
        urls = [(o, _option(argv, o)) for program, argv in invocations(name, svc) if program == "shopfloor"
                for o in URL_OPTIONS] if ours(svc) else []  # fmt: skip
        urls += [(key, str(env[key])) for key in URL_ENV if key in env]
        for what, url in urls:
            if url is None:
                continue
            parts = urlsplit(url)
            yield name, f"{what} {url}", parts.hostname or "", parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
        if ours(svc) and _main_argv(name, svc)[:1] == ["agent"]:
            for m in site.machines:
                yield name, f"machine {m.id} ({m.host}:{m.port})", m.host, m.port


def served_ports(name: str, svc: dict[str, Any], site: SiteConfig, mosquitto_conf: str) -> set[int] | None:
    """The ports a service really listens on beyond loopback, where the file says (None: trust `expose`)."""
    if ours(svc):
        argv = _main_argv(name, svc)
        if _option(argv, "--host") != "0.0.0.0":
            return set()
        if argv[:1] == ["simulate"]:
            return {m.port for m in site.machines}
        if argv[:1] == ["api"]:
            return {int(_option(argv, "--port") or 8000)}
        return set()
    if str(svc.get("image", "")).startswith("eclipse-mosquitto"):
        return {lst.port for lst in parse_conf(mosquitto_conf).listeners if not lst.loopback_only}
    return None


def address_problems(model: Model, site: SiteConfig, mosquitto_conf: str) -> list[str]:
    """Every address points at a service that exposes and serves that port, and that the pointer waits for."""
    problems = []
    for name, what, host, port in _pointers(model, site):
        target = model.services.get(host)
        if target is None:
            problems.append(f"{name}: {what}: {host!r} is not a service of docker-compose.yml")
            continue
        if port not in _exposed(target):
            problems.append(f"{name}: {what}: service {host} does not expose port {port}")
        served = served_ports(host, target, site, mosquitto_conf)
        if served is not None and port not in served:
            problems.append(f"{name}: {what}: service {host} does not listen on port {port} beyond its loopback")
        if host not in _closure(model, name):
            problems.append(f"{name}: {what}: does not depend_on {host} (directly or through another service)")
        if what.startswith("--mqtt mqtts") and _option(_main_argv(name, model.services[name]), "--mqtt-ca") is None:
            problems.append(f"{name}: {what}: TLS without --mqtt-ca (the broker's certificate is from a private CA)")
    for name, svc in model.services.items():
        served = served_ports(name, svc, site, mosquitto_conf)
        if served is not None and ours(svc):
            problems += [f"{name}: exposes {p}, which it does not serve" for p in sorted(_exposed(svc) - served)]
    return problems


_PROBE_PORT = re.compile(r"127\.0\.0\.1[:'\",\s]+(\d+)")


def health_problems(model: Model) -> list[str]:
    """Long-running services have a healthcheck and a restart policy; waits use conditions that can be met."""
    problems = []
    for name, svc in model.services.items():
        check = svc.get("healthcheck") or {}
        test = check.get("test")
        if one_shot(svc):
            if check:
                problems.append(f"{name}: a one-shot service with a healthcheck nobody can wait for")
            if not any(_depends(s).get(name) == "service_completed_successfully" for s in model.services.values()):
                problems.append(f"{name}: a one-shot nobody waits for (depends_on: service_completed_successfully)")
        else:
            if svc.get("restart") not in ("unless-stopped", "always", "on-failure"):
                problems.append(f"{name}: long-running without a restart policy (restart: unless-stopped)")
            if not test or test in (["NONE"], "NONE") or check.get("disable"):
                problems.append(f"{name}: long-running service without a healthcheck")
            elif ours(svc):
                argv = _main_argv(name, svc)
                serves = {int(p) for p in (_option(argv, "--metrics-port"), _option(argv, "--port")) if p}
                if argv[:1] == ["simulate"]:
                    serves |= {int(p) for p in svc.get("expose", [])}
                probed = {int(p) for p in _PROBE_PORT.findall(" ".join(map(str, test)))}
                if not probed or not probed <= serves:
                    problems.append(f"{name}: healthcheck probes {sorted(probed)}, the command serves {sorted(serves)}")
        for dep, condition in _depends(svc).items():
            if dep not in model.services:
                problems.append(f"{name}: depends_on {dep!r}, which is not a service")
                continue
            wanted = "service_completed_successfully" if one_shot(model.services[dep]) else "service_healthy"
            if condition != wanted:
                problems.append(f"{name}: depends_on {dep} with condition {condition or 'none'}; use {wanted}")
    return problems


def dockerfile_problems(model: Model) -> list[str]:
    """Multi-stage build; final stage on a slim Python base, non-root, shopfloor as entrypoint, no build tools."""
    problems = []
    lines = [ln.strip() for ln in model.dockerfile.replace("\\\n", " ").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    froms = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    if len(froms) < 2:
        return ["Dockerfile: not multi-stage (build the wheel in one stage, install it in another)"]
    final = lines[froms[-1] :]
    base = final[0].split()[1]
    if not re.fullmatch(r"python:3\.11[.\d]*-slim(-\w+)?", base):
        problems.append(f"Dockerfile: the final stage is based on {base}, not python:3.11-slim")
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: the final stage runs as root (add USER with a non-root uid)")
    entry = [ln for ln in final if ln.upper().startswith("ENTRYPOINT ")]
    if not entry or json.loads(entry[-1].split(None, 1)[1]) != ["shopfloor"]:
        problems.append('Dockerfile: the final stage\'s ENTRYPOINT is not ["shopfloor"]')
    body = " ".join(final)
    for tool in ("gcc", "build-essential", "python3-dev", "pip install build", 'pip install "build', "COPY . "):
        if tool in body:
            problems.append(f"Dockerfile: the final stage has {tool!r} (build in the build stage)")
    if not re.search(r"from=\w+", body) or ".whl" not in body:
        problems.append("Dockerfile: the final stage does not install the wheel built in the build stage")
    build_stage = " ".join(lines[: froms[-1]])
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        package = pattern.rstrip("*")
        if f"COPY {package}/" not in build_stage:
            problems.append(f"Dockerfile: the build stage does not copy {package}/, so the wheel would lack it")
    return problems


def dockerignore_problems(model: Model) -> list[str]:
    """The build context leaves environments, caches, test artifacts and secrets out, and keeps what is copied."""
    patterns = {ln.strip().rstrip("/") for ln in model.dockerignore.splitlines() if ln.strip() and ln[0] != "#"}
    problems = [
        f".dockerignore: does not exclude {p}"
        for p in (".venv", ".git", "**/__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "tests", ".env")
        if p not in patterns
    ]
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", model.dockerfile, re.M)
    for source in (s for line in copied for s in line.split()):
        if source.rstrip("/") in patterns:
            problems.append(f".dockerignore: excludes {source}, which the Dockerfile copies")
    return problems


# ---- mounted configs, as the containers see them ------------------------------------------------------------------


def materialise(svc: dict[str, Any], root: Path) -> Callable[[str], Path]:
    """Copy a service's bind mounts under root at their container paths; return container path -> local path."""
    for source, target, is_bind in mounts(svc):
        if not is_bind:
            continue
        src, dst = ROOT / source, root / target.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    return lambda path: root / path.lstrip("/")


def site_of(model: Model, tmp: Path, service: str = "agent") -> SiteConfig:
    """The site file as the service mounts it (profiles next to it)."""
    local = materialise(model.services[service], tmp)
    return load_site(local(_option(_main_argv(service, model.services[service]), "--site") or ""))


# ---- tests -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> Model:
    return load_model()


@pytest.fixture(scope="module")
def site(model: Model, tmp_path_factory: pytest.TempPathFactory) -> SiteConfig:
    return site_of(model, tmp_path_factory.mktemp("site"))


MOSQUITTO_CONF = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()


def test_every_command_is_a_real_shopfloor_command(model: Model) -> None:
    assert command_problems(model) == []
    names = {_main_argv(n, s)[0] for n, s in model.services.items() if ours(s)}
    assert names >= {"mqtt", "db", "simulate", "agent", "collect", "api"}


def test_paths_in_commands_are_mounted_or_secrets(model: Model) -> None:
    assert path_problems(model) == []


def test_mounts_exist_and_volumes_are_declared(model: Model) -> None:
    assert mount_problems(model) == []


def test_every_variable_is_in_the_example_env_and_passwords_are_required(model: Model) -> None:
    assert variable_problems(model) == []


def test_the_example_env_as_shipped_stops_compose_naming_a_password() -> None:
    text = COMPOSE.read_text()
    with pytest.raises(Unset, match=r"^SHOPFLOOR_\w+_PASSWORD: set SHOPFLOOR_\w+_PASSWORD in \.env"):
        interpolate_tree(yaml.safe_load(text), parse_env(ENV_EXAMPLE.read_text()))
    # Every password variable alone, left empty, stops it too.
    passwords = sorted({r.name for r in file_references(text) if "PASSWORD" in r.name})
    assert len(passwords) == 9, passwords
    full = stand_in_env(parse_env(ENV_EXAMPLE.read_text()), file_references(text))
    for name in passwords:
        with pytest.raises(Unset, match=f"^{name}: "):
            interpolate_tree(yaml.safe_load(text), {**full, name: ""})


def test_addresses_point_at_services_that_serve_them(model: Model, site: SiteConfig) -> None:
    assert address_problems(model, site, MOSQUITTO_CONF) == []
    pointed = {(host, port) for _, _, host, port in _pointers(model, site)}
    assert {("mosquitto", 8883), ("influxdb", 8086), ("postgres", 5432), ("simulator", 15020)} <= pointed


def test_healthchecks_restarts_and_waits(model: Model) -> None:
    assert health_problems(model) == []
    assert {n for n, s in model.services.items() if one_shot(s)} == {"mqtt-init", "db-init"}


def test_dockerfile_final_stage_is_slim_non_root_and_the_context_is_clean(model: Model) -> None:
    assert dockerfile_problems(model) == []
    assert dockerignore_problems(model) == []


def test_collectors_share_one_subscription_each_with_its_own_login(model: Model) -> None:
    collectors = {
        n: _main_argv(n, s) for n, s in model.services.items() if ours(s) and _main_argv(n, s)[:1] == ["collect"]
    }
    assert len(collectors) == 2
    assert {_option(a, "--topic-prefix") for a in collectors.values()} == {"$share/collectors/"}
    for option in ("--client-id", "--mqtt-username", "--mqtt-password-file"):
        assert len({_option(a, option) for a in collectors.values()}) == 2, option
    assert {_option(a, "--client-id") for a in collectors.values()} == {
        _option(a, "--mqtt-username") for a in collectors.values()
    }


def test_compose_site_is_the_example_site_with_the_simulator_as_host(model: Model, site: SiteConfig) -> None:
    example = load_site(EXAMPLE_SITE)
    assert {m.host for m in site.machines} == {"simulator"}
    assert [m.model_copy(update={"host": "x"}) for m in site.machines] == [
        m.model_copy(update={"host": "x"}) for m in example.machines
    ]
    assert site.model_dump(exclude={"machines"}) == example.model_dump(exclude={"machines"})


def test_billing_data_imported_by_db_init_fits_the_compose_site(model: Model, site: SiteConfig, tmp_path: Path) -> None:
    svc = model.services["db-init"]
    local = materialise(svc, tmp_path)
    files = [argv[-1] for program, argv in invocations("db-init", svc) if argv[:2] == ["db", "import"]]
    assert files == ["/etc/shopfloor/site.yaml", "/etc/shopfloor/billing.yaml"]
    billing = load_billing(local(files[1]), ZoneInfo(site.site.timezone))
    check_machines(billing, {m.id: m.profile for m in site.machines})
    assert billing.tenants


def test_mqtt_init_script_builds_a_broker_folder_that_passes_mqtt_check(
    model: Model, site: SiteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run mqtt-init's script for real, its container paths moved under tmp_path, secrets as files."""
    assert shutil.which("openssl"), "openssl is needed for the broker's certificates (Debian: apt-get install openssl)"
    svc = model.services["mqtt-init"]
    local = materialise(svc, tmp_path)
    secrets = {}
    for name in svc["secrets"]:
        secrets[name] = f"pw-{name}-0123456789"
        local(f"/run/secrets/{name}").parent.mkdir(parents=True, exist_ok=True)
        local(f"/run/secrets/{name}").write_text(secrets[name])
    for _, target, is_bind in mounts(svc):
        if not is_bind:
            local(target).mkdir(parents=True, exist_ok=True)
    moved = {
        p: str(local(p))
        for p in ("/etc/shopfloor", "/var/lib/shopfloor-broker", "/var/lib/shopfloor-ca", "/run/secrets")
    }

    def move(word: str) -> str:
        for prefix, there in moved.items():
            if word == prefix or word.startswith(prefix + "/"):
                return there + word[len(prefix) :]
        return word

    for program, argv in invocations("mqtt-init", svc):
        argv = [move(w) for w in argv]
        if program == "cp":
            for source in argv[:-1]:
                shutil.copy(source, argv[-1])
        elif program == "chmod":
            for path in argv[1:]:
                os.chmod(path, int(argv[0], 8))
        elif program == "sh":
            done = subprocess.run(["sh", *argv], capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
        else:
            assert program == "shopfloor"
            assert main(argv) == 0, capsys.readouterr()
    broker = local("/var/lib/shopfloor-broker")
    assert check_dir(broker, site) == []
    assert (broker / "mosquitto.conf").read_text() == MOSQUITTO_CONF
    assert {u.name for u in load_users(broker)} == {"edge-1", "collector-1", "collector-2", "api"}
    # The broker reads them through its group (mqtt-init's user: 10001:1883); Mosquitto warns on world-readable ones.
    for secret_file in ("passwd", "acl", "certs/server.key"):
        assert (broker / secret_file).stat().st_mode & 0o777 == 0o640, secret_file
    assert (local("/var/lib/shopfloor-ca") / "ca.crt").read_bytes() == (broker / "certs" / "ca.crt").read_bytes()
    # Each client's password file is a secret the broker knows, for the user the client logs in as.
    logins = {
        _option(_main_argv(n, s), "--mqtt-username"): _option(_main_argv(n, s), "--mqtt-password-file")
        for n, s in model.services.items()
        if ours(s) and _option(_main_argv(n, s), "--mqtt-username")
    }
    assert logins == {u: f"/run/secrets/mqtt-{u}" for u in ("edge-1", "collector-1", "collector-2", "api")}
    assert "secret" not in capsys.readouterr().out


def test_grafana_mounts_the_provisioning_and_dashboards_it_refers_to(model: Model, tmp_path: Path) -> None:
    svc = model.services["grafana"]
    local = materialise(svc, tmp_path)
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    datasources = local("/etc/grafana/provisioning/datasources")
    sources = [ds for f in sorted(datasources.glob("*.yaml")) for ds in yaml.safe_load(f.read_text())["datasources"]]
    assert sources, "no datasource provisioned"
    for f in datasources.glob("*.yaml"):
        used = set(re.findall(r"\$\{(\w+)\}", f.read_text()))
        assert used <= set(env), f"{f.name} reads {sorted(used - set(env))}, which grafana's environment lacks"
    influx = next(ds for ds in sources if ds["type"] == "influxdb")
    url = urlsplit(interpolate(influx["url"], env))
    assert (url.hostname, url.port) == ("influxdb", 8086)
    assert interpolate(influx["jsonData"]["dbName"], env) == "shopfloor"
    providers = [p for f in local("/etc/grafana/provisioning/dashboards").glob("*.yaml")
                 for p in yaml.safe_load(f.read_text())["providers"]]  # fmt: skip
    dashboards = [json.loads(f.read_text()) for p in providers for f in local(p["options"]["path"]).glob("*.json")]
    assert len(dashboards) == len(list((ROOT / "dashboards").glob("*.json"))) >= 4
    uids = {ds["uid"] for ds in sources}
    text = json.dumps(dashboards)
    assert set(re.findall(r'"uid": "(shopfloor-[a-z-]+)"', text)) & uids == {influx["uid"]}


def test_init_scripts_parse_as_shell() -> None:
    done = subprocess.run(
        ["sh", "-n", str(ROOT / "deploy" / "compose" / "broker-certs.sh")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


# ---- every rule catches what it is for -----------------------------------------------------------------------------


def _edit_command(service: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        svc = doc["services"][service]
        if isinstance(svc["command"], list) and len(svc["command"]) == 1 and "\n" in svc["command"][0]:
            assert old in svc["command"][0]
            svc["command"][0] = svc["command"][0].replace(old, new)
        else:
            assert old in svc["command"], (service, old)
            svc["command"] = [new if w == old else w for w in svc["command"]]

    return edit


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return edit


def _volumes(service: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        vols = doc["services"][service]["volumes"]
        assert old in vols
        vols[vols.index(old)] = new

    return edit


SITE_MOUNT = "./deploy/compose/site.yaml:/etc/shopfloor/site.yaml:ro"
BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], Callable[[Model], list[str]], str]] = [
    ("bad option", _edit_command("agent", "--metrics-port", "--metrics-prot"), command_problems,
     "unrecognized arguments: --metrics-prot 9102"),
    ("bad value", _edit_command("api", "8000", "eighty"), command_problems, "invalid int value"),
    ("unknown subcommand", _edit_command("collector-1", "collect", "colect"), command_problems, "invalid choice"),
    ("bad option in a script", _edit_command("db-init", "db upgrade", "db upgrade --to-head"), command_problems,
     "db-init: shopfloor db upgrade --to-head"),
    ("foreign program in a script", _edit_command("mqtt-init", "chmod 0640", "curl -k http://x/ #"), command_problems,
     "curl"),
    ("missing mount", _volumes("agent", SITE_MOUNT, "./deploy/compose/nope.yaml:/etc/shopfloor/site.yaml:ro"),
     mount_problems, "nope.yaml does not exist"),
    ("undeclared volume", _set("volumes.agent-data", None), mount_problems, "'agent-data' is not declared"),
    ("unmounted path", _volumes("agent", SITE_MOUNT, "./deploy/compose/site.yaml:/etc/site.yaml:ro"), path_problems,
     "/etc/shopfloor/site.yaml: neither mounted"),
    ("secret not granted", _set("services.agent.secrets", ["mqtt-api"]), path_problems,
     "/run/secrets/mqtt-edge-1: not one of the service's secrets"),
    ("address of no service", _edit_command("collector-2", "http://influxdb:8086", "http://influx:8086"),
     address_problems, "'influx' is not a service"),
    ("port not exposed", _edit_command("agent", "mqtts://mosquitto:8883", "mqtts://mosquitto:1883"),
     address_problems, "does not expose port 1883"),
    ("API listening on loopback", _edit_command("api", "0.0.0.0", "127.0.0.1"), address_problems,
     "api: exposes 8000, which it does not serve"),
    ("pointer without a wait", _set("services.collector-1.depends_on", {"mosquitto": {"condition": "service_healthy"}}),
     address_problems, "does not depend_on influxdb"),
    ("TLS without the CA", _edit_command("agent", "--mqtt-ca", "--mqtt-cert"), address_problems, "without --mqtt-ca"),
    ("no healthcheck", _set("services.api.healthcheck", None), health_problems, "api: long-running service without"),
    ("healthcheck on the wrong port", _set("services.collector-2.healthcheck.test",
     ["CMD", "python", "-c", "urlopen('http://127.0.0.1:9102/healthz')"]), health_problems, "probes [9102]"),
    ("no restart policy", _set("services.simulator.restart", None), health_problems, "simulator: a one-shot nobody"),
    ("wait without condition", _set("services.api.depends_on", ["db-init", "influxdb", "mosquitto"]),
     health_problems, "depends_on db-init with condition none"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "edit", "rule", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_compose_file_is_caught(
    model: Model, what: str, edit: Callable[[dict[str, Any]], None], rule: Callable[..., list[str]], expected: str
) -> None:
    doc = copy.deepcopy(model.compose)
    edit(doc)
    broken = Model(model.text, model.env_text, doc, model.dockerfile, model.dockerignore)
    args: list[Any] = [broken]
    if rule is address_problems:
        args += [
            load_site(EXAMPLE_SITE).model_copy(
                update={
                    "machines": [m.model_copy(update={"host": "simulator"}) for m in load_site(EXAMPLE_SITE).machines]
                }
            ),
            MOSQUITTO_CONF,
        ]
    problems = rule(*args)
    assert any(expected in p for p in problems), problems


def _required(var: str) -> str:
    """How docker-compose.yml requires a variable."""
    return f"${{{var}:?set {var} in .env (see deploy/compose/.env.example)}}"


TEXT_BROKEN = [
    ("undefined variable", "${SHOPFLOOR_SIM_SCENARIO:-demo}", "${SHOPFLOOR_SIM_SPEED:-demo}",
     "SHOPFLOOR_SIM_SPEED: used in docker-compose.yml"),
    ("password with a default", _required("SHOPFLOOR_PG_PASSWORD") + "@postgres:5432/shopfloor\n    depends_on",
     "${SHOPFLOOR_PG_PASSWORD:-shopfloor}@postgres:5432/shopfloor\n    depends_on", "a password has no default"),
    ("plain variable", "${SHOPFLOOR_IMAGE:-shopfloor:local}", "${SHOPFLOOR_IMAGE}", "give a default"),
    ("required without a message", _required("SHOPFLOOR_MQTT_API_PASSWORD"), "${SHOPFLOOR_MQTT_API_PASSWORD:?}",
     "needs a message"),
    ("secret never required", f"  - {_required('SHOPFLOOR_MQTT_EDGE_1_PASSWORD')}\n", "",
     "secret mqtt-edge-1: from $SHOPFLOOR_MQTT_EDGE_1_PASSWORD, which docker-compose.yml never requires"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "old", "new", "expected"), TEXT_BROKEN, ids=[b[0] for b in TEXT_BROKEN])
def test_a_broken_variable_is_caught(what: str, old: str, new: str, expected: str) -> None:
    text = COMPOSE.read_text()
    assert old in text
    problems = variable_problems(load_model(text.replace(old, new, 1)))
    assert any(expected in p for p in problems), problems


def test_a_variable_missing_from_the_example_env_and_a_shipped_password_are_caught(model: Model) -> None:
    env = ENV_EXAMPLE.read_text()
    assert "\nSHOPFLOOR_GRAFANA_PORT=3000\n" in env and "\nSHOPFLOOR_PG_PASSWORD=\n" in env
    broken = env.replace("\nSHOPFLOOR_GRAFANA_PORT=3000\n", "\n").replace(
        "\nSHOPFLOOR_PG_PASSWORD=\n", "\nSHOPFLOOR_PG_PASSWORD=hunter2\n"
    )
    problems = variable_problems(Model(model.text, broken, model.compose, model.dockerfile, model.dockerignore))
    assert any("SHOPFLOOR_GRAFANA_PORT: used in docker-compose.yml" in p for p in problems), problems
    assert any("SHOPFLOOR_PG_PASSWORD has a value" in p for p in problems), problems


def test_the_compose_site_pointing_elsewhere_is_caught(model: Model, site: SiteConfig) -> None:
    moved = site.model_copy(
        update={"machines": [site.machines[0].model_copy(update={"host": "plc-01"}), *site.machines[1:]]}
    )
    assert any(
        "machine cnc-01 (plc-01:15020): 'plc-01' is not a service" in p
        for p in address_problems(model, moved, MOSQUITTO_CONF)
    )
    wrong_port = site.model_copy(
        update={"machines": [site.machines[0].model_copy(update={"port": 15099}), *site.machines[1:]]}
    )
    problems = address_problems(model, wrong_port, MOSQUITTO_CONF)
    assert any("simulator does not expose port 15099" in p for p in problems), problems


def test_a_broker_config_with_a_plain_listener_is_caught(model: Model, site: SiteConfig) -> None:
    plain = MOSQUITTO_CONF.replace("listener 8883\n", "listener 8884\n")
    assert any("mosquitto does not listen on port 8883" in p for p in address_problems(model, site, plain))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("USER 10001:10001", "USER root", "runs as root"),
        ("USER 10001:10001", "", "runs as root"),
        ("FROM python:3.11-slim AS runtime", "FROM python:3.11 AS runtime", "not python:3.11-slim"),
        ('ENTRYPOINT ["shopfloor"]', 'ENTRYPOINT ["python"]', "ENTRYPOINT"),
        ("COPY collector/ collector/\n", "", "does not copy collector/"),
        ("HEALTHCHECK NONE", "RUN apt-get install -y gcc", "'gcc'"),
    ],
)
def test_a_broken_dockerfile_is_caught(model: Model, old: str, new: str, expected: str) -> None:
    assert old in model.dockerfile
    broken = Model(model.text, model.env_text, model.compose, model.dockerfile.replace(old, new), model.dockerignore)
    assert any(expected in p for p in dockerfile_problems(broken)), dockerfile_problems(broken)


def test_a_leaky_dockerignore_is_caught(model: Model) -> None:
    leaky = model.dockerignore.replace(".venv/\n", "").replace("\n.env\n", "\napi/\n")
    problems = dockerignore_problems(Model(model.text, model.env_text, model.compose, model.dockerfile, leaky))
    assert any("does not exclude .venv" in p for p in problems), problems
    assert any("does not exclude .env" in p for p in problems), problems
    assert any("excludes api/, which the Dockerfile copies" in p for p in problems), problems


def test_interpolation_follows_compose() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("$$share/${A}/$A/${B:-d}/${E:-d}/${E-d}/${A:+y}/${E:+y}", env) == "$share/1/1/d/d//y/"
    with pytest.raises(Unset, match=r"^E: say so$"):
        interpolate("${E:?say so}", env)
    assert interpolate("${E?unset only}", env) == ""
    assert references("$$X ${A:?m} $B") == [Ref("A", ":?", "m"), Ref("B", "", "")]
