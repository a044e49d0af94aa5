"""Link status transitions and decode-error bookkeeping: each change logged once, with a frozen clock."""

from __future__ import annotations

import pytest

from shopfloor.contracts import LinkStatus
from shopfloor.health import LinkTracker, SignalErrors, describe_failure

T0 = 1_764_291_600_000
TIMEOUT = "holding registers 0..27: no reply within 2.0 s"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TIMEOUT, "holding registers 0..27 read failed (no reply within 2.0 s)"),
        (
            "input registers 0..3: PLC replied with Modbus exception 2",
            "input registers 0..3 read failed (PLC replied with Modbus exception 2)",
        ),
        (
            "cannot connect to 127.0.0.1:1 (connection refused or timed out)",
            "read failed (cannot connect to 127.0.0.1:1 (connection refused or timed out))",
        ),
        ("", "read failed ()"),
        ("holding registers x..y: odd", "read failed (holding registers x..y: odd)"),
    ],
)
def test_describe_failure(error: str, expected: str) -> None:
    assert describe_failure(error) == expected


def test_outage_and_recovery_are_reported_once() -> None:
    link = LinkTracker("cnc-01", retry_s=1.0)
    first = link.succeeded(T0)
    assert first is not None
    assert (first.status, first.ts, first.message) == (LinkStatus.ONLINE, T0, "machine 'cnc-01': reachable")
    assert link.succeeded(T0 + 1000) is None

    down = link.failed(T0 + 2000, TIMEOUT)
    assert down is not None
    assert down.status is LinkStatus.UNREACHABLE
    assert down.ts == T0 + 2000
    assert down.message == (
        "machine 'cnc-01': holding registers 0..27 read failed (no reply within 2.0 s); "
        "marked unreachable, retrying every 1.0 s"
    )
    assert down.detail == "holding registers 0..27 read failed (no reply within 2.0 s)"
    assert link.failed(T0 + 3000, TIMEOUT) is None
    assert link.failed(T0 + 4000, "cannot connect to x:1 (refused)") is None

    up = link.succeeded(T0 + 14_300)
    assert up is not None
    assert up.status is LinkStatus.ONLINE
    assert up.message == "machine 'cnc-01': reachable again after 12.3 s"
    assert up.detail == ""


def test_unreachable_from_the_start() -> None:
    link = LinkTracker("laser-01", retry_s=0.25)
    down = link.failed(T0, "cannot connect to 127.0.0.1:15022 (refused)")
    assert down is not None
    assert down.message.endswith("marked unreachable, retrying every 0.25 s")
    assert link.status is LinkStatus.UNREACHABLE


def test_hostile_error_text_is_bounded_in_detail() -> None:
    link = LinkTracker("cnc-01", retry_s=1.0)
    down = link.failed(T0, "x" * 10_000)
    assert down is not None
    assert len(down.detail) == 500


def test_signal_errors_logged_once_until_they_decode_again() -> None:
    errors = SignalErrors("cnc-01")
    failed, recovered = errors.update({"state": "state: raw code 99 is not in the profile's states map"})
    assert failed == [
        "machine 'cnc-01': signal 'state' not decoded (state: raw code 99 is not in the profile's states map); "
        "omitted from samples until it decodes again"
    ]
    assert recovered == []
    assert errors.update({"state": "state: raw code 98 ..."}) == ([], [])
    failed, recovered = errors.update({"job": "job: non-ASCII"})
    assert len(failed) == 1 and "'job'" in failed[0]
    assert recovered == ["machine 'cnc-01': signal 'state' decodes again"]
    assert errors.failing == {"job"}
    assert errors.update({}) == ([], ["machine 'cnc-01': signal 'job' decodes again"])
    # Failing again after recovery is a new failure, logged again.
    assert len(errors.update({"job": "job: non-ASCII"})[0]) == 1
