"""`shopfloor agent`: poll the site's PLCs and publish to MQTT until SIGINT/SIGTERM; `--check` only validates."""

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
from edge_agent.delivery import DeliveryOptions
from shopfloor.cli import LOG_FORMAT, add_common, add_metrics, add_mqtt, add_mqtt_login, mqtt_settings
from shopfloor.codec import describe_plan, plan_reads
from shopfloor.config import load_plant
from shopfloor.settings import SettingsError, settings
from shopfloor.yamlfile import ConfigError

MIB = 1024 * 1024


def add_parser(sub: Any) -> None:
    """Register `shopfloor agent`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "agent",
        help="poll PLCs over Modbus TCP and publish telemetry and status to MQTT",
        description="Poll every machine of the site (or --machines), report by exception and publish telemetry "
        "batches (QoS1) and retained machine/agent status to MQTT. Every batch stays in the outbox until a "
        "collector commits it. Stops cleanly on SIGINT/SIGTERM.",
    )
    add_common(p)
    add_mqtt(p)
    p.add_argument("--agent-id", required=True, help="this agent's id, e.g. edge-1 ([a-z0-9][a-z0-9-]{0,62})")
    p.add_argument("--machines", default=None, help="comma-separated machine ids to poll (default: all of the site)")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the site and options, print each machine's read plan, connect to nothing, and exit",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=settings().data_dir,
        help="where the agent keeps its outbox and seq counters (default: %(default)s)",
    )
    g = p.add_argument_group("publishing")
    g.add_argument(
        "--publish-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="publish each machine's samples at least this often (default: %(default)s)",
    )
    g.add_argument(
        "--max-batch-samples", type=int, default=100, metavar="N", help="most samples in one message (default: 100)"
    )
    g.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        metavar="S",
        help="send every signal at least this often (default: each machine's heartbeat_s in the site file)",
    )
    g = p.add_argument_group("outbox and resending")
    g.add_argument("--outbox-max-mb", type=float, default=256, metavar="MB", help="outbox size limit (default: 256)")
    g.add_argument(
        "--outbox-max-age-h", type=float, default=168, metavar="H", help="drop batches older than this (default: 168)"
    )
    g.add_argument(
        "--commit-timeout",
        type=float,
        default=30,
        metavar="S",
        help="resend a batch no collector committed within this time (default: 30)",
    )
    g.add_argument(
        "--resend-rate", type=float, default=200, metavar="N", help="most resent messages per second (default: 200)"
    )
    add_mqtt_login(p)
    add_metrics(p)
    p.set_defaults(func=run)


def _machine_ids(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def options(args: argparse.Namespace) -> AgentOptions:
    """AgentOptions from the command line; raise ValueError naming what is wrong."""
    for name in ("outbox_max_mb", "outbox_max_age_h"):
        value = getattr(args, name)
        if not 0 < value < float("inf"):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")
    return AgentOptions(
        publish_interval_s=args.publish_interval,
        max_batch_samples=args.max_batch_samples,
        heartbeat_s=args.heartbeat,
        outbox_max_bytes=int(args.outbox_max_mb * MIB),
        outbox_max_age_s=args.outbox_max_age_h * 3600,
        delivery=DeliveryOptions(commit_timeout_s=args.commit_timeout, resend_rate=args.resend_rate),
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
    )


def run(args: argparse.Namespace) -> int:
    """Run the agent for parsed arguments; return the exit code."""
    site = load_plant(args.site)
    try:
        mqtt = mqtt_settings(args)
        agent = EdgeAgent(site, args.agent_id, mqtt, args.data_dir, _machine_ids(args.machines), options=options(args))
    except ValueError as exc:
        print(f"shopfloor agent: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(check_report(agent))
        return 0
    try:
        asyncio.run(_serve(agent))
    except AgentError as exc:
        print(f"shopfloor agent: {exc}", file=sys.stderr)
        return 2
    return 0


def check_report(agent: EdgeAgent) -> str:
    """What the agent would do: per machine, where it polls, how often it reports, and its read plan."""
    lines = [
        f"site {agent.site.site.id!r}: agent {agent.agent_id!r}, {len(agent.machines)} machine(s), "
        f"broker {agent.mqtt} (MQTT {agent.mqtt.protocol}), outbox in {agent.data_dir}",
    ]
    endpoints: dict[tuple[str, int], list[str]] = {}
    for machine in agent.machines:
        endpoints.setdefault((machine.host, machine.port), []).append(machine.id)
    for machine in agent.machines:
        profile = agent.site.profile(machine.profile)
        shared = endpoints[(machine.host, machine.port)]
        others = ", ".join(m for m in shared if m != machine.id)
        via = f" (shares its connection with {others})" if others else ""
        lines.append("")
        lines.append(
            f"machine {machine.id!r} ({profile.model}) at {machine.host}:{machine.port} unit {machine.unit_id}{via}: "
            f"poll every {machine.poll_interval_s:g} s, timeout {machine.timeout_s:g} s, "
            f"heartbeat {agent.heartbeat_s(machine):g} s"
        )
        lines.append(describe_plan(profile, plan_reads(profile)))
    lines.append("")
    lines.append("ok: configuration is valid (nothing was contacted)")
    return "\n".join(lines)


async def _serve(agent: EdgeAgent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, agent.stop)
    await agent.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `agent` on its own (python -m edge_agent), without the other components' commands."""
    parser = argparse.ArgumentParser(prog="python -m edge_agent")
    sub = parser.add_subparsers(dest="command", required=True)
    try:
        add_parser(sub)
    except SettingsError as exc:
        print(f"python -m edge_agent: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(["agent", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"shopfloor agent: configuration error\n{exc}", file=sys.stderr)
        return 2
    return code
