"""Mosquitto deployment files for a site: users file, ACL, password-file entries and config checks.

Pure functions over text and plain objects; `shopfloor mqtt` (shopfloor/mqtt_cli.py) does the file I/O.
The ACL is always generated from the site file and the users file, never edited by hand, so `check` can
demand that the file on disk is exactly what would be generated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from shopfloor.config import SiteConfig
from shopfloor.contracts import ID_PATTERN, MAX_PAYLOAD_BYTES, TOPIC_ROOT, Topic, is_valid_id

# A broker user name is an id: it goes into ACL lines, the password file and (as an agent's id) into topics,
# so a name with a space, newline, ':', '#' or '+' could add lines or wildcards there.
NAME_PATTERN = ID_PATTERN
# Mosquitto 2.x password hashes: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key, 101 iterations (what
# mosquitto_passwd 2.0.11 writes), standard base64 with padding: name:$7$101$<salt>$<hash>.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12
_HASH_BYTES = 64
_PASSWORD_LINE = re.compile(rf"^({NAME_PATTERN}):(\$[67]\$.+)$")
# Full MQTT packet: the 256 KiB payload limit plus topic, fixed header and v5 properties.
MIN_PACKET_SIZE = MAX_PAYLOAD_BYTES + 1024
# Where the shipped mosquitto.conf expects its folder (the eclipse-mosquitto image's config volume).
CONTAINER_CONFIG_DIR = "/mosquitto/config/"


class BrokerConfError(ValueError):
    """A broker user, users file or password file is invalid; the message says what and where."""


class Role(StrEnum):
    """What a broker user is for."""

    AGENT = "agent"
    COLLECTOR = "collector"
    READER = "reader"


_ROLE_ORDER = {Role.AGENT: 0, Role.COLLECTOR: 1, Role.READER: 2}


def check_name(name: str, what: str = "user name") -> str:
    """Return name if it is a safe broker user name; raise BrokerConfError otherwise."""
    if not isinstance(name, str) or not is_valid_id(name):
        raise BrokerConfError(f"{what} {name!r} is not allowed (expected {NAME_PATTERN}: lower case, digits, '-')")
    return name


@dataclass(frozen=True, slots=True)
class BrokerUser:
    """One login of the broker: who it is, what it is for, which site and (agents) which machines."""

    name: str
    role: Role
    site: str
    machines: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        check_name(self.name)
        check_name(self.site, "site id")
        if self.role is Role.AGENT:
            if not self.machines:
                raise BrokerConfError(f"agent {self.name!r}: no machines")
            for machine in self.machines:
                check_name(machine, f"agent {self.name!r}: machine id")
            if len(set(self.machines)) != len(self.machines):
                raise BrokerConfError(f"agent {self.name!r}: a machine is listed twice in {list(self.machines)}")
        elif self.machines:
            raise BrokerConfError(f"{self.role} {self.name!r}: only agents have machines")

    def to_dict(self) -> dict[str, Any]:
        """The user's entry in the users file."""
        entry: dict[str, Any] = {"name": self.name, "role": str(self.role), "site": self.site}
        if self.machines:
            entry["machines"] = list(self.machines)
        return entry


def _sorted(users: Iterable[BrokerUser]) -> list[BrokerUser]:
    return sorted(users, key=lambda u: (_ROLE_ORDER[u.role], u.name))


# ---- users file ---------------------------------------------------------------------------------------------

USERS_HEADER = (
    "# Broker users of this deployment, written by `shopfloor mqtt add-agent | add-collector | add-reader | remove`.\n"
    "# The ACL (acl) is generated from this file and the site file; passwords live only in passwd (hashed).\n"
)


