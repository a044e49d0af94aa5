"""`shopfloor mqtt`: manage the broker's users, password file and ACL in a deployment folder (deploy/mosquitto/).

The folder holds mosquitto.conf, users.yaml (who may log in, as what, for which machines), passwd (Mosquitto
password file, hashes only) and acl (generated from the site file and users.yaml, never edited by hand).
After a change, make the broker reload them: `kill -HUP <mosquitto pid>` (docker: `docker kill -s HUP ...`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopfloor.brokerconf import (
    CONTAINER_CONFIG_DIR,
    BrokerConfError,
    BrokerUser,
    Role,
    check_all,
    check_name,
    check_password,
    hash_password,
    new_password,
    parse_conf,
    parse_password_file,
    parse_users,
    render_acl,
    render_password_file,
    render_users,
    site_agents,
)
from shopfloor.config import SiteConfig, load_site

DEFAULT_DIR = Path("deploy/mosquitto")
CONF_FILE = "mosquitto.conf"
USERS_FILE = "users.yaml"
PASSWD_FILE = "passwd"
ACL_FILE = "acl"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise BrokerConfError(f"{path}: cannot read ({exc})") from exc


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace path atomically (a broker reloading on SIGHUP never sees half a file); keep an existing mode."""
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode & 0o777
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_users(directory: Path) -> list[BrokerUser]:
    """Read the users file of a deployment folder (none yet: no users)."""
    path = directory / USERS_FILE
    return parse_users(_read(path), str(path))


def load_passwords(directory: Path) -> dict[str, str]:
    """Read the password file of a deployment folder (none yet: no entries)."""
    path = directory / PASSWD_FILE
    return parse_password_file(_read(path), str(path))


