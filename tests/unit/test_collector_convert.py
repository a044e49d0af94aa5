"""Pure conversions of the collector: messages to line protocol, written seqs to commit payloads."""

from __future__ import annotations

import json

import pytest

from collector.convert import Written, batch_to_points, commit_messages, seq_ranges, status_to_point
from shopfloor.contracts import LinkStatus, Sample, StatusMessage, TelemetryBatch, Topic
from shopfloor.influx import to_line

T0 = 1764291600123


def _batch(samples: list[Sample], machine: str = "cnc-01", seq: int = 7) -> TelemetryBatch:
    return TelemetryBatch(v=1, agent="edge-1", site="bdg", machine=machine, seq=seq, samples=samples)


@pytest.mark.parametrize(
    ("samples", "lines"),
    [
        (
            [Sample(ts=T0, values={"state": "RUNNING", "good_count": 812, "energy_kwh": 3, "job": "J-1"})],
            [
                'telemetry,machine=cnc-01,site=bdg energy_kwh=3.0,good_count=812i,job="J-1",state="RUNNING"'
                " 1764291600123"
            ],
        ),
        (
            [
                Sample(ts=T0, values={"badge": 1001, "power_kw": 0.25}),
                Sample(ts=T0 + 1000, values={"badge": 0, "stop_reason": 4, "door_open": True}),
            ],
            [
                "telemetry,machine=cnc-01,site=bdg badge=1001i,power_kw=0.25 1764291600123",
                "telemetry,machine=cnc-01,site=bdg badge=0i,door_open=true,stop_reason=4i 1764291601123",
            ],
        ),
        # Custom signals keep their wire type; a quote in a job name is escaped, not a new field.
        (
            [Sample(ts=T0, values={"spindle_rpm": 12000, "temp_c": 41.5, "job": 'a "b", c=d'})],
            ['telemetry,machine=cnc-01,site=bdg job="a \\"b\\", c=d",spindle_rpm=12000i,temp_c=41.5 1764291600123'],
        ),
        # A sample without values carries nothing to store (line protocol needs a field).
        (
            [Sample(ts=T0, values={}), Sample(ts=T0 + 5, values={"good_count": 1})],
            ["telemetry,machine=cnc-01,site=bdg good_count=1i 1764291600128"],
        ),
    ],
)
def test_batch_to_points(samples: list[Sample], lines: list[str]) -> None:
    assert [to_line(p) for p in batch_to_points(_batch(samples))] == lines


def test_same_batch_gives_same_points() -> None:
    batch = _batch([Sample(ts=T0, values={"state": "IDLE", "good_count": 3})])
    resent = TelemetryBatch.model_validate_json(batch.to_json())
    assert batch_to_points(batch) == batch_to_points(resent)
    # Tags are site and machine only: neither agent nor seq may split one sample into two series or points.
    other_agent = batch.model_copy(update={"agent": "edge-2", "seq": 99})
    assert [to_line(p) for p in batch_to_points(other_agent)] == [to_line(p) for p in batch_to_points(batch)]


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (
            StatusMessage(status=LinkStatus.ONLINE, ts=T0, agent="edge-1"),
            'machine_status,machine=press-01,site=bdg agent="edge-1",detail="",status="online" 1764291600123',
        ),
        (
            StatusMessage(status=LinkStatus.UNREACHABLE, ts=T0, agent="edge-1", detail='timeout "2 s" \\ retrying'),
            'machine_status,machine=press-01,site=bdg agent="edge-1",detail="timeout \\"2 s\\" \\\\ retrying",'
            'status="unreachable" 1764291600123',
        ),
        (
            # The machine's heartbeat is stored with its status: it is how long the agent may stay silent.
            StatusMessage(status=LinkStatus.ONLINE, ts=T0, agent="edge-1", heartbeat_ms=60_000),
            'machine_status,machine=press-01,site=bdg agent="edge-1",detail="",heartbeat_ms=60000i,status="online" '
            "1764291600123",
        ),
    ],
)
def test_status_to_point(status: StatusMessage, line: str) -> None:
    assert to_line(status_to_point(Topic.machine_status("bdg", "press-01"), status)) == line


@pytest.mark.parametrize("topic", [Topic.agent_status("bdg", "edge-1"), Topic.telemetry("bdg", "cnc-01")])
def test_status_to_point_needs_a_machine_status_topic(topic: Topic) -> None:
    status = StatusMessage(status=LinkStatus.OFFLINE, ts=T0, agent="edge-1")
    with pytest.raises(ValueError, match="not a machine status topic"):
        status_to_point(topic, status)


@pytest.mark.parametrize(
    ("seqs", "ranges"),
    [
        ([], []),
        ([5], [(5, 5)]),
        ([1, 2, 3], [(1, 3)]),
        ([3, 1, 2, 2, 3], [(1, 3)]),
        ([1, 2, 4, 5, 7], [(1, 2), (4, 5), (7, 7)]),
        ([0, 2**63 - 1, 2**63 - 2], [(0, 0), (2**63 - 2, 2**63 - 1)]),
    ],
)
def test_seq_ranges(seqs: list[int], ranges: list[tuple[int, int]]) -> None:
    assert seq_ranges(seqs) == ranges


def test_commit_messages_group_by_agent_and_machine() -> None:
    written = [
        Written("bdg", "edge-1", "cnc-01", 4),
        Written("bdg", "edge-1", "cnc-01", 2),
        Written("bdg", "edge-1", "cnc-01", 3),
        Written("bdg", "edge-1", "laser-01", 10),
        Written("bdg", "edge-2", "cnc-01", 4),
        Written("jkt", "edge-1", "cnc-01", 1),
    ]
    out = commit_messages(written)
    assert {str(t): json.loads(b) for t, b in out.items()} == {
        "shopfloor/v1/bdg/agents/edge-1/commits": {"v": 1, "machines": {"cnc-01": [[2, 4]], "laser-01": [[10, 10]]}},
        "shopfloor/v1/bdg/agents/edge-2/commits": {"v": 1, "machines": {"cnc-01": [[4, 4]]}},
        "shopfloor/v1/jkt/agents/edge-1/commits": {"v": 1, "machines": {"cnc-01": [[1, 1]]}},
    }
    # Compact bytes on the wire.
    assert out[Topic.commits("bdg", "edge-2")] == b'{"v":1,"machines":{"cnc-01":[[4,4]]}}'


def test_commit_messages_of_nothing_is_nothing() -> None:
    assert commit_messages([]) == {}


def test_batch_to_lines_renders_what_batch_to_points_would() -> None:
    from collector.convert import batch_to_lines, batch_to_points
    from shopfloor.contracts import TelemetryBatch
    from shopfloor.influx import to_line

    batch = TelemetryBatch.model_validate(
        {
            "v": 1,
            "agent": "edge-1",
            "site": "bdg",
            "machine": "cnc-01",
            "seq": 3,
            "samples": [
                {"ts": 1764291600000, "values": {"state": "RUNNING", "energy_kwh": 2, "job": 'J "7"', "door": True}},
                {"ts": 1764291600001, "values": {}},
                {"ts": 1764291600002, "values": {"good_count": 5, "power_kw": 1.5}},
            ],
        }
    )
    assert batch_to_lines(batch) == [to_line(p) for p in batch_to_points(batch)]
    assert batch_to_lines(batch)[0] == (
        'telemetry,machine=cnc-01,site=bdg door=true,energy_kwh=2.0,job="J \\"7\\"",state="RUNNING" 1764291600000'
    )
