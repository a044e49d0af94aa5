"""The `shopfloor` command: one subcommand per component."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from shopfloor.settings import Settings
from shopfloor.yamlfile import ConfigError

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def add_common(parser: argparse.ArgumentParser) -> None:
    """Add --site and --log-level (defaults from SHOPFLOOR_* environment variables)."""
    settings = Settings()
    parser.add_argument("--site", default=str(settings.site), help="site config YAML (default: %(default)s)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: %(default)s"
    )


def add_mqtt(parser: argparse.ArgumentParser) -> None:
    """Add --mqtt (default from SHOPFLOOR_MQTT_URL)."""
    parser.add_argument(
        "--mqtt",
        default=Settings().mqtt_url,
        help="MQTT broker URL, mqtt://[user:pass@]host:port (default: %(default)s)",
    )


def add_influx(parser: argparse.ArgumentParser) -> None:
    """Add --influx-url, --influx-db, --influx-user, --influx-password (defaults from SHOPFLOOR_INFLUX_*)."""
    settings = Settings()
    parser.add_argument("--influx-url", default=settings.influx_url, help="InfluxDB base URL (default: %(default)s)")
    parser.add_argument("--influx-db", default=settings.influx_db, help="database name (default: %(default)s)")
    parser.add_argument("--influx-user", default=settings.influx_user, help="user name, if auth is on")
    parser.add_argument("--influx-password", default=settings.influx_password, help="password, if auth is on")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every component's subcommand."""
    # Imported here so `shopfloor --help` stays fast and a broken component names itself.
    from api import cli as api_cli
    from collector import cli as collector_cli
    from edge_agent import cli as agent_cli
    from shopfloor import demo, keys
    from simulators import cli as sim_cli

    parser = argparse.ArgumentParser(
        prog="shopfloor",
        description="Monitor shared machines, meter each tenant's use, compute OEE and bill fairly.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, sim_cli, agent_cli, collector_cli, api_cli, keys):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the shopfloor command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"), format=LOG_FORMAT)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"shopfloor {args.command}: configuration error\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
