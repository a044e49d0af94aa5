"""`shopfloor collect` argument parsing."""

from __future__ import annotations

import argparse

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
