"""`shopfloor agent`: poll the site's PLCs and publish to MQTT until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_agent.agent import AgentError, AgentOptions, EdgeAgent
from shopfloor.cli import LOG_FORMAT, add_common, add_mqtt
from shopfloor.config import load_site
from shopfloor.mqtt import MqttSettings
from shopfloor.settings import Settings
from shopfloor.yamlfile import ConfigError


def add_parser(sub: Any) -> None:
    """Register `shopfloor agent`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "agent",
        help="poll PLCs over Modbus TCP and publish telemetry and status to MQTT",
        description="Poll every machine of the site (or --machines) and publish telemetry batches (QoS1) and "
        "retained machine/agent status to MQTT. Stops cleanly on SIGINT/SIGTERM.",
    )
    add_common(p)
    add_mqtt(p)
    p.add_argument("--agent-id", required=True, help="this agent's id, e.g. edge-1 ([a-z0-9][a-z0-9-]{0,62})")
    p.add_argument("--machines", default=None, help="comma-separated machine ids to poll (default: all of the site)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Settings().data_dir,
        help="where the agent keeps its seq counters (default: %(default)s)",
    )
    p.add_argument(
        "--publish-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="publish each machine's samples this often (default: every poll)",
    )
    p.add_argument(
        "--max-batch-samples", type=int, default=100, metavar="N", help="most samples in one message (default: 100)"
    )
    p.set_defaults(func=run)


def _machine_ids(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def run(args: argparse.Namespace) -> int:
    """Run the agent for parsed arguments; return the exit code."""
    site = load_site(args.site)
    try:
        mqtt = MqttSettings.from_url(args.mqtt)
        options = AgentOptions(publish_interval_s=args.publish_interval, max_batch_samples=args.max_batch_samples)
        agent = EdgeAgent(site, args.agent_id, mqtt, args.data_dir, _machine_ids(args.machines), options=options)
    except ValueError as exc:
        print(f"shopfloor agent: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(agent))
    except AgentError as exc:
        print(f"shopfloor agent: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(agent: EdgeAgent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, agent.stop)
    await agent.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `agent` on its own (python -m edge_agent), without the other components' commands."""
    parser = argparse.ArgumentParser(prog="python -m edge_agent")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["agent", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"shopfloor agent: configuration error\n{exc}", file=sys.stderr)
        return 2
    return code
