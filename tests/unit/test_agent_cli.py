"""`shopfloor agent` arguments: bad ids and bad values fail fast with exit code 2 and a clear message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_agent.agent import AgentOptions, EdgeAgent, select_machines
from edge_agent.cli import main
from shopfloor.config import AgentSpec, DataType, RegisterSpec, SiteConfig, default_site_path
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
        (["--agent-id", "edge-1", "--heartbeat", "0.5"], "heartbeat must be 1..3600 s"),
        (["--agent-id", "edge-1", "--heartbeat", "inf"], "heartbeat must be"),
        (["--agent-id", "edge-1", "--outbox-max-mb", "0"], "--outbox-max-mb must be a positive number"),
        (["--agent-id", "edge-1", "--outbox-max-mb", "nan"], "--outbox-max-mb must be a positive number"),
        (["--agent-id", "edge-1", "--outbox-max-mb", "0.01"], "outbox size limit must be at least 64 KiB"),
        (["--agent-id", "edge-1", "--outbox-max-age-h", "-1"], "--outbox-max-age-h must be a positive number"),
        (["--agent-id", "edge-1", "--commit-timeout", "0"], "commit_timeout_s must be positive"),
        (["--agent-id", "edge-1", "--resend-rate", "-5"], "resend_rate must be positive"),
        (["--agent-id", "edge-1", "--metrics-port", "70000"], "metrics port must be 0..65535"),
        (["--agent-id", "edge-1", "--mqtt-ca", "/nonexistent/ca.pem"], "--mqtt-ca '/nonexistent/ca.pem': no such file"),
        (["--agent-id", "edge-1", "--mqtt-password-file", "/nonexistent"], "--mqtt-password-file '/nonexistent'"),
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


@pytest.mark.parametrize(
    ("agent", "machines", "message"),
    [
        ("edge-9", None, "agent id 'edge-9' is not declared under agents: in site 'bdg' (declared: edge-1)"),
        ("edge-1", ["cnc-01", "laser-01"], ""),
    ],
)
def test_declared_agents_poll_their_own_machines(
    example_site: SiteConfig, agent: str, machines: list[str] | None, message: str
) -> None:
    if message:
        with pytest.raises(ValueError, match=re.escape(message)):
            select_machines(example_site, machines, agent)
    else:
        assert [m.id for m in select_machines(example_site, machines, agent)] == machines


def test_a_machine_of_another_agent_is_refused(example_site: SiteConfig) -> None:
    agents = [AgentSpec(id="edge-1", machines=["cnc-01"]), AgentSpec(id="edge-2", machines=["cnc-02"])]
    site = SiteConfig.model_validate({**example_site.model_dump(), "agents": [a.model_dump() for a in agents]})
    assert [m.id for m in select_machines(site, None, "edge-2")] == ["cnc-02"]  # default: its own machines
    with pytest.raises(ValueError, match=r"machine\(s\) 'cnc-01' are not served by agent 'edge-2'"):
        select_machines(site, ["cnc-01"], "edge-2")


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


def test_heartbeat_shorter_than_a_poll_is_refused(example_site: SiteConfig, tmp_path: Path) -> None:
    slow = [m.model_copy(update={"poll_interval_s": 5.0}) for m in example_site.machines]
    site = example_site.model_copy(update={"machines": slow})
    with pytest.raises(ValueError, match=r"heartbeat 2\.0 s is shorter than its poll interval 5\.0 s"):
        EdgeAgent(site, "edge-1", MqttSettings(), tmp_path, options=AgentOptions(heartbeat_s=2.0))


def test_heartbeat_comes_from_the_site_unless_given(example_site: SiteConfig, tmp_path: Path) -> None:
    agent = EdgeAgent(example_site, "edge-1", MqttSettings(), tmp_path)
    assert {agent.heartbeat_s(m) for m in agent.machines} == {60.0}
    agent = EdgeAgent(example_site, "edge-1", MqttSettings(), tmp_path, options=AgentOptions(heartbeat_s=15))
    assert {agent.heartbeat_s(m) for m in agent.machines} == {15}
    assert set(agent.stats) >= {"polls", "samples", "messages", "failures", "values_suppressed"}
    assert set(agent.stats.values()) == {0}


def test_check_prints_the_read_plan_and_touches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    code = main(
        ["--site", SITE, "--agent-id", "edge-1", "--mqtt", "mqtt://127.0.0.1:1", "--data-dir", str(data), "--check"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "machine 'cnc-01' (cnc-mill-v1) at 127.0.0.1:15020 unit 1" in out
    assert "heartbeat 60 s" in out
    # The cnc profile's holding registers 0..27 are one request; its input registers 0..3 another.
    assert "holding      0..27      28 registers  state, stop_reason" in out
    assert "input        0..3        4 registers  energy_kwh, power_kw" in out
    assert out.rstrip().endswith("ok: configuration is valid (nothing was contacted)")
    assert not data.exists()


def test_check_shows_machines_sharing_a_gateway(
    example_site: SiteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_agent.cli import check_report

    gateway = [m.model_copy(update={"port": 502, "unit_id": i + 1}) for i, m in enumerate(example_site.machines[:2])]
    agents = [AgentSpec(id="edge-1", machines=["cnc-01", "cnc-02"])]
    site = example_site.model_copy(update={"machines": gateway, "agents": agents})
    report = check_report(EdgeAgent(site, "edge-1", MqttSettings(), tmp_path))
    assert "machine 'cnc-01' (cnc-mill-v1) at 127.0.0.1:502 unit 1 (shares its connection with cnc-02)" in report