def parse_users(text: str, where: str = "users.yaml") -> list[BrokerUser]:
    """Parse a users file; raise BrokerConfError naming the entry that is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BrokerConfError(f"{where}: invalid YAML: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) - {"users"}:
        raise BrokerConfError(f"{where}: expected a mapping with one key, 'users'")
    entries = data.get("users") or []
    if not isinstance(entries, list):
        raise BrokerConfError(f"{where}: 'users' must be a list")
    users: list[BrokerUser] = []
    for index, entry in enumerate(entries):
        here = f"{where}: users[{index}]"
        if not isinstance(entry, dict) or not {"name", "role", "site"} <= set(entry):
            raise BrokerConfError(f"{here}: expected a mapping with name, role, site (and machines for an agent)")
        extra = set(entry) - {"name", "role", "site", "machines"}
        if extra:
            raise BrokerConfError(f"{here}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
        machines = entry.get("machines") or []
        if not isinstance(machines, list):
            raise BrokerConfError(f"{here}: 'machines' must be a list")
        try:
            role = Role(entry["role"])
        except ValueError as exc:
            raise BrokerConfError(f"{here}: role {entry['role']!r} is not one of {', '.join(Role)}") from exc
        try:
            users.append(BrokerUser(entry["name"], role, entry["site"], tuple(machines)))
        except BrokerConfError as exc:
            raise BrokerConfError(f"{here}: {exc}") from exc
    names = [u.name for u in users]
    for name in names:
        if names.count(name) > 1:
            raise BrokerConfError(f"{where}: user {name!r} is listed more than once")
    return users


def render_users(users: Iterable[BrokerUser]) -> str:
    """Render a users file (sorted by role, then name)."""
    body = yaml.safe_dump({"users": [u.to_dict() for u in _sorted(users)]}, sort_keys=False, default_flow_style=None)
    return USERS_HEADER + body


# ---- the site's agents section ------------------------------------------------------------------------------


def site_agents(site: SiteConfig) -> dict[str, tuple[str, ...]] | None:
    """Map agent id -> machine ids from the site's `agents:` section, or None if the site declares none."""
    # The section is newer than some site files (and than some versions of SiteConfig): absent means undeclared.
    agents = getattr(site, "agents", None)
    if not agents:
        return None
    out: dict[str, tuple[str, ...]] = {}
    for agent in agents:
        agent_id = getattr(agent, "id", None)
        machines = getattr(agent, "machines", None)
        if not isinstance(agent_id, str) or machines is None:
            raise BrokerConfError(
                f"site {site.site.id!r}: cannot read its agents section (expected entries with id and machines, "
                f"got {agent!r})"
            )
        out[agent_id] = tuple(machines)
    return out


def check_agent(site: SiteConfig, name: str, machines: Sequence[str]) -> list[str]:
    """Return the problems with agent `name` publishing for `machines` at this site (empty if none)."""
    problems = []
    known = {m.id for m in site.machines}
    unknown = [m for m in machines if m not in known]
    if unknown:
        problems.append(
            f"agent {name!r}: machine(s) {', '.join(unknown)} are not machines of site {site.site.id!r} "
            f"(known: {', '.join(sorted(known))})"
        )
    declared = site_agents(site)
    if declared is not None:
        if name not in declared:
            problems.append(
                f"agent {name!r} is not in the agents section of site {site.site.id!r} "
                f"(declared: {', '.join(sorted(declared)) or 'none'}); add it there first"
            )
        elif set(machines) != set(declared[name]):
            problems.append(
                f"agent {name!r}: machines {', '.join(machines)} disagree with the site's agents section, "
                f"which gives it {', '.join(declared[name])}"
            )
    return problems


def check_users(site: SiteConfig, users: Sequence[BrokerUser]) -> list[str]:
    """Return every problem of the users against the site: wrong site, unknown or shared machines, agents section."""
    problems = []
    served: dict[str, str] = {}
    for user in _sorted(users):
        if user.site != site.site.id:
            problems.append(f"user {user.name!r} is for site {user.site!r}, but the site file is {site.site.id!r}")
            continue
        if user.role is not Role.AGENT:
            continue
        problems.extend(check_agent(site, user.name, user.machines))
        for machine in user.machines:
            if machine in served:
                problems.append(
                    f"machine {machine!r} is served by both agents {served[machine]!r} and {user.name!r}: "
                    "either could publish the other's figures"
                )
            served.setdefault(machine, user.name)
    return problems


# ---- ACL ----------------------------------------------------------------------------------------------------


def _agent_lines(user: BrokerUser, site: SiteConfig) -> list[str]:
    order = {m.id: i for i, m in enumerate(site.machines)}
    lines = [f"# agent {user.name}: its machines' telemetry and status, its own status (and last will); its commits"]
    lines.append(f"user {user.name}")
    for machine in sorted(user.machines, key=lambda m: order.get(m, len(order))):
        lines.append(f"topic write {Topic.telemetry(user.site, machine)}")
        lines.append(f"topic write {Topic.machine_status(user.site, machine)}")
    lines.append(f"topic write {Topic.agent_status(user.site, user.name)}")
    lines.append(f"topic read {Topic.commits(user.site, user.name)}")
    return lines


def _reads(site_id: str) -> list[str]:
    return [
        f"topic read {TOPIC_ROOT}/{site_id}/+/telemetry",
        f"topic read {TOPIC_ROOT}/{site_id}/+/status",
        f"topic read {TOPIC_ROOT}/{site_id}/agents/+/status",
    ]