def _passwd_binary() -> str | None:
    return shutil.which("mosquitto_passwd") or next(
        (p for p in ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd") if Path(p).exists()), None
    )


def mosquitto_hash(name: str, password: str, binary: str | None = None) -> str:
    """Hash password as Mosquitto's own mosquitto_passwd does, if installed; else in Python (same `$7$` format)."""
    binary = binary or _passwd_binary()
    check_password(password)
    if binary is None:
        return hash_password(password)
    with tempfile.TemporaryDirectory(prefix="sf-passwd-") as tmp:
        scratch = Path(tmp) / "passwd"
        # Not `-b NAME PASSWORD`: the command line of a process is visible to every user of the host (ps).
        done = subprocess.run(
            [binary, "-c", str(scratch), check_name(name)],
            input=f"{password}\n{password}\n",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        entries = parse_password_file(_read(scratch), binary) if done.returncode == 0 else {}
    if name not in entries:
        raise BrokerConfError(f"{binary} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")
    return entries[name]


def _save(directory: Path, site: SiteConfig, users: list[BrokerUser], passwords: dict[str, str]) -> None:
    acl = render_acl(site, users)  # refuses users that do not fit the site before anything is written
    _write(directory / USERS_FILE, render_users(users))
    _write(directory / PASSWD_FILE, render_password_file(passwords), mode=0o600)
    _write(directory / ACL_FILE, acl)


def add_user(
    directory: Path,
    site: SiteConfig,
    name: str,
    role: Role,
    machines: Sequence[str] | None = None,
    password: str | None = None,
    passwd_binary: str | None = None,
) -> str:
    """Create or replace broker user `name`, regenerate the ACL; return its password (generated if not given).

    An agent's machines default to those the site's agents section gives it; passwd_binary="" hashes in Python.
    """
    check_name(name)
    users = load_users(directory)
    passwords = load_passwords(directory)
    old = next((u for u in users if u.name == name), None)
    if old is not None and old.role is not role:
        raise BrokerConfError(f"user {name!r} exists as a {old.role}; remove it first (shopfloor mqtt remove {name})")
    if role is Role.AGENT:
        if not machines:
            declared = site_agents(site) or {}
            if name not in declared:
                raise BrokerConfError(f"agent {name!r}: give --machines (the site's agents section does not name it)")
            machines = declared[name]
        user = BrokerUser(name, role, site.site.id, tuple(machines))
    else:
        if machines:
            raise BrokerConfError(f"a {role} has no machines")
        user = BrokerUser(name, role, site.site.id)
    users = [u for u in users if u.name != name] + [user]
    render_acl(site, users)  # say what is wrong before spending a hash
    password = check_password(password) if password is not None else new_password()
    passwords[name] = mosquitto_hash(name, password, passwd_binary) if passwd_binary != "" else hash_password(password)
    _save(directory, site, users, passwords)
    return password


def remove_user(directory: Path, site: SiteConfig, name: str) -> None:
    """Delete broker user `name` (users file and password file) and regenerate the ACL."""
    check_name(name)
    users = load_users(directory)
    passwords = load_passwords(directory)
    if name not in {u.name for u in users} and name not in passwords:
        raise BrokerConfError(f"no broker user {name!r} in {directory}")
    passwords.pop(name, None)
    _save(directory, site, [u for u in users if u.name != name], passwords)


def write_acl(directory: Path, site: SiteConfig) -> Path:
    """Regenerate the ACL of a deployment folder from the site and its users file."""
    path = directory / ACL_FILE
    _write(path, render_acl(site, load_users(directory)))
    return path


def resolve(directory: Path, value: str) -> Path:
    """Map a path named in mosquitto.conf to this machine: relative to the folder, or the folder as mounted."""
    if value.startswith(CONTAINER_CONFIG_DIR) and not Path(value).exists():
        return directory / value.removeprefix(CONTAINER_CONFIG_DIR)
    path = Path(value)
    return path if path.is_absolute() else directory / path


def check_dir(directory: Path, site: SiteConfig) -> list[str]:
    """Return every problem of a deployment folder against the site (empty: ok)."""
    conf_path = directory / CONF_FILE
    if not conf_path.is_file():
        return [f"{conf_path}: no such file"]
    try:
        conf = parse_conf(_read(conf_path), str(conf_path))
        users = load_users(directory)
    except BrokerConfError as exc:
        return [str(exc)]
    problems = []
    if not (directory / USERS_FILE).is_file():
        problems.append(f"{directory / USERS_FILE}: no such file (add users with shopfloor mqtt add-*)")
    files: dict[str, Path] = {}
    for key in ("password_file", "acl_file"):
        if conf.settings.get(key):
            files[key] = resolve(directory, conf.settings[key])
            if not files[key].is_file():
                problems.append(f"{conf_path}: {key} {conf.settings[key]} does not exist (looked at {files[key]})")
    for lst in conf.listeners:
        for key in ("cafile", "certfile", "keyfile"):
            if lst.options.get(key) and not resolve(directory, lst.options[key]).is_file():
                problems.append(f"{conf_path}:{lst.line}: listener {lst.port}: {key} {lst.options[key]} does not exist")
    try:
        pw_path = files.get("password_file")
        passwords = parse_password_file(_read(pw_path), str(pw_path)) if pw_path else {}
    except BrokerConfError as exc:
        problems.append(str(exc))
        passwords = {}
    acl_path = files.get("acl_file")
    problems += check_all(site, users, passwords, _read(acl_path) if acl_path else "", conf)
    return problems


# ---- command line -------------------------------------------------------------------------------------------


def _machines(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def _password_from(arg: str | None) -> str | None:
    if arg is None:
        return None
    text = sys.stdin.read() if arg == "-" else _read_or_fail(Path(arg))
    lines = text.splitlines()
    if not lines:
        raise BrokerConfError(f"--password-file {arg}: empty")
    return lines[0]


def _read_or_fail(path: Path) -> str:
    if not path.is_file():
        raise BrokerConfError(f"--password-file {path}: no such file")
    return _read(path)


def _added(args: argparse.Namespace, role: Role) -> int:
    site = load_site(args.site)
    given = _password_from(args.password_file)
    machines = _machines(args.machines) if getattr(args, "machines", None) else None
    password = add_user(Path(args.dir), site, args.name, role, machines, given)
    if given is None:
        print(f"password of {role} {args.name!r} (shown once, give it to its operator): {password}")
    print(f"wrote {args.dir}/{USERS_FILE}, {PASSWD_FILE} and {ACL_FILE}; reload the broker (SIGHUP) to apply")
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.action(args))
    except BrokerConfError as exc:
        print(f"shopfloor mqtt {args.mqtt_command}: error: {exc}", file=sys.stderr)
        return 2


def _remove(args: argparse.Namespace) -> int:
    remove_user(Path(args.dir), load_site(args.site), args.name)
    print(f"removed {args.name!r}; reload the broker (SIGHUP) to apply")
    return 0


def _acl(args: argparse.Namespace) -> int:
    print(f"wrote {write_acl(Path(args.dir), load_site(args.site))}")
    return 0


def _check(args: argparse.Namespace) -> int:
    problems = check_dir(Path(args.dir), load_site(args.site))
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print("ok")
    return 0


def add_parser(sub: Any) -> None:
    """Register `shopfloor mqtt` and its subcommands."""
    p = sub.add_parser(
        "mqtt",
        help="broker users, password file and ACL (deploy/mosquitto/)",
        description="Manage the Mosquitto deployment folder: one login per agent, collector and API reader; the "
        "ACL is generated from the site file and users.yaml. Exit codes: 0 ok, 1 check found problems, 2 error.",
    )
    actions = p.add_subparsers(dest="mqtt_command", required=True, metavar="ACTION")

    def action(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        a.add_argument("--site", required=True, help="site config YAML")
        a.add_argument("--dir", default=str(DEFAULT_DIR), help="deployment folder (default: %(default)s)")
        a.set_defaults(func=_run, action=func)
        return a

    for name, role, what in (
        ("add-agent", Role.AGENT, "an edge agent: publishes its machines, reads its commits"),
        ("add-collector", Role.COLLECTOR, "a collector: reads telemetry and statuses, publishes commits"),
        ("add-reader", Role.READER, "an API reader: reads telemetry and statuses"),
    ):
        a = action(name, lambda args, role=role: _added(args, role), f"add or replace {what}")
        a.add_argument("name", help="user name ([a-z0-9][a-z0-9-]{0,62}); for an agent, its agent id")
        if role is Role.AGENT:
            a.add_argument("--machines", help="comma-separated machine ids (default: the site's agents section)")
        a.add_argument("--password-file", help="read the password from this file ('-': stdin) instead of making one")
    a = action("remove", _remove, "remove a user")
    a.add_argument("name")
    action("acl", _acl, "regenerate the ACL from the site file and users.yaml")
    action("check", _check, "check the folder against the site: users, passwords, ACL, mosquitto.conf")
