"""`shopfloor agent` arguments: bad ids and bad values fail fast with exit code 2 and a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.agent import AgentOptions, EdgeAgent, select_machines
from edge_agent.cli import main
from shopfloor.config import DataType, RegisterSpec, SiteConfig, default_site_path
from shopfloor.mqtt import MqttSettings

SITE = str(default_site_path())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent-id", "Edge_1"], "agent id 'Edge_1' is invalid"),
        (["--agent-id", ""], "agent id '' is invalid"),
        (["--agent-id=-edge"], "is invalid"),
        (["--agent-id", "e" * 64], "is invalid"),
        (["--agent-id", "edge-1", "--machines", "cnc-01,nope"], "unknown machine id(s) 'nope' in site 'bdg'"),
        (["--agent-id", "edge-1", "--machines", "../etc"], "unknown machine id(s) '../etc'"),
        (["--agent-id", "edge-1", "--machines", ","], "no machine ids given"),
        (["--agent-id", "edge-1", "--mqtt", "http://x"], "scheme must be mqtt"),
        (["--agent-id", "edge-1", "--publish-interval", "0"], "publish interval"),
        (["--agent-id", "edge-1", "--publish-interval", "nan"], "publish interval"),
        (["--agent-id", "edge-1", "--max-batch-samples", "5000"], "max batch samples"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--site", SITE, "--mqtt", "mqtt://127.0.0.1:1", "--data-dir", str(tmp_path), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing touched before the arguments are valid


def test_bad_site_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: BAD}\n")
    assert main(["--site", str(site), "--agent-id", "edge-1", "--data-dir", str(tmp_path)]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_locked_data_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.outbox import Outbox

    holder = Outbox(tmp_path, "edge-1")
    try:
        code = main(
            ["--site", SITE, "--agent-id", "edge-1", "--mqtt", "mqtt://127.0.0.1:1", "--data-dir", str(tmp_path)]
        )
    finally:
        holder.close()
    assert code == 2
    assert "another agent 'edge-1' is running" in capsys.readouterr().err


def test_select_machines(example_site: SiteConfig) -> None:
    assert [m.id for m in select_machines(example_site, None)] == [m.id for m in example_site.machines]
    # Site order, duplicates once.
    assert [m.id for m in select_machines(example_site, ["laser-01", "cnc-01", "laser-01"])] == ["cnc-01", "laser-01"]


def test_profile_with_too_many_signals_is_refused(example_site: SiteConfig, tmp_path: Path) -> None:
    profile = example_site.profiles[0]
    regs = [RegisterSpec(signal=f"s{i}", address=100 + i, type=DataType.UINT16) for i in range(64)]
    big = profile.model_copy(update={"registers": [*profile.registers[:1], *regs]})
    site = example_site.model_copy(update={"profiles": [big, *example_site.profiles[1:]]})
    with pytest.raises(ValueError, match="maps 65 signals, a sample carries at most 64"):
        EdgeAgent(site, "edge-1", MqttSettings(), tmp_path, ["cnc-01"])


def test_options_default_to_one_message_per_poll(example_site: SiteConfig, tmp_path: Path) -> None:
    agent = EdgeAgent(example_site, "edge-1", MqttSettings(), tmp_path, options=AgentOptions())
    assert {c.batcher.per_batch for c in agent.coordinators} == {1}
    agent = EdgeAgent(example_site, "edge-1", MqttSettings(), tmp_path, options=AgentOptions(publish_interval_s=5))
    assert {(c.batcher.per_batch, c.batcher.max_age_ms) for c in agent.coordinators} == {(5, 5000)}
    assert set(agent.stats) >= {"polls", "samples", "messages", "failures"}
    assert set(agent.stats.values()) == {0}