def render_acl(site: SiteConfig, users: Sequence[BrokerUser]) -> str:
    """Generate the Mosquitto acl_file for the users of a site; raise BrokerConfError if a user does not fit it."""
    problems = check_users(site, users)
    if problems:
        raise BrokerConfError("; ".join(problems))
    out = [
        f"# Mosquitto ACL for site {site.site.id}, generated by `shopfloor mqtt acl` from the site file and",
        "# users.yaml: do not edit, regenerate (`shopfloor mqtt check` fails on any difference).",
        "# No lines before the first `user`: they would apply to anonymous clients. A user without a block,",
        "# and any topic not listed under a user, is denied. Only agents and collectors may publish.",
    ]
    for user in _sorted(users):
        out.append("")
        if user.role is Role.AGENT:
            out.extend(_agent_lines(user, site))
        elif user.role is Role.COLLECTOR:
            out.append(f"# collector {user.name}: reads telemetry and statuses; publishes any agent's commits")
            out.append(f"user {user.name}")
            out.extend(_reads(user.site))
            out.append(f"topic write {TOPIC_ROOT}/{user.site}/agents/+/commits")
        else:
            out.append(f"# reader {user.name}: reads telemetry and statuses, publishes nothing")
            out.append(f"user {user.name}")
            out.extend(_reads(user.site))
    return "\n".join(out) + "\n"


# ---- password file ------------------------------------------------------------------------------------------


def check_password(password: str) -> str:
    """Return password if it can be a broker password; raise BrokerConfError otherwise."""
    if not password:
        raise BrokerConfError("the password is empty")
    if any(not ch.isprintable() for ch in password):
        raise BrokerConfError("the password contains a control character (newline, tab, ...)")
    if len(password) > 1024:
        raise BrokerConfError("the password is longer than 1024 characters")
    return password


