"""`shopfloor collect` argument parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from collector import cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopfloor")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_defaults() -> None:
    args = _parser().parse_args(["collect"])
    assert args.func is cli.run
    assert (args.client_id, args.batch_points, args.flush_interval, args.dead_letter, args.topic_prefix) == (
        "shopfloor-collector",
        5000,
        0.2,
        None,
        "",
    )


def test_all_flags() -> None:
    args = _parser().parse_args(
        [
            "collect",
            "--mqtt", "mqtt://broker:1884",
            "--influx-url", "http://tsdb:8086",
            "--influx-db", "plant",
            "--client-id", "collector-a",
            "--dead-letter", "/var/lib/sf/dl.jsonl",
            "--batch-points", "100",
            "--flush-interval", "0.5",
            "--topic-prefix", "$share/collectors/",
        ]
    )  # fmt: skip
    assert (args.mqtt, args.influx_url, args.influx_db, args.client_id) == (
        "mqtt://broker:1884",
        "http://tsdb:8086",
        "plant",
        "collector-a",
    )
    assert (args.dead_letter, args.batch_points, args.flush_interval, args.topic_prefix) == (
        "/var/lib/sf/dl.jsonl",
        100,
        0.5,
        "$share/collectors/",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--batch-points", "0"],
        ["--batch-points", "-5"],
        ["--batch-points", "many"],
        ["--flush-interval", "0"],
        ["--flush-interval", "-1"],
        ["--flush-interval", "nan"],
    ],
)
def test_refuses_bad_numbers(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["collect", *argv])
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_bad_mqtt_url_exits_2() -> None:
    args = _parser().parse_args(["collect", "--mqtt", "http://nope"])
    assert cli.run(args) == 2


def test_delivery_auth_and_metrics_flags() -> None:
    args = _parser().parse_args(
        [
            "collect",
            "--mqtt-username", "collector-a",
            "--mqtt-protocol", "5",
            "--session-expiry", "3600",
            "--influx-rp", "week",
            "--influx-token-file", "/run/secrets/influx",
            "--max-queue-points", "50",
            "--metrics-port", "0",
            "--unhealthy-after", "30",
        ]
    )  # fmt: skip
    assert (args.mqtt_username, args.mqtt_protocol, args.session_expiry) == ("collector-a", "5", 3600)
    assert (args.influx_rp, str(args.influx_token_file), args.max_queue_points) == ("week", "/run/secrets/influx", 50)
    assert (args.metrics_port, args.metrics_host, args.unhealthy_after) == (0, "127.0.0.1", 30.0)
    defaults = _parser().parse_args(["collect"])
    assert (defaults.session_expiry, defaults.metrics_port, defaults.unhealthy_after) == (86_400, None, 60.0)


def test_token_and_user_together_exit_2(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0k\n")
    args = _parser().parse_args(["collect", "--influx-user", "u", "--influx-token-file", str(token)])
    assert cli.run(args) == 2
