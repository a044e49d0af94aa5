"""The `shopfloor` command: one subcommand per component."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopfloor.settings import SettingsError, settings
from shopfloor.yamlfile import ConfigError

if TYPE_CHECKING:
    from shopfloor.mqtt import MqttSettings
    from shopfloor.store import LineStore

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def add_common(parser: argparse.ArgumentParser) -> None:
    """Add --site and --log-level (defaults from SHOPFLOOR_* environment variables)."""
    env = settings()
    parser.add_argument("--site", default=str(env.site), help="site config YAML (default: %(default)s)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: %(default)s"
    )


def add_mqtt(parser: argparse.ArgumentParser) -> None:
    """Add --mqtt (default from SHOPFLOOR_MQTT_URL)."""
    parser.add_argument(
        "--mqtt",
        default=settings().mqtt_url,
        help="MQTT broker URL, mqtt://[user:pass@]host:port (default: %(default)s)",
    )


def add_metrics(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add --metrics-port and --metrics-host; return the group for a component's own health options."""
    g = parser.add_argument_group("metrics and health")
    g.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics and /healthz on this port (default: off; 0: any free port)",
    )
    g.add_argument("--metrics-host", default="127.0.0.1", help="address to serve metrics on (default: %(default)s)")
    return g


def add_mqtt_login(parser: argparse.ArgumentParser) -> None:
    """Add the broker login and TLS options that mqtt_settings() reads."""
    g = parser.add_argument_group("broker login and TLS")
    g.add_argument("--mqtt-username", default=None, help="broker user name (also in the URL: mqtt://user:pass@host)")
    g.add_argument(
        "--mqtt-password-file", type=Path, default=None, help="file holding the broker password (first line)"
    )
    g.add_argument("--mqtt-ca", default=None, help="CA certificate file (mqtts:// URLs)")
    g.add_argument("--mqtt-cert", default=None, help="client certificate file (mqtts://)")
    g.add_argument("--mqtt-key", default=None, help="client key file (mqtts://)")
    g.add_argument(
        "--mqtt-protocol", default="auto", choices=["auto", "5", "3.1.1"], help="MQTT version (default: auto)"
    )


def read_secret(path: Path, option: str) -> str:
    """The first line of a secret file (password, token); raise ValueError naming the option if unreadable."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"{option} {str(path)!r}: cannot read ({exc})") from exc
    return lines[0] if lines else ""


def mqtt_settings(args: argparse.Namespace, **extra: Any) -> MqttSettings:
    """Broker settings from --mqtt and the add_mqtt_login options (extra sets other fields); raise ValueError."""
    from shopfloor.mqtt import MqttSettings

    overrides: dict[str, Any] = {"protocol": args.mqtt_protocol, **extra}
    if args.mqtt_username:
        overrides["username"] = args.mqtt_username
    if args.mqtt_password_file is not None:
        overrides["password"] = read_secret(args.mqtt_password_file, "--mqtt-password-file")
    for option, name in (("mqtt_ca", "ca_file"), ("mqtt_cert", "cert_file"), ("mqtt_key", "key_file")):
        value = getattr(args, option)
        if value is not None:
            if not Path(value).is_file():
                raise ValueError(f"--{option.replace('_', '-')} {value!r}: no such file")
            overrides[name] = value
    return MqttSettings.from_url(args.mqtt, **overrides)


def add_influx(parser: argparse.ArgumentParser) -> None:
    """Add --influx-url, --influx-db, --influx-user, --influx-password (defaults from SHOPFLOOR_INFLUX_*)."""
    env = settings()
    parser.add_argument("--influx-url", default=env.influx_url, help="InfluxDB base URL (default: %(default)s)")
    parser.add_argument("--influx-db", default=env.influx_db, help="database name (default: %(default)s)")
    parser.add_argument("--influx-user", default=env.influx_user, help="user name, if auth is on")
    parser.add_argument("--influx-password", default=env.influx_password, help="password, if auth is on")


def add_store(parser: argparse.ArgumentParser) -> None:
    """Add the time-series store options: --sqlite-store PATH and the InfluxDB ones (add_influx)."""
    add_influx(parser)
    parser.add_argument(
        "--sqlite-store",
        type=Path,
        default=None,
        metavar="PATH",
        help="use the embedded SQLite time-series store at PATH instead of InfluxDB (created if missing; the "
        "--influx-* options are then ignored)",
    )


def open_store(args: argparse.Namespace, **influx: Any) -> LineStore:
    """The time-series store add_store's options name: SqliteStore at --sqlite-store, else InfluxStore.

    influx: further InfluxStore arguments (token, retention_policy, ...). Raise ValueError for a bad option.
    """
    if getattr(args, "sqlite_store", None) is not None:
        from shopfloor.sqlitestore import SqliteStore

        path = Path(args.sqlite_store)
        if path.is_dir():
            raise ValueError(f"--sqlite-store {str(path)!r} is a directory; give the path of a database file")
        return SqliteStore(path)
    from shopfloor.influx import InfluxStore

    options: dict[str, Any] = {"username": args.influx_user, "password": args.influx_password, **influx}
    return InfluxStore(args.influx_url, args.influx_db, **options)


COMMAND_GROUP = "shopfloor.commands"
# How `shopfloor --help` lists the commands; any other installed command follows, by name.
COMMAND_ORDER = (
    "demo",
    "broker",
    "simulate",
    "agent",
    "collect",
    "api",
    "rollup",
    "report",
    "db",
    "invoices",
    "dashboards",
    "keygen",
    "mqtt",
)


def command_entry_points() -> list[metadata.EntryPoint]:
    """The installed `shopfloor.commands` entry points (name -> module:add_parser), in help order."""
    found = {ep.name: ep for ep in metadata.entry_points(group=COMMAND_GROUP)}
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    return sorted(found.values(), key=lambda ep: (rank.get(ep.name, len(rank)), ep.name))


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every installed component's subcommand (entry points, group shopfloor.commands).

    The kernel imports no component: each registers its commands through an entry point in pyproject.toml, and is
    imported only here, when its add_parser is loaded. A component that cannot be imported names itself.
    """
    parser = argparse.ArgumentParser(
        prog="shopfloor",
        description="Monitor shared machines, meter each tenant's use, compute OEE and bill fairly.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    entry_points = command_entry_points()
    if not entry_points:
        raise CommandsMissing(
            f"no shopfloor commands are installed (entry points {COMMAND_GROUP}): install the package, "
            "for example pip install -e ."
        )
    for ep in entry_points:
        try:
            add_parser = ep.load()
        except Exception as exc:  # an import error in one component must not hide the others
            raise CommandsMissing(f"command {ep.name!r} ({ep.value}) cannot be loaded: {exc}") from exc
        add_parser(sub)
    return parser


class CommandsMissing(RuntimeError):
    """The component commands cannot be found or loaded."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the shopfloor command line; return the exit code."""
    try:
        parser = build_parser()
    except (SettingsError, CommandsMissing) as exc:
        print(f"shopfloor: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"), format=LOG_FORMAT)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"shopfloor {args.command}: configuration error\n{exc}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"shopfloor {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