def new_password() -> str:
    """Return a fresh random password (32 bytes, URL-safe text)."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Return a Mosquitto 2.x `$7$` (PBKDF2-SHA512) hash of password."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", check_password(password).encode("utf-8"), salt, iterations, _HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Return whether password matches a Mosquitto `$7$` or `$6$` hash, as the broker would decide."""
    parts = hashed.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            salt, want = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)
            got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]), len(want))
        elif len(parts) == 4 and parts[1] == "6":
            salt, want = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
            got = hashlib.sha512(password.encode("utf-8") + salt).digest()
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def parse_password_file(text: str, where: str = "passwd") -> dict[str, str]:
    """Map user name -> hash from a Mosquitto password file; raise BrokerConfError on a line that is not one."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _PASSWORD_LINE.match(line)
        if match is None:
            shown = line.split(":", 1)[0][:40]
            raise BrokerConfError(
                f"{where}:{number}: not a `name:$7$...` entry (user {shown!r}); reset it with shopfloor mqtt add-*"
            )
        name, hashed = match.groups()
        if name in entries:
            raise BrokerConfError(f"{where}:{number}: user {name!r} has a second entry")
        entries[name] = hashed
    return entries


def render_password_file(entries: dict[str, str]) -> str:
    """Render a Mosquitto password file (sorted by name)."""
    for name, hashed in entries.items():
        check_name(name)
        if "\n" in hashed or not hashed.startswith(("$7$", "$6$")):
            raise BrokerConfError(f"password entry of {name!r} is not a Mosquitto hash")
    return "".join(f"{name}:{entries[name]}\n" for name in sorted(entries))


def check_passwords(users: Sequence[BrokerUser], entries: dict[str, str]) -> list[str]:
    """Return the users without a password entry and the password entries without a user."""
    names = {u.name for u in users}
    problems = [
        f"user {name!r} has no password entry in passwd (set one with shopfloor mqtt add-*)"
        for name in sorted(names - set(entries))
    ]
    problems += [
        f"passwd has an entry for {name!r}, who is not in users.yaml (remove it: shopfloor mqtt remove {name})"
        for name in sorted(set(entries) - names)
    ]
    return problems


# ---- mosquitto.conf -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listener:
    """One `listener` block of a mosquitto.conf and the options given inside it."""

    line: int
    port: int
    bind: str
    options: dict[str, str]

    @property
    def tls(self) -> bool:
        """Whether the listener speaks TLS (certificate and key given)."""
        return "certfile" in self.options and "keyfile" in self.options

    @property
    def loopback_only(self) -> bool:
        """Whether only this host can reach the listener."""
        return self.bind in ("127.0.0.1", "::1", "localhost")


_LISTENER_OPTIONS = frozenset(
    {
        "use_username_as_clientid",
        "cafile",
        "capath",
        "certfile",
        "keyfile",
        "tls_version",
        "require_certificate",
        "use_identity_as_username",
        "use_subject_as_username",
        "ciphers",
        "ciphers_tls1.3",
        "protocol",
        "socket_domain",
        "bind_interface",
        "max_connections",
        "mount_point",
        "http_dir",
        "crlfile",
        "dhparamfile",
        "psk_hint",
        "max_topic_alias",
        "max_qos",
        "websockets_headers_size",
    }
)


@dataclass(frozen=True, slots=True)
class BrokerConf:
    """The directives of a mosquitto.conf that Shopfloor cares about (last one wins, as in Mosquitto)."""

    settings: dict[str, str]
    listeners: list[Listener]


def parse_conf(text: str, where: str = "mosquitto.conf") -> BrokerConf:
    """Parse a mosquitto.conf into global settings and listener blocks; raise BrokerConfError if malformed."""
    settings: dict[str, str] = {}
    listeners: list[Listener] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if key == "listener":
            port, _, bind = value.partition(" ")
            if not port.isdigit() or not 0 <= int(port) <= 65535:
                raise BrokerConfError(f"{where}:{number}: listener port {port!r} is not a port number")
            listeners.append(Listener(number, int(port), bind.strip(), {}))
        elif key in _LISTENER_OPTIONS and listeners:
            listeners[-1].options[key] = value
        else:
            settings[key] = value
    return BrokerConf(settings, listeners)


def check_conf(conf: BrokerConf, where: str = "mosquitto.conf") -> list[str]:
    """Return what keeps a parsed mosquitto.conf from being a safe Shopfloor broker (empty if nothing)."""
    s = conf.settings
    problems = []
    if s.get("per_listener_settings", "false") != "false":
        problems.append(f"{where}: per_listener_settings must be false (one password file and ACL for all)")
    if s.get("allow_anonymous") != "false":
        problems.append(f"{where}: allow_anonymous must be false (it is {s.get('allow_anonymous', 'not set')})")
    for key in ("password_file", "acl_file"):
        if not s.get(key):
            problems.append(f"{where}: {key} is not set")
    if "include_dir" in s:
        problems.append(f"{where}: include_dir would add settings this check cannot see; put them in this file")
    if not conf.listeners:
        problems.append(f"{where}: no listener")
    for lst in conf.listeners:
        here = f"{where}:{lst.line}: listener {lst.port}"
        if lst.options.get("use_username_as_clientid") != "true":
            problems.append(
                f"{here}: use_username_as_clientid true is missing, so one user could take over another's session"
            )
        if not lst.tls and not lst.loopback_only:
            problems.append(
                f"{here}: plain MQTT on {lst.bind or 'all interfaces'}: passwords would cross the shop-floor network "
                "in clear; bind it to 127.0.0.1 or give it cafile/certfile/keyfile"
            )
        if lst.tls and not lst.options.get("cafile") and not lst.options.get("capath"):
            problems.append(f"{here}: TLS without cafile")
    size = s.get("max_packet_size", "")
    if not size.isdigit() or not MIN_PACKET_SIZE <= int(size) <= 4 * MIN_PACKET_SIZE:
        problems.append(
            f"{where}: max_packet_size must be {MIN_PACKET_SIZE}..{4 * MIN_PACKET_SIZE} bytes "
            f"(payload limit {MAX_PAYLOAD_BYTES} plus headers), it is {size or 'not set'}"
        )
    if s.get("persistence") != "true":
        problems.append(f"{where}: persistence must be true (retained statuses, collector sessions)")
    elif not s.get("persistence_location"):
        problems.append(f"{where}: persistence_location is not set")
    return problems


def check_all(
    site: SiteConfig,
    users: Sequence[BrokerUser],
    passwords: dict[str, str],
    acl_on_disk: str,
    conf: BrokerConf,
) -> list[str]:
    """Return every problem of a deployment's files against the site (the file existence checks are the caller's)."""
    problems = check_users(site, users)
    if not problems and acl_on_disk != render_acl(site, users):
        problems.append("acl is not what `shopfloor mqtt acl` generates from the site and users.yaml; regenerate")
    agent_users = {u.name for u in users if u.role is Role.AGENT}
    problems += [
        f"site {site.site.id!r} declares agent {name!r}, which has no broker user: it cannot connect "
        f"(shopfloor mqtt add-agent {name})"
        for name in sorted(set(site_agents(site) or {}) - agent_users)
    ]
    problems += check_passwords(users, passwords)
    problems += check_conf(conf)
    return problems
